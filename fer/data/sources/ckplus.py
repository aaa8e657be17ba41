"""CK+ (Extended Cohn-Kanade): labelled neutral -> peak sequences (../shared/DATASETS.md §7).

Layout, under any wrapper folders (the four zips unpack side by side or in their own folders):

    cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
    Emotion/S005/001/S005_001_00000011_emotion.txt          ("   3.0000000e+00" = disgust)

Only 327 of the 593 sequences carry an emotion file ("if there is no file there is no emotion
label", README); the others are reported as "unlabelled sequence", one row per sequence folder.
The last frame is the labelled peak, so the last `n_apex` frames carry the label; the first
frame is neutral. `Landmarks/` and `FACS/` (companion zips) are known and not read.
"""

from __future__ import annotations

import re
from collections import defaultdict
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
from fer.errors import DataError
from fer.labels import to_canonical

NAME = "ckplus"
#: The image zip unpacks as either name (DATASETS.md §7).
IMAGE_DIRS: tuple[str, ...] = ("cohn-kanade-images", "extended-cohn-kanade-images")
EMOTION_DIR = "Emotion"
#: Other zips of the same distribution: known, not used, so not reported either.
COMPANION_DIRS: frozenset[str] = frozenset({"Landmarks", "FACS", "FACS_labels"})
SUBJECT = re.compile(r"S\d{3}")
SEQUENCE = re.compile(r"\d{3}")
#: Frame stem `S005_001_00000011`; the 8-digit 1-based index is the frame id.
FRAME = re.compile(r"(S\d{3})_(\d{3})_(\d+)")
EXPECTED = (
    "<root>/.../cohn-kanade-images/S005/001/S005_001_00000001.png and "
    "<root>/.../Emotion/S005/001/S005_001_00000011_emotion.txt (any wrapper folders)"
)


def scan(root: str | Path, n_apex: int = 3, neutral: bool = False) -> Manifest:
    """Manifest of the labelled CK+ sequences: last `n_apex` frames, plus the first as neutral.

    Contempt (code 2) is kept as "contempt"; an experiment's class list drops it if needed.
    """
    check_frame_options(n_apex, neutral)
    root = check_root(root, NAME)
    images = _single(root, [d for name in IMAGE_DIRS for d in find_dirs(root, (name,))])
    emotion = _single(root, find_dirs(root, (EMOTION_DIR,)))

    frames: dict[tuple[str, str], list[tuple[int, str, Path]]] = defaultdict(list)
    label_files: dict[tuple[str, str], list[tuple[Path, str]]] = defaultdict(list)
    skips: list[dict] = []
    for f in files_under(root):
        if f.name in JUNK_NAMES:
            skips.append(skipped(f, "junk file"))
        elif f.is_relative_to(images):
            _image_file(f, f.relative_to(images).parts, frames, skips)
        elif f.is_relative_to(emotion):
            _label_file(f, f.relative_to(emotion).parts, label_files, skips)
        elif not COMPANION_DIRS.intersection(f.relative_to(root).parts[:-1]):
            skips.append(skipped(f, f"outside {images.name}/ and {EMOTION_DIR}/"))

    records: list[dict] = []
    seq_dirs = {
        (d.parent.name, d.name): d
        for d in images.glob("*/*")
        if d.is_dir() and SUBJECT.fullmatch(d.parent.name) and SEQUENCE.fullmatch(d.name)
    }
    for key in sorted(set(seq_dirs) | set(frames)):
        subject, seq = key
        labels = label_files.get(key, [])
        if not frames.get(key):
            skips.append(skipped(seq_dirs[key], "empty sequence"))
            continue
        if len(labels) != 1:
            # Several emotion files for one sequence cannot be resolved: neither is trusted.
            skips += [skipped(p, "one of several emotion files for a sequence") for p, _ in labels]
            skips.append(skipped(images / subject / seq, "unlabelled sequence"))
            continue
        label = labels[0][1]
        ordered = [(num, path) for _, num, path in sorted(frames[key])]
        for (num, path), is_neutral in onset_apex(ordered, n_apex, neutral):
            records.append(
                {
                    "path": str(path),
                    "label": "neutral" if is_neutral else label,
                    "subject": subject,
                    "dataset": NAME,
                    "sequence": f"{subject}/{seq}",
                    "frame": num,
                }
            )
    for key in sorted(set(label_files) - set(seq_dirs) - set(frames)):
        skips += [
            skipped(p, "emotion label without an image sequence") for p, _ in label_files[key]
        ]
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    return Manifest.from_records(records, sorted(skips, key=lambda r: r["path"]))


def _single(root: Path, hits: list[Path]) -> Path:
    """The one folder of a kind under `root`: none is a layout error, several are ambiguous."""
    if not hits:
        raise layout_error(NAME, root, EXPECTED)
    if len(hits) > 1:
        raise DataError(
            f"{root}: several copies of {hits[0].name}/ ({', '.join(map(str, hits))}); "
            "point data.root at the folder holding one copy"
        )
    return hits[0]


def _image_file(
    f: Path,
    parts: tuple[str, ...],
    frames: dict[tuple[str, str], list[tuple[int, str, Path]]],
    skips: list[dict],
) -> None:
    """Sort one file under cohn-kanade-images/ into its sequence, or report why not."""
    if not is_image(f):
        skips.append(skipped(f, "not an image"))
    elif len(parts) != 3:
        skips.append(skipped(f, "not in a Sxxx/yyy sequence folder"))
    elif not SUBJECT.fullmatch(parts[0]):
        skips.append(skipped(f, f"unknown subject folder '{parts[0]}'"))
    elif not SEQUENCE.fullmatch(parts[1]):
        skips.append(skipped(f, f"unknown sequence folder '{parts[1]}'"))
    else:
        m = FRAME.fullmatch(f.stem)
        # A frame filed under another sequence's folder would carry the wrong label.
        if not m or (m.group(1), m.group(2)) != parts[:2]:
            skips.append(skipped(f, f"frame name is not {parts[0]}_{parts[1]}_NNNNNNNN.png"))
        else:
            frames[parts[:2]].append((int(m.group(3)), m.group(3), f))


def _label_file(
    f: Path,
    parts: tuple[str, ...],
    label_files: dict[tuple[str, str], list[tuple[Path, str]]],
    skips: list[dict],
) -> None:
    """Read one file under Emotion/ (one float code, e.g. '   3.0000000e+00'), or report it."""
    if len(parts) != 3 or not f.name.endswith("_emotion.txt"):
        skips.append(skipped(f, "not an Sxxx/yyy/*_emotion.txt label file"))
        return
    try:
        value = float(f.read_text(errors="replace").split()[0])
    except (IndexError, ValueError, OSError):  # OSError: a broken symbolic link
        skips.append(skipped(f, "unreadable emotion file"))
        return
    label = to_canonical(NAME, str(int(value))) if value.is_integer() else None
    if label is None:
        skips.append(skipped(f, f"unknown emotion code {value:g}"))
    else:
        label_files[parts[:2]].append((f, label))
