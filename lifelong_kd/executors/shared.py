"""What both parallel executors share: the cores and threads of a run, one run attempted in
a folder the driver holds, and the bookkeeping around an executor's own loop
(:class:`_Collected`: an outcome per spec, the run folders held, a failure to write raised
at the end).

Nothing here imports torch or Ray at import time (:mod:`lifelong_kd.executors`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, UserError
from ..results import WriteError

if TYPE_CHECKING:
    from ..runs import DataProvider, Log, Outcome, RunOptions, RunSpec, StopFlag

#: How a run that a stop kept from starting is recorded (as in :class:`runs.SerialExecutor`).
NOT_RUN = "not run (interrupted)"
#: How often the drivers look at the stop flag (seconds).
POLL_SECONDS = 0.2


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_run(jobs: int, threads: int | None = None, cores: int | None = None) -> int:
    """torch threads of each of ``jobs`` runs at once: ``threads`` if given, else
    ``max(1, cores // jobs)`` (every core busy, none shared)."""
    if threads is not None:
        return threads
    return max(1, (cores or available_cores()) // jobs)


def check_threads(threads: int | None, cores: int | None = None) -> None:
    """Refuse ``--threads`` above this machine's ``cores`` (default :func:`available_cores`)
    for a run in this process or in a worker process: torch cannot start that many threads
    (100000 of them end in a segmentation fault or "can't start new thread"), and more
    threads than cores never make one run faster. Several runs at once may together ask for
    more than the cores (``--jobs 2 --threads 2`` on 2 cores): that only shares them."""
    cores = cores or available_cores()
    if threads is not None and threads > cores:
        raise ConfigError(f"--threads {threads} is more than this machine's {cores} cores; "
                          f"use at most {cores}")



def attempt(spec: RunSpec, provider: DataProvider, options: RunOptions,
            stop: Callable[[], bool]) -> tuple[str, Any]:
    """Run ``spec`` into its (existing, held) folder as :class:`runs.SerialExecutor` runs one:
    ``("result", result)``, ``("error", one line)`` for a run that failed,
    ``("write-error", message)`` for a failure to write, or ``("not-run", NOT_RUN)`` when a
    stop was requested before it started."""
    from .. import runs

    if stop():
        return "not-run", NOT_RUN
    try:
        return "result", runs.run_in_held_folder(spec, provider, options, stop)
    except WriteError as exc:
        return "write-error", str(exc)
    except UserError as exc:
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - one failing run must not lose the others
        return "error", f"{type(exc).__name__}: {exc}"


class _Folders:
    """The run folders the driver holds (created and locked with :func:`folders.output_folder`,
    each while its run is out)."""

    def __init__(self) -> None:
        self._held: dict[int, contextlib.ExitStack] = {}

    def take(self, n: int, spec: RunSpec) -> str | None:
        """Hold spec ``n``'s folder; the error (one line) when it cannot be held."""
        from ..folders import output_folder

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(output_folder(spec.folder))
        except UserError as exc:
            stack.close()
            return str(exc)
        self._held[n] = stack
        return None

    def release(self, n: int) -> None:
        stack = self._held.pop(n, None)
        if stack is not None:
            stack.close()

    def release_all(self) -> None:
        for n in list(self._held):
            self.release(n)


def _log_failure(log: Log, spec: RunSpec, error: str | None) -> None:
    if log and error:
        log(f"  failed: {spec.stamp}: {error}")



class _Collected:
    """What both executors do around their own loop over one :meth:`run`'s ``specs``: hold
    a run's folder before it goes out (:meth:`take`) and log it (:meth:`started`), record
    what came back (:meth:`record`: the folder released, a result or an error kept in the
    spec's place, the first failure to write kept for the end), and end: every folder
    released (leaving the ``with`` block), then :meth:`outcomes` (one per spec, in order;
    the failure to write raised as a :class:`WriteError`)."""

    def __init__(self, specs: Sequence[RunSpec], log: Log) -> None:
        self.specs, self.log = specs, log
        self._outcomes: list[Outcome | None] = [None] * len(specs)
        self.folders = _Folders()
        self.write_error: str | None = None

    def __enter__(self) -> _Collected:
        return self

    def __exit__(self, *exc: object) -> None:
        self.folders.release_all()

    def stopping(self, stop: StopFlag | None) -> bool:
        """Whether the runs are to stop: a failure to write, or a stop requested."""
        return self.write_error is not None or (stop is not None and stop.requested)

    def take(self, n: int) -> bool:
        """Hold spec ``n``'s folder for its run; False (its outcome the error, logged) when
        it cannot be held."""
        error = self.folders.take(n, self.specs[n])
        if error is not None:
            self.record(n, "error", error)
        return error is None

    def started(self, n: int) -> None:
        """Log that spec ``n``'s run is out."""
        if self.log:
            spec = self.specs[n]
            self.log(f"[{n + 1}/{len(self.specs)}] {spec.identity.title} -> {spec.folder}")

    def record(self, n: int, kind: str, payload: Any) -> None:
        """How spec ``n``'s run ended (:func:`attempt`'s pair; ``("not-run", NOT_RUN)`` for
        one a stop kept from going out): its folder is released (if held); a result or an
        error (logged unless ``not-run``) is its outcome, a failure to write is kept (the
        first one) for :meth:`outcomes` to raise."""
        from ..runs import Outcome

        self.folders.release(n)
        if kind == "write-error":
            self.write_error = self.write_error or payload
        elif kind == "result":
            self._outcomes[n] = Outcome(self.specs[n], payload)
        else:
            self._outcomes[n] = Outcome(self.specs[n], error=payload)
            if kind == "error":
                _log_failure(self.log, self.specs[n], payload)

    def outcomes(self) -> list[Outcome]:
        """One outcome per spec, in order; a failure to write is raised instead."""
        if self.write_error is not None:
            raise WriteError(self.write_error)
        assert all(o is not None for o in self._outcomes)
        return [o for o in self._outcomes if o is not None]
