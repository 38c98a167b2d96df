"""FLOP-floor benchmark (issue 17): how far a run is from the arithmetic it must do.

A ratio against another library moves with the machine; the distance between a run and the
floating-point work it cannot avoid does not. For each case (a preset, a strategy and
``--set`` overrides) this script, in one call:

1. **Peak.** Measures the machine's fp32 matrix-product rate: ``torch.mm`` of two 2048 x 2048
   matrices (``2 * 2048**3`` FLOPs a call), three calls per timing, the best of five timings,
   in GFLOP/s, on the configuration's ``train.device``; before and after a case's timed runs
   (the best of the two is the case's peak), and with several cases every case is measured
   against the best peak of the whole call (:func:`with_peak`; each case's own measurements
   are kept as ``peaks_gflops``): a shared host's rate moves, and a low measurement would
   flatter a case's ratios (2026-12-01: 62 then 28 GFLOP/s in one call).
2. **FLOPs.** Counts the run's FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` on a
   *probe*: the run itself (the same configuration, data and ``lifelong_kd.engine.train_stream``)
   with each training phase cut to its first ``--probe-steps`` steps. A step is counted from the
   strategy's loss (the model's forward, the teacher's forward where the strategy has one:
   LwF's previous model; the memory's examples: DER++'s two draws) through ``backward()`` to
   the optimiser's step; every evaluation is counted in full (the test sets of every task, before
   the first task and after each), and so is what the strategy computes outside the steps
   (``other``: its hooks before and after a task's phases, e.g. LwF's teacher outputs for the
   task's examples, computed once per task when the inputs are not augmented), which does not
   depend on the number of steps. Then, with S_p the steps phase p of the real run takes,
   f_p,1..f_p,k its k probed steps and F_p the largest of f_p,2..f_p,k (a full batch, with a
   memory's full draws; f_p,1 when k = 1), the later steps taken to be like F_p (the smaller
   last batch of an epoch is counted as a full one: one step in ceil(n / batch_size) slightly
   over)::

       training   = sum_p ( f_p,1 + ... + f_p,k + (S_p - k) * F_p ) + other
       evaluation = sum over the run's evaluations of their FLOPs
       floor      = (training + evaluation) / peak        (seconds)

   the seconds the run would take if every FLOP ran at the matrix-product peak and nothing else
   cost any time. One teacher forward on a training batch is counted too (the teacher after the
   probe), to show its share of a step.
3. **The run.** Runs ``python -m lifelong_kd run ... --quiet --offline --force`` as a whole
   process (start-up, imports, data, training, evaluation, results, plots), ``--repeats``
   times, and prints the median wall seconds and the medians of its result.json ``timing``
   (``train_seconds``, ``eval_seconds``), with their ratios to the floor (whole / floor,
   training / training floor, evaluation / evaluation floor). The probe runs first, so the
   data cache is warm for every timed run.
4. **Layers.** Times a forward + backward of the model on one training batch, and of each of its
   convolutions and linear layers alone on the input it gets there (best of several), against
   their FLOPs: the fraction of the peak the model, its convolutions and its linear layers
   reach (a ConvNet's small convolutions do not reach a large product's rate). The training
   seconds over the training FLOPs done at the model's own rate (training / batch rate) say
   what the loop, the optimiser and the rest of a step add to the kernels, whatever share of
   the peak those reach.
5. **The peer** (``--peer``). Times Avalanche's own strategy on the same configuration, the
   Avalanche side of ``speed_avalanche.py`` (its :func:`run_avalanche`, a whole process), in the
   same call and interleaved with ours (ours, peer, ours, peer, ...: drift on a shared machine
   hits both), ``--repeats`` times each, and prints the median and peer / ours (whole process
   against whole process). ``permuted`` and ``cifar`` have Avalanche's LwF as their peer
   (``speed_avalanche.py --case permuted`` and ``--case cifar``); ``derpp`` has none
   (``speed_avalanche.py``'s ``der`` case is Permuted-MNIST with a class-balanced memory, not
   this Split-MNIST class-il DER++ run), nor has a ``--benchmark`` configuration: their rows say
   "no peer timed". ``--set`` items are not passed to the peer (it runs the case's own settings:
   the report says so).

What FlopCounterMode counts (``lifelong_kd/costs.py``): 2 FLOPs per multiply-add of matrix
products and convolutions, nothing for anything else (activations, pooling, losses, the
optimiser's update). The backward of a network's first layer computes no input gradient, so an
MLP's step counts less than 3 x its forward: 784-400-400-10 is 0.955 MFLOP forward and 2.238
MFLOP forward + backward per example (2 x 0.955 + the input gradients of the two upper layers,
2 x (400 x 400 + 400 x 10) = 0.328).

Cases (``--case``, or ``all``):

- ``permuted``: the Permuted-MNIST reference of issue 17: 3 tasks, 1 epoch, MLP 2 x 400, SGD lr
  0.01 momentum 0.9, batch 128, ``lwf-avalanche`` alpha 1, T 2; the settings of
  ``speed_avalanche.py --case permuted``, so that both compare the same run.
- ``derpp``: Split-MNIST class-il with DER++ (``split-mnist-memory`` preset: MLP 2 x 400, Adam lr
  0.001, batch 128, 2000 iterations per task, a reservoir memory of 500 examples, 128 drawn per
  step for each of its two draws).
- ``cifar``: Split-CIFAR-10 (JPEG copy, ``split-cifar10-jpeg``), class-il, 5 tasks, 1 epoch, the
  ConvNet 32-64, crop+flip, SGD lr 0.01 momentum 0.9, batch 64, ``lwf-avalanche`` alpha 1, T 2;
  the settings of ``speed_avalanche.py --case cifar``.

``--markdown FILE`` writes the table for the README, one row per case (case, machine, peak
GFLOP/s, floor, our whole-process and training seconds, whole / floor, training / training
floor, the peer's seconds, peer / ours, the fraction of the peak the convolutions reach), the
exact command line, the commit and date, and notes: final accuracies, the issue's targets met or
missed.

``--benchmark B --strategy S [--set KEY=VALUE ...]`` measures any other configuration instead
(``--set`` also adds to a named case's settings). ``--smoke`` runs a tiny version of each case
(600 training and 300 test examples, at most 20 steps per task, an image folder cut to 60 + 30
images per class through symbolic links, one repeat): a check that the script works, not a
measurement. ``--json PATH`` writes every figure. Run from the repository root, on a quiet
machine:

    LIFELONG_KD_DATA=../shared/datasets python benchmarks/floor.py [--case all] [--repeats 3]
        [--peer] [--markdown FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The matrix-product peak: n x n fp32 products, calls per timing, timings (best kept).
PEAK_N, PEAK_CALLS, PEAK_TIMINGS = 2048, 3, 5
#: --smoke: training and test examples kept, steps per task at most, images per class kept of
#: an image folder (train, test).
SMOKE_SUBSET, SMOKE_STEPS, SMOKE_FOLDER = (600, 300), 20, (60, 30)
#: The peer of each named case: the case of ``speed_avalanche.py`` whose Avalanche side runs the
#: same configuration (``derpp`` has none).
PEERS: dict[str, str] = {"permuted": "permuted", "cifar": "cifar"}
#: The targets of issue 17: (ratio, "<=" or ">=", bound) per case.
TARGETS: dict[str, list[tuple[str, str, float]]] = {
    "permuted": [("whole_over_floor", "<=", 1.5), ("train_over_train_floor", "<=", 1.3),
                 ("peer_over_ours", ">=", 5.0)],
    "cifar": [("peer_over_ours", ">=", 3.0)],
}
RATIO_LABELS = {"whole_over_floor": "whole / floor", "train_over_train_floor":
                "training / training floor", "peer_over_ours": "peer / ours"}
#: The repeats issue 17 asks of a comparison with the peer (median).
PEER_REPEATS = 3


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: ``lifelong-kd run BENCHMARK --strategy STRATEGY --set SETTINGS...``."""

    benchmark: str
    strategy: str
    settings: tuple[str, ...]
    about: str


def speed_avalanche() -> ModuleType:
    """``benchmarks/speed_avalanche.py``, the comparison with Avalanche, as a module."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import speed_avalanche as module

    return module


def named_cases() -> dict[str, Case]:
    """The cases of issue 17; ``permuted`` and ``cifar`` take their settings from
    ``speed_avalanche.py`` (the comparison with Avalanche), so both measure the same run."""
    ours = speed_avalanche().OURS

    def of(case: str, about: str) -> Case:
        benchmark, strategy, settings = ours[case]
        return Case(benchmark, strategy, tuple(settings), about)

    return {
        "permuted": of("permuted", "Permuted-MNIST reference: 3 tasks, 1 epoch, MLP 2x400, SGD "
                                   "0.01 m0.9, batch 128, lwf-avalanche alpha 1, T 2"),
        "derpp": Case("split-mnist-memory", "derpp", (),
                      "Split-MNIST class-il, DER++: MLP 2x400, Adam 0.001, batch 128, 2000 "
                      "iterations per task, reservoir memory of 500, 128 per draw"),
        "cifar": of("cifar", "Split-CIFAR-10 (JPEG copy) class-il: 5 tasks, 1 epoch, ConvNet "
                             "32-64, crop+flip, SGD 0.01 m0.9, batch 64, lwf-avalanche alpha 1, T 2"),
    }


# ------------------------------------------------------------------------------ the machine


def machine() -> dict[str, Any]:
    """CPU model, cores this process may use, torch's threads and version."""
    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return {"cpu": model, "cores": cores, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def best_seconds(fn: Callable[[], Any], device: Any, timings: int, calls: int = 1) -> float:
    """The best of ``timings`` timings of ``calls`` calls of ``fn`` (one untimed call first),
    in seconds per call, the device synchronised around each timing."""
    fn()
    synchronize(device)
    best = math.inf
    for _ in range(timings):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def matmul_peak(device: Any, n: int = PEAK_N, timings: int = PEAK_TIMINGS) -> float:
    """GFLOP/s of ``torch.mm`` of two n x n fp32 matrices (``2 n^3`` FLOPs a call)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    out = torch.empty(n, n, device=device)
    seconds = best_seconds(lambda: torch.mm(a, b, out=out), device, timings, PEAK_CALLS)
    return 2 * n**3 / seconds / 1e9


# ------------------------------------------------------------------------------ FLOP counts


@dataclasses.dataclass
class PhaseCount:
    """The counted steps of one phase of one task, and the steps the real run takes."""

    task: int
    name: str
    steps: int
    flops: list[int] = dataclasses.field(default_factory=list)

    @property
    def steady(self) -> int:
        """The FLOPs of a later step: the largest probed one after the first (the first alone
        when it is the only one)."""
        return max(self.flops[1:] or self.flops or [0])

    @property
    def total(self) -> int:
        """The phase's FLOPs in the real run: the probed steps, then the steady one repeated."""
        return sum(self.flops) + (self.steps - len(self.flops)) * self.steady


@dataclasses.dataclass
class Counts:
    """A run's FLOPs, from a probe (:func:`count_run`)."""

    phases: list[PhaseCount]
    evaluations: list[int]
    #: FLOPs outside the steps and the evaluations: a strategy's work before and after a
    #: task's phases (LwF's teacher outputs for the task's examples, computed once in
    #: ``before_task`` when the inputs are not augmented; a memory's end-of-task update).
    #: They do not depend on the number of steps, so the probe counts them in full.
    other: int
    teacher_forward: int | None  # one forward of the teacher on a training batch
    batch_size: int
    not_counted: list[str]  # phases that train with their own loop

    @property
    def steps(self) -> int:
        return sum(p.total for p in self.phases)

    @property
    def training(self) -> int:
        """What the engine times as training: the phases' steps and the strategy's hooks."""
        return self.steps + self.other

    @property
    def evaluation(self) -> int:
        return sum(self.evaluations)


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def count_run(config: Any, stream: Any, probe_steps: int) -> tuple[Counts, Any]:
    """The FLOPs of the run of ``config`` on ``stream``, counted on a probe of it (see the
    module's docstring), and the probe's final :class:`~lifelong_kd.engine.RunState`."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.utils.flop_counter import FlopCounterMode

    from lifelong_kd import engine
    from lifelong_kd.strategies.base import Phase

    state = engine.new_state(config, stream)
    strategy = state.strategy
    counter = FlopCounterMode(display=False)
    phases: list[PhaseCount] = []
    evaluations: list[int] = []
    not_counted: list[str] = []
    open_step: list[tuple[PhaseCount, int]] = []  # the step under way: its phase, FLOPs before

    def counted_loss(loss: Callable[..., Any], record: PhaseCount) -> Callable[..., Any]:
        def run(ctx: Any, batch: Any) -> Any:
            open_step[:] = [(record, counter.get_total_flops())]
            return loss(ctx, batch)
        return run

    def after_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        if open_step:
            record, before = open_step.pop()
            record.flops.append(counter.get_total_flops() - before)

    own_phases = strategy.phases

    def probe_phases(ctx: Any) -> list[Any]:
        out = []
        for phase in own_phases(ctx):
            if not isinstance(phase, Phase):
                not_counted.append(f"task {ctx.index} {type(phase).__name__}")
                out.append(phase)
                continue
            record = PhaseCount(ctx.index, phase.name, phase.steps)
            phases.append(record)
            out.append(dataclasses.replace(phase, steps=min(phase.steps, probe_steps),
                                           loss=counted_loss(phase.loss, record)))
        return out

    own_evaluate = engine.evaluate

    def counted_evaluate(*args: Any, **kwargs: Any) -> Any:
        before = counter.get_total_flops()
        out = own_evaluate(*args, **kwargs)
        evaluations.append(counter.get_total_flops() - before)
        return out

    hook = register_optimizer_step_post_hook(after_step)
    try:
        with _patched(strategy, "phases", probe_phases), \
                _patched(engine, "evaluate", counted_evaluate), counter:
            engine.train_stream(config, stream, state, progress=False)
    finally:
        hook.remove()
    teacher_flops = None
    teacher = strategy.teacher_model()
    if teacher is not None:
        x = _batch(config, stream)
        with torch.inference_mode(), FlopCounterMode(display=False) as tc:
            teacher(x)
        teacher_flops = tc.get_total_flops()
    probed = sum(sum(p.flops) for p in phases)
    other = counter.get_total_flops() - probed - sum(evaluations)
    counts = Counts(phases, evaluations, other, teacher_flops, config.train.batch_size,
                    not_counted)
    return counts, state


def _batch(config: Any, stream: Any) -> Any:
    """A training batch of normal values: (batch_size, C, H, W) on the run's device."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(config.train.batch_size, *stream.input_shape, generator=g)
    return x.to(torch.device(config.train.device))


# ------------------------------------------------------------------------------ layer rates


def layer_rates(model: Any, config: Any, stream: Any, timings: int) -> dict[str, Any]:
    """FLOPs and best seconds of a forward + backward of ``model`` on one training batch (cross-
    entropy on every output), and of each ``nn.Conv2d`` and ``nn.Linear`` alone on the input it
    gets in that forward (the first layer without an input gradient, as in the model)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(config.train.device)
    x = _batch(config, stream)
    y = torch.arange(len(x), device=device) % stream.n_outputs
    model.train()

    def model_step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    inputs: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda m, a: inputs.append((m, a[0].detach())))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with FlopCounterMode(display=False) as fc:
            model_step()
    finally:
        for h in hooks:
            h.remove()
    out: dict[str, Any] = {"model": {"flops": fc.get_total_flops(),
                                     "seconds": best_seconds(model_step, device, timings)}}
    layers = []
    for i, (module, inp) in enumerate(inputs):
        fmt = (torch.channels_last if inp.dim() == 4 and not inp.is_contiguous()
               and inp.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
        xin = torch.randn(inp.shape, device=device).contiguous(memory_format=fmt)
        xin.requires_grad_(i > 0)
        grad = torch.ones_like(module(xin))

        def layer_step(module: nn.Module = module, xin: torch.Tensor = xin,
                       grad: torch.Tensor = grad) -> None:
            module.zero_grad(set_to_none=True)
            xin.grad = None
            module(xin).backward(grad)

        with FlopCounterMode(display=False) as lc:
            layer_step()
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        layers.append({"kind": kind, "layer": repr(module), "input": list(inp.shape),
                       "flops": lc.get_total_flops(),
                       "seconds": best_seconds(layer_step, device, timings)})
    out["layers"] = layers
    for kind in ("conv", "linear"):
        chosen = [la for la in layers if la["kind"] == kind]
        if chosen:
            out[kind] = {"flops": sum(la["flops"] for la in chosen),
                         "seconds": sum(la["seconds"] for la in chosen)}
    model.zero_grad(set_to_none=True)
    return out


# ------------------------------------------------------------------------------ the run


def run_settings(case: Case, extra: list[str], smoke: bool, data_dir: Path, work: Path) -> list[str]:
    """The ``--set`` items of the case's run (with --smoke's reductions appended)."""
    from lifelong_kd.config import parse_set
    from lifelong_kd.presets import build_config

    items = [*case.settings, *extra]
    if not smoke:
        return items
    items += [f"data.train_subset={SMOKE_SUBSET[0]}", f"data.test_subset={SMOKE_SUBSET[1]}"]
    config = build_config(case.benchmark, case.strategy, parse_set(items))
    items.append(f"train.iterations={min(config.train.iterations or SMOKE_STEPS, SMOKE_STEPS)}")
    if config.data.dataset in ("cifar10-jpeg", "imagefolder"):
        src = Path(config.data.path or "cifar10-jpeg").expanduser()
        src = src if src.is_absolute() else data_dir / src
        items.append(f"data.path={small_image_folder(src, work / 'smoke-folder')}")
    return items


def small_image_folder(src: Path, dst: Path) -> Path:
    """``dst``: the first images (sorted names) of each class folder of the image folder
    ``src``, as symbolic links (:data:`SMOKE_FOLDER` per class for train and test)."""
    for split, n in zip(("train", "test"), SMOKE_FOLDER, strict=True):
        for cls in sorted(p.name for p in (src / split).iterdir() if p.is_dir()):
            (dst / split / cls).mkdir(parents=True, exist_ok=True)
            for name in sorted(os.listdir(src / split / cls))[:n]:
                (dst / split / cls / name).symlink_to(src / split / cls / name)
    return dst


def build(case: Case, items: list[str], data_dir: Path) -> tuple[Any, Any]:
    """The run's configuration and stream, as ``lifelong-kd run`` makes them."""
    from lifelong_kd.config import parse_set
    from lifelong_kd.data.sources import load_dataset, subset
    from lifelong_kd.data.streams import build_stream
    from lifelong_kd.presets import build_config

    config = build_config(case.benchmark, case.strategy, parse_set(items))
    full = load_dataset(config.data.dataset, data_dir, offline=True, path=config.data.path,
                        progress=False)
    ds = subset(full, config.data.train_subset, config.data.test_subset)
    return config, build_stream(config, ds)


def run_command(case: Case, items: list[str], data_dir: Path, out: Path,
                options: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "lifelong_kd", "run", case.benchmark, "--strategy",
           case.strategy, "--data-dir", str(data_dir), "--offline", "--quiet", "--force",
           "--out", str(out), *options]
    for item in items:
        cmd += ["--set", item]
    return cmd


def time_run(cmd: list[str], out: Path) -> dict[str, float]:
    """Wall seconds of the whole process, result.json's timing and the final average accuracy
    (timed as the comparison with Avalanche times a command)."""
    sa = speed_avalanche()
    wall = sa._timed(cmd)
    timing = json.loads((out / "result.json").read_text())["timing"]
    return {"whole_seconds": wall, "total_seconds": timing["total_seconds"],
            "train_seconds": timing["train_seconds"], "eval_seconds": timing["eval_seconds"],
            "final_accuracy": sa.final_accuracy(out)}


def time_peer(case: str, data_dir: Path, tiny: bool, out: Path) -> dict[str, float]:
    """Wall seconds and final average accuracy of ``speed_avalanche.py``'s Avalanche side of
    ``case`` (a whole process; ``tiny``: its few hundred examples)."""
    seconds, accuracy = speed_avalanche().run_avalanche(case, data_dir, tiny, out)
    return {"whole_seconds": seconds, "final_accuracy": accuracy}


def peer_name(case: str) -> str:
    """``Avalanche 0.6.0 LwF``: the library, its version and the strategy of ``case``'s peer."""
    from importlib.metadata import PackageNotFoundError, version

    sa = speed_avalanche()
    try:
        lib = f"Avalanche {version('avalanche-lib')}"
    except PackageNotFoundError:
        lib = "Avalanche"
    return f"{lib} {sa.AVALANCHE_CLASS[sa.KIND[case]]}"


def interleave(ours: Callable[[], dict[str, float]], peer: Callable[[], dict[str, float]] | None,
               repeats: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """``repeats`` timings of ours and of the peer (none without one), in turn: ours, peer,
    ours, peer, ..., so that a change of the machine's load over the call hits both."""
    runs: list[dict[str, float]] = []
    peer_runs: list[dict[str, float]] = []
    for _ in range(repeats):
        runs.append(ours())
        if peer is not None:
            peer_runs.append(peer())
    return runs, peer_runs


# ------------------------------------------------------------------------------ one case


@contextlib.contextmanager
def _smoke_cache(smoke: bool, tmp: str) -> Iterator[None]:
    """With --smoke, the decoded-data caches (``$XDG_CACHE_HOME``, also the run's) in ``tmp``:
    a smoke run leaves no cache of its temporary image folder behind."""
    if not smoke:
        yield
        return
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


def measure(name: str, case: Case, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one case (see the module's docstring), as :func:`summary` assembles them."""
    import torch

    repeats = 1 if args.smoke else args.repeats
    timings = 3 if args.smoke else 7
    peer_case = PEERS.get(name) if args.peer and not args.benchmark else None
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp, _smoke_cache(args.smoke, tmp):
        work = Path(tmp)
        items = run_settings(case, args.set or [], args.smoke, args.data_dir, work)
        config, stream = build(case, items, args.data_dir)
        device = torch.device(config.train.device)
        counts, state = count_run(config, stream, args.probe_steps)
        layers = layer_rates(state.model, config, stream, timings)
        peak = matmul_peak(device, timings=2 if args.smoke else PEAK_TIMINGS)
        cmd = run_command(case, items, args.data_dir, work / "run", args.run_option or [])
        peer_fn = functools.partial(time_peer, peer_case, args.data_dir, args.smoke,
                                    work / "peer") if peer_case else None
        runs, peer_runs = interleave(functools.partial(time_run, cmd, work / "run"), peer_fn,
                                     repeats)
        # the peak again after the timed runs: the host's rate can move during a case
        peaks = [peak, matmul_peak(device, timings=2 if args.smoke else PEAK_TIMINGS)]
    peer: dict[str, Any] | None = None
    if peer_case:
        peer = {"case": peer_case, "name": peer_name(peer_case), "runs": peer_runs,
                "command": f"python benchmarks/speed_avalanche.py --case {peer_case}"
                           + (" --tiny" if args.smoke else "")}
        if args.set:
            peer["note"] = ("the --set items are not passed to the peer: it runs the case's "
                            "own settings")
    elif args.peer:
        peer = {"name": None, "reason": "speed_avalanche.py has no Avalanche side of this "
                                        "configuration"}
    out = summary(name, case, items, machine={**machine(), "device": str(device)},
                  peak=max(peaks), counts=counts, layers=layers, runs=runs, peer=peer,
                  smoke=args.smoke, probe_steps=args.probe_steps)
    return {**out, "peaks_gflops": peaks}


def with_peak(r: dict[str, Any], peak: float) -> dict[str, Any]:
    """The figures of case ``r`` against another ``peak`` (GFLOP/s): the floors scale by
    r.peak / peak, the floor ratios and the convolutions' share of the peak by peak / r.peak
    (and the second by r.peak / peak); the rest is unchanged. :func:`main` gives every case of
    an invocation the best peak measured in it: the machine's rate, where one low measurement
    (a shared host's throughput moves) would flatter a case's ratios."""
    scale = r["peak_gflops"] / peak
    floor = {k: v * scale for k, v in r["floor"].items()}
    ratios = dict(r["ratios"])
    for key in ("whole_over_floor", "train_over_train_floor", "eval_over_eval_floor"):
        if ratios.get(key) is not None:
            ratios[key] = ratios[key] / scale
    conv = r.get("conv_of_peak")
    return {**r, "peak_gflops": peak, "floor": floor, "ratios": ratios,
            "conv_of_peak": conv * scale if conv is not None else None}


def summary(name: str, case: Case, items: list[str], *, machine: dict[str, Any], peak: float,
            counts: Counts, layers: dict[str, Any], runs: list[dict[str, float]],
            peer: dict[str, Any] | None, smoke: bool, probe_steps: int) -> dict[str, Any]:
    """A case's figures from its measurements: the floor (FLOPs / peak), the medians of the runs
    and of the peer's, and the ratios

        whole / floor,  training / training floor,  evaluation / evaluation floor,
        peer / ours = median peer whole seconds / median our whole seconds,
        training / batch rate = training seconds / (training FLOPs / the rate of one
                                training batch's forward + backward, ``layers["model"]``),

the last one independent of the peak: how far the run's training is from its FLOPs done at
the speed torch reaches on the model's own shapes (what is left is the loop's and the
optimiser's own cost, not the kernels' efficiency),

    and the fraction of the peak the convolutions reach (their FLOPs / their seconds / peak;
    None for a model without one). ``peer``: None (not asked for), ``{"name": None, "reason":
    ...}`` (none timed) or ``{"case", "name", "runs", ...}``, completed here with ``seconds``
    and ``final_accuracy`` (medians)."""
    measured = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    flops = counts.training + counts.evaluation
    floor = {"seconds": flops / peak / 1e9, "train_seconds": counts.training / peak / 1e9,
             "eval_seconds": counts.evaluation / peak / 1e9}
    peer_over_ours = None
    if peer is not None and peer.get("runs"):
        peer = {**peer, "seconds": statistics.median(r["whole_seconds"] for r in peer["runs"]),
                "final_accuracy": statistics.median(r["final_accuracy"] for r in peer["runs"])}
        peer_over_ours = peer["seconds"] / measured["whole_seconds"]
    conv = layers.get("conv")
    model = layers.get("model")
    batch_rate = model["flops"] / model["seconds"] if model and model["seconds"] else None
    return {
        "case": name, "about": case.about, "smoke": smoke,
        "command": "lifelong-kd run " + " ".join(
            [case.benchmark, "--strategy", case.strategy, *(f"--set {i}" for i in items)]),
        "machine": machine,
        "peak_gflops": peak,
        "flops": {
            "training": counts.training, "steps": counts.steps, "other": counts.other,
            "evaluation": counts.evaluation, "run": flops,
            "phases": [dataclasses.asdict(p) | {"steady": p.steady, "total": p.total}
                       for p in counts.phases],
            "evaluations": counts.evaluations, "teacher_forward": counts.teacher_forward,
            "batch_size": counts.batch_size, "not_counted": counts.not_counted,
            "probe_steps": probe_steps,
        },
        "floor": floor,
        "measured": measured, "runs": runs,
        "peer": peer,
        "ratios": {
            "whole_over_floor": measured["whole_seconds"] / floor["seconds"],
            "train_over_train_floor": measured["train_seconds"] / floor["train_seconds"],
            "eval_over_eval_floor": measured["eval_seconds"] / floor["eval_seconds"]
            if floor["eval_seconds"] else None,
            "peer_over_ours": peer_over_ours,
            "train_over_batch_rate": measured["train_seconds"] / (counts.training / batch_rate)
            if batch_rate and counts.training else None,
        },
        "conv_of_peak": conv["flops"] / conv["seconds"] / 1e9 / peak if conv else None,
        "layers": layers,
    }


def targets(r: dict[str, Any]) -> list[str]:
    """Issue 17's targets for the case of ``r``, each ``whole / floor 2.25 x <= 1.5: MISSED``
    (``not measured`` where the ratio is missing: no peer timed)."""
    out = []
    for key, op, bound in TARGETS.get(r["case"], []):
        value = r["ratios"].get(key)
        if value is None:
            verdict = "not measured"
        else:
            met = value <= bound if op == "<=" else value >= bound
            verdict = f"{value:.2f} x {op} {bound:g}: {'met' if met else 'MISSED'}"
        out.append(f"{RATIO_LABELS[key]} {verdict}")
    return out



def _g(flops: float) -> str:
    return f"{flops / 1e9:.1f} GFLOP" if flops >= 1e9 else f"{flops / 1e6:.3f} MFLOP"


def _rate(part: dict[str, Any], peak: float) -> str:
    rate = part["flops"] / part["seconds"] / 1e9
    return (f"{_g(part['flops'])} in {1e3 * part['seconds']:.2f} ms = {rate:.0f} GFLOP/s "
            f"= {100 * rate / peak:.0f}% of the peak")


def report(r: dict[str, Any]) -> None:
    m, f, fl, ms, ra = r["machine"], r["flops"], r["floor"], r["measured"], r["ratios"]
    print(f"== {r['case']}: {r['about']}" + ("  [SMOKE: a check, not a measurement]"
                                             if r["smoke"] else ""))
    print(f"  run: {r['command']}")
    print(f"  machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with "
          f"{m['torch_threads']} threads, device {m['device']}")
    print(f"  peak: {r['peak_gflops']:.1f} GFLOP/s (torch.mm {PEAK_N} x {PEAK_N} fp32, best of "
          f"{PEAK_TIMINGS} timings of {PEAK_CALLS} calls)")
    print(f"  FLOPs (FlopCounterMode, a probe of {f['probe_steps']} steps per phase):")
    for p in f["phases"]:
        print(f"    task {p['task']} {p['name']}: {p['steps']} steps x {_g(p['steady'])} "
              f"(first step {_g(p['flops'][0]) if p['flops'] else '-'}) = {_g(p['total'])}")
    print(f"    outside the steps (the strategy's work before and after each task's phases): "
          f"{_g(f['other'])}")
    if f["teacher_forward"] is not None:
        print(f"    teacher forward: {_g(f['teacher_forward'])} per batch of {f['batch_size']} "
              f"({_g(f['teacher_forward'] / f['batch_size'])} per example)")
    evals = f["evaluations"]
    if evals:
        print(f"    evaluation: {len(evals)} passes x {_g(evals[-1])} = {_g(f['evaluation'])}")
    for what in f["not_counted"]:
        print(f"    NOT COUNTED (its own training loop): {what}")
    print(f"    run: training {_g(f['training'])} + evaluation {_g(f['evaluation'])} = "
          f"{_g(f['run'])}")
    print(f"  floor: {fl['seconds']:.2f} s (training {fl['train_seconds']:.2f} s, evaluation "
          f"{fl['eval_seconds']:.2f} s)")
    n = len(r["runs"])
    walls = ", ".join(f"{x['whole_seconds']:.2f}" for x in r["runs"])
    print(f"  measured ({'median of ' + str(n) if n > 1 else 'one run'}): whole process "
          f"{ms['whole_seconds']:.2f} s, training {ms['train_seconds']:.2f} s, evaluation "
          f"{ms['eval_seconds']:.2f} s (runs: {walls} s)")
    eval_ratio = f", evaluation / its floor {ra['eval_over_eval_floor']:.2f} x" \
        if ra["eval_over_eval_floor"] is not None else ""
    print(f"  ratios: whole / floor {ra['whole_over_floor']:.2f} x, training / training floor "
          f"{ra['train_over_train_floor']:.2f} x{eval_ratio}")
    if ra.get("train_over_batch_rate") is not None:
        print(f"  training / its FLOPs at one training batch's fwd+bwd rate (below): "
              f"{ra['train_over_batch_rate']:.2f} x")
    peer = r.get("peer")
    if peer is not None and peer.get("name") is None:
        print(f"  peer: no peer timed ({peer['reason']})")
    elif peer is not None:
        n = len(peer["runs"])
        walls = ", ".join(f"{x['whole_seconds']:.2f}" for x in peer["runs"])
        print(f"  peer: {peer['name']} (`{peer['command']}`'s Avalanche side, interleaved with "
              f"ours), {'median of ' + str(n) if n > 1 else 'one run'}: whole process "
              f"{peer['seconds']:.2f} s (runs: {walls} s); peer / ours "
              f"{ra['peer_over_ours']:.2f} x; final average accuracy: ours "
              f"{100 * ms['final_accuracy']:.2f} %, peer {100 * peer['final_accuracy']:.2f} %")
        if "note" in peer:
            print(f"    NOTE: {peer['note']}")
    checks = targets(r)
    if checks:
        print("  targets (issue 17): " + "; ".join(checks)
              + (" [smoke: not a measurement]" if r["smoke"] else ""))
    la, peak = r["layers"], r["peak_gflops"]
    print(f"  fwd+bwd of one training batch: model {_rate(la['model'], peak)}")
    for kind, label in (("conv", "convolutions"), ("linear", "linear layers")):
        if kind in la:
            print(f"    {label}: {_rate(la[kind], peak)}")
    for layer in la["layers"]:
        print(f"      {layer['layer']} on {tuple(layer['input'])}: {_rate(layer, peak)}")
    sys.stdout.flush()


# ------------------------------------------------------------------------------ the table


def _runs(runs: list[dict[str, float]]) -> str:
    """``9.00 (9.0, 8.0, 12.0)``: the median of the runs' whole seconds, the runs in brackets."""
    median = statistics.median(r["whole_seconds"] for r in runs)
    if len(runs) == 1:
        return f"{median:.2f}"
    each = ", ".join(f"{r['whole_seconds']:.1f}" for r in runs)
    return f"{median:.2f} ({each})"


def _machine(m: dict[str, Any]) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads, "
            f"{m['device']})")


def markdown(results: list[dict[str, Any]], invocation: str, commit: str, date: str) -> str:
    """The README table of ``results`` (one row per case, every figure from the one
    ``invocation``), then a note per case and what the columns mean."""
    header = ["case", "machine", "peak GFLOP/s", "floor s (training)", "ours whole s",
              "ours training s", "whole / floor", "training / training floor",
              "training / at one batch's rate", "peer s", "peer / ours",
              "convolutions, % of peak"]
    lines = [f"`{invocation}` (commit `{commit}`, {date}), one invocation: every figure of a "
             "row from the same call, our runs and the peer's interleaved.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for r in results:
        fl, ms, ra, peer = r["floor"], r["measured"], r["ratios"], r.get("peer")
        if peer is None:
            peer_cell, over = "not timed (no --peer)", "–"
        elif peer.get("name") is None:
            peer_cell, over = "no peer timed", "–"
        else:
            peer_cell, over = f"{peer['name']}: {_runs(peer['runs'])}", \
                f"**{ra['peer_over_ours']:.2f}×**"
        conv = r.get("conv_of_peak")
        lines.append("| " + " | ".join([
            f"`{r['case']}`: {r['about']}", _machine(r["machine"]), f"{r['peak_gflops']:.0f}",
            f"{fl['seconds']:.2f} ({fl['train_seconds']:.2f})", _runs(r["runs"]),
            f"{ms['train_seconds']:.2f}", f"**{ra['whole_over_floor']:.2f}×**",
            f"**{ra['train_over_train_floor']:.2f}×**",
            f"{ra['train_over_batch_rate']:.2f}×" if ra.get("train_over_batch_rate") else "–",
            peer_cell, over,
            f"{100 * conv:.0f} %" if conv is not None else "– (none)"]) + " |")
        note = f"- `{r['case']}`: `{r['command']}`; final average accuracy: ours " \
               f"{100 * ms['final_accuracy']:.2f} %"
        if peer is not None and peer.get("name") is not None:
            note += f", peer {100 * peer['final_accuracy']:.2f} %"
            if len(peer["runs"]) < PEER_REPEATS:
                note += (f"; {len(peer['runs'])} repeat(s): issue 17 asks for the median of at "
                         f"least {PEER_REPEATS}")
            if "note" in peer:
                note += f"; {peer['note']}"
        elif peer is not None:
            note += f"; no peer timed: {peer['reason']}"
        checks = targets(r)
        if checks:
            note += "; targets (issue 17): " + "; ".join(checks)
        notes.append(note + ".")
    lines += ["", *notes, "",
              "Floor: the run's FLOPs (`torch.utils.flop_counter.FlopCounterMode`: training "
              "steps, teacher forwards, evaluations) over the peak, the fp32 `torch.mm` rate "
              f"of {PEAK_N} x {PEAK_N} matrices measured in the same call (the training floor: "
              "the training FLOPs alone). Ours: `lifelong-kd run`, a whole process (start-up, "
              "imports, data, training, evaluation, results, plots), and its result.json "
              "training seconds; the peer: Avalanche's own strategy on the same configuration "
              "(`benchmarks/speed_avalanche.py`'s Avalanche side, a whole process); medians, "
              "the runs in brackets. Convolutions, % of peak: a forward + backward of each of "
              "the model's convolutions alone on the input it gets from one training batch "
              "(best of several timings), their FLOPs over their seconds, against the peak. "
              "Training / at one batch's rate: the training seconds over the training FLOPs "
              "done at the rate a forward + backward of one training batch of the model "
              "reaches (best of several timings): what the loop, the optimiser and the rest "
              "of a step add to the kernels, whatever their share of the peak."]
    if any(r["smoke"] for r in results):
        lines += ["", "SMOKE: tiny cases, a check of the script, not a measurement."]
    return "\n".join(lines) + "\n"


def commit() -> str:
    """The checkout's commit (short), ``+ uncommitted changes`` where tracked files differ."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" + uncommitted changes" if dirty else "")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="all",
                        help="permuted, derpp, cifar, or all (default); ignored with --benchmark")
    parser.add_argument("--benchmark", help="a preset to measure instead of the named cases")
    parser.add_argument("--strategy", default="naive", help="with --benchmark (default: naive)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a setting added to every case (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    parser.add_argument("--probe-steps", type=int, default=4,
                        help="steps counted per phase of the probe (default 4)")
    parser.add_argument("--run-option", action="append", metavar="OPTION",
                        help="an option passed to `lifelong-kd run`, e.g. --run-option=--no-plots")
    parser.add_argument("--smoke", action="store_true", help="tiny cases: a check of the script")
    parser.add_argument("--peer", action="store_true",
                        help="also time Avalanche's own strategy on the same configuration "
                             "(speed_avalanche.py's Avalanche side), interleaved with ours")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="write the README table (one row per case) and the command line")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LIFELONG_KD_DATA", ROOT.parent / "shared" /
                                                    "datasets")))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    invocation = shlex.join(["python", "benchmarks/floor.py", *argv])
    checkout = commit()  # the code measured, before this call writes its own outputs
    parser_ = parser()
    args = parser_.parse_args(argv)
    args.data_dir = args.data_dir.expanduser().resolve()
    if args.repeats < 1 or args.probe_steps < 1:
        parser_.error("--repeats and --probe-steps must be at least 1")
    if args.benchmark:
        cases = {"custom": Case(args.benchmark, args.strategy, (), "a custom configuration")}
    else:
        known = named_cases()
        chosen = list(known) if args.case == "all" else args.case.split(",")
        unknown = [c for c in chosen if c not in known]
        if unknown:
            parser_.error(f"unknown case {', '.join(unknown)}; cases: {', '.join(known)}, all")
        cases = {c: known[c] for c in chosen}
    results = []
    for name, case in cases.items():
        results.append(measure(name, case, args))
        report(results[-1])
    if len(results) > 1:  # every case against the best peak of the call (with_peak)
        best = max(r["peak_gflops"] for r in results)
        results = [with_peak(r, best) for r in results]
        print(f"== every case against the best peak of this call, {best:.1f} GFLOP/s "
              f"(measured: {', '.join(f'{p:.1f}' for r in results for p in r['peaks_gflops'])})")
        for r in results:
            ra = r["ratios"]
            print(f"  {r['case']}: floor {r['floor']['seconds']:.2f} s, whole / floor "
                  f"{ra['whole_over_floor']:.2f} x, training / training floor "
                  f"{ra['train_over_train_floor']:.2f} x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(results, invocation, checkout, time.strftime("%Y-%m-%d")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
