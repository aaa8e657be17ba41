"""`build_model(model_cfg, init_cfg, num_classes)`: the one door to every network.

Order: build the base network -> initialise it (`init.name`: Glorot or loaded weights) ->
insert the attention modules (`model.attention`) -> return. Inserting after the init means
every base layer carries the loaded values and the attention modules keep timm's own init
(a checkpoint of ours that already holds attention weights is the one exception: see
`fer.models.init.init_checkpoint`).

Where attention goes:
- ``vgg16`` / ``small_vgg``: ``model.attention.after_blocks`` numbers the pool-separated conv
  blocks of ``features`` (VGG16: 1..5). The module goes right after the block's max-pool (on
  the block's output: 128, 256, 512 channels for VGG16 blocks 2, 3, 4) and is named
  ``features.att<block>``; ``features`` stays an ``nn.Sequential`` whose base layers keep
  their keys (``features.0`` … ``features.30``), so integer indexing of ``features`` shifts
  by one per inserted module — look layers up by name.
- ``timm``: ``model.attention.after`` lists ``feature_info`` module names (``layer2`` for a
  ResNet; ``features.8`` for timm's VGG, whose feature_info names the ReLU *before* each pool).
  Inside an ``nn.Sequential`` parent the module goes right after the named one as
  ``<parent>.att_<name>``; after a whole ``nn.Sequential`` stage it is appended as
  ``<stage>.att``; after any other module it is that module's child ``<module>.att``, applied
  to its output by a forward hook (a module-level function, so copies of the net stay right).
Every inserted module is an instance of `fer.models.attention.ATTENTION_TYPES`.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fer.errors import ConfigError, DataError
from fer.models.attention import make_attention
from fer.models.backbones import BACKBONES
from fer.models.checks import check_model
from fer.models.init import INITS, META_INITS, refused_load, timm_imagenet_file

log = logging.getLogger(__name__)


def build_model(
    model_cfg: Mapping[str, Any], init_cfg: Mapping[str, Any], num_classes: int
) -> nn.Module:
    """Build ``model.arch``, initialise it per ``init.name``, insert ``model.attention``."""
    arch = model_cfg["arch"]
    if arch != "timm" and arch not in BACKBONES:
        raise ConfigError(
            f"model.arch={arch!r} is unknown; available: {sorted([*BACKBONES, 'timm'])}"
        )
    init = init_cfg["name"]
    if init not in INITS:
        raise ConfigError(f"init={init!r} is not implemented; available: {sorted(INITS)}")
    problems = check_model(model_cfg)
    if problems:
        raise ConfigError("; ".join(problems))

    if arch == "timm":
        net = _create_timm(model_cfg, init_cfg, num_classes)
    else:
        inp = model_cfg["input"]
        kwargs: dict[str, Any] = {
            "in_channels": int(inp["channels"]),
            "dropout": float(model_cfg.get("dropout", 0.5)),
        }
        if arch == "small_vgg":
            kwargs["input_size"] = int(inp["size"])
        # The init sets every tensor: skip the base's own (slow, overwritten) random init.
        meta = torch.device("meta") if init in META_INITS else contextlib.nullcontext()
        with meta:
            net = BACKBONES[arch](num_classes, **kwargs)

    attention = AttentionInserter(net, arch, model_cfg)
    INITS[init](net, init_cfg, attach=attention)
    attention()
    for m in net.modules():  # Grad-CAM trap (STYLE.md §7): no in-place activations
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    return net


def load_trained(model_cfg: Mapping[str, Any], num_classes: int, ckpt: Any) -> nn.Module:
    """A run's network in eval mode with every tensor from its checkpoint (Lightning's
    `last.ckpt`/`best.ckpt` or a weights-only file): built with glorot, so no weights file
    is needed, then loaded strictly — a checkpoint of another architecture is refused."""
    from fer.checkpoint_io import load_checkpoint

    net = build_model(model_cfg, {"name": "glorot"}, num_classes)
    try:
        loaded = load_checkpoint(ckpt)
    except (pickle.UnpicklingError, KeyError) as e:  # pickled objects, or not a torch file
        raise refused_load(ckpt, e) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise DataError(f"{ckpt}: not a checkpoint or state dict (found {type(loaded).__name__})")
    try:
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    except RuntimeError as e:
        raise DataError(
            f"{ckpt}: its tensors do not fit model.arch={model_cfg.get('arch')} with "
            f"{num_classes} classes ({_one_line(e)})"
        ) from None
    return net.eval()


def _one_line(error: Exception, limit: int = 300) -> str:
    """A library's multi-line message (torch lists every missing key) as one short line."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " …"


@dataclass(frozen=True)
class AttentionSite:
    """One attention module to insert: its module name, the module it follows, its width."""

    name: str
    after: str
    channels: int
    mode: str  # "sequence" (inserted into the parent Sequential) | "append" | "hook"


class AttentionInserter:
    """Plans the attention sites of ``net`` from ``model.attention`` (validating them now) and
    inserts the modules when called — once; later calls do nothing."""

    def __init__(self, net: nn.Module, arch: str, model_cfg: Mapping[str, Any]) -> None:
        att = model_cfg.get("attention") or {}
        self.net = net
        self.kind = att.get("type")
        self.reduction = int(att.get("reduction", 16))
        self.done = False
        if self.kind is None:
            self.sites: list[AttentionSite] = []
        elif arch == "timm":
            self.sites = timm_sites(net, list(att.get("after") or []))
        else:
            self.sites = vgg_sites(net, list(att.get("after_blocks") or []))
        self.names = [s.name for s in self.sites]

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        for site in self.sites:
            _insert(self.net, site, make_attention(self.kind, site.channels, self.reduction))


def vgg_sites(net: nn.Module, blocks: Sequence[int]) -> list[AttentionSite]:
    """Sites after the max-pool of each numbered block of ``net.features`` (1-based)."""
    pools: list[tuple[str, int]] = []
    channels = 0
    for key, module in net.features.named_children():
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        elif isinstance(module, nn.MaxPool2d):
            pools.append((key, channels))
    sites = []
    for b in blocks:
        if not 1 <= b <= len(pools):
            raise ConfigError(
                f"model.attention.after_blocks: block {b} does not exist (1..{len(pools)})"
            )
        key, ch = pools[b - 1]
        sites.append(AttentionSite(f"features.att{b}", f"features.{key}", ch, "sequence"))
    return sites


def timm_sites(net: nn.Module, after: Sequence[str]) -> list[AttentionSite]:
    """Sites after the named ``feature_info`` modules of a timm model."""
    info = {f["module"]: int(f["num_chs"]) for f in net.feature_info}
    sites = []
    for name in after:
        if name not in info:
            raise ConfigError(
                f"model.attention.after: {name!r} is not a feature_info module of "
                f"{type(net).__name__}; available: {list(info)}"
            )
        parent_name, _, leaf = name.rpartition(".")
        parent, target = net.get_submodule(parent_name), net.get_submodule(name)
        if isinstance(parent, nn.Sequential):
            site_name = f"{parent_name}.att_{leaf}" if parent_name else f"att_{leaf}"
            sites.append(AttentionSite(site_name, name, info[name], "sequence"))
        else:
            mode = "append" if isinstance(target, nn.Sequential) else "hook"
            sites.append(AttentionSite(f"{name}.att", name, info[name], mode))
    return sites


def _apply_attention(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the module's output through its ``att`` child."""
    return module.att(output)


def _insert(net: nn.Module, site: AttentionSite, module: nn.Module) -> None:
    if site.mode == "sequence":
        parent_name, _, leaf = site.after.rpartition(".")
        parent = net.get_submodule(parent_name)
        items = list(parent._modules.items())
        at = [k for k, _ in items].index(leaf) + 1
        items.insert(at, (site.name.rpartition(".")[2], module))
        parent._modules.clear()
        parent._modules.update(items)
    else:
        target = net.get_submodule(site.after)
        target.add_module("att", module)  # an appended Sequential child runs last by itself
        if site.mode == "hook":
            target.register_forward_hook(_apply_attention)


def _create_timm(
    model_cfg: Mapping[str, Any], init_cfg: Mapping[str, Any], num_classes: int
) -> nn.Module:
    """``timm.create_model(model.name)``; with ``init=imagenet`` from a local file only.

    ImageNet weights load strictly into the model at its pretrained class count (timm
    relaxes strictness when it drops a mismatched head), then the head is reset to
    ``num_classes`` (`init_imagenet` re-creates it with Glorot). timm adapts the first conv
    when ``model.input.channels`` != 3.
    """
    import timm

    name = str(model_cfg["name"])
    if not timm.is_model(name):
        raise ConfigError(f"model.name={name!r} is not a timm model (see timm.list_models())")
    kwargs = {
        "in_chans": int(model_cfg["input"]["channels"]),
        "drop_rate": float(model_cfg.get("dropout", 0.0)),
    }
    if init_cfg["name"] != "imagenet":
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    path = timm_imagenet_file(name, init_cfg)
    try:
        net = timm.create_model(
            name,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(path), "source": None},
            **kwargs,
        )
    except (RuntimeError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        # (AttributeError/TypeError: timm meets a file that holds no dict of tensors)
        raise DataError(
            f"{path}: not loadable as ImageNet weights of timm model {name}: expected a "
            f"state dict of its tensors ({_one_line(e)})"
        ) from e
    net.reset_classifier(num_classes)
    pcfg = net.pretrained_cfg
    inp = model_cfg["input"]
    for key in ("mean", "std"):
        if key in inp and pcfg.get(key) and list(inp[key]) != list(pcfg[key])[: len(inp[key])]:
            log.warning(
                "model.input.%s=%s differs from %s's pretrained %s=%s",
                key,
                list(inp[key]),
                name,
                key,
                list(pcfg[key]),
            )
    return net
