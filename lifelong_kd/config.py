"""Run configuration as plain data: frozen dataclasses, coercion, and the checks that need no registry.

A run is described by one :class:`RunConfig` of frozen dataclasses (one per section: ``data``,
``stream``, ``model``, ``train``, ``strategy``). This module turns TOML values and ``--set``
strings into the fields' types (:func:`parse_set`, :func:`from_flat`), names every valid dotted
key (:func:`valid_keys`), and checks the ranges that need no registry (:func:`check_ranges`).

It imports nothing of the package but ``errors.py`` (the errors a user can fix, which imports
nothing at all; an import-linter contract in pyproject.toml keeps both so), so every other
module may import it. Presets (TOML files, per-strategy overrides, suites, ``--set``) are
resolved in ``presets.py``, which also asks each registry (datasets, models, losses,
strategies, streams) to check the names and options it owns.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

import tomllib

from .errors import ConfigError

SCENARIOS = ("task-il", "class-il", "domain-il")
STREAM_KINDS = ("permuted", "split", "rotated")
HEADS = ("multi", "masked")
INITS = ("default", "xavier")
OPTIMIZERS = ("sgd", "adam")
#: ``memory.policy``: how the exemplar memory chooses what it keeps (``strategies/memory.py``).
MEMORY_POLICIES = ("reservoir", "class_balanced", "task_balanced", "herding", "random")


def added(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A field added after results were first recorded: its default must reproduce how runs
    behaved before it; a run at that default hashes as if the key were absent, so earlier runs
    keep their identity (:data:`ADDED_KEYS`)."""
    return field(default=default, default_factory=default_factory,  # type: ignore[call-overload]
                 metadata={"added": True})


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from."""

    dataset: str = "mnist"
    #: Keep only this many training examples (a seeded random subset, the same for every
    #: seed and task); 0 keeps all. For quick tests and smoke runs.
    train_subset: int = 0
    #: Keep only this many test examples; 0 keeps all.
    test_subset: int = 0
    #: Folder of an ``imagefolder`` dataset (with ``train/`` and ``test/`` inside); relative
    #: paths are taken from the data directory.
    path: str = ""
    #: Standardise inputs with the dataset's per-channel mean and std: (x / 255 - mean) / std.
    #: ``false`` feeds x / 255 in [0, 1], as Mammoth's and van de Ven's code do.
    normalize: bool = True


@dataclass(frozen=True)
class StreamConfig:
    """How the dataset is cut into a sequence of tasks, and what is known at test time."""

    kind: str = "permuted"
    scenario: str = "domain-il"
    n_tasks: int = 10
    #: ``permuted``: permute the pixels of task 0 too (default: task 0 is the original data).
    permute_first: bool = False
    #: ``split``: classes per task; 0 divides all classes evenly over ``n_tasks``.
    classes_per_task: int = 0
    #: ``split``: ``natural``, ``random`` (seeded), or an explicit list of class indices.
    class_order: str | tuple[int, ...] = "natural"
    #: ``rotated``: one angle (degrees) per task; empty draws them (seeded) from [0, 180).
    angles: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """The network. Output units are laid out by the scenario (see ``streams.py``)."""

    name: str = "mlp"
    hidden: tuple[int, ...] = (400, 400)
    #: ``task-il`` only: ``multi`` (one head per task) or ``masked`` (one shared output whose
    #: logits are masked to the task's classes).
    head: str = "multi"
    #: Width of the reduced ResNet-18 (GEM, Lopez-Paz & Ranzato 2017 use nf = 20).
    nf: int = 20
    #: Channels of the ConvNet's conv layers.
    channels: tuple[int, ...] = (32, 64)
    #: Initial weights: ``default`` (PyTorch's) or ``xavier`` (every ``nn.Linear`` gets
    #: Xavier-uniform weights and zero biases, as Mammoth's backbones; convolutions keep
    #: PyTorch's).
    init: str = "default"


@dataclass(frozen=True)
class TrainConfig:
    """The optimiser and how long each task is trained."""

    epochs: int = 1
    #: Optimiser steps per task; when > 0 it replaces ``epochs``.
    iterations: int = 0
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: Adam's betas.
    betas: tuple[float, ...] = (0.9, 0.999)
    #: Start every task with a fresh optimiser (its momentum/Adam state reset).
    reset_optimizer: bool = True
    #: Random crop with 4-pixel padding and horizontal flip, on whole batches.
    augment: bool = False
    #: Test examples per forward pass when evaluating (results do not depend on it). 256 keeps
    #: a ConvNet's activations in the CPU caches, which on CPU is faster than larger batches.
    eval_batch_size: int = 256
    #: ``cpu``, ``cuda``, ``cuda:1``, ...
    device: str = "cpu"
    #: Compile the model's backbone and head with ``torch.compile`` (compiling happens in the
    #: run's timed work: the first evaluation and the first steps); compiled kernels round
    #: differently, so a compiled run's numbers differ in their last digits from an eager one's.
    compile: bool = added(False)
    #: Continual evaluation (De Lange et al. 2023): every ``eval_every`` optimiser steps (0: off)
    #: the accuracy of every task seen so far on a fixed seeded subset of its test set, to
    #: ``curves.csv``; ``eval_subset`` test examples per task (0: all).
    eval_every: int = added(0)
    eval_subset: int = added(1000)


@dataclass(frozen=True)
class StrategyConfig:
    """The strategy by name and the values of its options (``strategy.<key>``). Each strategy
    declares its options beside it (its ``Options`` dataclass, ``strategies/``): once a run's
    configuration is resolved (``presets.build_config``), ``options`` holds every option of
    the running strategy and nothing else, as plain data."""

    name: str = "naive"
    #: The running strategy's options by name (before resolution: the values given).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryConfig:
    """The exemplar memory of replay and distillation strategies (``strategies/memory.py``):
    a budget of examples kept from earlier tasks, and how they are chosen and drawn."""

    #: Examples kept in all (0: no memory).
    size: int = added(0)
    #: Examples kept per class instead (0: use ``size``); the memory grows with the classes.
    per_class: int = added(0)
    #: ``reservoir`` (every example seen has the same chance; updated at every step),
    #: ``class_balanced`` / ``task_balanced`` (an equal share per class / task seen, random
    #: inside it), ``herding`` (per class, nearest the class mean in feature space),
    #: ``random`` (per class, drawn anew from memory and the new task at every task's end).
    policy: str = added("reservoir")
    #: Examples drawn from memory per step (0: ``train.batch_size``).
    batch_size: int = added(0)


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher of ``kd`` and ``compress`` (``strategies/compress.py``): a network of its
    own, trained along the stream with a strategy of its own, distilled into the run's model
    (the student). Every architecture key left at its default (empty, or 0) takes the
    student's value (``model.*``), so by default the teacher has the student's architecture.
    LwF-style strategies ignore this section: their teacher is the previous student."""

    name: str = added("")
    hidden: tuple[int, ...] = added(())
    head: str = added("")
    nf: int = added(0)
    channels: tuple[int, ...] = added(())
    init: str = added("")
    #: ``compress``: the strategy preset that trains the teacher on each task (``naive``,
    #: ``lwf``, ``er``, ``der``, ``derpp``, ...); it keeps the run's ``memory``, if any.
    strategy: str = added("naive")
    #: Strategy options of the teacher's strategy, over its preset's
    #: (``--set teacher.settings={alpha=0.5}``).
    settings: dict[str, Any] = added(default_factory=dict)


#: The architecture keys of ``teacher`` (those of ``model``).
TEACHER_MODEL_KEYS = ("name", "hidden", "head", "nf", "channels", "init")


def teacher_given(teacher: Any) -> dict[str, Any]:
    """The architecture keys a teacher section sets (not left empty, or 0), from the
    dataclass or its plain-data form in result.json: what replaces the student's."""
    values = teacher if isinstance(teacher, dict) else asdict(teacher)
    return {k: values[k] for k in TEACHER_MODEL_KEYS
            if k in values and values[k] not in ("", (), [], 0, None)}


def teacher_model(config: RunConfig) -> ModelConfig:
    """The teacher's :class:`ModelConfig`: ``teacher.*`` where set, the student's elsewhere."""
    return replace(config.model, **teacher_given(config.teacher))


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result."""

    benchmark: str = "custom"
    description: str = ""
    seed: int = 0
    #: Strategies that ``compare`` runs when ``--strategies`` is not given.
    strategies: tuple[str, ...] = ("naive", "lwf")
    #: Seeds that ``compare`` runs when ``--seeds`` is not given.
    seeds: tuple[int, ...] = (0, 1, 2)
    data: DataConfig = field(default_factory=DataConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (tuples become lists), as stored in result.json:
        the strategy's options are keys of the ``strategy`` table beside its ``name``."""
        out = _plain(asdict(self))
        strategy = out["strategy"]
        out["strategy"] = {"name": strategy["name"], **strategy["options"]}
        return out


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "stream": StreamConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "strategy": StrategyConfig,
    "memory": MemoryConfig,
    "teacher": TeacherConfig,
}
TOP_LEVEL = ("benchmark", "description", "seed", "strategies", "seeds")
#: Sections every run of one report shares, with the benchmark and the data fingerprint: the
#: same examples cut into the same tasks. The other sections (model, train, strategy, ...) are
#: a variant's own: a preset's per-strategy overrides, or a grid's settings.
SHARED_SECTIONS = ("data", "stream")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: Keys added after results were first recorded (fields declared with :func:`added`), with
#: the default that reproduces how runs behaved before them: a configuration holding that
#: default hashes as if the key were absent, so earlier runs keep their identity
#: (``results.identity_settings``; a strategy's options: ``strategies/options.py``).
ADDED_KEYS: dict[str, Any] = {
    f"{section}.{f.name}": _plain(f.default_factory() if f.default is MISSING  # type: ignore[misc]
                                  else f.default)
    for section, cls in SECTIONS.items() for f in fields(cls) if f.metadata.get("added")
}


def _normal(text: str) -> str:
    """``text`` without case and punctuation: ``Fashion_MNIST`` and ``fashion-mnist`` alike."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def closest_name(
    value: str, valid: Sequence[str], aliases: dict[str, str] | None = None
) -> str | None:
    """The valid name that ``value`` most likely means (for a "did you mean" hint), or None.

    In order: the valid name equal to ``value`` but for case and punctuation (``Task-IL`` ->
    ``task-il``); the target of an alias compared the same way (``fmnist`` ->
    ``fashion-mnist``); the closest of the normalised names by ``difflib`` (ratio >= 0.6);
    the closest of the names as written.
    """
    key = _normal(value)
    by_normal = {_normal(v): v for v in valid}
    if key in by_normal:
        return by_normal[key]
    for alias, target in (aliases or {}).items():
        if _normal(alias) == key and target in valid:
            return target
    close = difflib.get_close_matches(key, [k for k in by_normal if k], n=1)
    if close:
        return by_normal[close[0]]
    close = difflib.get_close_matches(value, list(valid), n=1)
    return close[0] if close else None


def valid_keys() -> list[str]:
    """Every dotted key of this module's sections that ``--set`` and presets accept: of the
    strategy section, ``strategy.name`` (its options are the strategies' own:
    ``presets.valid_keys`` adds them)."""
    return list(_valid_keys())


@functools.cache
def _valid_keys() -> tuple[str, ...]:
    keys = list(TOP_LEVEL)
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in fields(cls) if f.name != "options"]
    return tuple(keys)


def unknown_key(key: str, valid: Sequence[str] | None = None) -> ConfigError:
    """The error for a dotted key that is not one of ``valid`` (default :func:`valid_keys`),
    with the closest one."""
    valid = list(valid) if valid is not None else valid_keys()
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return ConfigError(f"unknown configuration key `{key}`{hint}; valid keys: {', '.join(valid)}")


def _type_name(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ')}s"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return str(tp)


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from TOML or a ``--set`` string) to the field type ``tp``; a
    ConfigError naming ``key``, the value and the type otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(key, value, tp)
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"`{key}` = {value!r} is not a table (for example {{mem_size = 500}})")
    if origin is tuple:
        return _coerce_tuple(key, value, tp)
    if tp is bool:
        return _coerce_bool(key, value)
    if tp is int:
        return _coerce_int(key, value)
    if tp is float:
        return _coerce_float(key, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"`{key}` = {value!r} is not a string")
    raise ConfigError(f"`{key}`: unsupported type {tp}")  # pragma: no cover


def _coerce_union(key: str, value: Any, tp: Any) -> Any:
    # a str member only takes strings that no other member can parse
    for member in sorted(typing.get_args(tp), key=lambda t: t is str):
        with contextlib.suppress(ConfigError):
            return coerce(key, value, member)
    raise ConfigError(f"`{key}` = {value!r} is not {_type_name(tp)}")


def _coerce_tuple(key: str, value: Any, tp: Any) -> tuple[Any, ...]:
    """A list from TOML, one number, or ``--set`` text such as ``[400, 400]`` or ``400,400``."""
    item = typing.get_args(tp)[0]
    if isinstance(value, str):
        text = value.strip().strip("[]()").strip()
        value = [v for v in (p.strip() for p in text.split(",")) if v] if text else []
        value = [_parse_scalar(v) for v in value]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"`{key}` = {value!r} is not {_type_name(tp)}")
    return tuple(coerce(key, v, item) for v in value)


def _coerce_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"`{key}` = {value!r} is not true or false")


def _coerce_int(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    raise ConfigError(f"`{key}` = {value!r} is not an integer")


def _coerce_float(key: str, value: Any) -> float:
    """A finite number (an integer too; not a boolean)."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if number is None:
        raise ConfigError(f"`{key}` = {value!r} is not a number")
    if not math.isfinite(number):
        raise ConfigError(f"`{key}` = {value!r} is not a finite number")
    return number


def _parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value as a TOML value; anything that is not one is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return text


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["train.lr=0.1", ...]`` into ``{"train.lr": 0.1, ...}`` (values not yet typed)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r} (for example train.lr=0.05)")
        out[key] = _parse_scalar(value.strip())
    return out


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class (it compiles every annotation
    anew at each call: most of the time of planning a grid of many runs)."""
    return typing.get_type_hints(cls)


def from_flat(flat: dict[str, Any]) -> RunConfig:
    """The :class:`RunConfig` of flat dotted keys (``{"train.lr": 0.1}``), each value coerced to
    its field's type; keys left out keep their defaults."""
    hints = _type_hints(RunConfig)
    top: dict[str, Any] = {}
    per_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        section, _, sub = key.partition(".")
        if section == "strategy" and sub not in ("", "name", "options"):
            # a strategy's option: typed and checked by the strategy's options class
            per_section["strategy"].setdefault("options", {})[sub] = value
        elif section in SECTIONS and sub:
            cls = SECTIONS[section]
            tp = _type_hints(cls)[sub]
            per_section[section][sub] = coerce(key, value, tp)
        else:
            top[key] = coerce(key, value, hints[key])
    return RunConfig(**top, **{s: SECTIONS[s](**v) for s, v in per_section.items()})


def check_choice(
    key: str, value: str, valid: tuple[str, ...] | list[str], aliases: dict[str, str] | None = None
) -> None:
    """``value`` must be one of ``valid``; the error suggests the closest one (case and
    punctuation ignored, ``aliases`` consulted) and lists them all."""
    if value not in valid:
        close = closest_name(value, list(valid), aliases)
        hint = f" (did you mean `{close}`?)" if close else ""
        raise ConfigError(f"`{key}` = {value!r} is not valid{hint}; valid: {', '.join(valid)}")


def check_range(
    key: str, value: float, low: float | None = None, high: float | None = None, *,
    low_open: bool = False, high_open: bool = False, note: str = "",
) -> None:
    """``value`` must lie between ``low`` and ``high`` (each included unless ``*_open``; None:
    no bound): the one wording of every "out of range" error, ``note`` saying what the value
    is, as ```strategy.validation` = 0.0 is out of range; it must be in (0, 1): the share ...``.
    """
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not (below or above):
        return
    if low is not None and high is not None:
        rule = f"it must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        rule = f"it must be {'>' if low_open else '>='} {low}"
    else:
        rule = f"it must be {'<' if high_open else 'at most'} {high}"
    raise ConfigError(f"`{key}` = {value!r} is out of range; {rule}{note}")


def check_positive(key: str, value: float, strict: bool = True) -> None:
    """``value`` must be > 0 (``strict``) or >= 0."""
    check_range(key, value, 0, low_open=strict)


def _check_benchmark_name(name: str) -> None:
    """The benchmark's name names output folders (``runs/<benchmark>/...``): it must be one
    folder name, not a path that leads elsewhere."""
    if (not name.strip() or name in (".", "..") or any(c in name for c in "/\\")
            or any(ord(c) < 32 for c in name)):
        raise ConfigError(f"`benchmark` = {name!r} is not valid; it names the output folder "
                          "runs/<benchmark>/, so it must be a non-empty name without / or \\")



def check_ranges(config: RunConfig) -> None:
    """Check every value whose valid range needs no registry: counts, sizes, rates, the fixed
    choices of this module (scenario, stream kind, head, initialisation, optimiser), section by
    section. The names and options a registry owns (datasets, models, losses, strategies,
    streams) are checked by ``presets.validate``."""
    _check_top_level(config)
    _check_data(config.data)
    _check_stream(config.stream)
    _check_network("model", config.model)
    check_positive("model.nf", config.model.nf)
    _check_train(config.train)
    _check_memory(config.memory)
    _check_network("teacher", config.teacher)


def _check_top_level(config: RunConfig) -> None:
    """The benchmark's name, the seeds, each strategy and seed named once."""
    _check_benchmark_name(config.benchmark)
    if not 0 <= config.seed < 2**63:
        raise ConfigError(f"`seed` = {config.seed} is out of range; it must be in [0, 2^63)")
    for seed in config.seeds:
        if not 0 <= seed < 2**63:
            raise ConfigError(f"`seeds` holds {seed}; seeds must be in [0, 2^63)")
    for key, values in (("seeds", config.seeds), ("strategies", config.strategies)):
        twice = [v for i, v in enumerate(values) if v in values[:i]]
        if twice:  # compare would run it twice into one folder and count it twice
            raise ConfigError(f"`{key}` = {list(values)} holds `{twice[0]}` twice; name each once")


def _check_data(d: DataConfig) -> None:
    check_positive("data.train_subset", d.train_subset, strict=False)
    check_positive("data.test_subset", d.test_subset, strict=False)
    if d.dataset == "imagefolder" and not d.path:
        raise ConfigError("`data.dataset` = 'imagefolder' needs `data.path` (a folder with train/ and test/)")


def _check_stream(s: StreamConfig) -> None:
    check_range("stream.n_tasks", s.n_tasks, high=1000)
    check_range("stream.n_tasks", s.n_tasks, 1)
    check_choice("stream.kind", s.kind, STREAM_KINDS)
    check_choice("stream.scenario", s.scenario, SCENARIOS)
    check_positive("stream.classes_per_task", s.classes_per_task, strict=False)
    if isinstance(s.class_order, str):
        check_choice("stream.class_order", s.class_order, ("natural", "random"))
    if s.kind == "rotated" and s.angles and len(s.angles) != s.n_tasks:
        raise ConfigError(
            f"`stream.angles` has {len(s.angles)} angles but `stream.n_tasks` = {s.n_tasks}; "
            "give one angle per task, or none to draw them"
        )


def _check_network(section: str, m: ModelConfig | TeacherConfig) -> None:
    """The widths and depths of ``model`` or ``teacher`` (whose empty or 0 keys take the
    student's), and their head and initialisation where set."""
    for key, value, limit in ((f"{section}.hidden", max(m.hidden, default=0), 16_384),
                              (f"{section}.channels", max(m.channels, default=0), 2_048),
                              (f"{section}.nf", m.nf, 512),
                              (f"{section}.hidden (layers)", len(m.hidden), 64),
                              (f"{section}.channels (layers)", len(m.channels), 8)):
        check_range(key, value, high=limit)
    if section == "teacher":
        if any(h < 1 for h in m.hidden) or any(c < 1 for c in m.channels) or m.nf < 0:
            raise ConfigError(f"`teacher.hidden` = {list(m.hidden)}, `teacher.channels` = "
                              f"{list(m.channels)} and `teacher.nf` = {m.nf} must hold widths "
                              ">= 1 (empty, or nf 0: the student's)")
    else:
        if any(h < 1 for h in m.hidden):
            raise ConfigError(f"`model.hidden` = {list(m.hidden)} must hold widths >= 1")
        if any(c < 1 for c in m.channels) or not m.channels:
            raise ConfigError(f"`model.channels` = {list(m.channels)} must hold one or more "
                              "widths >= 1")
    if m.head or section == "model":
        check_choice(f"{section}.head", m.head, HEADS)
    if m.init or section == "model":
        check_choice(f"{section}.init", m.init, INITS)


def _check_train(train: TrainConfig) -> None:
    for key, value, limit in (("train.epochs", train.epochs, 100_000),
                              ("train.iterations", train.iterations, 10_000_000),
                              ("train.batch_size", train.batch_size, 1_000_000),
                              ("train.eval_batch_size", train.eval_batch_size, 1_000_000),
                              ("train.eval_every", train.eval_every, 10_000_000),
                              ("train.eval_subset", train.eval_subset, 10_000_000)):
        check_range(key, value, high=limit)
    check_positive("train.epochs", train.epochs, strict=train.iterations == 0)
    check_positive("train.iterations", train.iterations, strict=False)
    check_positive("train.batch_size", train.batch_size)
    check_positive("train.eval_batch_size", train.eval_batch_size)
    check_positive("train.eval_every", train.eval_every, strict=False)
    check_positive("train.eval_subset", train.eval_subset, strict=False)
    check_positive("train.lr", train.lr)
    check_choice("train.optimizer", train.optimizer, OPTIMIZERS)
    check_range("train.momentum", train.momentum, 0, 1, high_open=True)
    check_positive("train.weight_decay", train.weight_decay, strict=False)
    if len(train.betas) != 2 or not all(0 <= b < 1 for b in train.betas):
        raise ConfigError(f"`train.betas` = {list(train.betas)} must be two numbers in [0, 1)")


def _check_memory(mem: MemoryConfig) -> None:
    for key, value, limit in (("memory.size", mem.size, 10_000_000),
                              ("memory.per_class", mem.per_class, 1_000_000),
                              ("memory.batch_size", mem.batch_size, 1_000_000)):
        check_positive(key, value, strict=False)
        check_range(key, value, high=limit)
    if mem.size and mem.per_class:
        raise ConfigError(f"`memory.size` = {mem.size} and `memory.per_class` = {mem.per_class} "
                          "are both set; give the budget one way (the other 0)")
    check_choice("memory.policy", mem.policy, MEMORY_POLICIES)
    if mem.per_class and mem.policy in ("reservoir", "task_balanced"):
        raise ConfigError(f"`memory.per_class` = {mem.per_class} needs a per-class policy; "
                          f"`memory.policy` = {mem.policy!r} is not one (valid: class_balanced, "
                          "herding, random)")

