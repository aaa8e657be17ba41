"""Procedural non-face pretraining images (`fer.data.procedural`) as a dataset source.

Renders once into a cache folder and returns a Manifest, like the synthetic faces, so the
pretraining run goes through the same scan -> preprocess -> split path. There is no face, so
there are no regions of importance: every row points at one all-zero mask file (`no_roi.png`),
which the preprocessing reads as exact (empty) masks instead of looking for a face.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fer.data.manifest import Manifest
from fer.data.sources.synthetic import _write_png  # the same PNG cache writer
from fer.errors import ConfigError
from fer.io import atomic_write_text
from fer.naming import code_hash, short_hash

NO_ROI = "no_roi.png"


def scan(
    root: str | Path,
    n_per_class: int = 40,
    seed: int = 0,
    size: int = 64,
    classes: Sequence[str] | None = None,
    n_groups: int = 10,
    dataset: str | None = None,
) -> Manifest:
    """Render (or reuse) the procedural object set under `root` and return its Manifest.

    The folder name holds a hash of every argument and of the renderer's code;
    `manifest.csv` is written last, atomically, and marks the folder complete. `subject`
    holds the image's pseudo-subject group (`objects_g<g>`), so subject-grouped splits apply.

    Raises:
        ConfigError: an unknown class, or fewer than one image or group.
    """
    from fer.data import procedural

    classes = tuple(classes) if classes is not None else procedural.CLASSES
    unknown = [c for c in classes if c not in procedural.CLASSES]
    if unknown:
        raise ConfigError(
            f"data.source.classes: unknown object class(es) {unknown}; "
            f"known: {list(procedural.CLASSES)}"
        )
    if int(n_per_class) < 1 or int(n_groups) < 1:
        raise ConfigError(
            f"data.source.n_per_class={n_per_class}, n_groups={n_groups}: both must be >= 1"
        )
    params = dict(
        n_per_class=int(n_per_class),
        seed=int(seed),
        size=int(size),
        classes=list(classes),
        n_groups=int(n_groups),
    )
    key = json.dumps(params, sort_keys=True) + code_hash(procedural)  # an edited renderer: anew
    folder = Path(root) / f"objects-{short_hash(key)}"
    if not (folder / "manifest.csv").exists():
        _render_to(folder, params)
    frame = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    for col in ("path", "mask_path"):
        frame[col] = [str(folder / p) for p in frame[col]]
    frame["dataset"] = dataset or "procedural_objects"
    return Manifest(frame)


def _render_to(folder: Path, params: dict) -> None:
    from fer.data import procedural

    s = procedural.render_set(
        params["n_per_class"], params["seed"], params["size"], params["classes"], params["n_groups"]
    )
    folder.mkdir(parents=True, exist_ok=True)
    size = params["size"]
    _write_png(folder / NO_ROI, np.zeros((size, size), np.uint8))  # no bit set: no region
    rows = []
    for i, (label, group) in enumerate(zip(s.labels, s.groups, strict=True)):
        path = f"images/{label}/{i:05d}.png"
        _write_png(folder / path, cv2.cvtColor(s.images[i], cv2.COLOR_RGB2BGR))
        rows.append(
            dict(path=path, mask_path=NO_ROI, label=label, subject=group, sequence="", frame="")
        )
    (folder / "params.json").write_text(json.dumps(params, indent=2))
    atomic_write_text(folder / "manifest.csv", pd.DataFrame(rows).to_csv(index=False))
