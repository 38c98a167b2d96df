"""Distillation losses: pure functions in one registry.

Each loss takes the student's and the teacher's outputs for the same batch (logits of shape
``(B, K)`` over one group of output units, or penultimate features of shape ``(B, D)``) and
the temperature ``T``, and returns the batch mean as a scalar tensor. The teacher's outputs
are constants (no gradient flows into the teacher). A teacher logit of ``-inf`` means "this
unit has probability zero in the teacher's soft targets": that is how the zero-padded targets
of ``strategy.logits = padded`` (van de Ven & Tolias 2019) reach the softmax and sigmoid
losses (those that declare ``padded_targets``). Scaling by T^2 and the weight of the term are
the strategy's business, not the loss's. Adding a loss touches this file only: write the
function and add it to :data:`LOSSES`, saying what it compares and what targets it accepts.

Notation: s, t the student's and teacher's logits; p = softmax(t / T) the teacher's soft
targets, q = softmax(s / T) the student's; sigma the logistic sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p || q) = sum_k p_k (log p_k - log q_k), summed over units, mean over the batch.

    Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural network", section 2.
    Zero when s = t, never negative. It differs from :func:`soft_ce` by the teacher's entropy
    H(p), a constant, so the two give the same gradient with respect to the student. The
    formula is that of ``torch.nn.functional.kl_div(log q, p, reduction="batchmean")`` (terms
    with p_k = 0 count as 0), which Avalanche's LwF uses.
    """
    log_q = F.log_softmax(student / temperature, dim=1)
    p = F.softmax(teacher.detach() / temperature, dim=1)
    return (torch.xlogy(p, p) - p * log_q).sum(dim=1).mean()


def soft_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy against the teacher's soft targets: -sum_k p_k log q_k, batch mean.

    Li & Hoiem 2016 (TPAMI 2018), "Learning without forgetting", eq. 2 with the targets of
    eq. 3 (y'^(i) = (y^(i))^(1/T) / sum_j (y^(j))^(1/T), which is softmax(t/T)): the
    "modified cross-entropy" of LwF. Its minimum, at s = t, is the entropy H(p).
    """
    log_q = F.log_softmax(student / temperature, dim=1)
    p = F.softmax(teacher.detach() / temperature, dim=1)
    return -(p * log_q).sum(dim=1).mean()


def bce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Binary cross-entropy between sigmoid outputs, summed over units, batch mean:
    -sum_k [ sigma(t_k/T) log sigma(s_k/T) + (1 - sigma(t_k/T)) log(1 - sigma(s_k/T)) ].

    Rebuffi et al. 2017, "iCaRL", section 2.2 (there with T = 1). Its minimum, at s = t, is the
    summed Bernoulli entropy of the teacher's sigmoid outputs.
    """
    target = torch.sigmoid(teacher.detach() / temperature)
    per_unit = F.binary_cross_entropy_with_logits(student / temperature, target, reduction="none")
    return per_unit.sum(dim=1).mean()


def mse_logits(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean squared error between logits, mean over units and batch: mean_k (s_k - t_k)^2.

    Logit matching (Ba & Caruana 2014, "Do deep nets really need to be deep?"; Hinton et al.
    2015, section 2.1, shows it is the high-temperature limit of KD). The temperature is not
    used.
    """
    return F.mse_loss(student, teacher.detach())


def feature_l2(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Squared Euclidean distance between penultimate features, batch mean: ||f_s - f_t||^2.

    Feature distillation without normalisation (the unnormalised counterpart of Hou et al.
    2019's less-forget constraint). The temperature is not used.
    """
    return (student - teacher.detach()).pow(2).sum(dim=1).mean()


def feature_cosine(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """1 - cos(f_s, f_t) between penultimate features, batch mean.

    The "less-forget" constraint of Hou et al. 2019, "Learning a unified classifier
    incrementally via rebalancing" (LUCIR), eq. 6. The temperature is not used.
    """
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()


# ----------------------------------------------------- the value of each loss at s = t


def _zero(teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return teacher.new_zeros(())


def softmax_entropy(teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """H(p) = -sum_k p_k log p_k, p = softmax(t/T), batch mean: the minimum of :func:`soft_ce`."""
    p = F.softmax(teacher / temperature, dim=1)
    return -torch.xlogy(p, p).sum(dim=1).mean()


def bernoulli_entropy(teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """-sum_k [r_k log r_k + (1 - r_k) log(1 - r_k)], r = sigma(t/T), batch mean: the minimum of
    :func:`bce`."""
    r = torch.sigmoid(teacher / temperature)
    return -(torch.xlogy(r, r) + torch.xlogy(1 - r, 1 - r)).sum(dim=1).mean()


@dataclass(frozen=True)
class DistillLoss:
    """A registered loss: the function, what it compares (``logits`` or ``features``), its
    reference, whether it uses the temperature (only then does ``t2_scaling`` apply), its
    value when the student equals the teacher (its minimum), and whether it accepts
    zero-padded targets (a logits loss for which a teacher logit of -inf means target
    probability zero: a softmax or sigmoid; ``strategy.logits = padded`` needs one)."""

    fn: LossFn
    on: str
    reference: str
    uses_temperature: bool
    minimum: Callable[[torch.Tensor, float], torch.Tensor] = _zero
    padded_targets: bool = False


LOSSES: dict[str, DistillLoss] = {
    "kl": DistillLoss(kl, "logits", "Hinton et al. 2015, section 2", True, padded_targets=True),
    "soft_ce": DistillLoss(soft_ce, "logits", "Li & Hoiem 2016, eq. 2-3", True, softmax_entropy,
                           padded_targets=True),
    "bce": DistillLoss(bce, "logits", "Rebuffi et al. 2017 (iCaRL), section 2.2", True,
                       bernoulli_entropy, padded_targets=True),
    "mse_logits": DistillLoss(mse_logits, "logits", "Ba & Caruana 2014", False),
    "feature_l2": DistillLoss(feature_l2, "features", "Hou et al. 2019 (LUCIR), unnormalised",
                              False),
    "feature_cosine": DistillLoss(feature_cosine, "features", "Hou et al. 2019 (LUCIR), eq. 6",
                                  False),
}

REDUCTIONS = ("sum", "mean")


def grouped_distillation(
    loss: DistillLoss,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    groups: Sequence[torch.Tensor],
    temperature: float,
    reduction: str = "sum",
    teacher_masks: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """A logits loss over groups of output units, one softmax per group, combined over groups.

    KD = sum_g L(s[:, g], t[:, g]) (``reduction = sum``: Li & Hoiem 2016, section 3 and
    Algorithm 1, one L_old term per old task; Avalanche's LwF) or (1/G) sum_g L(...)
    (``mean``: van de Ven & Tolias 2019, whose replay loss is averaged over previous tasks).
    In task-il a group is one earlier task's head; in class-il and domain-il there is one
    group.

    ``teacher_masks[i]`` (bool, one entry per unit of ``groups[i]``), where given, marks the
    units the teacher's soft targets cover; the others get teacher logit -inf, i.e. target
    probability zero (the zero padding of van de Ven & Tolias 2019).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    total = student_logits.new_zeros(())
    for i, g in enumerate(groups):
        target = teacher_logits[:, g]
        mask = teacher_masks[i] if teacher_masks is not None else None
        if mask is not None:
            target = target.masked_fill(~mask, float("-inf"))
        total = total + loss.fn(student_logits[:, g], target, temperature)
    if reduction == "mean" and len(groups) > 1:
        total = total / len(groups)
    return total
