"""Statistics over seeds: the tidy rows of a comparison, pure functions of stored results.

A comparison's runs are grouped by **variant**: a strategy with its own model, training and
strategy settings (:func:`lifelong_kd.results.variant_settings`; a preset's per-strategy
overrides make one). A variant is named by its strategy when it is that strategy's only
variant here, else by the strategy and the settings that tell its variants apart
(``lwf [train.lr = 0.1]``); every table calls that name ``strategy``. Runs are ordered the
same whatever order they were found or run in: ``naive`` first, ``joint`` last, the others
by name; then by seed.

The metrics are read from result.json (:func:`lifelong_kd.results.matrix_kinds`), not
recomputed. The one metric computed here is ``intransigence``: it needs the accuracy of
joint training on tasks 0..j, a second run, so it is computed across runs for a run only
when the same comparison holds a finished ``joint`` variant trained with ``strategy.mode =
incremental`` and the same seed (its R[j][j] is a*_j), and is absent (not zero) otherwise.
Metrics that mean nothing for a run (``joint`` with ``mode = final``) are nan.

Besides the matrix kinds of the run's model (``task_aware``, ``task_agnostic``), the rows
carry three more values of the ``matrix`` column:

- ``teacher`` (and ``teacher_task_aware`` in class-il): the metrics of the strategy's own
  teacher, for runs that record a ``teacher`` block (``compress``, ``kd``), under the same
  metric names as the model's (:func:`teacher_matrix` names them);
- ``costs``: what the run cost (:data:`COST_METRICS`, read from result.json's ``costs``:
  the model's parameters, bytes, FLOPs and latency, the teacher's parameters and FLOPs, the
  memory's bytes, the training time); a result that lacks one (an older file) has no row
  for it. Costs are not accuracies: their intervals are not clipped and they are not
  compared with ``naive`` seed by seed.
- ``continual``: the metrics of continual evaluation (De Lange et al. 2023,
  :data:`lifelong_kd.metrics.CONTINUAL_METRICS`), for runs trained with ``train.eval_every
  > 0``: read from result.json's ``continual`` (computed from its ``curves`` when only those
  are there, :func:`continual_values`); undefined ones (null) are nan. Their intervals are
  clipped to :data:`lifelong_kd.metrics.CONTINUAL_BOUNDS` and they are compared with
  ``naive`` seed by seed like the accuracy metrics.

Rows (each a dict, the columns of the CSV file of the same name in report.py):

- :func:`metric_rows`   one row per finished run, matrix kind and metric (``runs.csv``), and
  the teacher's and the costs' rows
- :func:`summary_rows`  variant x matrix kind x metric: mean, std, sem, 95% CI, n
- :func:`paired_rows`   variant x matrix kind x metric: difference vs ``naive`` over the seeds
  both ran, its 95% CI and the paired t-test's p (no ``costs`` rows)
- :func:`matrix_rows`   run x matrix kind x row x column: accuracy
"""

from __future__ import annotations

import json
import math
import numbers
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .metrics import (
    BOUNDS,
    CONTINUAL_BOUNDS,
    CONTINUAL_METRICS,
    REPORT_METRICS,
    continual_metrics,
    intransigence,
    meaningful_metrics,
)
from .results import (
    TASK_AGNOSTIC,
    TASK_AWARE,
    is_finished,
    last_row_only,
    matrix_kinds,
    strategy_config,
    teacher_kinds,
    variant_key,
    variant_settings,
)
from .stats import Bounds, describe, difference_bounds, paired

#: The strategy every other is compared with, seed by seed.
BASELINE = "naive"
#: Joint training: the upper bound, and the a*_j of intransigence.
JOINT = "joint"

RUNS_COLUMNS = ["run", "strategy", "seed", "matrix", "metric", "value"]
SUMMARY_COLUMNS = ["strategy", "matrix", "metric", "mean", "std", "sem", "ci_low", "ci_high",
                   "n"]
PAIRED_COLUMNS = ["strategy", "baseline", "matrix", "metric", "difference", "ci_low",
                  "ci_high", "p", "n"]
MATRICES_COLUMNS = ["run", "strategy", "seed", "matrix", "row", "column", "accuracy"]

#: The ``matrix`` of the rows that hold a run's costs.
COSTS = "costs"
#: The ``matrix`` of the rows of the teacher's main matrix (see :func:`teacher_matrix`).
TEACHER = "teacher"
#: The ``matrix`` of the rows that hold a run's continual-evaluation metrics.
CONTINUAL = "continual"
#: The cost rows, in this order: metric -> (the table of result.json's ``costs`` it is read
#: from: ``model``, ``teacher`` or the ``costs`` table itself (""), its key there).
COST_METRICS: dict[str, tuple[str, str]] = {
    "parameters": ("model", "parameters"),
    "model_bytes": ("model", "bytes"),
    "flops_per_example": ("model", "flops_per_example"),
    "latency_batch_1": ("model", "latency_batch_1"),
    "latency_batch_256": ("model", "latency_batch_256"),
    "memory_bytes": ("", "memory_bytes"),
    "train_seconds": ("", "train_seconds"),
    "teacher_parameters": ("teacher", "parameters"),
    "teacher_flops_per_example": ("teacher", "flops_per_example"),
}


# ----------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Run:
    """A run's result with the name of its variant in this comparison."""

    label: str
    result: dict[str, Any]

    @property
    def strategy(self) -> str:
        return self.result["strategy"]

    @property
    def seed(self) -> int:
        return self.result["seed"]

    @property
    def name(self) -> str:
        """``variant/seed-N``: the run's name in the CSV files (for a strategy with one
        variant, its identity's stamp and its folder under ``compare``)."""
        return f"{self.label}/seed-{self.seed}"


def strategy_rank(strategy: str) -> int:
    """naive first, joint last, the others between."""
    return 0 if strategy == BASELINE else 2 if strategy == JOINT else 1


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def variant_labels(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The name of each run's variant (see the module docstring), in the order of
    ``results``; it depends only on the set of variants present."""
    keys = [variant_key(r) for r in results]
    settings = {key: variant_settings(r) for key, r in zip(keys, results, strict=True)}
    by_strategy: dict[str, list[str]] = {}
    for key, r in zip(keys, results, strict=True):
        variants = by_strategy.setdefault(r["strategy"], [])
        if key not in variants:
            variants.append(key)
    label: dict[str, str] = {}
    absent = "(absent)"
    for strategy, variants in by_strategy.items():
        if len(variants) == 1:
            label[variants[0]] = strategy
            continue
        differing = sorted(k for k in {k for v in variants for k in settings[v]}
                           if len({_shown(settings[v].get(k, absent)) for v in variants}) > 1)
        for v in variants:
            own = ", ".join(f"{k} = {_shown(settings[v].get(k, absent))}" for k in differing)
            label[v] = f"{strategy} [{own}]"
    return [label[k] for k in keys]


def labelled(results: Iterable[Mapping[str, Any]]) -> list[Run]:
    """The runs with their variant names, in report order (see the module docstring)."""
    results = list(results)
    runs = [Run(label, r) for label, r in zip(variant_labels(results), results, strict=True)]
    return sorted(runs, key=lambda run: (strategy_rank(run.strategy), run.label, run.seed))


def finished_runs(results: Iterable[Mapping[str, Any]]) -> list[Run]:
    """The finished runs (the only ones averaged or drawn), labelled, in report order."""
    return labelled(r for r in results if is_finished(r))


def variants_of(runs: Sequence[Run]) -> list[str]:
    """The variant names of ``runs`` in report order."""
    return list(dict.fromkeys(run.label for run in runs))


def _usable_joint(run: Run) -> bool:
    """A finished joint run trained incrementally: its R[j][j] is a*_j."""
    mode = strategy_config(run.result).get("mode", "incremental")
    return run.label == JOINT and is_finished(run.result) and mode == "incremental"


# ----------------------------------------------------------------------------- costs


def main_kind(scenario: str) -> str:
    """The kind of a run's ``accuracy_matrix``: ``task_aware`` in task-il, ``task_agnostic``
    otherwise (class-il's second matrix is ``accuracy_matrix_task_aware``)."""
    return TASK_AWARE if scenario == "task-il" else TASK_AGNOSTIC


def teacher_matrix(kind: str, scenario: str) -> str:
    """The ``matrix`` name of the teacher's matrix of ``kind``: ``teacher`` for its main one
    (``teacher.accuracy_matrix`` in result.json), ``teacher_<kind>`` for the other
    (class-il: ``teacher_task_aware``)."""
    return TEACHER if kind == main_kind(scenario) else f"{TEACHER}_{kind}"


def model_costs(result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """result.json's ``costs.model`` (None for a result written before models' costs were
    recorded)."""
    costs = result.get("costs")
    model = costs.get("model") if isinstance(costs, Mapping) else None
    return model if isinstance(model, Mapping) else None


def has_model_costs(results: Iterable[Mapping[str, Any]]) -> bool:
    """Whether some result records its model's costs (``costs.model``)."""
    return any(model_costs(r) is not None for r in results)


def cost_values(result: Mapping[str, Any]) -> dict[str, float]:
    """The run's costs (:data:`COST_METRICS`) that its result.json records: metric -> value
    (nan where recorded as null, e.g. a latency not measured); a cost absent from the file
    (an older one, a run without a teacher) has no entry."""
    costs = result.get("costs")
    if not isinstance(costs, Mapping):
        return {}
    out: dict[str, float] = {}
    for metric, (table, key) in COST_METRICS.items():
        where = costs.get(table) if table else costs
        if not isinstance(where, Mapping) or key not in where:
            continue
        value = where[key]
        if value is None:
            out[metric] = math.nan
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[metric] = float(value)
    return out


# ----------------------------------------------------------------------------- continual


def continual_values(result: Mapping[str, Any]) -> dict[str, float]:
    """The run's continual-evaluation metrics (:data:`~lifelong_kd.metrics.CONTINUAL_METRICS`):
    metric -> value, nan where undefined (null). Read from result.json's ``continual``; a
    result with ``curves`` but no ``continual`` gets them computed
    (:func:`lifelong_kd.metrics.continual_metrics`); empty for a run without either (trained
    with ``train.eval_every = 0``). All nan for a run whose curves mean nothing before its
    last task (its strategy trains nothing before then, ``joint`` with ``mode = final``:
    :func:`lifelong_kd.results.last_row_only`)."""
    values = result.get("continual")
    if not isinstance(values, Mapping):
        curves = result.get("curves")
        if not curves:
            return {}
        values = continual_metrics(curves)
    out: dict[str, float] = {}
    for metric in CONTINUAL_METRICS:
        value = values.get(metric)
        numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
        out[metric] = float(value) if numeric else math.nan
    if int(result.get("n_tasks", 1)) > 1 and last_row_only(result):
        out = dict.fromkeys(out, math.nan)
    return out


def metric_bounds(matrix: str, metric: str) -> Bounds:
    """The range of ``metric`` in rows of ``matrix``: none for costs, the continual metrics'
    own (:data:`~lifelong_kd.metrics.CONTINUAL_BOUNDS`), else the matrix metrics'
    (:data:`~lifelong_kd.metrics.BOUNDS`)."""
    if matrix == COSTS:
        return None
    return (CONTINUAL_BOUNDS if matrix == CONTINUAL else BOUNDS).get(metric)


# ----------------------------------------------------------------------------- rows


def metric_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished run, matrix kind and metric: run, strategy (the variant), seed,
    matrix, metric, value (nan where a metric is undefined, e.g. bwt with one task, or means
    nothing for the run).

    The values are those result.json records; ``intransigence`` is computed here, for runs
    with a finished incremental ``joint`` run of the same seed among ``results`` (and the
    same number of tasks): mean_j (a*_j - R[j][j]), a*_j = R_joint[j][j]
    (:func:`lifelong_kd.metrics.intransigence`). Then, per run, its teacher's metrics
    (matrix ``teacher``, ``teacher_task_aware``; no intransigence) and its costs (matrix
    ``costs``, :func:`cost_values`) and its continual-evaluation metrics (matrix
    ``continual``, :func:`continual_values`).
    """
    runs = finished_runs(results)
    joint = {run.seed: run for run in runs if _usable_joint(run)}
    rows = []
    for run in runs:
        joint_kinds = matrix_kinds(joint[run.seed].result) if run.seed in joint else {}
        for kind, matrix in matrix_kinds(run.result).items():
            values = dict(matrix.metrics)
            if kind in joint_kinds and len(joint_kinds[kind].rows) == len(matrix.rows):
                values["intransigence"] = intransigence(matrix.rows, joint_kinds[kind].rows)
            values = meaningful_metrics(values, last_row_only(run.result), len(matrix.rows))
            rows += _rows(run, kind, {m: values[m] for m in REPORT_METRICS if m in values})
        scenario = str(run.result.get("scenario"))
        for kind, matrix in teacher_kinds(run.result).items():
            rows += _rows(run, teacher_matrix(kind, scenario),
                          {m: matrix.metrics[m] for m in REPORT_METRICS if m in matrix.metrics})
        rows += _rows(run, COSTS, cost_values(run.result))
        rows += _rows(run, CONTINUAL, continual_values(run.result))
    return rows


def _rows(run: Run, matrix: str, values: Mapping[str, float]) -> list[dict[str, Any]]:
    return [{"run": run.name, "strategy": run.label, "seed": run.seed, "matrix": matrix,
             "metric": metric, "value": float(value)} for metric, value in values.items()]


def _values(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[int, float]]:
    """(variant, matrix, metric) -> {seed: value}, in the order of ``rows``."""
    out: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        out[(row["strategy"], row["matrix"], row["metric"])][row["seed"]] = row["value"]
    return out


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant, matrix kind and metric, over the seeds (see :func:`stats.describe`):
    mean, std, sem, ci_low, ci_high (95%, Student's t, clipped to the metric's range,
    :func:`metric_bounds`; a cost's interval is not clipped), n."""
    return [{"strategy": s, "matrix": k, "metric": m,
             **describe(list(by_seed.values()), bounds=metric_bounds(k, m))}
            for (s, k, m), by_seed in _values(rows).items()]


def paired_rows(rows: list[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Per variant (other than ``baseline``), matrix kind and metric: the paired difference
    variant - baseline over the seeds both ran (see :func:`stats.paired`), its interval
    clipped to the range of a difference of two values of the metric. Empty when the
    baseline is not among the runs (or has several variants, none of them named
    ``baseline``). Costs are left out (a difference of parameters or seconds is no test of
    a strategy), and so are teachers' metrics unless the baseline has a teacher of its
    own (``naive`` has none)."""
    values = _values(rows)
    out = []
    for (s, k, m), by_seed in values.items():
        base = values.get((baseline, k, m))
        if s == baseline or base is None or k == COSTS:
            continue
        seeds = [seed for seed in by_seed if seed in base]
        res = paired([by_seed[x] for x in seeds], [base[x] for x in seeds],
                     bounds=difference_bounds(metric_bounds(k, m)))
        out.append({"strategy": s, "baseline": baseline, "matrix": k, "metric": m,
                    **{c: res[c] for c in ("difference", "ci_low", "ci_high", "p", "n")}})
    return out


def matrix_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished run, matrix kind, row i and column j: R[i][j]."""
    out = []
    for run in finished_runs(results):
        for kind, matrix in matrix_kinds(run.result).items():
            for i, row in enumerate(matrix.rows):
                for j, acc in enumerate(row):
                    out.append({"run": run.name, "strategy": run.label, "seed": run.seed,
                                "matrix": kind, "row": i, "column": j, "accuracy": acc})
    return out


def _seed_key(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int) else (1, str(seed))


def grid_variant(result: Mapping[str, Any]) -> str:
    """The run's strategy, with the settings a grid varied for it: ``lwf [train.lr = 0.1]``
    (as ``RunSpec.variant`` names it while it runs)."""
    identity = result.get("identity")
    grid = identity.get("grid") if isinstance(identity, Mapping) else None
    if not isinstance(grid, Mapping) or not grid:
        return str(result["strategy"])
    return f"{result['strategy']} [{', '.join(f'{k} = {v}' for k, v in sorted(grid.items()))}]"


def failure_list(
    results: Sequence[Mapping[str, Any]], failures: Sequence[Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``failures`` (strategy, seed, error) plus every unfinished run not already in it."""
    out = [dict(f) for f in failures or []]
    seen = {(f.get("strategy"), f.get("seed")) for f in out}
    for r in results:
        name = grid_variant(r)
        if not is_finished(r) and (name, r["seed"]) not in seen:
            out.append({"strategy": name, "seed": r["seed"],
                        "error": f"{r.get('status')}: {r.get('message', '')}"})
    return sorted(out, key=lambda f: (strategy_rank(str(f.get("strategy"))),
                                      str(f.get("strategy")), _seed_key(f.get("seed"))))
