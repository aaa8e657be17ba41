"""Channel/spatial attention modules (study A): timm's SE and CBAM, r = 16, CBAM kernel 7.

Both are thin subclasses of timm's modules (same computation, same state-dict keys), so that
`ATTENTION_TYPES` finds exactly the modules *we* inserted — never an SE block a timm model
(e.g. ``seresnet50``) already has inside. Their ReLUs are made non-in-place (Grad-CAM trap,
STYLE.md §7); their weights keep timm's own default initialisation.

Parameter counts (C channels, r reduction, C/r rounded to the nearest integer — exact for
C = 128, 256, 512 at r = 16; the tests check these numbers):

- SE: two biased 1×1 convs C → C/r → C: ``2·C²/r + C/r + C``
  (2,184 at C=128; 8,464 at 256; 33,312 at 512).
- CBAM: a bias-free shared MLP C → C/r → C (``2·C²/r``), a bias-free 7×7 conv 2 → 1
  (``98``) and a one-channel BatchNorm (``2``): ``2·C²/r + 100``
  (2,148 at C=128; 8,292 at 256; 32,868 at 512). Its BatchNorm also holds running statistics
  (buffers, not parameters).
"""

from __future__ import annotations

from timm.layers import SEModule
from timm.layers.cbam import CbamModule
from torch import nn

from fer.errors import ConfigError

CBAM_SPATIAL_KERNEL = 7


class SE(SEModule):
    """Squeeze-and-Excitation (Hu et al. 2018): timm's `SEModule`, marked as ours."""


class CBAM(CbamModule):
    """CBAM (Woo et al. 2018), channel then spatial attention: timm's `CbamModule`, ours."""


ATTENTION_TYPES: tuple[type[nn.Module], ...] = (SE, CBAM)
"""Every attention module `build_model` inserts is an instance of one of these classes."""

ATTENTION_KINDS = ("se", "cbam")


def se_param_count(channels: int, reduction: int = 16) -> int:
    """``2·C²/r + C/r + C`` (C/r rounded as timm rounds it with divisor 1)."""
    rd = _reduced(channels, reduction)
    return 2 * channels * rd + rd + channels


def cbam_param_count(channels: int, reduction: int = 16) -> int:
    """``2·C²/r + 2·7·7 + 2``: bias-free MLP, bias-free 7×7 conv, BatchNorm affine."""
    rd = _reduced(channels, reduction)
    return 2 * channels * rd + 2 * CBAM_SPATIAL_KERNEL**2 + 2


def make_attention(kind: str, channels: int, reduction: int = 16) -> nn.Module:
    """A fresh SE or CBAM module for a ``channels``-channel feature map (timm's default init)."""
    if kind not in ATTENTION_KINDS:
        raise ConfigError(f"model.attention.type={kind!r}: allowed se | cbam | null")
    if int(reduction) < 1 or int(reduction) > channels:
        raise ConfigError(f"model.attention.reduction={reduction}: must be in 1..{channels}")
    ratio = 1.0 / int(reduction)
    if kind == "se":
        module: nn.Module = SE(channels, rd_ratio=ratio, rd_divisor=1)
    else:
        module = CBAM(
            channels, rd_ratio=ratio, rd_divisor=1, spatial_kernel_size=CBAM_SPATIAL_KERNEL
        )
    for m in module.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    return module


def _reduced(channels: int, reduction: int) -> int:
    # timm's make_divisible(C / r, divisor=1, round_limit=0): round half up, at least 1.
    return max(1, int(channels / reduction + 0.5))
