"""Batched class activation maps with the `grad-cam` package (no hand-written hooks).

Traps handled here (../shared/STYLE.md §3, §7): one target *per image*
(`ClassifierOutputTarget(y)` for each y — one target for a batch silently gives image 0's
gradients to all); CAMs need gradients, so this runs outside Lightning's `inference_mode`;
the CAM object switches the model to eval mode and never restores it, so we do; its context
manager swallows `IndexError`, so nothing but the package call sits inside it; the default
target layer is the ReLU after the last conv (on the conv itself CPU and GPU maps differ).

Each map is min–max normalised per image by the package (values in [0, 1]) and resized to the
model's input resolution.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def compute_cams(
    net: nn.Module,
    batches: Iterable[dict[str, Any]],
    method: str = "gradcam",
    target: str = "label",
    layer: str | None = None,
) -> CamResult:
    """CAMs of every image the loader yields, batch by batch, with per-image targets."""
    if method not in METHODS:
        raise ConfigError(f"eval.cam_method={method!r}: allowed {list(METHODS)}")
    if target not in TARGETS:
        raise ConfigError(f"eval.cam_target={target!r}: allowed {list(TARGETS)}")
    was_training = net.training
    target_layer = resolve_layer(net, layer)
    device = next(net.parameters()).device
    cams, labels, preds, index, masks = [], [], [], [], []
    try:
        net.eval()
        with torch.enable_grad(), METHODS[method](model=net, target_layers=[target_layer]) as cam:
            for batch in batches:
                x = batch["image"].to(device)
                y = batch["label"]
                targets = (
                    [ClassifierOutputTarget(int(t)) for t in y] if target == "label" else None
                )  # None: the package targets each image's argmax
                maps = cam(input_tensor=x, targets=targets)
                cams.append(np.asarray(maps, dtype=np.float32))
                preds.append(cam.outputs.argmax(1).cpu().numpy())
                labels.append(y.numpy())
                index.append(np.asarray(batch["index"]))
                masks.append(batch["mask"].numpy())
    finally:
        net.train(was_training)
    if not cams:
        raise ConfigError("no images to explain (an empty subset)")
    return CamResult(
        np.concatenate(cams),
        np.concatenate(labels),
        np.concatenate(preds),
        np.concatenate(index),
        np.concatenate(masks),
    )
