"""The training and evaluation loop: the only place that calls ``backward()``.

For every task the engine asks the strategy for its training data and its phases
(``strategies/base.py`` describes the protocol) and runs each phase: a :class:`Phase` by the
loop below, an :class:`ExternalLoop` by calling it. Data stays in uint8 tensors; a batch is made by
indexing them with a slice of a seeded permutation (a permuted or rotated task's images are
gathered from the shared dataset and permuted or rotated then, batch by batch; see
``data/streams.py``), converted to float and normalised as a whole. There is no per-example
Python work in the loop, and no host synchronisation per step: the losses stay on the device
and are checked for NaN or inf every 50 steps and at the end of each phase
(:class:`~lifelong_kd.strategies.loop.LossWatch`). After each task the model is evaluated on the
test set of every task through ``strategy.predict``: one row of the accuracy matrix R,
R[i][j] = accuracy on task j after training task i, counted on the device and read once per
row. Before the first task the untrained model is evaluated too (the b_j of forward transfer).

On an accelerator (``train.device`` other than ``cpu``; :func:`~lifelong_kd.data.streams.data_on_device`)
the stream's images and labels are placed on the device once per run (:meth:`Stream.to`; a
strategy's memory is made there from the batches), each epoch's permutation is drawn on the
host from the run's generator and copied there once, and the batches are gathered there; what
is still drawn on the host per step (augmentation's offsets and coins, a memory's draw and
slots) is copied without waiting. On the CPU the data stay where they are, and nothing of this
changes a number.

A strategy with a teacher network of its own (``compress``, ``kd``) trains it in phases that
name their own context (its network, configuration and generator), and the engine evaluates it
beside the model (``strategy.teacher_evaluation``): its rows go to result.json's ``teacher``.
After training, :func:`measure_costs` records what the models and the memory cost.

Everything random draws from explicit seeded generators (``torch.manual_seed(seed)`` for the
weights, one ``torch.Generator`` for batch order and augmentation, handed to the strategy as
``ctx.generator``), so the same seed gives the same matrix; a :class:`RunState` saved after a
task resumes bit for bit on the CPU.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import RunConfig
from .costs import eval_mode, model_costs
from .data.augment import random_crop_flip
from .data.streams import Stream, data_on_device, to_device
from .models import Model, build_model
from .strategies.base import Batch, ExternalLoop, Phase, Strategy, TaskContext, TrainData
from .strategies.loop import Diverged, Interrupted, LossWatch, StopCheck
from .strategies.memory import check_budget
from .strategies.optim import make_optimizer
from .strategies.presets import build_strategy

__all__ = ["Batch", "Diverged", "Interrupted", "RunState", "TaskContext", "TrainData", "evaluate",
           "make_optimizer", "new_state", "place_stream", "restore_state", "train_stream"]


@dataclass
class RunState:
    """Everything needed to continue a run after its last finished task."""

    model: Model
    strategy: Strategy
    generator: torch.Generator
    next_task: int = 0
    #: R[i][j], one row per finished task.
    rows: list[list[float]] = field(default_factory=list)
    rows_task_aware: list[list[float]] = field(default_factory=list)
    initial: list[float] = field(default_factory=list)
    initial_task_aware: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    optimizer_state: dict[str, Any] | None = None
    #: The rows of the strategy's own teacher (``strategy.teacher_evaluation``), as above.
    teacher_rows: list[list[float]] = field(default_factory=list)
    teacher_rows_task_aware: list[list[float]] = field(default_factory=list)
    teacher_initial: list[float] = field(default_factory=list)
    teacher_initial_task_aware: list[float] = field(default_factory=list)
    #: Continual evaluation (``train.eval_every``; :class:`CurveProbe`): rows [step, task
    #: trained, task evaluated, accuracy] of the finished tasks, ``step`` counting the
    #: optimiser steps of the model's phases (``steps_done``) over the run.
    curves: list[list[float]] = field(default_factory=list)
    steps_done: int = 0
    curve_seconds: float = 0.0

    def teacher_matrices(self) -> dict[str, list[Any]] | None:
        """The teacher's rows for ``results.build_result`` (None without a teacher's rows)."""
        if not self.teacher_rows:
            return None
        return {"rows": self.teacher_rows, "rows_task_aware": self.teacher_rows_task_aware,
                "initial": self.teacher_initial, "initial_task_aware": self.teacher_initial_task_aware}

    def checkpoint(self) -> dict[str, Any]:
        """A picklable dict for ``torch.save``."""
        return {
            "model": self.model.state_dict(),
            "strategy": self.strategy.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "next_task": self.next_task,
            "rows": self.rows,
            "rows_task_aware": self.rows_task_aware,
            "initial": self.initial,
            "initial_task_aware": self.initial_task_aware,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "optimizer_state": self.optimizer_state,
            **{key: getattr(self, key) for key in TEACHER_KEYS + CURVE_KEYS},
        }


#: The checkpoint's entries of the teacher's rows (absent from checkpoints made before them).
TEACHER_KEYS = ("teacher_rows", "teacher_rows_task_aware", "teacher_initial",
                "teacher_initial_task_aware")
#: The checkpoint's entries of the continual evaluation, with the values of a checkpoint made
#: before them.
_CURVE_DEFAULTS: dict[str, Any] = {"curves": [], "steps_done": 0, "curve_seconds": 0.0}
CURVE_KEYS = tuple(_CURVE_DEFAULTS)


def new_state(config: RunConfig, stream: Stream) -> RunState:
    """Fresh model, strategy and generator for ``config.seed``."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, stream.input_shape, stream.n_outputs)
    model.to(torch.device(config.train.device))
    if config.train.compile:
        compile_model(model)
    generator = torch.Generator().manual_seed(config.seed)
    return RunState(model=model, strategy=build_strategy(config.strategy, config.memory), generator=generator)


def restore_state(config: RunConfig, stream: Stream, saved: dict[str, Any]) -> RunState:
    """Rebuild a :class:`RunState` from :meth:`RunState.checkpoint`."""
    state = new_state(config, stream)
    state.model.load_state_dict(saved["model"])
    state.strategy.load_state_dict(saved["strategy"])
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    for key in ("next_task", "rows", "rows_task_aware", "initial", "initial_task_aware",
                "train_seconds", "eval_seconds", "optimizer_state"):
        setattr(state, key, saved[key])
    for key in TEACHER_KEYS:
        setattr(state, key, saved.get(key, []))
    for key in CURVE_KEYS:
        setattr(state, key, saved.get(key, _CURVE_DEFAULTS[key]))
    return state


#: The backend ``train.compile`` hands to ``torch.compile`` (the tests use ``eager``, which
#: traces the model without generating code).
COMPILE_BACKEND = "inductor"


def compile_model(model: Model) -> None:
    """``train.compile``: compile the model's backbone and head in place
    (``nn.Module.compile``: their ``__call__`` runs through ``torch.compile``, while their
    parameters, state-dict keys and copies stay those of the eager modules). Strategies call
    ``model.features`` and ``model.head`` as well as the model, so the two parts are compiled,
    not the model's own ``forward``. Compiling happens at the first call of each new shape and
    mode, inside the run's timed work (the first evaluation and the first training steps)."""
    model.backbone.compile(backend=COMPILE_BACKEND)
    model.head.compile(backend=COMPILE_BACKEND)


class CurveProbe:
    """Continual evaluation (De Lange, van de Ven and Tuytelaars, ICLR 2023, "Continual
    evaluation for lifelong learning: identifying the stability gap"): during training, the
    accuracy of every task seen so far on a fixed subset of its test set.

    The subsets (``train.eval_subset`` examples per task, 0: all; drawn once with a generator
    of their own seeded with the run's seed, so the run's own draws are untouched) are
    prepared once as normalised tensors on the device. A point is taken at the start of each
    task, every ``train.eval_every`` optimiser steps of the model's phases, and after the
    task's last step: the model in eval mode (its modules' modes restored after), predicting
    through ``strategy.predict`` among the outputs the matrix's row would use
    (``stream.eval_mask``). The counts stay on the device until the task ends
    (:meth:`flush`): no host synchronisation in the training loop.
    """

    def __init__(self, ctx: TaskContext, strategy: Strategy, state: RunState):
        train = ctx.config.train
        self.every, self.strategy, self.state = train.eval_every, strategy, state
        g = torch.Generator().manual_seed(ctx.config.seed)
        self.subsets: list[tuple[torch.Tensor, torch.Tensor]] = []
        for task in ctx.stream.tasks:
            n = len(task.test_y)
            k = n if train.eval_subset == 0 else min(train.eval_subset, n)
            idx = torch.randperm(n, generator=g)[:k].sort().values
            self.subsets.append((ctx.prepare(task.test_x[idx]),
                                 to_device(task.test_y[idx], ctx.device)))
        #: (step, task trained, correct counts of tasks 0..trained) of the current task.
        self.pending: list[tuple[int, int, torch.Tensor]] = []
        #: (task trained, task evaluated) -> the outputs predicted among, on the device.
        self.masks: dict[tuple[int, int], torch.Tensor] = {}
        self.seconds = 0.0

    def point(self, ctx: TaskContext, trained: int) -> None:
        """Evaluate tasks 0..``trained`` at the current step (once per step and task)."""
        step = self.state.steps_done
        if self.pending and self.pending[-1][:2] == (step, trained):
            return
        t0 = time.perf_counter()
        model, stream = ctx.model, ctx.stream
        with eval_mode(model), torch.inference_mode():
            counts = torch.zeros(trained + 1, dtype=torch.long, device=ctx.device)
            for j in range(trained + 1):
                x, y = self.subsets[j]
                if (trained, j) not in self.masks:
                    self.masks[trained, j] = to_device(stream.eval_mask(trained, j), ctx.device)
                mask = self.masks[trained, j]
                for i in range(0, len(y), ctx.eval_batch_size):
                    logits = self.strategy.predict(ctx, x[i:i + ctx.eval_batch_size])
                    pred = logits.masked_fill(~mask, float("-inf")).argmax(dim=1)
                    counts[j] += (pred == y[i:i + ctx.eval_batch_size]).sum()
        self.pending.append((step, trained, counts))
        self.seconds += time.perf_counter() - t0

    def after_step(self, ctx: TaskContext) -> None:
        """Count one optimiser step of the model's; evaluate when ``eval_every`` are due."""
        self.state.steps_done += 1
        if self.state.steps_done % self.every == 0:
            self.point(ctx, ctx.index)

    def flush(self) -> None:
        """Move the current task's points to ``state.curves`` (read from the device once)."""
        for step, trained, counts in self.pending:
            for j, correct in enumerate(counts.tolist()):
                n = max(len(self.subsets[j][1]), 1)
                self.state.curves.append([step, trained, j, correct / n])
        self.pending.clear()


def task_context(config: RunConfig, stream: Stream, state: RunState, index: int) -> TaskContext:
    device = torch.device(config.train.device)
    masks = stream.train_masks(index, state.strategy.options.ce_scope)
    shape = (1, -1, 1, 1)
    return TaskContext(
        config=config, stream=stream, index=index, model=state.model, device=device,
        generator=state.generator, train_masks=to_device(masks, device),
        all_active=bool(masks.all()),
        augment=config.train.augment, eval_batch_size=config.train.eval_batch_size,
        mean=to_device(torch.tensor(stream.mean).view(shape), device),
        std=to_device(torch.tensor(stream.std).view(shape), device),
    )


def place_stream(config: RunConfig, stream: Stream, strategy: Strategy | type[Strategy]) -> Stream:
    """The stream as the run trains on it: on an accelerator (:func:`data_on_device`), its images
    and labels placed on ``train.device`` once (:meth:`Stream.to`); else ``stream`` itself.
    A strategy that declares it reads its data on the host (``Strategy.HOST_DATA``: one whose
    own loop's loaders do, the Avalanche strategies) keeps the stream on the host."""
    device = torch.device(config.train.device)
    if not data_on_device(device) or strategy.HOST_DATA:
        return stream
    return stream.to(device)


def evaluate(
    ctx: TaskContext, strategy: Strategy, trained: int
) -> tuple[list[float], list[float]]:
    """Accuracy on every task's test set after training tasks 0..``trained``, predicting
    with ``strategy.predict`` (by default the model's logits).

    Returns the row and, for class-il, the task-aware row (prediction restricted to the
    task's own classes); for the other scenarios the two are the same. The counts of correct
    predictions (and whether every score was finite) stay on the device, one tensor for the
    whole row, read once at its end. Raises :class:`Diverged` when the scores on a task's test
    examples are not finite (an argmax over inf or NaN would be scored as if measured), naming
    the first such task.
    """
    stream, model = ctx.stream, ctx.model
    model.eval()
    class_il = stream.scenario == "class-il"
    # per task: correct, correct among the task's own classes (class-il), all scores finite
    counts = torch.zeros((len(stream), 3), dtype=torch.long, device=ctx.device)
    with torch.inference_mode():
        for j, task in enumerate(stream.tasks):
            mask = to_device(stream.eval_mask(trained, j), ctx.device)
            mask_aware = to_device(stream.eval_mask(trained, j, task_aware=True), ctx.device)
            finite = torch.ones((), dtype=torch.bool, device=ctx.device)
            for i in range(0, len(task.test_y), ctx.eval_batch_size):
                logits = strategy.predict(ctx, ctx.prepare(task.test_x[i:i + ctx.eval_batch_size]))
                finite &= torch.isfinite(logits).all()
                y = to_device(task.test_y[i:i + ctx.eval_batch_size], ctx.device)
                pred = logits.masked_fill(~mask, float("-inf")).argmax(dim=1)
                counts[j, 0] += (pred == y).sum()
                if class_il:
                    pred = logits.masked_fill(~mask_aware, float("-inf")).argmax(dim=1)
                    counts[j, 1] += (pred == y).sum()
            counts[j, 2] = finite
        read = counts.tolist()
    row, row_aware = [], []
    for j, (task, (correct, correct_aware, finite_j)) in enumerate(zip(stream.tasks, read,
                                                                       strict=True)):
        if not finite_j:
            _diverged_outputs(model, stream, trained, j)
        n = max(len(task.test_y), 1)
        row.append(correct / n)
        row_aware.append(correct_aware / n if class_il else correct / n)
    return row, row_aware


def _diverged_outputs(model: Model, stream: Stream, trained: int, j: int) -> None:
    """Raise :class:`Diverged`: the model's outputs on task ``j``'s test examples are not
    finite after training tasks 0..``trained``."""
    largest = max((float(p.detach().abs().max()) for p in model.parameters() if p.numel()),
                  default=0.0)
    when = f"after task {trained} (0-based)" if trained >= 0 else "before training"
    raise Diverged(
        f"the model's outputs on the test examples of task {j} `{stream[j].name}` are inf or NaN "
        f"{when}: its weights blew up (largest magnitude {largest:.3g}) while the loss stayed "
        "finite; lower train.lr or check the inputs"
    )


def check_finite_weights(
    tensors: list[tuple[str, torch.Tensor]], index: int, name: str, whose: str = "weights"
) -> None:
    """Raise :class:`Diverged` when one of the named ``tensors`` holds inf or NaN after task
    ``index``: a loss can stay finite while the weights overflow (one host synchronisation
    for all of them)."""
    if not tensors:
        return
    flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in tensors])
    if bool(flags.all()):
        return
    bad = tensors[int((~flags).nonzero()[0])][0]
    raise Diverged(
        f"the {whose} became inf or NaN in task {index} (0-based) `{name}` (first: `{bad}`) "
        "while the loss stayed finite; lower train.lr or check the inputs"
    )


def _model_tensors(model: Model) -> list[tuple[str, torch.Tensor]]:
    """The parameters and floating-point buffers (batch-norm statistics) of ``model``."""
    return list(model.named_parameters()) + [
        (n, b) for n, b in model.named_buffers() if b.is_floating_point()]


def _strategy_tensors(strategy: Strategy, model: Model) -> list[tuple[str, torch.Tensor]]:
    """The parameters the strategy trains beyond the model's (``strategy.parameters``: e.g.
    a bias-correction layer), named ``parameter i`` in their order there."""
    of_model = {id(p) for p in model.parameters()}
    own = [p for p in strategy.parameters(model) if id(p) not in of_model]
    return [(f"parameter {i}", p) for i, p in enumerate(own)]


def train_stream(
    config: RunConfig,
    stream: Stream,
    state: RunState | None = None,
    *,
    progress: bool = True,
    on_task_end: Callable[[RunState], None] | None = None,
    should_stop: StopCheck | None = None,
) -> RunState:
    """Train ``stream`` task by task from ``state`` (a fresh one when None).

    ``on_task_end`` is called after each task's row is recorded (to save a checkpoint).
    ``should_stop`` is polled every step; when it returns True, :class:`Interrupted` is
    raised and ``state`` holds the finished tasks only. A NaN or infinite loss raises
    :class:`Diverged` naming the task, epoch and step (found within 50 steps, or at the end
    of the phase); so do weights that hold inf or NaN after a task (the model's, then the
    strategy's own, if it trains some) and outputs that do on the test examples, even though
    the loss stayed finite.
    """
    state = state or new_state(config, stream)
    stream = place_stream(config, stream, state.strategy)
    model, strategy = state.model, state.strategy
    if strategy.MEMORY != "none":  # checked before the data for the datasets of known classes
        check_budget(config, config.strategy.name, stream.n_outputs)
    strategy.setup(task_context(config, stream, state, min(state.next_task, len(stream) - 1)))
    probe = (CurveProbe(task_context(config, stream, state, 0), strategy, state)
             if config.train.eval_every > 0 else None)
    if not state.initial:
        t0 = time.perf_counter()
        ctx0 = task_context(config, stream, state, 0)
        state.initial, state.initial_task_aware = evaluate(ctx0, strategy, -1)
        teacher_eval = strategy.teacher_evaluation(ctx0)
        if teacher_eval is not None:
            state.teacher_initial, state.teacher_initial_task_aware = evaluate(*teacher_eval, -1)
        state.eval_seconds += time.perf_counter() - t0
    for index in range(state.next_task, len(stream)):
        t0 = time.perf_counter()
        ctx = task_context(config, stream, state, index)
        ctx.current_train_data = strategy.train_data(ctx)
        strategy.before_task(ctx)
        phases = strategy.phases(ctx)
        if sum(isinstance(p, Phase) and p.carry_optimizer for p in phases) > 1:
            raise ValueError(f"{type(strategy).__name__}: at most one phase may carry the "
                             "optimiser state across tasks")
        if probe is not None:
            probe.point(ctx, index)
        for phase in phases:
            if isinstance(phase, ExternalLoop):
                phase.run(ctx, should_stop)
            else:
                run_phase(ctx, state, phase, progress, should_stop, probe)
        if probe is not None:
            probe.point(ctx, index)
        check_finite_weights(_model_tensors(model), index, stream[index].name)
        strategy.after_task(ctx)
        check_finite_weights(_strategy_tensors(strategy, model), index, stream[index].name,
                             "strategy's own weights")
        t1 = time.perf_counter()
        curve_seconds = probe.seconds if probe is not None else 0.0
        state.train_seconds += t1 - t0 - curve_seconds
        row, row_aware = evaluate(ctx, strategy, index)
        state.rows.append(row)
        state.rows_task_aware.append(row_aware)
        teacher_eval = strategy.teacher_evaluation(ctx)
        if teacher_eval is not None:
            row, row_aware = evaluate(*teacher_eval, index)
            state.teacher_rows.append(row)
            state.teacher_rows_task_aware.append(row_aware)
        state.eval_seconds += time.perf_counter() - t1
        if probe is not None:
            probe.flush()
            state.curve_seconds += curve_seconds
            probe.seconds = 0.0
        state.next_task = index + 1
        if on_task_end is not None:
            on_task_end(state)
    return state


def run_phase(
    ctx: TaskContext,
    state: RunState,
    phase: Phase,
    progress: bool,
    should_stop: StopCheck | None,
    probe: CurveProbe | None = None,
) -> None:
    """``phase.steps`` optimiser steps over ``phase.epochs`` seeded passes through the
    phase's data (``ctx.current_train_data`` unless it names its own), in the phase's own
    context when it has one (:func:`_train_steps`); then ``phase.on_end``. The steps of a
    phase that trains the model (no context of its own) are counted by ``probe``."""
    from tqdm.auto import tqdm

    own = phase.ctx is None
    ctx = phase.ctx if phase.ctx is not None else ctx
    config, model = ctx.config, ctx.model
    data = phase.data if phase.data is not None else ctx.current_train_data
    assert data is not None
    carry = phase.carry_optimizer and not config.train.reset_optimizer
    optimizer = make_optimizer(config, phase.parameters, phase.weight_decay, phase.lr_factor)
    if carry and state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    desc = f"task {ctx.index + 1}/{len(ctx.stream)}" + ("" if phase.name == "train" else f" {phase.name}")
    # a bar on a terminal; into a file or a pipe (CI logs, nohup) its carriage-return frames
    # would pile up: one line when the phase ends instead
    on_terminal = progress and sys.stderr.isatty()
    bar = tqdm(total=phase.steps, desc=desc, disable=not on_terminal, leave=False, unit="step",
               dynamic_ncols=True)
    started = time.perf_counter()
    ctx.steps = phase.steps
    model.train()
    if phase.train_modules is not None:
        model.eval()
        for module in phase.train_modules:
            module.train()
    try:
        _train_steps(ctx, phase, data, optimizer, bar, should_stop,
                     probe if own else None)
    finally:
        bar.close()
    if progress and not on_terminal:
        print(f"{desc}: {phase.steps} steps in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    if carry:
        state.optimizer_state = optimizer.state_dict()
    if phase.on_end is not None:
        phase.on_end()


def _train_steps(
    ctx: TaskContext,
    phase: Phase,
    data: TrainData,
    optimizer: torch.optim.Optimizer,
    bar: Any,
    should_stop: StopCheck | None,
    probe: CurveProbe | None = None,
) -> None:
    """The step loop of a phase: ``phase.epochs`` passes through ``data`` in the order of a
    permutation drawn from the run's generator (copied once per epoch to where the data are),
    each batch gathered there, then loss, ``backward()`` and the optimiser's step.

    Nothing here waits for the device except the loss checks of :class:`LossWatch` (every 50
    steps and at the end): the rows a phase keeps fixed are zeroed with a mask
    (``masked_fill_``), and the host's own draws go to the device without waiting."""
    config, g = ctx.config, ctx.generator
    n, bs = len(data), config.train.batch_size
    per_epoch = max(math.ceil(n / bs), 1)
    watch = LossWatch(lambda step: f"in task {ctx.index} (0-based), epoch {step // per_epoch}, "
                                   f"step {step}")
    # the rows of each parameter the phase keeps fixed (their gradient is zeroed before a
    # step), as a mask that broadcasts over the parameter's other dimensions
    frozen_rows = [(p, (~rows).view(-1, *(1 for _ in p.shape[1:])))
                   for p, rows in phase.update_rows]
    # the optimiser's parameters, whose gradients are set to None before each backward():
    # what optimizer.zero_grad(set_to_none=True) does, without its per-call wrappers
    params = [p for group in optimizer.param_groups for p in group["params"]]
    step = 0
    for epoch in range(phase.epochs):
        ctx.epoch = epoch
        order = to_device(torch.randperm(n, generator=g), data.y.device)
        for start in range(0, n, bs):
            if step >= phase.steps:
                break
            if should_stop is not None and should_stop():
                watch.check()
                raise Interrupted(f"interrupted during task {ctx.index} (0-based)")
            idx = order[start:start + bs]
            raw = data.x[idx]
            x_in = random_crop_flip(raw, g) if ctx.augment else raw
            batch = Batch(ctx.prepare(x_in), to_device(data.y[idx], ctx.device),
                          to_device(data.t[idx], ctx.device), idx, raw, ctx)
            ctx.step = step
            loss = phase.loss(ctx, batch)
            watch.add(loss)
            for p in params:
                p.grad = None
            loss.backward()
            for p, rows in frozen_rows:
                if p.grad is not None:
                    p.grad.masked_fill_(rows, 0.0)
            optimizer.step()
            step += 1
            bar.update(1)
            if probe is not None:
                probe.after_step(ctx)
            if watch.due():
                bar.set_postfix(loss=f"{watch.check():.3f}", refresh=False)
    watch.check()


def measure_costs(config: RunConfig, stream: Stream, state: RunState, *,
                  latency: bool = True) -> dict[str, Any]:
    """What the run's models and memory cost, measured after training (``costs.py``): the
    model (predicting through ``strategy.predict``, as the evaluation does) and the
    strategy's teacher, if it holds one: parameters, bytes, FLOPs per example (PyTorch's
    ``FlopCounterMode``) and latency per example at batch 1 and 256 on the run's device
    (median of repeated timings; ``latency`` False leaves them None), on the last task's test
    examples; the memory's examples and bytes; the training seconds."""
    strategy = state.strategy
    index = min(max(state.next_task - 1, 0), len(stream) - 1)
    ctx = task_context(config, stream, state, index)
    x = ctx.prepare(stream[index].test_x[:256])
    out: dict[str, Any] = dict(strategy.costs())
    training = state.model.training
    state.model.eval()
    try:
        out["model"] = model_costs(config.model.name, state.model,
                                   lambda x: strategy.predict(ctx, x), x, latency=latency)
        teacher = strategy.teacher_model()
        if teacher is not None:
            name = strategy.teacher_name() or config.model.name
            out["teacher"] = model_costs(name, teacher, teacher, x, latency=latency)
    finally:
        state.model.train(training)
    out["device"] = str(ctx.device)
    out["train_seconds"] = state.train_seconds
    return out
