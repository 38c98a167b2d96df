"""One run into its folder: :func:`execute` holds the folder's lock, :func:`run_in_held_folder`
runs into a folder whose lock is held on the run's behalf (by :func:`execute`, or by the
``compare`` that gave the run to a worker process or a Ray task).

The run in named steps: the run the folder holds is checked (:func:`_result_to_resume`), the
data loaded, the state restored from the checkpoint (:func:`_resumed_state`) or the earlier
outputs removed, the stream trained with a checkpoint after every task (:func:`_train`,
:class:`_OnTaskEnd`), and the result built (:func:`_run_result`, with what the strategy
declares for the readers of results and the run's costs) and written (:func:`_write_run`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoints import load_checkpoint, restore_checkpoint, write_checkpoint
from ..config import RunConfig
from ..errors import UserError
from ..folders import CHECKPOINT, folder_status, output_folder, remove_outputs, run_output_names
from ..results import (
    CURVES,
    RESULT,
    WriteError,
    attach_curves,
    build_result,
    curves_csv,
    identity_differences,
    matrix_csv,
    read_result,
    write_json,
    write_text,
)
from ..strategies import strategy_preset
from ..strategies.options import option_defaults
from .data import DataProvider, _listed, check_same_data
from .planning import RunSpec


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
    from ..data.sources import subset
    from ..data.streams import build_stream

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
    from ..engine import Diverged, Interrupted, train_stream

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
        from ..plots import run_plots

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
    from ..engine import measure_costs

    if state is None:
        return None
    return measure_costs(config, stream, state, latency=status == "finished")
