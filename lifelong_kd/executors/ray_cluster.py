"""``compare --executor ray``: :class:`RayExecutor`, each run a Ray task.

Workers need not share a file system with the driver: a task (:func:`_ray_task`) runs into
a local temporary folder that starts with the run folder's files (:func:`run_files`, so
resuming and refusing work as in serial) and sends back what changed
(:func:`folder_changes`), which the driver writes atomically into the run folder
(:func:`apply_changes`). A stop reaches the tasks through a small actor (:class:`_StopBox`).

Ray is imported inside the functions only (``import ray``: this module is not Ray), and Ray
pickles :func:`_ray_task` and :class:`_StopBox` by their path in this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, UserError
from ..results import RESULT, WriteError, atomic_path
from .shared import NOT_RUN, POLL_SECONDS, _Collected, attempt, available_cores

if TYPE_CHECKING:
    from ..runs import DataProvider, Log, Outcome, RunOptions, RunSpec, StopFlag

#: How often a Ray task looks at its driver's stop flag (seconds).
RAY_POLL_SECONDS = 0.25
#: How often a run whose Ray node (or worker process) was lost is submitted again.
RAY_RETRIES = 3
#: How long a running Ray task has, once it has seen a stop, to end after its current step
#: before it is cancelled (its last checkpoint is kept: :class:`RayExecutor`) (seconds).
RAY_STOP_GRACE_SECONDS = 5.0


def ray_fit_error(nodes: Sequence[Mapping[str, Any]], cpus: int, gpus: int) -> str | None:
    """Why a Ray task asking for ``cpus`` CPUs and ``gpus`` GPUs can never start on the
    cluster whose nodes (:func:`ray.nodes`) are ``nodes``; None when an alive node has both.

    A task runs on one node, so the largest node decides, not the cluster's total: a task
    that fits none stays pending for ever (and ``compare`` waits for ever) instead of
    failing, so it is refused before any run starts, naming both numbers."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", False))]
    fitting = [r for r in alive if r.get("GPU", 0) >= gpus]
    largest = int(max((r.get("CPU", 0) for r in fitting), default=0))
    if gpus and not fitting:
        return (f"train.device=cuda asks each Ray task for {gpus} GPU, but no node of the Ray "
                "cluster has one; train on cpu or add a node with a GPU")
    if largest >= cpus:
        return None
    asks = f"--threads {cpus} asks each Ray task for {cpus} CPU{'s' if cpus > 1 else ''}"
    if gpus:
        asks += f" and {gpus} GPU"
    where = "the largest node of the Ray cluster" + (" with a GPU" if gpus else "")
    if largest < 1:
        return f"{asks}, but no node of the Ray cluster{' with a GPU' if gpus else ''} has a CPU"
    return f"{asks}, but {where} has {largest}; use --threads {largest} or fewer"



def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."



def run_files(folder: Path) -> dict[str, bytes]:
    """The run outputs (:func:`folders.run_output_names`) in ``folder``, as bytes by name."""
    from ..folders import run_output_names

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
    outputs the run removed (:func:`folders.remove_outputs`, temporary leftovers included)."""
    from ..folders import CHECKPOINT, remove_outputs, run_output_names

    allowed = set(run_output_names())
    unknown = sorted(set(changed) - allowed) + sorted(set(removed) - allowed)
    if unknown:
        raise UserError(f"a worker sent back files that are not run outputs: {unknown}")
    for name in sorted(changed, key=lambda n: (n == RESULT, n != CHECKPOINT, n)):
        with atomic_path(Path(folder) / name) as tmp:
            tmp.write_bytes(changed[name])
    remove_outputs(Path(folder), list(removed))



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
              offline: bool, threads: int, box: Any, token: str
              ) -> tuple[str, Any, dict[str, bytes], list[str]]:
    """One run as a Ray task: :func:`attempt` into a temporary local folder that starts with
    the run folder's files ``sent``; returns its outcome and what it changed there.

    The task first tells the driver's stop actor ``box`` that it starts (``token``), unless
    a stop came first (then it is not run). A thread polls the stop flag every
    :data:`RAY_POLL_SECONDS`; a driver that cannot be reached counts as a stop. Once
    stopping, the thread also keeps what the run has written so far with ``box`` (again
    whenever it changes): a run that does not end in time is cancelled by the driver, which
    then writes those files (its last checkpoint) instead of losing them."""
    import ray
    import torch

    from ..runs import DataProvider

    torch.set_num_threads(threads)
    if not ray.get(box.begin.remote(token)):
        return "not-run", NOT_RUN, {}, []
    key = (data_dir, offline)
    if key not in _PROVIDERS:
        _PROVIDERS[key] = DataProvider(worker_data_dir(data_dir), offline, progress=False)
    stopped, finished = threading.Event(), threading.Event()
    folder = Path(tempfile.mkdtemp(prefix="lifelong-kd-run-"))

    def poll() -> None:
        kept: tuple[dict[str, bytes], list[str]] | None = None
        while not finished.wait(RAY_POLL_SECONDS):
            if not stopped.is_set():
                try:
                    if not ray.get(box.requested.remote(), timeout=30):
                        continue
                except Exception:  # noqa: BLE001 - the driver is gone: stop the run
                    stopped.set()
                    return
                stopped.set()
            try:
                changes = folder_changes(folder, sent)
            except OSError:  # a file replaced while it was read: look again next time
                continue
            if changes != kept:
                try:
                    ray.get(box.keep.remote(token, *changes), timeout=30)
                except Exception:  # noqa: BLE001 - the driver is gone: nothing to keep for
                    return
                kept = changes

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
    """The driver's stop flag, as a Ray actor that tasks poll; it also records which tasks
    started (:meth:`begin`, atomic with the flag: once the flag is set no task starts) and
    what a stopping task has written so far (:meth:`keep`)."""

    def __init__(self) -> None:
        self.flag = False
        self.started: set[str] = set()
        self.kept: dict[str, tuple[dict[str, bytes], list[str]]] = {}

    def reset(self) -> None:
        self.flag = False
        self.started.clear()
        self.kept.clear()

    def set(self, flag: bool = True) -> None:
        self.flag = flag

    def requested(self) -> bool:
        return self.flag

    def begin(self, token: str) -> bool:
        """Whether task ``token`` may start (no stop yet); if so it counts as started."""
        if self.flag:
            return False
        self.started.add(token)
        return True

    def started_tokens(self) -> list[str]:
        return sorted(self.started)

    def keep(self, token: str, changed: dict[str, bytes], removed: list[str]) -> None:
        self.kept[token] = (changed, removed)

    def kept_tokens(self) -> list[str]:
        return sorted(self.kept)

    def take(self, token: str) -> tuple[dict[str, bytes], list[str]]:
        """What stopping task ``token`` kept (nothing if it kept nothing), forgotten here."""
        return self.kept.pop(token, ({}, []))


#: The stop actor of each Ray job (a driver's connection, by its node and job), kept from
#: one run to the next: an actor that ends takes its worker process with it, and Ray may
#: have given it a warm one.
_BOXES: dict[tuple[str, str], Any] = {}


def _stop_box(ray: Any) -> Any:
    """This Ray job's stop actor, reset; placed on the driver's node, so that a worker node
    that is lost does not take the stop flag with it."""
    context = ray.get_runtime_context()
    node, job = context.get_node_id(), context.get_job_id()
    box = _BOXES.get((node, job))
    if box is not None:
        try:
            ray.get(box.reset.remote(), timeout=60)
            return box
        except ray.exceptions.RayError:  # gone (its node, or a Ray shut down and restarted)
            pass
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # not soft: Ray may place a soft one on another node (a head with no CPU: a worker's),
    # and a 0-CPU actor always fits the driver's node
    here = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    box = _BOXES[node, job] = ray.remote(num_cpus=0, scheduling_strategy=here)(_StopBox).remote()
    ray.get(box.reset.remote())
    return box


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'lifelong-kd[ray]'") from None
    return ray


#: A Ray failure that is not the run's own (its node or worker process was lost), by the
#: name of its exception: why, as logged when the run is submitted again.
_LOST = {"NodeDiedError": "its Ray node was lost", "LocalRayletDiedError": "its Ray node was lost",
         "ObjectLostError": "its Ray node was lost (with the run's outputs)",
         "WorkerCrashedError": "its Ray worker process died",
         "OutOfMemoryError": "its Ray worker process was killed for lack of memory"}


def _lost(exc: BaseException) -> str | None:
    """Why a Ray task failed when it was lost with its node or worker (worth running again),
    else None (the task itself failed, or was cancelled)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _LOST:
            return _LOST[cls.__name__]
    return None


class _Task:
    """A run out as a Ray task: its spec's number, the files it was sent, how often it was
    submitted, and the token it starts under (:meth:`_StopBox.begin`)."""

    def __init__(self, n: int, sent: dict[str, bytes], tries: int) -> None:
        self.n, self.sent, self.tries = n, sent, tries
        self.token = f"{n}.{tries}"


class RayExecutor:
    """``compare --executor ray [--ray-address ADDRESS]``: each run a Ray task.

    With ``address`` (or ``$RAY_ADDRESS``) it joins that cluster; else, unless Ray is already
    initialised in this process, it starts a local Ray with this machine's cores and no
    dashboard; it shuts down only what it started. A task asks for ``threads`` CPUs
    (default 1) and uses as many torch threads, so Ray runs ``CPUs // threads`` runs at once
    (a local Ray: ``cores // threads``, the rule of :class:`ProcessExecutor` with
    ``jobs = cores // threads``); a run on ``cuda`` asks for one GPU too (use
    ``train.device=cuda``: Ray shows the task only its GPU). A task that no alive node can
    hold (more CPUs or GPUs than the largest node has) would wait for ever: it is refused
    with a :class:`ConfigError` before any run starts (:func:`ray_fit_error`).

    Workers need not share the driver's file system: a task runs into a temporary folder on
    its machine that starts with the run outputs of the run folder (result.json, the
    checkpoint, the CSV, the plots: so ``--resume``, ``--force`` and the refusals behave as
    in serial runs) and returns what it changed; the driver writes each file atomically into
    the run folder and removes what the run removed (:func:`apply_changes`). A cluster's
    machines need lifelong-kd installed (the same version) and the datasets at the driver's
    ``--data-dir`` path, or ``LIFELONG_KD_DATA`` set there (:func:`worker_data_dir`).

    A run whose node (or worker process) is lost is submitted again from what the run folder
    holds, up to :data:`RAY_RETRIES` times, each logged (``<stamp>: its Ray node was lost;
    retrying (1 of 3)``); a run that failed by itself (an error in the run) is not.

    A stop reaches the tasks through a small actor on the driver's node that they poll every
    :data:`RAY_POLL_SECONDS`: the tasks not started are cancelled (``not run
    (interrupted)``); the running runs end after their current step, interrupted, and their
    files (checkpoint included) come back and are written. A running task that has not ended
    ``stop_grace`` seconds after it saw the stop (a step or a data load that takes long) is
    cancelled, and the files it kept with the actor once it saw the stop (its last
    checkpoint) are written instead: its outcome says ``interrupted: ...`` and ``--resume``
    continues it as it would continue the run stopped in time.

    Used as a context manager, the Ray it starts or joins stays up from one :meth:`run` to
    the next until the block ends.
    """

    def __init__(self, address: str | None = None, threads: int | None = None,
                 stop_grace: float = RAY_STOP_GRACE_SECONDS) -> None:
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be at least 1, not {threads}")
        self.address = address
        self.threads = threads or 1
        self.stop_grace = stop_grace
        self._session = contextlib.ExitStack()

    def __enter__(self) -> RayExecutor:
        ray = self._session.enter_context(self._ray())
        try:
            self._check_fits(ray, gpus=0)
        except BaseException:
            self._session.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._session.close()

    def _check_fits(self, ray: Any, gpus: int) -> None:
        """Refuse tasks that no alive node of the cluster can hold (:func:`ray_fit_error`)."""
        error = ray_fit_error(ray.nodes(), self.threads, gpus)
        if error is not None:
            raise ConfigError(error)

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
            # "local": a Ray of its own, not one started on this machine before (ray.init
            # would join the last one it finds, with other CPUs than this machine's)
            ray.init(address="local", num_cpus=available_cores(), include_dashboard=False,
                     **quiet)
        if main:  # ray.init replaces SIGTERM's handler: the driver's stop stays in charge
            signal.signal(signal.SIGTERM, sigterm)
        try:
            yield ray
        finally:
            context = ray.get_runtime_context()
            _BOXES.pop((context.get_node_id(), context.get_job_id()), None)
            ray.shutdown()

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]:
        if not specs:
            return []
        with self._ray() as ray:
            return self._run(ray, specs, provider, options, stop, log)

    def _run(self, ray: Any, specs: Sequence[RunSpec], provider: DataProvider,
             options: RunOptions, stop: StopFlag | None, log: Log) -> list[Outcome]:
        gpus = [1 if s.config.train.device.startswith("cuda") else 0 for s in specs]
        self._check_fits(ray, max(gpus))
        box = _stop_box(ray)
        task = ray.remote(_ray_task)
        worker_options = replace(options, progress=False)
        out: dict[Any, _Task] = {}
        stopping: _Stopping | None = None

        def submit(n: int, sent: dict[str, bytes], tries: int) -> None:
            t = _Task(n, sent, tries)
            ref = task.options(num_cpus=self.threads, num_gpus=gpus[n], max_retries=0).remote(
                specs[n], worker_options, sent, str(provider.data_dir), provider.offline,
                self.threads, box, t.token)
            out[ref] = t

        with _Collected(specs, log) as collected:
            try:
                for n, spec in enumerate(specs):
                    if collected.stopping(stop):
                        collected.record(n, "not-run", NOT_RUN)
                    elif collected.take(n):
                        submit(n, run_files(spec.folder), 0)
                        collected.started(n)
                while out:
                    if stopping is None and collected.stopping(stop):
                        stopping = _Stopping(ray, box, out, self.stop_grace)
                    elif stopping is not None:
                        stopping.cancel_late(out)
                    ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL_SECONDS)
                    for ref in ready:
                        t = out.pop(ref)
                        spec = specs[t.n]
                        try:
                            kind, payload, changed, removed = ray.get(ref)
                        except ray.exceptions.RayError as exc:
                            why = _lost(exc)
                            if stopping is None and why is not None and t.tries < RAY_RETRIES:
                                if log:
                                    log(f"  {spec.stamp}: {why}; retrying "
                                        f"({t.tries + 1} of {RAY_RETRIES})")
                                submit(t.n, t.sent, t.tries + 1)
                                continue
                            kind, payload, changed, removed = _ray_failure(
                                ray, box, exc, ref, t, stopping)
                        try:
                            apply_changes(spec.folder, changed, removed)
                        except WriteError as exc:
                            kind, payload = "write-error", str(exc)
                        collected.record(t.n, kind, payload)
            finally:
                if out:  # an exception in the driver: stop the runs, keep what they wrote
                    _wind_down(ray, box, out, specs, self.stop_grace)
        return collected.outcomes()


class _Stopping:
    """A stop of the Ray tasks ``out``: the flag set (after which no task starts), the tasks
    not started cancelled at once, the running ones given ``grace`` seconds after they saw
    the stop (:meth:`cancel_late`)."""

    def __init__(self, ray: Any, box: Any, out: Mapping[Any, _Task], grace: float) -> None:
        self.ray, self.box, self.grace = ray, box, grace
        self.since = time.monotonic()
        ray.get(box.set.remote())  # from here on no task starts (begin says no)
        started = set(ray.get(box.started_tokens.remote()))
        self.unstarted = {ref for ref, t in out.items() if t.token not in started}
        self.forced: set[Any] = set()
        self.seen: dict[str, float] = {}  # token -> when the driver learnt it saw the stop
        for ref in self.unstarted:
            with contextlib.suppress(Exception):  # already ended: nothing to cancel
                ray.cancel(ref, force=False)

    def cancel_late(self, out: Mapping[Any, _Task]) -> None:
        """Cancel (force) the running tasks that have not ended ``grace`` seconds after they
        saw the stop, or after ``grace`` + :data:`RAY_STOP_GRACE_SECONDS` if they never said
        they saw it (their process is stuck)."""
        running = {ref: t for ref, t in out.items()
                   if ref not in self.unstarted and ref not in self.forced}
        if not running:
            return
        now = time.monotonic()
        with contextlib.suppress(Exception):
            for token in self.ray.get(self.box.kept_tokens.remote(), timeout=30):
                self.seen.setdefault(token, now)
        for ref, t in running.items():
            seen = self.seen.get(t.token)
            late = (now - seen >= self.grace if seen is not None
                    else now - self.since >= self.grace + RAY_STOP_GRACE_SECONDS)
            if late:
                self.forced.add(ref)
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)


def _ray_failure(ray: Any, box: Any, exc: Exception, ref: Any, t: _Task,
                 stopping: _Stopping | None) -> tuple[str, str, dict[str, bytes], list[str]]:
    """How a Ray task that returned no outcome ended (:func:`attempt`'s kind and payload) and
    the files to write: cancelled before it started, ``not run``; cancelled while stopping
    (too late), or lost while stopping, ``interrupted`` with the files it kept then; else
    one line naming the failure (lost, ``t.tries + 1`` times, or Ray's own error)."""
    if stopping is not None and ref in stopping.unstarted:
        return "not-run", NOT_RUN, {}, []
    changed: dict[str, bytes] = {}
    removed: list[str] = []
    if stopping is not None:
        with contextlib.suppress(Exception):
            changed, removed = ray.get(box.take.remote(t.token), timeout=60)
        if ref in stopping.forced:
            return ("error", f"interrupted: its Ray task did not end within "
                    f"{stopping.grace:g} s of the stop and was cancelled; --resume continues it "
                    "from its last checkpoint", changed, removed)
    why, runs = _lost(exc), t.tries + 1
    if why is not None:
        return ("error", f"{why} ({type(exc).__name__}; run {runs} time{'s' if runs > 1 else ''});"
                " --resume continues it from its last checkpoint", changed, removed)
    return ("error", f"its Ray task failed ({type(exc).__name__}: {_one_line(str(exc))})",
            changed, removed)


def _wind_down(ray: Any, box: Any, out: dict[Any, _Task], specs: Sequence[RunSpec],
               grace: float) -> None:
    """After an exception in the driver: stop the tasks ``out`` as a stop does (not started:
    cancelled; running: ``grace`` seconds after they saw it, then cancelled) and write what
    each wrote, so that a run stopped mid-way keeps its checkpoint."""
    with contextlib.suppress(Exception):
        stopping = _Stopping(ray, box, out, grace)
        deadline = time.monotonic() + grace + RAY_STOP_GRACE_SECONDS + 1
        while out and time.monotonic() < deadline:
            stopping.cancel_late(out)
            ready, _ = ray.wait(list(out), num_returns=len(out), timeout=POLL_SECONDS)
            for ref in ready:
                t = out.pop(ref)
                with contextlib.suppress(Exception):
                    try:
                        _, _, changed, removed = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        _, _, changed, removed = _ray_failure(ray, box, exc, ref, t, stopping)
                    apply_changes(specs[t.n].folder, changed, removed)
        for ref in out:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)

