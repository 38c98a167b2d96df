"""The comparison report: tables over seeds, the paired comparison with naive fine-tuning, and
the plots, from a list of run results (result.json dicts).

``compare`` calls :func:`write_comparison` after training; ``lifelong-kd report DIR...``
calls :func:`load_runs` and then the same function on finished run folders, so both give the
same files. Files written into the output folder:

- ``runs.csv``      one row per finished run, matrix kind and metric (tidy long format)
- ``summary.csv``   strategy x matrix kind x metric: mean, std, sem, ci_low, ci_high, n
- ``paired.csv``    strategy x matrix kind x metric: difference vs naive (same seeds), its 95%
                    confidence interval, the paired t-test's p, n (header only without naive)
- ``matrices.csv``  run x matrix kind x row x column: accuracy
- ``report.md``     what was run, the tables, the failed runs and the plots (PNG and SVG)

Matrix kinds: a class-il run has two accuracy matrices, ``task_agnostic`` (the prediction is
over every class seen) and ``task_aware`` (restricted to the task's classes); every metric
is computed on both. A task-il run's matrix is ``task_aware``, a domain-il run's is
``task_agnostic``.

Runs whose status is not ``finished`` (interrupted, diverged) are listed as failures and
left out of every table and plot. Intransigence needs the accuracy of joint training on tasks
0..j: it is computed for a run only when the same comparison holds a finished ``joint`` run
with ``strategy.mode = incremental`` and the same seed, and is absent (not zero) otherwise;
report.md says why. Metrics that mean nothing for a run (``joint`` with ``mode = final``:
every row but the last is the untrained model's) are nan (empty in the CSV files) and its
plots show only its last row (:func:`lifelong_kd.metrics.meaningful_metrics`); report.md
states the reason once. Confidence intervals are clipped to the range of their metric
(:data:`lifelong_kd.metrics.BOUNDS`, :func:`lifelong_kd.stats.clip_interval`).

Every result read for a report or a plot is checked first (:func:`validate_result`): a
result.json with a missing key or a ragged matrix is a UserError naming the file.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import UserError
from .metrics import (
    BOUNDS,
    DEFINITIONS,
    HIGHER_IS_BETTER,
    LAST_ROW_METRICS,
    REPORT_METRICS,
    all_metrics,
    intransigence,
    last_row_only,
    meaningful_metrics,
)
from .results import write_text
from .stats import describe, difference_bounds, paired

#: The strategy every other is compared with, seed by seed.
BASELINE = "naive"
#: Joint training: the upper bound, and the a*_j of intransigence.
JOINT = "joint"

TASK_AGNOSTIC = "task_agnostic"
TASK_AWARE = "task_aware"
MATRIX_TITLES = {
    TASK_AGNOSTIC: "task-agnostic matrix (no task identity at test time)",
    TASK_AWARE: "task-aware matrix (prediction restricted to the task's own classes)",
}

#: Configuration keys that may differ between runs of one report.
_PER_RUN_KEYS = ("seed", "strategies", "seeds")

RUNS_COLUMNS = ["run", "strategy", "seed", "matrix", "metric", "value"]
SUMMARY_COLUMNS = ["strategy", "matrix", "metric", "mean", "std", "sem", "ci_low", "ci_high",
                   "n"]
PAIRED_COLUMNS = ["strategy", "baseline", "matrix", "metric", "difference", "ci_low",
                  "ci_high", "p", "n"]
MATRICES_COLUMNS = ["run", "strategy", "seed", "matrix", "row", "column", "accuracy"]

_FLOAT_FORMAT = "%.10g"


# ----------------------------------------------------------------------------- the runs


def is_finished(result: dict[str, Any]) -> bool:
    """Whether a run finished its whole stream (only those are averaged)."""
    return result.get("status", "finished") == "finished"


def run_id(result: dict[str, Any]) -> str:
    """``strategy/seed-N``: a run's name in the CSV files (its folder under ``compare``)."""
    return f"{result['strategy']}/seed-{result['seed']}"


def _strategy_key(name: str) -> tuple[int, str]:
    return (0 if name == BASELINE else 2 if name == JOINT else 1, name)


def order_runs(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs in report order: naive first, joint last, the others by name; then by seed.

    The order does not depend on the order runs were found or run, so ``compare`` and
    ``report`` write the same files.
    """
    return sorted(results, key=lambda r: (_strategy_key(r["strategy"]), r["seed"]))


def strategies_of(results: Iterable[dict[str, Any]]) -> list[str]:
    """The strategies of ``results`` in report order."""
    return sorted({r["strategy"] for r in results}, key=_strategy_key)


def matrix_kinds(result: dict[str, Any]) -> dict[str, tuple[list[list[float]], list[float]]]:
    """The run's accuracy matrices by kind, each with its untrained accuracies (b_j)."""
    rows, initial = result["accuracy_matrix"], result.get("initial_accuracy", [])
    if result.get("scenario") == "task-il":
        return {TASK_AWARE: (rows, initial)}
    kinds = {TASK_AGNOSTIC: (rows, initial)}
    if result.get("scenario") == "class-il" and result.get("accuracy_matrix_task_aware"):
        kinds[TASK_AWARE] = (result["accuracy_matrix_task_aware"],
                             result.get("initial_accuracy_task_aware", initial))
    return kinds


def strategy_config(result: dict[str, Any]) -> dict[str, Any]:
    """The run's ``config["strategy"]`` (with its ``name``, even where the config lacks it)."""
    return {"name": result["strategy"], **result.get("config", {}).get("strategy", {})}


def _usable_joint(result: dict[str, Any]) -> bool:
    """A finished joint run trained incrementally: its R[j][j] is a*_j."""
    mode = strategy_config(result).get("mode", "incremental")
    return result["strategy"] == JOINT and is_finished(result) and mode == "incremental"


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def metric_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished run, matrix kind and metric: run, strategy, seed, matrix,
    metric, value (nan where a metric is undefined, e.g. bwt with one task).

    The metrics are computed from the stored matrices (so that every report has every
    metric, whichever version wrote the run). ``intransigence`` is there only for runs with
    a finished incremental ``joint`` run of the same seed among ``results``. Metrics that
    mean nothing for a run (see :func:`lifelong_kd.metrics.meaningful_metrics`) are nan.
    """
    finished = order_runs(r for r in results if is_finished(r))
    joint = {r["seed"]: r for r in finished if _usable_joint(r)}
    rows = []
    for r in finished:
        joint_kinds = matrix_kinds(joint[r["seed"]]) if r["seed"] in joint else {}
        for kind, (matrix, initial) in matrix_kinds(r).items():
            values = all_metrics(matrix, initial)
            if kind in joint_kinds and len(joint_kinds[kind][0]) == len(matrix):
                values["intransigence"] = intransigence(matrix, joint_kinds[kind][0])
            values = meaningful_metrics(values, strategy_config(r), len(matrix))
            for metric in REPORT_METRICS:
                if metric in values:
                    rows.append({"run": run_id(r), "strategy": r["strategy"], "seed": r["seed"],
                                 "matrix": kind, "metric": metric,
                                 "value": _num(values[metric])})
    return rows


def _values(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[int, float]]:
    """(strategy, matrix, metric) -> {seed: value}, in the order of ``rows``."""
    out: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        out[(row["strategy"], row["matrix"], row["metric"])][row["seed"]] = row["value"]
    return out


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy, matrix kind and metric, over the seeds (see :func:`stats.describe`):
    mean, std, sem, ci_low, ci_high (95%, Student's t, clipped to the metric's
    :data:`~lifelong_kd.metrics.BOUNDS`), n."""
    return [{"strategy": s, "matrix": k, "metric": m,
             **describe(list(by_seed.values()), bounds=BOUNDS.get(m))}
            for (s, k, m), by_seed in _values(rows).items()]


def paired_rows(rows: list[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Per strategy (other than ``baseline``), matrix kind and metric: the paired difference
    strategy - baseline over the seeds both ran (see :func:`stats.paired`), its interval
    clipped to the range of a difference of two values of the metric. Empty when the
    baseline is not among the runs."""
    values = _values(rows)
    out = []
    for (s, k, m), by_seed in values.items():
        base = values.get((baseline, k, m))
        if s == baseline or base is None:
            continue
        seeds = [seed for seed in by_seed if seed in base]
        res = paired([by_seed[x] for x in seeds], [base[x] for x in seeds],
                     bounds=difference_bounds(BOUNDS.get(m)))
        out.append({"strategy": s, "baseline": baseline, "matrix": k, "metric": m,
                    **{c: res[c] for c in ("difference", "ci_low", "ci_high", "p", "n")}})
    return out


def matrix_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished run, matrix kind, row i and column j: R[i][j]."""
    out = []
    for r in order_runs(x for x in results if is_finished(x)):
        for kind, (matrix, _) in matrix_kinds(r).items():
            for i, row in enumerate(matrix):
                for j, acc in enumerate(row):
                    out.append({"run": run_id(r), "strategy": r["strategy"], "seed": r["seed"],
                                "matrix": kind, "row": i, "column": j, "accuracy": acc})
    return out


def failure_list(
    results: Sequence[dict[str, Any]], failures: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``failures`` (strategy, seed, error) plus every unfinished run not already in it."""
    out = [dict(f) for f in failures or []]
    seen = {(f.get("strategy"), f.get("seed")) for f in out}
    for r in results:
        if not is_finished(r) and (r["strategy"], r["seed"]) not in seen:
            out.append({"strategy": r["strategy"], "seed": r["seed"],
                        "error": f"{r.get('status')}: {r.get('message', '')}"})
    return sorted(out, key=lambda f: (_strategy_key(str(f.get("strategy"))),
                                      _seed_key(f.get("seed"))))


def _seed_key(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int) else (1, str(seed))


# ----------------------------------------------------------------------------- writing


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
    finished = order_runs(r for r in results if is_finished(r))
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
    text = render_report(finished, summary, pairs, failure_list(results, failures), plots,
                         out_dir)
    write_text(files["report.md"], text)
    return [*files.values(), *plots]


# ----------------------------------------------------------------------------- plots


def _group(results: Sequence[dict[str, Any]], kind: str) -> dict[str, list[Any]]:
    """strategy -> its runs' matrices of ``kind``, with nan in the rows that mean nothing
    (see :func:`lifelong_kd.plots.mask_rows`)."""
    from .plots import mask_rows

    by: dict[str, list[Any]] = {}
    for r in order_runs(results):
        kinds = matrix_kinds(r)
        if kind in kinds:
            by.setdefault(r["strategy"], []).append(
                mask_rows(kinds[kind][0], strategy_config(r), len(kinds[kind][0])))
    return by


def comparison_plots(
    results: Sequence[dict[str, Any]], out_dir: Path, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """The comparison's plots, per matrix kind (class-il: a ``_task_aware`` copy of each):
    ``accuracy_matrices`` (mean over seeds, side by side on one colour scale),
    ``average_accuracy`` (tasks seen, line and 95% band), ``task_accuracy`` (each task over
    the stream, strategies overlaid), ``forgetting`` (per task, grouped bars with 95% CI).
    Rows that mean nothing for a run are left out (``joint`` with ``mode = final``: only its
    last row is drawn, and it has no forgetting bars). What each figure draws is bounded
    whatever the number of tasks (see :mod:`lifelong_kd.plots`); one figure exists at a
    time, closed after saving, also on an error. No ``formats``: no plots."""
    from .plots import closing_figures

    finished = [r for r in results if is_finished(r)]
    if not finished or not formats:
        return []
    kinds = list(dict.fromkeys(k for r in order_runs(finished) for k in matrix_kinds(r)))
    main = kinds[0]
    partial = {r["strategy"] for r in finished if len(r["accuracy_matrix"]) > 1
               and last_row_only(strategy_config(r)) is not None}
    paths: list[Path] = []
    with closing_figures():
        for kind in kinds:
            paths += _kind_plots(_group(finished, kind), kind, kind == main, len(kinds) > 1,
                                 partial, out_dir, formats)
    return paths


def _kind_plots(
    by: dict[str, list[Any]], kind: str, main: bool, several: bool, partial: set[str],
    out_dir: Path, formats: Sequence[str],
) -> list[Path]:
    """The four comparison plots of one matrix kind (see :func:`comparison_plots`)."""
    import numpy as np

    from .metrics import per_task_forgetting
    from .plots import (
        plot_accuracy_matrices,
        plot_average_accuracy,
        plot_forgetting,
        plot_task_accuracies_by_strategy,
        save,
        seen_average_curve,
    )

    paths: list[Path] = []
    suffix = "" if main else f"_{kind}"
    label = f" [{kind.replace('_', '-')}]" if several else ""
    means = {f"{s} (n={len(ms)})": np.mean(np.asarray(ms, dtype=float), axis=0)
             for s, ms in by.items()}
    paths += save(plot_accuracy_matrices(means, title="accuracy matrix (%), mean over seeds"
                                                      + label),
                  out_dir / f"accuracy_matrices{suffix}", formats)
    curves = {s: [seen_average_curve(m) for m in ms] for s, ms in by.items()}
    paths += save(plot_average_accuracy(curves, title="average accuracy on tasks seen "
                                                      "(band: 95% CI over seeds)" + label),
                  out_dir / f"average_accuracy{suffix}", formats)
    paths += save(plot_task_accuracies_by_strategy(
        by, title="accuracy on each task over the stream (band: 95% CI over seeds)" + label),
        out_dir / f"task_accuracy{suffix}", formats)
    forgetting = {s: [per_task_forgetting(m) for m in ms] for s, ms in by.items()
                  if s not in partial and len(ms[0]) > 1}
    if forgetting:
        paths += save(plot_forgetting(forgetting, title="forgetting per task (Chaudhry "
                                                        "et al. 2018), 95% CI" + label),
                      out_dir / f"forgetting{suffix}", formats)
    return paths


# ----------------------------------------------------------------------------- report.md


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def _p(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _settings(d: dict[str, Any], skip: Iterable[str] = ()) -> str:
    skip = set(skip)
    return ", ".join(f"{k} = {_value(v)}" for k, v in d.items() if k not in skip)


def _model_text(model: dict[str, Any], scenario: str) -> str:
    name = model.get("name", "?")
    relevant = {"mlp": ("hidden",), "convnet": ("channels",), "resnet18": ("nf",)}
    keys = [k for k in relevant.get(name, tuple(k for k in model if k not in ("name", "head")))]
    if scenario == "task-il":
        keys.append("head")
    return f"{name}" + (f" ({_settings({k: model[k] for k in keys if k in model})})"
                        if keys else "")


def _stream_text(stream: dict[str, Any]) -> str:
    relevant = {"split": ("classes_per_task", "class_order"), "permuted": ("permute_first",),
                "rotated": ("angles",)}
    kind = stream.get("kind", "?")
    keys = relevant.get(kind, tuple(k for k in stream if k not in ("kind", "scenario",
                                                                    "n_tasks")))
    shown = {k: stream[k] for k in keys if k in stream}
    return f"{kind}" + (f" ({_settings(shown)})" if shown else "")


def _train_text(train: dict[str, Any]) -> str:
    skip = {"iterations", "epochs", "eval_batch_size"}
    if train.get("optimizer") == "sgd":
        skip.add("betas")
    elif train.get("optimizer") == "adam":
        skip.add("momentum")
    length = (f"{train['iterations']} iterations per task" if train.get("iterations", 0) > 0
              else f"{train.get('epochs')} epoch(s) per task")
    return f"{length}; {_settings(train, skip)}"


def _options_read(name: str) -> tuple[set[str], tuple[str, ...] | None]:
    """(the options the preset ``name`` fixes, the options its strategy class reads: its
    ``OPTIONS``, None when the strategy is unknown to this version)."""
    from .strategies import strategy_preset

    try:
        preset = strategy_preset(name)
    except UserError:
        if name.startswith("avalanche:"):  # Avalanche is not installed here
            from .interop.avalanche import AvalancheStrategy

            return set(), AvalancheStrategy.OPTIONS
        return set(), None
    return set(preset.options), getattr(preset.cls, "OPTIONS", None)


def _strategy_options(results: Sequence[dict[str, Any]], name: str) -> str:
    """The options of strategy ``name`` that matter: among those its strategy class reads
    (its ``OPTIONS``; ``naive`` ignores ``mode``), those its preset fixes and those set to
    something other than the default."""
    from .config import StrategyConfig

    options = next(r.get("config", {}).get("strategy", {}) for r in results
                   if r["strategy"] == name)
    defaults = StrategyConfig().__dict__
    fixed, reads = _options_read(name)
    shown = {k: v for k, v in options.items()
             if k != "name" and (reads is None or k in reads)
             and (k in fixed or (k in defaults and _value(defaults[k]) != _value(v)))}
    return _settings(shown) if shown else "no options"


def _distinct(results: Sequence[dict[str, Any]], section: str, key: str) -> str:
    values = list(dict.fromkeys(str(r.get(section, {}).get(key)) for r in results))
    return " / ".join(values)


def _own_settings(first: dict[str, Any], run: dict[str, Any]) -> str:
    """The data, stream, model and training settings of ``run`` that differ from those of
    ``first`` (a preset's per-strategy overrides), as ``section.key = value``."""
    diffs = []
    for section in ("data", "stream", "model", "train"):
        mine, theirs = run.get(section, {}), first.get(section, {})
        diffs += [f"{section}.{k} = {_value(v)}" for k, v in mine.items()
                  if _value(v) != _value(theirs.get(k))]
    return ", ".join(diffs)


def _what_was_run(results: Sequence[dict[str, Any]]) -> list[str]:
    first = results[0]
    cfg = first.get("config", {})
    data = first.get("data", {})
    tasks = first.get("task_names") or []
    lines = [
        "## What was run",
        "",
        f"- **Benchmark**: `{first['benchmark']}`"
        + (f": {cfg['description']}" if cfg.get("description") else ""),
        f"- **Scenario**: {first['scenario']}, {first['n_tasks']} tasks"
        + (f" ({'; '.join(tasks)})" if tasks and len(tasks) <= 20 else ""),
        f"- **Stream**: {_stream_text(cfg.get('stream', {}))}",
        f"- **Model**: {_model_text(cfg.get('model', {}), first['scenario'])}",
        f"- **Training**: {_train_text(cfg.get('train', {}))}",
        "- **Strategies**:",
    ]
    for s in strategies_of(results):
        runs = [r for r in results if r["strategy"] == s]
        seeds = ", ".join(str(r["seed"]) for r in runs)
        secs = sum(r.get("timing", {}).get("total_seconds", 0.0) for r in runs) / len(runs)
        own = _own_settings(cfg, runs[0].get("config", {}))
        lines.append(f"  - `{s}`: {_strategy_options(results, s)}"
                     + (f"; its own settings: {own}" if own else "")
                     + f"; seeds {seeds}; {secs:.1f} s per run on average")
    seeds = sorted({r["seed"] for r in results})
    lines += [
        f"- **Seeds**: {', '.join(str(s) for s in seeds)}",
        f"- **Data**: {data.get('dataset')} from `{data.get('path')}`, "
        f"{data.get('n_train')} training and {data.get('n_test')} test examples"
        + (f" (subsets: {data.get('train_subset')} train, {data.get('test_subset')} test)"
           if data.get("train_subset") or data.get("test_subset") else "")
        + f"; sha256 fingerprint `{_distinct(results, 'data', 'fingerprint')}`",
        f"- **Software**: python {_distinct(results, 'environment', 'python')}, "
        f"torch {_distinct(results, 'environment', 'torch')}, "
        f"torchvision {_distinct(results, 'environment', 'torchvision')}, "
        f"numpy {_distinct(results, 'environment', 'numpy')}, "
        f"lifelong-kd {_distinct(results, 'environment', 'lifelong_kd')} "
        f"(git commit {_distinct(results, 'environment', 'git_commit')}); "
        f"{_distinct(results, 'environment', 'platform')}, device "
        f"{cfg.get('train', {}).get('device', 'cpu')}",
        "",
    ]
    return lines


def _best(summary: list[dict[str, Any]], kind: str, metric: str) -> set[str]:
    """Strategies (joint excluded) with the best mean for ``metric`` (ties all marked)."""
    cands = [row for row in summary if row["matrix"] == kind and row["metric"] == metric
             and row["strategy"] != JOINT and not math.isnan(row["mean"])]
    if len(cands) < 2:
        return set()
    pick = max if metric in HIGHER_IS_BETTER else min
    best = pick(row["mean"] for row in cands)
    return {row["strategy"] for row in cands if math.isclose(row["mean"], best, abs_tol=1e-12)}


def _interval_text(mean: float, low: float, high: float) -> str:
    """`` ± h`` for a symmetric interval, `` [low, high]`` for one clipped at a bound, ``""``
    without one (percent)."""
    if math.isnan(low) or math.isnan(high):
        return ""
    if math.isclose(high - mean, mean - low, abs_tol=1e-9):
        return f" ± {100 * (high - mean):.2f}"
    return f" [{_pct(low)}, {_pct(high)}]"


def _metrics_table(summary: list[dict[str, Any]], kind: str, strategies: list[str],
                   n_runs: dict[str, int]) -> list[str]:
    metrics = [m for m in REPORT_METRICS
               if any(r["matrix"] == kind and r["metric"] == m for r in summary)]
    cell = {(r["strategy"], r["metric"]): r for r in summary if r["matrix"] == kind}
    arrow = {m: "↑" if m in HIGHER_IS_BETTER else "↓" for m in metrics}
    lines = ["| strategy | runs | " + " | ".join(f"{m} {arrow[m]}" for m in metrics) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    best = {m: _best(summary, kind, m) for m in metrics}
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
        lines.append(f"| {s} | {n_runs[s]} | " + " | ".join(cells) + " |")
    return lines


def _paired_section(summary: list[dict[str, Any]], pairs: list[dict[str, Any]],
                    results: Sequence[dict[str, Any]], kinds: list[str]) -> list[str]:
    lines = [f"## Paired comparison with `{BASELINE}` (same seeds)", ""]
    strategies = strategies_of(results)
    if BASELINE not in strategies:
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
    base_seeds = {r["seed"] for r in results if r["strategy"] == BASELINE}
    for s in strategies:
        missing = sorted(r["seed"] for r in results
                         if r["strategy"] == s and r["seed"] not in base_seeds)
        if s != BASELINE and missing:
            lines.append(f"- `{s}` seed(s) {', '.join(map(str, missing))} have no `{BASELINE}` "
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
            lines.append(f"| {p['strategy']} | {p['metric']} {arrow} | "
                         f"{_pct(p['difference'], True)} | {ci} | {_p(p['p'])} | {p['n']} |")
        lines.append("")
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


def _intransigence_absent(results: Sequence[dict[str, Any]]) -> str:
    """Why report.md has no intransigence column (the real reason)."""
    joints = [r for r in results if r["strategy"] == JOINT]
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


def _last_row_only_note(results: Sequence[dict[str, Any]]) -> list[str]:
    """The one statement of why some strategies' metrics are n/a (``joint``, mode final)."""
    lines = []
    for s in strategies_of(results):
        run = next(r for r in results if r["strategy"] == s)
        reason = last_row_only(strategy_config(run)) if run["n_tasks"] > 1 else None
        if reason:
            kept = ", ".join(f"`{m}`" for m in LAST_ROW_METRICS)
            lines += [f"{reason}. Only what its last row gives ({kept}) is reported; "
                      "its other metrics mean nothing and are n/a here, empty in the CSV "
                      "files and null in its result.json, and its plots show only its last "
                      "row (no forgetting bars).", ""]
    return lines


_PLOT_CAPTIONS = {
    "accuracy_matrices": "Accuracy matrices, mean over seeds, on one colour scale: row i is "
                         "after training task i, column j the task evaluated.",
    "average_accuracy": "Average accuracy over the tasks seen so far after each task; line: "
                        "mean over seeds, band: 95% confidence interval.",
    "task_accuracy": "Each task's accuracy as the stream goes on, from when it is learnt; the "
                     "strategies overlaid, bands: 95% confidence interval over seeds.",
    "forgetting": "Forgetting per task (Chaudhry et al. 2018: best earlier accuracy minus "
                  "final), mean over seeds with 95% confidence intervals.",
}


def render_report(
    results: Sequence[dict[str, Any]],
    summary: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    plots: Sequence[Path],
    out_dir: Path,
) -> str:
    """report.md as text (``results``: the finished runs, in report order)."""
    results = order_runs(results)
    if not results:
        title = "# Comparison report"
        lines = [title, "", "No run finished, so there is nothing to compare.", ""]
    else:
        first = results[0]
        lines = [f"# Comparison report: {first['benchmark']}", ""]
        lines += _what_was_run(results)
        strategies = strategies_of(results)
        n_runs = {s: sum(r["strategy"] == s for r in results) for s in strategies}
        kinds = list(dict.fromkeys(k for r in results for k in matrix_kinds(r)))
        lines += [
            "## Metrics (%, mean ± 95% CI over seeds)",
            "",
            "Each cell: the mean over seeds ± the half-width of its 95% confidence interval "
            "(Student's t with n - 1 degrees of freedom; none with one seed), in percent or "
            "percentage points; an interval that reached the range the metric can take is "
            "clipped to it and shown as [low, high]. ↑: higher is better, ↓: lower is "
            "better. **Bold**: the best "
            f"mean per metric{' (`joint`, the upper bound, is not ranked)' if JOINT in n_runs else ''}. "
            "`runs`: finished runs; a cell's own (n=...) when a metric is undefined for some.",
            "",
        ]
        if not any(r["metric"] == "intransigence" for r in summary):
            lines += [_intransigence_absent(results), ""]
        lines += _last_row_only_note(results)
        for kind in kinds:
            if len(kinds) > 1:
                lines += [f"### {MATRIX_TITLES[kind]}", ""]
            lines += _metrics_table(summary, kind, strategies, n_runs) + [""]
        lines += ["Definitions (R[i][j]: accuracy on task j after training task i, T tasks; "
                  "three different quantities are called \"forgetting\" in the literature, "
                  "each has its own column here):", ""]
        shown = [m for m in REPORT_METRICS if any(r["metric"] == m for r in summary)]
        lines += [f"- `{m}` ({'↑' if m in HIGHER_IS_BETTER else '↓'}): {DEFINITIONS[m]}"
                  for m in shown]
        lines += [f"- 95% confidence intervals: {INTERVAL_METHOD}", ""]
        lines += _paired_section(summary, pairs, results, kinds)
    lines += ["## Runs that did not finish", ""]
    if failures:
        lines += ["Left out of every table and plot:", ""]
        lines += [f"- `{f.get('strategy')}` seed {f.get('seed')}: {f.get('error')}"
                  for f in failures]
    else:
        lines.append("None: every run finished.")
    lines.append("")
    if plots:
        lines += ["## Plots", ""]
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
    lines += [
        "## Files",
        "",
        "- `summary.csv`: strategy x matrix x metric: mean, std, sem, ci_low, ci_high, n",
        f"- `paired.csv`: strategy x matrix x metric: difference vs `{BASELINE}`, ci_low, "
        "ci_high, p, n",
        "- `runs.csv`: one row per run, matrix and metric (tidy long format)",
        "- `matrices.csv`: run, matrix, row, column, accuracy",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- loading

_SCENARIOS = ("task-il", "class-il", "domain-il")
_STATUSES = ("finished", "interrupted", "diverged")
#: Sections of a result (and of its config) that must be tables where they are present.
_TABLES = ("config", "data", "environment", "timing")
_CONFIG_TABLES = ("data", "stream", "model", "train", "strategy")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


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


def validate_result(result: Any, path: Path | str) -> dict[str, Any]:
    """``result`` (read from ``path``) when it holds what the reports and plots read; a
    UserError naming ``path`` and the first problem otherwise (a missing key, a value of the
    wrong type, a ragged matrix, an accuracy outside [0, 1]).

    Required: ``benchmark``, ``strategy``, ``scenario`` (task-il, class-il, domain-il),
    ``seed`` (an integer), ``n_tasks`` (>= 1), ``accuracy_matrix`` (n_tasks rows of n_tasks
    accuracies when ``status`` is finished, the default; at most n_tasks rows otherwise) and
    ``initial_accuracy`` (n_tasks accuracies). Checked where present: ``status``,
    ``task_names``, the class-il task-aware matrix and initial accuracies (the same shapes),
    and that ``config`` (with its sections), ``data``, ``environment`` and ``timing`` are
    tables.
    """
    def bad(problem: str) -> UserError:
        return UserError(f"{path} is not a usable lifelong-kd result: {problem}")

    if not isinstance(result, dict):
        raise bad(f"it holds a {type(result).__name__}, not a JSON object")
    for key in ("benchmark", "strategy", "scenario", "seed", "n_tasks", "accuracy_matrix",
                "initial_accuracy"):
        if key not in result:
            raise bad(f"the key `{key}` is missing")
    for key in ("benchmark", "strategy", "scenario"):
        if not isinstance(result[key], str) or not result[key]:
            raise bad(f"`{key}` is {result[key]!r}, not a name")
    if result["scenario"] not in _SCENARIOS:
        raise bad(f"`scenario` is {result['scenario']!r}, not one of {', '.join(_SCENARIOS)}")
    for key, low in (("seed", None), ("n_tasks", 1)):
        v = result[key]
        if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
            raise bad(f"`{key}` is {v!r}, not an integer" + (f" >= {low}" if low else ""))
    status = result.get("status", "finished")
    if status not in _STATUSES:
        raise bad(f"`status` is {status!r}, not one of {', '.join(_STATUSES)}")
    n, finished = result["n_tasks"], status == "finished"
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
    if problem:
        raise bad(problem)
    names = result.get("task_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(x, str) for x in names)):
        raise bad("`task_names` is not a list of names")
    for key in _TABLES:
        if key in result and not isinstance(result[key], dict):
            raise bad(f"`{key}` is {type(result[key]).__name__}, not a table")
    config = result.get("config", {})
    for key in _CONFIG_TABLES:
        if key in config and not isinstance(config[key], dict):
            raise bad(f"`config.{key}` is {type(config[key]).__name__}, not a table")
    for section, key in (("timing", "total_seconds"), ("train", "iterations")):
        table = result.get(section, {}) if section == "timing" else config.get(section, {})
        where = section if section == "timing" else f"config.{section}"
        if key in table and not _is_number(table[key]):
            raise bad(f"`{where}.{key}` is {table[key]!r}, not a number")
    return result


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _identity(result: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for runs to be reported together: everything but the strategy
    and the seed."""
    cfg = {k: v for k, v in result.get("config", {}).items()
           if k not in _PER_RUN_KEYS and k != "strategy"}
    return {"benchmark": result.get("benchmark"), "scenario": result.get("scenario"),
            "n_tasks": result.get("n_tasks"),
            "data fingerprint": result.get("data", {}).get("fingerprint"),
            **_flat(cfg, "")}


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = list(dict.fromkeys([*a, *b]))
    return [f"{k} ({_value(a.get(k))} vs {_value(b.get(k))})" for k in keys
            if a.get(k) != b.get(k)]


def check_compatible(runs: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Raise a UserError unless the runs differ only in strategy and seed: the same
    benchmark, scenario, data, model and training settings; the same options for every run
    of one strategy; at most one run per strategy and seed."""
    if not runs:
        return
    ref_path, ref = runs[0]
    ref_id = _identity(ref)
    by_strategy: dict[str, tuple[Path, dict[str, Any]]] = {}
    seen: dict[tuple[str, Any], Path] = {}
    for path, r in runs:
        diff = _differences(ref_id, _identity(r))
        if diff:
            raise UserError(
                f"cannot report these runs together: {ref_path} and {path} differ beyond "
                f"strategy and seed: {'; '.join(diff[:6])}"
                + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
                + ". Report them separately (one `lifelong-kd report` per configuration)."
            )
        options = _flat(r.get("config", {}).get("strategy", {}))
        if r["strategy"] in by_strategy:
            other_path, other = by_strategy[r["strategy"]]
            diff = _differences(other, options)
            if diff:
                raise UserError(
                    f"cannot report these runs together: the `{r['strategy']}` runs "
                    f"{other_path} and {path} have different options: {'; '.join(diff)}"
                )
        else:
            by_strategy[r["strategy"]] = (path, options)
        key = (r["strategy"], r["seed"])
        if key in seen:
            raise UserError(f"two runs of `{r['strategy']}` with seed {r['seed']}: {seen[key]} "
                            f"and {path}; pass only one of them")
        seen[key] = path


def load_runs(
    dirs: Sequence[Path],
) -> tuple[list[tuple[Path, dict[str, Any]]], list[dict[str, Any]]]:
    """The runs under ``dirs`` (each a run folder, a result.json, or a folder searched
    recursively, such as a comparison folder), checked with :func:`check_compatible`; and
    the failures: unfinished runs, and run folders with a checkpoint but no result.json."""
    from .results import read_result

    found: dict[Path, None] = {}
    failures: list[dict[str, Any]] = []
    for d in map(Path, dirs):
        if d.is_file():
            found[d.resolve()] = None
            continue
        if not d.is_dir():
            raise UserError(f"{d} does not exist")
        files = sorted(d.rglob("result.json"))
        checkpoints = [c for c in sorted(d.rglob("checkpoint.pt"))
                       if not (c.parent / "result.json").is_file()]
        if not files and not checkpoints:
            raise UserError(f"no result.json under {d}: give run folders or a comparison "
                            "folder written by `lifelong-kd run` or `compare`")
        for f in files:
            found[f.resolve()] = None
        for c in checkpoints:
            seed: Any = c.parent.name.removeprefix("seed-")
            seed = int(seed) if seed.isdigit() else c.parent.name
            failures.append({"strategy": c.parent.parent.name, "seed": seed,
                             "error": f"incomplete: {c.parent} has a checkpoint but no "
                                      "result.json (resume it with --resume)"})
    runs = [(p.parent, validate_result(read_result(p), p)) for p in found]
    check_compatible(runs)
    for _, r in runs:
        if not is_finished(r):
            failures.append({"strategy": r["strategy"], "seed": r["seed"],
                             "error": f"{r.get('status')}: {r.get('message', '')}"})
    return runs, failures
