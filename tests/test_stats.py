"""Statistics over seeds against values computed independently of scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lifelong_kd import stats

# Two-sided 97.5% quantiles of Student's t from printed tables (e.g. Abramowitz & Stegun,
# table 26.10), by degrees of freedom.
T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105, 9: 2.262157163}


def t_sf_numeric(t: float, df: int) -> float:
    """P(T_df >= t) for t >= 0, by Simpson's rule on the t density: independent of scipy."""
    x = np.linspace(0.0, t, 20001)
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    pdf = c * (1 + x**2 / df) ** (-(df + 1) / 2)
    h = x[1] - x[0]
    area = h / 3 * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum())
    return 0.5 - area


def test_t_quantiles_match_the_tables() -> None:
    for df, q in T975.items():
        assert stats.t_quantile(0.975, df) == pytest.approx(q, abs=1e-8)
        assert t_sf_numeric(q, df) == pytest.approx(0.025, abs=1e-9)


def test_describe_by_hand() -> None:
    d = stats.describe([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; sem = s / 2
    std = math.sqrt(5 / 3)
    assert d["mean"] == 2.5
    assert d["std"] == pytest.approx(std)
    assert d["sem"] == pytest.approx(std / 2)
    assert d["ci_low"] == pytest.approx(2.5 - T975[3] * std / 2)
    assert d["ci_high"] == pytest.approx(2.5 + T975[3] * std / 2)
    assert d["n"] == 4


def test_describe_drops_nan_and_handles_one_or_no_value() -> None:
    assert stats.describe([1.0, math.nan, 3.0])["n"] == 2
    assert stats.describe([1.0, math.nan, 3.0])["ci_high"] == pytest.approx(2 + T975[1])
    one = stats.describe([0.7])
    assert one["mean"] == 0.7 and one["n"] == 1
    assert all(math.isnan(one[k]) for k in ("std", "sem", "ci_low", "ci_high"))
    none = stats.describe([math.nan])
    assert none["n"] == 0 and math.isnan(none["mean"])


def test_paired_t_test_by_hand() -> None:
    baseline = [0.80, 0.70, 0.75]
    values = [0.85, 0.78, 0.77]
    # d = (0.05, 0.08, 0.02): mean 0.05, s = sqrt((0 + 0.03^2 + 0.03^2) / 2) = 0.03,
    # t = 0.05 / (0.03 / sqrt 3) = 5 / sqrt 3; with 2 degrees of freedom the t distribution has
    # P(|T| >= t) = 1 - t / sqrt(2 + t^2).
    res = stats.paired(values, baseline)
    t = 5 / math.sqrt(3)
    assert res["difference"] == pytest.approx(0.05)
    assert res["t"] == pytest.approx(t)
    assert res["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-10)
    assert res["p"] == pytest.approx(0.10197, abs=1e-5)
    half = T975[2] * 0.03 / math.sqrt(3)
    assert res["ci_low"] == pytest.approx(0.05 - half)
    assert res["ci_high"] == pytest.approx(0.05 + half)
    assert res["n"] == 3


def test_paired_t_test_against_numeric_integration_and_scipy() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.9, 10)
    vals = base + rng.normal(0.02, 0.03, 10)
    res = stats.paired(vals, base)
    d = vals - base
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert res["t"] == pytest.approx(t)
    assert res["p"] == pytest.approx(2 * t_sf_numeric(abs(t), 9), abs=1e-9)
    half = T975[9] * d.std(ddof=1) / math.sqrt(10)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    from scipy import stats as sps

    assert res["p"] == pytest.approx(sps.ttest_rel(vals, base).pvalue)


def test_paired_edge_cases() -> None:
    # the same difference on every seed: no spread, t infinite, p = 0
    same = stats.paired([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert same["p"] == 0.0 and same["difference"] == pytest.approx(0.1)
    # no difference at all
    zero = stats.paired([0.5, 0.6], [0.5, 0.6])
    assert zero["p"] == 1.0 and zero["difference"] == 0.0
    # a pair with a NaN on either side is dropped
    dropped = stats.paired([0.9, math.nan, 0.7, 0.8], [0.8, 0.5, math.nan, 0.6])
    assert dropped["n"] == 2 and dropped["difference"] == pytest.approx(0.15)
    # one pair: a difference but no interval and no p
    single = stats.paired([0.9], [0.8])
    assert single["n"] == 1 and math.isnan(single["p"]) and math.isnan(single["ci_low"])
    with pytest.raises(ValueError, match="length"):
        stats.paired([0.1, 0.2], [0.1])
