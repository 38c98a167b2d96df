"""Distillation losses: pure functions in one registry.

Each loss takes the student's and the teacher's outputs for the same batch (logits of shape
``(B, K)`` over one group of output units, or penultimate features of shape ``(B, D)``) and
the temperature ``T``, and returns the batch mean as a scalar tensor. The teacher's outputs
are constants (no gradient flows into the teacher). Scaling by T^2 and the weight of the
term are the strategy's business, not the loss's. Adding a loss touches this file only:
write the function and add it to :data:`LOSSES`.

Notation: s, t the student's and teacher's logits; p^T = softmax(t / T), q^T = softmax(s / T).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p^T || q^T) = sum_k p_k^T (log p_k^T - log q_k^T), mean over the batch.

    Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural network". Zero when
    s = t; its gradient with respect to s equals that of :func:`soft_ce`.
    """
    log_q = F.log_softmax(student / temperature, dim=1)
    log_p = F.log_softmax(teacher.detach() / temperature, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def soft_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy against the teacher's soft targets: -sum_k p_k^T log q_k^T, batch mean.

    Li & Hoiem 2016, "Learning without forgetting", eq. 2 ("modified cross-entropy"). Its
    minimum, at s = t, is the entropy H(p^T) of the teacher's soft targets.
    """
    log_q = F.log_softmax(student / temperature, dim=1)
    p = F.softmax(teacher.detach() / temperature, dim=1)
    return -(p * log_q).sum(dim=1).mean()


def bce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Binary cross-entropy between sigmoid outputs, summed over units, batch mean:
    -sum_k [ sigma(t_k/T) log sigma(s_k/T) + (1 - sigma(t_k/T)) log(1 - sigma(s_k/T)) ].

    Rebuffi et al. 2017, "iCaRL", section 2.2 (there with T = 1). Minimum, at s = t, the
    Bernoulli entropy of the teacher's sigmoid outputs.
    """
    target = torch.sigmoid(teacher.detach() / temperature)
    per_unit = F.binary_cross_entropy_with_logits(student / temperature, target, reduction="none")
    return per_unit.sum(dim=1).mean()


def mse_logits(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean squared error between logits, mean over units and batch: mean_k (s_k - t_k)^2.

    Logit matching (Ba & Caruana 2014; Hinton et al. 2015, section 2.1, the high-temperature
    limit of KD). The temperature is not used.
    """
    return F.mse_loss(student, teacher.detach())


def feature_l2(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Squared Euclidean distance between penultimate features, batch mean: ||f_s - f_t||^2.

    Feature distillation as in Hou et al. 2019 (LUCIR) without normalisation; the
    temperature is not used.
    """
    return (student - teacher.detach()).pow(2).sum(dim=1).mean()


def feature_cosine(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """1 - cos(f_s, f_t) between penultimate features, batch mean.

    The "less-forget" constraint of Hou et al. 2019, "Learning a unified classifier
    incrementally via rebalancing" (LUCIR), eq. 6. The temperature is not used.
    """
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()


@dataclass(frozen=True)
class DistillLoss:
    """A registered loss: the function and what it compares (``logits`` or ``features``)."""

    fn: LossFn
    on: str
    reference: str


LOSSES: dict[str, DistillLoss] = {
    "kl": DistillLoss(kl, "logits", "Hinton et al. 2015"),
    "soft_ce": DistillLoss(soft_ce, "logits", "Li & Hoiem 2016, eq. 2"),
    "bce": DistillLoss(bce, "logits", "Rebuffi et al. 2017 (iCaRL)"),
    "mse_logits": DistillLoss(mse_logits, "logits", "Ba & Caruana 2014"),
    "feature_l2": DistillLoss(feature_l2, "features", "Hou et al. 2019 (LUCIR), unnormalised"),
    "feature_cosine": DistillLoss(feature_cosine, "features", "Hou et al. 2019 (LUCIR), eq. 6"),
}


def grouped_distillation(
    loss: DistillLoss,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    groups: list[torch.Tensor],
    temperature: float,
) -> torch.Tensor:
    """Sum of a logits loss over groups of output units, one softmax per group.

    In task-il a group is a previous task's head, and the per-head terms are summed, as in
    Li & Hoiem 2016 (eq. 1 sums over old tasks) and Avalanche's LwF.
    """
    total = student_logits.new_zeros(())
    for g in groups:
        total = total + loss.fn(student_logits[:, g], teacher_logits[:, g], temperature)
    return total
