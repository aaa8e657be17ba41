"""The studies' figures from the long run table (files only, Agg backend), as PNG and PDF.

Study A: accuracy boxplots per dataset (1.5·IQR whiskers, outliers drawn) for model × init;
class-mean DICE and IoU bars with per-class detail, error bars = SD over folds (their
Figs 1–2). Study B: source vs target accuracy per strategy, one panel per target × fraction;
class-mean DICE per strategy on the source and the target (study A's overlap on study B's
runs), one panel per target. Leaky runs get their own panels, titled so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fer.labels import CANONICAL, DISPLAY
from fer.report.collect import SUBJECT
from fer.report.tables import (
    MISSING,
    PERCENT,
    STRATEGY_ORDER,
    study_b_overlap,
    study_b_table,
    summarize,
    values,
)


def save(fig: Any, out_dir: str | Path, stem: str) -> list[Path]:
    """Save `fig` as `<stem>.png` and `<stem>.pdf` and close it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths


def _grid(n: int, width: float = 4.2, height: float = 3.4) -> tuple[Any, np.ndarray]:
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _mark(protocol: str) -> str:
    """Panel-title suffix that makes a leaky protocol impossible to miss."""
    return "" if protocol == SUBJECT else " — " + protocol.replace("leaky", "LEAKY", 1)


def _title(protocol: str, dataset: str, subset: str) -> str:
    return f"{dataset} ({subset}){_mark(protocol)}"


def _arm(model: str, init_label: str) -> str:
    return f"{model}\n{init_label}"


def accuracy_boxplots(df: pd.DataFrame, out_dir: str | Path, stem: str = "accuracy") -> list[Path]:
    """Boxplots of accuracy (%) over folds, one panel per dataset, one box per model × init.

    Whiskers at 1.5·IQR (matplotlib's default, stated in the caption); points beyond them
    are drawn as outliers. An empty table gives a figure saying so.
    """
    acc = values(df, "acc")
    if acc.empty:
        return _empty(out_dir, stem, "no accuracy numbers")
    acc = acc.assign(value=acc["value"] * PERCENT)
    panels = acc[["protocol", "dataset", "subset"]].drop_duplicates().to_records(index=False)
    panels = sorted(panels, key=lambda r: (r[0] != SUBJECT, r[0], r[2] != "val", r[1]))
    fig, axes = _grid(len(panels))
    for ax, (protocol, dataset, subset) in zip(axes, panels, strict=False):
        part = acc[
            (acc["protocol"] == protocol) & (acc["dataset"] == dataset) & (acc["subset"] == subset)
        ]
        arms = sorted(part[["model", "init_label"]].drop_duplicates().itertuples(index=False))
        data = [
            part.loc[(part["model"] == m) & (part["init_label"] == i), "value"].dropna().to_numpy()
            for m, i in arms
        ]
        ax.boxplot(data, whis=1.5, showfliers=True)
        ax.set_xticks(range(1, len(arms) + 1), [_arm(m, i) for m, i in arms], fontsize=7)
        ax.set_title(_title(protocol, dataset, subset), fontsize=9)
        ax.set_ylabel("accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Accuracy over folds (whiskers 1.5·IQR, points beyond: outliers)", fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, stem)


def _class_order(classes: Sequence[str]) -> list[str]:
    rank = {c: i for i, c in enumerate(CANONICAL)}
    return sorted(set(classes), key=lambda c: (rank.get(c, len(rank)), c))


_NAMES = {"dice": "DICE", "iou": "IoU"}


def overlap_bars(df: pd.DataFrame, out_dir: str | Path, metric: str = "dice") -> list[Path]:
    """Class-mean DICE or IoU per class and their mean over classes, bars per model × init,
    error bars = SD over folds; one panel per dataset (the paper's Figs 1–2)."""
    stem = f"{metric}_per_class"
    by = ["protocol", "model", "init_label", "dataset", "subset"]
    names = sorted(m for m in df["metric"].unique() if m.startswith(f"{metric}/"))
    parts = [summarize(values(df, metric), by).assign(cls="mean")]
    parts += [summarize(values(df, m), by).assign(cls=m.split("/", 1)[1]) for m in names]
    summ = pd.concat([p for p in parts if not p.empty] or [pd.DataFrame()], ignore_index=True)
    if summ.empty:
        return _empty(out_dir, stem, f"no {metric} numbers")
    panels = summ[["protocol", "dataset", "subset"]].drop_duplicates().to_records(index=False)
    panels = sorted(panels, key=lambda r: (r[0] != SUBJECT, r[0], r[2] != "val", r[1]))
    fig, axes = _grid(len(panels), width=5.5)
    for ax, (protocol, dataset, subset) in zip(axes, panels, strict=False):
        part = summ[
            (summ["protocol"] == protocol)
            & (summ["dataset"] == dataset)
            & (summ["subset"] == subset)
        ]
        classes = [*_class_order(c for c in part["cls"] if c != "mean"), "mean"]
        arms = sorted(part[["model", "init_label"]].drop_duplicates().itertuples(index=False))
        width = 0.8 / max(len(arms), 1)
        x = np.arange(len(classes))
        for j, (m, i) in enumerate(arms):
            sel = part[(part["model"] == m) & (part["init_label"] == i)].set_index("cls")
            mean = [sel["mean"].get(c, np.nan) for c in classes]
            sd = np.nan_to_num([sel["sd"].get(c, np.nan) for c in classes])
            ax.bar(
                x + (j - (len(arms) - 1) / 2) * width,
                mean,
                width,
                yerr=sd,
                capsize=2,
                label=f"{m} / {i}",
            )
        ax.set_xticks(x, [DISPLAY.get(c, c) for c in classes], rotation=30, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"class-mean {_NAMES.get(metric, metric)}")
        ax.set_title(_title(protocol, dataset, subset), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(
        f"Class-mean {_NAMES.get(metric, metric)} at CAM threshold 0.5 "
        "(error bars: SD over folds); "
        "CAM resolution differs by model",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, out_dir, stem)


def study_b_bars(
    df: pd.DataFrame, out_dir: str | Path, stem: str = "memory_integrity"
) -> list[Path]:
    """Source vs target accuracy (%) per strategy, grouped bars with SD error bars; one panel
    per target × fraction (BL, which uses no target data, in every panel of its target)."""
    table = study_b_table(df)
    if table.empty:
        return _empty(out_dir, stem, "no study B numbers")
    frac = pd.to_numeric(table["fraction"].replace(MISSING, np.nan), errors="coerce")
    table = table.assign(_f=frac)
    adapted = table[table["strategy"] != "BL"]
    keys = adapted[["protocol", "target", "_f"]].drop_duplicates().to_records(index=False)
    if not len(keys):  # BL only: one panel per target
        keys = table[["protocol", "target", "_f"]].drop_duplicates().to_records(index=False)
    keys = sorted(keys, key=lambda r: (r[0] != SUBJECT, r[0], r[1], r[2]))
    fig, axes = _grid(len(keys), width=4.6)
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    for ax, (protocol, target, f) in zip(axes, keys, strict=False):
        same = (table["protocol"] == protocol) & (table["target"] == target)
        part = table[same & ((table["strategy"] == "BL") | (table["_f"] == f))]
        part = part.sort_values("strategy", key=lambda s: s.map(lambda v: order.get(v, 99)))
        x = np.arange(len(part))
        for off, col, sd, label in (
            (-0.2, "source acc (%)", "source SD", "source"),
            (0.2, "target acc (%)", "target SD", "target"),
        ):
            ax.bar(
                x + off,
                part[col],
                0.4,
                yerr=np.nan_to_num(part[sd].to_numpy(float)),
                capsize=2,
                label=label,
            )
        ax.set_xticks(x, list(part["strategy"]), fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
        share = "" if np.isnan(f) else f", {f:.0%} of target train"
        ax.set_title(f"target {target}{share}{_mark(protocol)}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Memory integrity: source vs target accuracy (error bars: SD over seeds)", fontsize=9
    )
    fig.tight_layout()
    return save(fig, out_dir, stem)


def study_b_overlap_bars(
    df: pd.DataFrame, out_dir: str | Path, stem: str = "overlap_by_strategy"
) -> list[Path]:
    """Class-mean DICE per strategy × fraction (BL first), grouped bars for the source and
    the target test subset with SD error bars over seeds; one panel per target (study A's
    overlap on study B's runs: does adaptation move where the model looks?)."""
    table = study_b_overlap(df)
    table = table[table["metric"] == "dice"] if not table.empty else table
    if table.empty:
        return _empty(out_dir, stem, "no class-mean DICE on study B's runs")
    frac = pd.to_numeric(table["fraction"].replace(MISSING, np.nan), errors="coerce")
    table = table.assign(_f=frac)
    keys = table[["protocol", "model", "target"]].drop_duplicates().to_records(index=False)
    keys = sorted(keys, key=lambda r: (r[0] != SUBJECT, r[0], r[1], r[2]))
    fig, axes = _grid(len(keys), width=4.8)
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    for ax, (protocol, model, target) in zip(axes, keys, strict=False):
        part = table[
            (table["protocol"] == protocol)
            & (table["model"] == model)
            & (table["target"] == target)
        ]
        arms = part[["strategy", "_f"]].drop_duplicates()
        arms = sorted(arms.itertuples(index=False), key=lambda a: (order.get(a[0], 99), a[0], a[1]))
        x = np.arange(len(arms))
        for off, on in ((-0.2, "source"), (0.2, "target")):
            sel = part[part["evaluated_on"] == on]
            mean, sd = [], []
            for strategy, f in arms:
                hit = sel[(sel["strategy"] == strategy) & ((sel["_f"] == f) | np.isnan(f))]
                mean.append(float(hit["mean"].iloc[0]) if len(hit) else np.nan)
                sd.append(float(hit["sd"].iloc[0]) if len(hit) else np.nan)
            ax.bar(x + off, mean, 0.4, yerr=np.nan_to_num(sd), capsize=2, label=f"on {on}")
        labels = [s if np.isnan(f) else f"{s}\n{f:.0%}" for s, f in arms]
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("class-mean DICE")
        ax.set_title(f"{model}, target {target}{_mark(protocol)}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Class-mean DICE per strategy (% = share of target train; error bars: SD over seeds)",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, out_dir, stem)


def _empty(out_dir: str | Path, stem: str, text: str) -> list[Path]:
    """A placeholder figure, so the report's file list does not depend on what ran."""
    fig, ax = plt.subplots(figsize=(4, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return save(fig, out_dir, stem)
