"""Statistics over seeds: means with Student's t confidence intervals, paired comparisons.

Intervals of bounded quantities (an accuracy lies in [0, 1], a difference of accuracies in
[-1, 1]) are clipped to their bounds (:func:`clip_interval`): with few seeds the Student's t
interval of a mean near a bound would otherwise run past it (e.g. [76.25, 108.15] %).

Every function drops NaN values (a metric undefined for a run, such as backward transfer
with one task) before computing. scipy is imported inside the functions that need the t
distribution, so that importing this module stays cheap.

References: Student (W. S. Gosset) 1908, "The probable error of a mean", Biometrika 6(1);
any statistics text for the paired t-test, e.g. Wasserman 2004, "All of Statistics",
section 10.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

#: The confidence level of every interval the report shows.
LEVEL = 0.95


def _clean(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[~np.isnan(a)]


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t distribution with ``df`` degrees of freedom: scipy's
    ``special.stdtrit(df, q)``, which ``scipy.stats.t.ppf`` calls (scipy/stats/
    _continuous_distns.py, ``t_gen._ppf``), without importing ``scipy.stats`` (seconds of a
    report's start-up). Cached: a plot's band asks for the same few quantiles at every point."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


#: A closed range [low, high] that a quantity cannot leave (None: unbounded).
Bounds = tuple[float, float] | None


def clip_interval(low: float, high: float, bounds: Bounds) -> tuple[float, float]:
    """The interval [low, high] intersected with ``bounds`` = [a, b]:

        [max(low, a), min(high, b)]

    The clipped interval covers the true mean exactly when the unclipped one does (the true
    mean of a quantity in [a, b] lies in [a, b]), so clipping keeps the confidence level; it
    only removes values the quantity cannot take. nan stays nan; ``bounds = None`` changes
    nothing.
    """
    if bounds is None:
        return low, high
    a, b = bounds
    if a > b:
        raise ValueError(f"bounds must be (low, high) with low <= high, got {bounds}")
    return (low if math.isnan(low) else min(max(low, a), b),
            high if math.isnan(high) else max(min(high, b), a))


def difference_bounds(bounds: Bounds) -> Bounds:
    """The range of x - y for x and y both in [a, b]: [a - b, b - a] (None stays None)."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


def mean_ci(
    values: Sequence[float], level: float = LEVEL, bounds: Bounds = None
) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its two-sided ``level`` confidence interval.

    mean +- t_{(1+level)/2, n-1} * s / sqrt(n), with s the sample standard deviation
    (ddof = 1) and t the quantile of Student's t distribution with n - 1 degrees of freedom,
    clipped to ``bounds`` when given (see :func:`clip_interval`).
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
    return (mean, *clip_interval(mean - half, mean + half, bounds))


def describe(
    values: Sequence[float], level: float = LEVEL, bounds: Bounds = None
) -> dict[str, float]:
    """mean, std, sem, ci_low, ci_high and n over the non-NaN values.

    std = sqrt( sum_i (x_i - mean)^2 / (n - 1) ) (the sample standard deviation),
    sem = std / sqrt(n) (the standard error of the mean), [ci_low, ci_high] the Student's t
    interval of :func:`mean_ci`, clipped to ``bounds``. std, sem and the interval are nan
    when n < 2.
    """
    a = _clean(values)
    n = len(a)
    mean, lo, hi = mean_ci(a, level, bounds)
    std = float(a.std(ddof=1)) if n > 1 else math.nan
    sem = std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "sem": sem, "ci_low": lo, "ci_high": hi, "n": n}


def paired(
    values: Sequence[float], baseline: Sequence[float], level: float = LEVEL,
    bounds: Bounds = None,
) -> dict[str, float]:
    """Paired comparison of two equally long samples, matched by position (the same seeds).

    With d_i = values_i - baseline_i over the n pairs where neither side is NaN:

    - difference = mean(d), and its Student's t confidence interval (see :func:`mean_ci`),
      clipped to ``bounds``, the range of a difference (for two quantities in [a, b]:
      :func:`difference_bounds`, [a - b, b - a]);
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
    mean, lo, hi = mean_ci(d, level, bounds)
    t = p = math.nan
    if n > 1:
        s = float(d.std(ddof=1))
        if s <= 1e-12 * max(1.0, abs(mean)):
            zero = abs(mean) <= 1e-12
            t = 0.0 if zero else math.copysign(math.inf, mean)
            p = 1.0 if zero else 0.0
        else:
            from scipy.special import stdtr  # stats.t.sf(x, df) is stdtr(df, -x)

            t = mean / (s / math.sqrt(n))
            p = float(2 * stdtr(n - 1, -abs(t)))
    return {"difference": mean, "ci_low": lo, "ci_high": hi, "t": t, "p": p, "n": n}
