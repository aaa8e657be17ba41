"""The Manifest: one row per image, the same columns from every dataset parser."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from fer.errors import DataError
from fer.labels import CANONICAL, PRETRAINING_CLASSES

#: Columns every parser returns (DESIGN.md "Manifest"); sequence/frame are empty where a
#: source has none. Sources may add columns (e.g. ``mask_path`` for exact synthetic masks).
COLUMNS: tuple[str, ...] = ("path", "label", "subject", "dataset", "sequence", "frame")


@dataclass
class Manifest:
    """Images of one dataset, plus the files the parser could not interpret."""

    frame: pd.DataFrame
    #: One row per file the parser skipped: ``path, reason``. Never silently dropped.
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise DataError(f"manifest is missing columns {missing}; expected {list(COLUMNS)}")
        labels = set(self.frame["label"])
        bad = sorted(labels - set(CANONICAL))
        # Pretraining data (not faces) carries its own class list, never mixed with emotions.
        if bad and not any(labels <= set(own) for own in PRETRAINING_CLASSES.values()):
            raise DataError(f"manifest has non-canonical labels {bad}; map them in fer/labels.py")
        self.frame = self.frame.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def from_records(cls, records: Iterable[dict], skipped: Iterable[dict] = ()) -> Manifest:
        """Build from row dicts; missing optional columns become empty strings."""
        frame = pd.DataFrame(list(records))
        for c in COLUMNS:
            if c not in frame.columns:
                frame[c] = ""
        skipped_df = pd.DataFrame(list(skipped), columns=["path", "reason"])
        return cls(frame=frame, skipped=skipped_df)

    def select_classes(self, classes: Iterable[str]) -> Manifest:
        """Keep only rows whose label is in `classes` (an experiment's class list)."""
        keep = self.frame["label"].isin(list(classes))
        return Manifest(self.frame[keep].copy(), self.skipped)

    def counts(self) -> dict[str, int]:
        """Images per class, in canonical order."""
        vc = self.frame["label"].value_counts()
        return {c: int(vc[c]) for c in CANONICAL if c in vc}
