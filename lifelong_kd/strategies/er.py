"""Experience replay: train on each batch joined by a draw from an exemplar memory.

The memory (``strategies/memory.py``) keeps examples of earlier tasks; every step draws
``memory.batch_size`` of them, and the model is trained on the batch and the draw together.
DER and DER++ (``der.py``) are this with the outputs recorded in memory as extra targets.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import MemoryConfig
from .base import Batch, Strategy, TaskContext, masked_ce
from .features import model_features, model_outputs
from .memory import Draw, Memory
from .options import Options


class ER(Strategy):
    """Experience replay (Chaudhry et al. 2019, "On tiny episodic memories in continual
    learning"; Riemer et al. 2019), as Mammoth's ``models/er.py`` (7ab9db9, l.29-48).

    While the memory holds examples, each batch B is joined by a draw M of
    ``memory.batch_size`` examples from it (without replacement; all of them when it holds
    fewer), and the loss is one mean cross-entropy over both::

        loss = 1 / (|B| + |M|) * sum_{(x, y) in B + M} CE(f(x), y)

    each example over the outputs active for its own task (``ctx.train_masks``). One forward
    pass over the joined batch (Mammoth's too). The memory is updated with the batch's
    non-augmented images after its draw: every step for ``reservoir`` (Mammoth's
    ``add_data``, l.45-46), at the task's end otherwise (Avalanche's ``ReplayPlugin``,
    ``after_training_exp``).
    """

    MEMORY = "required"
    #: Whether the memory records the model's outputs with each example (DER).
    KEEPS_LOGITS = False

    def __init__(self, options: Options | None = None, memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        self.memory = Memory(self.memory_config, with_logits=self.KEEPS_LOGITS)

    def draw_size(self, ctx: TaskContext) -> int:
        """Examples per draw from memory: ``memory.batch_size``, or ``train.batch_size``."""
        return self.memory_config.batch_size or ctx.config.train.batch_size

    def draws(self, ctx: TaskContext) -> list[Draw]:
        """The draws from memory for one step (ER: one; none while the memory is empty)."""
        draw = self.memory.draw(ctx, self.draw_size(ctx))
        return [] if draw is None else [draw]

    def train_loss(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        """Draw from memory, one forward pass over the batch and the draws, the loss
        (:meth:`replay_loss`), then offer the batch to a reservoir memory."""
        draws = self.draws(ctx)
        x = torch.cat([batch.x, *(d.x for d in draws)]) if draws else batch.x
        logits = ctx.model(x)
        n = len(batch.y)
        loss = self.replay_loss(ctx, batch, logits[:n], draws, _split(logits[n:], draws))
        if self.memory.online:
            self.memory.add(batch.raw, batch.y, batch.t,
                            logits[:n] if self.KEEPS_LOGITS else None, ctx.generator)
        return loss

    def replay_loss(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor,
                    draws: list[Draw], draw_logits: list[torch.Tensor]) -> torch.Tensor:
        """ER: the mean cross-entropy over the batch and the draw together."""
        if not draws:
            return masked_ce(ctx, logits, batch.y, batch.t)
        y = torch.cat([batch.y, draws[0].y])
        t = torch.cat([batch.t, draws[0].t])
        return masked_ce(ctx, torch.cat([logits, draw_logits[0]]), y, t)

    def after_task(self, ctx: TaskContext) -> None:
        """A memory chosen per class or per task takes its share of the task now."""
        if not self.memory.online:
            data = ctx.current_train_data
            assert data is not None
            self.memory.update(ctx, data, logits_of=model_outputs(ctx) if self.KEEPS_LOGITS else None,
                               features_of=model_features(ctx))

    def costs(self) -> dict[str, int]:
        return {"memory_examples": len(self.memory), "memory_bytes": self.memory.nbytes()}

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])


def _split(logits: torch.Tensor, draws: list[Draw]) -> list[torch.Tensor]:
    """The rows of ``logits`` that belong to each draw, in order."""
    return list(torch.split(logits, [len(d) for d in draws])) if draws else []
