"""Statistics over seeds: means with Student's t confidence intervals, paired comparisons.

Every function drops NaN values (a metric undefined for a run, such as backward transfer
with one task) before computing. scipy is imported inside the functions that need the t
distribution, so that importing this module stays cheap.

References: Student (W. S. Gosset) 1908, "The probable error of a mean", Biometrika 6(1);
any statistics text for the paired t-test, e.g. Wasserman 2004, "All of Statistics",
section 10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The confidence level of every interval the report shows.
LEVEL = 0.95


def _clean(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[~np.isnan(a)]


def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t distribution with ``df`` degrees of freedom (scipy)."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its two-sided ``level`` confidence interval.

    mean +- t_{(1+level)/2, n-1} * s / sqrt(n), with s the sample standard deviation
    (ddof = 1) and t the quantile of Student's t distribution with n - 1 degrees of freedom.
    NaNs are dropped; with no value everything is nan; with one value the interval is
    (nan, nan), as a spread cannot be estimated from one seed.
    """
    a = _clean(values)
    n = len(a)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(a.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = t_quantile((1 + level) / 2, n - 1) * float(a.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def describe(values: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """mean, std, sem, ci_low, ci_high and n over the non-NaN values.

    std = sqrt( sum_i (x_i - mean)^2 / (n - 1) ) (the sample standard deviation),
    sem = std / sqrt(n) (the standard error of the mean), [ci_low, ci_high] the Student's t
    interval of :func:`mean_ci`. std, sem and the interval are nan when n < 2.
    """
    a = _clean(values)
    n = len(a)
    mean, lo, hi = mean_ci(a, level)
    std = float(a.std(ddof=1)) if n > 1 else math.nan
    sem = std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "sem": sem, "ci_low": lo, "ci_high": hi, "n": n}


def paired(
    values: Sequence[float], baseline: Sequence[float], level: float = LEVEL
) -> dict[str, float]:
    """Paired comparison of two equally long samples, matched by position (the same seeds).

    With d_i = values_i - baseline_i over the n pairs where neither side is NaN:

    - difference = mean(d), and its Student's t confidence interval (see :func:`mean_ci`);
    - the paired t-test of H0: E[d] = 0: t = mean(d) / (s_d / sqrt(n)), s_d the sample
      standard deviation of d, and the two-sided p-value p = 2 * P(T_{n-1} >= |t|).

    When every d_i is the same, s_d = 0: p is 1 if they are all 0 (up to 1e-12) and 0 otherwise (t is
    infinite). p and the interval are nan when n < 2. Returns difference, ci_low, ci_high,
    t, p and n.
    """
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    n = len(d)
    mean, lo, hi = mean_ci(d, level)
    t = p = math.nan
    if n > 1:
        s = float(d.std(ddof=1))
        if s <= 1e-12 * max(1.0, abs(mean)):
            zero = abs(mean) <= 1e-12
            t = 0.0 if zero else math.copysign(math.inf, mean)
            p = 1.0 if zero else 0.0
        else:
            from scipy import stats

            t = mean / (s / math.sqrt(n))
            p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"difference": mean, "ci_low": lo, "ci_high": hi, "t": t, "p": p, "n": n}
