"""``compare --jobs N``: :class:`ProcessExecutor`, N worker processes on this machine.

Workers are started with *spawn* (a forked torch misbehaves with threads) and run
:func:`_worker_main` by its import path, each with its share of the cores
(``torch.set_num_threads(max(1, cores // N))`` unless ``threads`` is given), each reading a
dataset once for all its runs. Workers ignore SIGINT (a terminal sends it to the whole
process group; the driver decides), stop their run after the current step when the driver
asks or dies, and a worker that dies fails only the run it held.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .shared import NOT_RUN, POLL_SECONDS, _Collected, attempt, check_threads, threads_per_run

if TYPE_CHECKING:
    from ..runs import DataProvider, Log, Outcome, RunOptions, RunSpec, StopFlag

#: How often a worker process looks whether its driver is still there (seconds).
WATCH_SECONDS = 0.5
#: Environment variables that size a worker's thread pools (read when torch is imported).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def worker_gpu(slot: int, devices: Sequence[str], visible: Sequence[str]) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` of worker ``slot``: GPU ``slot % len(visible)`` of the
    ``visible`` ones (their ids as this process sees them) when some run trains on
    ``cuda`` and more than one GPU is visible; else None (the worker sees what the driver
    sees). A run that names its GPU (``cuda:1``) keeps every GPU visible: it chose one."""
    uses_cuda = any(d.startswith("cuda") for d in devices)
    names_one = any(d.startswith("cuda:") for d in devices)
    if not uses_cuda or names_one or len(visible) < 2:
        return None
    return visible[slot % len(visible)]


def visible_gpus() -> list[str]:
    """The ids of the GPUs this process sees (``CUDA_VISIBLE_DEVICES`` entries if set)."""
    import torch

    count = torch.cuda.device_count()
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(i) for i in range(count)]
    return [s.strip() for s in given.split(",") if s.strip()][:count]


def _worker_main(conn: Any, env: dict[str, str], stop_event: Any, parent_pid: int,
                 threads: int) -> None:
    """A worker process: run the specs the driver sends, one at a time, until told to end
    (each dataset read once, by a :class:`runs.DataProvider` per data folder).

    ``env`` (threads, the GPU) is set before torch is imported. SIGINT is ignored (the
    driver decides); SIGTERM stops the run after its current step, then the worker ends (an
    idle worker ends at once). The run also stops when the driver sets ``stop_event`` or
    dies (its parent process changed); the worker ends when the driver's end of ``conn``
    closes.
    """
    os.environ.update(env)
    own_stop, running = threading.Event(), threading.Event()

    def on_sigterm(signum: int, frame: Any) -> None:
        own_stop.set()
        if not running.is_set():
            raise SystemExit(0)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_sigterm)
    import torch

    from ..runs import DataProvider

    torch.set_num_threads(threads)

    def watch_parent() -> None:
        while not own_stop.wait(WATCH_SECONDS):
            if os.getppid() != parent_pid:
                own_stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    providers: dict[tuple[str, bool], DataProvider] = {}

    def stop() -> bool:
        return own_stop.is_set() or stop_event.is_set()

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        running.set()
        n, spec, options, data_dir, offline = job
        if (data_dir, offline) not in providers:
            providers[data_dir, offline] = DataProvider(Path(data_dir), offline, progress=False)
        outcome = attempt(spec, providers[data_dir, offline], options, stop)
        with contextlib.suppress(OSError):  # a driver that is gone reads nothing
            conn.send((n, *outcome))
        if own_stop.is_set():  # the driver is gone, or this worker was told to end
            return
        running.clear()


class _Worker:
    """One worker process, its end of the pipe, and what it was started with (``key``)."""

    def __init__(self, ctx: Any, slot: int, env: Mapping[str, str], args: tuple[Any, ...]):
        self.slot, self.env = slot, dict(env)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, self.env, *args),
                                   daemon=True, name=f"lifelong-kd-worker-{slot}")
        self.process.start()
        child.close()

    def receive(self) -> tuple[str, Any]:
        """The outcome of the run it holds (:func:`attempt`'s pair), or an error if it died."""
        with contextlib.suppress(EOFError, OSError):
            if self.conn.poll():
                _, kind, payload = self.conn.recv()
                return kind, payload
        self.process.join(timeout=5)
        return "error", f"its worker process died (exit code {self.process.exitcode})"

    def close(self, wait: float) -> None:
        """Tell the worker to end and wait up to ``wait`` seconds (reading what it still
        sends: a run that was stopping), then kill it if it is still there."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        deadline = time.monotonic() + wait
        while self.process.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(EOFError, OSError):
                if self.conn.poll(0.1):
                    self.conn.recv()
            self.process.join(timeout=0.05)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class ProcessExecutor:
    """``compare --jobs N``: at most ``jobs`` runs at once, each in a worker process.

    Workers are started with *spawn* and reused for run after run (each keeps its own
    :class:`runs.DataProvider`, so a dataset is read once per worker; progress bars are off
    in workers). Each uses ``threads`` torch threads, by default ``max(1, cores // jobs)``
    with ``cores`` this process's CPU affinity (``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``
    are set so too). When runs train on ``cuda`` and several GPUs are visible, worker ``k``
    sees GPU ``k % count`` only (:func:`worker_gpu`).

    A worker that dies (killed, a segfault, out of memory) fails the run it held with
    ``its worker process died (exit code ...)``; a new worker takes its place for the rest,
    and ``--resume`` continues that run from its last checkpoint.

    The workers end with each :meth:`run`; used as a context manager (``with
    ProcessExecutor(4) as executor:``) they are kept from one ``run`` to the next until the
    block ends (a suite's members, say, then pay for starting them once).
    """

    def __init__(self, jobs: int, threads: int | None = None) -> None:
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, not {jobs}")
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be at least 1, not {threads}")
        check_threads(threads)
        self.jobs = jobs
        self.threads = threads_per_run(jobs, threads)
        self._workers: dict[int, _Worker] = {}
        self._kept = False
        self._ctx: Any = None
        self._stop_event: Any = None

    def __enter__(self) -> ProcessExecutor:
        self._kept = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._kept = False
        self.close()

    def close(self, wait: float = 5) -> None:
        """End the workers (a run still going is asked to stop, and waited for ``wait`` s)."""
        for w in self._workers.values():
            w.close(wait)
        self._workers.clear()

    def _worker(self, slot: int, env: dict[str, str]) -> _Worker:
        """The live worker of ``slot`` if it was started with ``env``, else a new one in its
        place."""
        w = self._workers.get(slot)
        if w is not None and w.process.is_alive() and w.env == env:
            return w
        if w is not None:
            w.close(0)
        args = (self._stop_event, os.getpid(), self.threads)
        w = self._workers[slot] = _Worker(self._ctx, slot, env, args)
        return w

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]:
        import multiprocessing
        import multiprocessing.connection

        if self._ctx is None:
            self._ctx = multiprocessing.get_context("spawn")
            self._stop_event = self._ctx.Event()
        self._stop_event.clear()
        devices = [s.config.train.device for s in specs]
        visible = visible_gpus() if any(d.startswith("cuda") for d in devices) else []
        envs = []
        for slot in range(min(self.jobs, len(specs))):
            env = {k: str(self.threads) for k in THREAD_VARIABLES}
            gpu = worker_gpu(slot, devices, visible)
            envs.append(env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": gpu})

        worker_options, data_dir = replace(options, progress=False), str(provider.data_dir)
        pending = deque(range(len(specs)))
        held: dict[int, int] = {}  # slot -> the spec its worker runs
        done = False
        with _Collected(specs, log) as collected:
            try:
                while True:
                    if collected.stopping(stop):
                        self._stop_event.set()
                        for n in pending:
                            collected.record(n, "not-run", NOT_RUN)
                        pending.clear()
                    for slot, env in enumerate(envs):  # hand out the next runs
                        while slot not in held and pending:
                            n = pending.popleft()
                            if not collected.take(n):
                                continue
                            job = (n, specs[n], worker_options, data_dir, provider.offline)
                            self._worker(slot, env).conn.send(job)
                            held[slot] = n
                            collected.started(n)
                    if not held:
                        break
                    busy = [self._workers[slot] for slot in held]
                    ready = set(multiprocessing.connection.wait(
                        [w.conn for w in busy] + [w.process.sentinel for w in busy],
                        POLL_SECONDS))
                    for w in busy:
                        if {w.conn, w.process.sentinel} & ready:
                            collected.record(held.pop(w.slot), *w.receive())
                done = True
            finally:
                if not done:  # an exception in the driver: stop the runs, wait for them, end
                    self._stop_event.set()
                    self.close(wait=60)
                elif not self._kept:
                    self.close()
        return collected.outcomes()

