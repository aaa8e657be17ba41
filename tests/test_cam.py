"""Batched Grad-CAM: shapes, batch == per image, per-image targets, model mode restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fer.errors import ConfigError
from fer.explain.cam import METHODS, compute_cams, default_target_layer
from fer.models.backbones import small_vgg
from fer.models.build import build_model
from fer.models.init import glorot_


def _batches(x: torch.Tensor, y: torch.Tensor, size: int):
    masks = torch.zeros(len(x), 3, *x.shape[-2:], dtype=torch.uint8)
    for i in range(0, len(x), size):
        yield {
            "image": x[i : i + size],
            "label": y[i : i + size],
            "index": torch.arange(i, i + size)[: len(x[i : i + size])],
            "mask": masks[i : i + size],
        }


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return glorot_(small_vgg(6)).train()


def test_default_layer_is_the_relu_after_the_last_conv(net):
    assert default_target_layer(net) is net.features[10]
    assert isinstance(net.features[10], nn.ReLU)


def test_batched_equals_per_image_and_mode_restored(net):
    torch.manual_seed(1)
    x, y = torch.randn(6, 1, 48, 48), torch.tensor([0, 1, 2, 3, 4, 5])
    batched = compute_cams(net, _batches(x, y, 6))
    single = compute_cams(net, _batches(x, y, 1))
    assert batched.cams.shape == (6, 48, 48)
    assert np.abs(batched.cams - single.cams).max() < 1e-5
    assert batched.cams.min() >= 0 and batched.cams.max() <= 1
    assert net.training  # the package leaves models in eval mode; we restore it
    assert batched.labels.tolist() == y.tolist() and len(batched.preds) == 6


def test_per_image_targets(net):
    """Each image gets its own target: the CAM of image k does not depend on image 0's label."""
    torch.manual_seed(2)
    x = torch.randn(2, 1, 48, 48)
    a = compute_cams(net, _batches(x, torch.tensor([0, 3]), 2)).cams
    b = compute_cams(net, _batches(x, torch.tensor([5, 3]), 2)).cams
    assert np.abs(a[1] - b[1]).max() < 1e-6  # image 1 unchanged
    assert np.abs(a[0] - b[0]).max() > 1e-3  # image 0's target changed its map


@pytest.mark.parametrize("model", ["vgg16", "vgg16_se", "vgg16_cbam"])
def test_cam_shape_equals_input_for_vgg16_variants(model):
    cfg = {"arch": "vgg16", "input": {"channels": 3, "size": 32}}
    if model != "vgg16":
        cfg["attention"] = {"type": model.split("_")[1], "after_blocks": [2, 3, 4]}
    net = build_model(cfg, {"name": "glorot"}, 6)
    res = compute_cams(net, _batches(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]), 2))
    assert res.cams.shape == (2, 32, 32)


@pytest.mark.parametrize("attention", [None, "se", "cbam"])
def test_cam_shape_equals_input_for_small_vgg_variants(attention):
    cfg = {"arch": "small_vgg", "input": {"channels": 1, "size": 48}}
    if attention:
        cfg["attention"] = {"type": attention, "after_blocks": [1, 2]}
    net = build_model(cfg, {"name": "glorot"}, 6)
    res = compute_cams(net, _batches(torch.randn(3, 1, 48, 48), torch.tensor([0, 1, 2]), 3))
    assert res.cams.shape == (3, 48, 48)


def test_unknown_method_and_target():
    with pytest.raises(ConfigError, match=r"eval\.cam_method"):
        compute_cams(small_vgg(6), [], method="nope")
    with pytest.raises(ConfigError, match=r"eval\.cam_target"):
        compute_cams(small_vgg(6), [], target="true")
    assert "gradcam" in METHODS
