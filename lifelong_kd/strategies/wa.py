"""Weight Aligning (WA; Zhao, Xiao, Gan, Zhang & Xia 2020, "Maintaining discrimination and
fairness in class incremental learning", CVPR): LwF with exemplars, then the new classes'
classifier weights rescaled to the old classes' norm after each task."""

from __future__ import annotations

import torch

from .base import TaskContext
from .lwf import LwF


def weight_aligned(weight: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``weight`` (outputs x features) with the rows of the ``new`` outputs multiplied by
    gamma = mean_{i in old} ||w_i|| / mean_{j in new} ||w_j|| (Zhao et al. 2020, eq. 6-7: the
    new classes' weight vectors brought to the old ones' mean norm; the biases are left as
    they are, as in PyCIL's ``IncrementalNet.weight_align``). ``old`` and ``new``: index
    tensors of output units."""
    norms = weight.norm(dim=1)
    gamma = norms[old].mean() / norms[new].mean()
    out = weight.clone()
    out[new] = weight[new] * gamma
    return out


class WA(LwF):
    """WA as PyCIL's ``models/wa.py`` (G-U-N/PyCIL@27a5ed8), a class-incremental method.

    Each task trains on its examples and the exemplar memory's (herding, a share per class of
    ``memory.size``) with, on every example of the union (LwF's loss with exemplars, this
    class's parent)::

        loss = CE(z_seen, y) + alpha * KD_T(z_old, z'_old)

    CE over every class seen so far, KD the soft cross-entropy -sum_k p_k log q_k between the
    previous model's softmax at T and the model's over the classes of earlier tasks, batch
    mean, without T^2 (PyCIL ``_update_representation``: ``loss_clf + 2 * loss_kd``, T = 2,
    ``_KD_loss``; the ``wa`` preset). After training each task but the first, and before the
    model becomes the next teacher, the classifier's weight rows of the task's classes are
    rescaled by :func:`weight_aligned` against those of every class seen before (PyCIL calls
    ``weight_align`` at the end of ``_train`` and again in ``after_task``: the second call
    multiplies by 1, so once is the same). Then the memory takes its share of the task's
    examples (``build_rehearsal_memory``; herding on the aligned model's features, which the
    alignment of the head does not change). Prediction: the argmax of the logits (PyCIL's
    "CNN" accuracy).
    """

    MEMORY = "required"

    def after_task(self, ctx: TaskContext) -> None:
        """Align the task's classifier weights (tasks after the first), then LwF's end of
        task: the model becomes the teacher, the memory takes its share."""
        if ctx.index > 0:
            self.align_weights(ctx)
        super().after_task(ctx)

    @staticmethod
    def align_weights(ctx: TaskContext) -> None:
        """Rescale the head's weight rows of the current task's outputs (:func:`weight_aligned`)
        against those of the outputs of every earlier task."""
        stream, head = ctx.stream, ctx.model.head
        new = torch.tensor(stream[ctx.index].outputs, device=head.weight.device)
        (old,) = stream.distill_groups(ctx.index, "old")  # class-il: every earlier task's units
        old = old.to(head.weight.device)
        with torch.no_grad():
            head.weight.copy_(weight_aligned(head.weight, old, new))
