"""Canonical emotion classes: the one place that names them and orders them."""

from __future__ import annotations

from collections.abc import Sequence

from fer.errors import ConfigError

#: Canonical order used by every model head and every table.
CANONICAL: tuple[str, ...] = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
    "neutral",
    "contempt",
)

#: Study A (Arabian et al. 2022) drops neutral; study B (Tannugi et al. 2019) keeps all seven.
SIX_BASIC: tuple[str, ...] = CANONICAL[:6]
SEVEN: tuple[str, ...] = CANONICAL[:7]

#: Pretraining data's own classes (DESIGN.md "The synthetic ImageNet stand-in"): not emotions.
#: A run trained on them only provides weights for other runs and is never evaluated as FER
#: data; they are listed here so the class check accepts such a list explicitly, never mixed
#: with emotion classes. `fer.data.procedural` draws the objects.
OBJECTS: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "arrow",
    "house",
    "tree",
    "stripes",
    "checker",
    "dots",
)
PRETRAINING_CLASSES: dict[str, tuple[str, ...]] = {"procedural_objects": OBJECTS}

#: ROI mask channels of every pre-processed face, in this order (DESIGN.md "ROI masks").
REGIONS: tuple[str, ...] = ("eyes_brows", "mouth", "nose")

#: Labels as they appear in tables (papers' spelling).
DISPLAY: dict[str, str] = {
    "anger": "Anger",
    "disgust": "Disgust",
    "fear": "Fear",
    "happiness": "Happy",
    "sadness": "Sad",
    "surprise": "Surprise",
    "neutral": "Neutral",
    "contempt": "Contempt",
}


def check_classes(classes: Sequence[str], key: str = "classes") -> tuple[str, ...]:
    """Validate an experiment's class list and return it in canonical order.

    A list drawn entirely from one pretraining set's classes (`PRETRAINING_CLASSES`) is
    accepted too, in that set's order; emotions and pretraining classes never mix.

    Raises:
        ConfigError: naming `key` when a class is unknown or repeated.
    """
    classes = [str(c) for c in classes]
    for allowed in PRETRAINING_CLASSES.values():
        if classes and set(classes) <= set(allowed):  # a pretraining set's own classes
            if len(set(classes)) != len(classes):
                raise ConfigError(f"{key}: repeated class in {classes}")
            return tuple(c for c in allowed if c in classes)
    unknown = [c for c in classes if c not in CANONICAL]
    if unknown:
        raise ConfigError(
            f"{key}: unknown class(es) {unknown}; canonical classes are {list(CANONICAL)}"
        )
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{key}: repeated class in {classes}")
    if not classes:
        raise ConfigError(f"{key}: the class list is empty")
    return tuple(c for c in CANONICAL if c in classes)


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """Map class name -> model output index for an experiment's class list."""
    return {c: i for i, c in enumerate(classes)}


def _same(names: Sequence[str]) -> dict[str, str]:
    return {n: n for n in names}


#: Per-dataset label code -> canonical class (../shared/DATASETS.md §9). Codes are matched
#: exactly (case included); a parser maps its raw code through `to_canonical`.
DATASET_LABELS: dict[str, dict[str, str]] = {
    "oulu_casia": {
        d: d.lower() for d in ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
    },
    "faces": {
        "a": "anger",
        "d": "disgust",
        "f": "fear",
        "h": "happiness",
        "s": "sadness",
        "n": "neutral",
    },
    "jaffe": {
        "AN": "anger",
        "DI": "disgust",
        "FE": "fear",
        "HA": "happiness",
        "SA": "sadness",
        "SU": "surprise",
        "NE": "neutral",
    },
    "fer2013": {
        "0": "anger",
        "1": "disgust",
        "2": "fear",
        "3": "happiness",
        "4": "sadness",
        "5": "surprise",
        "6": "neutral",
    },
    "fer2013_folder": {
        "angry": "anger",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happiness",
        "sad": "sadness",
        "surprise": "surprise",
        "neutral": "neutral",
    },
    "ckplus": {
        "1": "anger",
        "2": "contempt",
        "3": "disgust",
        "4": "fear",
        "5": "happiness",
        "6": "sadness",
        "7": "surprise",
    },
    "mug": _same(SEVEN),
    "rafdb": {
        "1": "surprise",
        "2": "fear",
        "3": "disgust",
        "4": "happiness",
        "5": "sadness",
        "6": "anger",
        "7": "neutral",
    },
    "kdef": {
        "AN": "anger",
        "DI": "disgust",
        "AF": "fear",
        "HA": "happiness",
        "SA": "sadness",
        "SU": "surprise",
        "NE": "neutral",
    },
    "affectnet": {
        "0": "neutral",
        "1": "happiness",
        "2": "sadness",
        "3": "surprise",
        "4": "fear",
        "5": "disgust",
        "6": "anger",
        "7": "contempt",
    },
    "tfeid": {
        "ag": "anger",
        "dg": "disgust",
        "fg": "fear",
        "hg": "happiness",
        "sg": "sadness",
        "pg": "surprise",
        "ng": "neutral",
    },
}


def to_canonical(dataset: str, code: str) -> str | None:
    """Canonical class of a dataset's raw label code, or None when the code is unknown."""
    return DATASET_LABELS[dataset].get(str(code))
