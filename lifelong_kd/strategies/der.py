"""Dark Experience Replay (DER) and DER++ (Buzzega et al. 2020): replay with the logits
recorded in memory as targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import check_positive
from .base import Batch, TaskContext, masked_ce
from .er import ER
from .memory import Draw
from .options import Options


@dataclass(frozen=True)
class DEROptions(Options):
    """The options of :class:`DER` (``der``, ``derpp``)."""

    #: Weight of the logit-replay term: the MSE between the outputs on a memory draw and the
    #: logits recorded with it (Buzzega et al. 2020, eq. 4).
    alpha: float = 1.0
    #: Weight of the cross-entropy on memory examples (DER++, Buzzega et al. 2020, eq. 6; 0:
    #: DER).
    beta: float = 0.5
    #: Draw the examples of the beta term from memory independently of the alpha term's
    #: (Mammoth) or use the same draw for both (Avalanche).
    independent_draws: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("strategy.beta", self.beta, strict=False)
        check_positive("strategy.alpha", self.alpha, strict=False)


class DER(ER):
    """DER and DER++ (Buzzega et al. 2020, "Dark experience for general continual learning: a
    strong, simple baseline", NeurIPS; eq. 4 and 6), as Mammoth's ``models/der.py`` (7ab9db9,
    l.30-47) and ``models/derpp.py`` (l.34-58).

    The memory records with each example the logits z the model gave it when it entered
    (reservoir: the training step's own outputs, on the augmented input, Mammoth's
    ``add_data(..., logits=outputs.data)``; a per-class memory: the outputs on the clean input
    at the task's end, Avalanche's ``ClassBalancedBufferWithLogits.update``). The loss of a
    batch B with draws M1 and M2 of ``memory.batch_size`` examples each::

        loss = CE_B + alpha * MSE(f(x'), z')_{M1} + beta * CE(f(x''), y'')_{M2}

    CE_B the mean cross-entropy over the batch; MSE the mean over every example and output of
    M1 (``F.mse_loss``); DER is beta = 0 (no second draw). ``independent_draws = false`` uses
    M1 for both terms (Avalanche's ``DER``, avalanche/training/supervised/der.py l.262-293).
    One forward pass over B, M1 and M2 together (Mammoth makes three; the same values for a
    model without batch norm).
    """

    Options = DEROptions
    options: DEROptions
    KEEPS_LOGITS = True

    def draws(self, ctx: TaskContext) -> list[Draw]:
        """M1, and for DER++ with independent draws M2."""
        first = self.memory.draw(ctx, self.draw_size(ctx))
        if first is None:
            return []
        if self.options.beta > 0 and self.options.independent_draws:
            second = self.memory.draw(ctx, self.draw_size(ctx))
            assert second is not None
            return [first, second]
        return [first]

    def replay_loss(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor,
                    draws: list[Draw], draw_logits: list[torch.Tensor]) -> torch.Tensor:
        loss = masked_ce(ctx, logits, batch.y, batch.t)
        if not draws:
            return loss
        first = draws[0]
        assert first.logits is not None
        loss = loss + self.options.alpha * F.mse_loss(draw_logits[0], first.logits)
        if self.options.beta > 0:
            second, second_logits = (draws[1], draw_logits[1]) if len(draws) > 1 \
                else (first, draw_logits[0])
            loss = loss + self.options.beta * masked_ce(ctx, second_logits, second.y, second.t)
        return loss
