"""FER2013: the Kaggle CSV releases or the class-folder mirror, with the official Usage split.

Layouts: ../shared/DATASETS.md §4.

- CSV: ``fer2013.csv`` (``emotion,pixels,Usage``), ``icml_face_data.csv`` (``emotion, Usage,
  pixels``: leading spaces, other order) or the competition ``train.csv`` (``emotion,pixels``,
  Training rows only; ``test.csv`` has no labels). Header names are stripped and matched
  case-insensitively, in any order. A row has no image file: its manifest path is
  ``"<absolute csv path>::<row>"`` (row = 0-based data row, header not counted) and
  `load_pixels` returns its 48×48 image.
- Folders (Kaggle ``msambare/fer2013``): ``train/<class>/Training_*.jpg`` and
  ``test/<class>/{PublicTest,PrivateTest}_*.jpg``. ``test/`` mixes the two test sets, so the
  file-name prefix gives the official split; the folder only confirms it.

Official split (extra column ``official_split``): Training -> train, PublicTest -> val,
PrivateTest -> test (28,709 / 3,589 / 3,589 in the full release). FER2013 has no subject ids.
"""

from __future__ import annotations

import csv
import functools
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer.data.manifest import Manifest
from fer.data.sources.layout import (
    NOT_IMAGE,
    build_manifest,
    check_root,
    files_under,
    is_image,
    layout_error,
    non_data_reason,
    skipped,
)
from fer.errors import ConfigError, DataError
from fer.labels import to_canonical

NAME = "fer2013"
SIDE = 48
N_PIXELS = SIDE * SIDE
VARIANTS = ("auto", "csv", "folder")
EXPECTED = (
    "a FER2013 CSV (fer2013.csv / icml_face_data.csv / train.csv with columns "
    "emotion, pixels[, Usage]) or class folders train/<class>/Training_*.jpg and "
    "test/<class>/PublicTest_*.jpg, PrivateTest_*.jpg"
)
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
#: Full releases in the order torchvision prefers them; other names follow, sorted by path.
RELEASE_ORDER = ("fer2013.csv", "icml_face_data.csv")
#: Class-folder spellings of another mirror (angry disgusted fearful happy neutral sad
#: surprised), mapped to the `fer2013_folder` codes of fer/labels.py.
FOLDER_SPELLINGS = {"disgusted": "disgust", "fearful": "fear", "surprised": "surprise"}
_PREFIX_RE = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)
_PREFIX_SPLIT = {p.lower(): s for p, s in USAGE_SPLIT.items()}
#: Split folders whose meaning is certain; "test" holds PublicTest *and* PrivateTest.
_SPLIT_DIRS = {
    "train": "train",
    "training": "train",
    "publictest": "val",
    "privatetest": "test",
    "test": "test/val",
    "testing": "test/val",
}
# Characters a pixel field may hold; `str.translate` deleting them must leave nothing.
_PIXEL_CHARS = str.maketrans("", "", "0123456789 \t")


def scan(root: str | Path, variant: str = "auto") -> Manifest:
    """Scan a FER2013 copy: `root` is a folder (or one CSV file with ``variant="csv"``).

    `variant`: ``"csv"``, ``"folder"`` or ``"auto"`` (a labelled CSV if there is one, else
    the class folders). Files of the form not used are listed as skipped, so nothing under
    the root goes unreported.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"data.source.variant={variant!r}; expected one of {list(VARIANTS)}")
    root_path = Path(root).expanduser()
    if root_path.is_file() and variant in ("auto", "csv"):
        # A single CSV given directly: use it, whatever its name.
        csv_path = root_path.absolute()
        kind = _csv_kind(csv_path)
        if kind not in ("full", "train"):
            raise _nothing_usable(csv_path, [skipped(csv_path, _csv_reason(kind))])
        records, skips = _scan_csv(csv_path, kind)
        if not records:
            raise _nothing_usable(csv_path, skips)
        return build_manifest(records, skips)

    root = check_root(root, NAME).absolute()
    files = list(files_under(root))
    csv_kinds = {p: _csv_kind(p) for p in files if p.suffix.lower() == ".csv"}
    chosen = _choose_csv(csv_kinds) if variant in ("auto", "csv") else None

    records: list[dict] = []
    skips: list[dict] = []
    if chosen is not None:
        for path in files:
            if path == chosen:
                rows, bad = _scan_csv(path, csv_kinds[path])
                records += rows
                skips += bad
            else:
                skips.append(skipped(path, _not_read_reason(path, csv_kinds, chosen)))
    elif variant in ("auto", "folder"):
        for path in files:
            reason = non_data_reason(path)
            if reason is None and path in csv_kinds:
                reason = f"{_csv_reason(csv_kinds[path])}; variant='folder' reads images only"
            if reason is None and not is_image(path):
                reason = NOT_IMAGE
            row = None
            if reason is None:
                row, reason = _folder_row(path)
            if reason is not None:
                skips.append(skipped(path, reason))
            else:
                records.append(row)
    if not records:
        raise _nothing_usable(root, skips)
    return build_manifest(records, skips)


def _nothing_usable(where: Path, skips: list[dict]) -> DataError:
    """The layout error, plus why the CSVs found gave no image (a CSV with a missing column,
    or whose every row was skipped, is the usual surprise)."""
    notes = [
        f"{Path(s['path']).name}: {s['reason']}"
        for s in skips
        if str(s["path"]).lower().endswith(".csv")
    ][:3]
    rows = [s for s in skips if "::" in str(s["path"])]
    if rows:
        first = rows[0]
        notes.append(
            f"{len(rows)} CSV row(s) skipped, e.g. {Path(first['path']).name}: {first['reason']}"
        )
    error = layout_error(NAME, where, EXPECTED)
    return DataError(f"{error}; found {'; '.join(notes)}") if notes else error


# ----------------------------------------------------------------------------- CSV form


def _csv_header(path: Path) -> list[str] | None:
    """Stripped, lower-cased header names (None when the file cannot be read as text)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip().lower() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _csv_kind(path: Path) -> str:
    """full (emotion, pixels, Usage), train (no Usage: the competition train.csv),
    no_usage (no Usage, another name), unlabelled (pixels only), unreadable or other."""
    header = _csv_header(path)
    if header is None:
        return "unreadable"
    if "pixels" not in header:
        return "other"
    if "emotion" not in header:
        return "unlabelled"
    if "usage" in header:
        return "full"
    # The competition train.csv holds exactly the 28,709 Training rows (§4), so its split is
    # known from its name; any other Usage-less CSV has no official split.
    return "train" if path.name.lower() == "train.csv" else "no_usage"


def _choose_csv(kinds: dict[Path, str]) -> Path | None:
    """The one CSV to read: a full release by `RELEASE_ORDER`, else the competition train.csv.

    Two full releases hold the same images; reading both would count every image twice.
    """

    def rank(p: Path) -> tuple[int, str]:
        name = p.name.lower()
        order = RELEASE_ORDER.index(name) if name in RELEASE_ORDER else len(RELEASE_ORDER)
        return order, str(p)

    for kind in ("full", "train"):
        found = sorted((p for p, k in kinds.items() if k == kind), key=rank)
        if found:
            return found[0]
    return None


def _csv_reason(kind: str) -> str:
    return {
        "full": "a FER2013 release",
        "train": "the FER2013 competition train.csv",
        "no_usage": "CSV without a Usage column: official split unknown",
        "unlabelled": "CSV without an emotion column (unlabelled test set)",
        "other": "not a FER2013 CSV (no pixels column)",
        "unreadable": "unreadable CSV (not UTF-8 text)",
    }[kind]


def _not_read_reason(path: Path, kinds: dict[Path, str], chosen: Path) -> str:
    reason = non_data_reason(path)
    if reason is not None:
        return reason
    if path in kinds:
        if kinds[path] in ("full", "train"):
            return f"{_csv_reason(kinds[path])}; {chosen.name} is read instead"
        return _csv_reason(kinds[path])
    if not is_image(path):
        return NOT_IMAGE
    return f"FER2013 CSV {chosen.name} is read instead of image files"


@dataclass(frozen=True)
class _Table:
    """One parsed FER2013 CSV: raw fields per data row and the pixels of the valid rows."""

    emotion: tuple[str, ...]  # "" where the CSV has no emotion column
    usage: tuple[str, ...]  # "" where the CSV has no Usage column
    error: tuple[str, ...]  # "" where the row's fields and pixels are fine
    slot: np.ndarray  # (rows,) int32: index into `pixels`, -1 where `error`
    pixels: np.ndarray  # (valid rows, 48, 48) uint8


@functools.lru_cache(maxsize=4)
def _table(csv_path: str, mtime_ns: int, size: int) -> _Table:
    """Parse a CSV once (cached per path and version): ~82 MB of uint8 for the full release."""
    del mtime_ns, size  # cache key only: a rewritten file is parsed again
    try:
        return _parse_table(csv_path)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(
            f"{csv_path}: unreadable CSV ({type(e).__name__}: {e}); expected UTF-8 text with "
            "columns emotion, pixels[, Usage]"
        ) from None


def _parse_table(csv_path: str) -> _Table:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip().lower() for h in next(reader, [])]
        if "pixels" not in header:
            raise DataError(f"{csv_path}: no 'pixels' column; expected {EXPECTED}")
        i_pix = header.index("pixels")
        i_emo = header.index("emotion") if "emotion" in header else None
        i_use = header.index("usage") if "usage" in header else None
        emotion, usage, error, slot, chunks = [], [], [], [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # np.fromstring's partial-read
            for row in reader:
                if not row:  # blank line (e.g. at the end): not a data row
                    continue
                emotion.append(row[i_emo].strip() if i_emo is not None and i_emo < len(row) else "")
                usage.append(row[i_use].strip() if i_use is not None and i_use < len(row) else "")
                if len(row) != len(header):
                    err, px = f"expected {len(header)} fields, got {len(row)}", None
                else:
                    err, px = _parse_pixels(row[i_pix])
                error.append(err)
                slot.append(len(chunks) if px is not None else -1)
                if px is not None:
                    chunks.append(px)
    pixels = np.stack(chunks) if chunks else np.zeros((0, SIDE, SIDE), np.uint8)
    return _Table(tuple(emotion), tuple(usage), tuple(error), np.array(slot, np.int32), pixels)


def _parse_pixels(text: str) -> tuple[str, np.ndarray | None]:
    """("", 48×48 uint8) or (reason, None). Fast path: C parser, no per-token Python strings."""
    if text.translate(_PIXEL_CHARS):
        return "pixels are not space-separated integers", None
    values = np.fromstring(text, dtype=np.int64, sep=" ")
    if values.size != N_PIXELS:
        return f"{values.size} pixel values, expected {N_PIXELS} (48×48)", None
    if values.min() < 0 or values.max() > 255:
        return "pixel value outside 0..255", None
    return "", values.astype(np.uint8).reshape(SIDE, SIDE)


def _load_table(csv_path: Path) -> _Table:
    st = os.stat(csv_path)
    return _table(str(csv_path), st.st_mtime_ns, st.st_size)


def _scan_csv(csv_path: Path, kind: str) -> tuple[list[dict], list[dict]]:
    """Rows of one CSV; rows that cannot be used are skipped as ``<csv>::<row>``."""
    table = _load_table(csv_path)
    records: list[dict] = []
    skips: list[dict] = []
    for i, (code, use, err) in enumerate(zip(table.emotion, table.usage, table.error, strict=True)):
        path = f"{csv_path}::{i}"
        label = to_canonical(NAME, code)
        split = _PREFIX_SPLIT.get(use.lower()) if kind == "full" else "train"
        if err and err.startswith("expected"):
            reason = err  # a malformed line: its other fields cannot be trusted either
        elif label is None:
            reason = f"unknown emotion code {code!r}"
        elif split is None:
            reason = f"unknown Usage {use!r}"
        else:
            reason = err
        if reason:
            skips.append(skipped(path, reason))
            continue
        records.append(
            {
                "path": path,
                "label": label,
                "subject": "",
                "dataset": NAME,
                "official_split": split,
            }
        )
    return records, skips


def load_pixels(path: str) -> np.ndarray:
    """The (48, 48) uint8 image of a manifest path ``"<csv>::<row>"`` (a fresh copy).

    The CSV is parsed once per file and process (cached); later calls are array lookups.
    """
    csv_part, sep, row_part = str(path).rpartition("::")
    if not sep or not row_part.isdigit():
        raise DataError(f"{path}: not a FER2013 CSV row path '<csv>::<row>'")
    table = _load_table(Path(csv_part))
    row = int(row_part)
    if row >= len(table.slot):
        raise DataError(f"{path}: the CSV has {len(table.slot)} data rows")
    slot = int(table.slot[row])
    if slot < 0:
        raise DataError(f"{path}: row has no valid pixels ({table.error[row]})")
    return table.pixels[slot].copy()


# -------------------------------------------------------------------------- folder form


def _folder_row(path: Path) -> tuple[dict | None, str | None]:
    """Manifest row of an image in ``<split>/<class>/<Usage>_<n>.jpg``, or why not."""
    folder = path.parent.name.lower()
    label = to_canonical("fer2013_folder", FOLDER_SPELLINGS.get(folder, folder))
    if label is None:
        return None, f"not in a FER2013 class folder (parent {path.parent.name!r})"
    from_dir = _SPLIT_DIRS.get(path.parent.parent.name.lower())
    m = _PREFIX_RE.match(path.name)
    from_name = _PREFIX_SPLIT[m[1].lower()] if m else None
    if from_name is not None:
        if from_dir is not None and from_name not in from_dir.split("/"):
            return None, (
                f"name prefix {m[1]}_ contradicts split folder {path.parent.parent.name}/"
            )
        split = from_name
    elif from_dir in ("train", "val", "test"):
        split = from_dir
    elif from_dir is not None:
        return None, (
            f"{path.parent.parent.name}/ mixes PublicTest and PrivateTest and the name has "
            "no PublicTest_/PrivateTest_ prefix: official split unknown"
        )
    else:
        return None, "no Training_/PublicTest_/PrivateTest_ prefix and no train/ or test/ folder"
    row = {"path": str(path), "label": label, "subject": "", "dataset": NAME}
    return {**row, "official_split": split}, None
