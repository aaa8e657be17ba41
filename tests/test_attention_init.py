"""Attention modules (SE, CBAM), where they sit, and every initialisation's loaded weights.

VGG16 has 138 M parameters: its ImageNet stand-in file is written once per module, models
are built once each, and parameter counts of unloaded models use the meta device.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fer.errors import ConfigError, DataError
from fer.models.attention import (
    ATTENTION_TYPES,
    CBAM,
    SE,
    cbam_param_count,
    make_attention,
    se_param_count,
)
from fer.models.backbones import vgg16
from fer.models.build import build_model
from fer.models.checks import VGG16_IMAGENET_FILE, check_init, check_model

REPO = Path(__file__).resolve().parents[1]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
VGG_INPUT = {"channels": 3, "size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
SMALL_INPUT = {"channels": 1, "size": 48, "mean": [0.5], "std": [0.25]}
VGG16_6_CLASSES = 134_285_126
BLOCK_CHANNELS = {2: 128, 3: 256, 4: 512}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def vgg_cfg(kind: str | None, blocks=(2, 3, 4)) -> dict:
    name = {None: "vgg16", "se": "vgg16_se", "cbam": "vgg16_cbam"}[kind]
    att = {"type": kind, "after_blocks": list(blocks), "reduction": 16}
    return {"name": name, "arch": "vgg16", "input": VGG_INPUT, "dropout": 0.5, "attention": att}


def small_cfg(kind: str | None = None, blocks=(1, 2)) -> dict:
    att = {"type": kind, "after_blocks": list(blocks), "reduction": 16}
    return {"name": "small_vgg", "arch": "small_vgg", "input": SMALL_INPUT, "attention": att}


def timm_cfg(name: str, kind: str | None = None, after=()) -> dict:
    att = {"type": kind, "after": list(after), "reduction": 16}
    return {"name": name, "arch": "timm", "input": VGG_INPUT, "dropout": 0.0, "attention": att}


def attention_modules(net: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in net.named_modules() if isinstance(m, ATTENTION_TYPES)}


def attention_inputs(net: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Run a forward pass; the input shape each attention module saw."""
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, tuple(a[0].shape)))
        for n, m in attention_modules(net).items()
    ]
    with torch.no_grad():
        out = net.eval()(x)
    for h in hooks:
        h.remove()
    assert out.shape[0] == x.shape[0]
    return seen


# --- attention modules ----------------------------------------------------------------------


def test_attention_parameter_formulas():
    se, cbam = make_attention("se", 128), make_attention("cbam", 128)
    assert isinstance(se, SE) and isinstance(cbam, CBAM)
    assert n_params(se) == 2 * 128**2 // 16 + 128 // 16 + 128 == 2_184
    assert n_params(cbam) == 2 * 128**2 // 16 + 2 * 7 * 7 + 2 == 2_148
    assert cbam.spatial.conv.conv.kernel_size == (7, 7)
    for c in (128, 256, 512):
        assert n_params(make_attention("se", c)) == se_param_count(c)
        assert n_params(make_attention("cbam", c)) == cbam_param_count(c)
    assert not any(getattr(m, "inplace", False) for m in (*se.modules(), *cbam.modules()))
    with pytest.raises(ConfigError, match=r"se \| cbam"):
        make_attention("eca", 128)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        (None, 0),
        ("se", sum(se_param_count(c) for c in BLOCK_CHANNELS.values())),
        ("cbam", sum(cbam_param_count(c) for c in BLOCK_CHANNELS.values())),
    ],
)
def test_vgg16_parameter_counts(kind, extra):
    with torch.device("meta"):
        net = build_model(vgg_cfg(kind), {"name": "glorot"}, 6)
    assert n_params(net) == VGG16_6_CLASSES + extra
    assert extra in (0, 43_960, 43_308)


# --- init=imagenet --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """torchvision's key names and 1000-class head, random values (seeded)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vgg16(1000).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.rand(s, generator=gen) - 0.5 for k, s in shapes.items()}
    path = tmp_path_factory.mktemp("imagenet") / VGG16_IMAGENET_FILE
    torch.save(sd, path)
    return path, sd


@pytest.mark.parametrize("kind", [None, "se", "cbam"])
def test_imagenet_weights_load_exactly_and_attention_only_where_configured(imagenet_file, kind):
    path, ref = imagenet_file
    net = build_model(vgg_cfg(kind), {"name": "imagenet", "weights_path": str(path)}, 6)
    own = net.state_dict()
    for key, tensor in ref.items():
        if key.startswith("classifier.6."):
            continue
        assert torch.equal(own[key], tensor), key
    head = net.classifier[-1]
    assert head.weight.shape == (6, 4096) and float(head.bias.detach().abs().sum()) == 0  # Glorot
    assert not torch.equal(head.weight, ref["classifier.6.weight"][:6])

    att = attention_modules(net)
    extra = {k for k in own if k not in ref}
    if kind is None:
        assert not att and extra == set()
        return
    assert set(att) == {"features.att2", "features.att3", "features.att4"}
    assert all(isinstance(m, SE if kind == "se" else CBAM) for m in att.values())
    assert all(k.split(".")[1] in {"att2", "att3", "att4"} for k in extra)
    count = se_param_count if kind == "se" else cbam_param_count
    assert n_params(net) == VGG16_6_CLASSES + sum(count(c) for c in BLOCK_CHANNELS.values())
    # each module sits on its block's output, right after the block's max-pool
    keys = list(net.features._modules)
    for b, pool in ((2, "9"), (3, "16"), (4, "23")):
        assert keys[keys.index(pool) + 1] == f"att{b}"
        assert isinstance(net.features.get_submodule(pool), nn.MaxPool2d)
    seen = attention_inputs(net, torch.randn(2, 3, 64, 64))
    assert {n: s[1] for n, s in seen.items()} == {
        f"features.att{b}": c for b, c in BLOCK_CHANNELS.items()
    }
    assert [s[-1] for s in seen.values()] == [16, 8, 4]  # after pools 2, 3, 4 of 64x64


def test_imagenet_missing_file_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / VGG16_IMAGENET_FILE
    init = {"name": "imagenet", "weights_path": None}
    with pytest.raises(DataError) as err:
        build_model(vgg_cfg("se"), init, 6)
    message = str(err.value)
    assert f"expected file: {hub_file}" in message
    assert f"at {hub_file}" in message and "init.weights_path=<file>" in message
    assert check_init(init, vgg_cfg("se")) == [message]

    other = tmp_path / "elsewhere.pth"
    init = {"name": "imagenet", "weights_path": str(other)}
    problems = check_init(init, vgg_cfg(None))
    assert len(problems) == 1 and str(other) in problems[0] and str(hub_file) in problems[0]
    with pytest.raises(DataError) as err:
        build_model(vgg_cfg(None), init, 6)
    assert str(err.value) == problems[0]


def test_check_init_imports_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from fer.models.checks import check_init, check_model\n"
        "p = check_init({'name': 'imagenet', 'weights_path': None},"
        " {'arch': 'vgg16', 'input': {'channels': 3}})\n"
        "assert len(p) == 1 and 'vgg16-397923af.pth' in p[0], p\n"
        "assert check_init({'name': 'checkpoint', 'path': None}, {'arch': 'vgg16'})\n"
        "assert check_model({'arch': 'vgg16', 'attention': {'type': 'se', 'after_blocks': [6]}})\n"
        "heavy = [m for m in ('torch', 'timm', 'torchvision', 'lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "TORCH_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_check_init_and_check_model_messages(tmp_path):
    assert check_init({"name": "glorot"}, small_cfg()) == []
    [msg] = check_init({"name": "imagenet"}, small_cfg())
    assert "small_vgg" in msg
    grey = {**vgg_cfg(None), "input": {**VGG_INPUT, "channels": 1}}
    assert any("channels" in p for p in check_init({"name": "imagenet"}, grey))
    problems = check_init(
        {"name": "checkpoint", "path": str(tmp_path / "no.ckpt"), "head": "x"}, {}
    )
    assert len(problems) == 2 and "no.ckpt" in problems[0] and "keep | drop" in problems[1]
    assert check_model(vgg_cfg("se")) == [] and check_model(vgg_cfg(None)) == []
    assert "1..5" in check_model(vgg_cfg("se", blocks=(0, 3)))[0]
    with pytest.raises(ConfigError, match=r"after_blocks"):
        build_model(small_cfg("se", blocks=(3,)), {"name": "glorot"}, 6)


# --- init=checkpoint ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A Lightning-style checkpoint of a 7-class SmallVGG (our source run of study B)."""
    torch.manual_seed(1)
    sd = build_model(small_cfg(), {"name": "glorot"}, 7).state_dict()
    path = tmp_path_factory.mktemp("run") / "last.ckpt"
    ckpt = {"state_dict": {f"net.{k}": v for k, v in sd.items()}, "epoch": 3}
    torch.save({**ckpt, "hyper_parameters": {"classes": list("abcdefg")}}, path)
    return path, sd


def assert_loaded(net: nn.Module, ref: dict[str, torch.Tensor], skip: str = "") -> None:
    own = net.state_dict()
    for key, tensor in ref.items():
        if skip and key.startswith(skip):
            continue
        assert torch.equal(own[key], tensor), key


def test_checkpoint_keep_and_drop_head(source_run):
    path, ref = source_run
    net = build_model(small_cfg(), {"name": "checkpoint", "path": str(path), "head": "keep"}, 7)
    assert_loaded(net, ref)
    net = build_model(small_cfg(), {"name": "checkpoint", "path": str(path), "head": "drop"}, 6)
    assert_loaded(net, ref, skip="classifier.7.")
    assert (
        net.classifier[7].out_features == 6
        and float(net.classifier[7].bias.detach().abs().sum()) == 0
    )
    with pytest.raises(ConfigError, match=r"init\.head=drop") as err:
        build_model(small_cfg(), {"name": "checkpoint", "path": str(path), "head": "keep"}, 6)
    assert "classifier.7.weight (7, 1024) vs model (6, 1024)" in str(err.value)


def test_checkpoint_missing_and_unexpected_keys(source_run, tmp_path, caplog):
    _, ref = source_run
    sd = {k: v for k, v in ref.items() if k != "features.0.bias"}
    sd["extra.weight"] = torch.zeros(3)
    bad = tmp_path / "plain.pt"
    torch.save(sd, bad)  # a plain state dict, no "net." prefix
    init = {"name": "checkpoint", "path": str(bad), "head": "keep", "strict": True}
    with pytest.raises(ConfigError) as err:
        build_model(small_cfg(), init, 7)
    message = str(err.value)
    assert "features.0.bias" in message and "extra.weight" in message
    assert "init.strict=false" in message

    with caplog.at_level(logging.WARNING, logger="fer.models.init"):
        net = build_model(small_cfg(), {**init, "strict": False}, 7)
    assert "features.0.bias" in caplog.text and "extra.weight" in caplog.text
    assert_loaded(net, sd, skip="extra.")
    assert float(net.features[0].bias.detach().abs().sum()) == 0  # unloaded: Glorot (zero bias)

    with pytest.raises(DataError, match="does not exist"):
        build_model(small_cfg(), {**init, "path": str(tmp_path / "none.ckpt")}, 7)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.ckpt"):
        build_model(small_cfg(), {**init, "path": str(tmp_path / "empty.ckpt")}, 7)


def test_checkpoint_with_and_without_attention_weights(source_run, tmp_path):
    path, ref = source_run
    init = {"name": "checkpoint", "path": str(path), "head": "keep"}
    # a base checkpoint: base loads, attention inserted afterwards with its own init
    net = build_model(small_cfg("cbam"), init, 7)
    assert_loaded(net, ref)
    assert set(attention_modules(net)) == {"features.att1", "features.att2"}
    # a checkpoint with attention weights loads them too
    torch.manual_seed(2)
    for p in net.parameters():
        p.data.normal_()
    full = net.state_dict()
    torch.save({"state_dict": {f"net.{k}": v for k, v in full.items()}}, tmp_path / "att.ckpt")
    again = build_model(small_cfg("cbam"), {**init, "path": str(tmp_path / "att.ckpt")}, 7)
    assert_loaded(again, full)
    seen = attention_inputs(again, torch.randn(2, 1, 48, 48))
    assert {n: s[1] for n, s in seen.items()} == {"features.att1": 64, "features.att2": 128}
    # ... and refuses a model whose attention sits elsewhere
    with pytest.raises(ConfigError, match=r"features\.att2"):
        build_model(small_cfg("cbam", blocks=(1,)), {**init, "path": str(tmp_path / "att.ckpt")}, 7)


def test_init_configs_compose(make_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the relative init.path must not find a developer's outputs/
    cfg = make_cfg("model=vgg16_se", "init=synthetic_pretrain")
    assert cfg.init.label == "ImageNet stand-in (synthetic)" and cfg.init.head == "drop"
    assert cfg.init.path == "outputs/pretrain/synthetic_pretrain/last.ckpt" and cfg.init.strict
    assert cfg.model.attention.after_blocks == [2, 3, 4] and cfg.model.input.size == 224
    assert check_init(cfg.init, cfg.model) == [
        "init=synthetic_pretrain: init.path=outputs/pretrain/synthetic_pretrain/last.ckpt "
        "does not exist"
    ]
    assert make_cfg("init=imagenet").init.label == "ImageNet"
    assert make_cfg("init=glorot").init.label == "scratch"
    assert make_cfg("model=vgg16_cbam").model.attention.type == "cbam"
    timm = make_cfg("model=timm", "model.name=vgg11", "init=checkpoint").model
    assert timm.arch == "timm" and timm.attention.type is None and timm.input.channels == 3


# --- timm -----------------------------------------------------------------------------------


def test_timm_resnet18_attention_after_named_stages():
    net = build_model(
        timm_cfg("resnet18", "se", ["act1", "layer2", "layer3"]), {"name": "glorot"}, 6
    )
    assert set(attention_modules(net)) == {"act1.att", "layer2.att", "layer3.att"}
    seen = attention_inputs(net, torch.randn(2, 3, 32, 32))
    assert {n: s[1] for n, s in seen.items()} == {
        "act1.att": 64,
        "layer2.att": 128,
        "layer3.att": 256,
    }
    with pytest.raises(ConfigError, match="layer2"):  # the message lists the valid names
        build_model(timm_cfg("resnet18", "se", ["layer9"]), {"name": "glorot"}, 6)


def test_timm_vgg11_attention_after_named_stages():
    cfg = timm_cfg("vgg11", "cbam", ["features.4", "features.9"])
    net = build_model(cfg, {"name": "glorot"}, 6)
    assert set(attention_modules(net)) == {"features.att_4", "features.att_9"}
    keys = list(net.features._modules)
    assert keys[keys.index("4") + 1] == "att_4" and keys[keys.index("9") + 1] == "att_9"
    seen = attention_inputs(net, torch.randn(2, 3, 32, 32))
    assert seen == {"features.att_4": (2, 128, 16, 16), "features.att_9": (2, 256, 8, 8)}
    assert net.get_classifier().out_features == 6


def test_timm_imagenet_from_cache_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = timm_cfg("resnet18", "se", ["layer2"])
    with pytest.raises(DataError, match=r"init\.weights_path=<file>") as err:
        build_model(cfg, {"name": "imagenet", "weights_path": None}, 6)
    assert "models--timm--resnet18.a1_in1k" in str(err.value)

    ref = build_model(timm_cfg("resnet18"), {"name": "glorot"}, 1000).state_dict()
    snap = tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    torch.save(ref, snap / "pytorch_model.bin")
    net = build_model(cfg, {"name": "imagenet", "weights_path": None}, 6)
    assert_loaded(net, ref, skip="fc.")
    assert net.fc.out_features == 6 and float(net.fc.bias.detach().abs().sum()) == 0
    assert set(attention_modules(net)) == {"layer2.att"}

    init = {"name": "imagenet", "weights_path": str(tmp_path / "missing.pth")}
    assert len(check_init(init, cfg)) == 1
    with pytest.raises(DataError, match=r"missing\.pth"):
        build_model(cfg, init, 6)
