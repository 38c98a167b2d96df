"""Runs: plan them, execute each into its folder, and a comparison of many.

The shape, top to bottom::

    plan(benchmark, strategies, seeds, overrides, out_dir) -> [RunSpec]   no data, no files
    execute(spec, provider, options)  -> result.json of one run, in spec.folder
    SerialExecutor().run(specs, ...)  -> one Outcome per spec, in order
    compare(...) = plan + checks + reuse what is finished with the same identity
                   + an executor for the rest + the comparison report

Its neighbours: ``folders.py`` (the folders' locks and outputs, no torch: ``report`` and
``plot`` use it) and ``checkpoints.py`` (``checkpoint.pt`` written, read and checked); this
module re-exports their public names.

A :class:`RunSpec` is one run: its validated configuration and its folder. Its identity
(:class:`lifelong_kd.results.RunIdentity`: a readable stamp, the hash of the configuration
and, once the data is loaded, the data fingerprint) decides whether a finished run in its
folder is this run: ``compare`` reuses it then, and refuses a folder that holds another run
before anything trains. An executor is anything with :meth:`SerialExecutor.run`'s
signature: ``lifelong_kd/executors/`` has those that run specs in parallel (local
processes, Ray). Folders keep their layout, ``<out>/<strategy>/seed-<n>`` (a variant of a
grid: ``<out>/<strategy>/<key=value,...>/seed-<n>``), so committed results are found and
reused.

A run folder holds ``result.json``, ``accuracy_matrix.csv``, ``curves.csv`` (the continual
evaluation, ``train.eval_every``; written with every checkpoint), the run's plots and, while
the run is unfinished, ``checkpoint.pt`` (saved after every task). ``resume`` continues from
that checkpoint; the finished matrix is the one an uninterrupted run gives, bit for bit on
the CPU. SIGINT/SIGTERM stop a run cleanly after the current step (a second SIGINT exits at
once); a NaN loss stops it as ``diverged``. Either way result.json keeps the finished rows.

Nothing is mixed or lost:

- A run's identity is its configuration *and* its data (the fingerprint of the arrays read
  from disk): a checkpoint records both, and resuming, or reusing a finished run in
  ``compare``, on other data or with other settings is refused, naming both.
- A checkpoint is loaded with ``torch.load(weights_only=True)``: it holds tensors and plain
  data only, so unpickling it cannot run code; one of the wrong structure is refused
  (``checkpoints.py``).
- One process per folder: a run or comparison folder is locked while a command works in it,
  and a second command refuses at once. ``force`` removes the outputs this project wrote in
  the folder before and nothing else. A refused command changes nothing, and a folder that a
  failed command created (e.g. the data could not be loaded) is removed again
  (``folders.py``).
- A full disk while writing a checkpoint or result.json is one line that says the last good
  checkpoint is kept and ``--resume`` continues from it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from .checkpoints import checkpoint_problem, load_checkpoint, restore_checkpoint, write_checkpoint
from .config import RunConfig
from .errors import ConfigError, UserError
from .folders import (
    CHECKPOINT,
    COMPARISON_FILES,
    COMPARISON_PLOTS,
    LOCK,
    MATRIX_KIND_SUFFIXES,
    PLOT_FORMATS,
    RUN_FILES,
    RUN_PLOTS,
    comparison_output_names,
    folder_status,
    locked,
    output_folder,
    remove_outputs,
    run_output_names,
)
from .presets import (
    SuiteMember,
    benchmark_name,
    build_config,
    check_grid,
    grid_points,
    preset_grid,
    reads,
)
from .results import (
    CURVES,
    RESULT,
    RunIdentity,
    WriteError,
    attach_curves,
    build_result,
    check_output_folder,
    curves_csv,
    grid_stamp,
    grid_value,
    identity_as_recorded,
    identity_differences,
    identity_of,
    matrix_csv,
    read_result,
    run_identity,
    write_json,
    write_text,
)
from .strategies import strategy_preset
from .strategies.options import option_defaults

__all__ = [
    # defined here
    "COMPARISON_FORMATS", "MAX_RUNS", "CompareOutcome", "DataProvider", "Executor", "Log",
    "Outcome", "RunOptions", "RunSpec", "SerialExecutor", "StopFlag", "check_plan",
    "check_plan_data", "check_same_data", "compare", "compare_suite", "execute", "plan",
    "reusable", "run_folder", "run_in_held_folder", "stop_on_signals",
    # re-exported: folders.py (locks and outputs) and checkpoints.py
    "CHECKPOINT", "COMPARISON_FILES", "COMPARISON_PLOTS", "LOCK", "MATRIX_KIND_SUFFIXES",
    "PLOT_FORMATS", "RUN_FILES", "RUN_PLOTS", "checkpoint_problem", "comparison_output_names",
    "folder_status", "load_checkpoint", "locked", "output_folder", "remove_outputs",
    "restore_checkpoint", "run_output_names",
]

#: The most runs one comparison plans (about 1 ms each to build and validate): a grid of
#: more (a typo of a thousand values times another thousand) is refused at once.
MAX_RUNS = 100_000

#: The formats of a comparison's plots (``RunOptions.plots = False``: none).
COMPARISON_FORMATS = ("png", "svg")
#: A log line's destination (``print`` to stderr, say), or None for no log.
Log = Callable[[str], None] | None


class StopFlag:
    """Set by the first SIGINT/SIGTERM; the engine polls it between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Turn the first SIGINT/SIGTERM into a clean stop; a second SIGINT exits at once."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested and signum == signal.SIGINT:
            sys.stderr.write("\nsecond interrupt: exiting at once\n")
            os._exit(130)
        flag.requested = True
        flag.signal_name = signal.Signals(signum).name
        sys.stderr.write(f"\n{flag.signal_name}: stopping after the current step "
                         "(Ctrl-C again to exit at once)\n")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class DataProvider:
    """Loads each dataset once per process (``compare`` runs share it)."""

    data_dir: Path
    offline: bool = False
    progress: bool = True
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def dataset(self, config: RunConfig) -> Any:
        """The dataset of ``config`` (``data.dataset`` read from ``data.path``), loaded on the
        first call and the same object on every other."""
        from .data.sources import load_dataset

        key = (config.data.dataset, config.data.path)
        if key not in self._cache:
            self._cache[key] = load_dataset(config.data.dataset, self.data_dir, self.offline,
                                            config.data.path, progress=self.progress)
        return self._cache[key]


# ------------------------------------------------------------------- identity: the data


def _listed(items: list[str], limit: int = 4) -> str:
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _data_where(info: Any) -> str:
    path = info.get("path") if isinstance(info, dict) else None
    return str(path) if path else "(no folder recorded)"


def check_same_data(what: str, recorded: Any, ds: Any, hint: str) -> None:
    """Refuse when the data a run was made on (``recorded``: its result's or checkpoint's
    ``data``) is not the data ``ds`` loaded now: the fingerprint is part of a run's identity."""
    fingerprint = recorded.get("fingerprint") if isinstance(recorded, dict) else None
    if fingerprint == ds.fingerprint:
        return
    now = f"{ds.fingerprint[:12]} from {ds.path or '(built in)'}"
    if not isinstance(fingerprint, str) or not fingerprint:
        raise UserError(f"{what} records no data fingerprint, so it cannot be checked against "
                        f"the data now (fingerprint {now}); {hint}")
    raise UserError(f"{what} was made on other data: fingerprint {fingerprint[:12]} from "
                    f"{_data_where(recorded)}, but the data now has fingerprint {now}; {hint}")


# ------------------------------------------------------------------------------ the plan


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


# ------------------------------------------------------------------------------ one run


@dataclass(frozen=True)
class RunOptions:
    """How :func:`execute` treats a folder and what it writes besides result.json."""

    #: Progress bars while training.
    progress: bool = True
    #: Continue an interrupted run from its checkpoint (a finished one is returned as is).
    resume: bool = False
    #: Start again: the folder's previous outputs are removed once the data is loaded.
    force: bool = False
    #: Keep checkpoint.pt after the run finishes.
    keep_checkpoints: bool = False
    #: The run's own plots (``compare`` leaves them to ``lifelong-kd plot RUN_DIR``), and a
    #: comparison's (``--no-plots``: none; ``lifelong-kd plot DIR`` makes them later).
    plots: bool = True


def execute(
    spec: RunSpec,
    provider: DataProvider,
    options: RunOptions | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run ``spec`` into its folder and return its result.json as a dict.

    The folder is locked for the whole run and created only for it (removed again if the
    run fails before writing anything). ``options.resume`` continues from the checkpoint, or
    returns a finished result, when the run recorded there has this identity (the same
    configuration and data); ``options.force`` starts again, removing the previous outputs
    once the data is loaded. ``stop`` is polled between steps (see :func:`stop_on_signals`).
    """
    with output_folder(spec.folder):
        return run_in_held_folder(spec, provider, options or RunOptions(), stop)


def run_in_held_folder(
    spec: RunSpec, provider: DataProvider, options: RunOptions, stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    """:func:`execute` into a folder that exists and whose lock is held on this run's behalf
    (by this process, or by the ``compare`` that gave the run to another process: a worker
    of ``compare --jobs`` or a Ray task, which must not take the lock its driver holds).

    In steps: the run the folder holds is checked (:func:`_result_to_resume`), the data
    loaded, the state restored from the checkpoint (:func:`_resumed_state`) or the earlier
    outputs removed, the stream trained with a checkpoint after every task (:func:`_train`,
    :class:`_OnTaskEnd`), and the result built and written (:func:`_run_result`,
    :func:`_write_run`)."""
    from .data.sources import subset
    from .data.streams import build_stream

    start = time.perf_counter()
    config, out_dir = spec.config, spec.folder
    resume = options.resume and not options.force
    status = folder_status(out_dir)
    config_dict = config.to_dict()
    old = _result_to_resume(out_dir, status, config_dict, resume, options.force)
    full = provider.dataset(config)
    if old is not None:
        check_same_data(f"the {status} run in {out_dir}", old.get("data"), full,
                        "use the same --data-dir, or --force to start again")
        if status == "finished":
            return attach_curves(old, out_dir)
    ds = subset(full, config.data.train_subset, config.data.test_subset)
    stream = build_stream(config, ds)
    ckpt = out_dir / CHECKPOINT
    state = _resumed_state(ckpt, config, stream, full) if resume and ckpt.is_file() else None
    resumed_from = state.next_task if state is not None else 0
    if state is None:  # a fresh start: no output of an earlier run may stay beside this one
        remove_outputs(out_dir, run_output_names())
    on_task_end = _OnTaskEnd(out_dir, config_dict, _data_info(config, ds), len(stream),
                             options.keep_checkpoints)
    state, final_status, message = _train(config, stream, state, options, on_task_end, stop)
    result = _run_result(spec, config_dict, stream, state, data=on_task_end.data,
                         status=final_status, message=message, start=start,
                         resumed_from=resumed_from)
    return _write_run(out_dir, result, state, final_status, options)


def _result_to_resume(out_dir: Path, status: str, config_dict: dict[str, Any], resume: bool,
                      force: bool) -> dict[str, Any] | None:
    """The readable result.json in ``out_dir`` when ``resume`` (else None), once the folder is
    checked: a run there (``status``) is refused without ``force`` or ``resume``, and a result
    of another configuration than ``config_dict`` is refused."""
    if status != "empty" and not (force or resume):
        hint = "--resume to continue it" if status != "finished" else "--resume (nothing to do)"
        raise UserError(
            f"{out_dir} already holds a {status} run; use --force to start again or {hint}"
        )
    old = None
    if resume and (out_dir / RESULT).is_file():
        with contextlib.suppress(UserError):  # unreadable: the checkpoint decides
            old = read_result(out_dir)
        diff = identity_differences(old.get("config"), config_dict) if old is not None else []
        if diff:
            raise UserError(f"{out_dir} holds a {status} run with a different configuration "
                            f"({_listed(diff)}); use --force to start again or another --out")
    return old


def _data_info(config: RunConfig, ds: Any) -> dict[str, Any]:
    """result.json's and the checkpoint's ``data``: the dataset ``ds`` a run trains on."""
    return {
        "dataset": ds.name, "path": ds.path, "fingerprint": ds.fingerprint,
        "n_train": int(len(ds.train_y)), "n_test": int(len(ds.test_y)),
        "train_subset": config.data.train_subset, "test_subset": config.data.test_subset,
    }


def _resumed_state(ckpt: Path, config: RunConfig, stream: Any, full: Any) -> Any:
    """The engine's state saved in the checkpoint ``ckpt``, refused when the checkpoint was
    made with another configuration than ``config`` or on other data than ``full`` (the
    dataset loaded now)."""
    saved = load_checkpoint(ckpt, config.train.device)
    diff = identity_differences(saved["config"], config.to_dict())
    if diff:
        raise UserError(f"the checkpoint {ckpt} was made with a different configuration "
                        f"({_listed(diff)}); use the same settings to resume, or --force "
                        "to start again")
    check_same_data(f"the checkpoint {ckpt}", saved.get("data"), full,
                    "resume with the same --data-dir, or --force to start again")
    return restore_checkpoint(ckpt, config, stream, saved["state"])


@dataclass
class _OnTaskEnd:
    """The engine's ``on_task_end`` for one run: it keeps the state of the last task that
    ended (the run's state, also when training then stops with an exception) and saves the
    checkpoint, with the ended tasks' curves beside it."""

    #: The run folder.
    folder: Path
    #: The run's configuration and data (``_data_info``), as the checkpoint records them.
    config: dict[str, Any]
    data: dict[str, Any]
    #: The tasks of the stream: after the last, a checkpoint is saved only if kept.
    n_tasks: int
    keep_checkpoints: bool
    #: The state of the last task that ended (None before the first).
    last_state: Any = None

    def __call__(self, state: Any) -> None:
        self.last_state = state
        self.save(state)

    def save(self, state: Any) -> None:
        """Save ``state`` as the checkpoint; a failed write says whether the last good
        checkpoint is kept."""
        ckpt = self.folder / CHECKPOINT
        if state.next_task >= self.n_tasks and not self.keep_checkpoints:
            return
        payload = {"config": self.config, "data": self.data, "state": state.checkpoint()}
        try:
            write_checkpoint(ckpt, payload)
            if state.curves:  # the finished tasks' curves, as the checkpoint holds them
                write_text(self.folder / CURVES, curves_csv(state.curves))
        except WriteError as exc:
            kept = ("the last good checkpoint is kept: free some space, then continue with "
                    "--resume" if ckpt.is_file() else "free some space, then run again")
            raise WriteError(f"{exc}; {kept}") from None


def _train(config: RunConfig, stream: Any, state: Any, options: RunOptions,
           on_task_end: _OnTaskEnd, stop: Callable[[], bool] | None,
           ) -> tuple[Any, str, str | None]:
    """Train ``stream`` from ``state`` (None: from its first task): the state it ended in
    (None if no task ended), its status (``finished``, ``interrupted`` or ``diverged``) and
    the message of a run that did not finish."""
    from .engine import Diverged, Interrupted, train_stream

    final_status, message = "finished", None
    try:
        state = train_stream(config, stream, state, progress=options.progress,
                             on_task_end=on_task_end, should_stop=stop)
    except Interrupted as exc:
        final_status, message = "interrupted", f"{exc}; resume with --resume"
    except Diverged as exc:
        final_status, message = "diverged", str(exc)
    if on_task_end.last_state is not None:
        state = on_task_end.last_state
    return state, final_status, message


def _run_result(spec: RunSpec, config_dict: dict[str, Any], stream: Any, state: Any, *,
                data: dict[str, Any], status: str, message: str | None, start: float,
                resumed_from: int) -> dict[str, Any]:
    """result.json of the run of ``spec`` that ended in ``state`` (None: no task ended) with
    ``status``; ``start`` is when the run began (``time.perf_counter()``), ``resumed_from``
    the task it continued from."""
    config = spec.config
    return build_result(
        config=config_dict, scenario=stream.scenario,
        task_names=[t.name for t in stream.tasks],
        rows=state.rows if state is not None else [],
        rows_task_aware=state.rows_task_aware if state is not None else [],
        initial=state.initial if state is not None else [],
        initial_task_aware=state.initial_task_aware if state is not None else [],
        timing={
            "total_seconds": time.perf_counter() - start,
            "train_seconds": state.train_seconds if state is not None else 0.0,
            "eval_seconds": state.eval_seconds if state is not None else 0.0,
            **({"curve_seconds": state.curve_seconds} if config.train.eval_every else {}),
            "resumed_from_task": resumed_from,
        },
        data=data, status=status, message=message,
        costs=_costs(config, stream, state, status),
        teacher=state.teacher_matrices() if state is not None else None,
        grid=spec.grid,
        curves=state.curves if state is not None else [],
        # what the strategy declares for the readers of results, who know no strategy
        last_row_only=_last_row_only(config),
        declared=_declared(config),
    )


def _write_run(out_dir: Path, result: dict[str, Any], state: Any, final_status: str,
               options: RunOptions) -> dict[str, Any]:
    """Write ``result`` (of the run that ended in ``state``) into ``out_dir``: result.json, the
    matrix, the curves and, with ``options.plots``, the plots; then remove the checkpoint of
    a finished run unless it is kept. Returns ``result`` with its curves."""
    rows = state.rows if state is not None else []
    curves = state.curves if state is not None else []
    ckpt = out_dir / CHECKPOINT
    try:
        write_json(out_dir / RESULT, result)
        if rows:
            write_text(out_dir / "accuracy_matrix.csv", matrix_csv(rows))
        if curves:
            write_text(out_dir / CURVES, curves_csv(curves))
    except WriteError as exc:
        if not ckpt.is_file():
            raise
        raise WriteError(f"{exc}; the last checkpoint is kept: free some space, then continue "
                         "with --resume") from None
    if curves:
        result["curves"] = curves  # for the plots and the comparison; not in result.json
    if options.plots and rows:
        from .plots import run_plots

        run_plots(result, out_dir)
    if final_status == "finished" and not options.keep_checkpoints:
        with contextlib.suppress(FileNotFoundError):
            ckpt.unlink()
    return result


def _last_row_only(config: RunConfig) -> str | None:
    """What the run's strategy declares (``Strategy.last_row_only``) for the readers of
    results, who know no strategy."""
    preset = strategy_preset(config.strategy.name)
    return preset.cls.last_row_only(preset.make_options(config))


def _declared(config: RunConfig) -> dict[str, Any]:
    """result.json's ``declared``: what the report needs of the strategy and reads without
    importing any: its options' defaults, those its preset fixes, its teacher's strategy."""
    preset = strategy_preset(config.strategy.name)
    out: dict[str, Any] = {"option_defaults": option_defaults(preset.cls.Options),
                           "preset_options": [k for k in preset.options if "." not in k]}
    if preset.cls.TEACHER:
        out["teacher_strategy"] = (getattr(preset.cls, "TEACHER_STRATEGY", None)
                                   or config.teacher.strategy)
    return out


def _costs(config: RunConfig, stream: Any, state: Any, status: str) -> dict[str, Any] | None:
    """The run's costs (``engine.measure_costs``); latencies only for a finished run (an
    interrupted one should stop at once, a diverged one's timings mean nothing)."""
    from .engine import measure_costs

    if state is None:
        return None
    return measure_costs(config, stream, state, latency=status == "finished")


# ------------------------------------------------------------------------------ executors


@dataclass(frozen=True)
class Outcome:
    """How one spec of a plan ended: its result (any status), or the error that stopped it
    (then ``result`` is None)."""

    spec: RunSpec
    result: dict[str, Any] | None = None
    error: str | None = None

    def failure(self) -> dict[str, Any] | None:
        """``{"strategy", "seed", "error"}`` for the report when the run did not finish."""
        spec = self.spec
        if self.error is not None:
            return {"strategy": spec.variant, "seed": spec.config.seed, "error": self.error}
        assert self.result is not None
        if self.result["status"] != "finished":
            return {"strategy": spec.variant, "seed": spec.config.seed,
                    "error": f"{self.result['status']}: {self.result.get('message', '')}"}
        return None


class Executor(Protocol):
    """Runs the specs of a plan (each with :func:`execute`) and says how each ended."""

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]: ...


class SerialExecutor:
    """One run after another in this process, in the order of the plan.

    A run that fails is recorded (its error in one line) and the others go on; a failure to
    write (a full disk, a read-only folder) stops them all, as a :class:`WriteError`. Once a
    stop is requested, the runs not started are recorded as not run.
    """

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]:
        outcomes = []
        for n, spec in enumerate(specs, 1):
            if stop is not None and stop.requested:
                outcomes.append(Outcome(spec, error="not run (interrupted)"))
                continue
            if log:
                log(f"[{n}/{len(specs)}] {spec.identity.title} -> {spec.folder}")
            try:
                outcomes.append(Outcome(spec, execute(spec, provider, options, stop)))
            except WriteError:
                raise  # a full disk or a read-only folder stops every run: one line
            except UserError as exc:
                outcomes.append(Outcome(spec, error=str(exc)))
            except Exception as exc:  # noqa: BLE001 - one failing run must not lose the others
                outcomes.append(Outcome(spec, error=f"{type(exc).__name__}: {exc}"))
            if log and outcomes[-1].error:
                log(f"  failed: {outcomes[-1].error}")
        return outcomes


# ------------------------------------------------------------------------------ comparisons


@dataclass
class CompareOutcome:
    """Results of a comparison (reused and run, any status), and the runs that did not
    finish (with their error)."""

    results: list[dict[str, Any]]
    failures: list[dict[str, Any]]


def _recorded(folder: Path) -> dict[str, Any] | None:
    """The readable result.json in ``folder`` (any status), else None."""
    if not (folder / RESULT).is_file():
        return None
    try:
        return read_result(folder)
    except UserError:  # unreadable: its run reports it
        return None


def check_plan(specs: Sequence[RunSpec], out_dir: Path, force: bool) -> None:
    """Before anything is loaded or written: every folder can be one, and (unless ``force``)
    every run folder that holds a result holds one of the planned configuration (the first
    half of the identity; the data is checked by :func:`check_plan_data`)."""
    check_output_folder(out_dir)
    mismatched: list[tuple[Path, list[str]]] = []
    for spec in specs:
        check_output_folder(spec.folder)
        old = None if force else _recorded(spec.folder)
        if old is not None and (identity_of(old).config_hash
                                != identity_as_recorded(spec.config.to_dict(), old).config_hash):
            mismatched.append((spec.folder, identity_differences(old.get("config"),
                                                                  spec.config.to_dict())))
    if mismatched:
        folder, diff = mismatched[0]
        more = f" (and {len(mismatched) - 1} more run folders)" if len(mismatched) > 1 else ""
        raise UserError(f"{folder}{more} holds a run with a different configuration "
                        f"({_listed(diff)}); use --force to run again with these settings, or "
                        "another --out")


def check_plan_data(specs: Sequence[RunSpec], provider: DataProvider, force: bool) -> None:
    """Load every dataset of the plan (before any run trains) and, unless ``force``, refuse
    run folders whose result was made on other data (the second half of the identity)."""
    for spec in specs:
        provider.dataset(spec.config)
    if force:
        return
    for spec in specs:
        old = _recorded(spec.folder)
        if old is not None:
            check_same_data(f"the {old.get('status', 'finished')} run in {spec.folder}",
                            old.get("data"), provider.dataset(spec.config),
                            "use the same --data-dir, or --force to run it again")


def reusable(spec: RunSpec, provider: DataProvider) -> dict[str, Any] | None:
    """The finished result in the spec's folder when it is this run (the same identity:
    configuration and data), else None."""
    if folder_status(spec.folder) != "finished":
        return None
    old = read_result(spec.folder)
    planned = identity_as_recorded(spec.config.to_dict(), old).with_data(
        provider.dataset(spec.config).fingerprint)
    recorded = identity_of(old)
    return old if recorded.data_fingerprint and recorded.key == planned.key else None


def compare(
    benchmark: str,
    strategies: Sequence[str] | None,
    seeds: Sequence[int] | None,
    overrides: dict[str, Any],
    provider: DataProvider,
    out_dir: Path,
    *,
    options: RunOptions | None = None,
    executor: Executor | None = None,
    stop: StopFlag | None = None,
    log: Log = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> CompareOutcome:
    """Run every strategy (every variant of a ``grid``) with every seed, then write the
    comparison report into ``out_dir``.

    :func:`plan`, then every folder checked and the data loaded before any training (a folder
    whose run has other settings or other data is refused then, unless ``options.force``);
    finished runs with the planned identity are reused, the others given to ``executor``
    (:class:`SerialExecutor` by default; interrupted ones continue with ``options.resume``);
    a run that fails is recorded and the others go on.
    """
    out_dir, options = Path(out_dir), options or RunOptions()
    specs = plan(benchmark, strategies, seeds, overrides, out_dir, grid, stop)
    check_plan(specs, out_dir, options.force)
    with output_folder(out_dir):
        check_plan_data(specs, provider, options.force)
        return _compare_planned(specs, provider, out_dir, options, executor, stop, log)


def _compare_planned(
    specs: Sequence[RunSpec], provider: DataProvider, out_dir: Path, options: RunOptions,
    executor: Executor | None, stop: StopFlag | None, log: Log,
) -> CompareOutcome:
    """Reuse or run the specs of a checked plan and write the report into ``out_dir`` (whose
    lock the caller holds throughout).

    Each run folder is locked while it is looked at (refused at once if another process
    holds it, before any run trains) and again while its run runs, by the executor: never
    all of them at once, so a grid of thousands of runs keeps a few files open, not one
    per run."""
    from .report import write_comparison

    results: list[dict[str, Any]] = []
    todo: list[RunSpec] = []
    if options.force:
        remove_outputs(out_dir, comparison_output_names())
    for spec in specs:
        with output_folder(spec.folder):
            old = None if options.force else reusable(spec, provider)
        if old is None:
            todo.append(spec)
            continue
        results.append(old)
        if log:
            log(f"{spec.stamp}: finished before, reused")
    # per-run plots are left to `lifelong-kd plot RUN_DIR`: the comparison has its own
    executor = executor or SerialExecutor()
    outcomes = executor.run(todo, provider, replace(options, plots=False), stop=stop, log=log)
    results += [o.result for o in outcomes if o.result is not None]
    failures = [f for o in outcomes if (f := o.failure()) is not None]
    write_comparison(results, out_dir, failures=failures,
                     formats=COMPARISON_FORMATS if options.plots else ())
    return CompareOutcome(results=results, failures=failures)


def compare_suite(
    members: Sequence[SuiteMember | str],
    out_dir: Path,
    description: str = "",
    *,
    strategies: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    overrides: dict[str, Any],
    provider: DataProvider,
    options: RunOptions | None = None,
    executor: Executor | None = None,
    stop: StopFlag | None = None,
    log: Log = None,
    reports: dict[str, list[str]] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> list[CompareOutcome]:
    """``compare`` for each benchmark of a suite into ``out_dir/<name>`` (its name as
    presets give it: a file member's stem, so that a member given as a path stays inside
    ``out_dir``; a member table's ``name``), each with its own settings under ``overrides``;
    then one comparison per entry of ``reports`` over the runs of the members it lists
    (``out_dir/<report name>``), and an index report.md linking the reports and showing their
    average-accuracy plots. ``grid`` (``--grid``) goes to every member, over its own preset's.

    Every member's configurations (all strategies x seeds) are built and validated, every
    folder checked and every dataset loaded before any run trains."""
    out_dir, options = Path(out_dir), options or RunOptions()
    parts = _suite_members(members, out_dir)
    plans = {m.name: plan(m.benchmark, strategies, seeds, {**m.settings, **overrides},
                          out_dir / m.name, grid, stop) for m in parts}
    check_output_folder(out_dir)
    for name, specs in plans.items():
        check_plan(specs, out_dir / name, options.force)
    outcomes = []
    with output_folder(out_dir):
        for specs in plans.values():
            check_plan_data(specs, provider, options.force)
        for member in parts:
            if log:
                log(f"== {member.name}")
            with output_folder(out_dir / member.name):
                outcomes.append(_compare_planned(plans[member.name], provider,
                                                 out_dir / member.name, options, executor, stop,
                                                 log))
        _write_suite_report(out_dir, description, parts, outcomes, reports or {}, options)
    return outcomes


def _suite_members(members: Sequence[SuiteMember | str], out_dir: Path) -> list[SuiteMember]:
    """The members of a suite (a benchmark given by name: named as presets name it), refused
    when two would write into one folder of ``out_dir``."""
    parts = [m if isinstance(m, SuiteMember) else SuiteMember(m, benchmark_name(m)) for m in members]
    taken: dict[str, str] = {}
    for member in parts:
        if member.name in taken:
            raise ConfigError(f"the suite's members `{taken[member.name]}` and `{member.benchmark}` "
                              f"would both write into {out_dir / member.name}; give them different "
                              "names")
        taken[member.name] = member.benchmark
    return parts


def _write_suite_report(out_dir: Path, description: str, parts: Sequence[SuiteMember],
                        outcomes: Sequence[CompareOutcome], reports: dict[str, list[str]],
                        options: RunOptions) -> None:
    """The joint comparisons of ``reports`` (each over the runs of the members it lists, into
    ``out_dir/<report name>``) and the suite's index, ``out_dir/report.md``, which links every
    report and shows the members' average-accuracy plots."""
    from .report import markdown_text, write_comparison

    by_name = dict(zip((m.name for m in parts), outcomes, strict=True))
    lines = ["# Suite report", ""]
    if description:  # the preset's texts are escaped (markdown_text), its links quoted
        lines += [markdown_text(description), ""]
    for report, listed in reports.items():
        results = [r for m in listed for r in by_name[m].results]
        with output_folder(out_dir / report):
            write_comparison(results, out_dir / report,
                             formats=COMPARISON_FORMATS if options.plots else (),
                             failures=[f for m in listed for f in by_name[m].failures])
        lines += [f"## {markdown_text(report)} (members "
                  f"{', '.join(markdown_text(m) for m in listed)} together)", "",
                  f"Full report: [{markdown_text(report)}/report.md]({quote(report)}/report.md)",
                  ""]
    for member, outcome in zip(parts, outcomes, strict=True):
        name, link = markdown_text(member.name), quote(member.name)
        lines += [f"## {name}", "", f"Full report: [{name}/report.md]({link}/report.md)"]
        if (out_dir / member.name / "average_accuracy.png").is_file():
            lines += ["", f"![{name}: average accuracy]({link}/average_accuracy.png)"]
        if outcome.failures:
            lines += ["", f"{len(outcome.failures)} run(s) did not finish (see its report)."]
        lines.append("")
    write_text(out_dir / "report.md", "\n".join(lines))
