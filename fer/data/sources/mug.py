"""MUG facial expression database, posed part (../shared/DATASETS.md §6).

Layout, under any wrapper folders (`subjects3/`, `subjects3_cleaned/`, `subject3/`):

    001/anger/take000/img_0001.jpg img_0002.jpg ...
    002/session1/anger/take001/img_0xxx.jpg          (some subjects have a session level)

Emotion folders are lower-case: anger, disgust, fear, happiness, neutral, sadness, surprise.
Each take runs neutral -> apex -> neutral, so the apex is in the middle of the take: `n_apex`
frames are taken at the centres of `n_apex` equal bins of the central `window` of the take
(default 25-75 %, after LTS5_FER's `mug-fer/extract.py`); 3 frames sit at 1/3, 1/2 and 2/3.
A CK+-style "last frames" rule would pick near-neutral frames. The first frame number need not
be 1, so frames are ranked, not indexed by number.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from fer.data.manifest import Manifest
from fer.data.sources.layout import (
    JUNK_NAMES,
    check_root,
    files_under,
    is_image,
    layout_error,
    skipped,
)
from fer.errors import ConfigError, DataError
from fer.labels import to_canonical

NAME = "mug"
SUBJECT = re.compile(r"\d{3}")
SESSION = re.compile(r"session\d+")
TAKE = re.compile(r"take\d+")
FRAME = re.compile(r"img_(\d+)")
EXPECTED = (
    "<root>/.../001/anger/take000/img_0001.jpg or <root>/.../001/session1/anger/take000/"
    "img_0001.jpg (any wrapper folders, e.g. subjects3/)"
)


def middle_frames(length: int, n_apex: int, window: Sequence[float] = (0.25, 0.75)) -> list[int]:
    """Indices (0-based, sorted, unique) of `n_apex` frames from the middle of a take.

    Frame i sits at the centre of the i-th of `n_apex` equal bins of `window` (fractions of the
    take); a short take may yield fewer distinct frames.
    """
    lo, hi = window
    pos = (lo + (hi - lo) * (i + 0.5) / n_apex for i in range(n_apex))
    return sorted({int(p * (length - 1) + 0.5) for p in pos}) if length else []


def scan(root: str | Path, n_apex: int = 3, window: Sequence[float] = (0.25, 0.75)) -> Manifest:
    """Manifest of MUG's posed takes: `n_apex` mid-take frames per take, labelled by folder."""
    if isinstance(n_apex, bool) or not isinstance(n_apex, int) or n_apex < 1:
        raise ConfigError(f"data.source.n_apex={n_apex!r}: expected a positive integer")
    try:
        lo, hi = (float(w) for w in window)
    except (TypeError, ValueError):
        lo, hi = 1.0, 0.0  # falls through to the error below
    if not 0.0 <= lo < hi <= 1.0:
        raise ConfigError(
            f"data.source.window={window!r}: expected [lo, hi] with 0 <= lo < hi <= 1"
        )
    root = check_root(root, NAME)

    takes: dict[Path, list[tuple[int, str, Path]]] = defaultdict(list)
    meta: dict[Path, tuple[str, str, str]] = {}  # take folder -> (subject, label, sequence id)
    skips: list[dict] = []
    for f in files_under(root):
        parsed = _parse(f, f.relative_to(root).parts)
        if isinstance(parsed, str):
            skips.append(skipped(f, parsed))
        else:
            meta[f.parent] = parsed[:3]
            takes[f.parent].append((int(parsed[3]), parsed[3], f))

    # Two wrapper copies of the dataset would hold the same take twice.
    by_id: dict[str, list[Path]] = defaultdict(list)
    for take, (_, _, seq) in meta.items():
        by_id[seq].append(take)
    dupes = sorted(str(p) for ps in by_id.values() if len(ps) > 1 for p in ps)
    if dupes:
        raise DataError(
            f"{root}: the same MUG takes appear in several copies ({', '.join(dupes[:4])}"
            f"{', ...' if len(dupes) > 4 else ''}); point data.root at one copy"
        )
    # A take folder without a single image (its files, if any, are reported one by one).
    for d in sorted(root.rglob("take*")):
        if d.is_dir() and TAKE.fullmatch(d.name) and not any(map(is_image, d.iterdir())):
            skips.append(skipped(d, "empty sequence"))

    records: list[dict] = []
    for take in sorted(takes, key=lambda t: meta[t][2]):
        subject, label, seq = meta[take]
        ordered = sorted(takes[take])
        for i in middle_frames(len(ordered), n_apex, (lo, hi)):
            _, num, path = ordered[i]
            records.append(
                {
                    "path": str(path),
                    "label": label,
                    "subject": subject,
                    "dataset": NAME,
                    "sequence": seq,
                    "frame": num,
                }
            )
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    return Manifest.from_records(records, sorted(skips, key=lambda r: r["path"]))


def _parse(f: Path, parts: tuple[str, ...]) -> tuple[str, str, str, str] | str:
    """`(subject, label, sequence id, frame number)` of a frame, or the reason it is skipped.

    Read from the end of the path: `[<subject>/][session<k>/]<emotion>/take<N>/img_NNNN.jpg`,
    so wrapper folders of any depth are fine.
    """
    if f.name in JUNK_NAMES:
        return "junk file"
    if not is_image(f):
        return "not an image"
    if len(parts) < 4:
        return "not in a <subject>/<emotion>/take<N> folder"
    take, emotion = parts[-2], parts[-3]
    if not TAKE.fullmatch(take):
        # Includes LTS5's filtered `...end` entries: reported, whatever they are.
        return f"not in a take<N> folder ('{take}')"
    label = to_canonical(NAME, emotion)
    if label is None:
        return f"unknown expression folder '{emotion}'"
    session = parts[-4] if SESSION.fullmatch(parts[-4]) else ""
    subject = (parts[-5] if len(parts) >= 5 else "") if session else parts[-4]
    if not SUBJECT.fullmatch(subject):
        return f"unknown subject folder '{subject}'"
    m = FRAME.fullmatch(f.stem)
    if not m:
        return "frame name is not img_NNNN.jpg"
    seq = "/".join(p for p in (subject, session, emotion, take) if p)
    return subject, label, seq, m.group(1)
