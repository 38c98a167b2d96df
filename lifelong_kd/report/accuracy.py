"""The accuracy metrics' sections of report.md: one metrics table per matrix kind (each
variant's mean ± 95% interval, the best in bold) with the notes that go with it (why
intransigence is absent, which variants have only their last row, how the intervals are
made), the "Teacher" table (a teacher's accuracy and forgetting beside its model's) and the
"Paired comparison" with ``naive`` (differences over the same seeds, their interval and p)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..aggregate import BASELINE, JOINT, Run, teacher_matrix, variants_of
from ..metrics import HIGHER_IS_BETTER, LAST_ROW_METRICS, REPORT_METRICS
from ..results import TASK_AGNOSTIC, TASK_AWARE, last_row_only, strategy_config
from .cells import _cells, _interval_text, _metric_cell, _pct
from .markdown import markdown_code, markdown_text

MATRIX_TITLES = {
    TASK_AGNOSTIC: "task-agnostic matrix (no task identity at test time)",
    TASK_AWARE: "task-aware matrix (prediction restricted to the task's own classes)",
}


def _best(summary: list[dict[str, Any]], kind: str, metric: str, unranked: set[str]) -> set[str]:
    """Variants (``unranked`` excluded: joint's) with the best mean for ``metric`` (ties all
    marked)."""
    cands = [row for row in summary if row["matrix"] == kind and row["metric"] == metric
             and row["strategy"] not in unranked and not math.isnan(row["mean"])]
    if len(cands) < 2:
        return set()
    pick = max if metric in HIGHER_IS_BETTER else min
    best = pick(row["mean"] for row in cands)
    return {row["strategy"] for row in cands if math.isclose(row["mean"], best, abs_tol=1e-12)}


def _metrics_table(summary: list[dict[str, Any]], kind: str, strategies: list[str],
                   n_runs: dict[str, int], unranked: set[str]) -> list[str]:
    metrics = [m for m in REPORT_METRICS
               if any(r["matrix"] == kind and r["metric"] == m for r in summary)]
    cell = {(r["strategy"], r["metric"]): r for r in summary if r["matrix"] == kind}
    arrow = {m: "↑" if m in HIGHER_IS_BETTER else "↓" for m in metrics}
    lines = ["| strategy | runs | " + " | ".join(f"{m} {arrow[m]}" for m in metrics) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    best = {m: _best(summary, kind, m, unranked) for m in metrics}
    for s in strategies:
        cells = []
        for m in metrics:
            row = cell.get((s, m))
            if row is None or math.isnan(row["mean"]):
                cells.append("n/a")
                continue
            text = _pct(row["mean"]) + _interval_text(row["mean"], row["ci_low"],
                                                      row["ci_high"])
            if row["n"] != n_runs[s]:
                text += f" (n={row['n']})"
            cells.append(f"**{text}**" if s in best[m] else text)
        lines.append(f"| {markdown_text(s)} | {n_runs[s]} | " + " | ".join(cells) + " |")
    return lines


#: How the report's intervals are made, as report.md states it.
INTERVAL_METHOD = (
    "mean ± t_{0.975, n-1} s / sqrt(n) (Student's t, s the standard deviation over seeds), "
    "clipped to the range the metric can take: [0, 100] % for accuracies "
    "(average_accuracy, average_incremental_accuracy, learning_accuracy), [-100, 100] "
    "points for the differences of accuracies (bwt, forgetting, forgetting_after_learning, "
    "fwt, intransigence); a paired difference's to the range of a difference of two such "
    "values ([-100, 100] and [-200, 200] points). The true "
    "mean lies in that range, so the clipped interval covers it exactly when the Student's "
    "t one does: clipping keeps the 95% coverage and removes only values the metric cannot "
    "take. The plots' bands are clipped the same way."
)


def _intransigence_absent(runs: Sequence[Run]) -> str:
    """Why report.md has no intransigence column (the real reason)."""
    joints = [run.result for run in runs if run.strategy == JOINT]
    variants = variants_of([run for run in runs if run.strategy == JOINT])
    if len(variants) > 1:
        return (f"`intransigence` is absent: its a*_j comes from one `{JOINT}` run per seed, "
                f"and there are {len(variants)} `{JOINT}` variants here "
                f"({', '.join(map(markdown_code, variants))}); report one of them.")
    if joints and all(strategy_config(r).get("mode") == "final" for r in joints):
        return (f"`intransigence` is absent: its a*_j is the accuracy on task j of joint "
                f"training on tasks 0..j (Chaudhry et al. 2018, eq. 4), and the `{JOINT}` "
                "runs here use `strategy.mode = final`: trained once on all tasks, they "
                "give the accuracy of a model trained on tasks 0..T-1, not on 0..j, so they "
                f"are not used. Run `{JOINT}` with `strategy.mode = incremental` (the "
                "default) and the same seeds to get it.")
    if joints:
        return (f"`intransigence` is absent: no run has a finished `{JOINT}` run "
                "(`strategy.mode = incremental`) with the same seed and as many tasks.")
    return (f"`intransigence` is absent: it needs a finished `{JOINT}` run "
            "(`strategy.mode = incremental`, the default) with the same seed in the "
            "comparison; its R[j][j] is a*_j, the accuracy on task j of joint training on "
            "tasks 0..j.")


def _last_row_only_note(runs: Sequence[Run]) -> list[str]:
    """The one statement of why some variants' metrics are n/a: those whose strategy trains
    nothing before the last task under a setting it declares (result.json's
    ``last_row_only``: ``joint`` with ``strategy.mode = final``), each named with the
    setting."""
    lines = []
    for label in variants_of(runs):
        run = next(run.result for run in runs if run.label == label)
        setting = last_row_only(run) if run["n_tasks"] > 1 else None
        if setting:
            reason = (f"{markdown_code(run['strategy'])} with {markdown_code(setting)} trains "
                      "only at the last task, so rows 0..T-2 of its matrix are the untrained "
                      "model's accuracies")
            kept = ", ".join(f"`{m}`" for m in LAST_ROW_METRICS)
            lines += [f"{reason}. Only what its last row gives ({kept}) is reported; "
                      "its other metrics mean nothing and are n/a here, empty in the CSV "
                      "files and null in its result.json, and its plots show only its last "
                      "row (no forgetting bars).", ""]
    return lines


def _teacher_section(summary: list[dict[str, Any]], runs: Sequence[Run], kinds: list[str],
                     n_runs: dict[str, int]) -> list[str]:
    """The "Teacher" section: for the variants whose runs record a teacher of their own
    (matrix ``teacher`` in the summary), the teacher's final average accuracy and forgetting
    beside the model's, per matrix kind. Empty when no variant has one."""
    cells = _cells(summary)
    scenario = str(runs[0].result.get("scenario"))
    with_teacher = [s for s in variants_of(runs)
                    if any(k[0] == s and k[1].startswith("teacher") for k in cells)]
    if not with_teacher:
        return []
    lines = ["## Teacher (%, mean ± 95% CI over seeds)", "",
             "The strategy's own teacher, evaluated after every task as the model is (the "
             "model is the student, the one deployed): `acc` is the final average accuracy "
             "(`average_accuracy`), `forgetting` Chaudhry et al.'s (see the definitions "
             "above), each the model's beside its teacher's.", ""]
    for kind in kinds:
        if len(kinds) > 1:
            lines += [f"### {MATRIX_TITLES[kind]}", ""]
        teacher = teacher_matrix(kind, scenario)
        lines += ["| strategy | runs | acc ↑ (model) | acc ↑ (teacher) | forgetting ↓ (model) "
                  "| forgetting ↓ (teacher) |", "|---|---:|---:|---:|---:|---:|"]
        for s in with_teacher:
            shown = [_metric_cell(cells.get((s, matrix, metric)), n_runs[s])
                     for metric in ("average_accuracy", "forgetting")
                     for matrix in (kind, teacher)]
            lines.append(f"| {markdown_text(s)} | {n_runs[s]} | " + " | ".join(shown) + " |")
        lines.append("")
    return lines


def _p(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _paired_section(pairs: list[dict[str, Any]], runs: Sequence[Run],
                    kinds: list[str]) -> list[str]:
    lines = [f"## Paired comparison with `{BASELINE}` (same seeds)", ""]
    strategies = variants_of(runs)
    if BASELINE not in strategies:
        several = [s for s in strategies if s.startswith(f"{BASELINE} [")]
        if several:
            return lines + [f"No paired comparison: `{BASELINE}` has {len(several)} variants "
                            f"here ({', '.join(map(markdown_code, several))}), so none is the "
                            "baseline and `paired.csv` is empty; report one of them.", ""]
        return lines + [f"No paired comparison: `{BASELINE}` (naive fine-tuning) is not among "
                        "the strategies of this comparison, so `paired.csv` is empty.", ""]
    if len(strategies) == 1:
        return lines + [f"No paired comparison: `{BASELINE}` is the only strategy.", ""]
    lines += [
        f"Difference strategy - `{BASELINE}` per metric, in percentage points, over the "
        f"seeds both ran (pairs matched by seed); 95% confidence interval of the mean "
        "difference (Student's t, clipped to the range of a difference: [-100, 100] for "
        "accuracies, [-200, 200] for the other metrics) and the two-sided paired t-test's "
        "p-value (H0: no "
        "difference). With fewer than 2 pairs there is no interval and no p. Whether a "
        "positive difference is good depends on the metric (↑ higher is better, ↓ lower).",
        "",
    ]
    base_seeds = {run.seed for run in runs if run.label == BASELINE}
    for s in strategies:
        missing = sorted(run.seed for run in runs
                         if run.label == s and run.seed not in base_seeds)
        if s != BASELINE and missing:
            lines.append(f"- {markdown_code(s)} seed(s) {', '.join(map(str, missing))} have "
                         f"no `{BASELINE}` "
                         "run with the same seed and are left out of the pairs.")
    if lines[-1] != "":
        lines.append("")
    for kind in kinds:
        rows = [p for p in pairs if p["matrix"] == kind]
        if len(kinds) > 1:
            lines += [f"### {MATRIX_TITLES[kind]}", ""]
        lines += ["| strategy | metric | difference (pp) | 95% CI | p | pairs |",
                  "|---|---|---:|---|---:|---:|"]
        for p in rows:
            arrow = "↑" if p["metric"] in HIGHER_IS_BETTER else "↓"
            ci = ("n/a" if math.isnan(p["ci_low"])
                  else f"[{_pct(p['ci_low'], True)}, {_pct(p['ci_high'], True)}]")
            lines.append(f"| {markdown_text(p['strategy'])} | {p['metric']} {arrow} | "
                         f"{_pct(p['difference'], True)} | {ci} | {_p(p['p'])} | {p['n']} |")
        lines.append("")
    return lines
