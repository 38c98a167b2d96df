"""A run's accuracy matrices with their metrics, as the readers of results get them.

Readers get a result's matrices through :func:`matrix_kinds` (the teacher's through
:func:`teacher_kinds`): the metrics are those result.json records (a file of an older version
that lacks one gets it computed from the matrix), masked where they mean nothing
(:func:`lifelong_kd.metrics.meaningful_metrics`; :func:`last_row_only`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..metrics import (
    METRICS,
    all_metrics,
    meaningful_metrics,
    meaningful_per_task,
    per_task_forgetting,
)

#: The prediction is over every class seen (no task identity at test time).
TASK_AGNOSTIC = "task_agnostic"
#: The prediction is restricted to the task's own classes (or head).
TASK_AWARE = "task_aware"


@dataclass(frozen=True)
class RecordedMatrix:
    """One accuracy matrix of a run, with what result.json records about it.

    ``metrics``: every metric of :data:`lifelong_kd.metrics.METRICS` as recorded (nan for
    null; a metric the file lacks, as one of an older version, computed from ``rows``), nan
    where it means nothing for the run (:func:`lifelong_kd.metrics.meaningful_metrics`: a
    file written before those were null records numbers there). ``per_task_forgetting``
    likewise.
    """

    rows: list[list[float]]
    initial: list[float]
    metrics: dict[str, float]
    per_task_forgetting: list[float]


def strategy_config(result: Mapping[str, Any]) -> dict[str, Any]:
    """The run's ``config["strategy"]`` (with its ``name``, even where the config lacks it)."""
    config = result.get("config", {})
    return {"name": result["strategy"], **config.get("strategy", {})}


#: The one strategy whose matrix meant something only in its last row before result.json
#: recorded ``last_row_only``, with that setting (``Joint.last_row_only``): read only for
#: such older files (:func:`last_row_only`).
_LAST_ROW_ONLY_BEFORE = ("joint", "mode", "final", "strategy.mode = final")


def last_row_only(result: Mapping[str, Any]) -> str | None:
    """The setting under which the run's strategy trains nothing before the last task, so
    that only the last row of its matrices means something (``strategy.mode = final``); None
    when every row does. Read from result.json's ``last_row_only`` (the strategy's
    declaration, ``Strategy.last_row_only``, recorded at run time), so that no reader of
    results needs to know a strategy. A file written before it was recorded gets the rule of
    then: ``joint`` with ``strategy.mode = final`` (the only strategy that declares it)."""
    if "last_row_only" in result:
        value = result["last_row_only"]
        return value if isinstance(value, str) and value else None
    name, key, value, setting = _LAST_ROW_ONLY_BEFORE
    strategy = strategy_config(result)
    return setting if strategy.get("name") == name and strategy.get(key) == value else None


def _numbers(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: math.nan if v is None else float(v) for k, v in values.items()}
    return [math.nan if v is None else float(v) for v in values]


def square_metrics(rows: list[list[float]], initial: list[float]) -> dict[str, float]:
    """Metrics of the leading k x k block of a matrix with k finished rows."""
    k = len(rows)
    if k == 0:
        return {}
    block = [row[:k] for row in rows]
    return all_metrics(block, initial[:k])


def _recorded(result: Mapping[str, Any], rows: list[list[float]], initial: list[float],
              metrics_key: str, per_task_key: str) -> RecordedMatrix:
    k = len(rows)
    last, n = last_row_only(result), result["n_tasks"]
    stored = result.get(metrics_key)
    metrics = _numbers(stored) if isinstance(stored, dict) else {}
    if k and not all(m in metrics for m in METRICS):
        computed = square_metrics(rows, initial)
        metrics = {**computed, **metrics}
    stored_per_task = result.get(per_task_key)
    per_task = (_numbers(stored_per_task) if isinstance(stored_per_task, list)
                else per_task_forgetting([r[:k] for r in rows]) if k else [])
    return RecordedMatrix(rows=rows, initial=initial,
                  metrics=meaningful_metrics(metrics, last, n, k),
                  per_task_forgetting=meaningful_per_task(per_task, last, n))


def teacher_kinds(result: Mapping[str, Any]) -> dict[str, RecordedMatrix]:
    """The teacher's accuracy matrices by kind, as :func:`matrix_kinds` gives the run's
    model's (empty when the run recorded no ``teacher`` block: strategies whose teacher is a
    copy of the model, or none)."""
    block = result.get("teacher")
    if not isinstance(block, Mapping) or not block.get("accuracy_matrix"):
        return {}
    inner = {**block, "scenario": result.get("scenario"), "n_tasks": result["n_tasks"],
             "strategy": result["strategy"], "config": result.get("config", {})}
    if "last_row_only" in result:  # the run's declaration holds for its teacher's matrices
        inner["last_row_only"] = result["last_row_only"]
    return matrix_kinds(inner)


def matrix_kinds(result: Mapping[str, Any]) -> dict[str, RecordedMatrix]:
    """The run's accuracy matrices by kind: a task-il run's is ``task_aware``, a domain-il
    run's ``task_agnostic``, a class-il run has both (the task-aware one when recorded)."""
    rows, initial = result["accuracy_matrix"], result.get("initial_accuracy", [])
    main = _recorded(result, rows, initial, "metrics", "per_task_forgetting")
    if result.get("scenario") == "task-il":
        return {TASK_AWARE: main}
    kinds = {TASK_AGNOSTIC: main}
    if result.get("scenario") == "class-il" and result.get("accuracy_matrix_task_aware"):
        kinds[TASK_AWARE] = _recorded(
            result, result["accuracy_matrix_task_aware"],
            result.get("initial_accuracy_task_aware", initial), "metrics_task_aware",
            "per_task_forgetting_task_aware")
    return kinds
