"""RAF-DB (basic): a label list plus an image folder, with the official train/test split.

Layout (../shared/DATASETS.md §8)::

    basic/EmoLabel/list_patition_label.txt     ("patition" sic) lines "train_00001.jpg 5"
    basic/Image/aligned/train_00001_aligned.jpg
    basic/Image/original/train_00001.jpg

List lines are ``<name> <label>`` (split from the ``train_``/``test_`` prefix) or, in one
re-packed copy, ``<name> <train|test> <label>``; labels 1..7 = surprise, fear, disgust,
happiness, sadness, anger, neutral. The Kaggle re-pack ``DATASET/{train,test}/{1..7}/*.jpg``
(same codes as folder names) is read too when no label list exists. No subject ids.
"""

from __future__ import annotations

import re
from pathlib import Path

from fer.data.manifest import Manifest
from fer.data.sources.layout import (
    NOT_IMAGE,
    absolute_root,
    build_manifest,
    files_under,
    is_image,
    layout_error,
    non_data_reason,
    rel,
    skipped,
)
from fer.errors import ConfigError
from fer.labels import to_canonical

NAME = "rafdb"
IMAGE_SETS = ("aligned", "original")
#: The file's real (misspelt) name first; the corrected spelling is accepted too.
LIST_NAMES = ("list_patition_label.txt", "list_partition_label.txt")
SPLITS = ("train", "test")
EXPECTED = (
    "basic/EmoLabel/list_patition_label.txt with basic/Image/aligned/ (or original/), "
    "or the re-pack DATASET/{train,test}/{1..7}/<images>"
)
_NAME_RE = re.compile(r"^(train|test)_", re.IGNORECASE)


def scan(root: str | Path, images: str = "aligned") -> Manifest:
    """Scan RAF-DB basic under `root` (``basic/`` itself or any folder above it).

    `images`: ``"aligned"`` (100×100 aligned faces, names ``<name>_aligned.jpg``) or
    ``"original"``. Extra column ``official_split`` (train/test). Every other file under the
    root (annotations, the other image set, the compound set) is listed as skipped.
    """
    if images not in IMAGE_SETS:
        raise ConfigError(f"data.source.images={images!r}; expected one of {list(IMAGE_SETS)}")
    root = absolute_root(root, NAME)
    files = list(files_under(root))
    lists = [
        p
        for p in files
        if p.name.lower() in LIST_NAMES and not _in_compound(p, root) and p.is_file()
    ]
    if lists:
        records, skips = _scan_list(root, files, lists, images)
    else:
        records, skips = _scan_repack(root, files)
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    return build_manifest(records, skips)


def _in_compound(path: Path, root: Path) -> bool:
    """RAF-DB's compound set ships a list of the same name with labels 1..11: never read it."""
    return "compound" in (p.lower() for p in path.relative_to(root).parts)


def _scan_list(
    root: Path, files: list[Path], lists: list[Path], images: str
) -> tuple[list[dict], list[dict]]:
    lst = lists[0]
    base = lst.parent.parent if lst.parent.name.lower() == "emolabel" else lst.parent
    image_dir = base / "Image" / images
    if not image_dir.is_dir():
        raise layout_error(NAME, root, EXPECTED)
    on_disk = {p.name: p for p in files if p.parent == image_dir}
    records: list[dict] = []
    skips: list[dict] = []
    used: set[Path] = {lst}
    # Images whose list line was rejected: reported with that line, not as "not listed".
    rejected: dict[Path, str] = {}
    for i, line in enumerate(lst.read_text(encoding="utf-8-sig").splitlines()):
        if not line.strip():
            continue
        row, reason = _list_row(line.split(), images)
        path = on_disk.get(row["file"]) if row else None
        if reason is None:
            if path is None:
                reason = f"image {row['file']} not found in {rel(image_dir, root)}/"
            elif path in used:
                reason = f"{row['file']} listed twice"
            else:
                used.add(path)
        if reason is not None:
            skips.append(skipped(f"{lst}::{i}", reason))
            if path is not None and path not in used:
                rejected.setdefault(path, f"its line {lst.name}::{i} was skipped ({reason})")
            continue
        records.append(
            {
                "path": str(path),
                "label": row["label"],
                "subject": "",
                "dataset": NAME,
                "official_split": row["split"],
            }
        )
    for path in files:
        if path in used:
            continue
        reason = non_data_reason(path) or rejected.get(path)
        if reason is None and path.parent == image_dir:
            reason = f"not in {lst.name}" if is_image(path) else NOT_IMAGE
        if reason is None and path in lists:
            reason = f"another RAF-DB label list; {rel(lst, root)} is read"
        if reason is None:
            reason = f"not read: RAF-DB basic uses {rel(lst, root)} and {rel(image_dir, root)}/"
        skips.append(skipped(path, reason))
    return records, skips


def _list_row(tokens: list[str], images: str) -> tuple[dict | None, str | None]:
    """``name label`` or ``name split label`` (either order of split and label).

    Returns (row, None), (None, reason) for an unreadable line, or (row with its image file
    name, reason) when the name is readable but the rest is not.
    """
    if len(tokens) not in (2, 3):
        return None, "expected '<name> <label>' or '<name> <train|test> <label>'"
    name = tokens[0]
    m = _NAME_RE.match(name)
    if m is None:
        return None, f"name {name!r} has no train_/test_ prefix"
    stem, dot, ext = name.rpartition(".")
    row = {
        "file": f"{stem}_aligned.{ext}" if images == "aligned" and dot else name,
        "split": m[1].lower(),
    }
    rest = tokens[1:]
    if len(rest) == 2:
        given = [t for t in rest if t.lower() in SPLITS]
        if len(given) != 1:
            return row, "expected '<name> <train|test> <label>'"
        if given[0].lower() != row["split"]:
            return row, f"split column {given[0]!r} contradicts the name prefix {m[1]}_"
        rest = [t for t in rest if t is not given[0]]
    row["label"] = to_canonical(NAME, rest[0])
    if row["label"] is None:
        return row, f"unknown label code {rest[0]!r}"
    return row, None


def _scan_repack(root: Path, files: list[Path]) -> tuple[list[dict], list[dict]]:
    """The Kaggle re-pack: ``<split>/<code>/<name>``, the split confirmed by the name."""
    records: list[dict] = []
    skips: list[dict] = []
    for path in files:
        reason = non_data_reason(path) or (None if is_image(path) else NOT_IMAGE)
        split = path.parent.parent.name.lower()
        label = to_canonical(NAME, path.parent.name)
        if reason is None and (split not in SPLITS or label is None):
            reason = "not in a <train|test>/<1..7>/ folder"
        m = _NAME_RE.match(path.name)
        if reason is None and m is not None and m[1].lower() != split:
            reason = f"name prefix {m[1]}_ contradicts split folder {path.parent.parent.name}/"
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
