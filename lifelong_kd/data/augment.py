"""Augmentation on whole batches, as tensor operations, from a seeded generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .streams import to_device


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad``-pixel zero padding, then a horizontal flip with p = 0.5.

    The standard CIFAR augmentation (He et al. 2016, section 4.2; torchvision's
    ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``), applied to a whole batch of
    images ``(B, C, H, W)`` at once: one offset pair and one coin per image.

    The draws come from ``generator`` (the run's, on the host) in a fixed order, two offsets
    then the coins, whatever device ``x`` is on; they go to that device in one copy that does
    not wait (:func:`~lifelong_kd.data.streams.to_device`), and the crop and flip are one
    gather there.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    di = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dj = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    draws = to_device(torch.stack([di, dj, flip.long()]), x.device)
    di, dj, flip = draws[0], draws[1], draws[2].bool()
    rows = di[:, None] + torch.arange(h, device=x.device)[None, :]  # (B, H)
    cols = dj[:, None] + torch.arange(w, device=x.device)[None, :]  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
