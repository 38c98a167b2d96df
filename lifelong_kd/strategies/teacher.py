"""The teacher: a frozen model whose outputs a student is distilled towards.

A :class:`Teacher` is a model in eval mode with no gradients, together with its own model
settings (``ModelConfig``, input shape, number of outputs), so that it need not have the
student's architecture: its checkpoint entry is those settings and its weights, and it is
rebuilt from them alone (as nanoGPT's checkpoint stores the model's own arguments). The
default teacher, LwF's (Li & Hoiem 2016), is :meth:`Teacher.copy_of` the student after the
previous task.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import torch

from ..config import ModelConfig
from ..models import Model, build_model
from .base import TaskContext


class Teacher:
    """A frozen model (eval mode, ``requires_grad`` off) and the settings that build it."""

    def __init__(self, model: Model, settings: ModelConfig, input_shape: tuple[int, int, int],
                 n_outputs: int):
        self.model = model.eval().requires_grad_(False)
        self.settings = settings
        self.input_shape = input_shape
        self.n_outputs = n_outputs

    @classmethod
    def copy_of(cls, ctx: TaskContext) -> Teacher:
        """A frozen copy of the student ``ctx.model``, with the run's model settings."""
        return cls(copy.deepcopy(ctx.model), ctx.config.model, ctx.stream.input_shape,
                   ctx.stream.n_outputs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for the normalised inputs ``x``."""
        return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's penultimate features for ``x`` (feature distillation)."""
        return self.model.features(x)

    def state_dict(self) -> dict[str, Any]:
        """Its settings as plain data and its weights: all that :meth:`from_state_dict`
        needs."""
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.settings).items()}
        return {"settings": settings, "input_shape": list(self.input_shape),
                "n_outputs": self.n_outputs, "weights": self.model.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Teacher:
        """The teacher of :meth:`state_dict`, on the device its weights were loaded to. The
        global random generator is left as it was (the weights are overwritten anyway)."""
        settings = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in state["settings"].items()})
        c, h, w = state["input_shape"]
        shape = (int(c), int(h), int(w))
        weights = state["weights"]
        with torch.random.fork_rng(devices=[]):
            model = build_model(settings, shape, state["n_outputs"])
        device = next(iter(weights.values())).device if weights else torch.device("cpu")
        model.to(device).load_state_dict(weights)
        return cls(model, settings, shape, state["n_outputs"])
