"""Preprocessing a manifest: unreadable files reported, cache hits and misses, Table 1, Haar."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from fer.data import faces as face_methods
from fer.data.manifest import Manifest
from fer.data.preprocess import Settings, excluded_report, load_faces, table1


def _astronaut(size: int = 256) -> np.ndarray:
    return cv2.resize(skdata.astronaut(), (size, size), interpolation=cv2.INTER_AREA)


def _write(path: Path, rgb: np.ndarray) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def _manifest(rows: list[tuple[str, str]]) -> Manifest:
    return Manifest.from_records(
        {"path": p, "label": label, "subject": f"s{i}", "dataset": "toy"}
        for i, (p, label) in enumerate(rows)
    )


@pytest.fixture
def messy(tmp_path: Path) -> Manifest:
    """Three good JPEGs and three that cannot be decoded: empty, cut in half, not an image."""
    good = [_write(tmp_path / f"ok{i}.jpg", np.roll(_astronaut(64), i, axis=1)) for i in range(3)]
    (tmp_path / "empty.jpg").write_bytes(b"")
    whole = (tmp_path / "ok0.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.png").write_text("not an image")
    bad = [str(tmp_path / n) for n in ("empty.jpg", "half.jpg", "text.png")]
    labels = ["anger", "happiness", "happiness", "anger", "happiness", "sadness"]
    return _manifest(list(zip(good + bad, labels, strict=True)))


def test_unreadable_images_are_skipped_reported_and_counted(messy, tmp_path):
    faces = load_faces(messy, Settings(method="none", size=32), tmp_path / "cache", progress=False)
    assert len(faces) == 3 and faces.images.shape == (3, 32, 32, 3)
    assert set(faces.frame["mask_source"]) == {"template"}
    report = excluded_report(faces)
    assert sorted(Path(p).name for p in report["path"]) == ["empty.jpg", "half.jpg", "text.png"]
    assert report["reason"].str.startswith("unreadable image").all()
    t1 = table1(messy, faces).set_index("class")
    assert t1.loc["anger"].to_dict() == {
        "original": 2,
        "processed": 1,
        "unreadable": 1,
        "excluded": 0,
        "excluded_pct": 50.0,
    }
    assert t1.loc["sadness", "processed"] == 0 and t1.loc["sadness", "unreadable"] == 1
    assert t1["original"].to_dict() == messy.counts()  # Table 1's "original" is the scan


def test_second_run_hits_cache_and_changed_settings_miss(tmp_path, monkeypatch):
    manifest = _manifest([(_write(tmp_path / "a.jpg", _astronaut()), "happiness")])
    calls = []
    real = face_methods.LandmarkFaces.__call__

    def counting(self, rgb):
        calls.append(1)
        return real(self, rgb)

    monkeypatch.setattr(face_methods.LandmarkFaces, "__call__", counting)
    cache = tmp_path / "cache"
    settings = Settings(method="landmarks", size=64, margin=0.25)
    first = load_faces(manifest, settings, cache, progress=False)
    assert len(calls) == 1 and first.frame["excluded"].tolist() == [""]
    again = load_faces(manifest, settings, cache, progress=False)
    assert len(calls) == 1  # no detector call
    assert np.array_equal(np.asarray(again.images), first.images)
    assert isinstance(again.images, np.memmap)
    load_faces(manifest, Settings(method="landmarks", size=64, margin=0.3), cache, progress=False)
    assert len(calls) == 2  # another margin: a miss
    _write(tmp_path / "a.jpg", np.fliplr(_astronaut()))  # same path, new content
    load_faces(manifest, settings, cache, progress=False)
    assert len(calls) == 3


def test_corrupt_cache_is_rebuilt(tmp_path):
    manifest = _manifest([(_write(tmp_path / "a.jpg", _astronaut(32)), "anger")])
    settings = Settings(method="none", size=16)
    load_faces(manifest, settings, tmp_path / "cache", progress=False)
    (npy,) = (tmp_path / "cache").glob("*/images.npy")
    npy.write_bytes(npy.read_bytes()[:40])  # truncated
    faces = load_faces(manifest, settings, tmp_path / "cache", progress=False)
    assert faces.images.shape == (1, 16, 16, 3)


def test_haar_excludes_a_face_without_eyes_and_keeps_a_fallback_crop(tmp_path):
    img = _astronaut()
    no_eyes = img.copy()
    no_eyes[44:62, 88:110] = img[70:71, 110:111]  # paint one eye over with cheek skin
    manifest = _manifest(
        [
            (_write(tmp_path / "ok.jpg", img), "happiness"),
            (_write(tmp_path / "noeyes.jpg", no_eyes), "happiness"),
        ]
    )
    faces = load_faces(manifest, Settings(method="haar", size=64), tmp_path / "c", progress=False)
    reasons = dict(
        zip(faces.frame["path"].map(lambda p: Path(p).name), faces.frame["excluded"], strict=True)
    )
    assert reasons["ok.jpg"] == ""
    assert reasons["noeyes.jpg"] != ""  # excluded, with its reason...
    assert len(faces) == 2  # ...but it keeps a fallback crop (evaluation on every face)
    excluded = faces.frame["excluded"] != ""
    assert faces.masks[excluded.to_numpy()].sum() == 0
    t1 = table1(manifest, faces).set_index("class")
    assert t1.loc["happiness", "processed"] == 1 and t1.loc["happiness", "excluded"] == 1


def test_none_keeps_the_crop_and_takes_landmark_masks_when_found(tmp_path):
    face = cv2.resize(skdata.astronaut()[30:240, 140:320], (96, 96), interpolation=cv2.INTER_AREA)
    manifest = _manifest([(_write(tmp_path / "crop.png", face), "happiness")])
    faces = load_faces(manifest, Settings(method="none", size=96), tmp_path / "c", progress=False)
    assert faces.frame["mask_source"].tolist() == ["landmarks"]
    assert np.abs(faces.images[0].astype(int) - face.astype(int)).max() <= 2  # no geometry change
    eyes, mouth = (np.argwhere(faces.masks[0, r])[:, 0].mean() for r in (0, 1))
    assert eyes < 48 < mouth
