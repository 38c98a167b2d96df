"""iCaRL (Rebuffi et al. 2017): herding memory, sigmoid distillation, nearest-mean prediction.

Rebuffi, Kolesnikov, Sperl & Lampert 2017, "iCaRL: Incremental Classifier and Representation
Learning" (CVPR): section 2.1 and Algorithm 1 (classification by the nearest mean of
exemplars), section 2.2 and Algorithms 2-5 (training on the new data and the exemplars with
one binary cross-entropy per class, the old classes' targets given by the previous network;
exemplars chosen by herding and reduced by keeping the first chosen). The presets ``icarl``
(herding) and ``icarl-random`` (random exemplars, FACIL's default selection) are in
``strategies/presets.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import MemoryConfig, check_choice
from ..data.streams import to_device
from .base import Batch, Strategy, TaskContext, TrainData
from .features import model_features
from .memory import Memory, with_memory
from .options import Options
from .teacher import Teacher

#: ``strategy.prediction``: the model's logits, or the nearest mean of exemplars.
PREDICTIONS = ("logits", "nme")


@dataclass(frozen=True)
class ICaRLOptions(Options):
    """The options of :class:`ICaRL`."""

    #: How a class is predicted: ``logits`` (the argmax of the model's outputs) or ``nme``
    #: (nearest mean of exemplars, Rebuffi et al. 2017, section 2.1).
    prediction: str = "logits"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("strategy.prediction", self.prediction, PREDICTIONS)


class ICaRL(Strategy):
    """iCaRL (Rebuffi et al. 2017, CVPR), as Mammoth's ``models/icarl.py`` (aimagelab/mammoth
    7ab9db9) except where noted, cross-checked with FACIL (mmasana/FACIL
    ``src/approach/icarl.py``@e09d2c8) and PyCIL (G-U-N/PyCIL ``models/base.py``@87cc411).

    **Training data** of task t: the task's examples and every example in memory, each with
    its own label and task id (Algorithm 3, "form combined training set"; Mammoth's
    ``begin_task``, l.110-125; FACIL l.107-112). Mammoth 7ab9db9's ``utils/training.py``
    never calls ``begin_task`` (added in b48788a, "fix missing callback"), so that commit
    as published trains on the task's data alone; this follows the paper and the fix.

    **Loss** (Algorithm 3), one sigmoid per output unit, for logits z of the student and
    z_old of the previous model (the teacher, a frozen copy after each task) on the same,
    possibly augmented, input (Mammoth l.65-67)::

        q_u = sigmoid(z_old_u)     for u an output of an earlier task (not of task t)
        q_u = [u == y]             otherwise (one-hot of the label)
        loss = 1 / |A| * sum_{(i, u) in A} BCE(sigmoid(z_iu), q_iu)
             = -1/|A| sum q log sigmoid(z) + (1 - q) log(1 - sigmoid(z))

    A = the pairs (example i, output u) with u active for i's own task (``ctx.train_masks``):
    in class-il with ``ce_scope = seen`` every class seen so far, Mammoth's ``outputs[:,
    :ac]`` (l.90-103) with ``F.binary_cross_entropy_with_logits``'s mean over examples and
    outputs; on task 0 all targets are one-hot (l.94-97). A memory example of an old class
    gets the teacher's sigmoid for its own class too, as in the paper and Mammoth. In
    task-il each example's loss is over its own task's outputs: the current task's examples
    get one-hot targets, the memory's (earlier tasks) the teacher's sigmoids (a multi-head
    iCaRL; Mammoth's task-il number is instead the task-aware accuracy of its class-il run,
    ``COMPATIBILITY`` l.30 and ``mask_classes`` in ``utils/training.py``: run class-il and
    read ``metrics_task_aware`` for it). Mammoth's ``wd_reg * sum(theta^2)`` added to the
    loss (l.105-106) has the gradient of SGD weight decay 2 * wd_reg: here it is
    ``train.weight_decay`` (0 in Mammoth's Seq-MNIST best_args).

    **Memory** (``strategies/memory.py``, ``memory.policy = herding``): at the end of each task
    the budget ``memory.size`` is split over the classes seen (m = K / classes, the first K
    mod classes one more: Mammoth floors, ``fill_buffer`` l.164, FACIL takes the ceiling),
    the new classes' exemplars are chosen by herding on the L2-normalised features of the
    model after the task (Algorithm 4, section 2.1: "all feature vectors are L2-normalized";
    Mammoth 7ab9db9 herds on the raw features, l.183-217; its eec9466 of 2024 normalises),
    and the old classes keep their first m chosen (Algorithm 5; FACIL herds them again with
    the new model). ``memory.policy = random`` draws each class's share at random instead.

    **Prediction** (``strategy.prediction = nme``, Algorithm 1): after the memory update, the
    mean of each class's L2-normalised exemplar features, renormalised (section 2.1; FACIL
    l.69-96, PyCIL ``_construct_exemplar``/``_reduce_exemplar``), computed once with the
    model after the task and cached; the score of class y for an input x is
    -|| phi(x) / ||phi(x)|| - mu_y || (the prediction argmin_y of that distance), the lowest
    finite number for a class without exemplars (never predicted when a class with exemplars
    is active; not -inf, which the engine's evaluation takes for a diverged model's
    output). Mammoth 7ab9db9 uses
    the raw features' mean and the squared distance (l.45-54, l.135-151). Before the first
    task's end (the untrained model's row) there are no exemplars and the model's logits
    are used. ``prediction = logits`` always uses them (the ablation).
    """

    Options = ICaRLOptions
    options: ICaRLOptions
    MEMORY = "required"

    def __init__(self, options: ICaRLOptions | None = None, memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        self.memory = Memory(self.memory_config)
        self.teacher: Teacher | None = None
        #: (n_outputs, d) renormalised mean of each class's normalised exemplar features.
        self.class_means: torch.Tensor | None = None
        #: (n_outputs,) bool: the classes that have exemplars (and so a mean).
        self.has_mean: torch.Tensor | None = None
        #: (n_outputs,) bool: outputs of earlier tasks that are not the current task's.
        self._old_units: torch.Tensor | None = None
        #: Whether there is any (read on the host before the task, not at every step).
        self._any_old = False

    # ------------------------------------------------------------ before training a task
    def train_data(self, ctx: TaskContext) -> TrainData:
        """The task's examples followed by every example in memory (their own labels and
        task ids): :func:`~lifelong_kd.strategies.memory.with_memory`."""
        return with_memory(TrainData.of_task(ctx.stream[ctx.index]), self.memory)

    def before_task(self, ctx: TaskContext) -> None:
        """The outputs whose targets are the teacher's: earlier tasks', not the current's."""
        stream = ctx.stream
        old = torch.zeros(stream.n_outputs, dtype=torch.bool)
        for task in stream.tasks[: ctx.index]:
            old[list(task.outputs)] = True
        old[list(stream[ctx.index].outputs)] = False
        self._any_old = bool(old.any())
        self._old_units = to_device(old, ctx.device)

    # --------------------------------------------------------------------------- loss
    def targets(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        """(B, n_outputs) BCE targets: the teacher's sigmoids on the old outputs, the one-hot
        label elsewhere."""
        n = ctx.stream.n_outputs
        onehot = F.one_hot(batch.y, n).to(torch.float32)
        old = self._old_units
        if self.teacher is None or old is None or not self._any_old:
            return onehot
        with torch.no_grad():
            q = torch.sigmoid(self.teacher(batch.x)).to(torch.float32)
        return torch.where(old, q, onehot)

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """Mean binary cross-entropy over each example's active outputs (see the class)."""
        q = self.targets(ctx, batch)
        if ctx.all_active:
            return F.binary_cross_entropy_with_logits(logits, q)
        active = ctx.train_masks[batch.t]
        each = F.binary_cross_entropy_with_logits(logits, q, reduction="none")
        return torch.where(active, each, torch.zeros_like(each)).sum() / active.sum()

    # ---------------------------------------------------------------- after the task
    def after_task(self, ctx: TaskContext) -> None:
        """Update the memory with the task's own examples (not the memory's, which are in
        ``ctx.current_train_data`` too), freeze the model as the next teacher, and cache the
        class means of the exemplars."""
        task = TrainData.of_task(ctx.stream[ctx.index])
        self.memory.update(ctx, task, features_of=model_features(ctx))
        self.teacher = Teacher.copy_of(ctx)
        self.class_means, self.has_mean = self.compute_class_means(ctx)

    def compute_class_means(
        self, ctx: TaskContext
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(means (n_outputs, d), has_mean (n_outputs,)): mu_y = m_y / ||m_y||, m_y the mean
        over the exemplars of class y of phi(x) / ||phi(x)||, with the current model (None,
        None while the memory is empty)."""
        x, y, _ = self.memory.examples()
        if not len(y):
            return None, None
        phi = F.normalize(model_features(ctx)(x).float(), dim=1)
        y = y.to(phi.device)
        n = ctx.stream.n_outputs
        sums = torch.zeros(n, phi.shape[1], dtype=phi.dtype, device=phi.device)
        sums.index_add_(0, y, phi)
        counts = torch.bincount(y, minlength=n)
        means = F.normalize(sums / counts.clamp(min=1).unsqueeze(1).to(phi.dtype), dim=1)
        return means, counts > 0

    # ---------------------------------------------------------------------- evaluation
    def predict(self, ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
        """``nme``: -|| phi(x)/||phi(x)|| - mu_y || for each class y with exemplars, the lowest
        finite number for the others; ``logits`` (or no exemplars yet): the model's."""
        if self.options.prediction != "nme" or self.class_means is None or self.has_mean is None:
            return ctx.model(x)
        phi = F.normalize(ctx.model.features(x).float(), dim=1)
        means = self.class_means.to(phi.device)
        distance = nme_distances(phi, means)
        unseen = torch.finfo(distance.dtype).min
        return (-distance).masked_fill(~self.has_mean.to(phi.device), unseen)

    def costs(self) -> dict[str, int]:
        return {"memory_examples": len(self.memory), "memory_bytes": self.memory.nbytes()}

    # ---------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The memory, the teacher and the cached class means."""
        return {"memory": self.memory.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "class_means": self.class_means, "has_mean": self.has_mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        saved = state.get("teacher")
        self.teacher = Teacher.from_state_dict(saved) if saved is not None else None
        self.class_means, self.has_mean = state.get("class_means"), state.get("has_mean")


def nme_distances(phi: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(B, C) Euclidean distances || phi_i - mu_c || of the rows of ``phi`` (B, d) to those
    of ``means`` (C, d), from the differences (not sqrt(||phi||^2 + ||mu||^2 - 2 phi . mu),
    which loses the digits of nearby points to cancellation)."""
    return torch.cdist(phi, means, compute_mode="donot_use_mm_for_euclid_dist")
