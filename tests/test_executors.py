"""Parallel executors (issue 16): local processes and Ray give the serial executor's
outcomes, matrices bit for bit, failures, stops, dead workers and resumes included."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lifelong_kd import executors, runs
from lifelong_kd.config import parse_set
from lifelong_kd.errors import ConfigError, UserError
from lifelong_kd.executors import ProcessExecutor, RayExecutor, make_executor
from lifelong_kd.results import WriteError

pytestmark = pytest.mark.usefixtures("one_thread")

#: Split-Digits in class-il (so there is a task-aware matrix too), 2 tasks, 3 steps each.
TINY = ["train.epochs=1", "train.iterations=3", "strategy.warmup_epochs=0",
        "stream.n_tasks=2", "stream.scenario=class-il"]
#: Runs of 5 tasks (a second or two): a stop at the end of the first lands inside the run.
LONG = ["train.epochs=1", "train.iterations=150", "strategy.warmup_epochs=0",
        "stream.n_tasks=5", "stream.scenario=class-il"]
#: The small grid run through every executor.
GRID = {"strategy.alpha": [0.5, 2]}
QUIET = runs.RunOptions(progress=False, plots=False)
RESUME = runs.RunOptions(progress=False, plots=False, resume=True)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs and no dashboard for the module; Ray missing fails the test
    (CI installs the `ray` extra), it never skips."""
    try:
        import ray
    except ImportError:
        pytest.fail("Ray is not installed: pip install -e '.[ray]' (CI installs the ray extra)")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)  # not the two-node cluster of test_ray_cluster.py
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pool() -> Any:
    """Two worker processes kept for the module (starting one costs seconds here), with one
    torch thread each as this process has (``one_thread``): the same arithmetic."""
    with ProcessExecutor(2, threads=1) as executor:
        yield executor


@pytest.fixture(autouse=True)
def _no_comparison_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison plots take seconds and are not what is tested here (report.md is)."""
    monkeypatch.setattr("lifelong_kd.report.comparison_plots", lambda *args, **kwargs: [])


def _matrices(result: dict[str, Any]) -> tuple[Any, ...]:
    return (result["accuracy_matrix"], result.get("accuracy_matrix_task_aware"),
            result["initial_accuracy"])


def _on_disk(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "result.json").read_text())


def _leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes left anywhere under ``folder``."""
    return sorted(str(p) for p in folder.rglob("*.tmp"))


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, ...]]:
    """The matrices of the LONG runs (naive, lwf x seed 0, naive seed 1), uninterrupted and
    serial, by stamp."""
    out = tmp_path_factory.mktemp("reference")
    specs = runs.plan("split-digits", ["naive", "lwf"], [0, 1], parse_set(LONG), out)[:3]
    outcomes = runs.SerialExecutor().run(specs, runs.DataProvider(out, progress=False), QUIET)
    assert all(o.result is not None and o.result["status"] == "finished" for o in outcomes)
    return {o.spec.stamp: _matrices(o.result) for o in outcomes}


def _executor(name: str, request: pytest.FixtureRequest) -> runs.Executor:
    """The module's worker processes, or a RayExecutor on the module's local Ray."""
    if name == "processes":
        return request.getfixturevalue("pool")
    request.getfixturevalue("local_ray")
    return RayExecutor(threads=1)


# --------------------------------------------------------------------- 1. the same matrices


def test_serial_processes_and_ray_give_the_same_matrices_bit_for_bit(
        tmp_path: Path, local_ray: Any, pool: ProcessExecutor) -> None:
    provider = runs.DataProvider(tmp_path, progress=False)
    found: dict[str, dict[str, tuple[Any, ...]]] = {}
    lines: list[str] = []
    for name, executor in [("serial", runs.SerialExecutor()), ("processes", pool),
                           ("ray", RayExecutor(threads=1))]:
        out = tmp_path / name
        # a small grid: naive (which reads no alpha) once, lwf with each alpha; 2 seeds each
        outcome = runs.compare("split-digits", ["naive", "lwf"], [0, 1], parse_set(TINY),
                               provider, out, options=runs.RunOptions(progress=False),
                               executor=executor, log=lines.append, grid=GRID)
        assert outcome.failures == []
        assert (out / "report.md").is_file()
        folders = [out / s / f"seed-{k}" for s in ("naive", "lwf/strategy.alpha=0.5",
                                                   "lwf/strategy.alpha=2") for k in (0, 1)]
        found[name] = {str(f.relative_to(out)): _matrices(_on_disk(f)) for f in folders}
        # what the driver returned is what it wrote; a finished run keeps no checkpoint
        assert sorted(_matrices(r) for r in outcome.results) == sorted(found[name].values())
        for f in folders:
            assert sorted(p.name for p in f.iterdir()) == [runs.LOCK, "accuracy_matrix.csv",
                                                           "result.json"]
        assert _leftovers(out) == []
    assert found["processes"] == found["serial"]
    assert found["ray"] == found["serial"]
    assert local_ray.is_initialized()  # the executor leaves the Ray it did not start
    naive0 = found["serial"]["naive/seed-0"]
    assert len(naive0[0]) == 2 and len(naive0[1]) == 2  # 2 rows of each matrix (class-il)
    assert found["serial"]["naive/seed-1"] != naive0  # the seeds differ: a real comparison
    # every executor logs each run once, as the serial one does: `[n/N] title -> folder`
    for name in ("serial", "processes", "ray"):
        ours = [line for line in lines if f"/{name}/" in line]
        assert sorted(line.split(" ")[0] for line in ours) == [f"[{n}/6]" for n in range(1, 7)]
        assert any(line.startswith("[5/6] lwf/strategy.alpha=2/seed-0 (") and line.endswith(
            str(tmp_path / name / "lwf" / "strategy.alpha=2" / "seed-0")) for line in ours)
    assert found["serial"]["lwf/strategy.alpha=2/seed-0"] != found["serial"][
        "lwf/strategy.alpha=0.5/seed-0"]  # the variants differ


# --------------------------------------------------------------------- 2. a failing run


@pytest.mark.parametrize("name", ["processes", "ray"])
def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path: Path, name: str,
                                                         request: pytest.FixtureRequest) -> None:
    provider = runs.DataProvider(tmp_path, progress=False)
    specs = runs.plan("split-digits", ["naive", "lwf"], [0], parse_set(TINY), tmp_path / "cmp")
    # naive/seed-0's folder already holds a finished run: without --force or --resume it fails
    runs.execute(specs[0], provider, QUIET)
    before = (specs[0].folder / "result.json").read_bytes()
    serial = runs.SerialExecutor().run(specs[:1], provider, QUIET)
    assert serial[0].error == (f"{specs[0].folder} already holds a finished run; use --force "
                               "to start again or --resume (nothing to do)")
    lines: list[str] = []
    outcomes = _executor(name, request).run(specs, provider, QUIET, log=lines.append)
    assert [o.spec for o in outcomes] == specs
    assert outcomes[0].error == serial[0].error and outcomes[0].result is None
    assert outcomes[1].error is None and outcomes[1].result["status"] == "finished"
    assert (specs[0].folder / "result.json").read_bytes() == before  # left as it was
    assert _on_disk(specs[1].folder)["status"] == "finished"
    assert f"  failed: naive/seed-0: {serial[0].error}" in lines
    assert not any("retrying" in line for line in lines)  # a run's own failure: not again


# --------------------------------------------------------------------- 3. a stop


class StopAtFirstCheckpoint:
    """A stop flag requested as soon as a run of the test saved a task: a checkpoint in one
    of ``folders`` or in a Ray task's temporary run folder (a local Ray's are on this disk)."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self.since = time.time()

    @property
    def requested(self) -> bool:
        if any((f / runs.CHECKPOINT).is_file() for f in self.folders):
            return True
        tasks = Path(tempfile.gettempdir()).glob(f"lifelong-kd-run-*/{runs.CHECKPOINT}")
        return any(p.stat().st_mtime >= self.since for p in tasks)


@pytest.mark.parametrize("name", ["processes", "ray"])
def test_a_stop_ends_the_runs_interrupted_and_resume_gives_the_uninterrupted_matrices(
        tmp_path: Path, name: str, long_reference: dict[str, tuple[Any, ...]],
        request: pytest.FixtureRequest) -> None:
    provider = runs.DataProvider(tmp_path, progress=False)
    specs = runs.plan("split-digits", ["naive", "lwf"], [0, 1], parse_set(LONG), tmp_path)[:3]
    stop = StopAtFirstCheckpoint([s.folder for s in specs])
    executor = _executor(name, request)
    first = executor.run(specs, provider, QUIET, stop=stop)  # type: ignore[arg-type]
    # the runs in flight (2 workers, 2 CPUs) stop after their current step (or, if the stop
    # came before they began, do not start); at least one run never starts
    for o in first:
        assert o.error == executors.NOT_RUN or o.result["status"] == "interrupted", o
    assert sum(o.error == executors.NOT_RUN for o in first) >= 1
    saved = {o.spec.stamp: o.result["tasks_finished"] for o in first if o.result}
    assert max(saved.values()) >= 1  # the run whose checkpoint asked for the stop
    for o in first:  # the checkpoint of a run stopped after a task is in the driver's folder
        if saved.get(o.spec.stamp):
            assert (o.spec.folder / runs.CHECKPOINT).is_file()
            assert runs.folder_status(o.spec.folder) == "interrupted"
    again = executor.run(specs, provider, RESUME)
    assert [o.result["status"] for o in again] == ["finished"] * 3
    assert {o.spec.stamp: _matrices(o.result) for o in again} == long_reference
    for o in again:
        assert _matrices(_on_disk(o.spec.folder)) == long_reference[o.spec.stamp]
        assert o.result["timing"]["resumed_from_task"] == saved.get(o.spec.stamp, 0)
        assert not (o.spec.folder / runs.CHECKPOINT).exists()
    assert _leftovers(tmp_path) == []


def test_a_stop_before_anything_starts_runs_nothing(tmp_path: Path,
                                                   pool: ProcessExecutor) -> None:
    stop = runs.StopFlag()
    stop.requested = True
    specs = runs.plan("split-digits", ["naive"], [0, 1], parse_set(TINY), tmp_path / "cmp")
    outcomes = pool.run(specs, runs.DataProvider(tmp_path, progress=False), QUIET, stop=stop)
    assert [o.error for o in outcomes] == [executors.NOT_RUN] * 2
    assert not (tmp_path / "cmp").exists()  # no folder made for runs that never started


# --------------------------------------------------------------------- 4. a worker that dies


def test_a_worker_that_dies_fails_its_run_and_the_others_finish(
        tmp_path: Path, pool: ProcessExecutor, long_reference: dict[str, tuple[Any, ...]]
        ) -> None:
    provider = runs.DataProvider(tmp_path, progress=False)
    specs = runs.plan("split-digits", ["naive", "lwf"], [0], parse_set(LONG), tmp_path)
    target = specs[0].folder / runs.CHECKPOINT
    killed: list[int] = []

    def kill_when_task_0_ends() -> None:  # SIGKILL the worker of naive/seed-0 once it saved
        deadline = time.monotonic() + 60  # task 0 (the first run goes to the first worker)
        while not target.is_file() and time.monotonic() < deadline:
            time.sleep(0.01)
        for child in multiprocessing.active_children():
            if child.name == "lifelong-kd-worker-0":
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    killer = threading.Thread(target=kill_when_task_0_ends)
    killer.start()
    lines: list[str] = []
    outcomes = pool.run(specs, provider, QUIET, log=lines.append)
    killer.join()
    assert len(killed) == 1
    assert outcomes[0].error == "its worker process died (exit code -9)"
    assert outcomes[0].failure() == {"strategy": "naive", "seed": 0,
                                     "error": "its worker process died (exit code -9)"}
    assert outcomes[1].result["status"] == "finished"  # the other worker went on
    assert _matrices(outcomes[1].result) == long_reference["lwf/seed-0"]
    assert "  failed: naive/seed-0: its worker process died (exit code -9)" in lines
    assert runs.folder_status(specs[0].folder) == "incomplete"  # a checkpoint, no result
    resumed = runs.SerialExecutor().run(specs[:1], provider, RESUME)[0].result
    assert resumed["timing"]["resumed_from_task"] >= 1
    assert _matrices(resumed) == long_reference["naive/seed-0"]
    # the next run of the executor gets a new worker in its place
    again = pool.run(runs.plan("split-digits", ["naive"], [1], parse_set(TINY), tmp_path),
                     provider, QUIET)
    assert again[0].result["status"] == "finished"


# --------------------------------------------------------------------- 5. Ray: files, resume


def test_ray_resumes_from_the_drivers_checkpoint(tmp_path: Path, local_ray: Any,
                                                 long_reference: dict[str, tuple[Any, ...]]
                                                 ) -> None:
    provider = runs.DataProvider(tmp_path, progress=False)
    spec = runs.plan("split-digits", ["lwf"], [0], parse_set(LONG), tmp_path)[0]
    ckpt = spec.folder / runs.CHECKPOINT
    interrupted = runs.execute(spec, provider, QUIET, stop=ckpt.is_file)
    assert interrupted["status"] == "interrupted" and interrupted["tasks_finished"] == 1
    (spec.folder / "task_accuracy.png").write_bytes(b"an old plot")  # kept: no fresh start
    outcome = RayExecutor().run([spec], provider, RESUME)[0]
    assert outcome.result["status"] == "finished"
    assert outcome.result["timing"]["resumed_from_task"] == 1  # the checkpoint it was sent
    assert _matrices(outcome.result) == long_reference["lwf/seed-0"]
    assert _on_disk(spec.folder) == json.loads(json.dumps(outcome.result))
    assert sorted(p.name for p in spec.folder.iterdir()) == [
        runs.LOCK, "accuracy_matrix.csv", "result.json", "task_accuracy.png"]  # no checkpoint
    assert (spec.folder / "task_accuracy.png").read_bytes() == b"an old plot"
    assert _leftovers(tmp_path) == []


def test_a_runs_changes_land_atomically_in_the_drivers_folder(tmp_path: Path) -> None:
    worker, driver = tmp_path / "worker", tmp_path / "driver"
    for folder in (worker, driver):
        folder.mkdir()
        (folder / "result.json").write_text('{"status": "interrupted"}')
        (folder / runs.CHECKPOINT).write_bytes(b"task 0")
        (folder / "forgetting.png").write_bytes(b"plot")
    (driver / "notes.txt").write_text("the user's")
    sent = executors.run_files(worker)
    assert sent == {"result.json": b'{"status": "interrupted"}', runs.CHECKPOINT: b"task 0",
                    "forgetting.png": b"plot"}
    # the run starts again: new result, new checkpoint, its plot removed, a csv written
    (worker / "result.json").write_text('{"status": "finished"}')
    (worker / runs.CHECKPOINT).write_bytes(b"task 1")
    (worker / "forgetting.png").unlink()
    (worker / "accuracy_matrix.csv").write_text("0.5\n")
    changed, removed = executors.folder_changes(worker, sent)
    assert changed == {"result.json": b'{"status": "finished"}', runs.CHECKPOINT: b"task 1",
                       "accuracy_matrix.csv": b"0.5\n"}
    assert removed == ["forgetting.png"]
    executors.apply_changes(driver, changed, removed)
    assert executors.run_files(driver) == executors.run_files(worker)
    assert (driver / "notes.txt").read_text() == "the user's"  # not a run output: kept
    assert _leftovers(driver) == []
    # unchanged files are not sent back
    assert executors.folder_changes(worker, executors.run_files(worker)) == ({}, [])
    # a write that fails leaves the file before it whole and says so in one line
    (driver / "accuracy_matrix.csv").unlink()
    (driver / "accuracy_matrix.csv").mkdir()  # in the way of the rename
    with pytest.raises(WriteError, match="accuracy_matrix.csv"):
        executors.apply_changes(driver, {runs.CHECKPOINT: b"task 2",
                                         "accuracy_matrix.csv": b"1\n",
                                         "result.json": b"{}"}, [])
    assert (driver / runs.CHECKPOINT).read_bytes() == b"task 2"  # the checkpoint goes first
    assert (driver / "result.json").read_bytes() == b'{"status": "finished"}'  # last: kept
    assert _leftovers(driver) == []
    with pytest.raises(UserError, match=r"not run outputs: \['../elsewhere'\]"):
        executors.apply_changes(driver, {"../elsewhere": b"x"}, [])


def test_a_failure_to_write_stops_the_ray_runs_and_is_raised(tmp_path: Path,
                                                             local_ray: Any) -> None:
    provider = runs.DataProvider(tmp_path, progress=False)
    specs = runs.plan("split-digits", ["naive", "lwf"], [0], parse_set(TINY), tmp_path)
    (specs[0].folder / "accuracy_matrix.csv").mkdir(parents=True)  # in the way of the csv
    with pytest.raises(WriteError, match=r"cannot write .*naive/seed-0/accuracy_matrix.csv"):
        RayExecutor().run(specs, provider, QUIET)
    assert not (specs[0].folder / "result.json").exists()  # result.json goes last
    # the other run: written if it had started (finished, or stopped by the failure), else
    # never started (on a loaded machine the stop may come before its task does)
    other = specs[1].folder
    if (other / "result.json").is_file():
        assert _on_disk(other)["status"] in ("finished", "interrupted")
    else:
        assert not other.exists() or not any(p.name != runs.LOCK for p in other.iterdir())
    assert _leftovers(tmp_path) == []


def test_a_ray_task_names_the_run_folder_not_its_temporary_one(tmp_path: Path,
                                                               local_ray: Any) -> None:
    """The driver's folder holds an interrupted run of this configuration made on other
    data: the task, sent its result, refuses to resume it with serial's words."""
    provider = runs.DataProvider(tmp_path, progress=False)
    spec = runs.plan("split-digits", ["naive"], [0], parse_set(TINY), tmp_path)[0]
    runs.execute(spec, provider, QUIET)
    result = _on_disk(spec.folder)
    result["status"] = "interrupted"
    result["data"]["fingerprint"] = "ab" * 32
    (spec.folder / "result.json").write_text(json.dumps(result))
    serial = runs.SerialExecutor().run([spec], provider, RESUME)[0].error
    ray = RayExecutor().run([spec], provider, RESUME)[0].error
    assert serial is not None and "fingerprint abababababab" in serial
    assert ray == serial and str(spec.folder) in ray


# --------------------------------------------------------------------- 6. choosing one


def test_make_executor_picks_the_executor_of_the_options() -> None:
    assert type(make_executor("serial")) is runs.SerialExecutor
    jobs = make_executor("serial", jobs=3)
    assert isinstance(jobs, ProcessExecutor) and jobs.jobs == 3
    assert jobs.threads == max(1, executors.available_cores() // 3)
    cores = executors.available_cores()
    assert make_executor("processes", 2, threads=cores).threads == cores
    # runs at once may share the cores (jobs x threads above them): the user's choice
    assert make_executor("processes", cores + 1, threads=cores).threads == cores
    assert make_executor("processes").jobs == 1
    ray = make_executor("ray", ray_address="ray://head:10001", threads=2)
    assert isinstance(ray, RayExecutor) and (ray.address, ray.threads) == ("ray://head:10001", 2)
    assert make_executor("ray").threads == 1
    with_threads = make_executor("serial", threads=2)
    assert type(with_threads).__name__ == "_SerialWithThreads" and with_threads.threads == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "threads"}, "unknown executor `threads`; choose one of: serial, processes, ray"),
    ({"name": "serial", "jobs": 0}, "--jobs must be a whole number of at least 1, not 0"),
    ({"name": "processes", "jobs": 2.5}, "--jobs must be a whole number of at least 1, not 2.5"),
    ({"name": "processes", "threads": 0},
     "--threads must be a whole number of at least 1, not 0"),
    ({"name": "serial", "ray_address": "auto"},
     "--ray-address auto is for --executor ray, not `serial`"),
    ({"name": "ray", "jobs": 2}, "--jobs 2 does not apply to --executor ray"),
])
def test_make_executor_names_the_bad_value_and_the_valid_ones(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_executor(**kwargs)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(("name", "jobs"), [("serial", 1), ("serial", 2), ("processes", 1)])
def test_more_threads_than_the_cores_are_refused_before_anything_runs(name: str,
                                                                     jobs: int) -> None:
    """Issue 25: ``--threads 100000`` crashed (a segmentation fault, or a worker's "can't
    start new thread") after making an empty run folder; it is refused up front."""
    cores = executors.available_cores()
    with pytest.raises(ConfigError) as info:
        make_executor(name, jobs, threads=100000)
    assert str(info.value) == (f"--threads 100000 is more than this machine's {cores} cores; "
                               f"use at most {cores}")
    with pytest.raises(ConfigError, match=f"--threads {cores + 1} is more than"):
        make_executor(name, jobs, threads=cores + 1)
    with pytest.raises(ConfigError, match="--threads 100000 is more than"):
        ProcessExecutor(2, threads=100000)
    assert make_executor(name, jobs, threads=cores) is not None  # as many as the cores: fine


def test_the_command_line_refuses_too_many_threads_in_one_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture
                                                               ) -> None:
    from lifelong_kd import cli

    cores = executors.available_cores()
    for extra in ([], ["--jobs", "2"]):
        code = cli.main(["compare", "quickstart", "--threads", "100000", "--out",
                         str(tmp_path / "cmp"), "--offline", *extra])
        assert code == 2
        assert capsys.readouterr().err == (f"error: --threads 100000 is more than this "
                                           f"machine's {cores} cores; use at most {cores}\n")
        assert not (tmp_path / "cmp").exists()  # nothing made, no lock left behind


def test_ray_fit_error_names_what_a_task_asks_and_what_the_largest_node_has() -> None:
    def node(cpus: float, gpus: float = 0, alive: bool = True) -> dict[str, Any]:
        resources = {"CPU": cpus, "memory": 1e9} if cpus else {"memory": 1e9}
        return {"Alive": alive, "Resources": {**resources, **({"GPU": gpus} if gpus else {})}}

    cluster = [node(0), node(2), node(4, alive=False), node(1, gpus=1)]
    assert executors.ray_fit_error(cluster, 2, 0) is None
    assert executors.ray_fit_error(cluster, 3, 0) == (
        "--threads 3 asks each Ray task for 3 CPUs, but the largest node of the Ray cluster "
        "has 2; use --threads 2 or fewer")  # the dead node with 4 does not count
    assert executors.ray_fit_error(cluster, 1, 1) is None
    assert executors.ray_fit_error(cluster, 2, 1) == (
        "--threads 2 asks each Ray task for 2 CPUs and 1 GPU, but the largest node of the Ray "
        "cluster with a GPU has 1; use --threads 1 or fewer")  # one node must hold both
    assert executors.ray_fit_error(cluster[:3], 1, 1) == (
        "train.device=cuda asks each Ray task for 1 GPU, but no node of the Ray cluster has "
        "one; train on cpu or add a node with a GPU")
    assert executors.ray_fit_error([node(0)], 1, 0) == (
        "--threads 1 asks each Ray task for 1 CPU, but no node of the Ray cluster has a CPU")


def test_a_ray_task_larger_than_every_node_is_refused_before_any_run(
        tmp_path: Path, local_ray: Any) -> None:
    """Issue 25: ``--executor ray --threads 3`` on a 2-CPU Ray waited for ever (no task could
    start); it is refused, naming both numbers, before a run folder is made."""
    message = ("--threads 3 asks each Ray task for 3 CPUs, but the largest node of the Ray "
               "cluster has 2; use --threads 2 or fewer")
    specs = runs.plan("split-digits", ["naive"], [0], parse_set(TINY), tmp_path / "cmp")
    with pytest.raises(ConfigError) as info:
        RayExecutor(threads=3).run(specs, runs.DataProvider(tmp_path, progress=False), QUIET)
    assert str(info.value) == message
    assert not (tmp_path / "cmp").exists()
    with pytest.raises(ConfigError) as info, RayExecutor(threads=3):  # as `compare` holds it
        pass
    assert str(info.value) == message
    assert local_ray.is_initialized()  # left as it was


def test_a_stop_cancels_the_ray_tasks_that_have_not_started(tmp_path: Path,
                                                           local_ray: Any) -> None:
    """Issue 25: a stop left the tasks that had not started waiting for CPUs, and the driver
    with them. Here every CPU of the Ray is held by another job's placement group, so no
    task can start; the stop (once both are out) cancels them: not run, nothing written."""
    from ray.util.placement_group import placement_group, remove_placement_group

    held = placement_group([{"CPU": 2}])
    local_ray.get(held.ready())
    stop = runs.StopFlag()

    def log(line: str) -> None:
        if line.startswith("[2/2]"):  # both tasks submitted, neither can start
            stop.requested = True

    specs = runs.plan("split-digits", ["naive"], [0, 1], parse_set(LONG), tmp_path / "cmp")
    try:
        outcomes = RayExecutor().run(specs, runs.DataProvider(tmp_path, progress=False),
                                     QUIET, stop=stop, log=log)
    finally:
        remove_placement_group(held)
    assert [o.error for o in outcomes] == [executors.NOT_RUN] * 2
    assert [runs.folder_status(s.folder) for s in specs] == ["empty", "empty"]
    assert _leftovers(tmp_path) == []


def test_ray_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UserError) as info:
        make_executor("ray")
    assert str(info.value) == "--executor ray needs Ray: pip install 'lifelong-kd[ray]'"
    with pytest.raises(ConfigError, match="at least 1, not 0"):
        ProcessExecutor(0)


def test_threads_per_run_shares_the_cores() -> None:
    assert executors.threads_per_run(2, cores=2) == 1
    assert executors.threads_per_run(3, cores=8) == 2  # 8 // 3
    assert executors.threads_per_run(4, cores=2) == 1  # never 0
    assert executors.threads_per_run(2, threads=5, cores=2) == 5  # given: as given


def test_worker_k_gets_gpu_k_mod_count() -> None:
    two = ["0", "1"]
    assert [executors.worker_gpu(k, ["cuda"], two) for k in range(4)] == ["0", "1", "0", "1"]
    assert [executors.worker_gpu(k, ["cuda", "cpu"], ["2", "5", "7"]) for k in range(4)] == [
        "2", "5", "7", "2"]  # ids as the driver sees them
    assert executors.worker_gpu(1, ["cpu"], two) is None  # no run on a GPU
    assert executors.worker_gpu(1, ["cuda"], ["3"]) is None  # one GPU: nothing to spread
    assert executors.worker_gpu(1, ["cuda:1", "cuda"], two) is None  # a run chose its GPU


def test_visible_gpus_reads_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert executors.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5,7")
    assert executors.visible_gpus() == ["3", "5"]  # what torch counts of them


def test_a_ray_worker_reads_the_drivers_data_folder_or_its_own(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setenv("LIFELONG_KD_DATA", str(tmp_path / "here"))
    assert executors.worker_data_dir(str(tmp_path)) == tmp_path  # the same path exists
    assert executors.worker_data_dir("/nowhere/data") == tmp_path / "here"
    monkeypatch.delenv("LIFELONG_KD_DATA")
    assert executors.worker_data_dir("/nowhere/data") == Path("/nowhere/data")


def test_the_module_imports_neither_torch_nor_ray() -> None:
    """A worker sets its threads and GPU before torch is imported; Ray's stop actor starts
    without torch; the command line starts fast."""
    import subprocess
    import sys

    code = ("import sys, lifelong_kd.executors; "
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
