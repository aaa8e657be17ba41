"""The grid cost model (fer/costs.py) on hand-made numbers, its place in the dry run, and the
peak memory every run records in metrics.json."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from fer import costs
from fer.costs import ModelProfile, RunSpec
from fer.sweep import run_study

CKPT = "lightning.pytorch.callbacks.ModelCheckpoint"
REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

PROFILE = ModelProfile(params=1000, flops_fwd=1e9, activations=500)


def spec(**kw) -> RunSpec:
    base = dict(
        model="m",
        size=48,
        profile=PROFILE,
        train_images=900,
        val_images=90,
        score_images=90,
        epochs=10,
        batch=10,
        precision="fp32",
        optimizer="adam",
    )
    return RunSpec(**{**base, **kw})


def test_checkpoint_and_disk_follow_the_optimiser_state():
    assert costs.checkpoint_bytes(1000, "adam") == 12_000  # weights + 2 moments
    assert costs.checkpoint_bytes(1000, "sgd_momentum") == 8_000
    assert costs.checkpoint_bytes(1000, "sgd") == 4_000
    assert costs.checkpoint_bytes(1000, "adam", with_optimizer=False) == 4_000
    # running: last + best with optimiser state + the atomic write's temporary copy
    assert costs.run_disk(spec()) == (36_000, 4_000)
    assert costs.run_disk(spec(keep_all=True)) == (36_000, 24_000)
    assert costs.run_disk(spec(optimizer="sgd_momentum", checkpoint_files=1)) == (16_000, 4_000)
    # DESIGN.md "Disk": a VGG16 with SGD momentum ~ 1.07 GB per full checkpoint
    assert costs.checkpoint_bytes(134_285_126, "sgd_momentum") == pytest.approx(1.07e9, rel=0.01)
    assert costs.cache_bytes(10, 64) == 10 * 64 * 64 * 6


def test_time_and_memory_formulas():
    # 10 epochs x (900 + 90/3) + (90 + 90)/3 = 9,360 image-steps at 100 img/s, + overhead
    assert costs.run_time_s(spec(), 100.0) == pytest.approx(93.6 + costs.RUN_OVERHEAD_S)
    # fp32 on CPU: 4P weights + 4P grads + 8P Adam + batch x activations x 4 B
    assert costs.training_memory_bytes(spec(), "cpu") == 16_000 + 10 * 500 * 4
    # bf16 on a GPU: + 2P weight copies, 2 B activations, the CUDA context
    mem = costs.training_memory_bytes(spec(precision="bf16"), "cuda")
    assert mem == 16_000 + 2_000 + 10 * 500 * 2 + costs.CUDA_CONTEXT_BYTES
    assert costs.training_memory_bytes(spec(on_device_bytes=7), "cpu") == 36_007
    assert costs.eval_memory_bytes(PROFILE, 4, "cpu") == 8_000 + 4 * 4 * 500


TABLE = {
    "NVIDIA H100 80GB HBM3|small_vgg|48|bf16": {
        "device": "NVIDIA H100 80GB HBM3",
        "kind": "cuda",
        "model": "small_vgg",
        "size": 48,
        "precision": "bf16",
        "images_per_s": 30_000.0,
        "batch": 512,
        "flops_train_per_image": 1.0e9,
    },
    "CPU AMD EPYC|small_vgg|48|fp32": {
        "device": "CPU AMD EPYC",
        "kind": "cpu",
        "model": "small_vgg",
        "size": 48,
        "precision": "fp32",
        "images_per_s": 25.0,
        "batch": 32,
        "flops_train_per_image": 1.0e9,
    },
}


def test_throughput_measured_scaled_or_stated_default():
    tp = costs.throughput(TABLE, "cuda", "small_vgg", 48, "bf16", 1.0e9)
    assert tp.images_per_s == 30_000.0 and tp.source.startswith("measured")
    assert costs.throughput(TABLE, "H100", "small_vgg", 48, "bf16", 1e9).images_per_s == 30_000
    # another model on the same device: scaled by training FLOPs
    tp = costs.throughput(TABLE, "cuda", "vgg16", 224, "bf16", 100.0e9)
    assert tp.images_per_s == pytest.approx(300.0) and "scaled from small_vgg" in tp.source
    tp = costs.throughput(TABLE, "cpu", "small_vgg", 64, "fp32", 2.0e9)
    assert tp.images_per_s == pytest.approx(12.5)
    # nothing measured on the device: the stated default, by kind and precision
    tp = costs.throughput(TABLE, "A100", "small_vgg", 48, "bf16", 1.0e9)
    assert tp.images_per_s == pytest.approx(costs.DEFAULT_TFLOPS[("cuda", "bf16")] * 1e12 / 1e9)
    assert "default" in tp.source
    tp = costs.throughput(None, "cpu", "small_vgg", 48, "fp32", 1.0e9)
    assert tp.images_per_s == pytest.approx(costs.DEFAULT_TFLOPS[("cpu", "fp32")] * 1e3)


def _cfg(**kw) -> dict:
    """A resolved training config, only the keys the cost model reads."""
    data = {
        "name": "synthetic_lab",
        "classes": ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"],
        "source": {
            "_target_": "fer.data.sources.synthetic.scan",
            "n_subjects": 10,
            "per_class": 2,
        },
        "cache_size": 64,
        "split_shares": {"train": 0.5, "val": 0.25, "test": 0.25},
    }
    cfg = {
        "classes": ["anger", "disgust", "fear", "happiness", "sadness", "surprise"],
        "data": data,
        "split": {"name": "kfold", "k": 5},
        "model": {"name": "small_vgg", "arch": "small_vgg", "input": {"size": 48, "channels": 1}},
        "datamodule": {"batch_size": 32},
        "optimizer": {"_target_": "torch.optim.SGD", "momentum": 0.9},
        "trainer": {"max_epochs": 4, "accelerator": "gpu", "precision": "bf16-mixed"},
        "callbacks": {
            "checkpoint": {"_target_": CKPT, "monitor": "val/acc", "save_top_k": 1},
            "last": {"_target_": CKPT, "monitor": None, "save_top_k": 1, "filename": "last"},
        },
        "strategy": {"train_on": "auto"},
        "train": {"keep_checkpoints": "reported"},
    }
    cfg.update(kw)
    return cfg


def test_run_spec_reads_a_resolved_config():
    s = costs.run_spec(_cfg(), PROFILE)
    # 10 subjects x 2 per class x 6 of the 7 classes = 120 images; 5 folds
    assert (s.train_images, s.val_images, s.score_images) == (96, 24, 24)
    assert (s.epochs, s.batch, s.precision, s.optimizer) == (4, 32, "bf16", "sgd_momentum")
    assert s.checkpoint_files == 2 and not s.keep_all and s.exact_images and not s.upper_bound
    # holdout, a target at half its training subjects, fusion trains on both
    target = {**_cfg()["data"], "name": "synthetic_gray"}
    s = costs.run_spec(
        _cfg(
            split={"name": "holdout", "target_fraction": 0.5},
            target=target,
            strategy={"train_on": "both"},
            callbacks={
                "stop": {"_target_": "lightning.pytorch.callbacks.EarlyStopping"},
                "last": {"_target_": CKPT, "monitor": None, "save_top_k": 1},
            },
        ),
        PROFILE,
    )
    assert s.train_images == 60 + 30 and s.val_images == 30 and s.score_images == 60
    assert s.upper_bound and s.checkpoint_files == 1
    assert costs.dataset_images({"name": "oulu_casia", "source": {}}, _cfg()["classes"]) == (
        10_379,
        False,
    )
    assert costs.dataset_images({"name": "folder", "source": {}}, ["anger"])[0] == (
        costs.UNKNOWN_IMAGES
    )


def test_profile_of_small_vgg_matches_the_design():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        model = compose("train", overrides=["model=small_vgg", "logger=none"]).model
    prof = costs.profile_model(model, 7)
    assert prof.params == 19_270_407  # DESIGN.md, study B at 7 classes
    # forward MACs of the unpadded convs and the FC layers, 2 FLOP each
    macs = (
        47 * 47 * 64 * 4
        + 46 * 46 * 64 * 64 * 4
        + 21 * 21 * 128 * 64 * 9
        + 19 * 19 * 128 * 128 * 9
        + 17 * 17 * 128 * 128 * 9
        + 8192 * 2048
        + 2048 * 1024
        + 1024 * 7
    )
    assert prof.flops_fwd == 2 * macs
    assert prof.activations > 48 * 48


def test_stage_and_grid_totals_from_hand_made_runs(tmp_path):
    table = tmp_path / "tp.json"
    table.write_text(json.dumps({"throughput": TABLE}))
    cfg = _cfg()
    prof = costs.profile_model(cfg["model"], 6)
    done = SimpleNamespace(resolved=cfg, state="finished", run_dir=tmp_path / "a")
    todo = SimpleNamespace(resolved=cfg, state="missing", run_dir=tmp_path / "b")
    stages = [SimpleNamespace(name="train", script="train.py", cells=[done, todo])]
    out = costs.estimate_study(stages, {}, table, device="cuda")
    s = costs.run_spec(cfg, prof)
    tp = costs.throughput(TABLE, "cuda", "small_vgg", 48, "bf16", prof.flops_train)
    one = costs.run_time_s(s, tp.images_per_s)
    line = next(x for x in out.splitlines() if x.startswith("train "))
    assert line.split()[1:3] == ["2", "1"]
    assert costs.human_time(2 * one) in line and costs.human_time(one) in line
    assert "NVIDIA H100 80GB HBM3" in out.splitlines()[0]
    grid = next(x for x in out.splitlines() if x.startswith("grid "))
    kept = 2 * 4 * prof.params + costs.cache_bytes(120, 64)
    assert costs.human_bytes(kept) in grid
    assert "small_vgg 48² bf16" in out and "measured (batch 512)" in out
    # evaluate: the run's scored fold + a dataset outside its split, whole (k-fold); the
    # run's own dataset listed again is not scored twice
    other = {**cfg["data"], "name": "synthetic_gray"}
    ev = SimpleNamespace(name="evaluate", script="evaluate.py", cells=[todo])
    out = costs.estimate_study([*stages, ev], {"evaluate": [cfg["data"], other]}, table, "cuda")
    images = s.score_images + 120
    want = images * costs.EVALUATE_COST / tp.images_per_s + costs.RUN_OVERHEAD_S
    line = next(x for x in out.splitlines() if x.startswith("evaluate "))
    assert line.split()[1:3] == ["1", "1"] and costs.human_time(want) in line
    # no throughput file: the table says it uses stated defaults
    out = costs.estimate_study(stages, {}, tmp_path / "absent.json", device="cpu")
    assert "absent" in out.splitlines()[0] and "stated default" in out


def _run_dir_of_command(line: str) -> Path:
    """The run directory `python train.py ...` (one run, not a multirun) would use."""
    args = shlex.split(line.split("] ", 1)[1])[2:]
    cfg = compose("train", overrides=args, return_hydra_config=True)
    own = HydraConfig.instance().cfg
    try:
        HydraConfig.instance().set_config(cfg)
        return Path(str(cfg.hydra.run.dir))
    finally:
        HydraConfig.instance().cfg = own


def test_dry_run_prints_each_run_command_and_the_cost_table(tmp_path, capsys):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "sweep",
            overrides=[
                "study=arabian2022_synthetic",
                "study.folds=2",
                "study.models=[small_vgg]",
                "sweep.dry=true",
                f"sweep.throughput={tmp_path / 'none.json'}",
                f"paths.output_root={tmp_path / 'outputs'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
            ],
        )
    result = run_study(cfg, lambda argv, env: 1 / 0, python="python", launcher=("basic", []))
    err = capsys.readouterr().err
    lines = err.splitlines()
    runs = [ln for ln in lines if ln.startswith("  [missing] python ")]
    cells = [(s, c) for s in result["stages"] for c in s.cells]
    assert len(runs) == len(cells) == 1 + 4 + 4 + 8  # pretrain, train, train_leaky, evaluate
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for (stage, cell), line in zip(cells, runs, strict=True):
            assert f"python {stage.script} " in line
            if stage.script == "train.py":  # run by hand: the same run directory
                assert _run_dir_of_command(line) == cell.run_dir
            else:
                assert f"runs={cell.run_dir}" in line
    assert "python evaluate.py 'eval.datasets=" in err  # quoted for the shell
    head = next(ln for ln in lines if ln.startswith("cost estimate on cpu"))
    assert "stated default" in head
    for name in ("pretrain", "train", "train_leaky", "evaluate", "grid"):
        assert any(ln.startswith(f"{name} ") and ("min" in ln or " s " in ln) for ln in lines)
    assert "synthetic_lab 64² 6 cl" in err
    assert not (tmp_path / "outputs").exists()  # a dry run writes nothing


def test_metrics_record_peak_memory(make_cfg):
    from fer.train import train

    metrics = train(make_cfg())
    mem = json.loads((Path(make_cfg().paths.run_dir) / "metrics.json").read_text())["memory"]
    assert mem == metrics["memory"]
    assert isinstance(mem["peak_host_rss_mb"], float) and mem["peak_host_rss_mb"] > 50
    assert mem["peak_device_mb"] is None  # CPU run
    if os.path.exists("/proc/self/status"):  # the peak is this process's own, in MiB
        status = Path("/proc/self/status").read_text()
        hwm = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
        assert mem["peak_host_rss_mb"] <= hwm / 1024 + 1
