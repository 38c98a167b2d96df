"""Strategies: each a small class with three hooks and the loss it trains on.

The engine calls, for every task of the stream::

    data = strategy.train_data(ctx)    # default: the current task's training set
    strategy.before_task(ctx)          # e.g. cache the teacher's outputs
    for each batch: loss = strategy.loss(ctx, batch, features, logits); step
    strategy.after_task(ctx)           # e.g. freeze a copy of the model as the next teacher

A strategy never calls ``backward()``; the engine does. Strategy *presets* are a strategy
class plus fixed option values; they are what users name on the command line
(``--strategy lwf-facil``) and what ``lifelong-kd list`` prints with their source. Every
option can still be changed with ``--set strategy.KEY=VALUE``.

The LwF presets, option by option (T = ``temperature``, "old" = only the outputs of earlier
tasks, "padded" = the student's softmax over old and current outputs against the teacher's
over the old ones, zero on the current):

============== ======= == ==== ======= ====== ===== ========= ======= ======= ======
preset         loss    T  T^2  logits  reduce alpha schedule  teacher ce      warm-up
============== ======= == ==== ======= ====== ===== ========= ======= ======= ======
lwf            soft_ce 2  no   old     sum    1     constant  same    seen    1
lwf-vdv2019    soft_ce 2  yes  padded  mean   1     vdv2019   same    seen    0
lwf-vdv2022    soft_ce 2  no   padded  mean   1     vdv2022   same    seen    0
lwf-mammoth    soft_ce 2  no   old     sum    0.5   constant  clean   seen    1
lwf-avalanche  kl      2  no   old     sum    1     constant  same    seen    0
lwf-facil      soft_ce 2  no   old     sum    1     constant  same    current 0
============== ======= == ==== ======= ====== ===== ========= ======= ======= ======

Each preset's ``source`` names the paper or the library file (and lines) it follows; its
``description`` says what the library does that these options cannot express.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import SCENARIOS
from .errors import ConfigError

if TYPE_CHECKING:
    import torch

    from .config import StrategyConfig
    from .engine import Batch, TaskContext, TrainData

ALPHA_SCHEDULES = ("constant", "vdv2019", "vdv2022", "bic")


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
    import torch

    table = torch.full((n_outputs,), -100, dtype=torch.long, device=units.device)
    table[units] = torch.arange(len(units), device=units.device)
    return table


class Strategy:
    """Plain fine-tuning: cross-entropy on the current task only (the lower bound).

    Subclasses override the hooks they need; ``loss`` is the one thing most override.
    """

    #: The ``StrategyConfig`` fields this strategy reads (the report lists only those).
    OPTIONS: tuple[str, ...] = ("ce_scope",)

    def __init__(self, config: StrategyConfig):
        self.config = config

    def before_task(self, ctx: TaskContext) -> None:
        """Called before training task ``ctx.index`` (after :meth:`train_data`)."""

    def train_data(self, ctx: TaskContext) -> TrainData:
        """The examples to train on for task ``ctx.index`` (default: that task's)."""
        from .engine import TrainData

        return TrainData.of_task(ctx.stream[ctx.index])

    def ce(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the outputs the scenario makes active for each example (the row
        of ``ctx.train_masks`` of the example's own task)."""
        import torch.nn.functional as F

        if ctx.all_active:
            return F.cross_entropy(logits, batch.y)
        mask = ctx.train_masks[batch.t]
        return F.cross_entropy(logits.masked_fill(~mask, float("-inf")), batch.y)

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The training loss of one batch (default: cross-entropy)."""
        return self.ce(ctx, batch, logits)

    def warmup_epochs(self, ctx: TaskContext) -> int:
        """Epochs of head-only training before task ``ctx.index`` (default: none)."""
        return 0

    def warmup_loss(
        self, ctx: TaskContext, batch: Batch, logits: torch.Tensor, units: torch.Tensor
    ) -> torch.Tensor:
        """Loss of the warm-up phase: cross-entropy over the current task's output units."""
        import torch.nn.functional as F

        lookup = torch_lookup(units, logits.shape[1])
        return F.cross_entropy(logits[:, units], lookup[batch.y])

    def after_task(self, ctx: TaskContext) -> None:
        """Called after training task ``ctx.index``, before it is evaluated."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this strategy (plain dicts of tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


# --------------------------------------------------------------------------------- LwF


class LwF(Strategy):
    """Learning without Forgetting (Li & Hoiem 2016): distil from the previous model.

    After each task a frozen copy of the model (in eval mode) becomes the teacher. While
    training task t >= 1 (0-based) the loss is::

        loss = w_ce * CE + w_kd * c * KD,   KD = reduce_g L(s[:, g], t[:, g])

    with L = ``distill_loss`` between the student's and the teacher's outputs on the same
    inputs (``teacher_input``: the student's possibly augmented batch, or the clean one), the
    groups g of output units given by ``logits`` (one softmax per earlier head in task-il, one
    group otherwise), ``distill_reduction`` (sum or mean over groups), c = T^2 when
    ``t2_scaling`` and the loss uses the temperature (Hinton et al. 2015, section 2: it keeps
    the gradient's scale independent of T) else 1, and (w_ce, w_kd) from ``alpha_schedule``
    (:func:`schedule_weights`). Feature losses compare the penultimate features instead and
    ignore ``logits``.

    When the teacher's inputs are deterministic (no augmentation, or ``teacher_input =
    clean``) its outputs are computed once per task and reused across epochs.
    """

    OPTIONS = ("alpha", "temperature", "t2_scaling", "distill_loss", "logits", "distill_reduction",
               "teacher_input", "alpha_schedule", "ce_scope", "warmup_epochs")

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        self.teacher: torch.nn.Module | None = None
        self._pending_teacher: dict[str, Any] | None = None
        self._cache: torch.Tensor | None = None
        self._groups: list[torch.Tensor] = []
        self._teacher_masks: list[torch.Tensor | None] = []

    @property
    def _on_features(self) -> bool:
        from .losses import LOSSES

        return LOSSES[self.config.distill_loss].on == "features"

    def _teacher_out(self, x: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None
        if self._on_features:
            return self.teacher.features(x)  # type: ignore[operator]
        return self.teacher(x)

    def distill_groups(self, ctx: TaskContext) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """The groups of output units distilled while training ``ctx.index``, and for each
        the mask of the units the teacher's soft targets cover (None: all of them).

        ``old`` and ``all`` come from :meth:`Stream.distill_groups`. ``padded`` takes the
        groups of ``all`` that hold an earlier task's unit and masks the teacher to the
        earlier tasks' units: in class-il one group over the classes seen so far whose
        current-task entries get target probability zero, as van de Ven & Tolias 2019 do
        (``loss_fn_kd``: "zeros will be added"); in task-il and domain-il it equals ``old``.
        """
        import torch

        stream, t = ctx.stream, ctx.index
        if self.config.logits != "padded":
            groups = stream.distill_groups(t, self.config.logits)
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

    def before_task(self, ctx: TaskContext) -> None:
        import torch

        self._cache = None
        self._groups, self._teacher_masks = self.distill_groups(ctx)
        if self.teacher is None or not (self._groups or self._on_features):
            return
        data = ctx.current_train_data
        if data is not None and (not ctx.augment or self.config.teacher_input == "clean"):
            with torch.inference_mode():
                outs = [self._teacher_out(ctx.prepare(data.x[i:i + ctx.eval_batch_size]))
                        for i in range(0, len(data), ctx.eval_batch_size)]
            if outs:
                self._cache = torch.cat(outs).clone()

    def weights(self, ctx: TaskContext) -> tuple[float, float]:
        """(w_ce, w_kd) for task ``ctx.index``; classes are counted per task (see
        :func:`schedule_weights`)."""
        tasks, t = ctx.stream.tasks, ctx.index
        n_old = sum(len(task.outputs) for task in tasks[:t])
        return schedule_weights(self.config.alpha_schedule, self.config.alpha, t + 1, n_old,
                                len(tasks[t].outputs), ctx.stream.scenario)

    def teacher_outputs(self, batch: Batch) -> torch.Tensor:
        """The teacher's logits (or features) for ``batch``: cached, or computed now."""
        import torch

        if self._cache is not None:
            return self._cache[batch.idx.to(self._cache.device)]
        x = batch.x_clean if self.config.teacher_input == "clean" else batch.x
        with torch.no_grad():
            return self._teacher_out(x)

    def distillation(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The weighted distillation term w_kd * c * KD of one batch (zero before there is a
        teacher). This is the quantity to compare with another library's LwF penalty."""
        from .losses import LOSSES, grouped_distillation

        if self.teacher is None or ctx.index == 0:
            return logits.new_zeros(())
        loss = LOSSES[self.config.distill_loss]
        if loss.on == "logits" and not self._groups:
            return logits.new_zeros(())
        _, w_kd = self.weights(ctx)
        target = self.teacher_outputs(batch)
        T = self.config.temperature
        if loss.on == "features":
            kd = loss.fn(features, target, T)
        else:
            kd = grouped_distillation(loss, logits, target, self._groups, T,
                                      self.config.distill_reduction, self._teacher_masks)
        if self.config.t2_scaling and loss.uses_temperature:
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

    def warmup_epochs(self, ctx: TaskContext) -> int:
        """``warmup_epochs`` of head-only training before every task after the first (Li &
        Hoiem 2016, Algorithm 1, "warm-up step")."""
        if ctx.index == 0 or not self.config.warmup_epochs:
            return 0
        # Only a task with output units of its own has a "new head" to warm up (not domain-il,
        # nor task-il heads shared by tasks with the same classes).
        seen = {u for task in ctx.stream.tasks[: ctx.index] for u in task.outputs}
        return self.config.warmup_epochs if set(ctx.stream[ctx.index].outputs) - seen else 0

    def after_task(self, ctx: TaskContext) -> None:
        self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        self._cache = None

    def state_dict(self) -> dict[str, Any]:
        teacher = self.teacher.state_dict() if self.teacher is not None else self._pending_teacher
        return {"teacher": teacher}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The teacher's architecture is the model's: restore() rebuilds it from the model.
        self._pending_teacher = state.get("teacher")
        self.teacher = None

    def restore(self, model: torch.nn.Module) -> None:
        """Rebuild the teacher from a checkpoint, with the architecture of ``model``."""
        if self._pending_teacher is not None:
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(self._pending_teacher)
            self.teacher = teacher.eval().requires_grad_(False)
        self._pending_teacher = None


# ------------------------------------------------------------------------------- joint


class Joint(Strategy):
    """Joint training, the upper bound: at task t train on the union of the training data of
    tasks 0..t, continuing from the current model (``mode = incremental``).

    Every example keeps its own task id, so the cross-entropy of each example is taken over
    the outputs of its own task's row of ``train_masks`` (its head in task-il). Each task
    trains ``train.epochs`` epochs over the union (or ``train.iterations`` steps), so the
    cost grows with t. Row i of the matrix is, as for every strategy, the accuracy after
    training on what tasks 0..i made available: rows are comparable with the others'.

    ``mode = final`` trains once, at the last task, on the union of all tasks (the "Joint"
    of van de Ven & Tolias 2019, ``baseline='joint'`` in their ``train_task_based.py``).
    Nothing is trained before the last task, so rows 0..T-2 are the untrained model's
    accuracies (in task-il and domain-il exactly the initial row b; in class-il taken among
    the classes seen so far, as every strategy's row i is) and only the last row means
    something: use it for average accuracy; forgetting, backward and forward transfer of
    that matrix are not meaningful.
    """

    OPTIONS = ("mode", "ce_scope")

    def train_data(self, ctx: TaskContext) -> TrainData:
        from .engine import TrainData

        tasks = list(ctx.stream.tasks[: ctx.index + 1])
        if self.config.mode == "final" and ctx.index < len(ctx.stream) - 1:
            return TrainData.empty(tasks[0])
        return TrainData.union(tasks)


# --------------------------------------------------------------------------------- EWC


class EWC(Strategy):
    """Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3).

    After each task k the diagonal Fisher information F^k of the parameters is estimated on
    ``fisher_samples`` of its training examples (0: all; a seeded random subset), and the
    parameters theta*^k are kept as the anchor. Training task t minimises::

        CE + sum_{k < t} (lambda/2) sum_i F^k_i (theta_i - theta*^k_i)^2,   lambda = ewc_lambda

    (one penalty per earlier task, as Kirkpatrick et al. do for a third task). The Fisher is

        F_i = (1/N) sum_n sum_y p(y | x_n) (d log p(y | x_n) / d theta_i)^2   (``true``)
        F_i = (1/N) sum_n (d log p(y_n | x_n) / d theta_i)^2                 (``empirical``)

    with p the softmax over the outputs the example's task trained (its row of
    ``train_masks``), computed from per-example gradients with the model in eval mode.

    ``ewc_online`` is online EWC (Schwarz et al. 2018, "Progress & compress"): a single
    accumulated Fisher F* = gamma F*_prev + F^k and the latest parameters as the anchor, with
    penalty (lambda/2) sum_i gamma F*_i (theta_i - theta*_i)^2, gamma = ``ewc_gamma``, as in
    van de Ven et al.'s ``ewc_loss`` (models/cl/continual_learner.py).
    """

    OPTIONS = ("ewc_lambda", "ewc_online", "ewc_gamma", "fisher_samples", "ewc_fisher", "ce_scope")

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        #: One entry per consolidated task (a single one when online): name -> tensor.
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """(lambda/2) sum_k sum_i F^k_i (theta_i - theta*^k_i)^2 (times gamma when online)."""
        params = dict(model.named_parameters())
        total = next(iter(params.values())).new_zeros(())
        scale = self.config.ewc_gamma if self.config.ewc_online else 1.0
        for fisher, anchor in zip(self.fishers, self.anchors, strict=True):
            for name, f in fisher.items():
                total = total + (f * (params[name] - anchor[name]).pow(2)).sum()
        return 0.5 * self.config.ewc_lambda * scale * total

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        ce = self.ce(ctx, batch, logits)
        if not self.fishers or self.config.ewc_lambda == 0:
            return ce
        return ce + self.penalty(ctx.model)

    def fisher(self, ctx: TaskContext) -> dict[str, torch.Tensor]:
        """The diagonal Fisher of ``ctx.model`` on (a seeded subset of) the task's data."""
        import torch

        data = ctx.current_train_data
        if data is None:
            from .engine import TrainData

            data = TrainData.of_task(ctx.stream[ctx.index])
        n = len(data)
        keep = n if self.config.fisher_samples <= 0 else min(n, self.config.fisher_samples)
        g = torch.Generator().manual_seed((1_000_003 * ctx.config.seed + ctx.index) % 2**63)
        idx = torch.randperm(n, generator=g)[:keep]
        x = ctx.prepare(data.x[idx])
        masks = ctx.train_masks[data.t[idx].to(ctx.device)]
        y = data.y[idx].to(ctx.device)
        return diagonal_fisher(ctx.model, x, masks, y, self.config.ewc_fisher)

    def after_task(self, ctx: TaskContext) -> None:
        fisher = self.fisher(ctx)
        anchor = {n: p.detach().clone() for n, p in ctx.model.named_parameters()
                  if p.requires_grad}
        if self.config.ewc_online and self.fishers:
            gamma = self.config.ewc_gamma
            fisher = {n: gamma * self.fishers[0][n] + f for n, f in fisher.items()}
            self.fishers, self.anchors = [fisher], [anchor]
        else:
            self.fishers.append(fisher)
            self.anchors.append(anchor)

    def state_dict(self) -> dict[str, Any]:
        return {"fishers": self.fishers, "anchors": self.anchors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fishers = list(state.get("fishers", []))
        self.anchors = list(state.get("anchors", []))


def diagonal_fisher(
    model: torch.nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    y: torch.Tensor,
    kind: str = "true",
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher information of ``model``'s parameters on the examples ``x``.

    ``masks[n]`` marks the outputs the softmax of example n spans. With
    g_{n,c} = d log p(c | x_n) / d theta:

    - ``kind = true``: F_i = (1/N) sum_n sum_c p(c | x_n) g_{n,c,i}^2, the expectation over the
      model's own predictive distribution, summed exactly over the active outputs
      (Kirkpatrick et al. 2017, methods; van de Ven et al.'s ``fisher_labels = 'all'``);
    - ``empirical``: F_i = (1/N) sum_n g_{n,y_n,i}^2 with the examples' own labels (see
      Martens 2020, "New insights and perspectives on the natural gradient method", 11).

    The model is in eval mode meanwhile. Models built of ``Linear``, ``Conv2d`` and
    ``BatchNorm`` layers (all of ours) take a fast exact path: one backward pass per class
    gives each layer's per-example output gradients d_n, and the squared per-example weight
    gradients are summed without being stored one by one (for a linear layer
    sum_n w_n (d_n a_n^T)^2 = (w d^2)^T a^2, a_n the layer's input). Any other model falls
    back to per-example gradients from ``torch.func.vmap``.
    """
    was_training = model.training
    model.eval()
    try:
        try:
            return _fisher_by_layers(model, x, masks, y, kind)
        except _Unsupported:
            return _fisher_by_vmap(model, x, masks, y, kind)
    finally:
        model.train(was_training)


class _Unsupported(Exception):
    """The model has a layer the fast Fisher path cannot handle."""


def _class_weights(
    model: torch.nn.Module, xb: torch.Tensor, mb: torch.Tensor, yb: torch.Tensor, kind: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(class index per example, weight per example) pairs whose weighted squared gradients
    sum to the Fisher: the label with weight 1 (empirical), or each active output c with
    weight p(c | x) (true)."""
    import torch
    import torch.nn.functional as F

    if kind == "empirical":
        return [(yb, torch.ones(len(yb), device=xb.device))]
    with torch.no_grad():
        probs = F.softmax(model(xb).masked_fill(~mb, float("-inf")), dim=1)
    active = mb.any(dim=0).nonzero().flatten().tolist()
    return [(torch.full_like(yb, c), probs[:, c]) for c in active]


def _fisher_by_layers(
    model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor, kind: str
) -> dict[str, torch.Tensor]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    layers: list[tuple[str, nn.Module]] = []
    for prefix, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise _Unsupported
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if module.running_mean is None or module.running_var is None:
                raise _Unsupported
        elif not isinstance(module, nn.Linear):
            raise _Unsupported
        layers.append((prefix, module))
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    widest = max((p.numel() for p in fisher.values()), default=1)
    chunk = max(1, min(256, 2**24 // widest))
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen[module] = (inputs[0].detach(), output)

    def add(name: str, value: torch.Tensor) -> None:
        if name in fisher:
            fisher[name] += value.reshape(fisher[name].shape)

    handles = [m.register_forward_hook(keep) for _, m in layers]
    try:
        for start in range(0, len(x), chunk):
            xb, mb, yb = x[start:start + chunk], masks[start:start + chunk], y[start:start + chunk]
            pairs = _class_weights(model, xb, mb, yb, kind)
            seen.clear()
            with torch.enable_grad():
                logits = model(xb.detach().requires_grad_(True))
                log_p = F.log_softmax(logits.masked_fill(~mb, float("-inf")), dim=1)
                outputs = [seen[m][1] for _, m in layers]
                for c, weight in pairs:
                    chosen = log_p.gather(1, c.view(-1, 1)).squeeze(1)
                    total = torch.where(mb.gather(1, c.view(-1, 1)).squeeze(1), chosen, 0.0).sum()
                    grads = torch.autograd.grad(total, outputs, retain_graph=True)
                    for (prefix, module), d in zip(layers, grads, strict=True):
                        a = seen[module][0]
                        for suffix, value in _squared_grads(module, a, d.detach(), weight):
                            add(f"{prefix}.{suffix}" if prefix else suffix, value)
    finally:
        for h in handles:
            h.remove()
    return {n: f / max(len(x), 1) for n, f in fisher.items()}


def _squared_grads(
    module: torch.nn.Module, a: torch.Tensor, d: torch.Tensor, w: torch.Tensor
) -> list[tuple[str, torch.Tensor]]:
    """sum_n w_n (per-example gradient of each parameter of ``module``)^2, from the layer's
    input ``a`` and the gradient ``d`` of its output, for examples n of the batch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    out: list[tuple[str, torch.Tensor]] = []
    if isinstance(module, nn.Linear):
        if a.dim() != 2:
            raise _Unsupported
        wd2 = w[:, None] * d.pow(2)
        out.append(("weight", wd2.T @ a.pow(2)))
        if module.bias is not None:
            out.append(("bias", wd2.sum(dim=0)))
    elif isinstance(module, nn.Conv2d):
        cols = F.unfold(a, module.kernel_size, module.dilation, module.padding, module.stride)
        dd = d.flatten(2)  # (B, out, P)
        per_example = torch.bmm(dd, cols.transpose(1, 2))  # (B, out, in * k * k)
        out.append(("weight", (w[:, None, None] * per_example.pow(2)).sum(dim=0)))
        if module.bias is not None:
            out.append(("bias", (w[:, None] * dd.sum(dim=2).pow(2)).sum(dim=0)))
    else:  # batch norm in eval mode: y = gamma * (a - mean) / sqrt(var + eps) + beta
        assert isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))
        shape = (1, -1) + (1,) * (a.dim() - 2)
        assert module.running_mean is not None and module.running_var is not None
        x_hat = (a - module.running_mean.view(shape)) / torch.sqrt(
            module.running_var.view(shape) + module.eps)
        dims = tuple(range(2, a.dim()))
        g_weight = (d * x_hat).sum(dim=dims) if dims else d * x_hat
        g_bias = d.sum(dim=dims) if dims else d
        if module.weight is not None:
            out.append(("weight", (w[:, None] * g_weight.pow(2)).sum(dim=0)))
        if module.bias is not None:
            out.append(("bias", (w[:, None] * g_bias.pow(2)).sum(dim=0)))
    return out


def _fisher_by_vmap(
    model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor, kind: str
) -> dict[str, torch.Tensor]:
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    n_params = sum(p.numel() for p in params.values())
    chunk = max(1, min(256, 2**24 // max(n_params, 1)))

    def log_prob(p: dict[str, torch.Tensor], xi: torch.Tensor, mi: torch.Tensor,
                 ci: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))[0]
        log_p = F.log_softmax(logits.masked_fill(~mi, float("-inf")), dim=0)
        return log_p.gather(0, ci.view(1)).squeeze(0)

    per_example = vmap(grad(log_prob), in_dims=(None, 0, 0, 0))
    for start in range(0, len(x), chunk):
        xb, mb, yb = x[start:start + chunk], masks[start:start + chunk], y[start:start + chunk]
        for c, weight in _class_weights(model, xb, mb, yb, kind):
            grads = per_example(params, xb, mb, c)
            for name, g in grads.items():
                w = weight.view(-1, *([1] * (g.dim() - 1)))
                fisher[name] += (w * g.detach().pow(2)).sum(dim=0)
    return {n: f / max(len(x), 1) for n, f in fisher.items()}


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class StrategyPreset:
    """A strategy name users type: a strategy class, the option values it fixes, what it
    is and where it comes from, and the scenarios it supports."""

    name: str
    cls: type[Strategy]
    description: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    scenarios: tuple[str, ...] = SCENARIOS


_AVALANCHE = "avalanche-lib 0.6.0, avalanche/training"
_VDV = "GMvandeVen/continual-learning"

PRESETS: dict[str, StrategyPreset] = {
    p.name: p
    for p in (
        StrategyPreset(
            "naive", Strategy,
            "plain fine-tuning on each task in turn (the lower bound)",
            "-",
        ),
        StrategyPreset(
            "lwf", LwF,
            "Learning without Forgetting as published: CE + 1 * soft CE(teacher/T=2, student/T) "
            "over the old outputs (one term per old head, summed), no T^2, teacher on the "
            "same batch, 1 epoch of new-head warm-up (the paper warms up to convergence)",
            "Li & Hoiem 2016 (TPAMI 2018), section 3: eq. 2-3 (modified cross-entropy, T = 2), "
            "Algorithm 1 (lambda_o = 1, warm-up step)",
            {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
             "logits": "old", "distill_reduction": "sum", "alpha": 1.0,
             "alpha_schedule": "constant", "teacher_input": "same", "ce_scope": "seen",
             "warmup_epochs": 1},
        ),
        StrategyPreset(
            "lwf-vdv2019", LwF,
            "LwF of van de Ven & Tolias 2019: (1/t) CE + (1 - 1/t) T^2 soft CE, T = 2, averaged "
            "over earlier heads (task-il); class-il: student softmax over all seen classes "
            "against the teacher's over the old ones, zero-padded",
            f"van de Ven & Tolias 2019, 'Three scenarios for continual learning'; {_VDV} "
            "utils.py@26f00db l.18-45 (loss_fn_kd: zero padding, * T**2), encoder.py@10811aa "
            "Classifier.train_a_batch (replay loss = sum/n_replays; rnt*CE + (1-rnt)*KD), "
            "train.py@10811aa train_cl (active_classes, rnt = 1/task)",
            {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": True,
             "logits": "padded", "distill_reduction": "mean", "alpha": 1.0,
             "alpha_schedule": "vdv2019", "teacher_input": "same", "ce_scope": "seen",
             "warmup_epochs": 0},
        ),
        StrategyPreset(
            "lwf-vdv2022", LwF,
            "LwF of van de Ven, Tuytelaars & Tolias 2022: CE + (t-1) * soft CE (T = 2, no T^2) "
            "averaged over earlier heads in task-il and domain-il, CE + soft CE in class-il "
            "(zero-padded teacher over the seen classes)",
            f"van de Ven et al. 2022, 'Three types of incremental learning' (Nat. Mach. "
            f"Intell.); {_VDV} models/classifier.py@0fa419e l.191-196 (KD over the active "
            "classes) and l.210-213 (mean over contexts, * (context-1) unless Class-IL), "
            "'Combine loss' block (loss_cur + loss_replay); models/utils/loss_functions.py"
            "@df9f983 l.12-41 (T**2 only with norm=True, not passed); main.py (lwf_weighting "
            "for replay='current' with distillation)",
            {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
             "logits": "padded", "distill_reduction": "mean", "alpha": 1.0,
             "alpha_schedule": "vdv2022", "teacher_input": "same", "ce_scope": "seen",
             "warmup_epochs": 0},
        ),
        StrategyPreset(
            "lwf-mammoth", LwF,
            "Mammoth's LwF: CE over seen classes + 0.5 * soft CE (T = 2, no T^2) over the "
            "old classes, teacher logits computed once per task on non-augmented inputs, "
            "head warm-up (Mammoth: n_epochs epochs of plain SGD with the model in eval mode; "
            "1 here, its Seq-MNIST setting; best_args use alpha 1 on Seq-MNIST, 3 on "
            "Seq-CIFAR-10). Class-il only: Mammoth's task-il numbers are the task-aware "
            "matrix of the class-il run",
            "aimagelab/mammoth models/lwf.py (2022-present version) l.13-19 (smooth, "
            "modified_kl_div), l.29-32 (alpha 0.5, softmax_temp 2), l.41-56 (warm-up of the "
            "classifier), l.58-67 (teacher logits on not_aug inputs), l.74-77 (CE over "
            ":n_seen_classes, KD over :n_past_classes); Buzzega et al. 2020 (DER)",
            {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
             "logits": "old", "distill_reduction": "sum", "alpha": 0.5,
             "alpha_schedule": "constant", "teacher_input": "clean", "ce_scope": "seen",
             "warmup_epochs": 1},
            scenarios=("class-il",),
        ),
        StrategyPreset(
            "lwf-avalanche", LwF,
            "Avalanche's LwF: CE + 1 * KL(teacher/T=2 || student/T) with reduction batchmean, "
            "no T^2, softmax over each old head's active units (classes seen in that task "
            "label), summed over heads. Avalanche's teacher is a deepcopy in train mode "
            "(differs only with batch norm or dropout); its CE spans every unit of a "
            "fixed-size head in class-il",
            f"{_AVALANCHE}/regularization.py l.83-99 (_distillation_loss: log_softmax/softmax "
            "of out[:, au] / T, kl_div batchmean), l.101-131 (_lwf_penalty: sum over task "
            "heads), l.133-142 (alpha), l.144-164 (post_adapt: teacher, active units); "
            "plugins/lwf.py l.13 (alpha=1, temperature=2), l.27 (loss += penalty)",
            {"distill_loss": "kl", "temperature": 2.0, "t2_scaling": False,
             "logits": "old", "distill_reduction": "sum", "alpha": 1.0,
             "alpha_schedule": "constant", "teacher_input": "same", "ce_scope": "seen",
             "warmup_epochs": 0},
        ),
        StrategyPreset(
            "lwf-facil", LwF,
            "FACIL's LwF without exemplars: CE over the current task's head + 1 * soft CE "
            "(T = 2, no T^2) over the concatenated old heads (one softmax), teacher on the "
            "same batch. FACIL also freezes the old heads and adds eps = 1e-5 to the student's "
            "probabilities, which these options do not do. Class-il only (FACIL reports "
            "task-aware and task-agnostic accuracy of the same run)",
            "mmasana/FACIL src/approach/lwf.py@66e3e8e l.17-19 (lamb=1, T=2, wu_nepochs=0), "
            "l.46-53 (old heads not optimised), l.72-78 (model_old in eval mode), l.85-92 "
            "(teacher on the same images), l.120-134 (cross_entropy, exp = 1/T), l.136-146 "
            "(criterion: KD over outputs[:t], CE over outputs[t]); Masana et al. 2022 (TPAMI)",
            {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
             "logits": "old", "distill_reduction": "sum", "alpha": 1.0,
             "alpha_schedule": "constant", "teacher_input": "same", "ce_scope": "current",
             "warmup_epochs": 0},
            scenarios=("class-il",),
        ),
        StrategyPreset(
            "joint", Joint,
            "the upper bound: at each task, train on the union of all tasks' data so far "
            "(strategy.mode = final: once, at the last task)",
            "van de Ven & Tolias 2019 ('Joint'); GMvandeVen/continual-learning "
            "train/train_task_based.py (baseline 'cummulative' / 'joint')",
            {"mode": "incremental"},
        ),
        StrategyPreset(
            "ewc", EWC,
            "elastic weight consolidation: CE + sum over earlier tasks of (lambda/2) F_i "
            "(theta_i - theta*_i)^2, diagonal Fisher from fisher_samples examples "
            "(strategy.ewc_online = true: online EWC with decay ewc_gamma)",
            "Kirkpatrick et al. 2017 (PNAS), eq. 3; online: Schwarz et al. 2018 (Progress & "
            "Compress)",
            {"ewc_lambda": 100.0, "ewc_online": False, "ewc_gamma": 1.0,
             "fisher_samples": 1000, "ewc_fisher": "true"},
        ),
    )
}


def strategy_preset(name: str) -> StrategyPreset:
    """The preset called ``name``; a ConfigError listing the valid names otherwise."""
    if name in PRESETS:
        return PRESETS[name]
    if name.startswith("avalanche:"):
        try:
            from .interop.avalanche import avalanche_preset  # optional extra
        except ModuleNotFoundError:
            raise ConfigError(f"unknown strategy `{name}`: Avalanche strategies are not "
                              "available in this version") from None
        return avalanche_preset(name)
    close = difflib.get_close_matches(name, list(PRESETS), n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    raise ConfigError(f"unknown strategy `{name}`{hint}; valid strategies: {', '.join(PRESETS)}")


def build_strategy(config: StrategyConfig) -> Strategy:
    """Instantiate the strategy of ``config.name`` with the resolved options."""
    return strategy_preset(config.name).cls(config)

