"""The strategy protocol: what a continual-learning method may do, and what the engine does.

Read in this order: :class:`Strategy` (the hooks a method overrides; itself plain fine-tuning,
the ``naive`` preset), then what the hooks are given: :class:`TaskContext` (the run's model,
stream, device and seeded generator, for the task being trained), :class:`Batch` (one training
batch), :class:`Phase` (a stretch of training the engine runs: what is trained, for how long,
with which loss), :class:`TrainData` (the examples a phase draws its batches from); then two
helpers of losses, :func:`masked_ce` and :func:`distillation_temperature`.

For every task of the stream the engine (``engine.py``) calls, in this order::

    ctx  = TaskContext(...)              # the run's model, stream, device and seeded generator
    data = strategy.train_data(ctx)      # default: the current task's training set
    strategy.before_task(ctx)            # e.g. cache the teacher's outputs
    for phase in strategy.phases(ctx):   # default: [strategy.main_phase(ctx)]
        Phase:   for each batch: loss = phase.loss(ctx, batch); backward(); optimiser step
        ExternalLoop: phase.run(ctx, should_stop)  (a library's own training loop)
    strategy.after_task(ctx)             # e.g. freeze the model as the next teacher
    for every task: strategy.predict(ctx, x) on its test set -> one row of the accuracy matrix

The main phase's ``phase.loss`` is :meth:`Strategy.train_loss`, which by default runs the model
once and hands its outputs to :meth:`Strategy.loss`. Which hook to override for what:

================================================  =============================================
to change ...                                      override
================================================  =============================================
the loss, given the model's features and logits    :meth:`~Strategy.loss` ``(ctx, batch,
on the batch ("the loss from outputs": most        features, logits)``; its default is
methods; EWC, LwF, iCaRL)                          :meth:`~Strategy.ce`, the cross-entropy over
                                                   the outputs active for each example
how the model is run on the batch ("I run the      :meth:`~Strategy.train_loss` ``(ctx, batch)``:
model myself": join memory examples to the         it returns the batch's loss; call
batch, correct the logits first; ER, DER, BiC)     :meth:`~Strategy.loss` from it if you want the
                                                   outputs-based loss too
what is trained, in how many stretches, with       :meth:`~Strategy.phases` (or
which loss each (LwF's head warm-up, BiC's bias    :meth:`~Strategy.main_phase`): a list of
correction)                                        :class:`Phase`, each with its own ``loss``
                                                   callable of the same signature as
                                                   ``train_loss``
the parameters the main phase trains               :meth:`~Strategy.parameters`
the examples trained on (the union of the tasks    :meth:`~Strategy.train_data`
so far: Joint; memory examples added: LwF)
what happens around a task (a teacher's copy, a    :meth:`~Strategy.setup`,
memory update, a cache of outputs)                 :meth:`~Strategy.before_task`,
                                                   :meth:`~Strategy.after_task`
how a class is predicted (nearest mean: iCaRL)     :meth:`~Strategy.predict`
the options users set (``strategy.<key>``)        :attr:`~Strategy.Options`: a frozen dataclass
                                                   that checks its values; :meth:`~Strategy.check`
                                                   for a check across sections
what a checkpoint keeps of the strategy            :meth:`~Strategy.state_dict`,
                                                   :meth:`~Strategy.load_state_dict`
================================================  =============================================

:meth:`Strategy.ce` is the cross-entropy of the batch's own labels; :func:`masked_ce` is the
same for any logits and labels (a memory draw's).

A strategy never calls ``backward()``: it declares its phases (what is trained, for how long,
with which loss and optimiser settings) and the engine runs them. Everything a checkpoint must
hold to resume the strategy bit for bit is in :meth:`Strategy.state_dict`, as plain data and
tensors (checkpoints are read with ``torch.load(weights_only=True)``).

The class attributes of :class:`Strategy` declare what the layers that know no strategy by name
need to know (``Options``, ``MEMORY``, ``POLICIES``, ``TEACHER``, ``HOST_DATA``, and
:meth:`Strategy.last_row_only`, which the run records in result.json for the metrics, plots
and report). A method subclasses :class:`Strategy`, declares its options beside it (a
subclass of :class:`~lifelong_kd.strategies.options.Options`, read as ``self.options``) and
overrides the hooks it needs; its presets (the named conventions users type) are in
``strategies/presets.py``. The optimiser is built by ``strategies/optim.py``; what a
training loop shares (stop requests, divergence, the loss checks) is in ``strategies/loop.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MEMORY_POLICIES, MemoryConfig, RunConfig, TrainConfig
from ..data.streams import Images, ImageUnion, Stream, Task
from ..schedules import progress, stream_progress, temperature
from .loop import StopCheck
from .options import DistillationOptions, Options

if TYPE_CHECKING:
    from ..models import Model

# -------------------------------------------------------------------------- strategy


class Strategy:
    """Plain fine-tuning: cross-entropy on the current task only (the lower bound).

    Subclasses override the hooks they need (the module docstring's table says which for
    what); :meth:`loss`, the loss from the model's outputs, is the one most override.
    """

    #: The options this strategy reads (``strategy.<key>``), as a frozen dataclass that
    #: checks its values (``strategies/options.py``); the instance is ``self.options``.
    Options: type[Options] = Options
    #: Whether the strategy keeps an exemplar memory (``memory.*``): ``none`` (the memory
    #: settings have no effect on it), ``optional`` (used when ``memory.size`` or
    #: ``memory.per_class`` is set), ``required``.
    MEMORY: str = "none"
    #: The ``memory.policy`` values the strategy works with (checked before data is loaded).
    POLICIES: tuple[str, ...] = MEMORY_POLICIES
    #: Whether the strategy trains a teacher network of its own from the ``teacher.*``
    #: settings (``compress``, ``kd``); they have no effect on any other.
    TEACHER: bool = False
    #: Whether the strategy reads its training data on the host, not on ``train.device``:
    #: one that trains in a loop of its own whose loaders index the examples on the host
    #: (the Avalanche strategies). The engine then leaves the stream where it is instead of
    #: placing it on an accelerator once (``engine.place_stream``).
    HOST_DATA: bool = False

    def __init__(self, options: Options | None = None, memory: MemoryConfig | None = None):
        self.options = options if options is not None else self.Options()
        self.memory_config = memory if memory is not None else MemoryConfig()

    @classmethod
    def check(cls, config: RunConfig, options: Options) -> None:
        """Refuse (ConfigError naming the key, the value and what is valid), before any data is
        loaded, what the options class cannot check alone: a combination of this strategy's
        ``options`` with the run's other settings (``config``). Nothing by default."""

    @classmethod
    def last_row_only(cls, options: Options) -> str | None:
        """The setting under which this strategy trains nothing before the stream's last
        task, as ``key = value`` (``joint``: ``strategy.mode = final``), so that only the last
        row of its accuracy matrix means something (rows 0..T-2 are the untrained model's
        accuracies); None (the default): every row means something.

        The run records it in result.json (``last_row_only``), where the metrics, plots and
        report read it without knowing any strategy: the metrics that need the earlier rows
        (forgetting, transfer, ...) are null, the plots draw only the last row."""
        return None

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

    def phases(self, ctx: TaskContext) -> list[Phase | ExternalLoop]:
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
        """The main phase's loss of one batch (its ``Phase.loss``). Override it to run the
        model yourself ("I run the model myself": ER joins a memory draw to the batch, BiC
        corrects the logits first). Default: the model's features and logits on ``batch.x``,
        then :meth:`loss`."""
        features, logits = ctx.model.forward_features(batch.x)
        return self.loss(ctx, batch, features, logits)

    def ce(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the batch's labels over the outputs the scenario makes active for
        each example (the row of ``ctx.train_masks`` of the example's own task): the default
        :meth:`loss`, and the term a method adds its own to. For other logits and labels (a
        memory draw's) use :func:`masked_ce`."""
        return masked_ce(ctx, logits, batch.y, batch.t)

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The training loss of one batch from the model's outputs on it ("the loss from
        outputs"): ``features`` (penultimate) and ``logits`` of ``batch.x``, computed once by
        :meth:`train_loss`. Override it to add terms (a distillation, a penalty) to
        :meth:`ce`. Default: :meth:`ce`."""
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


# ------------------------------------------------------- what the hooks are given


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


# ----------------------------------------------------------------------------- phases

#: The loss of one batch of a phase; it runs the model itself (the engine calls backward()).
PhaseLoss = Callable[[TaskContext, Batch], torch.Tensor]


@dataclass
class Phase:
    """One stretch of a task's training, run by the engine's loop: ``steps`` optimiser steps
    over ``epochs`` seeded passes through ``data`` (None: the task's, from
    :meth:`Strategy.train_data`), minimising ``loss`` over ``parameters``.

    The optimiser is ``train.optimizer`` with ``train.lr`` etc.
    (:func:`lifelong_kd.strategies.optim.make_optimizer`),
    ``weight_decay`` replacing ``train.weight_decay`` when given. ``train_modules`` None puts
    the whole model in training mode; otherwise the model is in eval mode except those modules
    (a frozen backbone keeps its batch-norm statistics). Each ``(parameter, rows)`` of
    ``update_rows`` updates only the rows of ``parameter`` where ``rows`` is True (their
    gradient elsewhere is zeroed before the step). With ``train.reset_optimizer = false``, the
    phase that has ``carry_optimizer`` (at most one per task: the main one) continues from the
    optimiser state of the previous task's.

    ``lr_factor`` scales ``train.lr`` for the phase. ``ctx`` (None: the task's) is the context
    the phase runs in: a strategy that trains a
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
    #: ``train.lr`` is multiplied by this in the phase (EEIL's balanced fine-tuning: 0.01).
    lr_factor: float = 1.0


@dataclass
class ExternalLoop:
    """A phase that trains itself: ``run(ctx, should_stop)`` trains task ``ctx.index`` with
    its own loop (another library's strategy, see ``interop/avalanche.py``), polling
    ``should_stop`` and raising :class:`~lifelong_kd.strategies.loop.Interrupted` or
    :class:`~lifelong_kd.strategies.loop.Diverged` as the engine's loop does
    (``strategies/loop.py``). The engine still checks the weights and evaluates afterwards."""

    name: str
    run: Callable[[TaskContext, StopCheck | None], None]


# ------------------------------------------------------------------------------- data


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


def task_steps(train: TrainConfig, n: int) -> tuple[int, int]:
    """(epochs, optimiser steps) of a task with ``n`` training examples: ``train.epochs``
    passes of ceil(n / batch_size) steps, or ``train.iterations`` steps when that is > 0."""
    per_epoch = math.ceil(n / train.batch_size)
    if train.iterations > 0:
        return math.ceil(train.iterations / per_epoch), train.iterations
    return train.epochs, train.epochs * per_epoch


# ------------------------------------------------------------------------ loss helpers


def masked_ce(
    ctx: TaskContext, logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of labels ``y`` over the outputs active for each example: the row of
    ``ctx.train_masks`` of its task ``t`` (memory examples keep their own task's row)."""
    if ctx.all_active:
        return F.cross_entropy(logits, y)
    return F.cross_entropy(logits.masked_fill(~ctx.train_masks[t], float("-inf")), y)


def distillation_temperature(options: DistillationOptions, ctx: TaskContext) -> float:
    """The temperature T of the distillation terms at the step the engine is taking:
    ``temperature`` under the ``constant`` schedule (and ``annealing``, whose stepped T the
    strategy reads from :func:`lifelong_kd.schedules.annealing`); else ``temperature_schedule``
    from ``temperature`` to ``temperature_end`` at progress p over the phase's steps
    (``schedule_span = task``) or across the stream (``stream``, every task taken to have as
    many steps as this one): :func:`lifelong_kd.schedules.temperature`."""
    if options.temperature_schedule in ("constant", "annealing") or ctx.steps <= 1:
        return options.temperature
    step = min(ctx.step, ctx.steps - 1)
    p = (progress(step, ctx.steps) if options.schedule_span == "task"
         else stream_progress(ctx.index, len(ctx.stream), step, ctx.steps))
    return temperature(options.temperature_schedule, options.temperature, options.temperature_end, p)
