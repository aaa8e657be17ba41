"""Backbones: exact parameter counts, Glorot init, input sizes."""

import torch
from torch import nn

from fer.models.backbones import small_vgg, vgg16
from fer.models.build import build_model
from fer.models.init import glorot_


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_small_vgg_parameter_count():
    assert n_params(small_vgg(7)) == 19_270_407
    assert n_params(small_vgg(6)) == 19_269_382


def test_small_vgg_shapes_and_cam_resolution():
    net = small_vgg(6).eval()
    x = torch.zeros(2, 1, 48, 48)
    assert net(x).shape == (2, 6)
    assert net.features[:-1](x).shape[-2:] == (17, 17)  # last conv map, before the pool


def test_vgg16_head_and_relus_not_inplace():
    net = vgg16(6)
    assert net.classifier[-1].out_features == 6
    assert n_params(net) == 138_357_544 - 4096 * 1000 - 1000 + 4096 * 6 + 6
    assert not any(m.inplace for m in net.modules() if isinstance(m, nn.ReLU))


def test_glorot_zero_bias_and_bounds():
    torch.manual_seed(0)
    lin = glorot_(nn.Sequential(nn.Linear(300, 200)))[0]
    bound = (6 / (300 + 200)) ** 0.5
    assert lin.bias.abs().sum() == 0
    assert lin.weight.abs().max() <= bound
    assert lin.weight.abs().max() > 0.9 * bound


def test_build_model_from_config():
    net = build_model(
        {"arch": "small_vgg", "input": {"channels": 1, "size": 48}}, {"name": "glorot"}, 6
    )
    assert net.classifier[-1].out_features == 6
    assert all(
        float(m.bias.detach().abs().sum()) == 0
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    )
