"""What every training loop shares: the engine's own (``engine.py``) and a strategy's that
trains in a loop of its own (an :class:`~lifelong_kd.strategies.base.ExternalLoop` phase, e.g. the
Avalanche strategies of ``interop/avalanche.py``).

- :data:`StopCheck`: the function a loop polls every step; True means the user asked to stop.
- :class:`Interrupted`: what a loop raises then (the run keeps its finished tasks).
- :class:`Diverged`: what a loop raises when the loss, the weights or the outputs are inf or NaN.
- :class:`LossWatch`: the NaN/inf check of the losses, every 50 steps instead of every step
  (one host synchronisation per check).

They live here, below both the engine and ``interop`` (which the import contracts keep from
knowing each other), rather than in ``strategies/base.py``, whose subject is the protocol a
method author implements. A method author needs none of them unless the method trains in its
own loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["Diverged", "Interrupted", "LossWatch", "StopCheck"]

#: A function polled every step; True asks the run to stop (SIGINT/SIGTERM).
StopCheck = Callable[[], bool]


class Interrupted(Exception):
    """Raised inside a training loop when the user asked to stop (SIGINT/SIGTERM)."""


class Diverged(Exception):
    """Raised when the loss is NaN or infinite, when a weight is so after a task, or when the
    model's outputs on test examples are (weights grown so large that the outputs overflow
    while the training loss stayed finite)."""


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
