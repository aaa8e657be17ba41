"""On-device training batches (`datamodule.on_device=true`) against the albumentations path.

Measured on this stack (albumentations 2.0.8, OpenCV 4.14, CPU), in uint8 levels:
grey, ROI masking, flip, affine and brightness/contrast are bit-identical to the CPU path;
INTER_AREA resizing is identical for 64->48, 64->32, 64->224 and same size, and at most 1
level off otherwise (224->48, study B's 224-px targets: 0.12 % of pixels; 64->100: 5.8 %,
cv2's 11-bit enlargement weights). The tolerances below allow a little more than that.
"""

from __future__ import annotations

import albumentations as A
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fit_lightning
from hydra.utils import instantiate
from omegaconf import open_dict

from fer.data.datamodule import FaceDataset, build_transform
from fer.data.on_device import (
    DeviceTrainData,
    IndexBatches,
    affine,
    augment_steps,
    brightness_contrast,
    draw,
    hash32,
    hflip,
    uniforms,
)
from fer.data.preprocess import FaceArrays
from fer.errors import ConfigError
from fer.train import make_datamodule

GREY = {"mean": [0.5], "std": [0.25]}
RGB = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _faces(n: int, size: int, seed: int = 0, smooth: bool = False) -> FaceArrays:
    """Random faces (noise: the worst case for rounding; or smooth) with random ROI masks."""
    rng = np.random.default_rng(seed)
    if smooth:
        yy, xx = np.mgrid[0:size, 0:size] / size
        phase = rng.random((n, 1, 1, 3)) * 6
        images = 127 + 120 * np.sin(5 * xx[None, ..., None] + 3 * yy[None, ..., None] + phase)
        images = images.astype(np.uint8)
    else:
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = (rng.random((n, 3, size, size)) < 0.4).astype(np.uint8)
    frame = pd.DataFrame({"label": ["anger"] * n})
    return FaceArrays(images, masks, frame, pd.DataFrame(columns=["path", "reason"]))


def _eval_set(faces: FaceArrays, size: int, norm: dict, roi: list[int] | None) -> FaceDataset:
    n, channels = len(faces.frame), len(norm["mean"])
    tf = build_transform(size, norm["mean"], norm["std"])
    labels = np.arange(n) % 3
    return FaceDataset(faces, np.arange(n), labels, tf, channels, 0, train=False, roi_only=roi)


def _build(parts: list[FaceDataset], augment: list, size: int, norm: dict, items, seed=0):
    data = DeviceTrainData(parts, augment, {"size": size, **norm}, seed, max_gb=1.0)
    return data.build(IndexBatches(parts).__getitems__(items))


def _levels(a: torch.Tensor, b: torch.Tensor, std: list[float]) -> torch.Tensor:
    """|a - b| of normalised images in uint8 levels."""
    return (a - b).abs() * torch.tensor(std).view(1, -1, 1, 1) * 255


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize(
    ("cache", "size", "norm", "roi", "max_level", "max_share"),
    [
        (64, 48, GREY, [0, 1], 0, 0),  # the quick default: non-integer shrink, ROI masked
        (64, 32, GREY, None, 0, 0),  # integer shrink (cv2 rounds half up there)
        (64, 224, RGB, None, 0, 0),  # vgg16 on synthetic faces: enlargement x3.5
        (224, 48, RGB, [0, 1, 2], 1, 0.005),  # study B: a 224-px cache to small_vgg's 48
        (64, 100, RGB, None, 1, 0.08),  # an enlargement cv2's 11-bit weights round differently
    ],
)
def test_no_augment_path_equals_the_eval_transform(cache, size, norm, roi, max_level, max_share):
    """Grey (cv2's weights), ROI masking, INTER_AREA resize and normalisation, batched."""
    ds = _eval_set(_faces(6, cache), size, norm, roi)
    ref = torch.stack([ds[i]["image"] for i in range(6)])
    batch = _build([ds], [], size, norm, [(i, 0) for i in range(6)])
    levels = _levels(batch["image"], ref, norm["std"])
    assert batch["image"].shape == ref.shape and batch["image"].dtype == torch.float32
    assert levels.max() <= max_level + 1e-3
    assert (levels > 1e-3).float().mean() <= max_share
    assert torch.equal(batch["label"], torch.as_tensor(ds.labels[:6]))


def test_parts_of_different_cached_sizes_keep_their_order():
    """FU: source and target cached at different sizes, one batch, each at its own size."""
    a, b = _eval_set(_faces(4, 64, 1), 48, GREY, None), _eval_set(_faces(3, 224, 2), 48, GREY, None)
    items = [(5, 0), (0, 0), (6, 0), (2, 0)]  # target, source, target, source
    batch = _build([a, b], [], 48, GREY, items)
    ref = torch.stack([b[1]["image"], a[0]["image"], b[2]["image"], a[2]["image"]])
    assert _levels(batch["image"], ref, GREY["std"]).max() <= 1 + 1e-3
    assert batch["part"].tolist() == [1, 0, 1, 0] and batch["row"].tolist() == [1, 0, 2, 2]


def test_flip_equals_albumentations():
    images = _faces(3, 64).images
    ref = np.stack([A.HorizontalFlip(p=1.0)(image=i)["image"] for i in images])
    assert torch.equal(hflip(_nchw(images)), _nchw(ref))


@pytest.mark.parametrize("by_max", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_contrast_equals_albumentations(by_max, channels):
    """albumentations' uint8 arithmetic: a float32 table x * alpha + beta, clipped, truncated."""
    images = _faces(4, 32).images[..., :channels]
    for b, c in [(0.15, -0.15), (-0.15, 0.15), (0.07, 0.11), (-0.031, -0.093), (0.0, 0.0)]:
        tf = A.RandomBrightnessContrast(
            brightness_limit=(b, b), contrast_limit=(c, c), brightness_by_max=by_max, p=1.0
        )
        ref = np.stack([tf(image=i)["image"].reshape(i.shape) for i in images])
        n = len(images)
        out = brightness_contrast(
            _nchw(images), torch.full((n,), 1 + c, dtype=torch.float64), torch.full((n,), b), by_max
        )
        assert torch.equal(out, _nchw(ref)), (b, c)


@pytest.mark.parametrize("shape", [(64, 64), (48, 64)])  # non-square: x and y not swapped
def test_affine_equals_albumentations(shape):
    """cv2.warpAffine's fixed-point bilinear sampling, reproduced: measured bit-identical on
    noise images (the worst case), borders included; the test allows 0.1 % of pixels 1 level
    off, for a last-bit difference in the float64 matrix that flips a 1/32-px rounding."""
    h, w = shape
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    cases = [(5.0, 0.03, 1.04), (-8.0, -0.04, 0.95), (7.9, 0.04, 0.951), (-2.2, 0.0, 1.0)]
    for r, t, s in cases:
        tf = A.Affine(rotate=(r, r), translate_percent=(t, t), scale=(s, s), p=1.0)
        ref = np.stack([tf(image=i)["image"] for i in images])

        def full(v: float) -> torch.Tensor:
            return torch.full((2,), v, dtype=torch.float64)

        tx, ty = full(float(int(t * w))), full(float(int(t * h)))
        out = affine(_nchw(images), full(r), full(s), full(s), tx, ty)
        diff = (out - _nchw(ref)).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() <= 1e-3, (r, t, s)
        # and the transform really moved the image
        assert (out - _nchw(images)).abs().mean() > 10


@pytest.mark.parametrize(("norm", "roi"), [(GREY, [0, 1]), (RGB, None)])
def test_whole_pipeline_with_fixed_parameters_equals_albumentations(norm, roi):
    """Degenerate ranges and p = 1 fix every parameter, so both paths draw the same: the
    configured order (flip, affine, brightness/contrast), then resize and normalise."""
    fixed = [
        A.HorizontalFlip(p=1.0),
        A.Affine(rotate=(6.5, 6.5), translate_percent=(-0.03, -0.03), scale=(1.03, 1.03), p=1),
        A.RandomBrightnessContrast(brightness_limit=(0.1, 0.1), contrast_limit=(-0.12, -0.12), p=1),
    ]
    faces = _faces(5, 64, smooth=True)
    channels = len(norm["mean"])
    tf = build_transform(48, norm["mean"], norm["std"], fixed)
    ds = FaceDataset(faces, np.arange(5), np.zeros(5, int), tf, channels, 0, True, roi)
    items = [(i, 4) for i in range(5)]
    ref = torch.stack([ds[item]["image"] for item in items])
    out = _build([ds], fixed, 48, norm, items)["image"]
    assert _levels(out, ref, norm["std"]).max() <= 1e-3  # measured: identical
    plain = _build([ds], [], 48, norm, items)["image"]
    assert _levels(out, plain, norm["std"]).mean() > 5  # the augmentation did something


def _config_steps(make_cfg) -> list:
    return augment_steps(instantiate(make_cfg().datamodule.augment))


def test_hash_is_exact_32_bit_arithmetic():
    """The int64 split multiplication never overflows: equal to Python's big integers."""

    def reference(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    xs = np.random.default_rng(0).integers(0, 2**32, 2000, dtype=np.int64)
    xs = np.concatenate([xs, [0, 1, 2**32 - 1, 2**31, 2**31 - 1]])
    assert hash32(torch.from_numpy(xs)).tolist() == [reference(int(x)) for x in xs]


def test_parameters_respect_the_configured_ranges(make_cfg):
    steps = _config_steps(make_cfg)  # flip p .5; affine p .7 ±8°, ±4 %, .95-1.05; BC p .5 ±.15
    n = 20000
    rows = torch.arange(n)
    flip, aff, bc = draw(steps, 0, torch.zeros(n, dtype=torch.int64), rows, (64, 64))
    for params, p in ((flip, 0.5), (aff, 0.7), (bc, 0.5)):
        assert abs(params["apply"].float().mean().item() - p) < 0.015
    for key, lo, hi in (
        ("angle", -8, 8),
        ("scale_x", 0.95, 1.05),
        ("scale_y", 0.95, 1.05),
    ):
        v = aff[key]
        assert lo <= v.min() and v.max() <= hi
        assert v.min() < lo + 0.01 * (hi - lo) and v.max() > hi - 0.01 * (hi - lo)  # whole range
        assert abs(v.mean().item() - (lo + hi) / 2) < 0.01 * (hi - lo)
    # x and y scale drawn independently (keep_ratio=False), as albumentations draws them
    assert abs(np.corrcoef(aff["scale_x"].numpy(), aff["scale_y"].numpy())[0, 1]) < 0.03
    # translation: int(u * 64) for u in [-.04, .04] -> whole pixels -2..2
    for key in ("tx", "ty"):
        assert set(aff[key].tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert bc["alpha"].min() >= 0.85 and bc["alpha"].max() <= 1.15
    assert bc["beta"].min() >= -0.15 and bc["beta"].max() <= 0.15
    # the stream: uniform (10 bins, chi-square with 9 df < 27.9 at p = .001), columns uncorrelated
    u = uniforms(0, torch.zeros(n, dtype=torch.int64), rows, 4).numpy()
    counts = np.histogram(u[:, 0], bins=10, range=(0, 1))[0]
    assert ((counts - n / 10) ** 2 / (n / 10)).sum() < 27.9
    assert np.abs(np.corrcoef(u.T) - np.eye(4)).max() < 0.03


def test_same_seed_epoch_rows_give_the_same_batch(make_cfg):
    augment = instantiate(make_cfg().datamodule.augment)
    ds = _eval_set(_faces(8, 64, smooth=True), 48, GREY, None)

    def images(items, seed=0):
        return _build([ds], augment, 48, GREY, items, seed)["image"]

    first = images([(3, 2), (5, 2), (7, 2)])
    assert torch.equal(first, images([(3, 2), (5, 2), (7, 2)]))
    # a sample's pixels do not depend on the batch it is in, nor on its place there
    other = images([(7, 2), (1, 2), (3, 2)])
    assert torch.equal(first[0], other[2]) and torch.equal(first[2], other[0])
    # another epoch or seed: other parameters (8 rows: some change with near certainty)
    everyone = [(i, 2) for i in range(8)]
    assert not torch.equal(images(everyone), images([(i, 3) for i in range(8)]))
    assert not torch.equal(images(everyone), images(everyone, seed=1))


def test_refuses_what_it_does_not_implement(make_cfg):
    with pytest.raises(ConfigError, match=r"augment\[1\] \(RandomGamma\)"):
        augment_steps([A.HorizontalFlip(p=0.5), A.RandomGamma(p=0.5)])
    with pytest.raises(ConfigError, match="shear"):
        augment_steps([A.Affine(shear=(-5, 5))])
    with pytest.raises(ConfigError, match="border_mode"):
        augment_steps([A.Affine(rotate=(-5, 5), border_mode=1)])
    # the data module refuses at setup, before any training
    cfg = make_cfg("datamodule.on_device=true")
    with open_dict(cfg):
        cfg.datamodule.augment[0]._target_ = "albumentations.VerticalFlip"
    dm = make_datamodule(cfg)
    with pytest.raises(ConfigError, match="VerticalFlip"):
        dm.setup("fit")


def test_refuses_a_training_set_above_the_size_limit(make_cfg):
    dm = make_datamodule(make_cfg("datamodule.on_device=true", "+datamodule.on_device_max_gb=1e-6"))
    with pytest.raises(ConfigError, match=r"need ~0\.00 GB .* x 1x64x64 uint8.*on_device_max_gb"):
        dm.setup("fit")


def _fit(cfg, max_epochs, ckpt_path=None):
    """Data module, weights and metrics of a Lightning fit (as tests/test_train.py)."""
    # CPU time: 3 steps are enough to cross an epoch boundary
    dm, module, trainer = fit_lightning(
        cfg, max_epochs, ckpt_path, limit_train_batches=3, limit_val_batches=1
    )
    return dm, module.net.state_dict(), trainer.callback_metrics


def test_training_on_device_resumes_exactly(make_cfg, tmp_path):
    def cfg(run):
        # a 32-px input: a third of small_vgg's parameters at 48 (CPU time), and 64 -> 32
        c = make_cfg("datamodule.on_device=true", "model.input.size=32", run_dir=tmp_path / run)
        with open_dict(c):
            c.datamodule.batch_size = 16
        return c

    dm, ref, ref_metrics = _fit(cfg("a"), 2)
    # the loader delivers indices only; the images are built after the transfer
    batch = next(iter(dm.train_dataloader()))
    assert "image" not in batch and len(batch["label"]) == 16
    image = dm.on_after_batch_transfer(batch, 0)["image"]
    assert image.shape == (16, 1, 32, 32) and image.abs().max() <= 2.0 + 1e-6  # (0..1 - .5) / .25

    _fit(cfg("b"), 1)
    _, resumed, metrics = _fit(cfg("b"), 2, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    for k, v in ref.items():
        assert torch.equal(v, resumed[k]), k
    assert metrics["val/acc"] == ref_metrics["val/acc"]
