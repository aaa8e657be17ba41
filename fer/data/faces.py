"""Face detection, landmarks, alignment and ROI masks for one image (DESIGN.md "ROI masks").

Two detectors, one geometry. Both find a face box and the two eye centres, rotate the image
about the eye midpoint so the eyes are level, and cut a square of side
`box side * (1 + 2 * margin)` centred on the (rotated) face box, resized to `size`. That is one
affine matrix; the ROI masks are drawn in the crop with the same matrix, so crop and masks
always share coordinates.

- `LandmarkFaces` (preprocess=landmarks, default): dlib's frontal detector (the face with the
  highest detector *score* wins: dlib can fire twice on one face with near-equal boxes) and its
  68-point shape predictor; masks are filled convex hulls of the landmark groups.
- `HaarFaces` (preprocess=haar, the paper-like path): Viola–Jones face and eye cascades;
  OpenCV ships no mouth cascade (its smile cascade rejects neutral mouths), so the mouth, the
  brows and the nose are boxes placed from the eye centres and the face box.
- `template_masks`: the same boxes at canonical eye positions, for datasets that come already
  cropped and roughly aligned (FER2013, 48×48).

A face whose regions cannot be segmented is *excluded* (DESIGN.md "Excluded faces"): its
`FaceResult` says why, has no masks, and, when a face box was found, still carries a fallback
crop of that box (axis-aligned, same margin) so evaluation can score every face.

Models load on first use and are dropped when pickled, so detector objects can be sent to
the worker processes of the pre-processing pool.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer.errors import ConfigError, DataError
from fer.labels import REGIONS

Box = tuple[int, int, int, int]

#: dlib 68-point indices of each landmark group (0-based, iBUG 300-W convention). "left" and
#: "right" are as seen in the image: the subject's right eye is on the image's left.
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "brow_left": tuple(range(17, 22)),
    "brow_right": tuple(range(22, 27)),
    "nose": tuple(range(27, 36)),
    "eye_left": tuple(range(36, 42)),
    "eye_right": tuple(range(42, 48)),
    "mouth": tuple(range(48, 68)),
}

#: Region boxes for the Haar path and the template, in units of the inter-ocular distance d
#: (eye centre to eye centre) relative to the eye midpoint, x right, y down, eyes level.
#: Measured on dlib landmarks of frontal faces: brows span ±0.9 d and rise to -0.36 d, eyes
#: ±0.7 d, nose -0.25..0.25 d × 0..0.75 d, a closed mouth ±0.55 d × 0.85..1.2 d.
#: eyes_brows is one box per eye, centred on that eye (half-width, top, bottom).
_EYE_BOX = (0.45, -0.55, 0.22)
_NOSE_BOX = (-0.25, -0.05, 0.25, 0.80)  # x0, y0, x1, y1
_MOUTH_BOX = (-0.62, 0.75, 0.62)  # x0, y0, x1; the bottom comes from the face box:
_MOUTH_BOTTOM = (1.25, 1.60)  # ... the box's bottom edge, clipped to this range (d units)
_TEMPLATE_EYES = ((0.32, 0.40), (0.68, 0.40))  # FER2013-like crops, fractions of the side

#: Mask dilation radius in units of d (landmark hulls only: thin groups still give a region).
_DILATE = {"eyes_brows": 0.06, "mouth": 0.05, "nose": 0.0}

_INSTALL_DLIB = "pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0"
_SHAPE_PREDICTOR = "shape_predictor_68_face_landmarks.dat"
_FACE_CASCADE = "haarcascade_frontalface_default.xml"
_EYE_CASCADE = "haarcascade_eye.xml"
_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


@dataclass
class FaceResult:
    """What detection, alignment and segmentation made of one image.

    `box` is (x0, y0, x1, y1) in the original image, x1/y1 exclusive, clipped to the image
    (the crop geometry uses the unclipped box). `crop` is None only when no face was found;
    `masks` is None whenever the face is excluded.
    """

    crop: np.ndarray | None  # (size, size, 3) uint8 RGB
    masks: np.ndarray | None  # (len(regions), size, size) uint8 {0, 1}, crop coordinates
    excluded: str | None  # None = usable; else the reason
    mask_source: str  # "landmarks" | "haar-boxes" | "template" | "none"
    n_faces: int  # faces the detector found
    box: Box | None

    @property
    def usable(self) -> bool:
        return self.excluded is None


# ---------------------------------------------------------------- model files


def find_shape_predictor() -> Path:
    """Path of dlib's 68-point shape predictor shipped by `face_recognition_models`.

    The package is located without importing it (its `__init__` needs pkg_resources).

    Raises:
        DataError: naming the packages to install when the model file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"dlib's 68-point landmark model ({_SHAPE_PREDICTOR}) not found: the package "
            f"face_recognition_models is not installed ({_INSTALL_DLIB})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _SHAPE_PREDICTOR
    if not path.is_file():
        raise DataError(
            f"dlib's 68-point landmark model is missing: expected {path} "
            f"(reinstall face_recognition_models: {_INSTALL_DLIB})"
        )
    return path


def find_haar_cascade(name: str, cascade_dir: str | Path | None = None) -> Path:
    """Path of an OpenCV Haar cascade XML file (e.g. `haarcascade_eye.xml`).

    Searched in order: `cascade_dir`, `$FER_HAAR_DIR`, `cv2.data.haarcascades` (OpenCV 4
    wheels ship the files there; OpenCV 5 wheels do not), then Debian's `opencv-data`
    directories (`/usr/share/opencv4/haarcascades`).

    Raises:
        DataError: listing where it looked and how to get the files.
    """
    dirs: list[str] = []
    if cascade_dir is not None:
        dirs.append(str(cascade_dir))
    if os.environ.get("FER_HAAR_DIR"):
        dirs.append(os.environ["FER_HAAR_DIR"])
    cv2_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if cv2_dir:
        dirs.append(str(cv2_dir))
    dirs.extend(_CASCADE_DIRS)
    for d in dirs:
        path = Path(d) / name
        if path.is_file():
            return path
    raise DataError(
        f"Haar cascade {name} not found in {dirs}: install Debian's opencv-data "
        "(apt-get install opencv-data) or point $FER_HAAR_DIR / cascade_dir at a folder "
        "holding OpenCV's haarcascade_*.xml files"
    )


def _load_cascade(name: str, cascade_dir: str | Path | None) -> Any:
    if not hasattr(cv2, "CascadeClassifier"):
        raise DataError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved it to the "
            "contrib build): install opencv-contrib-python-headless of the same version in "
            "place of opencv-python-headless to use preprocess=haar"
        )
    path = find_haar_cascade(name, cascade_dir)
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise DataError(f"Haar cascade {path} could not be loaded (not a cascade XML file?)")
    return cascade


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as e:
        raise DataError(f"preprocess=landmarks needs dlib ({_INSTALL_DLIB}): {e}") from e
    return dlib


# ---------------------------------------------------------------- geometry


def _check_regions(regions: Sequence[str]) -> tuple[str, ...]:
    regions = tuple(str(r) for r in regions)
    unknown = [r for r in regions if r not in REGIONS]
    if unknown or not regions or len(set(regions)) != len(regions):
        raise ConfigError(f"regions: {list(regions)} must be distinct names from {list(REGIONS)}")
    return regions


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB from grey (H, W) / (H, W, 1), RGB or RGBA."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"face detection expects a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected a (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def _crop_matrix(
    box: tuple[float, float, float, float],
    margin: float,
    size: int,
    eyes: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """2×3 affine from the image to the crop.

    With `eyes` (image-left eye, image-right eye), the image is first rotated about the eye
    midpoint so the eyes are level; the crop is the square of side `max(w, h) * (1 + 2 margin)`
    centred on the (rotated) box centre. The box centre lands on the crop centre.
    """
    x0, y0, x1, y1 = box
    centre = np.array([(x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2])
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    k = size / side
    rot = np.eye(2)
    pivot = centre
    if eyes is not None:
        left, right = (np.asarray(e, float) for e in eyes)
        dx, dy = right - left
        theta = np.arctan2(dy, dx)
        c, s = np.cos(theta), np.sin(theta)
        rot = np.array([[c, s], [-s, c]])  # maps the eye vector onto +x
        pivot = (left + right) / 2
    centre_rot = rot @ (centre - pivot) + pivot
    a = k * rot
    t = k * (pivot - rot @ pivot - centre_rot) + (size - 1) / 2
    return np.hstack([a, t[:, None]])


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, float).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _warp(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply `matrix` to get a (size, size, 3) crop; borders replicate the edge pixels.

    A large reduction is first done by area averaging (warpAffine alone would alias), with the
    matrix corrected for the exact resize factors, so the geometry is unchanged.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        h, w = rgb.shape[:2]
        f = 2 * scale
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / w, nh / h
        # small-image pixel p' comes from original (p' + 0.5) / f - 0.5, per axis
        inv = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
        matrix = matrix @ inv
        rgb = small
    return cv2.warpAffine(
        rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


_SHIFT = 4  # fractional bits for cv2's fixed-point polygon coordinates


def _fill(mask: np.ndarray, points: np.ndarray) -> None:
    hull = cv2.convexHull(np.round(points * (1 << _SHIFT)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=_SHIFT)


def _dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    r = round(radius)
    if r < 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask, kernel)


def _landmark_masks(points: np.ndarray, size: int, regions: Sequence[str]) -> np.ndarray:
    """Masks from 68 landmarks already in crop coordinates (filled, slightly dilated hulls)."""
    g = {name: points[list(idx)] for name, idx in LANDMARK_GROUPS.items()}
    d = float(np.linalg.norm(g["eye_right"].mean(0) - g["eye_left"].mean(0)))
    parts = {
        "eyes_brows": [
            np.vstack([g["brow_left"], g["eye_left"]]),
            np.vstack([g["brow_right"], g["eye_right"]]),
        ],
        "mouth": [g["mouth"]],
        "nose": [g["nose"]],
    }
    masks = np.zeros((len(regions), size, size), np.uint8)
    for i, region in enumerate(regions):
        for hull in parts[region]:
            _fill(masks[i], hull)
        masks[i] = _dilate(masks[i], _DILATE[region] * d)
    return masks


def _box_masks(
    eye_left: np.ndarray,
    eye_right: np.ndarray,
    size: int,
    regions: Sequence[str],
    face_bottom: float | None = None,
) -> np.ndarray:
    """Box masks placed from level eye centres (crop coordinates), see `_EYE_BOX` & co.

    `face_bottom` (the face box's bottom edge, crop y) sets the mouth's bottom edge, clipped
    to `_MOUTH_BOTTOM`; without it the mouth is `_MOUTH_BOTTOM[0]` d deep.
    """
    eye_left, eye_right = np.asarray(eye_left, float), np.asarray(eye_right, float)
    d = float(np.linalg.norm(eye_right - eye_left))
    mx, my = (eye_left + eye_right) / 2
    rects: dict[str, list[tuple[float, float, float, float]]] = {}
    half, top, bottom = _EYE_BOX
    rects["eyes_brows"] = [
        (ex - half * d, ey + top * d, ex + half * d, ey + bottom * d)
        for ex, ey in (eye_left, eye_right)
    ]
    x0, y0, x1, y1 = _NOSE_BOX
    rects["nose"] = [(mx + x0 * d, my + y0 * d, mx + x1 * d, my + y1 * d)]
    mouth_bottom = _MOUTH_BOTTOM[0]
    if face_bottom is not None:
        mouth_bottom = float(np.clip((face_bottom - my) / d, *_MOUTH_BOTTOM))
    x0, y0, x1 = _MOUTH_BOX
    rects["mouth"] = [(mx + x0 * d, my + y0 * d, mx + x1 * d, my + mouth_bottom * d)]
    masks = np.zeros((len(regions), size, size), np.uint8)
    for i, region in enumerate(regions):
        for rx0, ry0, rx1, ry1 in rects[region]:
            # the pixels whose centres lie inside the box
            c0, r0 = max(0, math.ceil(rx0)), max(0, math.ceil(ry0))
            c1, r1 = min(size, math.floor(rx1) + 1), min(size, math.floor(ry1) + 1)
            masks[i, r0:r1, c0:c1] = 1
    return masks


def template_masks(size: int, regions: Sequence[str] = REGIONS) -> np.ndarray:
    """Canonical ROI boxes for an already cropped, roughly aligned face (FER2013, 48×48).

    The eyes are assumed at `_TEMPLATE_EYES` (fractions of the side) and the boxes are the
    Haar path's boxes around them. Returns (len(regions), size, size) uint8 {0, 1}.
    """
    regions = _check_regions(regions)
    (lx, ly), (rx, ry) = _TEMPLATE_EYES
    s = size - 1
    return _box_masks(np.array([lx * s, ly * s]), np.array([rx * s, ry * s]), size, regions)


def _empty_regions(masks: np.ndarray, regions: Sequence[str]) -> str | None:
    empty = [r for r, m in zip(regions, masks, strict=True) if not m.any()]
    return f"empty {', '.join(empty)} mask" if empty else None


def _clip_box(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> Box:
    h, w = shape[:2]
    x0, y0, x1, y1 = (round(v) for v in box)
    return (max(0, x0), max(0, y0), min(w, x1), min(h, y1))


class _FaceMethod:
    """Shared parts: settings, lazy models dropped on pickling, fallback crops."""

    _models: tuple[str, ...] = ()

    def __init__(self, size: int, margin: float, regions: Sequence[str]) -> None:
        if int(size) < 8:
            raise ConfigError(f"size: face crops need at least 8 pixels, got {size}")
        if not 0 <= float(margin) <= 2:
            raise ConfigError(
                f"margin: expected a fraction of the face size in [0, 2], got {margin}"
            )
        self.size = int(size)
        self.margin = float(margin)
        self.regions = _check_regions(regions)
        for name in self._models:
            setattr(self, name, None)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._models:
            state[name] = None  # reloaded on first call in the receiving process
        return state

    def _fallback(
        self, rgb: np.ndarray, box: tuple[float, float, float, float], reason: str, n: int
    ) -> FaceResult:
        crop = _warp(rgb, _crop_matrix(box, self.margin, self.size), self.size)
        return FaceResult(crop, None, reason, "none", n, _clip_box(box, rgb.shape))


class LandmarkFaces(_FaceMethod):
    """dlib face detector + 68-point landmarks → eye-levelled crop and landmark-hull masks.

    `upsample` and `threshold` go to `detector.run(gray, upsample, threshold)`: more upsampling
    finds smaller faces (cost ×4 each); a lower threshold accepts weaker detections.
    """

    _models = ("_detector", "_predictor")

    def __init__(
        self,
        size: int = 224,
        margin: float = 0.25,
        regions: Sequence[str] = REGIONS,
        upsample: int = 1,
        threshold: float = 0.0,
    ) -> None:
        super().__init__(size, margin, regions)
        self.upsample = int(upsample)
        self.threshold = float(threshold)

    def _load(self) -> None:
        if self._detector is None:
            dlib = _import_dlib()
            self._predictor = dlib.shape_predictor(str(find_shape_predictor()))
            self._detector = dlib.get_frontal_face_detector()

    def detect(
        self, gray: np.ndarray
    ) -> tuple[list[tuple[float, float, float, float]], list[float]]:
        """All face boxes (x0, y0, x1, y1, exclusive ends) and their detector scores."""
        self._load()
        rects, scores, _ = self._detector.run(gray, self.upsample, self.threshold)
        boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]
        return boxes, [float(s) for s in scores]

    def landmarks(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """(68, 2) landmark coordinates in the image for one face box."""
        self._load()
        dlib = _import_dlib()
        x0, y0, x1, y1 = (round(v) for v in box)
        shape = self._predictor(gray, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], float)

    def __call__(self, rgb: np.ndarray) -> FaceResult:
        rgb = _as_rgb(rgb)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes, scores = self.detect(gray)
        n = len(boxes)
        if n == 0:
            return FaceResult(None, None, "no face", "none", 0, None)
        box = boxes[int(np.argmax(scores))]
        points = self.landmarks(gray, box)
        eye_left = points[list(LANDMARK_GROUPS["eye_left"])].mean(0)
        eye_right = points[list(LANDMARK_GROUPS["eye_right"])].mean(0)
        reason = _implausible(points, box)
        if reason:
            return self._fallback(rgb, box, reason, n)
        matrix = _crop_matrix(box, self.margin, self.size, (eye_left, eye_right))
        crop = _warp(rgb, matrix, self.size)
        masks = _landmark_masks(_transform(points, matrix), self.size, self.regions)
        reason = _empty_regions(masks, self.regions)
        if reason:
            return self._fallback(rgb, box, reason, n)
        return FaceResult(crop, masks, None, "landmarks", n, _clip_box(box, rgb.shape))

    def masks_in_place(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmark masks in the image's own (square) coordinates, for ready-made crops
        (`preprocess=none`, e.g. FER2013); None when no plausible face is found."""
        rgb = _as_rgb(rgb)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes, scores = self.detect(gray)
        if not boxes:
            return None
        box = boxes[int(np.argmax(scores))]
        points = self.landmarks(gray, box)
        if _implausible(points, box):
            return None
        masks = _landmark_masks(points, gray.shape[0], self.regions)
        return None if _empty_regions(masks, self.regions) else masks


def _implausible(points: np.ndarray, box: tuple[float, float, float, float]) -> str | None:
    """'landmarks failed' when the 68 points cannot be a face (eyes not apart, mouth above)."""
    g = {name: points[list(idx)] for name, idx in LANDMARK_GROUPS.items()}
    left, right = g["eye_left"].mean(0), g["eye_right"].mean(0)
    eye_vec = right - left
    d = float(np.linalg.norm(eye_vec))
    side = max(box[2] - box[0], box[3] - box[1])
    if d < 0.15 * side or eye_vec[0] <= 0:
        return "landmarks failed"
    # mouth below the eye line, in the eye-levelled frame
    normal = np.array([-eye_vec[1], eye_vec[0]]) / d
    if float((g["mouth"].mean(0) - (left + right) / 2) @ normal) < 0.4 * d:
        return "landmarks failed"
    return None


class HaarFaces(_FaceMethod):
    """Viola–Jones face and eye cascades → eye-levelled crop and box masks (the paper-like path).

    The eyes are searched in the upper half of the face box, one on each side of its centre;
    a face without both eyes is excluded ("eyes not found") with a fallback crop of its box.
    Among several faces, the one with the highest cascade level weight wins (largest box on a
    tie). `cascade_dir` overrides where the XML files are looked for (`find_haar_cascade`).
    """

    _models = ("_face_cascade", "_eye_cascade")

    def __init__(
        self,
        size: int = 224,
        margin: float = 0.25,
        regions: Sequence[str] = REGIONS,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_face: int = 30,
        cascade_dir: str | Path | None = None,
    ) -> None:
        super().__init__(size, margin, regions)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_face = int(min_face)
        self.cascade_dir = None if cascade_dir is None else str(cascade_dir)

    def _load(self) -> None:
        if self._face_cascade is None:
            self._eye_cascade = _load_cascade(_EYE_CASCADE, self.cascade_dir)
            self._face_cascade = _load_cascade(_FACE_CASCADE, self.cascade_dir)

    def detect(
        self, gray: np.ndarray
    ) -> tuple[list[tuple[float, float, float, float]], list[float]]:
        """All face boxes (x0, y0, x1, y1) and their cascade level weights."""
        self._load()
        rects, _, weights = self._face_cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_face, self.min_face),
            outputRejectLevels=True,
        )
        boxes = [(x, y, x + w, y + h) for x, y, w, h in np.asarray(rects).reshape(-1, 4).tolist()]
        weights = np.asarray(weights, float).reshape(-1)
        if len(weights) != len(boxes):
            weights = np.zeros(len(boxes))
        return boxes, weights.tolist()

    def eyes(
        self, gray: np.ndarray, box: tuple[float, float, float, float]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Centres of the image-left and image-right eye in the upper half of `box`, or None."""
        self._load()
        h, w = gray.shape
        x0, y0, x1, y1 = (round(v) for v in box)
        fw = x1 - x0
        # the upper half, plus a little: eye boxes centred near the middle reach below it
        top, bottom = max(0, y0), min(h, y0 + round(0.6 * (y1 - y0)))
        left, right = max(0, x0), min(w, x1)
        if bottom - top < 8 or right - left < 8:
            return None
        roi = gray[top:bottom, left:right]
        min_eye, max_eye = max(5, fw // 9), max(6, fw // 2)
        rects, _, weights = self._eye_cascade.detectMultiScale3(
            roi,
            scaleFactor=1.05,
            minNeighbors=3,
            minSize=(min_eye, min_eye),
            maxSize=(max_eye, max_eye),
            outputRejectLevels=True,
        )
        rects = np.asarray(rects, float).reshape(-1, 4)
        weights = np.asarray(weights, float).reshape(-1)
        if len(weights) != len(rects):
            weights = np.zeros(len(rects))
        centres = rects[:, :2] + rects[:, 2:] / 2 + (left, top)
        mid_x, half_y = (x0 + x1) / 2, y0 + 0.5 * (y1 - y0)
        picked = []
        for side in (-1, 1):  # image-left, image-right
            ok = (np.sign(centres[:, 0] - mid_x) == side) & (centres[:, 1] < half_y)
            if not ok.any():
                return None
            # strongest detection; larger box on a tie (level weights can all be equal)
            order = np.lexsort((rects[ok, 2], weights[ok]))
            picked.append(centres[ok][order[-1]])
        return picked[0], picked[1]

    def __call__(self, rgb: np.ndarray) -> FaceResult:
        rgb = _as_rgb(rgb)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes, weights = self.detect(gray)
        n = len(boxes)
        if n == 0:
            return FaceResult(None, None, "no face", "none", 0, None)
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        box = boxes[int(np.lexsort((areas, weights))[-1])]
        eyes = self.eyes(gray, box)
        if eyes is None:
            return self._fallback(rgb, box, "eyes not found", n)
        matrix = _crop_matrix(box, self.margin, self.size, eyes)
        crop = _warp(rgb, matrix, self.size)
        eye_left, eye_right = _transform(np.vstack(eyes), matrix)
        # the face box's bottom edge in the crop: the box centre lands on the crop centre
        face_bottom = (self.size - 1) / 2 + self.size / (2 * (1 + 2 * self.margin))
        masks = _box_masks(eye_left, eye_right, self.size, self.regions, face_bottom)
        reason = _empty_regions(masks, self.regions)
        if reason:
            return self._fallback(rgb, box, reason, n)
        return FaceResult(crop, masks, None, "haar-boxes", n, _clip_box(box, rgb.shape))
