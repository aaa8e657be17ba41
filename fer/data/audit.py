"""Leakage audit: duplicate images and shared subjects across the subsets of a split.

What is compared: every image of a subset (train / val / test) of every dataset an experiment
uses together (the source, and the target of study B and fusion) with every image of every
*other* (dataset, subset) group. Duplicates inside one subset are not leakage and are not
listed; pairs between two datasets' training sets are listed (the datasets overlap) but are
not counted as leaks.

- **Exact duplicates**: equal content hash — blake2b-128 of the *cached face crop* (the uint8
  pixels the model sees, with their shape), not of the file bytes: a PNG saved again is an exact
  duplicate, a JPEG re-encoding is a near one.
- **Near duplicates**: a 255-bit DCT hash (grey 32×32 thumbnail, area-resampled; 2-D DCT-II;
  the 16×16 lowest frequencies without DC; bit = coefficient > their median) within
  `MAX_HAMMING` bits, *confirmed* by the Pearson correlation of the same zero-mean 32×32
  thumbnails ≥ `MIN_CORRELATION`. Measured on synthetic faces (which share one template, the
  hard case): among 2,916 distinct ones (4 domains × 36 subjects × 7 classes × 3; 4.25 M
  pairs) the closest hashes differ in 18 bits, 1,037 pairs lie within 40, and the highest
  correlation of any pair is 0.985 — so the hash alone would pair them and the correlation
  rejects them all. Copies of 1,440 of those faces are found at these rates: JPEG q 50–75,
  brightness −25, contrast ×0.8, Gaussian noise σ ≤ 8: 100 %; JPEG q 30: ≥ 98 %; brightness
  +25: 100 % (74 % on the `aged` domain, whose bright skin clips); 2× down/up-sampling:
  32–98 %; Gaussian blur σ = 1 px: 2–68 %; a 1-px shift: 0 % (it moves ~35 bits). Blurred,
  re-cropped or shifted copies are outside the audit's scope, and so are copies of flat
  images (no correlation exists: only their exact copies count).
- **Subjects**: re-checked from the manifest's `subject` column: a subject in two subsets of
  a subject-grouped split is leakage (must be zero); in a `sequence`/`none` split it is
  expected and listed as such; datasets without identities (FER2013) are not checked.

Hashes are bit-packed into four uint64 words; pairwise distances are XOR + popcount
(`numpy.bitwise_count`) in blocks, between groups only: FER2013's 35,887 images take ~10 s to
fingerprint and ~2 s to compare on one core here.

    python -m fer.data.audit data=<name> [split=holdout] [data@target=<name>]

writes ``audit.csv`` (pairs), ``subjects.csv``, ``audit.json`` (counts) and ``audit.md`` under
``<paths.output_root>/audit/<run-name>/`` (the run name of the overrides, as for training).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fer.errors import ConfigError, DataError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from fer.data.datamodule import DatasetPart

log = logging.getLogger("fer.data.audit")

SUBSETS: tuple[str, ...] = ("train", "val", "test")
THUMB = 32  # side of the grey thumbnail that is hashed and correlated
HASH_BLOCK = 16  # low-frequency DCT block: 16×16 coefficients minus DC
HASH_BITS = HASH_BLOCK * HASH_BLOCK - 1  # 255
HASH_WORDS = 4  # 255 bits packed into 4 uint64 words (one zero pad bit)
#: Candidate pairs differ in at most this many of the 255 hash bits (~16 %).
MAX_HAMMING = 40
#: A candidate is a near duplicate when its thumbnails correlate at least this much.
MIN_CORRELATION = 0.99
#: A thumbnail whose grey levels vary less than this (SD) is flat: no correlation exists.
FLAT_SD = 0.5

#: One audited image; `row` is its position in its dataset's cached faces (FaceArrays).
IMAGE_COLUMNS: tuple[str, ...] = ("dataset", "subset", "row", "path", "subject", "label")
PAIR_COLUMNS: tuple[str, ...] = (
    *(f"{c}_a" for c in IMAGE_COLUMNS),
    *(f"{c}_b" for c in IMAGE_COLUMNS),
    "kind",  # exact | near
    "hamming",
    "correlation",  # NaN when either image is flat
    "leak",  # the two subsets differ (a train image duplicates a val/test one, or val ~ test)
    "cross_dataset",
    "same_label",
)
SUBJECT_COLUMNS: tuple[str, ...] = ("dataset", "subject", "subsets", "group_by", "must_be_zero")


# -- fingerprints ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fingerprints:
    """Per image: content hash, packed DCT hash and normalised thumbnail."""

    digest: np.ndarray  # (N,) str: blake2b-128 of the crop's pixels and shape
    phash: np.ndarray  # (N, HASH_WORDS) uint64
    thumb: np.ndarray  # (N, THUMB²) float32, zero mean, unit norm (zeros when flat)
    flat: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.digest)

    @staticmethod
    def concat(parts: Sequence[Fingerprints]) -> Fingerprints:
        """Fingerprints of several image sets, one after another."""
        return Fingerprints(
            np.concatenate([p.digest for p in parts]) if parts else np.array([], str),
            np.concatenate([p.phash for p in parts])
            if parts
            else np.zeros((0, HASH_WORDS), np.uint64),
            np.concatenate([p.thumb for p in parts])
            if parts
            else np.zeros((0, THUMB * THUMB), np.float32),
            np.concatenate([p.flat for p in parts]) if parts else np.zeros(0, bool),
        )


def fingerprint(
    images: np.ndarray, rows: Sequence[int] | np.ndarray | None = None, chunk: int = 512
) -> Fingerprints:
    """Fingerprints of `images[rows]` ((N, H, W, 3) RGB or (N, H, W) grey uint8).

    Reads `chunk` images at a time, so a memory-mapped cache is never loaded whole.
    """
    import cv2
    from scipy.fft import dctn

    rows = np.arange(len(images)) if rows is None else np.asarray(rows, dtype=np.int64)
    n = len(rows)
    digest = np.empty(n, dtype=object)
    bits = np.zeros((n, HASH_WORDS * 64), bool)
    thumb = np.zeros((n, THUMB * THUMB), np.float32)
    flat = np.zeros(n, bool)
    luma = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as cv2's RGB2GRAY
    for start in range(0, n, chunk):
        block = np.asarray(images[rows[start : start + chunk]])
        for k, img in enumerate(block):
            h = hashlib.blake2b(str(img.shape).encode(), digest_size=16)
            h.update(np.ascontiguousarray(img).tobytes())
            digest[start + k] = h.hexdigest()
        grey = block.astype(np.float32) @ luma if block.ndim == 4 else block.astype(np.float32)
        small = np.stack(
            [cv2.resize(g, (THUMB, THUMB), interpolation=cv2.INTER_AREA) for g in grey]
        )
        coef = dctn(small, type=2, axes=(1, 2), norm="ortho")
        low = coef[:, :HASH_BLOCK, :HASH_BLOCK].reshape(len(small), -1)[:, 1:]  # drop DC
        end = start + len(block)
        bits[start:end, :HASH_BITS] = low > np.median(low, axis=1, keepdims=True)
        vec = small.reshape(len(small), -1)
        vec = vec - vec.mean(axis=1, keepdims=True)
        sd = vec.std(axis=1)
        flat[start:end] = sd < FLAT_SD
        norm = np.linalg.norm(vec, axis=1, keepdims=True)
        thumb[start:end] = np.where(flat[start:end, None], 0.0, vec / np.maximum(norm, 1e-12))
    phash = np.packbits(bits, axis=1).view(np.uint64)  # bytes -> 4 words per image
    return Fingerprints(digest.astype(str), np.ascontiguousarray(phash), thumb, flat)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances (len(a), len(b)) of packed hashes (XOR + popcount)."""
    out = np.zeros((len(a), len(b)), np.uint16)
    for w in range(a.shape[1]):
        out += np.bitwise_count(a[:, w, None] ^ b[None, :, w])
    return out


def _candidates(
    a: np.ndarray, b: np.ndarray, max_hamming: int, budget: int = 1 << 21
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of hash pairs within `max_hamming`, in blocks of ≤ `budget` pairs."""
    step = max(1, budget // max(1, len(b)))
    found_i, found_j, found_d = [], [], []
    for s in range(0, len(a), step):
        d = hamming(a[s : s + step], b)
        i, j = np.nonzero(d <= max_hamming)
        found_i.append(i + s)
        found_j.append(j)
        found_d.append(d[i, j])
    if not found_i:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.uint16)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


# -- the audit ----------------------------------------------------------------------------------
@dataclass
class AuditResult:
    """What the audit found: one row per audited image, per duplicate pair, per shared subject."""

    images: pd.DataFrame  # IMAGE_COLUMNS
    pairs: pd.DataFrame  # PAIR_COLUMNS
    subjects: pd.DataFrame  # SUBJECT_COLUMNS
    settings: dict[str, Any]

    def leaking_rows(self, dataset: str) -> np.ndarray:
        """Face rows of `dataset`'s training subset that duplicate a val/test image (of any
        dataset audited with it): what `data.dedupe=true` removes."""
        p = self.pairs
        # Subsets are ordered train < val < test, so a train side is always side a.
        hit = (p["dataset_a"] == dataset) & (p["subset_a"] == "train") & (p["subset_b"] != "train")
        return np.unique(p.loc[hit, "row_a"].to_numpy(np.int64))

    def summary(self) -> dict[str, Any]:
        """Counts for the report and audit.json (plain types only)."""
        p, s, im = self.pairs, self.subjects, self.images
        # Every pair of subsets that was compared, zeros included, in train < val < test order.
        present = [x for x in SUBSETS if (im["subset"] == x).any()]
        several = im["dataset"].nunique() > 1  # same-subset pairs exist only across datasets
        by_pair: dict[str, dict[str, int]] = {}
        for i, sa in enumerate(present):
            for sb in present[i if several else i + 1 :]:
                grp = p[(p["subset_a"] == sa) & (p["subset_b"] == sb)]
                by_pair[f"{sa}~{sb}"] = {
                    "exact": int((grp["kind"] == "exact").sum()),
                    "near": int((grp["kind"] == "near").sum()),
                }
        leak = p[p["leak"]] if len(p) else p
        sizes = {
            str(d): {sub: int((g["subset"] == sub).sum()) for sub in SUBSETS}
            for d, g in im.groupby("dataset", sort=False)
        }
        return {
            "images": len(im),
            "datasets": list(sizes),
            "sizes": sizes,
            "pairs": len(p),
            "exact_pairs": int((p["kind"] == "exact").sum()),
            "near_pairs": int((p["kind"] == "near").sum()),
            "leak_pairs": len(leak),
            "cross_dataset_pairs": int(p["cross_dataset"].sum()),
            "label_conflicts": int((~p["same_label"]).sum()),
            "by_subsets": by_pair,
            "train_images_duplicating_val_test": {d: len(self.leaking_rows(d)) for d in sizes},
            "subject_overlap": int(s["must_be_zero"].sum()),
            "subject_overlap_expected": int((~s["must_be_zero"]).sum()),
            "subject_checked": self.settings.get("subject_checked", {}),
            "method": {k: v for k, v in self.settings.items() if k != "subject_checked"},
        }


def settings(max_hamming: int = MAX_HAMMING, min_correlation: float = MIN_CORRELATION) -> dict:
    """The audit's method, as recorded beside its counts."""
    if not 0 <= int(max_hamming) <= HASH_BITS:
        raise ConfigError(f"audit max_hamming={max_hamming}: allowed 0..{HASH_BITS}")
    if not -1 <= float(min_correlation) <= 1:
        raise ConfigError(f"audit min_correlation={min_correlation}: allowed -1..1")
    return {
        "exact": "blake2b-128 of the cached face crop's uint8 pixels (not the file bytes)",
        "near": (
            f"{HASH_BITS}-bit DCT hash of the {THUMB}x{THUMB} grey thumbnail within "
            f"{int(max_hamming)} bits, confirmed by Pearson r >= {float(min_correlation)} "
            "of the same thumbnails"
        ),
        "hash_bits": HASH_BITS,
        "max_hamming": int(max_hamming),
        "min_correlation": float(min_correlation),
    }


def audit_images(
    images: np.ndarray | Fingerprints,
    frame: pd.DataFrame,
    group_by: Mapping[str, str] | None = None,
    max_hamming: int = MAX_HAMMING,
    min_correlation: float = MIN_CORRELATION,
) -> AuditResult:
    """Audit images whose `frame` rows say ``dataset, subset`` (and optionally ``row, path,
    subject, label``): duplicate pairs across (dataset, subset) groups, shared subjects.

    `images` are the pixels in `frame`'s order, or their fingerprints. `group_by` maps a
    dataset to its split's grouping (default ``subject``): only a subject-grouped split must
    have no shared subjects.
    """
    method = settings(max_hamming, min_correlation)
    frame = _image_frame(frame)
    fp = images if isinstance(images, Fingerprints) else fingerprint(images)
    if len(fp) != len(frame):
        raise DataError(f"audit: {len(fp)} images for {len(frame)} manifest rows")
    group_by = dict(group_by or {})
    pairs = _pairs(fp, frame, int(max_hamming), float(min_correlation))
    subjects, checked = _subject_overlap(frame, group_by)
    return AuditResult(frame, pairs, subjects, {**method, "subject_checked": checked})


def _image_frame(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("dataset", "subset") if c not in frame.columns]
    if missing:
        raise DataError(f"audit: the image table lacks columns {missing}")
    bad = sorted(set(frame["subset"]) - set(SUBSETS))
    if bad:
        raise DataError(f"audit: unknown subsets {bad}; expected {list(SUBSETS)}")
    out = frame.reset_index(drop=True).copy()
    for c in IMAGE_COLUMNS:
        if c not in out.columns:
            out[c] = np.arange(len(out)) if c == "row" else ""
    out["row"] = out["row"].astype(np.int64)
    for c in ("dataset", "subset", "path", "subject", "label"):
        out[c] = out[c].astype(str)
    return out[list(IMAGE_COLUMNS)]


def _pairs(fp: Fingerprints, frame: pd.DataFrame, max_hamming: int, min_r: float) -> pd.DataFrame:
    """Confirmed duplicate pairs between every two (dataset, subset) groups."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    order = (
        frame["subset"].map(SUBSETS.index).to_numpy() * len(datasets)
        + frame["dataset"].map(datasets.index).to_numpy()
    )
    groups = [np.flatnonzero(order == g) for g in np.unique(order)]  # train < val < test
    ia, ib, dist = [], [], []
    for x, ga in enumerate(groups):
        for gb in groups[x + 1 :]:
            i, j, d = _candidates(fp.phash[ga], fp.phash[gb], max_hamming)
            ia.append(ga[i])
            ib.append(gb[j])
            dist.append(d)
    a = np.concatenate(ia) if ia else np.zeros(0, int)
    b = np.concatenate(ib) if ib else np.zeros(0, int)
    d = np.concatenate(dist) if dist else np.zeros(0, np.uint16)
    exact = fp.digest[a] == fp.digest[b]
    r = np.einsum("ij,ij->i", fp.thumb[a], fp.thumb[b]).astype(np.float64)
    r[fp.flat[a] | fp.flat[b]] = np.nan  # undefined: only an exact copy of a flat image counts
    keep = exact | (r >= min_r)  # NaN compares False
    a, b, d, r, exact = a[keep], b[keep], d[keep], r[keep], exact[keep]
    left = frame.iloc[a].reset_index(drop=True).add_suffix("_a")
    right = frame.iloc[b].reset_index(drop=True).add_suffix("_b")
    out = pd.concat([left, right], axis=1)
    out["kind"] = np.where(exact, "exact", "near")
    out["hamming"] = d.astype(np.int64)
    out["correlation"] = np.where(exact & ~np.isnan(r), 1.0, np.round(r, 4))
    out["leak"] = out["subset_a"] != out["subset_b"]
    out["cross_dataset"] = out["dataset_a"] != out["dataset_b"]
    out["same_label"] = out["label_a"] == out["label_b"]
    rank = out["subset_a"].map(SUBSETS.index) * len(SUBSETS) + out["subset_b"].map(SUBSETS.index)
    out = out.iloc[np.lexsort((out["hamming"], out["kind"] != "exact", rank.to_numpy()))]
    return out.reset_index(drop=True)[list(PAIR_COLUMNS)]


def subject_overlap(frame: pd.DataFrame, group_by: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Subjects found in more than one subset of their dataset (SUBJECT_COLUMNS)."""
    return _subject_overlap(_image_frame(frame), dict(group_by or {}))[0]


def _subject_overlap(
    frame: pd.DataFrame, group_by: dict[str, str]
) -> tuple[pd.DataFrame, dict[str, str]]:
    rows, checked = [], {}
    for dataset, g in frame.groupby("dataset", sort=False):
        how = group_by.get(str(dataset), "subject")
        if (g["subject"] == "").any():
            checked[str(dataset)] = "not checked: no subject ids"
            continue
        pairs = g[["subject", "subset"]].drop_duplicates()
        n_subsets = pairs.groupby("subject").size()
        shared = n_subsets.index[n_subsets > 1]
        must = how == "subject"
        checked[str(dataset)] = f"{len(shared)} shared subjects" + (
            "" if must else f" (expected: split.group_by={how}, leaky)"
        )
        for subject in shared:
            subsets = sorted(pairs.loc[pairs["subject"] == subject, "subset"], key=SUBSETS.index)
            rows.append((str(dataset), str(subject), ",".join(subsets), how, must))
    return pd.DataFrame(rows, columns=list(SUBJECT_COLUMNS)).astype({"must_be_zero": bool}), checked


# -- an experiment's datasets -------------------------------------------------------------------
def audit_parts(
    parts: Mapping[str, DatasetPart],
    max_hamming: int = MAX_HAMMING,
    min_correlation: float = MIN_CORRELATION,
) -> AuditResult:
    """Audit the subsets of the datasets a FERDataModule uses together (its `parts`)."""
    frames, fps, group_by = [], [], {}
    for part in parts.values():
        pieces = [(s, np.asarray(part.rows[s], dtype=np.int64)) for s in SUBSETS]
        rows = np.concatenate([r for _, r in pieces])
        frame = part.faces.frame.iloc[rows].reset_index(drop=True)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": part.name,
                    "subset": np.repeat([s for s, _ in pieces], [len(r) for _, r in pieces]),
                    "row": rows,
                    "path": frame["path"].to_numpy(),
                    "subject": frame["subject"].to_numpy(),
                    "label": frame["label"].to_numpy(),
                }
            )
        )
        fps.append(fingerprint(part.faces.images, rows))
        group_by[part.name] = part.split.group_by
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=IMAGE_COLUMNS)
    return audit_images(Fingerprints.concat(fps), frame, group_by, max_hamming, min_correlation)


def dedupe_training(
    parts: Mapping[str, DatasetPart], roles: Iterable[str], result: AuditResult | None = None
) -> dict[str, int]:
    """`data.dedupe=true`: drop from the training rows of `roles` every image that is an exact
    or near duplicate of a val/test image of any dataset in `parts`.

    Changes ``part.rows["train"]`` in place, records the count in ``part.deduped`` and returns
    it per role.
    """
    result = result if result is not None else audit_parts(parts)
    removed: dict[str, int] = {}
    for role in roles:
        part = parts[role]
        drop = result.leaking_rows(part.name)
        train = np.asarray(part.rows["train"])
        kept = train[~np.isin(train, drop)]
        part.rows["train"] = kept
        part.deduped = removed[role] = len(train) - len(kept)
        log.info(
            "data.dedupe: %s: removed %d of %d training images that duplicate a val/test image",
            part.name,
            removed[role],
            len(train),
        )
    return removed


def audit_config(cfg: DictConfig | Mapping[str, Any]) -> AuditResult:
    """Audit the split a training config (train.yaml, or a run's stored config.yaml) gives.

    Builds the run's data module exactly as training does (same manifest, cache and split),
    with `dedupe` off: the audit reports what the split itself contains.
    """
    from omegaconf import DictConfig, OmegaConf, open_dict

    from fer.checks import check_train_config
    from fer.train import make_datamodule  # the one config -> data module mapping

    # Copies: the caller's config is left as it was.
    cfg = copy.deepcopy(cfg) if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    probe = copy.deepcopy(cfg)
    with open_dict(probe):
        # The audit trains nothing: check the config as a from-scratch run of it, so a source
        # checkpoint that does not exist yet is no reason to refuse.
        probe.init = {"name": "glorot"}
        probe.strategy.name = "full"
    check_train_config(probe)
    with open_dict(cfg):
        for role in ("data", "target"):
            if cfg.get(role):
                cfg[role].dedupe = False
    dm = make_datamodule(cfg)
    dm.setup("fit")
    return audit_parts(dm.parts)


def audit_summary(run: AuditResult | DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The audit's counts for a report: of a result, or of the split a config gives (a run's
    stored config.yaml as a mapping, or a composed train config)."""
    result = run if isinstance(run, AuditResult) else audit_config(run)
    return result.summary()


# -- files and console --------------------------------------------------------------------------
def write_audit(result: AuditResult, out_dir: str | Path) -> dict[str, Path]:
    """Write audit.csv (pairs), subjects.csv, audit.json (summary) and audit.md."""
    from fer.io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "pairs": atomic_write_text(out / "audit.csv", result.pairs.to_csv(index=False)),
        "subjects": atomic_write_text(out / "subjects.csv", result.subjects.to_csv(index=False)),
        "summary": atomic_write_json(out / "audit.json", result.summary()),
        "markdown": atomic_write_text(out / "audit.md", audit_markdown(result)),
    }
    return files


def audit_markdown(result: AuditResult, max_pairs: int = 20) -> str:
    """A short human-readable account: method, counts per subset pair, subjects, examples."""
    s = result.summary()
    m = s["method"]
    lines = [
        "# Leakage audit",
        "",
        f"- datasets: {', '.join(s['datasets']) or 'none'}; {s['images']} images "
        + "; ".join(
            f"{d}: " + "/".join(str(v[k]) for k in SUBSETS) + " (train/val/test)"
            for d, v in s["sizes"].items()
        ),
        f"- exact duplicates: {m['exact']}",
        f"- near duplicates: {m['near']}",
        "",
        "| subsets | exact | near |",
        "|---|---:|---:|",
        *(f"| {k} | {v['exact']} | {v['near']} |" for k, v in s["by_subsets"].items()),
        f"| **total** | {s['exact_pairs']} | {s['near_pairs']} |",
        "",
        f"- pairs across subsets (leaks): {s['leak_pairs']}; across datasets: "
        f"{s['cross_dataset_pairs']}; with different labels: {s['label_conflicts']}",
        "- training images that duplicate a val/test image (removed by `data.dedupe=true`): "
        + ", ".join(f"{d}: {n}" for d, n in s["train_images_duplicating_val_test"].items()),
        f"- subjects in two subsets of a subject-disjoint split: **{s['subject_overlap']}** "
        "(must be 0); " + "; ".join(f"{d}: {v}" for d, v in s["subject_checked"].items()),
    ]
    if len(result.pairs):
        lines += ["", f"## Pairs (first {min(max_pairs, len(result.pairs))} of {s['pairs']})", ""]
        lines += ["| kind | a | b | Hamming | r |", "|---|---|---|---:|---:|"]
        for p in result.pairs.head(max_pairs).itertuples(index=False):
            lines.append(
                f"| {p.kind} | {p.dataset_a}/{p.subset_a}: {p.path_a} | "
                f"{p.dataset_b}/{p.subset_b}: {p.path_b} | {p.hamming} | {p.correlation} |"
            )
    return "\n".join(lines) + "\n"


def print_audit(result: AuditResult, files: Mapping[str, Path] | None = None) -> None:
    """The counts as a rich table (the CLI's output)."""
    from rich.console import Console
    from rich.table import Table

    s = result.summary()
    t = Table(title=f"leakage audit — {', '.join(s['datasets'])} ({s['images']} images)")
    for col in ("subsets", "exact", "near"):
        t.add_column(col, justify="left" if col == "subsets" else "right")
    for k, v in s["by_subsets"].items():
        t.add_row(k, str(v["exact"]), str(v["near"]))
    t.add_row("total", str(s["exact_pairs"]), str(s["near_pairs"]), style="bold")
    console = Console()
    console.print(t)
    console.print(
        f"leaks (pairs across subsets): {s['leak_pairs']}  across datasets: "
        f"{s['cross_dataset_pairs']}  label conflicts: {s['label_conflicts']}\n"
        "training images data.dedupe=true would remove: "
        + ", ".join(f"{d} {n}" for d, n in s["train_images_duplicating_val_test"].items())
        + f"\nsubject overlap (must be 0): {s['subject_overlap']}  ("
        + "; ".join(f"{d}: {v}" for d, v in s["subject_checked"].items())
        + ")"
    )
    if files:
        folder = Path(next(iter(files.values()))).parent
        console.print(f"written to {folder}: " + ", ".join(Path(f).name for f in files.values()))


# -- entrypoint ---------------------------------------------------------------------------------
def run_audit(cfg: DictConfig) -> dict[str, Any]:
    """Audit `cfg`'s split, write the files to `cfg.paths.run_dir`, print the counts.

    Raises DataError (after writing the files) when a subject-disjoint split shares subjects.
    """
    result = audit_config(cfg)
    files = write_audit(result, Path(str(cfg.paths.run_dir)))
    print_audit(result, files)
    summary = result.summary()
    if summary["subject_overlap"]:
        raise DataError(
            f"leakage: {summary['subject_overlap']} subjects are in two subsets of a "
            f"subject-disjoint split (listed in {files['subjects']})"
        )
    return summary


#: Where the CLI writes (not a training run's directory), with no .hydra/ folder.
_HYDRA_OVERRIDES = (
    "hydra.run.dir='${paths.output_root}/audit/${fer_run_name:${hydra:overrides.task}}'",
    "hydra.sweep.dir=${paths.output_root}/audit",
    "hydra.output_subdir=null",
)


def main() -> None:
    """`python -m fer.data.audit data=<name> [split=…] [data@target=<name>]` over train.yaml."""
    import sys

    import hydra

    import fer.naming  # noqa: F401  (registers the fer_run_name resolver)
    from fer.cli import run_job

    given = {a.split("=", 1)[0] for a in sys.argv[1:]}
    sys.argv[1:1] = [o for o in _HYDRA_OVERRIDES if o.split("=", 1)[0] not in given]

    # An absolute path: a relative one resolves as a package (`conf`) when this module is
    # imported rather than run with -m.
    conf = str(Path(__file__).resolve().parents[2] / "conf")

    @hydra.main(version_base="1.3", config_path=conf, config_name="train")
    def _main(cfg: DictConfig) -> None:
        run_job(run_audit, cfg)

    _main()


if __name__ == "__main__":
    main()
