"""Collect every number a study's runs wrote into one long table (DESIGN.md "Run directory").

Reads only files: each run's `config.yaml`, `metrics.json` and `eval/<eval-key>/<dataset>.json`,
so a report can be rebuilt offline, after W&B is gone. One row per run × dataset × metric;
`source_of_number` says which file the number came from ("train": metrics.json, written at
the end of training; "eval": evaluate.py's JSON). Missing, failed and corrupt files become
problems ({path, problem}) — never an exception — and the rest is still tabulated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf

from fer import runs
from fer.errors import DataError
from fer.io import read_json

#: Flat grid keys (fer.loggers.grid_keys), in column order.
GRID_KEYS = (
    "model",
    "init",
    "fold",
    "strategy",
    "source",
    "target",
    "fraction",
    "seed",
    "split_seed",
)
#: Run-level columns added beside the grid keys (labels, protocol, split details).
RUN_KEYS = (
    "init_label",
    "strategy_label",
    "split",
    "k",
    "group_by",
    "protocol",
    "leaky",
    "checkpoint",
    "eval_key",
)
#: Every column of the long table, in order.
COLUMNS = (
    "run",
    "state",
    *GRID_KEYS,
    *RUN_KEYS,
    "dataset",
    "role",
    "subset",
    "source_of_number",
    "metric",
    "value",
)
#: Group-by values whose subsets may share subjects: labelled "leaky" everywhere.
LEAKY_GROUP_BY = ("none", "sequence")
SUBJECT = "subject-grouped"
CONF = Path(__file__).resolve().parents[2] / "conf"
#: Labels used when neither the run's config nor conf/<group>/<name>.yaml has one.
_FALLBACK_INIT_LABELS = {
    "imagenet": "ImageNet",
    "glorot": "scratch",
    "synthetic_pretrain": "ImageNet stand-in (synthetic)",
    "checkpoint": "checkpoint",
}


@cache
def _conf_label(group: str, name: str) -> str | None:
    """The `label` key of conf/<group>/<name>.yaml (the papers' labels live there)."""
    path = CONF / group / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if isinstance(data, dict):
        label = data.get("label") or (data.get(group) or {}).get("label")
        return str(label) if label else None
    return None


def init_label(cfg: Mapping[str, Any]) -> str | None:
    """The paper's label of a run's init ("ImageNet", "scratch", ...)."""
    init = cfg.get("init") or {}
    name = init.get("name")
    if name is None:
        return None
    return init.get("label") or _conf_label("init", name) or _FALLBACK_INIT_LABELS.get(name, name)


def strategy_label(cfg: Mapping[str, Any]) -> str | None:
    """The paper's label of a run's strategy (FC, FC+CL, RE, FU)."""
    strategy = cfg.get("strategy") or {}
    name = strategy.get("name")
    if name is None:
        return None
    if strategy.get("label"):
        return str(strategy["label"])
    from fer.strategies import STRATEGIES  # imports torch: only for configs without a label

    return STRATEGIES.get(name) or _conf_label("strategy", name) or name


def _grid(cfg: dict) -> dict[str, Any]:
    """`fer.loggers.grid_keys` on a plain dict (the one definition of the flat keys)."""
    from fer.loggers import grid_keys

    return grid_keys(OmegaConf.create(cfg))


def _protocol(cfg: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, bool, str]:
    """(protocol label, leaky, group_by) of a run: never merge leaky with subject-grouped.

    Leaky when the config groups by sequence or image (`split.group_by` none|sequence) or a
    dataset part of metrics.json says `leaky` for a reason other than an official split
    (FER2013 has no identities: its official split is used as given, and not called leaky).
    """
    split = cfg.get("split") or {}
    group_by = str(split.get("group_by", "subject"))
    leaky_by = group_by if group_by in LEAKY_GROUP_BY else None
    for role in ("source", "target"):
        part = data.get(role) or {}
        g = part.get("group_by")
        if part.get("leaky") and g != "official" and leaky_by is None:
            leaky_by = str(g or "unknown")
    if leaky_by is not None:
        return f"leaky (group_by={leaky_by})", True, group_by
    return SUBJECT, False, group_by


def _num(x: Any) -> float:
    """A JSON number as float; None (strict JSON's NaN) -> NaN."""
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _dig(obj: Any, *keys: str) -> Any:
    """obj[k1][k2]... or None when any level is missing."""
    for k in keys:
        if not isinstance(obj, Mapping) or k not in obj:
            return None
        obj = obj[k]
    return obj


def _score_metrics(scores: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    """acc, acc_macro and per-class accuracy (classes the dataset lacks are left out)."""
    yield "acc", _num(scores.get("acc"))
    yield "acc_macro", _num(scores.get("acc_macro"))
    support = scores.get("support") or {}
    for c, v in (scores.get("per_class") or {}).items():
        if v is None and not support.get(c):
            continue  # support 0: the dataset has no such class, nothing to report
        yield f"acc/{c}", _num(v)


def train_metrics(metrics: Mapping[str, Any]) -> Iterable[tuple[str, str, str, float]]:
    """(dataset, subset, metric, value) from a finished run's metrics.json."""
    data = metrics.get("data") or {}
    scored = {}
    for name, scores in (metrics.get("scores") or {}).items():
        scored[name] = subset = str(scores.get("subset") or data.get("scored_on") or "")
        for metric, value in _score_metrics(scores):
            yield name, subset, metric, value
    # Subset sizes (Nadeau–Bengio needs n_train and n_test of the in-domain folds), on the
    # dataset's scored-subset row so `wide` keeps one row per run × dataset.
    for role in ("source", "target"):
        part = data.get(role) or {}
        if not part.get("name"):
            continue
        subset = scored.get(part["name"], str(data.get("scored_on") or ""))
        for which in ("train", "val", "test"):
            size = _dig(part, which, "size")
            if size is not None:
                yield part["name"], subset, f"size/{which}", _num(size)
        if part.get("excluded") is not None:
            yield part["name"], subset, "n_excluded", _num(part["excluded"])


def _per_image(block: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    for key in (
        "dice",
        "iou",
        "dice_area_matched",
        "iou_area_matched",
        "energy_inside",
        "pointing_game",
    ):
        v = _dig(block, key, "mean")
        if isinstance(block, Mapping) and key in block:
            yield f"{prefix}{key}", _num(v)


def eval_metrics(result: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    """(metric, value) from one evaluate.py JSON (see fer/evaluate.py `_evaluate_dataset`)."""
    scores = result.get("scores") or {}
    yield from _score_metrics(scores)
    shared = result.get("scores_shared_classes")
    if isinstance(shared, Mapping):
        yield "acc_shared", _num(shared.get("acc"))
    every = result.get("scores_every_face")
    if isinstance(every, Mapping):  # null when eval.include_excluded=false
        yield "acc_every_face", _num(every.get("acc"))
        yield "n_excluded_scored", _num(every.get("n_excluded"))
        for c, v in (every.get("excluded_rate_per_class") or {}).items():
            if v is not None:
                yield f"excluded_rate/{c}", _num(v)
    cm = _dig(result, "overlap", "class_mean") or {}
    n_images = {c: (d or {}).get("n_images") for c, d in (cm.get("per_class") or {}).items()}
    for score in ("dice", "iou"):
        block = cm.get(score)
        if not isinstance(block, Mapping):
            continue
        # Class-mean protocol (DESIGN.md "Overlap"): the headline is the mean over classes.
        yield score, _num(block.get("mean"))
        yield f"{score}_n_nan", _num(block.get("n_nan"))
        for c, v in (block.get("per_class") or {}).items():
            if v is None and n_images.get(c) == 0:
                continue  # no image of the class in this dataset
            yield f"{score}/{c}", _num(v)
        for region, parts in (cm.get("per_region") or {}).items():
            yield f"{score}_region/{region}", _num(_dig(parts, score, "mean"))
    per_image = _dig(result, "overlap", "per_image")
    yield from _per_image(per_image, "per_image/")
    for region, block in (_dig(per_image, "per_region") or {}).items():
        yield from _per_image(block, f"per_image_region/{region}/")
    for name in ("gaussian", "random"):
        yield from _per_image(_dig(result, "overlap", "baselines", name), f"baseline_{name}/")
    for which in ("correct", "incorrect"):
        yield from _per_image(_dig(result, "overlap", "by_prediction", which), f"{which}/")
    rho = _dig(result, "randomisation", "spearman_mean")
    if isinstance(result.get("randomisation"), Mapping):
        yield "spearman", _num(rho)


def run_dirs(root: Path) -> list[Path]:
    """Run directories one level under `root`: folders holding config.yaml (sorted)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / runs.CONFIG).exists())


def choose_eval_dir(run_dir: Path, cfg: Mapping[str, Any], eval_key: str | None) -> Path | None:
    """The eval folder to read: `eval_key` if given; else the run's own checkpoint with
    gradcam/label; else the only folder present; else None."""
    base = run_dir / "eval"
    if eval_key is not None:
        return base / eval_key if (base / eval_key).is_dir() else None
    checkpoint = (cfg.get("eval") or {}).get("checkpoint") or "last"
    own = base / f"{checkpoint}__gradcam__label"
    if own.is_dir():
        return own
    present = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    return present[0] if len(present) == 1 else None


def _row_base(run_dir: Path, cfg: dict, data: Mapping[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {"run": run_dir.name, "state": "finished"}
    base.update(_grid(cfg))
    split = cfg.get("split") or {}
    protocol, leaky, group_by = _protocol(cfg, data)
    base.update(
        init_label=init_label(cfg),
        strategy_label=strategy_label(cfg),
        split=split.get("name"),
        k=split.get("k"),
        group_by=group_by,
        protocol=protocol,
        leaky=leaky,
        checkpoint=(cfg.get("eval") or {}).get("checkpoint"),
        eval_key=None,
    )
    return base


def _role(dataset: str, base: Mapping[str, Any]) -> str:
    if dataset == base.get("source"):
        return "source"
    if dataset == base.get("target"):
        return "target"
    return "cross"


Problem = Callable[[Path, str], None]


def _finished_runs(
    root: Path, eval_key: str | None, problem: Problem
) -> Iterator[tuple[Path, dict, dict, dict[str, Any], Path | None]]:
    """(run_dir, cfg, metrics, row base, eval folder or None) of every finished run under
    `root`; unreadable, unfinished and keyless runs are reported through `problem`."""
    for run_dir in run_dirs(root):
        try:
            cfg = runs.read_config(run_dir)
        except (OSError, yaml.YAMLError) as e:
            problem(run_dir / runs.CONFIG, f"unreadable config.yaml ({type(e).__name__}: {e})")
            continue
        if not isinstance(cfg, dict):
            problem(run_dir / runs.CONFIG, "config.yaml holds no mapping")
            continue
        metrics_path = run_dir / runs.METRICS
        try:
            metrics = read_json(metrics_path)
        except FileNotFoundError:
            problem(metrics_path, "missing: run not finished (in progress or never trained)")
            continue
        except DataError as e:
            problem(metrics_path, f"corrupt JSON, run left out ({e})")
            continue
        state = metrics.get("status") if isinstance(metrics, dict) else None
        if state != "finished":
            reason = metrics.get("reason", "") if isinstance(metrics, dict) else ""
            problem(
                metrics_path, f"status {state!r}, run left out" + (f": {reason}" if reason else "")
            )
            continue
        try:
            base = _row_base(run_dir, cfg, metrics.get("data") or {})
        except Exception as e:  # a config without the grid keys: report it, go on
            problem(run_dir / runs.CONFIG, f"missing grid keys ({type(e).__name__}: {e})")
            continue
        eval_dir = choose_eval_dir(run_dir, cfg, eval_key)
        if eval_dir is None and (run_dir / "eval").is_dir():
            present = sorted(p.name for p in (run_dir / "eval").iterdir() if p.is_dir())
            if present:
                problem(
                    run_dir / "eval",
                    f"no eval folder chosen: wanted {eval_key or 'the run own checkpoint'}"
                    f"__gradcam__label, found {present}",
                )
        yield run_dir, cfg, metrics, base, eval_dir


def _eval_jsons(
    eval_dir: Path, metrics: dict, problem: Problem
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(path, object) of each readable evaluate.py JSON in `eval_dir` (sorted) that evaluated
    the run's present training (`runs.evaluation_is_current`)."""
    for path in sorted(eval_dir.glob("*.json")):
        try:
            result = read_json(path)
        except DataError as e:
            problem(path, f"corrupt JSON, evaluation left out ({e})")
            continue
        if not isinstance(result, dict):
            problem(path, "eval JSON holds no object, left out")
            continue
        if not runs.evaluation_is_current(result, metrics):
            problem(
                path,
                "evaluation of an earlier training of this run (or from before evaluations were "
                "stamped), left out: run evaluate.py again",
            )
            continue
        yield path, result


def collect(root: Path, eval_key: str | None = None) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Long table of every run under `root` (one level), and the problems found
    (`read_study`'s first half).

    Args:
        root: `outputs/<study name>`; each folder holding config.yaml is a run.
        eval_key: `<checkpoint>__<cam_method>__<cam_target>` to read; None = the run's own
            `eval.checkpoint` with gradcam/label, else the only eval folder present.

    Returns:
        (frame with `COLUMNS`, [{"path", "problem"}]). Only finished runs give rows. A
        finished run misses an eval JSON when runs of its kind (same target, or none) have
        one for a dataset it lacks, or when a dataset its metrics.json scored has none.
    """
    frame, problems, _, _ = read_study(root, eval_key)
    return frame, problems


def read_study(
    root: Path, eval_key: str | None = None
) -> tuple[pd.DataFrame, list[dict[str, str]], pd.DataFrame, list[dict[str, str]]]:
    """`collect` and `predictions` in one pass over the run files (each JSON read once):
    (long frame, its problems, prediction frame, the prediction table's own problems)."""
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    pred_frames: list[pd.DataFrame] = []
    pred_problems: list[dict[str, str]] = []
    finished: list[tuple[Path, dict, dict, Path | None, set[str]]] = []

    def problem(path: Path, text: str) -> None:
        problems.append({"path": str(path), "problem": text})

    def pred_problem(path: Path, text: str) -> None:
        pred_problems.append({"path": str(path), "problem": text})

    for run_dir, cfg, metrics, base, eval_dir in _finished_runs(root, eval_key, problem):
        for dataset, subset, metric, value in train_metrics(metrics):
            rows.append(
                base
                | {
                    "dataset": dataset,
                    "role": _role(dataset, base),
                    "subset": subset,
                    "source_of_number": "train",
                    "metric": metric,
                    "value": value,
                }
            )
        got: set[str] = set()
        if eval_dir is not None:
            ebase = base | {"eval_key": eval_dir.name}
            for path, result in _eval_jsons(eval_dir, metrics, problem):
                dataset = str(result.get("dataset") or path.stem)
                got.add(dataset)
                for metric, value in eval_metrics(result):
                    rows.append(
                        ebase
                        | {
                            "dataset": dataset,
                            "role": _role(dataset, base),
                            "subset": str(result.get("subset") or ""),
                            "source_of_number": "eval",
                            "metric": metric,
                            "value": value,
                        }
                    )
                pred = _prediction_rows(path, result, ebase, dataset, pred_problem)
                if pred is not None:
                    pred_frames.append(pred)
        finished.append((run_dir, cfg, base, eval_dir, got))
    # Expected evaluations: what runs of the same kind (same target) were evaluated on, plus
    # every dataset a run's own metrics.json scored.
    by_kind: dict[Any, set[str]] = {}
    for _, _, base, _, got in finished:
        by_kind.setdefault(base.get("target"), set()).update(got)
    own = {}
    for row in rows:
        if row["source_of_number"] == "train" and not row["metric"].startswith(("size/", "n_")):
            own.setdefault(row["run"], set()).add(row["dataset"])
    for run_dir, cfg, base, eval_dir, got in finished:
        expected = by_kind.get(base.get("target"), set()) | own.get(run_dir.name, set())
        folder = eval_dir or run_dir / "eval" / (
            eval_key or f"{(cfg.get('eval') or {}).get('checkpoint') or 'last'}__gradcam__label"
        )
        for dataset in sorted(expected - got):
            problem(folder / f"{dataset}.json", "missing evaluation (evaluate.py not run on it)")
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["value"] = frame["value"].astype(float)
    pred_frames = [f for f in pred_frames if not f.empty]
    preds = (
        pd.concat(pred_frames, ignore_index=True)[list(PRED_COLUMNS)]
        if pred_frames
        else pd.DataFrame(columns=list(PRED_COLUMNS))
    )
    return frame, problems, preds, pred_problems


#: Columns of the per-image prediction table (`predictions`), in order.
PRED_COLUMNS = (
    "run",
    *GRID_KEYS,
    *RUN_KEYS,
    "dataset",
    "role",
    "subset",
    "row",
    "subject",
    "label",
    "pred",
    "correct",
)
#: Subject ids that mean "unknown" (evaluate.py writes str(NaN) = "nan" for a missing id).
UNKNOWN_SUBJECTS = frozenset({"", "nan", "none", "null", "<na>"})
NO_PREDICTIONS = (
    "no per-image predictions (evaluate.py JSON older than its `predictions` key): left out "
    "of the subject-clustered bootstrap; re-run evaluate.py to include it"
)


def _subject(x: Any) -> str | None:
    """A subject id, or None when unknown."""
    if x is None:
        return None
    s = str(x).strip()
    return None if s.lower() in UNKNOWN_SUBJECTS else s


def _prediction_frame(preds: Any) -> pd.DataFrame | str:
    """evaluate.py's `predictions` block as row/subject/label/pred/correct, or why not."""
    if not isinstance(preds, Mapping):
        return NO_PREDICTIONS
    keys = ("row", "subject", "label", "pred")
    cols = {k: preds.get(k) for k in keys}
    bad = [k for k, v in cols.items() if not isinstance(v, list)]
    if bad:
        return f"malformed predictions: {bad} missing or not a list, left out of the bootstrap"
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) != 1:
        return f"malformed predictions: lists differ in length {lengths}, left out"
    try:
        label = np.asarray(cols["label"], dtype=np.int64)
        pred = np.asarray(cols["pred"], dtype=np.int64)
        row = np.asarray(cols["row"], dtype=np.int64)
    except (TypeError, ValueError) as e:
        return f"malformed predictions: non-integer row/label/pred ({e}), left out"
    return pd.DataFrame(
        {
            "row": row,
            "subject": pd.Series([_subject(s) for s in cols["subject"]], dtype=object),
            "label": label,
            "pred": pred,
            "correct": (label == pred).astype(np.int64),
        }
    )


def predictions(
    root: Path, eval_key: str | None = None
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Per-image predictions of every finished run: one row per run × dataset × image.

    Reads the `predictions` block of each evaluate.py JSON (`row`, `subject`, `label`,
    `pred`: the scored subset, class indices). Each row carries the run's grid keys and
    labels as in `collect` (`PRED_COLUMNS`), `subject` (None when unknown: "", "nan") and
    `correct` (0/1). The eval folder is chosen as in `collect`.

    Returns:
        (frame, [{"path", "problem"}]): only this table's problems — a JSON without
        predictions (older evaluate.py) or with malformed ones is left out and reported.
        Unreadable, unfinished and corrupt runs are `collect`'s problems, not repeated here.
    """
    _, _, preds, problems = read_study(root, eval_key)
    return preds, problems


def _prediction_rows(
    path: Path, result: Mapping[str, Any], ebase: Mapping[str, Any], dataset: str, problem: Problem
) -> pd.DataFrame | None:
    """The per-image rows of one evaluate.py JSON, or None (reported) without predictions."""
    frame = _prediction_frame(result.get("predictions"))
    if isinstance(frame, str):
        problem(path, frame)
        return None
    meta = dict(ebase) | {
        "dataset": dataset,
        "role": _role(dataset, ebase),
        "subset": str(result.get("subset") or ""),
    }
    for c in PRED_COLUMNS:
        if c in meta:
            frame[c] = [meta[c]] * len(frame)  # a list keeps None (no NaN cast)
    return frame


def wide(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run × dataset × subset × source_of_number, one column per metric."""
    if df.empty:
        return pd.DataFrame(columns=[c for c in COLUMNS if c not in ("metric", "value")])
    ids = [c for c in df.columns if c not in ("metric", "value")]
    table: dict[tuple, dict[str, Any]] = {}
    # A plain dict keeps None grid keys (holdout has no fold) that pandas' pivot would drop.
    for rec in df.to_dict("records"):
        key = tuple(_key(rec[c]) for c in ids)
        row = table.setdefault(key, {c: rec[c] for c in ids})
        row[rec["metric"]] = rec["value"]
    return pd.DataFrame(list(table.values()))


def _key(x: Any) -> Any:
    """A hashable stand-in for NaN/None so both group together."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return x
