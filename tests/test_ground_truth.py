"""The synthetic ground truth for Grad-CAM overlap (issue: evaluate, "sanity checks").

A model trained where the label is carried *only* by the mouth must overlap the mouth more than
the eyes; one trained where it is only in the eyes must reverse the order. Region sizes and CAM
blur cannot pass both. The default run trains a tiny CNN in-process on rendered faces; the slow
variant runs the real pipeline (train.py's `train` + evaluate.py's `evaluate`, small_vgg).
"""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from fer.data.synthetic import render_set
from fer.explain.cam import compute_cams
from fer.explain.overlap import per_image_overlap

CLASSES = ("happiness", "sadness", "surprise")  # differ both in the mouth and in the eyes


def _tiny_cnn(n_classes: int, padding: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=padding),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=padding),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=padding),
        nn.BatchNorm2d(32),
        nn.ReLU(),  # index 10: the CAM's target layer (the ReLU after the last conv)
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(32, n_classes),
    )


def _tensors(signal: str, subjects: int, per_class: int, seed: int):
    s = render_set("lab", subjects, per_class, seed, size=48, classes=CLASSES, signal=signal)
    x = torch.from_numpy(s.images).permute(0, 3, 1, 2).float() / 255 - 0.5
    y = torch.tensor([CLASSES.index(c) for c in s.labels])
    return x, y, torch.from_numpy(s.masks.astype(np.uint8))


def _region_dice(
    signal: str, padding: int = 1, stretched_too: bool = False
) -> tuple[float, dict[str, float], dict[str, float] | None]:
    """Accuracy on other subjects and area-matched DICE per region of a tiny CNN trained on
    faces whose label is only in `signal`; with `stretched_too`, also the DICE of the same
    model's CAMs resized over the whole image, as the package does, instead of placed on the
    cells' receptive fields (None otherwise)."""
    torch.manual_seed(0)
    x, y, _ = _tensors(signal, 16, 6, seed=1)
    net = _tiny_cnn(len(CLASSES), padding)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        net.train()
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    xt, yt, mt = _tensors(signal, 6, 4, seed=2)  # other subjects
    net.eval()
    with torch.no_grad():
        acc = float((net(xt).argmax(1) == yt).float().mean())
    batches = [
        {
            "image": xt[i : i + 64],
            "label": yt[i : i + 64],
            "index": torch.arange(i, i + 64)[: len(yt[i : i + 64])],
            "mask": mt[i : i + 64],
        }
        for i in range(0, len(yt), 64)
    ]

    def dice() -> dict[str, float]:
        cams = compute_cams(net, batches, layer="10")
        regions = per_image_overlap(cams.cams, cams.masks)["per_region"]
        return {r: regions[r]["dice_area_matched"]["mean"] for r in ("eyes_brows", "mouth")}

    placed = dice()
    if not stretched_too:
        return acc, placed, None
    with mock.patch("fer.explain.cam._grids", lambda models, *_: [None] * len(models)):
        return acc, placed, dice()


def test_mouth_only_and_eyes_only_models_look_where_the_label_is():
    acc_m, mouth_model, _ = _region_dice("mouth")
    acc_e, eyes_model, _ = _region_dice("eyes")
    assert acc_m > 0.8 and acc_e > 0.8, (acc_m, acc_e)  # both learned their cue
    assert mouth_model["mouth"] > mouth_model["eyes_brows"], mouth_model
    assert eyes_model["eyes_brows"] > eyes_model["mouth"], eyes_model


@pytest.mark.parametrize("signal", ["mouth", "eyes"])
def test_unpadded_convs_need_their_maps_placed(signal):
    """Unpadded convs (as small_vgg's): the last map covers only the image's centre. Placed on
    the receptive fields, the cue region's overlap is much higher than with the package's
    stretch over the whole image (measured: mouth 0.221 vs 0.046, eyes 0.236 vs 0.111)."""
    region = {"mouth": "mouth", "eyes": "eyes_brows"}[signal]
    other = {"mouth": "eyes_brows", "eyes": "mouth"}[signal]
    acc, placed, stretched = _region_dice(signal, padding=0, stretched_too=True)
    assert acc > 0.8, acc
    assert placed[region] > placed[other], placed
    assert placed[region] > 1.5 * stretched[region], (placed, stretched)


@pytest.mark.slow
@pytest.mark.parametrize("size", [48, 64])
def test_ground_truth_through_train_and_evaluate(make_cfg, tmp_path, size):
    """The real pipeline: small_vgg trained by `train`, maps and overlap from `evaluate`, at
    its own 48 px (a 17×17 CAM map over pixels 7.5…39.5) and at 64 px (25×25)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from fer.evaluate import evaluate
    from fer.train import train
    from tests.conftest import CONF

    scores = {}
    for signal in ("mouth", "eyes"):
        cfg = make_cfg(f"data=synthetic_{signal}", run_dir=tmp_path / signal, tiny=False)
        with open_dict(cfg):
            cfg.data.source.n_subjects = 24
            cfg.data.source.per_class = 5
            cfg.trainer.max_epochs = 6
            cfg.model.input.size = size
        train(cfg)
        with initialize_config_dir(str(CONF), version_base="1.3"):
            ev = compose(
                "evaluate",
                overrides=[
                    f"runs={cfg.paths.run_dir}",
                    f"paths.cache_dir={cfg.paths.cache_dir}",
                    "logger=none",
                ],
            )
            [path] = evaluate(ev)
        result = json.loads(path.read_text())
        per_region = result["overlap"]["class_mean"]["per_region"]
        scores[signal] = {r: per_region[r]["dice"]["mean"] for r in ("eyes_brows", "mouth")}
        scores[signal]["acc"] = result["scores"]["acc"]
    print(json.dumps({"size": size, **scores}))
    assert scores["mouth"]["mouth"] > scores["mouth"]["eyes_brows"], scores
    assert scores["eyes"]["eyes_brows"] > scores["eyes"]["mouth"], scores
