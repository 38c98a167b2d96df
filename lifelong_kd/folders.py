"""Run and comparison folders: their lock, their creation and the outputs they hold.

- One process per folder: a run folder is locked (``filelock``, a ``.lifelong-kd.lock`` file,
  never waited for) while a command works in it, a comparison folder for the whole
  comparison and each of its run folders while it is looked at and while its run runs (one
  lock per run at a time, not one per run of the grid); a second command refuses at once.
- A folder that a failed command created (e.g. the data could not be loaded) is removed
  again (:func:`output_folder`).
- ``force`` removes the outputs this project wrote in the folder before (result.json,
  accuracy_matrix.csv, curves.csv, the checkpoint, the plots in every format; for a comparison its
  report.md, CSVs and plots) and nothing else (:func:`remove_outputs` of
  :func:`run_output_names` or :func:`comparison_output_names`).

Only the standard library, ``filelock`` and the result files (:mod:`lifelong_kd.results`): no
torch, so ``lifelong-kd report`` and ``plot`` lock a folder without loading any training code.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import UserError
from .results import CURVES, RESULT, check_output_folder, read_result

#: The checkpoint a run saves after every task (:mod:`lifelong_kd.checkpoints`).
CHECKPOINT = "checkpoint.pt"

#: The lock file of a run or comparison folder (see :func:`locked`).
LOCK = ".lifelong-kd.lock"
#: Every format ``lifelong-kd plot --formats`` writes.
PLOT_FORMATS = ("png", "svg", "pdf")
#: The plots of one run (plots.run_plots) and of a comparison (plots.comparison_plots, each
#: also with a matrix-kind suffix in class-il).
RUN_PLOTS = ("accuracy_matrix", "task_accuracy", "average_accuracy", "forgetting", "curves")
#: (``plots.CURVE_PLOTS``, made when the runs have curves, then ``plots.COST_PLOTS``, the last
#: two; a test keeps them in step.)
COMPARISON_PLOTS = ("accuracy_matrices", "average_accuracy", "task_accuracy", "forgetting",
                    "curves", "stability_gap",
                    "accuracy_vs_parameters", "accuracy_vs_flops")
MATRIX_KIND_SUFFIXES = ("", "_task_aware", "_task_agnostic")
RUN_FILES = (RESULT, "accuracy_matrix.csv", CURVES, CHECKPOINT)
COMPARISON_FILES = ("report.md", "runs.csv", "summary.csv", "paired.csv", "matrices.csv")


#: Locks this process holds, by folder: taking a folder's lock again (an executor takes a run
#: folder's, then ``execute`` takes it for the run) re-enters it instead of being refused by
#: our own lock.
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
        if exc.errno == errno.EMFILE:  # the process's limit, not the folder
            raise UserError(f"cannot open the lock file of {folder}: this process has as many "
                            f"files open as it may ({_open_file_limit()}, `ulimit -n`); raise "
                            "the limit, or run fewer runs at once") from None
        raise UserError(f"cannot write in the output folder {folder}: "
                        f"{exc.strerror or exc}; choose another --out") from None
    _HELD[key] = lock
    try:
        yield
    finally:
        lock.release()
        if not lock.is_locked:
            _HELD.pop(key, None)


def _open_file_limit() -> str:
    """The soft limit on this process's open files, as a number (or "its limit")."""
    try:
        import resource

        return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        return "its limit"


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
        _remove_empty(created)  # those made before the one that failed
        if exc.errno == errno.ENAMETOOLONG:
            longest = max(folder.parts, key=lambda p: len(os.fsencode(p)))
            raise UserError(f"cannot create the output folder {folder}: its name "
                            f"{longest[:40]}... is {len(os.fsencode(longest))} bytes, more than "
                            "the file system allows (a grid's folder is named after the settings "
                            "it varies: vary fewer keys at once, or shorter values)") from None
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
        _remove_empty(created)


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (the deepest first) where they exist and hold nothing."""
    for p in folders:
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


