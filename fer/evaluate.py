"""`evaluate(cfg)`: score finished runs on their own held-out subsets and on other datasets,
with Grad-CAM overlap against the ROI masks (called by evaluate.py and by tests).

Each run is evaluated with *its own* saved `config.yaml` (never the current defaults). What is
scored follows DESIGN.md "What evaluation scores": every dataset of the run's split on the
subset the run reported (holdout: test; k-fold: the validation fold), and every dataset in
`eval.datasets` that is not part of the split: under a holdout split on the test subset the
same protocol gives it (study B's BL row scores the source model there), under k-fold whole
(study A's FACES and JAFFE). With `eval.include_excluded` the faces whose regions were not
segmented are scored too (fallback crops), in a separate reading. Results go to
`<run>/eval/<checkpoint>__<cam_method>__<cam_target>/<dataset>.json` (atomic), beside a
confusion-matrix PNG; evaluations with other settings sit beside them.
"""

from __future__ import annotations

import glob
import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from fer import runs
from fer.errors import ConfigError, DataError
from fer.io import atomic_write_json, read_json_or_none


def expand_runs(spec: str) -> list[Path]:
    """Run directories named by a directory or a glob; only started runs (with config.yaml)."""
    hits = (
        [Path(p) for p in sorted(glob.glob(str(spec)))]
        if any(c in str(spec) for c in "*?[")
        else [Path(spec)]
    )
    found = [p for p in hits if (p / runs.CONFIG).exists()]
    if not found:
        raise DataError(f"runs={spec}: no run directory (a folder holding {runs.CONFIG}) matches")
    return found


def eval_key(checkpoint: str, method: str, target: str) -> str:
    """The folder of one evaluation setting (DESIGN.md "Finished")."""
    return f"{checkpoint}__{method}__{target}"


def _strict(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python: strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _strict(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _data_config(name: str, cache_dir: str) -> DictConfig:
    """A data config by name, composed from conf/data/ (roots from the local config)."""
    from hydra import compose

    try:
        cfg = compose(
            config_name="train", overrides=[f"data={name}", f"paths.cache_dir={cache_dir}"]
        )
    except Exception as e:  # Hydra's own error names the missing option and lists the others
        options = " ".join(str(e).split("\nConfig search path")[0].split())  # one line
        raise ConfigError(f"eval.datasets: {options}") from None
    return cfg.data


def refuse_pretraining(run_dir: Path, run_cfg: DictConfig, eval_cfgs: list[DictConfig]) -> None:
    """Pretraining data (a data config with `pretraining: true`, e.g. procedural_objects) is
    never evaluated as FER data (DESIGN.md): neither a run trained on it nor as a dataset in
    `eval.datasets` — its classes are not emotions and it has no ROI masks."""
    for role in ("data", "target"):
        node = run_cfg.get(role)
        if node is not None and node.get("pretraining"):
            raise ConfigError(
                f"{run_dir}: trained on pretraining data ({node.get('name')}: its own classes, "
                "no ROI masks), not a FER model; evaluate the runs that load it "
                "(init=synthetic_pretrain) instead"
            )
    for node in eval_cfgs:
        if node.get("pretraining"):
            raise ConfigError(
                f"eval.datasets: {node.get('name')} is pretraining data (its own classes "
                f"{list(node.get('classes') or [])}, no ROI masks): never evaluated as FER data"
            )


def _load_net(run_cfg: DictConfig, ckpt: Path) -> Any:
    from fer.models.build import load_trained

    return load_trained(run_cfg.model, len(run_cfg.classes), ckpt)


def evaluate(cfg: DictConfig) -> list[Path]:
    """Evaluate every run `cfg.runs` names; return the JSON files written (or found)."""
    written: list[Path] = []
    for run_dir in expand_runs(str(cfg.runs)):
        written += evaluate_run(run_dir, cfg)
    return written


def evaluate_run(run_dir: Path, cfg: DictConfig) -> list[Path]:
    """Evaluate one finished run; skip datasets whose JSON already exists."""
    from fer.loggers import build_logger, finish_wandb
    from fer.models.build import build_model
    from fer.train import make_datamodule

    if runs.status(run_dir) != "finished":
        raise DataError(f"{run_dir}: not a finished run (metrics.json says so when it is)")
    run_cfg = OmegaConf.create(runs.read_config(run_dir))
    ev = cfg.eval
    refuse_pretraining(
        run_dir, run_cfg, [_data_config(str(n), str(cfg.paths.cache_dir)) for n in ev.datasets]
    )
    checkpoint = ev.checkpoint or run_cfg.eval.checkpoint
    if checkpoint == "best" and run_cfg.split.name == "kfold":
        raise ConfigError(
            f"eval.checkpoint=best for {run_dir}: under k-fold the best epoch was chosen on the "
            "validation fold that is also the reported one (no inner validation split); use last"
        )
    ckpt = run_dir / f"{checkpoint}.ckpt"
    if not ckpt.exists():
        raise DataError(
            f"{ckpt} not found: the run kept only its reported checkpoint "
            "(retrain with train.keep_checkpoints=all to keep both)"
        )
    key = eval_key(checkpoint, ev.cam_method, ev.cam_target)
    out_dir = run_dir / "eval" / key
    with open_dict(run_cfg):
        run_cfg.paths.cache_dir = str(cfg.paths.cache_dir)
        run_cfg.preprocess.progress = False
    dm = make_datamodule(run_cfg)
    dm.eval_batch_size = int(ev.batch_size)
    dm.setup("fit")
    sets = {name: (ds, dm.score_subset) for name, ds in dm.score_sets.items()}
    # Faces in figures and W&B only where the dataset's licence allows it (`show_images` in
    # its data config; synthetic: yes, licensed datasets: no) unless `eval.show_faces` says.
    show = {
        str(c.get("name")): bool(c.get("show_images", False))
        for c in (run_cfg.get("data"), run_cfg.get("target"))
        if c
    }
    for name in ev.datasets:
        if name in sets:
            continue  # part of the run's split: scored on its held-out subset above
        data_cfg = _data_config(str(name), str(cfg.paths.cache_dir))
        show[str(data_cfg.name)] = bool(data_cfg.get("show_images", False))
        as_dict = OmegaConf.to_container(data_cfg, resolve=True) | {"source": _source(data_cfg)}
        # holdout: the same split protocol's test subset; k-fold (study A): the whole dataset
        sets[data_cfg.name] = (
            (dm.held_out(as_dict), "test")
            if dm.score_subset == "test"
            else (dm.whole(as_dict), "whole")
        )
    # Excluded faces (fallback crops) scored beside a subset: of its subjects, or all of them
    # for a dataset scored whole (DESIGN.md "Excluded faces").
    excluded = {}
    if ev.include_excluded:
        for name, (dataset, subset) in sets.items():
            subjects = None if subset == "whole" else _subjects(dataset, dataset.rows)
            # (a held-out subset: only the excluded faces of its own subjects)
            excluded[name] = dm.excluded_faces(dataset, subjects)
    # Never score images the run or its init checkpoint trained on (DESIGN.md).
    # A leaky run (split.group_by=none: image-level folds, the contrast study A's 99 % suggests)
    # shares subjects between its train and held-out images by design; its split keeps the
    # *images* disjoint, and its results are labelled leaky. Other datasets stay subject-checked.
    leaky = str((run_cfg.split or {}).get("group_by", "subject")) == "none"
    scored: dict[str, set[str]] = {}
    for name, (dataset, _) in sets.items():
        if leaky and name in dm.score_sets:
            continue
        scored[name] = _subjects(dataset, dataset.rows)
        if excluded.get(name) is not None:
            scored[name] |= _subjects(dataset, excluded[name].rows)
    runs.check_not_trained_on(
        scored, runs.lineage_trained_subjects(run_dir, OmegaConf.to_container(run_cfg))
    )
    net = _load_net(run_cfg, ckpt)
    random_net = build_model(run_cfg.model, {"name": "glorot"}, len(run_cfg.classes)).eval()
    trained = runs.read_json_metrics(run_dir)
    todo = [
        name
        for name in sets
        if ev.force
        or not runs.evaluation_is_current(read_json_or_none(out_dir / f"{name}.json"), trained)
    ]
    written = [out_dir / f"{name}.json" for name in sets if name not in todo]
    if not todo:
        return written
    log_cfg = run_cfg.copy()
    with open_dict(log_cfg):
        log_cfg.logger = cfg.get("logger")
    logger = build_logger(
        log_cfg,
        run_dir,
        "eval",
        extra={"eval_key": key, **OmegaConf.to_container(ev, resolve=True)},
        key=key,
        save_dir=out_dir,
    )
    ok = False
    try:
        for name in todo:
            dataset, subset = sets[name]
            faces_ok = show.get(name, False) if ev.get("show_faces") is None else ev.show_faces
            result, figures = _evaluate_dataset(
                net,
                random_net,
                dm,
                dataset,
                excluded.get(name),
                run_cfg,
                ev,
                out_dir,
                name,
                show_faces=bool(faces_ok),
            )
            result.update(
                leaky=leaky and name in dm.score_sets,
                run=str(run_dir),
                dataset=name,
                subset=subset,
                checkpoint=checkpoint,
                checkpoint_path=str(ckpt),
                **{runs.EVALUATED: trained.get("finished_at")},
            )
            path = out_dir / f"{name}.json"
            atomic_write_json(path, _strict(result))
            _log_wandb(logger, name, result, figures)
            s = result["scores"]
            print(
                f"{run_dir.name}: {name} ({subset}, n={result['size']}) acc={s['acc']:.3f} "
                f"class-mean DICE={result['overlap']['class_mean']['dice']['mean']:.3f}"
            )
            written.append(path)
        ok = True
    finally:
        if logger is not None:
            finish_wandb(0 if ok else 1)
    return written


def _subjects(dataset: Any, rows: np.ndarray) -> set[str]:
    return set(dataset.faces.frame["subject"].iloc[rows]) - {""}


def _evaluate_dataset(
    net: Any,
    random_net: Any,
    dm: Any,
    dataset: Any,
    excluded: Any | None,
    run_cfg: DictConfig,
    ev: DictConfig,
    out_dir: Path,
    name: str,
    show_faces: bool = False,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Scores, overlap and figures of one dataset; the JSON body and the figure paths.

    Without `show_faces` the class-mean CAMs are drawn over a blank face (maps and ROI
    outlines only) and no single-image overlay is written."""
    import torch

    from fer.module import confusion, predict_logits
    from fer.report.plots import plot_confusion
    from fer.scoring import summarize

    classes = list(run_cfg.classes)
    regions = list(ev.regions)
    threshold = float(ev.cam_threshold)
    loader = dm.eval_loader(dataset)
    logits, labels = predict_logits(net, loader)  # one pass, both readings
    cm = confusion(logits, labels)
    scores = summarize(cm, classes)
    present = [i for i, n in enumerate(scores["support"].values()) if n > 0]
    shared = summarize(confusion(logits, labels, present), classes)
    every_face = None
    if ev.include_excluded:
        n_ex = np.zeros(len(classes), np.int64)
        cm_all = cm.copy()
        if excluded is not None:
            ex_logits, ex_labels = predict_logits(net, dm.eval_loader(excluded))
            cm_all += confusion(ex_logits, ex_labels)
            n_ex = np.bincount(ex_labels, minlength=len(classes))
        total = cm_all.sum(axis=1)
        every_face = {
            **summarize(cm_all, classes),
            "reading": "accuracy over all model outputs, segmented and excluded faces "
            "(fallback crops) together",
            "n_excluded": int(n_ex.sum()),
            "excluded_rate_per_class": {
                c: (float(n_ex[i] / total[i]) if total[i] else None) for i, c in enumerate(classes)
            },
        }
    torch.manual_seed(0)
    # One pass, both models on each batch: no more than a batch of maps is ever held beyond
    # the running class sums and the few example images (issue 8).
    cams = stream_cam_evaluation(
        net,
        random_net,
        loader,
        classes,
        dataset.faces.images,
        method=ev.cam_method,
        target=ev.cam_target,
        layer=ev.cam_layer,
        threshold=threshold,
        regions=regions,
        show_faces=show_faces,
        examples=example_rows(labels) if show_faces else (),
    )
    if not np.array_equal(cams.labels, labels):  # the examples were picked from `labels`
        raise DataError(f"{name}: the evaluation loader changed its order between passes")
    class_mean = cams.overlap["class_mean"]
    result: dict[str, Any] = {
        "size": len(dataset),
        "classes": classes,
        "scores": {**scores, "reading": "accuracy over all model outputs"},
        "scores_shared_classes": {
            **shared,
            "reading": "prediction restricted to the classes this dataset has",
        },
        "scores_every_face": every_face,
        "randomisation": {
            **cams.randomisation,
            "model": "same architecture, Glorot re-initialised",
        },
        "cam": {
            "method": ev.cam_method,
            "target": ev.cam_target,
            "layer": ev.cam_layer or "relu after the last conv",
            "threshold": threshold,
            "regions": regions,
            "input_size": int(run_cfg.model.input.size),
        },
        "overlap": cams.overlap,
    }
    # Per image (segmented subset): what the report's subject-clustered bootstrap resamples.
    frame = dataset.faces.frame
    result["predictions"] = {
        "row": cams.index,
        "subject": frame["subject"].iloc[cams.index].astype(str).tolist(),
        "label": cams.labels,
        "pred": cams.preds,
    }
    title = f"{name}: {ev.cam_method} ({ev.cam_target})"
    figures = {
        "confusion": plot_confusion(
            scores,
            out_dir / f"{name}_confusion.png",
            title=f"{name}: accuracy {scores['acc']:.3f}",
        ),
        "class_cams": cams.plot_class_cams(
            classes,
            out_dir / f"{name}_class_cams.png",
            title=f"{title}, class-mean DICE {class_mean['dice']['mean']:.3f}",
            scores=class_mean["dice"]["per_class"],
        ),
    }
    if show_faces:
        figures["examples"] = cams.plot_examples(
            classes, out_dir / f"{name}_cam_examples.png", title=title
        )
    result["figures"] = {k: p.name for k, p in figures.items()}
    result["faces_shown"] = show_faces
    return result, figures


def example_rows(labels: np.ndarray, n: int = 8) -> np.ndarray:
    """Loader positions of the single-image overlays: `n` spread over the label-sorted images
    (the rule of `fer.report.plots.plot_cam_examples`, from labels alone, so the stream knows
    before it starts which maps to keep)."""
    order = np.argsort(labels, kind="stable")
    return order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).astype(int))]


class _ClassFigure:
    """Running per-class sums behind `plot_class_cams` (float32 maps, as that function averages
    the float32 maps it is given; the faces fitted to the map size; the raw masks), so the
    figure is drawn from class means without the per-image maps, pixel for pixel the same."""

    def __init__(self, n_classes: int):
        self.n = np.zeros(n_classes, np.int64)
        self.cam_sum: np.ndarray | None = None  # (C, S, S) float32
        self.face_sum: np.ndarray | None = None  # (C, S, S, 3) int64
        self.mask_sum: np.ndarray | None = None  # (C, R, S, S) int64

    def add(self, cams: np.ndarray, faces: np.ndarray, masks: np.ndarray, labels: Any) -> None:
        from fer.report.plots import _fit

        fitted = [_fit(f, cams.shape[-1]) for f in faces]  # uint8, summed into int64
        if self.cam_sum is None:
            c = len(self.n)
            self.cam_sum = np.zeros((c, *cams.shape[1:]), cams.dtype)
            self.face_sum = np.zeros((c, *fitted[0].shape), np.int64)
            self.mask_sum = np.zeros((c, *masks.shape[1:]), np.int64)
        for j, label in enumerate(np.asarray(labels)):
            i = int(label)
            if 0 <= i < len(self.n):
                self.n[i] += 1
                self.cam_sum[i] += cams[j]  # image by image: numpy's mean(axis=0) order
                self.face_sum[i] += fitted[j]
                self.mask_sum[i] += masks[j]

    def plot(
        self,
        classes: list[str],
        path: Path,
        title: str = "",
        scores: dict[str, float] | None = None,
    ) -> Path:
        """`fer.report.plots.plot_class_means` from the class sums."""
        from fer.report.plots import plot_class_means

        means = {
            i: (self.cam_sum[i] / k, self.face_sum[i] / k, self.mask_sum[i] / k, int(k))
            for i, k in enumerate(self.n)
            if k > 0
        }
        return plot_class_means(means, classes, path, title, scores)


class CamEvaluation:
    """The CAM half of one dataset's evaluation, from one streamed pass
    (`stream_cam_evaluation`): the overlap readings and the sanity check as JSON-ready dicts,
    the per-image predictions, and what the two figures need (class sums, example images).

    Attributes:
        overlap: {"class_mean", "per_image", "baselines": {"gaussian", "random"},
            "by_prediction": {"correct", "incorrect"}} as `class_mean_overlap` /
            `per_image_overlap` give them over the whole dataset.
        randomisation: {"spearman_mean", "n", "n_nan"}: trained vs re-initialised maps.
        index, labels, preds: (N,) dataset rows, labels and CAM-pass predictions.
    """

    def __init__(
        self,
        overlap: dict[str, Any],
        randomisation: dict[str, Any],
        index: np.ndarray,
        labels: np.ndarray,
        preds: np.ndarray,
        figure: _ClassFigure,
        examples: list[tuple[np.ndarray, ...]],
    ):
        self.overlap = overlap
        self.randomisation = randomisation
        self.index, self.labels, self.preds = index, labels, preds
        self._figure = figure
        self._examples = examples

    def plot_class_cams(
        self,
        classes: list[str],
        path: Path,
        title: str = "",
        scores: dict[str, float] | None = None,
    ) -> Path:
        """`plot_class_cams` of every image streamed (from the running class sums)."""
        return self._figure.plot(classes, path, title, scores)

    def plot_examples(self, classes: list[str], path: Path, title: str = "") -> Path:
        """`plot_cam_examples` of every image streamed: the kept images are exactly the ones it
        picks, passed in its order, so on them it picks them all."""
        from fer.report.plots import plot_cam_examples

        if not self._examples:
            raise ValueError("no example images were kept (stream with examples=...)")
        cams, faces, masks, labels, preds = (np.stack(a) for a in zip(*self._examples, strict=True))
        return plot_cam_examples(cams, faces, masks, labels, preds, classes, path, title=title)


def stream_cam_evaluation(
    net: Any,
    random_net: Any,
    batches: Any,
    classes: list[str],
    images: np.ndarray,
    *,
    method: str = "gradcam",
    target: str = "label",
    layer: str | None = None,
    threshold: float = 0.5,
    regions: list[str] | None = None,
    show_faces: bool = False,
    examples: Any = (),
) -> CamEvaluation:
    """Grad-CAM overlap of one dataset in a single pass over its batches.

    Per batch, the trained and the randomised model explain the same images; only per-image
    scalars (overlap scores of the maps and of both baselines, the rank correlation of the two
    models' maps), running class sums (`ClassMeans`, `_ClassFigure`) and the maps of the
    `examples` (loader positions, see `example_rows`) outlive the batch. Every number equals
    the whole-array computation (`class_mean_overlap`, `per_image_overlap` and `spearman_maps`
    over all maps; the random baseline drawn batch after batch from one seeded generator is
    the same stream).

    `images` are the dataset's faces by row (`dataset.faces.images`); without `show_faces`
    the figures get a blank grey face instead.
    """
    from fer.explain.cam import iter_cams
    from fer.explain.overlap import (
        ClassMeans,
        PerImageTable,
        gaussian_baseline,
        nan_mean,
        random_baseline,
        spearman_maps,
    )

    rng = np.random.default_rng(0)  # the random baseline
    means = ClassMeans(classes, regions)
    figure = _ClassFigure(len(classes))
    tables: dict[str, list[Any]] = {"cam": [], "gaussian": [], "random": []}
    rho, index, labels, preds = [], [], [], []
    wanted = {int(r): k for k, r in enumerate(examples)}
    kept: list[Any] = [None] * len(wanted)
    seen = 0
    for b in iter_cams(net, batches, method, target, layer, others=[random_net]):
        shape = b.cams.shape
        gauss = np.broadcast_to(gaussian_baseline(shape[1:]), shape)  # one map, every image
        tables["cam"].append(PerImageTable.from_maps(b.cams, b.masks, threshold, regions))
        tables["gaussian"].append(PerImageTable.from_maps(gauss, b.masks, threshold, regions))
        tables["random"].append(
            PerImageTable.from_maps(random_baseline(shape, rng), b.masks, threshold, regions)
        )
        # Adebayo et al.: the same maps from a re-initialised copy must change (rho << 1).
        rho.append(np.atleast_1d(spearman_maps(b.cams, b.others[0])))
        means.add(b.cams, b.masks, b.labels)
        faces = np.asarray(images[b.index])
        if not show_faces:  # the licence does not allow showing its faces: maps and ROI only
            faces = np.full(faces.shape, 128, np.uint8)
        figure.add(b.cams, faces, b.masks, b.labels)
        for j in range(shape[0]):
            k = wanted.get(seen + j)
            if k is not None:
                kept[k] = (
                    b.cams[j].copy(),
                    faces[j].copy(),
                    b.masks[j].copy(),
                    b.labels[j],
                    b.preds[j],
                )
        index.append(b.index)
        labels.append(b.labels)
        preds.append(b.preds)
        seen += shape[0]
    if not seen:
        raise ConfigError("no images to explain (an empty subset)")
    index, labels, preds = (np.concatenate(a) for a in (index, labels, preds))
    table = PerImageTable.concat(tables["cam"])
    correct = preds == labels
    mean, n, n_nan = nan_mean(np.concatenate(rho))
    overlap = {
        "class_mean": means.overlap(threshold),
        "per_image": table.overlap(),
        "baselines": {
            key: PerImageTable.concat(tables[key]).overlap() for key in ("gaussian", "random")
        },
        "by_prediction": {
            key: table.select(sel).overlap() if sel.any() else None
            for key, sel in (("correct", correct), ("incorrect", ~correct))
        },
    }
    return CamEvaluation(
        overlap,
        {"spearman_mean": mean, "n": n, "n_nan": n_nan},
        index,
        labels,
        preds,
        figure,
        [e for e in kept if e is not None],
    )


def _log_wandb(
    logger: Any | None, name: str, result: dict[str, Any], figures: dict[str, Path]
) -> None:
    """Headline numbers, a per-class table and the figures of one dataset (W&B only)."""
    if logger is None or not hasattr(logger, "log_table"):
        return
    s, cm = result["scores"], result["overlap"]["class_mean"]
    metrics = {
        f"{name}/acc": s["acc"],
        f"{name}/acc_macro": s["acc_macro"],
        f"{name}/acc_shared": result["scores_shared_classes"]["acc"],
        f"{name}/dice_class_mean": cm["dice"]["mean"],
        f"{name}/iou_class_mean": cm["iou"]["mean"],
    }
    logger.log_metrics({k: v for k, v in _strict(metrics).items() if v is not None})
    rows = [
        [
            c,
            s["support"][c],
            s["per_class"][c],
            cm["dice"]["per_class"][c],
            cm["iou"]["per_class"][c],
        ]
        for c in result["classes"]
    ]
    logger.log_table(
        f"{name}/per_class", columns=["class", "n", "accuracy", "dice", "iou"], data=_strict(rows)
    )
    for kind, fig in figures.items():  # one key each: W&B wants one size per key
        logger.log_image(f"{name}/{kind}", [str(fig)])


def _source(data_cfg: DictConfig) -> Any:
    from hydra.utils import instantiate

    return instantiate(data_cfg.source)
