"""Strategies: each a small class with three hooks and the loss it trains on.

The engine calls, for every task of the stream::

    strategy.before_task(ctx)          # e.g. cache the teacher's outputs
    data = strategy.train_data(ctx)    # default: the current task's training set
    for each batch: loss = strategy.loss(ctx, batch, features, logits); step
    strategy.after_task(ctx)           # e.g. freeze a copy of the model as the next teacher

A strategy never calls ``backward()``; the engine does. Strategy *presets* (``lwf``,
``lwf-vdv2019``, ...) are a strategy class plus fixed option values; they are what users
name on the command line.
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
    schedule: str, alpha: float, n_tasks_so_far: int, n_old: int, n_new: int
) -> tuple[float, float]:
    """Weights (w_ce, w_kd) of loss = w_ce * CE + w_kd * KD while training task t.

    - ``constant``: (1, alpha) (Li & Hoiem 2016, eq. 1 with lambda_o = alpha).
    - ``vdv2019``: (1/t, 1 - 1/t), t the number of tasks so far including the current one
      (van de Ven & Tolias 2019, "Three scenarios", appendix on LwF: the new task weighted
      by 1/t, the replayed ones by 1 - 1/t).
    - ``vdv2022``: (1, t - 1) (van de Ven, Tuytelaars & Tolias 2022, Nature Machine
      Intelligence, methods: the distillation term counts once per previous task).
    - ``bic``: (1 - lambda, lambda), lambda = n_old / (n_old + n_new), the share of classes
      seen before this task (Wu et al. 2019, "Large scale incremental learning", eq. 4).
    """
    t = n_tasks_so_far
    if schedule == "constant":
        return 1.0, alpha
    if schedule == "vdv2019":
        return 1.0 / t, 1.0 - 1.0 / t
    if schedule == "vdv2022":
        return 1.0, float(t - 1)
    if schedule == "bic":
        lam = n_old / (n_old + n_new) if n_old + n_new else 0.0
        return 1.0 - lam, lam
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

    def __init__(self, config: StrategyConfig):
        self.config = config

    def before_task(self, ctx: TaskContext) -> None:
        """Called before training task ``ctx.index``."""

    def train_data(self, ctx: TaskContext) -> TrainData:
        """The examples to train on for task ``ctx.index`` (default: that task's)."""
        from .engine import TrainData

        return TrainData.of_task(ctx.stream[ctx.index])

    def ce(self, ctx: TaskContext, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the outputs the scenario makes active for each example."""
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
        """What a checkpoint must hold to resume this strategy."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class LwF(Strategy):
    """Learning without Forgetting (Li & Hoiem 2016): distil from the previous model.

    After each task a frozen copy of the model (in eval mode) becomes the teacher. While
    training task t >= 1 the loss is ``w_ce * CE + w_kd * c * KD``, where KD is
    ``strategy.distill_loss`` between the student's and the teacher's outputs on the same
    inputs (``teacher_input``), over the output groups of ``logits`` (``old`` or ``all``),
    c = T^2 when ``t2_scaling`` else 1, and (w_ce, w_kd) come from ``alpha_schedule``.

    When the teacher's inputs are deterministic (no augmentation, or ``teacher_input =
    clean``) its outputs are computed once per task and reused across epochs.
    """

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        self.teacher: torch.nn.Module | None = None
        self._cache: torch.Tensor | None = None
        self._groups: list[torch.Tensor] = []

    @property
    def _on_features(self) -> bool:
        from .losses import LOSSES

        return LOSSES[self.config.distill_loss].on == "features"

    def _teacher_out(self, x: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None
        if self._on_features:
            return self.teacher.features(x)  # type: ignore[operator]
        return self.teacher(x)

    def before_task(self, ctx: TaskContext) -> None:
        import torch

        self._cache = None
        self._groups = [g.to(ctx.device) for g in ctx.stream.distill_groups(ctx.index, self.config.logits)]
        if self.teacher is None or not (self._groups or self._on_features):
            return
        if not ctx.augment or self.config.teacher_input == "clean":
            data = ctx.current_train_data
            with torch.inference_mode():
                outs = [self._teacher_out(ctx.prepare(data.x[i:i + ctx.eval_batch_size]))
                        for i in range(0, len(data), ctx.eval_batch_size)]
            self._cache = torch.cat(outs).clone()

    def weights(self, ctx: TaskContext) -> tuple[float, float]:
        stream, t = ctx.stream, ctx.index
        n_old = len({u for task in stream.tasks[:t] for u in task.outputs})
        n_all = len({u for task in stream.tasks[: t + 1] for u in task.outputs})
        return schedule_weights(self.config.alpha_schedule, self.config.alpha, t + 1, n_old,
                                n_all - n_old)

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        import torch

        from .losses import LOSSES, grouped_distillation

        ce = self.ce(ctx, batch, logits)
        if self.teacher is None or ctx.index == 0:
            return ce
        w_ce, w_kd = self.weights(ctx)
        if self._cache is not None:
            target = self._cache[batch.idx]
        else:
            x = batch.x_clean if self.config.teacher_input == "clean" else batch.x
            with torch.no_grad():
                target = self._teacher_out(x)
        loss = LOSSES[self.config.distill_loss]
        if loss.on == "features":
            kd = loss.fn(features, target, self.config.temperature)
        else:
            kd = grouped_distillation(loss, logits, target, self._groups, self.config.temperature)
            if self.config.t2_scaling:
                kd = kd * self.config.temperature**2
        return w_ce * ce + w_kd * kd

    def warmup_epochs(self, ctx: TaskContext) -> int:
        """``warmup_epochs`` of head-only training before every task after the first."""
        return self.config.warmup_epochs if ctx.index > 0 else 0

    def after_task(self, ctx: TaskContext) -> None:
        self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        self._cache = None

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": None if self.teacher is None else self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The teacher's architecture is the model's; the engine passes the model in ctx.
        self._pending_teacher = state.get("teacher")

    def restore(self, model: torch.nn.Module) -> None:
        """Rebuild the teacher from a checkpoint, with the architecture of ``model``."""
        pending = getattr(self, "_pending_teacher", None)
        if pending is not None:
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(pending)
            self.teacher = teacher.eval().requires_grad_(False)
        self._pending_teacher = None


@dataclass(frozen=True)
class StrategyPreset:
    """A strategy name users type: a strategy class and the option values it fixes."""

    name: str
    cls: type[Strategy]
    description: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    scenarios: tuple[str, ...] = SCENARIOS


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
            "Learning without Forgetting: CE + alpha * KL(teacher/T || student/T)",
            "Li & Hoiem 2016 (TPAMI 2018), section 3: T = 2, lambda_o = 1",
            {"alpha": 1.0, "temperature": 2.0, "distill_loss": "kl", "t2_scaling": False,
             "logits": "old", "alpha_schedule": "constant"},
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
