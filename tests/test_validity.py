"""The spurious-cue domain and the validity study (issue 10): marks, clean variant, the cue's
effect on a tiny CNN, the study's grid, and the validity table from hand-made run files."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy import stats as sps
from torch import nn

from fer.data import synthetic as syn
from fer.data.sources.synthetic import scan
from fer.errors import ConfigError
from fer.naming import code_hash, short_hash
from fer.report import tables, validity
from fer.report.collect import collect
from fer.report.study import write_report
from fer.runs import EVALUATED

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


# ----------------------------------------------------------------------------- the marks


def test_cue_mark_lies_outside_the_face_roi_and_shows_the_recorded_class():
    # The study's own faces (conf/data/synthetic_cue.yaml: 30 subjects, seed 5), at the cache
    # size and at the model's input size: no ROI pixel (eyes and brows, mouth, nose) under a mark.
    for size in (64, 32):
        faces = syn.render_set("cue", 30, 2, seed=5, size=size)
        for mark in ("corner", "strip", "band"):
            rows, cols = syn.cue_box(size, mark)
            assert rows.stop > rows.start and cols.stop > cols.start
            assert not faces.masks[:, :, rows, cols].any(), (size, mark)
    for mark in ("corner", "strip", "band"):
        s = syn.render_set("cue", 3, 2, seed=0, size=64, cue_mark=mark, cue_p=0.7)
        # The pixels show the class `cues` records (decoded from the image itself).
        assert [syn.read_cue(im, mark) for im in s.images] == s.cues


def test_cue_matches_the_label_with_frequency_p():
    n_subjects, per_class = 10, 6
    n = n_subjects * len(syn.CLASSES) * per_class
    labels = [c for _ in range(n_subjects) for c in syn.CLASSES for _ in range(per_class)]
    matched = {}
    for p in (0.0, 0.7, 0.95, 1.0):
        cues = syn.cue_classes("cue", n_subjects, per_class, 0, p)
        hits = np.array([c == y for c, y in zip(cues, labels, strict=True)])
        matched[p] = hits
        # Binomial(n, p): within 3.5 SD of n·p (exact at p = 0 and 1).
        assert abs(hits.sum() - n * p) <= 3.5 * math.sqrt(n * p * (1 - p)), (p, hits.sum())
        wrong = [c for c, y in zip(cues, labels, strict=True) if c != y]
        assert all(c in syn.CLASSES for c in wrong)
        if p <= 0.7:  # enough mismatches that every class shows up as some other's mark
            assert set(wrong) == set(syn.CLASSES)
    # One uniform draw per image, compared with p: matches at 0.7 are a subset of those at 0.95.
    assert not (matched[0.7] & ~matched[0.95]).any()
    # A seeded render is exact: the same counts every time, and the pixels agree.
    s = syn.render_set("cue", 3, 2, seed=0, size=48, cue_mark="corner", cue_p=0.7)
    again = syn.cue_classes("cue", 3, 2, 0, 0.7)
    assert s.cues == again
    n_match = sum(c == y for c, y in zip(s.cues, s.labels, strict=True))
    decoded = [syn.read_cue(im, "corner") for im in s.images]
    assert n_match == sum(c == y for c, y in zip(decoded, s.labels, strict=True))


def test_clean_variant_is_the_same_faces_without_a_mark():
    clean = syn.render_set("cue", 3, 2, seed=4, size=64)
    cued = syn.render_set("cue", 3, 2, seed=4, size=64, cue_mark="corner", cue_p=0.95)
    assert clean.cues is None and clean.labels == cued.labels
    np.testing.assert_array_equal(clean.masks, cued.masks)
    rows, cols = syn.cue_box(64, "corner")
    outside = np.ones((64, 64), bool)
    outside[rows, cols] = False
    np.testing.assert_array_equal(clean.images[:, outside], cued.images[:, outside])
    assert (clean.images[:, rows, cols] != cued.images[:, rows, cols]).any()
    with pytest.raises(ValueError, match="watermark"):
        syn.render_set("cue", 1, 1, seed=0, cue_mark="watermark")
    with pytest.raises(ValueError, match=r"p=1\.5"):
        syn.render_set("cue", 1, 1, seed=0, cue_mark="corner", cue_p=1.5)


#: sha256 of (images, masks, intensities) of `render_set(domain, 3, 2, seed=4, size=48)` and of
#: the signal renders, computed before the cue domain existed: adding it must not move a pixel.
BEFORE = {
    "lab": "b14a424b946b5f5b",
    "gray": "603d32235cdb66f2",
    "aged": "1da76a26fc80c30a",
    "pretrain": "cc77a12c3e64b1b4",
    "mouth": "6b50713c03145616",
    "eyes": "c59e2b1161c6b050",
}


def test_existing_domains_render_bit_identically():
    for d in ("lab", "gray", "aged", "pretrain"):
        s = syn.render_set(d, 3, 2, seed=4, size=48)
        raw = s.images.tobytes() + s.masks.tobytes() + s.intensities.tobytes()
        assert hashlib.sha256(raw).hexdigest()[:16] == BEFORE[d], d
        assert s.cues is None
    for signal in ("mouth", "eyes"):
        s = syn.render_set("lab", 2, 2, seed=1, size=64, signal=signal)
        assert hashlib.sha256(s.images.tobytes()).hexdigest()[:16] == BEFORE[signal], signal


def test_an_edited_renderer_renders_anew(tmp_path, monkeypatch):
    """Render folders are keyed by the renderer's code too: after an edit (here a copy of
    fer/data/synthetic.py with one more line) the same parameters give a new folder."""
    kw = dict(domain="lab", n_subjects=2, per_class=1, seed=0, size=32, classes=["anger"])
    before = Path(scan(tmp_path, **kw).frame["path"][0]).parents[2]
    edited = tmp_path / "synthetic_edited.py"
    edited.write_text(Path(syn.__file__).read_text() + "\n# an edit\n")
    monkeypatch.setattr(syn, "__file__", str(edited))
    after = Path(scan(tmp_path, **kw).frame["path"][0]).parents[2]
    assert after != before and (after / "manifest.csv").is_file()


def test_scan_cued_folder_from_the_clean_one_with_a_shared_subject_split(tmp_path):
    kw = dict(domain="cue", n_subjects=5, per_class=1, seed=0, size=32, classes=["anger", "fear"])
    shares = {"train": 0.6, "val": 0.2, "test": 0.2}
    clean = scan(tmp_path, **kw, subject_split=shares).frame
    cued = scan(tmp_path, **kw, cue_mark="corner", cue_p=0.7, subject_split=shares).frame
    # The clean folder hashes exactly the pre-cue parameters (and the renderer's code).
    key = json.dumps(kw, sort_keys=True) + code_hash(syn)
    assert Path(clean["path"][0]).parents[2] == tmp_path / f"cue-{short_hash(key)}"
    assert Path(cued["path"][0]).parents[2] != Path(clean["path"][0]).parents[2]
    params = json.loads((Path(cued["path"][0]).parents[2] / "params.json").read_text())
    assert params["cue_mark"] == "corner" and params["cue_p"] == 0.7
    assert list(cued["cue"]) == syn.cue_classes("cue", 5, 1, 0, 0.7, ["anger", "fear"])
    # Same split for both, whole subjects in one subset, every subset used.
    assert list(clean["official_split"]) == list(cued["official_split"])
    per_subject = clean.groupby("subject")["official_split"].nunique()
    assert (per_subject == 1).all() and set(clean["official_split"]) == {"train", "val", "test"}
    import cv2

    a = cv2.imread(clean["path"][1])
    b = cv2.imread(cued["path"][1])
    rows, cols = syn.cue_box(32, "corner")
    b[rows, cols] = a[rows, cols]
    np.testing.assert_array_equal(a, b)  # identical outside the mark
    with pytest.raises(ConfigError, match=r"cue_mark='stamp'"):
        scan(tmp_path, **kw, cue_mark="stamp")
    with pytest.raises(ConfigError, match=r"cue_p=2"):
        scan(tmp_path, **kw, cue_mark="corner", cue_p=2)


# ----------------------------------------------------------------------------- the effect

CLASSES = ("happiness", "sadness", "surprise")


def _tiny_cnn(n_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(32, n_classes),
    )


def _tensors(mark: str, subjects: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = syn.render_set("cue", subjects, 4, seed, size=32, classes=CLASSES, cue_mark=mark)
    x = torch.from_numpy(s.images).permute(0, 3, 1, 2).float() / 255 - 0.5
    return x, torch.tensor([CLASSES.index(c) for c in s.labels])


def _fit(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    net = _tiny_cnn(len(CLASSES))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):
        net.train()
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def _acc(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def test_a_model_trained_with_the_cue_loses_accuracy_without_it():
    clean_x, y = _tensors("none", 16, seed=1)
    cued_x, _ = _tensors("strip", 16, seed=1)  # the same faces, marked (p = 0.95)
    test_clean, ty = _tensors("none", 8, seed=2)  # other subjects
    test_cued, _ = _tensors("strip", 8, seed=2)
    clean_model, cued_model = _fit(clean_x, y), _fit(cued_x, y)
    acc = {
        "clean on cue-free": _acc(clean_model, test_clean, ty),
        "clean on cued": _acc(clean_model, test_cued, ty),
        "cued on cue-free": _acc(cued_model, test_clean, ty),
        "cued on cued": _acc(cued_model, test_cued, ty),
    }
    assert acc["clean on cue-free"] > 0.5, acc  # the faces alone are learnable
    assert acc["cued on cued"] > acc["clean on cued"] + 0.1, acc  # the cue helps in-domain
    assert acc["cued on cue-free"] < acc["clean on cue-free"] - 0.1, acc  # and misleads


# ----------------------------------------------------------------------------- the study


def test_study_composes_its_arms_and_stages(tmp_path):
    from fer.sweep import build_stages, describe

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "sweep",
            overrides=[
                "study=validity_cue",
                f"paths.output_root={tmp_path / 'o'}",
                f"paths.cache_dir={tmp_path / 'c'}",
            ],
        )
        stages = build_stages(cfg)
    assert [s.name for s in stages] == ["train_clean", "train_cued", "evaluate"]
    assert [len(s.cells) for s in stages] == [5, 10, 15]
    assert "train_clean" in describe(stages) and all(
        c.state == "missing" for s in stages for c in s.cells
    )
    clean, cued = stages[0].cells, stages[1].cells
    assert {c.resolved["data"]["name"] for c in clean} == {"synthetic_cue_clean"}
    assert {c.resolved["data"]["source"]["cue_mark"] for c in clean} == {"none"}
    assert sorted({c.resolved["data"]["source"]["cue_p"] for c in cued}) == [0.7, 0.95]
    assert sorted(c.resolved["seed"] for c in clean) == [0, 1, 2, 3, 4]
    # Every arm renders the same faces and shares one subject split.
    for c in clean + cued:
        src = c.resolved["data"]["source"]
        assert (src["domain"], src["seed"], src["n_subjects"]) == ("cue", 5, 30)
        assert c.resolved["data"]["official_split"] is True
    assert len({c.run_dir for c in clean + cued}) == 15
    ev = OmegaConf.to_container(cfg.study, resolve=True)
    assert ev["eval_datasets"][:2] == ["synthetic_cue_p95", "synthetic_cue_clean"]


def test_experiment_preset_composes_with_a_seed_multirun_value():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=validity_cue", "seed=3"])
        p95 = compose("train", overrides=["data=synthetic_cue_p95", "data.source.cue_p=0.7"])
    assert cfg.name == "validity_cue" and cfg.seed == 3 and cfg.split.name == "holdout"
    assert cfg.data.name == "synthetic_cue" and cfg.data.source.cue_mark == "strip"
    assert p95.data.name == "synthetic_cue_p95" and p95.data.source.cue_p == 0.7  # overridable


# ----------------------------------------------------------------------------- the table

SEEDS = (0, 1, 2)
#: arm -> (cue_mark, cue_p), and per arm and seed the numbers evaluate.py would write:
#: accuracy on (p95, clean, gray, aged) and energy inside the ROI / DICE on (p95, clean).
ARMS = {
    "clean": ("none", 0.95),
    "cue p=0.7 (strip)": ("strip", 0.7),
    "cue p=0.95 (strip)": ("strip", 0.95),
}
ACC = {
    "clean": [(0.60, 0.62, 0.40, 0.30), (0.55, 0.57, 0.42, 0.33), (0.65, 0.66, 0.38, 0.35)],
    "cue p=0.7 (strip)": [
        (0.80, 0.50, 0.35, 0.30),
        (0.78, 0.52, 0.30, 0.28),
        (0.82, 0.45, 0.33, 0.31),
    ],
    "cue p=0.95 (strip)": [
        (0.92, 0.40, 0.30, 0.25),
        (0.95, 0.35, 0.28, 0.27),
        (0.90, 0.42, 0.31, 0.20),
    ],
}
ENERGY = {
    "clean": [(0.30, 0.32), (0.28, 0.30), (0.35, 0.33)],
    "cue p=0.7 (strip)": [(0.20, 0.30), (0.22, 0.29), (0.18, 0.31)],
    "cue p=0.95 (strip)": [(0.10, 0.25), (0.12, 0.27), (0.08, 0.26)],
}
#: Each run's score on its own test subset (metrics.json): clean -> no mark, p -> its own p.
OWN = {
    "clean": [0.62, 0.57, 0.66],
    "cue p=0.7 (strip)": [0.75, 0.74, 0.77],
    "cue p=0.95 (strip)": [0.92, 0.95, 0.9],
}
DATASETS = ("synthetic_cue_p95", "synthetic_cue_clean", "synthetic_gray", "synthetic_aged")
SPEC = {
    "reference": "clean",
    "cued_test": "synthetic_cue_p95",
    "cue_free_test": "synthetic_cue_clean",
    "cross": ["synthetic_gray", "synthetic_aged"],
}


def _eval(dataset: str, acc: float, energy: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"dataset": dataset, "subset": "test", "scores": {"acc": acc}}
    if energy is not None:
        out["overlap"] = {
            "class_mean": {"dice": {"mean": energy / 2}},
            "per_image": {"energy_inside": {"mean": energy}},
        }
    return out


def _write_runs(root: Path) -> None:
    for arm, (mark, p) in ARMS.items():
        for seed in SEEDS:
            data = "synthetic_cue_clean" if mark == "none" else "synthetic_cue"
            run = root / f"{arm.replace(' ', '_')}__seed-{seed}"
            (run / "eval" / "last__gradcam__label").mkdir(parents=True)
            cfg = {
                "name": "validity_cue",
                "seed": seed,
                "model": {"name": "small_vgg"},
                "init": {"name": "glorot", "label": "scratch"},
                "split": {"name": "holdout", "seed": 0, "group_by": "subject"},
                "strategy": {"name": "full", "label": "RE"},
                "data": {"name": data, "source": {"cue_mark": mark, "cue_p": p}},
                "eval": {"checkpoint": "last"},
            }
            OmegaConf.save(OmegaConf.create(cfg), run / "config.yaml")
            own = {data: {"acc": OWN[arm][seed], "subset": "test"}}
            done = {"status": "finished", "scores": own, "finished_at": "2026-01-01T00:00"}
            (run / "metrics.json").write_text(json.dumps(done))
            accs, energies = ACC[arm][seed], ENERGY[arm][seed]
            bodies = {
                d: _eval(d, accs[i], energies[i] if i < 2 else None) for i, d in enumerate(DATASETS)
            }
            bodies.setdefault(data, _eval(data, OWN[arm][seed], None))  # evaluate.py scores it too
            # The study scores every run on every arm's dataset (clean runs: synthetic_cue at its
            # default p = 0.95, the same images as synthetic_cue_p95).
            bodies.setdefault("synthetic_cue", _eval("synthetic_cue", accs[0], energies[0]))
            for d, body in bodies.items():
                body[EVALUATED] = done["finished_at"]  # an evaluation of this training
                (run / "eval" / "last__gradcam__label" / f"{d}.json").write_text(json.dumps(body))


def test_validity_table_exact_numbers(tmp_path):
    root = tmp_path / "validity_cue"
    _write_runs(root)
    df, problems = collect(root)
    assert problems == []
    t = validity.validity_table(df, validity.arms(root), SPEC)
    assert list(dict.fromkeys(t["arm"])) == ["clean", "cue p=0.7 (strip)", "cue p=0.95 (strip)"]

    def row(arm: str, measure: str) -> pd.Series:
        (i,) = t.index[(t["arm"] == arm) & (t["measure"] == measure)]
        return t.loc[i]

    for arm in ARMS:
        for measure, get in (
            ("in-domain acc, cued test (%)", lambda a: np.array([v[0] for v in ACC[a]]) * 100),
            ("cue-free acc (%)", lambda a: np.array([v[1] for v in ACC[a]]) * 100),
            ("acc, own test set (%)", lambda a: np.array(OWN[a]) * 100),
            ("cross-domain acc (%)", lambda a: np.array([(v[2] + v[3]) / 2 for v in ACC[a]]) * 100),
            ("ROI energy, cued test", lambda a: np.array([v[0] for v in ENERGY[a]])),
            ("class-mean DICE, cue-free test", lambda a: np.array([v[1] / 2 for v in ENERGY[a]])),
        ):
            r, x = row(arm, measure), get(arm)
            assert r["n"] == 3 and r["mean"] == pytest.approx(x.mean())
            assert r["sd"] == pytest.approx(x.std(ddof=1))
            half = sps.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
            assert (r["ci_low"], r["ci_high"]) == pytest.approx((x.mean() - half, x.mean() + half))
            if arm == "clean":
                assert r["Δ (95% CI)"] == "reference" and r["Δ n pairs"] == 0
                continue
            d = x - get("clean")  # paired by seed
            half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
            assert r["Δ vs clean"] == pytest.approx(d.mean()) and r["Δ n pairs"] == 3
            assert r["Δ SD"] == pytest.approx(d.std(ddof=1))
            assert (r["Δ ci_low"], r["Δ ci_high"]) == pytest.approx(
                (d.mean() - half, d.mean() + half)
            )
            assert r["CI excludes 0"] == bool(d.mean() - half > 0 or d.mean() + half < 0)
    # p = 0.95 vs clean by hand: in-domain Δ = (32 + 40 + 25) / 3, cue-free Δ = (−22 − 22 − 24) / 3.
    assert row("cue p=0.95 (strip)", "in-domain acc, cued test (%)")["Δ vs clean"] == pytest.approx(
        97 / 3
    )
    assert row("cue p=0.95 (strip)", "cue-free acc (%)")["Δ vs clean"] == pytest.approx(-68 / 3)
    checks = validity.checks(t, SPEC)
    strong = checks[checks["arm"] == "cue p=0.95 (strip)"]
    assert len(strong) == 3 and strong["holds"].all()
    wide = validity.side_by_side(t)
    assert list(wide["arm"]) == ["clean", "cue p=0.7 (strip)", "cue p=0.95 (strip)"]
    assert wide.loc[0, "cue-free acc (%)"] == "61.7 ± 4.5"
    assert wide.loc[2, "cue-free acc (%)"].startswith("39.0 ± 3.6 (Δ -22.7 [")


def test_write_report_dispatches_the_validity_kind(tmp_path):
    root = tmp_path / "outputs" / "validity_cue"
    _write_runs(root)
    study = {
        "name": "validity_cue",
        "kind": "validity_cue",
        "validity": SPEC,
        "primary_endpoints": ["acc_cued", "acc_cue_free", "energy_cued"],
    }
    out = write_report(study, root, tmp_path / "report")
    names = {Path(p).name for p in out["tables"]}
    assert {"validity_summary.md", "validity.csv", "validity_checks.md"} <= names
    assert out["headline"].startswith("| arm | seeds |")
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "paired by seed" in readme and "validity_summary" in readme


def test_summaries_say_whether_they_run_over_seeds_or_folds():
    base = {"protocol": "p", "dataset": "d", "fold": None, "split_seed": 0}
    seeds = pd.DataFrame([base | {"seed": s, "value": v} for s, v in enumerate([1.0, 2.0, 4.0])])
    folds = pd.DataFrame(
        [base | {"seed": 0, "fold": f, "value": v} for f, v in enumerate([1.0, 2.0, 4.0])]
    )
    both = pd.concat([folds, folds.assign(seed=1)], ignore_index=True)
    s = tables.summarize(seeds, ["protocol", "dataset"]).iloc[0]
    f = tables.summarize(folds, ["protocol", "dataset"]).iloc[0]
    b = tables.summarize(both, ["protocol", "dataset"]).iloc[0]
    assert s["over"] == "3 seeds" and "CI over seeds" in s["interval"]
    assert f["over"] == "3 folds" and "descriptive" in f["interval"]
    assert b["over"] == "3 folds × 2 seeds" and "descriptive" in b["interval"]
    half = sps.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3)
    assert s["ci_high"] == pytest.approx(7 / 3 + half)
