"""The options of a strategy: a small frozen dataclass beside the strategy that reads them.

A strategy class names its options class (``Strategy.Options``); the options users set as
``strategy.<key>`` are the fields of the running strategy's class, typed and checked when the
class is built (``__post_init__``), so that a bad value is refused before any data is loaded
and only by the strategy that reads it. A key no running strategy reads has no effect on its
run and is no part of its identity: result.json records exactly the options of the running
strategy (:func:`option_values`).

This module holds the options every strategy reads (:class:`Options`: ``ce_scope``) and those
of every distillation term (:class:`DistillationOptions`); a method's own options subclass one
of them in its own file (``LwFOptions`` in lwf.py, ``EWCOptions`` in ewc.py, ...).

An option added to a strategy that has recorded runs is declared with
:func:`~lifelong_kd.config.added` (the one a configuration field added later uses) and a
default that reproduces how the strategy ran before: a run at that default records no value
for it, so the earlier runs keep their identity.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, TypeVar

from ..config import added, check_choice, check_positive, check_range, coerce
from ..errors import ConfigError
from ..losses import LOSSES, REDUCTIONS
from ..schedules import SCHEDULES, SPANS

#: ``strategy.ce_scope``: the outputs of the cross-entropy in class-il.
CE_SCOPES = ("seen", "current", "all")
#: ``strategy.teacher_input``: what the teacher sees.
TEACHER_INPUTS = ("same", "clean")

OptionsT = TypeVar("OptionsT", bound="Options")


@dataclass(frozen=True)
class Options:
    """The options every strategy reads."""

    #: ``class-il``: cross-entropy over every class ``seen`` so far, the ``current`` task's, or
    #: ``all`` the outputs, classes of later tasks included (Mammoth's SGD and Joint).
    ce_scope: str = "seen"

    def __post_init__(self) -> None:
        """Refuse a value out of its range (ConfigError naming ``strategy.<key>``, the value and
        what is valid); a subclass checks its own fields and calls this."""
        check_choice("strategy.ce_scope", self.ce_scope, CE_SCOPES)


@dataclass(frozen=True)
class DistillationOptions(Options):
    """The options of a distillation term: its weight, loss, temperature and temperature
    schedule, and what the teacher sees (``lwf`` and its family, ``compress``, ``kd``)."""

    #: Weight of the distillation term (``alpha_schedule = constant``).
    alpha: float = 1.0
    temperature: float = 2.0
    #: Multiply the distillation term by T^2 (Hinton et al. 2015, section 2).
    t2_scaling: bool = False
    distill_loss: str = "kl"
    #: How the per-group distillation terms combine (task-il: one group per earlier head):
    #: ``sum`` (Li & Hoiem 2016, section 3: one term per old task; Avalanche) or ``mean``
    #: (van de Ven & Tolias 2019).
    distill_reduction: str = "sum"
    #: ``same``: the teacher sees the student's (possibly augmented) batch; ``clean``.
    teacher_input: str = "same"
    #: How the temperature of the distillation terms moves during training (``schedules.py``):
    #: ``constant`` (``temperature`` throughout), ``linear``, ``cosine`` or ``exponential``
    #: from ``temperature`` to ``temperature_end``, or ``annealing`` (Annealing-KD, Jafari et
    #: al. 2021: ``temperature`` is tau_max; ``kd`` and ``compress`` only).
    temperature_schedule: str = "constant"
    temperature_end: float = 1.0
    #: The schedule runs over each ``task``'s steps, or once across the whole ``stream``.
    schedule_span: str = "task"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("strategy.alpha", self.alpha, strict=False)
        check_positive("strategy.temperature", self.temperature)
        check_positive("strategy.temperature_end", self.temperature_end)
        check_choice("strategy.temperature_schedule", self.temperature_schedule, SCHEDULES)
        check_choice("strategy.schedule_span", self.schedule_span, SPANS)
        check_choice("strategy.distill_loss", self.distill_loss, sorted(LOSSES))
        check_choice("strategy.distill_reduction", self.distill_reduction, REDUCTIONS)
        check_choice("strategy.teacher_input", self.teacher_input, TEACHER_INPUTS)


@dataclass(frozen=True)
class AnnealingOptions(DistillationOptions):
    """Distillation from a teacher that knows the current task, which may follow Annealing-KD
    (``kd``, ``compress``)."""

    #: ``annealing``: share of each task's steps in phase 1 (logit matching), the rest being
    #: phase 2 (cross-entropy).
    annealing_share: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("strategy.annealing_share", self.annealing_share, 0, 1, low_open=True)
        if (self.temperature_schedule == "annealing"
                and float(self.temperature) != int(self.temperature)):
            raise ConfigError(f"`strategy.temperature` = {self.temperature} is tau_max of "
                                "Annealing-KD: a whole number >= 1")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def option_names(cls: type[Options]) -> tuple[str, ...]:
    """The options of the options class ``cls`` (its fields), in declaration order."""
    return tuple(f.name for f in fields(cls))


def option_defaults(cls: type[Options]) -> dict[str, Any]:
    """Each option of ``cls`` with its default, as plain data (tuples as lists)."""
    out = {}
    for f in fields(cls):
        value = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def make_options(cls: type[OptionsT], values: Mapping[str, Any]) -> OptionsT:
    """The options of ``cls`` from ``values`` (``{"alpha": "0.5", ...}``, from TOML or
    ``--set``): each value of one of its fields coerced to the field's type, the others left
    at their defaults, the values checked (ConfigError). Keys that are not its options are
    ignored: they belong to other strategies."""
    hints = _hints(cls)
    names = set(option_names(cls))
    return cls(**{k: coerce(f"strategy.{k}", v, hints[k]) for k, v in values.items()
                  if k in names})


def option_values(options: Options) -> dict[str, Any]:
    """The options as the run's configuration records them (``strategy.<key>`` in
    result.json, and so in its identity): every field, as plain data, but an option declared
    with :func:`added` at its default."""
    values = asdict(options)
    for f in fields(options):
        if f.metadata.get("added") and values[f.name] == f.default:
            del values[f.name]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


__all__ = ["CE_SCOPES", "TEACHER_INPUTS", "AnnealingOptions", "DistillationOptions", "Options",
           "added", "make_options", "option_defaults", "option_names", "option_values"]
