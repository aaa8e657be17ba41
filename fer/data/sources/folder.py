"""Any dataset laid out as ``root/<class>/<images>``: the generic class-folder parser."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from fer.data.manifest import Manifest
from fer.data.sources.layout import (
    NOT_IMAGE,
    absolute_root,
    build_manifest,
    class_lookup,
    files_under,
    is_image,
    layout_error,
    non_data_reason,
    rel,
    skipped,
)
from fer.errors import ConfigError
from fer.labels import CANONICAL


def scan(
    root: str | Path,
    subject_regex: str | None = None,
    aliases: Mapping[str, str] | None = None,
    dataset: str = "folder",
) -> Manifest:
    """Scan ``root/<class>/...`` into a Manifest.

    Class folders (the first path component under `root`) are matched case-insensitively
    against the canonical names and `aliases` (alias -> canonical). Files may sit deeper
    (``root/happy/S01/img.png``): the class is still the first component.
    `subject_regex` is searched in the path relative to root (``happy/S01/img.png``); its first
    group is the subject. Without a regex subjects are "" (no subject-disjoint split possible).
    """
    root = absolute_root(root, dataset)
    classes = class_lookup(aliases, key="data.source.aliases")
    pattern = _compile_subject_regex(subject_regex)

    records: list[dict] = []
    skips: list[dict] = []
    for path in files_under(root):
        relpath = rel(path, root)
        reason = non_data_reason(path)
        if reason is None and not is_image(path):
            reason = NOT_IMAGE
        if reason is None and "/" not in relpath:
            reason = "not inside a class folder"
        label = None
        if reason is None:
            folder = relpath.split("/", 1)[0]
            label = classes.get(folder.lower())
            if label is None:
                reason = f"unknown class folder {folder!r}"
        subject = ""
        if reason is None and pattern is not None:
            m = pattern.search(relpath)
            subject = (m.group(1) or "") if m else ""
            if not subject:
                reason = f"subject_regex {pattern.pattern!r} does not match"
        if reason is not None:
            skips.append(skipped(path, reason))
            continue
        records.append({"path": str(path), "label": label, "subject": subject, "dataset": dataset})
    if not records:
        raise layout_error(
            dataset,
            root,
            "class folders root/<class>/<images> named after the classes "
            f"({', '.join(CANONICAL)}) or the configured aliases",
        )
    return build_manifest(records, skips)


def _compile_subject_regex(subject_regex: str | None) -> re.Pattern | None:
    """The compiled regex; it needs a group, since its first group is the subject."""
    if subject_regex is None or subject_regex == "":
        return None
    try:
        pattern = re.compile(subject_regex)
    except re.error as e:
        raise ConfigError(f"data.source.subject_regex={subject_regex!r} is invalid: {e}") from e
    if pattern.groups < 1:
        raise ConfigError(
            f"data.source.subject_regex={subject_regex!r} has no group; its first group "
            "is the subject, e.g. '^[^/]+/(S\\d+)_'"
        )
    return pattern
