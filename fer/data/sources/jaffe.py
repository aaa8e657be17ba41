"""JAFFE: a flat folder of ``<subject>.<expr><rep>.<serial>.tiff`` (e.g. ``KA.AN1.39.tiff``).

Layout and grammar: ../shared/DATASETS.md §3. 10 subjects (the 2-letter prefix), 7 classes
including neutral, 213 images. Mirrors use ``.tif``/``.png`` or add class sub-folders
(``jaffe/Angry/KA.AN3.41.tiff``); the label always comes from the file name.
"""

from __future__ import annotations

import re
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
from fer.labels import to_canonical

NAME = "jaffe"
GRAMMAR = "<subject>.<expression><n>.<serial>.tiff"
EXPECTED = f"a flat folder of JAFFE images named {GRAMMAR}, e.g. KA.AN1.39.tiff"
# The serial is a global picture number (non-contiguous, up to 219): kept as metadata only,
# it is what the semantic-ratings table is keyed on.
_NAME_RE = re.compile(
    r"^(?P<subject>[A-Za-z]{2})\.(?P<expr>[A-Za-z]{2})(?P<rep>\d+)\.(?P<serial>\d+)$"
)


def scan(root: str | Path) -> Manifest:
    """Scan a JAFFE folder (sub-folders searched too). Subject = the 2-letter prefix.

    Extra column ``serial`` (the picture number in the name). ``README_FIRST.txt`` and other
    non-image files are reported as skipped.
    """
    root = absolute_root(root, NAME)
    records: list[dict] = []
    skips: list[dict] = []
    seen: dict[str, Path] = {}
    for path in files_under(root):
        reason = non_data_reason(path) or (None if is_image(path) else NOT_IMAGE)
        m = label = None
        if reason is None:
            m = _NAME_RE.match(path.stem)
            if m is None:
                reason = f"name does not match {GRAMMAR}"
        if m is not None:
            label = to_canonical(NAME, m["expr"].upper())
            if label is None:
                reason = f"unknown expression code {m['expr']!r}"
        if reason is None:  # the same picture in two mirror folders / formats
            reason = duplicate_reason(path.stem.upper(), path, seen, root)
        if reason is not None:
            skips.append(skipped(path, reason))
            continue
        records.append(
            {
                "path": str(path),
                "label": label,
                "subject": m["subject"].upper(),
                "dataset": NAME,
                "serial": m["serial"],
            }
        )
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    return build_manifest(records, skips)
