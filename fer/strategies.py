"""Transfer strategies: which parameter groups train (study B's BL/FC/FC+CL/RE/FU names).

- `full`: every parameter trains (scratch with init=glorot; RE with init=checkpoint).
- `fc`: only the fully connected layers (VGG `classifier`; timm `get_classifier()` plus
  `pre_logits`). Attention modules count as convolutional: frozen.
- `fc_conv`: FC plus the last convolution layer of the backbone (not inside attention).
- `fusion`: trains everything on source + target merged (the data side: `train_on: both`).

Frozen parameters have `requires_grad=False`, so the optimizer holds no state for them; frozen
BatchNorm layers (CBAM's) are kept in eval mode so their running statistics do not move.
Dropout sits only in the FC layers, which train under every strategy.
"""

from __future__ import annotations

from torch import nn

from fer.errors import ConfigError

STRATEGIES: dict[str, str] = {"full": "RE", "fc": "FC", "fc_conv": "FC+CL", "fusion": "FU"}


def fc_modules(net: nn.Module) -> list[nn.Module]:
    """The fully connected part of a network."""
    if hasattr(net, "get_classifier"):  # timm
        mods = [net.get_classifier()]
        if isinstance(getattr(net, "pre_logits", None), nn.Module):
            mods.append(net.pre_logits)
        return mods
    if isinstance(getattr(net, "classifier", None), nn.Module):
        return [net.classifier]
    raise ConfigError(f"cannot find the FC layers of {type(net).__name__}")


def _attention_types() -> tuple[type, ...]:
    try:
        from fer.models.attention import ATTENTION_TYPES
    except ImportError:
        return ()
    return tuple(ATTENTION_TYPES)


def last_conv(net: nn.Module) -> nn.Conv2d:
    """The last convolution of the backbone, outside attention modules and FC layers."""
    skip: set[int] = set()
    for mod in [*fc_modules(net), *(m for m in net.modules() if isinstance(m, _attention_types()))]:
        skip.update(id(m) for m in mod.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and id(m) not in skip]
    if not convs:
        raise ConfigError(f"{type(net).__name__} has no convolution layer")
    return convs[-1]


def apply_strategy(net: nn.Module, strategy: str) -> dict[str, int]:
    """Freeze what `strategy` does not train; return trainable and frozen parameter counts."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r}: allowed {list(STRATEGIES)}")
    if strategy in ("fc", "fc_conv"):
        train = fc_modules(net) + ([last_conv(net)] if strategy == "fc_conv" else [])
        keep = {id(p) for m in train for p in m.parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in keep)
    else:
        for p in net.parameters():
            p.requires_grad_(True)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}


def frozen_norm_layers(net: nn.Module) -> list[nn.Module]:
    """BatchNorm layers whose parameters are all frozen: they must stay in eval mode."""
    return [
        m
        for m in net.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and not any(p.requires_grad for p in m.parameters())
    ]
