"""BiC (Wu et al. 2019): distillation with exemplars, then a bias-correction stage.

Wu, Chen, Wang, Ye, Liu, Guo & Fu 2019, "Large scale incremental learning" (CVPR), sections
3-4, as FACIL implements it (mmasana/FACIL src/approach/bic.py@66e3e8e; PyCIL
G-U-N/PyCIL models/bic.py@87cc411 read for comparison). Class-il only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..config import MemoryConfig, check_range
from ..data.streams import Images, to_device
from ..errors import ConfigError
from .base import Batch, ExternalLoop, Phase, Strategy, TaskContext, TrainData
from .lwf import LwF, LwFOptions

#: The memory policies BiC accepts: its memory and its validation set are split per class.
POLICIES = ("class_balanced", "herding", "random")


def split_sizes(memory: MemoryConfig, validation: float, n_seen: int) -> tuple[int, int]:
    """(validation, training) exemplars per class while ``n_seen`` classes are seen (those of
    the task being trained included).

    FACIL's ``train_loop`` stage 0 (bic.py l.86-99): with a total budget (``memory.size``)
    each class gets m = floor(size / n_seen) exemplars, else m = ``memory.per_class``; of
    these ceil(validation * m) are held out for the bias correction and the rest trained on.
    The product validation * m is rounded to 9 decimals before the ceiling, so that 0.1 * 300
    gives 30 (FACIL's ``np.ceil`` of the float product gives 31).
    """
    per_class = memory.per_class or memory.size // max(n_seen, 1)
    n_val = math.ceil(round(validation * per_class, 9))
    return n_val, per_class - n_val


def first_of_each_class(y: torch.Tensor, n: int) -> torch.Tensor:
    """Positions (in order, on the host) of the first ``n`` entries of each label of ``y``."""
    y = y.cpu()
    keep = torch.zeros(len(y), dtype=torch.bool)
    for c in torch.unique(y).tolist():
        keep[(y == c).nonzero().flatten()[:n]] = True
    return keep.nonzero().flatten()


@dataclass
class Split:
    """Task ``index``'s split (:meth:`BiC.train_data`): its examples that are trained on, and
    the validation set of the bias correction (old classes' held-out exemplars, then the
    new classes' held-out examples)."""

    index: int
    train: TrainData
    validation: TrainData


@dataclass(frozen=True)
class BiCOptions(LwFOptions):
    """The options of :class:`BiC`, beside LwF's."""

    #: Share of the memory (and the same number per new class) held out as the validation set
    #: of the bias-correction stage (Wu et al. 2019, section 4: 0.1).
    validation: float = 0.1
    #: Epochs of the bias-correction stage (stage 2) after every task but the first.
    bias_epochs: int = 2

    def __post_init__(self) -> None:
        """``0 < validation < 1`` and ``1 <= bias_epochs <= 100000``, besides LwF's options."""
        super().__post_init__()
        check_range("strategy.validation", self.validation, 0, 1, low_open=True, high_open=True,
                    note=": the share of each class's exemplars held out for BiC's bias "
                         "correction (0.1 in Wu et al. 2019)")
        check_range("strategy.bias_epochs", self.bias_epochs, 1, 100_000,
                    note=" (epochs of BiC's bias-correction stage)")


class BiC(LwF):
    """BiC (Wu et al. 2019): LwF with exemplars, lambda = n_old / n_seen, and one learnt
    affine correction (alpha_t, beta_t) of the logits of each task's classes.

    **Memory and validation split** (FACIL bic.py l.82-139; paper section 4 and Fig. 2,
    section 6.1: "train/validation split on the exemplars is 9:1"). While task t is trained
    with n_seen classes, each class owns m exemplars (:func:`split_sizes`): v = ceil(
    ``validation`` * m) of them form its validation examples, and m - v its training
    exemplars. A new class's v validation examples are drawn at random (the run's generator)
    from the task's examples and held out of training; an old class keeps the first v of the
    validation examples it got when it was new (FACIL l.101-109), which were never trained on.
    The memory (``memory.policy``, per class) keeps m - v training exemplars of every class,
    chosen at the task's end from its own and the task's non-held-out examples (FACIL l.94
    and l.208-209, ``collect_exemplars``). FACIL takes the first v examples of each new class
    in the dataset's order (l.121); here a seeded random draw. PyCIL
    (utils/data_manager.py ``get_dataset_with_split``) instead draws int(0.1 * size /
    n_old) validation examples per class anew at every task, old ones from the memory.

    **Stage 1** (paper section 3 and eq. 1-3; FACIL l.141-147 and ``criterion``
    l.271-285): the model is trained on the task's examples minus the held-out ones, joined by
    the memory's training exemplars, with the LwF loss of the options, which the ``bic``
    preset sets to::

        loss = (1 - lambda) * CE(q, y) + lambda * KD,   lambda = n_old / n_seen,
        KD = -sum_{k old} softmax(q'_old / T)_k log softmax(q_old / T)_k,  T = 2

    (``alpha_schedule = bic``; CE over the classes seen; one softmax over the old classes;
    no T^2: neither the paper's eq. 1 nor FACIL's ``cross_entropy`` scales by it; FACIL's
    smoothing of the student's probabilities by eps = 1e-5 is not done). q are the
    student's logits and q' the teacher's (the model after the previous task) with every
    earlier task's bias correction applied, as FACIL's ``train_epoch`` does for both
    (l.219-224, ``bias_forward``) and PyCIL's network does in its forward
    (utils/inc_net.py ``IncrementalNetWithBias``); those corrections are fixed here.

    **Stage 2** (paper section 4, eq. 4-5; FACIL l.149-201), every task after the first: a
    phase of ``bias_epochs`` epochs over the validation set that trains only alpha_t and
    beta_t, the model frozen (eval mode, no gradient)::

        q_k = alpha_t * o_k + beta_t   for the classes k of task t,   q_k = o_k otherwise

    (earlier tasks' o_k with their own fixed corrections), minimising CE(q, y) over the seen
    classes + 0.1 * beta_t^2 / 2, the L2 term FACIL takes from the authors' code (l.184-185).
    The optimiser is the run's (``train.optimizer``, ``train.lr``), without weight decay;
    FACIL uses SGD with its lr and momentum 0.9 (l.167-168) for 200 epochs
    (``--num-bias-epochs``, l.63-65: the original code's 100 epochs x 2), PyCIL SGD for 170.

    **Prediction** applies every task's correction (alpha_j, beta_j) to its classes' logits
    (FACIL's ``eval``, l.244-245); a task's pair stays fixed once its stage 2 is over. The
    pairs are the strategy's own parameters (:meth:`parameters`, kept in
    :meth:`state_dict`); the first task's stays (1, 0).
    """

    Options = BiCOptions
    options: BiCOptions
    MEMORY = "required"
    POLICIES = POLICIES  # checked before any data is loaded (StrategyPreset.check)
    #: Weight of the L2 penalty beta^2 / 2 of stage 2 (FACIL bic.py l.184-185).
    BETA_PENALTY = 0.1

    def __init__(self, options: BiCOptions | None = None, memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        if self.memory is not None and self.memory_config.policy not in POLICIES:
            raise ConfigError(f"BiC keeps its memory and its validation set per class: "
                              f"`memory.policy` = {self.memory_config.policy!r} is not valid for "
                              f"it; valid: {', '.join(POLICIES)}")
        #: alpha_j, beta_j of every task trained or being trained (0-d tensors).
        self.alphas: list[torch.Tensor] = []
        self.betas: list[torch.Tensor] = []
        #: The validation examples kept so far (uint8 images, labels, task ids), by class.
        self.validation_x: torch.Tensor | None = None
        self.validation_y = torch.zeros(0, dtype=torch.long)
        self.validation_t = torch.zeros(0, dtype=torch.long)
        self._split: Split | None = None
        self._owner: tuple[int, torch.device, torch.Tensor] | None = None

    # --------------------------------------------------------------------------- data
    def n_seen(self, ctx: TaskContext) -> int:
        """Classes (output units) of the tasks up to ``ctx.index``."""
        return len({u for task in ctx.stream.tasks[: ctx.index + 1] for u in task.outputs})

    def split(self, ctx: TaskContext) -> Split:
        """Hold out ``v`` random examples of each new class and keep ``v`` of each old class's
        validation examples (see the class docstring); draws from the run's generator."""
        task, t = ctx.stream[ctx.index], ctx.index
        # at least 1: a budget below one exemplar per class is refused before training
        # (memory.check_budget)
        n_val, _ = split_sizes(self.memory_config, self.options.validation, self.n_seen(ctx))
        # the split is drawn on the host (one read of the labels per task); its parts are
        # gathered where the task's examples are (the run's device on an accelerator)
        y = task.train_y.cpu()
        held = [pos[torch.randperm(len(pos), generator=ctx.generator)[:n_val]]
                for pos in ((y == c).nonzero().flatten() for c in sorted(set(y.tolist())))]
        held_out = torch.cat(held) if held else y[:0]
        kept = torch.ones(len(y), dtype=torch.bool)
        kept[held_out] = False
        device = task.train_y.device
        rest, held_out = to_device(kept.nonzero().flatten(), device), to_device(held_out, device)
        y_rest = task.train_y[rest]
        train = TrainData(Images(task.train_x[rest]), y_rest, torch.full_like(y_rest, t))
        old = first_of_each_class(self.validation_y, n_val)
        x_old = (self.validation_x[to_device(old, self.validation_x.device)]
                 if self.validation_x is not None else task.train_x[:0])
        x_new = task.train_x[held_out]
        validation = TrainData(
            Images(torch.cat([to_device(x_old, x_new.device), x_new])),
            torch.cat([to_device(self.validation_y[old], device), task.train_y[held_out]]),
            torch.cat([to_device(self.validation_t[old], device), torch.full_like(held_out, t)]))
        return Split(t, train, validation)

    def task_data(self, ctx: TaskContext) -> TrainData:
        """The task's examples minus those held out for validation."""
        if self._split is None or self._split.index != ctx.index:
            self._split = self.split(ctx)
        return self._split.train

    def train_data(self, ctx: TaskContext) -> TrainData:
        """A fresh split of the task (:meth:`split`), its training part joined by the memory's
        exemplars; the task's correction (alpha_t, beta_t) = (1, 0) is created."""
        while len(self.alphas) <= ctx.index:
            self.alphas.append(torch.ones((), device=ctx.device, requires_grad=True))
            self.betas.append(torch.zeros((), device=ctx.device, requires_grad=True))
        self.owner_of_units(ctx)
        self._split = self.split(ctx)
        return super().train_data(ctx)

    # --------------------------------------------------------------- bias correction
    def owner_of_units(self, ctx: TaskContext) -> torch.Tensor:
        """(n_outputs,) long on the run's device: the task owning each output unit (the
        number of tasks for a unit of none). Made once per stream and device."""
        stream = ctx.stream
        if self._owner is None or self._owner[0] != id(stream) or self._owner[1] != ctx.device:
            owner = torch.full((stream.n_outputs,), len(stream), dtype=torch.long)
            for j, task in enumerate(stream.tasks):
                owner[list(task.outputs)] = j
            self._owner = (id(stream), ctx.device, owner.to(ctx.device))
        return self._owner[2]

    def correct(self, logits: torch.Tensor, owner: torch.Tensor, n_tasks: int,
                live: int | None = None) -> torch.Tensor:
        """Wu et al. 2019 eq. 4: the logits of task j's classes (``owner`` == j, see
        :meth:`owner_of_units`) become alpha_j * o + beta_j for j < ``n_tasks``; the others
        stay o. Only task ``live``'s pair carries a gradient."""
        n = min(n_tasks, len(self.alphas))
        if n == 0:
            return logits
        alphas = [a if j == live else a.detach() for j, a in enumerate(self.alphas[:n])]
        betas = [b if j == live else b.detach() for j, b in enumerate(self.betas[:n])]
        unit = owner.clamp(max=n)
        scale = torch.stack([*alphas, logits.new_ones(())])[unit]
        shift = torch.stack([*betas, logits.new_zeros(())])[unit]
        return logits * scale + shift

    def _teacher_out(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits with every earlier task's correction (FACIL l.220-221)."""
        out = super()._teacher_out(x)
        if self._on_features:
            return out
        assert self._owner is not None, "train_data makes the table of units first"
        return self.correct(out, self._owner[2], len(self.alphas))

    # ------------------------------------------------------------------------- phases
    def parameters(self, model: Any) -> list[torch.Tensor]:
        """The model's parameters and every task's (alpha, beta): all the strategy trains
        (stage 1 the former, :meth:`main_phase`; stage 2 one pair, :meth:`bias_phase`)."""
        return [*super().parameters(model), *self.alphas, *self.betas]

    def main_phase(self, ctx: TaskContext) -> Phase:
        """Stage 1: the model's parameters only (the corrections are not trained here; PyCIL
        gives them lr 0, models/bic.py l.150-161)."""
        phase = super().main_phase(ctx)
        return replace(phase, parameters=Strategy.parameters(self, ctx.model))

    def phases(self, ctx: TaskContext) -> list[Phase | ExternalLoop]:
        """LwF's phases (stage 1), then stage 2 for every task after the first."""
        phases = super().phases(ctx)
        if ctx.index > 0:
            phases.append(self.bias_phase(ctx))
        return phases

    def bias_phase(self, ctx: TaskContext) -> Phase:
        """Stage 2: ``bias_epochs`` epochs of :meth:`bias_loss` over the validation set,
        training (alpha_t, beta_t) only, the whole model in eval mode."""
        assert self._split is not None and self._split.index == ctx.index
        data = self._split.validation
        epochs = self.options.bias_epochs
        steps = epochs * math.ceil(len(data) / ctx.config.train.batch_size)
        t = ctx.index
        return Phase("bias correction", self.bias_loss, [self.alphas[t], self.betas[t]], epochs,
                     steps, data=data, weight_decay=0.0, train_modules=())

    def bias_loss(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        """CE(q, y) over the classes seen, q the corrected logits of the frozen model (eq. 5),
        + 0.1 * beta_t^2 / 2 (FACIL l.183-185)."""
        t = ctx.index
        with torch.no_grad():
            logits = ctx.model(batch.x)
        owner = self.owner_of_units(ctx)
        q = self.correct(logits, owner, t + 1, live=t)
        seen = owner <= t
        ce = F.cross_entropy(q.masked_fill(~seen, float("-inf")), batch.y)
        return ce + self.BETA_PENALTY * self.betas[t].pow(2) / 2

    def train_loss(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        """Stage 1: the model's features and its logits with the earlier tasks' (fixed)
        corrections, then LwF's loss."""
        features, logits = ctx.model.forward_features(batch.x)
        corrected = self.correct(logits, self.owner_of_units(ctx), ctx.index)
        return self.loss(ctx, batch, features, corrected)

    # ---------------------------------------------------------------------- after a task
    def update_memory(self, ctx: TaskContext) -> None:
        """The memory keeps m - v training exemplars per class (:func:`split_sizes`), chosen
        from its own and the task's non-held-out examples; the validation set of this task
        becomes the one kept."""
        assert self.memory is not None and self._split is not None
        _, n_train = split_sizes(self.memory_config, self.options.validation, self.n_seen(ctx))
        self.memory.config = replace(self.memory_config, size=0, per_class=n_train)
        super().update_memory(ctx)
        validation = self._split.validation
        self.validation_x = validation.x[:].to(ctx.device)
        self.validation_y, self.validation_t = validation.y.clone(), validation.t.clone()
        self._split = None

    # ---------------------------------------------------------------------- evaluation
    def predict(self, ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
        """The model's logits with every task's correction applied."""
        return self.correct(ctx.model(x), self.owner_of_units(ctx), len(self.alphas))

    def costs(self) -> dict[str, int]:
        """The memory's training exemplars and the validation examples, with their bytes."""
        costs = super().costs()
        tensors = [self.validation_x, self.validation_y, self.validation_t]
        costs["memory_examples"] += len(self.validation_y)
        costs["memory_bytes"] += sum(t.numel() * t.element_size() for t in tensors if t is not None)
        return costs

    # ---------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """LwF's (teacher, memory), the validation examples and every task's (alpha, beta)."""
        return {**super().state_dict(),
                "validation": {"x": self.validation_x, "y": self.validation_y,
                               "t": self.validation_t},
                "alpha": torch.stack(self.alphas).detach().clone() if self.alphas else None,
                "beta": torch.stack(self.betas).detach().clone() if self.betas else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        validation = state["validation"]
        self.validation_x, self.validation_y = validation["x"], validation["y"]
        self.validation_t = validation["t"]
        alpha, beta = state["alpha"], state["beta"]
        self.alphas = [] if alpha is None else [a.clone().requires_grad_(True) for a in alpha]
        self.betas = [] if beta is None else [b.clone().requires_grad_(True) for b in beta]
        self._split = None
