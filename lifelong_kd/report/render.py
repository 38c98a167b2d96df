"""report.md as text (:func:`render_report`): its title, "What was run", the metrics and the
sections that follow them in order, the runs that did not finish, the plots with their
captions and the list of the CSV files."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..aggregate import BASELINE, JOINT, Run, finished_runs, has_model_costs, variants_of
from ..metrics import DEFINITIONS, HIGHER_IS_BETTER, REPORT_METRICS
from ..results import TASK_AWARE, matrix_kinds
from .accuracy import (
    INTERVAL_METHOD,
    MATRIX_TITLES,
    _intransigence_absent,
    _last_row_only_note,
    _metrics_table,
    _paired_section,
    _teacher_section,
)
from .continual import _continual_section
from .costs import _costs_section, _kept_section
from .markdown import markdown_code, markdown_text
from .what_was_run import _what_was_run


def render_report(
    results: Sequence[dict[str, Any]],
    summary: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    plots: Sequence[Path],
) -> str:
    """report.md as text (``results``: the finished runs): what was run and the metrics (or a
    line saying no run finished), the runs that did not finish, the plots, the files."""
    runs = finished_runs(results)
    if not runs:
        lines = ["# Comparison report", "", "No run finished, so there is nothing to compare.", ""]
    else:
        lines = [f"# Comparison report: {markdown_text(runs[0].result['benchmark'])}", ""]
        lines += _what_was_run([run.result for run in runs])
        lines += _comparison_sections(runs, summary, pairs)
    return "\n".join(lines + _failures_section(failures) + _plots_section(plots) + _FILES_SECTION)


def _comparison_sections(runs: list[Run], summary: list[dict[str, Any]],
                         pairs: list[dict[str, Any]]) -> list[str]:
    """The metrics tables (one per matrix kind) and their definitions, then the teacher's,
    the continual evaluation's, the costs' and the paired comparisons' sections."""
    variants = variants_of(runs)
    n_runs = {s: sum(run.label == s for run in runs) for s in variants}
    unranked = {run.label for run in runs if run.strategy == JOINT}
    kinds = list(dict.fromkeys(k for run in runs for k in matrix_kinds(run.result)))
    lines = [
        "## Metrics (%, mean ± 95% CI over seeds)",
        "",
        "Each cell: the mean over seeds ± the half-width of its 95% confidence interval "
        "(Student's t with n - 1 degrees of freedom; none with one seed), in percent or "
        "percentage points; an interval that reached the range the metric can take is "
        "clipped to it and shown as [low, high]. ↑: higher is better, ↓: lower is "
        "better. **Bold**: the best "
        f"mean per metric{' (`joint`, the upper bound, is not ranked)' if unranked else ''}. "
        "`runs`: finished runs; a cell's own (n=...) when a metric is undefined for some.",
        "",
    ]
    if not any(r["metric"] == "intransigence" for r in summary):
        lines += [_intransigence_absent(runs), ""]
    lines += _last_row_only_note(runs)
    for kind in kinds:
        if len(kinds) > 1:
            lines += [f"### {MATRIX_TITLES[kind]}", ""]
        lines += _metrics_table(summary, kind, variants, n_runs, unranked) + [""]
    lines += ["Definitions (R[i][j]: accuracy on task j after training task i, T tasks; "
              "three different quantities are called \"forgetting\" in the literature, "
              "each has its own column here):", ""]
    shown = [m for m in REPORT_METRICS if any(r["metric"] == m for r in summary)]
    lines += [f"- `{m}` ({'↑' if m in HIGHER_IS_BETTER else '↓'}): {DEFINITIONS[m]}"
              for m in shown]
    lines += [f"- 95% confidence intervals: {INTERVAL_METHOD}", ""]
    lines += _teacher_section(summary, runs, kinds, n_runs)
    lines += _continual_section(summary, runs)
    if has_model_costs(run.result for run in runs):
        lines += _costs_section(summary, variants, n_runs)
        lines += _kept_section(summary, runs, kinds[0])
    return lines + _paired_section(pairs, runs, kinds)


def _failures_section(failures: list[dict[str, Any]]) -> list[str]:
    lines = ["## Runs that did not finish", ""]
    if failures:
        lines += ["Left out of every table and plot:", ""]
        lines += [f"- {markdown_code(f.get('strategy'))} seed {markdown_text(f.get('seed'))}: "
                  f"{markdown_text(f.get('error'))}" for f in failures]
    else:
        lines.append("None: every run finished.")
    return [*lines, ""]


def _plots_section(plots: Sequence[Path]) -> list[str]:
    """Each plot with its caption, its PNG shown and its other formats linked."""
    if not plots:
        return []
    lines = ["## Plots", ""]
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in plots:
        by_stem[p.stem].append(p)
    for stem, files in by_stem.items():
        base = stem.removesuffix(f"_{TASK_AWARE}")
        caption = _PLOT_CAPTIONS.get(base, stem)
        if stem != base:
            caption += " Task-aware matrix."
        png = [f for f in files if f.suffix == ".png"]
        others = ", ".join(f"[{f.suffix[1:].upper()}]({f.name})" for f in files
                           if f.suffix != ".png")
        lines.append(f"{caption}" + (f" ({others})" if others else ""))
        lines.append("")
        if png:
            lines += [f"![{stem}]({png[0].name})", ""]
    return lines


_FILES_SECTION = [
    "## Files",
    "",
    "- `summary.csv`: strategy x matrix x metric: mean, std, sem, ci_low, ci_high, n",
    f"- `paired.csv`: strategy x matrix x metric: difference vs `{BASELINE}`, ci_low, "
    "ci_high, p, n",
    "- `runs.csv`: one row per run, matrix and metric (tidy long format); matrix "
    "`teacher` (`teacher_task_aware`): the teacher's metrics, matrix `costs`: the run's "
    "costs, matrix `continual`: its continual-evaluation metrics, where recorded",
    "- `matrices.csv`: run, matrix, row, column, accuracy",
    "",
]


_PLOT_CAPTIONS = {
    "accuracy_matrices": "Accuracy matrices, mean over seeds, on one colour scale: row i is "
                         "after training task i, column j the task evaluated.",
    "average_accuracy": "Average accuracy over the tasks seen so far after each task; line: "
                        "mean over seeds, band: 95% confidence interval.",
    "task_accuracy": "Each task's accuracy as the stream goes on, from when it is learnt; the "
                     "strategies overlaid, bands: 95% confidence interval over seeds.",
    "forgetting": "Forgetting per task (Chaudhry et al. 2018: best earlier accuracy minus "
                  "final), mean over seeds with 95% confidence intervals.",
    "curves": "Continual evaluation (train.eval_every): each earlier task's accuracy on its test "
              "subset against the optimiser step, across task boundaries (dashed: task "
              "switches); line: mean over seeds, band: 95% confidence interval.",
    "stability_gap": "Depth of the stability gap (mean over task switches of the earlier "
                     "tasks' drop after the switch; De Lange et al. 2023), per strategy: each "
                     "seed hollow, the mean with its 95% confidence interval.",
    "accuracy_vs_parameters": "Final average accuracy against the model's parameters (log "
                              "scale), one point per variant: mean over seeds with its 95% "
                              "confidence interval; hollow points: the variants' own "
                              "teachers; dashed steps and rings: the Pareto front (no other "
                              "model as small or smaller is as accurate or more).",
    "accuracy_vs_flops": "Final average accuracy against the model's forward FLOPs per "
                         "example (log scale), as the plot against parameters.",
}
