"""The plan: one :class:`RunSpec` per strategy x grid variant x seed (:func:`plan`), each
configuration built and validated, each in its folder (:func:`run_folder`); no data, no
files."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, UserError
from ..presets import build_config, check_grid, grid_points, preset_grid, reads
from ..results import RunIdentity, grid_stamp, grid_value, run_identity
from .signals import StopFlag

#: The most runs one comparison plans (about 1 ms each to build and validate): a grid of
#: more (a typo of a thousand values times another thousand) is refused at once.
MAX_RUNS = 100_000


def _folder_name(strategy: str) -> str:
    """A strategy's name as one folder name (``avalanche:Replay`` -> ``avalanche_Replay``)."""
    return strategy.replace(":", "_").replace("/", "_")


def run_folder(out_dir: Path, strategy: str, seed: int,
               grid: Sequence[tuple[str, str]] = ()) -> Path:
    """Where ``compare`` puts the run of ``strategy`` with ``seed``: ``<out>/<strategy>/seed-<n>``,
    or ``<out>/<strategy>/<grid stamp>/seed-<n>`` for a variant of a grid (the folder of its
    identity's stamp)."""
    middle = [grid_stamp(grid)] if grid else []
    return Path(out_dir, _folder_name(strategy), *middle, f"seed-{seed}")


@dataclass(frozen=True)
class RunSpec:
    """One run: its validated configuration, the folder it runs into and, for a variant of a
    grid, the settings the grid varied for it ((dotted key, value as shown) pairs)."""

    config: RunConfig
    folder: Path
    grid: tuple[tuple[str, str], ...] = ()

    @property
    def identity(self) -> RunIdentity:
        """The run's identity as planned: stamp and configuration hash, no data fingerprint
        yet (:meth:`RunIdentity.with_data` completes it once the data is loaded)."""
        return run_identity(self.config.to_dict(), grid=self.grid)

    @property
    def stamp(self) -> str:
        return self.identity.stamp

    @property
    def variant(self) -> str:
        """The name of the run's variant as a report gives it: ``lwf``, or ``lwf
        [train.lr = 0.1]`` for a variant of a grid (its settings in the order of their keys)."""
        name = self.config.strategy.name
        own = ", ".join(f"{k} = {v}" for k, v in sorted(self.grid))
        return f"{name} [{own}]" if self.grid else name


def _named_once(option: str, values: Sequence[Any] | None) -> None:
    """Refuse a list given on the command line that names a value twice (as a preset's)."""
    twice = [v for i, v in enumerate(values or []) if v in values[:i]]
    if twice:  # it would run into one folder twice and count twice in the report
        raise ConfigError(f"`{option}` = {list(values)} holds `{twice[0]}` twice; name each once")


def plan(
    benchmark: str,
    strategies: Sequence[str] | None,
    seeds: Sequence[int] | None,
    overrides: dict[str, Any],
    out_dir: Path,
    grid: Mapping[str, Sequence[Any]] | None = None,
    stop: StopFlag | None = None,
) -> list[RunSpec]:
    """The run of every strategy x variant x seed (the benchmark's lists where None), each
    configuration built and validated, each in its folder under ``out_dir`` (no data, no
    files). More than :data:`MAX_RUNS` runs are refused before any is built; a ``stop``
    requested while they are built ends the planning (KeyboardInterrupt: nothing ran).

    The variants of a strategy are the points of the grid (the preset's ``[grid]``, whose
    keys ``grid`` replaces or adds to) over the keys the strategy reads
    (:func:`lifelong_kd.presets.grid_points`); without a grid, or for a strategy that reads
    none of its keys, one. A key of ``grid`` that no strategy of the plan reads is refused
    (a preset's key is not: its strategies may be others), and so are two variants that come
    to the same folder (``true`` and ``yes``)."""
    _named_once("--strategies", strategies)
    _named_once("--seeds", seeds)
    given, grid = grid or {}, {**preset_grid(benchmark), **(grid or {})}
    check_grid(grid, overrides)
    base = build_config(benchmark, None, overrides)
    strategies = list(strategies or base.strategies)
    seeds = list(seeds if seeds is not None else base.seeds)
    if not strategies or not seeds:
        raise UserError("compare needs at least one strategy and one seed")
    unread = [k for k in given if not any(reads(s, k) for s in strategies)]
    if unread:
        raise ConfigError(f"no strategy of this comparison ({', '.join(strategies)}) reads "
                          f"`{unread[0]}`, so varying it changes nothing; vary a setting they "
                          "read, or add a strategy that reads it")
    n_runs = len(seeds) * sum(math.prod(len(grid[k]) for k in grid if reads(s, k))
                              for s in strategies)
    if n_runs > MAX_RUNS:
        raise ConfigError(f"this comparison would make {n_runs:,} runs ({len(strategies)} "
                          f"strategies x the grid's points x {len(seeds)} seeds); at most "
                          f"{MAX_RUNS:,} in one compare: split the grid over several --out "
                          "folders")
    specs: list[RunSpec] = []
    for s in strategies:
        for point in grid_points(s, grid):
            if stop is not None and stop.requested:  # planning a large grid takes seconds
                raise KeyboardInterrupt
            for seed in seeds:
                config = build_config(benchmark, s, {**overrides, **point}, seed)
                shown = tuple((k, grid_value(_setting(config, k))) for k in point)
                specs.append(RunSpec(config, run_folder(out_dir, s, seed, shown), shown))
    folders: dict[Path, RunSpec] = {}
    for spec in specs:
        if spec.folder in folders:
            raise ConfigError(f"the grid gives {folders[spec.folder].variant} twice (values "
                              "that are the same setting once read); name each value once")
        folders[spec.folder] = spec
    return specs


def _setting(config: RunConfig, key: str) -> Any:
    """The value of dotted ``key`` in ``config`` (an external strategy's own argument from
    ``strategy.kwargs``)."""
    section, _, name = key.partition(".")
    table = config.to_dict()[section]
    return table[name] if name in table else table.get("kwargs", {}).get(name)
