"""Learning without Forgetting (Li & Hoiem 2016), optionally with an exemplar memory, and the
weights of its two loss terms.

The presets that follow each library's LwF (``lwf``, ``lwf-vdv2019``, ``lwf-mammoth``, ...)
are option values of this one class; they are listed, with their sources, in
``strategies/presets.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import MemoryConfig, RunConfig, check_choice, check_range
from ..errors import ConfigError
from ..losses import LOSSES, grouped_distillation
from .base import Batch, ExternalLoop, Phase, Strategy, TaskContext, TrainData, distillation_temperature
from .features import model_features
from .memory import Memory, with_memory
from .options import DistillationOptions
from .teacher import Teacher

ALPHA_SCHEDULES = ("constant", "vdv2019", "vdv2022", "bic")
LOGITS = ("old", "all", "padded")


def schedule_weights(
    schedule: str,
    alpha: float,
    n_tasks_so_far: int,
    n_old: int,
    n_new: int,
    scenario: str = "task-il",
) -> tuple[float, float]:
    """Weights (w_ce, w_kd) of loss = w_ce * CE + w_kd * KD while training task t.

    t = ``n_tasks_so_far`` counts the current task (t = 2 while training the second task).
    ``alpha`` multiplies the distillation weight of every schedule; alpha = 1 gives the
    papers' weights.

    - ``constant``: (1, alpha). Li & Hoiem 2016, section 3 / Algorithm 1, with
      lambda_o = alpha.
    - ``vdv2019``: (1/t, alpha * (1 - 1/t)). van de Ven & Tolias 2019, "Three scenarios for
      continual learning": the current task weighted by 1/t, the distillation (replay) term
      by 1 - 1/t (code: ``rnt = 1./task`` in ``train.py``).
    - ``vdv2022``: (1, alpha * (t - 1)) in task-il and domain-il, (1, alpha) in class-il.
      van de Ven, Tuytelaars & Tolias 2022, "Three types of incremental learning" (Nature
      Machine Intelligence): with ``lwf_weighting`` the replay loss, averaged over previous
      tasks, is multiplied by (context - 1) "unless Class-IL" (``models/classifier.py``).
    - ``bic``: (1 - lambda, alpha * lambda), lambda = n_old / (n_old + n_new), the share of
      the classes seen so far that belong to earlier tasks. Wu et al. 2019, "Large scale
      incremental learning" (BiC), section 4. Classes are counted per task, so in domain-il
      (tasks share their classes) lambda = 1 - 1/t.
    """
    t = n_tasks_so_far
    if schedule == "constant":
        return 1.0, alpha
    if schedule == "vdv2019":
        return 1.0 / t, alpha * (1.0 - 1.0 / t)
    if schedule == "vdv2022":
        return 1.0, alpha * (1.0 if scenario == "class-il" else float(t - 1))
    if schedule == "bic":
        lam = n_old / (n_old + n_new) if n_old + n_new else 0.0
        return 1.0 - lam, alpha * lam
    raise ConfigError(f"unknown alpha schedule `{schedule}`; valid: {', '.join(ALPHA_SCHEDULES)}")


def torch_lookup(units: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """A table mapping output unit ``units[i]`` to ``i`` (other units to -100, ignored)."""
    table = torch.full((n_outputs,), -100, dtype=torch.long, device=units.device)
    table[units] = torch.arange(len(units), device=units.device)
    return table


@dataclass(frozen=True)
class LwFOptions(DistillationOptions):
    """The options of :class:`LwF` (and its family: ``bic``), beside those of every
    distillation term."""

    #: ``old``: distil only the outputs of classes/heads seen before this task; ``all``: those
    #: and the current task's; ``padded``: the student's softmax over old and current outputs
    #: against the teacher's over the old ones, zero on the current (van de Ven & Tolias 2019).
    logits: str = "old"
    #: How the weights of the cross-entropy and distillation terms follow the task index
    #: (:func:`schedule_weights`): ``constant`` (1 and ``alpha``), ``vdv2019``, ``vdv2022``,
    #: ``bic``.
    alpha_schedule: str = "constant"
    #: Epochs training only the new task's head before the whole network.
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        """The distillation options; ``logits = padded`` needs a logits loss that accepts
        zero-padded targets (``DistillLoss.padded_targets``)."""
        super().__post_init__()
        check_range("strategy.warmup_epochs", self.warmup_epochs, 0, 10_000)
        check_choice("strategy.logits", self.logits, LOGITS)
        loss = LOSSES[self.distill_loss]
        if self.logits == "padded" and loss.on == "logits" and not loss.padded_targets:
            raise ConfigError("`strategy.logits` = 'padded' needs a softmax or sigmoid loss; "
                              f"`strategy.distill_loss` = {self.distill_loss!r} has no zero-padded "
                              "targets")
        check_choice("strategy.alpha_schedule", self.alpha_schedule, ALPHA_SCHEDULES)


class LwF(Strategy):
    """Learning without Forgetting (Li & Hoiem 2016): distil from the previous model.

    After each task a frozen copy of the model (in eval mode) becomes the teacher
    (:meth:`Teacher.copy_of`). While training task t >= 1 (0-based) the loss is::

        loss = w_ce * CE + w_kd * c * KD,   KD = reduce_g L(s[:, g], t[:, g])

    with L = ``distill_loss`` between the student's and the teacher's outputs on the same
    inputs (``teacher_input``: the student's possibly augmented batch, or the clean one), the
    groups g of output units given by ``logits`` (one softmax per earlier head in task-il, one
    group otherwise), ``distill_reduction`` (sum or mean over groups), c = T^2 when
    ``t2_scaling`` and the loss uses the temperature (Hinton et al. 2015, section 2: it keeps
    the gradient's scale independent of T) else 1, and (w_ce, w_kd) from ``alpha_schedule``
    (:func:`schedule_weights`). Feature losses compare the penultimate features instead and
    ignore ``logits``.

    With ``warmup_epochs`` > 0, each task after the first with output units of its own starts
    with a warm-up phase that trains only those units of the head (:meth:`warmup_phase`).

    When the teacher's inputs are deterministic (no augmentation, or ``teacher_input =
    clean``) its outputs are computed once per task and reused across epochs.

    With an exemplar memory (``memory.size`` or ``memory.per_class`` > 0; none by default, and
    then nothing below happens), as FACIL's LwF with ``--num-exemplars`` (mmasana/FACIL
    src/approach/lwf.py@66e3e8e): the memory's examples join the task's, and every epoch runs
    over the union (l.58-64, ``trn_loader.dataset + self.exemplars_dataset``); the loss above
    is unchanged and applies to every example of the union: CE over the outputs
    ``ce_scope`` makes active for the example's own task (``seen``, as FACIL's criterion with
    exemplars, l.143-145: CE over all heads so far; ``lwf-facil``'s ``current`` instead takes
    each memory example's CE over its own task's outputs), KD against the teacher's outputs on
    the same images (the cache covers the memory's examples too). The warm-up phase trains on
    the task's examples only (FACIL's ``pre_train_process``, incremental_learning.py l.59-75,
    runs before ``train_loop`` joins the exemplars). After the task the memory takes its share
    of the task's examples (``collect_exemplars``, lwf.py l.69-70; ``memory.policy``, FACIL's
    default being ``random``, src/datasets/exemplars_selection.py l.53-70): a per-class or
    per-task policy by :meth:`Memory.update`; ``reservoir`` by offering each of the task's
    examples once, in order, to algorithm R (:meth:`Memory.add`), so that the memory is a
    uniform sample of every example seen. ``memory.batch_size`` has no effect (the union is
    batched by ``train.batch_size``).
    """

    Options = LwFOptions
    options: LwFOptions
    MEMORY = "optional"

    def __init__(self, options: LwFOptions | None = None, memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        mem = self.memory_config
        #: The exemplar memory, or None when the run sets no budget (plain LwF).
        self.memory: Memory | None = Memory(mem) if mem.size or mem.per_class else None
        self.teacher: Teacher | None = None
        self._cache: torch.Tensor | None = None
        self._groups: list[torch.Tensor] = []
        self._teacher_masks: list[torch.Tensor | None] = []

    @classmethod
    def check(cls, config: RunConfig, options: LwFOptions) -> None:  # type: ignore[override]
        """Annealing-KD needs a teacher that knows the current task: not LwF's."""
        if options.temperature_schedule == "annealing":
            raise ConfigError("`strategy.temperature_schedule` = 'annealing' needs a teacher that "
                              f"knows the current task (kd, compress); strategy "
                              f"`{config.strategy.name}` distils from the previous model: use "
                              "constant, linear, cosine or exponential")

    @property
    def _on_features(self) -> bool:
        return LOSSES[self.options.distill_loss].on == "features"

    def _teacher_out(self, x: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None
        return self.teacher.features(x) if self._on_features else self.teacher(x)

    def distill_groups(self, ctx: TaskContext) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """The groups of output units distilled while training ``ctx.index``, and for each
        the mask of the units the teacher's soft targets cover (None: all of them).

        ``old`` and ``all`` come from :meth:`Stream.distill_groups`. ``padded`` takes the
        groups of ``all`` that hold an earlier task's unit and masks the teacher to the
        earlier tasks' units: in class-il one group over the classes seen so far whose
        current-task entries get target probability zero, as van de Ven & Tolias 2019 do
        (``loss_fn_kd``: "zeros will be added"); in task-il and domain-il it equals ``old``.
        """
        stream, t = ctx.stream, ctx.index
        if self.options.logits != "padded":
            groups = stream.distill_groups(t, self.options.logits)
            return [g.to(ctx.device) for g in groups], [None] * len(groups)
        old_units = sorted({u for task in stream.tasks[:t] for u in task.outputs})
        if not old_units:
            return [], []
        old = torch.tensor(old_units)
        groups, masks = [], []
        for g in stream.distill_groups(t, "all"):
            inside = torch.isin(g, old)
            if inside.any():
                groups.append(g.to(ctx.device))
                masks.append(None if bool(inside.all()) else inside.to(ctx.device))
        return groups, masks

    # --------------------------------------------------------------------------- data
    def task_data(self, ctx: TaskContext) -> TrainData:
        """The current task's own training examples (without the memory's)."""
        return TrainData.of_task(ctx.stream[ctx.index])

    def train_data(self, ctx: TaskContext) -> TrainData:
        """The task's examples, followed by the memory's when there is one (:func:`with_memory`)."""
        data = self.task_data(ctx)
        return data if self.memory is None else with_memory(data, self.memory)

    def before_task(self, ctx: TaskContext) -> None:
        self._cache = None
        self._groups, self._teacher_masks = self.distill_groups(ctx)
        if self.teacher is None or not (self._groups or self._on_features):
            return
        data = ctx.current_train_data
        if data is not None and (not ctx.augment or self.options.teacher_input == "clean"):
            with torch.inference_mode():
                outs = [self._teacher_out(ctx.prepare(data.x[i:i + ctx.eval_batch_size]))
                        for i in range(0, len(data), ctx.eval_batch_size)]
            if outs:
                self._cache = torch.cat(outs).clone()

    # ------------------------------------------------------------------------- phases
    def phases(self, ctx: TaskContext) -> list[Phase | ExternalLoop]:
        """The warm-up phase (when there is one), then the main phase."""
        epochs = self.warmup_epochs(ctx)
        data = ctx.current_train_data
        assert data is not None
        warmup: list[Phase | ExternalLoop] = [self.warmup_phase(ctx, epochs)] if epochs and len(data) else []
        return [*warmup, self.main_phase(ctx)]

    def warmup_epochs(self, ctx: TaskContext) -> int:
        """``warmup_epochs`` of head-only training before every task after the first (Li &
        Hoiem 2016, Algorithm 1, "warm-up step")."""
        if ctx.index == 0 or not self.options.warmup_epochs:
            return 0
        # Only a task with output units of its own has a "new head" to warm up (not domain-il,
        # nor task-il heads shared by tasks with the same classes).
        seen = {u for task in ctx.stream.tasks[: ctx.index] for u in task.outputs}
        return self.options.warmup_epochs if set(ctx.stream[ctx.index].outputs) - seen else 0

    def warmup_phase(self, ctx: TaskContext, epochs: int) -> Phase:
        """Li & Hoiem 2016, section 3: first train only the new task's head units, with the
        rest of the network frozen (in eval mode: its batch-norm statistics kept too), then the
        whole network. The loss is :meth:`warmup_loss`; no weight decay, so that the old
        heads' rows, whose gradients are zeroed, stay put."""
        units = torch.tensor(ctx.stream[ctx.index].outputs, device=ctx.device)
        head = ctx.model.head
        rows = torch.zeros(head.out_features, dtype=torch.bool, device=ctx.device)
        rows[units] = True

        def loss(ctx: TaskContext, batch: Batch) -> torch.Tensor:
            with torch.no_grad():
                features = ctx.model.features(batch.x)
            return self.warmup_loss(ctx, batch, ctx.model.head(features), units)

        # with a memory, on the task's examples only (FACIL warms up before the union is made)
        own = None if self.memory is None else self.task_data(ctx)
        data = ctx.current_train_data if own is None else own
        assert data is not None
        steps = epochs * math.ceil(len(data) / ctx.config.train.batch_size)
        params = list(head.parameters())
        return Phase("warm-up", loss, params, epochs, steps, data=own, weight_decay=0.0,
                     train_modules=(head,), update_rows=tuple((p, rows) for p in params))

    def warmup_loss(
        self, ctx: TaskContext, batch: Batch, logits: torch.Tensor, units: torch.Tensor
    ) -> torch.Tensor:
        """Loss of the warm-up phase: cross-entropy over the current task's output units."""
        lookup = torch_lookup(units, logits.shape[1])
        return F.cross_entropy(logits[:, units], lookup[batch.y])

    # --------------------------------------------------------------------------- loss
    def weights(self, ctx: TaskContext) -> tuple[float, float]:
        """(w_ce, w_kd) for task ``ctx.index``; classes are counted per task (see
        :func:`schedule_weights`)."""
        tasks, t = ctx.stream.tasks, ctx.index
        n_old = sum(len(task.outputs) for task in tasks[:t])
        return schedule_weights(self.options.alpha_schedule, self.options.alpha, t + 1, n_old,
                                len(tasks[t].outputs), ctx.stream.scenario)

    def teacher_outputs(self, batch: Batch) -> torch.Tensor:
        """The teacher's logits (or features) for ``batch``: cached, or computed now."""
        if self._cache is not None:
            return self._cache[batch.idx.to(self._cache.device)]
        x = batch.x_clean if self.options.teacher_input == "clean" else batch.x
        with torch.no_grad():
            return self._teacher_out(x)

    def distillation(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The weighted distillation term w_kd * c * KD of one batch (zero before there is a
        teacher). This is the quantity to compare with another library's LwF penalty."""
        if self.teacher is None or ctx.index == 0:
            return logits.new_zeros(())
        loss = LOSSES[self.options.distill_loss]
        if loss.on == "logits" and not self._groups:
            return logits.new_zeros(())
        _, w_kd = self.weights(ctx)
        target = self.teacher_outputs(batch)
        T = distillation_temperature(self.options, ctx)
        if loss.on == "features":
            kd = loss.fn(features, target, T)
        else:
            kd = grouped_distillation(loss, logits, target, self._groups, T,
                                      self.options.distill_reduction, self._teacher_masks)
        if self.options.t2_scaling and loss.uses_temperature:
            kd = kd * T**2
        return w_kd * kd

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        ce = self.ce(ctx, batch, logits)
        if self.teacher is None or ctx.index == 0:
            return ce
        w_ce, _ = self.weights(ctx)
        return w_ce * ce + self.distillation(ctx, batch, features, logits)

    # ---------------------------------------------------------------------- after a task
    def after_task(self, ctx: TaskContext) -> None:
        """The model becomes the next task's teacher; the memory (if any) takes its share of
        the task."""
        self.teacher = Teacher.copy_of(ctx)
        self._cache = None
        if self.memory is not None:
            self.update_memory(ctx)

    def update_memory(self, ctx: TaskContext) -> None:
        """Give the memory its share of the task's own examples (:meth:`task_data`): a policy
        chosen per class or per task by :meth:`Memory.update` (herding on the model's
        features), ``reservoir`` by offering every example once, in order."""
        assert self.memory is not None
        data = self.task_data(ctx)
        if not self.memory.online:
            self.memory.update(ctx, data, features_of=model_features(ctx))
            return
        chunk = 4096
        for i in range(0, len(data), chunk):
            self.memory.add(data.x[i:i + chunk], data.y[i:i + chunk], data.t[i:i + chunk], None,
                            ctx.generator)

    def costs(self) -> dict[str, int]:
        if self.memory is None:
            return super().costs()
        return {"memory_examples": len(self.memory), "memory_bytes": self.memory.nbytes()}

    def state_dict(self) -> dict[str, Any]:
        """The teacher, and the memory when there is one (without, the layout of plain LwF)."""
        state: dict[str, Any] = {
            "teacher": self.teacher.state_dict() if self.teacher is not None else None}
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("teacher")
        self.teacher = Teacher.from_state_dict(saved) if saved is not None else None
        if self.memory is not None and "memory" in state:
            self.memory.load_state_dict(state["memory"])
