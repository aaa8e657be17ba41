"""Streamed CAM evaluation (issue 8, item 5): one pass, one batch of maps at a time, and every
number and figure equal to the whole-array computation it replaced."""

from __future__ import annotations

import tracemalloc

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from fer.evaluate import _strict, example_rows, stream_cam_evaluation
from fer.explain.cam import compute_cams, iter_cams
from fer.explain.overlap import (
    PER_IMAGE_KEYS,
    ClassMeans,
    PerImageTable,
    _binary,
    _check,
    _class_rows,
    _region_name,
    binarize,
    class_mean_overlap,
    dice,
    gaussian_baseline,
    iou,
    nan_mean,
    per_image_overlap,
    per_image_scores,
    random_baseline,
    region_indices,
    renormalize,
    roi_union,
    spearman_maps,
    summary,
)
from fer.models.backbones import small_vgg
from fer.models.init import glorot_
from fer.report.plots import plot_cam_examples, plot_class_cams

CLASSES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
REGIONS = ["eyes_brows", "mouth", "nose"]


def _nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    net = glorot_(small_vgg(6))
    torch.manual_seed(1)
    return net, glorot_(small_vgg(6)).eval()


def _data(n: int, size: int = 48, seed: int = 0) -> dict[str, np.ndarray]:
    """Images, labels (class 5 absent), dataset rows (not positions), boxes as ROI masks with
    empty channels and one image without any ROI, and faces at another size than the maps."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 3, size, size), np.uint8)
    for i in range(n):
        for r in range(3):
            if rng.random() < 0.15:
                continue  # an empty region
            y, x = rng.integers(0, size - 12, 2)
            h, w = rng.integers(4, 12, 2)
            masks[i, r, y : y + h, x : x + w] = 1
    masks[min(3, n - 1)] = 0  # no ROI at all: NaN per-image scores
    return {
        "image": rng.standard_normal((n, 1, size, size)).astype(np.float32),
        "label": rng.integers(0, 5, n),
        "index": rng.permutation(n + 7)[:n],
        "mask": masks,
        "faces": rng.integers(0, 256, (n + 7, 40, 40, 3), dtype=np.uint8),
    }


def _batches(data: dict[str, np.ndarray], batch: int):
    n = len(data["label"])
    for i in range(0, n, batch):
        s = slice(i, i + batch)
        yield {
            "image": torch.from_numpy(data["image"][s]),
            "label": torch.from_numpy(data["label"][s]),
            "index": torch.from_numpy(data["index"][s]),
            "mask": torch.from_numpy(data["mask"][s]),
        }


# The whole-array protocols as they were before streaming (verbatim, plus the receptive-field
# placement of the maps, which came later), the reference below.
def _old_compute_cams(net, batches, method="gradcam", target="label", layer=None):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from fer.explain.cam import METHODS, CamResult, _grids, place, resolve_layer

    was_training = net.training
    target_layer = resolve_layer(net, layer)
    device = next(net.parameters()).device
    cams, labels, preds, index, masks = [], [], [], [], []
    try:
        net.eval()
        with torch.enable_grad(), METHODS[method](model=net, target_layers=[target_layer]) as cam:
            grid = None
            for batch in batches:
                x = batch["image"].to(device)
                y = batch["label"]
                if not cams:
                    [grid] = _grids([net], [target_layer], tuple(x.shape[1:]), [cam])
                targets = [ClassifierOutputTarget(int(t)) for t in y] if target == "label" else None
                maps = np.asarray(cam(input_tensor=x, targets=targets), dtype=np.float32)
                cams.append(maps if grid is None else place(maps, grid, tuple(x.shape[-2:])))
                preds.append(cam.outputs.argmax(1).cpu().numpy())
                labels.append(y.numpy())
                index.append(np.asarray(batch["index"]))
                masks.append(batch["mask"].numpy())
    finally:
        net.train(was_training)
    return CamResult(
        np.concatenate(cams),
        np.concatenate(labels),
        np.concatenate(preds),
        np.concatenate(index),
        np.concatenate(masks),
    )


def _old_class_mean(cams, roi, labels, classes, threshold, mask_threshold):
    d_pc, j_pc, detail = {}, {}, {}
    for c, sel in _class_rows(labels, classes):
        n = int(sel.sum())
        if n == 0:
            d_pc[c] = j_pc[c] = float("nan")
            detail[c] = {"n_images": 0, "cam_area": float("nan"), "roi_area": float("nan")}
            continue
        mean_cam = cams[sel].mean(axis=0)
        pred = binarize(renormalize(mean_cam), threshold)
        mask = roi[sel].mean(axis=0) >= mask_threshold
        d_pc[c], j_pc[c] = dice(pred, mask), iou(pred, mask)
        if not np.isfinite(mean_cam).all():
            d_pc[c] = j_pc[c] = float("nan")
        detail[c] = {"n_images": n, "cam_area": float(pred.mean()), "roi_area": float(mask.mean())}
    return {
        "dice": {**summary(d_pc.values()), "per_class": d_pc},
        "iou": {**summary(j_pc.values()), "per_class": j_pc},
        "per_class": detail,
    }


def _old_class_mean_overlap(cams, masks, labels, classes, threshold=0.5, regions=None):
    cams, masks = _check(cams, masks)
    labels = np.asarray(labels)
    out = _old_class_mean(cams, roi_union(masks, regions), labels, classes, threshold, 0.5)
    out["per_region"] = {}
    for i in range(masks.shape[1]):
        part = _old_class_mean(cams, _binary(masks[:, i]), labels, classes, threshold, 0.5)
        out["per_region"][_region_name(i)] = {"dice": part["dice"], "iou": part["iou"]}
    out["threshold"] = float(threshold)
    out["mask_threshold"] = 0.5
    out["regions"] = [_region_name(i) for i in region_indices(regions, masks.shape[1])]
    return out


def _old_per_image_overlap(cams, masks, threshold=0.5, regions=None):
    cams, masks = _check(cams, masks)
    scores = per_image_scores(cams, roi_union(masks, regions), threshold)
    out = {k: summary(scores[k]) for k in PER_IMAGE_KEYS}
    out["per_region"] = {}
    for i in range(masks.shape[1]):
        part = per_image_scores(cams, _binary(masks[:, i]), threshold)
        out["per_region"][_region_name(i)] = {k: summary(part[k]) for k in PER_IMAGE_KEYS}
    out["threshold"] = float(threshold)
    out["n_images"] = int(cams.shape[0])
    return out


def _reference(net, random_net, data, batch, target, layer, show_faces, tmp_path):
    """The whole-array computation `_evaluate_dataset` did before it streamed (verbatim)."""
    threshold, regions, classes = 0.5, REGIONS, CLASSES
    torch.manual_seed(0)
    cams = _old_compute_cams(net, _batches(data, batch), "gradcam", target, layer)
    correct = cams.preds == cams.labels
    rho = spearman_maps(
        cams.cams,
        _old_compute_cams(random_net, _batches(data, batch), "gradcam", target, layer).cams,
    )
    mean, n, n_nan = nan_mean(rho)
    rng = np.random.default_rng(0)
    shape = cams.cams.shape
    class_mean = _old_class_mean_overlap(
        cams.cams, cams.masks, cams.labels, classes, threshold, regions=regions
    )
    overlap = {
        "class_mean": class_mean,
        "per_image": _old_per_image_overlap(cams.cams, cams.masks, threshold, regions),
        "baselines": {
            "gaussian": _old_per_image_overlap(
                gaussian_baseline(shape), cams.masks, threshold, regions
            ),
            "random": _old_per_image_overlap(
                random_baseline(shape, rng), cams.masks, threshold, regions
            ),
        },
        "by_prediction": {
            key: _old_per_image_overlap(cams.cams[sel], cams.masks[sel], threshold, regions)
            if sel.any()
            else None
            for key, sel in (("correct", correct), ("incorrect", ~correct))
        },
    }
    faces = data["faces"][cams.index]
    if not show_faces:
        faces = np.full((len(cams.index), *faces.shape[1:]), 128, np.uint8)
    figures = {
        "class_cams": plot_class_cams(
            cams.cams,
            faces,
            cams.masks,
            cams.labels,
            classes,
            tmp_path / "ref_class_cams.png",
            title="t",
            scores=class_mean["dice"]["per_class"],
        )
    }
    if show_faces:
        figures["examples"] = plot_cam_examples(
            cams.cams,
            faces,
            cams.masks,
            cams.labels,
            cams.preds,
            classes,
            tmp_path / "ref_examples.png",
            title="t",
        )
    return {
        "overlap": overlap,
        "randomisation": {"spearman_mean": mean, "n": n, "n_nan": n_nan},
        "predictions": [cams.index, cams.labels, cams.preds],
        "figures": figures,
    }


def _stream(net, random_net, data, batch, target, layer, show_faces, tmp_path):
    labels = data["label"]
    cams = stream_cam_evaluation(
        net,
        random_net,
        _batches(data, batch),
        CLASSES,
        data["faces"],
        target=target,
        layer=layer,
        threshold=0.5,
        regions=REGIONS,
        show_faces=show_faces,
        examples=example_rows(labels) if show_faces else (),
    )
    class_mean = cams.overlap["class_mean"]
    figures = {
        "class_cams": cams.plot_class_cams(
            CLASSES,
            tmp_path / "new_class_cams.png",
            title="t",
            scores=class_mean["dice"]["per_class"],
        )
    }
    if show_faces:
        figures["examples"] = cams.plot_examples(CLASSES, tmp_path / "new_examples.png", "t")
    return {
        "overlap": cams.overlap,
        "randomisation": cams.randomisation,
        "predictions": [cams.index, cams.labels, cams.preds],
        "figures": figures,
    }


@pytest.mark.parametrize(
    ("model", "target", "show_faces"), [("small_vgg", "label", True), ("tiny", "pred", False)]
)
def test_stream_equals_the_whole_array_computation(model, target, show_faces, tmp_path):
    net, random_net = _nets() if model == "small_vgg" else _tiny_nets()
    layer = None if model == "small_vgg" else "4"  # None: the default layer
    data = _data(23)
    ref = _reference(net, random_net, data, 5, target, layer, show_faces, tmp_path)
    new = _stream(net, random_net, data, 5, target, layer, show_faces, tmp_path)
    # exact equality of every JSON field (NaN -> None on both sides, as the JSON writes it)
    assert _strict(new["overlap"]) == _strict(ref["overlap"])
    assert _strict(new["randomisation"]) == _strict(ref["randomisation"])
    for a, b in zip(new["predictions"], ref["predictions"], strict=True):
        assert np.array_equal(a, b)
    # the synthetic set reaches the edge cases it is meant to
    o = ref["overlap"]
    assert o["class_mean"]["dice"]["n_nan"] >= 1  # class 5 has no image
    assert o["per_image"]["dice"]["n_nan"] >= 1  # one image has no ROI
    assert o["per_image"]["n_images"] == 23
    # figures: the same pixels
    assert new["figures"].keys() == ref["figures"].keys()
    for key in ref["figures"]:
        assert np.array_equal(plt.imread(new["figures"][key]), plt.imread(ref["figures"][key]))


def test_example_rows_are_the_plot_s_own_pick():
    labels = np.random.default_rng(3).integers(0, 6, 57)
    rows = example_rows(labels)
    order = np.argsort(labels, kind="stable")
    assert len(rows) == 8 and np.all(np.diff(labels[rows]) >= 0)
    # handed only the picked images, in pick order, the plot's rule picks all of them
    sub = labels[rows]
    assert np.array_equal(example_rows(sub), np.arange(len(sub)))
    assert set(rows) <= set(order)
    assert len(example_rows(labels[:3])) == 3 and len(example_rows(labels[:0])) == 0


def test_iter_cams_equals_compute_cams_and_explains_others_on_the_same_batch():
    net, random_net = _nets()
    data = _data(11)
    net.train()
    whole = compute_cams(net, _batches(data, 4))
    other = compute_cams(random_net, _batches(data, 4))
    parts = list(iter_cams(net, _batches(data, 4), others=[random_net]))
    assert [len(p.cams) for p in parts] == [4, 4, 3]
    assert np.array_equal(np.concatenate([p.cams for p in parts]), whole.cams)
    assert np.array_equal(whole.cams, _old_compute_cams(net, _batches(data, 4)).cams)
    assert np.array_equal(np.concatenate([p.others[0] for p in parts]), other.cams)
    assert np.array_equal(np.concatenate([p.preds for p in parts]), whole.preds)
    assert net.training and not random_net.training  # each model's mode restored
    # a stream left early still restores the models
    it = iter_cams(net, _batches(data, 4))
    next(it)
    assert not net.training
    it.close()
    assert net.training


def test_running_sums_equal_whole_arrays_bit_for_bit():
    rng = np.random.default_rng(5)
    cams = rng.random((41, 16, 16)).astype(np.float32) ** 3
    masks = (rng.random((41, 3, 16, 16)) < 0.3).astype(np.uint8)
    labels = rng.integers(0, 4, 41)
    whole = class_mean_overlap(cams, masks, labels, CLASSES[:4], regions=["mouth", "eyes_brows"])
    old = _old_class_mean_overlap(cams, masks, labels, CLASSES[:4], regions=["mouth", "eyes_brows"])
    assert _strict(whole) == _strict(old)
    acc = ClassMeans(CLASSES[:4], ["mouth", "eyes_brows"])
    for i in range(0, 41, 6):
        acc.add(cams[i : i + 6], masks[i : i + 6], labels[i : i + 6])
    assert _strict(acc.overlap()) == _strict(whole)
    for c in range(4):  # the class-mean map itself, not only the scores
        assert np.array_equal(acc.cam_sum[c] / acc.n[c], cams[labels == c].astype(float).mean(0))
    parts = [PerImageTable.from_maps(cams[i : i + 6], masks[i : i + 6]) for i in range(0, 41, 6)]
    joined = _strict(PerImageTable.concat(parts).overlap())
    assert joined == _strict(per_image_overlap(cams, masks))
    assert joined == _strict(_old_per_image_overlap(cams, masks))


def _tiny_nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two cheap CNNs; module "4" is the ReLU after the last conv (the CAM's layer)."""

    def one(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(4),
            torch.nn.Conv2d(4, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 6),
        )

    return one(0), one(1)


def peak_bytes(n: int, batch: int = 16, size: int = 96) -> tuple[int, object]:
    """Peak memory tracemalloc sees while streaming `n` images (maps size x size)."""
    net, random_net = _tiny_nets()
    data = _data(n, size=size, seed=1)
    tracemalloc.start()
    try:
        cams = stream_cam_evaluation(
            net,
            random_net,
            _batches(data, batch),
            CLASSES,
            data["faces"],
            layer="4",
            regions=REGIONS,
            show_faces=True,
            examples=example_rows(data["label"]),
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, cams


def test_memory_does_not_grow_with_the_number_of_images():
    """Peak traced memory at N = 48 and N = 240 images (batch 16, 96 x 96 maps): the growth
    per extra image is its scalars (a few kB at most), far below one map (36.9 kB as float32),
    where the whole-array version held several maps per image (trained, random, baselines)."""
    map_bytes = 96 * 96 * 4
    small, _ = peak_bytes(48)
    large, cams = peak_bytes(240)
    per_image = (large - small) / (240 - 48)
    assert per_image < map_bytes / 8, (small, large, per_image)
    assert large < 1.25 * small, (small, large)
    assert cams.overlap["per_image"]["n_images"] == 240 and len(cams._examples) == 8
