"""KDEF: ``KDEF/AF01/AF01ANS.JPG`` = session A, female 01, afraid, straight view.

Grammar (../shared/DATASETS.md §8), parsed by position because the letters collide (a leading
``AF`` is session A + female; the expression ``AF`` is afraid)::

    <session A|B><gender F|M><id 01-35><expression AF|AN|DI|HA|NE|SA|SU><view S|HL|HR|FL|FR>.JPG

Subject = gender + id (``F01``): sessions A and B photograph the same person, so both must
land in the same fold. Only the views in `views` are read (frontal ``S`` by default).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from fer.data.manifest import Manifest
from fer.data.sources.layout import (
    NOT_IMAGE,
    absolute_root,
    build_manifest,
    duplicate_reason,
    files_under,
    is_image,
    layout_error,
    non_data_reason,
    skipped,
)
from fer.errors import ConfigError
from fer.labels import to_canonical

NAME = "kdef"
VIEWS = ("S", "HL", "HR", "FL", "FR")
GRAMMAR = "<session A|B><gender F|M><id 2 digits><expression 2 letters><view S|HL|HR|FL|FR>.JPG"
EXPECTED = f"person folders KDEF/<AF01>/ of images named {GRAMMAR}, e.g. AF01ANS.JPG"
_NAME_RE = re.compile(
    r"^(?P<session>[AB])(?P<gender>[FM])(?P<id>\d{2})(?P<expr>[A-Z]{2})(?P<view>S|HL|HR|FL|FR)$",
    re.IGNORECASE,
)
_PERSON_DIR_RE = re.compile(r"^[AB][FM]\d{2}$", re.IGNORECASE)


def scan(root: str | Path, views: Sequence[str] = ("S",)) -> Manifest:
    """Scan a KDEF copy (person folders at any depth under `root`).

    Extra columns ``session`` (A/B) and ``view``. Images of views not in `views` are listed as
    skipped, as is a file whose name disagrees with its person folder (KDEF has a few
    misnamed files; which of the two is right cannot be told).
    """
    views = _check_views(views)
    root = absolute_root(root, NAME)
    records: list[dict] = []
    skips: list[dict] = []
    seen: dict[str, Path] = {}
    for path in files_under(root):
        reason = non_data_reason(path) or (None if is_image(path) else NOT_IMAGE)
        m = None
        if reason is None:
            m = _NAME_RE.match(path.stem)
            if m is None:
                reason = f"name does not match {GRAMMAR}"
        label = to_canonical(NAME, m["expr"].upper()) if m else None
        if reason is None and label is None:
            reason = f"unknown expression code {m['expr']!r}"
        person = path.stem[:4].upper()
        folder = path.parent.name
        if reason is None and _PERSON_DIR_RE.match(folder) and folder.upper() != person:
            reason = f"name says {person} but the folder is {folder}/"
        if reason is None and m["view"].upper() not in views:
            reason = f"view {m['view'].upper()} not selected (views={list(views)})"
        if reason is None:  # the same picture in two mirror folders / formats
            reason = duplicate_reason(path.stem.upper(), path, seen, root)
        if reason is not None:
            skips.append(skipped(path, reason))
            continue
        records.append(
            {
                "path": str(path),
                "label": label,
                "subject": f"{m['gender']}{m['id']}".upper(),
                "dataset": NAME,
                "session": m["session"].upper(),
                "view": m["view"].upper(),
            }
        )
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    return build_manifest(records, skips)


def _check_views(views: Sequence[str]) -> tuple[str, ...]:
    if isinstance(views, str):  # views="S" from the command line
        views = [views]
    out = tuple(str(v).upper() for v in views)
    bad = [v for v in out if v not in VIEWS]
    if bad or not out:
        raise ConfigError(f"data.source.views={list(views)}: expected a subset of {list(VIEWS)}")
    return out
