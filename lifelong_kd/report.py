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
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .aggregate import (
    BASELINE,
    CONTINUAL,
    COST_METRICS,
    COSTS,
    JOINT,
    MATRICES_COLUMNS,
    PAIRED_COLUMNS,
    RUNS_COLUMNS,
    SUMMARY_COLUMNS,
    Run,
    continual_values,
    failure_list,
    finished_runs,
    has_model_costs,
    labelled,
    matrix_rows,
    metric_rows,
    paired_rows,
    summary_rows,
    teacher_matrix,
    variants_of,
)
from .errors import UserError
from .metrics import (
    CONTINUAL_DEFINITIONS,
    CONTINUAL_HIGHER_IS_BETTER,
    CONTINUAL_METRICS,
    DEFINITIONS,
    HIGHER_IS_BETTER,
    LAST_ROW_METRICS,
    REPORT_METRICS,
)
from .plots import comparison_plots
from .results import (
    LEGACY_STRATEGY_OPTIONS,
    TASK_AGNOSTIC,
    TASK_AWARE,
    is_finished,
    last_row_only,
    matrix_kinds,
    strategy_config,
    write_text,
)

MATRIX_TITLES = {
    TASK_AGNOSTIC: "task-agnostic matrix (no task identity at test time)",
    TASK_AWARE: "task-aware matrix (prediction restricted to the task's own classes)",
}

_FLOAT_FORMAT = "%.10g"


# ----------------------------------------------------------------------------- Markdown text

#: Runs of whitespace (line breaks of every kind included) and control characters: one space.
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f]+")
#: Written as HTML entities: no tag, comment or autolink (``<javascript:...>``) can open.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: Backslash-escaped wherever they are (CommonMark's escapable ASCII punctuation, GFM's ``|``
#: and ``~``): the escape itself, code spans, emphasis, strikethrough, headings, table cells,
#: and links and images: with ``(`` escaped, ``](`` cannot give a link its destination, so
#: ``[`` and ``]`` stay as they are (variant names such as ``lwf [train.lr = 0.1]`` hold
#: them), report.md having no link reference definitions.
_ESCAPED = frozenset("\\`*~#|()!")
#: A URL scheme that runs or carries content: its colon is escaped, so that no renderer that
#: links bare URLs makes a link of it (CommonMark does not: without ``<`` it is text).
_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data):")
#: What could start a block at the start of a line once the characters above are escaped: a
#: list item (``- ``, ``+ ``, ``1. ``), a thematic break or setext underline (``---``,
#: ``===``); a marker followed by a letter or digit (``-0.5``, ``1.5``) starts none.
_BLOCK_START = re.compile(r"(?:[-+=]|\d{1,9}\.)(?![^\W_])")


def _one_line(value: Any) -> str:
    """``str(value)`` on one line, without control characters or surrounding spaces."""
    return _BREAKS.sub(" ", str(value)).strip()


def markdown_text(value: Any) -> str:
    """``value`` (any text a result.json, a preset or a failure brings: names, descriptions,
    settings, error messages) as Markdown that shows it as written and does nothing else.

    Issue 25: report.md is read on GitHub and rendered to HTML; a text written into it as is
    could add tags (``<script>``), headings, list items, quotes, table cells, emphasis,
    code, links or images. Here the text is put on one line (line breaks become spaces: no
    block can start inside it), ``&``, ``<``, ``>`` become entities, the punctuation of
    :data:`_ESCAPED` is backslash-escaped, and so is ``_`` where it could open or close
    emphasis (not between two letters or digits: ``weight_decay`` stays), the colon of a
    ``javascript:`` (``vbscript:``, ``data:``) scheme and a list or setext marker at the
    start. Ordinary names and settings (``lwf``, ``lwf-mammoth``, ``avalanche:Replay``,
    ``lwf [train.lr = 0.1]``) come out unchanged.
    """
    text = _one_line(value)
    out = []
    for i, ch in enumerate(text):
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _ESCAPED:
            out.append(f"\\{ch}")
        elif ch == "_" and not (0 < i < len(text) - 1 and text[i - 1].isalnum()
                                and text[i + 1].isalnum()):
            out.append("\\_")
        else:
            out.append(ch)
    escaped = _SCHEME.sub(r"\1\\:", "".join(out))
    start = _BLOCK_START.match(escaped)
    if start:
        end = start.end() - 1  # the marker's last character: "-", "+", "=" or the "." of "1."
        escaped = f"{escaped[:end]}\\{escaped[end:]}"
    return escaped


#: What a code span cannot hold as it is: its closing backtick, a table's cell separator,
#: and what would read as markup in a renderer that does not keep code spans literal.
_CODE_UNSAFE = frozenset("`|<>&\\")


def markdown_code(value: Any) -> str:
    """``value`` as an inline code span (`` `lwf` ``) when the span shows it as written: on one
    line (:func:`markdown_text`), without a backtick, ``|``, ``<``, ``>``, ``&``, ``\\`` or a
    ``javascript:`` scheme; otherwise as :func:`markdown_text`, plain escaped text."""
    text = _one_line(value)
    if text and not (_CODE_UNSAFE & set(text)) and not _SCHEME.search(text):
        return f"`{text}`"
    return markdown_text(value)


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


# ----------------------------------------------------------------------------- report.md


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
    """``key = value, ...`` of ``d`` (less ``skip``) as report.md shows settings, each key and
    value escaped (:func:`markdown_text`): they come from result.json."""
    skip = set(skip)
    return ", ".join(f"{markdown_text(k)} = {markdown_text(_value(v))}" for k, v in d.items()
                     if k not in skip)


def _model_text(model: dict[str, Any], scenario: str) -> str:
    name = model.get("name", "?")
    relevant = {"mlp": ("hidden",), "convnet": ("channels",), "resnet18": ("nf",)}
    keys = [k for k in relevant.get(name, tuple(k for k in model if k not in ("name", "head")))]
    if scenario == "task-il":
        keys.append("head")
    return markdown_text(name) + (f" ({_settings({k: model[k] for k in keys if k in model})})"
                                  if keys else "")


def _stream_text(stream: dict[str, Any]) -> str:
    relevant = {"split": ("classes_per_task", "class_order"), "permuted": ("permute_first",),
                "rotated": ("angles",)}
    kind = stream.get("kind", "?")
    keys = relevant.get(kind, tuple(k for k in stream if k not in ("kind", "scenario",
                                                                    "n_tasks")))
    shown = {k: stream[k] for k in keys if k in stream}
    return markdown_text(kind) + (f" ({_settings(shown)})" if shown else "")


def _train_text(train: dict[str, Any]) -> str:
    skip = {"iterations", "epochs", "eval_batch_size"}
    if train.get("optimizer") == "sgd":
        skip.add("betas")
    elif train.get("optimizer") == "adam":
        skip.add("momentum")
    length = (f"{markdown_text(train['iterations'])} iterations per task"
              if train.get("iterations", 0) > 0
              else f"{markdown_text(train.get('epochs'))} epoch(s) per task")
    return f"{length}; {_settings(train, skip)}"


def _legacy_options(name: str) -> tuple[set[str], tuple[str, ...] | None]:
    """For a result written before it recorded its ``options``: (the options the preset
    ``name`` fixes, the options its strategy class reads; None when the strategy is unknown
    to this version), from the strategy classes of this version."""
    from .strategies import strategy_preset
    from .strategies.options import option_names

    try:
        preset = strategy_preset(name)
    except UserError:
        if name.startswith("avalanche:"):  # Avalanche is not installed here
            return set(), ("kwargs",)
        return set(), None
    return set(preset.options), option_names(preset.cls.Options)


def _strategy_options(run: Run) -> str:
    """The options of ``run``'s strategy that matter: those its preset fixes and those set to
    something other than the default, among those its strategy reads (what result.json's
    ``declared`` records; for an older file, what the strategy classes say: ``naive`` ignores
    ``mode``)."""
    options = dict(run.result.get("config", {}).get("strategy", {}))
    options.pop("name", None)
    declared = run.result.get("declared")
    if isinstance(declared, dict):
        defaults = declared.get("option_defaults", {})
        fixed = set(declared.get("preset_options", []))
        shown = {k: v for k, v in options.items()
                 if k in fixed or k not in defaults or _value(defaults[k]) != _value(v)}
    else:
        defaults = LEGACY_STRATEGY_OPTIONS
        fixed, reads = _legacy_options(run.strategy)
        shown = {k: v for k, v in options.items()
                 if (reads is None or k in reads)
                 and (k in fixed or (k in defaults and _value(defaults[k]) != _value(v)))}
    return _settings(shown) if shown else "no options"


def _distinct(results: Sequence[dict[str, Any]], section: str, key: str) -> str:
    """The distinct values of ``section.key`` over ``results``, joined by `` / `` (as
    written: the caller escapes them)."""
    values = list(dict.fromkeys(str(r.get(section, {}).get(key)) for r in results))
    return " / ".join(values)


def _software(results: Sequence[dict[str, Any]], key: str) -> str:
    """The distinct versions of ``environment.key``, escaped (:func:`markdown_text`)."""
    return markdown_text(_distinct(results, "environment", key))


def _own_settings(first: dict[str, Any], run: dict[str, Any]) -> str:
    """The model, training, memory and teacher settings of ``run`` that differ from those of
    ``first`` (a preset's per-strategy overrides), as ``section.key = value``. (The data and the
    stream are the same for every run of a report: see
    :func:`lifelong_kd.results.check_compatible`.)"""
    diffs = []
    for section in ("model", "train", "memory", "teacher"):
        mine, theirs = run.get(section, {}), first.get(section, {})
        diffs += [f"{section}.{markdown_text(k)} = {markdown_text(_value(v))}"
                  for k, v in mine.items() if _value(v) != _value(theirs.get(k))]
    return ", ".join(diffs)


def _teacher_text(result: dict[str, Any]) -> str:
    """The network and strategy of a run's own teacher (``kd``, ``compress``; empty for
    runs without a teacher block): ``teacher.*`` where set, the student's model elsewhere."""
    if not isinstance(result.get("teacher"), dict):
        return ""
    from .config import teacher_given

    cfg = result.get("config", {})
    model, teacher = cfg.get("model", {}), cfg.get("teacher", {})
    merged = {**model, **teacher_given(teacher)}
    declared = result.get("declared")
    if isinstance(declared, dict) and "teacher_strategy" in declared:
        name = declared["teacher_strategy"]
    else:  # a file written before it was recorded: ask the strategy classes
        from .strategies import strategy_preset

        name = teacher.get("strategy", "naive")
        with contextlib.suppress(UserError):
            name = (getattr(strategy_preset(result["strategy"]).cls, "TEACHER_STRATEGY", None)
                    or name)
    settings = teacher.get("settings") or {}
    extra = f" with {_settings(settings)}" if settings else ""
    return (f"{_model_text(merged, result['scenario'])}, trained with {markdown_code(name)}"
            f"{extra}")


def _what_was_run(results: Sequence[dict[str, Any]]) -> list[str]:
    """The "What was run" section: the shared settings (those of the first run in report
    order), then one line per variant with its options and its own settings."""
    runs = labelled(results)
    results = [run.result for run in runs]
    first = results[0]
    cfg = first.get("config", {})
    data = first.get("data", {})
    tasks = first.get("task_names") or []
    lines = [
        "## What was run",
        "",
        f"- **Benchmark**: {markdown_code(first['benchmark'])}"
        + (f": {markdown_text(cfg['description'])}" if cfg.get("description") else ""),
        f"- **Scenario**: {markdown_text(first['scenario'])}, {first['n_tasks']} tasks"
        + (f" ({'; '.join(map(markdown_text, tasks))})" if tasks and len(tasks) <= 20 else ""),
        f"- **Stream**: {_stream_text(cfg.get('stream', {}))}",
        f"- **Model**: {_model_text(cfg.get('model', {}), first['scenario'])}",
        f"- **Training**: {_train_text(cfg.get('train', {}))}",
        "- **Strategies**:",
    ]
    for label in variants_of(runs):
        mine = [run for run in runs if run.label == label]
        seeds = ", ".join(str(run.seed) for run in mine)
        secs = sum(run.result.get("timing", {}).get("total_seconds", 0.0)
                   for run in mine) / len(mine)
        own = _own_settings(cfg, mine[0].result.get("config", {}))
        teacher = _teacher_text(mine[0].result)
        lines.append(f"  - {markdown_code(label)}: {_strategy_options(mine[0])}"
                     + (f"; its own settings: {own}" if own else "")
                     + (f"; teacher: {teacher}" if teacher else "")
                     + f"; seeds {seeds}; {secs:.1f} s per run on average")
    seeds = sorted({r["seed"] for r in results})
    lines += [
        f"- **Seeds**: {', '.join(str(s) for s in seeds)}",
        f"- **Data**: {markdown_text(data.get('dataset'))} from "
        f"{markdown_code(data.get('path'))}, {markdown_text(data.get('n_train'))} training and "
        f"{markdown_text(data.get('n_test'))} test examples"
        + (f" (subsets: {markdown_text(data.get('train_subset'))} train, "
           f"{markdown_text(data.get('test_subset'))} test)"
           if data.get("train_subset") or data.get("test_subset") else "")
        + f"; sha256 fingerprint {markdown_code(_distinct(results, 'data', 'fingerprint'))}",
        f"- **Software**: python {_software(results, 'python')}, "
        f"torch {_software(results, 'torch')}, "
        f"torchvision {_software(results, 'torchvision')}, "
        f"numpy {_software(results, 'numpy')}, "
        f"lifelong-kd {_software(results, 'lifelong_kd')} "
        f"(git commit {_software(results, 'git_commit')}); "
        f"{_software(results, 'platform')}, device "
        f"{markdown_text(cfg.get('train', {}).get('device', 'cpu'))}",
        "",
    ]
    return lines


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


def _interval_text(mean: float, low: float, high: float) -> str:
    """`` ± h`` for a symmetric interval, `` [low, high]`` for one clipped at a bound, ``""``
    without one (percent)."""
    if math.isnan(low) or math.isnan(high):
        return ""
    if math.isclose(high - mean, mean - low, abs_tol=1e-9):
        return f" ± {100 * (high - mean):.2f}"
    return f" [{_pct(low)}, {_pct(high)}]"


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


# ------------------------------------------------------------------- teacher and costs


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


def _count(v: float) -> str:
    """A count (parameters, FLOPs, bytes) with thousands separators; n/a for nan."""
    if math.isnan(v):
        return "n/a"
    return f"{round(v):,}" if float(v).is_integer() else f"{v:,.1f}"


def _micro(v: float) -> str:
    """Seconds as microseconds, two decimals; n/a for nan."""
    return "n/a" if math.isnan(v) else f"{1e6 * v:.2f}"


def _costs_section(summary: list[dict[str, Any]], variants: list[str],
                   n_runs: dict[str, int]) -> list[str]:
    """The "Costs" section: per variant, the means over its runs of what result.json's
    ``costs`` records (n/a where a run does not record it; — for no teacher)."""
    cells = _cells(summary)
    lines = [
        "## Costs (mean over seeds)",
        "",
        "What each variant's model costs: its parameters, forward FLOPs per example "
        "(PyTorch's counter, `torch.utils.flop_counter`: a multiply-add is 2 FLOPs) and "
        "bytes; the parameters of the teacher the strategy holds (— for none); the "
        "memory's bytes (exemplars and stored outputs); inference latency per example on "
        "the run's device at batch size 1 and 256 (median of repeated timings after "
        "training, µs per example); the training wall time.",
        "",
        "| strategy | runs | parameters | FLOPs / example | model bytes | teacher parameters "
        "| memory bytes | latency batch 1 (µs) | latency batch 256 (µs) | training (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in variants:
        mean = {metric: _mean(cells, s, COSTS, metric) for metric in COST_METRICS}
        teacher = (_count(mean["teacher_parameters"])
                   if (s, COSTS, "teacher_parameters") in cells else "—")
        seconds = mean["train_seconds"]
        shown = [_count(mean["parameters"]), _count(mean["flops_per_example"]),
                 _count(mean["model_bytes"]), teacher, _count(mean["memory_bytes"]),
                 _micro(mean["latency_batch_1"]), _micro(mean["latency_batch_256"]),
                 "n/a" if math.isnan(seconds) else f"{seconds:.1f}"]
        lines.append(f"| {markdown_text(s)} | {n_runs[s]} | " + " | ".join(shown) + " |")
    return [*lines, ""]


def _ratio(v: float) -> str:
    """A ratio: two decimals, two significant digits below 0.1; n/a for nan."""
    if math.isnan(v) or math.isinf(v):
        return "n/a"
    return f"{v:.2f}" if v == 0 or abs(v) >= 0.1 else f"{v:.2g}"


def kept_per_parameter(summary: list[dict[str, Any]], runs: Sequence[Run],
                       kind: str) -> list[dict[str, Any]]:
    """The rows of the table "Accuracy kept per parameter", one per variant whose runs
    record their parameters, in report order.

    ACC: the variant's final average accuracy (``average_accuracy`` of the matrix ``kind``),
    P its parameters (means over its runs). Its reference: its own teacher when its runs
    record one (ACC_ref: the teacher's ``average_accuracy``, P_ref: ``teacher_parameters``,
    over the same runs); otherwise the variant of the same strategy with the most
    parameters in this comparison (the first in report order on a tie; possibly itself).
    kept = ACC / ACC_ref, share = P / P_ref, kept_per_parameter = kept / share. Each row:
    strategy, parameters, acc, reference (``its teacher`` or a variant),
    reference_parameters, reference_acc, kept, share, kept_per_parameter.
    """
    cells = _cells(summary)
    scenario = str(runs[0].result.get("scenario")) if runs else ""
    teacher = teacher_matrix(kind, scenario)
    strategy_of = {run.label: run.strategy for run in runs}
    params = {s: _mean(cells, s, COSTS, "parameters") for s in variants_of(runs)}
    params = {s: p for s, p in params.items() if not math.isnan(p)}
    out = []
    for s, p in params.items():
        acc = _mean(cells, s, kind, "average_accuracy")
        if (s, teacher, "average_accuracy") in cells:
            ref = "its teacher"
            ref_acc = _mean(cells, s, teacher, "average_accuracy")
            ref_p = _mean(cells, s, COSTS, "teacher_parameters")
        else:
            same = [v for v in params if strategy_of[v] == strategy_of[s]]
            ref = max(same, key=lambda v: params[v])  # the first of the largest
            ref_acc, ref_p = _mean(cells, ref, kind, "average_accuracy"), params[ref]
        if ref == s:
            kept = share = 1.0
        else:
            kept = acc / ref_acc if ref_acc else math.nan
            share = p / ref_p if ref_p else math.nan
        out.append({"strategy": s, "parameters": p, "acc": acc, "reference": ref,
                    "reference_parameters": ref_p, "reference_acc": ref_acc, "kept": kept,
                    "share": share, "kept_per_parameter": kept / share if share else math.nan})
    return out


def _kept_section(summary: list[dict[str, Any]], runs: Sequence[Run], kind: str) -> list[str]:
    """The table "Accuracy kept per parameter" (see :func:`kept_per_parameter`)."""
    rows = kept_per_parameter(summary, runs, kind)
    if not rows:
        return []
    lines = [
        "## Accuracy kept per parameter",
        "",
        "Each variant's final average accuracy ACC (`average_accuracy` of the "
        f"{kind.replace('_', '-')} matrix) and parameters P, means over seeds, against its "
        "reference's (its own teacher when its runs record one, over the same runs; "
        "otherwise the variant of the same strategy with the most parameters here): kept = "
        "ACC / ACC_ref, parameter share = P / P_ref and kept per parameter = kept / share "
        "(above 1: more accuracy per parameter than the reference).",
        "",
        "| strategy | parameters | ACC (%) | reference | reference parameters "
        "| reference ACC (%) | kept | parameter share | kept per parameter |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = (r["reference"] if r["reference"] == "its teacher"
               else markdown_code(r["reference"]))
        lines.append(
            f"| {markdown_text(r['strategy'])} | {_count(r['parameters'])} | {_pct(r['acc'])} | {ref} | "
            f"{_count(r['reference_parameters'])} | {_pct(r['reference_acc'])} | "
            f"{_ratio(r['kept'])} | {_ratio(r['share'])} | {_ratio(r['kept_per_parameter'])} |")
    return [*lines, ""]


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
