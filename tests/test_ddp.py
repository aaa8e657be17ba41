"""DDP: composition, fer's own sharding of the epoch order, and a 2-process CPU run (gloo).

Lightning's `ddp` re-executes sys.argv, so DDP runs are launched as subprocesses of
`train.py`, never from inside pytest's own process (STYLE.md §7); one launch in the default
run, the training comparison is `slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from fer import locks
from fer.data.datamodule import EpochSampler, ShardSampler
from fer.errors import ConfigError
from fer.train import check_distributed

REPO = Path(__file__).resolve().parents[1]
SEVEN = "classes=[anger,disgust,fear,happiness,sadness,surprise,neutral]"
CPU_DDP = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "trainer.benchmark=false",
    "datamodule.num_workers=0",
    "datamodule.persistent_workers=false",
    "datamodule.pin_memory=false",
]


def _compose(*overrides: str):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_ddp_composes_and_is_refused_where_it_cannot_work(monkeypatch):
    cfg = _compose(*CPU_DDP)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.use_distributed_sampler is False
    check_distributed(cfg)  # a single python train.py: fine
    with open_dict(cfg):
        cfg.trainer.use_distributed_sampler = True
    with pytest.raises(ConfigError, match="use_distributed_sampler=false"):
        check_distributed(cfg)
    with open_dict(cfg):
        cfg.trainer.use_distributed_sampler = False
    # inside a basic-launcher multirun every extra process would re-run the sweep
    import hydra.core.hydra_config as hc

    import fer.cli

    monkeypatch.setattr(fer.cli, "in_multirun", lambda: True)
    choices = {"hydra/launcher": "basic"}
    fake = SimpleNamespace(runtime=SimpleNamespace(choices=choices))
    monkeypatch.setattr(hc.HydraConfig, "get", staticmethod(lambda: fake))
    with pytest.raises(ConfigError, match="ddp_spawn"):
        check_distributed(cfg)
    choices["hydra/launcher"] = "slurm"  # one job per cell, SLURM starts the processes
    check_distributed(cfg)
    with open_dict(cfg):
        cfg.trainer.strategy = "ddp_spawn"
    choices["hydra/launcher"] = "basic"
    check_distributed(cfg)


def test_ranks_share_the_single_process_batches():
    """At per-process batch B/2, ranks 0 and 1 together see exactly the 1-process batches of
    B (in the same epoch order), with equal batch counts."""
    n, batch = 23, 4
    single = [i for i, _ in EpochSampler(n, seed=5)]
    shards = []
    for rank in (0, 1):
        s = EpochSampler(n, seed=5)
        s.shard(rank, 2)
        shards.append([i for i, _ in s])
        assert len(shards[-1]) == len(s) == n // 2
    for k in range(len(shards[0]) // (batch // 2)):
        together = (
            shards[0][k * batch // 2 : (k + 1) * batch // 2]
            + shards[1][k * batch // 2 : (k + 1) * batch // 2]
        )
        assert sorted(together) == sorted(single[k * batch : (k + 1) * batch])
    assert sorted(shards[0] + shards[1]) == sorted(single[: n - n % 2])


def test_scoring_shards_cover_every_image_once():
    n = 21
    parts = [list(ShardSampler(n, r, 2)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(n))
    assert [len(ShardSampler(n, r, 2)) for r in (0, 1)] == [11, 10]


def _train(out: Path, *extra: str, subjects: int = 10, k: int = 10) -> dict:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    args = [
        sys.executable,
        "train.py",
        "logger=none",
        SEVEN,
        f"data.source.n_subjects={subjects}",
        "data.source.per_class=3",
        f"split.k={k}",  # default: one validation subject, 7 classes x 3 = 21 images (odd)
        "trainer.enable_progress_bar=false",
        f"paths.output_root={out / 'outputs'}",
        f"paths.cache_dir={out / 'cache'}",
        *extra,
    ]
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    [metrics] = list((out / "outputs" / "default").glob("*/metrics.json"))
    return json.loads(metrics.read_text()) | {"_dir": str(metrics.parent)}


def test_two_process_run_counts_every_validation_image_once(tmp_path):
    """A 2-process CPU DDP run (gloo) on 21 validation images: the synced validation of the
    reported checkpoint equals rank 0's single-process scoring of it, image for image (no
    padded duplicates); only rank 0 wrote the run's files and held its lock."""
    metrics = _train(tmp_path, *CPU_DDP, "trainer.max_epochs=1")
    run = Path(metrics["_dir"])
    val, scored = metrics["val"], metrics["scores"]["synthetic_lab"]
    assert val["n"] == scored["n"] == 21
    assert val["confusion"] == scored["confusion"] and val["acc"] == scored["acc"]
    assert metrics["status"] == "finished"
    assert (run / "train_ddp_process_1.log").exists()  # the second process ran
    assert (run / "provenance.json").exists() and (run / "config.yaml").exists()
    assert locks.holder(run) is None


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """2 processes at per-process batch 16 vs 1 process at batch 32, same epoch order: final
    validation accuracy within 2 points. Dropout off: its masks are drawn per process batch,
    so they cannot match between the two splits (measured with dropout 0.5: 50.0 % vs
    57.1 % after 4 epochs on 24 subjects — chaos, not sharding)."""
    same = ["trainer.max_epochs=4", "model.dropout=0"]
    one = _train(tmp_path / "one", *same, "datamodule.batch_size=32", subjects=24, k=4)
    two = _train(tmp_path / "two", *same, *CPU_DDP, "datamodule.batch_size=16", subjects=24, k=4)
    a, b = one["val"]["acc"], two["val"]["acc"]
    print(f"1 process: {a:.4f}  2 processes: {b:.4f}")
    assert one["val"]["n"] == two["val"]["n"]
    assert abs(a - b) <= 0.02 + 1e-9
    assert np.isfinite([a, b]).all()
