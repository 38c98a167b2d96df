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

The driver (the process that calls ``run``) holds every run folder's lock while its run is
out (re-entering the one ``compare`` holds); a worker writes without taking it
(:func:`lifelong_kd.runs.execute_held`).

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

This module imports :mod:`lifelong_kd.runs` (and so torch) and Ray inside its functions
only: a worker process sets its threads and GPU before torch is imported, Ray's stop actor
starts without torch, and the command line starts fast.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, UserError
from .results import RESULT, WriteError, atomic_path

if TYPE_CHECKING:
    from .runs import DataProvider, Executor, Log, Outcome, RunOptions, RunSpec, StopFlag

#: The executors ``compare --executor`` knows.
EXECUTORS = ("serial", "processes", "ray")
#: How a run that a stop kept from starting is recorded (as in :class:`runs.SerialExecutor`).
NOT_RUN = "not run (interrupted)"
#: How often the drivers look at the stop flag and a Ray task at its driver's (seconds).
POLL_SECONDS = 0.2
RAY_POLL_SECONDS = 0.25
#: How often a worker process looks whether its driver is still there (seconds).
WATCH_SECONDS = 0.5
#: How often Ray runs a task again whose worker died.
RAY_RETRIES = 2
#: Environment variables that size a worker's thread pools (read when torch is imported).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


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


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def attempt(spec: RunSpec, provider: DataProvider, options: RunOptions,
            stop: Callable[[], bool]) -> tuple[str, Any]:
    """Run ``spec`` into its (existing, held) folder as :class:`runs.SerialExecutor` runs one:
    ``("result", result)``, ``("error", one line)`` for a run that failed,
    ``("write-error", message)`` for a failure to write, or ``("not-run", NOT_RUN)`` when a
    stop was requested before it started."""
    from . import runs

    if stop():
        return "not-run", NOT_RUN
    try:
        return "result", runs.execute_held(spec, provider, options, stop)
    except WriteError as exc:
        return "write-error", str(exc)
    except UserError as exc:
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - one failing run must not lose the others
        return "error", f"{type(exc).__name__}: {exc}"


class _Folders:
    """The run folders the driver holds (created and locked with :func:`runs.output_folder`,
    re-entering the locks a ``compare`` holds) while their runs are out."""

    def __init__(self) -> None:
        self._held: dict[int, contextlib.ExitStack] = {}

    def take(self, n: int, spec: RunSpec) -> str | None:
        """Hold spec ``n``'s folder; the error (one line) when it cannot be held."""
        from . import runs

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(runs.output_folder(spec.folder))
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


# --------------------------------------------------------------------------- local processes


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

    from .runs import DataProvider

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

        from .runs import Outcome

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
        outcomes: list[Outcome | None] = [None] * len(specs)
        pending = deque(range(len(specs)))
        folders = _Folders()
        held: dict[int, int] = {}  # slot -> the spec its worker runs
        write_error: str | None = None
        done = False
        try:
            while True:
                if write_error is not None or (stop is not None and stop.requested):
                    self._stop_event.set()
                    for n in pending:
                        outcomes[n] = Outcome(specs[n], error=NOT_RUN)
                    pending.clear()
                for slot, env in enumerate(envs):  # hand out the next runs
                    while slot not in held and pending:
                        n = pending.popleft()
                        error = folders.take(n, specs[n])
                        if error is not None:
                            outcomes[n] = Outcome(specs[n], error=error)
                            _log_failure(log, specs[n], error)
                            continue
                        job = (n, specs[n], worker_options, data_dir, provider.offline)
                        self._worker(slot, env).conn.send(job)
                        held[slot] = n
                        if log:
                            log(f"[{n + 1}/{len(specs)}] {specs[n].identity.title} -> "
                                f"{specs[n].folder}")
                if not held:
                    break
                busy = [self._workers[slot] for slot in held]
                ready = set(multiprocessing.connection.wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy], POLL_SECONDS))
                for w in busy:
                    if not {w.conn, w.process.sentinel} & ready:
                        continue
                    n, (kind, payload) = held.pop(w.slot), w.receive()
                    folders.release(n)
                    if kind == "write-error":
                        write_error = write_error or payload
                    elif kind == "result":
                        outcomes[n] = Outcome(specs[n], payload)
                    else:
                        outcomes[n] = Outcome(specs[n], error=payload)
                        if kind == "error":
                            _log_failure(log, specs[n], payload)
            done = True
        finally:
            if not done:  # an exception in the driver: stop the runs, wait for them, end
                self._stop_event.set()
                self.close(wait=60)
            elif not self._kept:
                self.close()
            folders.release_all()
        if write_error is not None:
            raise WriteError(write_error)
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]


# --------------------------------------------------------------------------- Ray


def run_files(folder: Path) -> dict[str, bytes]:
    """The run outputs (:func:`runs.run_output_names`) in ``folder``, as bytes by name."""
    from .runs import run_output_names

    files = {}
    for name in run_output_names():
        path = Path(folder) / name
        if path.is_file():
            files[name] = path.read_bytes()
    return files


def folder_changes(folder: Path, before: Mapping[str, bytes]
                   ) -> tuple[dict[str, bytes], list[str]]:
    """What a run changed in ``folder`` since it held the files ``before``: the run outputs
    written (new or different bytes) and the names removed."""
    now = run_files(folder)
    changed = {name: data for name, data in now.items() if before.get(name) != data}
    return changed, [name for name in before if name not in now]


def apply_changes(folder: Path, changed: Mapping[str, bytes], removed: Sequence[str]) -> None:
    """Write a run's changes into ``folder``: each file atomically (the checkpoint first,
    result.json last, so that a crash between leaves a resumable folder), then remove the
    outputs the run removed (:func:`runs.remove_outputs`, temporary leftovers included)."""
    from . import runs

    allowed = set(runs.run_output_names())
    unknown = sorted(set(changed) - allowed) + sorted(set(removed) - allowed)
    if unknown:
        raise UserError(f"a worker sent back files that are not run outputs: {unknown}")
    for name in sorted(changed, key=lambda n: (n == RESULT, n != runs.CHECKPOINT, n)):
        with atomic_path(Path(folder) / name) as tmp:
            tmp.write_bytes(changed[name])
    runs.remove_outputs(Path(folder), list(removed))


#: Each Ray worker process's data providers, by (data folder, offline): read once per process.
_PROVIDERS: dict[tuple[str, bool], DataProvider] = {}


def worker_data_dir(data_dir: str) -> Path:
    """The data folder a Ray worker reads: the driver's (the same path) when it exists on the
    worker's machine, else that machine's ``$LIFELONG_KD_DATA`` when set (the data
    fingerprint of every run is checked against the one recorded, so other data is refused)."""
    if not Path(data_dir).is_dir() and os.environ.get("LIFELONG_KD_DATA"):
        return Path(os.environ["LIFELONG_KD_DATA"])
    return Path(data_dir)


def _ray_task(spec: RunSpec, options: RunOptions, sent: dict[str, bytes], data_dir: str,
              offline: bool, threads: int, box: Any) -> tuple[str, Any, dict[str, bytes],
                                                             list[str]]:
    """One run as a Ray task: :func:`attempt` into a temporary local folder that starts with
    the run folder's files ``sent``; returns its outcome and what it changed there.

    A thread polls the driver's stop flag (the actor ``box``) every
    :data:`RAY_POLL_SECONDS`; a driver that cannot be reached counts as a stop."""
    import ray
    import torch

    from .runs import DataProvider

    torch.set_num_threads(threads)
    if ray.get(box.requested.remote()):
        return "not-run", NOT_RUN, {}, []
    key = (data_dir, offline)
    if key not in _PROVIDERS:
        _PROVIDERS[key] = DataProvider(worker_data_dir(data_dir), offline, progress=False)
    stopped, finished = threading.Event(), threading.Event()

    def poll() -> None:
        while not finished.wait(RAY_POLL_SECONDS):
            try:
                if ray.get(box.requested.remote(), timeout=30):
                    stopped.set()
                    return
            except Exception:  # noqa: BLE001 - the driver is gone: stop the run
                stopped.set()
                return

    folder = Path(tempfile.mkdtemp(prefix="lifelong-kd-run-"))
    watcher = threading.Thread(target=poll, daemon=True)
    try:
        for name, data in sent.items():
            (folder / name).write_bytes(data)
        watcher.start()
        kind, payload = attempt(replace(spec, folder=folder), _PROVIDERS[key], options,
                                stopped.is_set)
        finished.set()
        watcher.join()
        if kind == "write-error":  # the worker's disk, not the driver's
            payload = f"on the Ray worker {socket.gethostname()}: {payload}"
        elif kind == "error":  # name the run folder, not the temporary one
            payload = payload.replace(str(folder), str(spec.folder))
        return (kind, payload, *folder_changes(folder, sent))
    finally:
        finished.set()
        shutil.rmtree(folder, ignore_errors=True)


class _StopBox:
    """The driver's stop flag, as a Ray actor that tasks poll."""

    def __init__(self) -> None:
        self.flag = False

    def set(self, flag: bool = True) -> None:
        self.flag = flag

    def requested(self) -> bool:
        return self.flag


#: The stop actor of each Ray job (a driver's connection), kept from one run to the next: an
#: actor that ends takes its worker process with it, and Ray may have given it a warm one.
_BOXES: dict[str, Any] = {}


def _stop_box(ray: Any) -> Any:
    """This Ray job's stop actor, its flag cleared."""
    job = ray.get_runtime_context().get_job_id()
    if job not in _BOXES:
        _BOXES[job] = ray.remote(num_cpus=0)(_StopBox).remote()
    ray.get(_BOXES[job].set.remote(False))
    return _BOXES[job]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'lifelong-kd[ray]'") from None
    return ray


class RayExecutor:
    """``compare --executor ray [--ray-address ADDRESS]``: each run a Ray task.

    With ``address`` (or ``$RAY_ADDRESS``) it joins that cluster; else, unless Ray is already
    initialised in this process, it starts a local Ray with this machine's cores and no
    dashboard; it shuts down only what it started. A task asks for ``threads`` CPUs
    (default 1) and uses as many torch threads, so Ray runs ``CPUs // threads`` runs at once
    (a local Ray: ``cores // threads``, the rule of :class:`ProcessExecutor` with
    ``jobs = cores // threads``); a run on ``cuda`` asks for one GPU too (use
    ``train.device=cuda``: Ray shows the task only its GPU). A task whose worker dies is run
    again, up to :data:`RAY_RETRIES` times.

    Workers need not share the driver's file system: a task runs into a temporary folder on
    its machine that starts with the run outputs of the run folder (result.json, the
    checkpoint, the CSV, the plots: so ``--resume``, ``--force`` and the refusals behave as
    in serial runs) and returns what it changed; the driver writes each file atomically into
    the run folder and removes what the run removed (:func:`apply_changes`). A cluster's
    machines need lifelong-kd installed (the same version) and the datasets at the driver's
    ``--data-dir`` path, or ``LIFELONG_KD_DATA`` set there (:func:`worker_data_dir`).

    A stop reaches the tasks through a small actor they poll every
    :data:`RAY_POLL_SECONDS`: the running runs end interrupted (their files, checkpoint
    included, come back and are written), the others end at once as not run.

    Used as a context manager, the Ray it starts or joins stays up from one :meth:`run` to
    the next until the block ends.
    """

    def __init__(self, address: str | None = None, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be at least 1, not {threads}")
        self.address = address
        self.threads = threads or 1
        self._session = contextlib.ExitStack()

    def __enter__(self) -> RayExecutor:
        self._session.enter_context(self._ray())
        return self

    def __exit__(self, *exc: object) -> None:
        self._session.close()

    @contextlib.contextmanager
    def _ray(self) -> Iterator[Any]:
        """Ray, started or joined if needed (shut down again only if so)."""
        ray = _import_ray()
        if ray.is_initialized():
            yield ray
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=available_cores(), include_dashboard=False, **quiet)
        if main:  # ray.init replaces SIGTERM's handler: the driver's stop stays in charge
            signal.signal(signal.SIGTERM, sigterm)
        try:
            yield ray
        finally:
            _BOXES.pop(ray.get_runtime_context().get_job_id(), None)
            ray.shutdown()

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]:
        if not specs:
            return []
        with self._ray() as ray:
            return self._run(ray, specs, provider, options, stop, log)

    def _run(self, ray: Any, specs: Sequence[RunSpec], provider: DataProvider,
             options: RunOptions, stop: StopFlag | None, log: Log) -> list[Outcome]:
        from .runs import Outcome

        outcomes: list[Outcome | None] = [None] * len(specs)
        box = _stop_box(ray)
        task = ray.remote(_ray_task)
        worker_options = replace(options, progress=False)
        folders = _Folders()
        out: dict[Any, tuple[int, dict[str, bytes]]] = {}
        write_error: str | None = None
        told = False
        try:
            for n, spec in enumerate(specs):
                if stop is not None and stop.requested:
                    outcomes[n] = Outcome(spec, error=NOT_RUN)
                    continue
                error = folders.take(n, spec)
                if error is not None:
                    outcomes[n] = Outcome(spec, error=error)
                    _log_failure(log, spec, error)
                    continue
                sent = run_files(spec.folder)
                gpus = 1 if spec.config.train.device.startswith("cuda") else 0
                ref = task.options(num_cpus=self.threads, num_gpus=gpus,
                                   max_retries=RAY_RETRIES).remote(
                    spec, worker_options, sent, str(provider.data_dir), provider.offline,
                    self.threads, box)
                out[ref] = (n, sent)
                if log:
                    log(f"[{n + 1}/{len(specs)}] {spec.identity.title} -> {spec.folder}")
            while out:
                if not told and (write_error is not None or (stop is not None and stop.requested)):
                    box.set.remote()
                    told = True
                ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:
                    n, sent = out.pop(ref)
                    spec = specs[n]
                    try:
                        kind, payload, changed, removed = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        kind, payload, changed, removed = "error", _ray_failure(exc), {}, []
                    try:
                        apply_changes(spec.folder, changed, removed)
                    except WriteError as exc:
                        kind, payload = "write-error", str(exc)
                    folders.release(n)
                    if kind == "result":
                        outcomes[n] = Outcome(spec, payload)
                    elif kind == "write-error":
                        write_error = write_error or payload
                    else:
                        outcomes[n] = Outcome(spec, error=payload)
                        if kind == "error":
                            _log_failure(log, spec, payload)
        finally:
            if out:  # an exception in the driver: stop the runs before leaving
                box.set.remote()
                with contextlib.suppress(Exception):
                    ray.wait(list(out), num_returns=len(out), timeout=60)
            folders.release_all()
        if write_error is not None:
            raise WriteError(write_error)
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]


def _ray_failure(exc: Exception) -> str:
    """One line for a Ray task that raised no outcome (its worker died, also when run again)."""
    name = type(exc).__name__
    if name in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "LocalRayletDiedError"):
        return (f"its Ray worker died ({name}; run {RAY_RETRIES + 1} times); --resume continues "
                "it from its last checkpoint")
    return f"its Ray task failed ({name}: {_one_line(str(exc))})"


# --------------------------------------------------------------------------- choosing one


class _SerialWithThreads:
    """:class:`runs.SerialExecutor` with ``threads`` torch threads while it runs."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]:
        import torch

        from .runs import SerialExecutor

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
    and what is valid.
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
    if name == "processes" or jobs > 1:
        return ProcessExecutor(jobs, threads)
    from .runs import SerialExecutor

    return SerialExecutor() if threads is None else _SerialWithThreads(threads)


__all__ = ["EXECUTORS", "NOT_RUN", "ProcessExecutor", "RayExecutor", "apply_changes",
           "attempt", "available_cores", "folder_changes", "make_executor", "run_files",
           "threads_per_run", "visible_gpus", "worker_data_dir", "worker_gpu"]
