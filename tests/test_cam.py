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


def _stack(padding: int) -> nn.Sequential:
    """conv3 → pool2 → conv3 → pool2 → conv3 (the last ReLU is index 7)."""
    layers: list[nn.Module] = []
    for i in range(3):
        layers += [nn.Conv2d(1 if i == 0 else 4, 4, 3, padding=padding), nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten())


@pytest.mark.parametrize(
    ("padding", "size", "cells", "offset", "stretches"),
    [
        # padded at a multiple of the stride: cell i centred on 1.5 + 4 i, what a resize does
        (1, 32, 8, 1.5, True),
        # padded off the stride: 7 cells of stride 4 cover 1.5…25.5 of 30 pixels, not 0…29
        (1, 30, 7, 1.5, False),
        # unpadded: receptive fields of 18 pixels, the first centred on 8.5 (not 0…31)
        (0, 32, 4, 8.5, False),
    ],
)
def test_grid_is_where_the_receptive_fields_are(padding, size, cells, offset, stretches):
    from fer.explain.cam import layer_grid

    net = _stack(padding).train()
    grid = layer_grid(net, net[7], (1, size, size))
    assert grid.cells == (cells, cells)
    assert grid.offset == (offset, offset) and grid.stride == (4.0, 4.0)
    assert grid.stretches((size, size)) is stretches
    assert net.training


def test_small_vgg_cells_sit_on_the_image_centre(net):
    """small_vgg's unpadded convs: its 17×17 map at 48 px spans pixels 7.5…39.5 in steps of 2
    (receptive fields of 16), symmetric about the centre 23.5; the package's resize would put
    the cells at 0.9…46.1 (1.41× too spread). Same offset at 64 px (25 cells)."""
    from fer.explain.cam import layer_grid

    grid = layer_grid(net, default_target_layer(net), (1, 48, 48))
    assert grid.cells == (17, 17) and grid.offset == (7.5, 7.5) and grid.stride == (2.0, 2.0)
    assert grid.offset[0] + grid.stride[0] * 16 == 39.5
    big = small_vgg(6, 1, 64)
    wide = layer_grid(big, default_target_layer(big), (1, 64, 64))
    assert wide.cells == (25, 25) and wide.offset == (7.5, 7.5)


@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_attention_gates_do_not_change_the_grid(net, attention):
    """SE/CBAM pool over the whole image, so every cell's gradient reaches every pixel; the
    grid is measured with the gates bypassed and equals plain small_vgg's (else the attention
    arms of a study would get stretched maps and the plain arm placed ones)."""
    from fer.explain.cam import layer_grid

    cfg = {"arch": "small_vgg", "input": {"channels": 1, "size": 48}}
    cfg["attention"] = {"type": attention, "after_blocks": [1, 2]}
    gated = build_model(cfg, {"name": "glorot"}, 6)
    plain = layer_grid(net, default_target_layer(net), (1, 48, 48))
    assert layer_grid(gated, default_target_layer(gated), (1, 48, 48)) == plain


def test_place_puts_each_cell_on_its_centre():
    """A one-hot cell lands on its receptive-field centre: cell (3, 5) of a grid at
    offset 7.5, stride 2 is centred on pixel (13.5, 17.5), so pixels 13–14 × 17–18 share the
    maximum (each 0.75 × 0.75 of the cell) and the map falls off linearly: one pixel further
    out reads 0.25 of it (1/3 after normalising); edge cells are clamped outwards."""
    from fer.explain.cam import Grid, place

    maps = np.zeros((1, 17, 17), np.float32)
    maps[0, 3, 5] = 1.0
    out = place(maps, Grid((17, 17), (7.5, 7.5), (2.0, 2.0)), (48, 48))[0]
    assert out.shape == (48, 48)
    top = np.argwhere(out == out.max())
    assert sorted(map(tuple, top.tolist())) == [(13, 17), (13, 18), (14, 17), (14, 18)]
    assert out[13, 17] == pytest.approx(1.0, abs=1e-6)
    assert out[13, 19] == pytest.approx(1 / 3, abs=1e-6)  # u = 5.75: 0.25 of cell 5
    assert out[12, 17] == pytest.approx(1 / 3, abs=1e-6)
    assert out[13, 20] == 0.0 and out[11, 17] == 0.0  # u = 6.25, 1.75: cells 6 and 1 only
    assert out[0, 0] == 0.0 and out.min() == 0.0
    # an edge cell is clamped outwards: the first 8 columns all read cell 0
    edge = np.zeros((1, 17, 17), np.float32)
    edge[0, :, 0] = 1.0
    flat = place(edge, Grid((17, 17), (7.5, 7.5), (2.0, 2.0)), (48, 48))[0]
    assert np.allclose(flat[:, :8], 1.0, atol=1e-6) and np.all(flat[:, :8] == flat[:, :1])
    assert flat[0, 9] == pytest.approx(0.25, abs=1e-6) and np.all(flat[:, 10:] == 0.0)


def test_placed_cams_follow_the_receptive_fields(net):
    """End to end on small_vgg: the maps are placed by the grid (constant outside the cell
    centres 7.5…39.5, where the package's resize would have spread them to the border)."""
    from fer.explain.cam import Grid

    torch.manual_seed(3)
    x, y = torch.randn(2, 1, 48, 48), torch.tensor([0, 1])
    cams = compute_cams(net, _batches(x, y, 2)).cams
    assert cams.shape == (2, 48, 48) and cams.max() <= 1 and cams.min() >= 0
    # outside the grid (pixels < 7.5 or > 39.5) the map is constant along that axis
    assert np.all(cams[:, :, :8] == cams[:, :, :1]) and np.all(cams[:, :, 40:] == cams[:, :, 40:41])
    assert np.all(cams[:, :8, :] == cams[:, :1, :]) and np.all(cams[:, 40:, :] == cams[:, 40:41, :])
    assert not np.all(cams[:, :, 8] == cams[:, :, 7])
    assert Grid((17, 17), (7.5, 7.5), (2.0, 2.0)).stretches((48, 48)) is False
