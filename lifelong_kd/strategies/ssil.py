"""SS-IL (Ahn, Kwak, Lim, Bang, Kim & Moon 2021, "SS-IL: Separated softmax for incremental
learning", ICCV): replay with the softmax separated between the current task's classes and
the earlier ones, and task-wise distillation from the previous model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import MemoryConfig, check_positive
from ..losses import LOSSES, grouped_distillation
from .base import Batch, TaskContext
from .er import ER
from .lwf import torch_lookup
from .memory import Draw
from .options import Options
from .teacher import Teacher


@dataclass(frozen=True)
class SSILOptions(Options):
    """The options of :class:`SSIL`."""

    #: Weight of the task-wise distillation term (the authors' code: 1).
    alpha: float = 1.0
    #: Temperature of the task-wise distillation (the authors' code: T = 2).
    temperature: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("strategy.alpha", self.alpha, strict=False)
        check_positive("strategy.temperature", self.temperature)


def separated_ce(logits: torch.Tensor, y: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """The summed cross-entropy of labels ``y`` over the output ``units`` only (an index
    tensor): sum_i -log softmax(z_i[units])[position of y_i in units]."""
    return F.cross_entropy(logits[:, units], torch_lookup(units, logits.shape[1])[y],
                           reduction="sum")


def task_wise_kd(student: torch.Tensor, teacher: torch.Tensor, groups: list[torch.Tensor],
                 temperature: float) -> torch.Tensor:
    """sum_k T^2 * KL(softmax(t[G_k] / T) || softmax(s[G_k] / T)), each KL averaged over the
    batch, one group G_k of output units per earlier task (SS-IL eq. 4; the authors'
    ``F.kl_div(..., reduction='batchmean') * T**2`` summed over tasks): the ``kl`` loss over
    the groups (:func:`~lifelong_kd.losses.grouped_distillation`), times T^2."""
    return grouped_distillation(LOSSES["kl"], student, teacher, groups, temperature,
                                "sum") * temperature ** 2


class SSIL(ER):
    """SS-IL as the authors' code, hongjoon0805/SS-IL-Official@01818f3 ``trainer/ssil.py``.

    Each batch B of the current task is joined by a draw R of ``memory.batch_size`` examples
    from the memory (the authors: ``--batch-size`` 128, ``--replay-batch-size`` 32), one
    forward pass over both, and::

        loss = [ sum_{i in B} CE(z_i[new], y_i) + sum_{j in R} CE(z_j[old], y_j) ] / (|B| + |R|)
               + alpha * sum_{k < t} T^2 * KL_k(B + R)

    ``new`` the current task's output units and ``old`` those of every earlier task (the
    separated softmax: a new example's CE knows only the new classes, a replayed one's only
    the old), KL_k the batch-mean KL divergence between the previous model's and the model's
    softmax at T over task k's units, on every example of B + R (:func:`task_wise_kd`). On
    the first task: the CE of B over its own units. The previous model is the model as it
    was after the last task. The memory takes its share of each task at its end
    (``memory.policy``, a share per class). Prediction: the argmax of the logits over the
    classes seen. The authors' epoch ends with the shorter of the task's and the memory's
    loaders (``zip``); here every epoch covers the task's examples, each batch with a draw.
    """

    Options = SSILOptions
    options: SSILOptions

    def __init__(self, options: SSILOptions | None = None, memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        self.teacher: Teacher | None = None
        #: The current task's output units, and those of each earlier task (set per task).
        self._new = torch.zeros(0, dtype=torch.long)
        self._old_tasks: list[torch.Tensor] = []

    def before_task(self, ctx: TaskContext) -> None:
        """The output units of the task and of each earlier one, on the device once."""
        tasks = ctx.stream.tasks
        self._new = torch.tensor(tasks[ctx.index].outputs, device=ctx.device)
        self._old_tasks = [torch.tensor(t.outputs, device=ctx.device) for t in tasks[:ctx.index]]

    def draws(self, ctx: TaskContext) -> list[Draw]:
        """One draw from memory, from the second task on."""
        return super().draws(ctx) if ctx.index > 0 else []

    def replay_loss(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor,
                    draws: list[Draw], draw_logits: list[torch.Tensor]) -> torch.Tensor:
        ce = separated_ce(logits, batch.y, self._new)
        if not draws or self.teacher is None:
            return ce / len(batch.y)
        old_tasks = self._old_tasks
        ce = ce + separated_ce(draw_logits[0], draws[0].y, torch.cat(old_tasks))
        x = torch.cat([batch.x, draws[0].x])
        with torch.no_grad():
            teacher = self.teacher(x)
        student = torch.cat([logits, draw_logits[0]])
        kd = task_wise_kd(student, teacher, old_tasks, self.options.temperature)
        return ce / len(x) + self.options.alpha * kd

    def after_task(self, ctx: TaskContext) -> None:
        """The memory takes its share of the task; the model becomes the next teacher."""
        super().after_task(ctx)
        self.teacher = Teacher.copy_of(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("teacher") is not None:
            self.teacher = Teacher.from_state_dict(state["teacher"])
