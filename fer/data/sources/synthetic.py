"""Synthetic faces as a dataset source: renders once into a cache folder, returns a Manifest.

Images are PNG files and their exact ROI masks PNG bitfields (bit r = region r of
`fer.labels.REGIONS`), so the synthetic set flows through the same scan -> preprocess
path as a real dataset on disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fer.data.manifest import Manifest
from fer.errors import ConfigError
from fer.io import atomic_write_text
from fer.naming import short_hash


def scan(
    root: str | Path,
    domain: str = "lab",
    n_subjects: int = 36,
    per_class: int = 7,
    seed: int = 0,
    size: int = 64,
    classes: Sequence[str] | None = None,
    dataset: str | None = None,
    signal: str = "face",
) -> Manifest:
    """Render (or reuse) a synthetic domain under `root` and return its Manifest.

    The folder name holds a hash of every argument, so different settings never share files;
    `manifest.csv` is written last, atomically, and marks the folder complete. `signal`
    ("face", "mouth" or "eyes") picks which region carries the expression
    (`fer.data.synthetic.render_face`); it enters the hash only when it is not "face", so the
    folders rendered before the option existed are still found.

    Raises:
        ConfigError: an unknown domain or signal, or a class the domain lacks.
    """
    from fer.data import synthetic

    if signal not in synthetic.SIGNALS:
        raise ConfigError(
            f"data.source.signal={signal!r} is unknown; allowed: {list(synthetic.SIGNALS)}"
        )
    if domain not in synthetic.DOMAINS:
        raise ConfigError(
            f"data.source.domain={domain!r} is unknown; "
            f"synthetic domains: {list(synthetic.DOMAINS)}"
        )
    have = synthetic.DOMAINS[domain].classes
    classes = tuple(classes) if classes is not None else have
    missing = [c for c in classes if c not in have]
    if missing:
        raise ConfigError(f"data.source.classes: domain {domain!r} has no {missing} images")
    params = dict(
        domain=domain,
        n_subjects=n_subjects,
        per_class=per_class,
        seed=seed,
        size=size,
        classes=list(classes),
    )
    if signal != "face":
        params["signal"] = signal
    folder = Path(root) / f"{domain}-{short_hash(json.dumps(params, sort_keys=True))}"
    done = folder / "manifest.csv"
    if not done.exists():
        _render_to(folder, params)
    frame = pd.read_csv(done, dtype=str, keep_default_na=False)
    for col in ("path", "mask_path"):
        frame[col] = [str(folder / p) for p in frame[col]]
    frame["dataset"] = dataset or f"synthetic_{domain}"
    return Manifest(frame)


def _render_to(folder: Path, params: dict) -> None:
    from fer.data import synthetic

    s = synthetic.render_set(
        params["domain"],
        params["n_subjects"],
        params["per_class"],
        params["seed"],
        params["size"],
        params["classes"],
        signal=params.get("signal", "face"),
    )
    bits = (1 << np.arange(s.masks.shape[1], dtype=np.uint8))[None, :, None, None]
    packed = (s.masks.astype(np.uint8) * bits).sum(axis=1).astype(np.uint8)
    rows = []
    for i, (label, subject) in enumerate(zip(s.labels, s.subjects, strict=True)):
        img, msk = f"images/{subject}/{i:05d}_{label}.png", f"masks/{subject}/{i:05d}.png"
        _write_png(folder / img, cv2.cvtColor(s.images[i], cv2.COLOR_RGB2BGR))
        _write_png(folder / msk, packed[i])
        rows.append(
            dict(
                path=img,
                mask_path=msk,
                label=label,
                subject=subject,
                sequence="",
                frame="",
                intensity=f"{s.intensities[i]:.4f}",
            )
        )
    (folder / "params.json").write_text(json.dumps(params, indent=2))
    atomic_write_text(folder / "manifest.csv", pd.DataFrame(rows).to_csv(index=False))


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - encoding a uint8 array cannot fail
        raise RuntimeError(f"PNG encoding failed for {path}")
    # No fsync per image: the folder only counts once manifest.csv is written (atomically).
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
