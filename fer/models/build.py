"""`build_model(model_cfg, init_cfg, num_classes)`: the one door to every network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from fer.errors import ConfigError
from fer.models.backbones import BACKBONES
from fer.models.init import INITS


def build_model(
    model_cfg: Mapping[str, Any], init_cfg: Mapping[str, Any], num_classes: int
) -> nn.Module:
    """Build the backbone named by ``model.arch`` and initialise it per ``init.name``."""
    arch = model_cfg["arch"]
    if arch not in BACKBONES:
        raise ConfigError(f"model.arch={arch!r} is unknown; available: {sorted(BACKBONES)}")
    inp = model_cfg["input"]
    kwargs: dict[str, Any] = {
        "in_channels": int(inp["channels"]),
        "dropout": float(model_cfg.get("dropout", 0.5)),
    }
    if arch == "small_vgg":
        kwargs["input_size"] = int(inp["size"])
    net = BACKBONES[arch](num_classes, **kwargs)
    init = init_cfg["name"]
    if init not in INITS:
        raise ConfigError(f"init={init!r} is not implemented; available: {sorted(INITS)}")
    return INITS[init](net)
