"""Training batches built on the model's device (`datamodule.on_device=true`).

The training subset's cached uint8 faces go to the device once (ROI masking and grey
conversion applied on the way, as `FaceDataset` applies them before its transform); the train
DataLoader then yields index batches only, and `build` augments, resizes and normalises a
whole batch there with torch ops. The augmentation is read from the same `datamodule.augment`
list as the CPU path and reproduces albumentations 2.0.8's uint8 arithmetic: the flip,
cv2.warpAffine's fixed-point bilinear sampling (1/32-pixel coordinates), the
brightness/contrast look-up table (truncated to uint8), cv2's RGB2GRAY integer weights, and
INTER_AREA's area weights with cv2's rounding, each result rounded to uint8 where the CPU
path holds uint8 (tests/test_on_device.py measures the remaining differences).

Randomness: each sample's parameters come from a counter-based hash of (seed, epoch, row,
parameter) — integer ops, so the same on CPU and CUDA, independent of the batch a sample
lands in, and a resumed run continues exactly. A torch.Generator per sample would be
per-image Python work. The CPU path draws from albumentations' own generator, so the two
paths see different random parameters: same distributions, not bit-identical runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from fer.errors import ConfigError

SUPPORTED = ("HorizontalFlip", "Affine", "RandomBrightnessContrast")
_M32 = 0xFFFFFFFF
_SLOTS = 8  # random numbers per augmentation step: each step draws from its own columns


# -- the augmentation list ----------------------------------------------------------------------
@dataclass(frozen=True)
class Flip:
    """A.HorizontalFlip."""

    p: float


@dataclass(frozen=True)
class Affine:
    """A.Affine without shear: rotation (degrees), per-axis scale, whole-pixel translation."""

    p: float
    rotate: tuple[float, float]
    scale_x: tuple[float, float]
    scale_y: tuple[float, float]
    keep_ratio: bool
    translate_x: tuple[float, float]
    translate_y: tuple[float, float]
    translate_in_px: bool  # translate_px (integers, inclusive) rather than translate_percent


@dataclass(frozen=True)
class BrightnessContrast:
    """A.RandomBrightnessContrast: x * (1 + c) + b * (255 or the image mean)."""

    p: float
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    by_max: bool


Step = Flip | Affine | BrightnessContrast


def _pair(value: Any) -> tuple[float, float]:
    lo, hi = value
    return float(lo), float(hi)


def _refuse(i: int, name: str, why: str) -> ConfigError:
    return ConfigError(
        f"datamodule.augment[{i}] ({name}): {why} is not implemented on the device "
        "(datamodule.on_device=true): change it or set datamodule.on_device=false"
    )


def augment_steps(transforms: Sequence[Any]) -> list[Step]:
    """The on-device steps of an instantiated `datamodule.augment` list, in order.

    Anything else (another transform, or an option whose arithmetic is not reproduced here)
    is refused with a ConfigError naming its position, never silently skipped.
    """
    import albumentations as A

    steps: list[Step] = []
    for i, t in enumerate(transforms):
        name = type(t).__name__
        if type(t) is A.HorizontalFlip:
            steps.append(Flip(float(t.p)))
        elif type(t) is A.Affine:
            if any(v != (0.0, 0.0) for v in t.shear.values()):
                raise _refuse(i, name, f"shear={t.shear}")
            for key, value, allowed in (
                ("interpolation", t.interpolation, cv2.INTER_LINEAR),
                ("border_mode", t.border_mode, cv2.BORDER_CONSTANT),
                ("fit_output", t.fit_output, False),
                ("balanced_scale", t.balanced_scale, False),
            ):
                if value != allowed:
                    raise _refuse(i, name, f"{key}={value!r}")
            if np.any(np.asarray(t.fill, dtype=float) != 0):
                raise _refuse(i, name, f"fill={t.fill!r}")
            in_px = t.translate_px is not None
            move = t.translate_px if in_px else t.translate_percent
            steps.append(
                Affine(
                    float(t.p),
                    _pair(t.rotate),
                    _pair(t.scale["x"]),
                    _pair(t.scale["y"]),
                    bool(t.keep_ratio),
                    _pair(move["x"]),
                    _pair(move["y"]),
                    in_px,
                )
            )
        elif type(t) is A.RandomBrightnessContrast:
            if t.ensure_safe_range:
                raise _refuse(i, name, "ensure_safe_range=True")
            steps.append(
                BrightnessContrast(
                    float(t.p),
                    _pair(t.brightness_limit),
                    _pair(t.contrast_limit),
                    bool(t.brightness_by_max),
                )
            )
        else:
            raise _refuse(i, name, f"{name} (supported: {', '.join(SUPPORTED)})")
    return steps


# -- randomness ---------------------------------------------------------------------------------
def _mul32(x: Tensor, c: int) -> Tensor:
    """x * c mod 2**32 for x in [0, 2**32), split so no int64 product overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (Wellons' "lowbias32") of int64 tensors, element-wise."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(seed: int, epochs: Tensor, rows: Tensor, n: int) -> Tensor:
    """(B, n) float64 in [0, 1), 24-bit: column j of a sample depends only on
    (seed, epoch, row, j) — not on the batch it is in, nor on the device."""
    rows = rows.to(torch.int64)
    key = hash32(torch.full_like(rows, int(seed) & _M32))
    key = hash32(hash32(key ^ (epochs.to(torch.int64) & _M32)) ^ (rows & _M32))
    cols = hash32(torch.arange(n, dtype=torch.int64, device=rows.device) + 0x9E3779B9)
    bits = hash32(hash32(key[:, None] ^ cols[None, :]))
    return (bits >> 8).to(torch.float64) / 2**24


def _between(u: Tensor, lo_hi: tuple[float, float]) -> Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * u


def draw(
    steps: Sequence[Step], seed: int, epochs: Tensor, rows: Tensor, size: tuple[int, int]
) -> list[dict[str, Tensor]]:
    """Per-sample parameters of each step (float64, on the rows' device) for images of
    `size` (H, W), drawn as albumentations draws them: `p` per sample; Affine scales per axis
    (one for both with keep_ratio), translate_percent truncated to whole pixels, translate_px
    an integer in [a, b]; brightness/contrast factors uniform in their limits."""
    u = uniforms(seed, epochs, rows, _SLOTS * len(steps))
    height, width = size
    out: list[dict[str, Tensor]] = []
    for i, step in enumerate(steps):
        v = u[:, _SLOTS * i : _SLOTS * (i + 1)]
        params = {"apply": v[:, 0] < step.p}
        if isinstance(step, Affine):
            params["angle"] = _between(v[:, 1], step.rotate)
            params["scale_x"] = _between(v[:, 2], step.scale_x)
            params["scale_y"] = (
                params["scale_x"] if step.keep_ratio else _between(v[:, 3], step.scale_y)
            )
            if step.translate_in_px:
                (ax, bx), (ay, by) = step.translate_x, step.translate_y
                params["tx"] = torch.floor(ax + (bx - ax + 1) * v[:, 4])
                params["ty"] = torch.floor(ay + (by - ay + 1) * v[:, 5])
            else:  # int(fraction * size), as albumentations does: truncated towards zero
                params["tx"] = torch.trunc(_between(v[:, 4], step.translate_x) * width)
                params["ty"] = torch.trunc(_between(v[:, 5], step.translate_y) * height)
        elif isinstance(step, BrightnessContrast):
            params["alpha"] = 1.0 + _between(v[:, 1], step.contrast)
            params["beta"] = _between(v[:, 2], step.brightness)
        out.append(params)
    return out


# -- operations on (B, C, H, W) float32 tensors that hold uint8 values --------------------------
def to_grey(rgb: Tensor) -> Tensor:
    """cv2.cvtColor(RGB2GRAY) of uint8 (B, 3, H, W): its fixed-point weights (0.299, 0.587,
    0.114 in 15 bits: OpenCV 4.x's 8-bit path), rounded as cv2 rounds; uint8 (B, 1, H, W)."""
    r, g, b = rgb.to(torch.int32).unbind(1)
    return ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15).to(torch.uint8)[:, None]


def keep_roi(images: Tensor, masks: Tensor, channels: Sequence[int]) -> Tensor:
    """Zero outside the union of the ROI `channels` (preprocess.combine=mask); uint8."""
    return images * masks[:, list(channels)].amax(1, keepdim=True).clamp(max=1)


def hflip(x: Tensor) -> Tensor:
    return x.flip(-1)


def affine(
    x: Tensor, angle: Tensor, scale_x: Tensor, scale_y: Tensor, tx: Tensor, ty: Tensor
) -> Tensor:
    """A.Affine (no shear, INTER_LINEAR, constant 0 border) per sample, as cv2.warpAffine
    computes it for uint8: albumentations' matrix (about the pixel centre (W/2 - .5, H/2 -
    .5)), inverted in float64, source coordinates in cv2's fixed point (1/1024 px rounded per
    row/column term, then 1/32 px), bilinear weights on that grid, rounded half up."""
    batch, channels, height, width = x.shape
    f64 = {"dtype": torch.float64, "device": x.device}
    a = torch.deg2rad(angle.to(**f64) % 360)
    cos, sin = torch.cos(a), torch.sin(a)
    sx, sy = scale_x.to(**f64), scale_y.to(**f64)
    m00, m01, m10, m11 = cos * sx, sin * sy, -sin * sx, cos * sy
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    m02 = cx + tx.to(**f64) - (m00 * cx + m01 * cy)
    m12 = cy + ty.to(**f64) - (m10 * cx + m11 * cy)
    det = m00 * m11 - m01 * m10  # cv2.invertAffineTransform
    det = torch.where(det != 0, 1 / det, torch.zeros_like(det))
    i00, i01, i10, i11 = m11 * det, -m01 * det, -m10 * det, m00 * det
    i02, i12 = -i00 * m02 - i01 * m12, -i10 * m02 - i11 * m12
    xs, ys = torch.arange(width, **f64), torch.arange(height, **f64)
    ax = torch.round(i00[:, None] * xs * 1024).to(torch.int32)  # (B, W)
    ay = torch.round(i10[:, None] * xs * 1024).to(torch.int32)
    bx = torch.round((i01[:, None] * ys + i02[:, None]) * 1024).to(torch.int32) + 16  # (B, H)
    by = torch.round((i11[:, None] * ys + i12[:, None]) * 1024).to(torch.int32) + 16
    gx = (bx[:, :, None] + ax[:, None, :]) >> 5  # (B, H, W) source position in 1/32 px
    gy = (by[:, :, None] + ay[:, None, :]) >> 5
    fx = ((gx & 31).to(torch.float32) / 32)[:, None]  # (B, 1, H, W), multiples of 1/32
    fy = ((gy & 31).to(torch.float32) / 32)[:, None]
    # a 2-pixel zero border: a corner outside the image reads 0 (BORDER_CONSTANT) without a
    # mask; positions further out are clamped into the border (all four corners zero there)
    padded = F.pad(x, (2, 2, 2, 2))
    stride = width + 4
    x0 = (gx >> 5).clamp(-2, width) + 2  # floor, also for negative positions
    y0 = (gy >> 5).clamp(-2, height) + 2
    index = (y0 * stride + x0).to(torch.int64).reshape(batch, 1, -1).expand(-1, channels, -1)
    flat = padded.reshape(batch, channels, -1)

    def corner(offset: int) -> Tensor:
        return flat.gather(2, index + offset).reshape(x.shape)

    top = corner(0) * (1 - fx) + corner(1) * fx
    bottom = corner(stride) * (1 - fx) + corner(stride + 1) * fx
    # weights are multiples of 1/32 per axis, so these sums are exact in float32
    return torch.floor(top * (1 - fy) + bottom * fy + 0.5)


def brightness_contrast(x: Tensor, alpha: Tensor, beta: Tensor, by_max: bool) -> Tensor:
    """A.RandomBrightnessContrast on uint8: its look-up table x * alpha + beta (float32,
    beta scaled by 255, or by the image's mean when not `by_max`), clipped and truncated."""
    # not by_max: np.mean of the uint8 image, in float64
    shift = beta * 255.0 if by_max else beta * x.to(torch.float64).mean(dim=(1, 2, 3))
    a = alpha.to(torch.float32)[:, None, None, None]
    b = shift.to(torch.float32)[:, None, None, None]
    return torch.floor((x * a + b).clamp(0, 255))


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) INTER_AREA weights: the overlap of each output pixel's footprint with
    each input pixel, per unit footprint (down- and up-scaling alike, as cv2 does)."""
    step = n_in / n_out
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        a, b = i * step, (i + 1) * step
        for j in range(int(np.floor(a)), min(n_in, int(np.ceil(b)))):
            weights[i, j] = max(0.0, min(b, j + 1) - max(a, j)) / step
    return weights


_WEIGHTS: dict[tuple[int, int, str], Tensor] = {}


@contextmanager
def _full_float32() -> Iterator[None]:
    """float32 matmuls at full precision: a TF32 or bf16 matmul (a GPU preset may allow one)
    would put pixel sums ~0.1 level off and change their rounding."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def resize_area(x: Tensor, size: int) -> Tensor:
    """cv2.resize(INTER_AREA) to size x size, rounded to uint8 values as cv2 rounds: half up
    for integer shrink factors and enlargements (its fixed-point paths), half to even for the
    general shrink (float, then cvRound)."""
    height, width = x.shape[-2:]
    if (height, width) == (size, size):
        return x
    weights = []
    for n in (height, width):
        key = (n, size, str(x.device))
        if key not in _WEIGHTS:
            w = torch.as_tensor(_area_weights(n, size), dtype=torch.float32)
            _WEIGHTS[key] = w.to(x.device)
        weights.append(_WEIGHTS[key])
    with _full_float32():
        out = weights[0] @ x @ weights[1].T
    shrink = height >= size and width >= size
    if shrink and (height % size or width % size):
        return torch.round(out).clamp(0, 255)
    return torch.floor(out + 0.5).clamp(0, 255)


def normalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """A.Normalize(max_pixel_value=255): (x - 255 mean) / (255 std), per channel."""
    channels = x.shape[1]
    m = torch.as_tensor(np.resize(np.asarray(mean, float) * 255.0, channels), device=x.device)
    d = torch.as_tensor(1 / (np.resize(np.asarray(std, float), channels) * 255.0))
    shape = (1, channels, 1, 1)
    return (x - m.to(torch.float32).view(shape)) * d.to(x.device, torch.float32).view(shape)


def augment(x: Tensor, steps: Sequence[Step], params: Sequence[dict[str, Tensor]]) -> Tensor:
    """The steps in order on uint8-valued float (B, C, H, W), each where its `apply` is set."""
    for step, p in zip(steps, params, strict=True):
        if isinstance(step, Flip):
            y = hflip(x)
        elif isinstance(step, Affine):
            y = affine(x, p["angle"], p["scale_x"], p["scale_y"], p["tx"], p["ty"])
        else:
            y = brightness_contrast(x, p["alpha"], p["beta"], step.by_max)
        x = torch.where(p["apply"].to(x.device)[:, None, None, None], y, x)
    return x


# -- the training subset on the device ----------------------------------------------------------
def _as_is(batch: Any) -> Any:
    """collate_fn of index batches: `__getitems__` already returns the batch."""
    return batch


class IndexBatches(Dataset):
    """Items of the training set as indices: ``__getitems__`` turns a batch of the
    sampler's ``(index, epoch)`` pairs into tensors (numpy, no per-image work)."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.rows = [np.asarray(p.rows, np.int64) for p in parts]
        self.labels = [np.asarray(p.labels, np.int64) for p in parts]
        self.offsets = np.cumsum([0, *(len(r) for r in self.rows)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitems__(self, items: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
        pairs = np.asarray(items, np.int64).reshape(-1, 2)
        index, epoch = pairs[:, 0], pairs[:, 1]
        part = np.searchsorted(self.offsets, index, side="right") - 1
        pos = index - self.offsets[part]
        rows = np.empty_like(pos)
        labels = np.empty_like(pos)
        for k in np.unique(part):
            sel = part == k
            rows[sel], labels[sel] = self.rows[k][pos[sel]], self.labels[k][pos[sel]]
        return {
            "label": torch.from_numpy(labels),
            "part": torch.from_numpy(part),
            "pos": torch.from_numpy(pos),
            "row": torch.from_numpy(rows),  # the face row: seeds the sample's parameters
            "epoch": torch.from_numpy(epoch),
        }

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Tensor]:
        return self.__getitems__([item])


class DeviceTrainData:
    """The training subset's uint8 faces on one device, and the batches built from them.

    `parts` are the training FaceDatasets (one, or source and target for FU), each with
    `faces`, `rows`, `labels`, `channels` and `roi_only`; their cached sizes may differ (each
    is augmented at its own size, then resized to the model input). Refuses (ConfigError)
    when the images would need more than `max_gb` on the device.
    """

    def __init__(
        self,
        parts: Sequence[Any],
        augment: Sequence[Any],
        input: dict,
        seed: int,
        max_gb: float,
    ) -> None:
        self.parts = list(parts)
        self.steps = augment_steps(augment)
        self.size = int(input["size"])
        self.mean, self.std = list(input["mean"]), list(input["std"])
        self.seed = int(seed)
        self.nbytes = sum(
            len(p.rows) * p.channels * int(np.prod(p.faces.images.shape[1:3])) for p in self.parts
        )
        if self.nbytes > max_gb * 1e9:
            shapes = ", ".join(
                f"{len(p.rows)} x {p.channels}x{p.faces.images.shape[1]}x{p.faces.images.shape[2]}"
                for p in self.parts
            )
            raise ConfigError(
                f"datamodule.on_device=true: the training images need ~{self.nbytes / 1e9:.2f} GB "
                f"on the device ({shapes} uint8), above datamodule.on_device_max_gb={max_gb:g}: "
                "raise it (+datamodule.on_device_max_gb=...) or set datamodule.on_device=false"
            )
        self.images: list[Tensor] = []

    def loader(self, sampler: Sampler, batch_size: int) -> DataLoader:
        """Index batches in the sampler's order (Lightning sets the epoch on
        ``batch_sampler.sampler``); no workers: there is no per-image work to spread."""
        return DataLoader(
            IndexBatches(self.parts),
            batch_sampler=BatchSampler(sampler, batch_size, drop_last=False),
            collate_fn=_as_is,
            num_workers=0,
        )

    @torch.no_grad()
    def upload(self, device: torch.device, chunk: int = 1024) -> None:
        """Put every part's images on `device` once (ROI-masked, grey for 1-channel models),
        in chunks: neither the host nor the device holds a float copy of the set."""
        if self.images and self.images[0].device == device:
            return
        self.release()
        for p in self.parts:
            rows = np.asarray(p.rows, np.int64)
            h, w = p.faces.images.shape[1:3]
            store = torch.empty((len(rows), p.channels, h, w), dtype=torch.uint8, device=device)
            for start in range(0, len(rows), chunk):
                take = rows[start : start + chunk]
                x = torch.from_numpy(np.ascontiguousarray(p.faces.images[take])).to(device)
                x = x.permute(0, 3, 1, 2)
                if p.roi_only:
                    masks = torch.from_numpy(np.ascontiguousarray(p.faces.masks[take]))
                    x = keep_roi(x, masks.to(device), p.roi_only)
                store[start : start + len(take)] = to_grey(x) if p.channels == 1 else x
            self.images.append(store)

    def release(self) -> None:
        """Free the device copy."""
        self.images = []

    @torch.no_grad()
    def build(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The index batch (on the device) with its ``image``: augmented, resized to the model
        input and normalised, (B, C, size, size) float32."""
        device = batch["pos"].device
        self.upload(device)
        pos, rows, epochs = batch["pos"], batch["row"], batch["epoch"]
        channels = self.parts[0].channels
        # float32 whatever the trainer's precision: bf16 cannot hold 0..255 exactly
        with torch.autocast(device.type, enabled=False):
            if len(self.images) == 1:
                image = self._images(0, pos, rows, epochs)
            else:  # FU: parts of different cached sizes, each at its own size
                image = torch.empty(
                    (len(pos), channels, self.size, self.size), device=device, dtype=torch.float32
                )
                for k in range(len(self.images)):
                    sel = (batch["part"] == k).nonzero().squeeze(1)
                    if len(sel):
                        image[sel] = self._images(k, pos[sel], rows[sel], epochs[sel])
        return {**batch, "image": image}

    def _images(self, k: int, pos: Tensor, rows: Tensor, epochs: Tensor) -> Tensor:
        x = self.images[k][pos].to(torch.float32)
        params = draw(self.steps, self.seed, epochs, rows, tuple(x.shape[-2:]))
        x = augment(x, self.steps, params)
        return normalise(resize_area(x, self.size), self.mean, self.std)
