"""Overlap metrics on hand-made arrays: textbook values and every documented edge case."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fer.errors import ConfigError
from fer.explain import overlap as ov


def square(top: int, left: int, size: int = 4, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


# ----------------------------------------------------------------------------- DICE / IoU


def test_dice_iou_textbook_values():
    a, b = square(2, 2), square(2, 4)  # 4x4 squares offset by 2 px: |A∩B| = 8, |A∪B| = 24
    assert ov.dice(a, b) == pytest.approx(0.5)
    assert ov.iou(a, b) == pytest.approx(1 / 3)
    assert ov.dice(a, a) == 1.0 and ov.iou(a, a) == 1.0
    assert ov.dice(a, square(6, 6)) == 0.0 and ov.iou(a, square(6, 6)) == 0.0
    assert isinstance(ov.dice(a, b), float)
    # {0, 1} floats and bools agree; IoU = DICE / (2 - DICE)
    assert ov.dice(a.astype(float), b.astype(np.uint8)) == pytest.approx(0.5)


def test_dice_iou_vectorised_and_broadcast():
    a = np.stack([square(2, 2), square(2, 2), square(2, 2)])
    b = np.stack([square(2, 4), square(2, 2), square(6, 6)])
    np.testing.assert_allclose(ov.dice(a, b), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(ov.iou(a, b), [1 / 3, 1.0, 0.0])
    np.testing.assert_allclose(ov.dice(square(2, 2), b), [0.5, 1.0, 0.0])  # one map, N masks


def test_empty_mask_is_nan_and_empty_prediction_is_zero():
    empty = np.zeros((10, 10), bool)
    assert math.isnan(ov.dice(square(2, 2), empty)) and math.isnan(ov.iou(square(2, 2), empty))
    assert math.isnan(ov.dice(empty, empty)) and math.isnan(ov.iou(empty, empty))
    assert ov.dice(empty, square(2, 2)) == 0.0 and ov.iou(empty, square(2, 2)) == 0.0


# ----------------------------------------------------------------------------- maps


def test_binarize_and_all_zero_map():
    cam = np.array([[0.0, 0.49], [0.5, 1.0]])
    np.testing.assert_array_equal(ov.binarize(cam), [[False, False], [True, True]])
    zero = np.zeros((10, 10))
    assert not ov.binarize(zero).any()
    assert ov.dice(ov.binarize(zero), square(2, 2)) == 0.0  # stated: empty prediction -> 0


def test_area_matched_selects_exact_fraction_even_with_ties():
    rng = np.random.default_rng(0)
    cam = np.round(rng.random((10, 10)), 1)  # many ties
    sel = ov.area_matched(cam, 0.10)
    assert sel.sum() == 10
    assert cam[sel].min() >= cam[~sel].max()  # the top values, ties cut deterministically
    flat = ov.area_matched(np.zeros((10, 10)), 0.10)
    assert flat.sum() == 10 and flat[0].all()  # all tied: the first 10 in row-major order
    np.testing.assert_array_equal(ov.area_matched(cam, 0.10), sel)  # deterministic
    assert ov.area_matched(cam, 0.0).sum() == 0 and ov.area_matched(cam, 1.0).all()
    # per-map fractions over a stack: k = round(fraction * H * W)
    stack = ov.area_matched(np.stack([cam, cam, cam]), np.array([0.1, 0.25, 0.333]))
    np.testing.assert_array_equal(stack.sum(axis=(1, 2)), [10, 25, 33])
    with pytest.raises(ValueError):
        ov.area_matched(cam, 1.5)


def test_renormalize():
    cam = np.array([[0.2, 0.3], [0.4, 0.2]])
    np.testing.assert_allclose(ov.renormalize(cam), [[0.0, 0.5], [1.0, 0.0]])
    np.testing.assert_array_equal(ov.renormalize(np.full((3, 3), 0.7)), np.zeros((3, 3)))
    both = ov.renormalize(np.stack([cam, np.full((2, 2), 0.3)]))  # per map
    np.testing.assert_allclose(both, [[[0.0, 0.5], [1.0, 0.0]], np.zeros((2, 2))])


# ----------------------------------------------------------------------------- threshold-free


def test_energy_inside():
    cam = np.zeros((4, 4))
    cam[0, 0], cam[3, 3] = 1.0, 3.0
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    assert ov.energy_inside(cam, mask) == pytest.approx(0.75)
    assert ov.energy_inside(np.full((4, 4), 0.5), mask) == pytest.approx(1 / 16)  # chance
    assert math.isnan(ov.energy_inside(np.zeros((4, 4)), mask))  # all-zero map: 0/0
    assert math.isnan(ov.energy_inside(cam, np.zeros((4, 4))))  # empty mask


def test_pointing_game_ties_and_edge_cases():
    cam = np.zeros((5, 5))
    cam[0, 0] = cam[4, 4] = 1.0  # tied maximum
    mask = np.zeros((5, 5), bool)
    mask[4, 4] = True
    assert ov.pointing_game(cam, mask) == 1.0  # one tied pixel inside -> hit
    mask_miss = np.zeros((5, 5), bool)
    mask_miss[2, 2] = True
    assert ov.pointing_game(cam, mask_miss) == 0.0
    assert math.isnan(ov.pointing_game(cam, np.zeros((5, 5))))  # empty mask: never a hit
    assert math.isnan(ov.pointing_game(np.zeros((5, 5)), mask))  # all-zero map: no max
    assert math.isnan(ov.pointing_game(np.full((5, 5), 0.3), mask))  # constant map: no max
    got = ov.pointing_game(
        np.stack([cam, cam, np.zeros((5, 5))]), np.stack([mask, mask_miss, mask])
    )
    np.testing.assert_array_equal(got, [1.0, 0.0, np.nan])


# ----------------------------------------------------------------------------- means


def test_nan_mean_skips_and_counts():
    assert ov.nan_mean([1.0, float("nan"), 3.0, None]) == (2.0, 2, 2)
    mean, n, n_nan = ov.nan_mean(np.full(3, np.nan))
    assert math.isnan(mean) and (n, n_nan) == (0, 3)
    assert ov.summary(np.array([0.0, 1.0, np.inf])) == {"mean": 0.5, "n": 2, "n_nan": 1}


# ----------------------------------------------------------------------------- class mean


def test_class_mean_equal_maps_give_one_and_nan_classes_are_counted():
    roi0, roi1 = square(0, 0, shape=(8, 8)), square(4, 4, shape=(8, 8))
    masks = np.stack([roi0, roi0, roi1, np.zeros((8, 8), bool)])[:, None]  # R = 1
    cams = masks[:, 0].astype(float)
    cams[3] = 1.0  # class 2: empty ROI -> NaN
    labels = np.array([0, 0, 1, 2])
    res = ov.class_mean_overlap(cams, masks, labels, ["anger", "disgust", "fear", "happiness"])
    assert res["dice"]["per_class"]["anger"] == 1.0 and res["iou"]["per_class"]["disgust"] == 1.0
    assert math.isnan(res["dice"]["per_class"]["fear"])  # empty class-mean ROI
    assert math.isnan(res["dice"]["per_class"]["happiness"])  # no images
    assert res["dice"]["mean"] == 1.0 and res["dice"]["n_nan"] == 2 and res["dice"]["n"] == 2
    assert res["per_class"]["happiness"]["n_images"] == 0
    assert res["per_class"]["anger"]["roi_area"] == pytest.approx(16 / 64)
    # labels given as names give the same answer
    named = ov.class_mean_overlap(
        cams, masks, np.array(["anger", "anger", "disgust", "fear"]), ["anger", "disgust"]
    )
    assert named["dice"]["per_class"] == {"anger": 1.0, "disgust": 1.0}


def test_class_mean_renormalisation_matters():
    # ROI: the top two rows of a 6x6 face; three images light up a different third of it each,
    # so the raw class-mean CAM is 1/3 on the ROI (below 0.5 everywhere) and 0 elsewhere.
    mask = np.zeros((6, 6), bool)
    mask[:2] = True
    cams = np.zeros((3, 6, 6))
    for i in range(3):
        cams[i, :2, 2 * i : 2 * i + 2] = 1.0
    masks = np.repeat(mask[None, None], 3, axis=0)
    raw_mean = cams.mean(axis=0)
    assert raw_mean.max() < 0.5 and ov.dice(ov.binarize(raw_mean), mask) == 0.0
    res = ov.class_mean_overlap(cams, masks, np.zeros(3, int), ["anger"])
    assert res["dice"]["mean"] == 1.0 and res["iou"]["mean"] == 1.0


def test_class_mean_roi_threshold_and_regions():
    # eyes on rows 0-1, mouth on rows 4-5; the CAM looks only at the mouth
    eyes, mouth = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    eyes[:2], mouth[4:] = True, True
    masks = np.repeat(np.stack([eyes, mouth, np.zeros((6, 6), bool)])[None], 2, axis=0)
    cams = np.repeat(mouth[None].astype(float), 2, axis=0)
    res = ov.class_mean_overlap(cams, masks, np.array([0, 0]), ["anger"])
    assert res["dice"]["mean"] == pytest.approx(2 / 3)  # 2 * 12 / (12 predicted + 24 ROI)
    assert res["regions"] == ["eyes_brows", "mouth", "nose"]
    assert res["per_region"]["mouth"]["dice"]["mean"] == 1.0
    assert res["per_region"]["eyes_brows"]["dice"]["mean"] == 0.0
    assert res["per_region"]["nose"]["dice"]["n_nan"] == 1  # empty channel
    only_mouth = ov.class_mean_overlap(cams, masks, np.array([0, 0]), ["anger"], regions=["mouth"])
    assert only_mouth["dice"]["mean"] == 1.0
    with pytest.raises(ConfigError):
        ov.class_mean_overlap(cams, masks, np.array([0, 0]), ["anger"], regions=["ears"])
    # class-mean ROI: a pixel inside the ROI of one image in three (< 0.5) is out
    m3 = np.zeros((3, 1, 6, 6), bool)
    m3[:, 0, :2] = True
    m3[0, 0, 4:] = True
    c3 = np.zeros((3, 6, 6))
    c3[:, :2] = 1.0
    assert ov.class_mean_overlap(c3, m3, np.zeros(3, int), ["anger"])["dice"]["mean"] == 1.0


# ----------------------------------------------------------------------------- per image


def test_per_image_overlap_summaries_and_edge_cases():
    roi = square(2, 4)
    masks = np.stack([roi, roi, np.zeros((10, 10), bool)])[:, None]
    cams = np.stack([square(2, 2).astype(float), np.zeros((10, 10)), roi * 0.9])
    res = ov.per_image_overlap(cams, masks)
    assert res["dice"] == {"mean": 0.25, "n": 2, "n_nan": 1}  # 0.5 and 0.0 (all-zero map)
    assert res["iou"]["mean"] == pytest.approx(1 / 6)
    # area-matched: k = 16 pixels = |ROI|; the all-zero map is NaN (no ranking), counted
    assert res["dice_area_matched"] == {"mean": 0.5, "n": 1, "n_nan": 2}
    assert res["energy_inside"] == {"mean": 0.5, "n": 1, "n_nan": 2}
    assert res["pointing_game"]["n_nan"] == 2 and res["pointing_game"]["n"] == 1
    assert res["n_images"] == 3 and set(res["per_region"]) == {"eyes_brows"}
    scores = ov.per_image_scores(cams, masks[:, 0])
    assert scores["dice"].shape == (3,)
    cams[0, 0, 0] = np.nan  # a broken map scores NaN everywhere, never 0
    assert all(np.isnan(v[0]) for v in ov.per_image_scores(cams, masks[:, 0]).values())


def test_area_matched_random_vs_gaussian_baseline():
    rng = np.random.default_rng(1)
    roi = np.zeros((16, 16), bool)
    roi[5:11, 5:11] = True  # a centred ROI
    masks = np.repeat(roi[None, None], 20, axis=0)
    gauss = ov.per_image_overlap(ov.gaussian_baseline((20, 16, 16)), masks)
    rand = ov.per_image_overlap(ov.random_baseline((20, 16, 16), rng), masks)
    assert gauss["dice_area_matched"]["mean"] > 0.9  # a disc of 36 pixels vs a 6x6 square
    assert rand["dice_area_matched"]["mean"] < 0.4  # about the ROI area fraction, 36/256
    assert gauss["energy_inside"]["mean"] > rand["energy_inside"]["mean"]


def test_gaussian_beats_random_on_synthetic_faces():
    """On the rendered faces' own ROI masks (eyes+brows, mouth), as the baselines must."""
    from fer.data.synthetic import render_set

    masks = render_set("lab", 3, 1, seed=0, size=48).masks[:, :2]
    shape = (len(masks), 48, 48)
    gauss = ov.per_image_overlap(ov.gaussian_baseline(shape), masks)
    rand = ov.per_image_overlap(ov.random_baseline(shape, np.random.default_rng(0)), masks)
    for key in ("dice_area_matched", "energy_inside", "iou_area_matched"):
        assert gauss[key]["mean"] > rand[key]["mean"], key


# ----------------------------------------------------------------------------- baselines


def test_gaussian_baseline():
    g = ov.gaussian_baseline((9, 11))
    assert g.shape == (9, 11) and g.min() == 0.0 and g.max() == 1.0
    assert np.unravel_index(g.argmax(), g.shape) == (4, 5)
    assert ov.gaussian_baseline((3, 9, 11)).shape == (3, 9, 11)
    off = ov.gaussian_baseline((9, 9), center=(0.25, 0.75))
    assert np.unravel_index(off.argmax(), off.shape) == (2, 6)
    r = ov.random_baseline((2, 5, 5), np.random.default_rng(0))
    assert r.shape == (2, 5, 5) and r.min() >= 0 and r.max() < 1


def test_spearman_maps():
    rng = np.random.default_rng(2)
    a = rng.random((8, 8))
    assert ov.spearman_maps(a, a) == pytest.approx(1.0)
    assert ov.spearman_maps(a, -a) == pytest.approx(-1.0)
    assert ov.spearman_maps(a, a**3) == pytest.approx(1.0)  # ranks only
    assert math.isnan(ov.spearman_maps(a, np.zeros((8, 8))))
    assert math.isnan(ov.spearman_maps(np.full((8, 8), 0.5), a))
    got = ov.spearman_maps(np.stack([a, a]), np.stack([a, np.zeros((8, 8))]))
    assert got[0] == pytest.approx(1.0) and math.isnan(got[1])
    assert ov.nan_mean(got)[1:] == (1, 1)  # the constant map is skipped and counted
