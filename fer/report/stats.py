"""Statistics for the report: summaries, paired tests, Holm correction, clustered bootstrap.

Pure functions on numbers (numpy/scipy only), so a report can be recomputed offline from run
files. Conventions (DESIGN.md, "Statistics"): SD is always ddof=1; a NaN is skipped and
counted, never averaged in; fold-based intervals are descriptive because folds share data;
every p-value travels with the name of the test that produced it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

ArrayLike = Sequence[float] | np.ndarray

WILCOXON = "Wilcoxon signed-rank"
NADEAU_BENGIO = "Nadeau–Bengio corrected resampled t"
DESCRIPTIVE_T = "descriptive t (folds are dependent)"


def _as_float(values: ArrayLike) -> np.ndarray:
    # None -> NaN through the float cast, so missing entries are counted like NaNs.
    return np.asarray(values, dtype=float).ravel()


def mean_sd(values: ArrayLike, level: float = 0.95) -> dict[str, Any]:
    """Mean ± SD (ddof=1) of the non-NaN values, with a descriptive t-interval (df = n-1).

    The interval is labelled descriptive: fold/seed results are not independent samples, so
    it is not a confidence interval for anything in the strict sense.
    """
    arr = _as_float(values)
    finite = arr[~np.isnan(arr)]
    n = int(finite.size)
    mean = float(finite.mean()) if n else math.nan
    sd = float(finite.std(ddof=1)) if n >= 2 else math.nan
    if n >= 2:
        half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        lo = hi = math.nan
    return {
        "mean": mean,
        "sd": sd,
        "n": n,
        "n_nan": int(arr.size - n),
        "ci_low": lo,
        "ci_high": hi,
        "level": level,
        "interval": DESCRIPTIVE_T,
    }


def _wilcoxon_method(d: np.ndarray) -> tuple[Any, str]:
    """Mirror scipy's ``method="auto"`` choice, passed explicitly so the label is true.

    scipy: n > 50 → asymptotic; no zeros and no tied |d| → exact; otherwise n ≤ 13 →
    permutation test over all 2^n sign flips (exhaustive, hence deterministic); else asymptotic.
    """
    n = d.size
    nonzero = np.abs(d[d != 0])
    has_ties = np.unique(nonzero).size < nonzero.size
    has_zeros = bool(np.any(d == 0))
    if n > 50:
        return "asymptotic", "normal approximation with continuity correction"
    if not (has_ties or has_zeros):
        return "exact", "exact"
    if n <= 13:
        return stats.PermutationMethod(), "exact permutation (all sign flips)"
    return "asymptotic", "normal approximation with continuity correction"


def wilcoxon_paired(a: ArrayLike, b: ArrayLike) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test on the paired differences a - b.

    Pairs with a NaN on either side are dropped and counted (``n_nan``). scipy drops zero
    differences (zero_method="wilcox"), so only the m non-zero differences carry information
    and the smallest attainable two-sided p is 2 / 2**m; it is reported with m and the number
    of zero differences (``ties``) so a "non-significant" result from 5 folds is read as such.
    """
    x, y = _as_float(a), _as_float(b)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    # Exact equality, as scipy uses: a difference of 1e-17 counts as non-zero there too.
    ties = int(np.count_nonzero(d == 0))
    m = int(d.size - ties)
    out: dict[str, Any] = {
        "test": WILCOXON,
        "statistic": math.nan,
        "p": math.nan,
        "m": m,
        "ties": ties,
        "n_pairs": int(d.size),
        "n_nan": int(keep.size - keep.sum()),
        "p_min_attainable": 2.0 / 2.0**m if m else math.nan,
        "method": "",
    }
    if m == 0:
        out["reason"] = "no non-zero paired differences (all pairs tied or missing)"
        return out
    method, label = _wilcoxon_method(d)
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided", method=method)
    out.update(statistic=float(res.statistic), p=float(res.pvalue), method=label)
    return out


def nadeau_bengio(d: ArrayLike, n_train: int, n_test: int) -> dict[str, Any]:
    """Nadeau–Bengio corrected resampled t-test on k per-fold differences d.

    t = mean(d) / sqrt((1/k + n_test/n_train) · var(d, ddof=1)), df = k - 1, two-sided p.
    The n_test/n_train term inflates the variance for the overlap between training sets,
    which the plain paired t-test ignores. Undefined (t and p NaN, with a reason) when
    var(d) = 0 or fewer than two folds. Only for in-domain k-fold comparisons.
    """
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    arr = _as_float(d)
    finite = arr[~np.isnan(arr)]
    k = int(finite.size)
    mean = float(finite.mean()) if k else math.nan
    var = float(finite.var(ddof=1)) if k >= 2 else math.nan
    correction = (1.0 / k + n_test / n_train) if k else math.nan
    out: dict[str, Any] = {
        "test": NADEAU_BENGIO,
        "t": math.nan,
        "p": math.nan,
        "df": k - 1,
        "k": k,
        "n_nan": int(arr.size - k),
        "mean": mean,
        "var": var,
        "correction": correction,
        "n_train": n_train,
        "n_test": n_test,
    }
    if k < 2:
        out["reason"] = f"needs at least 2 folds, got {k}"
    elif var == 0.0:
        out["reason"] = "var(d) = 0: every fold gives the same difference, t is undefined"
    else:
        t = mean / math.sqrt(correction * var)
        out.update(t=t, p=float(2.0 * stats.t.sf(abs(t), df=k - 1)))
    return out


def holm(
    pvalues: Mapping[str, float] | Sequence[float] | np.ndarray,
) -> dict[str, float] | list[float]:
    """Holm–Bonferroni step-down adjusted p-values, same keys/order as given.

    adj_(i) = max_{j ≤ i} min(1, (m - j + 1) · p_(j)) over the sorted p-values, so adjusted
    values are monotone and capped at 1. NaN p-values (undefined tests) pass through as NaN and
    are not counted in the family size m. Returns a dict for a mapping, else a list.
    """
    if isinstance(pvalues, Mapping):
        keys = list(pvalues)
        arr = np.array([pvalues[k] for k in keys], dtype=float)
    else:
        keys = None
        arr = _as_float(pvalues)
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    adj = np.full(arr.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(arr))
    m = idx.size
    if m:
        # Stable sort so equal p-values keep input order (their adjusted values match anyway).
        order = idx[np.argsort(arr[idx], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * arr[order])
        adj[order] = np.maximum.accumulate(scaled)
    values = [float(v) for v in adj]
    return dict(zip(keys, values, strict=True)) if keys is not None else values


def cluster_bootstrap(
    correct: ArrayLike,
    clusters: Sequence[Any] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Subject-clustered bootstrap percentile CI of accuracy.

    Subjects are resampled with replacement and accuracy is pooled (correct / images) over
    the resampled subjects' images. Images of one subject are not independent, and every
    fold scores the same few test subjects, so this interval reflects subject sampling
    variability that fold SDs miss.
    """
    c = _as_float(correct)
    g = np.asarray(clusters).ravel()
    if c.size != g.size:
        raise ValueError(f"correct and clusters differ in length: {c.size} vs {g.size}")
    if c.size == 0:
        raise ValueError("no images to bootstrap")
    if not np.all((c == 0) | (c == 1)):
        raise ValueError("correct must hold only 0/1 (no NaN)")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    _, inv = np.unique(g, return_inverse=True)
    n_clusters = int(inv.max()) + 1
    # Per-subject sufficient statistics: a resample only needs counts, not the images.
    hits = np.bincount(inv, weights=c, minlength=n_clusters)
    sizes = np.bincount(inv, minlength=n_clusters).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    boot = hits[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return {
        "acc": float(hits.sum() / sizes.sum()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "level": level,
        "n_clusters": n_clusters,
        "n_images": int(c.size),
        "n_boot": int(n_boot),
        "seed": seed,
        "method": "subject-clustered bootstrap, percentile interval",
    }


def _fmt(x: float) -> str:
    return f"{x:.2g}"


def format_p(result: Mapping[str, Any], adjusted: float | None = None) -> str:
    """One-line p-value with the test named beside it.

    e.g. "p=0.031 (Wilcoxon signed-rank, m=8, ties=2, min attainable p=0.0078)". Pass a
    Holm-adjusted value as ``adjusted`` to print "p_Holm=…" with the raw p inside.
    """
    test = result.get("test", "unnamed test")
    p = result.get("p", math.nan)
    details = [test]
    if test == WILCOXON:
        details += [f"m={result['m']}", f"ties={result['ties']}"]
        if not math.isnan(result.get("p_min_attainable", math.nan)):
            details.append(f"min attainable p={_fmt(result['p_min_attainable'])}")
    elif test == NADEAU_BENGIO:
        if not math.isnan(result.get("t", math.nan)):
            details.append(f"t={result['t']:.3g}")
        details.append(f"df={result['df']}")
    if p is None or math.isnan(p):
        reason = result.get("reason", "undefined")
        return f"p undefined ({', '.join([*details, reason])})"
    if adjusted is not None:
        return f"p_Holm={_fmt(adjusted)} (raw p={_fmt(p)}; {', '.join(details)})"
    return f"p={_fmt(p)} ({', '.join(details)})"
