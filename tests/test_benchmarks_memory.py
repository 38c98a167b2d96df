"""The memory speed benchmarks (issue 14, part 4): benchmarks/speed_memory.py counts the steps,
examples and memory calls it divides by, and benchmarks/speed_avalanche.py's replay and DER
cases give both sides the same settings. No timing is asserted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


speed_memory = _script("speed_memory")
speed_avalanche = _script("speed_avalanche")


@pytest.fixture(scope="module")
def mnist() -> Any:
    from lifelong_kd.data.sources import load_dataset

    from .conftest import SHARED

    return load_dataset("mnist", SHARED, offline=True, progress=False)


# 256 training examples per task (the permuted tasks share the images), batches of 128: two
# steps per task, six in all.
SUBSET = (256, 64)


def test_naive_counts_steps_and_no_memory(mnist: Any) -> None:
    t = speed_memory.run_once("naive", mnist, SUBSET)
    assert (t.steps, t.batch_examples, t.drawn_examples) == (6, 3 * 256, 0)
    assert t.calls == {"add": 0, "draw": 0, "update": 0} and t.policy == "-"
    assert t.examples_per_step == 128


def test_er_draws_once_per_step_after_the_first(mnist: Any) -> None:
    # reservoir: the first step finds the memory empty (a draw of none); every later one
    # draws 128 of the >= 128 examples held; each step offers its batch (6 adds)
    t = speed_memory.run_once("er", mnist, SUBSET)
    assert t.policy == "reservoir"
    assert (t.steps, t.batch_examples, t.drawn_examples) == (6, 768, 5 * 128)
    assert t.calls == {"add": 6, "draw": 6, "update": 0}
    assert t.examples_per_step == pytest.approx((768 + 640) / 6)


def test_derpp_draws_twice(mnist: Any) -> None:
    # the empty first draw stops the second; then two draws of 128 on each of 5 steps
    t = speed_memory.run_once("derpp", mnist, SUBSET)
    assert (t.steps, t.drawn_examples) == (6, 5 * 2 * 128)
    assert t.calls == {"add": 6, "draw": 1 + 5 * 2, "update": 0}


def test_task_end_memory_draws_from_the_second_task(mnist: Any) -> None:
    # class-balanced: chosen at each task's end (3 updates), nothing to draw in task 0, then
    # 128 per step over tasks 1 and 2 (the memory holds 256 after task 0)
    t = speed_memory.run_once("der-avalanche", mnist, SUBSET)
    assert t.policy == "class_balanced"
    assert (t.steps, t.drawn_examples) == (6, 4 * 128)
    assert t.calls == {"add": 0, "draw": 6, "update": 3}


def test_instrumentation_is_removed_afterwards() -> None:
    from lifelong_kd import engine
    from lifelong_kd.strategies.memory import Memory

    before = (Memory.add, Memory.draw, Memory.update, engine.run_phase)
    with speed_memory.instrumented(speed_memory.Timing()):
        assert Memory.add is not before[0] and engine.run_phase is not before[3]
    assert (Memory.add, Memory.draw, Memory.update, engine.run_phase) == before


def test_table_ratio_and_share() -> None:
    # naive: 10 steps in 1 s (100 ms); er: 10 steps in 2.4 s (240 ms, 2.40 x), of which
    # 6 ms + 6 ms per step in the memory (12 / 240 = 5.00 %)
    naive = speed_memory.Timing(steps=10, phase_seconds=1.0, batch_examples=1280)
    er = speed_memory.Timing(steps=10, phase_seconds=2.4, batch_examples=1280,
                             drawn_examples=1280, policy="reservoir")
    er.memory.update(add=0.06, draw=0.06)
    lines = speed_memory.table(["naive", "er"], {"naive": [naive], "er": [er]})
    row = next(line for line in lines if line.startswith("er "))
    fields = row.split()
    assert fields[:9] == ["er", "reservoir", "256.0", "240.000", "2.40", "<=", "2.4", "6.000",
                          "6.000"]
    assert fields[9] == "5.00%"


def test_tiny_mode_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import SHARED

    speed_memory.main(["--tiny", "--repeats", "1", "--threads", "1", "--data-dir", str(SHARED)])
    out = capsys.readouterr().out
    assert "1 torch thread(s)" in out and "TINY" in out
    assert "steps per run: naive 15, er 15, derpp 15" in out
    for name in ("naive", "er", "derpp"):
        assert any(line.startswith(f"{name} ") for line in out.splitlines())


# ------------------------------------------------------------------ speed_avalanche.py


@pytest.mark.parametrize("case", ["replay", "der"])
def test_our_side_of_the_memory_cases(case: str) -> None:
    from lifelong_kd.config import parse_set
    from lifelong_kd.presets import build_config

    benchmark, strategy, items = speed_avalanche.OURS[case]
    config = build_config(benchmark, strategy, parse_set(items))
    assert (config.memory.size, config.memory.batch_size) == (500, 128)
    assert (config.stream.n_tasks, config.train.epochs, config.train.batch_size) == (3, 1, 128)
    assert config.model.hidden == (400, 400)
    assert (config.train.optimizer, config.train.lr, config.train.momentum) == ("sgd", 0.01, 0.9)
    if case == "replay":  # Avalanche's ExperienceBalancedBuffer
        assert config.memory.policy == "task_balanced"
    else:  # Avalanche's ClassBalancedBufferWithLogits, DER with beta 0
        assert config.memory.policy == "class_balanced"
        assert (config.strategy.options["alpha"], config.strategy.options["beta"]) == (0.1, 0.0)


@pytest.mark.usefixtures("avalanche")
@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_avalanche_side_of_the_memory_cases() -> None:
    from avalanche.training.plugins import ReplayPlugin
    from torch import nn

    replay = speed_avalanche._strategy("replay", nn.Linear(784, 10), 128)
    plugin = next(p for p in replay.plugins if isinstance(p, ReplayPlugin))
    assert plugin.mem_size == 500 and plugin.batch_size_mem is None  # = train_mb_size
    assert (replay.train_mb_size, replay.train_epochs) == (128, 1)
    der = speed_avalanche._strategy("der", nn.Linear(784, 10), 128)
    assert (der.mem_size, der.batch_size_mem, der.alpha, der.beta) == (500, 128, 0.1, 0.0)
    opt = der.optimizer.param_groups[0]
    assert (opt["lr"], opt["momentum"]) == (0.01, 0.9)
