"""Distillation as compression along the stream: a teacher of its own architecture, trained
continually with a strategy of its own, distilled into the run's model (the student) after
every task (``compress``); and Hinton et al.'s offline reference, a teacher trained jointly
on all tasks so far (``kd``).

The question these answer: to deploy a small model that keeps learning, train it
continually itself (``naive``, ``lwf``, ``derpp``, ... on the small model), or keep a large
continual learner and distil it into the small one after every task? The teacher's
architecture is ``teacher.*`` (default: the student's), its strategy ``teacher.strategy``
with options ``teacher.settings`` over that preset's (:func:`teacher_run_config`). Related
work: FOSTER (Wang et al. 2022, PyCIL ``models/foster.py``) compresses two backbones into one;
DMC (Zhang et al. 2020, FACIL ``src/approach/dmc.py``) distils an old and a new model into
one; CDL (arXiv 2407.13911) distils a large ViT into a small one inside prompt-based continual
learners.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..config import MemoryConfig, RunConfig, StrategyConfig, check_choice, check_positive, closest_name
from ..config import teacher_model as teacher_model_config
from ..data.streams import to_device
from ..errors import ConfigError
from ..losses import LOSSES, grouped_distillation
from ..models import Model, build_model
from ..schedules import annealing, annealing_loss
from .base import (
    Batch,
    ExternalLoop,
    Phase,
    Strategy,
    TaskContext,
    TrainData,
    distillation_temperature,
    masked_ce,
    task_steps,
)
from .memory import Draw, Memory
from .options import AnnealingOptions, make_options, option_names, option_values
from .teacher import Teacher
from .union import MODES, union_data

#: Strategies that cannot train a ``compress`` teacher: those that have a teacher of their
#: own, and external ones (their own training loop cannot run on the teacher's network).
NOT_TEACHERS = ("compress", "kd")


def teacher_seed(seed: int) -> int:
    """The seed of the teacher's weights and batch order: apart from every run's own seed,
    (seed + 0x9E3779B97F4A7C15) modulo 2^63, an offset whose low 32 bits are not zero (torch's
    CPU generator keeps only the low 32 bits of a seed, so seed + 2^32 would be the seed
    itself), so that the teacher of run s does not start as the student of a run."""
    return (seed + 0x9E3779B97F4A7C15) % 2**63


def teacher_run_config(config: RunConfig, strategy: str | None = None) -> RunConfig:
    """The configuration the teacher trains under: the run's, with the teacher's model
    (:func:`~lifelong_kd.config.teacher_model`) and the teacher's strategy: the preset
    ``strategy`` (default ``teacher.strategy``) with ``teacher.settings`` over its options.
    A preset's dotted options (``derpp``'s ``memory.size``, ``der-avalanche``'s
    ``memory.policy``) apply where the run leaves that memory setting at its default: the
    run's own ``memory.*`` settings win."""
    from ..config import from_flat
    from .registry import strategy_preset

    name = strategy or config.teacher.strategy
    preset = strategy_preset(name)
    own = option_names(preset.cls.Options)
    for key in config.teacher.settings:
        if key not in own:
            close = closest_name(key, own)
            hint = f" (did you mean `{close}`?)" if close else ""
            raise ConfigError(f"`teacher.settings` holds `{key}`, which is not an option of the "
                              f"teacher's strategy `{name}`{hint}; valid: {', '.join(own)}")
    flat: dict[str, Any] = {k if "." in k else f"strategy.{k}": v for k, v in preset.options.items()}
    memory_keys = {k: v for k, v in flat.items() if k.startswith("memory.")}
    options = make_options(preset.cls.Options,
                           {**{k: v for k, v in preset.options.items() if "." not in k},
                            **config.teacher.settings})
    default, given = MemoryConfig(), from_flat(memory_keys).memory
    budget = config.memory.size or config.memory.per_class  # the run's budget, either way
    memory = replace(config.memory, **{
        k: getattr(given, k) for k in (key[7:] for key in memory_keys)
        if getattr(config.memory, k) == getattr(default, k)
        and not (budget and k in ("size", "per_class"))})
    return replace(config, model=teacher_model_config(config),
                   strategy=StrategyConfig(name, option_values(options)), memory=memory)


@dataclass(frozen=True)
class CompressOptions(AnnealingOptions):
    """The options of :class:`Compress`, beside those of every distillation term."""

    #: Weight of the term towards the student's previous self.
    beta: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("strategy.beta", self.beta, strict=False)


class Compress(Strategy):
    """A continual teacher distilled into the student after every task (``compress``).

    For task t: (1) the teacher (its own network, ``teacher.*``) trains on the task with the
    strategy ``teacher.strategy`` (its phases run by the engine on the teacher, with its own
    seeded generator); (2) the student trains on the task's examples, each batch joined (as
    ER's) by a draw of ``memory.batch_size`` examples (default ``train.batch_size``) from a
    copy of the teacher's memory as the teacher left it after the task, where the teacher's
    strategy keeps one, with (over the batch and the draw)::

        loss = CE + alpha * c * KD(s, z_teacher; units of tasks 0..t)
                  + beta  * c * KD(s, z_previous; units of tasks 0..t-1)

    KD is ``distill_loss`` at temperature T (one softmax per head in task-il, summed or averaged
    by ``distill_reduction``; Hinton et al. 2015, section 2), c = T^2 when ``t2_scaling``,
    z_previous the outputs of the student after task t-1 (frozen; none at t = 0). T follows
    ``temperature_schedule`` (:func:`~lifelong_kd.strategies.base.distillation_temperature`).
    With ``temperature_schedule = annealing`` (Annealing-KD, Jafari et al. 2021, section 3):
    phase 1 (the first ``annealing_share`` of the task's steps) minimises
    alpha * ||s - phi(T) z_teacher||^2 + beta * ||s_old - phi(T) z_previous||^2 with T stepping
    from tau_max = ``temperature`` to 1 and phi(T) = 1 - (T - 1) / tau_max; phase 2 minimises
    CE alone. A feature loss (``feature_l2``, ``feature_cosine``) compares the penultimate
    features instead, through a learned linear projector from the student's width to the
    teacher's when they differ (trained with the student, kept in the checkpoint).

    The teacher's outputs on the student's examples are computed once per task when they are
    deterministic (no augmentation, or ``teacher_input = clean``). The student is the deployed
    model: ``accuracy_matrix`` is its; the teacher, evaluated the same way after every task,
    goes to result.json's ``teacher``. With alpha = beta = 0 the student trains exactly as
    ``naive`` does (its batches come from the run's generator, the teacher's from its own).
    """

    Options: type[AnnealingOptions] = CompressOptions
    options: Any
    MEMORY = "optional"
    TEACHER = True
    #: The teacher's strategy preset; None: ``teacher.strategy``.
    TEACHER_STRATEGY: str | None = None
    #: Whether the student is distilled towards its previous self too (the beta term).
    SELF_DISTILLATION = True

    def __init__(self, options: AnnealingOptions | None = None,
                 memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        #: The teacher's network (trainable while its phases run, frozen in the student's).
        self.net: Model | None = None
        self.teacher_config: RunConfig | None = None
        self.teacher_strategy: Strategy | None = None
        self.generator: torch.Generator | None = None
        #: The student after the previous task (the beta term).
        self.previous: Teacher | None = None
        #: Student features -> teacher features, for a feature loss between different widths.
        self.projector: nn.Linear | None = None
        #: A copy of the teacher's memory after it learnt the task, which the student replays.
        self._replay: Memory | None = None
        self._pending: dict[str, Any] | None = None
        self._teacher_ctx: TaskContext | None = None
        self._cache: dict[str, torch.Tensor] = {}
        self._groups: list[torch.Tensor] = []
        self._old_groups: list[torch.Tensor] = []

    # ------------------------------------------------------------------------ checks
    @classmethod
    def check(cls, config: RunConfig, options: AnnealingOptions) -> None:
        """The teacher's strategy: a known preset that is not itself ``compress`` or ``kd``,
        nor external; its whole configuration as its preset checks it."""
        from .registry import FAMILIES, strategy_preset

        name = config.teacher.strategy
        external = any(name.startswith(prefix) for prefix in FAMILIES)
        if not external:
            try:
                strategy_preset(name)
            except ConfigError as exc:
                raise ConfigError(f"`teacher.strategy` = {name!r}: {exc}") from None
        if name in NOT_TEACHERS or external or issubclass(strategy_preset(name).cls, Compress):
            raise ConfigError(f"`teacher.strategy` = {name!r} cannot train a teacher (it is not a "
                              "built-in strategy without a teacher of its own); use naive, lwf, "
                              "er, der, derpp, ewc, icarl, ...")
        tname = cls.TEACHER_STRATEGY or name
        try:
            strategy_preset(tname).check(teacher_run_config(config, tname))
        except ConfigError as exc:
            raise ConfigError(f"the teacher's strategy `{tname}`: {exc}") from None

    # ----------------------------------------------------------------------- set-up
    def setup(self, ctx: TaskContext) -> None:
        """Build the teacher's network (seeded apart from the student, the global generator
        left as it was), its strategy, its generator and the projector; then restore them
        from a checkpoint, if one was loaded."""
        from .registry import build_strategy

        if self.net is None:
            config = ctx.config
            self.teacher_config = teacher_run_config(config, self.TEACHER_STRATEGY)
            self.teacher_config = self.adjust_teacher(self.teacher_config)
            seed = teacher_seed(config.seed)
            shape, n_out = ctx.stream.input_shape, ctx.stream.n_outputs
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.net = build_model(self.teacher_config.model, shape, n_out).to(ctx.device)
                width_s, width_t = ctx.model.head.in_features, self.net.head.in_features
                if LOSSES[self.options.distill_loss].on == "features" and width_s != width_t:
                    self.projector = nn.Linear(width_s, width_t).to(ctx.device)
            self.generator = torch.Generator().manual_seed(seed)
            self.teacher_strategy = build_strategy(self.teacher_config.strategy,
                                                   self.teacher_config.memory)
            self.teacher_strategy.setup(self.teacher_context(ctx))
        if self._pending is not None:
            state, self._pending = self._pending, None
            assert self.net is not None and self.teacher_strategy is not None
            self.net.load_state_dict(state["net"])
            self.teacher_strategy.load_state_dict(state["teacher_strategy"])
            assert self.generator is not None
            self.generator.set_state(state["generator"].cpu())
            saved = state.get("previous")
            self.previous = Teacher.from_state_dict(saved) if saved is not None else None
            if self.projector is not None and state.get("projector") is not None:
                self.projector.load_state_dict(state["projector"])

    def adjust_teacher(self, config: RunConfig) -> RunConfig:
        """The teacher's configuration as this strategy trains it (``compress``: as
        :func:`teacher_run_config` gives it)."""
        return config

    def teacher_context(self, ctx: TaskContext) -> TaskContext:
        """The context of the teacher for task ``ctx.index``: its network, configuration,
        generator and cross-entropy masks (those of its strategy's ``ce_scope``)."""
        assert self.net is not None and self.teacher_config is not None
        assert self.generator is not None
        assert self.teacher_strategy is not None
        masks = ctx.stream.train_masks(ctx.index, self.teacher_strategy.options.ce_scope)
        return replace(ctx, config=self.teacher_config, model=self.net, generator=self.generator,
                       train_masks=to_device(masks, ctx.device), all_active=bool(masks.all()),
                       current_train_data=None)

    # ------------------------------------------------------------------------- data
    def before_task(self, ctx: TaskContext) -> None:
        assert self.teacher_strategy is not None
        tctx = self.teacher_context(ctx)
        tctx.current_train_data = self.teacher_strategy.train_data(tctx)
        self.teacher_strategy.before_task(tctx)
        self._teacher_ctx = tctx
        self._cache = {}
        self._replay = None
        self._groups = [g.to(ctx.device) for g in ctx.stream.distill_groups(ctx.index, "all")]
        self._old_groups = [g.to(ctx.device) for g in ctx.stream.distill_groups(ctx.index, "old")]

    # ----------------------------------------------------------------------- phases
    def parameters(self, model: Model) -> list[torch.Tensor]:
        """The student's and the projector's parameters (the student's phase trains them),
        then the teacher's (its own phases train them; listed so that the engine checks them
        for inf and NaN after every task)."""
        teacher = list(self.net.parameters()) if self.net is not None else []
        return [*self.student_parameters(model), *teacher]

    def student_parameters(self, model: Model) -> list[torch.Tensor]:
        projector = list(self.projector.parameters()) if self.projector is not None else []
        return [*super().parameters(model), *projector]

    def phases(self, ctx: TaskContext) -> list[Phase | ExternalLoop]:
        """The teacher's phases on its own network (its strategy's, in the teacher's
        context; never carrying their optimiser across tasks), then the student's."""
        assert self.teacher_strategy is not None and self._teacher_ctx is not None
        tctx = self._teacher_ctx
        teacher: list[Phase] = []
        for p in self.teacher_strategy.phases(tctx):
            if not isinstance(p, Phase):  # pragma: no cover - refused by check()
                raise ConfigError("the teacher's strategy must train with the engine's phases")
            teacher.append(replace(p, name=f"teacher {p.name}", ctx=tctx, carry_optimizer=False))
        done = teacher[-1].on_end if teacher else None

        def end_of_teacher() -> None:
            if done is not None:
                done()
            self.teacher_ready(ctx)

        if teacher:
            teacher[-1] = replace(teacher[-1], on_end=end_of_teacher)
        data = ctx.current_train_data
        assert data is not None
        epochs, steps = task_steps(ctx.config.train, len(data)) if len(data) else (0, 0)
        student = Phase("student", self.student_loss, self.student_parameters(ctx.model),
                        epochs, steps, carry_optimizer=True)
        if not teacher:
            self.teacher_ready(ctx)
        return [*teacher, student]

    def teacher_ready(self, ctx: TaskContext) -> None:
        """After the teacher's last phase: its strategy's end of task (memory update, its own
        teacher), the network frozen in eval mode for the student's phase, and the teacher's
        (and the previous student's) outputs on the student's examples computed once when
        they are deterministic."""
        assert self.teacher_strategy is not None and self._teacher_ctx is not None
        assert self.net is not None
        self.teacher_strategy.after_task(self._teacher_ctx)
        self.net.eval()
        memory = getattr(self.teacher_strategy, "memory", None)
        if isinstance(memory, Memory) and len(memory):
            self._replay = copy.deepcopy(memory)
        data = ctx.current_train_data
        if data is None or (ctx.augment and self.options.teacher_input != "clean"):
            return
        models = {"teacher": self.net}
        if self.previous is not None and self._uses_previous(ctx):
            models["previous"] = self.previous.model
        with torch.inference_mode():
            for key, net in models.items():
                outs = [self._outputs(net, ctx.prepare(data.x[i:i + ctx.eval_batch_size]))
                        for i in range(0, len(data), ctx.eval_batch_size)]
                if outs:
                    self._cache[key] = torch.cat(outs).clone()

    def _uses_previous(self, ctx: TaskContext) -> bool:
        return self.SELF_DISTILLATION and self.options.beta > 0 and ctx.index > 0

    def _outputs(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        on_features = LOSSES[self.options.distill_loss].on == "features"
        return net.features(x) if on_features else net(x)  # type: ignore[operator]

    def _target(self, key: str, net: nn.Module, batch: Batch, draw: Draw | None) -> torch.Tensor:
        """The outputs of ``net`` (the teacher, or the previous student) on the batch (cached
        when deterministic) and on the memory's draw."""
        clean = self.options.teacher_input == "clean"
        with torch.no_grad():
            if key in self._cache:
                cache = self._cache[key]
                out = cache[batch.idx.to(cache.device)]
            else:
                out = self._outputs(net, batch.x_clean if clean else batch.x)
            if draw is None:
                return out
            x = batch.ctx.prepare(draw.raw) if clean and batch.ctx.augment else draw.x
            return torch.cat([out, self._outputs(net, x)])

    # ------------------------------------------------------------------------- loss
    def student_loss(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        """The student's loss of one batch, joined by a draw from the teacher's memory when it
        keeps one (see the class docstring)."""
        draw = None
        if self._replay is not None:
            size = self._replay.config.batch_size or ctx.config.train.batch_size
            draw = self._replay.draw(ctx, size)
        x = batch.x if draw is None else torch.cat([batch.x, draw.x])
        y = batch.y if draw is None else torch.cat([batch.y, draw.y])
        t = batch.t if draw is None else torch.cat([batch.t, draw.t])
        features, logits = ctx.model.forward_features(x)
        st = self.options
        uses_previous = self._uses_previous(ctx) and self.previous is not None
        annealed = st.temperature_schedule == "annealing"
        stage = annealing(int(st.temperature), ctx.step, max(ctx.steps, 1),
                          st.annealing_share) if annealed else None
        if stage is not None and stage.phase == 2:
            return masked_ce(ctx, logits, y, t)
        loss = logits.new_zeros(()) if stage is not None else masked_ce(ctx, logits, y, t)
        T = distillation_temperature(st, ctx)
        terms = [("teacher", self.net, st.alpha, self._groups)]
        if uses_previous:
            assert self.previous is not None
            terms.append(("previous", self.previous.model, st.beta, self._old_groups))
        for key, net, weight, groups in terms:
            if weight <= 0:
                continue
            target = self._target(key, net, batch, draw)  # type: ignore[arg-type]
            if stage is not None:
                if groups:
                    units = torch.cat(groups)
                    loss = loss + weight * annealing_loss(logits[:, units], target[:, units],
                                                          stage.phi)
                continue
            student = features
            if key == "teacher" and self.projector is not None:
                student = self.projector(features)
            loss = loss + weight * self._kd(student, logits, target, groups, T)
        return loss

    def _kd(self, features: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
            groups: list[torch.Tensor], T: float) -> torch.Tensor:
        """c * KD between the student's outputs and ``target`` (c = T^2 when ``t2_scaling``
        and the loss uses the temperature)."""
        loss = LOSSES[self.options.distill_loss]
        if loss.on == "features":
            kd = loss.fn(features, target, T)
        elif not groups:
            return logits.new_zeros(())
        else:
            kd = grouped_distillation(loss, logits, target, groups, T, self.options.distill_reduction)
        if self.options.t2_scaling and loss.uses_temperature:
            kd = kd * T**2
        return kd

    # ------------------------------------------------------------------ after a task
    def after_task(self, ctx: TaskContext) -> None:
        """The student becomes its next task's previous self (when the beta term is used)."""
        self._cache = {}
        if self.SELF_DISTILLATION and self.options.beta > 0:
            self.previous = Teacher.copy_of(ctx)

    def teacher_evaluation(self, ctx: TaskContext) -> tuple[TaskContext, Strategy] | None:
        assert self.teacher_strategy is not None
        return self.teacher_context(ctx), self.teacher_strategy

    def teacher_model(self) -> nn.Module | None:
        return self.net

    def teacher_name(self) -> str:
        """The teacher's model name (result.json's ``costs.teacher.name``)."""
        assert self.teacher_config is not None
        return self.teacher_config.model.name

    def costs(self) -> dict[str, int]:
        """The teacher's strategy's memory (the student trains on it too)."""
        if self.teacher_strategy is None:
            return super().costs()
        return self.teacher_strategy.costs()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        assert self.net is not None and self.teacher_strategy is not None
        assert self.generator is not None
        return {
            "net": self.net.state_dict(),
            "teacher_strategy": self.teacher_strategy.state_dict(),
            "generator": self.generator.get_state(),
            "previous": self.previous.state_dict() if self.previous is not None else None,
            "projector": self.projector.state_dict() if self.projector is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Kept until :meth:`setup` has built the teacher's network, then restored."""
        self._pending = state


@dataclass(frozen=True)
class KDOptions(AnnealingOptions):
    """The options of :class:`KD`, beside those of every distillation term."""

    #: What the teacher and the student train on: the union of the tasks so far at every
    #: task (``incremental``) or once, at the last task (``final``), as ``joint``'s.
    mode: str = "incremental"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("strategy.mode", self.mode, MODES)


class KD(Compress):
    """Knowledge distillation as Hinton et al. 2015 (section 2), the offline reference of
    compression: the teacher trains jointly on every task so far (``joint``, ``strategy.mode``
    incremental or final), and the student on the same union with
    CE + alpha * c * KD(s, z_teacher) over every unit seen, c = T^2 when ``t2_scaling``. No
    term towards the student's previous self (``beta`` is not read). Its matrix is the
    ceiling of a small model distilled from a large one that saw all the data."""

    Options = KDOptions
    MEMORY = "none"
    TEACHER_STRATEGY = "joint"
    SELF_DISTILLATION = False

    def adjust_teacher(self, config: RunConfig) -> RunConfig:
        """The teacher trains with the student's ``mode``: it sees what the student sees."""
        options = {**config.strategy.options, "mode": self.options.mode}
        return replace(config, strategy=replace(config.strategy, options=options))

    def train_data(self, ctx: TaskContext) -> TrainData:
        """The union of tasks 0..t (nothing before the last task with ``mode = final``:
        :func:`~lifelong_kd.strategies.union.union_data`)."""
        return union_data(ctx, self.options.mode)
