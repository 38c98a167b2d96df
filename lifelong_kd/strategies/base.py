"""The strategy protocol: what a continual-learning method may do, and what the engine does.

For every task of the stream the engine (``engine.py``) calls, in this order::

    ctx  = TaskContext(...)              # the run's model, stream, device and seeded generator
    data = strategy.train_data(ctx)      # default: the current task's training set
    strategy.before_task(ctx)            # e.g. cache the teacher's outputs
    for phase in strategy.phases(ctx):   # default: one Phase over strategy.parameters(model)
        Phase:   for each batch: loss = phase.loss(ctx, batch); backward(); optimiser step
        OwnLoop: phase.run(ctx, should_stop)  (a library's own training loop)
    strategy.after_task(ctx)             # e.g. freeze the model as the next teacher
    for every task: strategy.predict(ctx, x) on its test set -> one row of the accuracy matrix

A strategy never calls ``backward()``: it declares its phases (what is trained, for how long,
with which loss and optimiser settings) and the engine runs them. Everything a checkpoint must
hold to resume the strategy bit for bit is in :meth:`Strategy.state_dict`, as plain data and
tensors (checkpoints are read with ``torch.load(weights_only=True)``).

:class:`Strategy` itself is plain fine-tuning (the ``naive`` preset): cross-entropy on the
current task, one phase over the model's parameters, the model's logits as prediction.
A method subclasses it, overrides the hooks it needs, and checks the options it reads
(:meth:`Strategy.check`); its presets (the named conventions users type) are in
``strategies/presets.py``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MEMORY_POLICIES, MemoryConfig, RunConfig, StrategyConfig, TrainConfig, check_choice
from ..data.streams import Images, ImageUnion, Stream, Task
from ..schedules import progress, stream_progress, temperature

if TYPE_CHECKING:
    from ..models import Model

#: ``strategy.ce_scope``: the outputs of the cross-entropy in class-il (see ``StrategyConfig``).
CE_SCOPES = ("seen", "current", "all")

#: A function polled every step; True asks the run to stop (SIGINT/SIGTERM).
StopCheck = Callable[[], bool]


class Interrupted(Exception):
    """Raised inside a training loop when the user asked to stop (SIGINT/SIGTERM)."""


class Diverged(Exception):
    """Raised when the loss is NaN or infinite, when a weight is so after a task, or when the
    model's outputs on test examples are (weights grown so large that the outputs overflow
    while the training loss stayed finite)."""


# ------------------------------------------------------------------------------ data


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
class TaskContext:
    """What a strategy may look at while task ``index`` is trained and evaluated.

    ``generator`` is the run's one seeded generator (batch order, augmentation): a strategy
    that draws (e.g. a memory choosing its examples) draws from it, so the run stays
    reproducible and resumes bit for bit.
    """

    config: RunConfig
    stream: Stream
    index: int
    model: Model
    device: torch.device
    generator: torch.Generator
    #: (n_tasks, n_outputs) bool: row t = the outputs of the loss on task t's examples.
    train_masks: torch.Tensor
    all_active: bool
    augment: bool
    eval_batch_size: int
    mean: torch.Tensor
    std: torch.Tensor
    #: What :meth:`Strategy.train_data` returned for this task (set by the engine).
    current_train_data: TrainData | None = None
    #: The epoch being trained, the optimiser step about to be taken (0-based, counted over
    #: the phase) and the phase's number of steps (set by the engine's loop; temperature
    #: schedules read them).
    epoch: int = 0
    step: int = 0
    steps: int = 0

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> normalised float32 on the device: (x / 255 - mean) / std."""
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        return x.sub_(self.mean).div_(self.std)


@dataclass
class Batch:
    """One training batch. ``x`` is the (possibly augmented) normalised input; ``idx`` the
    positions of its examples in the phase's :class:`TrainData`; ``raw`` its uint8 images."""

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


# ---------------------------------------------------------------------------- phases

#: The loss of one batch of a phase; it runs the model itself (the engine calls backward()).
PhaseLoss = Callable[[TaskContext, Batch], torch.Tensor]


@dataclass
class Phase:
    """One stretch of a task's training, run by the engine's loop: ``steps`` optimiser steps
    over ``epochs`` seeded passes through ``data`` (None: the task's, from
    :meth:`Strategy.train_data`), minimising ``loss`` over ``parameters``.

    The optimiser is ``train.optimizer`` with ``train.lr`` etc. (:func:`make_optimizer`),
    ``weight_decay`` replacing ``train.weight_decay`` when given. ``train_modules`` None puts
    the whole model in training mode; otherwise the model is in eval mode except those modules
    (a frozen backbone keeps its batch-norm statistics). Each ``(parameter, rows)`` of
    ``update_rows`` updates only the rows of ``parameter`` where ``rows`` is True (their
    gradient elsewhere is zeroed before the step). With ``train.reset_optimizer = false``, the
    phase that has ``carry_optimizer`` (at most one per task: the main one) continues from the
    optimiser state of the previous task's.

    ``ctx`` (None: the task's) is the context the phase runs in: a strategy that trains a
    model of its own (``compress``'s teacher) gives a context whose ``model`` is that model;
    the engine then makes the batches from that context's data, device and generator, and
    passes it to ``loss``. ``on_end``, when given, is called after the phase's last step.
    """

    name: str
    loss: PhaseLoss
    parameters: list[torch.Tensor]
    epochs: int
    steps: int
    data: TrainData | None = None
    weight_decay: float | None = None
    train_modules: tuple[nn.Module, ...] | None = None
    update_rows: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    carry_optimizer: bool = False
    ctx: TaskContext | None = None
    on_end: Callable[[], None] | None = None


@dataclass
class OwnLoop:
    """A phase that trains itself: ``run(ctx, should_stop)`` trains task ``ctx.index`` with
    its own loop (another library's strategy, see ``interop/avalanche.py``), polling
    ``should_stop`` and raising :class:`Interrupted` or :class:`Diverged` as the engine's loop
    does. The engine still checks the weights and evaluates afterwards."""

    name: str
    run: Callable[[TaskContext, StopCheck | None], None]


def task_steps(train: TrainConfig, n: int) -> tuple[int, int]:
    """(epochs, optimiser steps) of a task with ``n`` training examples: ``train.epochs``
    passes of ceil(n / batch_size) steps, or ``train.iterations`` steps when that is > 0."""
    per_epoch = math.ceil(n / train.batch_size)
    if train.iterations > 0:
        return math.ceil(train.iterations / per_epoch), train.iterations
    return train.epochs, train.epochs * per_epoch


class _Eager:
    """torch.optim's own methods without their ``torch._dynamo`` guards, for a run that
    compiles nothing (``train.compile = false``).

    torch.optim wraps ``step`` (``_use_grad_for_differentiable``) and ``add_param_group``,
    ``state_dict``, ``load_state_dict``, ``zero_grad`` (``torch._disable_dynamo``) in guards
    that import ``torch._dynamo`` on their first call (torch/optim/optimizer.py), about 2 s
    of CPU on this project's 2-core machine, so building any optimiser imported it. Outside
    a compiled function the guards do nothing else, so these methods call the very same
    functions (``inspect.unwrap``) with the same grad mode: the same kernels, the same
    results bit for bit, and ``torch._dynamo`` stays unimported.
    """

    #: torch.optim's own methods of the class (:meth:`__init_subclass__`), wrappers removed.
    _torch: dict[str, Callable[..., Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Look up, once per class, the methods of the torch.optim class after :class:`_Eager`
        in its method order, unwrapped (``inspect.unwrap``)."""
        super().__init_subclass__(**kwargs)
        base = cls.__mro__[cls.__mro__.index(_Eager) + 1]
        cls._torch = {name: inspect.unwrap(getattr(base, name)) for name in (
            "step", "add_param_group", "state_dict", "load_state_dict", "zero_grad")}

    def step(self, closure: Any = None) -> Any:
        prev = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])  # as _use_grad does
            return self._torch["step"](self, closure)
        finally:
            torch.set_grad_enabled(prev)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._torch["add_param_group"](self, param_group)

    def state_dict(self) -> dict[str, Any]:
        return self._torch["state_dict"](self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._torch["load_state_dict"](self, state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._torch["zero_grad"](self, set_to_none)


class EagerSGD(_Eager, torch.optim.SGD):
    """:class:`torch.optim.SGD` without the ``torch._dynamo`` import (:class:`_Eager`)."""


class EagerAdam(_Eager, torch.optim.Adam):
    """:class:`torch.optim.Adam` without the ``torch._dynamo`` import (:class:`_Eager`)."""


def make_optimizer(
    config: RunConfig, params: Any, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """The optimiser of ``config.train`` over ``params`` (``weight_decay`` overrides it):
    torch.optim's SGD or Adam, as :class:`EagerSGD` / :class:`EagerAdam` unless
    ``train.compile`` (which loads ``torch._dynamo`` anyway) is on."""
    t = config.train
    wd = t.weight_decay if weight_decay is None else weight_decay
    # fused: one kernel per parameter for the whole update (CPU and CUDA): the same formula
    # to float rounding, and on a CPU faster than the per-tensor loop (Adam by far the most)
    fused = True if torch.device(t.device).type in ("cpu", "cuda") else None
    if t.optimizer == "adam":
        adam = torch.optim.Adam if t.compile else EagerAdam
        return adam(params, lr=t.lr, betas=(t.betas[0], t.betas[1]), weight_decay=wd,
                    fused=fused)
    sgd = torch.optim.SGD if t.compile else EagerSGD
    return sgd(params, lr=t.lr, momentum=t.momentum, weight_decay=wd, fused=fused)


@dataclass
class LossWatch:
    """The losses of the steps since the last check, kept on the device: a NaN or infinite
    loss is found every ``every`` steps and at the end of a phase, with one host
    synchronisation per check instead of one per step (``loss.item()`` waits for the GPU).

    ``where(step)`` says where step ``step`` (0-based, counted over the phase) was, for the
    message: ``in task 0 (0-based), epoch 1, step 37``.
    """

    where: Callable[[int], str]
    every: int = 50
    checked: int = 0
    pending: list[torch.Tensor] = field(default_factory=list)

    def add(self, loss: torch.Tensor) -> None:
        """Keep the loss of one step (a one-element tensor)."""
        self.pending.append(loss.detach().reshape(()))

    def due(self) -> bool:
        """Whether ``every`` losses wait to be checked."""
        return len(self.pending) >= self.every

    def check(self) -> float | None:
        """Raise :class:`Diverged` naming the first step whose loss was NaN or infinite; else
        return the last loss (None when no step was taken since the last check)."""
        if not self.pending:
            return None
        values = torch.stack(self.pending).float().cpu().tolist()
        first = self.checked
        self.checked += len(values)
        self.pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise Diverged(f"the loss became {value} {self.where(first + i)}; lower train.lr "
                               "or check the inputs")
        return values[-1]


def masked_ce(
    ctx: TaskContext, logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of labels ``y`` over the outputs active for each example: the row of
    ``ctx.train_masks`` of its task ``t`` (memory examples keep their own task's row)."""
    if ctx.all_active:
        return F.cross_entropy(logits, y)
    return F.cross_entropy(logits.masked_fill(~ctx.train_masks[t], float("-inf")), y)


def distillation_temperature(config: StrategyConfig, ctx: TaskContext) -> float:
    """The temperature T of the distillation terms at the step the engine is taking:
    ``temperature`` under the ``constant`` schedule (and ``annealing``, whose stepped T the
    strategy reads from :func:`lifelong_kd.schedules.annealing`); else ``temperature_schedule``
    from ``temperature`` to ``temperature_end`` at progress p over the phase's steps
    (``schedule_span = task``) or across the stream (``stream``, every task taken to have as
    many steps as this one): :func:`lifelong_kd.schedules.temperature`."""
    if config.temperature_schedule in ("constant", "annealing") or ctx.steps <= 1:
        return config.temperature
    step = min(ctx.step, ctx.steps - 1)
    p = (progress(step, ctx.steps) if config.schedule_span == "task"
         else stream_progress(ctx.index, len(ctx.stream), step, ctx.steps))
    return temperature(config.temperature_schedule, config.temperature, config.temperature_end, p)


# -------------------------------------------------------------------------- strategy


class Strategy:
    """Plain fine-tuning: cross-entropy on the current task only (the lower bound).

    Subclasses override the hooks they need; ``loss`` is the one thing most override.
    """

    #: The ``StrategyConfig`` fields this strategy reads (the report lists only those).
    OPTIONS: tuple[str, ...] = ("ce_scope",)
    #: Whether the strategy keeps an exemplar memory (``memory.*``): ``none`` (the memory
    #: settings have no effect on it), ``optional`` (used when ``memory.size`` or
    #: ``memory.per_class`` is set), ``required``.
    MEMORY: str = "none"
    #: The ``memory.policy`` values the strategy works with (checked before data is loaded).
    POLICIES: tuple[str, ...] = MEMORY_POLICIES
    #: Whether the strategy trains a teacher network of its own from the ``teacher.*``
    #: settings (``compress``, ``kd``); they have no effect on any other.
    TEACHER: bool = False

    def __init__(self, config: StrategyConfig, memory: MemoryConfig | None = None):
        self.config = config
        self.memory_config = memory if memory is not None else MemoryConfig()

    @classmethod
    def check(cls, config: RunConfig) -> None:
        """Refuse (ConfigError naming the key, the value and what is valid) a value of an
        option this class reads, before any data is loaded. Subclasses check theirs and call
        this."""
        check_choice("strategy.ce_scope", config.strategy.ce_scope, CE_SCOPES)

    # ------------------------------------------------------------ before training a task
    def setup(self, ctx: TaskContext) -> None:
        """Called once when the run starts (or resumes, after :meth:`load_state_dict`), before
        the untrained model is evaluated, with the context of the first task to train: a
        strategy with models of its own builds them here (``compress``'s teacher)."""

    def train_data(self, ctx: TaskContext) -> TrainData:
        """The examples to train on for task ``ctx.index`` (default: that task's)."""
        return TrainData.of_task(ctx.stream[ctx.index])

    def before_task(self, ctx: TaskContext) -> None:
        """Called before training task ``ctx.index`` (after :meth:`train_data`)."""

    # ----------------------------------------------------------------------- training
    def parameters(self, model: Model) -> list[torch.Tensor]:
        """What the strategy trains (default: the model's trainable parameters); the main
        phase's optimiser takes these by default. A strategy with modules of its own (a
        bias-correction layer, a projector) adds their parameters and keeps them in
        :meth:`state_dict`; one that trains them in a phase of their own (BiC) lists them too
        and overrides :meth:`main_phase` (the engine checks all of them for inf/NaN)."""
        return [p for p in model.parameters() if p.requires_grad]

    def phases(self, ctx: TaskContext) -> list[Phase | OwnLoop]:
        """The phases that train task ``ctx.index``, in order (default: :meth:`main_phase`)."""
        return [self.main_phase(ctx)]

    def main_phase(self, ctx: TaskContext) -> Phase:
        """``train.epochs`` epochs (or ``train.iterations`` steps) of :meth:`loss` over
        :meth:`parameters`, the whole model in training mode."""
        data = ctx.current_train_data
        assert data is not None, "the engine sets ctx.current_train_data before the phases"
        epochs, steps = task_steps(ctx.config.train, len(data)) if len(data) else (0, 0)
        return Phase("train", self.train_loss, self.parameters(ctx.model), epochs, steps,
                     carry_optimizer=True)

    def train_loss(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        """The main phase's loss: the model's features and logits, then :meth:`loss`."""
        features, logits = ctx.model.forward_features(batch.x)
        return self.loss(ctx, batch, features, logits)

    def ce(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the outputs the scenario makes active for each example (the row
        of ``ctx.train_masks`` of the example's own task)."""
        return masked_ce(ctx, logits, batch.y, batch.t)

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The training loss of one batch (default: cross-entropy)."""
        return self.ce(ctx, batch, logits)

    def after_task(self, ctx: TaskContext) -> None:
        """Called after training task ``ctx.index``, before it is evaluated."""

    # ---------------------------------------------------------------------- evaluation
    def predict(self, ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
        """Scores (B, n_outputs) for the normalised inputs ``x``, whose argmax over the
        scenario's active outputs is the prediction (default: the model's logits). Called by
        the engine's evaluation, in inference mode with the model in eval mode."""
        return ctx.model(x)

    def costs(self) -> dict[str, int]:
        """What the strategy holds beyond the model, for result.json: the examples and bytes
        of its exemplar memory (0 without one)."""
        return {"memory_examples": 0, "memory_bytes": 0}

    def teacher_model(self) -> nn.Module | None:
        """The teacher the strategy holds after training (its cost goes to result.json beside
        the model's): LwF's copy of the previous model, ``compress``'s own network; None."""
        teacher = getattr(self, "teacher", None)
        return getattr(teacher, "model", None)

    def teacher_name(self) -> str | None:
        """The model name of :meth:`teacher_model` (None without one)."""
        settings = getattr(getattr(self, "teacher", None), "settings", None)
        return getattr(settings, "name", None)

    def teacher_evaluation(self, ctx: TaskContext) -> tuple[TaskContext, Strategy] | None:
        """A teacher of the strategy's own that the run evaluates beside the model after every
        task (and before the first), as (its context, the strategy that predicts with it):
        ``compress`` and ``kd``, whose teacher is a network trained along the stream; its
        matrices go to result.json's ``teacher``. None (the default): no such teacher."""
        return None

    # ---------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this strategy bit for bit: plain data and
        tensors only (checkpoints are loaded with ``weights_only=True``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
