"""Continual-learning strategies: the protocol (``base.py``), one file per method, the teacher
(``teacher.py``) and the named presets (``presets.py``). See ``base.py`` for what the engine
calls and when."""

from .base import Batch, ExternalLoop, Phase, Strategy, TaskContext, TrainData
from .ewc import EWC, diagonal_fisher
from .joint import Joint
from .lwf import ALPHA_SCHEDULES, LwF, schedule_weights
from .presets import PRESETS, StrategyPreset, build_strategy, register, strategy_preset
from .teacher import Teacher

__all__ = ["ALPHA_SCHEDULES", "EWC", "PRESETS", "Batch", "Joint", "LwF", "ExternalLoop", "Phase",
           "Strategy", "StrategyPreset", "TaskContext", "Teacher", "TrainData", "build_strategy",
           "diagonal_fisher", "register", "schedule_weights", "strategy_preset"]
