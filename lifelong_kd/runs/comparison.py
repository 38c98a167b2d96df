"""A comparison (:func:`compare`): the plan, every folder checked (:func:`check_plan`) and the
data loaded (:func:`check_plan_data`) before anything trains, the finished runs of the
planned identity reused (:func:`reusable`), the others given to an executor, and the
comparison report written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..folders import comparison_output_names, folder_status, output_folder, remove_outputs
from ..results import (
    RESULT,
    check_output_folder,
    identity_as_recorded,
    identity_differences,
    identity_of,
    read_result,
)
from .data import DataProvider, _listed, check_same_data
from .execution import RunOptions
from .executor import Executor, Log, SerialExecutor
from .planning import RunSpec, plan
from .signals import StopFlag

#: The formats of a comparison's plots (``RunOptions.plots = False``: none).
COMPARISON_FORMATS = ("png", "svg")


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
    from ..report import write_comparison

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
