"""Report statistics: hand-worked numbers and scipy as the reference."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import stats

from fer.report.stats import (
    cluster_bootstrap,
    format_p,
    holm,
    mean_sd,
    nadeau_bengio,
    wilcoxon_paired,
)

# ---------------------------------------------------------------- mean ± SD


def test_mean_sd_hand_numbers_and_nan_skipped() -> None:
    # values 1, 2, 4, 7: mean 3.5; squared deviations 6.25 + 2.25 + 0.25 + 12.25 = 21,
    # var = 21 / 3 = 7, sd = sqrt(7). The NaN is skipped and counted, not averaged in.
    r = mean_sd([1.0, 2.0, float("nan"), 4.0, 7.0])
    assert r["mean"] == pytest.approx(3.5)
    assert r["sd"] == pytest.approx(math.sqrt(7.0))
    assert r["sd"] == pytest.approx(np.std([1, 2, 4, 7], ddof=1))
    assert (r["n"], r["n_nan"]) == (4, 1)
    # t_{0.975, 3} = 3.182446305; half-width = 3.182446305 * sqrt(7) / 2 = 4.209890...
    half = 3.182446305284 * math.sqrt(7.0) / 2.0
    assert r["ci_low"] == pytest.approx(3.5 - half)
    assert r["ci_high"] == pytest.approx(3.5 + half)
    assert "descriptive" in r["interval"] and "dependent" in r["interval"]


def test_mean_sd_small_n() -> None:
    one = mean_sd([0.5, float("nan")])
    assert one["mean"] == 0.5 and math.isnan(one["sd"]) and math.isnan(one["ci_low"])
    assert (one["n"], one["n_nan"]) == (1, 1)
    none = mean_sd([float("nan")])
    assert none["n"] == 0 and math.isnan(none["mean"])


# ---------------------------------------------------------------- Wilcoxon

# Integer scores so differences are exact in floating point (no accidental ties/zeros).
A = [12.0, 10.0, 9.0, 15.0, 6.0, 7.0, 13.0, 8.0, 11.0, 5.0, 4.0]
B = [11.0, 10.0, 7.0, 12.0, 6.0, 3.0, 8.0, 2.0, 4.0, float("nan"), 1.0]
# differences (NaN pair dropped): 1, 0, 2, 3, 0, 4, 5, 6, 7, 3 -> m=8 non-zero, 2 zeros


def test_wilcoxon_matches_scipy_with_zero_differences() -> None:
    r = wilcoxon_paired(A, B)
    keep = ~(np.isnan(A) | np.isnan(B))
    ref = stats.wilcoxon(np.asarray(A)[keep], np.asarray(B)[keep])
    assert r["statistic"] == ref.statistic
    assert r["p"] == ref.pvalue
    assert (r["m"], r["ties"], r["n_pairs"], r["n_nan"]) == (8, 2, 10, 1)
    assert r["p_min_attainable"] == 2 / 2**8 == 0.0078125
    assert r["test"] == "Wilcoxon signed-rank"
    # All 8 non-zero differences are positive: the most extreme outcome, so p hits the floor.
    assert r["p"] == pytest.approx(r["p_min_attainable"])


@pytest.mark.parametrize(
    "a, b",
    [
        # no zeros, no tied |d|: scipy's exact distribution
        ([5.0, 7.0, 3.0, 9.0, 4.0, 8.0], [4.0, 9.0, 6.0, 5.0, 9.0, 2.0]),
        # n > 13 with tied |d|: scipy's normal approximation
        (list(range(20)), [x - (1 if x % 3 else -2) for x in range(20)]),
    ],
)
def test_wilcoxon_matches_scipy_other_branches(a: list[float], b: list[float]) -> None:
    r = wilcoxon_paired(a, b)
    ref = stats.wilcoxon(a, b)
    assert r["statistic"] == ref.statistic
    assert r["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert r["p_min_attainable"] == 2 / 2 ** r["m"]


def test_wilcoxon_all_ties_is_undefined() -> None:
    r = wilcoxon_paired([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert (r["m"], r["ties"]) == (0, 3)
    assert math.isnan(r["p"]) and "no non-zero" in r["reason"]
    assert format_p(r).startswith("p undefined (Wilcoxon signed-rank, m=0, ties=3")


def test_wilcoxon_length_mismatch() -> None:
    with pytest.raises(ValueError, match="length"):
        wilcoxon_paired([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- Nadeau–Bengio


def test_nadeau_bengio_hand_worked() -> None:
    # d = [0.01, 0.02, 0.03, 0.00, 0.04], k = 5, n_train = 80, n_test = 20
    # mean = 0.10 / 5 = 0.02
    # deviations -0.01, 0, 0.01, -0.02, 0.02 -> squares sum 0.001 -> var = 0.001 / 4 = 2.5e-4
    # correction = 1/5 + 20/80 = 0.45
    # t = 0.02 / sqrt(0.45 * 2.5e-4) = 0.02 / sqrt(1.125e-4) = 0.02 / 0.0106066 = 1.885618
    # p = 2 * P(T_4 > 1.885618) = 0.132419
    r = nadeau_bengio([0.01, 0.02, 0.03, 0.00, 0.04], n_train=80, n_test=20)
    assert r["mean"] == pytest.approx(0.02)
    assert r["var"] == pytest.approx(2.5e-4)
    assert r["correction"] == pytest.approx(0.45)
    assert r["t"] == pytest.approx(1.885618, abs=1e-6)
    assert r["df"] == 4
    assert r["p"] == pytest.approx(0.132419, abs=1e-6)
    assert r["test"] == "Nadeau–Bengio corrected resampled t"
    # the plain paired t-test (no n_test/n_train term) is more optimistic
    assert r["p"] > stats.ttest_1samp([0.01, 0.02, 0.03, 0.00, 0.04], 0.0).pvalue
    assert format_p(r) == "p=0.13 (Nadeau–Bengio corrected resampled t, t=1.89, df=4)"


def test_nadeau_bengio_zero_variance_is_undefined() -> None:
    r = nadeau_bengio([0.02] * 5, n_train=80, n_test=20)
    assert math.isnan(r["t"]) and math.isnan(r["p"])
    assert "var(d) = 0" in r["reason"]
    assert "undefined" in format_p(r)


def test_nadeau_bengio_too_few_folds() -> None:
    r = nadeau_bengio([0.02], n_train=80, n_test=20)
    assert math.isnan(r["p"]) and "at least 2" in r["reason"]


# ---------------------------------------------------------------- Holm


def test_holm_hand_worked() -> None:
    # m = 4 (the NaN is not counted). Sorted: d 0.005, a 0.01, c 0.03, b 0.04
    #   d: 4 * 0.005 = 0.02
    #   a: 3 * 0.01  = 0.03
    #   c: 2 * 0.03  = 0.06
    #   b: 1 * 0.04  = 0.04 -> raised to 0.06 (step-down is monotone)
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": float("nan")})
    assert list(adj) == ["a", "b", "c", "d", "e"]
    assert adj["a"] == pytest.approx(0.03)
    assert adj["b"] == pytest.approx(0.06)
    assert adj["c"] == pytest.approx(0.06)
    assert adj["d"] == pytest.approx(0.02)
    assert math.isnan(adj["e"])


def test_holm_sequence_cap_and_monotone() -> None:
    # 2 * 0.5 = 1.0, 1 * 0.6 = 0.6 -> raised to 1.0; 3-term: capped at 1
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm(np.array([0.4, 0.001, 0.9])) == pytest.approx([0.8, 0.003, 0.9])
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])


# ---------------------------------------------------------------- clustered bootstrap


def _subject_data(accs: list[float], per: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Each subject gets exactly round(acc * per) correct images out of `per`."""
    correct = np.concatenate([np.arange(per) < round(a * per) for a in accs]).astype(float)
    clusters = np.repeat(np.arange(len(accs)), per)
    return correct, clusters


def test_cluster_bootstrap_deterministic_and_contains_estimate() -> None:
    rng = np.random.default_rng(1)
    correct, clusters = _subject_data(list(rng.uniform(0.4, 0.9, size=20)), per=30)
    r1 = cluster_bootstrap(correct, clusters, n_boot=500, seed=3)
    r2 = cluster_bootstrap(correct, clusters, n_boot=500, seed=3)
    r3 = cluster_bootstrap(correct, clusters, n_boot=500, seed=4)
    assert r1 == r2
    assert (r1["ci_low"], r1["ci_high"]) != (r3["ci_low"], r3["ci_high"])
    assert r1["acc"] == pytest.approx(correct.mean())
    assert r1["ci_low"] < r1["acc"] < r1["ci_high"]
    assert (r1["n_clusters"], r1["n_boot"], r1["n_images"]) == (20, 500, 600)
    assert "clustered" in r1["method"]


def test_cluster_bootstrap_identical_subjects_degenerate() -> None:
    # every subject 7/10 correct (string ids, unequal sizes via 14/20): every resample is 0.7
    correct = np.array([1] * 7 + [0] * 3 + [1] * 14 + [0] * 6 + [1] * 7 + [0] * 3, dtype=float)
    clusters = np.array(["s1"] * 10 + ["s2"] * 20 + ["s3"] * 10)
    r = cluster_bootstrap(correct, clusters, n_boot=200)
    assert r["acc"] == r["ci_low"] == r["ci_high"] == pytest.approx(0.7)


def test_cluster_ci_wider_than_image_level_when_subject_dependent() -> None:
    # half the subjects at 0.9, half at 0.3: images within a subject are far from independent
    correct, clusters = _subject_data([0.9, 0.3] * 25, per=100)
    clustered = cluster_bootstrap(correct, clusters, n_boot=2000, seed=0)
    # each image its own cluster = the ordinary image-level bootstrap
    image = cluster_bootstrap(correct, np.arange(correct.size), n_boot=2000, seed=0)
    assert clustered["acc"] == image["acc"] == pytest.approx(0.6)
    width_c = clustered["ci_high"] - clustered["ci_low"]
    width_i = image["ci_high"] - image["ci_low"]
    assert width_c > 3 * width_i


def test_cluster_bootstrap_fast() -> None:
    rng = np.random.default_rng(0)
    correct, clusters = _subject_data(list(rng.uniform(0.3, 0.9, size=50)), per=100)
    t0 = time.perf_counter()
    cluster_bootstrap(correct, clusters, n_boot=2000, seed=0)
    assert time.perf_counter() - t0 < 1.0


def test_cluster_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="0/1"):
        cluster_bootstrap([1.0, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="length"):
        cluster_bootstrap([1.0, 0.0], [0])
    with pytest.raises(ValueError):
        cluster_bootstrap([], [])


# ---------------------------------------------------------------- format_p


def test_format_p_names_the_test() -> None:
    r = wilcoxon_paired(A, B)
    assert format_p(r) == "p=0.0078 (Wilcoxon signed-rank, m=8, ties=2, min attainable p=0.0078)"
    assert format_p(r, adjusted=0.031) == (
        "p_Holm=0.031 (raw p=0.0078; Wilcoxon signed-rank, m=8, ties=2, min attainable p=0.0078)"
    )
