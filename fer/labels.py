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

    Raises:
        ConfigError: naming `key` when a class is unknown or repeated.
    """
    classes = [str(c) for c in classes]
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
