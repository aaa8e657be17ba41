"""What every dataset parser shares: image extensions, junk files, layout errors."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from fer.data.manifest import COLUMNS, Manifest
from fer.errors import ConfigError, DataError
from fer.labels import CANONICAL

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
    if root is None or str(root) in ("", "???", "None"):
        raise DataError(
            f"data.root for {dataset} is not set: set paths.roots.{dataset} in "
            "conf/local/default.yaml (see conf/local/example.yaml) or pass data.root=<folder>"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{dataset}: root {root} is not a directory")
    return root


def layout_error(dataset: str, root: Path, expected: str) -> DataError:
    """The one message a parser gives when a root does not look like its dataset."""
    return DataError(f"{root} does not look like {dataset}: expected {expected}")


def files_under(root: Path) -> Iterator[Path]:
    """Every file under `root`, sorted (deterministic manifests). Broken symbolic links (a
    half-copied tree, a git-annex file without its content) are listed too, so that they are
    reported (`non_data_reason`), not silently missing."""
    return iter(sorted(p for p in root.rglob("*") if p.is_file() or _broken_link(p)))


def _broken_link(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


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


#: Reason for a file that has no image extension (documentation, ratings, archives, ...).
NOT_IMAGE = "not an image file"


def non_data_reason(path: Path) -> str | None:
    """Why `path` is not data at all (system or hidden file), or None when it may be."""
    name = path.name
    if _broken_link(path):
        return f"broken symbolic link (target {path.readlink()} is missing)"
    if name in JUNK_NAMES:
        return "system file, not data"
    if name.startswith("._"):  # AppleDouble files: `._x.jpg` has an image suffix but is not one
        return "macOS metadata file, not data"
    if name.startswith("."):
        return "hidden file, not data"
    return None


def absolute_root(root: str | Path, dataset: str) -> Path:
    """`check_root`, made absolute (manifest paths must not depend on the working dir)."""
    return check_root(root, dataset).absolute()


def rel(path: Path, root: Path) -> str:
    """`path` relative to `root`, with forward slashes (stable across platforms)."""
    return path.relative_to(root).as_posix()


def build_manifest(records: list[dict], skips: list[dict]) -> Manifest:
    """`Manifest.from_records` with the contract columns first, extra columns after."""
    manifest = Manifest.from_records(records, skips)
    extra = [c for c in manifest.frame.columns if c not in COLUMNS]
    manifest.frame = manifest.frame[[*COLUMNS, *extra]]
    return manifest


def class_lookup(aliases: Mapping[str, str] | None, key: str = "aliases") -> dict[str, str]:
    """Lower-cased folder name -> canonical class: canonical names plus `aliases`.

    Raises:
        ConfigError: naming `key` when an alias points to a non-canonical class.
    """
    table = {c: c for c in CANONICAL}
    for alias, target in dict(aliases or {}).items():
        target = str(target).strip().lower()
        if target not in CANONICAL:
            raise ConfigError(
                f"{key}: alias {alias!r} -> {target!r} is not a canonical class "
                f"({', '.join(CANONICAL)})"
            )
        table[str(alias).strip().lower()] = target
    return table


T = TypeVar("T")


def check_frame_options(n_apex: int, neutral: bool) -> None:
    """Validate the apex/neutral options shared by the sequence datasets (CK+, Oulu-CASIA).

    Raises:
        ConfigError: naming `data.source.n_apex` or `data.source.neutral`.
    """
    if isinstance(n_apex, bool) or not isinstance(n_apex, int) or n_apex < 1:
        raise ConfigError(f"data.source.n_apex={n_apex!r}: expected a positive integer")
    # A string "false" would be truthy: only real booleans are accepted.
    if not isinstance(neutral, bool):
        raise ConfigError(f"data.source.neutral={neutral!r}: expected true or false")


def onset_apex(frames: Sequence[T], n_apex: int, neutral: bool) -> list[tuple[T, bool]]:
    """The last `n_apex` frames of a neutral -> peak sequence, as `(frame, is_neutral)`.

    With `neutral`, the first frame comes first, marked neutral; it is never also an apex
    frame (a sequence of <= n_apex frames gives its first frame to neutral only), so one image
    never carries two labels.
    """
    if not frames:
        return []
    start = 1 if neutral else 0
    apex = [(f, False) for f in frames[max(start, len(frames) - n_apex) :]]
    return [(frames[0], True), *apex] if neutral else apex


def duplicate_reason(key: Hashable, path: Path, seen: dict, root: Path) -> str | None:
    """ "duplicate of <first>" when `key` was seen before (the same picture in two mirror
    folders or formats: the first in sorted order is kept); otherwise remember it."""
    if key in seen:
        return f"duplicate of {rel(seen[key], root)}"
    seen[key] = path
    return None
