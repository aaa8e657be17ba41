"""The validity study's tables (conf/study/validity_cue.yaml): does the instrument catch a model
that is right for the wrong reason?

Arms are training runs on the spurious-cue domain: the clean variant (no mark) and the cued one
at each cue strength p, each repeated over seeds on the same data and split. Per arm and
measure: mean ± SD over seeds with a 95 % t CI (df = n − 1); per cued arm, the difference from
the clean arm *paired by seed* (same seed, same split seed) with its own 95 % t CI. Seeds of one
arm are independent training replicates on the same data, so these intervals are confidence
intervals for the mean over training seeds (conditional on the rendered data and its split —
subject sampling does not enter them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer import runs
from fer.report import stats
from fer.report.collect import run_dirs
from fer.report.tables import MISSING, PERCENT, fmt_mean_sd, values

REFERENCE = "clean"
OWN = "own"  # a measure's dataset meaning "the run's own training dataset" (its test subset)
INTERVAL = "95% t CI over seeds (df = n − 1)"
PAIRED = "paired by seed (same seed and split seed as the clean run), 95% t CI (df = n − 1)"


@dataclass(frozen=True)
class Measure:
    """One column of the validity table: a long-table metric on one dataset (or the per-run
    mean over several datasets)."""

    key: str
    label: str
    metric: str
    datasets: tuple[str, ...]
    scale: float
    digits: int


def measures(spec: Mapping[str, Any]) -> list[Measure]:
    """The table's columns from the study's `validity` block (`cued_test`, `cue_free_test`,
    `cross`): accuracy on the cued test set (in-domain), on the run's own test set (the cue
    strength it was trained with; clean: no mark), on the same faces without the mark, across
    domains (each, and their mean), and CAM energy inside the face ROI and class-mean DICE on
    the cued and the cue-free test set."""
    cued, free = str(spec["cued_test"]), str(spec["cue_free_test"])
    cross = tuple(str(d) for d in spec.get("cross") or ())
    out = [
        Measure("acc_cued", "in-domain acc, cued test (%)", "acc", (cued,), PERCENT, 1),
        Measure("acc_own", "acc, own test set (%)", "acc", (OWN,), PERCENT, 1),
        Measure("acc_cue_free", "cue-free acc (%)", "acc", (free,), PERCENT, 1),
    ]
    if cross:
        out.append(Measure("acc_cross", "cross-domain acc (%)", "acc", cross, PERCENT, 1))
        if len(cross) > 1:
            out += [Measure(f"acc_{d}", f"acc {d} (%)", "acc", (d,), PERCENT, 1) for d in cross]
    out += [
        Measure("energy_cued", "ROI energy, cued test", "per_image/energy_inside", (cued,), 1, 3),
        Measure(
            "energy_cue_free", "ROI energy, cue-free test", "per_image/energy_inside", (free,), 1, 3
        ),
        Measure("dice_cued", "class-mean DICE, cued test", "dice", (cued,), 1, 3),
        Measure("dice_cue_free", "class-mean DICE, cue-free test", "dice", (free,), 1, 3),
    ]
    return out


def arm_of(cfg: Mapping[str, Any]) -> str:
    """A run's arm from its resolved config: "clean" without a mark, else "cue p=<p> (<mark>)"."""
    source = (cfg.get("data") or {}).get("source") or {}
    mark = str(source.get("cue_mark", "none"))
    if mark == "none":
        return REFERENCE
    return f"cue p={float(source.get('cue_p', math.nan)):g} ({mark})"


def arms(root: Path) -> dict[str, str]:
    """{run name: arm} of every run directory under `root` with a readable config."""
    out = {}
    for run_dir in run_dirs(root):
        cfg = runs.read_config(run_dir)
        if isinstance(cfg, dict):
            out[run_dir.name] = arm_of(cfg)
    return out


def _arm_order(arm: str) -> tuple[int, float, str]:
    if arm == REFERENCE:
        return (0, 0.0, arm)
    try:
        p = float(arm.split("p=", 1)[1].split()[0])
    except (IndexError, ValueError):
        p = math.inf
    return (1, p, arm)


def per_run(df: pd.DataFrame, measure: Measure, arm: Mapping[str, str]) -> pd.DataFrame:
    """run, arm, seed, split_seed, value (in the measure's unit) of every run with the
    measure; a multi-dataset measure is the per-run mean and needs every dataset."""
    vals = values(df, measure.metric)
    cols = ["run", "arm", "seed", "split_seed", "value"]
    if vals.empty:
        return pd.DataFrame(columns=cols)
    own = vals["dataset"] == vals["source"]
    wanted = own if measure.datasets == (OWN,) else vals["dataset"].isin(measure.datasets)
    vals = vals[wanted & vals["run"].isin(list(arm))]
    rows = []
    for run, g in vals.groupby("run", sort=True):
        by_ds = dict(zip(g["dataset"], g["value"], strict=True))
        if measure.datasets == (OWN,):
            by_ds = {OWN: next(iter(by_ds.values()))}
        got = [by_ds.get(d, math.nan) for d in measure.datasets]
        value = float(np.mean(got)) * measure.scale  # NaN when a dataset is missing
        first = g.iloc[0]
        rows.append([run, arm[run], first["seed"], first["split_seed"], value])
    return pd.DataFrame(rows, columns=cols)


def _pair_key(frame: pd.DataFrame) -> pd.Series:
    return frame["seed"].astype(str) + "/" + frame["split_seed"].astype(str)


COLUMNS = [
    "arm",
    "measure",
    "datasets",
    "n",
    "n_nan",
    "mean",
    "sd",
    "mean ± SD",
    "ci_low",
    "ci_high",
    "Δ vs clean",
    "Δ SD",
    "Δ n pairs",
    "Δ ci_low",
    "Δ ci_high",
    "Δ (95% CI)",
    "CI excludes 0",
    "interval",
]


def validity_table(
    df: pd.DataFrame, arm: Mapping[str, str], spec: Mapping[str, Any]
) -> pd.DataFrame:
    """One row per arm × measure: mean ± SD over seeds with its 95 % t CI, and for every arm
    but the reference the difference from it paired by seed (mean, SD, 95 % t CI, whether the
    CI excludes 0). Accuracies in %, ROI energy and DICE in [0, 1]."""
    reference = str(spec.get("reference", REFERENCE))
    rows = []
    for m in measures(spec):
        frame = per_run(df, m, arm)
        if frame.empty:
            continue
        ref = frame[frame["arm"] == reference]
        ref_by = dict(zip(_pair_key(ref), ref["value"], strict=True))
        for name in sorted(set(frame["arm"]), key=_arm_order):
            g = frame[frame["arm"] == name]
            s = stats.mean_sd(g["value"].to_numpy(float))
            row = {
                "arm": name,
                "measure": m.label,
                "datasets": ", ".join(m.datasets),
                "n": s["n"],
                "n_nan": s["n_nan"],
                "mean": s["mean"],
                "sd": s["sd"],
                "mean ± SD": fmt_mean_sd(s["mean"], s["sd"], m.digits),
                "ci_low": s["ci_low"],
                "ci_high": s["ci_high"],
                "interval": INTERVAL,
            }
            if name == reference:
                rows.append(row | _no_delta("reference"))
                continue
            ref_vals = np.array([ref_by.get(k, math.nan) for k in _pair_key(g)], float)
            d = g["value"].to_numpy(float) - ref_vals
            rows.append(row | _delta(d, m.digits))
    return pd.DataFrame(rows, columns=COLUMNS)


def _no_delta(text: str) -> dict[str, Any]:
    return {
        "Δ vs clean": math.nan,
        "Δ SD": math.nan,
        "Δ n pairs": 0,
        "Δ ci_low": math.nan,
        "Δ ci_high": math.nan,
        "Δ (95% CI)": text,
        "CI excludes 0": None,
    }


def _delta(d: np.ndarray, digits: int) -> dict[str, Any]:
    """Paired differences (NaN pairs skipped): mean, SD, t CI with n − 1 df."""
    s = stats.mean_sd(d)
    if s["n"] == 0:
        return _no_delta("no pair (no clean run with the same seed)")
    lo, hi = s["ci_low"], s["ci_high"]
    text = f"{s['mean']:+.{digits}f}"
    if not math.isnan(lo):
        text += f" [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    excludes = None if math.isnan(lo) else bool(lo > 0 or hi < 0)
    return {
        "Δ vs clean": s["mean"],
        "Δ SD": s["sd"],
        "Δ n pairs": s["n"],
        "Δ ci_low": lo,
        "Δ ci_high": hi,
        "Δ (95% CI)": text,
        "CI excludes 0": excludes,
    }


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """The headline: one row per arm, one column per measure — "mean ± SD" for the reference,
    "mean ± SD (Δ [95% CI])" for the others (Δ paired by seed), and the number of seeds."""
    if table.empty:
        return pd.DataFrame(columns=["arm", "seeds"])
    order = list(dict.fromkeys(table["measure"]))
    out = []
    for name in sorted(set(table["arm"]), key=_arm_order):
        g = table[table["arm"] == name].set_index("measure")
        row: dict[str, Any] = {"arm": name, "seeds": int(g["n"].max())}
        for m in order:
            if m not in g.index:
                row[m] = MISSING
                continue
            r = g.loc[m]
            delta = r["Δ (95% CI)"]
            row[m] = r["mean ± SD"] + ("" if delta == "reference" else f" (Δ {delta})")
        out.append(row)
    return pd.DataFrame(out, columns=["arm", "seeds", *order])


#: The validity acceptance (issue 10): the strongest cue's arm vs clean, paired by seed.
CHECKS = (
    ("acc_cued", "in-domain acc on cued test data higher than clean", 1),
    ("acc_cue_free", "cue-free acc lower than clean", -1),
    ("energy_cued", "ROI energy (cued test) lower than clean", -1),
)


def checks(table: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """Per cued arm, whether each expected difference from clean has its sign with a 95 % CI
    that excludes 0 (computed from `table`; nothing is assumed)."""
    labels = {m.key: m.label for m in measures(spec)}
    cols = ["arm", "check", "Δ (95% CI)", "holds"]
    rows = []
    cued = table[table["Δ n pairs"] > 0]
    for name in sorted(set(cued["arm"]), key=_arm_order):
        g = cued[cued["arm"] == name].set_index("measure")
        for key, text, sign in CHECKS:
            if labels.get(key) not in g.index:
                continue
            r = g.loc[labels[key]]
            lo, hi = r["Δ ci_low"], r["Δ ci_high"]
            holds = (not math.isnan(lo)) and (lo > 0 if sign > 0 else hi < 0)
            rows.append({"arm": name, "check": text, "Δ (95% CI)": r["Δ (95% CI)"], "holds": holds})
    return pd.DataFrame(rows, columns=cols)


def validity_tables(
    df: pd.DataFrame, root: Path, spec: Mapping[str, Any]
) -> dict[str, pd.DataFrame]:
    """{"validity_summary", "validity", "validity_checks"} from the long table of a study."""
    table = validity_table(df, arms(root), spec)
    return {
        "validity_summary": side_by_side(table),
        "validity": table,
        "validity_checks": checks(table, spec),
    }


#: README note on what the validity intervals mean.
NOTE = (
    "Validity study: per arm mean ± SD over training seeds with a 95% t CI (df = n − 1); "
    "Δ = arm − clean, paired by seed (same seed and split seed, same data), with its 95% t "
    "CI. Seeds are independent training replicates on one rendered data set and split, so "
    "the CIs are over training variability only (subject sampling does not enter them). "
    "Grad-CAM of small_vgg at 32² is a 9×9 map; its unpadded convolutions centre those cells "
    "on input pixels ≈ 7.5–23.5 only, and the map is resized over the whole image (a ~1.8× "
    "stretch about the centre), so ROI energy and DICE are low for every arm: compare arms, "
    "not absolute values."
)
