"""Start-up checks of the `model` and `init` config groups: cheap, no torch/timm import.

Each function returns every problem it finds as one message (empty list = fine), so the caller
can report all of them at once before any data is scanned or any network built. The loaders
in `fer.models.init` raise the same messages (they call the helpers below).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VGG16_IMAGENET_FILE = "vgg16-397923af.pth"
"""torchvision's VGG16 ImageNet weights (``VGG16_Weights.IMAGENET1K_V1``) in the hub cache."""

INIT_NAMES = ("glorot", "imagenet", "checkpoint", "synthetic_pretrain")
CHECKPOINT_INITS = ("checkpoint", "synthetic_pretrain")
IMAGENET_ARCHS = ("vgg16", "timm")
HEAD_CHOICES = ("keep", "drop")
ATTENTION_CHOICES = ("se", "cbam")
VGG_BLOCKS = {"vgg16": 5, "small_vgg": 2}


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: ``$TORCH_HOME/hub``, default
    ``$XDG_CACHE_HOME/torch/hub`` or ``~/.cache/torch/hub``."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(cache, "torch")
    return Path(os.path.expanduser(home)) / "hub"


def vgg16_hub_file() -> Path:
    """Where the torch hub cache keeps torchvision's VGG16 ImageNet weights."""
    return torch_hub_dir() / "checkpoints" / VGG16_IMAGENET_FILE


def weights_path(init_cfg: Mapping[str, Any]) -> Path | None:
    """``init.weights_path`` as a Path (``~`` expanded), or None when unset."""
    value = init_cfg.get("weights_path")
    return Path(os.path.expanduser(str(value))) if value else None


def imagenet_missing_message(expected: Path | str, model: str, cache_file: Path | str) -> str:
    """The one message for absent ImageNet weights: the file, and the two ways to provide it."""
    return (
        f"init=imagenet: ImageNet weights for {model} not found (expected file: {expected}). "
        f"Provide them either by putting the file at {cache_file} "
        f"or by passing init.weights_path=<file>; nothing is downloaded at run time."
    )


def vgg16_imagenet_file(init_cfg: Mapping[str, Any]) -> tuple[Path, str | None]:
    """(the file `init=imagenet` loads for torchvision VGG16, the message if it is absent)."""
    explicit = weights_path(init_cfg)
    path = explicit or vgg16_hub_file()
    if path.is_file():
        return path, None
    return path, imagenet_missing_message(path, "vgg16", vgg16_hub_file())


def check_init(init_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any]) -> list[str]:
    """Every problem of the `init` choice for this model that can be seen without loading."""
    name = init_cfg.get("name")
    arch = model_cfg.get("arch")
    if name not in INIT_NAMES:
        return [f"init.name={name!r}: available {' | '.join(INIT_NAMES)}"]
    problems: list[str] = []
    if name == "imagenet":
        if arch not in IMAGENET_ARCHS:
            problems.append(
                f"init=imagenet: no ImageNet weights exist for model.arch={arch!r} "
                f"(available for {' | '.join(IMAGENET_ARCHS)}); use init=glorot or init=checkpoint"
            )
        elif arch == "vgg16":
            _, missing = vgg16_imagenet_file(init_cfg)
            if missing:
                problems.append(missing)
            channels = (model_cfg.get("input") or {}).get("channels", 3)
            if int(channels) != 3:
                problems.append(
                    f"init=imagenet: VGG16's ImageNet weights take 3 input channels, "
                    f"model.input.channels={channels} (grey images are replicated to 3)"
                )
        else:  # timm: the default cache file is only known to timm; an explicit path is checked
            explicit = weights_path(init_cfg)
            if explicit is not None and not explicit.is_file():
                problems.append(
                    imagenet_missing_message(
                        explicit, f"timm model {model_cfg.get('name')!r}", "timm's cache"
                    )
                )
    elif name in CHECKPOINT_INITS:
        path = init_cfg.get("path")
        if not path:
            problems.append(f"init={name}: init.path is not set (a run's last.ckpt or best.ckpt)")
        elif not Path(os.path.expanduser(str(path))).is_file():
            problems.append(f"init={name}: init.path={path} does not exist")
        head = init_cfg.get("head", "keep")
        if head not in HEAD_CHOICES:
            problems.append(f"init.head={head!r}: allowed keep | drop")
        strict = init_cfg.get("strict", True)
        if not isinstance(strict, bool):
            problems.append(f"init.strict={strict!r}: allowed true | false")
    return problems


def check_model(model_cfg: Mapping[str, Any]) -> list[str]:
    """Every problem of `model.attention` that can be seen without building the network.

    timm's stage names (``model.attention.after``) are checked when the model is built.
    """
    att = model_cfg.get("attention") or {}
    kind = att.get("type")
    if kind is None:
        return []
    arch = model_cfg.get("arch")
    problems: list[str] = []
    if kind not in ATTENTION_CHOICES:
        problems.append(f"model.attention.type={kind!r}: allowed se | cbam | null")
    reduction = att.get("reduction", 16)
    if not isinstance(reduction, int) or isinstance(reduction, bool) or reduction < 1:
        problems.append(f"model.attention.reduction={reduction!r}: a positive integer")
    if arch in VGG_BLOCKS:
        blocks = list(att.get("after_blocks") or [])
        n = VGG_BLOCKS[arch]
        bad = [b for b in blocks if not isinstance(b, int) or not 1 <= b <= n]
        if bad or len(set(blocks)) != len(blocks):
            problems.append(
                f"model.attention.after_blocks={blocks}: distinct block numbers in 1..{n} "
                f"({arch} has {n} pool-separated conv blocks)"
            )
        if att.get("after"):
            problems.append(
                f"model.attention.after is for model=timm; {arch} takes after_blocks (1..{n})"
            )
    elif arch == "timm" and att.get("after_blocks"):
        problems.append(
            "model.attention.after_blocks is for vgg16/small_vgg; model=timm takes "
            "model.attention.after: [<feature_info module names>]"
        )
    return problems
