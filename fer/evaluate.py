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
    except Exception as e:  # Hydra's own error names the missing option
        raise ConfigError(f"eval.datasets: {e}") from None
    return cfg.data


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
    todo = [
        name for name in sets if ev.force or read_json_or_none(out_dir / f"{name}.json") is None
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

    from fer.explain.cam import compute_cams
    from fer.explain.overlap import (
        class_mean_overlap,
        gaussian_baseline,
        nan_mean,
        per_image_overlap,
        random_baseline,
        spearman_maps,
    )
    from fer.module import confusion, predict_logits
    from fer.report.plots import plot_cam_examples, plot_class_cams, plot_confusion
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
    cams = compute_cams(net, loader, ev.cam_method, ev.cam_target, ev.cam_layer)
    correct = cams.preds == cams.labels
    # Adebayo et al.: the same maps from a re-initialised copy must change (rho << 1).
    rho = spearman_maps(
        cams.cams,
        compute_cams(random_net, loader, ev.cam_method, ev.cam_target, ev.cam_layer).cams,
    )
    mean, n, n_nan = nan_mean(rho)
    rng = np.random.default_rng(0)
    shape = cams.cams.shape
    class_mean = class_mean_overlap(
        cams.cams, cams.masks, cams.labels, classes, threshold, regions=regions
    )
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
            "spearman_mean": mean,
            "n": n,
            "n_nan": n_nan,
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
        "overlap": {
            "class_mean": class_mean,
            "per_image": per_image_overlap(cams.cams, cams.masks, threshold, regions),
            "baselines": {
                "gaussian": per_image_overlap(
                    gaussian_baseline(shape), cams.masks, threshold, regions
                ),
                "random": per_image_overlap(
                    random_baseline(shape, rng), cams.masks, threshold, regions
                ),
            },
            "by_prediction": {
                key: per_image_overlap(cams.cams[sel], cams.masks[sel], threshold, regions)
                if sel.any()
                else None
                for key, sel in (("correct", correct), ("incorrect", ~correct))
            },
        },
    }
    # Per image (segmented subset): what the report's subject-clustered bootstrap resamples.
    frame = dataset.faces.frame
    result["predictions"] = {
        "row": cams.index,
        "subject": frame["subject"].iloc[cams.index].astype(str).tolist(),
        "label": cams.labels,
        "pred": cams.preds,
    }
    faces = dataset.faces.images[cams.index]
    if not show_faces:  # the licence does not allow showing its faces: maps and ROI only
        faces = np.full((len(cams.index), *faces.shape[1:]), 128, np.uint8)
    title = f"{name}: {ev.cam_method} ({ev.cam_target})"
    figures = {
        "confusion": plot_confusion(
            scores,
            out_dir / f"{name}_confusion.png",
            title=f"{name}: accuracy {scores['acc']:.3f}",
        ),
        "class_cams": plot_class_cams(
            cams.cams,
            faces,
            cams.masks,
            cams.labels,
            classes,
            out_dir / f"{name}_class_cams.png",
            title=f"{title}, class-mean DICE {class_mean['dice']['mean']:.3f}",
            scores=class_mean["dice"]["per_class"],
        ),
    }
    if show_faces:
        figures["examples"] = plot_cam_examples(
            cams.cams,
            faces,
            cams.masks,
            cams.labels,
            cams.preds,
            classes,
            out_dir / f"{name}_cam_examples.png",
            title=title,
        )
    result["figures"] = {k: p.name for k, p in figures.items()}
    result["faces_shown"] = show_faces
    return result, figures


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
