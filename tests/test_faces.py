"""Face detection, alignment and ROI masks on a real photo (skimage's astronaut, 512×512)."""

from __future__ import annotations

import importlib.util
import pickle

import cv2
import numpy as np
import pytest
from skimage import data

from fer.data import faces
from fer.data.faces import FaceResult, HaarFaces, LandmarkFaces, find_shape_predictor
from fer.errors import ConfigError, DataError
from fer.labels import REGIONS

EYES, MOUTH, NOSE = (REGIONS.index(r) for r in ("eyes_brows", "mouth", "nose"))
HER_FACE = (170, 50, 290, 200)  # her face in the astronaut photo (x0, y0, x1, y1), by eye
SIZE = 128


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection area over the area of box `a`."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h) / ((a[2] - a[0]) * (a[3] - a[1]))


def rows(mask: np.ndarray) -> np.ndarray:
    return np.nonzero(mask.any(axis=1))[0]


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stats (x, y, w, h, area) and centroids of the mask's connected components."""
    _, _, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return stats[1:], cents[1:]


def assert_usable(res: FaceResult, size: int, source: str) -> None:
    assert res.excluded is None, res.excluded
    assert res.mask_source == source
    assert res.crop is not None and res.crop.shape == (size, size, 3)
    assert res.crop.dtype == np.uint8
    assert res.masks is not None and res.masks.shape == (len(REGIONS), size, size)
    assert res.masks.dtype == np.uint8 and set(np.unique(res.masks)) <= {0, 1}
    half = size / 2
    eyes, mouth = res.masks[EYES], res.masks[MOUTH]
    assert eyes.any() and mouth.any() and res.masks[NOSE].any()
    assert rows(eyes).max() < half, "eye+brow mask reaches the lower half"
    assert rows(mouth).min() >= half, "mouth mask reaches the upper half"
    assert not (eyes & mouth).any()
    assert centroid(mouth)[1] > centroid(res.masks[NOSE])[1] > centroid(eyes)[1]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def landmarks() -> LandmarkFaces:
    return LandmarkFaces(size=SIZE)  # one model load (~1 s) for the whole module


@pytest.fixture(scope="module")
def upright(landmarks: LandmarkFaces, astronaut: np.ndarray) -> FaceResult:
    return landmarks(astronaut)


@pytest.fixture(scope="module")
def haar() -> HaarFaces:
    detector = HaarFaces(size=SIZE)
    try:
        detector._load()
    except DataError as e:
        pytest.skip(f"Haar cascades unavailable: {e}")
    return detector


# ---------------------------------------------------------------- landmarks


def test_landmarks_find_her_face(upright: FaceResult) -> None:
    assert_usable(upright, SIZE, "landmarks")
    assert upright.n_faces == 1  # dlib (upsample 1) finds her face only: box (175, 76, 266, 167)
    assert upright.box is not None and overlap(upright.box, HER_FACE) > 0.9


def test_landmark_masks_are_two_eye_groups(upright: FaceResult) -> None:
    stats, cents = components(upright.masks[EYES])
    assert len(stats) == 2  # one hull per eye+brow, apart
    assert cents[0][0] < SIZE / 2 < cents[1][0] or cents[1][0] < SIZE / 2 < cents[0][0]
    assert abs(cents[0][1] - cents[1][1]) < 0.02 * SIZE  # eyes level after alignment


def test_rotated_face_is_levelled_and_framed_alike(
    landmarks: LandmarkFaces, astronaut: np.ndarray, upright: FaceResult
) -> None:
    res = landmarks(rotate(astronaut, 10))
    assert_usable(res, SIZE, "landmarks")
    # dlib fires on the rotated photo twice (her face, score 1.24; the suit, 0.52): the
    # score, not the order or size, picks hers
    assert res.n_faces >= 2
    assert res.box is not None and overlap(res.box, (140, 60, 270, 200)) > 0.9
    stats, cents = components(res.masks[EYES])
    assert len(stats) == 2
    assert abs(cents[0][1] - cents[1][1]) < 0.02 * SIZE
    # the same face, aligned: masks land where the upright photo's do
    for ch in (EYES, MOUTH):
        inter = (res.masks[ch] & upright.masks[ch]).sum()
        union = (res.masks[ch] | upright.masks[ch]).sum()
        assert inter / union > 0.6, REGIONS[ch]


def test_highest_score_wins(
    monkeypatch: pytest.MonkeyPatch, landmarks: LandmarkFaces, astronaut: np.ndarray
) -> None:
    import dlib

    hers = dlib.rectangle(175, 76, 265, 166)
    bigger = dlib.rectangle(0, 250, 250, 500)

    class Detector:
        def __init__(self, scores: list[float]) -> None:
            self.scores = scores

        def run(self, gray: np.ndarray, upsample: int, threshold: float) -> tuple:
            assert (upsample, threshold) == (landmarks.upsample, landmarks.threshold)
            return [bigger, hers], self.scores, [0, 0]

    landmarks._load()
    monkeypatch.setattr(landmarks, "_detector", Detector([0.3, 0.9]))
    res = landmarks(astronaut)
    assert res.n_faces == 2 and res.box == (175, 76, 266, 167)
    monkeypatch.setattr(landmarks, "_detector", Detector([0.9, 0.3]))
    assert landmarks(astronaut).box == (0, 250, 251, 501)


def test_blank_image_has_no_face(landmarks: LandmarkFaces) -> None:
    res = landmarks(np.full((200, 200, 3), 128, np.uint8))
    assert res.excluded == "no face" and res.crop is None and res.masks is None
    assert res.n_faces == 0 and res.box is None and res.mask_source == "none"


def test_implausible_landmarks_are_excluded_with_a_fallback_crop(
    monkeypatch: pytest.MonkeyPatch, landmarks: LandmarkFaces, astronaut: np.ndarray
) -> None:
    upside_down = landmarks.landmarks(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), HER_FACE)
    upside_down[:, 1] = 300 - upside_down[:, 1]  # mouth above the eyes
    monkeypatch.setattr(landmarks, "landmarks", lambda gray, box: upside_down)
    res = landmarks(astronaut)
    assert res.excluded == "landmarks failed" and res.masks is None
    assert res.crop is not None and res.crop.shape == (SIZE, SIZE, 3)
    assert res.mask_source == "none" and res.n_faces == 1


def test_grey_and_border_crossing_inputs(landmarks: LandmarkFaces, astronaut: np.ndarray) -> None:
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert landmarks(grey).box == (175, 76, 266, 167)
    # her face at the image's top-left corner: the crop runs over the border and is padded
    corner = np.ascontiguousarray(astronaut[60:, 150:])
    res = landmarks(corner)
    assert_usable(res, SIZE, "landmarks")


def test_pickles_before_and_after_a_call(astronaut: np.ndarray) -> None:
    detector = LandmarkFaces(size=64)
    clone = pickle.loads(pickle.dumps(detector))
    assert clone(astronaut).box == (175, 76, 266, 167)
    again = pickle.loads(pickle.dumps(clone))  # loaded models are dropped, reloaded on use
    assert again._detector is None and again._predictor is None
    assert (again.size, again.margin, again.regions) == (64, 0.25, REGIONS)


def test_shape_predictor_is_found_or_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_shape_predictor().is_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="face_recognition_models"):
        find_shape_predictor()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="regions"):
        LandmarkFaces(regions=("eyes",))
    with pytest.raises(ConfigError, match="margin"):
        HaarFaces(margin=-1)


# ---------------------------------------------------------------- Haar


def test_haar_finds_her_face_with_box_masks(haar: HaarFaces, astronaut: np.ndarray) -> None:
    res = haar(astronaut)
    assert_usable(res, SIZE, "haar-boxes")
    assert res.n_faces == 1 and res.box is not None and overlap(res.box, HER_FACE) > 0.9
    for ch in range(len(REGIONS)):
        for *_, w, h, area in components(res.masks[ch])[0]:
            assert area == w * h, f"{REGIONS[ch]} mask is not made of boxes"
    assert len(components(res.masks[EYES])[0]) == 2


def test_haar_excludes_a_face_without_eyes(haar: HaarFaces, astronaut: np.ndarray) -> None:
    one_eye = astronaut.copy()
    one_eye[92:112, 195:215] = astronaut[150, 250]  # her right eye painted over with skin
    res = haar(one_eye)
    assert res.excluded == "eyes not found" and res.masks is None
    assert res.mask_source == "none" and res.n_faces == 1
    assert res.crop is not None and res.crop.shape == (SIZE, SIZE, 3)  # fallback crop
    assert res.box is not None and overlap(res.box, HER_FACE) > 0.9


def test_haar_blank_image_has_no_face(haar: HaarFaces) -> None:
    res = haar(np.zeros((200, 200, 3), np.uint8))
    assert res.excluded == "no face" and res.crop is None and res.box is None


def test_haar_needs_cascade_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    with pytest.raises(DataError, match="opencv-contrib-python-headless"):
        HaarFaces()(np.zeros((50, 50, 3), np.uint8))


def test_missing_cascade_files_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(faces, "_CASCADE_DIRS", ())
    monkeypatch.delenv("FER_HAAR_DIR", raising=False)
    monkeypatch.setattr(cv2, "data", None, raising=False)
    with pytest.raises(DataError, match=r"haarcascade_eye\.xml.*opencv-data"):
        faces.find_haar_cascade("haarcascade_eye.xml", tmp_path)
    (tmp_path / "haarcascade_eye.xml").write_text("<opencv_storage/>")
    assert faces.find_haar_cascade("haarcascade_eye.xml", tmp_path).parent == tmp_path


# ---------------------------------------------------------------- template


def test_template_masks_for_aligned_crops() -> None:
    masks = faces.template_masks(48)
    assert masks.shape == (len(REGIONS), 48, 48) and masks.dtype == np.uint8
    assert rows(masks[EYES]).max() < 24 <= rows(masks[MOUTH]).min()
    assert not (masks[EYES] & masks[MOUTH]).any()
    assert len(components(masks[EYES])[0]) == 2
    mouth_only = faces.template_masks(48, ("mouth", "eyes_brows"))
    assert np.array_equal(mouth_only, masks[[MOUTH, EYES]])
