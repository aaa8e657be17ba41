"""Face crops and ROI masks for a whole manifest: cached, parallel, with an exclusion report.

Methods (`preprocess=` config group): `landmarks` (dlib 68 points, default), `haar`
(Viola–Jones face + eyes, geometric mouth; box masks) and `none` (images already are face
crops: used as they are, masks from the source when it ships exact ones — the synthetic set —
else from landmarks when dlib finds the face, else a canonical template; `mask_source` says
which).

The cache is one folder per (file contents, settings): `images.npy` and `masks.npy`
(memory-mapped on load), `rows.csv` (the manifest rows with `excluded` and `mask_source`),
`skipped.csv` (unreadable files) and `meta.json`, written last, which marks it complete. A
second run over the same data does no detection; any changed setting or file misses it.

Run standalone (prints Table 1, writes excluded.csv and a figure):
    python -m fer.data.preprocess data=jaffe data.root=/data/jaffe [preprocess=haar]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from fer.data.manifest import Manifest
from fer.errors import ConfigError
from fer.io import atomic_write, atomic_write_json, atomic_write_text, read_json_or_none
from fer.labels import CANONICAL, REGIONS

METHODS = ("landmarks", "haar", "none")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Settings:
    """Everything that changes a cached face (part of the cache key)."""

    method: str = "landmarks"
    size: int = 224
    margin: float = 0.25
    upsample: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"preprocess.method={self.method!r}: allowed {list(METHODS)}")
        if not 0 <= self.margin <= 2:
            raise ConfigError(f"preprocess.margin={self.margin}: allowed 0..2")


class RowView:
    """Some rows of a (memory-mapped) array, read only when indexed: a class subset of a
    cached dataset without copying it (AffectNet at 224 px is tens of GB)."""

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base, self.rows = base, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.base[self.rows[index]]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self.base[self.rows])
        return out if dtype is None else out.astype(dtype)


@dataclass
class FaceArrays:
    """Cached faces of one manifest: aligned images, ROI masks and the rows they came from.

    `frame` has the manifest columns plus `excluded` ("" for a usable face, else the reason:
    such a face has a fallback crop and no mask) and `mask_source`.
    """

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, len(REGIONS), H, W) uint8 in {0, 1}
    frame: pd.DataFrame
    skipped: pd.DataFrame  # path, label, reason: files that gave no face crop at all
    #: the cache folder's name, `<dataset>-<key>`: the key hashes every file's content and the
    #: settings, so it identifies the data a run saw (recorded in metrics.json)
    cache: str = ""

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def usable(self) -> np.ndarray:
        """Row positions of faces whose regions were segmented (the paper's reading)."""
        return np.flatnonzero(self.frame["excluded"].to_numpy() == "")

    def of_classes(self, classes: Iterable[str]) -> FaceArrays:
        """The faces (and skipped files) of `classes` only, as views of these arrays: the
        cache holds a whole dataset, shared by every class list and by prepare.py."""
        keep = self.frame["label"].isin(list(classes)).to_numpy()
        if keep.all():
            return self
        rows = np.flatnonzero(keep)
        return FaceArrays(
            RowView(self.images, rows),
            RowView(self.masks, rows),
            self.frame.iloc[rows].reset_index(drop=True),
            self.skipped[self.skipped["label"].isin(list(classes))].reset_index(drop=True),
            self.cache,
        )


# -- decoding ---------------------------------------------------------------------------------
def decode_rgb(path: str | Path) -> np.ndarray:
    """Decode an image fully as RGB uint8.

    PIL's `.load()` raises on truncated files (cv2.imread would return a half-grey image);
    `<csv>::<row>` paths are FER2013 rows, read from their CSV.
    """
    if "::" in str(path):
        from fer.data.sources.fer2013 import load_pixels

        grey = load_pixels(str(path))
        return np.repeat(grey[..., None], 3, axis=-1)
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def _decode_mask(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        packed = np.asarray(im)
    return np.stack([(packed >> r) & 1 for r in range(len(REGIONS))]).astype(np.uint8)


# -- one image ----------------------------------------------------------------------------------
class _Worker:
    """Turns one manifest row into (crop, masks, excluded, mask_source); picklable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detector: Callable | None = None

    def _detector(self) -> Callable:
        if self.detector is None:
            from fer.data import faces

            s = self.settings
            cls = faces.HaarFaces if s.method == "haar" else faces.LandmarkFaces
            kwargs: dict[str, Any] = {"size": s.size, "margin": s.margin}
            if s.method != "haar":
                kwargs["upsample"] = s.upsample
            self.detector = cls(**kwargs)
        return self.detector

    def __call__(self, row: tuple[str, str]) -> tuple[Any, ...]:
        path, mask_path = row
        size = self.settings.size
        try:
            rgb = decode_rgb(path)
            exact = _decode_mask(mask_path) if mask_path else None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            return None, None, f"unreadable image: {e}", "none", 0
        if self.settings.method == "none":
            crop = _resize(rgb, size)
            if exact is not None:
                return crop, _resize_masks(exact, size), "", "exact", 1
            from fer.data.faces import template_masks

            found = self._detector().masks_in_place(crop)
            if found is not None:
                return crop, found, "", "landmarks", 1
            return crop, template_masks(size), "", "template", 1
        result = self._detector()(rgb)
        return result.crop, result.masks, result.excluded or "", result.mask_source, result.n_faces


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[:2] == (size, size):
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    if masks.shape[1:] == (size, size):
        return masks
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in masks])


# -- cache --------------------------------------------------------------------------------------
def cache_key(manifest: Manifest, settings: Settings) -> str:
    """Hash of every file's *content* (plus mask files) and the settings."""
    h = hashlib.blake2b(digest_size=10)
    h.update(json.dumps([CACHE_VERSION, settings.__dict__, list(REGIONS)]).encode())
    seen_csv: set[str] = set()
    cols = ["path", "mask_path"] if "mask_path" in manifest.frame else ["path"]
    for values in manifest.frame[cols].itertuples(index=False):
        for p in values:
            p = str(p)
            h.update(p.encode())
            file = p.split("::")[0]
            if "::" in p:
                if file in seen_csv:
                    continue
                seen_csv.add(file)
            h.update(_file_digest(file))
    return h.hexdigest()


def _file_digest(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "blake2b").digest()
    except OSError as e:
        return f"unreadable:{e.__class__.__name__}".encode()


def load_faces(
    manifest: Manifest,
    settings: Settings,
    cache_dir: str | Path,
    workers: int = 1,
    progress: bool = True,
) -> FaceArrays:
    """The manifest's faces under `settings`, from the cache when it is complete and valid."""
    dataset = str(manifest.frame["dataset"].iloc[0]) if len(manifest) else "empty"
    folder = Path(cache_dir) / f"{dataset}-{cache_key(manifest, settings)}"
    cached = _read_cache(folder)
    if cached is None:
        faces = _build(manifest, settings, workers, progress)
        _write_cache(folder, faces, settings)
        cached = _read_cache(folder) or faces
    cached.cache = folder.name
    return cached


def _read_cache(folder: Path) -> FaceArrays | None:
    meta = read_json_or_none(folder / "meta.json")
    if not meta or meta.get("version") != CACHE_VERSION:
        return None
    try:
        images = np.load(folder / "images.npy", mmap_mode="r")
        masks = np.load(folder / "masks.npy", mmap_mode="r")
        frame = pd.read_csv(folder / "rows.csv", dtype=str, keep_default_na=False)
        skipped = pd.read_csv(folder / "skipped.csv", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:  # truncated/corrupt: rebuilt by the caller
        print(f"preprocessing cache {folder} is unreadable ({e}); rebuilding")
        return None
    if len(images) != len(frame) or len(masks) != len(frame) or meta.get("n") != len(frame):
        print(f"preprocessing cache {folder} is inconsistent; rebuilding")
        return None
    return FaceArrays(images, masks, frame, skipped)


def _write_cache(folder: Path, faces: FaceArrays, settings: Settings) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # np.save appends .npy to bare temp names: write through a file object.
    atomic_write(folder / "images.npy", lambda f: np.save(f, faces.images))
    atomic_write(folder / "masks.npy", lambda f: np.save(f, faces.masks))
    atomic_write_text(folder / "rows.csv", faces.frame.to_csv(index=False))
    atomic_write_text(folder / "skipped.csv", faces.skipped.to_csv(index=False))
    atomic_write_json(
        folder / "meta.json",
        {"version": CACHE_VERSION, "n": len(faces), "settings": settings.__dict__},
    )


def _build(manifest: Manifest, settings: Settings, workers: int, progress: bool) -> FaceArrays:
    frame = manifest.frame.reset_index(drop=True)
    mask_paths = frame["mask_path"] if "mask_path" in frame else [""] * len(frame)
    rows = list(zip(frame["path"].astype(str), mask_paths, strict=True))
    worker = _Worker(settings)
    results = _map(worker, rows, workers, progress, f"preprocessing {len(rows)} images")
    size, n_regions = settings.size, len(REGIONS)
    keep, crops, masks, reasons, sources, n_faces, skipped = [], [], [], [], [], [], []
    for i, (crop, mask, reason, source, found) in enumerate(results):
        if crop is None:  # nothing to crop: unreadable, or no face box at all
            skipped.append(
                {"path": rows[i][0], "label": frame["label"][i], "reason": reason or "no face"}
            )
            continue
        keep.append(i)
        crops.append(crop)
        masks.append(
            mask if mask is not None and not reason else np.zeros((n_regions, size, size), np.uint8)
        )
        reasons.append(reason)
        sources.append(source if not reason else "none")
        n_faces.append(found)
    kept = frame.iloc[keep].reset_index(drop=True)
    kept["excluded"], kept["mask_source"], kept["n_faces"] = reasons, sources, n_faces
    return FaceArrays(
        np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        np.stack(masks).astype(np.uint8)
        if masks
        else np.zeros((0, n_regions, size, size), np.uint8),
        kept,
        pd.DataFrame(skipped, columns=["path", "label", "reason"]),
    )


def crop_images(
    paths: Sequence[str | Path], settings: Settings, workers: int = 1, progress: bool = True
) -> list[tuple[Any, ...]]:
    """The cache's preprocessing applied to arbitrary image files (predict.py), uncached: per
    file `(crop, masks, excluded_reason, mask_source, n_faces)`, crop None when the file gave
    no face crop at all (reason says why)."""
    rows = [(str(p), "") for p in paths]
    return _map(_Worker(settings), rows, workers, progress, f"preprocessing {len(rows)} images")


def _map(fn: Callable, items: Sequence, workers: int, progress: bool, what: str) -> list:
    """Ordered map over a process pool, with a rich progress bar."""
    it: Iterable
    if workers > 1 and len(items) > 1:
        import multiprocessing as mp

        # forkserver, not fork: forking a process whose OpenCV/dlib/OpenMP threads already ran
        # deadlocks the children (seen here); spawn would re-import everything per worker.
        pool = mp.get_context("forkserver").Pool(workers, initializer=_one_thread)
        it = pool.imap(fn, items, chunksize=max(1, min(64, len(items) // (8 * workers))))
    else:
        pool, it = None, map(fn, items)
    try:
        if progress:
            from rich.progress import track

            it = track(it, total=len(items), description=what, transient=True)
        return list(it)
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _one_thread() -> None:
    # One process per core: OpenCV's own thread pool in every worker only oversubscribes.
    cv2.setNumThreads(1)


# -- reports ------------------------------------------------------------------------------------
def excluded_report(faces: FaceArrays) -> pd.DataFrame:
    """path, class, reason of every image that is not a usable segmented face."""
    ex = faces.frame[faces.frame["excluded"] != ""]
    rows = [
        pd.DataFrame({"path": ex["path"], "class": ex["label"], "reason": ex["excluded"]}),
        faces.skipped.rename(columns={"label": "class"})[["path", "class", "reason"]],
    ]
    return pd.concat(rows, ignore_index=True).sort_values(["class", "path"], ignore_index=True)


def table1(manifest: Manifest, faces: FaceArrays) -> pd.DataFrame:
    """Study A's Table 1 for one dataset: per class, original vs processed counts.

    `original` counts the scan's images, `processed` the faces whose regions were segmented;
    `unreadable` and `excluded` split the difference.
    """
    orig = manifest.frame["label"].value_counts()
    usable = faces.frame.loc[faces.frame["excluded"] == "", "label"].value_counts()
    unread = faces.skipped.loc[
        faces.skipped["reason"].str.startswith("unreadable"), "label"
    ].value_counts()
    rows = []
    for c in CANONICAL:
        if c not in orig:
            continue
        o, p, u = int(orig[c]), int(usable.get(c, 0)), int(unread.get(c, 0))
        rows.append(
            {
                "class": c,
                "original": o,
                "processed": p,
                "unreadable": u,
                "excluded": o - p - u,
                "excluded_pct": round(100 * (o - p) / o, 2),
            }
        )
    return pd.DataFrame(rows)


def settings_from(cfg: Any, data_cfg: Any, default_size: int) -> Settings:
    """Settings from a `preprocess` config node and a data config: a data config whose
    `preprocess` is a method name (ready crops, e.g. the synthetic set) overrides the method;
    its `cache_size` (else `default_size`) is the crop size."""
    method = data_cfg.get("preprocess")
    return Settings(
        method=str(method if isinstance(method, str) else cfg.get("method", "landmarks")),
        size=int(data_cfg.get("cache_size") or default_size),
        margin=float(cfg.get("margin", 0.25)),
        upsample=int(cfg.get("upsample", 1)),
    )
