"""Speed comparison: our strategies against Avalanche's own, each side a whole process
(issue 8: LwF; issue 14: Replay and DER).

The same configuration runs through `lifelong-kd run --strategy <ours>` (our engine, with the
preset that follows Avalanche's convention) and through a plain script that uses Avalanche
directly: its own benchmark and data loading from the same files, its own strategy class
(``avalanche.training.LwF``, ``Replay``, ``DER``), not our wrapper. Both evaluate every task
after every task (and before the first), as our runner does. The script prints both wall
times (Python start-up, imports, data loading, training, evaluation), their ratio, both final
average accuracies and their difference, and the case's targets where the issue set some.

Cases:

- ``permuted``: Permuted-MNIST, 3 tasks, 1 epoch, MLP 2 x 400, SGD lr 0.01 momentum 0.9,
  batch 128, LwF alpha 1, T 2 (Avalanche: ``PermutedMNIST``; its task 0 is permuted too).
- ``cifar``: Split-CIFAR-10 (the JPEG copy in <data-dir>/cifar10-jpeg), class-il, 5 tasks of 2
  classes, 1 epoch, the ConvNet (32-64 conv, 256 units), SGD lr 0.01 momentum 0.9, batch 64,
  LwF alpha 1, T 2, random crop (4-pixel padding) and horizontal flip (Avalanche: an
  ``ImageFolder`` through ``class_incremental_benchmark``, decoding JPEGs per example). Our
  side caches the decoded images on its first run; later repeats read the cache.
- ``replay`` (issue 14): the ``permuted`` configuration with experience replay: ours
  ``er-avalanche`` (a task-balanced memory of 500 examples updated at each task's end, each
  batch joined by a draw of 128 memory examples, CE over the classes seen: in domain-il every
  output) against ``avalanche.training.Replay(mem_size=500)`` (its ``ReplayPlugin``: an
  ``ExperienceBalancedBuffer`` of 500, memory batches of ``train_mb_size`` = 128,
  plugins/replay.py l.93-94; ``CrossEntropyLoss`` over all outputs).
- ``der`` (issue 14): the ``permuted`` configuration with DER: ours ``der-avalanche`` (a
  class-balanced memory of 500 with the logits recorded at each task's end, CE + 0.1 * MSE on
  a draw of 128) against ``avalanche.training.DER(mem_size=500, batch_size_mem=128,
  alpha=0.1, beta=0)`` (supervised/der.py l.151-239; with beta 0 it still computes its CE term
  on the draw, times 0).

Targets (issue 14, ``replay`` and ``der``): ours at least 5 x faster, final average accuracies
within 2 points. On both sides of the Permuted-MNIST cases task 0 is one random permutation
or the identity (ours keeps the preset's ``permute_first = false``; Avalanche's
``PermutedMNIST`` permutes every task): for an MLP, whose first layer treats the 784 inputs
alike, the two are the same problem.

Run from the repository root, on a quiet machine (needs the avalanche extra):

    python benchmarks/speed_avalanche.py --data-dir ../shared/datasets [--case all] [--repeats 3]

``--case`` takes one case or ``all`` (every case). ``--tiny`` runs a few hundred examples per
side: a check that the script works, not a timing. ``python benchmarks/speed_avalanche.py
avalanche-<case> ...`` runs the Avalanche side of one case alone (what the comparison starts
as a subprocess).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The Permuted-MNIST reference configuration (issues 8 and 14), on our side.
PERMUTED = [
    "stream.n_tasks=3", "train.epochs=1", "model.hidden=[400,400]", "train.optimizer=sgd",
    "train.lr=0.01", "train.momentum=0.9", "train.batch_size=128", "train.eval_batch_size=256",
]
#: Examples kept in memory and drawn per step (issue 14), both sides.
MEMORY_SIZE, MEMORY_BATCH = 500, 128
MEMORY = [f"memory.size={MEMORY_SIZE}", f"memory.batch_size={MEMORY_BATCH}"]
#: The settings of each case on our side (`lifelong-kd run BENCHMARK --strategy STRATEGY
#: --set ...`).
OURS: dict[str, tuple[str, str, list[str]]] = {
    "permuted": ("permuted-mnist", "lwf-avalanche",
                 [*PERMUTED, "strategy.alpha=1", "strategy.temperature=2"]),
    "cifar": ("split-cifar10-jpeg", "lwf-avalanche", [
        "stream.scenario=class-il", "stream.n_tasks=5", "train.epochs=1", "model.name=convnet",
        "model.channels=[32,64]", "train.optimizer=sgd", "train.lr=0.01", "train.momentum=0.9",
        "train.batch_size=64", "train.eval_batch_size=256", "train.augment=true",
        "strategy.alpha=1", "strategy.temperature=2",
    ]),
    "replay": ("permuted-mnist", "er-avalanche", [*PERMUTED, *MEMORY]),
    "der": ("permuted-mnist", "der-avalanche",
            [*PERMUTED, *MEMORY, "strategy.alpha=0.1", "strategy.beta=0"]),
}
CASES = list(OURS)
#: Avalanche's strategy on the other side of each case (:func:`_strategy`'s ``kind``), and the
#: class that ``kind`` names in ``avalanche.training``.
KIND: dict[str, str] = {"permuted": "lwf", "cifar": "lwf", "replay": "replay", "der": "der"}
AVALANCHE_CLASS: dict[str, str] = {"lwf": "LwF", "replay": "Replay", "der": "DER"}
#: (at least this many times faster, final average accuracy within this many points).
TARGETS: dict[str, tuple[float, float]] = {"replay": (5.0, 2.0), "der": (5.0, 2.0)}
#: Test examples per forward pass, both sides (our default; Avalanche's eval_mb_size).
EVAL_BATCH = 256
#: --tiny: (training examples, test examples) of the whole dataset.
TINY = (600, 300)
CIFAR_MEAN, CIFAR_STD = (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)


# ------------------------------------------------------------------ the Avalanche side


def _subset(data: Any, n: int, seed: int = 0) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return data.subset(torch.randperm(len(data), generator=g)[:n].tolist())


def _strategy(kind: str, model: Any, batch_size: int) -> Any:
    """Avalanche's own strategy ``kind`` (``lwf``, ``replay``, ``der``) with the case's
    settings: SGD lr 0.01 momentum 0.9, cross-entropy, 1 epoch, Avalanche's accuracy metric
    per experience and no logger."""
    import torch
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import DER, LwF, Replay
    from avalanche.training.plugins import EvaluationPlugin

    common: dict[str, Any] = dict(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        criterion=torch.nn.CrossEntropyLoss(), train_mb_size=batch_size, train_epochs=1,
        eval_mb_size=EVAL_BATCH,
        evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]),
    )
    if kind == "lwf":
        return LwF(alpha=1.0, temperature=2.0, **common)
    if kind == "replay":  # its ReplayPlugin draws train_mb_size memory examples per batch
        assert batch_size == MEMORY_BATCH
        return Replay(mem_size=MEMORY_SIZE, **common)
    if kind == "der":
        return DER(mem_size=MEMORY_SIZE, batch_size_mem=MEMORY_BATCH, alpha=0.1, beta=0.0,
                   **common)
    raise ValueError(f"unknown Avalanche strategy {kind!r}")


def _run(strategy: Any, bench: Any) -> list[list[float]]:
    """Train ``strategy`` over ``bench``; the accuracy on every test experience before the
    first task and after each task (Avalanche's own evaluation loop and accuracy metric)."""
    n = len(bench.test_stream)

    def row() -> list[float]:
        metrics = strategy.eval(bench.test_stream)
        prefix = "Top1_Acc_Exp/eval_phase/test_stream/"
        return [float(next(v for k, v in metrics.items()
                           if k.startswith(prefix) and k.endswith(f"/Exp{i:03d}")))
                for i in range(n)]

    rows = [row()]
    for exp in bench.train_stream:
        strategy.train(exp, eval_streams=[])
        rows.append(row())
    return rows


def mnist_root(data_dir: Path, work: Path) -> Path:
    """A root where torchvision's MNIST finds the IDX files decompressed, as its download
    leaves them (the shared copy holds the .gz files only, read-only)."""
    import gzip

    raw = data_dir / "MNIST" / "raw"
    if all((raw / f.name.removesuffix(".gz")).is_file() for f in raw.glob("*.gz")):
        return data_dir
    out = work / "MNIST" / "raw"
    out.mkdir(parents=True, exist_ok=True)
    for f in raw.glob("*.gz"):
        target = out / f.name.removesuffix(".gz")
        if not target.is_file():
            target.write_bytes(gzip.decompress(f.read_bytes()))
    return work


def avalanche_permuted(data_dir: Path, tiny: bool, kind: str = "lwf") -> list[list[float]]:
    """Permuted-MNIST with Avalanche's strategy ``kind``, as an Avalanche user writes it
    (``data_dir``: see :func:`mnist_root`)."""
    import torch
    from avalanche.benchmarks.classic import PermutedMNIST
    from torch import nn

    torch.manual_seed(0)
    bench = PermutedMNIST(n_experiences=3, seed=0, dataset_root=str(data_dir))
    if tiny:
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
        from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
        from avalanche.benchmarks.scenarios.task_aware import with_task_labels

        bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(
            train=[_subset(e.dataset, TINY[0]) for e in bench.train_stream],
            test=[_subset(e.dataset, TINY[1]) for e in bench.test_stream])))
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400),
                          nn.ReLU(), nn.Linear(400, 10))
    return _run(_strategy(kind, model, batch_size=128), bench)


def avalanche_cifar(data_dir: Path, tiny: bool) -> list[list[float]]:
    """Split-CIFAR-10 (JPEG copy), class-il, as an Avalanche user writes it."""
    import torch
    import torchvision.transforms as T
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset
    from torch import nn
    from torchvision.datasets import ImageFolder

    torch.manual_seed(0)
    folder = data_dir / "cifar10-jpeg"
    norm = T.Normalize(CIFAR_MEAN, CIFAR_STD)
    groups = {"train": (T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                   T.ToTensor(), norm]), None),
              "eval": (T.Compose([T.ToTensor(), norm]), None)}

    def dataset(split: str) -> Any:
        # ImageFolder's alphabetical class folders are CIFAR-10's label order; task label 0
        # (class-il), which Avalanche's LwF reads
        images = ImageFolder(str(folder / split))
        return _make_taskaware_classification_dataset(
            images, transform_groups=groups, task_labels=0, targets=images.targets,
            initial_transform_group="train" if split == "train" else "eval")

    train, test = dataset("train"), dataset("test")
    if tiny:
        train, test = _subset(train, TINY[0]), _subset(test, TINY[1])
    bench = class_incremental_benchmark({"train": train, "test": test},
                                        class_order=list(range(10)), num_experiences=5)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10),
    )
    return _run(_strategy("lwf", model, batch_size=64), bench)


# ------------------------------------------------------------------ the comparison


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return seconds


def run_ours(case: str, data_dir: Path, tiny: bool, out: Path) -> tuple[float, float]:
    """(wall seconds, final average accuracy) of `lifelong-kd run` for ``case``."""
    benchmark, strategy, items = OURS[case]
    if tiny:
        items = [*items, f"data.train_subset={TINY[0]}", f"data.test_subset={TINY[1]}"]
    cmd = [sys.executable, "-m", "lifelong_kd", "run", benchmark, "--strategy", strategy,
           "--data-dir", str(data_dir), "--offline", "--quiet", "--force", "--out", str(out)]
    for item in items:
        cmd += ["--set", item]
    return _timed(cmd), final_accuracy(out)


def final_accuracy(out: Path) -> float:
    """The final average accuracy of the run in ``out``: the mean of its accuracy matrix's last
    row (accuracy_matrix.csv, the first column the row's label)."""
    with (out / "accuracy_matrix.csv").open() as f:
        last = list(csv.reader(f))[-1][1:]
    return sum(map(float, last)) / len(last)


def run_avalanche(case: str, data_dir: Path, tiny: bool, out: Path) -> tuple[float, float]:
    """(wall seconds, final average accuracy) of the plain Avalanche script for ``case``
    (``out``: a folder for its report, made if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    report = out / "avalanche.json"
    if OURS[case][0] == "permuted-mnist":  # untimed: the files as torchvision's MNIST leaves them
        data_dir = mnist_root(data_dir, out / "avalanche-data")
    cmd = [sys.executable, str(Path(__file__).resolve()), f"avalanche-{case}",
           "--data-dir", str(data_dir), "--json", str(report)] + (["--tiny"] if tiny else [])
    seconds = _timed(cmd)
    last = json.loads(report.read_text())["rows"][-1]
    return seconds, sum(last) / len(last)


def compare(cases: list[str], data_dir: Path, repeats: int, tiny: bool) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"{'TINY (a check, not a timing)' if tiny else 'full data'}; {repeats} repeat(s)")
    for case in cases:
        ours_t, theirs_t, ours_acc, theirs_acc = [], [], 0.0, 0.0
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(repeats):
                t, ours_acc = run_ours(case, data_dir, tiny, Path(tmp) / "ours")
                ours_t.append(t)
                t, theirs_acc = run_avalanche(case, data_dir, tiny, Path(tmp))
                theirs_t.append(t)
        ours_s, theirs_s = statistics.median(ours_t), statistics.median(theirs_t)
        ratio, diff = theirs_s / ours_s, 100 * (ours_acc - theirs_acc)
        print(f"{case} (ours {OURS[case][1]}): lifelong-kd {ours_s:.1f} s (runs: "
              f"{', '.join(f'{t:.1f}' for t in ours_t)}), avalanche {theirs_s:.1f} s (runs: "
              f"{', '.join(f'{t:.1f}' for t in theirs_t)}), ratio {ratio:.2f}x; final average "
              f"accuracy: lifelong-kd {100 * ours_acc:.2f}, avalanche {100 * theirs_acc:.2f}, "
              f"difference {diff:+.2f} points")
        if case in TARGETS:
            faster, points = TARGETS[case]
            print(f"  targets: ratio >= {faster:g}x ({'met' if ratio >= faster else 'MISSED'}), "
                  f"|difference| <= {points:g} points "
                  f"({'met' if abs(diff) <= points else 'MISSED'})"
                  + (" [tiny: not a measurement]" if tiny else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("side", nargs="?", default="compare",
                        choices=["compare", *(f"avalanche-{c}" for c in CASES)])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LIFELONG_KD_DATA", ROOT.parent / "shared" /
                                                    "datasets")))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="a few hundred examples per side")
    parser.add_argument("--json", type=Path, help="(avalanche side) where to write its rows")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    if args.side == "compare":
        cases = CASES if args.case == "all" else [args.case]
        compare(cases, data_dir, args.repeats, args.tiny)
        return
    import warnings

    warnings.simplefilter("ignore")  # Avalanche's deprecation and solver warnings
    case = args.side.removeprefix("avalanche-")
    if case == "cifar":
        rows = avalanche_cifar(data_dir, args.tiny)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = avalanche_permuted(mnist_root(data_dir, Path(tmp)), args.tiny, KIND[case])
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}))
    print("final average accuracy", sum(rows[-1]) / len(rows[-1]))


if __name__ == "__main__":
    main()
