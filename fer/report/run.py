"""One-run summary: `python -m fer.report.run <run-dir>` writes `<run>/summary/`.

Training curves (from the CSV log, when the run used `logger=csv`), a confusion matrix per
scored dataset, the per-class accuracy table and every evaluation under `<run>/eval/`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from fer.errors import DataError, FerError, RunStateError
from fer.io import atomic_write_text
from fer.runs import CONFIG, METRICS, evaluation_is_current, read_json_metrics, status

SUMMARY = "summary"
EVAL_FIELDS = (
    "key",
    "dataset",
    "subset",
    "size",
    "acc",
    "acc_macro",
    "dice_class_mean",
    "iou_class_mean",
    "spearman_mean",
    "leaky",
)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def check_run(run_dir: Path) -> dict:
    """metrics.json of a finished run; a one-line FerError naming the path otherwise."""
    if not run_dir.is_dir() or not (run_dir / CONFIG).exists():
        raise DataError(f"{run_dir}: not a run directory (no {CONFIG})")
    if not (run_dir / METRICS).exists():
        raise RunStateError(f"{run_dir}: unfinished run (no {METRICS})")
    state = status(run_dir)
    if state != "finished":
        raise RunStateError(
            f"{run_dir}: unfinished run ({METRICS} status: {state or 'unreadable'})"
        )
    return read_json_metrics(run_dir)


def find_csv_log(run_dir: Path) -> Path | None:
    """The newest Lightning CSVLogger `metrics.csv` under the run (None without `logger=csv`)."""
    found = [p for p in run_dir.rglob("metrics.csv") if SUMMARY not in p.relative_to(run_dir).parts]
    return max(found, key=lambda p: (p.stat().st_mtime_ns, str(p))) if found else None


def plot_curves(log: Path, path: Path) -> Path | None:
    """Loss and accuracy per epoch from a CSVLogger file; None when it holds no curves."""
    import pandas as pd

    from fer.report.plots import plt

    frame = pd.read_csv(log)
    if "epoch" not in frame.columns:
        return None
    groups = {
        "loss": [c for c in frame.columns if "loss" in c],
        "accuracy": [c for c in frame.columns if c.endswith("/acc") or c.endswith("acc_macro")],
    }
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False)
    for ax, (label, columns) in zip(axes[0], groups.items(), strict=True):
        for col in columns:
            series = frame[["epoch", col]].dropna().groupby("epoch")[col].last()
            if len(series):
                ax.plot(series.index, series.values, marker="o", label=col)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def collect_evaluations(run_dir: Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """One row per `<run>/eval/<key>/<dataset>.json`; unreadable files come back as skipped."""
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[Path, str]] = []
    trained = read_json_metrics(run_dir)
    for path in sorted((run_dir / "eval").glob("*/*.json")):
        try:
            result = json.loads(path.read_text())
            if not isinstance(result, dict) or not isinstance(result.get("scores"), dict):
                raise ValueError("no scores")
            if not evaluation_is_current(result, trained):
                skipped.append((path, "an evaluation of an earlier training: run evaluate again"))
                continue
            rows.append(
                {
                    "key": path.parent.name,
                    "dataset": result.get("dataset", path.stem),
                    "subset": result.get("subset"),
                    "size": result.get("size"),
                    "acc": _get(result, "scores.acc"),
                    "acc_macro": _get(result, "scores.acc_macro"),
                    "dice_class_mean": _get(result, "overlap.class_mean.dice.mean"),
                    "iou_class_mean": _get(result, "overlap.class_mean.iou.mean"),
                    "spearman_mean": _get(result, "randomisation.spearman_mean"),
                    "leaky": bool(result.get("leaky", False)),
                }
            )
        except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
            skipped.append((path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    return rows, skipped


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    import io

    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _markdown(fields: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(_fmt(r.get(f)) for f in fields) + " |" for r in rows]
    return lines


def summarize_run(run_dir: Path, console: Any | None = None) -> dict[str, Any]:
    """Write `<run>/summary/` and print it; returns the paths written (and what was skipped)."""
    from rich.console import Console
    from rich.table import Table

    from fer.report.plots import plot_confusion

    run_dir = Path(run_dir)
    metrics = check_run(run_dir)
    console = console or Console()
    out = run_dir / SUMMARY
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"confusion": {}}
    md = [f"# {run_dir.name}", "", f"Run: `{run_dir}`", ""]
    console.rule(f"[bold]{run_dir.name}")

    log = find_csv_log(run_dir)
    curves = plot_curves(log, out / "curves.png") if log else None
    if curves:
        written["curves"] = curves
        console.print(f"training curves: {curves} (from {log})")
        md += ["## Training curves", "", "![curves](curves.png)", ""]
    else:
        reason = f"no curves in {log}" if log else "no CSV log (train with logger=csv)"
        console.print(f"training curves: skipped, {reason}")
        md += ["## Training curves", "", f"Skipped: {reason}.", ""]

    scores = {k: v for k, v in (metrics.get("scores") or {}).items() if isinstance(v, dict)}
    per_class: list[dict[str, Any]] = []
    md += ["## Scores", ""]
    for name, s in scores.items():
        if s.get("confusion") is not None and s.get("classes"):
            png = plot_confusion(
                s,
                out / f"confusion_{name}.png",
                title=f"{name} ({s.get('subset', '?')}): accuracy {s['acc']:.3f}",
            )
            written["confusion"][name] = png
            md += [f"![{name}](confusion_{name}.png)", ""]
        support = s.get("support") or {}
        for cls, acc in (s.get("per_class") or {}).items():
            per_class.append(
                {
                    "dataset": name,
                    "subset": s.get("subset"),
                    "class": cls,
                    "acc": acc,
                    "support": support.get(cls),
                }
            )
        console.print(
            f"{name} ({s.get('subset', '?')}): acc={_fmt(s.get('acc'))} "
            f"macro={_fmt(s.get('acc_macro'))}"
        )
    fields = ("dataset", "subset", "class", "acc", "support")
    written["per_class"] = _write_csv(out / "per_class.csv", fields, per_class)
    table = Table(title="per-class accuracy")
    for f in fields:
        table.add_column(f, justify="right" if f in ("acc", "support") else "left")
    for row in per_class:
        table.add_row(*(_fmt(row[f]) for f in fields))
    console.print(table)
    md += ["### Per-class accuracy", "", *_markdown(fields, per_class), ""]

    evals, skipped = collect_evaluations(run_dir)
    written["evaluations"] = _write_csv(out / "evaluations.csv", EVAL_FIELDS, evals)
    md += ["## Evaluations", ""]
    if evals:
        table = Table(title="evaluations")
        for f in EVAL_FIELDS:
            table.add_column(f)
        for row in evals:
            table.add_row(*(_fmt(row[f]) for f in EVAL_FIELDS))
        console.print(table)
        md += _markdown(EVAL_FIELDS, evals)
    else:
        console.print(f"evaluations: none under {run_dir / 'eval'}")
        md += ["None."]
    for path, why in skipped:
        console.print(f"[yellow]skipped[/] {path}: {why}")
        md.append(f"- skipped `{path}`: {why}")
    written["skipped"] = [p for p, _ in skipped]
    summary = out / "summary.md"
    atomic_write_text(summary, "\n".join(md) + "\n")
    written["summary"] = summary
    console.print(f"written: {out}")
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: a user error is one line on stderr and exit status 1."""
    parser = argparse.ArgumentParser(
        prog="python -m fer.report.run",
        description="Summarise one finished run into <run-dir>/summary/ "
        "(curves, confusion matrices, per-class accuracy, evaluations).",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (holds config.yaml)")
    args = parser.parse_args(argv)
    try:
        summarize_run(args.run_dir)
    except FerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
