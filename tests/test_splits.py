"""k-fold splits: subject-disjoint, every image validated exactly once, deterministic."""

import numpy as np
import pytest

from fer.data import splits
from fer.errors import ConfigError, DataError


def _toy(n_subjects=12, per=6, classes=6):
    subjects = np.repeat([f"s{i:02d}" for i in range(n_subjects)], per * classes)
    labels = np.tile(np.repeat([f"c{c}" for c in range(classes)], per), n_subjects)
    return labels, subjects


def test_kfold_subject_disjoint_and_covering():
    labels, subjects = _toy()
    k = 4
    seen = np.zeros(len(labels), int)
    for fold in range(k):
        s = splits.kfold(labels, subjects, k=k, fold=fold, seed=0)
        assert not set(subjects[s.train]) & set(subjects[s.val])
        assert len(s.train) + len(s.val) == len(labels)
        seen[s.val] += 1
        # stratified: every class in every validation fold
        assert set(labels[s.val]) == set(labels)
    assert (seen == 1).all()


def test_kfold_deterministic_and_seeded():
    labels, subjects = _toy()
    a = splits.kfold(labels, subjects, k=3, fold=1, seed=5)
    b = splits.kfold(labels, subjects, k=3, fold=1, seed=5)
    c = splits.kfold(labels, subjects, k=3, fold=1, seed=6)
    assert np.array_equal(a.val, b.val)
    assert not np.array_equal(a.val, c.val)


def test_fold_out_of_range_names_key():
    with pytest.raises(ConfigError, match=r"split.fold=12 is out of range: allowed 0..9"):
        splits.check_kfold_keys(10, 12)
    labels, subjects = _toy(n_subjects=3)
    with pytest.raises(ConfigError, match=r"split\.k=4 exceeds"):
        splits.kfold(labels, subjects, k=4, fold=0, seed=0)


def test_leakage_detected():
    groups = np.array(["a", "a", "b", "c"])
    bad = splits.Split(np.array([0, 2]), np.array([1, 3]), np.array([], int), "subject")
    with pytest.raises(DataError, match="leakage: group 'a'"):
        splits.assert_disjoint(bad, groups)


def test_image_level_split_is_labelled_leaky():
    labels, subjects = _toy(n_subjects=4, per=5)
    s = splits.kfold(labels, subjects, k=5, fold=0, seed=0, group_by="none")
    assert s.leaky and set(subjects[s.train]) & set(subjects[s.val])


def test_holdout_subject_disjoint_with_dataset_shares():
    labels, subjects = _toy(n_subjects=10, per=2)
    shares = {"train": 0.6, "val": 0.1, "test": 0.3}
    s = splits.holdout(labels, subjects, shares, seed=0, dataset="jaffe")
    subsets = [set(subjects[idx]) for idx in (s.train, s.val, s.test)]
    assert [len(x) for x in subsets] == [6, 1, 3]
    assert not (subsets[0] & subsets[1] or subsets[0] & subsets[2] or subsets[1] & subsets[2])
    assert len(s.train) + len(s.val) + len(s.test) == len(labels)
    again = splits.holdout(labels, subjects, shares, seed=0, dataset="jaffe")
    assert np.array_equal(s.test, again.test)
    other = splits.holdout(labels, subjects, shares, seed=0, dataset="tfeid")
    assert not np.array_equal(s.test, other.test)  # deterministic from (seed, dataset)


def test_official_split_used_as_given():
    official = np.array(["train", "train", "val", "test", "train"])
    s = splits.holdout(["a"] * 5, [""] * 5, {}, 0, "fer2013", official=official)
    assert s.train.tolist() == [0, 1, 4] and s.val.tolist() == [2] and s.test.tolist() == [3]


def test_target_fraction_nested_and_seeded():
    labels, subjects = _toy(n_subjects=12, per=2)
    s = splits.holdout(labels, subjects, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, "mug")
    half, half_ids = splits.target_fraction(s.train, subjects, 0.5, seed=3)
    full, full_ids = splits.target_fraction(s.train, subjects, 1.0, seed=3)
    assert set(half_ids) < set(full_ids) and set(half) < set(full)
    assert np.array_equal(np.sort(full), s.train)
    assert len(half_ids) == int(np.ceil(0.5 * len(full_ids)))
    assert set(subjects[half]) == set(half_ids)
    _, other = splits.target_fraction(s.train, subjects, 0.5, seed=4)
    assert other != half_ids
