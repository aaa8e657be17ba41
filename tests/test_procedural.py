"""The non-face pretraining set (data=procedural_objects): classes, determinism, no masks, the
class check, the pretraining preset, and evaluate.py refusing it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fer import runs
from fer.data import procedural as pr
from fer.data.manifest import Manifest
from fer.data.sources.procedural import NO_ROI, scan
from fer.errors import ConfigError, DataError
from fer.evaluate import evaluate_run, refuse_pretraining
from fer.labels import CANONICAL, OBJECTS, check_classes

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def test_renders_every_class_deterministically():
    s = pr.render_set(3, seed=0, size=32)
    assert len(pr.CLASSES) >= 10 and not set(pr.CLASSES) & set(CANONICAL)
    assert s.images.shape == (3 * len(pr.CLASSES), 32, 32, 3) and s.images.dtype == np.uint8
    assert s.labels == [c for c in pr.CLASSES for _ in range(3)]
    assert s.groups[:3] == ["objects_g00", "objects_g01", "objects_g02"]
    np.testing.assert_array_equal(s.images, pr.render_set(3, seed=0, size=32).images)
    other = pr.render_set(3, seed=1, size=32)
    assert (s.images != other.images).mean() > 0.5
    # Each image has its own stream: a subset of classes renders the same images.
    part = pr.render_set(3, seed=0, size=32, classes=["ring", "dots"])
    ring = pr.CLASSES.index("ring") * 3
    np.testing.assert_array_equal(part.images[:3], s.images[ring : ring + 3])
    with pytest.raises(ValueError, match="anger"):
        pr.render_set(1, seed=0, classes=["anger"])


def test_classes_differ_in_what_is_drawn():
    # The mean image per class differs between classes (not one picture relabelled).
    s = pr.render_set(8, seed=0, size=32)
    means = s.images.reshape(len(pr.CLASSES), 8, -1).astype(float).mean(axis=1)
    d = np.abs(means[:, None] - means[None]).mean(axis=2)
    assert (d[~np.eye(len(pr.CLASSES), dtype=bool)] > 1.0).all()


def test_scan_has_no_roi_masks_and_pseudo_subjects(tmp_path):
    m = scan(tmp_path, n_per_class=2, seed=0, size=32, n_groups=2)
    assert isinstance(m, Manifest) and len(m) == 2 * len(OBJECTS)
    f = m.frame
    assert set(f["label"]) == set(OBJECTS) and set(f["subject"]) == {"objects_g00", "objects_g01"}
    assert set(f["dataset"]) == {"procedural_objects"}
    (mask,) = set(f["mask_path"])  # one shared, empty mask: no face, no region
    assert Path(mask).name == NO_ROI and not cv2.imread(mask, cv2.IMREAD_UNCHANGED).any()
    again = scan(tmp_path, n_per_class=2, seed=0, size=32, n_groups=2)
    assert list(again.frame["path"]) == list(f["path"])  # the cache is reused
    with pytest.raises(ConfigError, match="unknown object class"):
        scan(tmp_path, classes=["disc", "happiness"])


def test_class_check_accepts_a_pretraining_list_but_never_a_mix():
    assert check_classes(["dots", "disc"]) == ("disc", "dots")  # the set's own order
    assert check_classes(list(OBJECTS)) == OBJECTS
    with pytest.raises(ConfigError, match="unknown class"):
        check_classes(["disc", "anger"])
    with pytest.raises(ConfigError, match="repeated"):
        check_classes(["disc", "disc"])
    rows = [
        dict(path="a", label="disc", subject="g", dataset="x", sequence="", frame=""),
        dict(path="b", label="anger", subject="g", dataset="x", sequence="", frame=""),
    ]
    with pytest.raises(DataError, match="non-canonical"):
        Manifest.from_records(rows)  # emotions and objects never mix in one manifest


def _compose(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_pretraining_preset_uses_the_object_set_and_init_drops_the_head():
    cfg = _compose("experiment=synthetic_pretrain")
    assert cfg.data.name == "procedural_objects" and cfg.data.pretraining is True
    assert list(cfg.classes) == list(OBJECTS)
    assert cfg.hydra.run.dir.endswith("pretrain/synthetic_pretrain")
    twin = _compose("experiment=arabian2022_synthetic")
    assert twin.init.name == "synthetic_pretrain" and twin.init.head == "drop"
    assert twin.init.path == f"{cfg.hydra.run.dir}/last.ckpt"  # what the pretraining writes
    study = OmegaConf.load(CONF / "study" / "arabian2022_synthetic.yaml")
    pretrain = next(s for s in study.stages if s.name == "pretrain")
    assert "experiment=synthetic_pretrain" in pretrain.overrides


def test_evaluate_refuses_pretraining_data(tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        data = compose("train", overrides=["data=procedural_objects"]).data
        face = compose("train", overrides=["data=synthetic_gray"]).data
        ev = compose(
            "evaluate",
            overrides=[f"runs={tmp_path}", "eval.datasets=[procedural_objects]", "logger=none"],
        )
        face_run = OmegaConf.create({"data": face})
        refuse_pretraining(tmp_path, face_run, [face])  # a FER run on FER data: fine
        with pytest.raises(ConfigError, match="procedural_objects is pretraining data"):
            refuse_pretraining(tmp_path, face_run, [data])
        with pytest.raises(ConfigError, match="trained on pretraining data"):
            refuse_pretraining(tmp_path, OmegaConf.create({"data": data}), [])
        # Through evaluate_run, before any data or weights are loaded.
        runs.ensure_config(tmp_path, {"data": OmegaConf.to_container(face), "eval": {}})
        runs.write_metrics(tmp_path, {"status": "finished"})
        with pytest.raises(ConfigError, match="never evaluated"):
            evaluate_run(tmp_path, ev)
