"""The comparison report: report.md and the CSV files of a comparison, rendered from stored
run results (result.json dicts). The numbers come from :mod:`lifelong_kd.aggregate`
(statistics over seeds), the figures from :func:`lifelong_kd.plots.comparison_plots`.

``compare`` calls :func:`write_comparison` after training; ``lifelong-kd report DIR...``
reads the run folders (:func:`lifelong_kd.results.find_results`) and calls the same
function, so both give the same files. Files written into the output folder:

- ``runs.csv``      one row per finished run, matrix kind and metric (tidy long format), with
                    the teacher's metrics (matrix ``teacher``, ``teacher_task_aware``) and the
                    run's costs (matrix ``costs``) where result.json records them
- ``summary.csv``   variant x matrix kind x metric: mean, std, sem, ci_low, ci_high, n
- ``paired.csv``    variant x matrix kind x metric: difference vs naive (same seeds), its 95%
                    confidence interval, the paired t-test's p, n (header only without naive)
- ``matrices.csv``  run x matrix kind x row x column: accuracy
- ``report.md``     what was run, the tables, the failed runs and the plots (PNG and SVG)

The tables' ``strategy`` column names a run's variant (see :mod:`lifelong_kd.aggregate`):
its strategy, and the settings that tell it apart when a strategy has several variants.

Matrix kinds: a class-il run has two accuracy matrices, ``task_agnostic`` (the prediction is
over every class seen) and ``task_aware`` (restricted to the task's classes); every metric
is reported on both. A task-il run's matrix is ``task_aware``, a domain-il run's is
``task_agnostic``.

When the runs record their models' costs (result.json's ``costs.model``), report.md has a
"Costs" table (parameters, FLOPs, bytes, latency, memory, training time per variant), a
table "Accuracy kept per parameter" (each variant's final average accuracy and parameters
against its reference's: its own teacher, or the largest variant of its strategy) and the
plots of accuracy against parameters and against FLOPs; variants whose runs record a
teacher of their own (``compress``, ``kd``) get a "Teacher" table, the teacher's accuracy
and forgetting beside the model's; runs trained with continual evaluation
(``train.eval_every > 0``: result.json's ``continual``) get a "Continual evaluation" table
(min-ACC, WC-ACC, windowed forgetting and plasticity, the stability gap's depth and length;
De Lange et al. 2023, :func:`lifelong_kd.metrics.continual_metrics`), whose rows are also in
the CSV files under matrix ``continual``. Results without those sections get none of them.

Runs whose status is not ``finished`` (interrupted, diverged) are listed as failures and
left out of every table and plot. Intransigence is absent (not zero) without a finished
incremental ``joint`` run of the same seed; report.md says why. Metrics that mean nothing
for a run (``joint`` with ``mode = final``: every row but the last is the untrained model's)
are nan (empty in the CSV files) and its plots show only its last row
(:func:`lifelong_kd.metrics.meaningful_metrics`); report.md states the reason once.
Confidence intervals are clipped to the range of their metric
(:data:`lifelong_kd.metrics.BOUNDS`, :func:`lifelong_kd.stats.clip_interval`).

Every text report.md takes from a result.json, a preset or a failure (names, descriptions,
settings, versions, error messages) is escaped where it enters it (:func:`markdown_text`,
:func:`markdown_code`): it shows as written and adds no tag, block, cell, emphasis or link.

The package: :mod:`.markdown` (the escaping of every text report.md takes from outside:
:func:`markdown_text`, :func:`markdown_code`), :mod:`.cells` (a table cell from a summary row:
percent, intervals), :mod:`.what_was_run` (the section "What was run": settings, strategy
options, teachers, data and software), :mod:`.accuracy` (the metrics tables per matrix kind
with their notes, the teacher's table, the paired comparison), :mod:`.continual` (the section
"Continual evaluation"), :mod:`.costs` (the sections "Costs" and "Accuracy kept per
parameter") and :mod:`.render` (report.md as text, :func:`render_report`: the sections in
order, the failures, the plots, the files). Here, :func:`write_comparison`, which writes the
CSV files, the plots and report.md, and the names the rest of the package and its tests import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..aggregate import (
    MATRICES_COLUMNS,
    PAIRED_COLUMNS,
    RUNS_COLUMNS,
    SUMMARY_COLUMNS,
    failure_list,
    matrix_rows,
    metric_rows,
    paired_rows,
    summary_rows,
)
from ..plots import comparison_plots
from ..results import is_finished, write_text
from .accuracy import INTERVAL_METHOD, MATRIX_TITLES
from .continual import CONTINUAL_TITLES
from .costs import kept_per_parameter
from .markdown import markdown_code, markdown_text
from .render import render_report
from .what_was_run import _what_was_run

__all__ = [
    "CONTINUAL_TITLES",
    "INTERVAL_METHOD",
    "MATRIX_TITLES",
    "_what_was_run",
    "comparison_plots",
    "kept_per_parameter",
    "markdown_code",
    "markdown_text",
    "render_report",
    "write_comparison",
]


_FLOAT_FORMAT = "%.10g"


def _csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    write_text(path, frame.to_csv(index=False, float_format=_FLOAT_FORMAT))


def write_comparison(
    results: list[dict[str, Any]],
    out_dir: Path,
    failures: list[dict[str, Any]] | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Write runs.csv, summary.csv, paired.csv, matrices.csv, the plots and report.md into
    ``out_dir``; return the paths written. ``failures`` are runs that did not finish (or did
    not run), as ``{"strategy", "seed", "error"}``; unfinished results are added to them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finished = [r for r in results if is_finished(r)]
    rows = metric_rows(finished)
    summary = summary_rows(rows)
    pairs = paired_rows(rows)
    files = {name: out_dir / name for name in ("runs.csv", "summary.csv", "paired.csv",
                                               "matrices.csv", "report.md")}
    _csv(files["runs.csv"], rows, RUNS_COLUMNS)
    _csv(files["summary.csv"], summary, SUMMARY_COLUMNS)
    _csv(files["paired.csv"], pairs, PAIRED_COLUMNS)
    _csv(files["matrices.csv"], matrix_rows(finished), MATRICES_COLUMNS)
    plots = comparison_plots(finished, out_dir, formats)
    text = render_report(finished, summary, pairs, failure_list(results, failures), plots)
    write_text(files["report.md"], text)
    return [*files.values(), *plots]
