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


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """`image` (H, W, 3) uint8 resized to size x size (CAMs live at the model's input size)."""
    import cv2

    image = np.asarray(image)
    if image.shape[0] != size or image.shape[1] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


def overlay(face: np.ndarray, cam: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """The package's own heat-map overlay (RGB uint8), with the ROI outlines on top."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    face = _fit(face, cam.shape[-1])
    out = show_cam_on_image(face.astype(np.float32) / 255, cam.astype(np.float32), use_rgb=True)
    return outline_regions(out, masks) if masks is not None else out


def _save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_class_cams(
    cams: np.ndarray,
    faces: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    path: str | Path,
    title: str = "",
    scores: dict[str, float] | None = None,
) -> Path:
    """Study A's figure from per-image arrays: cams (N, S, S) in [0, 1]; faces (N, H, W, 3)
    uint8; masks (N, R, S, S); labels (N,) indices into `classes` (see `plot_class_means`)."""
    means = {}
    for i, _ in enumerate(classes):
        sel = labels == i
        if sel.any():
            size = cams.shape[-1]
            face = np.stack([_fit(f, size) for f in faces[sel]]).mean(axis=0)
            means[i] = (cams[sel].mean(axis=0), face, masks[sel].mean(axis=0), int(sel.sum()))
    return plot_class_means(means, classes, path, title, scores)


def plot_class_means(
    means: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int]],
    classes: list[str],
    path: str | Path,
    title: str = "",
    scores: dict[str, float] | None = None,
) -> Path:
    """Study A's figure: per class, the class-mean CAM (re-normalised) over the class-mean face,
    with the class-mean ROI (each region's mean mask >= 0.5) outlined.

    `means`: class index -> (mean CAM (S, S), mean face fitted to S (S, S, 3), mean masks
    (R, S, S), n) — from whole arrays (`plot_class_cams`) or from running sums (streamed
    evaluation); `scores` (class -> DICE) goes under each panel when given.
    """
    from fer.labels import REGIONS

    present = [(i, c) for i, c in enumerate(classes) if i in means]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(1.7 * max(len(present), 1), 2.4))
    axes = np.atleast_1d(axes)
    for ax, (i, c) in zip(axes, present, strict=False):
        mean_cam, mean_face, mean_masks, n = means[i]
        span = mean_cam.max() - mean_cam.min()
        mean_cam = (mean_cam - mean_cam.min()) / span if span > 0 else np.zeros_like(mean_cam)
        roi = (mean_masks >= 0.5).astype(np.uint8)
        ax.imshow(overlay(mean_face.astype(np.uint8), mean_cam, roi))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{DISPLAY.get(c, c)} (n={n})", fontsize=7)
        if scores is not None and c in scores and scores[c] is not None:
            ax.set_xlabel(f"DICE {scores[c]:.2f}", fontsize=7)
    for ax in axes[len(present) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=np.array(col) / 255, lw=2) for col in REGION_COLOURS]
    fig.legend(
        handles, list(REGIONS), loc="lower center", ncol=len(REGIONS), fontsize=6, frameon=False
    )
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def plot_cam_examples(
    cams: np.ndarray,
    faces: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    classes: list[str],
    path: str | Path,
    n: int = 8,
    title: str = "",
) -> Path:
    """A few single-image overlays spread over the classes, true and predicted class in the
    caption (red when wrong)."""
    order = np.argsort(labels, kind="stable")
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).astype(int))]
    fig, axes = plt.subplots(1, len(pick), figsize=(1.6 * len(pick), 2.0), squeeze=False)
    for ax, i in zip(axes[0], pick, strict=True):
        ax.imshow(overlay(faces[i], cams[i], masks[i]))
        ax.set_xticks([])
        ax.set_yticks([])
        true, pred = classes[int(labels[i])], classes[int(preds[i])]
        ax.set_title(
            f"{DISPLAY.get(true, true)}\n→ {DISPLAY.get(pred, pred)}",
            fontsize=7,
            color="black" if true == pred else "red",
        )
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
