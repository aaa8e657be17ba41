"""FERDataModule: model-declared input format, masks aligned through augmentation, sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from fer.data.datamodule import EpochSampler, FaceDataset, build_transform
from fer.data.preprocess import FaceArrays
from fer.train import make_datamodule


@pytest.mark.parametrize(("model", "shape"), [("small_vgg", (1, 48, 48)), ("vgg16", (3, 224, 224))])
def test_delivers_the_models_input(make_cfg, model, shape):
    dm = make_datamodule(make_cfg(f"model={model}"))
    dm.setup("fit")
    item = dm.val_set[0]
    assert tuple(item["image"].shape) == shape
    assert tuple(item["mask"].shape) == (3, *shape[1:]) and item["mask"].dtype == torch.uint8
    info = dm.describe()
    src = info["source"]
    assert not set(src["train"]["subjects"]) & set(src["val"]["subjects"])
    assert src["train"]["size"] + src["val"]["size"] == len(dm.faces)
    assert set(dm.faces.frame["label"]) == set(make_cfg().classes)  # neutral dropped
    # the data a run saw is identified by its cache folder (content hash + settings)
    cache = Path(make_cfg().paths.cache_dir) / "preprocess" / src["cache"]
    assert src["cache"].startswith("synthetic_lab-") and (cache / "meta.json").exists()


def _squares() -> FaceArrays:
    """Images bright exactly where mask channel 0 is set, so alignment is checkable."""
    n, s = 4, 64
    masks = np.zeros((n, 3, s, s), np.uint8)
    for i in range(n):
        masks[i, 0, 10 + i : 30 + i, 8:28] = 1  # off-centre: a flip or shift moves it
        masks[i, 1, 44:54, 20 + i : 44 + i] = 1
    images = np.repeat((masks[:, 0] * 200)[..., None], 3, axis=-1).astype(np.uint8)
    frame = pd.DataFrame({"label": ["anger"] * n})
    return FaceArrays(images, masks, frame, pd.DataFrame(columns=["path", "reason"]))


def test_masks_follow_every_geometric_augmentation(make_cfg):
    augment = instantiate(make_cfg().datamodule.augment)
    for t in augment:
        t.p = 1.0  # always apply: flips, rotation, shift, scale
    tf = build_transform(48, [0.5], [0.25], augment)
    ds = FaceDataset(_squares(), np.arange(4), np.zeros(4, int), tf, 1, seed=0, train=True)
    moved = 0
    for epoch in range(3):
        for i in range(4):
            item = ds[(i, epoch)]
            bright = item["image"][0] * 0.25 + 0.5 > 0.4
            region = item["mask"][0].bool()
            iou = (bright & region).sum() / (bright | region).sum()
            # edge pixels differ (area vs nearest resampling); a 3-px shift gives IoU < 0.7
            assert iou > 0.78, (epoch, i, float(iou))
            shifted = torch.roll(region, 3, dims=1)
            assert (bright & shifted).sum() / (bright | shifted).sum() < 0.7
            moved += int(not torch.equal(region, ds[(i, epoch + 1)]["mask"][0].bool()))
    assert moved > 0  # the augmentation really moved things


def test_augmentation_seeded_by_seed_epoch_index(make_cfg):
    augment = instantiate(make_cfg().datamodule.augment)
    tf = build_transform(48, [0.5], [0.25], augment)
    ds = FaceDataset(_squares(), np.arange(4), np.zeros(4, int), tf, 1, seed=0, train=True)
    assert torch.equal(ds[(1, 3)]["image"], ds[(1, 3)]["image"])
    assert any(not torch.equal(ds[(1, 3)]["image"], ds[(1, e)]["image"]) for e in range(4, 8))


def test_epoch_sampler_pairs_and_state():
    s = EpochSampler(10, seed=1)
    first = list(s)
    assert sorted(i for i, _ in first) == list(range(10)) and {e for _, e in first} == {0}
    s.set_epoch(1)
    second = list(s)
    assert {e for _, e in second} == {1} and [i for i, _ in second] != [i for i, _ in first]
    s.set_epoch(1)
    assert list(s) == second


def test_combine_mask_zeroes_outside_the_roi_only():
    faces = _squares()
    faces.images[:] = 200  # a flat image: whatever survives is the ROI
    tf = build_transform(64, [0.0], [1.0 / 255])  # identity scaling: pixels stay 0..255
    ds = FaceDataset(faces, np.arange(4), np.zeros(4, int), tf, 1, 0, train=False, roi_only=[0, 1])
    item = ds[2]
    roi = item["mask"][:2].bool().any(0)
    assert (item["image"][0][roi] > 150).all() and (item["image"][0][~roi].abs() < 1e-3).all()


def test_source_and_target_holdout_fraction_and_fusion(make_cfg):
    cfg = make_cfg(
        "+data@target=synthetic_gray",
        "split=holdout",
        "split.target_fraction=0.5",
        "strategy=fusion",
        "classes=[anger,happiness,sadness,surprise]",
    )
    dm = make_datamodule(cfg)
    dm.setup("fit")
    info = dm.describe()
    src, tgt = info["source"], info["target"]
    for part in (src, tgt):  # every subset of each dataset is subject-disjoint
        subsets = [set(part[w]["subjects"]) for w in ("train", "val", "test")]
        assert not (subsets[0] & subsets[1] or subsets[0] & subsets[2] or subsets[1] & subsets[2])
    assert tgt["train"]["subjects"] == tgt["fraction_subjects"]
    full_train = dm.parts["target"].split.train
    assert tgt["train"]["size"] < len(full_train)  # half the target's training subjects
    assert len(dm.train_set) == src["train"]["size"] + tgt["train"]["size"]  # FU: merged
    assert len(dm.val_set) == tgt["val"]["size"]  # validation on the target's own subset
    assert set(dm.score_sets) == {"synthetic_lab", "synthetic_gray"} and dm.score_subset == "test"
    item = dm.train_set[(len(dm.train_set) - 1, 0)]  # last item comes from the target
    assert item["image"].shape == (1, 48, 48)
