"""result.json: what a run records (its schema), built from a run and checked when read.

Schema (``schema = 1``), one file per run::

    status            finished | interrupted | diverged
    message           why the run stopped early (absent when finished)
    benchmark, scenario, strategy, seed, n_tasks, task_names
    identity          stamp, config_hash, data_fingerprint, key (see
                      :class:`~lifelong_kd.results.RunIdentity`; computed from config and data
                      for files written before it was stored)
    accuracy_matrix   rows finished so far, each n_tasks floats in [0, 1]  (R[i][j])
    accuracy_matrix_task_aware   class-il only: prediction restricted to the task's classes
    initial_accuracy  the untrained model's accuracy on each task (b_j)
    last_row_only     the setting under which the strategy trains nothing before the last
                      task (``strategy.mode = final`` of ``joint``), so that only the matrix's
                      last row means something; null: every row does (``Strategy.last_row_only``;
                      for files written before it was recorded,
                      :func:`~lifelong_kd.results.last_row_only`)
    metrics           every metric of ``metrics.METRICS`` on the matrix (null if undefined,
                      or meaningless under ``last_row_only``)
    metrics_task_aware, per_task_forgetting(_task_aware)
    timing            total_seconds, train_seconds, eval_seconds
    costs             what the run's models and memory cost (``costs.py``): memory_examples,
                      memory_bytes; ``model`` and, where the strategy holds one, ``teacher``:
                      name, parameters, bytes, flops_per_example, latency_batch_1,
                      latency_batch_256 (seconds per example); device, train_seconds
    teacher           strategies with a teacher model of their own (``compress``, ``kd``): its
                      accuracy_matrix, initial_accuracy, metrics, per_task_forgetting (and the
                      task-aware ones in class-il), evaluated as the run's model is
    config            the fully resolved configuration (``strategy``: its name and every option
                      the running strategy reads)
    declared          what the strategy declares for readers that import no strategy (absent
                      from files written before it was recorded): ``option_defaults`` (each
                      of its options' default), ``preset_options`` (those its preset fixes),
                      ``teacher_strategy`` (the preset training its teacher, ``kd``, ``compress``)
    environment       python, torch, torchvision, numpy, lifelong_kd, platform, git commit
    data              dataset name, path, fingerprint (sha256 of the arrays), sizes

A run's identity is defined in :mod:`lifelong_kd.results.identity`, how readers get a
result's matrices with their metrics in :mod:`lifelong_kd.results.matrices`; here,
:func:`build_result` assembles a run's result.json and :func:`validate_result` checks one
read back (:func:`check_strategy_names`, its strategy names).
"""

from __future__ import annotations

import math
import numbers
import platform
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import closest_name
from ..errors import UserError
from ..metrics import continual_metrics, meaningful_metrics, meaningful_per_task, per_task_forgetting
from .identity import run_identity
from .matrices import square_metrics

#: The version of result.json's layout (the module docstring).
SCHEMA = 1


def is_finished(result: Mapping[str, Any]) -> bool:
    """Whether a run finished its whole stream (only those are averaged)."""
    return result.get("status", "finished") == "finished"


# ------------------------------------------------------------------------------ checking

_SCENARIOS = ("task-il", "class-il", "domain-il")
_STATUSES = ("finished", "interrupted", "diverged")
#: Sections of a result (and of its config) that must be tables where they are present.
_TABLES = ("config", "data", "environment", "timing", "declared")
_CONFIG_TABLES = ("data", "stream", "model", "train", "strategy")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_metric(v: Any) -> bool:
    """A metric's value: a number, or null (nan in memory) where it is undefined."""
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))


def _accuracies(value: Any, name: str, n: int, ragged: str = "") -> str | None:
    """The problem with ``value`` (called ``name``) as a list of ``n`` accuracies in [0, 1],
    or None; ``ragged`` is appended to a wrong length."""
    if not isinstance(value, list):
        return f"{name} is {type(value).__name__}, not a list"
    if len(value) != n:
        return f"{name} has {len(value)} value(s), expected {n} (n_tasks){ragged}"
    # the fast path: plain numbers, as JSON gives them, in range (a comparison with nan is false)
    if (all(type(v) is float or type(v) is int for v in value)
            and all(-1e-9 <= v <= 1 + 1e-9 for v in value)):
        return None
    for j, v in enumerate(value):
        if not _is_number(v) or not -1e-9 <= v <= 1 + 1e-9:
            return f"{name}: value {j} is {v!r}, not an accuracy in [0, 1]"
    return None


def _matrix_problem(value: Any, name: str, n: int, finished: bool) -> str | None:
    """The problem with ``value`` as an accuracy matrix of n columns (n rows when the run
    finished, at most n otherwise), or None."""
    if not isinstance(value, list):
        return f"`{name}` is {type(value).__name__}, not a list of rows"
    if len(value) > n or (finished and len(value) != n):
        return (f"`{name}` has {len(value)} row(s), expected "
                f"{n if finished else f'at most {n}'} (n_tasks = {n})")
    for i, row in enumerate(value):
        problem = _accuracies(row, f"`{name}` row {i}", n, ": a ragged matrix")
        if problem:
            return problem
    return None


#: What follows an external family's prefix in a strategy name (``avalanche:Replay``): the name
#: of a class of that library, so a Python identifier.
_FAMILY_MEMBER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The form of a strategy name a run writes: a preset's name (letters, digits, ``-``, ``+``,
#: ``.``, ``_``), or a family's prefix and a class name.
_NAME_FORM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*(:[A-Za-z_][A-Za-z0-9_]*)?")


def strategy_names() -> tuple[list[str], list[str]]:
    """The strategy names this version runs: (the registered presets' names, the prefixes of
    the external families, ``avalanche:``). Read from the registry
    (:mod:`lifelong_kd.strategies.registry`, the one list of strategies; importing it loads
    the built-in presets), when a result file is checked: the import contracts allow it (the
    training layers know nothing of results, not the reverse), and importing it here only,
    not at the top, keeps ``results`` light for the readers that check no names."""
    from ..strategies.registry import FAMILIES, PRESETS

    return list(PRESETS), list(FAMILIES)


def is_strategy_name(name: Any, names: tuple[list[str], list[str]] | None = None) -> bool:
    """Whether ``name`` names a strategy of this version: a registered preset, or a family's
    prefix followed by a class name (``avalanche:Replay``; the family itself need not be
    installed to report a run made where it was). ``names``: :func:`strategy_names`."""
    presets, families = names or strategy_names()
    if not isinstance(name, str):
        return False
    return name in presets or any(name.startswith(prefix) and _FAMILY_MEMBER.fullmatch(
        name.removeprefix(prefix)) for prefix in families)


def _shown_name(value: Any, limit: int = 60) -> str:
    """``value`` as an error message shows a bad name: its repr (one line, whatever the name
    holds), cut at ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def check_strategy_names(result: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """``result`` (read from ``path``, checked by :func:`validate_result`) when the strategy
    names it records are strategies of this version; a UserError naming ``path``, the key,
    the bad name, the closest valid one and every valid one otherwise.

    ``strategy``, ``config.strategy.name`` and ``config.teacher.strategy`` (where present)
    must each name a strategy (:func:`is_strategy_name`), and the first two the same one. A
    name that is none was not written by a run of this project (or was edited by hand): a
    report would show it and name a variant after it. Results built in memory by a run are
    not checked here: their names come from the registry. A result that records what its
    strategy declares (``declared``) has its names checked for their form only, so that a
    report of such results imports no strategy (nor torch).
    """
    problem = _strategy_problem(result, strategy_names() if "declared" not in result else None)
    if problem:
        raise UserError(f"{path} is not a usable lifelong-kd result: {problem}")
    return result


def _strategy_problem(result: Mapping[str, Any],
                      names: tuple[list[str], list[str]] | None) -> str | None:
    """The problem with the strategy names ``result`` records (:func:`check_strategy_names`),
    or None. ``names``: :func:`strategy_names`; None for a result that records what its
    strategy declares (``declared``: written by a run of a version that records it, whose
    report imports no strategy), whose names are checked for their form only."""
    config = result.get("config", {})
    recorded = [("strategy", result["strategy"])]
    if "name" in config.get("strategy", {}):
        recorded.append(("config.strategy.name", config["strategy"]["name"]))
    teacher = config.get("teacher")
    if isinstance(teacher, Mapping) and "strategy" in teacher:
        recorded.append(("config.teacher.strategy", teacher["strategy"]))
    for key, name in recorded:
        if names is None:
            if not (isinstance(name, str) and _NAME_FORM.fullmatch(name)):
                return f"`{key}` is {_shown_name(name)}, not a strategy name"
            continue
        if not is_strategy_name(name, names):
            presets, families = names
            close = closest_name(name, presets) if isinstance(name, str) else None
            hint = f" (did you mean `{close}`?)" if close else ""
            valid = ", ".join([*presets, *(f"{prefix}<Name>" for prefix in families)])
            return f"`{key}` is {_shown_name(name)}, not a strategy{hint}; valid: {valid}"
    if len(recorded) > 1 and recorded[1][1] != recorded[0][1]:
        return (f"`strategy` is {_shown_name(recorded[0][1])} but `config.strategy.name` is "
                f"{_shown_name(recorded[1][1])}: one run has one strategy")
    return None


def validate_result(result: Any, path: Path | str) -> dict[str, Any]:
    """``result`` (read from ``path``) when it holds what the reports and plots read; a
    UserError naming ``path`` and the first problem otherwise (a missing key, a value of the
    wrong type, a ragged matrix, an accuracy outside [0, 1]).

    Required: ``benchmark``, ``strategy``, ``scenario`` (task-il, class-il, domain-il),
    ``seed`` (an integer), ``n_tasks`` (>= 1), ``accuracy_matrix`` (n_tasks rows of n_tasks
    accuracies when ``status`` is finished, the default; at most n_tasks rows otherwise) and
    ``initial_accuracy`` (n_tasks accuracies). Checked where present: ``status``,
    ``task_names``, ``last_row_only`` (a setting or null), the class-il task-aware matrix and
    initial accuracies (the same shapes), that ``config`` (with its sections), ``data``,
    ``environment`` and ``timing`` are tables, and that recorded metrics are tables and
    per-task forgetting lists. (A result read from a file also has its strategy names
    checked: :func:`load_result`.)
    """
    problem = (_required_problem(result) or _matrices_problem(result)
               or _optional_problem(result) or _metrics_problem(result))
    if problem:
        raise UserError(f"{path} is not a usable lifelong-kd result: {problem}")
    return result


def _required_problem(result: Any) -> str | None:
    """The problem with what every result holds (:func:`validate_result`): a JSON object with
    its required keys, names, scenario, seed, number of tasks and status; or None."""
    if not isinstance(result, dict):
        return f"it holds a {type(result).__name__}, not a JSON object"
    for key in ("benchmark", "strategy", "scenario", "seed", "n_tasks", "accuracy_matrix",
                "initial_accuracy"):
        if key not in result:
            return f"the key `{key}` is missing"
    for key in ("benchmark", "strategy", "scenario"):
        if not isinstance(result[key], str) or not result[key]:
            return f"`{key}` is {result[key]!r}, not a name"
    if result["scenario"] not in _SCENARIOS:
        return f"`scenario` is {result['scenario']!r}, not one of {', '.join(_SCENARIOS)}"
    for key, low in (("seed", None), ("n_tasks", 1)):
        v = result[key]
        if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
            return f"`{key}` is {v!r}, not an integer" + (f" >= {low}" if low else "")
    status = result.get("status", "finished")
    if status not in _STATUSES:
        return f"`status` is {status!r}, not one of {', '.join(_STATUSES)}"
    return None


def _matrices_problem(result: dict[str, Any]) -> str | None:
    """The problem with a result's accuracy matrices and initial accuracies (the task-aware
    ones where present: the same shapes), or None; after :func:`_required_problem`."""
    n, finished = result["n_tasks"], result.get("status", "finished") == "finished"
    problem = (_matrix_problem(result["accuracy_matrix"], "accuracy_matrix", n, finished)
               or _accuracies(result["initial_accuracy"], "`initial_accuracy`", n))
    if problem is None and result.get("accuracy_matrix_task_aware") is not None:
        aware = result["accuracy_matrix_task_aware"]
        problem = _matrix_problem(aware, "accuracy_matrix_task_aware", n, finished)
        if problem is None and len(aware) != len(result["accuracy_matrix"]):
            problem = (f"`accuracy_matrix_task_aware` has {len(aware)} row(s), "
                       f"`accuracy_matrix` {len(result['accuracy_matrix'])}")
    if problem is None and result.get("initial_accuracy_task_aware") is not None:
        problem = _accuracies(result["initial_accuracy_task_aware"],
                              "`initial_accuracy_task_aware`", n)
    return problem


def _optional_problem(result: dict[str, Any]) -> str | None:
    """The problem with what a result holds where present: ``last_row_only``, ``task_names``,
    the sections that are tables (:data:`_TABLES`, :data:`_CONFIG_TABLES`) and the numbers
    the report reads from them; or None."""
    last = result.get("last_row_only")
    if last is not None and not (isinstance(last, str) and last):
        return f"`last_row_only` is {_shown_name(last)}, not a setting (or null)"
    names = result.get("task_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(x, str) for x in names)):
        return "`task_names` is not a list of names"
    for key in _TABLES:
        if key in result and not isinstance(result[key], dict):
            return f"`{key}` is {type(result[key]).__name__}, not a table"
    config = result.get("config", {})
    for key in _CONFIG_TABLES:
        if key in config and not isinstance(config[key], dict):
            return f"`config.{key}` is {type(config[key]).__name__}, not a table"
    for section, key in (("timing", "total_seconds"), ("train", "iterations")):
        table = result.get(section, {}) if section == "timing" else config.get(section, {})
        where = section if section == "timing" else f"config.{section}"
        if key in table and not _is_number(table[key]):
            return f"`{where}.{key}` is {table[key]!r}, not a number"
    return None


def _metrics_problem(result: dict[str, Any]) -> str | None:
    """The problem with the metrics a result records (tables of numbers or null) and its
    per-task forgetting (lists of them), or None."""
    for key in ("metrics", "metrics_task_aware"):
        values = result.get(key)
        if values is not None and not (isinstance(values, dict) and all(
                map(_is_metric, values.values()))):
            return f"`{key}` is not a table of numbers (or null)"
    for key in ("per_task_forgetting", "per_task_forgetting_task_aware"):
        values = result.get(key)
        if values is not None and not (isinstance(values, list) and all(map(_is_metric, values))):
            return f"`{key}` is not a list of numbers (or null)"
    return None


# ------------------------------------------------------------------------------ building


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent.parent  # the repository: results/ is a package
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Versions of what produced a result."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:  # importing torchvision would cost seconds; its metadata has the version
        tv = version("torchvision")
    except PackageNotFoundError:
        tv = None
    return {
        "python": sys.version.split()[0],
        "lifelong_kd": __version__,
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }


def build_result(
    *,
    config: dict[str, Any],
    scenario: str,
    task_names: list[str],
    rows: list[list[float]],
    rows_task_aware: list[list[float]],
    initial: list[float],
    initial_task_aware: list[float],
    timing: dict[str, float],
    data: dict[str, Any],
    status: str = "finished",
    message: str | None = None,
    costs: dict[str, Any] | None = None,
    teacher: dict[str, list[Any]] | None = None,
    grid: Sequence[tuple[str, str]] = (),
    curves: Sequence[Sequence[float]] = (),
    last_row_only: str | None = None,
    declared: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the result.json of one run (see the module docstring). ``last_row_only``:
    what the run's strategy declares (``Strategy.last_row_only``: the setting under which
    only the last row of its matrices means something, None when every row does); the
    metrics that need the other rows are then null. ``costs``: what the
    run's models and memory cost. ``teacher``: the rows of the strategy's own teacher
    (``rows``, ``rows_task_aware``, ``initial``, ``initial_task_aware``), recorded with their
    metrics as the run's are. ``grid``: the settings a grid varied for the run (its
    identity's stamp names them). ``curves``: the continual evaluation's rows (``train.eval_every``;
    written to curves.csv by :func:`curves_csv`), whose metrics go to ``continual``
    (:func:`lifelong_kd.metrics.continual_metrics`). ``declared``: what the strategy
    declares for the report (its options' defaults, those its preset fixes, its teacher's
    strategy)."""
    k, n = len(rows), len(task_names)
    result = _opening_keys(config, scenario, task_names, status, grid, data, k)
    result.update({"accuracy_matrix": rows, "initial_accuracy": initial,
                   "last_row_only": last_row_only})
    # metrics that mean nothing for the run (under last_row_only: rows 0..T-2 untrained) are null
    result.update(_metrics_of(rows, initial, last_row_only, n, k))
    if message:
        result["message"] = message
    if scenario == "class-il":
        result["accuracy_matrix_task_aware"] = rows_task_aware
        result["initial_accuracy_task_aware"] = initial_task_aware
        result.update(_metrics_of(rows_task_aware, initial_task_aware, last_row_only, n, k,
                                  "_task_aware"))
    if teacher is not None and teacher.get("rows"):
        result["teacher"] = _matrix_block(last_row_only, scenario, n, teacher)
    result.update(_closing_keys(config=config, timing=timing, data=data, costs=costs,
                                curves=curves, declared=declared))
    return result


def _opening_keys(config: dict[str, Any], scenario: str, task_names: list[str], status: str,
                  grid: Sequence[tuple[str, str]], data: dict[str, Any],
                  k: int) -> dict[str, Any]:
    """The keys a result.json opens with (:func:`build_result`): its schema, the run's
    status, what ran (benchmark, scenario, strategy, seed, identity) and its tasks (``k``:
    how many finished)."""
    return {
        "schema": SCHEMA,
        "status": status,
        "benchmark": config["benchmark"],
        "scenario": scenario,
        "strategy": config["strategy"]["name"],
        "seed": config["seed"],
        "identity": run_identity(config, data.get("fingerprint"), grid).to_dict(),
        "n_tasks": len(task_names),
        "tasks_finished": k,
        "task_names": task_names,
    }


def _metrics_of(matrix: list[list[float]], initial: list[float], last_row_only: str | None,
                n_tasks: int, k: int, suffix: str = "") -> dict[str, Any]:
    """``metrics<suffix>`` and ``per_task_forgetting<suffix>`` of a matrix with ``k``
    finished rows (of its leading k x k block), null where they mean nothing for the run
    (:func:`lifelong_kd.metrics.meaningful_metrics` under its ``last_row_only``)."""
    return {
        f"metrics{suffix}": meaningful_metrics(square_metrics(matrix, initial), last_row_only,
                                               n_tasks, k),
        f"per_task_forgetting{suffix}": meaningful_per_task(
            per_task_forgetting([r[:k] for r in matrix]) if k else [], last_row_only, n_tasks),
    }


def _closing_keys(*, config: dict[str, Any], timing: dict[str, float], data: dict[str, Any],
                  costs: dict[str, Any] | None, curves: Sequence[Sequence[float]],
                  declared: dict[str, Any] | None) -> dict[str, Any]:
    """The keys a result.json closes with (:func:`build_result`), in this order: the
    continual evaluation's metrics (when it has curves), timing, costs (when measured), the
    configuration, what the strategy declares (when given), the environment and the data."""
    closing: dict[str, Any] = {}
    if curves:
        closing["continual"] = continual_metrics(curves)
    closing["timing"] = timing
    if costs is not None:
        closing["costs"] = costs
    closing["config"] = config
    if declared is not None:
        closing["declared"] = declared
    closing["environment"] = environment()
    closing["data"] = data
    return closing


def _matrix_block(last_row_only: str | None, scenario: str, n_tasks: int,
                  rows: dict[str, list[Any]]) -> dict[str, Any]:
    """A model's matrices with their metrics, as result.json records the run's own (masked
    as the run's under its strategy's ``last_row_only``)."""
    k = len(rows["rows"])
    block: dict[str, Any] = {}
    kinds = [("", rows["rows"], rows["initial"])]
    if scenario == "class-il":
        kinds.append(("_task_aware", rows["rows_task_aware"], rows["initial_task_aware"]))
    for suffix, matrix, initial in kinds:
        block[f"accuracy_matrix{suffix}"] = matrix
        block[f"initial_accuracy{suffix}"] = initial
        block[f"metrics{suffix}"] = meaningful_metrics(square_metrics(matrix, initial),
                                                       last_row_only, n_tasks, k)
        block[f"per_task_forgetting{suffix}"] = meaningful_per_task(
            per_task_forgetting([r[:k] for r in matrix]) if k else [], last_row_only,
            n_tasks)
    return block
