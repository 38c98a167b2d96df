"""Benchmark presets: TOML files, suites, per-strategy overrides, ``--set``; validation.

A run is described by one :class:`~lifelong_kd.config.RunConfig`. It is resolved from, in
increasing priority:

1. the dataclass defaults (``config.py``),
2. the options of the strategy preset (``lwf``, ``lwf-vdv2019``, ...; see
   ``strategies/presets.py``),
3. the benchmark preset (a TOML file in ``benchmarks/`` or any path),
4. the preset's settings for this strategy only (``[overrides.<strategy>.<section>]`` tables,
   for protocols that train each strategy with its own hyperparameters),
5. ``--set section.key=value`` overrides from the command line.

Every key is checked: an unknown key is rejected with the closest valid one, a value of the
wrong type or out of range is rejected naming the key, the value and what would be valid.
The ranges that need no registry are checked by ``config.check_ranges``; :func:`validate` asks
each registry to check the names and options it owns: datasets (``data/sources.py``), models
(``models.py``), the strategy (its preset asks every strategy class to check the options it
reads, a distillation loss among them: ``strategies/``, ``losses.py``) and the stream
(``data/streams.py``). All of this happens before any data is loaded.

A suite is a preset whose ``benchmarks`` list names single presets; ``compare`` runs each.

A grid (``compare --grid KEY=V1,V2``, or a preset's ``[grid]`` table of dotted keys and lists)
is the cartesian product of the values of its keys: every strategy runs once per combination
of the keys it reads (:func:`reads`), each combination a variant with its own folder and its
own rows in the report. See :func:`check_grid` for what a grid may vary.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from .config import (
    SECTIONS,
    SHARED_SECTIONS,
    ConfigError,
    ModelConfig,
    RunConfig,
    StrategyConfig,
    check_choice,
    check_ranges,
    closest_name,
    from_flat,
    teacher_model,
    unknown_key,
)
from .config import valid_keys as section_keys
from .data.sources import DATASET_ALIASES, DATASETS, KNOWN_INPUT_SHAPES
from .data.streams import check_stream_config
from .models import LENET_MIN_SIDE, MODELS
from .strategies import strategy_preset
from .strategies.options import option_names, option_values
from .strategies.registry import FAMILIES, option_keys


def valid_keys() -> list[str]:
    """Every dotted key that ``--set`` and presets accept: those of the configuration's
    sections (``config.valid_keys``) and ``strategy.<key>`` for every option of a registered
    strategy."""
    return [*section_keys(), *option_keys()]

# ------------------------------------------------------------------ finding and reading presets


def _benchmark_dir() -> Path:
    """The preset folder: ``benchmarks/`` of a source checkout, or the installed copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "benchmarks", here / "benchmarks"):
        if candidate.is_dir():
            return candidate
    return here.parent / "benchmarks"


BENCHMARK_DIR = _benchmark_dir()


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


def _read(benchmark: str) -> tuple[str, Path, dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a benchmark preset once: its name, path, flat keys and per-strategy overrides.

    In TOML, ``[overrides.lwf-mammoth.train]`` with ``weight_decay = 0.0005`` sets
    ``train.weight_decay`` for the ``lwf-mammoth`` runs only (Mammoth's ``best_args`` give
    each method its own hyperparameters). Only configuration sections may be overridden.
    """
    name, path, table = _load_table(benchmark)
    if "benchmarks" in table:
        members = ", ".join(map(str, table["benchmarks"]))
        raise ConfigError(
            f"`{name}` is a suite of benchmarks ({members}): `lifelong-kd compare {name}` runs "
            "them all; `run` takes one of them"
        )
    flat = _flatten({k: v for k, v in table.items() if k not in ("overrides", "grid")}, str(path))
    flat.setdefault("benchmark", name)
    return name, path, flat, _overrides_of(table, path)


def _overrides_of(table: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """A preset's ``[overrides.<strategy>.<section>]`` tables as strategy -> flat dotted keys."""
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
    return overrides


def _flatten(table: dict[str, Any], source: str) -> dict[str, Any]:
    """A preset's table with its sections flattened to dotted keys (``[train] lr = 0.1`` ->
    ``train.lr``); ``source`` names the file (and table) in errors."""
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


def benchmark_name(benchmark: str) -> str:
    """The name of a single benchmark preset given by name or path (a file's stem), after
    reading it: a suite, a missing file or a bad table is refused here."""
    return _read(benchmark)[0]


# ------------------------------------------------------------------------------------ suites


@dataclass(frozen=True)
class SuiteMember:
    """One benchmark of a suite: the preset (a name, or a TOML file's path), the folder it
    runs into (``name``), and settings of its own (dotted keys, as ``--set`` gives them, which
    ``--set`` on the command line overrides)."""

    benchmark: str
    name: str
    settings: dict[str, Any] = field(default_factory=dict)


def _member(entry: Any, path: Path) -> SuiteMember:
    """A ``benchmarks`` entry: a preset name, a TOML path (relative to the suite's folder when
    it is there), or a table ``{benchmark = ..., name = ..., set = {"model.hidden" = [..]}}``."""
    if isinstance(entry, dict):
        unknown = set(entry) - {"benchmark", "name", "set"}
        benchmark, name, settings = entry.get("benchmark"), entry.get("name"), entry.get("set", {})
        if unknown or not isinstance(benchmark, str) or not isinstance(settings, dict) or not (
                name is None or isinstance(name, str) and name.strip() and "/" not in name):
            raise ConfigError(f"{path}: a member table of `benchmarks` holds `benchmark` (a preset "
                              "name or TOML path), optionally `name` (its folder, no /) and `set` "
                              f"(a table of dotted keys); got {entry!r}")
    elif isinstance(entry, str):
        benchmark, name, settings = entry, None, {}
    else:
        raise ConfigError(f"{path}: `benchmarks` must list benchmark names, paths or member "
                          f"tables; got {entry!r}")
    beside = path.parent / benchmark
    if benchmark.endswith(".toml") and not Path(benchmark).is_absolute() and beside.is_file():
        benchmark = str(beside)
    known = valid_keys()
    for key in settings:
        if key not in known:
            raise unknown_key(key, known)
    return SuiteMember(benchmark, name or Path(benchmark).stem, dict(settings))


def suite_members(benchmark: str) -> list[SuiteMember] | None:
    """The benchmarks of a suite preset (a TOML file with a ``benchmarks`` list), else None.

    ``compare`` runs every member into its own sub-folder; ``run`` takes single benchmarks.
    Every member is checked here, before anything runs: it must be a single benchmark (a
    preset name or a TOML file, not itself a suite), and each folder named once.
    """
    _, path, table = _load_table(benchmark)
    entries = table.get("benchmarks")
    if entries is None:
        return None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: `benchmarks` must be a non-empty list of benchmark names")
    singles = ", ".join(single_presets())
    members: list[SuiteMember] = []
    for entry in entries:
        member = _member(entry, path)
        if any(m.name == member.name for m in members):
            raise ConfigError(f"{path}: `benchmarks` names `{member.name}` twice; name each "
                              "benchmark once")
        members.append(member)
        try:
            _, _, member_table = _load_table(member.benchmark)
        except ConfigError as exc:
            text = str(exc).split("; valid benchmarks:")[0]
            raise ConfigError(f"{path}: member `{member.benchmark}` of `benchmarks`: {text}; valid "
                              f"members: {singles}, or the path of a TOML file") from None
        if "benchmarks" in member_table:
            raise ConfigError(f"{path}: member `{member.benchmark}` of `benchmarks` is itself a "
                              f"suite; a suite's members are single benchmarks: {singles}, or the "
                              "path of a TOML file")
    return members


def suite_reports(benchmark: str) -> dict[str, list[str]]:
    """A suite's ``reports`` table: report name -> the members (by folder name) whose runs are
    reported together, as one comparison, in ``<out>/<report name>/`` (e.g. one benchmark cut
    into members by model size). Empty when the suite has none."""
    _, path, table = _load_table(benchmark)
    reports = table.get("reports", {})
    members = {m.name for m in suite_members(benchmark) or []}
    if not isinstance(reports, dict):
        raise ConfigError(f"{path}: `reports` must be a table of report name = [member names]")
    for name, listed in reports.items():
        if not isinstance(listed, list) or not listed or not all(m in members for m in listed):
            raise ConfigError(f"{path}: `reports.{name}` must list members of the suite "
                              f"({', '.join(sorted(members))}); got {listed!r}")
        if name in members or "/" in name:
            raise ConfigError(f"{path}: `reports.{name}` would write into a member's folder or "
                              "elsewhere; give it a name of its own, without /")
    return {k: list(v) for k, v in reports.items()}


def single_presets() -> list[str]:
    """The shipped presets that are single benchmarks (not suites); unreadable ones left out."""
    names = []
    for name in preset_names():
        try:
            table = _load_table(name)[2]
        except (ConfigError, OSError):
            continue
        if "benchmarks" not in table:
            names.append(name)
    return names


def preset_description(benchmark: str) -> str:
    """The ``description`` of a preset, a single benchmark's or a suite's (empty when it has
    none)."""
    return str(_load_table(benchmark)[2].get("description", ""))


# ------------------------------------------------------------------------------------- grids

#: What a grid may not vary, each with what to use instead.
_NOT_IN_GRIDS = {
    "seed": "give the seeds with --seeds (or the preset's `seeds`)",
    "strategy.name": "give the strategies with --strategies (or the preset's `strategies`)",
    "benchmark": "run one compare per benchmark, or a suite",
    "description": "it is not a setting",
}


def parse_grid(items: Sequence[str] | None) -> dict[str, list[Any]]:
    """Turn ``["train.lr=0.01,0.1", ...]`` (``--grid``) into ``{"train.lr": [0.01, 0.1]}``.

    Values are separated by commas outside brackets, so a list value is written in brackets:
    ``model.hidden=[100,100],[400,400]``; each value is read as a ``--set`` value is. A value
    whose brackets do not close (``[0.2``) is refused, never dropped."""
    from .config import _parse_scalar

    out: dict[str, list[Any]] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        values = _grid_values(item, text)
        if not sep or not key or not all(values):
            raise ConfigError(f"--grid expects KEY=V1,V2,..., got {item!r} (for example "
                              "--grid train.lr=0.01,0.1; a list value in brackets: "
                              "model.hidden=[100,100],[400,400])")
        if key in out:
            raise ConfigError(f"--grid gives `{key}` twice; give all its values in one --grid "
                              f"{key}=V1,V2,...")
        out[key] = [_parse_scalar(v) for v in values]
    return out


def _grid_values(item: str, text: str) -> list[str]:
    """The values of one ``--grid`` item's ``text``: split at the commas outside brackets,
    each stripped. A bracket that is not closed, or closed without being opened (or by the
    other kind), is refused naming the value."""
    closing = {"]": "[", ")": "("}
    values: list[str] = []
    opened: list[str] = []
    start = 0
    for i, ch in enumerate(text + ","):
        if ch in "[(":
            opened.append(ch)
        elif ch in closing and (not opened or opened.pop() != closing[ch]):
            end = text.find(",", i)
            raise _unbalanced(item, text[start:end if end >= 0 else len(text)])
        elif ch == "," and not opened:
            values.append(text[start:i].strip())
            start = i + 1
    if opened:
        raise _unbalanced(item, text[start:])
    return values


def _unbalanced(item: str, value: str) -> ConfigError:
    return ConfigError(f"--grid {item!r}: the value {value.strip()!r} has a bracket that is not "
                       "closed (or not opened); a list value is written in brackets: "
                       "model.hidden=[100,100],[400,400]")


def preset_grid(benchmark: str) -> dict[str, list[Any]]:
    """A preset's ``[grid]`` table as dotted keys -> lists of values (``[grid] "train.lr" =
    [0.01, 0.1]``, or by section: ``[grid.train] lr = [0.01, 0.1]``); empty without one. A key
    that the preset's ``[overrides.<strategy>]`` also sets for a strategy that reads it is
    refused: which of the two should win is the preset author's to say."""
    _, path, table = _load_table(benchmark)
    raw = table.get("grid", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: `grid` must be a table of dotted keys and lists of values "
                          '([grid] "train.lr" = [0.01, 0.1])')
    flat = _flatten(raw, f"{path} [grid]")
    for key, values in flat.items():
        if not isinstance(values, list):
            raise ConfigError(f"{path} [grid]: `{key}` = {values!r} must be a list of the values "
                              f"to try, for example [{values!r}]")
    for strategy, own in _overrides_of(table, path).items():
        both = [k for k in flat if k in own and reads(strategy, k)]
        if both:  # every grid point would replace the strategy's own setting without a word
            raise ConfigError(
                f"{path}: `{both[0]}` is both varied by [grid] ({flat[both[0]]}) and set for "
                f"`{strategy}` by [overrides.{strategy}] ({own[both[0]]!r}); give it one way: "
                f"drop it from one of the two tables")
    return flat


def check_grid(grid: Mapping[str, Sequence[Any]], overrides: Mapping[str, Any]) -> None:
    """Refuse, before anything is built, a grid that cannot make variants of one comparison:
    an unknown key, a key of the data or the stream (every run of one report shares them:
    one compare per value), the seed or the strategy (they have their own lists), a key
    ``--set`` also gives, an empty list or a value given twice."""
    for key, values in grid.items():
        if key in _NOT_IN_GRIDS:
            raise ConfigError(f"a grid cannot vary `{key}`: {_NOT_IN_GRIDS[key]}")
        if key.partition(".")[0] in SHARED_SECTIONS:
            raise ConfigError(f"a grid cannot vary `{key}`: every run of one comparison shares "
                              f"the data and the stream ({', '.join(SHARED_SECTIONS)}.*); run one "
                              f"compare per value with --set {key}=... and --out")
        if key not in valid_keys() and not key.startswith("strategy."):
            raise unknown_key(key, valid_keys())
        if key in overrides:
            raise ConfigError(f"`{key}` is both set (--set {key}={overrides[key]}) and varied "
                              "(--grid, or the preset's [grid]); give it one way")
        if not values:
            raise ConfigError(f"the grid's `{key}` lists no values; give at least one")
        twice = [v for i, v in enumerate(values) if v in list(values)[:i]]
        if twice:
            raise ConfigError(f"the grid's `{key}` = {list(values)} holds {twice[0]!r} twice; "
                              "name each value once")


def reads(strategy: str, key: str) -> bool:
    """Whether the runs of ``strategy`` depend on setting ``key``: a strategy option it
    reads (its class's ``Options``, an external strategy's own arguments), the memory for a
    strategy that keeps one, the teacher for one that trains its own; every other section
    (model, train) for all. A grid varies a key only for the strategies that read it."""
    preset = strategy_preset(strategy)
    section, _, name = key.partition(".")
    if section == "strategy":
        return name in option_names(preset.cls.Options) or name in preset.kwargs_names
    if section == "memory":
        return preset.cls.MEMORY != "none"
    if section == "teacher":
        return preset.cls.TEACHER
    return True


def grid_points(
    strategy: str, grid: Mapping[str, Sequence[Any]]
) -> list[dict[str, Any]]:
    """The settings of each variant of ``strategy`` in ``grid``: the cartesian product of
    the values of the keys it reads, the keys in sorted order whatever the order they were
    given in (so that a variant has one name and one folder), ``[{}]`` when it reads none."""
    keys = sorted(k for k in grid if reads(strategy, k))
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


# ------------------------------------------------------------- one run's configuration


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
              if k in section_keys() and not k.startswith("strategy.")}
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
    preset = strategy_preset(name)
    flat = {**preset_flat, **own_table}
    # An external strategy (interop/avalanche.py) takes its own arguments as strategy.<arg>.
    own = preset.kwargs_names
    mine = option_names(preset.cls.Options)
    known = valid_keys()
    for key in list(flat) + list(overrides):
        if key not in known and not (key.startswith("strategy.") and key[9:] in (*own, *mine)):
            raise unknown_key(key, known)
    # a preset fixes strategy options by name, and other settings (memory.policy) by dotted key
    merged: dict[str, Any] = {k if "." in k else f"strategy.{k}": v
                              for k, v in preset.options.items()}
    merged.update(flat)
    merged.update(overrides)
    if own:
        _route_kwargs(merged, preset.options, {**flat, **overrides}, own)
    # the options of other strategies have no effect on this one's run, nor on its identity
    merged = {k: v for k, v in merged.items()
              if not k.startswith("strategy.") or k == "strategy.name" or k[9:] in mine}
    merged["strategy.name"] = name
    if seed is not None:
        merged["seed"] = seed
    config = from_flat(merged)
    options = preset.make_options(config)  # typed and checked: every option, with its value
    config = replace(config, strategy=StrategyConfig(name, option_values(options)))
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


def validate(config: RunConfig) -> None:
    """Check every value's range and every name before any data is loaded.

    First the ranges that need no registry (``config.check_ranges``), then each registry checks
    what it owns: the device, the dataset's name (``data/sources.py``), the model's name and its
    depth for the dataset's images (``models.py``), the strategies' names, the run's strategy
    options and scenario (its preset: ``StrategyPreset.check`` in ``strategies/presets.py``
    asks every strategy class to check the options it reads), and the stream
    (``data/streams.py``: classes per task against the dataset, ...).
    """
    check_ranges(config)
    _check_device(config.train.device)
    _check_data(config)
    _check_model(config)
    for name in config.strategies:
        strategy_preset(name)
    strategy_preset(config.strategy.name).check(config)
    _check_continual_evaluation(config)
    check_stream_config(config)


def _check_continual_evaluation(config: RunConfig) -> None:
    """``train.eval_every`` counts the steps of lifelong-kd's own training loop: an external
    strategy (``avalanche:...``) trains in its library's loop, which has no such step."""
    name = config.strategy.name
    if config.train.eval_every and any(name.startswith(p) for p in FAMILIES):
        raise ConfigError(f"`train.eval_every` = {config.train.eval_every} needs lifelong-kd's "
                          f"own training loop, and `{name}` trains in its library's own loop; "
                          "set train.eval_every = 0 for it, or use one of lifelong-kd's "
                          "strategies (`lifelong-kd list`)")


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


def _check_data(config: RunConfig) -> None:
    """The dataset is one of ``data/sources.py``'s (near misses and aliases suggested)."""
    check_choice("data.dataset", config.data.dataset, sorted(DATASETS), DATASET_ALIASES)


def _check_model(config: RunConfig) -> None:
    """The model (and the teacher's, ``teacher.*`` over the model's) is one of
    ``models.py``'s, and a ConvNet is not too deep for the images."""
    _check_network(config, config.model, "model")
    _check_network(config, teacher_model(config), "teacher")


def _check_network(config: RunConfig, m: ModelConfig, section: str) -> None:
    d = config.data
    key = "model" if section == "model" or config.teacher.name == "" else "teacher"
    check_choice(f"{key}.name", m.name, sorted(MODELS))
    shape = KNOWN_INPUT_SHAPES.get(d.dataset) if not d.path else None
    if m.name == "lenet" and shape is not None and min(shape[1:]) < LENET_MIN_SIDE:
        raise ConfigError(f"`{key}.name` = 'lenet' needs images of at least {LENET_MIN_SIDE} x "
                          f"{LENET_MIN_SIDE} pixels (two 5x5 convolutions, each with a 2 x 2 "
                          f"max-pool); `{d.dataset}` has {shape[1]} x {shape[2]}")
    if m.name == "convnet" and shape is not None:
        # each layer halves the image (2 x 2 max-pool); a side of 0 pixels fails in the model
        deepest = min(shape[1:]).bit_length() - 1  # floor(log2(side))
        if len(m.channels) > deepest:
            key = "model" if section == "model" or not config.teacher.channels else "teacher"
            raise ConfigError(
                f"`{key}.channels` = {list(m.channels)} has {len(m.channels)} layers, but the "
                f"{shape[0]} x {shape[1]} x {shape[2]} images of `{d.dataset}` allow at most "
                f"{deepest} (each layer halves the image)")
