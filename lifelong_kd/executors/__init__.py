"""Executors that run the specs of a plan in parallel: local processes and Ray.

Each has :class:`lifelong_kd.runs.SerialExecutor`'s meaning exactly; only *where* a run
trains changes, never what it computes (the same seed gives the same matrix, bit for bit on
the CPU, whatever runs it):

- one :class:`~lifelong_kd.runs.Outcome` per spec, in the order of the specs;
- a run that fails is recorded (its error in one line) and the others go on;
- a failure to write (a full disk) asks every run to stop, then is raised in the driver as a
  :class:`~lifelong_kd.results.WriteError`;
- once ``stop.requested`` (the driver's :class:`~lifelong_kd.runs.StopFlag`, set by
  Ctrl-C/SIGTERM), the running runs stop after their current step (result.json says
  interrupted, the checkpoint is kept, so ``--resume`` continues them to the same matrix) and
  the runs not started are recorded as ``not run (interrupted)``.

The driver (the process that calls ``run``) holds a run folder's lock while its run is out
(and only then); a worker writes without taking it
(:func:`lifelong_kd.runs.run_in_held_folder`).

:class:`ProcessExecutor` (``compare --jobs N``): N worker processes on this machine,
started with *spawn* (a forked torch misbehaves with threads), each with its share of the
cores (``torch.set_num_threads(max(1, cores // N))`` unless ``threads`` is given), each
reading a dataset once for all its runs. Workers ignore SIGINT (a terminal sends it to the
whole process group; the driver decides), stop their run after the current step when the
driver asks or dies, and a worker that dies fails only the run it held.

:class:`RayExecutor` (``compare --executor ray``): each run a Ray task; workers need not
share a file system with the driver: a task runs into a local temporary folder that starts
with the run folder's files (so resuming and refusing work as in serial) and sends back what
changed, which the driver writes atomically into the run folder.

The package: :mod:`.shared` (what both use: cores and threads, :func:`attempt`, the run
folders held and the outcomes collected around an executor's loop), :mod:`.processes`
(:class:`ProcessExecutor` and its workers), :mod:`.ray_cluster` (:class:`RayExecutor`, its
task, stop actor and file shipping); here, :func:`make_executor` chooses one.

The package imports :mod:`lifelong_kd.runs` (and so torch) and Ray inside its functions
only: a worker process sets its threads and GPU before torch is imported, Ray's stop actor
starts without torch, and the command line starts fast.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError, UserError
from .processes import ProcessExecutor, visible_gpus, worker_gpu
from .ray_cluster import (
    RAY_RETRIES,
    RayExecutor,
    apply_changes,
    folder_changes,
    ray_fit_error,
    run_files,
    worker_data_dir,
)
from .shared import NOT_RUN, attempt, available_cores, check_threads, threads_per_run

if TYPE_CHECKING:
    from ..runs import DataProvider, Executor, Log, Outcome, RunOptions, RunSpec, StopFlag

#: The executors ``compare --executor`` knows.
EXECUTORS = ("serial", "processes", "ray")


class _SerialWithThreads:
    """:class:`runs.SerialExecutor` with ``threads`` torch threads while it runs."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]:
        import torch

        from ..runs import SerialExecutor

        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return SerialExecutor().run(specs, provider, options, stop=stop, log=log)
        finally:
            torch.set_num_threads(old)


def make_executor(name: str, jobs: int = 1, ray_address: str | None = None,
                  threads: int | None = None) -> Executor:
    """The executor of ``compare --executor NAME --jobs N --ray-address A --threads T``.

    ``serial`` with ``jobs`` 1 runs in this process (:class:`runs.SerialExecutor`), with more
    it is :class:`ProcessExecutor` (``--jobs N`` alone means processes); ``processes`` is
    :class:`ProcessExecutor` (``jobs`` workers); ``ray`` is :class:`RayExecutor`, which
    takes no ``jobs`` (Ray runs as many as its CPUs allow). A bad value is refused naming it
    and what is valid, before anything runs: ``threads`` above this machine's cores for a
    run here or in a worker process (:func:`check_threads`); for Ray, more CPUs than the
    largest node of the cluster has is refused once Ray is reached (:func:`ray_fit_error`).
    """
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor `{name}`; choose one of: {', '.join(EXECUTORS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be a whole number of at least 1, not {jobs!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ConfigError(f"--threads must be a whole number of at least 1, not {threads!r}")
    if ray_address is not None and name != "ray":
        raise ConfigError(f"--ray-address {ray_address} is for --executor ray, not `{name}`")
    if name == "ray":
        if jobs != 1:
            raise ConfigError(f"--jobs {jobs} does not apply to --executor ray (Ray runs as many "
                              "runs at once as its CPUs allow); set each run's CPUs with "
                              "--threads")
        if importlib.util.find_spec("ray") is None:
            raise UserError("--executor ray needs Ray: pip install 'lifelong-kd[ray]'")
        return RayExecutor(ray_address, threads)
    check_threads(threads)
    if name == "processes" or jobs > 1:
        return ProcessExecutor(jobs, threads)
    from ..runs import SerialExecutor

    return SerialExecutor() if threads is None else _SerialWithThreads(threads)



__all__ = ["EXECUTORS", "NOT_RUN", "RAY_RETRIES", "ProcessExecutor", "RayExecutor",
           "apply_changes", "attempt", "available_cores", "check_threads", "folder_changes",
           "make_executor", "ray_fit_error", "run_files", "threads_per_run", "visible_gpus",
           "worker_data_dir", "worker_gpu"]
