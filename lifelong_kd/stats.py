"""Statistics over seeds: means with Student's t confidence intervals, paired comparisons."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _clean(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[~np.isnan(a)]


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its two-sided ``level`` confidence interval,
    mean +- t_{(1+level)/2, n-1} * s / sqrt(n) (Student's t). NaNs are dropped; with one
    value the interval is (nan, nan)."""
    from scipy import stats

    a = _clean(values)
    n = len(a)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(a.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * a.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def describe(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """mean, std (ddof = 1), sem = std / sqrt(n), ci_low, ci_high, n over the non-NaN values."""
    a = _clean(values)
    n = len(a)
    mean, lo, hi = mean_ci(a, level)
    std = float(a.std(ddof=1)) if n > 1 else math.nan
    sem = std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "sem": sem, "ci_low": lo, "ci_high": hi, "n": n}


def paired(
    values: Sequence[float], baseline: Sequence[float], level: float = 0.95
) -> dict[str, float]:
    """Paired comparison of two equally long samples (same seeds, in the same order).

    d_i = values_i - baseline_i; returns the mean difference, its Student's t confidence
    interval, and the two-sided p-value of the paired t-test (H0: mean d = 0), with n.
    Pairs with a NaN on either side are dropped.
    """
    from scipy import stats

    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    mean, lo, hi = mean_ci(d, level)
    p = math.nan
    if len(d) > 1:
        if np.allclose(d, d[0]):
            p = 1.0 if d[0] == 0 else 0.0
        else:
            p = float(stats.ttest_rel(a[keep], b[keep]).pvalue)
    return {"difference": mean, "ci_low": lo, "ci_high": hi, "p": p, "n": int(len(d))}
