"""End-to-end incremental learning (EEIL; Castro, Marín-Jiménez, Guil, Schmid & Alahari 2018,
ECCV): distillation on each old task's outputs over the task's and the exemplars' examples,
then a class-balanced fine-tuning."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import MemoryConfig, check_positive, check_range
from ..data.streams import Images
from .base import Batch, ExternalLoop, Phase, Strategy, TaskContext, TrainData
from .features import model_features
from .memory import Memory, with_memory
from .options import Options
from .teacher import Teacher


@dataclass(frozen=True)
class EEILOptions(Options):
    """The options of :class:`EEIL`."""

    #: Weight of the distillation terms (FACIL ``--lamb``: 1).
    alpha: float = 1.0
    #: Temperature of the distillation (FACIL ``--T``: 2, the paper's).
    temperature: float = 2.0
    #: The balanced fine-tuning's learning rate, as a factor of ``train.lr`` (FACIL
    #: ``--lr-finetuning-factor``: 0.01).
    finetuning_lr_factor: float = 0.01
    #: Epochs of the balanced fine-tuning after every task but the first (FACIL
    #: ``--nepochs-finetuning``: 40).
    finetuning_epochs: int = 40

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("strategy.alpha", self.alpha, strict=False)
        check_positive("strategy.temperature", self.temperature)
        check_range("strategy.finetuning_lr_factor", self.finetuning_lr_factor, 0, 1,
                    low_open=True)
        check_range("strategy.finetuning_epochs", self.finetuning_epochs, 0, 100_000)


def softmax_bce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """FACIL's EEIL distillation of one head: ``F.binary_cross_entropy(softmax(s / T),
    softmax(t / T))``, the mean over examples and outputs of
    -[p_k log q_k + (1 - p_k) log(1 - q_k)], q the student's and p the teacher's softmax."""
    return F.binary_cross_entropy(F.softmax(student / temperature, dim=1),
                                  F.softmax(teacher.detach() / temperature, dim=1))


class EEIL(Strategy):
    """EEIL as FACIL's ``src/approach/eeil.py`` (mmasana/FACIL@e0563c7), class-il.

    Task 0: cross-entropy over its classes. Every later task t: (1) the unbalanced phase, over
    the task's examples joined by the exemplar memory's, then (2) the balanced fine-tuning, over
    the memory's examples and as many of the task's, drawn at random once per task, for
    ``finetuning_epochs`` epochs at ``finetuning_lr_factor * train.lr``. Both phases minimise::

        loss = CE(z_seen, y) + alpha * sum_{i in H} BCE(softmax(z_i / T), softmax(z'_i / T))

    z_i the outputs of task i, z' the previous model's (after task t-1, in both phases),
    BCE the mean binary cross-entropy between the two softmaxes (:func:`softmax_bce`; FACIL
    ``criterion``). H is FACIL's ``range(t - 1)`` in phase 1 and ``range(t)`` in phase 2: the
    previous task's outputs are distilled only in the fine-tuning, and on task 1 phase 1 has no
    distillation (``last_head_idx = t if self._finetuning_balanced else (t - 1)``; its comment
    says the balanced phase was meant to take the current head into account too). After the
    task the memory takes its share (``memory.policy``; FACIL's default selection is random per
    class) and the model becomes the previous model. FACIL's gradient noise
    (``--noise-grad``, off by default) and its clipping at norm 10,000 are not done.
    """

    Options = EEILOptions
    options: EEILOptions
    MEMORY = "required"

    def __init__(self, options: EEILOptions | None = None, memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        self.memory = Memory(self.memory_config)
        self.teacher: Teacher | None = None
        #: The output units of each earlier task, on the device (set per task).
        self._heads: list[torch.Tensor] = []

    def before_task(self, ctx: TaskContext) -> None:
        """The output units of each earlier task, on the device once for the task's steps."""
        self._heads = [torch.tensor(t.outputs, device=ctx.device)
                       for t in ctx.stream.tasks[:ctx.index]]

    def train_data(self, ctx: TaskContext) -> TrainData:
        """The task's examples, followed by the memory's."""
        return with_memory(TrainData.of_task(ctx.stream[ctx.index]), self.memory)

    def distillation(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor,
                     heads: int) -> torch.Tensor:
        """alpha * the sum of :func:`softmax_bce` over the outputs of tasks 0..heads-1."""
        if self.teacher is None or heads <= 0:
            return logits.new_zeros(())
        with torch.no_grad():
            old = self.teacher(batch.x)
        total = logits.new_zeros(())
        for units in self._heads[:heads]:
            total = total + softmax_bce(logits[:, units], old[:, units], self.options.temperature)
        return self.options.alpha * total

    def loss(self, ctx: TaskContext, batch: Batch, features: torch.Tensor | None,
             logits: torch.Tensor) -> torch.Tensor:
        """The unbalanced phase's: CE over the classes seen + the distillation of tasks
        0..t-2."""
        return self.ce(ctx, batch, logits) + self.distillation(ctx, batch, logits, ctx.index - 1)

    def balanced_loss(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        """The balanced fine-tuning's: CE over the classes seen + the distillation of tasks
        0..t-1."""
        logits = ctx.model(batch.x)
        return self.ce(ctx, batch, logits) + self.distillation(ctx, batch, logits, ctx.index)

    def phases(self, ctx: TaskContext) -> list[Phase | ExternalLoop]:
        """The unbalanced phase; after the first task, the balanced fine-tuning."""
        main: list[Phase | ExternalLoop] = [self.main_phase(ctx)]
        if ctx.index == 0 or not len(self.memory) or not self.options.finetuning_epochs:
            return main
        return [*main, self.balanced_phase(ctx)]

    def balanced_data(self, ctx: TaskContext) -> TrainData:
        """The memory's examples and as many of the task's, drawn at random (FACIL
        ``_get_train_loader(balanced=True)``: ``randperm`` of the task's data, the first
        len(exemplars))."""
        task = ctx.stream[ctx.index]
        n = min(len(self.memory), len(task.train_y))
        idx = torch.randperm(len(task.train_y), generator=ctx.generator)[:n]
        idx = idx.to(task.train_y.device)
        own = TrainData(Images(task.train_x[idx]), task.train_y[idx],
                        torch.full((n,), task.id, dtype=task.train_y.dtype,
                                   device=task.train_y.device))
        return with_memory(own, self.memory)

    def balanced_phase(self, ctx: TaskContext) -> Phase:
        data = self.balanced_data(ctx)
        epochs = self.options.finetuning_epochs
        steps = epochs * math.ceil(len(data) / ctx.config.train.batch_size)
        return Phase("balanced", self.balanced_loss, self.parameters(ctx.model), epochs, steps,
                     data=data, lr_factor=self.options.finetuning_lr_factor)

    def after_task(self, ctx: TaskContext) -> None:
        """The memory takes its share of the task's examples; the model becomes the previous
        model of the next task."""
        self.memory.update(ctx, TrainData.of_task(ctx.stream[ctx.index]),
                           features_of=model_features(ctx))
        self.teacher = Teacher.copy_of(ctx)

    def costs(self) -> dict[str, int]:
        return {"memory_examples": len(self.memory), "memory_bytes": self.memory.nbytes()}

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        saved = state.get("teacher")
        self.teacher = Teacher.from_state_dict(saved) if saved is not None else None
