"""Running one configuration into an output folder, and many into a comparison.

A run folder holds ``result.json``, ``accuracy_matrix.csv``, the run's plots and, while the
run is unfinished, ``checkpoint.pt`` (saved after every task). ``resume=True`` continues from
that checkpoint; the finished matrix is the one an uninterrupted run gives, bit for bit on
the CPU. SIGINT/SIGTERM stop a run cleanly after the current step (a second SIGINT exits at
once); a NaN loss stops it as ``diverged``. Either way result.json keeps the finished rows.

Nothing is mixed or lost:

- A run's identity is its configuration *and* its data (the fingerprint of the arrays read
  from disk): a checkpoint records both, and resuming, or reusing a finished run in
  ``compare``, on other data or with other settings is refused, naming both.
- A checkpoint is loaded with ``torch.load(weights_only=True)``: it holds tensors and plain
  data only, so unpickling it cannot run code; one of the wrong structure is refused.
- One process per folder: a run folder, and a comparison folder with every run folder in it,
  is locked (``filelock``, a ``.lifelong-kd.lock`` file, never waited for) while a command
  works in it; a second command refuses at once.
- ``force=True`` removes the outputs this project wrote in the folder before (result.json,
  accuracy_matrix.csv, the checkpoint, the plots in every format; for a comparison its
  report.md, CSVs and plots) and nothing else. A refused command changes nothing, and a folder
  that a failed command created (e.g. the data could not be loaded) is removed again.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import UserError
from .presets import build_config
from .results import (
    WriteError,
    atomic_path,
    build_result,
    check_output_folder,
    matrix_csv,
    read_result,
    write_json,
    write_text,
)

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
#: The lock file of a run or comparison folder (see :func:`locked`).
LOCK = ".lifelong-kd.lock"
#: Every format ``lifelong-kd plot --formats`` writes.
PLOT_FORMATS = ("png", "svg", "pdf")
#: The plots of one run (plots.run_plots) and of a comparison (report.comparison_plots, each
#: also with a matrix-kind suffix in class-il).
RUN_PLOTS = ("accuracy_matrix", "task_accuracy", "average_accuracy", "forgetting")
COMPARISON_PLOTS = ("accuracy_matrices", "average_accuracy", "task_accuracy", "forgetting")
MATRIX_KIND_SUFFIXES = ("", "_task_aware", "_task_agnostic")
RUN_FILES = (RESULT, "accuracy_matrix.csv", CHECKPOINT)
COMPARISON_FILES = ("report.md", "runs.csv", "summary.csv", "paired.csv", "matrices.csv")


class StopFlag:
    """Set by the first SIGINT/SIGTERM; the engine polls it between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def stop_on_signals(quiet: bool = False) -> Iterator[StopFlag]:
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

    def get(self, config: RunConfig) -> Any:
        from .data.sources import load_dataset

        key = (config.data.dataset, config.data.path)
        if key not in self._cache:
            self._cache[key] = load_dataset(config.data.dataset, self.data_dir, self.offline,
                                            config.data.path, progress=self.progress)
        return self._cache[key]


# ------------------------------------------------------------- folders: lock, create, clean


#: Locks this process holds, by folder: taking a folder's lock again (``compare`` holds every
#: run folder's, then runs each) re-enters it instead of being refused by our own lock.
_HELD: dict[str, Any] = {}


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the lock of ``folder`` (which must exist) while the block runs.

    Another process holding it is refused at once (a timeout of 0, never a wait): two
    commands writing into one folder would silently lose one result.
    """
    from filelock import FileLock, Timeout

    key = os.path.abspath(folder)
    lock = _HELD.get(key)
    if lock is None:
        lock = FileLock(os.path.join(key, LOCK), timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{folder} is in use by another lifelong-kd process (it holds "
                        f"{Path(folder) / LOCK}); wait for it to finish or choose another --out"
                        ) from None
    except OSError as exc:
        raise UserError(f"cannot write in the output folder {folder}: "
                        f"{exc.strerror or exc}; choose another --out") from None
    _HELD[key] = lock
    try:
        yield
    finally:
        lock.release()
        if not lock.is_locked:
            _HELD.pop(key, None)


def _holds_only_the_lock(folder: Path) -> bool:
    try:
        return [p.name for p in folder.iterdir()] == [LOCK]
    except OSError:
        return False


@contextlib.contextmanager
def output_folder(folder: Path) -> Iterator[Path]:
    """Create ``folder`` (and its missing parents) if needed and hold its lock.

    On the way out, the folders this call created are removed again when they hold nothing
    but the lock file: a command that failed before writing anything (the data could not be
    loaded, a check refused it) or a comparison's run that never started leaves no empty
    folder behind.
    """
    folder = Path(folder)
    check_output_folder(folder)
    created = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        created.append(p)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {folder}: {exc.strerror or exc}; "
                        "choose another --out") from None
    try:
        with locked(folder):
            try:
                yield folder
            finally:
                if created and _holds_only_the_lock(folder):
                    with contextlib.suppress(OSError):
                        (folder / LOCK).unlink()
    finally:
        for p in created:  # the deepest first; a folder that holds anything stays
            with contextlib.suppress(OSError):
                p.rmdir()


def run_output_names() -> list[str]:
    """The files a run writes into its folder: what ``--force`` removes."""
    return [*RUN_FILES, *(f"{p}.{f}" for p in RUN_PLOTS for f in PLOT_FORMATS)]


def comparison_output_names() -> list[str]:
    """The files a comparison writes into its folder: what ``compare --force`` removes."""
    return [*COMPARISON_FILES, *(f"{p}{k}.{f}" for p in COMPARISON_PLOTS
                                 for k in MATRIX_KIND_SUFFIXES for f in PLOT_FORMATS)]


def remove_outputs(folder: Path, names: list[str]) -> None:
    """Remove the files ``names`` from ``folder``, and the temporary files an interrupted
    atomic write of them left (``.<name>.*.tmp``); nothing else."""
    folder = Path(folder)
    for name in names:
        paths = [folder / name,
                 *map(Path, glob.glob(os.path.join(glob.escape(str(folder)),
                                                   f".{glob.escape(name)}.*.tmp")))]
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise UserError(f"cannot remove the old output {path}: "
                                f"{exc.strerror or exc}") from None


# ------------------------------------------------------------------- identity: config, data


def _plain(value: Any) -> Any:
    """Tuples as lists, as in result.json (the configuration read back from JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(recorded: Any, current: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between a recorded configuration and ``current``,
    each as ``key = <recorded> there, <current> now``; empty when they are the same."""
    if not isinstance(recorded, dict):
        return ["no configuration recorded"]
    absent = "(absent)"
    a, b = _flat(_plain(recorded)), _flat(_plain(current))
    return [f"{k} = {json.dumps(a.get(k, absent))} there, {json.dumps(b.get(k, absent))} now"
            for k in sorted(set(a) | set(b)) if a.get(k, absent) != b.get(k, absent)]


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


# ------------------------------------------------------------------------------ checkpoints


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_checkpoint(ckpt: Path, device: str) -> dict[str, Any]:
    """Read ``checkpoint.pt`` as tensors and plain data only (``weights_only=True``: an
    object that would run code when unpickled is refused, never built)."""
    import torch

    again = "use --force to start again"
    try:
        saved = torch.load(ckpt, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"the checkpoint {ckpt} holds more than tensors and plain data, so it "
                        f"was not loaded (unpickling it could run code); {again}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the same problem
        raise UserError(f"cannot read the checkpoint {ckpt} ({type(exc).__name__}: "
                        f"{_one_line(exc)}); {again}") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("config"), dict)
            and isinstance(saved.get("state"), dict)):
        raise UserError(f"the checkpoint {ckpt} has the wrong structure (expected a table with "
                        f"`config`, `data` and `state`); {again}")
    return saved


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def checkpoint_problem(state: dict[str, Any], n_tasks: int) -> str | None:
    """What is wrong with a checkpoint's ``state`` for a stream of ``n_tasks`` tasks (types
    of the entries present, and rows that fit), or None. Missing entries are reported by
    :func:`restore_checkpoint`."""
    import torch

    kinds: dict[str, tuple[type, ...]] = {
        "model": (dict,), "strategy": (dict,), "generator": (torch.Tensor,),
        "torch_rng": (torch.Tensor,), "next_task": (int,), "rows": (list,),
        "rows_task_aware": (list,), "initial": (list,), "initial_task_aware": (list,),
        "train_seconds": (int, float), "eval_seconds": (int, float),
        "optimizer_state": (dict, type(None)),
    }
    for key, kind in kinds.items():
        if key in state and (not isinstance(state[key], kind) or isinstance(state[key], bool)):
            return f"`{key}` is a {type(state[key]).__name__}"
    if isinstance(state.get("model"), dict):
        for name, value in state["model"].items():
            if not isinstance(value, torch.Tensor):
                return f"the model's `{name}` is a {type(value).__name__}, not a tensor"
    if "next_task" in state and not 0 <= state["next_task"] <= n_tasks:
        return f"`next_task` = {state['next_task']} is outside 0..{n_tasks}"
    for key in ("rows", "rows_task_aware"):
        rows = state.get(key)
        if rows is None:
            continue
        if "next_task" in state and len(rows) != state["next_task"]:
            return f"{len(rows)} `{key}` for `next_task` = {state['next_task']}"
        if not all(isinstance(r, list) and len(r) == n_tasks and all(map(_is_number, r))
                   for r in rows):
            return f"`{key}` are not rows of {n_tasks} numbers"
    for key in ("initial", "initial_task_aware"):
        values = state.get(key)
        if values is not None and (len(values) not in (0, n_tasks)
                                   or not all(map(_is_number, values))):
            return f"`{key}` is not a list of {n_tasks} numbers"
    return None


def restore_checkpoint(ckpt: Path, config: RunConfig, stream: Any, state: dict[str, Any]) -> Any:
    """The engine's RunState from a checkpoint's ``state``, or one line saying what is wrong."""
    from .engine import restore_state

    again = "use --force to start again"
    problem = checkpoint_problem(state, len(stream))
    if problem is None:
        try:
            return restore_state(config, stream, state)
        except KeyError as exc:
            problem = f"no {exc}"
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            problem = f"{type(exc).__name__}: {_one_line(exc)}"
    raise UserError(f"the checkpoint {ckpt} has the wrong structure ({problem}); {again}")


# ------------------------------------------------------------------------------ one run


def folder_status(out_dir: Path) -> str:
    """``empty``, ``finished``, ``interrupted``, ``diverged`` or ``incomplete`` (a checkpoint
    without a final result, e.g. after SIGKILL)."""
    result = out_dir / RESULT
    if result.is_file():
        with contextlib.suppress(UserError):
            return str(read_result(result).get("status", "finished"))
        return "incomplete"
    if (out_dir / CHECKPOINT).is_file():
        return "incomplete"
    return "empty"


def execute_run(
    config: RunConfig,
    provider: DataProvider,
    out_dir: Path,
    *,
    progress: bool = True,
    resume: bool = False,
    force: bool = False,
    keep_checkpoints: bool = False,
    plots: bool = True,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Run ``config`` into ``out_dir`` and return its result.json as a dict.

    The folder is locked for the whole run and created only for it (removed again if the
    run fails before writing anything). ``resume`` continues from the checkpoint, or returns
    a finished result, when both the configuration and the data are the ones recorded;
    ``force`` starts again, removing the previous outputs once the data is loaded.
    """
    out_dir = Path(out_dir)
    with output_folder(out_dir):
        return _execute_locked(config, provider, out_dir, progress=progress, resume=resume,
                               force=force, keep_checkpoints=keep_checkpoints, plots=plots,
                               stop=stop)


def _execute_locked(
    config: RunConfig,
    provider: DataProvider,
    out_dir: Path,
    *,
    progress: bool,
    resume: bool,
    force: bool,
    keep_checkpoints: bool,
    plots: bool,
    stop: StopFlag | None,
) -> dict[str, Any]:
    import torch

    from .data.sources import subset
    from .data.streams import build_stream
    from .engine import Diverged, Interrupted, train_stream

    start = time.perf_counter()
    status = folder_status(out_dir)
    config_dict = config.to_dict()
    if status != "empty" and not (force or resume):
        hint = "--resume to continue it" if status != "finished" else "--resume (nothing to do)"
        raise UserError(
            f"{out_dir} already holds a {status} run; use --force to start again or {hint}"
        )
    old = None
    if resume and not force and (out_dir / RESULT).is_file():
        with contextlib.suppress(UserError):  # unreadable: the checkpoint decides
            old = read_result(out_dir)
        diff = config_differences(old.get("config"), config_dict) if old is not None else []
        if diff:
            raise UserError(f"{out_dir} holds a {status} run with a different configuration "
                            f"({_listed(diff)}); use --force to start again or another --out")

    full = provider.get(config)
    if old is not None:
        check_same_data(f"the {status} run in {out_dir}", old.get("data"), full,
                        "use the same --data-dir, or --force to start again")
        if status == "finished":
            return old
    ds = subset(full, config.data.train_subset, config.data.test_subset)
    stream = build_stream(config, ds)
    data_info = {
        "dataset": ds.name, "path": ds.path, "fingerprint": ds.fingerprint,
        "n_train": int(len(ds.train_y)), "n_test": int(len(ds.test_y)),
        "train_subset": config.data.train_subset, "test_subset": config.data.test_subset,
    }
    state = None
    ckpt = out_dir / CHECKPOINT
    resumed_from = 0
    if resume and not force and ckpt.is_file():
        saved = load_checkpoint(ckpt, config.train.device)
        diff = config_differences(saved["config"], config_dict)
        if diff:
            raise UserError(f"the checkpoint {ckpt} was made with a different configuration "
                            f"({_listed(diff)}); use the same settings to resume, or --force "
                            "to start again")
        check_same_data(f"the checkpoint {ckpt}", saved.get("data"), full,
                        "resume with the same --data-dir, or --force to start again")
        state = restore_checkpoint(ckpt, config, stream, saved["state"])
        resumed_from = state.next_task
    if state is None:  # a fresh start: no output of an earlier run may stay beside this one
        remove_outputs(out_dir, run_output_names())

    def save_checkpoint(st: Any) -> None:
        if st.next_task >= len(stream) and not keep_checkpoints:
            return
        payload = {"config": config_dict, "data": data_info, "state": st.checkpoint()}
        try:
            with atomic_path(ckpt) as tmp:
                buffer = io.BytesIO()  # written by Python's file I/O: a full disk is an OSError
                torch.save(payload, buffer)
                tmp.write_bytes(buffer.getbuffer())
        except WriteError as exc:
            kept = ("the last good checkpoint is kept: free some space, then continue with "
                    "--resume" if ckpt.is_file() else "free some space, then run again")
            raise WriteError(f"{exc}; {kept}") from None

    final_status, message = "finished", None
    holder: dict[str, Any] = {}

    def on_task_end(st: Any) -> None:
        holder["state"] = st
        save_checkpoint(st)

    try:
        state = train_stream(config, stream, state, progress=progress, on_task_end=on_task_end,
                             should_stop=stop)
    except Interrupted as exc:
        final_status, message = "interrupted", f"{exc}; resume with --resume"
    except Diverged as exc:
        final_status, message = "diverged", str(exc)
    state = holder.get("state", state)
    rows = state.rows if state is not None else []
    result = build_result(
        config=config_dict, scenario=stream.scenario,
        task_names=[t.name for t in stream.tasks],
        rows=rows,
        rows_task_aware=state.rows_task_aware if state is not None else [],
        initial=state.initial if state is not None else [],
        initial_task_aware=state.initial_task_aware if state is not None else [],
        timing={
            "total_seconds": time.perf_counter() - start,
            "train_seconds": state.train_seconds if state is not None else 0.0,
            "eval_seconds": state.eval_seconds if state is not None else 0.0,
            "resumed_from_task": resumed_from,
        },
        data=data_info, status=final_status, message=message,
    )
    try:
        write_json(out_dir / RESULT, result)
        if rows:
            write_text(out_dir / "accuracy_matrix.csv", matrix_csv(rows))
    except WriteError as exc:
        if not ckpt.is_file():
            raise
        raise WriteError(f"{exc}; the last checkpoint is kept: free some space, then continue "
                         "with --resume") from None
    if plots and rows:
        from .plots import run_plots

        run_plots(result, out_dir)
    if final_status == "finished" and not keep_checkpoints:
        with contextlib.suppress(FileNotFoundError):
            ckpt.unlink()
    return result


# ------------------------------------------------------------------------------ comparisons


@dataclass
class CompareOutcome:
    """Results of a comparison, and the runs that failed (with their error)."""

    results: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    out_dir: Path


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison: its strategy, seed, validated configuration and folder."""

    strategy: str
    seed: int
    config: RunConfig
    folder: Path


def run_folder(out_dir: Path, strategy: str, seed: int) -> Path:
    """Where ``compare`` puts the run of ``strategy`` with ``seed``."""
    safe = strategy.replace(":", "_").replace("/", "_")
    return Path(out_dir) / safe / f"seed-{seed}"


def plan_compare(
    benchmark: str,
    strategies: list[str] | None,
    seeds: list[int] | None,
    overrides: dict[str, Any],
    out_dir: Path,
) -> list[PlannedRun]:
    """Build and validate the configuration of every strategy x seed (no data, no files)."""
    base = build_config(benchmark, None, overrides)
    strategies = list(strategies or base.strategies)
    seeds = list(seeds if seeds is not None else base.seeds)
    if not strategies or not seeds:
        raise UserError("compare needs at least one strategy and one seed")
    return [PlannedRun(s, seed, build_config(benchmark, s, overrides, seed),
                       run_folder(out_dir, s, seed))
            for s in strategies for seed in seeds]


def _recorded(folder: Path) -> dict[str, Any] | None:
    """The readable result.json in ``folder`` (any status), else None."""
    if not (folder / RESULT).is_file():
        return None
    try:
        return read_result(folder)
    except UserError:  # unreadable: its run reports it
        return None


def check_plan(plan: list[PlannedRun], out_dir: Path, force: bool) -> None:
    """Before anything is loaded or written: every folder can be one, and (unless
    ``force``) every run folder that holds a result holds one of the same configuration."""
    check_output_folder(out_dir)
    mismatched: list[tuple[Path, list[str]]] = []
    for run in plan:
        check_output_folder(run.folder)
        old = None if force else _recorded(run.folder)
        if old is not None:
            diff = config_differences(old.get("config"), run.config.to_dict())
            if diff:
                mismatched.append((run.folder, diff))
    if mismatched:
        folder, diff = mismatched[0]
        more = f" (and {len(mismatched) - 1} more run folders)" if len(mismatched) > 1 else ""
        raise UserError(f"{folder}{more} holds a run with a different configuration "
                        f"({_listed(diff)}); use --force to run again with these settings, or "
                        "another --out")


def check_plan_data(plan: list[PlannedRun], provider: DataProvider, force: bool) -> None:
    """Load every dataset of ``plan`` (before any run trains) and, unless ``force``, refuse
    run folders whose result was made on other data."""
    for run in plan:
        provider.get(run.config)
    if force:
        return
    for run in plan:
        old = _recorded(run.folder)
        if old is not None:
            check_same_data(f"the {old.get('status', 'finished')} run in {run.folder}",
                            old.get("data"), provider.get(run.config),
                            "use the same --data-dir, or --force to run it again")


def compare(
    benchmark: str,
    strategies: list[str] | None,
    seeds: list[int] | None,
    overrides: dict[str, Any],
    provider: DataProvider,
    out_dir: Path,
    *,
    progress: bool = True,
    resume: bool = False,
    force: bool = False,
    keep_checkpoints: bool = False,
    stop: StopFlag | None = None,
    log: Any = None,
) -> CompareOutcome:
    """Run every strategy with every seed, then write the comparison report.

    Every configuration is validated, the folders checked and the data loaded before any
    training; a folder whose runs have other settings or other data is refused then, unless
    ``force``. Finished runs already in ``out_dir`` with the same configuration and data are
    reused; interrupted ones are continued with ``resume``; a run that fails is recorded and
    the others go on.
    """
    out_dir = Path(out_dir)
    plan = plan_compare(benchmark, strategies, seeds, overrides, out_dir)
    check_plan(plan, out_dir, force)
    with output_folder(out_dir):
        check_plan_data(plan, provider, force)
        return run_plan(plan, provider, out_dir, progress=progress, resume=resume, force=force,
                        keep_checkpoints=keep_checkpoints, stop=stop, log=log)


def run_plan(
    plan: list[PlannedRun],
    provider: DataProvider,
    out_dir: Path,
    *,
    progress: bool = True,
    resume: bool = False,
    force: bool = False,
    keep_checkpoints: bool = False,
    stop: StopFlag | None = None,
    log: Any = None,
) -> CompareOutcome:
    """Run (or reuse) the runs of a checked ``plan`` into ``out_dir`` and write its report,
    holding the lock of every run folder until the report is written."""
    from .report import write_comparison

    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    total = len(plan)
    with contextlib.ExitStack() as folders:
        for run in plan:
            folders.enter_context(output_folder(run.folder))
        if force:
            remove_outputs(out_dir, comparison_output_names())
        for n, run in enumerate(plan, 1):
            strategy, seed, config, folder = run.strategy, run.seed, run.config, run.folder
            if stop is not None and stop.requested:
                failures.append({"strategy": strategy, "seed": seed,
                                 "error": "not run (interrupted)"})
                continue
            if folder_status(folder) == "finished" and not force:
                old = read_result(folder)
                if not config_differences(old.get("config"), config.to_dict()):
                    if log:
                        log(f"[{n}/{total}] {strategy} seed {seed}: finished before, reused")
                    results.append(old)
                    continue
                failures.append({"strategy": strategy, "seed": seed, "error":
                                 f"{folder} holds a finished run with a different "
                                 "configuration; use --force to run it again or another --out"})
                continue
            if log:
                log(f"[{n}/{total}] {strategy} seed {seed} -> {folder}")
            try:
                # per-run plots are left to `lifelong-kd plot RUN_DIR`: the comparison has its own
                res = execute_run(
                    config, provider, folder, progress=progress, resume=resume, force=force,
                    keep_checkpoints=keep_checkpoints, stop=stop, plots=False,
                )
            except WriteError:
                raise  # a full disk or a read-only folder stops the comparison: one line
            except UserError as exc:
                failures.append({"strategy": strategy, "seed": seed, "error": str(exc)})
                if log:
                    log(f"  failed: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - one failing run must not lose the others
                failures.append({"strategy": strategy, "seed": seed,
                                 "error": f"{type(exc).__name__}: {exc}"})
                if log:
                    log(f"  failed: {type(exc).__name__}: {exc}")
                continue
            if res["status"] != "finished":
                failures.append({"strategy": strategy, "seed": seed,
                                 "error": f"{res['status']}: {res.get('message', '')}"})
            results.append(res)
        write_comparison(results, out_dir, failures=failures)
    return CompareOutcome(results=results, failures=failures, out_dir=out_dir)


def compare_suite(
    members: list[str],
    out_dir: Path,
    description: str = "",
    *,
    strategies: list[str] | None = None,
    seeds: list[int] | None = None,
    overrides: dict[str, Any],
    provider: DataProvider,
    force: bool = False,
    log: Any = None,
    **options: Any,
) -> list[CompareOutcome]:
    """``compare`` for each benchmark of a suite into ``out_dir/<benchmark>``, then an index
    report.md linking the members' reports and showing their average-accuracy plots.

    Every member's configurations (all strategies x seeds) are built and validated, every
    folder checked and every dataset loaded before any run trains."""
    out_dir = Path(out_dir)
    plans = {m: plan_compare(m, strategies, seeds, overrides, out_dir / m) for m in members}
    check_output_folder(out_dir)
    for member, plan in plans.items():
        check_plan(plan, out_dir / member, force)
    outcomes = []
    with output_folder(out_dir):
        for plan in plans.values():
            check_plan_data(plan, provider, force)
        for member in members:
            if log:
                log(f"== {member}")
            with output_folder(out_dir / member):
                outcomes.append(run_plan(plans[member], provider, out_dir / member,
                                         force=force, log=log, **options))
        lines = ["# Suite report", ""]
        if description:
            lines += [description, ""]
        for member, outcome in zip(members, outcomes, strict=True):
            lines += [f"## {member}", "",
                      f"Full report: [{member}/report.md]({member}/report.md)"]
            if (out_dir / member / "average_accuracy.png").is_file():
                lines += ["", f"![{member}: average accuracy]({member}/average_accuracy.png)"]
            if outcome.failures:
                lines += ["", f"{len(outcome.failures)} run(s) did not finish (see its report)."]
            lines.append("")
        write_text(out_dir / "report.md", "\n".join(lines))
    return outcomes
