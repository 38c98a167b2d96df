"""`compare --executor ray --ray-address HEAD:6379` on a cluster (issue 25): a two-node Ray
cluster on this machine, whose head holds no CPU (every run goes to the worker node), the
driver joined by address, the worker node with its own temporary folders (no output folder
shared with the driver). The runs give the serial matrices bit for bit, and the runs lost
with their node are run again until they finish with the same matrices."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lifelong_kd import runs
from lifelong_kd.config import parse_set
from lifelong_kd.executors import RAY_RETRIES, RayExecutor

# the comparison plots off (autouse) and the matrices of a result, as test_executors has them
from .test_executors import _matrices, _no_comparison_plots  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

#: Split-Digits in class-il, 2 tasks of 3 steps (as tests/test_executors.py).
TINY = ["train.epochs=1", "train.iterations=3", "strategy.warmup_epochs=0",
        "stream.n_tasks=2", "stream.scenario=class-il"]
#: Runs of 5 tasks (a second or two): a node removed once a run saved its first task is
#: removed while the runs go on.
LONG = ["train.epochs=1", "train.iterations=150", "strategy.warmup_epochs=0",
        "stream.n_tasks=5", "stream.scenario=class-il"]
QUIET = runs.RunOptions(progress=False, plots=False)


class TwoNodes:
    """A Ray cluster of a head with no CPU and one worker node with 2, the driver joined by
    address. The worker node has its own folders (``home``): Ray's (``ray``), the temporary
    one its tasks write into (``tmp``, its ``TMPDIR``) and its data cache (``cache``)."""

    def __init__(self, ray: Any, home: Path) -> None:
        from ray.cluster_utils import Cluster

        self.ray, self.home = ray, home
        self.tmp = home / "tmp"
        self.tmp.mkdir()
        self.node_args = {"num_cpus": 2, "temp_dir": str(home / "ray"),
                          "env_vars": {"TMPDIR": str(self.tmp),
                                       "XDG_CACHE_HOME": str(home / "cache")}}
        # shutdown_at_exit=False: a node is added from a test's thread, where Ray cannot set
        # its SIGTERM handler; the fixture shuts the cluster down itself
        self.cluster = Cluster(initialize_head=True, shutdown_at_exit=False,
                               head_node_args={"num_cpus": 0, "include_dashboard": False})
        self.worker = self.cluster.add_node(**self.node_args)
        ray.init(address=self.cluster.address, logging_level=logging.ERROR,
                 log_to_driver=False)

    def replace_worker(self) -> None:
        """Remove the worker node (its processes killed, its runs lost), then add another."""
        self.cluster.remove_node(self.worker)
        self.worker = self.cluster.add_node(**self.node_args)

    def close(self) -> None:
        self.ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def two_nodes() -> Any:
    """The module's cluster; Ray missing fails the test (CI installs the `ray` extra)."""
    try:
        import ray
    except ImportError:
        pytest.fail("Ray is not installed: pip install -e '.[ray]' (CI installs the ray extra)")
    home = Path(tempfile.mkdtemp(prefix="lkd-node-"))  # short: Ray's socket paths are limited
    nodes = TwoNodes(ray, home)
    try:
        yield nodes
    finally:
        nodes.close()
        shutil.rmtree(home, ignore_errors=True)




def _serial(strategies: list[str], seeds: list[int], settings: list[str], out: Path
            ) -> dict[str, tuple[Any, ...]]:
    """The matrices of the runs, serial in this process, by stamp."""
    specs = runs.plan("split-digits", strategies, seeds, parse_set(settings), out)
    outcomes = runs.SerialExecutor().run(specs, runs.DataProvider(out, progress=False), QUIET)
    assert all(o.result is not None and o.result["status"] == "finished" for o in outcomes)
    return {o.spec.stamp: _matrices(o.result) for o in outcomes}


def test_the_cluster_runs_on_its_worker_node_only(two_nodes: TwoNodes) -> None:
    ray = two_nodes.ray
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert sorted(n["Resources"].get("CPU", 0) for n in alive) == [0, 2]
    assert ray.get_runtime_context().get_node_id() != two_nodes.worker.node_id


def test_a_cluster_gives_the_serial_matrices_bit_for_bit(tmp_path: Path,
                                                         two_nodes: TwoNodes) -> None:
    expected = _serial(["naive", "lwf"], [0, 1], TINY, tmp_path / "serial")
    out = tmp_path / "ray"
    specs = runs.plan("split-digits", ["naive", "lwf"], [0, 1], parse_set(TINY), out)
    lines: list[str] = []
    outcomes = RayExecutor(threads=1).run(specs, runs.DataProvider(tmp_path, progress=False),
                                          QUIET, log=lines.append)
    assert [o.error for o in outcomes] == [None] * 4
    assert {o.spec.stamp: _matrices(o.result) for o in outcomes} == expected
    for o in outcomes:  # written into the driver's folders, the task's temporary one gone
        assert _matrices(json.loads((o.spec.folder / "result.json").read_text())) == expected[
            o.spec.stamp]
    assert list(two_nodes.tmp.iterdir()) == []
    assert len(lines) == 4 and not any("retrying" in line for line in lines)


def test_runs_lost_with_their_node_are_run_again_and_nothing_is_lost(
        tmp_path: Path, two_nodes: TwoNodes) -> None:
    expected = _serial(["naive", "lwf"], [0], LONG, tmp_path / "serial")
    specs = runs.plan("split-digits", ["naive", "lwf"], [0], parse_set(LONG), tmp_path / "ray")
    seen: dict[str, list[str]] = {}

    def replace_the_node_once_a_run_saved_a_task() -> None:
        """The checkpoint of a task appears in the worker node's temporary folder (not in the
        driver's run folders, which hold only their lock until a run comes back)."""
        deadline = time.monotonic() + 120
        found: list[Path] = []
        while not found and time.monotonic() < deadline:
            found = list(two_nodes.tmp.glob(f"lifelong-kd-run-*/{runs.CHECKPOINT}"))
            time.sleep(0.01)
        seen["worker"] = [p.name for p in found]
        seen["driver"] = sorted(p.name for s in specs if s.folder.is_dir()
                                for p in s.folder.iterdir() if p.name != runs.LOCK)
        two_nodes.replace_worker()

    killer = threading.Thread(target=replace_the_node_once_a_run_saved_a_task)
    killer.start()
    lines: list[str] = []
    try:
        outcomes = RayExecutor(threads=1).run(specs, runs.DataProvider(tmp_path, progress=False),
                                              QUIET, log=lines.append)
    finally:
        killer.join()
    assert seen["worker"] and seen["driver"] == []  # the task works on its node, not in --out
    retries = [line for line in lines if "retrying" in line]
    assert retries, lines  # the runs out on the node were lost with it, and run again
    assert set(retries) <= {f"  {s.stamp}: its Ray node was lost; retrying (1 of {RAY_RETRIES})"
                            for s in specs}
    assert [o.error for o in outcomes] == [None, None]
    assert {o.spec.stamp: _matrices(o.result) for o in outcomes} == expected
    for o in outcomes:
        assert o.result["status"] == "finished"
        assert _matrices(json.loads((o.spec.folder / "result.json").read_text())) == expected[
            o.spec.stamp]
        assert not (o.spec.folder / runs.CHECKPOINT).exists()
