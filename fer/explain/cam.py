"""Batched class activation maps with the `grad-cam` package (no hand-written hooks).

Traps handled here (../shared/STYLE.md §3, §7): one target *per image*
(`ClassifierOutputTarget(y)` for each y — one target for a batch silently gives image 0's
gradients to all); CAMs need gradients, so this runs outside Lightning's `inference_mode`
(grad mode is switched on around each package call only, never across a `yield`); the CAM
object switches the model to eval mode and never restores it, so we do; its context manager
swallows `IndexError`, so it is not used: the hooks are released in a `finally`; the default
target layer is the ReLU after the last conv (on the conv itself CPU and GPU maps differ).

Each map is min–max normalised per image by the package (values in [0, 1]) and resized to the
model's input resolution.

`iter_cams` yields one batch at a time (evaluation streams: it never holds more than one batch
of maps); `compute_cams` collects every batch (small sets, prediction, tests, benchmarks).
"""

from __future__ import annotations

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
        for batch in batches:
            y = batch["label"]
            targets = (
                [ClassifierOutputTarget(int(t)) for t in y] if target == "label" else None
            )  # None: the package targets each image's argmax
            maps = []
            for cam, device in zip(cams, devices, strict=True):
                x = batch["image"].to(device)
                with torch.enable_grad():
                    maps.append(np.asarray(cam(input_tensor=x, targets=targets), np.float32))
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
