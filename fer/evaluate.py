"""`evaluate(cfg)`: score finished runs on their own held-out subsets and on other datasets,
with Grad-CAM overlap against the ROI masks (called by evaluate.py and by tests).

Each run is evaluated with *its own* saved `config.yaml` (never the current defaults). What is
scored follows DESIGN.md "What evaluation scores": every dataset of the run's split on the
subset the run reported (holdout: test; k-fold: the validation fold), and every dataset in
`eval.datasets` that is not part of the split, whole. Results go to
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
    from fer.checkpoint_io import load_checkpoint
    from fer.models.build import build_model

    # Built with glorot (no weights file needed), then every tensor comes from the checkpoint.
    net = build_model(run_cfg.model, {"name": "glorot"}, len(run_cfg.classes))
    state = load_checkpoint(ckpt)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    return net.eval()


def evaluate(cfg: DictConfig) -> list[Path]:
    """Evaluate every run `cfg.runs` names; return the JSON files written (or found)."""
    written: list[Path] = []
    for run_dir in expand_runs(str(cfg.runs)):
        written += evaluate_run(run_dir, cfg)
    return written


def evaluate_run(run_dir: Path, cfg: DictConfig) -> list[Path]:
    """Evaluate one finished run; skip datasets whose JSON already exists."""
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
    from fer.models.build import build_model
    from fer.module import confusion, predict_logits
    from fer.report.plots import plot_confusion
    from fer.scoring import summarize
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
    out_dir = run_dir / "eval" / eval_key(checkpoint, ev.cam_method, ev.cam_target)
    with open_dict(run_cfg):
        run_cfg.paths.cache_dir = str(cfg.paths.cache_dir)
        run_cfg.preprocess.progress = False
    dm = make_datamodule(run_cfg)
    dm.eval_batch_size = int(ev.batch_size)
    dm.setup("fit")
    sets = {name: (ds, dm.score_subset) for name, ds in dm.score_sets.items()}
    for name in ev.datasets:
        if name in sets:
            continue  # part of the run's split: scored on its held-out subset above
        data_cfg = _data_config(str(name), str(cfg.paths.cache_dir))
        sets[data_cfg.name] = (
            dm.whole(
                OmegaConf.to_container(data_cfg, resolve=True) | {"source": _source(data_cfg)}
            ),
            "whole",
        )
    # Never score images the run or its init checkpoint trained on (DESIGN.md).
    info = dm.describe()
    scored = {
        info[r]["name"]: set(info[r][dm.score_subset]["subjects"]) - {""}
        for r in ("source", "target")
        if r in info
    }
    for name, (dataset, subset) in sets.items():
        if subset == "whole":
            scored[name] = set(dataset.faces.frame["subject"].iloc[dataset.rows]) - {""}
    runs.check_not_trained_on(
        scored, runs.lineage_trained_subjects(run_dir, OmegaConf.to_container(run_cfg))
    )
    net = _load_net(run_cfg, ckpt)
    random_net = build_model(run_cfg.model, {"name": "glorot"}, len(run_cfg.classes)).eval()
    classes = list(run_cfg.classes)
    regions = list(ev.regions)
    written = []
    for name, (dataset, subset) in sets.items():
        path = out_dir / f"{name}.json"
        if path.exists() and read_json_or_none(path) and not ev.force:
            written.append(path)
            continue
        loader = dm.eval_loader(dataset)
        logits, labels = predict_logits(net, loader)  # one pass, both readings
        scores = summarize(confusion(logits, labels), classes)
        present = [i for i, n in enumerate(scores["support"].values()) if n > 0]
        shared = summarize(confusion(logits, labels, present), classes)
        torch.manual_seed(0)
        cams = compute_cams(net, loader, ev.cam_method, ev.cam_target, ev.cam_layer)
        correct = cams.preds == cams.labels
        # Adebayo et al.: the same maps from a re-initialised copy must change (rho << 1).
        rho = spearman_maps(
            cams.cams,
            compute_cams(random_net, loader, ev.cam_method, ev.cam_target, ev.cam_layer).cams,
        )
        mean, n, n_nan = nan_mean(rho)
        randomisation = {
            "spearman_mean": mean,
            "n": n,
            "n_nan": n_nan,
            "model": "same architecture, Glorot re-initialised",
        }
        per_image = per_image_overlap(cams.cams, cams.masks, ev.cam_threshold, regions)
        rng = np.random.default_rng(0)
        baselines = {
            "gaussian": per_image_overlap(
                gaussian_baseline(cams.cams.shape), cams.masks, ev.cam_threshold, regions
            ),
            "random": per_image_overlap(
                random_baseline(cams.cams.shape, rng), cams.masks, ev.cam_threshold, regions
            ),
        }
        split = {}
        for key, sel in (("correct", correct), ("incorrect", ~correct)):
            split[key] = (
                per_image_overlap(cams.cams[sel], cams.masks[sel], ev.cam_threshold, regions)
                if sel.any()
                else None
            )
        result = {
            "run": str(run_dir),
            "dataset": name,
            "subset": subset,
            "size": len(dataset),
            "checkpoint": checkpoint,
            "checkpoint_path": str(ckpt),
            "classes": classes,
            "scores": {**scores, "reading": "accuracy over all model outputs"},
            "scores_shared_classes": {
                **shared,
                "reading": "prediction restricted to the classes this dataset has",
            },
            "randomisation": randomisation,
            "cam": {
                "method": ev.cam_method,
                "target": ev.cam_target,
                "layer": ev.cam_layer or "relu after the last conv",
                "threshold": ev.cam_threshold,
                "regions": regions,
                "input_size": int(run_cfg.model.input.size),
            },
            "overlap": {
                "class_mean": class_mean_overlap(
                    cams.cams, cams.masks, cams.labels, classes, ev.cam_threshold, regions=regions
                ),
                "per_image": per_image,
                "baselines": baselines,
                "by_prediction": split,
            },
        }
        atomic_write_json(path, _strict(result))
        plot_confusion(
            scores,
            out_dir / f"{name}_confusion.png",
            title=f"{name} ({subset}): accuracy {scores['acc']:.3f}",
        )
        print(
            f"{run_dir.name}: {name} ({subset}, n={len(dataset)}) acc={scores['acc']:.3f} "
            f"class-mean DICE={result['overlap']['class_mean']['dice']['mean']:.3f}"
        )
        written.append(path)
    return written


def _source(data_cfg: DictConfig) -> Any:
    from hydra.utils import instantiate

    return instantiate(data_cfg.source)
