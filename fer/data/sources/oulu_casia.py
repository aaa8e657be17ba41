"""Oulu-CASIA NIR&VIS: one neutral -> apex sequence per subject x expression
(../shared/DATASETS.md §1).

Layout, found by search under any wrapper folders (`B_OriginalImg/`, double-nested unzips, the
Kaggle mirror `Oulu_CASIA_NIR_VIS/VL/Strong/`):

    OriginalImg/VL/Strong/P001/Anger/000.jpeg 001.jpeg ...          (set B, original frames)
    PreProcessImg/VL_Acropped/Strong/P001/Anger/000.jpeg ...        (set C, cropped frames)

Frames are numbered from 000; numeric order is temporal order. There is no neutral class:
`neutral=True` labels the first (onset) frame of each sequence neutral.
"""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

from fer.data.manifest import Manifest
from fer.data.sources.layout import (
    JUNK_NAMES,
    check_frame_options,
    check_root,
    files_under,
    find_dirs,
    is_image,
    layout_error,
    onset_apex,
    skipped,
)
from fer.errors import ConfigError, DataError
from fer.labels import DATASET_LABELS, to_canonical

NAME = "oulu_casia"
SYSTEMS: tuple[str, ...] = ("VL", "NI")
ILLUMINATIONS: tuple[str, ...] = ("Strong", "Weak", "Dark")
#: `all`: every frame (study A's 10,379 VL/Strong images); `apex`: the last `n_apex` frames.
FRAMES: tuple[str, ...] = ("all", "apex")
#: Which copy when a root holds both: `auto` takes the original frames if present.
VARIANTS: tuple[str, ...] = ("auto", "original", "cropped")
#: Every `<system>/<illumination>` folder of either set: files in the ones not selected are
#: excluded by an option, not unknown.
_SYSTEM_DIRS = frozenset(SYSTEMS) | {f"{s}_Acropped" for s in SYSTEMS}
SUBJECT = re.compile(r"P\d{3}")
FRAME = re.compile(r"\d+")


def scan(
    root: str | Path,
    system: str = "VL",
    illumination: str = "Strong",
    frames: str = "all",
    n_apex: int = 3,
    neutral: bool = False,
    variant: str = "auto",
) -> Manifest:
    """Manifest of one system/illumination of Oulu-CASIA.

    `frames='all'` keeps every frame of each sequence, `'apex'` its last `n_apex`;
    `neutral=True` relabels (all) or adds (apex) the first frame as neutral, never both.
    `variant` picks original (`<system>/<illumination>`) or cropped
    (`<system>_Acropped/<illumination>`) frames; `auto` prefers the original ones.
    Several copies of the chosen kind under `root` are refused (DataError listing them).
    """
    _check(system, SYSTEMS, "system")
    _check(illumination, ILLUMINATIONS, "illumination")
    _check(frames, FRAMES, "frames")
    _check(variant, VARIANTS, "variant")
    check_frame_options(n_apex, neutral)
    root = check_root(root, NAME)
    expected = (
        f"<root>/.../{system}/{illumination}/P001/Anger/000.jpeg (OriginalImg, or "
        f"PreProcessImg/{system}_Acropped/{illumination}; any wrapper folders)"
    )
    base = _locate(root, system, illumination, variant, expected)

    seqs: dict[tuple[str, str], list[tuple[int, str, Path]]] = defaultdict(list)
    skips: list[dict] = []
    for f in files_under(root):
        if f.name in JUNK_NAMES:
            skips.append(skipped(f, "junk file"))
        elif f.is_relative_to(base):
            _frame_file(f, f.relative_to(base).parts, seqs, skips)
        elif not _in_other_set(f.relative_to(root).parts[:-1]):
            skips.append(skipped(f, f"outside {base.parent.name}/{base.name}"))

    records: list[dict] = []
    for subject_dir in sorted(d for d in base.iterdir() if d.is_dir()):
        if not SUBJECT.fullmatch(subject_dir.name):
            continue  # its files are already reported as an unknown subject folder
        for expr in sorted(DATASET_LABELS[NAME]):
            seq_dir = subject_dir / expr
            found = seqs.get((subject_dir.name, expr))
            if not found:
                # Published lists drop a few sequences and some copies hold empty folders:
                # both are data problems worth a line in the report.
                reason = "empty sequence" if seq_dir.is_dir() else "missing sequence (no folder)"
                skips.append(skipped(seq_dir, reason))
                continue
            label = to_canonical(NAME, expr)
            ordered = [(num, path) for _, num, path in sorted(found)]
            if frames == "all":
                chosen = [(fr, neutral and i == 0) for i, fr in enumerate(ordered)]
            else:
                chosen = onset_apex(ordered, n_apex, neutral)
            for (num, path), is_neutral in chosen:
                records.append(
                    {
                        "path": str(path),
                        "label": "neutral" if is_neutral else label,
                        "subject": subject_dir.name,
                        "dataset": NAME,
                        "sequence": f"{subject_dir.name}/{expr}",
                        "frame": num,
                    }
                )
    if not records:
        raise layout_error(NAME, root, expected)
    return Manifest.from_records(records, sorted(skips, key=lambda r: r["path"]))


def _check(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"data.source.{key}={value!r}: expected one of {list(allowed)}")


def _locate(root: Path, system: str, illumination: str, variant: str, expected: str) -> Path:
    """The one `<system>[_Acropped]/<illumination>` folder to read, found by search."""
    original = find_dirs(root, (system, illumination))
    cropped = find_dirs(root, (f"{system}_Acropped", illumination))
    hits = {"original": original, "cropped": cropped, "auto": original or cropped}[variant]
    if not hits:
        raise layout_error(NAME, root, expected)
    if len(hits) > 1:
        # Two copies would double every image and could leak a subject across folds.
        raise DataError(
            f"{root}: several copies of {hits[0].parent.name}/{illumination} "
            f"({', '.join(map(str, hits))}); point data.root at the folder holding one copy"
        )
    return hits[0]


def _in_other_set(dirs: tuple[str, ...]) -> bool:
    """True inside any `<system>/<illumination>` folder (one the options did not select)."""
    return any(a in _SYSTEM_DIRS and b in ILLUMINATIONS for a, b in pairwise(dirs))


def _frame_file(
    f: Path,
    parts: tuple[str, ...],
    seqs: dict[tuple[str, str], list[tuple[int, str, Path]]],
    skips: list[dict],
) -> None:
    """Sort one file under the selected folder into its sequence, or report why not."""
    if len(parts) == 1:
        skips.append(skipped(f, "not in a P<NNN>/<Expression> folder"))
    elif not SUBJECT.fullmatch(parts[0]):
        skips.append(skipped(f, f"unknown subject folder '{parts[0]}'"))
    elif len(parts) == 2:
        skips.append(skipped(f, "not in an expression folder"))
    elif to_canonical(NAME, parts[1]) is None:
        skips.append(skipped(f, f"unknown expression folder '{parts[1]}'"))
    elif len(parts) > 3:
        skips.append(skipped(f, f"nested folder inside {parts[0]}/{parts[1]}"))
    elif not is_image(f):
        skips.append(skipped(f, "not an image"))
    elif not FRAME.fullmatch(f.stem):
        skips.append(skipped(f, "frame name is not NNN.jpeg"))
    else:
        seqs[(parts[0], parts[1])].append((int(f.stem), f.stem, f))
