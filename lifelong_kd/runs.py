"""Running one configuration into an output folder, and many into a comparison.

A run folder holds ``result.json``, ``accuracy_matrix.csv``, the run's plots and, while the
run is unfinished, ``checkpoint.pt`` (saved after every task). ``resume=True`` continues from
that checkpoint; the finished matrix is the one an uninterrupted run gives, bit for bit on
the CPU. SIGINT/SIGTERM stop a run cleanly after the current step (a second SIGINT exits at
once); a NaN loss stops it as ``diverged``. Either way result.json keeps the finished rows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, build_config
from .errors import UserError
from .results import atomic_path, build_result, matrix_csv, read_result, write_json, write_text

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


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
    """Run ``config`` into ``out_dir`` and return its result.json as a dict."""
    import torch

    from .data.sources import subset
    from .data.streams import build_stream
    from .engine import Diverged, Interrupted, restore_state, train_stream

    start = time.perf_counter()
    out_dir = Path(out_dir)
    status = folder_status(out_dir)
    config_dict = config.to_dict()
    if status != "empty" and not (force or resume):
        hint = "--resume to continue it" if status != "finished" else "--resume (nothing to do)"
        raise UserError(
            f"{out_dir} already holds a {status} run; use --force to start again or {hint}"
        )
    if resume and status == "finished" and not force:
        old = read_result(out_dir)
        if old.get("config") != config_dict:
            raise UserError(f"{out_dir} holds a finished run with a different configuration; "
                            "use --force to start again or another --out")
        return old
    if force:
        for name in (RESULT, CHECKPOINT):
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)

    ds = provider.get(config)
    ds = subset(ds, config.data.train_subset, config.data.test_subset)
    stream = build_stream(config, ds)
    state = None
    ckpt = out_dir / CHECKPOINT
    resumed_from = 0
    if resume and ckpt.is_file():
        try:
            saved = torch.load(ckpt, map_location=config.train.device, weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the same problem
            raise UserError(f"cannot read the checkpoint {ckpt} ({exc}); use --force") from None
        if saved.get("config") != config_dict:
            raise UserError(f"the checkpoint {ckpt} was made with a different configuration; "
                            "use the same settings to resume, or --force to start again")
        state = restore_state(config, stream, saved["state"])
        resumed_from = state.next_task

    def save_checkpoint(st: Any) -> None:
        if st.next_task >= len(stream) and not keep_checkpoints:
            return
        with atomic_path(ckpt) as tmp:
            torch.save({"config": config_dict, "state": st.checkpoint()}, tmp)

    data_info = {
        "dataset": ds.name, "path": ds.path, "fingerprint": ds.fingerprint,
        "n_train": int(len(ds.train_y)), "n_test": int(len(ds.test_y)),
        "train_subset": config.data.train_subset, "test_subset": config.data.test_subset,
    }
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
    write_json(out_dir / RESULT, result)
    if rows:
        write_text(out_dir / "accuracy_matrix.csv", matrix_csv(rows))
    if plots and rows:
        from .plots import run_plots

        run_plots(result, out_dir)
    if final_status == "finished" and not keep_checkpoints:
        with contextlib.suppress(FileNotFoundError):
            ckpt.unlink()
    return result


@dataclass
class CompareOutcome:
    """Results of a comparison, and the runs that failed (with their error)."""

    results: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    out_dir: Path


def run_folder(out_dir: Path, strategy: str, seed: int) -> Path:
    """Where ``compare`` puts the run of ``strategy`` with ``seed``."""
    safe = strategy.replace(":", "_").replace("/", "_")
    return Path(out_dir) / safe / f"seed-{seed}"


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

    Every configuration is validated before any training. Finished runs already in
    ``out_dir`` with the same configuration are reused; interrupted ones are continued with
    ``resume``; a run that fails is recorded and the others go on.
    """
    base = build_config(benchmark, None, overrides)
    strategies = list(strategies or base.strategies)
    seeds = list(seeds if seeds is not None else base.seeds)
    if not strategies or not seeds:
        raise UserError("compare needs at least one strategy and one seed")
    configs = [(s, seed, build_config(benchmark, s, overrides, seed))
               for s in strategies for seed in seeds]
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    total = len(configs)
    for n, (strategy, seed, config) in enumerate(configs, 1):
        folder = run_folder(out_dir, strategy, seed)
        status = folder_status(folder)
        if stop is not None and stop.requested:
            failures.append({"strategy": strategy, "seed": seed, "error": "not run (interrupted)"})
            continue
        if status == "finished" and not force:
            old = read_result(folder)
            if old.get("config") == config.to_dict():
                if log:
                    log(f"[{n}/{total}] {strategy} seed {seed}: finished before, reused")
                results.append(old)
                continue
            failures.append({"strategy": strategy, "seed": seed, "error":
                             f"{folder} holds a finished run with a different configuration; "
                             "use --force to run it again or another --out"})
            continue
        if log:
            log(f"[{n}/{total}] {strategy} seed {seed} -> {folder}")
        try:
            # per-run plots are left to `lifelong-kd plot RUN_DIR`: the comparison has its own
            res = execute_run(
                config, provider, folder, progress=progress, resume=resume, force=force,
                keep_checkpoints=keep_checkpoints, stop=stop, plots=False,
            )
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
    from .report import write_comparison

    write_comparison(results, Path(out_dir), failures=failures)
    return CompareOutcome(results=results, failures=failures, out_dir=Path(out_dir))


def compare_suite(
    members: list[str], out_dir: Path, description: str = "", **kwargs: Any
) -> list[CompareOutcome]:
    """``compare`` for each benchmark of a suite into ``out_dir/<benchmark>``, then an index
    report.md linking the members' reports and showing their average-accuracy plots."""
    outcomes = []
    log = kwargs.get("log")
    for member in members:
        if log:
            log(f"== {member}")
        outcomes.append(compare(member, out_dir=Path(out_dir) / member, **kwargs))
    lines = ["# Suite report", ""]
    if description:
        lines += [description, ""]
    for member, outcome in zip(members, outcomes, strict=True):
        lines += [f"## {member}", "", f"Full report: [{member}/report.md]({member}/report.md)"]
        if (Path(out_dir) / member / "average_accuracy.png").is_file():
            lines += ["", f"![{member}: average accuracy]({member}/average_accuracy.png)"]
        if outcome.failures:
            lines += ["", f"{len(outcome.failures)} run(s) did not finish (see its report)."]
        lines.append("")
    write_text(Path(out_dir) / "report.md", "\n".join(lines))
    return outcomes
