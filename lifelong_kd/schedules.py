"""Temperature schedules for distillation terms, and Annealing-KD: pure functions.

A schedule gives the temperature T of a distillation term as a function of the progress
p in [0, 1], measured over each task's steps (span ``task``: :func:`progress`) or across the
whole stream (span ``stream``: :func:`stream_progress`). With T0 = ``start``, T1 = ``end``:

- ``constant``:    T(p) = T0
- ``linear``:      T(p) = T0 + (T1 - T0) p
- ``cosine``:      T(p) = T1 + (T0 - T1) (1 + cos(pi p)) / 2
  (the cosine annealing shape of Loshchilov & Hutter 2017, "SGDR", eq. 5, without restarts)
- ``exponential``: T(p) = T0 (T1 / T0)^p   (geometric interpolation; T0, T1 > 0)
- ``annealing``:   Annealing-KD (Jafari et al. 2021), a stepped schedule that also changes the
  loss: see :func:`annealing` and :func:`annealing_loss`.

Every shape but ``constant`` gives T0 at the first step (p = 0) and T1 at the last (p = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("constant", "linear", "cosine", "exponential", "annealing")
SPANS = ("task", "stream")
DESCRIPTIONS: dict[str, str] = {
    "constant": "T = temperature at every step",
    "linear": "T goes in a straight line from temperature to temperature_end",
    "cosine": "T follows half a cosine from temperature to temperature_end (Loshchilov & Hutter 2017)",
    "exponential": "T goes geometrically from temperature to temperature_end: T0 (T1/T0)^p",
    "annealing": "Annealing-KD: match Phi(T) * teacher logits, T = tau_max..1, then plain CE "
                 "(Jafari et al. 2021)",
}


def progress(step: int, steps: int) -> float:
    """p = step / (steps - 1): 0 at the first step, 1 at the last; 0.0 when steps <= 1."""
    if steps <= 1:
        return 0.0
    if not 0 <= step < steps:
        raise ValueError(f"step {step} is outside 0..{steps - 1}")
    return step / (steps - 1)


def stream_progress(task: int, n_tasks: int, step: int, steps: int) -> float:
    """Progress across the stream, each task taken to have ``steps`` steps:
    p = (task * steps + step) / (n_tasks * steps - 1), from 0 (first task's first step) to 1
    (last task's last step)."""
    if not 0 <= task < n_tasks:
        raise ValueError(f"task {task} is outside 0..{n_tasks - 1}")
    if not 0 <= step < max(steps, 1):
        raise ValueError(f"step {step} is outside 0..{steps - 1}")
    return progress(task * steps + step, n_tasks * steps)


def temperature(schedule: str, start: float, end: float, p: float) -> float:
    """The temperature of ``schedule`` from ``start`` (p = 0) to ``end`` (p = 1); formulas above."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"progress p = {p} is outside [0, 1]")
    if schedule == "constant":
        return start
    if schedule == "linear":
        return start + (end - start) * p
    if schedule == "cosine":
        return end + (start - end) * (1.0 + math.cos(math.pi * p)) / 2.0
    if schedule == "exponential":
        if start <= 0 or end <= 0:
            raise ValueError(f"the exponential schedule needs start > 0 and end > 0, got {start} and {end}")
        return start * (end / start) ** p
    if schedule == "annealing":
        raise ValueError("the annealing schedule is stepped and changes the loss: use annealing(); "
                         f"valid here: {', '.join(SCHEDULES[:-1])}")
    raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class AnnealingStep:
    """Where a step falls in Annealing-KD: its phase (1 or 2), temperature T and Phi(T)."""

    phase: int
    temperature: float
    phi: float


def annealing(tau_max: int, step: int, steps: int, share: float = 0.5) -> AnnealingStep:
    """Annealing-KD's phase, temperature and Phi(T) at ``step`` of ``steps``.

    Jafari, Rezagholizadeh, Sharma & Ghodsi 2021 (EACL), "Annealing Knowledge Distillation",
    section 3 and Algorithm 1 (arXiv 2104.07163). Phase 1 is the first
    n1 = max(1, round(share * steps)) steps (rounded half up; all steps when share = 1), split
    into tau_max equal stages s = step * tau_max // n1 in 0..tau_max-1, with T = tau_max - s
    (tau_max, ..., 1) and Phi(T) = 1 - (T - 1) / tau_max (1 / tau_max at T = tau_max, 1 at
    T = 1); the student matches Phi(T) times the teacher's logits (:func:`annealing_loss`).
    Phase 2 is the remaining steps: plain cross-entropy on the labels (T = 1, Phi = 1).
    """
    if isinstance(tau_max, bool) or not isinstance(tau_max, int) or tau_max < 1:
        raise ValueError(f"tau_max must be an integer >= 1, got {tau_max!r}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 <= step < steps:
        raise ValueError(f"step {step} is outside 0..{steps - 1}")
    n1 = max(1, math.floor(share * steps + 0.5))  # <= steps since share <= 1
    if step >= n1:
        return AnnealingStep(phase=2, temperature=1.0, phi=1.0)
    T = tau_max - step * tau_max // n1
    return AnnealingStep(phase=1, temperature=float(T), phi=1.0 - (T - 1) / tau_max)


def annealing_loss(student: torch.Tensor, teacher: torch.Tensor, phi: float) -> torch.Tensor:
    """Annealing-KD's phase-1 loss: ||z_s - Phi(T) z_t||^2 summed over units, mean over the batch.

    Jafari et al. 2021, section 3 (z_s, z_t the student's and teacher's logits, shape (B, K));
    the teacher's logits are constants.
    """
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (B, K), got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    return (student - phi * teacher.detach()).pow(2).sum(dim=1).mean()
