"""The studies' tables from the long run table (fer.report.collect), as Markdown, LaTeX, CSV.

Conventions (DESIGN.md "Statistics"): mean ± SD (ddof=1) over folds/seeds with n beside it;
fold-based intervals are labelled descriptive; every p-value is printed with its test
(`stats.format_p`); Holm within a declared family; leaky runs (`split.group_by` none|sequence)
carry their own `protocol` label and are never pooled with subject-grouped ones. Accuracies
are shown in percent (the papers' unit); DICE/IoU in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer.report import stats
from fer.report.collect import SUBJECT

#: Study B's strategy order (the paper's table), BL first.
STRATEGY_ORDER = ("BL", "FC", "FC+CL", "RE", "FU")
#: Primary endpoints when a study config names none (DESIGN.md "Statistics").
PRIMARY_A = ("acc@cross", "dice", "iou")
PRIMARY_B = ("acc@source", "acc@target")
#: Published labels -> our config names (their Table 2).
PUBLISHED_MODELS = {"base": "vgg16", "se": "vgg16_se", "cbam": "vgg16_cbam"}
PUBLISHED_INITS = {"transfer": "imagenet", "scratch": "glorot"}
MISSING = "—"
PERCENT = 100.0


# --------------------------------------------------------------------------- selection


def values(
    df: pd.DataFrame, metric: str, prefer: Sequence[str] = ("train", "eval")
) -> pd.DataFrame:
    """One value of `metric` per run × dataset: metrics.json's when present, else eval's.

    Both come from the same scoring function on the same checkpoint (DESIGN.md "Which
    checkpoint is reported"); metrics.json is preferred because every finished run has it.
    """
    sub = df[df["metric"] == metric]
    if sub.empty:
        return sub.copy()
    rank = sub["source_of_number"].map({s: i for i, s in enumerate(prefer)}).fillna(len(prefer))
    sub = sub.assign(_rank=rank).sort_values("_rank", kind="stable")
    return sub.drop_duplicates(["run", "dataset"]).drop(columns="_rank").reset_index(drop=True)


def is_primary(metric: str, role: str, primary: Iterable[str]) -> bool:
    """A number is a primary endpoint when its metric (or `metric@role`) is declared so."""
    primary = set(primary)
    return metric in primary or f"{metric}@{role}" in primary


def _keys(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """`by` columns with missing values shown as MISSING (groupby drops NaN keys otherwise)."""
    out = frame.copy()
    for c in by:
        out[c] = out[c].astype(object).where(out[c].notna(), MISSING)
    return out


def fmt_mean_sd(mean: float, sd: float, digits: int = 2) -> str:
    """Format as "m ± s"; an SD undefined for n < 2 is shown as "n/a"."""
    if mean is None or math.isnan(mean):
        return MISSING
    s = "n/a" if sd is None or math.isnan(sd) else f"{sd:.{digits}f}"
    return f"{mean:.{digits}f} ± {s}"


#: Replicate keys of a run (what a mean ± SD can be "over"), with their labels.
REPLICATES = (("fold", "folds"), ("seed", "seeds"), ("split_seed", "split seeds"))
SEED_CI = "t CI over seeds (independent training replicates on the same data, df = n-1)"


def replicates(g: pd.DataFrame) -> tuple[str, bool]:
    """What a group's runs vary over, e.g. "5 seeds", "4 folds" or "4 folds × 2 seeds", and
    whether its t-interval is a confidence interval: only when seeds alone vary (the same data
    and split, independent training runs). Folds and split seeds share data between runs, so
    their intervals stay descriptive (DESIGN.md "Statistics")."""
    parts, varying = [], set()
    for col, label in REPLICATES:
        if col not in g.columns:
            continue
        n = g[col].dropna().astype(str).nunique()
        if n > 1:
            parts.append(f"{n} {label}")
            varying.add(col)
    if not parts:
        return ("1 run" if len(g) == 1 else f"{len(g)} runs"), False
    return " × ".join(parts), varying == {"seed"}


def summarize(
    vals: pd.DataFrame, by: Sequence[str], scale: float = 1.0, digits: int = 2
) -> pd.DataFrame:
    """mean ± SD (ddof=1), n, NaNs skipped and the 95 % t-interval per group of `by`, with
    `over` naming what the runs vary over (`replicates`): a CI over seeds when only seeds
    vary, else the descriptive interval of dependent folds / split seeds."""
    cols = [*by, "n", "n_nan", "over", "mean", "sd", "mean ± SD", "ci_low", "ci_high"]
    cols.append("interval")
    if vals.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in _keys(vals, by).groupby(list(by), sort=True, dropna=False):
        s = stats.mean_sd(g["value"].to_numpy(dtype=float) * scale)
        over, is_ci = replicates(g)
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            dict(zip(by, key, strict=True))
            | {
                "n": s["n"],
                "n_nan": s["n_nan"],
                "over": over,
                "mean": s["mean"],
                "sd": s["sd"],
                "mean ± SD": fmt_mean_sd(s["mean"], s["sd"], digits),
                "ci_low": s["ci_low"],
                "ci_high": s["ci_high"],
                "interval": f"{int(s['level'] * 100)}% {SEED_CI if is_ci else s['interval']}",
            }
        )
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- study A


def table1(counts: pd.DataFrame) -> pd.DataFrame:
    """Study A's Table 1: images per class before/after pre-processing, per dataset.

    `counts` has columns dataset, class, original, processed (one row per dataset × class).
    Rows: classes, then "Total" (the sum of the rows, computed here — the paper's own FACES
    total differs from its rows; see fer/report/published/). Columns per dataset: original,
    processed, excluded %.
    """
    need = {"dataset", "class", "original", "processed"}
    if not need <= set(counts.columns):
        raise ValueError(f"counts needs columns {sorted(need)}, got {list(counts.columns)}")
    datasets = list(dict.fromkeys(counts["dataset"]))
    classes = list(dict.fromkeys(counts["class"]))
    out = pd.DataFrame({"class": [*classes, "Total"]})
    for ds in datasets:
        part = counts[counts["dataset"] == ds].set_index("class")
        orig = [part["original"].get(c, np.nan) for c in classes]
        proc = [part["processed"].get(c, np.nan) for c in classes]
        orig.append(float(np.nansum(orig)))
        proc.append(float(np.nansum(proc)))
        o, p = np.asarray(orig, float), np.asarray(proc, float)
        excl = np.divide(o - p, o, out=np.full(o.shape, np.nan), where=o > 0) * PERCENT
        out[f"{ds} original"] = o
        out[f"{ds} processed"] = p
        out[f"{ds} excluded %"] = np.round(excl, 2)
    return out


def _pair_value(frame: pd.DataFrame) -> pd.Series:
    """Values indexed by the pairing keys (fold, seed, split seed); duplicates averaged."""
    keyed = _keys(frame, ["fold", "seed", "split_seed"])
    return keyed.groupby(["fold", "seed", "split_seed"], sort=True)["value"].mean()


def _init_order(name: str) -> tuple[bool, str]:
    # Pretrained arm first, so differences read "pretrained − scratch" (the paper's question).
    return (name == "glorot", str(name))


def _sizes(df: pd.DataFrame, runs: Iterable[str], dataset: str) -> tuple[int, int] | None:
    """Mean (n_train, n_test) of the in-domain folds of `runs` (metrics.json sizes)."""
    sub = df[df["run"].isin(list(runs)) & (df["dataset"] == dataset)]
    tr = sub.loc[sub["metric"] == "size/train", "value"]
    te = sub.loc[sub["metric"] == "size/val", "value"]
    if tr.empty or te.empty or tr.mean() <= 0 or te.mean() <= 0:
        return None
    return round(float(tr.mean())), round(float(te.mean()))


def comparisons(
    df: pd.DataFrame,
    metrics: Sequence[str] = ("acc", "dice", "iou"),
    primary: Sequence[str] = PRIMARY_A,
) -> pd.DataFrame:
    """Paired init comparisons per protocol × metric × model × dataset across folds.

    Pairs are runs with the same (fold, seed, split seed). Wilcoxon signed-rank for every
    dataset; Nadeau–Bengio's corrected t as well for the in-domain k-fold validation folds
    (its n_test/n_train term models the overlap of training sets, which cross-dataset scores
    on one fixed test set do not have). Holm within each family: (protocol, test, primary
    endpoints | robustness) — the declared family of comparisons.
    """
    cols = [
        "protocol",
        "family",
        "tier",
        "metric",
        "model",
        "dataset",
        "role",
        "subset",
        "init_a",
        "init_b",
        "n_pairs",
        "mean_diff",
        "test",
        "statistic",
        "p",
        "p_holm",
        "family_size",
        "result",
    ]
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        vals = values(df, metric)
        if vals.empty:
            continue
        scale = PERCENT if metric.startswith("acc") else 1.0
        by = ["protocol", "model", "dataset", "role", "subset"]
        for key, g in _keys(vals, by).groupby(by, sort=True):
            protocol, model, dataset, role, subset = key
            inits = sorted(g["init"].dropna().unique(), key=_init_order)
            labels = dict(zip(g["init"], g["init_label"], strict=False))
            tier = "primary" if is_primary(metric, role, primary) else "robustness"
            for a, b in combinations(inits, 2):
                va = _pair_value(g[g["init"] == a]) * scale
                vb = _pair_value(g[g["init"] == b]) * scale
                joined = pd.concat([va.rename("a"), vb.rename("b")], axis=1, join="inner")
                if joined.empty:
                    continue
                d = (joined["a"] - joined["b"]).to_numpy()
                base = {
                    "protocol": protocol,
                    "tier": tier,
                    "metric": metric,
                    "model": model,
                    "dataset": dataset,
                    "role": role,
                    "subset": subset,
                    "init_a": labels.get(a, a),
                    "init_b": labels.get(b, b),
                    "n_pairs": len(joined),
                    "mean_diff": float(np.mean(d)),
                }
                w = stats.wilcoxon_paired(joined["a"], joined["b"])
                rows.append(base | {"test": w["test"], "statistic": w["statistic"], "_res": w})
                if role == "source" and subset == "val":
                    runs = g.loc[g["init"].isin([a, b]), "run"]
                    sizes = _sizes(df, runs, dataset)
                    if sizes is not None:
                        nb = stats.nadeau_bengio(d, *sizes)
                        rows.append(base | {"test": nb["test"], "statistic": nb["t"], "_res": nb})
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    out["p"] = [r["p"] for r in out["_res"]]
    out["family"] = [
        f"{p} / {t} / {tier}"
        for p, t, tier in zip(out["protocol"], out["test"], out["tier"], strict=True)
    ]
    out["p_holm"] = math.nan
    out["family_size"] = 0
    for _, idx in out.groupby("family").groups.items():
        ps = {i: out.at[i, "p"] for i in idx}
        adj = stats.holm(ps)
        size = sum(not math.isnan(p) for p in ps.values())
        for i, v in adj.items():
            out.at[i, "p_holm"] = v
            out.at[i, "family_size"] = size
    out["result"] = [
        stats.format_p(r, None if math.isnan(adj) else adj)
        for r, adj in zip(out["_res"], out["p_holm"], strict=True)
    ]
    return out[cols].reset_index(drop=True)


_A_BY = ["protocol", "model", "init", "init_label", "dataset", "role", "subset"]


def study_a_table(df: pd.DataFrame, primary: Sequence[str] = PRIMARY_A) -> dict[str, pd.DataFrame]:
    """Study A's tables: accuracy (their Table 2), overlap (their Figs 1–2), comparisons.

    Returns {"accuracy", "accuracy_robustness", "overlap", "overlap_per_class",
    "overlap_robustness", "comparisons"}; each carries `protocol` (leaky runs apart) and a
    `tier` (primary endpoint vs robustness).
    """
    acc = summarize(values(df, "acc"), _A_BY, PERCENT)
    acc.insert(0, "metric", "acc (%)")
    acc.insert(0, "tier", [_tier("acc", r, primary) for r in acc["role"]])

    rob = []
    for metric in ("acc_macro", "acc_shared", "acc_every_face"):
        s = summarize(values(df, metric), _A_BY, PERCENT)
        s.insert(0, "metric", f"{metric} (%)")
        rob.append(s)
    acc_rob = _concat(rob)

    overlap_parts = []
    for metric in ("dice", "iou"):
        s = summarize(values(df, metric), _A_BY, 1.0, digits=3)
        s.insert(0, "metric", metric)
        s.insert(0, "tier", [_tier(metric, r, primary) for r in s["role"]])
        overlap_parts.append(s)
    overlap = _concat(overlap_parts)

    per_class = []
    metric_names = df["metric"].drop_duplicates() if not df.empty else pd.Series(dtype=str)
    for metric in ("dice", "iou"):
        for name in sorted(m for m in metric_names if m.startswith(f"{metric}/")):
            s = summarize(values(df, name), _A_BY, 1.0, digits=3)
            s.insert(0, "class", name.split("/", 1)[1])
            s.insert(0, "metric", metric)
            per_class.append(s)
    overlap_pc = _concat(per_class)

    robust_metrics = [
        "per_image/dice",
        "per_image/iou",
        "per_image/dice_area_matched",
        "baseline_gaussian/dice",
        "baseline_gaussian/dice_area_matched",
        "baseline_random/dice_area_matched",
        "per_image/energy_inside",
        "baseline_gaussian/energy_inside",
        "baseline_random/energy_inside",
        "per_image/pointing_game",
        "baseline_gaussian/pointing_game",
        "spearman",
        *sorted(m for m in metric_names if m.startswith(("dice_region/", "iou_region/"))),
    ]
    parts = []
    for metric in robust_metrics:
        s = summarize(values(df, metric), _A_BY, 1.0, digits=3)
        s.insert(0, "metric", metric)
        parts.append(s)
    overlap_rob = _concat(parts)
    out = {
        "accuracy": acc,
        "accuracy_robustness": acc_rob,
        "overlap": overlap,
        "overlap_per_class": overlap_pc,
        "overlap_robustness": overlap_rob,
        "comparisons": comparisons(df, primary=primary),
    }
    return {k: subject_first(v) for k, v in out.items()}


def subject_first(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of subject-grouped runs first (stable), leaky protocols after them."""
    if df.empty or "protocol" not in df.columns:
        return df
    key = (df["protocol"] != SUBJECT).astype(int)
    return df.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def _tier(metric: str, role: str, primary: Sequence[str]) -> str:
    return "primary" if is_primary(metric, role, primary) else "robustness"


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# --------------------------------------------------------------------------- study B


def _run_meta(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "protocol", "model", "init", "source", "target", "strategy_label"]
    cols += ["fraction", "seed", "split_seed"]
    return df[cols].drop_duplicates("run").set_index("run")


def is_baseline(meta: pd.DataFrame) -> pd.Series:
    """BL: a source-only run — no target, and an init that is not one of our checkpoints."""
    return meta["target"].isna() & (meta["init"] != "checkpoint")


def study_b_table(df: pd.DataFrame) -> pd.DataFrame:
    """Study B's memory-integrity table: source and target accuracy per strategy × fraction ×
    target, mean ± SD over seeds and split seeds, with the drop in source accuracy vs BL.

    BL is the source run (no target, init not a checkpoint): its source accuracy from its
    metrics.json, its target accuracy from evaluate.py's JSON for that target. The drop of an
    adapted run is BL's source accuracy with the same model, source, seed and split seed minus
    the run's (its init checkpoint is that BL run), averaged over runs; in percentage points.
    """
    cols = [
        "protocol",
        "model",
        "source",
        "target",
        "strategy",
        "fraction",
        "n",
        "over",
        "source acc (%)",
        "source SD",
        "source mean ± SD",
        "target acc (%)",
        "target SD",
        "target mean ± SD",
        "target ci_low",
        "target ci_high",
        "source drop vs BL (pp)",
        "drop SD",
        "drop mean ± SD",
        "target subset",
        "interval",
    ]
    acc = values(df, "acc")
    if acc.empty:
        return pd.DataFrame(columns=cols)
    meta = _run_meta(df)
    score = {(r, d): v for r, d, v in zip(acc["run"], acc["dataset"], acc["value"], strict=True)}
    subset = {(r, d): s for r, d, s in zip(acc["run"], acc["dataset"], acc["subset"], strict=True)}
    bl = meta[is_baseline(meta)]
    bl_src = {
        (m.model, m.source, m.seed, m.get("split_seed")): score.get((run, m.source), math.nan)
        for run, m in bl.iterrows()
    }
    adapted = meta[meta["target"].notna()]
    targets = set(adapted["target"])
    for run, m in bl.iterrows():
        targets |= {d for (r, d) in score if r == run and d != m.source}
    records = []
    for t in sorted(targets):
        for run, m in bl.iterrows():
            if (run, t) not in score:
                continue
            records.append(
                _b_record(m, t, "BL", math.nan, score.get((run, m.source), math.nan))
                | {"tgt": score[(run, t)], "drop": math.nan, "subset": subset[(run, t)]}
            )
    for run, m in adapted.iterrows():
        src = score.get((run, m.source), math.nan)
        # the BL of the same seed *and* split seed (the source run a study B run started from)
        ref = bl_src.get((m.model, m.source, m.seed, m.get("split_seed")))
        if ref is None:  # no such BL: compare with the mean BL of the model/source
            same = [v for (mo, so, *_), v in bl_src.items() if (mo, so) == (m.model, m.source)]
            ref = float(np.nanmean(same)) if same and not np.all(np.isnan(same)) else math.nan
        records.append(
            _b_record(m, m.target, m.strategy_label, m.fraction, src)
            | {
                "tgt": score.get((run, m.target), math.nan),
                "drop": ref - src,
                "subset": subset.get((run, m.target), ""),
            }
        )
    if not records:
        return pd.DataFrame(columns=cols)
    rec = pd.DataFrame(records)
    by = ["protocol", "model", "source", "target", "strategy", "fraction"]
    rows = []
    for key, g in _keys(rec, by).groupby(by, sort=False):
        s, t, d = (stats.mean_sd(g[c].to_numpy(float) * PERCENT) for c in ("src", "tgt", "drop"))
        over, is_ci = replicates(g)
        rows.append(
            dict(zip(by, key, strict=True))
            | {
                "n": len(g),
                "over": over,
                "source acc (%)": s["mean"],
                "source SD": s["sd"],
                "source mean ± SD": fmt_mean_sd(s["mean"], s["sd"]),
                "target acc (%)": t["mean"],
                "target SD": t["sd"],
                "target mean ± SD": fmt_mean_sd(t["mean"], t["sd"]),
                "target ci_low": t["ci_low"],
                "target ci_high": t["ci_high"],
                "source drop vs BL (pp)": d["mean"],
                "drop SD": d["sd"],
                "drop mean ± SD": "reference"
                if key[4] == "BL"
                else fmt_mean_sd(d["mean"], d["sd"]),
                "target subset": ", ".join(sorted(set(map(str, g["subset"])))),
                "interval": f"95% {SEED_CI if is_ci else stats.DESCRIPTIVE_T}",
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    out["_s"] = out["strategy"].map(lambda s: order.get(s, len(order)))
    out["_f"] = pd.to_numeric(out["fraction"].replace(MISSING, np.nan), errors="coerce")
    out["_p"] = out["protocol"] != SUBJECT
    out = out.sort_values(["_p", "protocol", "model", "target", "_s", "_f"], na_position="first")
    return out.drop(columns=["_p", "_s", "_f"]).reset_index(drop=True)


def _b_record(m: Any, target: str, strategy: str, fraction: Any, src: float) -> dict[str, Any]:
    return {
        "seed": m.seed,
        "split_seed": m.split_seed,
        "protocol": m.protocol,
        "model": m.model,
        "source": m.source,
        "target": target,
        "strategy": strategy,
        "fraction": fraction,
        "src": src,
    }


#: Study A's overlap numbers that `study_b_overlap` reads from study B's runs, in row order
#: (those the long table holds): class-mean DICE/IoU (the headline), per-image energy inside
#: the ROI and pointing game, class-mean per-region DICE.
B_OVERLAP_METRICS = (
    "dice",
    "iou",
    "per_image/energy_inside",
    "per_image/pointing_game",
    "dice_region/eyes_brows",
    "dice_region/mouth",
)
#: `Δ pairing` of `study_b_overlap`: per-run differences with the BL run of the same seed (and
#: split seed: its init checkpoint), a difference of means, or no BL to compare with.
PAIRED = "paired (same-seed BL)"
UNPAIRED = "unpaired (difference of means)"
NO_BL = "no BL on this dataset"


def _bl_partner(m: Any, bl: pd.DataFrame) -> str | None:
    """The BL run an adapted run started from: same protocol, model and source, with the
    same seed and split seed, else the only one with the same seed; None when not unique."""
    same = bl[(bl["protocol"] == m.protocol) & (bl["model"] == m.model)]
    same = same[same["source"] == m.source]
    seed = same[same["seed"] == m.seed]
    both = seed[seed["split_seed"] == m.split_seed]
    for cand in (both, seed):
        if len(cand) == 1:
            return str(cand.index[0])
    return None


def study_b_overlap(df: pd.DataFrame) -> pd.DataFrame:
    """Study A's CAM overlap on study B's runs: does adaptation move where the model looks?

    One row per protocol × model × source × target × strategy × fraction × evaluated dataset
    (`evaluated_on`: the source's or the target's test subset) × metric (`B_OVERLAP_METRICS`
    present in the long table): mean ± SD (ddof=1) over seeds and split seeds with n, and
    the change vs BL on the same dataset (Δ = strategy − BL, in the metric's unit). BL is the
    source run (`is_baseline`); its rows are its evaluations on the source and on each
    target, repeated under every target as in `study_b_table`. Δ is paired when every run of
    the cell has its BL run (same protocol, model, source and seed — and split seed where one
    matches: the checkpoint it started from) evaluated on that dataset: mean ± SD of the
    per-run differences, `Δ n` pairs. Otherwise it is the difference of the two means (no SD).
    `Δ pairing` says which. A BL run of another protocol is never a reference (leaky runs are
    never pooled). Other datasets an adapted run was evaluated on are left out.
    """
    cols = [
        "protocol",
        "model",
        "source",
        "target",
        "strategy",
        "fraction",
        "evaluated_on",
        "dataset",
        "subset",
        "metric",
        "n",
        "n_nan",
        "mean",
        "sd",
        "mean ± SD",
        "Δ vs BL",
        "Δ SD",
        "Δ n",
        "Δ mean ± SD",
        "Δ pairing",
    ]
    present = [m for m in B_OVERLAP_METRICS if not df.empty and (df["metric"] == m).any()]
    if not present:
        return pd.DataFrame(columns=cols)
    vals = pd.concat([values(df, m) for m in present], ignore_index=True)
    val, subset = {}, {}
    cells = vals[["run", "dataset", "metric", "value", "subset"]].itertuples(index=False)
    for r, d, m, v, sub in cells:
        val[(r, d, m)] = v
        subset[(r, d)] = sub
    meta = _run_meta(df)
    bl = meta[is_baseline(meta)]
    adapted = meta[~is_baseline(meta) & meta["target"].notna()]
    targets = set(adapted["target"])
    for run, m in bl.iterrows():
        targets |= {d for (r, d) in subset if r == run and d != m.source}
    records = []

    def record(run: str, m: Any, target: str, strategy: str, fraction: Any, partner: Any) -> None:
        """Rows of one run under `target`; `partner` is its BL run (None: BL itself/unknown)."""
        for evaluated_on, d in (("source", m.source), ("target", target)):
            for metric in present:
                v = val.get((run, d, metric))
                if v is None:
                    continue
                ref = val.get((partner, d, metric), math.nan) if partner else math.nan
                records.append(
                    _b_record(m, target, strategy, fraction, math.nan)
                    | {
                        "evaluated_on": evaluated_on,
                        "dataset": d,
                        "subset": subset[(run, d)],
                        "metric": metric,
                        "value": v,
                        "delta": v - ref,
                    }
                )

    for t in sorted(targets):
        for run, m in bl.iterrows():
            record(str(run), m, t, "BL", math.nan, None)
    for run, m in adapted.iterrows():
        record(str(run), m, m.target, m.strategy_label, m.fraction, _bl_partner(m, bl))
    if not records:
        return pd.DataFrame(columns=cols)
    rec = pd.DataFrame(records)
    by = ["protocol", "model", "source", "target", "strategy", "fraction"]
    by += ["evaluated_on", "dataset", "metric"]
    ref_by = ["protocol", "model", "source", "target", "evaluated_on", "dataset", "metric"]
    groups = list(_keys(rec, by).groupby(by, sort=False))
    bl_mean = {}
    for key, g in groups:
        k = dict(zip(by, key, strict=True))
        if k["strategy"] == "BL":
            bl_mean[tuple(k[c] for c in ref_by)] = stats.mean_sd(g["value"].to_numpy(float))["mean"]
    rows = []
    for key, g in groups:
        k = dict(zip(by, key, strict=True))
        v, d = g["value"].to_numpy(float), g["delta"].to_numpy(float)
        s = stats.mean_sd(v)
        if k["strategy"] == "BL":
            delta = {"mean": math.nan, "sd": math.nan, "n": math.nan}
            pairing, text = "reference (BL)", "reference"
        elif (~np.isnan(v)).any() and not np.isnan(d[~np.isnan(v)]).any():
            delta = stats.mean_sd(d)
            pairing, text = PAIRED, fmt_mean_sd(delta["mean"], delta["sd"], 3)
        else:
            ref = bl_mean.get(tuple(k[c] for c in ref_by), math.nan)
            delta = {"mean": s["mean"] - ref, "sd": math.nan, "n": math.nan}
            pairing = NO_BL if math.isnan(ref) else UNPAIRED
            text = MISSING if math.isnan(delta["mean"]) else f"{delta['mean']:.3f}"
        rows.append(
            k
            | {
                "subset": ", ".join(sorted(set(map(str, g["subset"])))),
                "n": s["n"],
                "n_nan": s["n_nan"],
                "mean": s["mean"],
                "sd": s["sd"],
                "mean ± SD": fmt_mean_sd(s["mean"], s["sd"], 3),
                "Δ vs BL": delta["mean"],
                "Δ SD": delta["sd"],
                "Δ n": delta["n"],
                "Δ mean ± SD": text,
                "Δ pairing": pairing,
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    metric_order = {m: i for i, m in enumerate(B_OVERLAP_METRICS)}
    out["_p"] = out["protocol"] != SUBJECT
    out["_m"] = out["metric"].map(metric_order)
    out["_e"] = out["evaluated_on"] != "source"
    out["_s"] = out["strategy"].map(lambda s: order.get(s, len(order)))
    out["_f"] = pd.to_numeric(out["fraction"].replace(MISSING, np.nan), errors="coerce")
    out = out.sort_values(
        ["_p", "protocol", "model", "source", "target", "_m", "_e", "_s", "_f"],
        na_position="first",
        kind="stable",
    )
    return out[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- bootstrap

#: Group keys of the bootstrap tables (protocol first: leaky runs are never pooled).
BOOT_A_BY = ("protocol", "model", "init", "init_label", "dataset", "subset")
BOOT_B_BY = ("protocol", "model", "source", "target", "strategy", "fraction", "subset")


def _clusters(g: pd.DataFrame) -> np.ndarray:
    """Cluster id per prediction: the subject; an image without subject id is its own
    cluster (its dataset row, so its predictions from every run of the group stay together)."""
    known = g["subject"].notna().to_numpy()
    subj = "s:" + g["subject"].astype(str)
    img = "i:" + g["row"].astype(str)
    return np.where(known, subj.to_numpy(), img.to_numpy())


def bootstrap_table(
    pred: pd.DataFrame,
    by: Sequence[str] = BOOT_A_BY,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Accuracy (%) pooled over each group's runs with a subject-clustered bootstrap CI.

    `pred` is `fer.report.collect.predictions`' table (one row per run × dataset × image).
    Per group of `by`: accuracy = correct / predictions over all the group's runs
    (folds/seeds); CI = `stats.cluster_bootstrap` percentile interval where the cluster is
    the subject — a resample draws subjects with replacement and takes all of that subject's
    images from all runs of the group, so the interval shows subject sampling and run-to-run
    training variability together. An image without subject id ("", "nan") is its own
    cluster. Columns: `by`, acc, ci_low, ci_high (%), n_subjects, n_images (distinct images),
    n_predictions (images × runs), n_runs, method.
    """
    by = list(by)
    cols = [*by, "acc", "ci_low", "ci_high", "n_subjects", "n_images", "n_predictions"]
    cols += ["n_runs", "method"]
    if pred.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in _keys(pred, by).groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        res = stats.cluster_bootstrap(
            g["correct"].to_numpy(dtype=float), _clusters(g), n_boot=n_boot, seed=seed, level=level
        )
        unknown = g["subject"].isna()
        n_runs = int(g["run"].nunique())
        n_unknown = int(g.loc[unknown, "row"].nunique())
        method = (
            f"{round(level * 100)}% subject-clustered bootstrap percentile CI ({n_boot} "
            f"resamples, seed {seed}): subjects resampled with replacement, each bringing all "
            f"its images from all {n_runs} run(s) of the group (folds/seeds), so the interval "
            "shows subject sampling and training variability; accuracy pooled over the runs"
        )
        if n_unknown:
            method += f"; {n_unknown} image(s) without subject id, each its own cluster"
        rows.append(
            dict(zip(by, key, strict=True))
            | {
                "acc": res["acc"] * PERCENT,
                "ci_low": res["ci_low"] * PERCENT,
                "ci_high": res["ci_high"] * PERCENT,
                "n_subjects": int(g.loc[~unknown, "subject"].nunique()),
                "n_images": int(g["row"].nunique()),
                "n_predictions": len(g),
                "n_runs": n_runs,
                "method": method,
            }
        )
    return subject_first(pd.DataFrame(rows, columns=cols))


def bootstrap_a(pred: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Study A: cross-dataset accuracy (subset "whole") per protocol × model × init × dataset,
    pooled over folds, with its subject-clustered bootstrap CI (`bootstrap_table`)."""
    if pred.empty:
        return bootstrap_table(pred, BOOT_A_BY, n_boot, seed)
    return bootstrap_table(pred[pred["subset"] == "whole"], BOOT_A_BY, n_boot, seed)


def bootstrap_b(pred: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Study B: target accuracy per protocol × model × strategy × fraction × target, pooled
    over seeds and split seeds, with its subject-clustered bootstrap CI (`bootstrap_table`).

    As in `study_b_table`: an adapted run is scored on its own target; BL (source run) on
    every other dataset it was evaluated on, each a target, with strategy "BL".
    """
    if pred.empty:
        return bootstrap_table(pred, BOOT_B_BY, n_boot, seed)
    runs = pred.drop_duplicates("run").set_index("run")
    bl_runs = set(runs.index[is_baseline(runs)])
    is_bl = pred["run"].isin(bl_runs)
    adapted = ~is_bl & pred["target"].notna() & (pred["dataset"] == pred["target"])
    baseline = is_bl & (pred["dataset"] != pred["source"])
    out = pred[adapted | baseline].copy()
    bl = out["run"].isin(bl_runs)
    out["target"] = out["dataset"]
    out["strategy"] = out["strategy_label"].astype(object).where(~bl, "BL")
    out["fraction"] = out["fraction"].astype(object).where(~bl, None)
    table = bootstrap_table(out, BOOT_B_BY, n_boot, seed)
    if table.empty:
        return table
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    table["_p"] = table["protocol"] != SUBJECT
    table["_s"] = table["strategy"].map(lambda s: order.get(s, len(order)))
    table["_f"] = pd.to_numeric(table["fraction"].replace(MISSING, np.nan), errors="coerce")
    table = table.sort_values(
        ["_p", "protocol", "model", "target", "_s", "_f"], na_position="first", kind="stable"
    )
    return table.drop(columns=["_p", "_s", "_f"]).reset_index(drop=True)


# --------------------------------------------------------------------------- published


def read_published(path: str | Path) -> pd.DataFrame:
    """A published table (fer/report/published/*.csv; `#` lines cite the source)."""
    return pd.read_csv(path, comment="#")


def _fraction_key(x: Any) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else f"{f:g}"


def published_comparison(ours: pd.DataFrame, published_csv: str | Path) -> pd.DataFrame | None:
    """The paper's numbers beside ours with the difference (ours − published), or None when
    no row of ours matches (the synthetic studies: different datasets, not comparable).

    Recognised published tables: study A's Table 2 (`acc_mean`, `acc_sd`; `ours` is
    `study_a_table(...)["accuracy"]`), study B's results (`evaluated_on`; `ours` is
    `study_b_table(...)`), study A's Table 1 (`original`, `processed`; `ours` is the counts
    frame passed to `table1`).
    """
    pub = read_published(published_csv)
    if ours is None or ours.empty:
        return None
    if {"acc_mean", "acc_sd"} <= set(pub.columns):
        out = _compare_table2(ours, pub)
    elif "evaluated_on" in pub.columns:
        out = _compare_memory(ours, pub)
    elif {"original", "processed"} <= set(pub.columns):
        out = _compare_counts(ours, pub)
    else:
        raise ValueError(f"{published_csv}: not a published table this report knows")
    return None if out is None or out.empty else out.reset_index(drop=True)


def _compare_table2(ours: pd.DataFrame, pub: pd.DataFrame) -> pd.DataFrame | None:
    if not {"model", "init", "dataset", "mean"} <= set(ours.columns):
        return None
    pub = pub.assign(
        model=pub["model"].map(PUBLISHED_MODELS).fillna(pub["model"]),
        init_name=pub["init"].map(PUBLISHED_INITS).fillna(pub["init"]),
    )
    ours = ours.rename(columns={"init": "init_name"})
    merged = ours.merge(pub, on=["dataset", "model", "init_name"], how="inner")
    if merged.empty:
        return None
    return pd.DataFrame(
        {
            "protocol": merged["protocol"],
            "dataset": merged["dataset"],
            "model": merged["model"],
            "init": merged["init_label"],
            "published acc (%)": merged["acc_mean"],
            "published SD": merged["acc_sd"],
            "ours acc (%)": merged["mean"],
            "ours SD": merged["sd"],
            "n (ours)": merged["n"],
            "difference (pp)": merged["mean"] - merged["acc_mean"],
        }
    )


def _compare_memory(ours: pd.DataFrame, pub: pd.DataFrame) -> pd.DataFrame | None:
    if not {"target", "strategy", "fraction", "source acc (%)"} <= set(ours.columns):
        return None
    long = []
    for on, col, sd in (
        ("source", "source acc (%)", "source SD"),
        ("target", "target acc (%)", "target SD"),
    ):
        part = ours[["protocol", "target", "strategy", "fraction", "n", col, sd]]
        long.append(
            part.rename(columns={col: "ours acc (%)", sd: "ours SD"}).assign(evaluated_on=on)
        )
    mine = pd.concat(long, ignore_index=True)
    mine["_f"] = mine["fraction"].map(_fraction_key)
    pub = pub.assign(_f=pub["fraction"].map(_fraction_key))
    merged = mine.merge(pub, on=["target", "evaluated_on", "strategy", "_f"], how="inner")
    if merged.empty:
        return None
    return pd.DataFrame(
        {
            "protocol": merged["protocol"],
            "target": merged["target"],
            "evaluated_on": merged["evaluated_on"],
            "strategy": merged["strategy"],
            "fraction": merged["_f"],
            "published acc (%)": merged["acc"],
            "ours acc (%)": merged["ours acc (%)"],
            "ours SD": merged["ours SD"],
            "n (ours)": merged["n"],
            "difference (pp)": merged["ours acc (%)"] - merged["acc"],
        }
    )


def _compare_counts(ours: pd.DataFrame, pub: pd.DataFrame) -> pd.DataFrame | None:
    if not {"dataset", "class", "original", "processed"} <= set(ours.columns):
        return None
    merged = ours.merge(pub, on=["dataset", "class"], how="inner", suffixes=(" ours", " published"))
    if merged.empty:
        return None
    merged["original difference"] = merged["original ours"] - merged["original published"]
    merged["processed difference"] = merged["processed ours"] - merged["processed published"]
    return merged


# --------------------------------------------------------------------------- writing


def _cell(x: Any) -> str:
    """A cell as text: integral floats without decimals, others to 4 significant digits."""
    if x is None:
        return MISSING
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        if math.isnan(x):
            return MISSING
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.4g}"
    return str(x)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (tabulate is not a dependency)."""
    if df.empty:
        return "_(no rows)_\n"
    head = [str(c) for c in df.columns]
    body = [[_cell(v).replace("|", "\\|") for v in row] for row in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |"]
    lines.append("|" + "|".join("---:" if n else ":---" for n in numeric) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
    return out.replace("±", r"$\pm$").replace("—", "--").replace("−", "$-$")


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs})."""
    if df.empty:
        return "% no rows\n"
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(_latex_escape(str(c)) for c in df.columns) + r" \\")
    lines.append(r"\midrule")
    for row in df.itertuples(index=False):
        lines.append(" & ".join(_latex_escape(_cell(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out_dir: str | Path, stem: str) -> list[Path]:
    """Write `df` as `<stem>.md`, `<stem>.tex` and `<stem>.csv` (full precision) atomically."""
    from fer.io import atomic_write_text

    out_dir = Path(out_dir)
    paths = [
        atomic_write_text(out_dir / f"{stem}.md", to_markdown(df)),
        atomic_write_text(out_dir / f"{stem}.tex", to_latex(df)),
        atomic_write_text(out_dir / f"{stem}.csv", df.to_csv(index=False)),
    ]
    return paths


def headline(tables: Mapping[str, pd.DataFrame], key: str, columns: Sequence[str]) -> str:
    """Markdown of the main table, restricted to the columns a reader needs first."""
    df = tables.get(key)
    if df is None or df.empty:
        return "_(no finished runs)_\n"
    return to_markdown(df[[c for c in columns if c in df.columns]])
