"""`make demo`: both studies' synthetic twins end to end (train, evaluate, report) on a CPU.

Runs the real entrypoint (`python sweep.py study=...`) so the demo exercises exactly what users
run; sizes are cut with study keys so the whole demo fits in a quarter of an hour on 2 cores.
A second `make demo` finds every run finished and only redraws the reports.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

GRID = Path("outputs/figures/synthetic_faces.png")

#: (study, overrides): small grids of both synthetic studies.
#: Fewer subjects and epochs than the studies' own settings (the runs are named after them,
#: so they never mix with a full run of the same study).
SMALL = "sweep.extra=['data.source.n_subjects=18','trainer.max_epochs=2']"
STUDIES: tuple[tuple[str, list[str]], ...] = (
    (
        "arabian2022_synthetic",
        ["study.folds=2", "study.leaky_folds=1", "study.models=[small_vgg,small_vgg_cbam]", SMALL],
    ),
    ("tannugi2019_synthetic", ["study.split_seeds=1", "study.targets=[synthetic_gray]", SMALL]),
)


def main() -> int:
    """Render the face grid, run both synthetic studies, print where the reports are."""
    started = time.time()
    subprocess.run([sys.executable, "-m", "fer.data.synthetic", "--grid", str(GRID)], check=True)
    for study, overrides in STUDIES:
        rc = subprocess.run([sys.executable, "sweep.py", f"study={study}", *overrides]).returncode
        if rc != 0:
            return rc
    minutes = (time.time() - started) / 60
    print("\n== fer demo ==")
    print(f"synthetic faces (every expression x domain, ROI outlines): {GRID}")
    for study, _ in STUDIES:
        headline = Path("reports") / study / "headline.md"
        if headline.exists():
            print(f"\n{study} (headline table):\n{headline.read_text()}")
        print(f"{study}: report reports/{study}/README.md, runs outputs/{study}/")
    print("Grad-CAM figures: outputs/<study>/<run>/eval/<eval-key>/*_class_cams.png")
    print("W&B (offline): outputs/<study>/<run>/wandb/  upload later with `wandb sync`")
    print(f"demo took {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
