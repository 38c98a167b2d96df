"""Speed of the exemplar memory (issue 14, part 4): what a step of ``er`` and ``derpp`` costs
against a step of ``naive``, and how much of it the memory's own work takes.

On the Permuted-MNIST reference configuration (3 tasks, 1 epoch, MLP 2 x 400, SGD lr 0.01
momentum 0.9, batch 128) with a reservoir memory of 500 examples and draws of 128, our engine
(``lifelong_kd.engine.train_stream``, in this process) trains each strategy in turn; the
data are read once. For every run the script records:

- the step time: the seconds spent in the engine's training phases (``engine.run_phase``:
  batching, forward, loss, backward, optimiser step, and the memory's work inside the loss)
  divided by the optimiser steps taken; the evaluation after each task is not counted;
- the examples per step: the batch's plus those drawn from memory (``er``: one draw, twice
  naive's examples once the memory is full; ``derpp``: two draws, three times);
- the memory's time: seconds inside ``Memory.add`` (the reservoir insertion of each batch)
  and ``Memory.draw`` (the seeded draw, its gather and normalisation), by ``perf_counter``
  around the two methods (torch's CPU operations are synchronous, so the time is the work's;
  on a GPU the figures would need a synchronisation and are not meaningful), per step and as
  a share of the step; ``Memory.update`` (the task-end policies) is reported apart.

Each run is repeated ``--repeats`` times, the strategies interleaved (naive, er, derpp,
naive, ...), after one untimed warm-up run of each on a few hundred examples; the table gives
the median over repeats of each figure and the targets of issue 14: a step of ``er`` at most
2.4 x naive's, of ``derpp`` at most 3.6 x, the memory's add + draw under 5 % of a step.

Run from the repository root, on a quiet machine (nothing else running; the threads torch
uses are printed):

    python benchmarks/speed_memory.py --data-dir ../shared/datasets [--repeats 5] [--threads N]

``--strategies`` adds others (e.g. ``er-avalanche der-avalanche``: their memory is chosen at a
task's end, so their first task draws nothing and the targets do not apply). ``--tiny`` runs a
few hundred examples per task: a check that the script works, not a timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The Permuted-MNIST reference configuration (issue 14), on top of the permuted-mnist preset.
REFERENCE: dict[str, Any] = {
    "stream.n_tasks": 3, "train.epochs": 1, "model.hidden": [400, 400], "train.optimizer": "sgd",
    "train.lr": 0.01, "train.momentum": 0.9, "train.batch_size": 128,
    "train.eval_batch_size": 256,
}
#: The memory of the strategies that keep one (the policy: their preset's; ``er`` and
#: ``derpp``: reservoir).
MEMORY: dict[str, Any] = {"memory.size": 500, "memory.batch_size": 128}
#: Issue 14's ceilings on a step's time, as a multiple of naive's.
TARGETS = {"er": 2.4, "derpp": 3.6}
#: Issue 14's ceiling on the memory's add + draw, as a share of a step.
SHARE_TARGET = 0.05
#: --tiny: (training examples, test examples) of the whole dataset.
TINY = (600, 300)
#: The untimed warm-up run: training and test examples.
WARMUP = (512, 256)


@dataclass
class Timing:
    """What one run measured (seconds, counts)."""

    steps: int = 0
    phase_seconds: float = 0.0
    batch_examples: int = 0
    drawn_examples: int = 0
    memory: dict[str, float] = field(default_factory=lambda: {"add": 0.0, "draw": 0.0,
                                                              "update": 0.0})
    calls: dict[str, int] = field(default_factory=lambda: {"add": 0, "draw": 0, "update": 0})
    accuracy: float = 0.0
    #: ``memory.policy`` of a strategy that keeps a memory, else "-".
    policy: str = "-"

    @property
    def step_ms(self) -> float:
        return 1000 * self.phase_seconds / max(self.steps, 1)

    @property
    def examples_per_step(self) -> float:
        return (self.batch_examples + self.drawn_examples) / max(self.steps, 1)

    @property
    def memory_ms(self) -> float:
        """Milliseconds per step in ``Memory.add`` and ``Memory.draw``."""
        return 1000 * (self.memory["add"] + self.memory["draw"]) / max(self.steps, 1)


@contextmanager
def instrumented(timing: Timing) -> Iterator[None]:
    """Accumulate into ``timing`` while the block runs: the engine's phases (seconds, steps,
    examples per batch) and the memory's ``add`` / ``draw`` / ``update`` (seconds, calls,
    examples drawn). The originals are restored afterwards."""
    from lifelong_kd import engine
    from lifelong_kd.strategies.memory import Memory

    originals: dict[str, Any] = {name: getattr(Memory, name) for name in ("add", "draw", "update")}
    run_phase = engine.run_phase

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            timing.memory[name] += time.perf_counter() - start
            timing.calls[name] += 1
            if name == "draw" and out is not None:
                timing.drawn_examples += len(out)
            return out
        return wrapper

    def phase(ctx: Any, state: Any, ph: Any, *args: Any, **kwargs: Any) -> None:
        loss = ph.loss

        def counted(ctx_: Any, batch: Any) -> Any:
            timing.steps += 1
            timing.batch_examples += len(batch.y)
            return loss(ctx_, batch)

        start = time.perf_counter()
        run_phase(ctx, state, dataclasses.replace(ph, loss=counted), *args, **kwargs)
        timing.phase_seconds += time.perf_counter() - start

    for name, fn in originals.items():
        setattr(Memory, name, timed(name, fn))
    engine.run_phase = phase
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(Memory, name, fn)
        engine.run_phase = run_phase


def config_of(strategy: str, subset: tuple[int, int] | None) -> Any:
    """The run configuration of ``strategy`` on the reference configuration."""
    from lifelong_kd.presets import build_config
    from lifelong_kd.strategies.presets import strategy_preset

    overrides = dict(REFERENCE)
    if strategy_preset(strategy).cls.MEMORY == "required":
        overrides.update(MEMORY)
    if subset is not None:
        overrides.update({"data.train_subset": subset[0], "data.test_subset": subset[1]})
    return build_config("permuted-mnist", strategy, overrides)


def run_once(strategy: str, full: Any, subset: tuple[int, int] | None) -> Timing:
    """Train ``strategy`` once on the reference stream (of ``subset`` examples), measured."""
    from lifelong_kd.data.sources import subset as take
    from lifelong_kd.data.streams import build_stream
    from lifelong_kd.engine import train_stream

    config = config_of(strategy, subset)
    ds = take(full, config.data.train_subset, config.data.test_subset)
    stream = build_stream(config, ds)
    timing = Timing(policy=config.memory.policy if config.memory.size else "-")
    with instrumented(timing):
        state = train_stream(config, stream, progress=False)
    timing.accuracy = sum(state.rows[-1]) / len(state.rows[-1])
    return timing


def table(strategies: list[str], runs: dict[str, list[Timing]]) -> list[str]:
    """The report's lines: the median over repeats of each figure, per strategy; the ratio
    is of the median step times."""
    def med(name: str, fn: Callable[[Timing], float]) -> float:
        return statistics.median(fn(t) for t in runs[name])

    def per_step(part: str) -> Callable[[Timing], float]:
        return lambda t: 1000 * t.memory[part] / max(t.steps, 1)

    naive_ms = med("naive", lambda t: t.step_ms)
    head = (f"{'strategy':<15} {'memory':<14} {'examples':>8} {'step ms':>8} {'x naive':>7} "
            f"{'target':>6} {'add ms':>7} {'draw ms':>7} {'share':>6} {'target':>6} "
            f"{'update s':>8} {'acc %':>6}")
    lines = [head, "-" * len(head)]
    for name in strategies:
        step = med(name, lambda t: t.step_ms)
        has_memory = runs[name][0].policy != "-"
        share = med(name, lambda t: t.memory_ms / t.step_ms if t.step_ms else 0.0)
        lines.append(
            f"{name:<15} {runs[name][0].policy:<14} {med(name, lambda t: t.examples_per_step):>8.1f}"
            f" {step:>8.3f} {step / naive_ms:>7.2f} "
            f"{f'<= {TARGETS[name]:.1f}' if name in TARGETS else '-':>6} "
            f"{med(name, per_step('add')):>7.3f} {med(name, per_step('draw')):>7.3f} "
            f"{100 * share:>5.2f}% {'< 5%' if has_memory else '-':>6} "
            f"{med(name, lambda t: t.memory['update']):>8.3f} "
            f"{100 * med(name, lambda t: t.accuracy):>6.2f}")
    lines.append("")
    lines.append("step ms of each repeat: " + "; ".join(
        f"{name} {', '.join(f'{t.step_ms:.3f}' for t in runs[name])}" for name in strategies))
    lines.append(
        "examples: per step, the batch's and those drawn from memory (mean over the run); step "
        "ms: training-phase seconds / steps; add / draw ms: in Memory.add / Memory.draw per "
        "step; share: (add + draw) / step; update s: in Memory.update (task ends) per run; "
        "acc %: final average accuracy. Medians over repeats.")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LIFELONG_KD_DATA", ROOT.parent / "shared" /
                                                    "datasets")))
    parser.add_argument("--strategies", nargs="+", default=["naive", "er", "derpp"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (torch.set_num_threads); 0: torch's default")
    parser.add_argument("--tiny", action="store_true",
                        help="a few hundred examples per task: a check, not a timing")
    args = parser.parse_args(argv)

    import torch

    from lifelong_kd.data.sources import load_dataset

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    strategies = list(dict.fromkeys(["naive", *args.strategies]))
    subset = TINY if args.tiny else None
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs; "
          f"{'TINY (a check, not a timing)' if args.tiny else 'full data'}; "
          f"{args.repeats} repeat(s)")
    print("Permuted-MNIST, 3 tasks, 1 epoch, MLP 2 x 400, SGD lr 0.01 momentum 0.9, batch 128; "
          "memory 500 examples, draws of 128")
    full = load_dataset("mnist", args.data_dir.resolve(), offline=True, progress=False)
    for name in strategies:  # untimed: first calls, allocator, lazy imports
        run_once(name, full, WARMUP)
    runs: dict[str, list[Timing]] = {name: [] for name in strategies}
    for _ in range(args.repeats):
        for name in strategies:
            runs[name].append(run_once(name, full, subset))
    steps = {name: runs[name][0].steps for name in strategies}
    print(f"steps per run: {', '.join(f'{n} {s}' for n, s in steps.items())}")
    print("\n".join(table(strategies, runs)))


if __name__ == "__main__":
    main()
