"""Procedural non-face images: the synthetic twin's pretraining set (its "ImageNet").

Study A compares scratch with weights pretrained on *something else* — ImageNet, not faces.
The synthetic twin's stand-in is this set: shapes, textures and simple objects
(`fer.labels.OBJECTS`, 12 classes) drawn on cluttered, lit, noisy backgrounds, so pretraining
learns generic edge, texture and shape features from data no test domain shares. It is
pretraining data (DESIGN.md): its own class list, no ROI masks (there is no face), never
evaluated as a FER dataset.

Each image has its own random stream (seed, class, k), like the face renderer, so no image
depends on which others were drawn. Images are drawn at twice the size and reduced with area
averaging (anti-aliasing). Images are grouped into pseudo-subjects (`group` = k mod n_groups,
each group holding every class), so the subject-grouped splits apply unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer.labels import OBJECTS

CLASSES: tuple[str, ...] = OBJECTS
_SS = 2  # supersampling factor
_TAG = zlib.crc32(b"procedural_objects")  # keeps these streams apart from the face renderer's


@dataclass
class ObjectSet:
    """A rendered set: images and labels aligned by index, with each image's group."""

    images: np.ndarray  # (N, size, size, 3) uint8 RGB
    labels: list[str]
    groups: list[str]  # pseudo-subject ids, "objects_g<g:02d>"


def _colour(rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
    """A random RGB colour; with `avoid`, one that differs from it in brightness."""
    for _ in range(20):
        c = rng.uniform(0, 255, 3)
        if avoid is None or abs(c.mean() - avoid.mean()) > 60:
            return c
    return 255 - avoid if avoid is not None else c


def _place(local: np.ndarray, centre: np.ndarray, radius: float, rot: float) -> np.ndarray:
    """Local coordinates (unit radius) -> int32 pixel polygon, rotated and scaled."""
    rm = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]]) * radius
    return (local @ rm.T + centre).round().astype(np.int32)


def _regular(k: int, radii: Sequence[float] = (1.0,)) -> np.ndarray:
    """A k-gon (or star: radii alternate) of unit radius, first vertex up."""
    t = -np.pi / 2 + np.arange(k) * 2 * np.pi / k
    r = np.resize(np.asarray(radii, float), k)
    return np.stack([np.cos(t) * r, np.sin(t) * r], 1)


# A plus sign, clockwise from the top arm's left corner.
_PLUS = np.array(
    [
        *([-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3]),
        *([0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]),
    ],
    float,
)
_ARROW = np.array(
    [[-1, -0.25], [0.2, -0.25], [0.2, -0.6], [1, 0], [0.2, 0.6], [0.2, 0.25], [-1, 0.25]], float
)
#: Outlines in local coordinates (unit radius) of the single-colour shapes.
_SHAPES: dict[str, np.ndarray] = {
    "disc": _regular(48),
    "square": _regular(4)
    @ np.array([[np.cos(np.pi / 4), -np.sin(np.pi / 4)], [np.sin(np.pi / 4), np.cos(np.pi / 4)]]).T,
    "triangle": _regular(3),
    "star": _regular(10, (1.0, 0.42)),
    "cross": _PLUS,
    "arrow": _ARROW,
}
#: Two-colour objects: (outline, part) in local coordinates; part 1 takes the second colour.
_OBJECTS: dict[str, tuple[tuple[np.ndarray, int], ...]] = {
    "house": (
        (np.array([[-0.7, -0.1], [0.7, -0.1], [0.7, 0.9], [-0.7, 0.9]]), 0),
        (np.array([[-0.9, -0.1], [0.0, -0.9], [0.9, -0.1]]), 1),
    ),
    "tree": (
        (np.array([[-0.15, 0.2], [0.15, 0.2], [0.15, 1.0], [-0.15, 1.0]]), 1),
        (_regular(40) * (0.75, 0.6) + (0, -0.3), 0),
    ),
}
_TEXTURES = ("stripes", "checker", "dots")


def _texture(cls: str, n: int, period: float, rot: float) -> np.ndarray:
    """A boolean texture over an n x n canvas: stripes, a checkerboard or a dot lattice."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    u = (xx * np.cos(rot) + yy * np.sin(rot)) / period
    v = (-xx * np.sin(rot) + yy * np.cos(rot)) / period
    if cls == "stripes":
        return np.mod(u, 1) < 0.5
    if cls == "checker":
        return (np.floor(u) + np.floor(v)) % 2 == 1
    return (np.mod(u, 1) - 0.5) ** 2 + (np.mod(v, 1) - 0.5) ** 2 < 0.3**2  # dots


def render_object(cls: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One image of class `cls`: (size, size, 3) uint8 RGB.

    Background: a two-colour gradient with a few random strokes (clutter that belongs to no
    class); foreground: the class's shape, object or textured region, at a random place, size,
    rotation and colour; then lighting, blur and sensor noise.
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown object class {cls!r}; known: {', '.join(CLASSES)}")
    n = size * _SS
    # Every random draw happens here, in a fixed order, whatever is drawn below.
    bg0, bg1 = _colour(rng), _colour(rng)
    bg_dir = rng.uniform(0, 2 * np.pi)
    clutter = [(rng.uniform(0, n, 4), _colour(rng), rng.uniform(0.01, 0.02)) for _ in range(2)]
    fg = _colour(rng, (bg0 + bg1) / 2)
    fg2 = _colour(rng, fg)
    centre = n / 2 + rng.uniform(-0.08, 0.08, 2) * n
    radius = rng.uniform(0.28, 0.4) * n
    rot = rng.uniform(-0.5, 0.5)  # radians: shapes keep their outline class-typical
    period = rng.uniform(0.07, 0.13) * n
    light = rng.uniform(0.75, 1.2)
    noise_sd = rng.uniform(1.0, 8.0)
    blur = rng.uniform(0.0, 0.8)
    noise = rng.standard_normal((size, size, 3)).astype(np.float32)

    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    ramp = (xx * np.cos(bg_dir) + yy * np.sin(bg_dir) + 1.5) / 3
    img = (bg0 + (bg1 - bg0) * ramp[..., None]).astype(np.float32)
    for ends, colour, width in clutter:
        p = ends.reshape(2, 2).round().astype(int)
        thick = max(1, round(width * n))
        cv2.line(img, tuple(p[0]), tuple(p[1]), colour.tolist(), thick, cv2.LINE_AA)
    if cls in _TEXTURES:  # a textured disc: what matters is the pattern, not the outline
        region = np.zeros((n, n), np.uint8)
        cv2.circle(region, tuple(centre.round().astype(int)), round(radius * 1.2), 1, -1)
        img[_texture(cls, n, period, rot) & region.astype(bool)] = fg
    elif cls in _OBJECTS:  # objects stay roughly upright, as real ones are photographed
        for outline, part in _OBJECTS[cls]:
            poly = _place(outline, centre, radius, 0.3 * rot)
            cv2.fillPoly(img, [poly], (fg2 if part else fg).tolist(), cv2.LINE_AA)
    elif cls == "ring":
        thick = max(2, round(radius * 0.3))
        cv2.circle(img, tuple(centre.round().astype(int)), round(radius), fg.tolist(), thick)
    else:
        cv2.fillPoly(img, [_place(_SHAPES[cls], centre, radius, rot)], fg.tolist(), cv2.LINE_AA)
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) * light
    if blur > 0.25:
        small = cv2.GaussianBlur(small, (0, 0), blur)
    return np.clip(small + noise * noise_sd + 0.5, 0, 255).astype(np.uint8)


def _image_rng(seed: int, cls: str, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _TAG, CLASSES.index(cls), k]))


def render_set(
    n_per_class: int,
    seed: int,
    size: int = 64,
    classes: Sequence[str] | None = None,
    n_groups: int = 10,
) -> ObjectSet:
    """Render `n_per_class` images of every class, ordered by class, then k.

    Args:
        n_per_class: images per class.
        seed: base seed; the same arguments give identical arrays.
        size: image side in pixels.
        classes: classes to draw (default: all of `CLASSES`).
        n_groups: pseudo-subjects; image k of every class belongs to group k mod n_groups.

    Raises:
        ValueError: an unknown class, or fewer than 1 image or group.
    """
    classes = tuple(classes) if classes is not None else CLASSES
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown object class(es) {unknown}; known: {', '.join(CLASSES)}")
    if n_per_class < 1 or n_groups < 1:
        raise ValueError(f"n_per_class={n_per_class}, n_groups={n_groups}: both must be >= 1")
    images = np.empty((len(classes) * n_per_class, size, size, 3), np.uint8)
    labels, groups = [], []
    for i, (cls, k) in enumerate((c, k) for c in classes for k in range(n_per_class)):
        images[i] = render_object(cls, _image_rng(seed, cls, k), size)
        labels.append(cls)
        groups.append(f"objects_g{k % n_groups:02d}")
    return ObjectSet(images, labels, groups)
