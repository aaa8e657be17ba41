"""evaluate(): a finished run scored on its held-out subset and on another dataset, whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import train_tiny_run
from hydra import compose, initialize_config_dir

from fer.errors import ConfigError, DataError
from fer.evaluate import evaluate, expand_runs
from fer.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    return train_tiny_run(tmp_path_factory.mktemp("evalrun"), epochs=1)


def _eval_cfg(run: str, cache: Path, *extra: str):
    return compose(
        "evaluate", overrides=[f"runs={run}", f"paths.cache_dir={cache}", "logger=none", *extra]
    )


def test_held_out_and_cross_dataset_json(finished_run):
    run, cache = finished_run
    with initialize_config_dir(str(CONF), version_base="1.3"):
        written = evaluate(_eval_cfg(str(run), cache, "eval.datasets=[synthetic_gray]"))
    names = sorted(p.name for p in written)
    assert names == ["synthetic_gray.json", "synthetic_lab.json"]
    out = run / "eval" / "last__gradcam__label"
    lab = json.loads((out / "synthetic_lab.json").read_text())
    gray = json.loads((out / "synthetic_gray.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert lab["subset"] == "val" and gray["subset"] == "whole"
    assert lab["size"] == metrics["data"]["source"]["val"]["size"]
    assert lab["scores"]["acc"] == pytest.approx(metrics["scores"]["synthetic_lab"]["acc"])
    assert gray["size"] == 10 * 3 * 6  # 10 subjects x 3 per class x 6 classes, all scored
    overlap = gray["overlap"]
    for key in ("dice", "iou", "pointing_game", "energy_inside", "dice_area_matched"):
        assert key in overlap["per_image"] and key in overlap["baselines"]["gaussian"]
    assert set(overlap["class_mean"]["dice"]["per_class"]) == set(lab["classes"])
    for fig in ("confusion", "class_cams", "cam_examples"):
        assert (out / f"synthetic_gray_{fig}.png").stat().st_size > 0
    assert gray["figures"]["class_cams"] == "synthetic_gray_class_cams.png"
    assert gray["faces_shown"] is True  # synthetic faces: show_images true
    # synthetic faces are all segmented: every-face reading equals the segmented one
    assert gray["scores_every_face"]["n_excluded"] == 0
    assert gray["scores_every_face"]["acc"] == gray["scores"]["acc"]
    assert gray["scores_shared_classes"]["acc"] >= gray["scores"]["acc"]  # fewer ways to err
    rho = gray["randomisation"]
    assert rho["n"] + rho["n_nan"] == gray["size"] and rho["spearman_mean"] < 0.9
    # nothing else was written into the run or its parent
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]


def test_faces_hidden_unless_the_licence_or_the_user_allows(finished_run):
    """synthetic_gray shows its faces (show_images: true); eval.show_faces=false hides them:
    no single-image overlays, class-mean maps over a blank face, recorded in the JSON."""
    run, cache = finished_run
    with initialize_config_dir(str(CONF), version_base="1.3"):
        [path] = evaluate(
            _eval_cfg(str(run), cache, "eval.show_faces=false", "eval.cam_target=pred")
        )
    result = json.loads(path.read_text())
    assert result["faces_shown"] is False and "examples" not in result["figures"]
    assert not (path.parent / "synthetic_lab_cam_examples.png").exists()
    assert (path.parent / "synthetic_lab_class_cams.png").exists()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for name in ("jaffe", "fer2013", "oulu_casia", "faces", "affectnet", "folder"):
            assert compose("train", overrides=[f"data={name}"]).data.show_images is False
        assert compose("train", overrides=["data=synthetic_gray"]).data.show_images is True


def test_glob_and_refusals(finished_run):
    run, cache = finished_run
    assert expand_runs(str(run.parent / "*")) == [run]
    with pytest.raises(DataError, match="no run directory"):
        expand_runs(str(run.parent / "nothing*"))
    with (
        initialize_config_dir(str(CONF), version_base="1.3"),
        pytest.raises(ConfigError, match="no inner validation split"),
    ):
        evaluate(_eval_cfg(str(run), cache, "eval.checkpoint=best"))


@pytest.mark.parametrize("form", ["dir", "glob"])
def test_entrypoint_takes_a_run_dir_or_a_glob(finished_run, form, tmp_path):
    import os
    import subprocess
    import sys

    run, cache = finished_run
    spec = str(run) if form == "dir" else str(run.parent / "r*")
    env = {**os.environ, "TMPDIR": str(tmp_path), "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"runs={spec}",
            f"paths.cache_dir={cache}",
            "eval.cam_method=gradcam++",
        ],
        cwd=CONF.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = run / "eval" / "last__gradcam++__label"
    assert (out / "synthetic_lab.json").exists()
    if form == "dir":  # the default logger: an offline W&B eval run inside the eval folder
        assert list((out / "wandb").glob("offline-run-*"))
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]  # nothing beside the run


def test_leaky_run_is_scored_on_its_own_images_and_labelled(make_cfg, tmp_path):
    """Image-level folds share subjects by design: evaluate scores the held-out images (never a
    trained one) and labels the numbers leaky instead of refusing."""
    cfg = make_cfg("split.group_by=none", run_dir=tmp_path / "outputs" / "x" / "leaky")
    train(cfg)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        [path] = evaluate(_eval_cfg(cfg.paths.run_dir, Path(cfg.paths.cache_dir)))
    result = json.loads(path.read_text())
    assert result["leaky"] is True and result["subset"] == "val"
    metrics = json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())
    assert result["size"] == metrics["data"]["source"]["val"]["size"]
