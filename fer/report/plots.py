"""Figures from run files (never from live objects), so they can be redrawn offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fer.labels import DISPLAY


def plot_confusion(summary: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class) with counts, as PNG/PDF by suffix."""
    cm = np.asarray(summary["confusion"], dtype=float)
    classes = [DISPLAY.get(c, c) for c in summary["classes"]]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.7 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        title or f"accuracy {summary['acc']:.3f} (macro {summary['acc_macro']:.3f})", fontsize=9
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: One outline colour per ROI region (RGB), in `fer.labels.REGIONS` order.
REGION_COLOURS = ((0, 220, 255), (255, 60, 200), (255, 210, 0))


def outline_regions(image: np.ndarray, masks: np.ndarray, thickness: int = 1) -> np.ndarray:
    """RGB copy of `image` with each ROI mask channel drawn as a coloured outline."""
    import cv2

    out = np.ascontiguousarray(
        image.copy() if image.ndim == 3 else np.repeat(image[..., None], 3, 2)
    )
    for channel, colour in zip(masks, REGION_COLOURS, strict=False):
        contours, _ = cv2.findContours(
            np.ascontiguousarray(channel, dtype=np.uint8),
            cv2.RETR_EXTERNAL,
            cv2.CHAIN_APPROX_NONE,
        )
        cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def plot_crops(
    images: np.ndarray,
    masks: np.ndarray,
    frame: Any,
    path: str | Path,
    per_class: int = 6,
    title: str = "",
) -> Path:
    """Grid of preprocessed crops (rows: classes) with ROI outlines; excluded faces (fallback
    crops, no masks) are framed in red with their reason."""
    from fer.labels import CANONICAL, REGIONS

    classes = [c for c in CANONICAL if c in set(frame["label"])]
    fig, axes = plt.subplots(
        len(classes), per_class, figsize=(1.4 * per_class, 1.5 * len(classes)), squeeze=False
    )
    for r, c in enumerate(classes):
        of_class = np.flatnonzero(frame["label"].to_numpy() == c)
        # spread over the class (consecutive rows are often one subject)
        idx = of_class[np.unique(np.linspace(0, len(of_class) - 1, per_class).astype(int))]
        for k in range(per_class):
            ax = axes[r, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(idx):
                ax.axis("off")
                continue
            i = idx[k]
            ax.imshow(outline_regions(np.asarray(images[i]), np.asarray(masks[i])))
            reason = str(frame["excluded"].iloc[i]) if "excluded" in frame else ""
            if reason:
                for side in ax.spines.values():
                    side.set_color("red")
                    side.set_linewidth(2)
                ax.set_xlabel(reason[:22], fontsize=6, color="red")
        axes[r, 0].set_ylabel(DISPLAY.get(c, c), fontsize=8)
    handles = [plt.Line2D([], [], color=np.array(col) / 255, lw=2) for col in REGION_COLOURS]
    fig.legend(
        handles, list(REGIONS), loc="upper center", ncol=len(REGIONS), fontsize=7, frameon=False
    )
    if title:
        fig.suptitle(title, fontsize=9, y=0.995, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
