"""A cell of report.md's tables from the summary (:func:`lifelong_kd.aggregate.summary_rows`):
the summary as a lookup by (variant, matrix, metric), a mean, a value in percent and a mean
with its 95% interval (``± h``, or ``[low, high]`` when it was clipped)."""

from __future__ import annotations

import math
from typing import Any


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def _interval_text(mean: float, low: float, high: float) -> str:
    """`` ± h`` for a symmetric interval, `` [low, high]`` for one clipped at a bound, ``""``
    without one (percent)."""
    if math.isnan(low) or math.isnan(high):
        return ""
    if math.isclose(high - mean, mean - low, abs_tol=1e-9):
        return f" ± {100 * (high - mean):.2f}"
    return f" [{_pct(low)}, {_pct(high)}]"


def _cells(summary: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(variant, matrix, metric) -> its summary row."""
    return {(r["strategy"], r["matrix"], r["metric"]): r for r in summary}


def _mean(cells: dict[tuple[str, str, str], dict[str, Any]], strategy: str, matrix: str,
          metric: str) -> float:
    """The mean of a summary row (nan when there is none)."""
    row = cells.get((strategy, matrix, metric))
    return math.nan if row is None else float(row["mean"])


def _metric_cell(row: dict[str, Any] | None, n_runs: int) -> str:
    """``mean ± h`` in percent (see :func:`_interval_text`), ``n/a`` without a value."""
    if row is None or math.isnan(row["mean"]):
        return "n/a"
    text = _pct(row["mean"]) + _interval_text(row["mean"], row["ci_low"], row["ci_high"])
    return text + (f" (n={row['n']})" if row["n"] != n_runs else "")
