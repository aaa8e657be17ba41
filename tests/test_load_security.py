"""Security of loading (issue 9, item 5): a pickle payload is never executed.

A checkpoint or weights file is a pickle: loading one with `weights_only=False` runs whatever
its `__reduce__` says. Every load in `fer/` goes through `torch.load(weights_only=True)`, and
the ImageNet files are found and read by us, never by torchvision's `weights=` loader (which
reads the hub cache with `weights_only=False`: `test_torchvision_loader_would_run_it` shows
the threat on the very file the refusal tests plant). Each test plants a payload that would
create a marker file, and checks the marker never appears and the error names the file.
"""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from fer.errors import DataError, FerError
from fer.models.build import build_model

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
REFUSED = r"refused to load: it holds pickled Python objects \(io\.open\)"


class Payload:
    """Unpickling this calls `open(marker, "w")`: the marker file appears iff it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path) -> Path:
    """A Lightning-shaped checkpoint whose state dict holds the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"net.features.0.weight": Payload(marker)}, "epoch": 0}, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def small_vgg() -> dict:
    return {
        "arch": "small_vgg",
        "name": "small_vgg",
        "input": {"channels": 1, "size": 48, "mean": [0.5], "std": [0.25]},
        "dropout": 0.5,
        "attention": None,
    }


def fake_run(make_cfg, marker: Path) -> Path:
    """A finished run (config.yaml, metrics.json) whose last.ckpt is the payload."""
    cfg = make_cfg()
    run = Path(cfg.paths.run_dir)
    run.mkdir(parents=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (run / "metrics.json").write_text(json.dumps({"status": "finished"}))
    plant(run / "last.ckpt", marker)
    return run


# ------------------------------------------------------------------------ the code itself


def _calls(tree: ast.AST):
    """(call, owner, name): `torch.load(…)` -> ("torch", "load"); a bare `eval(…)` ->
    ("", "eval"); a method of anything else (`net.eval()`) -> ("?", "eval")."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                yield node, "", f.id
            elif isinstance(f, ast.Attribute):
                yield node, f.value.id if isinstance(f.value, ast.Name) else "?", f.attr


def test_every_load_in_fer_is_safe():
    """`torch.load` only with weights_only=True; no pickle/yaml.load/eval/exec; torchvision
    builders only with weights=None (their `weights=` loader unpickles with weights_only=False);
    configs are YAML read by OmegaConf/yaml.safe_load (no code in them)."""
    problems, loads = [], 0
    for path in sorted((REPO / "fer").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node, owner, name in _calls(tree):
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            kw = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and name == "load":
                loads += 1
                w = kw.get("weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("pickle", "dill", "joblib", "cloudpickle") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
                problems.append(f"{where}: yaml.{name} (use yaml.safe_load)")
            if owner == "" and name in ("eval", "exec"):
                problems.append(f"{where}: {name}()")
            if name in ("load_state_dict_from_url", "load_url", "download_url_to_file"):
                problems.append(f"{where}: {name} (downloads and unpickles unsafely)")
            if name == "load" and owner in ("np", "numpy"):
                a = kw.get("allow_pickle")
                if a is not None and not (isinstance(a, ast.Constant) and a.value is False):
                    problems.append(f"{where}: np.load with allow_pickle")
            if name.startswith("vgg") and "weights" in kw:
                w = kw["weights"]
                if not (isinstance(w, ast.Constant) and w.value is None):
                    problems.append(f"{where}: torchvision {name}(weights=...) loads unsafely")
    assert loads >= 3  # the scan sees the loads it is meant to check
    assert not problems, problems


def test_payload_is_live(tmp_path, marker):
    """The payload works: without weights_only it runs (so the refusals below mean something)."""
    path = plant(tmp_path / "evil.ckpt", marker)
    loaded = torch.load(path, weights_only=False)
    loaded["state_dict"]["net.features.0.weight"].close()
    assert marker.exists()


def test_torch_and_lightning_default_to_weights_only(tmp_path, marker):
    """Lightning's own loads (resume: `trainer.fit(ckpt_path=…)`, `trainer.validate(ckpt_path=
    …)`) pass weights_only=None, i.e. torch's default, which refuses the payload."""
    import os

    from lightning.fabric.utilities.cloud_io import _load as lightning_load

    assert not os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")  # would flip the default
    path = plant(tmp_path / "evil.ckpt", marker)
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL io\.open"):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL io\.open"):
        lightning_load(path, map_location="cpu")
    assert not marker.exists()


# ----------------------------------------------------------------- our checkpoint loaders


def test_init_checkpoint_refuses_payload(tmp_path, marker):
    path = plant(tmp_path / "source" / "last.ckpt", marker)
    with pytest.raises(DataError, match=rf"{path}: {REFUSED}"):
        build_model(small_vgg(), {"name": "checkpoint", "path": str(path)}, 6)
    assert not marker.exists()


def test_load_checkpoint_refuses_payload(tmp_path, marker):
    from fer.checkpoint_io import load_checkpoint

    path = plant(tmp_path / "last.ckpt", marker)
    with pytest.raises((FerError, pickle.UnpicklingError)):
        load_checkpoint(path)
    assert not marker.exists()


def test_load_checkpoint_names_the_refused_file(tmp_path, marker):
    from fer.checkpoint_io import load_checkpoint

    path = plant(tmp_path / "last.ckpt", marker)
    with pytest.raises(DataError, match=str(path)):
        load_checkpoint(path)


def test_resume_sets_a_payload_aside(tmp_path, marker):
    from fer.train import _resume_checkpoint

    plant(tmp_path / "last.ckpt", marker)
    try:
        assert _resume_checkpoint(tmp_path) is None
        assert (tmp_path / "last.ckpt.corrupt").exists()
    finally:
        assert not marker.exists()


def test_evaluate_refuses_payload(make_cfg, synthetic_cache, marker):
    from hydra import compose, initialize_config_dir

    from fer.evaluate import evaluate

    run = fake_run(make_cfg, marker)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "evaluate", [f"runs={run}", f"paths.cache_dir={synthetic_cache}", "logger=none"]
        )
        with pytest.raises(DataError, match=rf"last\.ckpt: {REFUSED}"):
            evaluate(cfg)
    assert not marker.exists()


def test_predict_and_export_refuse_payload(make_cfg, synthetic_cache, tmp_path, marker):
    import cv2
    import numpy as np
    from hydra import compose, initialize_config_dir

    from fer.export import export
    from fer.predict import predict

    run = fake_run(make_cfg, marker)
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((64, 64, 3), 120, np.uint8))
    with initialize_config_dir(str(CONF), version_base="1.3"):
        pcfg = compose(
            "predict",
            [
                f"run={run}",
                f"input={photos}",
                f"out={tmp_path / 'out'}",
                f"paths.cache_dir={synthetic_cache}",
                "predict.progress=false",
                "predict.face_check=false",
            ],
        )
        ecfg = compose("export", [f"run={run}", f"out={tmp_path / 'export'}"])
    with pytest.raises(DataError, match=rf"last\.ckpt: {REFUSED}"):
        predict(pcfg)
    with pytest.raises(DataError, match=rf"last\.ckpt: {REFUSED}"):
        export(ecfg)
    assert not marker.exists()


# ----------------------------------------------------------- ImageNet files in the caches


@pytest.fixture
def caches(tmp_path, monkeypatch) -> dict[str, Path]:
    """Empty torch hub and Hugging Face caches; nothing may be downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"torch": tmp_path / "torch", "hf": tmp_path / "hf"}


def vgg16() -> dict:
    return {
        "arch": "vgg16",
        "name": "vgg16",
        "input": {"channels": 3, "size": 224, "mean": [0.5] * 3, "std": [0.25] * 3},
        "dropout": 0.5,
        "attention": None,
    }


def test_torchvision_loader_would_run_it(caches, marker):
    """The threat: torchvision's own `weights=` path unpickles the cached file unsafely."""
    from torchvision.models import VGG16_Weights

    plant(caches["torch"] / "hub" / "checkpoints" / "vgg16-397923af.pth", marker)
    loaded = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)  # what weights= calls
    loaded["state_dict"]["net.features.0.weight"].close()
    assert marker.exists()


def test_imagenet_vgg16_from_hub_cache_refuses_payload(caches, marker):
    from fer.models.checks import check_init

    planted = plant(caches["torch"] / "hub" / "checkpoints" / "vgg16-397923af.pth", marker)
    init = {"name": "imagenet", "weights_path": None}
    assert check_init(init, vgg16()) == []  # found in the cache: start-up checks pass
    with pytest.raises(DataError, match=rf"{planted}: {REFUSED}"):
        build_model(vgg16(), init, 6)
    assert not marker.exists()


def test_imagenet_weights_path_refuses_payload(tmp_path, marker):
    planted = plant(tmp_path / "my_vgg16.pth", marker)
    with pytest.raises(DataError, match=rf"{planted}: {REFUSED}"):
        build_model(vgg16(), {"name": "imagenet", "weights_path": str(planted)}, 6)
    assert not marker.exists()


def test_imagenet_timm_from_hf_cache_refuses_payload(caches, marker):
    """timm reads the cached file itself, with weights_only=True: refused, named."""
    snap = caches["hf"] / "models--timm--test_resnet.r160_in1k" / "snapshots" / "abc"
    planted = plant(snap / "pytorch_model.bin", marker)
    model = {
        "arch": "timm",
        "name": "test_resnet",
        "input": {"channels": 3, "size": 160, "mean": [0.5] * 3, "std": [0.25] * 3},
        "attention": None,
    }
    with pytest.raises(
        DataError,
        match=rf"{planted}: not loadable as ImageNet weights of timm model test_resnet: .*"
        r"weights_only=True blocked loading this checkpoint",
    ):
        build_model(model, {"name": "imagenet", "weights_path": None}, 6)
    assert not marker.exists()
