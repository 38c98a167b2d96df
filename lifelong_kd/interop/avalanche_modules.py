"""What runs our models and loop inside an Avalanche strategy: the model wrappers (active
units in class-il and domain-il, one head per task in task-il) and the plugin that controls
the training (steps, stop requests, divergence). Importing this module needs Avalanche
(``interop/avalanche.py`` imports it on first use, once Avalanche is known to be there)."""

from __future__ import annotations

from typing import Any

import torch
from avalanche.models import MultiTaskModule
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from ..strategies.loop import Interrupted, LossWatch, StopCheck

#: Value of the masked (inactive) output units, as Avalanche's IncrementalClassifier.
MASK_VALUE = -1000.0


class ActiveUnits(nn.Module):
    """Our model, with the output units outside ``active`` set to MASK_VALUE."""

    def __init__(self, model: nn.Module, n_outputs: int):
        super().__init__()
        self.model = model
        self.register_buffer("active", torch.ones(n_outputs, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if bool(self.active.all()) else out.masked_fill(~self.active, MASK_VALUE)


class TaskHeads(MultiTaskModule):
    """Our model as an Avalanche multi-head module: task t's output keeps the units of
    task t (row t of ``units``) and masks the others."""

    def __init__(self, model: nn.Module, units: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("units", units)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.model(x).masked_fill(~self.units[task_label], MASK_VALUE)

    def forward(self, x: torch.Tensor, task_labels: Any) -> Any:
        if task_labels is None:
            return self.forward_all_tasks(x)
        if isinstance(task_labels, int):
            return self.forward_single_task(x, task_labels)
        # one forward pass for a batch of mixed tasks, then a mask per example
        return self.model(x).masked_fill(~self.units[task_labels], MASK_VALUE)


class Control(SupervisedPlugin):
    """Sets the active units (class-il) of the model being trained, stops after
    ``max_steps`` steps (train.iterations), on a user's stop request (raises Interrupted)
    and on a NaN or infinite loss (raises Diverged; the losses are checked every 50 steps
    and at the end of the task, as the engine's loop does, not synchronised every step)."""

    def __init__(self) -> None:
        super().__init__()
        self.should_stop: StopCheck | None = None
        self.active: torch.Tensor | None = None
        self.max_steps = 0
        self.steps = 0
        self.task = 0
        self.watch = LossWatch(self._where)

    def _where(self, step: int) -> str:
        return f"in task {self.task} (0-based), step {step}"

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.steps = 0
        self.watch = LossWatch(self._where)
        # on strategy.model, not our wrapper: GDumb trains a fresh copy at each task
        if self.active is not None and isinstance(strategy.model, ActiveUnits):
            strategy.model.active.copy_(self.active)

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        self.steps += 1
        self.watch.add(strategy.loss)
        if self.watch.due():
            self.watch.check()
        if self.should_stop is not None and self.should_stop():
            self.watch.check()
            raise Interrupted(f"interrupted during task {self.task} (0-based)")
        if self.max_steps and self.steps >= self.max_steps:
            strategy.stop_training()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.watch.check()
        # stop_training() in the last epoch would otherwise skip the next task's first
        strategy._stop_training = False
