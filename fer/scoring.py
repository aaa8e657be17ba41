"""Classification scores from a confusion matrix: the one definition of accuracy numbers.

Training-time validation and evaluate.py both call `summarize`, so the reported numbers of a
checkpoint are the same wherever they are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def summarize(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Micro and macro accuracy, per-class accuracy and support from `confusion[true, pred]`.

    Macro averages run over the classes with support > 0 only (torchmetrics' macro counts a
    class the data lacks as 0 when it is ever predicted — STYLE.md §7). A class without
    support has per-class accuracy None.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    support = cm.sum(axis=1)
    total = int(support.sum())
    correct = np.diag(cm)
    present = support > 0
    per_class = {
        c: (float(correct[i] / support[i]) if present[i] else None) for i, c in enumerate(classes)
    }
    return {
        "acc": float(correct.sum() / total) if total else float("nan"),
        "acc_macro": float(np.mean(correct[present] / support[present]))
        if present.any()
        else float("nan"),
        "per_class": per_class,
        "support": {c: int(support[i]) for i, c in enumerate(classes)},
        "n": total,
        "classes": list(classes),
        "confusion": cm.tolist(),
        "macro_over": [c for i, c in enumerate(classes) if present[i]],
    }
