"""Tests of the procedural face renderer: determinism, exact masks, domains, speed, preview."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from fer.data import synthetic as syn


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
