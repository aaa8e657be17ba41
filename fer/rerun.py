"""Re-run a finished run from its directory alone: `python -m fer.rerun <run-dir> [--out DIR]`.

The run's own `config.yaml` (fully resolved: no defaults list, no Hydra interpolation) is the
whole recipe; only where the new run writes changes (`paths.run_dir`, the checkpoint folder).
The new `metrics.json` is then compared with the original's scores, so a researcher can check
that a number reproduces (on CPU with the same package versions it should, to ~1e-6).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict

from fer import runs
from fer.errors import DataError, FerError


def rerun(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Train again from `<run_dir>/config.yaml` into `out_dir` (default `<run_dir>/rerun`);
    return {"out": path, "differences": {dataset: |Δacc|}, "max_abs_diff": float}."""
    from fer.train import train

    run_dir = Path(run_dir)
    stored = runs.read_config(run_dir)
    if stored is None:
        raise DataError(f"{run_dir}: not a run directory (no {runs.CONFIG})")
    original = runs.read_json_metrics(run_dir)
    if original.get("status") != "finished":
        raise DataError(f"{run_dir}: not a finished run (metrics.json says so when it is)")
    out = Path(out_dir) if out_dir is not None else run_dir / "rerun"
    cfg = OmegaConf.create(stored)
    with open_dict(cfg):
        cfg.paths.run_dir = str(out)
        for callback in (cfg.get("callbacks") or {}).values():
            if callback and "dirpath" in callback:
                callback.dirpath = str(out)
    again = train(cfg)
    diffs = {
        name: abs(float(again["scores"][name]["acc"]) - float(s["acc"]))
        for name, s in (original.get("scores") or {}).items()
        if name in (again.get("scores") or {})
    }
    return {
        "out": out,
        "differences": diffs,
        "max_abs_diff": max(diffs.values(), default=math.nan),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fer.rerun",
        description="Re-run a finished run from its directory alone and compare its scores.",
    )
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="where the new run goes (<run>/rerun)")
    args = parser.parse_args(argv)
    try:
        result = rerun(args.run_dir, args.out)
    except FerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, d in result["differences"].items():
        print(f"{name}: |Δ accuracy| = {d:.2e}")
    print(f"re-run: {result['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
