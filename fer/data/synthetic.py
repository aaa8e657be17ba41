"""Procedural cartoon faces with exact ROI masks: the embedded default dataset.

No licensed face dataset can ship, so the default data is rendered: a frontal cartoon face per
(subject, expression, intensity), with identity parameters sampled once per subject and
expression parameters (brows, eyelids, mouth, nose wrinkle) per emotion. Several *domains*
shift lighting, colour, proportions, age texture, framing and noise the way real datasets differ
from each other. Because the renderer draws every feature itself, it also knows the exact region
masks (eyes+brows, mouth, nose), which is what the Grad-CAM overlap pipeline is checked against.
A *signal* other than "face" lets only one region carry the expression ("mouth" or "eyes"), so
the region a model must look at is known by construction (`SIGNALS`, `_SIGNAL_KEEP`). A
*spurious cue* (`CUE_MARKS`, domain "cue") pastes a small class-correlated mark outside the
face on the finished image — the label's own mark with probability p, else another class's —
so a model can be right for the wrong reason, and the same faces without it say so.

Everything is drawn with OpenCV polygons in *face units* (1 = half the face width, y down),
mapped to pixels by one affine transform that already holds the per-image pose jitter; masks
are drawn with the same transform, so they stay aligned without resampling. Faces are rendered
at twice the requested size and reduced with area averaging (anti-aliasing).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from fer.labels import REGIONS, SEVEN

CLASSES: tuple[str, ...] = SEVEN  # the 7 canonical expressions, canonical order

RGB = tuple[int, int, int]
Range = tuple[float, float]

_SS = 2  # supersampling factor: draw at 2x, reduce with INTER_AREA
_SHIFT = 4  # fractional bits of cv2's fixed-point coordinates (sub-pixel placement)
_FIX = float(1 << _SHIFT)
_MASK_PAD = 0.035  # mask dilation in face units, so thin strokes still give a region
_IDENTITY_TAG = 0x1D  # keeps identity seeds apart from image seeds of the same subject

# Expression parameters, all ~[-1, 1]; 0 is the resting face. Each expression is the value at
# intensity 1; the rendered value is intensity * value + the subject's resting offset + jitter.
_PARAMS: tuple[str, ...] = (
    "brow_raise",  # whole brow up (+) / down (-)
    "brow_inner",  # inner corner up (+, sadness/fear) / down (-, anger's V)
    "brow_together",  # inner ends drawn towards the nose
    "brow_arch",  # high arch (+, surprise) / straight (-, fear)
    "eye_open",  # eyelid opening: wide (+) / squint (-)
    "cheek",  # cheeks push the lower lids up (smile, disgust)
    "mouth_curve",  # corners up (+) / down (-)
    "mouth_open",  # opening height
    "mouth_width",  # stretched (+) / rounded, narrow O (-)
    "mouth_box",  # boxy stretched opening (fear) instead of an oval
    "lip_press",  # lips pressed thin (anger)
    "upper_lip",  # upper lip raised, one-sided sneer (disgust)
    "teeth_up",
    "teeth_low",
    "nose_wrinkle",  # wrinkle lines on the bridge, flared nostrils (disgust)
)
_P = {name: i for i, name in enumerate(_PARAMS)}

# Confusable pairs by design: fear vs surprise (both raised brows, wide eyes, open mouth; fear's
# brows are straight and drawn together, its mouth stretched; surprise's brows arch, its mouth is
# a round O) and anger vs disgust (both lowered brows; anger presses the lips and draws a V,
# disgust wrinkles the nose and raises the upper lip).
_EXPRESSIONS: dict[str, dict[str, float]] = {
    "anger": dict(
        brow_raise=-0.7,
        brow_inner=-1.0,
        brow_together=1.0,
        eye_open=0.15,
        mouth_curve=-0.25,
        mouth_width=-0.35,
        lip_press=1.0,
    ),
    "disgust": dict(
        brow_raise=-0.45,
        brow_inner=-0.35,
        brow_together=0.5,
        eye_open=-0.5,
        cheek=0.6,
        mouth_curve=-0.6,
        mouth_open=0.1,
        upper_lip=1.0,
        teeth_up=1.0,
        nose_wrinkle=1.0,
    ),
    "fear": dict(
        brow_raise=0.65,
        brow_inner=0.75,
        brow_together=0.9,
        brow_arch=-0.9,
        eye_open=0.95,
        mouth_curve=-0.35,
        mouth_open=0.5,
        mouth_width=1.0,
        mouth_box=1.0,
        teeth_low=1.0,
    ),
    "happiness": dict(
        brow_raise=0.1,
        eye_open=-0.25,
        cheek=1.0,
        mouth_curve=1.0,
        mouth_open=0.55,
        mouth_width=0.6,
        mouth_box=0.4,
        teeth_up=1.0,
    ),
    "sadness": dict(
        brow_raise=0.05,
        brow_inner=1.0,
        brow_together=0.45,
        eye_open=-0.35,
        mouth_curve=-1.0,
        mouth_width=-0.1,
        lip_press=0.3,
    ),
    "surprise": dict(
        brow_raise=1.0,
        brow_arch=1.0,
        eye_open=1.0,
        mouth_open=1.0,
        mouth_width=-1.0,
    ),
    "neutral": {},
}
# Real datasets confuse these pairs (sadness mostly with neutral): each image mixes in a random
# share of its partner, so the pairs overlap instead of being separable by construction.
_CONFUSABLE: dict[str, str] = {
    "fear": "surprise",
    "surprise": "fear",
    "anger": "disgust",
    "disgust": "anger",
    "sadness": "neutral",
}
_EXPR_VEC: dict[str, np.ndarray] = {
    name: np.array([vals.get(p, 0.0) for p in _PARAMS]) for name, vals in _EXPRESSIONS.items()
}
# Which parameters the resting face and per-image jitter move (teeth and wrinkles come only with
# their expression, so a neutral face never shows teeth).
_JITTERED = np.array(
    [p not in ("teeth_up", "teeth_low", "nose_wrinkle", "upper_lip") for p in _PARAMS]
)
# Which expression parameters carry the class, per *signal*: "face" keeps all of them; "mouth"
# and "eyes" keep one region's (a Grad-CAM ground truth: a model can only learn the class from
# that region). The others are zeroed in the class vector only, so the resting offsets and the
# per-image jitter still move them (the other region varies but says nothing about the class).
# `cheek` only narrows the lower eyelid (drawn into the eyes_brows mask), so it counts as eyes;
# `nose_wrinkle` belongs to neither.
_MOUTH_PARAMS = (
    "mouth_curve",
    "mouth_open",
    "mouth_width",
    "mouth_box",
    "lip_press",
    "upper_lip",
    "teeth_up",
    "teeth_low",
)
_EYES_PARAMS = ("brow_raise", "brow_inner", "brow_together", "brow_arch", "eye_open", "cheek")
SIGNALS: tuple[str, ...] = ("face", "mouth", "eyes")
_SIGNAL_KEEP: dict[str, np.ndarray | None] = {
    "face": None,
    "mouth": np.array([float(p in _MOUTH_PARAMS) for p in _PARAMS]),
    "eyes": np.array([float(p in _EYES_PARAMS) for p in _PARAMS]),
}

_SKIN_ALL: tuple[RGB, ...] = (
    (255, 224, 196),
    (241, 194, 167),
    (224, 172, 138),
    (198, 140, 102),
    (161, 106, 72),
    (112, 72, 50),
)
_HAIR_DARK: tuple[RGB, ...] = ((25, 20, 18), (48, 32, 24), (70, 45, 30))
_HAIR_LIGHT: tuple[RGB, ...] = ((110, 75, 45), (190, 150, 90), (150, 70, 40))
_HAIR_GREY: tuple[RGB, ...] = ((150, 150, 150), (190, 188, 185), (225, 224, 220), (110, 108, 105))
_IRIS: tuple[RGB, ...] = ((70, 45, 25), (40, 28, 20), (60, 100, 150), (80, 110, 70))
_SHIRTS: tuple[RGB, ...] = (
    (40, 60, 120),
    (120, 30, 40),
    (60, 90, 60),
    (200, 200, 205),
    (30, 30, 35),
)


@dataclass(frozen=True)
class Domain:
    """How one synthetic dataset differs from the others (the role real datasets play).

    Ranges are (low, high) of a uniform draw; identity ranges are drawn once per subject, the
    rest once per image. Lengths are in face units (1 = half the face width) unless named.
    """

    name: str
    grey: bool
    classes: tuple[str, ...]
    default_subjects: int
    # identity (per subject)
    face_w: Range  # face half-width as a fraction of the image side (framing)
    aspect: Range  # face height / width
    jaw: Range  # chin narrowing (0 = ellipse)
    eye_spacing: Range
    eye_w: Range
    eye_h: Range
    eye_y: Range
    nose_w: Range
    nose_y: Range
    mouth_w: Range
    mouth_y: Range
    brow_thick: Range
    skin_tones: tuple[RGB, ...]
    hair_colours: tuple[RGB, ...]
    hair_styles: tuple[str, ...]
    glasses_p: float
    age: Range  # wrinkles, age spots, under-eye bags (0 = none)
    rest_sd: float  # per-subject resting-face offsets of the expression parameters
    # per image
    intensity: Range
    expr_jitter: float
    blend: Range  # share of the confusable partner's expression mixed in (_CONFUSABLE)
    rotation_deg: float
    shift: float  # fraction of the image side
    scale_jitter: float
    backgrounds: tuple[RGB, ...]
    light_gradient: Range
    brightness: Range
    contrast: Range
    colour_cast: float
    noise_std: Range  # in grey levels
    blur: Range  # gaussian sigma in pixels of a 64-px image


DOMAINS: dict[str, Domain] = {
    # OULU-CASIA's role: colour, even strong light, many subjects, strong posed expressions.
    "lab": Domain(
        name="lab",
        grey=False,
        classes=CLASSES,
        default_subjects=40,
        face_w=(0.34, 0.37),
        aspect=(1.22, 1.34),
        jaw=(0.12, 0.24),
        eye_spacing=(0.39, 0.44),
        eye_w=(0.18, 0.21),
        eye_h=(0.085, 0.1),
        eye_y=(-0.14, -0.08),
        nose_w=(0.13, 0.17),
        nose_y=(0.26, 0.32),
        mouth_w=(0.3, 0.35),
        mouth_y=(0.60, 0.66),
        brow_thick=(0.14, 0.18),
        skin_tones=_SKIN_ALL[:4],
        hair_colours=_HAIR_DARK + _HAIR_LIGHT[:2],
        hair_styles=("short", "long", "fringe", "bob"),
        glasses_p=0.15,
        age=(0.0, 0.0),
        rest_sd=0.1,
        intensity=(0.6, 1.0),
        expr_jitter=0.14,
        blend=(0.0, 0.4),
        rotation_deg=3.0,
        shift=0.02,
        scale_jitter=0.04,
        backgrounds=((70, 70, 75), (40, 40, 45), (90, 95, 100)),
        light_gradient=(0.0, 0.08),
        brightness=(0.95, 1.05),
        contrast=(0.95, 1.05),
        colour_cast=0.02,
        noise_std=(1.0, 3.0),
        blur=(0.0, 0.3),
    ),
    # JAFFE's role: greyscale, rounder and smaller faces in a looser frame, dark hair, few
    # subjects, milder posed expressions, softer image.
    "gray": Domain(
        name="gray",
        grey=True,
        classes=CLASSES,
        default_subjects=10,
        face_w=(0.3, 0.33),
        aspect=(1.1, 1.2),
        jaw=(0.05, 0.14),
        eye_spacing=(0.4, 0.45),
        eye_w=(0.19, 0.22),
        eye_h=(0.09, 0.105),
        eye_y=(-0.06, 0.0),
        nose_w=(0.11, 0.14),
        nose_y=(0.28, 0.33),
        mouth_w=(0.28, 0.32),
        mouth_y=(0.58, 0.64),
        brow_thick=(0.13, 0.16),
        skin_tones=_SKIN_ALL[:3],
        hair_colours=_HAIR_DARK[:2],
        hair_styles=("long", "fringe", "bob"),
        glasses_p=0.0,
        age=(0.0, 0.0),
        rest_sd=0.1,
        intensity=(0.5, 0.95),
        expr_jitter=0.15,
        blend=(0.0, 0.45),
        rotation_deg=5.0,
        shift=0.03,
        scale_jitter=0.05,
        backgrounds=((150, 150, 150), (200, 200, 200), (110, 110, 110)),
        light_gradient=(0.1, 0.3),
        brightness=(0.9, 1.05),
        contrast=(0.85, 1.0),
        colour_cast=0.0,
        noise_std=(2.0, 5.0),
        blur=(0.3, 0.7),
    ),
    # FACES' role: colour, older faces (wrinkles, age spots, grey/white hair, longer faces,
    # smaller eyes, thinner lips), no surprise class.
    "aged": Domain(
        name="aged",
        grey=False,
        classes=tuple(c for c in CLASSES if c != "surprise"),
        default_subjects=30,
        face_w=(0.33, 0.36),
        aspect=(1.3, 1.42),
        jaw=(0.05, 0.15),
        eye_spacing=(0.39, 0.44),
        eye_w=(0.17, 0.2),
        eye_h=(0.075, 0.09),
        eye_y=(-0.12, -0.06),
        nose_w=(0.14, 0.18),
        nose_y=(0.3, 0.36),
        mouth_w=(0.31, 0.36),
        mouth_y=(0.66, 0.72),
        brow_thick=(0.13, 0.17),
        skin_tones=_SKIN_ALL[:3],
        hair_colours=_HAIR_GREY,
        hair_styles=("short", "receding", "bob"),
        glasses_p=0.35,
        age=(0.6, 1.0),
        rest_sd=0.1,
        intensity=(0.55, 1.0),
        expr_jitter=0.14,
        blend=(0.0, 0.4),
        rotation_deg=3.0,
        shift=0.02,
        scale_jitter=0.04,
        backgrounds=((225, 225, 220), (200, 205, 210)),
        light_gradient=(0.05, 0.25),
        brightness=(0.95, 1.1),
        contrast=(0.9, 1.05),
        colour_cast=0.03,
        noise_std=(1.0, 4.0),
        blur=(0.0, 0.4),
    ),
    # Pretraining only (the ImageNet stand-in): every range widened; subject ids carry the
    # domain name, so they never coincide with another domain's.
    "pretrain": Domain(
        name="pretrain",
        grey=False,
        classes=CLASSES,
        default_subjects=60,
        face_w=(0.29, 0.38),
        aspect=(1.08, 1.42),
        jaw=(0.0, 0.25),
        eye_spacing=(0.37, 0.45),
        eye_w=(0.17, 0.22),
        eye_h=(0.075, 0.105),
        eye_y=(-0.14, 0.0),
        nose_w=(0.11, 0.18),
        nose_y=(0.25, 0.36),
        mouth_w=(0.28, 0.36),
        mouth_y=(0.58, 0.72),
        brow_thick=(0.13, 0.19),
        skin_tones=_SKIN_ALL,
        hair_colours=_HAIR_DARK + _HAIR_LIGHT + _HAIR_GREY[:2],
        hair_styles=("short", "long", "fringe", "bob", "receding"),
        glasses_p=0.25,
        age=(0.0, 0.6),
        rest_sd=0.12,
        intensity=(0.45, 1.0),
        expr_jitter=0.15,
        blend=(0.0, 0.45),
        rotation_deg=7.0,
        shift=0.04,
        scale_jitter=0.07,
        backgrounds=((60, 60, 60), (120, 140, 160), (200, 190, 170), (30, 60, 40), (230, 230, 230)),
        light_gradient=(0.0, 0.4),
        brightness=(0.8, 1.15),
        contrast=(0.8, 1.1),
        colour_cast=0.05,
        noise_std=(0.0, 6.0),
        blur=(0.0, 0.8),
    ),
}
# The spurious-cue study's domain (`render_set(cue_mark=...)`): lab's faces with a
# deliberately weak expression signal — milder, noisier, more blended expressions, looser
# pose — so a model trained on the faces alone stays well below ceiling and a
# class-correlated mark outside the face has room to help (and to mislead).
DOMAINS["cue"] = dataclasses.replace(
    DOMAINS["lab"],
    name="cue",
    default_subjects=30,
    rest_sd=0.16,
    intensity=(0.4, 0.8),
    expr_jitter=0.22,
    blend=(0.0, 0.5),
    rotation_deg=5.0,
    shift=0.03,
    scale_jitter=0.06,
    light_gradient=(0.0, 0.15),
    brightness=(0.9, 1.1),
    contrast=(0.9, 1.05),
    noise_std=(4.0, 9.0),
    blur=(0.2, 0.6),
)


@dataclass(frozen=True)
class Identity:
    """One subject's fixed appearance (sampled once from its domain's ranges)."""

    subject: str
    domain: str
    face_w: float
    aspect: float
    jaw: float
    eye_spacing: float
    eye_w: float
    eye_h: float
    eye_y: float
    nose_w: float
    nose_y: float
    mouth_w: float
    mouth_y: float
    brow_thick: float
    skin: RGB
    lips: RGB
    iris: RGB
    hair: RGB
    hair_style: str
    hairline: float
    brow_colour: RGB
    shirt: RGB
    glasses: bool
    age: float
    wrinkle_seed: int
    rest: tuple[float, ...]  # resting offsets of the expression parameters (_PARAMS order)


@dataclass
class SyntheticSet:
    """A rendered set: images, their ROI masks and labels, aligned by index."""

    images: np.ndarray  # (N, size, size, 3) uint8 RGB (grey domains: R == G == B)
    masks: np.ndarray  # (N, len(REGIONS), size, size) bool
    labels: list[str]  # expression name per image
    subjects: list[str]
    intensities: np.ndarray  # (N,) float
    cues: list[str] | None = None  # class whose cue mark each image shows (None: no marks)


def _domain(name: str) -> Domain:
    if name not in DOMAINS:
        raise ValueError(f"unknown synthetic domain {name!r}; known: {', '.join(DOMAINS)}")
    return DOMAINS[name]


def _check_signal(signal: str) -> None:
    if signal not in SIGNALS:
        raise ValueError(f"unknown synthetic signal {signal!r}; known: {', '.join(SIGNALS)}")


def _tag(name: str) -> int:
    # A stable integer per name (Python's hash() is salted per process).
    return zlib.crc32(name.encode())


def _u(rng: np.random.Generator, lohi: Range) -> float:
    return float(rng.uniform(lohi[0], lohi[1]))


def _tint(rng: np.random.Generator, base: RGB, sd: float) -> RGB:
    v = np.asarray(base, float) * (1 + rng.normal(0, sd)) + rng.normal(0, 4, 3)
    return tuple(int(c) for c in np.clip(v, 0, 255))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))


def _scale(c: RGB, f: float) -> RGB:
    return tuple(int(min(255, max(0, round(x * f)))) for x in c)


def make_identities(domain: str, n_subjects: int, seed: int) -> list[Identity]:
    """Sample `n_subjects` identities of a domain.

    Args:
        domain: a key of `DOMAINS`.
        n_subjects: how many subjects.
        seed: base seed; subject i's parameters depend only on (seed, domain, i).

    Returns:
        Identities with subject ids `<domain>_s<i:03d>`.
    """
    d = _domain(domain)
    out = []
    for i in range(n_subjects):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _tag(domain), i, _IDENTITY_TAG]))
        skin = _tint(rng, d.skin_tones[rng.integers(len(d.skin_tones))], 0.04)
        hair = _tint(rng, d.hair_colours[rng.integers(len(d.hair_colours))], 0.08)
        age = _u(rng, d.age)
        style = d.hair_styles[rng.integers(len(d.hair_styles))]
        # Brows follow the hair but stay darker than the skin, or they would vanish (white hair).
        brow = _mix(hair, (40, 35, 30), 0.35 + 0.4 * (np.mean(hair) > 140))
        rest = rng.normal(0, d.rest_sd, len(_PARAMS)) * _JITTERED
        out.append(
            Identity(
                subject=f"{domain}_s{i:03d}",
                domain=domain,
                face_w=_u(rng, d.face_w),
                aspect=_u(rng, d.aspect),
                jaw=_u(rng, d.jaw),
                eye_spacing=_u(rng, d.eye_spacing),
                eye_w=_u(rng, d.eye_w),
                eye_h=_u(rng, d.eye_h),
                eye_y=_u(rng, d.eye_y),
                nose_w=_u(rng, d.nose_w),
                nose_y=_u(rng, d.nose_y),
                mouth_w=_u(rng, d.mouth_w),
                mouth_y=_u(rng, d.mouth_y),
                brow_thick=_u(rng, d.brow_thick),
                skin=skin,
                lips=_mix(_scale(skin, 0.8), (170, 60, 70), 0.45 - 0.2 * age),
                iris=_tint(rng, _IRIS[rng.integers(len(_IRIS))], 0.1),
                hair=hair,
                hair_style=style,
                hairline=_u(rng, (-0.98, -0.88)),
                brow_colour=brow,
                shirt=_tint(rng, _SHIRTS[rng.integers(len(_SHIRTS))], 0.1),
                glasses=bool(rng.random() < d.glasses_p),
                age=age,
                wrinkle_seed=int(rng.integers(2**31)),
                rest=tuple(float(r) for r in rest),
            )
        )
    return out


# ----------------------------------------------------------------------------- drawing helpers


@lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel coordinates in [-1, 1], cached per canvas size (background and lighting ramps).
    v = np.linspace(-1, 1, n, dtype=np.float32)
    return v[None, :], v[:, None]


@lru_cache(maxsize=32)
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    return _unit_circle(n) * (rx, ry) + (cx, cy)


@lru_cache(maxsize=32)
def _bezier_basis(n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return np.concatenate([(1 - t) ** 2, 2 * (1 - t) * t, t**2], 1)


def _bezier(p0, p1, p2, n: int = 9) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 pulled towards p1, as n points."""
    return _bezier_basis(n) @ np.array([p0, p1, p2], float)


def _ribbon(centre: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """A filled band around a polyline, `widths` wide at each point (tapered brows)."""
    d = np.gradient(centre, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
    half = (widths / 2)[:, None]
    return np.concatenate([centre + nrm * half, (centre - nrm * half)[::-1]])


class _Canvas:
    """Draws face-unit shapes onto the image and, for feature shapes, onto their region mask.

    With `features=False` the feature shapes are left off the image (masks still drawn): the
    private switch that lets tests check the masks cover exactly what the features change.
    """

    def __init__(self, img: np.ndarray, A: np.ndarray, c: np.ndarray, unit: float, features: bool):
        self.img = img
        n = img.shape[0]
        self.masks = np.zeros((len(REGIONS), n, n), np.uint8)
        self.unit, self.features = unit, features
        self._At, self._c = A.T * _FIX, np.asarray(c, float) * _FIX
        self.pad = max(1, round(_MASK_PAD * unit))

    def _px(self, pts: np.ndarray) -> np.ndarray:
        # Face units -> cv2 fixed-point pixels (A and c are pre-multiplied by 2**_SHIFT).
        return (pts @ self._At + self._c).round().astype(np.int32)

    def _w(self, width: float) -> int:
        return max(1, round(width * self.unit))

    def fill(self, pts: np.ndarray, colour: RGB, region: int | None = None) -> None:
        p = self._px(pts)
        if region is None or self.features:
            cv2.fillPoly(self.img, [p], colour, cv2.LINE_AA, _SHIFT)
        if region is not None:
            m = self.masks[region]
            cv2.fillPoly(m, [p], 255, cv2.LINE_8, _SHIFT)
            cv2.polylines(m, [p], True, 255, 2 * self.pad + 1, cv2.LINE_8, _SHIFT)

    def stroke(
        self,
        pts: np.ndarray,
        colour: RGB,
        width: float,
        region: int | None = None,
        closed: bool = False,
    ) -> None:
        p, w = self._px(pts), self._w(width)
        if region is None or self.features:
            cv2.polylines(self.img, [p], closed, colour, w, cv2.LINE_AA, _SHIFT)
        if region is not None:
            cv2.polylines(
                self.masks[region], [p], closed, 255, w + 2 * self.pad + 1, cv2.LINE_8, _SHIFT
            )

    def disc(self, centre, radius: float, colour: RGB, region: int | None = None) -> None:
        p = self._px(np.asarray(centre, float)[None])[0]
        r = max(1, round(radius * self.unit * _FIX))
        if region is None or self.features:
            cv2.circle(self.img, (int(p[0]), int(p[1])), r, colour, -1, cv2.LINE_AA, _SHIFT)
        if region is not None:
            rr = r + int(self.pad * _FIX)
            cv2.circle(self.masks[region], (int(p[0]), int(p[1])), rr, 255, -1, cv2.LINE_8, _SHIFT)


# ----------------------------------------------------------------------------- the face


def _head_outline(idt: Identity, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    b = idt.aspect
    s = np.sin(t)
    # Narrow the lower half towards the chin (jaw); the upper half stays elliptical.
    x = np.cos(t) * (1 - idt.jaw * np.clip(s, 0, None) ** 2)
    return np.stack([x, b * s], 1)


def _draw_hair_back(cv: _Canvas, idt: Identity) -> None:
    b = idt.aspect
    if idt.hair_style == "long":
        pts = np.concatenate(
            [_ellipse(0, -0.05, 1.2, b * 1.1, 32)[16:], [[1.22, b * 1.15], [-1.22, b * 1.15]]]
        )
        cv.fill(pts, _scale(idt.hair, 0.85))
    elif idt.hair_style == "bob":
        cv.fill(_ellipse(0, 0.0, 1.22, b * 0.95, 32), _scale(idt.hair, 0.85))


def _draw_hair_front(cv: _Canvas, idt: Identity) -> None:
    b = idt.aspect
    style = idt.hair_style
    xs = np.linspace(1.06, -1.06, 25)
    if style == "receding":
        # Hair only around the sides and back: the hairline climbs far up the temples.
        line = -b * 1.02 + (b * 1.02 - 0.35) * np.abs(xs) ** 1.5
    elif style == "fringe":
        # Straight bangs, kept above the highest brow so brows never hide under hair.
        line = np.full_like(xs, -0.84) + 0.5 * np.clip(np.abs(xs) - 0.8, 0, None)
    else:
        line = idt.hairline + (-0.2 - idt.hairline) * np.abs(xs) ** 3
    t = np.linspace(np.pi, 2 * np.pi, 25)
    top = np.stack([1.08 * np.cos(t), -0.03 + b * 1.1 * np.sin(t)], 1)
    # The outer arc runs left -> over the top -> right, the hairline back right -> left.
    pts = np.concatenate([top, np.stack([xs, line], 1)])
    cv.fill(pts, idt.hair)
    # A few darker strands, so the cap reads as hair rather than a helmet.
    strand = _scale(idt.hair, 0.7) if np.mean(idt.hair) > 60 else _mix(idt.hair, (90, 80, 75), 0.3)
    top_y = -0.03 - b * 1.1
    for x0 in (-0.55, -0.15, 0.25, 0.6):
        x1 = x0 * 1.2 + 0.08
        y1 = float(np.interp(x1, xs[::-1], line[::-1])) - 0.05  # stop short of the hairline
        if y1 - top_y > 0.25:
            cv.stroke(
                _bezier((x0 * 0.6, top_y + 0.1), (x0 * 1.1, top_y + 0.2), (x1, y1), 6),
                strand,
                0.025,
            )
    if style == "bob":
        for side in (-1, 1):
            cv.fill(
                np.array([[1.08, -0.3], [1.2, 0.2], [1.12, 0.7], [0.95, 0.6], [0.97, -0.2]])
                * [side, 1],
                idt.hair,
            )


def _draw_age(cv: _Canvas, idt: Identity, skin: RGB) -> None:
    """Wrinkles, bags and spots: identity texture, drawn under the features."""
    if idt.age <= 0.05:
        return
    r = np.random.default_rng(idt.wrinkle_seed)
    line = _mix(skin, (70, 45, 35), 0.28 * idt.age)
    w = 0.022
    for k in range(3):  # forehead lines
        y = -0.6 - 0.11 * k + r.normal(0, 0.015)
        half = 0.45 - 0.06 * k + r.normal(0, 0.03)
        cv.stroke(_bezier((-half, y), (0, y - 0.06), (half, y)), line, w)
    sp, ew, ey = idt.eye_spacing, idt.eye_w, idt.eye_y
    for side in (-1, 1):
        x0 = side * (sp + ew + 0.04)
        for ang in (-0.35, 0.0, 0.35):  # crow's feet
            d = np.array([side * np.cos(ang), np.sin(ang)]) * 0.1
            cv.stroke(np.array([[x0, ey], [x0 + d[0], ey + d[1]]]), line, w * 0.8)
        # under-eye bags follow the resting eye, not the expression
        cv.stroke(
            _bezier(
                (side * (sp - ew * 0.7), ey + 0.13),
                (side * sp, ey + 0.22),
                (side * (sp + ew * 0.8), ey + 0.12),
            ),
            line,
            w * 0.8,
        )
        # nasolabial folds, from the nose wing to beside the mouth corner
        cv.stroke(
            _bezier(
                (side * (idt.nose_w + 0.06), idt.nose_y - 0.04),
                (side * (idt.mouth_w + 0.12), idt.mouth_y - 0.2),
                (side * (idt.mouth_w + 0.1), idt.mouth_y + 0.08),
            ),
            line,
            w,
        )
        for _ in range(2):  # age spots on the cheeks
            c = (side * r.uniform(0.5, 0.75), r.uniform(0.1, 0.4))
            cv.disc(c, r.uniform(0.015, 0.03), _mix(skin, (120, 80, 50), 0.25 * idt.age))


def _draw_eye(
    cv: _Canvas, idt: Identity, e: np.ndarray, side: int, gaze: np.ndarray, skin: RGB
) -> None:
    ex, ey, ew, eh = side * idt.eye_spacing, idt.eye_y, idt.eye_w, idt.eye_h
    h_up = eh * max(0.25, 1 + 0.75 * e[_P["eye_open"]])
    h_lo = eh * 0.85 * max(0.2, 1 + 0.35 * e[_P["eye_open"]] - 0.45 * e[_P["cheek"]])
    t = np.linspace(0, np.pi, 13)
    xs = ex + ew * np.cos(t)
    s = np.sin(t)
    upper = np.stack([xs, ey - h_up * s**0.85], 1)
    lower = np.stack([xs, ey + h_lo * s], 1)[::-1]
    cv.fill(np.concatenate([upper, lower[1:-1]]), (245, 244, 238), 0)

    # Iris and pupil: circles clipped to the lid curves (exact, since both lids are functions
    # of x), so a squint hides the top of the iris as real eyelids do.
    def clipped_circle(cx, cy, r):
        c = _ellipse(cx, cy, r, r, 20)
        u = np.clip((c[:, 0] - ex) / ew, -1, 1)
        su = np.sqrt(1 - u**2)
        lo_lim, up_lim = ey + h_lo * su, ey - h_up * su**0.85
        c[:, 1] = np.clip(c[:, 1], up_lim, lo_lim)
        return c

    ir = 0.56 * ew
    ic = (ex + gaze[0] * ew, ey + 0.1 * eh + gaze[1] * eh)
    cv.fill(clipped_circle(*ic, ir), idt.iris, 0)
    cv.fill(clipped_circle(*ic, ir * 0.5), (15, 12, 12), 0)
    if h_up > 0.6 * ir:
        cv.disc((ic[0] + 0.3 * ir, ic[1] - 0.35 * ir), 0.18 * ir, (255, 255, 255), 0)
    lash = _scale(idt.brow_colour, 0.6)
    cv.stroke(upper, lash, 0.04, 0)
    cv.stroke(lower, _scale(skin, 0.7), 0.018, 0)
    # Lid crease above the upper lid: moves with the lid, so wide eyes show a high crease.
    crease = np.stack([ex + 0.9 * ew * np.cos(t[2:-2]), ey - (h_up + 0.055) * s[2:-2] ** 0.8], 1)
    cv.stroke(crease, _scale(skin, 0.72), 0.02, 0)


def _draw_brow(cv: _Canvas, idt: Identity, e: np.ndarray, side: int) -> None:
    sp, ew, ey = idt.eye_spacing, idt.eye_w, idt.eye_y
    raise_, inner = e[_P["brow_raise"]], e[_P["brow_inner"]]
    arch = max(-0.9, e[_P["brow_arch"]])
    x_in = side * (sp - ew * 0.85 - 0.08 * e[_P["brow_together"]])
    x_out = side * (sp + ew * 1.15)
    base = ey - 0.29
    y_in = base - 0.14 * raise_ - 0.1 * inner
    y_out = base - 0.14 * raise_ + 0.045 * inner
    apex = 0.04 + 0.05 * arch  # height of the arch above the chord
    mid = ((x_in + x_out) / 2 + side * 0.02, (y_in + y_out) / 2 - 2 * apex)
    centre = _bezier((x_in, y_in), mid, (x_out, y_out), 9)
    widths = idt.brow_thick * np.linspace(1.1, 0.55, len(centre))
    cv.fill(_ribbon(centre, widths), idt.brow_colour, 0)


def _draw_nose(cv: _Canvas, idt: Identity, e: np.ndarray, skin: RGB) -> None:
    nw, ny, ey = idt.nose_w, idt.nose_y, idt.eye_y
    wr = max(0.0, e[_P["nose_wrinkle"]])
    nw = nw * (1 + 0.18 * wr)  # flared nostrils
    ny = ny - 0.03 * wr  # nose pulled up
    shade = _scale(skin, 0.82)
    line = _scale(skin, 0.6)
    cv.fill(_ellipse(0, ny + 0.01, nw * 0.9, 0.05, 16), shade, 2)  # shading under the tip
    # Side of the bridge (one lit side only, as cartoon noses are drawn) and the nose bottom.
    cv.stroke(
        _bezier((-0.05, ey + 0.08), (-0.07, ny - 0.1), (-nw * 0.55, ny - 0.02), 7), line, 0.025, 2
    )
    bottom = _bezier((-nw, ny - 0.03), (0, ny + 0.09), (nw, ny - 0.03), 9)
    cv.stroke(bottom, line, 0.03, 2)
    for side in (-1, 1):
        cv.fill(_ellipse(side * nw * 0.45, ny + 0.005, nw * 0.22, 0.025, 12), _scale(skin, 0.45), 2)
        cv.stroke(
            _bezier(
                (side * nw * 0.95, ny - 0.08),
                (side * nw * 1.25, ny - 0.02),
                (side * nw * 0.85, ny + 0.02),
                6,
            ),
            line,
            0.025,
            2,
        )
    if wr > 0.15:
        # Disgust: horizontal wrinkles across the bridge, darker with intensity.
        wline = _mix(skin, (60, 35, 30), min(0.65, 0.65 * wr))
        for k in range(3):
            y = ey + 0.06 + 0.065 * k
            cv.stroke(
                _bezier((-0.09, y + 0.015), (0, y - 0.035), (0.09, y + 0.015), 5), wline, 0.03, 2
            )


def _draw_mouth(cv: _Canvas, idt: Identity, e: np.ndarray) -> None:
    curve, openv = e[_P["mouth_curve"]], max(0.0, e[_P["mouth_open"]])
    press = float(np.clip(e[_P["lip_press"]], 0, 1))
    w = idt.mouth_w * float(np.clip(1 + 0.42 * e[_P["mouth_width"]], 0.5, 1.6))
    y0 = idt.mouth_y
    t = np.linspace(0, np.pi, 19)
    x = -w * np.cos(t)
    s = np.sin(t)
    k = 0.13 * curve  # corners up (+) or down (-)
    yc = y0 - k * (x / w) ** 2 + 0.5 * k
    # A dead zone keeps resting-face jitter from parting the lips; pressed lips stay shut.
    height = 0.38 * max(0.0, openv - 0.1) * (1 - 0.85 * press)
    f_up = float(np.clip(0.5 - 0.35 * curve, 0.12, 0.85))
    p = float(np.clip(1.0 - 0.5 * e[_P["mouth_box"]], 0.4, 1.4))
    sneer = max(0.0, e[_P["upper_lip"]]) * 0.09 * np.exp(-((((x / w) - 0.25) / 0.45) ** 2))
    upper = yc - height * f_up * s**p - sneer * s
    lower = yc + height * (1 - f_up) * s**p
    lip_u = 0.045 * (1 - 0.75 * press) * s**0.5
    lip_l = 0.065 * (1 - 0.75 * press) * s**0.5
    outer = np.concatenate(
        [np.stack([x, upper - lip_u], 1), np.stack([x, lower + lip_l], 1)[::-1][1:-1]]
    )
    cv.fill(outer, idt.lips, 1)
    opening = np.concatenate([np.stack([x, upper], 1), np.stack([x, lower], 1)[::-1][1:-1]])
    gap = lower - upper
    if gap.max() > 0.02:
        cv.fill(opening, (80, 20, 30), 1)
        tu, tl = max(0.0, e[_P["teeth_up"]]), max(0.0, e[_P["teeth_low"]])
        if tu > 0.2:
            bot = upper + np.minimum(gap, 0.075 * min(1.0, tu))
            cv.fill(
                np.concatenate([np.stack([x, upper], 1), np.stack([x, bot], 1)[::-1]]),
                (240, 238, 228),
                1,
            )
        if tl > 0.2:
            top = lower - np.minimum(gap, 0.06 * min(1.0, tl))
            cv.fill(
                np.concatenate([np.stack([x, top], 1), np.stack([x, lower], 1)[::-1]]),
                (235, 233, 222),
                1,
            )
    # The line between the lips: a pressed mouth shows a darker, heavier line.
    cv.stroke(
        opening,
        _mix(_scale(idt.lips, 0.45), (40, 15, 15), 0.5 * press),
        0.02 + 0.015 * press,
        1,
        closed=True,
    )


def _draw_glasses(cv: _Canvas, idt: Identity) -> None:
    sp, ey = idt.eye_spacing, idt.eye_y
    r = idt.eye_w + 0.09
    frame = (35, 30, 30)
    for side in (-1, 1):
        cv.stroke(_ellipse(side * sp, ey + 0.02, r, r * 0.8, 24), frame, 0.028, closed=True)
    cv.stroke(_bezier((-sp + r, ey), (0, ey - 0.05), (sp - r, ey)), frame, 0.028)
    for side in (-1, 1):
        cv.stroke(np.array([[side * (sp + r), ey], [side * 0.98, ey - 0.04]]), frame, 0.03)


def render_face(
    identity: Identity,
    expression: str,
    intensity: float,
    domain: str,
    rng: np.random.Generator,
    size: int = 64,
    *,
    signal: str = "face",
    _features: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one face and its exact ROI masks.

    Args:
        identity: the subject (from `make_identities`).
        expression: one of `CLASSES`.
        intensity: expression strength in [0, 1] (0 is the resting face).
        domain: a key of `DOMAINS` (lighting, pose jitter, noise, colour).
        rng: per-image random stream (pose, background, lighting, jitter, noise).
        size: output side in pixels.
        signal: which region's parameters carry the expression: "face" (all), "mouth" or
            "eyes" (eyes and brows); the others keep only the subject's resting offsets and the
            per-image jitter (see `_SIGNAL_KEEP`). The random draws are the same for every
            signal.
        _features: private; False leaves eyes, brows, nose and mouth off the image (the masks
            and every random draw stay the same) so tests can check mask alignment.

    Returns:
        image (size, size, 3) uint8 RGB and masks (len(REGIONS), size, size) bool.
    """
    if expression not in _EXPR_VEC:
        raise ValueError(f"unknown expression {expression!r}; known: {', '.join(CLASSES)}")
    _check_signal(signal)
    d = _domain(domain)
    idt = identity
    n = size * _SS
    # Every random draw happens here, up front and in a fixed order, whatever is drawn later.
    jitter = rng.normal(0, d.expr_jitter, len(_PARAMS)) * _JITTERED
    blend = _u(rng, d.blend)
    gaze = rng.normal(0, 0.08, 2)
    rot = np.deg2rad(rng.uniform(-d.rotation_deg, d.rotation_deg))
    scale = 1 + rng.uniform(-d.scale_jitter, d.scale_jitter)
    shift = rng.uniform(-d.shift, d.shift, 2) * n
    bg0 = np.asarray(d.backgrounds[rng.integers(len(d.backgrounds))], np.float32)
    bg0 = bg0 * rng.uniform(0.85, 1.15) + rng.normal(0, 8, 3)
    bg1 = bg0 * rng.uniform(0.6, 1.0)
    bg_dir = rng.uniform(0, 2 * np.pi)
    light_g = _u(rng, d.light_gradient)
    light_dir = rng.uniform(0, 2 * np.pi)
    bright = _u(rng, d.brightness)
    contrast = _u(rng, d.contrast)
    cast = 1 + rng.normal(0, d.colour_cast, 3) if d.colour_cast > 0 else np.ones(3)
    noise_sd = _u(rng, d.noise_std)
    blur = _u(rng, d.blur) * size / 64
    noise = rng.standard_normal((size, size, 1 if d.grey else 3), dtype=np.float32)

    target = _EXPR_VEC[expression]
    if expression in _CONFUSABLE:
        target = (1 - blend) * target + blend * _EXPR_VEC[_CONFUSABLE[expression]]
    keep = _SIGNAL_KEEP[signal]
    if keep is not None:
        target = target * keep
    e = float(np.clip(intensity, 0, 1)) * target + np.asarray(idt.rest) + jitter

    # Background: a linear gradient between two shades in a random direction.
    # Computed on a 16x16 grid and enlarged: a linear ramp survives bilinear resizing, and the
    # full-size float arithmetic cost a quarter of the render time.
    gx, gy = _grid(16)
    ramp = (gx * np.cos(bg_dir) + gy * np.sin(bg_dir) + 1) / 2
    small = (bg0 + (bg1 - bg0) * ramp[..., None]).clip(0, 255).astype(np.uint8)
    img = cv2.resize(small, (n, n), interpolation=cv2.INTER_LINEAR)

    unit = idt.face_w * n * scale
    c, s_ = np.cos(rot), np.sin(rot)
    A = unit * np.array([[c, -s_], [s_, c]])
    centre = np.array([n / 2, n * 0.51]) + shift
    cv = _Canvas(img, A, centre, unit, _features)

    skin = idt.skin
    b = idt.aspect
    _draw_hair_back(cv, idt)
    cv.fill(
        np.array(
            [
                [0.9, 2.2],
                [-0.9, 2.2],
                [-2.2, 2.4],
                [-2.2, 1.9],
                [-1.2, b + 0.25],
                [1.2, b + 0.25],
                [2.2, 1.9],
                [2.2, 2.4],
            ]
        ),
        idt.shirt,
    )
    cv.fill(
        np.array([[-0.42, 0.6], [0.42, 0.6], [0.45, b + 0.35], [-0.45, b + 0.35]]),
        _scale(skin, 0.85),
    )
    for side in (-1, 1):
        cv.fill(_ellipse(side * 0.98, idt.eye_y + 0.12, 0.12, 0.22, 16), _scale(skin, 0.93))
    cv.fill(_head_outline(idt), skin)
    _draw_age(cv, idt, skin)
    for side in (-1, 1):
        _draw_eye(cv, idt, e, side, gaze, skin)
        _draw_brow(cv, idt, e, side)
    _draw_nose(cv, idt, e, skin)
    _draw_mouth(cv, idt, e)
    _draw_hair_front(cv, idt)
    if idt.glasses:
        _draw_glasses(cv, idt)

    img = cv2.resize(cv.img, (size, size), interpolation=cv2.INTER_AREA)
    masks = (
        np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) for m in cv.masks])
        >= 128
    )

    # Photometric shifts at output size: contrast, colour cast, lighting ramp, blur, noise.
    f = img.astype(np.float32)
    f = (f - 128) * contrast + 128
    f = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None] if d.grey else f * cast.astype(np.float32)
    hx, hy = _grid(size)
    light = bright * (1 + light_g * (hx * np.cos(light_dir) + hy * np.sin(light_dir)))
    f = f * light[..., None]
    if blur > 0.25:
        f = cv2.GaussianBlur(f, (0, 0), blur)
        f = f.reshape(size, size, -1)
    f = f + noise * noise_sd
    out = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    if d.grey:
        out = np.repeat(out, 3, axis=2)
    return out, masks


# ----------------------------------------------------------------------------- spurious cue

#: Where a spurious-cue mark goes: "none" (the clean variant: no mark), "corner" (a striped
#: square in the top-left corner), "strip" (the stripes down the left edge, top half: taller
#: stripes, read more easily at 32 px) or "band" (the stripes across the top edge). Every mark
#: lies outside the face ROI (eyes and brows, nose, mouth); tests check it on the study's set.
CUE_MARKS: tuple[str, ...] = ("none", "corner", "strip", "band")
_CUE_TAG = 0xC0E  # keeps cue draws apart from the image and identity streams
# Each class's mark is 4 horizontal stripes, dark (0) or bright (1): an even-parity code, so
# two marks differ in at least two stripes. A stripe is uniform along its row, so a horizontal
# flip (a training augmentation) moves the patch but keeps its code.
_CUE_CODES: dict[str, tuple[int, ...]] = dict(
    zip(
        CLASSES,
        (
            (0, 0, 1, 1),
            (0, 1, 0, 1),
            (0, 1, 1, 0),
            (1, 0, 0, 1),
            (1, 0, 1, 0),
            (1, 1, 0, 0),
            (1, 1, 1, 1),
        ),
        strict=True,
    )
)
_CUE_LEVELS = (20, 235)  # grey levels of a dark and a bright stripe (visible in grey models)
# (rows, columns) of each mark as fractions of the side. Measured on 2,520 faces of the cue
# domain, no ROI pixel lies left of 0.17, above 0.19, or within max(row, col) < 0.23 of the
# top-left corner: every box keeps a margin from those limits.
_CUE_BOXES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "corner": ((0.01, 0.2), (0.01, 0.2)),
    "strip": ((0.01, 0.57), (0.01, 0.14)),
    "band": ((0.0, 0.14), (0.0, 1.0)),
}


def check_cue(mark: str, p: float) -> None:
    """Raise ValueError for an unknown mark or a strength outside [0, 1]."""
    if mark not in CUE_MARKS:
        raise ValueError(f"unknown cue mark {mark!r}; known: {', '.join(CUE_MARKS)}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"cue strength p={p} must lie in [0, 1]")


def cue_box(size: int, mark: str) -> tuple[slice, slice]:
    """The (rows, columns) the mark covers in a `size`-pixel image (empty for "none")."""
    check_cue(mark, 0.0)
    if mark == "none":
        return slice(0, 0), slice(0, 0)
    (r0, r1), (c0, c1) = _CUE_BOXES[mark]
    top, left = round(r0 * size), round(c0 * size)
    # at least one pixel per stripe, and one column
    return slice(top, max(round(r1 * size), top + 4)), slice(left, max(round(c1 * size), left + 1))


def draw_cue(image: np.ndarray, cls: str, mark: str) -> np.ndarray:
    """A copy of `image` (H, W, 3 uint8) with class `cls`'s mark; "none" returns a copy.

    The mark is pasted on the finished image, over noise and lighting, like a watermark or a
    time stamp in a real dataset: nothing else in the image changes.
    """
    out = image.copy()
    if mark == "none":
        return out
    rows, cols = cue_box(image.shape[0], mark)
    edges = np.linspace(rows.start, rows.stop, 5).round().astype(int)
    for bit, top, bottom in zip(_CUE_CODES[cls], edges[:-1], edges[1:], strict=True):
        out[top:bottom, cols] = _CUE_LEVELS[bit]
    return out


def read_cue(image: np.ndarray, mark: str, classes: Sequence[str] = CLASSES) -> str:
    """The class whose mark an image shows: the nearest code to its stripes' mean levels."""
    rows, cols = cue_box(image.shape[0], mark)
    grey = image[rows, cols].astype(float).mean(axis=2)
    edges = np.linspace(rows.start, rows.stop, 5).round().astype(int) - rows.start  # draw_cue's
    levels = np.array([grey[a:b].mean() for a, b in itertools.pairwise(edges)])
    bits = (levels - _CUE_LEVELS[0]) / (_CUE_LEVELS[1] - _CUE_LEVELS[0])
    return min(classes, key=lambda c: float(np.abs(bits - np.array(_CUE_CODES[c])).sum()))


def cue_class(
    label: str, classes: Sequence[str], p: float, seed: int, domain: str, subject: int, k: int
) -> str:
    """The class whose mark image (subject, label, k) shows: `label` with probability p, else
    one of the other `classes`, uniformly.

    Drawn from a stream of its own (seed, domain, subject, class, k), so the face itself never
    changes with the cue; the same uniform draw is compared with every p, so for one seed the
    images whose mark matches at p = 0.7 are a subset of those at p = 0.95.
    """
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, _tag(domain), subject, CLASSES.index(label), k, _CUE_TAG])
    )
    u, j = rng.random(), int(rng.integers(max(1, len(classes) - 1)))
    others = [c for c in classes if c != label]
    return label if u < p or not others else others[j]


def cue_classes(
    domain: str,
    n_subjects: int,
    per_class: int,
    seed: int,
    p: float,
    classes: Sequence[str] | None = None,
) -> list[str]:
    """`cue_class` of every image of `render_set`'s set, in its order (subject, class, k)."""
    classes = tuple(classes) if classes is not None else _domain(domain).classes
    return [
        cue_class(cls, classes, p, seed, domain, si, k)
        for si in range(n_subjects)
        for cls in classes
        for k in range(per_class)
    ]


# ----------------------------------------------------------------------------- sets


def _image_rng(seed: int, domain: str, subject: int, cls: str, k: int) -> np.random.Generator:
    # One stream per image, so no image depends on which other images were rendered.
    return np.random.default_rng(
        np.random.SeedSequence([seed, _tag(domain), subject, CLASSES.index(cls), k])
    )


def _render_one(
    identity: Identity,
    subject: int,
    cls: str,
    k: int,
    domain: str,
    seed: int,
    size: int,
    signal: str = "face",
) -> tuple[np.ndarray, np.ndarray, float]:
    rng = _image_rng(seed, domain, subject, cls, k)
    intensity = _u(rng, DOMAINS[domain].intensity)  # drawn for neutral too: same stream layout
    if cls == "neutral":
        intensity = 0.0
    img, masks = render_face(identity, cls, intensity, domain, rng, size, signal=signal)
    return img, masks, intensity


def render_set(
    domain: str,
    n_subjects: int,
    per_class: int,
    seed: int,
    size: int = 64,
    classes: Sequence[str] | None = None,
    signal: str = "face",
    cue_mark: str = "none",
    cue_p: float = 0.95,
) -> SyntheticSet:
    """Render `per_class` images for every (subject, class) of a domain.

    Args:
        domain: a key of `DOMAINS`.
        n_subjects: number of subjects (identities from `make_identities`).
        per_class: images per (subject, class).
        seed: base seed; same arguments give identical arrays.
        size: image side in pixels.
        classes: expressions to render (default: the domain's classes).
        signal: which region carries the expression, one of `SIGNALS` (see `render_face`);
            "face" renders exactly what it did before the option existed.
        cue_mark: a spurious-cue mark outside the face, one of `CUE_MARKS` (`draw_cue`);
            "none" (default) renders exactly what it did before the option existed.
        cue_p: the cue's strength: the probability that an image's mark is its own class's
            (`cue_class`); ignored without a mark.

    Returns:
        The set, ordered by subject, then class, then k; `cues` holds each image's mark class
        when there is a mark. The faces are the same with and without a mark.

    Raises:
        ValueError: a requested class is not one the domain has (or the domain, the signal or
            the cue is unknown).
    """
    _check_signal(signal)
    check_cue(cue_mark, cue_p)
    d = _domain(domain)
    classes = tuple(classes) if classes is not None else d.classes
    missing = [c for c in classes if c not in d.classes]
    if missing:
        raise ValueError(
            f"synthetic domain {domain!r} has no class {', '.join(map(repr, missing))}; "
            f"it has: {', '.join(d.classes)}"
        )
    ids = make_identities(domain, n_subjects, seed)
    total = n_subjects * len(classes) * per_class
    images = np.empty((total, size, size, 3), np.uint8)
    masks = np.empty((total, len(REGIONS), size, size), bool)
    labels: list[str] = []
    subjects: list[str] = []
    intensities = np.empty(total, float)
    i = 0
    for si, idt in enumerate(ids):
        for cls in classes:
            for k in range(per_class):
                images[i], masks[i], intensities[i] = _render_one(
                    idt, si, cls, k, domain, seed, size, signal
                )
                labels.append(cls)
                subjects.append(idt.subject)
                i += 1
    if cue_mark == "none":
        return SyntheticSet(images, masks, labels, subjects, intensities)
    cues = cue_classes(domain, n_subjects, per_class, seed, cue_p, classes)
    for j, cls in enumerate(cues):
        images[j] = draw_cue(images[j], cls, cue_mark)
    return SyntheticSet(images, masks, labels, subjects, intensities, cues)


# ----------------------------------------------------------------------------- preview

_REGION_COLOURS = ("#00e5ff", "#ff3df5", "#ffd400")  # one per region, in REGIONS order


def save_preview_grid(path: str | Path, size: int = 96, seed: int = 0) -> Path:
    """Save a PNG grid: one row per expression, one column per domain, ROI outlines on top.

    Each column shows the domain's first subject as `render_set` renders it (k = 0); a cell
    reads "n/a" where the domain lacks the class.

    Args:
        path: PNG file to write (parent folders are created).
        size: face side in pixels.
        seed: identity and image seed.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(DOMAINS)
    cell = size * 1.25 / 100  # inches per cell at 100 dpi
    fig, axes = plt.subplots(
        len(CLASSES),
        len(names),
        figsize=(cell * (len(names) + 0.6), cell * (len(CLASSES) + 0.8)),
        dpi=100,
        squeeze=False,
    )
    fig.subplots_adjust(
        left=0.6 / (len(names) + 0.6),
        right=1,
        bottom=0,
        top=1 - 0.8 / (len(CLASSES) + 0.8),
        wspace=0.05,
        hspace=0.05,
    )
    for j, dom in enumerate(names):
        idt = make_identities(dom, 1, seed)[0]
        for i, cls in enumerate(CLASSES):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(cls, fontsize=8)
            if i == 0:
                ax.set_title(dom, fontsize=9)
            if cls not in DOMAINS[dom].classes:
                ax.imshow(np.full((size, size, 3), 255, np.uint8))
                ax.text(
                    size / 2, size / 2, "n/a", ha="center", va="center", fontsize=10, color="grey"
                )
                continue
            img, masks, _ = _render_one(idt, 0, cls, 0, dom, seed, size)
            ax.imshow(img, interpolation="nearest")
            for r in range(len(REGIONS)):
                contours, _ = cv2.findContours(
                    masks[r].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
                )
                for ct in contours:
                    xy = np.concatenate([ct[:, 0], ct[:1, 0]]).astype(float)
                    ax.plot(xy[:, 0], xy[:, 1], color=_REGION_COLOURS[r], lw=0.7, alpha=0.85)
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
    handles = [Line2D([], [], color=c, lw=2) for c in _REGION_COLOURS]
    fig.legend(
        handles,
        REGIONS,
        loc="upper center",
        ncol=len(REGIONS),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `python -m fer.data.synthetic --grid outputs/synthetic_grid.png`."""
    ap = argparse.ArgumentParser(description="Preview the synthetic face domains.")
    ap.add_argument("--grid", required=True, help="PNG path of the preview grid")
    ap.add_argument("--size", type=int, default=96, help="face side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(save_preview_grid(args.grid, args.size, args.seed))


if __name__ == "__main__":
    main()
