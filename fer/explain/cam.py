"""Batched class activation maps with the `grad-cam` package (no hand-written hooks).

Traps handled here (../shared/STYLE.md §3, §7): one target *per image*
(`ClassifierOutputTarget(y)` for each y — one target for a batch silently gives image 0's
gradients to all); CAMs need gradients, so this runs outside Lightning's `inference_mode`
(grad mode is switched on around each package call only, never across a `yield`); the CAM
object switches the model to eval mode and never restores it, so we do; its context manager
swallows `IndexError`, so it is not used: the hooks are released in a `finally`; the default
target layer is the ReLU after the last conv (on the conv itself CPU and GPU maps differ).

Each map is min–max normalised per image (values in [0, 1]) at the model's input resolution.
The package resizes the target layer's map over the whole input, which is right only when the
layer's cells tile the input evenly (padded convs at a multiple of the stride). Otherwise —
unpadded convs (small_vgg: its 17×17 map at 48 px covers pixels 7.5…39.5, not 0…47) or sizes
off the stride — `layer_grid` measures where each cell's receptive field is centred and
`place` puts the cells there (`Grid`; ../shared/STYLE.md §3 on CAM resolution).

`iter_cams` yields one batch at a time (evaluation streams: it never holds more than one batch
of maps); `compute_cams` collects every batch (small sets, prediction, tests, benchmarks).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fer.errors import ConfigError
from fer.strategies import last_conv

#: `eval.cam_method` -> the package's class.
METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}
TARGETS = ("label", "pred")


@dataclass
class CamResult:
    """Per-image maps (N, H, W) in [0, 1] with the labels, predictions and dataset rows."""

    cams: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    index: np.ndarray
    masks: np.ndarray  # (N, R, H, W) ROI masks of the same images, at input resolution


@dataclass
class CamBatch:
    """One batch of `iter_cams`: the fields of `CamResult` for B images, plus `others`, the
    maps (B, H, W) of each further model on the same images (same method, target rule and
    layer name; with target "pred" each model explains its own prediction)."""

    cams: np.ndarray  # (B, H, W) float32 in [0, 1]
    labels: np.ndarray
    preds: np.ndarray
    index: np.ndarray
    masks: np.ndarray  # (B, R, H, W)
    others: tuple[np.ndarray, ...] = ()


def default_target_layer(net: nn.Module) -> nn.Module:
    """The activation right after the backbone's last conv (the conv itself when none)."""
    conv = last_conv(net)
    found = False
    for module in net.modules():
        if found and isinstance(module, (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU)):
            return module
        if module is conv:
            found = True
        elif found and isinstance(module, (nn.Conv2d, nn.Linear)):
            break  # another layer before any activation: use the conv
    return conv


@dataclass(frozen=True)
class Grid:
    """Where a layer's cells sit on the input, per axis (y, x): cell i is centred on pixel
    coordinate `offset + stride * i` (pixel k spans [k - 0.5, k + 0.5])."""

    cells: tuple[int, int]
    offset: tuple[float, float]
    stride: tuple[float, float]

    def stretches(self, size: tuple[int, int]) -> bool:
        """True when resizing the map over `size` puts every cell where it belongs."""
        return all(
            abs(s - n / m) < 1e-6 and abs(o - (0.5 * n / m - 0.5)) < 1e-6
            for m, o, s, n in zip(self.cells, self.offset, self.stride, size, strict=True)
        )


def layer_grid(net: nn.Module, layer: nn.Module, shape: tuple[int, ...]) -> Grid | None:
    """Measure where `layer`'s cells are centred on a (C, H, W) input, or None when it cannot
    be told (a 1-cell axis, a layer whose output is not a map, cells not on a regular grid).

    Per axis, the input-gradient support of three middle cells (one random image each) gives
    their receptive fields [lo, hi]; the stride is the shift between neighbours and the centre
    (lo + hi) / 2 of cells not clipped by the border; both must agree across cells. When every
    field is clipped (VGG16's 212-pixel fields at 100 px) the probe is repeated at 2× and 4×
    the size: a conv/pool stack's offset and stride do not depend on the input size. The
    model's mode is restored.
    """
    mode = net.training
    # gates pass their input through while probing: their image-wide pooling would make every
    # cell's field global (small_vgg_se/_cbam would fall back to the stretch, unlike small_vgg)
    gates = [
        m.register_forward_hook(_bypass) for m in net.modules() if isinstance(m, _gate_types())
    ]
    try:
        net.eval()
        cells = _probe(net, layer, shape)
        if cells is None or min(cells) < 2:
            return None
        for scale in (1, 2, 4):
            big = (*shape[:-2], *(n * scale for n in shape[-2:]))
            fits = _receptive_fields(net, layer, big, cells if scale == 1 else None)
            if fits is not None:
                return Grid(cells, (fits[0][0], fits[1][0]), (fits[0][1], fits[1][1]))
        return None
    finally:
        for handle in gates:
            handle.remove()
        net.train(mode)


@functools.cache
def _gate_types() -> tuple[type, ...]:
    """Attention gates — fer's SE/CBAM and timm's SE, ECA, gather-excite, CBAM: they rescale
    a map by weights pooled over the whole image and keep its shape and geometry."""
    from fer.models.attention import ATTENTION_TYPES

    types = list(ATTENTION_TYPES)
    try:
        import timm.layers as tl
        from timm.layers import cbam
    except ImportError:
        return tuple(types)
    names = ("SEModule", "EffectiveSEModule", "EcaModule", "CecaModule", "GatherExcite")
    types += [getattr(tl, n) for n in names if hasattr(tl, n)]
    types += [getattr(cbam, n) for n in ("CbamModule", "LightCbamModule") if hasattr(cbam, n)]
    return tuple(types)


def _bypass(_m: nn.Module, inputs: tuple, out: Any) -> Any:
    """Forward hook: a gate's output replaced by its input (same shape only)."""
    x = inputs[0] if inputs else None
    same = isinstance(out, torch.Tensor) and isinstance(x, torch.Tensor) and out.shape == x.shape
    return x if same else out


class _Stop(Exception):
    """Raised by the probe's hook: nothing after the target layer needs to run."""


def _run_to(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """`layer`'s output for input x (the rest of the network is not run), when it is a map."""
    captured: list[Any] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        captured.append(out)
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        net(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    a = captured[0] if captured else None
    return a if isinstance(a, torch.Tensor) and a.dim() == 4 else None


def _probe(net: nn.Module, layer: nn.Module, shape: tuple[int, ...]) -> tuple[int, int] | None:
    device = next(net.parameters()).device
    with torch.no_grad():
        a = _run_to(net, layer, torch.zeros(1, *shape, device=device))
    return None if a is None else (int(a.shape[-2]), int(a.shape[-1]))


def _receptive_fields(
    net: nn.Module,
    layer: nn.Module,
    shape: tuple[int, ...],
    cells: tuple[int, int] | None = None,
) -> list[tuple[float, float]] | None:
    """[(offset, stride) for y, x] measured on a (C, H, W) input, or None (see layer_grid);
    `cells`: the layer's map size at this input, when already probed."""
    cells = cells or _probe(net, layer, shape)
    if cells is None:
        return None
    h, w = cells
    picks = []  # (axis, cell) for each probe image
    for axis, m in ((0, h), (1, w)):
        c = m // 2
        picks += [(axis, i) for i in range(max(c - 1, 0), min(c + 2, m))]
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(picks), *shape, generator=gen).to(device).requires_grad_(True)
    with torch.enable_grad():
        a = _run_to(net, layer, x)
        if a is None:
            return None
        sel = [
            a[k, :, i, w // 2] if axis == 0 else a[k, :, h // 2, i]
            for k, (axis, i) in enumerate(picks)
        ]
        (grad,) = torch.autograd.grad(torch.stack(sel).sum(), x)
    support = grad.abs().sum(1)  # (K, H, W)
    fits = []
    for axis in (0, 1):
        rf = {}
        for k, (ax, i) in enumerate(picks):
            if ax == axis:
                hit = torch.nonzero(support[k].sum(1 - axis) > 0).flatten()
                if hit.numel() == 0:
                    return None
                rf[i] = (int(hit.min()), int(hit.max()))
        fit = _fit_axis(rf, shape[1 + axis])
        if fit is None:
            return None
        fits.append(fit)
    return fits


def _fit_axis(rf: dict[int, tuple[int, int]], n: int) -> tuple[float, float] | None:
    """(offset, stride) from cells' receptive fields on an axis of n pixels (see layer_grid)."""
    cells = sorted(rf)
    strides = set()
    for i, j in itertools.pairwise(cells):
        if rf[i][0] > 0:  # left edges not clipped: their shift is the stride
            strides.add(rf[j][0] - rf[i][0])
        if rf[j][1] < n - 1:
            strides.add(rf[j][1] - rf[i][1])
    if len(strides) != 1:
        return None
    (stride,) = strides
    # lo_i = o + s*i - r and hi_j = o + s*j + r for unclipped edges: o from any such pair
    offsets = {
        (rf[i][0] + rf[j][1] - stride * (i + j)) / 2
        for i in cells
        for j in cells
        if rf[i][0] > 0 and rf[j][1] < n - 1
    }
    if len(offsets) != 1 or stride <= 0:
        return None
    return offsets.pop(), float(stride)


@functools.lru_cache(maxsize=32)
def _interp(n: int, m: int, offset: float, stride: float) -> np.ndarray:
    """(n, m) linear-interpolation weights: pixel k reads cell (k - offset) / stride, clamped
    to the first/last cell outside the grid (as the package's resize does at its borders)."""
    u = np.clip((np.arange(n) - offset) / stride, 0, m - 1)
    lo = np.floor(u).astype(int)
    hi = np.minimum(lo + 1, m - 1)
    frac = (u - lo).astype(np.float64)
    weights = np.zeros((n, m))
    np.add.at(weights, (np.arange(n), lo), 1 - frac)
    np.add.at(weights, (np.arange(n), hi), frac)
    return weights


def place(maps: np.ndarray, grid: Grid, size: tuple[int, int]) -> np.ndarray:
    """Cell maps (B, h, w) placed on (B, H, W) pixels by `grid`, min–max normalised per map."""
    wy = _interp(size[0], grid.cells[0], grid.offset[0], grid.stride[0])
    wx = _interp(size[1], grid.cells[1], grid.offset[1], grid.stride[1])
    out = wy @ maps.astype(np.float64) @ wx.T  # (H, h) @ (B, h, w) @ (w, W): two matmuls
    out -= out.min(axis=(1, 2), keepdims=True)
    out /= 1e-7 + out.max(axis=(1, 2), keepdims=True)
    return out.astype(np.float32)


def resolve_layer(net: nn.Module, name: str | None) -> nn.Module:
    """`name` (a dotted module path) or the default target layer."""
    if not name:
        return default_target_layer(net)
    try:
        return net.get_submodule(name)
    except AttributeError:
        kind = type(net).__name__
        raise ConfigError(f"eval.cam_layer={name!r} is not a module of {kind}") from None


def iter_cams(
    net: nn.Module,
    batches: Iterable[dict[str, Any]],
    method: str = "gradcam",
    target: str = "label",
    layer: str | None = None,
    others: Sequence[nn.Module] = (),
) -> Iterator[CamBatch]:
    """CAMs of every image the loader yields, one `CamBatch` per batch, per-image targets.

    The loader is read once; `others` (e.g. the randomised model of the sanity check) are
    explained on the same batch, so nothing is loaded twice and no map outlives its batch
    here. Arguments are checked at the call; the models are set to eval mode while the
    iterator runs and restored (hooks released) when it ends, fails or is closed.
    """
    if method not in METHODS:
        raise ConfigError(f"eval.cam_method={method!r}: allowed {list(METHODS)}")
    if target not in TARGETS:
        raise ConfigError(f"eval.cam_target={target!r}: allowed {list(TARGETS)}")
    models = [net, *others]
    layers = [resolve_layer(m, layer) for m in models]
    return _cam_batches(models, layers, batches, method, target)


def _cam_batches(
    models: list[nn.Module],
    layers: list[nn.Module],
    batches: Iterable[dict[str, Any]],
    method: str,
    target: str,
) -> Iterator[CamBatch]:
    modes = [m.training for m in models]
    devices = [next(m.parameters()).device for m in models]
    cams: list[Any] = []
    try:
        for m in models:
            m.eval()
        cams = [
            METHODS[method](model=m, target_layers=[t]) for m, t in zip(models, layers, strict=True)
        ]
        grids: list[Grid | None] | None = None
        for batch in batches:
            y = batch["label"]
            targets = (
                [ClassifierOutputTarget(int(t)) for t in y] if target == "label" else None
            )  # None: the package targets each image's argmax
            size = tuple(batch["image"].shape[-2:])
            if grids is None:  # measured once: every batch has the model's input size
                grids = _grids(models, layers, tuple(batch["image"].shape[1:]), cams)
            maps = []
            for cam, device, grid in zip(cams, devices, grids, strict=True):
                x = batch["image"].to(device)
                with torch.enable_grad():
                    m = np.asarray(cam(input_tensor=x, targets=targets), np.float32)
                maps.append(m if grid is None else place(m, grid, size))
            yield CamBatch(
                maps[0],
                y.numpy(),
                cams[0].outputs.argmax(1).cpu().numpy(),
                np.asarray(batch["index"]),
                batch["mask"].numpy(),
                tuple(maps[1:]),
            )
    finally:
        for cam in cams:
            cam.activations_and_grads.release()
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)


_GRIDS: dict[tuple[str, str, tuple[int, ...]], Grid | None] = {}


def _grids(
    models: list[nn.Module], layers: list[nn.Module], shape: tuple[int, ...], cams: list[Any]
) -> list[Grid | None]:
    """Each model's `Grid` where the package's stretch would misplace its cells (else None);
    such CAM objects are told to return the map at cell resolution, for `place`."""
    out: list[Grid | None] = []
    for m, layer, cam in zip(models, layers, cams, strict=True):
        name = next((n for n, mod in m.named_modules() if mod is layer), "")
        # same architecture, layer and input: same grid (the randomised twin, the next run)
        key = (repr(m), name, shape)
        if key not in _GRIDS:
            _GRIDS[key] = layer_grid(m, layer, shape)
        grid = _GRIDS[key]
        if grid is not None and grid.stretches(shape[-2:]):
            grid = None
        if grid is not None:
            cells = (grid.cells[1], grid.cells[0])  # the package's (width, height)
            cam.get_target_width_height = lambda _x, cells=cells: cells
        out.append(grid)
    return out


def compute_cams(
    net: nn.Module,
    batches: Iterable[dict[str, Any]],
    method: str = "gradcam",
    target: str = "label",
    layer: str | None = None,
) -> CamResult:
    """CAMs of every image the loader yields, batch by batch, with per-image targets."""
    parts = list(iter_cams(net, batches, method, target, layer))
    if not parts:
        raise ConfigError("no images to explain (an empty subset)")
    return CamResult(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("cams", "labels", "preds", "index", "masks")
        )
    )
