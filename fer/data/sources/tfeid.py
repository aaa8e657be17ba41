"""TFEID (Taiwanese Facial Expression Image Database) — LOW CONFIDENCE layout
(../shared/DATASETS.md §5: a single third-party loader, no real listing seen).

Assumed grammar, kept deliberately loose until a real copy is checked:

    <root>/[<folders>/]<subject>_<...>_<code><suffix>.<image ext>

- subject = the first `_` token, as written (40 models);
- expression = the first two letters of the last `_` token, case-insensitive:
  ag anger, dg disgust, fg fear, hg happiness, sg sadness, pg surprise, ng neutral
  (contempt's code is unknown, so contempt images are reported, not guessed);
- the folder (relative to the root) is kept as the extra column `folder`: the intensity and
  camera-angle sets are believed to be folders, unverified.

The *Taiwan Corpora of Chinese Emotions* (`Readme.txt` + `Image_Info.xls`, digit-coded names) is
often mislabelled TFEID: it is detected and refused with a message that says so.
"""

from __future__ import annotations

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
from fer.errors import DataError
from fer.labels import to_canonical

NAME = "tfeid"
EXPECTED = (
    "<root>/<folder>/<subject>_..._<code>.jpg, where <code> starts the last '_' token: "
    "ag, dg, fg, hg, sg, pg or ng (e.g. <root>/high/m01_ag1.jpg)"
)
#: The metadata sheet of the Taiwan Corpora of Chinese Emotions (not TFEID).
_CORPORA_MARKER = "image_info.xls"


def scan(root: str | Path) -> Manifest:
    """Manifest of TFEID: one row per image named `<subject>_..._<code>...`."""
    root = check_root(root, NAME)
    files = list(files_under(root))
    corpora = [f for f in files if f.name.lower() == _CORPORA_MARKER]
    if corpora:
        raise DataError(
            f"{root} looks like the Taiwan Corpora of Chinese Emotions ({corpora[0]}), "
            "not TFEID: its digit-coded names carry no TFEID labels"
        )
    records: list[dict] = []
    skips: list[dict] = []
    for f in files:
        parsed = _parse(f)
        if isinstance(parsed, str):
            skips.append(skipped(f, parsed))
            continue
        subject, label = parsed
        folder = f.parent.relative_to(root).as_posix()
        records.append(
            {
                "path": str(f),
                "label": label,
                "subject": subject,
                "dataset": NAME,
                "sequence": "",
                "frame": "",
                "folder": "" if folder == "." else folder,
            }
        )
    if not records:
        raise layout_error(NAME, root, EXPECTED)
    return Manifest.from_records(records, skips)


def _parse(f: Path) -> tuple[str, str] | str:
    """`(subject, label)` of one file, or the reason it is skipped."""
    if f.name in JUNK_NAMES:
        return "junk file"
    if not is_image(f):
        return "not an image"
    tokens = f.stem.split("_")
    if len(tokens) < 2 or not tokens[0]:
        return "name is not <subject>_..._<code>"
    code = tokens[-1][:2].lower()
    label = to_canonical(NAME, code)
    if label is None:
        return f"unknown expression code '{code}'"
    return tokens[0], label
