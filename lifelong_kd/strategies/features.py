"""The model applied to stored images: its logits (:func:`model_outputs`) and penultimate
features (:func:`model_features`) on uint8 examples (a task's, a memory's), on their clean
inputs, in eval mode, in batches of ``train.eval_batch_size``.

What a memory records or chooses by (DER's logits, herding's features: ``er.py``, ``lwf.py``)
and iCaRL's class means (``icarl.py``) are computed so; each of those strategies imports them
from here, none from another strategy.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import TaskContext

__all__ = ["model_features", "model_outputs"]


def model_outputs(ctx: TaskContext) -> Any:
    """uint8 images -> the model's logits on their clean inputs, in eval mode, in batches of
    ``train.eval_batch_size`` (what Avalanche's DER records at a task's end)."""
    def outputs(images: torch.Tensor) -> torch.Tensor:
        return _batched(ctx, images, ctx.model)
    return outputs


def model_features(ctx: TaskContext) -> Any:
    """uint8 images -> the model's penultimate features, as :func:`model_outputs` (herding)."""
    def features(images: torch.Tensor) -> torch.Tensor:
        return _batched(ctx, images, ctx.model.features)
    return features


def _batched(ctx: TaskContext, images: torch.Tensor, fn: Any) -> torch.Tensor:
    """``fn`` over ``images`` in eval mode, batch by batch; no image gives no row, of the
    output's width all the same (one call on the empty batch)."""
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        with torch.inference_mode():
            outs = [fn(ctx.prepare(images[i:i + ctx.eval_batch_size]))
                    for i in range(0, max(len(images), 1), ctx.eval_batch_size)]
    finally:
        ctx.model.train(was_training)
    return torch.cat(outs).clone()
