"""The section "What was run" of report.md: the benchmark, scenario, stream, model and
training shared by the runs (those of the first run in report order), then per variant its
strategy's options, its own settings and its teacher, its seeds and time; the seeds, the
data and the software. Settings are shown as ``key = value`` with every key and value
escaped (:func:`lifelong_kd.report.markdown.markdown_text`): they come from result.json."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from ..aggregate import Run, labelled, variants_of
from ..errors import UserError
from ..results import LEGACY_STRATEGY_OPTIONS
from .markdown import markdown_code, markdown_text


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
    from ..strategies import strategy_preset
    from ..strategies.options import option_names

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
    from ..config import teacher_given

    cfg = result.get("config", {})
    model, teacher = cfg.get("model", {}), cfg.get("teacher", {})
    merged = {**model, **teacher_given(teacher)}
    declared = result.get("declared")
    if isinstance(declared, dict) and "teacher_strategy" in declared:
        name = declared["teacher_strategy"]
    else:  # a file written before it was recorded: ask the strategy classes
        from ..strategies import strategy_preset

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
