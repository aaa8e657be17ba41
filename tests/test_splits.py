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
