"""Overlap between class activation maps and face regions: the one definition of every number.

DESIGN.md "Overlap (study A's DICE/IoU)" and ../shared/STYLE.md §4 (Quantus: direction,
shapes, edge cases). Conventions used throughout:

- a CAM map is float in [0, 1], shape (H, W) or (N, H, W) (the grad-cam package min–max
  normalises each map per image);
- a mask is binary, bool or {0, 1}, (H, W) or (N, H, W): any non-zero pixel counts as inside;
- ROI masks per image are (N, R, H, W), channels in `fer.labels.REGIONS` order; "ROI" is the
  union of the chosen channels;
- functions reduce over the last two axes: a single map gives a float, a stack of N maps an
  (N,) array; maps and masks broadcast against each other (one baseline map vs N masks).

Edge cases (each one also in the function that owns it):

- an empty mask gives NaN for every score, never a hit and never a 0;
- an all-zero map gives NaN energy (0/0) and NaN pointing game (no maximum); binarised it
  is empty, so its DICE/IoU against a non-empty mask is 0.0;
- ties at the maximum count as inside when any tied pixel is inside;
- area matching uses fractions of the image, never absolute pixel counts;
- means skip NaN and report how many they skipped (DESIGN.md "Statistics").

Pure numpy (+ scipy for ranks): no torch, so the metrics run on any saved array.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from fer.errors import ConfigError
from fer.labels import REGIONS

_AXES = (-2, -1)


# --------------------------------------------------------------------------- helpers


def _out(x: np.ndarray) -> float | np.ndarray:
    """A 0-d result as a Python float, anything else as a float array."""
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def _binary(mask: Any) -> np.ndarray:
    """Bool view of a binary mask (non-zero = inside)."""
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def _maps(cam: Any) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim < 2:
        raise ValueError(f"a map needs at least 2 dims (H, W), got shape {cam.shape}")
    return cam


def _safe_div(num: np.ndarray, den: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """num / den where `valid`, NaN elsewhere (no warnings)."""
    num, den, valid = np.broadcast_arrays(
        np.asarray(num, np.float64), np.asarray(den, np.float64), valid
    )
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=valid)
    return out


def _is_flat(cam: np.ndarray) -> np.ndarray:
    """True per map where every pixel has the same value (or a value is NaN)."""
    lo = cam.min(axis=_AXES)
    hi = cam.max(axis=_AXES)
    return ~(hi > lo)


# --------------------------------------------------------------------------- maps


def binarize(cam: Any, threshold: float = 0.5) -> np.ndarray:
    """Binary map `cam >= threshold` (bool, same shape as `cam`).

    Args:
        cam: map(s) in [0, 1], (H, W) or (N, H, W).
        threshold: pixels at or above it are "on" (DESIGN.md default 0.5).

    Edge cases: an all-zero map gives an empty mask for any threshold > 0 (its DICE/IoU
    against a non-empty ROI is then 0.0). NaN pixels are off.
    """
    return _maps(cam) >= threshold


def area_matched(cam: Any, fraction: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Binary map of the top-`fraction` pixels of each map (bool, same shape as `cam`).

    Exactly k = floor(fraction * H * W + 0.5) pixels are on per map (round half up), whatever
    the values. With `fraction` = that image's ROI area |ROI| / (H * W), k = |ROI| exactly.

    Args:
        cam: map(s), (H, W) or (N, H, W).
        fraction: in [0, 1]; a scalar, or one value per map, shape (N,), for (N, H, W) input.

    Ties are broken deterministically by row-major position: among equal values the pixel
    with the smaller flat index (higher row, then further left) is taken first. A constant
    map therefore selects its first k pixels in row-major order — a meaningless selection,
    which is why `per_image_scores` reports area-matched scores of constant maps as NaN.
    NaN pixels rank last.
    """
    cam = _maps(cam)
    frac = np.asarray(fraction, dtype=np.float64)
    lead = cam.shape[:-2]
    if frac.ndim and frac.shape != lead:
        raise ValueError(f"fraction has shape {frac.shape}; expected a scalar or {lead}")
    if np.any(~((frac >= 0) & (frac <= 1))):
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    h, w = cam.shape[-2:]
    n_pix = h * w
    k = np.floor(np.broadcast_to(frac, lead) * n_pix + 0.5).astype(np.int64)
    flat = cam.reshape(-1, n_pix)
    order = np.argsort(-flat, axis=1, kind="stable")  # descending; stable keeps index order
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_pix), order.shape), axis=1)
    return (rank < k.reshape(-1, 1)).reshape(cam.shape)


def renormalize(cam: Any) -> np.ndarray:
    """Min–max rescale each map to [0, 1] (float64, same shape).

    Edge cases: a constant map (all-zero included) becomes all zeros — it has no contrast,
    so nothing in it may pass a threshold. NaN pixels make the whole map NaN.
    """
    cam = _maps(cam)
    lo = cam.min(axis=_AXES, keepdims=True)
    hi = cam.max(axis=_AXES, keepdims=True)
    span = hi - lo
    out = np.zeros_like(cam)
    np.divide(cam - lo, span, out=out, where=span > 0)
    return np.where(np.isnan(span), np.nan, out)


# --------------------------------------------------------------------------- scores


def dice(pred: Any, mask: Any) -> float | np.ndarray:
    """DICE = 2|A ∩ B| / (|A| + |B|) of a binary prediction A and a binary mask B.

    Higher is better; range [0, 1]. Inputs (H, W) -> float, (N, H, W) -> (N,); they
    broadcast. Non-zero counts as inside.

    Edge cases: empty mask -> NaN (whatever the prediction, both empty included); empty
    prediction with a non-empty mask -> 0.0.
    """
    a, b = _binary(pred), _binary(mask)
    inter = (a & b).sum(axis=_AXES)
    size_a, size_b = a.sum(axis=_AXES), b.sum(axis=_AXES)
    return _out(_safe_div(2.0 * inter, size_a + size_b, size_b > 0))


def iou(pred: Any, mask: Any) -> float | np.ndarray:
    """IoU (Jaccard) = |A ∩ B| / |A ∪ B| of a binary prediction A and a binary mask B.

    Higher is better; range [0, 1]; IoU = DICE / (2 - DICE). Shapes and edge cases as
    `dice`: empty mask -> NaN; empty prediction with a non-empty mask -> 0.0.
    """
    a, b = _binary(pred), _binary(mask)
    inter = (a & b).sum(axis=_AXES)
    union = (a | b).sum(axis=_AXES)
    return _out(_safe_div(inter, union, b.sum(axis=_AXES) > 0))


def energy_inside(cam: Any, mask: Any) -> float | np.ndarray:
    """Share of the map's energy inside the mask: sum(cam * mask) / sum(cam).

    Higher is better; range [0, 1] for maps in [0, 1]; threshold-free. A map spread evenly
    scores the mask's area fraction (chance level). Inputs (H, W) -> float,
    (N, H, W) -> (N,); they broadcast.

    Edge cases: all-zero map -> NaN (0/0: the map points nowhere); empty mask -> NaN;
    a NaN pixel -> NaN.
    """
    cam = _maps(cam)
    m = _binary(mask)
    total = cam.sum(axis=_AXES)
    inside = np.where(m, cam, 0.0).sum(axis=_AXES)
    valid = (total > 0) & np.isfinite(total) & (m.sum(axis=_AXES) > 0)
    return _out(_safe_div(inside, total, valid))


def pointing_game(cam: Any, mask: Any) -> float | np.ndarray:
    """Pointing game: 1.0 if the map's maximum lies inside the mask, else 0.0.

    Higher is better (the mean is the hit rate). Inputs (H, W) -> float, (N, H, W) -> (N,);
    they broadcast. Ties at the maximum (exact equality) count as a hit when any tied
    pixel is inside the mask.

    Edge cases: empty mask -> NaN (never a hit, unlike Quantus); a constant map, the
    all-zero map included -> NaN (it has no maximum to point with); a NaN pixel -> NaN.
    """
    cam = _maps(cam)
    m = _binary(mask)
    peak = cam.max(axis=_AXES, keepdims=True)
    hit = ((cam == peak) & m).any(axis=_AXES).astype(np.float64)
    hit, flat, empty = np.broadcast_arrays(hit, _is_flat(cam), m.sum(axis=_AXES) == 0)
    return _out(np.where(flat | empty, np.nan, hit))


def spearman_maps(a: Any, b: Any) -> float | np.ndarray:
    """Spearman rank correlation between two maps, pixel by pixel (randomisation check).

    Adebayo et al.: maps of a trained model vs a re-initialised copy should correlate
    little, so here *lower* means the explanation depends on the learned weights (a
    sanity-check statistic, not a score to maximise). Range [-1, 1]; ties get average
    ranks. Inputs (H, W) -> float, (N, H, W) -> (N,) per image; they broadcast.

    Edge cases: either map constant (all-zero included) -> NaN; a NaN pixel -> NaN.
    """
    a, b = np.broadcast_arrays(_maps(a), _maps(b))
    shape = a.shape[:-2]
    fa = a.reshape(-1, a.shape[-2] * a.shape[-1])
    fb = b.reshape(fa.shape)
    finite = np.isfinite(fa).all(axis=1) & np.isfinite(fb).all(axis=1)
    ra = rankdata(np.where(np.isfinite(fa), fa, 0.0), axis=1)
    rb = rankdata(np.where(np.isfinite(fb), fb, 0.0), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    cov = (ra * rb).sum(axis=1)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    rho = np.clip(_safe_div(cov, den, finite & (den > 0)), -1.0, 1.0)
    return _out(rho.reshape(shape))


# --------------------------------------------------------------------------- baselines


def gaussian_baseline(
    shape: Sequence[int], sigma_fraction: float = 0.25, center: tuple[float, float] = (0.5, 0.5)
) -> np.ndarray:
    """Content-free, face-centred Gaussian map in [0, 1] (min–max normalised like a CAM).

    Args:
        shape: (H, W), or (N, H, W) for the same map repeated N times.
        sigma_fraction: standard deviation as a fraction of the image height / width
            (per axis).
        center: (row, col) of the peak as fractions of the image; pixel i sits at
            (i + 0.5) / H, so (0.5, 0.5) is the exact centre (a single pixel when H, W are
            odd, the middle 2×2 when even).

    It is what "looks at the middle of the face" scores without seeing the image; a model's
    overlap means something only where it beats this (and `random_baseline`).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or sigma_fraction <= 0:
        raise ValueError(f"need shape (H, W) or (N, H, W) and sigma > 0, got {shape}")
    h, w = shape[-2:]
    y = ((np.arange(h) + 0.5) / h - center[0]) / sigma_fraction
    x = ((np.arange(w) + 0.5) / w - center[1]) / sigma_fraction
    g = renormalize(np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)))
    return np.broadcast_to(g, shape).copy()


def random_baseline(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Content-free uniform random map(s) in [0, 1), shape (H, W) or (N, H, W).

    Ties have probability 0, so `area_matched(map, k)` picks k uniformly random pixels: the
    area-matched chance level (DICE ≈ ROI area fraction). Binarised at 0.5 it covers about
    half of the image, so compare it through the area-matched scores, not the thresholded
    ones. Pass a seeded `np.random.default_rng(seed)` for reproducible baselines.
    """
    return rng.random(tuple(int(s) for s in shape))


# --------------------------------------------------------------------------- means


def nan_mean(values: Iterable[float] | np.ndarray) -> tuple[float, int, int]:
    """(mean over the finite values, number used, number skipped).

    NaN (and ±inf, None) are skipped and counted, never averaged in (DESIGN.md "Statistics").
    No finite value -> (NaN, 0, n_skipped).
    """
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64)
    v = v.ravel()
    ok = np.isfinite(v)
    n = int(ok.sum())
    return (float(v[ok].mean()) if n else float("nan")), n, int(v.size - n)


def summary(values: Iterable[float] | np.ndarray) -> dict[str, float | int]:
    """`nan_mean` as a dict: {"mean": .., "n": used, "n_nan": skipped}."""
    mean, n, n_nan = nan_mean(values)
    return {"mean": mean, "n": n, "n_nan": n_nan}


# --------------------------------------------------------------------------- ROI handling


def region_indices(regions: Sequence[str | int] | None, n_channels: int) -> list[int]:
    """Channel indices for `regions` (names from `fer.labels.REGIONS` or ints); None = all.

    Raises:
        ConfigError: a region name that is unknown or a channel the masks do not have.
    """
    if regions is None:
        return list(range(n_channels))
    out = []
    for r in regions:
        if isinstance(r, str):
            if r not in REGIONS:
                raise ConfigError(f"unknown region {r!r}; expected one of {list(REGIONS)}")
            i = REGIONS.index(r)
        else:
            i = int(r)
        if not 0 <= i < n_channels:
            raise ConfigError(f"region {r!r} is channel {i}, but the masks have {n_channels}")
        out.append(i)
    if not out:
        raise ConfigError("no region chosen for the ROI")
    return sorted(set(out))


def _region_name(i: int) -> str:
    return REGIONS[i] if i < len(REGIONS) else f"region{i}"


def roi_union(masks: Any, regions: Sequence[str | int] | None = None) -> np.ndarray:
    """Bool ROI (N, H, W): union of the chosen channels of (N, R, H, W) masks.

    (N, H, W) masks are taken as the ROI already (`regions` must then be None).
    """
    masks = _binary(masks)
    if masks.ndim == 3:
        if regions is not None:
            raise ValueError("regions given, but the masks have no region channels")
        return masks
    if masks.ndim != 4:
        raise ValueError(f"masks must be (N, R, H, W) or (N, H, W), got {masks.shape}")
    idx = region_indices(regions, masks.shape[1])
    return masks[:, idx].any(axis=1)


def _check(cams: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    cams = _maps(cams)
    masks = np.asarray(masks)
    if cams.ndim != 3:
        raise ValueError(f"cams must be (N, H, W), got {cams.shape}")
    if masks.ndim not in (3, 4) or masks.shape[0] != cams.shape[0]:
        raise ValueError(f"masks {masks.shape} do not match cams {cams.shape}")
    if masks.shape[-2:] != cams.shape[-2:]:
        raise ValueError(f"mask size {masks.shape[-2:]} != CAM size {cams.shape[-2:]}")
    return cams, masks


# --------------------------------------------------------------------------- protocols
#
# Both readings are built from running state — class sums, per-image scalars — so an
# evaluation can feed them one batch at a time (`ClassMeans.add`, `PerImageTable.concat`)
# and never hold a dataset's maps; the whole-array functions below are that, fed at once.


def _class_mean(
    cam_sum: np.ndarray,
    roi_count: np.ndarray,
    n: np.ndarray,
    classes: Sequence[str],
    threshold: float,
    mask_threshold: float,
) -> dict[str, Any]:
    """Class-mean DICE/IoU from per-class sums: maps (C, H, W) float64, ROI pixel counts
    (C, H, W) and image counts (C,)."""
    d_pc: dict[str, float] = {}
    j_pc: dict[str, float] = {}
    detail: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(classes):
        k = int(n[i])
        if k == 0:
            d_pc[c] = j_pc[c] = float("nan")
            detail[c] = {"n_images": 0, "cam_area": float("nan"), "roi_area": float("nan")}
            continue
        mean_cam = cam_sum[i] / k
        pred = binarize(renormalize(mean_cam), threshold)
        mask = roi_count[i] / k >= mask_threshold
        d_pc[c], j_pc[c] = dice(pred, mask), iou(pred, mask)
        if not np.isfinite(mean_cam).all():  # a NaN map poisons its class, never scores 0
            d_pc[c] = j_pc[c] = float("nan")
        detail[c] = {
            "n_images": k,
            "cam_area": float(pred.mean()),
            "roi_area": float(mask.mean()),
        }
    return {
        "dice": {**summary(d_pc.values()), "per_class": d_pc},
        "iou": {**summary(j_pc.values()), "per_class": j_pc},
        "per_class": detail,
    }


def _class_rows(labels: np.ndarray, classes: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """(class name, row selector) per class; labels are indices into `classes` or names."""
    if labels.dtype.kind in "iu":
        return [(c, labels == i) for i, c in enumerate(classes)]
    if labels.dtype.kind in "UO":
        return [(c, labels == c) for c in classes]
    raise ValueError(f"labels must be class indices or names, got dtype {labels.dtype}")


class ClassMeans:
    """Running per-class sums behind `class_mean_overlap`, fed one batch at a time.

    Holds, per class, the sum of the maps (float64), how many images' ROI (and each region)
    covers each pixel, and the image count: (C, H, W) arrays, never a per-image map. Maps
    are added image by image in arrival order — the order numpy's `mean(axis=0)` adds in —
    so the result equals the whole-array computation bit for bit.

    Args:
        classes: class names, in the order of the model's outputs.
        regions: channels forming the ROI (names or indices); None = all channels.
    """

    def __init__(self, classes: Sequence[str], regions: Sequence[str | int] | None = None):
        self.classes = list(classes)
        self.regions = None if regions is None else list(regions)
        self.n = np.zeros(len(self.classes), np.int64)
        self.cam_sum: np.ndarray | None = None  # (C, H, W) float64
        self.roi_count: np.ndarray | None = None  # (C, H, W) int64
        self.region_count: np.ndarray | None = None  # (C, R, H, W) int64; None: (N, H, W) ROI

    def add(self, cams: Any, masks: Any, labels: Any) -> ClassMeans:
        """Add a batch: cams (B, H, W), masks (B, R, H, W) or an ROI (B, H, W), labels (B,)."""
        cams, masks = _check(cams, masks)
        labels = np.asarray(labels)
        if labels.shape != (cams.shape[0],):
            raise ValueError(f"labels {labels.shape} do not match {cams.shape[0]} CAMs")
        roi = roi_union(masks, self.regions)
        c, hw = len(self.classes), cams.shape[-2:]
        if self.cam_sum is None:
            self.cam_sum = np.zeros((c, *hw))
            self.roi_count = np.zeros((c, *hw), np.int64)
            if masks.ndim == 4:
                self.region_count = np.zeros((c, masks.shape[1], *hw), np.int64)
        elif (
            self.cam_sum.shape[1:] != hw
            or (self.region_count is None) != (masks.ndim == 3)
            or (self.region_count is not None and self.region_count.shape[1] != masks.shape[1])
        ):
            raise ValueError(f"masks {masks.shape} / cams {cams.shape} differ from earlier ones")
        for i, (_, sel) in enumerate(_class_rows(labels, self.classes)):
            rows = np.flatnonzero(sel)
            if not rows.size:
                continue
            self.n[i] += rows.size
            for r in rows:  # one image at a time: numpy's summation order, see above
                self.cam_sum[i] += cams[r]
            self.roi_count[i] += roi[rows].sum(axis=0)
            if self.region_count is not None:
                self.region_count[i] += _binary(masks[rows]).sum(axis=0)
        return self

    def overlap(self, threshold: float = 0.5, mask_threshold: float = 0.5) -> dict[str, Any]:
        """The result of `class_mean_overlap` over every image added so far."""
        if self.cam_sum is None:
            raise ValueError("no maps added")
        out = _class_mean(
            self.cam_sum, self.roi_count, self.n, self.classes, threshold, mask_threshold
        )
        out["per_region"] = {}
        if self.region_count is not None:
            for i in range(self.region_count.shape[1]):
                part = _class_mean(
                    self.cam_sum,
                    self.region_count[:, i],
                    self.n,
                    self.classes,
                    threshold,
                    mask_threshold,
                )
                out["per_region"][_region_name(i)] = {"dice": part["dice"], "iou": part["iou"]}
        out["threshold"] = float(threshold)
        out["mask_threshold"] = float(mask_threshold)
        out["regions"] = (
            [_region_name(i) for i in region_indices(self.regions, self.region_count.shape[1])]
            if self.region_count is not None
            else None
        )
        return out


def class_mean_overlap(
    cams: Any,
    masks: Any,
    labels: Any,
    classes: Sequence[str],
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    regions: Sequence[str | int] | None = None,
) -> dict[str, Any]:
    """Study A's class-mean DICE/IoU (DESIGN.md "Overlap"): the headline overlap numbers.

    Per class: the mean of the class's per-image CAMs (each in [0, 1]), re-normalised to
    [0, 1] (`renormalize`), binarised at `cam >= threshold`, against the class-mean ROI
    (mean of the images' binary ROI unions) binarised at `>= mask_threshold`. The headline
    is the mean over classes. Higher is better. (`ClassMeans` computes the same batch by
    batch.)

    Args:
        cams: (N, H, W) per-image maps in [0, 1].
        masks: (N, R, H, W) binary ROI masks (channels in `fer.labels.REGIONS` order), or an
            (N, H, W) ROI.
        labels: (N,) class indices into `classes` (or class names).
        classes: class names, in the order of the model's outputs.
        regions: channels forming the ROI (names or indices); None = all channels.

    Returns:
        {"dice": {"mean", "n", "n_nan", "per_class": {class: value}}, "iou": {same},
        "per_class": {class: {"n_images", "cam_area", "roi_area"}} (areas are fractions of
        the image), "per_region": {region: {"dice": {...}, "iou": {...}}} (each channel
        alone; only for (N, R, H, W) masks), "threshold", "mask_threshold", "regions"}.

    Edge cases: a class without images, or whose class-mean ROI is empty, is NaN, skipped
    in the mean over classes and counted in "n_nan". A class whose CAMs are all zero (or
    whose mean map is constant) re-normalises to all zeros, binarises to nothing and scores
    0.0 against a non-empty ROI. A class whose mean map has a NaN pixel is NaN.
    """
    return ClassMeans(classes, regions).add(cams, masks, labels).overlap(threshold, mask_threshold)


#: Keys of `per_image_scores` / `per_image_overlap`, in reporting order.
PER_IMAGE_KEYS = (
    "dice",
    "iou",
    "dice_area_matched",
    "iou_area_matched",
    "energy_inside",
    "pointing_game",
)


def per_image_scores(cams: Any, roi: Any, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Every per-image score as an (N,) array, keyed by `PER_IMAGE_KEYS` (higher is better).

    Args:
        cams: (N, H, W) maps in [0, 1] (or one (H, W) baseline map for every image).
        roi: (N, H, W) binary ROI of each image (see `roi_union`).
        threshold: binarisation threshold for "dice" / "iou".

    "dice_area_matched" / "iou_area_matched" binarise each map by `area_matched` with
    k = that image's ROI area, so a map is not rewarded for covering more of the image.
    Edge cases: empty ROI -> NaN everywhere; all-zero map -> dice/iou 0.0, energy NaN,
    pointing NaN; a constant map -> area-matched scores NaN (no ranking to take the top
    of) and pointing NaN; a map with a NaN/inf pixel -> NaN everywhere.
    Keep the arrays to split the scores by correct vs incorrect predictions.
    """
    roi = _binary(roi)
    cams = np.broadcast_to(_maps(cams), roi.shape)
    frac = roi.mean(axis=_AXES)
    top = area_matched(cams, frac)
    flat = _is_flat(cams)
    bad = ~np.isfinite(cams).all(axis=_AXES)
    scores = {
        "dice": dice(binarize(cams, threshold), roi),
        "iou": iou(binarize(cams, threshold), roi),
        "dice_area_matched": np.where(flat, np.nan, dice(top, roi)),
        "iou_area_matched": np.where(flat, np.nan, iou(top, roi)),
        "energy_inside": energy_inside(cams, roi),
        "pointing_game": pointing_game(cams, roi),
    }
    return {k: np.where(bad, np.nan, v) for k, v in scores.items()}


class PerImageTable:
    """Every per-image score of a set of maps, against the ROI and against each region alone:
    what `per_image_overlap` averages. Scalars only, so a stream of batches keeps one table
    per batch, joins them (`concat`) and summarises at the end (`overlap`), for all images
    or a subset of them (`select`: correct vs incorrect predictions).

    Attributes:
        threshold: binarisation threshold the scores used.
        roi: {key: (N,)} for each key in `PER_IMAGE_KEYS`, against the ROI union.
        per_region: {region: {key: (N,)}} (empty for (N, H, W) masks).
    """

    def __init__(
        self,
        threshold: float,
        roi: dict[str, np.ndarray],
        per_region: dict[str, dict[str, np.ndarray]],
    ):
        self.threshold = float(threshold)
        self.roi = roi
        self.per_region = per_region

    @classmethod
    def from_maps(
        cls,
        cams: Any,
        masks: Any,
        threshold: float = 0.5,
        regions: Sequence[str | int] | None = None,
    ) -> PerImageTable:
        """Scores of (N, H, W) maps against (N, R, H, W) masks or an (N, H, W) ROI."""
        cams, masks = _check(cams, masks)
        per_region = {}
        if masks.ndim == 4:
            for i in range(masks.shape[1]):
                per_region[_region_name(i)] = per_image_scores(
                    cams, _binary(masks[:, i]), threshold
                )
        return cls(
            threshold, per_image_scores(cams, roi_union(masks, regions), threshold), per_region
        )

    @classmethod
    def concat(cls, parts: Sequence[PerImageTable]) -> PerImageTable:
        """One table of consecutive batches' tables (same threshold and regions)."""
        if not parts:
            raise ValueError("no tables to join")
        first = parts[0]
        if any(
            p.threshold != first.threshold or p.per_region.keys() != first.per_region.keys()
            for p in parts
        ):
            raise ValueError("tables with different thresholds or regions")

        def join(key: str, region: str | None = None) -> np.ndarray:
            return np.concatenate(
                [(p.roi if region is None else p.per_region[region])[key] for p in parts]
            )

        return cls(
            first.threshold,
            {k: join(k) for k in PER_IMAGE_KEYS},
            {r: {k: join(k, r) for k in PER_IMAGE_KEYS} for r in first.per_region},
        )

    def __len__(self) -> int:
        return len(self.roi[PER_IMAGE_KEYS[0]])

    def select(self, rows: Any) -> PerImageTable:
        """The table of a subset of the images (a boolean selector or row indices)."""
        return PerImageTable(
            self.threshold,
            {k: v[rows] for k, v in self.roi.items()},
            {r: {k: v[rows] for k, v in part.items()} for r, part in self.per_region.items()},
        )

    def overlap(self) -> dict[str, Any]:
        """The result of `per_image_overlap`: NaN-skipping means over the table's images."""
        out: dict[str, Any] = {k: summary(self.roi[k]) for k in PER_IMAGE_KEYS}
        out["per_region"] = {
            r: {k: summary(part[k]) for k in PER_IMAGE_KEYS} for r, part in self.per_region.items()
        }
        out["threshold"] = self.threshold
        out["n_images"] = len(self)
        return out


def per_image_overlap(
    cams: Any,
    masks: Any,
    threshold: float = 0.5,
    regions: Sequence[str | int] | None = None,
) -> dict[str, Any]:
    """The second reading (DESIGN.md "Overlap"): per-image scores averaged over images.

    Higher is better for every score. Per image, against that image's own binary ROI:
    DICE and IoU of the map binarised at `threshold`; their area-matched variants (top-k
    pixels, k = the image's ROI area fraction); energy inside the ROI; the pointing game
    (its mean is the hit rate). (`PerImageTable` keeps the per-image numbers, batch by batch.)

    Args:
        cams: (N, H, W) maps in [0, 1].
        masks: (N, R, H, W) binary ROI masks or an (N, H, W) ROI.
        regions: channels forming the ROI (names or indices); None = all channels.

    Returns:
        {key: {"mean": NaN-skipping mean, "n": valid count, "n_nan": skipped count}} for
        each key in `PER_IMAGE_KEYS`, plus "per_region": {region: {key: {...}}} (each
        channel alone; only for (N, R, H, W) masks), "threshold", "n_images".

    Edge cases as `per_image_scores`; NaN images are skipped and counted per key.
    """
    return PerImageTable.from_maps(cams, masks, threshold, regions).overlap()
