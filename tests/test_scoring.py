"""Accuracy numbers from hand-made confusion matrices."""

import numpy as np

from fer.scoring import summarize


def test_summarize_micro_macro_per_class():
    cm = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])  # class c lacks support
    s = summarize(cm, ["a", "b", "c"])
    assert s["acc"] == 11 / 14
    assert s["acc_macro"] == (0.8 + 0.75) / 2
    assert s["per_class"] == {"a": 0.8, "b": 0.75, "c": None}
    assert s["macro_over"] == ["a", "b"]


def test_macro_ignores_missing_class_even_when_predicted():
    cm = np.array([[5, 0, 5], [0, 10, 0], [0, 0, 0]])
    s = summarize(cm, ["a", "b", "surprise"])
    assert s["acc_macro"] == (0.5 + 1.0) / 2
    assert s["support"]["surprise"] == 0
