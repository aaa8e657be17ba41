"""Synthetic faces as a dataset source: renders once into a cache folder, returns a Manifest.

Images are PNG files and their exact ROI masks PNG bitfields (bit r = region r of
`fer.labels.REGIONS`), so the synthetic set flows through the same scan -> preprocess
path as a real dataset on disk. A spurious-cue set (`cue_mark`) is the clean set's files with
a mark pasted on: the faces are the clean set's, bit for bit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fer.data.manifest import Manifest
from fer.errors import ConfigError, DataError
from fer.io import atomic_write_text
from fer.naming import code_hash, short_hash


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
    cue_mark: str = "none",
    cue_p: float = 0.95,
    subject_split: Mapping[str, float] | None = None,
) -> Manifest:
    """Render (or reuse) a synthetic domain under `root` and return its Manifest.

    The folder name holds a hash of every argument, so different settings never share files;
    `manifest.csv` is written last, atomically, and marks the folder complete. `signal`
    ("face", "mouth" or "eyes") picks which region carries the expression
    (`fer.data.synthetic.render_face`); it enters the hash only when it is not "face", so the
    folders rendered before the option existed are still found. `cue_mark` (`CUE_MARKS`) and
    `cue_p` add a spurious-cue mark (`fer.data.synthetic.draw_cue`); they enter the hash only
    with a mark, and the cued folder is made from the clean folder's images.

    `subject_split` ({train, val, test} shares of subjects) adds an `official_split` column:
    a subject-disjoint split fixed by the render (seed, domain), whatever the data config's
    name — so the cued and clean versions of one set share it exactly, and a model trained on
    one is scored on the other's test subjects only (data config: `official_split: true`).

    Raises:
        ConfigError: an unknown domain, signal or cue, or a class the domain lacks.
    """
    from fer.data import synthetic

    if signal not in synthetic.SIGNALS:
        raise ConfigError(
            f"data.source.signal={signal!r} is unknown; allowed: {list(synthetic.SIGNALS)}"
        )
    if cue_mark not in synthetic.CUE_MARKS:
        raise ConfigError(
            f"data.source.cue_mark={cue_mark!r} is unknown; allowed: {list(synthetic.CUE_MARKS)}"
        )
    if not 0.0 <= float(cue_p) <= 1.0:
        raise ConfigError(f"data.source.cue_p={cue_p}: the cue strength must lie in [0, 1]")
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
    folder = _folder(root, params)
    if cue_mark != "none":
        clean = folder
        folder = _folder(root, params | {"cue_mark": cue_mark, "cue_p": float(cue_p)})
        if not (folder / "manifest.csv").exists():
            if not (clean / "manifest.csv").exists():
                _render_to(clean, params)
            _mark_to(folder, clean, params, cue_mark, float(cue_p))
    elif not (folder / "manifest.csv").exists():
        _render_to(folder, params)
    frame = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    for col in ("path", "mask_path"):
        frame[col] = [str(folder / p) for p in frame[col]]
    frame["dataset"] = dataset or f"synthetic_{domain}"
    if subject_split is not None:
        frame["official_split"] = _subject_split(frame, subject_split, seed, domain)
    return Manifest(frame)


def _folder(root: str | Path, params: dict) -> Path:
    """The render folder: a hash of the parameters and of the renderer's code."""
    from fer.data import synthetic

    key = json.dumps(params, sort_keys=True) + code_hash(synthetic)
    return Path(root) / f"{params['domain']}-{short_hash(key)}"


def _subject_split(
    frame: pd.DataFrame, shares: Mapping[str, float], seed: int, domain: str
) -> list[str]:
    """train/val/test per row: whole subjects, from (render seed, domain) only."""
    from fer.data.splits import holdout

    split = holdout(
        frame["label"].to_numpy(),
        frame["subject"].to_numpy(),
        {k: float(shares[k]) for k in ("train", "val", "test")} if shares else {},
        seed,
        f"synthetic_{domain}",  # not the config name: every variant of the set splits alike
    )
    out = np.full(len(frame), "train", dtype=object)
    out[split.val], out[split.test] = "val", "test"
    return out.tolist()


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


def _mark_to(folder: Path, clean: Path, params: dict, mark: str, p: float) -> None:
    """The cued set: the clean folder's images with each one's mark pasted on, its masks
    copied; `manifest.csv` gains `cue` (the class whose mark the image shows)."""
    from fer.data import synthetic

    frame = pd.read_csv(clean / "manifest.csv", dtype=str, keep_default_na=False)
    cues = synthetic.cue_classes(
        params["domain"],
        params["n_subjects"],
        params["per_class"],
        params["seed"],
        p,
        params["classes"],
    )
    if len(cues) != len(frame) or any(
        f"_{label}.png" not in path
        for label, path in zip(frame["label"], frame["path"], strict=True)
    ):  # the clean manifest is in render order; anything else is a corrupt cache
        raise DataError(f"{clean}: manifest.csv does not match its render settings; delete it")
    for rel, mask, cls in zip(frame["path"], frame["mask_path"], cues, strict=True):
        rgb = cv2.cvtColor(cv2.imread(str(clean / rel), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        _write_png(
            folder / rel, cv2.cvtColor(synthetic.draw_cue(rgb, cls, mark), cv2.COLOR_RGB2BGR)
        )
        (folder / mask).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clean / mask, folder / mask)
    frame["cue"] = cues
    marked = params | {"cue_mark": mark, "cue_p": p}
    (folder / "params.json").write_text(json.dumps(marked, indent=2))
    atomic_write_text(folder / "manifest.csv", frame.to_csv(index=False))


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - encoding a uint8 array cannot fail
        raise RuntimeError(f"PNG encoding failed for {path}")
    # No fsync per image: the folder only counts once manifest.csv is written (atomically).
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
