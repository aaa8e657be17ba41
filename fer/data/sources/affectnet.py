"""AffectNet (manually annotated part): two CSV lists plus an image tree; official train/val.

Assumed layout (../shared/DATASETS.md §8; the original distribution)::

    Manually_Annotated_file_lists/training.csv     (-> official_split train)
    Manually_Annotated_file_lists/validation.csv   (-> official_split val)
    Manually_Annotated_Images/<subDirectory>/<name>.jpg

CSV columns ``subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks, expression, valence, arousal``; image paths are relative to
``Manually_Annotated_Images/`` (or to the root when no such folder exists). A list without a
header line is read in that column order (some copies lack it [unverified]).
``expression``: 0 neutral, 1 happiness, 2 sadness, 3 surprise, 4 fear, 5 disgust, 6 anger,
7 contempt; 8 None, 9 Uncertain, 10 No-Face are not emotions and are skipped with reason.

When no list exists, the re-packed mirror form ``<train|val|validation|test>/<class>/<image>``
is read, ``<class>`` being an AffectNet code 0..7 or a class name (canonical or a common
spelling such as ``happy``). No subject ids.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fer.data.manifest import Manifest
from fer.data.sources.layout import (
    NOT_IMAGE,
    absolute_root,
    build_manifest,
    class_lookup,
    files_under,
    find_dirs,
    is_image,
    layout_error,
    non_data_reason,
    rel,
    skipped,
)
from fer.labels import to_canonical

NAME = "affectnet"
LISTS = {"training.csv": "train", "validation.csv": "val"}
IMAGE_DIR = "Manually_Annotated_Images"
COLUMNS = (
    "subdirectory_filepath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
NOT_EMOTION = {"8": "None", "9": "Uncertain", "10": "No-Face"}
MIRROR_SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
#: Class-folder spellings seen in re-packed mirrors, besides the canonical names.
MIRROR_ALIASES = {
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
}
EXPECTED = (
    "Manually_Annotated_file_lists/{training,validation}.csv with "
    f"{IMAGE_DIR}/<subDirectory>/<image>, or class folders <train|val>/<0..7 or class>/<image>"
)


def scan(root: str | Path) -> Manifest:
    """Scan AffectNet under `root`; extra column ``official_split`` (train/val).

    Rows whose image is missing, or whose expression is 8-10 or unknown, are skipped as
    ``<csv>::<row>`` (row = 0-based data row). Files under the root that no list names
    (e.g. the automatically annotated set) are listed as skipped.
    """
    root = absolute_root(root, NAME)
    files = list(files_under(root))
    lists = _find_lists(files)
    if lists:
        records, skips = _scan_lists(root, files, lists)
    else:
        records, skips = _scan_mirror(root, files)
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    return build_manifest(records, skips)


def _find_lists(files: list[Path]) -> dict[Path, str]:
    """training.csv / validation.csv: the copy inside ``Manually_Annotated_file_lists/`` wins."""
    found: dict[str, Path] = {}
    for p in sorted(files, key=lambda p: (p.parent.name != "Manually_Annotated_file_lists", p)):
        name = p.name.lower()
        if name in LISTS and name not in found and p.is_file():  # not a broken link
            found[name] = p
    return {p: LISTS[name] for name, p in sorted(found.items(), key=lambda kv: kv[0])}


def _scan_lists(
    root: Path, files: list[Path], lists: dict[Path, str]
) -> tuple[list[dict], list[dict]]:
    dirs = find_dirs(root, (IMAGE_DIR,))
    image_dir = dirs[0] if dirs else root
    on_disk = {rel(p, image_dir): p for p in files if p.is_relative_to(image_dir)}
    records: list[dict] = []
    skips: list[dict] = []
    used: set[Path] = set(lists)
    # Images whose row was rejected (e.g. expression 8): reported with that row.
    rejected: dict[Path, str] = {}
    for lst, split in lists.items():
        for i, row in enumerate(_read_list(lst)):
            if isinstance(row, str):
                skips.append(skipped(f"{lst}::{i}", row))
                continue
            sub = row.get("subdirectory_filepath", "").replace("\\", "/").strip("/")
            path = on_disk.get(sub)
            code = row.get("expression", "")
            label = to_canonical(NAME, code)
            if code in NOT_EMOTION:
                reason = f"expression {code} ({NOT_EMOTION[code]}) is not an emotion class"
            elif label is None:
                reason = f"unknown expression code {code!r}"
            elif path is None:
                reason = f"image {sub} not found under {rel(image_dir, root) or '.'}/"
            elif path in used:
                reason = f"image {sub} already listed"
            else:
                reason = None
            if reason is not None:
                skips.append(skipped(f"{lst}::{i}", reason))
                if path is not None and path not in used:
                    rejected.setdefault(path, f"its row {lst.name}::{i} was skipped ({reason})")
                continue
            used.add(path)
            records.append(
                {
                    "path": str(path),
                    "label": label,
                    "subject": "",
                    "dataset": NAME,
                    "official_split": split,
                }
            )
    for path in files:
        if path in used:
            continue
        reason = non_data_reason(path) or rejected.get(path)
        if reason is None:
            reason = (
                f"not in {' or '.join(p.name for p in lists)}"
                if is_image(path)
                else "not read (AffectNet reads the manual annotation lists and their images)"
            )
        skips.append(skipped(path, reason))
    return records, skips


def _read_list(path: Path):
    """Yield each data row as a dict (lower-cased column names), or a reason string."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        first = next(reader, None)
        if first is None:
            return
        header = [h.strip().lower() for h in first]
        if "subdirectory_filepath" in header and "expression" in header:
            columns = header
        else:  # no header line: the standard column order; the first line is data
            columns = list(COLUMNS)
            yield _row_dict(first, columns)
        for row in reader:
            if row:
                yield _row_dict(row, columns)


def _row_dict(row: list[str], columns: list[str]) -> dict | str:
    if len(row) < len(columns):
        return f"expected {len(columns)} fields, got {len(row)}"
    return {c: v.strip() for c, v in zip(columns, row, strict=False)}


def _scan_mirror(root: Path, files: list[Path]) -> tuple[list[dict], list[dict]]:
    """The re-packed class-folder form ``<split>/<class>/<image>`` (split and class by folder)."""
    names = class_lookup(MIRROR_ALIASES)
    records: list[dict] = []
    skips: list[dict] = []
    for path in files:
        reason = non_data_reason(path) or (None if is_image(path) else NOT_IMAGE)
        folder = path.parent.name
        label = to_canonical(NAME, folder) or names.get(folder.lower())
        split = MIRROR_SPLITS.get(path.parent.parent.name.lower())
        if reason is None and (label is None or split is None):
            reason = "not in a <train|val|test>/<class>/ folder"
        if reason is not None:
            skips.append(skipped(path, reason))
            continue
        records.append(
            {
                "path": str(path),
                "label": label,
                "subject": "",
                "dataset": NAME,
                "official_split": split,
            }
        )
    return records, skips
