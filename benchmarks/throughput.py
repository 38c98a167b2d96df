"""Throughput benchmark (issue 16): one comparison run serially, with ``--jobs 2`` and on Ray.

The comparison: Split-MNIST (the ``split-mnist`` preset, real data from ``$LIFELONG_KD_DATA``,
offline), naive and lwf, 6 seeds: 12 runs. Each measurement is one fresh Python process that
calls the library the way ``lifelong-kd compare`` does, into a fresh temporary out folder, and
is timed from its start to its end, as a user's command is: imports, reading the data,
starting the workers (and, for Ray, a local Ray with this machine's cores), the runs and the
report. The script prints, for each executor, the runs, the seconds (the median over
``--repeats``; use 3 or more for figures you publish), the runs per minute and the ratio to
serial, then checks that every executor gave the same accuracy matrices, bit for bit, and
prints the command lines. Run from the repository root:

    LIFELONG_KD_DATA=../shared/datasets python benchmarks/throughput.py --repeats 3

    python benchmarks/throughput.py --smoke        # 4 tiny runs: does everything work?
    python benchmarks/throughput.py --executors serial jobs --jobs 4

The same comparisons from the command line:

    lifelong-kd compare split-mnist --strategies naive lwf --seeds 0 1 2 3 4 5 --offline
    lifelong-kd compare split-mnist --strategies naive lwf --seeds 0 1 2 3 4 5 --offline --jobs 2
    lifelong-kd compare split-mnist --strategies naive lwf --seeds 0 1 2 3 4 5 --offline \\
        --executor ray

Serial runs use torch's default threads (every core, one run at a time); ``--jobs N`` gives
each of its N runs ``cores // N`` threads; a Ray task takes 1 CPU and 1 thread, so a local Ray
runs one run per core. ``--threads T`` sets the threads of every executor instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARK = "split-mnist"
STRATEGIES = ("naive", "lwf")
SEEDS = (0, 1, 2, 3, 4, 5)
#: The tiny setting of ``--smoke``: 4 runs of a few steps on a subset of MNIST.
SMOKE_SEEDS = (0, 1)
SMOKE_SETTINGS = ("train.iterations=10", "data.train_subset=1000", "data.test_subset=500")
#: The executors measured (``jobs`` is ``--jobs N``), and the options each gives compare.
EXECUTORS = ("serial", "jobs", "ray")


def cli_options(name: str, jobs: int, threads: int | None) -> list[str]:
    """The ``lifelong-kd compare`` options of executor ``name``."""
    options = {"serial": [], "jobs": ["--jobs", str(jobs)], "ray": ["--executor", "ray"]}[name]
    return options + (["--threads", str(threads)] if threads else [])


def one(name: str, out: Path, data_dir: Path, seeds: list[int], settings: list[str],
        jobs: int, threads: int | None) -> int:
    """One comparison in this process (``--one``): 0 if every run finished."""
    from lifelong_kd import runs
    from lifelong_kd.config import parse_set
    from lifelong_kd.executors import make_executor

    if threads is not None and name == "serial":
        import torch

        torch.set_num_threads(threads)
    executor = (make_executor("serial") if name == "serial"
                else make_executor("processes", jobs, threads=threads) if name == "jobs"
                else make_executor("ray", threads=threads))
    provider = runs.DataProvider(data_dir, offline=True, progress=False)
    outcome = runs.compare(BENCHMARK, list(STRATEGIES), seeds, parse_set(settings), provider,
                           out, options=runs.RunOptions(progress=False), executor=executor)
    for failure in outcome.failures:
        print(f"{name}: {failure['strategy']} seed {failure['seed']}: {failure['error']}",
              file=sys.stderr)
    return 1 if outcome.failures else 0


def _threads(name: str, args: argparse.Namespace) -> int:
    """The torch threads of each run of executor ``name`` (see the module docstring)."""
    if args.threads:
        return args.threads
    cores = len(os.sched_getaffinity(0))
    return {"serial": cores, "jobs": max(1, cores // args.jobs), "ray": 1}[name]


def matrices(out: Path) -> dict[str, list]:
    """Every run's accuracy matrix under ``out``, by run folder."""
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())["accuracy_matrix"]
            for p in sorted(out.glob("*/seed-*/result.json"))}


def measure(name: str, args: argparse.Namespace, seeds: list[int], settings: list[str]
            ) -> tuple[float, dict[str, list]]:
    """Seconds of one fresh process running the comparison with ``name``, and its matrices."""
    with tempfile.TemporaryDirectory(prefix=f"throughput-{name}-") as tmp:
        out = Path(tmp) / "cmp"
        command = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--out",
                   str(out), "--data-dir", str(args.data_dir), "--jobs", str(args.jobs),
                   "--seeds", *map(str, seeds), "--settings", *settings]
        if args.threads:
            command += ["--threads", str(args.threads)]
        start = time.perf_counter()
        done = subprocess.run(command)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{name}: the comparison failed (exit code {done.returncode})")
        found = matrices(out)
    expected = len(STRATEGIES) * len(seeds)
    if len(found) != expected:
        raise SystemExit(f"{name}: {len(found)} results, expected {expected}")
    return seconds, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS))
    parser.add_argument("--jobs", type=int, default=2, help="N of --jobs N (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of every run (default: each executor's rule)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measurements per executor, the median shown (3+ to publish)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of every run, as compare --set takes it (e.g. "
                             "train.iterations=300 for shorter runs)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{len(STRATEGIES) * len(SMOKE_SEEDS)} tiny runs: a quick check")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LIFELONG_KD_DATA", "../shared/datasets")))
    # one measurement, in the process that the script starts for it
    parser.add_argument("--one", choices=EXECUTORS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--settings", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return one(args.one, args.out, args.data_dir, args.seeds, args.settings, args.jobs,
                   args.threads)
    if args.jobs < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs, --repeats and --threads must be at least 1")
    if not (args.data_dir / "MNIST" / "raw").is_dir():
        parser.error(f"MNIST is expected under {args.data_dir}/MNIST/raw (set LIFELONG_KD_DATA "
                     "or --data-dir)")
    seeds = list(SMOKE_SEEDS if args.smoke else SEEDS)
    settings = [*(SMOKE_SETTINGS if args.smoke else ()), *args.sets]
    seconds: dict[str, list[float]] = {name: [] for name in args.executors}
    found: dict[str, dict[str, list]] = {}
    for k in range(args.repeats):  # executors interleaved: a slow spell hits them all
        for name in args.executors:
            took, found[name] = measure(name, args, seeds, settings)
            seconds[name].append(took)
            print(f"repeat {k + 1}/{args.repeats}: {name} {took:.1f} s", file=sys.stderr)

    n_runs = len(STRATEGIES) * len(seeds)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    base = median.get("serial")
    print(f"\n{BENCHMARK}, {' and '.join(STRATEGIES)} x {len(seeds)} seeds"
          f"{' (' + ' '.join(settings) + ')' if settings else ''}; "
          f"{os.cpu_count()} CPUs; median of {args.repeats}\n")
    print("| executor | runs | seconds | runs/min | x serial |")
    print("|---|---:|---:|---:|---:|")
    for name in args.executors:
        label = f"--jobs {args.jobs}" if name == "jobs" else name
        ratio = f"{base / median[name]:.2f}" if base else "-"
        print(f"| {label} | {n_runs} | {median[name]:.1f} | {60 * n_runs / median[name]:.2f} "
              f"| {ratio} |")
    # the same run gives the same matrix with the same torch threads; serial runs use every
    # core's thread and --jobs/Ray runs fewer, which sums in another order
    threads = {name: _threads(name, args) for name in args.executors}
    same = True
    for a, b in itertools.combinations(args.executors, 2):
        gap = max((abs(x - y) for run in found[a] for ra, rb in zip(found[a][run], found[b][run],
                                                                    strict=True)
                   for x, y in zip(ra, rb, strict=True)), default=0.0)
        note = "" if gap == 0 or threads[a] == threads[b] else (
            f" (torch threads per run {threads[a]} vs {threads[b]}: another summation order)")
        verdict = ("the same accuracy matrices" if gap == 0
                   else f"largest difference of an accuracy {gap:.2g}")
        print(f"{a} vs {b}: {verdict}{note}")
        same = same and (gap == 0 or threads[a] != threads[b])
    print("\ncommand: python benchmarks/throughput.py " + " ".join(argv or sys.argv[1:]))
    print("the same comparisons from the command line:")
    for name in args.executors:
        options = ["--offline", *cli_options(name, args.jobs, args.threads),
                   *(f"--set {s}" for s in settings)]
        print(f"  lifelong-kd compare {BENCHMARK} --strategies {' '.join(STRATEGIES)} --seeds "
              f"{' '.join(map(str, seeds))} {' '.join(options)}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
