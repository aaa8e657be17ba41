"""Report from hand-made run directories: numbers chosen by hand, scipy/numpy as the reference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats as sps

from fer.report import tables
from fer.report.collect import SUBJECT, collect, predictions, wide
from fer.report.study import PUBLISHED, log_wandb, write_report
from fer.runs import EVALUATED

LABELS = {"imagenet": "ImageNet", "glorot": "scratch", "checkpoint": "checkpoint"}
CLASSES = ["anger", "happiness"]

# Study A by hand: model -> init -> per-fold numbers (4 folds). In-domain (OULU-CASIA val fold)
# accuracy, cross-dataset (JAFFE, whole) accuracy, and JAFFE class-mean DICE.
ACC_IN = {
    "vgg16": {"imagenet": [0.90, 0.92, 0.95, 0.91], "glorot": [0.85, 0.91, 0.92, 0.87]},
    "vgg16_se": {"imagenet": [0.80, 0.82, 0.84, 0.86], "glorot": [0.81, 0.75, 0.79, 0.78]},
}
ACC_X = {
    "vgg16": {"imagenet": [0.30, 0.35, 0.40, 0.32], "glorot": [0.36, 0.37, 0.45, 0.38]},
    "vgg16_se": {"imagenet": [0.25, 0.31, 0.28, 0.30], "glorot": [0.29, 0.30, 0.35, 0.27]},
}
DICE = {
    "vgg16": {"imagenet": [0.40, 0.42, 0.45, 0.41], "glorot": [0.30, 0.35, 0.33, 0.36]},
    "vgg16_se": {"imagenet": [0.50, 0.48, 0.46, 0.55], "glorot": [0.47, 0.49, 0.40, 0.44]},
}
N_TRAIN, N_VAL = 900, 100
# Per-image predictions on JAFFE (whole): 6 images of 3 subjects, the last without an id
# ("nan": its own cluster). Correct (1) / wrong (0) per image and fold, by hand.
X_SUBJECTS = ["KA", "KA", "KL", "KL", "KM", "nan"]
X_LABELS = [0, 1, 0, 1, 0, 1]
X_CORRECT = {
    # 15 / 24 right; per cluster KA 6/8, KL 6/8, KM 1/4, unknown image 2/4.
    ("vgg16", "imagenet"): [
        [1, 0, 1, 1, 0, 1],
        [1, 1, 0, 1, 0, 0],
        [0, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1],
    ],
    # Every cluster exactly 50 % over the 4 folds: a degenerate CI at 50 %.
    ("vgg16_se", "glorot"): [
        [1, 0, 1, 0, 1, 0],
        [0, 1, 0, 1, 0, 1],
        [1, 1, 0, 0, 1, 0],
        [0, 0, 1, 1, 0, 1],
    ],
}


# ------------------------------------------------------------------ run-directory helpers


def write_run(
    root: Path,
    name: str,
    cfg: dict[str, Any],
    metrics: dict[str, Any] | str | None,
    evals: dict[str, dict[str, Any]] | None = None,
    eval_key: str = "last__gradcam__label",
) -> Path:
    """A run directory: config.yaml, metrics.json (a dict, or raw text for a corrupt file)
    and eval/<eval_key>/<dataset>.json."""
    run = root / name
    run.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), run / "config.yaml")
    if isinstance(metrics, dict):  # evaluations are stamped with the training they evaluated
        metrics = {"finished_at": "2026-01-01T00:00:00+00:00", **metrics}
    if metrics is not None:
        text = metrics if isinstance(metrics, str) else json.dumps(metrics)
        (run / "metrics.json").write_text(text)
    stamp = {EVALUATED: metrics["finished_at"]} if isinstance(metrics, dict) else {}
    for dataset, body in (evals or {}).items():
        path = run / "eval" / eval_key / f"{dataset}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stamp | body))
    return run


def scores(acc: float, subset: str | None = None) -> dict[str, Any]:
    """fer.scoring.summarize's shape: per-class accuracy = acc for both classes."""
    out = {
        "acc": acc,
        "acc_macro": acc,
        "per_class": {c: acc for c in CLASSES},
        "support": {c: 10 for c in CLASSES},
        "n": 20,
        "classes": CLASSES,
        "macro_over": CLASSES,
    }
    return out | ({"subset": subset} if subset else {})


def preds(
    subjects: list[str], labels: list[int], correct: list[int], first_row: int = 0
) -> dict[str, list]:
    """evaluate.py's `predictions` block: a wrong prediction is the other class."""
    pred = [y if c else 1 - y for y, c in zip(labels, correct, strict=True)]
    rows = list(range(first_row, first_row + len(labels)))
    return {"row": rows, "subject": subjects, "label": labels, "pred": pred}


DEFAULT_PREDS = preds(["S1", "S1", "S2", "S2"], [0, 1, 0, 1], [1, 0, 1, 0])


def eval_json(
    dataset: str,
    subset: str,
    acc: float,
    dice: float,
    predictions: dict[str, list] | None = DEFAULT_PREDS,
    pointing: float | None = None,
    eyes: float | None = None,
) -> dict[str, Any]:
    """evaluate.py's JSON shape (fer/evaluate.py `_evaluate_dataset`), numbers by hand;
    `predictions=None` leaves the key out (an older evaluate.py). `pointing` adds the
    per-image pointing game, `eyes` the class-mean DICE of the eyes_brows region."""
    iou = dice / (2 - dice)
    regions = {"mouth": {"dice": {"mean": dice / 2}, "iou": {"mean": iou / 2}}}
    if eyes is not None:
        regions["eyes_brows"] = {"dice": {"mean": eyes}, "iou": {"mean": eyes / (2 - eyes)}}

    def per_image(v: float) -> dict[str, Any]:
        out = {k: {"mean": v, "n": 20, "n_nan": 0} for k in ("dice", "iou", "energy_inside")}
        if pointing is not None:
            out["pointing_game"] = {"mean": pointing, "n": 20, "n_nan": 0}
        return out

    return {
        "dataset": dataset,
        "subset": subset,
        "size": 20,
        "scores": scores(acc),
        "scores_shared_classes": scores(acc),
        "scores_every_face": None,
        "overlap": {
            "class_mean": {
                "dice": {
                    "mean": dice,
                    "n": 2,
                    "n_nan": 0,
                    "per_class": {"anger": dice, "happiness": dice},
                },
                "iou": {
                    "mean": iou,
                    "n": 2,
                    "n_nan": 0,
                    "per_class": {"anger": iou, "happiness": iou},
                },
                "per_class": {c: {"n_images": 10} for c in CLASSES},
                "per_region": regions,
            },
            "per_image": per_image(dice * 0.9),
            "baselines": {"gaussian": per_image(0.2), "random": per_image(0.1)},
        },
        "randomisation": {"spearman_mean": 0.1, "n": 20, "n_nan": 0},
    } | ({"predictions": predictions} if predictions is not None else {})


def cfg_a(model: str, init: str, fold: int, group_by: str = "subject") -> dict[str, Any]:
    return {
        "name": "study_a",
        "seed": 0,
        "model": {"name": model},
        "init": {"name": init, "label": LABELS[init]},
        "split": {"name": "kfold", "k": 4, "fold": fold, "seed": 0, "group_by": group_by},
        "strategy": {"name": "full", "label": "RE"},
        "data": {"name": "oulu_casia"},
        "eval": {"checkpoint": "last"},
    }


def metrics_a(acc: float, group_by: str = "subject") -> dict[str, Any]:
    return {
        "status": "finished",
        "scores": {"oulu_casia": scores(acc, "val")},
        "data": {
            "train_on": "source",
            "scored_on": "val",
            "source": {
                "name": "oulu_casia",
                "train": {"size": N_TRAIN},
                "val": {"size": N_VAL},
                "test": {"size": 0},
                "excluded": 0,
                "group_by": group_by,
                "leaky": group_by != "subject",
            },
        },
    }


def x_preds(model: str, init: str, fold: int) -> dict[str, list]:
    """JAFFE predictions of a study A run: X_CORRECT's, else all right."""
    correct = X_CORRECT.get((model, init), [[1] * 6] * 4)[fold]
    return preds(X_SUBJECTS, X_LABELS, correct)


@pytest.fixture(scope="module")
def study_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once per module; tests only read it."""
    root = tmp_path_factory.mktemp("runs") / "outputs" / "study_a"
    for model, by_init in ACC_IN.items():
        for init, accs in by_init.items():
            for fold, acc in enumerate(accs):
                write_run(
                    root,
                    f"model-{model}__init-{init}__split.fold-{fold}",
                    cfg_a(model, init, fold),
                    metrics_a(acc),
                    {
                        "oulu_casia": eval_json("oulu_casia", "val", acc, 0.6),
                        "jaffe": eval_json(
                            "jaffe",
                            "whole",
                            ACC_X[model][init][fold],
                            DICE[model][init][fold],
                            x_preds(model, init, fold),
                        ),
                    },
                )
    # Leaky (image-level folds): labelled, never pooled with the subject-grouped runs. Fold
    # 0's JAFFE JSON predates per-image predictions: a problem, left out of the bootstrap.
    for fold, acc in enumerate([0.99, 0.97]):
        write_run(
            root,
            f"init-imagenet__split.fold-{fold}__split.group_by-none",
            cfg_a("vgg16", "imagenet", fold, "none"),
            metrics_a(acc, "none"),
            {
                "oulu_casia": eval_json("oulu_casia", "val", acc, 0.6),
                "jaffe": eval_json(
                    "jaffe", "whole", 0.2, 0.3, None if fold == 0 else x_preds("x", "y", 0)
                ),
            },
        )
    # A finished run whose evaluation never ran, a corrupt metrics.json, a failed run.
    write_run(root, "model-vgg16_cbam", cfg_a("vgg16_cbam", "imagenet", 0), metrics_a(0.5))
    write_run(root, "corrupt", cfg_a("vgg16", "glorot", 0), '{"status": "finished", "sco')
    write_run(root, "failed", cfg_a("vgg16", "glorot", 1), {"status": "failed", "reason": "boom"})
    (root / "not_a_run").mkdir()  # no config.yaml: not a run directory
    return root


@pytest.fixture(scope="module")
def collected_a(study_a: Path) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    return collect(study_a)


@pytest.fixture(scope="module")
def tables_a(collected_a: tuple[pd.DataFrame, list]) -> dict[str, pd.DataFrame]:
    return tables.study_a_table(collected_a[0])


# ------------------------------------------------------------------ collect


def test_collect_long_table_and_problems(study_a: Path, collected_a: tuple) -> None:
    df, problems = collected_a
    assert set(df["run"]) >= {"model-vgg16__init-imagenet__split.fold-0", "model-vgg16_cbam"}
    assert "corrupt" not in set(df["run"]) and "failed" not in set(df["run"])
    by_path = {Path(p["path"]).relative_to(study_a).as_posix(): p["problem"] for p in problems}
    assert "corrupt JSON" in by_path["corrupt/metrics.json"]
    assert "boom" in by_path["failed/metrics.json"]
    # Missing evaluations: the run's own dataset and what its peers were evaluated on.
    missing = "model-vgg16_cbam/eval/last__gradcam__label/{}.json"
    assert "missing evaluation" in by_path[missing.format("jaffe")]
    assert "missing evaluation" in by_path[missing.format("oulu_casia")]
    assert len(problems) == 4

    row = df[
        (df["run"] == "model-vgg16__init-imagenet__split.fold-2")
        & (df["dataset"] == "jaffe")
        & (df["metric"] == "dice")
    ]
    assert row["value"].tolist() == [0.45]
    assert row.iloc[0][["model", "init", "fold", "init_label", "role", "subset"]].tolist() == [
        "vgg16",
        "imagenet",
        2,
        "ImageNet",
        "cross",
        "whole",
    ]
    assert row.iloc[0]["source_of_number"] == "eval"
    metrics = set(df["metric"])
    for m in ("acc", "acc_macro", "acc_shared", "acc/anger", "dice", "iou", "dice/anger"):
        assert m in metrics
    for m in ("dice_region/mouth", "per_image/energy_inside", "baseline_gaussian/dice", "spearman"):
        assert m in metrics
    assert "acc_every_face" not in metrics  # null in the JSON: no row, not a 0
    leaky = df[df["run"].str.contains("group_by-none")]
    assert set(leaky["protocol"]) == {"leaky (group_by=none)"} and leaky["leaky"].all()

    w = wide(df)
    one = w[
        (w["run"] == "model-vgg16__init-imagenet__split.fold-0") & (w["dataset"] == "oulu_casia")
    ]
    assert set(one["source_of_number"]) == {"train", "eval"}
    assert one.set_index("source_of_number").loc["train", "size/train"] == N_TRAIN


def test_an_evaluation_of_an_earlier_training_is_left_out_and_named(tmp_path: Path) -> None:
    """A run retrained since it was evaluated (its metrics.json finished later than the JSON's
    stamp), or evaluated before the stamp existed: the evaluation is not reported, the report
    says which file and why."""
    ev = {"jaffe": eval_json("jaffe", "whole", 0.4, 0.3)}
    write_run(tmp_path, "fresh", cfg_a("vgg16", "glorot", 0), metrics_a(0.9), ev)
    old = write_run(tmp_path, "retrained", cfg_a("vgg16", "glorot", 1), metrics_a(0.9), ev)
    metrics = json.loads((old / "metrics.json").read_text())
    (old / "metrics.json").write_text(json.dumps(metrics | {"finished_at": "2026-02-02T00:00"}))
    unstamped = write_run(tmp_path, "unstamped", cfg_a("vgg16", "glorot", 2), metrics_a(0.9))
    (unstamped / "eval" / "last__gradcam__label").mkdir(parents=True)
    (unstamped / "eval" / "last__gradcam__label" / "jaffe.json").write_text(json.dumps(ev["jaffe"]))
    df, problems = collect(tmp_path)
    jaffe = df[df["dataset"] == "jaffe"]
    assert set(jaffe["run"]) == {"fresh"}
    stale = {Path(p["path"]).parts[-4]: p["problem"] for p in problems if "earlier" in p["problem"]}
    assert sorted(stale) == ["retrained", "unstamped"]
    assert all("run evaluate.py again" in text for text in stale.values())


def test_collect_empty_root(tmp_path: Path) -> None:
    df, problems = collect(tmp_path / "nothing")
    assert df.empty and problems == []
    assert tables.study_b_table(df).empty


# ------------------------------------------------------------------ study A tables


def test_study_a_accuracy_mean_sd_and_leaky_apart(tables_a: dict[str, pd.DataFrame]) -> None:
    t = tables_a
    acc = t["accuracy"].set_index(["protocol", "model", "init", "dataset"])
    for model, by_init in ACC_IN.items():
        for init, accs in by_init.items():
            for dataset, nums in (("oulu_casia", accs), ("jaffe", ACC_X[model][init])):
                r = acc.loc[(SUBJECT, model, init, dataset)]
                x = np.asarray(nums) * 100
                assert r["n"] == 4
                assert r["mean"] == pytest.approx(x.mean())
                assert r["sd"] == pytest.approx(x.std(ddof=1))
                half = sps.t.ppf(0.975, 3) * x.std(ddof=1) / 2
                assert r["ci_low"] == pytest.approx(x.mean() - half)
                assert "descriptive" in r["interval"]
    leaky = acc.loc[("leaky (group_by=none)", "vgg16", "imagenet", "oulu_casia")]
    assert leaky["n"] == 2 and leaky["mean"] == pytest.approx(98.0)
    # In-domain accuracy is robustness; cross-dataset accuracy the primary endpoint.
    tiers = t["accuracy"].set_index(["protocol", "model", "init", "dataset"])["tier"]
    assert tiers[(SUBJECT, "vgg16", "imagenet", "jaffe")] == "primary"
    assert tiers[(SUBJECT, "vgg16", "imagenet", "oulu_casia")] == "robustness"

    ov = t["overlap"].set_index(["protocol", "metric", "model", "init", "dataset"])
    d = np.asarray(DICE["vgg16_se"]["glorot"])
    r = ov.loc[(SUBJECT, "dice", "vgg16_se", "glorot", "jaffe")]
    assert (r["mean"], r["sd"]) == (pytest.approx(d.mean()), pytest.approx(d.std(ddof=1)))
    r = ov.loc[(SUBJECT, "iou", "vgg16_se", "glorot", "jaffe")]
    assert r["mean"] == pytest.approx(np.mean(d / (2 - d)))
    assert not t["overlap_per_class"].empty and not t["overlap_robustness"].empty


def test_study_a_comparisons_wilcoxon_nadeau_bengio_holm(
    tables_a: dict[str, pd.DataFrame],
) -> None:
    cmp = tables_a["comparisons"]
    cmp = cmp[cmp["protocol"] == SUBJECT]
    # ImageNet − scratch, paired by fold.
    assert set(zip(cmp["init_a"], cmp["init_b"], strict=True)) == {("ImageNet", "scratch")}
    key = ["metric", "model", "dataset", "test"]
    idx = cmp.set_index(key)
    wil, nb = "Wilcoxon signed-rank", "Nadeau–Bengio corrected resampled t"
    for model in ACC_IN:
        a, b = (np.asarray(ACC_IN[model][i]) * 100 for i in ("imagenet", "glorot"))
        r = idx.loc[("acc", model, "oulu_casia", wil)]
        ref = sps.wilcoxon(a, b)
        assert r["p"] == pytest.approx(ref.pvalue) and r["statistic"] == ref.statistic
        assert r["mean_diff"] == pytest.approx(np.mean(a - b))
        # Nadeau–Bengio by hand: t = mean(d) / sqrt((1/k + n_test/n_train) var(d, ddof=1)).
        d = a - b
        t = d.mean() / math.sqrt((1 / 4 + N_VAL / N_TRAIN) * d.var(ddof=1))
        r = idx.loc[("acc", model, "oulu_casia", nb)]
        assert r["statistic"] == pytest.approx(t)
        assert r["p"] == pytest.approx(2 * sps.t.sf(abs(t), df=3))
        # Cross-dataset: Wilcoxon only (no Nadeau–Bengio outside in-domain k-fold).
        x = (np.asarray(ACC_X[model][i]) * 100 for i in ("imagenet", "glorot"))
        assert idx.loc[("acc", model, "jaffe", wil)]["p"] == pytest.approx(sps.wilcoxon(*x).pvalue)
        assert ("acc", model, "jaffe", nb) not in idx.index
    # Holm within the primary Wilcoxon family: cross accuracy, DICE, IoU × 2 models = 6 tests.
    # (DICE on OULU-CASIA is the same in every fold: no non-zero difference, p undefined,
    # left out of the family size.)
    fam = cmp[(cmp["tier"] == "primary") & (cmp["test"] == wil)]
    undefined = fam[fam["p"].isna()]
    assert set(undefined["dataset"]) == {"oulu_casia"} and len(undefined) == 4
    assert all(s.startswith("p undefined") for s in undefined["result"])
    fam = fam[fam["p"].notna()]
    assert len(fam) == 6 and set(fam["family_size"]) == {6}
    p = fam["p"].to_numpy()
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate(np.minimum(1, (6 - np.arange(6)) * p[order]))
    expected = np.empty(6)
    expected[order] = adj
    assert fam["p_holm"].to_numpy() == pytest.approx(expected)
    assert all("p_Holm=" in s and wil in s for s in fam["result"])
    # In-domain accuracy is a separate (robustness) family.
    rob = cmp[(cmp["tier"] == "robustness") & (cmp["test"] == wil)]
    assert set(rob["dataset"]) == {"oulu_casia"} and set(rob["family_size"]) == {2}


def test_table1_totals_and_published_comparison(tables_a: dict[str, pd.DataFrame]) -> None:
    counts = tables.read_published(PUBLISHED / "arabian2022_table1_counts.csv")
    t1 = tables.table1(counts).set_index("class")
    assert t1.loc["Total", "oulu_casia original"] == 10379
    assert t1.loc["Total", "oulu_casia processed"] == 9299
    assert t1.loc["Total", "oulu_casia excluded %"] == pytest.approx(
        round((10379 - 9299) / 10379 * 100, 2)
    )
    assert math.isnan(t1.loc["surprise", "faces excluded %"])  # 0 of 0: not a rate
    assert t1.loc["Total", "faces processed"] == 1460  # the rows' sum, not the paper's 1542

    acc = tables_a["accuracy"]
    cmp = tables.published_comparison(acc, PUBLISHED / "arabian2022_table2_accuracy.csv")
    r = cmp.set_index(["protocol", "dataset", "model", "init"]).loc[
        (SUBJECT, "oulu_casia", "vgg16", "ImageNet")
    ]
    assert r["published acc (%)"] == 99.49
    assert r["difference (pp)"] == pytest.approx(np.mean(ACC_IN["vgg16"]["imagenet"]) * 100 - 99.49)
    # Synthetic datasets have no published counterpart.
    synthetic = acc.assign(dataset="synthetic_lab")
    assert (
        tables.published_comparison(synthetic, PUBLISHED / "arabian2022_table2_accuracy.csv")
        is None
    )


# ------------------------------------------------------------------ subject-clustered bootstrap


def test_predictions_one_row_per_image_and_missing_reported(study_a: Path) -> None:
    pred, problems = predictions(study_a)
    # Only the leaky fold-0 JAFFE JSON lacks predictions; corrupt/failed runs are collect's.
    assert [Path(p["path"]).relative_to(study_a).as_posix() for p in problems] == [
        "init-imagenet__split.fold-0__split.group_by-none/eval/last__gradcam__label/jaffe.json"
    ]
    assert "no per-image predictions" in problems[0]["problem"]
    one = pred[(pred["run"] == "model-vgg16__init-imagenet__split.fold-1")]
    jaffe = one[one["dataset"] == "jaffe"].sort_values("row")
    assert jaffe["correct"].tolist() == X_CORRECT[("vgg16", "imagenet")][1]
    assert jaffe["subject"].tolist() == ["KA", "KA", "KL", "KL", "KM", None]  # "nan": unknown
    r = jaffe.iloc[0]
    assert (r["model"], r["init"], r["init_label"], r["fold"]) == (
        "vgg16",
        "imagenet",
        "ImageNet",
        1,
    )
    assert (r["role"], r["subset"], r["protocol"], bool(r["leaky"])) == (
        "cross",
        "whole",
        SUBJECT,
        False,
    )
    # 16 subject-grouped runs × (6 JAFFE + 4 OULU-CASIA images) + leaky: 4 + 10.
    assert len(pred) == 16 * 10 + 14


def test_bootstrap_a_pooled_accuracy_and_ci(study_a: Path) -> None:
    pred, _ = predictions(study_a)
    t = tables.bootstrap_a(pred, n_boot=500, seed=0)
    assert set(t["dataset"]) == {"jaffe"}  # cross-dataset only: no in-domain val folds
    idx = t.set_index(["protocol", "model", "init", "dataset"])
    r = idx.loc[(SUBJECT, "vgg16", "imagenet", "jaffe")]
    assert r["acc"] == pytest.approx(100 * 15 / 24)  # pooled over the 4 folds' images
    assert (r["n_subjects"], r["n_images"], r["n_predictions"], r["n_runs"]) == (3, 6, 24, 4)
    assert r["ci_low"] < r["acc"] < r["ci_high"]
    # A resample's pooled accuracy lies between the lowest (KM 1/4) and highest (3/4) cluster.
    assert r["ci_low"] >= 25 and r["ci_high"] <= 75
    assert "1 image(s) without subject id, each its own cluster" in r["method"]
    assert "all 4 run(s) of the group" in r["method"]
    again = tables.bootstrap_a(pred, n_boot=500, seed=0)
    pd.testing.assert_frame_equal(t, again)  # deterministic for a seed
    # Every cluster right exactly half the time over the folds: the CI degenerates to 50 %.
    r = idx.loc[(SUBJECT, "vgg16_se", "glorot", "jaffe")]
    assert r["acc"] == r["ci_low"] == r["ci_high"] == pytest.approx(50.0)
    # Leaky runs apart; fold 0 had no predictions, so one run.
    leaky = idx.loc[("leaky (group_by=none)", "vgg16", "imagenet", "jaffe")]
    assert leaky["n_runs"] == 1 and leaky["acc"] == pytest.approx(100.0)
    assert list(t["protocol"]).index("leaky (group_by=none)") == len(t) - 1  # subject first
    assert tables.bootstrap_a(pred.iloc[:0]).empty


# BL source accuracy per seed; FC runs: (target, fraction, split seed) -> (source, target acc).
BL_SRC = {0: 0.70, 1: 0.66}
BL_TGT = {"jaffe": {0: 0.40, 1: 0.44}, "mug": {0: 0.50, 1: 0.46}}
FC = {
    ("jaffe", 0.5, 0): (0.60, 0.55),
    ("jaffe", 0.5, 1): (0.58, 0.57),
    ("jaffe", 1.0, 0): (0.55, 0.60),
    ("jaffe", 1.0, 1): (0.52, 0.66),
    ("mug", 0.5, 0): (0.65, 0.62),
    ("mug", 0.5, 1): (0.61, 0.60),
    ("mug", 1.0, 0): (0.62, 0.70),
    ("mug", 1.0, 1): (0.57, 0.74),
}
# Target test predictions of the FC runs: 4 images of 2 subjects per split seed (other
# subjects and images per split seed). jaffe 0.5: 5 / 8 right; others all 50 % per subject.
B_SUBJECTS = {0: ["T1", "T1", "T2", "T2"], 1: ["T3", "T3", "T4", "T4"]}
B_CORRECT = {("jaffe", 0.5, 0): [1, 1, 0, 1], ("jaffe", 0.5, 1): [1, 0, 0, 1]}
# Class-mean DICE by hand (study A's overlap on study B's runs): BL per seed per dataset; FC
# runs (target, fraction, split seed) -> (DICE on the source, DICE on the target). Pointing
# game = DICE + 0.3, eyes_brows DICE = DICE / 3, per-image energy inside = 0.9 · DICE.
BL_DICE = {
    0: {"fer2013": 0.50, "jaffe": 0.30, "mug": 0.40},
    1: {"fer2013": 0.46, "jaffe": 0.34, "mug": 0.36},
}
FC_DICE = {
    ("jaffe", 0.5, 0): (0.45, 0.38),
    ("jaffe", 0.5, 1): (0.40, 0.40),
    ("jaffe", 1.0, 0): (0.42, 0.44),
    ("jaffe", 1.0, 1): (0.38, 0.46),
    ("mug", 0.5, 0): (0.48, 0.42),
    ("mug", 0.5, 1): (0.44, 0.40),
    ("mug", 1.0, 0): (0.47, 0.45),
    ("mug", 1.0, 1): (0.41, 0.43),
}


def b_eval(dataset: str, acc: float, dice: float, **kw: Any) -> dict[str, Any]:
    """A study B evaluate.py JSON (test subset) with the overlap numbers derived from `dice`."""
    return eval_json(dataset, "test", acc, dice, pointing=dice + 0.3, eyes=dice / 3, **kw)


def cfg_b(seed: int, strategy: str, target: str | None, fraction: float, split_seed: int) -> dict:
    label = {"full": "RE", "fc": "FC"}[strategy]
    init = "glorot" if target is None else "checkpoint"
    cfg = {
        "name": "study_b",
        "seed": seed,
        "model": {"name": "small_vgg"},
        "init": {"name": init, "label": LABELS[init]},
        "split": {
            "name": "holdout",
            "seed": split_seed,
            "group_by": "subject",
            "target_fraction": fraction,
        },
        "strategy": {"name": strategy, "label": label},
        "data": {"name": "fer2013"},
        "eval": {"checkpoint": "best"},
    }
    return cfg | ({"target": {"name": target}} if target else {})


def part(name: str, group_by: str) -> dict[str, Any]:
    return {
        "name": name,
        "train": {"size": 100},
        "val": {"size": 10},
        "test": {"size": 10},
        "group_by": group_by,
        "leaky": group_by != "subject",
    }


@pytest.fixture
def study_b(tmp_path: Path) -> Path:
    root = tmp_path / "outputs" / "study_b"
    for seed, src in BL_SRC.items():
        write_run(
            root,
            f"source-fer2013__seed-{seed}",
            cfg_b(seed, "full", None, 1.0, seed),
            {
                "status": "finished",
                "scores": {"fer2013": scores(src, "test")},
                "data": {"scored_on": "test", "source": part("fer2013", "official")},
            },
            {t: b_eval(t, BL_TGT[t][seed], BL_DICE[seed][t]) for t in BL_TGT}
            | {"fer2013": b_eval("fer2013", src, BL_DICE[seed]["fer2013"])},
            eval_key="best__gradcam__label",
        )
    for (target, fraction, s), (src, tgt) in FC.items():
        write_run(
            root,
            f"data@target-{target}__split.seed-{s}__split.target_fraction-{fraction}__strategy-fc",
            cfg_b(s, "fc", target, fraction, s),
            {
                "status": "finished",
                "scores": {"fer2013": scores(src, "test"), target: scores(tgt, "test")},
                "data": {
                    "scored_on": "test",
                    "source": part("fer2013", "official"),  # no identities: not "leaky"
                    "target": part(target, "subject"),
                },
            },
            {
                target: b_eval(
                    target,
                    tgt,
                    FC_DICE[(target, fraction, s)][1],
                    predictions=preds(
                        B_SUBJECTS[s],
                        [0, 1, 0, 1],
                        B_CORRECT.get((target, fraction, s), [1, 0, 1, 0]),
                        first_row=4 * s,
                    ),
                ),
                "fer2013": b_eval("fer2013", src, FC_DICE[(target, fraction, s)][0]),
            },
            eval_key="best__gradcam__label",
        )
    return root


def test_study_b_memory_integrity(study_b: Path) -> None:
    df, _ = collect(study_b)
    t = tables.study_b_table(df)
    assert set(t["protocol"]) == {SUBJECT}
    assert list(t["strategy"]) == ["BL", "FC", "FC", "BL", "FC", "FC"]
    idx = t.set_index(["target", "strategy", "fraction"])
    for target in ("jaffe", "mug"):
        bl = idx.loc[(target, "BL", tables.MISSING)]
        assert bl["n"] == 2
        assert bl["source acc (%)"] == pytest.approx(np.mean(list(BL_SRC.values())) * 100)
        assert bl["target acc (%)"] == pytest.approx(np.mean(list(BL_TGT[target].values())) * 100)
        assert bl["drop mean ± SD"] == "reference"
        for fraction in (0.5, 1.0):
            r = idx.loc[(target, "FC", fraction)]
            src = np.array([FC[(target, fraction, s)][0] for s in (0, 1)]) * 100
            tgt = np.array([FC[(target, fraction, s)][1] for s in (0, 1)]) * 100
            # Drop paired with the BL run of the same seed (the checkpoint it started from).
            drop = np.array([BL_SRC[s] * 100 - src[s] for s in (0, 1)])
            assert r["n"] == 2
            assert r["source acc (%)"] == pytest.approx(src.mean())
            assert r["source SD"] == pytest.approx(src.std(ddof=1))
            assert r["target acc (%)"] == pytest.approx(tgt.mean())
            assert r["source drop vs BL (pp)"] == pytest.approx(drop.mean())
            assert r["drop SD"] == pytest.approx(drop.std(ddof=1))
    # e.g. jaffe, 0.5: BL 70 − 60 = 10 and 66 − 58 = 8 -> 9 pp.
    assert idx.loc[("jaffe", "FC", 0.5)]["source drop vs BL (pp)"] == pytest.approx(9.0)

    cmp = tables.published_comparison(t, PUBLISHED / "tannugi2019_memory_integrity.csv")
    r = cmp.set_index(["target", "evaluated_on", "strategy", "fraction"]).loc[
        ("jaffe", "target", "FC", "0.5")
    ]
    assert r["published acc (%)"] == 53.73
    assert r["difference (pp)"] == pytest.approx(56.0 - 53.73)
    boot = tables.bootstrap_b(predictions(study_b)[0], n_boot=500)
    assert list(boot["strategy"]) == ["BL", "FC", "FC", "BL", "FC", "FC"]
    b = boot.set_index(["target", "strategy", "fraction"])
    r = b.loc[("jaffe", "FC", 0.5)]
    assert r["acc"] == pytest.approx(100 * 5 / 8)  # pooled over both split seeds
    assert (r["n_subjects"], r["n_images"], r["n_runs"]) == (4, 8, 2)
    assert r["ci_low"] <= r["acc"] <= r["ci_high"]
    r = b.loc[("mug", "FC", 1.0)]
    assert r["acc"] == r["ci_low"] == r["ci_high"] == pytest.approx(50.0)
    bl = b.loc[("jaffe", "BL", tables.MISSING)]  # BL scored on each target by evaluate.py
    assert (bl["acc"], bl["n_runs"], bl["n_subjects"]) == (pytest.approx(50.0), 2, 2)

    synthetic = t.assign(target="synthetic_gray")
    assert (
        tables.published_comparison(synthetic, PUBLISHED / "tannugi2019_memory_integrity.csv")
        is None
    )


def test_study_b_overlap_by_strategy(study_b: Path) -> None:
    # Two more runs, by hand: an RE run of a seed without BL (Δ unpaired: a difference of
    # means) and a leaky FC run (its own protocol: no BL there, never pooled).
    re_cfg = cfg_b(2, "full", "jaffe", 1.0, 2)
    leaky_cfg = cfg_b(0, "fc", "jaffe", 0.5, 0)
    leaky_cfg["split"]["group_by"] = "none"
    for name, cfg, group_by, dice in (
        ("re__seed-2", re_cfg, "subject", 0.50),
        ("fc__leaky", leaky_cfg, "none", 0.90),
    ):
        write_run(
            study_b,
            name,
            cfg,
            {
                "status": "finished",
                "scores": {"fer2013": scores(0.6, "test"), "jaffe": scores(0.6, "test")},
                "data": {
                    "scored_on": "test",
                    "source": part("fer2013", "official"),
                    "target": part("jaffe", group_by),
                },
            },
            {"jaffe": b_eval("jaffe", 0.6, dice)},
            eval_key="best__gradcam__label",
        )
    df, _ = collect(study_b)
    t = tables.study_b_overlap(df)
    assert set(t["metric"]) == set(tables.B_OVERLAP_METRICS)
    idx = t.set_index(["protocol", "target", "strategy", "fraction", "evaluated_on", "metric"])
    assert idx.index.is_unique
    for target in ("jaffe", "mug"):
        for on, dataset in (("source", "fer2013"), ("target", target)):
            bl_dice = np.array([BL_DICE[s][dataset] for s in (0, 1)])
            bl = idx.loc[(SUBJECT, target, "BL", tables.MISSING, on, "dice")]
            assert (bl["dataset"], bl["n"], bl["Δ mean ± SD"]) == (dataset, 2, "reference")
            assert bl["mean"] == pytest.approx(bl_dice.mean())
            assert bl["sd"] == pytest.approx(bl_dice.std(ddof=1))
            for fraction in (0.5, 1.0):
                fc = np.array([FC_DICE[(target, fraction, s)][on == "target"] for s in (0, 1)])
                # Paired with the BL run of the same seed (its init checkpoint).
                delta = fc - bl_dice
                for metric, f in (
                    ("dice", lambda x: x),
                    ("iou", lambda x: x / (2 - x)),
                    ("per_image/energy_inside", lambda x: 0.9 * x),
                    ("per_image/pointing_game", lambda x: x + 0.3),
                    ("dice_region/eyes_brows", lambda x: x / 3),
                    ("dice_region/mouth", lambda x: x / 2),
                ):
                    r = idx.loc[(SUBJECT, target, "FC", fraction, on, metric)]
                    d = f(fc) - f(bl_dice)
                    assert r["n"] == 2 and r["subset"] == "test"
                    assert r["mean"] == pytest.approx(f(fc).mean()), (target, on, metric)
                    assert r["sd"] == pytest.approx(f(fc).std(ddof=1))
                    assert r["Δ vs BL"] == pytest.approx(d.mean()), (target, on, metric)
                    assert r["Δ SD"] == pytest.approx(d.std(ddof=1))
                    assert r["Δ n"] == 2 and r["Δ pairing"] == tables.PAIRED
                assert idx.loc[(SUBJECT, target, "FC", fraction, on, "dice")][
                    "Δ vs BL"
                ] == pytest.approx(delta.mean())
    # By hand: JAFFE target DICE, FC 50 %: (0.38 − 0.30, 0.40 − 0.34) -> Δ 0.07 ± 0.014.
    r = idx.loc[(SUBJECT, "jaffe", "FC", 0.5, "target", "dice")]
    assert r["Δ vs BL"] == pytest.approx(0.07)
    assert r["Δ mean ± SD"] == "0.070 ± 0.014"
    # Source DICE, same cell: (0.45 − 0.50, 0.40 − 0.46) -> −0.055.
    assert idx.loc[(SUBJECT, "jaffe", "FC", 0.5, "source", "dice")]["Δ vs BL"] == pytest.approx(
        -0.055
    )
    # RE, seed 2: no BL of its seed -> 0.50 − mean(0.30, 0.34) = 0.18, no SD; no source eval.
    r = idx.loc[(SUBJECT, "jaffe", "RE", 1.0, "target", "dice")]
    assert (r["n"], r["Δ pairing"]) == (1, tables.UNPAIRED)
    assert r["Δ vs BL"] == pytest.approx(0.18) and math.isnan(r["Δ SD"])
    assert (SUBJECT, "jaffe", "RE", 1.0, "source", "dice") not in idx.index
    # The leaky run is its own protocol: not pooled with FC 50 % and no BL to compare with.
    leaky = "leaky (group_by=none)"
    r = idx.loc[(leaky, "jaffe", "FC", 0.5, "target", "dice")]
    assert (r["n"], r["mean"], r["Δ pairing"]) == (1, pytest.approx(0.90), tables.NO_BL)
    assert math.isnan(r["Δ vs BL"])
    assert idx.loc[(SUBJECT, "jaffe", "FC", 0.5, "target", "dice")]["n"] == 2
    assert list(t["protocol"]).index(leaky) == len(t) - len(tables.B_OVERLAP_METRICS)
    # Reading order: per target and metric, the source rows, then strategies BL first.
    head = t[(t["protocol"] == SUBJECT) & (t["target"] == "jaffe") & (t["metric"] == "dice")]
    assert list(zip(head["evaluated_on"], head["strategy"], strict=True)) == [
        ("source", "BL"),
        ("source", "FC"),
        ("source", "FC"),
        ("target", "BL"),
        ("target", "FC"),
        ("target", "FC"),
        ("target", "RE"),
    ]
    assert tables.study_b_overlap(df[~df["metric"].isin(tables.B_OVERLAP_METRICS)]).empty


# ------------------------------------------------------------------ files


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def test_write_report_study_a(study_a: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "study_a"
    counts = tables.read_published(PUBLISHED / "arabian2022_table1_counts.csv")
    study = {
        "name": "study_a",
        "kind": "arabian2022",
        "primary_endpoints": ["acc@cross", "dice", "iou"],
        "published": {
            "table1": "arabian2022_table1_counts.csv",
            "table2": "arabian2022_table2_accuracy.csv",
        },
    }
    res = write_report(study, study_a, out, counts=counts)
    stems = ("accuracy", "accuracy_bootstrap", "overlap", "comparisons", "table1_counts")
    for stem in (*stems, "published_table2"):
        for ext in ("md", "tex", "csv"):
            assert _nonempty(out / "tables" / f"{stem}.{ext}"), (stem, ext)
    for stem in ("accuracy", "dice_per_class", "iou_per_class"):
        for ext in ("png", "pdf"):
            assert _nonempty(out / "figures" / f"{stem}.{ext}")
    for name in ("runs_long.csv", "problems.csv", "README.md"):
        assert _nonempty(out / name)
    # collect's 4 problems + the JAFFE JSON without per-image predictions.
    assert res["problems"] == 5 and len(pd.read_csv(out / "problems.csv")) == 5
    assert str(out / "tables" / "accuracy.md") in res["tables"]
    assert "leaky (group_by=none)" in res["headline"] and "± " in res["headline"]
    readme = (out / "README.md").read_text()
    assert "primary endpoint" in readme and "robustness" in readme
    assert "`tables/accuracy.{md,tex,csv}`" in readme
    assert "`figures/dice_per_class.{png,pdf}`" in readme
    boot_line = next(ln for ln in readme.splitlines() if "tables/accuracy_bootstrap." in ln)
    assert "primary endpoint (CI of cross-dataset accuracy)" in boot_line
    assert "Not computed" not in readme
    assert "1 evaluation JSON(s) without usable per-image predictions" in readme
    tex = (out / "tables" / "accuracy.tex").read_text()
    assert r"\begin{tabular}" in tex and r"oulu\_casia" in tex and r"$\pm$" in tex
    md = (out / "tables" / "accuracy.md").read_text().splitlines()
    assert md[0].startswith("| ") and set(md[1]) <= set("|:-")


def test_write_report_study_b_and_wandb_disabled(
    study_b: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "reports" / "study_b"
    study = {"name": "study_b", "kind": "tannugi2019", "primary_endpoints": ["acc"]}
    res = write_report(study, study_b, out)
    assert _nonempty(out / "tables" / "memory_integrity.csv")
    for ext in ("md", "tex", "csv"):
        assert _nonempty(out / "tables" / f"target_accuracy_bootstrap.{ext}")
    readme = (out / "README.md").read_text()
    assert "primary endpoint (CI of target accuracy)" in readme
    assert "Not computed" not in readme and "without usable per-image" not in readme
    assert _nonempty(out / "figures" / "memory_integrity.png")
    for ext in ("md", "tex", "csv"):
        assert _nonempty(out / "tables" / f"overlap_by_strategy.{ext}")
    csv = pd.read_csv(out / "tables" / "overlap_by_strategy.csv")
    r = csv[
        (csv["target"] == "jaffe")
        & (csv["strategy"] == "FC")
        & (csv["fraction"] == "0.5")
        & (csv["evaluated_on"] == "target")
        & (csv["metric"] == "dice")
    ]
    assert len(r) == 1 and r["Δ vs BL"].iloc[0] == pytest.approx(0.07)
    for ext in ("png", "pdf"):
        assert _nonempty(out / "figures" / f"overlap_by_strategy.{ext}")
    line = next(ln for ln in readme.splitlines() if "tables/overlap_by_strategy." in ln)
    assert "robustness (cross-study)" in line and "where the model looks" in line
    assert "`tables/overlap_by_strategy.{md,tex,csv}`" in line
    fig_line = next(ln for ln in readme.splitlines() if "figures/overlap_by_strategy." in ln)
    assert "robustness (cross-study)" in fig_line
    assert "reference" in res["headline"]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert log_wandb(out, "study_b") is None
    with pytest.raises(ValueError, match="kind"):
        write_report({"name": "x", "kind": "other"}, study_b, out)
