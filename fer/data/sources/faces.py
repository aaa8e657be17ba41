"""FACES (Max Planck; Ebner et al. 2010): a flat folder of ``<id>_<age>_<gender>_<expr>_<set>.jpg``.

Layout and grammar: ../shared/DATASETS.md §2. The same letter means different things by
position (``116_m_m_f_a.jpg``: middle-aged, male, fear, picture set a), so names are parsed
field by field, never by substring. Six expressions, no surprise.
"""

from __future__ import annotations

import logging
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
from fer.labels import DATASET_LABELS, to_canonical

log = logging.getLogger(__name__)

NAME = "faces"
GRAMMAR = "<id>_<age y|m|o>_<gender m|f>_<expression a|d|f|h|n|s>_<set a|b>.jpg"
EXPECTED = f"a folder of FACES images named {GRAMMAR}, e.g. 116_m_m_f_a.jpg"
#: Field 2 and 3 codes (kept as extra columns: age group is a known domain factor).
AGES = {"y": "young", "m": "middle", "o": "older"}
GENDERS = {"m": "male", "f": "female"}
SETS = ("a", "b")


def scan(root: str | Path) -> Manifest:
    """Scan a FACES folder (any wrapper folders, e.g. ``bilder/``, are searched too).

    Subject = the 3-digit person id as written (``"004"``). Extra columns: ``age``
    (young/middle/older), ``gender``, ``picture_set`` (a/b). A person without all 6×2
    pictures is kept and logged (see `missing_pictures`).
    """
    root = absolute_root(root, NAME)
    records: list[dict] = []
    skips: list[dict] = []
    seen: dict[tuple[str, str, str], Path] = {}
    for path in files_under(root):
        reason = non_data_reason(path) or (None if is_image(path) else NOT_IMAGE)
        fields = None
        if reason is None:
            fields, reason = _parse(path.stem)
        if reason is None:  # the same picture in two mirror folders / formats
            reason = duplicate_reason(
                (fields["subject"], fields["label"], fields["picture_set"]), path, seen, root
            )
        if reason is not None:
            skips.append(skipped(path, reason))
            continue
        records.append({"path": str(path), "dataset": NAME, **fields})
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    manifest = build_manifest(records, skips)
    missing = missing_pictures(manifest)
    if missing:
        log.warning(
            "faces: %d person(s) without the full 12 pictures: %s",
            len(missing),
            "; ".join(f"{s} lacks {', '.join(m)}" for s, m in missing.items()),
        )
    return manifest


def _parse(stem: str) -> tuple[dict | None, str | None]:
    """Fields of a FACES file stem, or the reason it cannot be read. Tolerates upper case."""
    parts = stem.lower().split("_")
    if len(parts) != 5:
        return None, f"name does not match {GRAMMAR}"
    pid, age, gender, expr, pset = parts
    if not (len(pid) == 3 and pid.isdigit()):
        return None, f"person id {pid!r} is not 3 digits"
    if age not in AGES:
        return None, f"unknown age code {age!r} (field 2)"
    if gender not in GENDERS:
        return None, f"unknown gender code {gender!r} (field 3)"
    label = to_canonical(NAME, expr)
    if label is None:
        return None, f"unknown expression code {expr!r} (field 4)"
    if pset not in SETS:
        return None, f"unknown picture set {pset!r} (field 5)"
    return {
        "label": label,
        "subject": pid,
        "age": AGES[age],
        "gender": GENDERS[gender],
        "picture_set": pset,
    }, None


def missing_pictures(manifest: Manifest) -> dict[str, list[str]]:
    """Per person without the full set: the missing ``<label>/<set>`` pictures, sorted.

    The FACES release has 6 expressions × 2 picture sets per person; a shortfall is not an
    error (the images present are valid) but it changes per-subject class balance.
    """
    expected = {(c, s) for c in DATASET_LABELS[NAME].values() for s in SETS}
    have: dict[str, set[tuple[str, str]]] = {}
    for subj, label, pset in manifest.frame[["subject", "label", "picture_set"]].itertuples(
        index=False
    ):
        have.setdefault(subj, set()).add((label, pset))
    return {
        s: [f"{c}/{p}" for c, p in sorted(expected - got)]
        for s, got in sorted(have.items())
        if expected - got
    }
