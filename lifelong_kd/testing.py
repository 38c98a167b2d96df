"""A strategy test kit: what a test of a strategy needs, without the engine's private parts.

A method's test builds a toy run of its strategy (:func:`toy_run`: the preset's configuration
on a tiny random dataset, its stream, a fresh model and strategy), then drives it one task at
a time as the engine does (:func:`start_task`, then :func:`finish_task`), looks at its loss on
a hand-made batch (:func:`batch_of`), and checks the one property every strategy owes: a run
stopped after a task and resumed from its checkpoint ends with the matrix of the run that
was never stopped (:func:`assert_resumes_bit_for_bit`). ``docs/adding-a-strategy.md`` shows
them in use::

    run = toy_run("bic", **{"memory.size": 40})
    ctx = start_task(run, 0)            # train_data + before_task
    finish_task(run, ctx)               # every phase, then after_task
    ctx = start_task(run, 1)
    loss = run.strategy.train_loss(ctx, batch_of(ctx, ctx.current_train_data, range(8)))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig
from .data.sources import Dataset, make_dataset
from .data.streams import Stream, build_stream
from .engine import RunState, new_state, run_phase, task_context
from .presets import build_config
from .strategies.base import Batch, ExternalLoop, Strategy, TaskContext, TrainData

#: Small settings of a toy run: 3 class-il tasks of 2 classes, a one-layer MLP of 8 units,
#: one epoch of batches of 16 (a preset's own settings and ``sets`` override these).
TOY_SETTINGS: dict[str, Any] = {
    "stream.scenario": "class-il", "stream.n_tasks": 3, "stream.classes_per_task": 2,
    "model.hidden": [8], "train.epochs": 1, "train.batch_size": 16,
}


def toy_dataset(n_classes: int = 10, per_class: int = 4, size: int = 4, seed: int = 0) -> Dataset:
    """A tiny dataset of seeded random uint8 ``size`` x ``size`` grey images, ``per_class``
    of each of ``n_classes`` classes, the same images as training and test set."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n_classes * per_class, 1, size, size), dtype=np.uint8)
    y = np.repeat(np.arange(n_classes), per_class)
    return make_dataset("toy", x, y, x, y, tuple(str(i) for i in range(n_classes)), "memory")


@dataclass
class ToyRun:
    """A run of one strategy on a toy dataset, held between tasks as the engine holds it."""

    config: RunConfig
    stream: Stream
    state: RunState

    @property
    def strategy(self) -> Strategy:
        return self.state.strategy


def toy_run(strategy: str, *, benchmark: str = "split-digits", n_classes: int = 10,
            per_class: int = 20, seed: int = 0, **sets: Any) -> ToyRun:
    """The run of ``strategy`` (a preset name) with ``benchmark``'s settings, :data:`TOY_SETTINGS`
    and ``sets`` (dotted keys, as ``--set`` takes them: ``**{"memory.size": 40}``), checked as
    a real run is, on :func:`toy_dataset` with ``per_class`` examples of each of ``n_classes``
    classes."""
    config = build_config(benchmark, strategy, {**TOY_SETTINGS, **sets}, seed=seed)
    stream = build_stream(config, toy_dataset(n_classes, per_class))
    return ToyRun(config, stream, new_state(config, stream))


def start_task(run: ToyRun, index: int) -> TaskContext:
    """The context of task ``index`` with its training data chosen and the strategy's
    ``before_task`` called: what the engine does before a task's first phase."""
    ctx = task_context(run.config, run.stream, run.state, index)
    ctx.current_train_data = run.strategy.train_data(ctx)
    run.strategy.before_task(ctx)
    return ctx


def finish_task(run: ToyRun, ctx: TaskContext) -> None:
    """Every phase of the task of ``ctx`` (no progress bar, no stop), then ``after_task``."""
    for phase in run.strategy.phases(ctx):
        if isinstance(phase, ExternalLoop):
            phase.run(ctx, None)
        else:
            run_phase(ctx, run.state, phase, False, None)
    run.strategy.after_task(ctx)


def batch_of(ctx: TaskContext, data: TrainData, positions: Iterable[int]) -> Batch:
    """The batch of ``data``'s examples at ``positions``, prepared as the engine prepares one
    (normalised; not augmented)."""
    idx = torch.as_tensor(list(positions), dtype=torch.long)
    raw = data.x[idx]
    return Batch(ctx.prepare(raw), data.y[idx], data.t[idx], idx, raw, ctx)


def assert_resumes_bit_for_bit(strategy: str, folder: Path, *, benchmark: str = "split-digits",
                               sets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``strategy`` once whole and once stopped after its first task's checkpoint and
    resumed, in sub-folders of ``folder`` (``benchmark``'s data: split-digits needs none);
    assert both give the same matrices and metrics, and return the whole run's result."""
    from .runs import CHECKPOINT, DataProvider, RunOptions, RunSpec, execute

    config = build_config(benchmark, strategy, {**TOY_SETTINGS, **(sets or {})})
    if config.stream.n_tasks < 2:
        raise ValueError("a run must have 2 tasks or more to be stopped after its first")
    provider = DataProvider(folder / "data", offline=True, progress=False)
    options = RunOptions(progress=False, plots=False)
    whole = execute(RunSpec(config, folder / "whole"), provider, options)
    stopped = RunSpec(config, folder / "stopped")
    checkpoint = folder / "stopped" / CHECKPOINT
    first = execute(stopped, provider, options, stop=checkpoint.is_file)
    assert first["status"] == "interrupted", first["status"]
    resumed = execute(stopped, provider, RunOptions(progress=False, plots=False, resume=True))
    assert resumed["status"] == "finished", resumed["status"]
    for key in ("initial_accuracy", "accuracy_matrix", "accuracy_matrix_task_aware", "metrics"):
        assert resumed.get(key) == whole.get(key), f"{strategy}: {key} differs after resuming"
    return whole


__all__ = ["TOY_SETTINGS", "ToyRun", "assert_resumes_bit_for_bit", "batch_of", "finish_task",
           "start_task", "toy_dataset", "toy_run"]
