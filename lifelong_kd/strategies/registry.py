"""The registry of strategy presets: the names users type, looked up here by every module
that needs one (the benchmark presets, the engine, ``compress`` building its teacher's
strategy) without importing the strategy classes themselves; the built-in presets are
registered by ``strategies/presets.py``, external families by their plugin module."""

from __future__ import annotations

import contextlib
import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import SCENARIOS, MemoryConfig, RunConfig, StrategyConfig
from ..data.facts import KNOWN_CLASS_COUNTS
from ..data.streams import stream_outputs
from ..errors import ConfigError
from .base import Strategy
from .memory import check_budget
from .options import Options, make_options, option_names


@dataclass(frozen=True)
class StrategyPreset:
    """A strategy name users type: a strategy class, the option values it fixes, what it
    is and where it comes from, and the scenarios it supports. ``kwargs_names`` are the
    arguments of an external strategy, which ``--set strategy.<arg>=...`` sets (they are
    routed to ``strategy.kwargs``); a built-in strategy has none."""

    name: str
    cls: type[Strategy]
    description: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    scenarios: tuple[str, ...] = SCENARIOS
    kwargs_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """A preset fixes options its class reads (or, dotted, other settings: ``memory.*``)."""
        own = option_names(self.cls.Options)
        bad = [k for k in self.options
               if "." not in k and k not in own and k not in self.kwargs_names]
        if bad:
            raise ValueError(f"preset `{self.name}` fixes `{bad[0]}`, which is not an option of "
                             f"{self.cls.__name__}; its options: {', '.join(own)}")

    def make_options(self, config: RunConfig) -> Options:
        """The options of this preset's class from ``config.strategy.options``, typed and
        checked (ConfigError)."""
        return make_options(self.cls.Options, config.strategy.options)

    def check(self, config: RunConfig) -> None:
        """Refuse, before any data is loaded, a value of an option of this preset's strategy
        (its ``Options`` class checks them, then its :meth:`~Strategy.check` what spans
        sections), a scenario this preset does not support and a memory too small for its
        policy (:func:`~lifelong_kd.strategies.memory.check_budget`: for a dataset of unknown
        class count, the engine checks it once the stream is built). Only the running
        strategy's checks run: an option another strategy reads has no effect on this run."""
        self.cls.check(config, self.make_options(config))
        mem = config.memory
        if (mem.size or mem.per_class) and mem.policy not in self.cls.POLICIES:
            raise ConfigError(f"strategy `{self.name}` cannot use `memory.policy` = "
                              f"{mem.policy!r}; valid: {', '.join(self.cls.POLICIES)}")
        if self.cls.MEMORY == "required" and not (mem.size or mem.per_class):
            raise ConfigError(f"strategy `{self.name}` keeps an exemplar memory: set `memory.size` "
                              "(examples in all) or `memory.per_class` (examples per class) > 0")
        n_classes = KNOWN_CLASS_COUNTS.get(config.data.dataset)
        if self.cls.MEMORY != "none" and n_classes is not None:  # else once the data is read
            check_budget(config, self.name, stream_outputs(config, n_classes))
        if config.stream.scenario not in self.scenarios:
            raise ConfigError(
                f"strategy `{self.name}` does not support the `{config.stream.scenario}` "
                f"scenario; it supports: {', '.join(self.scenarios)}"
            )


#: The presets by name: the built-in ones (``strategies/presets.py``), and those added with
#: :func:`register`.
PRESETS: dict[str, StrategyPreset] = {}

#: External families of strategies: name prefix -> the module that registers their resolver
#: (with :func:`register_family`) when it is imported.
FAMILIES: dict[str, str] = {"avalanche:": "lifelong_kd.interop.avalanche"}
_RESOLVERS: dict[str, Callable[[str], StrategyPreset]] = {}
#: The options class of every strategy of a family (registered with its resolver).
_FAMILY_OPTIONS: dict[str, type[Options]] = {}


def register(preset: StrategyPreset) -> StrategyPreset:
    """Add ``preset`` to :data:`PRESETS` (a ValueError if the name is taken); returns it."""
    if preset.name in PRESETS or any(preset.name.startswith(p) for p in FAMILIES):
        raise ValueError(f"a strategy called `{preset.name}` exists already")
    PRESETS[preset.name] = preset
    return preset


def register_family(prefix: str, resolve: Callable[[str], StrategyPreset],
                    options: type[Options] = Options) -> None:
    """Let ``resolve(name)`` give the preset of every name that starts with ``prefix`` (it
    raises ConfigError for a name it does not know); ``options``: the options class of
    every strategy of the family."""
    _RESOLVERS[prefix] = resolve
    _FAMILY_OPTIONS[prefix] = options


def _family_options() -> list[type[Options]]:
    """The options classes of the families whose module can be imported."""
    for prefix, module in FAMILIES.items():
        if prefix not in _RESOLVERS:
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(module)  # registers its resolver
    return list(_FAMILY_OPTIONS.values())


def strategy_preset(name: str) -> StrategyPreset:
    """The preset called ``name``; a ConfigError listing the valid names otherwise."""
    if name in PRESETS:
        return PRESETS[name]
    for prefix, module in FAMILIES.items():
        if name.startswith(prefix):
            if prefix not in _RESOLVERS:
                try:
                    importlib.import_module(module)  # registers its resolver
                except ModuleNotFoundError:
                    raise ConfigError(f"unknown strategy `{name}`: {prefix.rstrip(':')} strategies "
                                      "are not available in this version") from None
            return _RESOLVERS[prefix](name)
    close = difflib.get_close_matches(name, list(PRESETS), n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    raise ConfigError(f"unknown strategy `{name}`{hint}; valid strategies: {', '.join(PRESETS)}")


def build_strategy(config: StrategyConfig, memory: MemoryConfig | None = None) -> Strategy:
    """Instantiate the strategy of ``config.name`` with its options (``config.options``,
    typed and checked by its ``Options`` class) and the memory settings, which only a strategy
    that keeps a memory reads: a strategy class with ``MEMORY = "none"`` is built from its
    options alone, so one written as ``__init__(self, options)`` works."""
    cls = strategy_preset(config.name).cls
    options = make_options(cls.Options, config.options)
    return cls(options) if cls.MEMORY == "none" else cls(options, memory)


def options_classes() -> list[type[Options]]:
    """The options class of every registered strategy and family, each once."""
    return list(dict.fromkeys([*(p.cls.Options for p in PRESETS.values()), *_family_options()]))


def option_keys() -> list[str]:
    """``strategy.<key>`` for every option of a registered strategy (the keys ``--set`` and
    presets accept besides those of ``config.valid_keys``), each once."""
    names = dict.fromkeys(n for cls in options_classes() for n in option_names(cls))
    return [f"strategy.{n}" for n in names]
