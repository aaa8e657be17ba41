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
    try:
        train, val = list(splitter.split(np.zeros(len(labels)), labels, groups))[fold]
    except ValueError as e:  # e.g. every class has fewer than k images (group_by=none)
        raise ConfigError(
            f"split.k={k}: cannot make {k} stratified folds of this data ({e})"
        ) from None
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


def check_holdout_keys(shares: dict, fraction: float, key: str = "split_shares") -> None:
    """Validate a data config's subject shares and `split.target_fraction`."""
    try:
        values = [float(shares[k]) for k in ("train", "val", "test")]
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{key}: expected {{train, val, test}} shares, got {shares!r}") from None
    if any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6 or values[0] <= 0:
        raise ConfigError(f"{key}={shares}: shares must be >= 0, train > 0, and sum to 1")
    if not 0 < float(fraction) <= 1:
        raise ConfigError(f"split.target_fraction={fraction}: allowed (0, 1]")


def holdout(
    labels: Sequence[str],
    subjects: Sequence[str],
    shares: dict,
    seed: int,
    dataset: str,
    group_by: str = "subject",
    sequences: Sequence[str] | None = None,
    official: Sequence[str] | None = None,
) -> Split:
    """Subject-disjoint train/val/test with the dataset's own subject shares.

    Whole subjects go to one subset, so sizes are not exact fractions of images (JAFFE's test
    set is ~3 of its 10 subjects). Datasets without identities use their `official` split
    (`train`/`val`/`test` per image) as given. Deterministic from (seed, dataset).
    """
    labels = np.asarray(labels, dtype=str)
    if official is not None:
        official = np.asarray(official, dtype=str)
        parts = [np.flatnonzero(official == s) for s in ("train", "val", "test")]
        return Split(*parts, group_by="official")
    check_holdout_keys(shares, 1.0)
    groups = groups_for(
        subjects, sequences if sequences is not None else [""] * len(labels), group_by
    )
    unique = np.unique(groups)
    rng = np.random.default_rng([seed, _stable(dataset)])
    order = unique[rng.permutation(len(unique))]
    n = len(order)
    n_val = round(float(shares["val"]) * n)
    n_test = round(float(shares["test"]) * n)
    if float(shares["val"]) > 0:
        n_val = max(n_val, 1)
    if float(shares["test"]) > 0:
        n_test = max(n_test, 1)
    if n - n_val - n_test < 1:
        raise ConfigError(f"{dataset}: {n} {group_by} groups are too few for shares {shares}")
    test_g, val_g = set(order[:n_test]), set(order[n_test : n_test + n_val])
    in_test = np.array([g in test_g for g in groups])
    in_val = np.array([g in val_g for g in groups])
    split = Split(
        np.flatnonzero(~in_test & ~in_val),
        np.flatnonzero(in_val),
        np.flatnonzero(in_test),
        group_by,
    )
    assert_disjoint(split, groups)
    return split


def target_fraction(
    train: np.ndarray, subjects: Sequence[str], fraction: float, seed: int
) -> tuple[np.ndarray, list[str]]:
    """A nested, seeded subset of the *training subjects*: the first ceil(fraction·n) of one
    seeded permutation, so 50 % ⊂ 100 % for every seed. Returns rows and subject ids.

    Class balance comes through whole subjects (each subject poses every class); datasets
    without identities subsample images the same nested way.
    """
    ids = np.asarray(subjects, dtype=str)[train]
    by_subject = bool((ids != "").all())
    per_row = ids if by_subject else train.astype(str)  # the unit that is kept or dropped
    keys = np.unique(per_row)
    order = keys[np.random.default_rng([seed, 7919]).permutation(len(keys))]
    chosen = set(order[: int(np.ceil(float(fraction) * len(keys)))].tolist())
    rows = train[np.isin(per_row, list(chosen))]
    return rows, sorted(chosen) if by_subject else []


def _stable(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())
