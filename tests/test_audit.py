"""Leakage audit: planted exact and near duplicates are found exactly, distinct faces never
pair up, shared subjects are caught, FER2013's cross-Usage copies are found, and
`data.dedupe=true` drops exactly the planted training copies."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from fer.data import audit, synthetic
from fer.data.audit import audit_config, audit_images, fingerprint, hamming, subject_overlap
from fer.errors import DataError
from fer.train import make_datamodule


# -- copies of an image -----------------------------------------------------------------------
def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def _png(rgb: np.ndarray) -> np.ndarray:
    """Saved and read again as PNG: other file bytes, the same pixels (an exact duplicate)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def _brighter(img: np.ndarray, delta: int) -> np.ndarray:
    return np.clip(img.astype(np.int16) + delta, 0, 255).astype(np.uint8)


def _pair_set(pairs: pd.DataFrame) -> set[tuple[str, str, str]]:
    return {(p.path_a, p.path_b, p.kind) for p in pairs.itertuples(index=False)}


# -- packed hashes ----------------------------------------------------------------------------
def test_hamming_is_the_bit_count_of_xor():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, (7, 4), dtype=np.uint64)
    b = rng.integers(0, 2**63, (5, 4), dtype=np.uint64)
    bits = lambda x: np.unpackbits(x.view(np.uint8), axis=1)  # noqa: E731
    expected = (bits(a)[:, None, :] != bits(b)[None, :, :]).sum(-1)
    assert np.array_equal(hamming(a, b), expected)
    fp = fingerprint(synthetic.render_set("lab", 2, 1, 0, 64).images)
    assert fp.phash.shape == (14, audit.HASH_WORDS) and fp.phash.dtype == np.uint64
    # 255 hash bits; the pad bit is always zero, and about half the bits are set (median split)
    unpacked = np.unpackbits(fp.phash.view(np.uint8), axis=1)
    assert not unpacked[:, audit.HASH_BITS :].any()
    assert np.all(np.abs(unpacked.sum(1) - audit.HASH_BITS / 2) <= 1)


# -- planted duplicates -----------------------------------------------------------------------
def test_finds_exactly_the_planted_duplicates():
    lab = synthetic.render_set("lab", 12, 1, 0, 64)
    gray = synthetic.render_set("gray", 6, 1, 1, 64)
    subset_of = {
        s: "train" if i < 8 else "val" if i < 10 else "test"
        for i, s in enumerate(dict.fromkeys(lab.subjects))
    }
    images = list(lab.images) + list(gray.images)
    rows = [
        {"dataset": "lab", "subset": subset_of[s], "path": f"lab/{i}", "subject": s, "label": c}
        for i, (s, c) in enumerate(zip(lab.subjects, lab.labels, strict=True))
    ]
    rows += [
        {
            "dataset": "gray",
            "subset": "train" if i < 30 else "test",
            "path": f"gray/{i}",
            "subject": s,
            "label": c,
        }
        for i, (s, c) in enumerate(zip(gray.subjects, gray.labels, strict=True))
    ]
    by_path = {r["path"]: k for k, r in enumerate(rows)}
    first = {
        sub: next(r["path"] for r in rows if r["dataset"] == "lab" and r["subset"] == sub)
        for sub in ("train", "val", "test")
    }
    test_img = next(
        r["path"] for r in rows[::-1] if r["dataset"] == "lab" and r["subset"] == "test"
    )
    # (copy's path, its dataset, subset, original, how it was copied); _png keeps the pixels
    planted = [
        ("copy/png", "lab", "train", first["test"], _png),
        ("copy/jpeg70", "lab", "train", first["val"], lambda x: _jpeg(x, 70)),
        ("copy/bright", "lab", "train", test_img, lambda x: _brighter(x, 15)),
        ("copy/val-test", "lab", "val", test_img, lambda x: _jpeg(_brighter(x, -10), 80)),
        ("copy/same-subset", "lab", "train", first["train"], _png),  # same subset: not compared
        # another dataset of the experiment: its test set holds a copy of a lab training face
        ("copy/cross", "gray", "test", first["train"], lambda x: _jpeg(x, 90)),
    ]
    for path, dataset, subset, original, copy in planted:
        images.append(copy(images[by_path[original]]))
        rows.append(
            {
                "dataset": dataset,
                "subset": subset,
                "path": path,
                "subject": f"{dataset}-{subset}",
                "label": "anger",
            }
        )
    frame = pd.DataFrame(rows)
    result = audit_images(np.stack(images), frame, group_by={"gray": "none"})

    # Expected: every two members of a family (an original and its copies) that lie in
    # different (dataset, subset) groups — copies of one face are copies of each other too.
    # The audit orders a pair by subset (train < val < test), then dataset (lab before gray).
    order = {"train": 0, "val": 1, "test": 2}
    where = {r["path"]: (order[r["subset"]], r["dataset"] != "lab") for r in rows}
    families: dict[str, list[tuple[str, bool]]] = {}
    for path, _, _, original, copy in planted:
        families.setdefault(original, [(original, True)]).append((path, copy is _png))
    expected = set()
    for members in families.values():
        for i, (x, x_exact) in enumerate(members):
            for y, y_exact in members[i + 1 :]:
                if where[x] == where[y]:
                    continue  # same dataset and subset: not compared
                a, b = sorted((x, y), key=where.__getitem__)
                expected.add((a, b, "exact" if x_exact and y_exact else "near"))
    assert len(expected) == 7
    assert _pair_set(result.pairs) == expected
    cross = result.pairs[result.pairs["path_b"] == "copy/cross"]
    assert len(cross) == 2 and cross["cross_dataset"].all() and cross["leak"].all()
    s = result.summary()
    assert (s["exact_pairs"], s["near_pairs"], s["leak_pairs"], s["cross_dataset_pairs"]) == (
        1,
        6,
        7,
        2,
    )
    assert s["by_subsets"]["train~val"] == {"exact": 0, "near": 2}  # jpeg70, bright~val-test
    assert s["by_subsets"]["train~test"] == {"exact": 1, "near": 3}  # png, bright, cross x2
    assert s["by_subsets"]["val~test"] == {"exact": 0, "near": 1}
    assert s["by_subsets"]["train~train"] == {"exact": 0, "near": 0}  # across datasets only
    # What data.dedupe removes from lab's training set: the three copies of val/test faces,
    # and the training face (with its same-subset copy) whose copy is in gray's test set.
    leaking = result.leaking_rows("lab")
    assert sorted(frame["path"][leaking]) == [
        "copy/bright",
        "copy/jpeg70",
        "copy/png",
        "copy/same-subset",
        first["train"],
    ]
    assert list(result.leaking_rows("gray")) == []
    assert s["subject_overlap"] == 0
    # near pairs are confirmed copies: within the hash threshold and correlated
    near = result.pairs[result.pairs["kind"] == "near"]
    assert (near["hamming"] <= audit.MAX_HAMMING).all()
    assert (near["correlation"] >= audit.MIN_CORRELATION).all()


def test_no_false_pairs_among_distinct_synthetic_faces():
    """~400 distinct faces of three domains, split per *image* (the leaky protocol), so the
    most similar renders (same subject and expression) sit in different subsets."""
    sets = {d: synthetic.render_set(d, 10, 2, 4, 64) for d in ("lab", "gray", "aged")}
    images = np.concatenate([s.images for s in sets.values()])
    rng = np.random.default_rng(0)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "dataset": d,
                    "subset": rng.choice(["train", "val", "test"], len(s.images)),
                    "subject": s.subjects,
                    "label": s.labels,
                }
            )
            for d, s in sets.items()
        ],
        ignore_index=True,
    )
    assert len(frame) >= 400
    leaky = dict.fromkeys(sets, "none")
    fp = fingerprint(images)
    result = audit_images(fp, frame, group_by=leaky)
    assert len(result.pairs) == 0
    # The 255-bit hash alone would pair some of them: the correlation check is what rejects
    # them, and the most correlated candidate stays below the threshold.
    hash_only = audit_images(fp, frame, group_by=leaky, min_correlation=-1.0)
    assert len(hash_only.pairs) > 0
    assert hash_only.pairs["correlation"].max() < audit.MIN_CORRELATION
    assert result.summary()["subject_overlap"] == 0  # leaky split: expected, not counted
    assert result.summary()["subject_overlap_expected"] == 30


# -- subjects ---------------------------------------------------------------------------------
def _broken_split() -> pd.DataFrame:
    subsets = {"s0": "train", "s1": "train", "s2": "train", "s3": "val", "s4": "test"}
    rows = [
        {"dataset": "d", "subset": sub, "subject": s}
        for s, sub in subsets.items()
        for _ in range(3)
    ]
    rows.append({"dataset": "d", "subset": "test", "subject": "s2"})  # s2 leaks into test
    rows += [{"dataset": "anon", "subset": sub, "subject": ""} for sub in ("train", "test")]
    return pd.DataFrame(rows)


def test_subject_overlap_on_a_broken_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    frame = _broken_split()
    shared = subject_overlap(frame, {"d": "subject"})
    assert shared.to_dict("records") == [
        {
            "dataset": "d",
            "subject": "s2",
            "subsets": "train,test",
            "group_by": "subject",
            "must_be_zero": True,
        }
    ]
    leaky = subject_overlap(frame, {"d": "none"})
    assert leaky["subject"].tolist() == ["s2"] and not leaky["must_be_zero"].any()
    images = np.random.default_rng(0).integers(0, 256, (len(frame), 48, 48), dtype=np.uint8)
    result = audit_images(images, frame)
    s = result.summary()
    assert s["subject_overlap"] == 1
    assert s["subject_checked"] == {"d": "1 shared subjects", "anon": "not checked: no subject ids"}
    # The CLI's task writes the files, then refuses the split with our own error.
    monkeypatch.setattr(audit, "audit_config", lambda cfg: result)
    cfg = OmegaConf.create({"paths": {"run_dir": str(tmp_path)}})
    with pytest.raises(DataError, match="1 subjects are in two subsets"):
        audit.run_audit(cfg)
    assert "s2,train,test" in (tmp_path / "subjects.csv").read_text().replace('"', "")
    assert (tmp_path / "audit.md").read_text().count("**1**") == 1


# -- FER2013 ----------------------------------------------------------------------------------
def test_fer2013_duplicates_across_usage_are_found(make_cfg, tmp_path: Path):
    """A fabricated fer2013.csv with copies across Training/PublicTest/PrivateTest, through
    the whole path: scan, cache, official split, audit, files."""
    from fer.data.sources import fer2013

    faces = synthetic.render_set("gray", 5, 1, 2, 48)
    grey = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in faces.images[:30]]
    codes = ["0", "1", "2", "3", "4", "5"]  # the six classes of the default config
    usage = ["Training"] * 20 + ["PublicTest"] * 5 + ["PrivateTest"] * 5
    rows = [(codes[i % 6], g, u) for i, (g, u) in enumerate(zip(grey, usage, strict=True))]
    rows += [
        ("0", grey[25], "Training"),  # 30: exact copy of PrivateTest row 25 ("1"), another label
        (codes[3], _brighter(grey[3], 12), "PublicTest"),  # 31: near copy of Training row 3
        (codes[21 % 6], grey[21], "PrivateTest"),  # 32: exact copy of PublicTest row 21
        (codes[5], grey[5], "Training"),  # 33: Training duplicate of Training: not a leak
        (
            codes[10 % 6],
            cv2.cvtColor(_jpeg(faces.images[10], 60), cv2.COLOR_RGB2GRAY),
            "PrivateTest",
        ),
    ]
    root = tmp_path / "fer2013"
    root.mkdir()
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["emotion", "pixels", "Usage"])
        for code, g, u in rows:
            w.writerow([code, " ".join(map(str, g.ravel().tolist())), u])
    fer2013._table.cache_clear()
    cfg = make_cfg(
        "data=fer2013", f"data.root={root}", "split=holdout", "preprocess=none", tiny=False
    )
    with open_dict(cfg):
        cfg.paths.run_dir = str(tmp_path / "audit")
    summary = audit.run_audit(cfg)
    pairs = pd.read_csv(tmp_path / "audit" / "audit.csv")
    got = {
        (int(a.rsplit("::")[1]), int(b.rsplit("::")[1]), k)
        for a, b, k in zip(pairs["path_a"], pairs["path_b"], pairs["kind"], strict=True)
    }
    assert got == {(30, 25, "exact"), (3, 31, "near"), (21, 32, "exact"), (10, 34, "near")}
    assert summary["by_subsets"] == {
        "train~val": {"exact": 0, "near": 1},
        "train~test": {"exact": 1, "near": 1},
        "val~test": {"exact": 1, "near": 0},
    }
    assert summary["label_conflicts"] == 1 and summary["sizes"]["fer2013"] == {
        "train": 22,
        "val": 6,
        "test": 7,
    }
    assert summary["subject_checked"] == {"fer2013": "not checked: no subject ids"}
    assert summary["train_images_duplicating_val_test"] == {"fer2013": 3}
    assert (tmp_path / "audit" / "audit.json").exists() and (
        tmp_path / "audit" / "audit.md"
    ).exists()


# -- dedupe -----------------------------------------------------------------------------------
def test_dedupe_removes_exactly_the_planted_training_copies(make_cfg, tmp_path: Path):
    def cfg_for(*overrides: str):
        cfg = make_cfg("split=holdout", *overrides)
        with open_dict(cfg):
            cfg.paths.cache_dir = str(tmp_path / "cache")  # own copy: its files are edited below
        return cfg

    clean = make_datamodule(cfg_for())
    clean.setup("fit")
    part = clean.parts["source"]
    paths = part.faces.frame["path"].to_numpy()
    train, val, test = (np.asarray(part.rows[s]) for s in ("train", "val", "test"))
    assert len(val) and len(test)

    def read(row: int) -> np.ndarray:
        return cv2.imread(paths[row], cv2.IMREAD_COLOR)[..., ::-1]

    # Three training images become copies of val/test images (files edited on disk).
    plants = {
        train[0]: read(test[0]),
        train[1]: _jpeg(read(test[1]), 70),
        train[2]: _brighter(read(val[0]), 15),
    }
    for row, img in plants.items():
        cv2.imwrite(paths[row], np.ascontiguousarray(img[..., ::-1]))

    found = audit_config(cfg_for("data.dedupe=true"))  # the audit reports the split, dedupe or not
    assert sorted(found.leaking_rows(part.name)) == sorted(plants)
    assert found.summary()["leak_pairs"] == 3 and found.summary()["exact_pairs"] == 1

    deduped = make_datamodule(cfg_for("data.dedupe=true"))
    deduped.setup("fit")
    assert sorted(deduped.train_set.rows) == sorted(set(train) - set(plants))
    assert np.array_equal(deduped.val_set.rows, val)  # val/test are never touched
    info = deduped.describe()["source"]
    assert info["dedupe_removed"] == 3 and info["train"]["size"] == len(train) - 3

    kept = make_datamodule(cfg_for())
    kept.setup("fit")
    assert (
        sorted(kept.train_set.rows) == sorted(train)
        and "dedupe_removed" not in kept.describe()["source"]
    )


# -- the command line -------------------------------------------------------------------------
def test_cli_writes_its_files(
    synthetic_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    out = tmp_path / "outputs"
    args = [
        "data=synthetic_lab",
        "split=holdout",
        "data.source.n_subjects=10",
        "data.source.per_class=2",
    ]
    paths = [f"paths.cache_dir={synthetic_cache}", f"paths.output_root={out}"]
    monkeypatch.setattr(sys, "argv", ["audit", *args, *paths])
    audit.main()
    folder = (
        out
        / "audit"
        / "data-synthetic_lab__data.source.n_subjects-10__data.source.per_class-2__split-holdout"
    )
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".log") == [
        "audit.csv",
        "audit.json",
        "audit.md",
        "subjects.csv",
    ]
    assert "subject overlap (must be 0): 0" in capsys.readouterr().out
    assert not (folder / ".hydra").exists()

    # A user error ends with our one-line message (the config check's), not a traceback.
    missing = tmp_path / "no-such-dir"
    argv = ["audit", "data=jaffe", f"data.root={missing}", f"paths.output_root={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match=r"^error: data\.root=.*no-such-dir.*jaffe"):
        audit.main()
