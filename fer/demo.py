"""`make demo`: train the default run on the embedded synthetic faces, then say where things are.

Runs the real entrypoint (`python train.py`) so the demo exercises exactly what users run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fer.io import read_json_or_none

RUN_DIR = Path("outputs/default/run")
GRID = Path("outputs/figures/synthetic_faces.png")


def main() -> int:
    """Render the face grid, train (or find finished) the default run, print the paths."""
    subprocess.run([sys.executable, "-m", "fer.data.synthetic", "--grid", str(GRID)], check=True)
    rc = subprocess.run([sys.executable, "train.py"]).returncode
    if rc != 0:
        return rc
    metrics = read_json_or_none(RUN_DIR / "metrics.json") or {}
    val = metrics.get("val") or {}
    from fer.report.plots import plot_confusion

    confusion = plot_confusion(val, RUN_DIR / "confusion_val.png") if val else None
    print("\n== fer demo ==")
    print(f"synthetic faces (every expression x domain, ROI outlines): {GRID}")
    print(f"run directory:        {RUN_DIR}/  (config.yaml, last.ckpt, metrics.json)")
    if val:
        print(
            f"validation accuracy:  {val['acc']:.3f} (macro {val['acc_macro']:.3f}) "
            f"on {val['n']} images, {metrics.get('epochs')} epochs"
        )
        print(f"confusion matrix:     {confusion}")
    print(f"W&B (offline):        {RUN_DIR}/wandb/   upload later with `wandb sync`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
