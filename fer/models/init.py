"""Weight initialisations (the `init` config group).

Every entry of `INITS` has the signature ``fn(net, init_cfg, *, attach) -> None``, where
``attach()`` inserts the model's attention modules (idempotent; `build_model` calls it after
the init in any case) and ``attach.names`` are their module names. Attention is inserted
*after* base weights load, so every base layer carries the loaded values and the attention
modules keep their own (timm) initialisation — except when a checkpoint of ours already holds
attention weights: then they are inserted first and loaded too.

Tensors a loader does not fill — the re-created classifier head, and keys missing under
``init.strict=false`` — are Glorot-initialised (Xavier-uniform weights, zero biases), like
study A's scratch model; the same for a timm model's head after ImageNet weights.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from fer.errors import ConfigError, DataError
from fer.models.checks import (
    CHECKPOINT_INITS,
    HEAD_CHOICES,
    imagenet_missing_message,
    torch_hub_dir,
    vgg16_imagenet_file,
    weights_path,
)

log = logging.getLogger(__name__)

LIGHTNING_PREFIX = "net."
"""FERClassifier keeps the network as ``self.net``: Lightning state-dict keys start with it."""

_LIST_KEYS = 8


class Attach(Protocol):
    """Inserts the model's attention modules once; ``names``: where they go (module names)."""

    names: Sequence[str]

    def __call__(self) -> None: ...


def glorot_(model: nn.Module) -> nn.Module:
    """Xavier-uniform (Glorot) for every conv and linear weight, zero biases (study A's scratch)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def head_name(net: nn.Module) -> str:
    """Module name of the classifier head: timm's ``get_classifier()``, else
    ``classifier``'s last layer (torchvision VGG16: ``classifier.6``; SmallVGG: ``classifier.7``).
    """
    if hasattr(net, "get_classifier"):
        head = net.get_classifier()
        for name, module in net.named_modules():
            if module is head:
                return name
        raise ConfigError(f"{type(net).__name__}: classifier head not found among its modules")
    classifier = getattr(net, "classifier", None)
    if isinstance(classifier, nn.Sequential):
        return f"classifier.{list(classifier._modules)[-1]}"
    raise ConfigError(f"{type(net).__name__}: no classifier head to re-create")


def reset_head_(net: nn.Module) -> str:
    """Re-create (Glorot) the classifier head in place; returns its module name."""
    name = head_name(net)
    glorot_(net.get_submodule(name))
    return name


# --- reading files --------------------------------------------------------------------------


def refused_load(path: str | Path, error: Exception) -> DataError:
    """The error for a file that `torch.load(weights_only=True)` refuses or cannot parse:
    pickled Python objects (the weights-only unpickler names the blocked global; nothing in
    the file ran), or not a torch file at all (a text file gives a bare KeyError)."""
    blocked = re.search(r"GLOBAL (\S+?)(?: |$)", str(error))
    if blocked:
        return DataError(
            f"{path}: refused to load: it holds pickled Python objects ({blocked[1]}), not only "
            "tensors; expected a state dict or checkpoint of tensors (torch.load weights_only=True)"
        )
    return DataError(
        f"{path}: not a PyTorch weights file; expected a state dict or checkpoint of tensors "
        "written by torch.save"
    )


def read_weights(path: str | Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)` on CPU, memory-mapped where the format allows it.

    A missing, truncated or empty file raises DataError naming the path (STYLE.md §7); so
    does a file of pickled objects, which the weights-only unpickler refuses (`refused_load`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file not found")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (non-zip) serialisation cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, KeyError) as e:
        raise refused_load(path, e) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        why = str(e).split(". ")[0] or "empty file"  # torch's text goes on for lines
        raise DataError(f"{path}: unreadable weights file ({why})") from e


def network_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The network's tensors from one of our checkpoints or a plain state dict.

    Lightning checkpoints hold them under ``state_dict`` with keys prefixed ``net.``; the
    prefix is removed where present (other keys stay, and count as unexpected).
    """
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(f"{path}: neither a Lightning checkpoint nor a state dict of tensors")
    return {k.removeprefix(LIGHTNING_PREFIX): v for k, v in sd.items()}


# --- matching keys --------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a load did: keys loaded, and the model's keys the file lacked, and vice versa."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def problems(self) -> str:
        parts = []
        for what, keys in (
            ("missing from the file", self.missing),
            ("unexpected in the file", self.unexpected),
            ("with a different shape", self.mismatched),
        ):
            if keys:
                parts.append(f"{len(keys)} key(s) {what}: {_short(keys)}")
        return "; ".join(parts)


def load_matched(
    net: nn.Module,
    sd: Mapping[str, torch.Tensor],
    *,
    strict: bool,
    skip: Iterable[str] = (),
    source: str,
    strict_hint: str = "",
) -> LoadReport:
    """Load ``sd`` into ``net`` by key, ignoring keys under the module names in ``skip``.

    Strict: any missing, unexpected or wrongly-shaped key is a ConfigError naming them (no
    silent partial load). Not strict: the matching keys load and the rest is reported.
    """
    prefixes = tuple(f"{s}." for s in skip)
    own = net.state_dict()
    expected = {k for k in own if not k.startswith(prefixes)}
    given = {k for k in sd if not k.startswith(prefixes)}
    report = LoadReport(
        source=source,
        missing=sorted(expected - given),
        unexpected=sorted(given - expected),
        mismatched=sorted(k for k in expected & given if own[k].shape != sd[k].shape),
    )
    if strict and report.problems():
        raise ConfigError(f"{source} does not match the model: {report.problems()}{strict_hint}")
    todo = {k: sd[k] for k in expected & given if k not in report.mismatched}
    net.load_state_dict(todo, strict=False)
    report.loaded = sorted(todo)
    return report


def _short(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_KEYS])
    return shown + (f", … and {len(keys) - _LIST_KEYS} more" if len(keys) > _LIST_KEYS else "")


# --- materialising networks built on the meta device ----------------------------------------


def _materialise(net: nn.Module) -> set[str]:
    """Allocate a network built on the meta device (nothing initialised yet); returns its
    state-dict keys, all still to be filled. Under a caller's own ``torch.device("meta")``
    (parameter counting) the network stays on meta."""
    if torch.get_default_device().type == "meta":
        return set()
    if not any(t.is_meta for t in net.state_dict().values()):
        return set()
    names = set(net.state_dict())
    net.to_empty(device="cpu")
    return names


def _glorot_unloaded(net: nn.Module, names: Iterable[str]) -> None:
    """Glorot for conv/linear weights left empty (in the order given), zeros for their biases."""
    for name in names:
        owner, _, attr = name.rpartition(".")
        module = net.get_submodule(owner)
        tensor = getattr(module, attr)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and attr == "weight":
            nn.init.xavier_uniform_(tensor)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and attr == "bias":
            nn.init.zeros_(tensor)
        else:  # only conv/linear-only backbones are built on the meta device
            raise RuntimeError(f"no initialisation for unloaded tensor {name}")


# --- the inits ------------------------------------------------------------------------------


def init_glorot(net: nn.Module, init_cfg: Mapping[str, Any], *, attach: Attach) -> None:
    """Study A's scratch: `glorot_` on the base network (allocated first if built on meta)."""
    empty = _materialise(net)
    if empty:
        _glorot_unloaded(net, [k for k in net.state_dict() if k in empty])
    else:
        glorot_(net)


def init_imagenet(net: nn.Module, init_cfg: Mapping[str, Any], *, attach: Attach) -> None:
    """torchvision VGG16 ImageNet weights from ``init.weights_path`` or the torch hub cache.

    The file is read with ``weights_only=True``; its 1000-class head (``classifier.6``) is
    dropped, every other tensor loads strictly, the head is re-created (Glorot). timm models
    loaded their weights when created (`build_model`), so only their head is re-created here.
    """
    if getattr(net, "pretrained_cfg", None) is not None:  # timm: loaded by timm.create_model
        reset_head_(net)
        return
    path, missing = vgg16_imagenet_file(init_cfg)
    if missing:
        raise DataError(missing)
    head = head_name(net)
    empty = _materialise(net)
    report = load_matched(
        net, read_weights(path), strict=True, skip=[head], source=f"ImageNet weights {path}"
    )
    done = set(report.loaded)
    _glorot_unloaded(net, [k for k in net.state_dict() if k in empty and k not in done])
    reset_head_(net)
    log.info(
        "init=imagenet: %d tensors from %s; head %s re-created", len(report.loaded), path, head
    )


def init_checkpoint(net: nn.Module, init_cfg: Mapping[str, Any], *, attach: Attach) -> None:
    """One of our runs (``init.path``): a Lightning checkpoint or a plain state dict.

    ``init.head``: ``keep`` loads the classifier too (same class list), ``drop`` re-creates it
    (Glorot; needed when the class list differs). ``init.strict`` (default true): missing or
    unexpected keys are an error naming them; false loads what matches and logs the rest.
    A checkpoint holding weights of the model's attention modules loads them too (attention
    inserted first); one without any is a base checkpoint (attention inserted afterwards,
    with its own init — as with ImageNet weights).
    """
    name = init_cfg.get("name", "checkpoint")
    raw = init_cfg.get("path")
    if not raw:
        raise ConfigError(f"init={name}: init.path is not set (a run's last.ckpt or best.ckpt)")
    path = Path(str(raw)).expanduser()
    if not path.is_file():
        raise DataError(f"init={name}: init.path={path} does not exist")
    head_mode = init_cfg.get("head", "keep")
    if head_mode not in HEAD_CHOICES:
        raise ConfigError(f"init.head={head_mode!r}: allowed keep | drop")
    strict = init_cfg.get("strict", True)
    if not isinstance(strict, bool):
        raise ConfigError(f"init.strict={strict!r}: allowed true | false")

    sd = network_state_dict(read_weights(path), path)
    empty = _materialise(net)
    if any(k.startswith(tuple(f"{n}." for n in attach.names)) for k in sd):
        attach()
    head = head_name(net)
    if head_mode == "keep":
        own = net.state_dict()
        wrong = [
            f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k.startswith(f"{head}.") and k in sd and sd[k].shape != own[k].shape
        ]
        if wrong:
            raise ConfigError(
                f"init.path={path}: the classifier head differs from the model's "
                f"({'; '.join(wrong)}) — the class lists differ: use init.head=drop"
            )
    report = load_matched(
        net,
        sd,
        strict=strict,
        skip=[head] if head_mode == "drop" else [],
        source=f"init.path={path}",
        strict_hint=" (init.strict=false loads the matching keys and reports the rest)",
    )
    done = set(report.loaded)
    _glorot_unloaded(net, [k for k in net.state_dict() if k in empty and k not in done])
    if head_mode == "drop":
        reset_head_(net)
    if report.problems():
        log.warning("init=%s: partial load (init.strict=false): %s", name, report.problems())
    log.info("init=%s: %d tensors from %s (head %s)", name, len(report.loaded), path, head_mode)


INITS: dict[str, Callable[..., None]] = {
    "glorot": init_glorot,
    "imagenet": init_imagenet,
    "checkpoint": init_checkpoint,
    "synthetic_pretrain": init_checkpoint,
}
"""init.name -> initialiser ``fn(net, init_cfg, *, attach)``."""

META_INITS = ("glorot", "imagenet", *CHECKPOINT_INITS)
"""Inits that set every tensor of a conv/linear-only base (torchvision VGG16, SmallVGG): such
a base is built on the meta device and allocated by the init, so VGG16's 138 M parameters are
not first filled with a random init that is overwritten at once."""


# --- timm -----------------------------------------------------------------------------------


def timm_imagenet_file(model_name: str, init_cfg: Mapping[str, Any]) -> Path:
    """The local file of a timm model's pretrained weights: ``init.weights_path``, else the
    Hugging Face hub cache (``$HF_HUB_CACHE``, or ``$HF_HOME/hub``, default
    ``~/.cache/huggingface/hub``) or the torch hub cache. Never downloads."""
    import os

    from timm.models import get_pretrained_cfg

    what = f"timm model {model_name!r}"
    pcfg = get_pretrained_cfg(model_name)
    found: list[Path] = []
    expected: Path | None = None
    if pcfg is not None and pcfg.url:
        expected = torch_hub_dir() / "checkpoints" / Path(pcfg.url).name
        found.append(expected)
    if pcfg is not None and pcfg.hf_hub_id:  # timm's default source: the HF hub cache
        hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface"), "hub"
        )
        repo = Path(os.path.expanduser(hub)) / f"models--{pcfg.hf_hub_id.replace('/', '--')}"
        for fname in ("model.safetensors", "pytorch_model.bin"):
            found += sorted(repo.glob(f"snapshots/*/{fname}"))
        expected = repo / "snapshots" / "main" / "model.safetensors"
    explicit = weights_path(init_cfg)
    if explicit is not None:
        if explicit.is_file():
            return explicit
        raise DataError(imagenet_missing_message(explicit, what, expected or "timm's cache"))
    if expected is None:
        raise ConfigError(
            f"init=imagenet: timm knows no pretrained weights for {model_name!r}; "
            f"pass init.weights_path=<file>"
        )
    for path in found:
        if path.is_file():
            return path
    raise DataError(imagenet_missing_message(expected, what, expected))
