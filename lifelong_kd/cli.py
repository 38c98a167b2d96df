"""Command line: parses arguments, builds a RunConfig, calls the library, nothing else.

Exit codes: 0 done; 1 a run diverged or a comparison had failed runs; 2 a usage,
configuration or data error, or a file that cannot be read or written (a full disk, a
read-only folder, a folder in use by another process): one message, no traceback unless
``--debug``; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import typing
from pathlib import Path

from .errors import UserError

if typing.TYPE_CHECKING:
    from .runs import RunOptions


class UsageError(UserError):
    """A command line argparse cannot parse (an unknown option, a missing value)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2 like every other bad input:
    ``error: lifelong-kd run: argument --set: expected one argument (see lifelong-kd run
    --help)``. (A ``--set`` value that starts with ``-`` is written ``--set=-x``.)"""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset root laid out like torchvision's (default: $LIFELONG_KD_DATA, "
                        "else ~/.cache/lifelong-kd/data)")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting by its dotted key, e.g. --set train.lr=0.05 "
                        "(repeatable; `lifelong-kd list --keys` lists the keys)")
    p.add_argument("--offline", action="store_true", help="never download; fail if data is missing")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last finished task")
    p.add_argument("--force", action="store_true",
                   help="start again even if the output folder holds a run")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep checkpoint.pt after the run finishes")
    p.add_argument("--no-plots", action="store_true",
                   help="write no plots (`lifelong-kd plot DIR` makes them later)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="lifelong-kd",
        description="Continual-learning benchmarks with knowledge distillation: accuracy "
                    "matrices, forgetting metrics and plots for naive fine-tuning, LwF and more.",
    )
    parser.add_argument("--version", action="version", version=f"lifelong-kd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train one strategy with one seed on a benchmark")
    run.add_argument("benchmark", help="preset name (see `lifelong-kd list`) or a TOML file")
    run.add_argument("--strategy", default=None, help="strategy name (default: naive)")
    run.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    _common(run)

    cmp_ = sub.add_parser("compare", help="run several strategies and seeds, then report")
    cmp_.add_argument("benchmark", nargs="?", default="quickstart",
                      help="preset name or TOML file (default: quickstart)")
    cmp_.add_argument("--strategies", nargs="+", default=None, metavar="NAME",
                      help="strategies (default: the benchmark's list)")
    cmp_.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N",
                      help="seeds (default: the benchmark's list)")
    cmp_.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                      help="vary a setting: every strategy that reads KEY runs with each value "
                           "(repeatable: the cartesian product; a list value in brackets, "
                           "model.hidden=[100,100],[400,400]); over the preset's [grid]")
    cmp_.add_argument("--jobs", type=int, default=1, metavar="N",
                      help="runs at once, each in its own process with its share of the cores "
                           "(default: 1, one after another in this process)")
    cmp_.add_argument("--executor", default="serial", metavar="NAME",
                      help="`serial` (this process; with --jobs N, N processes), `processes` "
                           "or `ray` (each run a Ray task: pip install 'lifelong-kd[ray]'); "
                           "default: serial")
    cmp_.add_argument("--ray-address", default=None, metavar="ADDRESS",
                      help="the Ray cluster to submit to (default: start a local Ray)")
    cmp_.add_argument("--threads", type=int, default=None, metavar="N",
                      help="torch threads per run (default: the cores / --jobs)")
    _common(cmp_)

    lst = sub.add_parser("list", help="benchmarks, strategies, models, datasets and losses")
    lst.add_argument("--keys", action="store_true", help="list every configuration key")
    lst.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    _report_parsers(sub)
    return parser


def _log(quiet: bool):  # noqa: ANN202 - returns a print-like function or None
    if quiet:
        return None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def _data_dir(args: argparse.Namespace) -> Path:
    from .data.sources import default_data_dir

    return args.data_dir if args.data_dir is not None else default_data_dir()


def _options(args: argparse.Namespace) -> RunOptions:
    """How a run treats its folder, from the command line."""
    from .runs import RunOptions

    return RunOptions(progress=not args.quiet, resume=args.resume, force=args.force,
                      keep_checkpoints=args.keep_checkpoints, plots=not args.no_plots)


def cmd_run(args: argparse.Namespace) -> int:
    from .config import parse_set
    from .presets import build_config
    from .runs import DataProvider, RunSpec, execute, run_folder, stop_on_signals

    config = build_config(args.benchmark, args.strategy, parse_set(args.sets), args.seed)
    out = args.out or run_folder(Path("runs") / config.benchmark, config.strategy.name, config.seed)
    provider = DataProvider(_data_dir(args), args.offline, progress=not args.quiet)
    with stop_on_signals() as stop:
        result = execute(RunSpec(config, out), provider, _options(args), stop)
    if not args.quiet or result["status"] != "finished":
        m = result["metrics"]
        acc = m.get("average_accuracy")
        acc_text = "n/a" if acc is None else f"{100 * acc:.2f}%"
        print(f"{result['strategy']} on {result['benchmark']} (seed {result['seed']}): "
              f"{result['status']}, {result['tasks_finished']}/{result['n_tasks']} tasks, "
              f"average accuracy {acc_text}; results in {out}",
              file=sys.stderr)
        if result.get("message"):
            print(result["message"], file=sys.stderr)
    return {"finished": 0, "interrupted": 130}.get(result["status"], 1)


def cmd_compare(args: argparse.Namespace) -> int:
    from .config import parse_set
    from .executors import make_executor
    from .presets import (
        benchmark_name,
        parse_grid,
        preset_description,
        preset_grid,
        suite_members,
        suite_reports,
    )
    from .runs import DataProvider, compare, compare_suite, stop_on_signals

    executor = make_executor(args.executor, args.jobs, args.ray_address, args.threads)
    grid = parse_grid(args.grid)
    members = suite_members(args.benchmark)
    name = Path(args.benchmark).stem if members else benchmark_name(args.benchmark)
    out = args.out or Path("runs") / name
    provider = DataProvider(_data_dir(args), args.offline, progress=not args.quiet)
    options = dict(strategies=args.strategies, seeds=args.seeds, overrides=parse_set(args.sets),
                   provider=provider, options=_options(args), log=_log(args.quiet),
                   executor=executor)
    # a parallel executor keeps its workers (or its Ray) for every member of a suite
    held = executor if hasattr(executor, "__enter__") else contextlib.nullcontext()
    with stop_on_signals() as stop, held:
        if members:
            grid = {**preset_grid(args.benchmark), **grid}
            outcomes = compare_suite(members, out, preset_description(args.benchmark), stop=stop,
                                     reports=suite_reports(args.benchmark), grid=grid, **options)
        else:
            outcomes = [compare(args.benchmark, out_dir=out, stop=stop, grid=grid, **options)]
    if not args.quiet:
        print(f"report: {out / 'report.md'}", file=sys.stderr)
    failures = sum(len(o.failures) for o in outcomes)
    if failures:
        print(f"{failures} run(s) did not finish; see {out / 'report.md'}", file=sys.stderr)
        return 130 if stop.requested else 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .data.sources import DATASETS
    from .interop.avalanche import KNOWN
    from .losses import LOSSES
    from .models import MODEL_DESCRIPTIONS
    from .presets import preset_description, preset_names, valid_keys
    from .schedules import DESCRIPTIONS as SCHEDULE_DESCRIPTIONS
    from .strategies import PRESETS

    if args.keys:
        print("\n".join(valid_keys()))
        return 0
    print("benchmarks:")
    for name in preset_names():
        print(f"  {name:<22} {preset_description(name)}")
    print("strategies:")
    for p in PRESETS.values():
        print(f"  {p.name:<22} {p.description}  [source: {p.source}]")
    print("Avalanche strategies (--strategy avalanche:<Name>; pip install 'lifelong-kd[avalanche]'):")
    for name, known in KNOWN.items():
        print(f"  {'avalanche:' + name:<22} {known.description}")
    print("models:")
    for name, desc in MODEL_DESCRIPTIONS.items():
        print(f"  {name:<22} {desc}")
    print("datasets:")
    print("  " + ", ".join(sorted(DATASETS)))
    print("distillation losses (strategy.distill_loss):")
    for name, loss in LOSSES.items():
        print(f"  {name:<22} on {loss.on} ({loss.reference})")
    print("temperature schedules (strategy.temperature_schedule; over each task's steps or the "
          "stream: strategy.schedule_span):")
    for name, desc in SCHEDULE_DESCRIPTIONS.items():
        print(f"  {name:<22} {desc}")
    return 0


# ------------------------------------------------- report and plot: from finished runs' files


def _report_parsers(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="build the comparison report from finished run "
                                        "folders, without training")
    rep.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                     help="a comparison folder, or run folders (searched for result.json)")
    rep.add_argument("--out", type=Path, default=None,
                     help="where to write the report (default: DIR, when only one is given)")
    rep.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    plt = sub.add_parser("plot", help="regenerate a run's or a comparison's plots from its files")
    plt.add_argument("result_dir", type=Path, metavar="RESULT_DIR",
                     help="a run folder (with result.json) or a comparison folder")
    plt.add_argument("--formats", nargs="+", choices=("png", "svg", "pdf"), default=None,
                     help="file formats (default: png for a run, png and svg for a comparison)")
    plt.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def cmd_report(args: argparse.Namespace) -> int:
    from .folders import output_folder
    from .report import write_comparison
    from .results import check_output_folder, find_results

    if args.out is None and (len(args.dirs) > 1 or (args.dirs[0] / "result.json").is_file()):
        raise UserError("give --out DIR: where to write the report of several folders or of "
                        "a single run folder")
    out = args.out if args.out is not None else args.dirs[0]
    check_output_folder(out)
    if (out / "result.json").is_file():
        raise UserError(f"{out} is a run folder; write the report elsewhere with --out DIR")
    runs, failures = find_results(args.dirs)
    with output_folder(out):  # not while a compare (or another report) writes there
        write_comparison([r for _, r in runs], out, failures)
    print(f"report of {len(runs)} run(s): {out / 'report.md'}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .folders import locked
    from .plots import comparison_plots, run_plots
    from .results import find_results, load_result

    folder = args.result_dir
    # not while a run or compare writes there (a folder that is not there is reported below)
    with locked(folder) if folder.is_dir() else contextlib.nullcontext():
        if (folder / "result.json").is_file():
            paths = run_plots(load_result(folder), folder, tuple(args.formats or ("png",)))
        else:
            runs, _ = find_results([folder])
            paths = comparison_plots([r for _, r in runs], folder, tuple(args.formats or
                                                                          ("png", "svg")))
    print("\n".join(str(p) for p in paths) or f"nothing to plot in {folder}", file=sys.stderr)
    return 0


COMMANDS = {"run": cmd_run, "compare": cmd_compare, "list": cmd_list, "report": cmd_report,
            "plot": cmd_plot}


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    """A warning as the command line shows it: ``warning: <message>`` on one line, as errors
    are shown, without the Python file and source line (``--debug`` keeps Python's form)."""
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import warnings

    shown = warnings.formatwarning
    if not getattr(args, "debug", False):
        warnings.formatwarning = _one_line_warning
    try:
        return _command(args)
    finally:
        warnings.formatwarning = shown


def _command(args: argparse.Namespace) -> int:
    """Run the parsed command; a user's error is one line and exit code 2 (see the README)."""
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lifelong-kd list | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the last resort: a file that cannot be read or written
        if getattr(args, "debug", False):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
