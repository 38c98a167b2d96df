"""Run configuration: frozen dataclasses, TOML presets, ``--set`` overrides, validation.

A run is described by one :class:`RunConfig`. It is resolved from, in increasing priority:

1. the dataclass defaults below,
2. the options of the strategy preset (``lwf``, ``lwf-vdv2019``, ...; see ``strategies.py``),
3. the benchmark preset (a TOML file in ``benchmarks/`` or any path),
4. the preset's settings for this strategy only (``[overrides.<strategy>.<section>]`` tables,
   for protocols that train each strategy with its own hyperparameters),
5. ``--set section.key=value`` overrides from the command line.

Every key is checked: an unknown key is rejected with the closest valid one, a value of the
wrong type or out of range is rejected naming the key, the value and what would be valid.
All of this happens before any data is loaded.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from .errors import ConfigError


def _benchmark_dir() -> Path:
    """The preset folder: ``benchmarks/`` of a source checkout, or the installed copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "benchmarks", here / "benchmarks"):
        if candidate.is_dir():
            return candidate
    return here.parent / "benchmarks"


BENCHMARK_DIR = _benchmark_dir()

SCENARIOS = ("task-il", "class-il", "domain-il")
STREAM_KINDS = ("permuted", "split", "rotated")
HEADS = ("multi", "masked")
INITS = ("default", "xavier")
OPTIMIZERS = ("sgd", "adam")


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


@dataclass(frozen=True)
class StrategyConfig:
    """The strategy and its options (see ``strategies.py``); options a strategy does not use
    have no effect on it."""

    name: str = "naive"
    #: Weight of the distillation term (``alpha_schedule = constant``).
    alpha: float = 1.0
    temperature: float = 2.0
    #: Multiply the distillation term by T^2 (Hinton et al. 2015, section 2).
    t2_scaling: bool = False
    distill_loss: str = "kl"
    #: ``old``: distil only the outputs of classes/heads seen before this task; ``all``: those
    #: and the current task's; ``padded``: the student's softmax over old and current outputs
    #: against the teacher's over the old ones, zero on the current (van de Ven & Tolias 2019).
    logits: str = "old"
    #: How the per-group distillation terms combine (task-il: one group per earlier head):
    #: ``sum`` (Li & Hoiem 2016, section 3: one term per old task; Avalanche) or ``mean``
    #: (van de Ven & Tolias 2019).
    distill_reduction: str = "sum"
    #: ``same``: the teacher sees the student's (possibly augmented) batch; ``clean``.
    teacher_input: str = "same"
    alpha_schedule: str = "constant"
    #: ``class-il``: cross-entropy over every class ``seen`` so far, the ``current`` task's, or
    #: ``all`` the outputs, classes of later tasks included (Mammoth's SGD and Joint).
    ce_scope: str = "seen"
    #: Epochs training only the new task's head before the whole network.
    warmup_epochs: int = 0
    #: ``joint``: ``incremental`` (train on all data so far at every task) or ``final``.
    mode: str = "incremental"
    #: ``ewc``: weight of the quadratic penalty.
    ewc_lambda: float = 100.0
    #: ``ewc``: online EWC (Schwarz et al. 2018) with decay ``ewc_gamma``.
    ewc_online: bool = False
    ewc_gamma: float = 1.0
    #: ``ewc``: training examples used to estimate the Fisher information (0: all).
    fisher_samples: int = 1000
    #: ``ewc``: ``true`` Fisher (expectation over the model's own predictive distribution) or
    #: ``empirical`` (the squared gradients of the examples' labels).
    ewc_fisher: str = "true"
    #: Keyword arguments of an external strategy (``avalanche:<Name>``, see
    #: ``interop/avalanche.py``), as a table: ``--set strategy.kwargs={mem_size=500}``, or
    #: ``--set strategy.mem_size=500`` for one of that strategy's own arguments. The
    #: built-in strategies ignore it.
    kwargs: dict[str, Any] = field(default_factory=dict)


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

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (tuples become lists), as stored in result.json."""
        return _plain(asdict(self))


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "stream": StreamConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "strategy": StrategyConfig,
}
TOP_LEVEL = ("benchmark", "description", "seed", "strategies", "seeds")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
    """Every dotted key that ``--set`` and presets accept."""
    keys = list(TOP_LEVEL)
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in fields(cls)]
    return keys


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return ConfigError(
        f"unknown configuration key `{key}`{hint}; valid keys: {', '.join(valid_keys())}"
    )


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


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from TOML or a ``--set`` string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        # a str member only takes strings that no other member can parse
        for member in sorted(typing.get_args(tp), key=lambda t: t is str):
            try:
                return _coerce(key, value, member)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"`{key}` = {value!r} is not {_type_name(tp)}")
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"`{key}` = {value!r} is not a table (for example {{mem_size = 500}})")
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, str):
            text = value.strip().strip("[]()").strip()
            value = [v for v in (p.strip() for p in text.split(",")) if v] if text else []
            value = [_parse_scalar(v) for v in value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"`{key}` = {value!r} is not {_type_name(tp)}")
        return tuple(_coerce(key, v, item) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"`{key}` = {value!r} is not true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"`{key}` = {value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"`{key}` = {value!r} is not an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"`{key}` = {value!r} is not a number")
        number: float | None = None
        if isinstance(value, (int, float)):
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
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"`{key}` = {value!r} is not a string")
    raise ConfigError(f"`{key}`: unsupported type {tp}")  # pragma: no cover


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


def _flatten(table: dict[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: `{key}` must be a table ([{key}])")
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def preset_names() -> list[str]:
    """Names of the benchmark presets shipped with the package."""
    return sorted(p.stem for p in BENCHMARK_DIR.glob("*.toml"))


def _load_table(benchmark: str) -> tuple[str, Path, dict[str, Any]]:
    """Find a benchmark preset by name or path and parse it: (name, path, TOML table)."""
    path = Path(benchmark)
    if benchmark.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"benchmark file {benchmark} does not exist")
        name = path.stem
    else:
        path = BENCHMARK_DIR / f"{benchmark}.toml"
        if not path.is_file():
            close = closest_name(benchmark, preset_names())
            hint = f" (did you mean `{close}`?)" if close else ""
            raise ConfigError(
                f"unknown benchmark `{benchmark}`{hint}; valid benchmarks: "
                f"{', '.join(preset_names())}, or the path of a TOML file"
            )
        name = benchmark
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"benchmark file {path} is not valid TOML: {exc}") from None
    return name, path, table


def suite_members(benchmark: str) -> list[str] | None:
    """The benchmarks of a suite preset (a TOML file with a ``benchmarks`` list), else None.

    ``compare`` runs every member into its own sub-folder; ``run`` takes single benchmarks.
    Every member is checked here, before anything runs: it must be a single benchmark (a
    preset name or a TOML file, not itself a suite), named once.
    """
    _, path, table = _load_table(benchmark)
    members = table.get("benchmarks")
    if members is None:
        return None
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ConfigError(f"{path}: `benchmarks` must be a non-empty list of benchmark names")
    singles = ", ".join(single_presets())
    seen: set[str] = set()
    for member in members:
        if member in seen:
            raise ConfigError(f"{path}: `benchmarks` names `{member}` twice; name each "
                              "benchmark once")
        seen.add(member)
        try:
            _, _, member_table = _load_table(member)
        except ConfigError as exc:
            text = str(exc).split("; valid benchmarks:")[0]
            raise ConfigError(f"{path}: member `{member}` of `benchmarks`: {text}; valid members: "
                              f"{singles}, or the path of a TOML file") from None
        if "benchmarks" in member_table:
            raise ConfigError(f"{path}: member `{member}` of `benchmarks` is itself a suite; a "
                              f"suite's members are single benchmarks: {singles}, or the path "
                              "of a TOML file")
    return members


def single_presets() -> list[str]:
    """The shipped presets that are single benchmarks (not suites)."""
    names = []
    for name in preset_names():
        try:
            table = tomllib.loads((BENCHMARK_DIR / f"{name}.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        if "benchmarks" not in table:
            names.append(name)
    return names


def suite_description(benchmark: str) -> str:
    """The ``description`` of a preset (empty when it has none)."""
    return str(_load_table(benchmark)[2].get("description", ""))


def _read(benchmark: str) -> tuple[str, Path, dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a benchmark preset once: its name, path, flat keys and per-strategy overrides.

    In TOML, ``[overrides.lwf-mammoth.train]`` with ``weight_decay = 0.0005`` sets
    ``train.weight_decay`` for the ``lwf-mammoth`` runs only (Mammoth's ``best_args`` give
    each method its own hyperparameters). Only configuration sections may be overridden.
    """
    from .strategies import strategy_preset  # light import: no torch at module level

    name, path, table = _load_table(benchmark)
    if "benchmarks" in table:
        members = ", ".join(map(str, table["benchmarks"]))
        raise ConfigError(
            f"`{name}` is a suite of benchmarks ({members}): `lifelong-kd compare {name}` runs "
            "them all; `run` takes one of them"
        )
    raw = table.get("overrides", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: `overrides` must be a table ([overrides.<strategy>.<section>])")
    overrides: dict[str, dict[str, Any]] = {}
    for strategy, sections in raw.items():
        strategy_preset(strategy)  # an unknown strategy name fails here, naming the valid ones
        if not isinstance(sections, dict) or not all(k in SECTIONS for k in sections):
            raise ConfigError(
                f"{path}: `overrides.{strategy}` must hold section tables "
                f"({', '.join(f'[overrides.{strategy}.{s}]' for s in SECTIONS)})"
            )
        overrides[strategy] = _flatten(sections, f"{path} [overrides.{strategy}]")
    flat = _flatten({k: v for k, v in table.items() if k != "overrides"}, str(path))
    flat.setdefault("benchmark", name)
    return name, path, flat, overrides


def read_benchmark(benchmark: str) -> tuple[str, dict[str, Any]]:
    """Read a benchmark preset by name or path; return its name and its flat keys (its
    per-strategy ``overrides`` are applied by :func:`build_config`)."""
    name, _, flat, _ = _read(benchmark)
    return name, flat


def build_config(
    benchmark: str,
    strategy: str | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int | None = None,
) -> RunConfig:
    """Resolve and validate the configuration of one run (see the module docstring).

    The preset's override tables of the other strategies are validated too, each as the full
    configuration of its strategy (the preset, that table, and the ``--set`` values that are
    not strategy options), so that a mistake in ``[overrides.lwf.train]`` is reported while
    ``naive`` runs, before any data is loaded, and not only when ``lwf`` does.
    """
    _, path, flat, per_strategy = _read(benchmark)
    overrides = dict(overrides or {})
    name = strategy or overrides.get("strategy.name") or flat.get("strategy.name") or "naive"
    if not isinstance(name, str):
        raise ConfigError(f"`strategy.name` = {name!r} is not a string")
    config = _resolve(name, flat, per_strategy.get(name, {}), overrides, seed)
    shared = {k: v for k, v in overrides.items()
              if k in valid_keys() and not k.startswith("strategy.")}
    for other, table in per_strategy.items():
        if other == name:
            continue
        try:
            _resolve(other, flat, table, shared, seed)
        except ConfigError as exc:
            raise ConfigError(f"{path} [overrides.{other}] (checked whatever strategy runs): "
                              f"{exc}") from None
    return config


def _resolve(
    name: str, preset_flat: dict[str, Any], own_table: dict[str, Any],
    overrides: dict[str, Any], seed: int | None,
) -> RunConfig:
    """The validated configuration of strategy ``name``: its preset's options < the
    benchmark's flat keys < its override table < ``overrides`` (``--set``)."""
    from .strategies import strategy_preset  # light import: no torch at module level

    preset = strategy_preset(name)
    flat = {**preset_flat, **own_table}
    # An external strategy (interop/avalanche.py) takes its own arguments as strategy.<arg>.
    own = tuple(getattr(preset, "kwargs_names", ()))
    for key in list(flat) + list(overrides):
        if key not in valid_keys() and not (key.startswith("strategy.") and key[9:] in own):
            raise _unknown_key(key)
    merged: dict[str, Any] = {f"strategy.{k}": v for k, v in preset.options.items()}
    merged.update(flat)
    merged.update(overrides)
    if own:
        _route_kwargs(merged, preset.options, {**flat, **overrides}, own)
    merged["strategy.name"] = name
    if seed is not None:
        merged["seed"] = seed
    config = _from_flat(merged)
    validate(config)
    return config


def _route_kwargs(
    merged: dict[str, Any], defaults: dict[str, Any], given: dict[str, Any], own: tuple[str, ...]
) -> None:
    """Move the ``strategy.<arg>`` keys that name an external strategy's own arguments into
    the ``strategy.kwargs`` table: preset defaults < a ``strategy.kwargs`` table < single keys."""
    table = merged.get("strategy.kwargs", {})
    if not isinstance(table, dict):
        return  # _coerce rejects it with a clear message
    single = {k[9:]: v for k, v in given.items() if k.startswith("strategy.") and k[9:] in own}
    merged["strategy.kwargs"] = {**{k: v for k, v in defaults.items() if k in own}, **table,
                                 **single}
    for arg in own:
        merged.pop(f"strategy.{arg}", None)


def _from_flat(flat: dict[str, Any]) -> RunConfig:
    hints = typing.get_type_hints(RunConfig)
    top: dict[str, Any] = {}
    per_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        section, _, sub = key.partition(".")
        if section in SECTIONS and sub:
            cls = SECTIONS[section]
            tp = typing.get_type_hints(cls)[sub]
            per_section[section][sub] = _coerce(key, value, tp)
        else:
            top[key] = _coerce(key, value, hints[key])
    return RunConfig(**top, **{s: SECTIONS[s](**v) for s, v in per_section.items()})


def _choice(
    key: str, value: str, valid: tuple[str, ...] | list[str], aliases: dict[str, str] | None = None
) -> None:
    """``value`` must be one of ``valid``; the error suggests the closest one (case and
    punctuation ignored, ``aliases`` consulted) and lists them all."""
    if value not in valid:
        close = closest_name(value, list(valid), aliases)
        hint = f" (did you mean `{close}`?)" if close else ""
        raise ConfigError(f"`{key}` = {value!r} is not valid{hint}; valid: {', '.join(valid)}")


def _positive(key: str, value: float, strict: bool = True) -> None:
    if (value <= 0) if strict else (value < 0):
        bound = "> 0" if strict else ">= 0"
        raise ConfigError(f"`{key}` = {value!r} is out of range; it must be {bound}")


def _check_benchmark_name(name: str) -> None:
    """The benchmark's name names output folders (``runs/<benchmark>/...``): it must be one
    folder name, not a path that leads elsewhere."""
    if (not name.strip() or name in (".", "..") or any(c in name for c in "/\\")
            or any(ord(c) < 32 for c in name)):
        raise ConfigError(f"`benchmark` = {name!r} is not valid; it names the output folder "
                          "runs/<benchmark>/, so it must be a non-empty name without / or \\")


def _check_device(device: str) -> None:
    import re

    import torch

    if device == "cpu":
        return
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise ConfigError(f"`train.device` = {device!r}, but no CUDA device is available; use cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"`train.device` = {device!r}, but there are only "
                              f"{torch.cuda.device_count()} CUDA devices")
        return
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("`train.device` = 'mps', but MPS is not available; use cpu")
        return
    raise ConfigError(f"`train.device` = {device!r} is not valid; valid: cpu, cuda, cuda:N, mps")


def validate(config: RunConfig) -> None:
    """Check every value's range and every name before any data is loaded."""
    from .data.sources import DATASET_ALIASES, DATASETS, KNOWN_INPUT_SHAPES
    from .losses import LOSSES
    from .models import MODELS
    from .strategies import ALPHA_SCHEDULES, strategy_preset

    d, s, m, t, st = config.data, config.stream, config.model, config.train, config.strategy
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
    for name in config.strategies:
        strategy_preset(name)
    for key, value, limit in (
        ("stream.n_tasks", s.n_tasks, 1000), ("train.epochs", t.epochs, 100_000),
        ("train.iterations", t.iterations, 10_000_000), ("train.batch_size", t.batch_size, 1_000_000),
        ("train.eval_batch_size", t.eval_batch_size, 1_000_000), ("model.nf", m.nf, 512),
        ("strategy.warmup_epochs", st.warmup_epochs, 10_000),
        ("strategy.fisher_samples", st.fisher_samples, 10_000_000),
        ("model.hidden", max(m.hidden, default=0), 16_384),
        ("model.channels", max(m.channels, default=0), 2_048),
        ("model.hidden (layers)", len(m.hidden), 64), ("model.channels (layers)", len(m.channels), 8),
    ):
        if value > limit:
            raise ConfigError(f"`{key}` = {value} is out of range; at most {limit}")
    _choice("data.dataset", d.dataset, sorted(DATASETS), DATASET_ALIASES)
    _positive("data.train_subset", d.train_subset, strict=False)
    _positive("data.test_subset", d.test_subset, strict=False)
    if d.dataset == "imagefolder" and not d.path:
        raise ConfigError("`data.dataset` = 'imagefolder' needs `data.path` (a folder with train/ and test/)")
    _choice("stream.kind", s.kind, STREAM_KINDS)
    _choice("stream.scenario", s.scenario, SCENARIOS)
    if s.n_tasks < 1:
        raise ConfigError(f"`stream.n_tasks` = {s.n_tasks} is out of range; it must be >= 1")
    _positive("stream.classes_per_task", s.classes_per_task, strict=False)
    if isinstance(s.class_order, str):
        _choice("stream.class_order", s.class_order, ("natural", "random"))
    if s.kind == "rotated" and s.angles and len(s.angles) != s.n_tasks:
        raise ConfigError(
            f"`stream.angles` has {len(s.angles)} angles but `stream.n_tasks` = {s.n_tasks}; "
            "give one angle per task, or none to draw them"
        )
    _choice("model.name", m.name, sorted(MODELS))
    _choice("model.head", m.head, HEADS)
    _choice("model.init", m.init, INITS)
    if any(h < 1 for h in m.hidden):
        raise ConfigError(f"`model.hidden` = {list(m.hidden)} must hold widths >= 1")
    if any(c < 1 for c in m.channels) or not m.channels:
        raise ConfigError(f"`model.channels` = {list(m.channels)} must hold one or more widths >= 1")
    _positive("model.nf", m.nf)
    shape = KNOWN_INPUT_SHAPES.get(d.dataset) if not d.path else None
    if m.name == "convnet" and shape is not None:
        # each layer halves the image (2 x 2 max-pool); a side of 0 pixels fails in the model
        deepest = min(shape[1:]).bit_length() - 1  # floor(log2(side))
        if len(m.channels) > deepest:
            raise ConfigError(
                f"`model.channels` = {list(m.channels)} has {len(m.channels)} layers, but the "
                f"{shape[0]} x {shape[1]} x {shape[2]} images of `{d.dataset}` allow at most "
                f"{deepest} (each layer halves the image)")
    _positive("train.epochs", t.epochs, strict=t.iterations == 0)
    _positive("train.iterations", t.iterations, strict=False)
    _positive("train.batch_size", t.batch_size)
    _positive("train.eval_batch_size", t.eval_batch_size)
    _positive("train.lr", t.lr)
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    if not 0 <= t.momentum < 1:
        raise ConfigError(f"`train.momentum` = {t.momentum} is out of range; it must be in [0, 1)")
    _positive("train.weight_decay", t.weight_decay, strict=False)
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"`train.betas` = {list(t.betas)} must be two numbers in [0, 1)")
    _check_device(t.device)
    preset = strategy_preset(st.name)
    own = getattr(preset, "kwargs_names", None)  # an external strategy's own arguments
    if own is not None and set(st.kwargs) - set(own):
        bad = sorted(set(st.kwargs) - set(own))[0]
        raise ConfigError(f"strategy `{st.name}` has no argument `{bad}`; its arguments: "
                          f"{', '.join(own) or 'none'}")
    check_kwargs = getattr(preset, "check_kwargs", None)  # their types and ranges
    if check_kwargs is not None:
        check_kwargs(st.kwargs)
    _positive("strategy.alpha", st.alpha, strict=False)
    _positive("strategy.temperature", st.temperature)
    _choice("strategy.distill_loss", st.distill_loss, sorted(LOSSES))
    _choice("strategy.logits", st.logits, ("old", "all", "padded"))
    if st.logits == "padded" and st.distill_loss == "mse_logits":
        raise ConfigError("`strategy.logits` = 'padded' needs a softmax or sigmoid loss; "
                          "`strategy.distill_loss` = 'mse_logits' has no zero-padded targets")
    _choice("strategy.distill_reduction", st.distill_reduction, ("sum", "mean"))
    _choice("strategy.ewc_fisher", st.ewc_fisher, ("true", "empirical"))
    _choice("strategy.teacher_input", st.teacher_input, ("same", "clean"))
    _choice("strategy.alpha_schedule", st.alpha_schedule, ALPHA_SCHEDULES)
    _choice("strategy.ce_scope", st.ce_scope, ("seen", "current", "all"))
    _positive("strategy.warmup_epochs", st.warmup_epochs, strict=False)
    _choice("strategy.mode", st.mode, ("incremental", "final"))
    _positive("strategy.ewc_lambda", st.ewc_lambda, strict=False)
    if not 0 <= st.ewc_gamma <= 1:
        raise ConfigError(f"`strategy.ewc_gamma` = {st.ewc_gamma} is out of range; it must be in [0, 1]")
    _positive("strategy.fisher_samples", st.fisher_samples, strict=False)
    if s.scenario not in preset.scenarios:
        raise ConfigError(
            f"strategy `{st.name}` does not support the `{s.scenario}` scenario; "
            f"it supports: {', '.join(preset.scenarios)}"
        )
    from .data.streams import check_stream_config

    check_stream_config(config)
