"""The training and evaluation loop: the only place that calls ``backward()``.

Data stays in uint8 tensors; a batch is made by indexing them with a slice of a seeded
permutation (a permuted or rotated task's images are gathered from the shared dataset and
permuted or rotated then, batch by batch; see ``data/streams.py``), converted to float and
normalised as a whole. There is no per-example Python work in the loop. After each task the
model is evaluated on the test set of every task: one row of the accuracy matrix R,
R[i][j] = accuracy on task j after training task i. Before the first task the untrained
model is evaluated too (the b_j of forward transfer).

Everything random draws from explicit seeded generators (``torch.manual_seed(seed)`` for the
weights, one ``torch.Generator`` for batch order and augmentation), so the same seed gives
the same matrix; a :class:`RunState` saved after a task resumes bit for bit on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import RunConfig
from .data.augment import random_crop_flip
from .data.streams import Images, ImageUnion, Stream, Task
from .models import Model, build_model
from .strategies import Strategy, build_strategy


class Interrupted(Exception):
    """Raised inside the loop when the user asked to stop (SIGINT/SIGTERM)."""


class Diverged(Exception):
    """Raised when the loss is NaN or infinite, when a weight is so after a task, or when the
    model's outputs on test examples are (weights grown so large that the outputs overflow
    while the training loss stayed finite)."""


@dataclass
class TrainData:
    """Examples to train on: uint8 images, output-unit labels, and each example's task id.

    ``x`` is indexed by batch (``x[idx]`` gives uint8 images (B, C, H, W)): a task's
    :class:`~lifelong_kd.data.streams.Images`, or an
    :class:`~lifelong_kd.data.streams.ImageUnion` of several tasks' (joint training), so that
    no task's permuted or rotated copy is ever made whole.
    """

    x: Images | ImageUnion
    y: torch.Tensor
    t: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def of_task(cls, task: Task) -> TrainData:
        return cls(task.train_x, task.train_y, torch.full_like(task.train_y, task.id))

    @classmethod
    def union(cls, tasks: list[Task]) -> TrainData:
        """The examples of ``tasks``, in order, each with its own task id."""
        parts = [cls.of_task(task) for task in tasks]
        x = ImageUnion([task.train_x for task in tasks], tuple(tasks[0].train_x.shape[1:]))
        return cls(x, torch.cat([p.y for p in parts]), torch.cat([p.t for p in parts]))

    @classmethod
    def empty(cls, task: Task) -> TrainData:
        """No examples (images of ``task``'s size)."""
        y = task.train_y[:0]
        return cls(ImageUnion([], tuple(task.train_x.shape[1:])), y, y.clone())


@dataclass
class Batch:
    """One training batch. ``x`` is the (possibly augmented) normalised input; ``idx`` the
    positions of its examples in the task's :class:`TrainData`."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    idx: torch.Tensor
    raw: torch.Tensor
    ctx: TaskContext

    @property
    def x_clean(self) -> torch.Tensor:
        """The normalised input without augmentation."""
        return self.x if not self.ctx.augment else self.ctx.prepare(self.raw)


@dataclass
class TaskContext:
    """What a strategy may look at while task ``index`` is trained."""

    config: RunConfig
    stream: Stream
    index: int
    model: Model
    device: torch.device
    train_masks: torch.Tensor
    all_active: bool
    augment: bool
    eval_batch_size: int
    mean: torch.Tensor
    std: torch.Tensor
    current_train_data: TrainData | None = None
    epoch: int = 0
    #: Set by strategies that train a warm-up phase (see ``Strategy.warmup``).
    phase: str = "train"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> normalised float32 on the device: (x / 255 - mean) / std."""
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        return x.sub_(self.mean).div_(self.std)


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
        }


def new_state(config: RunConfig, stream: Stream) -> RunState:
    """Fresh model, strategy and generator for ``config.seed``."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, stream.input_shape, stream.n_outputs)
    model.to(torch.device(config.train.device))
    generator = torch.Generator().manual_seed(config.seed)
    return RunState(model=model, strategy=build_strategy(config.strategy), generator=generator)


def restore_state(config: RunConfig, stream: Stream, saved: dict[str, Any]) -> RunState:
    """Rebuild a :class:`RunState` from :meth:`RunState.checkpoint`."""
    state = new_state(config, stream)
    state.model.load_state_dict(saved["model"])
    state.strategy.load_state_dict(saved["strategy"])
    restore = getattr(state.strategy, "restore", None)
    if restore is not None:
        restore(state.model)
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    for key in ("next_task", "rows", "rows_task_aware", "initial", "initial_task_aware",
                "train_seconds", "eval_seconds", "optimizer_state"):
        setattr(state, key, saved[key])
    return state


def make_optimizer(
    config: RunConfig, params: Any, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """The optimiser of ``config.train`` over ``params`` (``weight_decay`` overrides it)."""
    t = config.train
    wd = t.weight_decay if weight_decay is None else weight_decay
    # fused: one kernel per parameter for the whole update (CPU and CUDA): the same formula
    # to float rounding, and on a CPU faster than the per-tensor loop (Adam by far the most)
    fused = True if torch.device(t.device).type in ("cpu", "cuda") else None
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, betas=(t.betas[0], t.betas[1]), weight_decay=wd,
                                fused=fused)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=wd, fused=fused)


def _context(config: RunConfig, stream: Stream, state: RunState, index: int) -> TaskContext:
    device = torch.device(config.train.device)
    masks = stream.train_masks(index, config.strategy.ce_scope).to(device)
    shape = (1, -1, 1, 1)
    return TaskContext(
        config=config, stream=stream, index=index, model=state.model, device=device,
        train_masks=masks, all_active=bool(masks.all()), augment=config.train.augment,
        eval_batch_size=config.train.eval_batch_size,
        mean=torch.tensor(stream.mean, device=device).view(shape),
        std=torch.tensor(stream.std, device=device).view(shape),
    )


def evaluate(
    ctx: TaskContext, trained: int
) -> tuple[list[float], list[float]]:
    """Accuracy on every task's test set after training tasks 0..``trained``.

    Returns the row and, for class-il, the task-aware row (prediction restricted to the
    task's own classes); for the other scenarios the two are the same. Raises
    :class:`Diverged` when the model's outputs on a task's test examples are not finite (an
    argmax over inf or NaN would be scored as if measured).
    """
    stream, model = ctx.stream, ctx.model
    model.eval()
    row, row_aware = [], []
    with torch.inference_mode():
        for j, task in enumerate(stream.tasks):
            mask = stream.eval_mask(trained, j).to(ctx.device)
            mask_aware = stream.eval_mask(trained, j, task_aware=True).to(ctx.device)
            correct = correct_aware = 0
            finite = torch.ones((), dtype=torch.bool, device=ctx.device)
            for i in range(0, len(task.test_y), ctx.eval_batch_size):
                logits = model(ctx.prepare(task.test_x[i:i + ctx.eval_batch_size]))
                finite &= torch.isfinite(logits).all()
                y = task.test_y[i:i + ctx.eval_batch_size].to(ctx.device)
                pred = logits.masked_fill(~mask, float("-inf")).argmax(dim=1)
                correct += int((pred == y).sum())
                if stream.scenario == "class-il":
                    pred = logits.masked_fill(~mask_aware, float("-inf")).argmax(dim=1)
                    correct_aware += int((pred == y).sum())
            if not bool(finite):
                _diverged_outputs(model, stream, trained, j)
            n = max(len(task.test_y), 1)
            row.append(correct / n)
            row_aware.append(correct_aware / n if stream.scenario == "class-il" else correct / n)
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


def _strategy_tensors(strategy: Strategy) -> list[tuple[str, torch.Tensor]]:
    """The strategy's own parameters, for a strategy that has some (a ``parameters()``
    method, as an ``nn.Module`` has: e.g. a bias-correction layer)."""
    own = getattr(strategy, "parameters", None)
    return [(f"parameter {i}", p) for i, p in enumerate(own())] if callable(own) else []


def _steps_per_task(config: RunConfig, n: int) -> tuple[int, int]:
    """(epochs, total steps) for a task with ``n`` training examples."""
    per_epoch = math.ceil(n / config.train.batch_size)
    if config.train.iterations > 0:
        return math.ceil(config.train.iterations / per_epoch), config.train.iterations
    return config.train.epochs, config.train.epochs * per_epoch


def train_stream(
    config: RunConfig,
    stream: Stream,
    state: RunState | None = None,
    *,
    progress: bool = True,
    on_task_end: Callable[[RunState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunState:
    """Train ``stream`` task by task from ``state`` (a fresh one when None).

    ``on_task_end`` is called after each task's row is recorded (to save a checkpoint).
    ``should_stop`` is polled every step; when it returns True, :class:`Interrupted` is
    raised and ``state`` holds the finished tasks only. A NaN or infinite loss raises
    :class:`Diverged` naming the task, epoch and step; so do weights that hold inf or NaN
    after a task (the model's, then the strategy's own, if it has any) and outputs that do
    on the test examples, even though the loss stayed finite.
    """
    state = state or new_state(config, stream)
    model, strategy, g = state.model, state.strategy, state.generator
    bs = config.train.batch_size
    if not state.initial:
        t0 = time.perf_counter()
        ctx0 = _context(config, stream, state, 0)
        state.initial, state.initial_task_aware = evaluate(ctx0, -1)
        state.eval_seconds += time.perf_counter() - t0
    for index in range(state.next_task, len(stream)):
        t0 = time.perf_counter()
        ctx = _context(config, stream, state, index)
        data = strategy.train_data(ctx)
        ctx.current_train_data = data
        strategy.before_task(ctx)
        n = len(data)
        # A strategy that trains a task itself (Avalanche's, see interop/avalanche.py) gets
        # the task through ``train_task(ctx, should_stop)``; the engine still evaluates it.
        own_training = getattr(strategy, "train_task", None)
        if own_training is not None:
            own_training(ctx, should_stop)
        else:
            warmup = strategy.warmup_epochs(ctx)
            if warmup > 0 and n:
                # Li & Hoiem 2016, section 3: first train only the new task's head units, with
                # the rest of the network frozen, then the whole network.
                ctx.phase = "warmup"
                units = torch.tensor(stream[index].outputs, device=ctx.device)
                head_params = list(model.head.parameters())
                # no weight decay: the old heads' rows, whose gradients are zeroed, stay put
                _train_phase(ctx, strategy, data, make_optimizer(config, head_params, 0.0),
                             warmup, warmup * math.ceil(n / bs), g, progress, should_stop,
                             f"task {index + 1}/{len(stream)} warm-up", head_units=units)
                ctx.phase = "train"
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = make_optimizer(config, params)
            if not config.train.reset_optimizer and state.optimizer_state is not None:
                optimizer.load_state_dict(state.optimizer_state)
            epochs, total = _steps_per_task(config, n) if n else (0, 0)
            _train_phase(ctx, strategy, data, optimizer, epochs, total, g, progress,
                         should_stop, f"task {index + 1}/{len(stream)}")
            if not config.train.reset_optimizer:
                state.optimizer_state = optimizer.state_dict()
        check_finite_weights(_model_tensors(model), index, stream[index].name)
        strategy.after_task(ctx)
        check_finite_weights(_strategy_tensors(strategy), index, stream[index].name,
                             "strategy's own weights")
        t1 = time.perf_counter()
        state.train_seconds += t1 - t0
        row, row_aware = evaluate(ctx, index)
        state.rows.append(row)
        state.rows_task_aware.append(row_aware)
        state.eval_seconds += time.perf_counter() - t1
        state.next_task = index + 1
        if on_task_end is not None:
            on_task_end(state)
    return state


def _train_phase(
    ctx: TaskContext,
    strategy: Strategy,
    data: TrainData,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    total: int,
    g: torch.Generator,
    progress: bool,
    should_stop: Callable[[], bool] | None,
    desc: str,
    head_units: torch.Tensor | None = None,
) -> None:
    """``total`` optimiser steps over ``epochs`` seeded passes through ``data``.

    With ``head_units`` only those rows of the head are updated (the warm-up phase), and the
    loss is ``strategy.warmup_loss``.
    """
    from tqdm.auto import tqdm

    model, n, bs = ctx.model, len(data), ctx.config.train.batch_size
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="step",
               dynamic_ncols=True)
    keep = None
    if head_units is not None:
        keep = torch.zeros(model.head.out_features, dtype=torch.bool, device=ctx.device)
        keep[head_units] = True
    step = 0
    model.train()
    if keep is not None:  # warm-up: the frozen backbone keeps its batch-norm statistics too
        model.eval()
        model.head.train()
    try:
        for epoch in range(epochs):
            ctx.epoch = epoch
            order = torch.randperm(n, generator=g)
            for start in range(0, n, bs):
                if step >= total:
                    break
                if should_stop is not None and should_stop():
                    raise Interrupted(f"interrupted during task {ctx.index} (0-based)")
                idx = order[start:start + bs]
                raw = data.x[idx]
                x_in = random_crop_flip(raw, g) if ctx.augment else raw
                batch = Batch(ctx.prepare(x_in), data.y[idx].to(ctx.device),
                              data.t[idx].to(ctx.device), idx, raw, ctx)
                if keep is None:
                    features, logits = model.forward_features(batch.x)
                    loss = strategy.loss(ctx, batch, features, logits)
                else:
                    with torch.no_grad():
                        features = model.features(batch.x)
                    loss = strategy.warmup_loss(ctx, batch, model.head(features), head_units)
                value = loss.item()
                if not math.isfinite(value):
                    raise Diverged(
                        f"the loss became {value} in task {ctx.index} (0-based), epoch {epoch}, "
                        f"step {step}; lower train.lr or check the inputs"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if keep is not None:
                    for p in model.head.parameters():
                        if p.grad is not None:
                            p.grad[~keep] = 0.0
                optimizer.step()
                step += 1
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    finally:
        bar.close()
