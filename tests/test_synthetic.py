"""Tests of the procedural face renderer: determinism, exact masks, domains, speed, preview."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.data import synthetic as syn
from fer.data.sources.synthetic import scan
from fer.errors import ConfigError
from fer.naming import code_hash, short_hash


def _pair(domain: str, subject: int, cls: str, size: int = 64):
    """Render one face with and without its features, from the same random stream."""
    idt = syn.make_identities(domain, subject + 1, seed=0)[subject]
    full, masks = syn.render_face(
        idt, cls, 1.0, domain, syn._image_rng(0, domain, subject, cls, 0), size
    )
    bare, masks2 = syn.render_face(
        idt, cls, 1.0, domain, syn._image_rng(0, domain, subject, cls, 0), size, _features=False
    )
    np.testing.assert_array_equal(masks, masks2)
    # Noise is identical in both renders, so any difference comes from the features.
    changed = np.abs(full.astype(int) - bare.astype(int)).max(axis=2) > 8
    return changed, masks


def test_render_set_shapes_and_labels():
    s = syn.render_set("lab", n_subjects=2, per_class=2, seed=1, size=32)
    n = 2 * len(syn.CLASSES) * 2
    assert s.images.shape == (n, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.masks.shape == (n, len(syn.REGIONS), 32, 32) and s.masks.dtype == bool
    assert s.labels[:4] == ["anger", "anger", "disgust", "disgust"]
    assert s.subjects[0] == "lab_s000" and s.subjects[-1] == "lab_s001"
    neutral = np.array(s.labels) == "neutral"
    assert (s.intensities[neutral] == 0).all()
    lo, hi = syn.DOMAINS["lab"].intensity
    assert ((s.intensities[~neutral] >= lo) & (s.intensities[~neutral] <= hi)).all()
    # Every face has every region (features are never fully hidden).
    assert s.masks.any(axis=(2, 3)).all()


def test_deterministic_and_seed_dependent():
    a = syn.render_set("gray", 2, 1, seed=5, size=32)
    b = syn.render_set("gray", 2, 1, seed=5, size=32)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    c = syn.render_set("gray", 2, 1, seed=6, size=32)
    assert (a.images != c.images).mean() > 0.5


def test_images_do_not_depend_on_other_images():
    # Each image's stream comes from (seed, domain, subject, class, k) alone.
    full = syn.render_set("lab", 3, 2, seed=2, size=32)
    part = syn.render_set("lab", 2, 1, seed=2, size=32, classes=["fear"])
    idx = [
        i
        for i, (lab, sub) in enumerate(zip(full.labels, full.subjects, strict=True))
        if lab == "fear" and sub in ("lab_s000", "lab_s001")
    ][::2]  # k == 0 of each subject
    np.testing.assert_array_equal(full.images[idx], part.images)
    np.testing.assert_array_equal(full.masks[idx], part.masks)


@pytest.mark.parametrize("domain", ["lab", "gray", "aged", "pretrain"])
def test_masks_cover_exactly_the_drawn_features(domain):
    inside, shifted = [], []
    for subject, cls in enumerate(("disgust", "fear", "happiness")):
        changed, masks = _pair(domain, subject, cls)
        union = masks.any(axis=0)
        grown = cv2.dilate(union.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        inside.append((changed & grown).sum() / changed.sum())
        shifted.append((changed & np.roll(union, 3, axis=0)).sum() / changed.sum())
        for r, region in enumerate(syn.REGIONS):
            assert (changed & masks[r]).sum() >= 10, f"{region} mask misses its feature"
    assert min(inside) >= 0.95
    # The same check on masks moved by 3 px fails: it really tests alignment.
    assert np.mean(shifted) < 0.85


def test_grey_domain_is_grey_and_colour_domain_is_not():
    g = syn.render_set("gray", 1, 1, seed=0, size=32).images
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    c = syn.render_set("lab", 1, 1, seed=0, size=32).images
    assert (c[..., 0] != c[..., 2]).any()


def test_aged_has_no_surprise():
    assert "surprise" not in syn.DOMAINS["aged"].classes
    s = syn.render_set("aged", 1, 1, seed=0, size=32)
    assert "surprise" not in s.labels and len(set(s.labels)) == len(syn.CLASSES) - 1
    with pytest.raises(ValueError, match="surprise"):
        syn.render_set("aged", 1, 1, seed=0, size=32, classes=["fear", "surprise"])


def test_unknown_domain_and_expression_raise():
    with pytest.raises(ValueError, match="nowhere"):
        syn.make_identities("nowhere", 1, 0)
    idt = syn.make_identities("lab", 1, 0)[0]
    with pytest.raises(ValueError, match="contempt"):
        syn.render_face(idt, "contempt", 1.0, "lab", np.random.default_rng(0))


def test_required_domains_and_disjoint_subjects():
    assert {"lab", "gray", "aged", "pretrain"} <= set(syn.DOMAINS)
    assert syn.DOMAINS["gray"].grey and not syn.DOMAINS["lab"].grey
    assert syn.DOMAINS["gray"].default_subjects == 10
    pre = {i.subject for i in syn.make_identities("pretrain", 20, seed=0)}
    lab = {i.subject for i in syn.make_identities("lab", 20, seed=0)}
    assert len(pre) == 20 and not pre & lab


def test_identities_differ_between_subjects():
    ids = syn.make_identities("lab", 6, seed=0)
    assert len({(i.face_w, i.eye_spacing, i.skin) for i in ids}) == 6
    assert syn.make_identities("lab", 6, seed=0) == ids


def test_render_set_speed():
    start = time.perf_counter()
    s = syn.render_set("lab", 10, 10, seed=0, size=64, classes=syn.CLASSES[:6])
    elapsed = time.perf_counter() - start
    assert len(s.labels) == 600
    assert elapsed < 6.0, f"600 faces took {elapsed:.1f}s"


def test_save_preview_grid(tmp_path):
    size = 32
    out = syn.save_preview_grid(tmp_path / "sub" / "grid.png", size=size, seed=0)
    img = cv2.imread(str(out))
    assert img is not None
    # 1.25 * size per cell; one extra 0.6 cell column of labels and a 0.8 cell header row.
    cell = 1.25 * size
    assert img.shape[:2] == (
        round(cell * (len(syn.CLASSES) + 0.8)),
        round(cell * (len(syn.DOMAINS) + 0.6)),
    )


# ----------------------------------------------------------------------------- signal regions


def _signal_renders(signal: str, subject: int, seed: int = 0):
    """Every class of one subject, each from the same random stream (only the class changes)."""
    idt = syn.make_identities("lab", subject + 1, seed=0)[subject]
    return {
        cls: syn.render_face(
            idt, cls, 1.0, "lab", np.random.default_rng([seed, subject]), 64, signal=signal
        )
        for cls in syn.CLASSES
    }


def test_signal_keeps_only_its_region_parameters():
    keep = {
        s: {p for p, k in zip(syn._PARAMS, v, strict=True) if k}
        for s, v in syn._SIGNAL_KEEP.items()
        if v is not None
    }
    assert keep["mouth"] == {
        "mouth_curve",
        "mouth_open",
        "mouth_width",
        "mouth_box",
        "lip_press",
        "upper_lip",
        "teeth_up",
        "teeth_low",
    }
    assert keep["eyes"] == {
        "brow_raise",
        "brow_inner",
        "brow_together",
        "brow_arch",
        "eye_open",
        "cheek",
    }
    assert "nose_wrinkle" not in keep["mouth"] | keep["eyes"]
    assert syn._SIGNAL_KEEP["face"] is None and set(syn.SIGNALS) == {"face", "mouth", "eyes"}


@pytest.mark.parametrize(("signal", "region"), [("mouth", "mouth"), ("eyes", "eyes_brows")])
def test_signal_class_changes_only_its_region(signal, region):
    r = syn.REGIONS.index(region)
    others = [i for i in range(len(syn.REGIONS)) if i != r]
    kernel = np.ones((5, 5), np.uint8)  # a 2-px margin: anti-aliasing and the mild blur
    for subject in (0, 1):
        faces = _signal_renders(signal, subject)
        ref, ref_masks = faces["neutral"]
        for cls, (img, masks) in faces.items():
            if cls == "neutral":
                continue
            changed = (img != ref).any(axis=2)
            assert changed.sum() >= 30, f"{signal}: {cls} looks like neutral"
            near = cv2.dilate((masks[r] | ref_masks[r]).astype(np.uint8), kernel) > 0
            assert not (changed & ~near).any(), f"{signal}: {cls} changes pixels off the {region}"
            # The other regions' masks (which follow their features) do not move with the class.
            np.testing.assert_array_equal(masks[others], ref_masks[others])
    # The same check fails with the whole face carrying the class: it really tests something.
    faces = _signal_renders("face", 0)
    changed = (faces["surprise"][0] != faces["neutral"][0]).any(axis=2)
    masks = faces["surprise"][1][r] | faces["neutral"][1][r]
    assert (changed & ~(cv2.dilate(masks.astype(np.uint8), kernel) > 0)).sum() > 100


def test_signal_keeps_the_other_region_varying():
    # Resting offsets and jitter still move the eyes of a mouth-signal face (and vice versa).
    a = _signal_renders("mouth", 0, seed=1)["happiness"]
    b = _signal_renders("mouth", 0, seed=2)["happiness"]
    eyes = a[1][0] & b[1][0]
    assert (a[0][eyes] != b[0][eyes]).any(axis=1).mean() > 0.2


def test_signal_face_is_the_default_and_unchanged():
    a = syn.render_set("lab", 2, 1, seed=3, size=64)
    b = syn.render_set("lab", 2, 1, seed=3, size=64, signal="face")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.intensities, b.intensities)
    m = syn.render_set("lab", 2, 1, seed=3, size=64, signal="mouth")
    assert a.labels == m.labels and (a.images != m.images).any()
    np.testing.assert_array_equal(a.intensities, m.intensities)  # same random streams
    with pytest.raises(ValueError, match="nose"):
        syn.render_set("lab", 1, 1, seed=0, size=32, signal="nose")


def test_scan_signal_cache_folder_and_validation(tmp_path):
    kw = dict(domain="lab", n_subjects=2, per_class=1, seed=0, size=64, classes=["anger", "fear"])
    plain = scan(tmp_path, **kw)
    face = scan(tmp_path, **kw, signal="face")
    mouth = scan(tmp_path, **kw, signal="mouth")
    eyes = scan(tmp_path, **kw, signal="eyes")
    folder = {
        k: {Path(p).parents[2] for p in m.frame["path"]}
        for k, m in dict(plain=plain, face=face, mouth=mouth, eyes=eyes).items()
    }
    assert all(len(v) == 1 for v in folder.values())
    # "face" hashes exactly the pre-signal params (and the renderer's code).
    old = "lab-" + short_hash(json.dumps(kw, sort_keys=True) + code_hash(syn))
    assert folder["plain"] == folder["face"] == {tmp_path / old}
    assert len(folder["mouth"] | folder["eyes"] | folder["face"]) == 3
    (mouth_dir,) = folder["mouth"]
    assert json.loads((mouth_dir / "params.json").read_text())["signal"] == "mouth"
    assert "signal" not in json.loads((tmp_path / old / "params.json").read_text())
    with pytest.raises(ConfigError, match=r"data\.source\.signal.*'face', 'mouth', 'eyes'"):
        scan(tmp_path, **kw, signal="nose")
