"""Weight initialisations (the `init` config group)."""

from __future__ import annotations

from torch import nn


def glorot_(model: nn.Module) -> nn.Module:
    """Xavier-uniform (Glorot) for every conv and linear weight, zero biases (study A's scratch)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


INITS = {"glorot": glorot_}
