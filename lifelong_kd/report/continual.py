"""The section "Continual evaluation" of report.md: for the variants whose runs evaluated
every task during training (``train.eval_every > 0``), the metrics of De Lange et al. 2023
(:func:`lifelong_kd.metrics.continual_metrics`), means over seeds with their 95% intervals."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..aggregate import CONTINUAL, Run, continual_values
from ..metrics import CONTINUAL_DEFINITIONS, CONTINUAL_HIGHER_IS_BETTER, CONTINUAL_METRICS
from .cells import _cells, _metric_cell
from .markdown import markdown_text

#: The continual metrics' column titles in report.md.
CONTINUAL_TITLES = {"min_acc": "min-ACC", "wc_acc": "WC-ACC", "wf_10": "WF10", "wf_100": "WF100",
                    "wp_10": "WP10", "wp_100": "WP100", "gap_depth": "gap depth",
                    "gap_length": "gap length (steps)"}


def _steps_cell(row: dict[str, Any] | None, n_runs: int) -> str:
    """``mean ± h`` in optimiser steps (one decimal; ``[low, high]`` when the interval was
    clipped at 0), ``n/a`` without a value."""
    if row is None or math.isnan(row["mean"]):
        return "n/a"
    mean, low, high = row["mean"], row["ci_low"], row["ci_high"]
    text = f"{mean:.1f}"
    if not (math.isnan(low) or math.isnan(high)):
        text += (f" ± {high - mean:.1f}" if math.isclose(high - mean, mean - low, abs_tol=1e-9)
                 else f" [{low:.1f}, {high:.1f}]")
    return text + (f" (n={row['n']})" if row["n"] != n_runs else "")


def _continual_section(summary: list[dict[str, Any]], runs: Sequence[Run]) -> list[str]:
    """The "Continual evaluation" section: per variant whose runs record continual-evaluation
    metrics (matrix ``continual`` of the summary), each metric's mean over seeds with its
    95% interval, and what they are. Empty when no run records them."""
    cells = _cells(summary)
    labels = {run.label for run in runs if continual_values(run.result)}
    if not labels:
        return []
    with_curves = Counter(run.label for run in runs if run.label in labels)  # runs per variant
    every = sorted({markdown_text(run.result.get("config", {}).get("train", {})
                                  .get("eval_every")) for run in runs if run.label in with_curves})
    subset = sorted({markdown_text(run.result.get("config", {}).get("train", {})
                                   .get("eval_subset")) for run in runs if run.label in with_curves})
    arrow = {m: "" if m == "gap_length" else " ↑" if m in CONTINUAL_HIGHER_IS_BETTER else " ↓"
             for m in CONTINUAL_METRICS}
    lines = [
        "## Continual evaluation (%, mean ± 95% CI over seeds)",
        "",
        "The accuracy matrix looks only at task boundaries; these runs also evaluated every "
        f"task seen so far every {' / '.join(every)} optimiser steps of training "
        f"(`train.eval_every`), on a fixed seeded subset of {' / '.join(subset)} test examples "
        "per task (`train.eval_subset`; the curves are in `curves.csv` beside each "
        "result.json). From those curves, the metrics of De Lange, van de Ven & Tuytelaars "
        "2023 (\"Continual evaluation for lifelong learning: identifying the stability gap\", "
        "ICLR), as their code (Mattdl/ContinualEvaluation) computes them, and the depth and "
        "length of the stability gap, the drop of earlier tasks' accuracy after a task "
        "switch. a_j: the accuracy on task j. Intervals as in the table above, clipped to "
        "[0, 100] % (gap length: at least 0 steps); n/a where a metric is undefined (e.g. "
        "min-ACC with one task).",
        "",
        "| strategy | runs | " + " | ".join(f"{CONTINUAL_TITLES[m]}{arrow[m]}"
                                           for m in CONTINUAL_METRICS) + " |",
        "|---|---:|" + "---:|" * len(CONTINUAL_METRICS),
    ]
    for s, n in with_curves.items():
        shown = [(_steps_cell if m == "gap_length" else _metric_cell)(
            cells.get((s, CONTINUAL, m)), n) for m in CONTINUAL_METRICS]
        lines.append(f"| {markdown_text(s)} | {n} | " + " | ".join(shown) + " |")
    lines += ["", *[f"- {CONTINUAL_TITLES[m]} (`{m}`): {CONTINUAL_DEFINITIONS[m]}"
                    for m in CONTINUAL_METRICS], ""]
    return lines
