"""Transfer strategies: exactly the named parameter groups change after an optimizer step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fer.errors import ConfigError
from fer.models.backbones import small_vgg
from fer.models.init import glorot_
from fer.strategies import apply_strategy, fc_modules, last_conv


def _step(strategy: str) -> tuple[dict, dict, torch.nn.Module]:
    torch.manual_seed(0)
    net = glorot_(small_vgg(7))
    counts = apply_strategy(net, strategy)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    x, y = torch.randn(8, 1, 48, 48), torch.arange(8) % 7
    F.cross_entropy(net(x), y).backward()
    opt.step()
    assert len(opt.state) == len(params)  # frozen parameters get no optimizer state
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    return counts, changed, net


def _names(net, modules) -> set[str]:
    ids = {id(p) for m in modules for p in m.parameters()}
    return {n for n, p in net.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("strategy", ["fc", "fc_conv", "full", "fusion"])
def test_only_the_strategys_parameters_change(strategy):
    counts, changed, net = _step(strategy)
    fc = _names(net, fc_modules(net))
    conv = _names(net, [last_conv(net)])
    expected = {
        "fc": fc,
        "fc_conv": fc | conv,
        "full": {n for n, _ in net.named_parameters()},
        "fusion": {n for n, _ in net.named_parameters()},
    }[strategy]
    assert changed == expected  # and every other tensor is bit-identical
    assert counts["trainable"] == sum(p.numel() for n, p in net.named_parameters() if n in expected)


def test_last_conv_is_the_fifth_conv_of_small_vgg():
    net = small_vgg(7)
    assert last_conv(net) is net.features[9]  # conv, relu, conv, relu, pool, (conv, relu) x3


def test_unknown_strategy():
    with pytest.raises(ConfigError, match="strategy='nope'"):
        apply_strategy(small_vgg(7), "nope")
