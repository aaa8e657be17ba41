"""Face crops and ROI masks for a whole manifest, as cached arrays, with an exclusion report.

This module holds the `none` preprocessing (images already are face crops, as the synthetic
set is): decode, resize to the cache size, take exact masks where the source ships them.
Detector-based preprocessing (dlib landmarks, Haar) plugs in here too.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from fer.data.manifest import Manifest
from fer.io import atomic_write
from fer.labels import REGIONS


@dataclass
class FaceArrays:
    """Cached faces of one manifest: aligned images, ROI masks and the rows they came from."""

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, len(REGIONS), H, W) uint8 in {0, 1}
    frame: pd.DataFrame  # manifest rows of the N faces, same order
    skipped: pd.DataFrame  # path, reason: files that could not be used

    def __len__(self) -> int:
        return len(self.frame)


def decode_rgb(path: str | Path) -> np.ndarray:
    """Decode an image fully (PIL `.load()` raises on truncated files, cv2 would not)."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def _decode_mask(path: str | Path, n_regions: int) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        packed = np.asarray(im)
    return np.stack([(packed >> r) & 1 for r in range(n_regions)]).astype(np.uint8)


def cache_key(manifest: Manifest, size: int, method: str) -> str:
    """Key of a cache file: the rows (paths, sizes, mtimes) and the preprocessing settings."""
    h = hashlib.sha1(f"{method}|{size}|{REGIONS}".encode())
    for p in manifest.frame["path"]:
        st = os.stat(p) if os.path.exists(p) else None
        h.update(f"{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:16]


def load_faces(
    manifest: Manifest,
    size: int,
    cache_dir: str | Path,
    method: str = "none",
    progress: bool = False,
) -> FaceArrays:
    """Return the manifest's faces at `size`×`size`, from the cache when it is valid."""
    if method != "none":
        raise NotImplementedError(f"preprocess method {method!r} is not implemented yet")
    cache = Path(cache_dir) / "faces" / f"{cache_key(manifest, size, method)}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                keep = z["keep"]
                return FaceArrays(
                    z["images"],
                    z["masks"],
                    manifest.frame.iloc[keep].reset_index(drop=True),
                    pd.DataFrame({"path": z["skipped_path"], "reason": z["skipped_reason"]}),
                )
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # corrupt cache: rebuild below
    faces = _build(manifest, size, progress)
    keep = manifest.frame.index.get_indexer(faces.frame.index)

    def write(f: io.BufferedWriter) -> None:
        np.savez(
            f,
            images=faces.images,
            masks=faces.masks,
            keep=keep,
            skipped_path=faces.skipped["path"].astype(str).to_numpy(),
            skipped_reason=faces.skipped["reason"].astype(str).to_numpy(),
        )

    atomic_write(cache, write)  # through a file object: np.save appends .npy to bare names
    faces.frame = faces.frame.reset_index(drop=True)
    return faces


def _build(manifest: Manifest, size: int, progress: bool) -> FaceArrays:
    frame = manifest.frame
    has_masks = "mask_path" in frame.columns
    images, masks, kept, skipped = [], [], [], list(manifest.skipped.itertuples(index=False))
    rows: Sequence = frame.itertuples()
    if progress:
        from rich.progress import track

        rows = track(rows, total=len(frame), description="preprocessing faces")
    for row in rows:
        try:
            img = decode_rgb(row.path)
            msk = (
                _decode_mask(row.mask_path, len(REGIONS))
                if has_masks
                else np.zeros((len(REGIONS), *img.shape[:2]), np.uint8)
            )
        except (OSError, ValueError, SyntaxError) as e:
            skipped.append((row.path, f"unreadable image: {e}"))
            continue
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            msk = np.stack(
                [cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in msk]
            )
        images.append(img)
        masks.append(msk)
        kept.append(row.Index)
    n = len(images)
    return FaceArrays(
        np.stack(images) if n else np.zeros((0, size, size, 3), np.uint8),
        np.stack(masks) if n else np.zeros((0, len(REGIONS), size, size), np.uint8),
        frame.loc[kept],
        pd.DataFrame(skipped, columns=["path", "reason"]),
    )
