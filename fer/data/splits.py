"""Splits: stratified subject-grouped k-fold, with the leakage check done in code.

Splits are deterministic from (split.seed, dataset, protocol). `group_by` says what may not be
shared between subsets: `subject` (default, the honest protocol), `sequence` or `none` (the
"leaky" image-level protocol some papers used; reports label it so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer.errors import ConfigError, DataError

GROUP_BY = ("subject", "sequence", "none")


@dataclass(frozen=True)
class Split:
    """Row indices of one split of a dataset, and what they were grouped by."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    group_by: str

    @property
    def leaky(self) -> bool:
        """True when subjects may appear in more than one subset."""
        return self.group_by != "subject"


def check_kfold_keys(k: int, fold: int, group_by: str = "subject") -> None:
    """Validate `split.k`, `split.fold` and `split.group_by` before any work starts."""
    if not isinstance(k, int) or k < 2:
        raise ConfigError(f"split.k={k} is invalid: k-fold needs an integer k >= 2")
    if not isinstance(fold, int) or not 0 <= fold < k:
        raise ConfigError(f"split.fold={fold} is out of range: allowed 0..{k - 1} (split.k={k})")
    if group_by not in GROUP_BY:
        raise ConfigError(f"split.group_by={group_by!r} is invalid: allowed {list(GROUP_BY)}")


def groups_for(subjects: Sequence[str], sequences: Sequence[str], group_by: str) -> np.ndarray:
    """Group id per image for `group_by` (subject, subject+sequence, or the image itself)."""
    subjects = np.asarray(subjects, dtype=str)
    if group_by == "subject":
        if (subjects == "").any():
            raise DataError(
                "split.group_by=subject needs a subject id for every image; this dataset has "
                "none (use its official split, or split.group_by=none, labelled leaky)"
            )
        return subjects
    if group_by == "sequence":
        return np.char.add(np.char.add(subjects, "/"), np.asarray(sequences, dtype=str))
    return np.arange(len(subjects)).astype(str)


def kfold(
    labels: Sequence[str],
    subjects: Sequence[str],
    k: int,
    fold: int,
    seed: int,
    group_by: str = "subject",
    sequences: Sequence[str] | None = None,
) -> Split:
    """Fold `fold` of a stratified, grouped k-fold split (scikit-learn's StratifiedGroupKFold).

    The validation fold is the held-out fold; there is no separate test subset in k-fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    check_kfold_keys(k, fold, group_by)
    labels = np.asarray(labels, dtype=str)
    groups = groups_for(
        subjects, sequences if sequences is not None else [""] * len(labels), group_by
    )
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise ConfigError(f"split.k={k} exceeds the number of {group_by} groups ({n_groups})")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    train, val = list(splitter.split(np.zeros(len(labels)), labels, groups))[fold]
    split = Split(np.sort(train), np.sort(val), np.array([], dtype=int), group_by)
    assert_disjoint(split, groups)
    return split


def assert_disjoint(split: Split, groups: np.ndarray) -> None:
    """Raise when a group (subject, sequence or image) lies in two subsets of one split."""
    parts = {"train": split.train, "val": split.val, "test": split.test}
    seen: dict[str, str] = {}
    for name, idx in parts.items():
        for g in np.unique(groups[idx]).tolist():
            if g in seen:
                raise DataError(f"leakage: group {g!r} is in both {seen[g]} and {name}")
            seen[g] = name
