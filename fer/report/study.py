"""One study's report: collect the runs, write tables, figures, problems and an index.

`write_report` reads `outputs/<study>/` (files only) and writes `reports/<study>/`:
`runs_long.csv` (every number, one per row), `tables/*.{md,tex,csv}`, `figures/*.{png,pdf}`,
`problems.csv` (missing, failed and corrupt files) and `README.md`, which lists every file and
says which numbers are the study's primary endpoints and which are robustness checks.
`log_wandb` puts the finished report into one W&B run (job_type "report"), when asked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fer.io import atomic_write_text
from fer.report import figures, tables, validity
from fer.report.collect import read_study

PUBLISHED = Path(__file__).resolve().parent / "published"
KINDS = ("arabian2022", "tannugi2019", "validity_cue")

_A_HEADLINE = [
    "tier",
    "protocol",
    "model",
    "init_label",
    "dataset",
    "subset",
    "n",
    "over",
    "mean ± SD",
    "ci_low",
    "ci_high",
]
_B_HEADLINE = [
    "protocol",
    "target",
    "strategy",
    "fraction",
    "n",
    "over",
    "source mean ± SD",
    "target mean ± SD",
    "drop mean ± SD",
    "target subset",
]

#: What each table holds and whether it is a primary endpoint (README index).
_FIGURES = {
    "accuracy": "accuracy boxplots over folds per dataset, model × init (1.5·IQR whiskers, "
    "outliers drawn)",
    "dice_per_class": "class-mean DICE per class and over classes (SD error bars)",
    "iou_per_class": "class-mean IoU per class and over classes (SD error bars)",
    "memory_integrity": "source vs target accuracy per strategy, one panel per target × "
    "fraction (SD error bars)",
    "overlap_by_strategy": "cross-study: class-mean DICE per strategy on the source and the "
    "target test subset, one panel per target (SD error bars)",
}
#: README tier of the cross-study overlap table and figure.
_CROSS_STUDY = "robustness (cross-study)"
_DESCRIPTIONS = {
    "table1_counts": "images per class before/after pre-processing (their Table 1)",
    "accuracy": "accuracy (%) mean ± SD over folds per model × init × dataset (their Table 2); "
    "the `tier` column marks the rows that are declared primary endpoints",
    "accuracy_robustness": "macro accuracy, accuracy restricted to the dataset's classes, and "
    "accuracy on every face (excluded faces as fallback crops) — robustness",
    "overlap": "class-mean DICE and IoU at CAM threshold 0.5, mean ± SD over folds "
    "(their Figs 1–2); `tier` column as above",
    "overlap_per_class": "class-mean DICE/IoU per class",
    "overlap_robustness": "per-image DICE/IoU, area-matched DICE, energy inside the ROI, "
    "pointing game, content-free baselines (Gaussian, random), per-region DICE, Spearman "
    "correlation with a randomised model's maps (lower = maps depend on learned weights) "
    "— robustness",
    "accuracy_bootstrap": "cross-dataset accuracy (%) pooled over folds per model × init × "
    "dataset with its 95% subject-clustered bootstrap CI (subjects resampled, each with all "
    "its images from every fold's run: subject sampling and training variability both show; "
    "images without subject id are their own clusters)",
    "target_accuracy_bootstrap": "target test accuracy (%) pooled over seeds and split seeds "
    "per strategy × fraction × target with its 95% subject-clustered bootstrap CI (subjects "
    "resampled, each with all its images from every run of the cell; images without subject "
    "id are their own clusters)",
    "comparisons": "paired init comparisons across folds: Wilcoxon signed-rank (all datasets), "
    "Nadeau–Bengio corrected t (in-domain k-fold only), Holm within each family "
    "(protocol / test / tier): primary-tier rows test the primary endpoints",
    "memory_integrity": "source and target test accuracy (%) per strategy × fraction × "
    "target, mean ± SD over seeds and split seeds, and the drop in source accuracy vs BL "
    "(memory integrity)",
    "overlap_by_strategy": "cross-study (neither paper has it): study A's CAM overlap on "
    "study B's runs — class-mean DICE/IoU (per-image energy inside the ROI, pointing game, "
    "per-region DICE where evaluated) per strategy × fraction × target on the source and the "
    "target test subset, mean ± SD over seeds and split seeds, and Δ = strategy − BL on the "
    "same dataset (`Δ pairing`: paired with the BL run it started from, else a difference of "
    "means): does adaptation move where the model looks?",
    "published_table1": "our Table 1 counts beside the paper's",
    "published_table2": "our accuracy beside the paper's Table 2 (difference = ours − theirs)",
    "published_memory_integrity": "our study B accuracies beside the paper's",
    "validity_summary": "validity (spurious cue): one row per arm (clean, cue p) — accuracy on "
    "the cued test set (in-domain), on the same faces without the mark, across domains, and "
    "CAM energy inside the face ROI / class-mean DICE; mean ± SD over seeds and, for the "
    "cued arms, Δ vs clean paired by seed with its 95% t CI (df = n − 1)",
    "validity": "the same numbers in long form: per arm × measure mean, SD, 95% t CI over "
    "seeds, and the paired difference from clean with its CI and whether it excludes 0",
    "validity_checks": "the acceptance of the validity study, computed from the table: the "
    "cued arm's in-domain accuracy higher, cue-free accuracy and ROI energy lower than clean, "
    "each with a 95% CI that excludes 0",
}


def _kind(study: Mapping[str, Any]) -> str:
    kind = str(study.get("kind", ""))
    if kind not in KINDS:
        raise ValueError(f"study kind {kind!r}: expected one of {list(KINDS)}")
    return kind


def _published_path(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() or path.exists() else PUBLISHED / name


def write_report(
    study: Mapping[str, Any],
    root: Path,
    out_dir: Path,
    counts: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Write the report of one study; return {"tables", "figures", "headline", "problems"}.

    Args:
        study: `name`, `kind` ("arabian2022" | "tannugi2019"), `primary_endpoints` (metric
            names, optionally `metric@role`, role in source|target|cross), optional
            `published` ({table key: csv name under fer/report/published/}) and `eval_key`;
            kind "validity_cue" reads its `validity` block (`fer.report.validity.measures`).
        root: `outputs/<study name>`.
        out_dir: `reports/<study name>` (created).
        counts: dataset, class, original, processed per class (study A's Table 1), or None.
    """
    kind = _kind(study)
    root, out_dir = Path(root), Path(out_dir)
    table_dir, fig_dir = out_dir / "tables", out_dir / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    df, problems, preds, pred_problems = read_study(root, study.get("eval_key"))
    # paths under the output root, never the user's absolute ones (reports get shared)
    problems = [{**p, "path": _under(p.get("path", ""), root)} for p in problems + pred_problems]
    atomic_write_text(out_dir / "runs_long.csv", df.to_csv(index=False))
    atomic_write_text(
        out_dir / "problems.csv",
        pd.DataFrame(problems, columns=["path", "problem"]).to_csv(index=False),
    )
    default = {"arabian2022": tables.PRIMARY_A, "tannugi2019": tables.PRIMARY_B}.get(kind, ())
    primary = list(study.get("primary_endpoints") or default)
    published = dict(study.get("published") or {})
    made: dict[str, pd.DataFrame] = {}
    figs: list[Path] = []
    notes: list[str] = []
    ours: dict[str, pd.DataFrame | None] = {}
    if kind == "validity_cue":
        made.update(validity.validity_tables(df, root, study.get("validity") or {}))
        summary = made["validity_summary"]
        head = tables.headline(made, "validity_summary", list(summary.columns))
        notes.append(validity.NOTE)
    elif kind == "arabian2022":
        made.update(tables.study_a_table(df, primary))
        made["accuracy_bootstrap"] = tables.bootstrap_a(preds)
        if counts is not None:
            made["table1_counts"] = tables.table1(counts)
        figs += figures.accuracy_boxplots(df, fig_dir)
        figs += figures.overlap_bars(df, fig_dir, "dice")
        figs += figures.overlap_bars(df, fig_dir, "iou")
        ours = {"table2": made["accuracy"], "table1": counts}
        head = tables.headline(made, "accuracy", _A_HEADLINE)
    else:
        made["memory_integrity"] = tables.study_b_table(df)
        made["target_accuracy_bootstrap"] = tables.bootstrap_b(preds)
        made["overlap_by_strategy"] = tables.study_b_overlap(df)
        figs += figures.study_b_bars(df, fig_dir)
        figs += figures.study_b_overlap_bars(df, fig_dir)
        ours = {"memory_integrity": made["memory_integrity"]}
        head = tables.headline(made, "memory_integrity", _B_HEADLINE)
    boot = "accuracy_bootstrap" if kind == "arabian2022" else "target_accuracy_bootstrap"
    if pred_problems and boot in made:
        notes.append(
            f"Subject-clustered bootstrap: {len(pred_problems)} evaluation JSON(s) without "
            "usable per-image predictions are left out of it (older evaluate.py; see Problems)"
            + ("; no interval could be computed" if made[boot].empty else "")
        )
    for key, csv in published.items():
        mine = ours.get(key)
        cmp = None
        if mine is not None:
            cmp = tables.published_comparison(mine, _published_path(csv))
        if cmp is None:
            notes.append(f"published `{csv}`: not applicable (no matching dataset in our runs)")
        else:
            made[f"published_{key}"] = cmp
    written: list[Path] = []
    for stem, frame in made.items():
        written += tables.write_table(frame, table_dir, stem)
    _write_readme(study, out_dir, made, written, figs, problems, primary, notes, root)
    return {
        "tables": [str(p) for p in written],
        "figures": [str(p) for p in figs],
        "headline": head,
        "problems": len(problems),
    }


def _under(path: str, root: Path) -> str:
    """`path` relative to the study's output folder, as `<study>/...` (unchanged if outside)."""
    try:
        return str(Path(root.name) / Path(path).resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return str(path)


def _by_stem(paths: list[Path], out_dir: Path) -> dict[str, str]:
    """`tables/accuracy.{md,tex,csv}`-style names, one entry per stem (README rows)."""
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.stem, []).append(p.relative_to(out_dir))
    return {
        stem: f"`{ps[0].with_suffix('')}.{{{','.join(p.suffix[1:] for p in ps)}}}`"
        for stem, ps in groups.items()
    }


def _declared(metric: str, primary: list[str]) -> bool:
    """Whether `metric` (any role) is among the declared primary endpoints."""
    return any(p.split("@", 1)[0] == metric for p in primary)


def _tier_of(stem: str, frame: pd.DataFrame, primary: list[str]) -> str:
    """README tier of a table: from its `tier` column, else from the declared endpoints."""
    if stem.startswith("published_") or stem == "table1_counts":
        return "context"
    if stem == "accuracy_bootstrap":
        return "primary endpoint (CI of cross-dataset accuracy)"
    if stem == "target_accuracy_bootstrap":
        return "primary endpoint (CI of target accuracy)"
    if stem == "overlap_by_strategy":
        return _CROSS_STUDY
    if stem in ("validity_summary", "validity"):
        return "primary endpoint (validity study)"
    if stem == "validity_checks":
        return "acceptance (computed from the validity table)"
    if "tier" in frame.columns and not frame.empty:
        tiers = set(frame["tier"])
        if tiers == {"primary"}:
            return "primary endpoint"
        if "primary" in tiers:
            return "primary endpoint rows (`tier` = primary) + robustness rows"
        return "robustness"
    if stem == "overlap_per_class":
        return "detail of a primary endpoint" if _declared("dice", primary) else "robustness"
    if stem == "memory_integrity":
        return "primary endpoint" if _declared("acc", primary) else "robustness"
    return "robustness"


def _figure_tier(stem: str, primary: list[str]) -> str:
    if stem == "overlap_by_strategy":
        return _CROSS_STUDY
    metric = {"accuracy": "acc", "memory_integrity": "acc"}.get(stem, stem.split("_", 1)[0])
    return "primary endpoint" if _declared(metric, primary) else "robustness"


def _write_readme(
    study: Mapping[str, Any],
    out_dir: Path,
    made: Mapping[str, pd.DataFrame],
    written: list[Path],
    figs: list[Path],
    problems: list[dict[str, str]],
    primary: list[str],
    notes: list[str],
    root: Path,
) -> Path:
    name = study.get("name", out_dir.name)
    lines = [
        f"# Report: {name} ({study['kind']})",
        "",
        f"Built from the run files under `<output_root>/{Path(root).name}` (config.yaml, "
        "metrics.json, "
        "eval/<eval-key>/<dataset>.json) — rebuildable offline.",
        "",
        "Primary endpoints declared by the study: "
        + ", ".join(f"`{p}`" for p in primary)
        + (
            " (measures of the validity table, `fer.report.validity.measures`)."
            if study["kind"] == "validity_cue"
            else " (`metric@role`: role source, target or cross-dataset)."
        )
        + " Everything else is a labelled robustness table.",
        "",
        "## Files",
        "",
        "| file | what | tier |",
        "|:---|:---|:---|",
        "| `runs_long.csv` | every number: one row per run × dataset × metric, with the "
        "grid keys and the file it came from (`source_of_number`: train = metrics.json, "
        "eval = evaluate.py) | all |",
        f"| `problems.csv` | {len(problems)} missing, failed or corrupt run file(s) | — |",
    ]
    for stem, paths in _by_stem(written, out_dir).items():
        desc = _DESCRIPTIONS.get(stem, stem)
        tier = _tier_of(stem, made[stem], primary)
        lines.append(f"| {paths} | {desc} ({len(made[stem])} rows) | {tier} |")
    for stem, paths in _by_stem(figs, out_dir).items():
        desc = _FIGURES.get(stem, stem)
        lines.append(f"| {paths} | {desc} | {_figure_tier(stem, primary)} |")
    lines += [
        "",
        "## Reading the numbers",
        "",
        "- Mean ± SD over folds/seeds, SD with ddof = 1; `n` runs per cell, `n_nan` skipped "
        "NaNs (never averaged in). The t-interval beside a fold mean is descriptive: folds "
        "share training data, so it is not a confidence interval.",
        "- Every p-value names its test; Holm-adjusted within its family (`family` column).",
        "- `protocol`: runs whose split is not subject-grouped are labelled `leaky` and never "
        "pooled with subject-grouped runs. An official split of a dataset without identities "
        "(FER2013) is used as given and not called leaky.",
        "- Accuracy comes from metrics.json where the run scored the dataset itself, else from "
        "evaluate.py (`runs_long.csv` keeps both).",
        "- CAM resolution differs by model (14×14 for VGG16 at 224², 17×17 for small_vgg at "
        "48²): keep that in mind in any cross-model overlap comparison.",
    ]
    if any(stem.endswith("accuracy_bootstrap") for stem in made):
        lines.append(
            "- Folds/seeds score the same few test subjects, so a fold SD shows only training "
            "variability. The `*accuracy_bootstrap` tables pool each cell's runs and give a "
            "subject-clustered bootstrap percentile CI: subjects are resampled with replacement, "
            "each with all its images from all the cell's runs, so subject sampling and "
            "training variability both show (`method` column; images without subject id are "
            "their own clusters). Built from evaluate.py's per-image predictions."
        )
    if "table1_counts" in made:
        lines.append(
            "- Table 1 totals are the sums of the class rows. The paper's own FACES total "
            "(1542) differs from its rows (1460); both are kept in fer/report/published/."
        )
    lines += [f"- {n}" for n in notes]
    if problems:
        lines += ["", "## Problems", ""]
        lines += [f"- `{p['path']}`: {p['problem']}" for p in problems]
    return atomic_write_text(out_dir / "README.md", "\n".join(lines) + "\n")


def log_wandb(
    out_dir: str | Path, study_name: str, project: str = "fer", entity: str | None = None
) -> str | None:
    """Log a written report as one W&B run (job_type "report", group = study name).

    Offline unless WANDB_MODE says otherwise; nothing happens (None) when wandb is not
    installed or WANDB_MODE=disabled. Tables go in as wandb.Table, figures as images.
    Returns the run's local directory.
    """
    os.environ.setdefault("WANDB_MODE", "offline")  # never require a login
    os.environ.setdefault("WANDB_SILENT", "true")
    if os.environ["WANDB_MODE"] == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        return None
    from fer.naming import wandb_id

    out_dir = Path(out_dir)
    run = wandb.init(
        project=project,
        entity=entity,
        group=study_name,
        job_type="report",
        name=f"{study_name}-report",
        id=wandb_id(study_name, "report", "report"),
        dir=str(out_dir),
        resume="allow",
    )
    try:
        for csv in sorted((out_dir / "tables").glob("*.csv")):
            frame = pd.read_csv(csv)
            if not frame.empty:
                run.log({f"table/{csv.stem}": wandb.Table(dataframe=frame.astype(str))})
        for png in sorted((out_dir / "figures").glob("*.png")):
            run.log({f"figure/{png.stem}": wandb.Image(str(png))})
        readme = out_dir / "README.md"
        if readme.exists():
            run.summary["readme"] = readme.read_text()
        local = str(run.dir)
    finally:
        run.finish()
    return local
