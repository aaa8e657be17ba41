"""What every dataset parser shares: image extensions, junk files, layout errors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from fer.errors import DataError

IMAGE_EXTS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}
)
#: Files that copies of datasets carry and that are not data: reported as skipped all the same.
JUNK_NAMES: frozenset[str] = frozenset({"Thumbs.db", ".DS_Store", "desktop.ini"})


def is_image(path: Path) -> bool:
    """True for a file with an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTS


def check_root(root: str | Path, dataset: str) -> Path:
    """The root as a Path; a missing root raises DataError naming it."""
    root = Path(root).expanduser()
    if str(root) in ("", "???"):
        raise DataError(f"data.root for {dataset} is not set (conf/local/default.yaml)")
    if not root.is_dir():
        raise DataError(f"{dataset}: root {root} is not a directory")
    return root


def layout_error(dataset: str, root: Path, expected: str) -> DataError:
    """The one message a parser gives when a root does not look like its dataset."""
    return DataError(f"{root} does not look like {dataset}: expected {expected}")


def files_under(root: Path) -> Iterator[Path]:
    """Every file under `root`, sorted (deterministic manifests)."""
    return iter(sorted(p for p in root.rglob("*") if p.is_file()))


def skipped(path: Path | str, reason: str) -> dict[str, str]:
    """A row of a scan report."""
    return {"path": str(path), "reason": reason}


def find_dirs(root: Path, parts: Iterable[str]) -> list[Path]:
    """Directories under `root` (or `root` itself) whose path ends with `parts`, e.g.
    ("VL", "Strong") — copies of datasets come with arbitrary wrapper folders."""
    parts = tuple(parts)
    hits = [
        p
        for p in [root, *sorted(root.rglob(parts[-1]))]
        if p.is_dir() and p.parts[-len(parts) :] == parts
    ]
    return hits
