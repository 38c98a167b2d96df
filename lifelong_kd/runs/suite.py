"""A suite's comparison (:func:`compare_suite`): one comparison per member benchmark, each in
a folder of its own, the joint comparisons over the members a report lists, and the index,
report.md, that links them all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import ConfigError
from ..folders import output_folder
from ..presets import SuiteMember, benchmark_name
from ..results import check_output_folder, write_text
from .comparison import (
    COMPARISON_FORMATS,
    CompareOutcome,
    _compare_planned,
    check_plan,
    check_plan_data,
)
from .data import DataProvider
from .execution import RunOptions
from .executor import Executor, Log
from .planning import plan
from .signals import StopFlag


def compare_suite(
    members: Sequence[SuiteMember | str],
    out_dir: Path,
    description: str = "",
    *,
    strategies: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    overrides: dict[str, Any],
    provider: DataProvider,
    options: RunOptions | None = None,
    executor: Executor | None = None,
    stop: StopFlag | None = None,
    log: Log = None,
    reports: dict[str, list[str]] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> list[CompareOutcome]:
    """``compare`` for each benchmark of a suite into ``out_dir/<name>`` (its name as
    presets give it: a file member's stem, so that a member given as a path stays inside
    ``out_dir``; a member table's ``name``), each with its own settings under ``overrides``;
    then one comparison per entry of ``reports`` over the runs of the members it lists
    (``out_dir/<report name>``), and an index report.md linking the reports and showing their
    average-accuracy plots. ``grid`` (``--grid``) goes to every member, over its own preset's.

    Every member's configurations (all strategies x seeds) are built and validated, every
    folder checked and every dataset loaded before any run trains."""
    out_dir, options = Path(out_dir), options or RunOptions()
    parts = _suite_members(members, out_dir)
    plans = {m.name: plan(m.benchmark, strategies, seeds, {**m.settings, **overrides},
                          out_dir / m.name, grid, stop) for m in parts}
    check_output_folder(out_dir)
    for name, specs in plans.items():
        check_plan(specs, out_dir / name, options.force)
    outcomes = []
    with output_folder(out_dir):
        for specs in plans.values():
            check_plan_data(specs, provider, options.force)
        for member in parts:
            if log:
                log(f"== {member.name}")
            with output_folder(out_dir / member.name):
                outcomes.append(_compare_planned(plans[member.name], provider,
                                                 out_dir / member.name, options, executor, stop,
                                                 log))
        _write_suite_report(out_dir, description, parts, outcomes, reports or {}, options)
    return outcomes


def _suite_members(members: Sequence[SuiteMember | str], out_dir: Path) -> list[SuiteMember]:
    """The members of a suite (a benchmark given by name: named as presets name it), refused
    when two would write into one folder of ``out_dir``."""
    parts = [m if isinstance(m, SuiteMember) else SuiteMember(m, benchmark_name(m)) for m in members]
    taken: dict[str, str] = {}
    for member in parts:
        if member.name in taken:
            raise ConfigError(f"the suite's members `{taken[member.name]}` and `{member.benchmark}` "
                              f"would both write into {out_dir / member.name}; give them different "
                              "names")
        taken[member.name] = member.benchmark
    return parts


def _write_suite_report(out_dir: Path, description: str, parts: Sequence[SuiteMember],
                        outcomes: Sequence[CompareOutcome], reports: dict[str, list[str]],
                        options: RunOptions) -> None:
    """The joint comparisons of ``reports`` (each over the runs of the members it lists, into
    ``out_dir/<report name>``) and the suite's index, ``out_dir/report.md``, which links every
    report and shows the members' average-accuracy plots."""
    from ..report import markdown_text, write_comparison

    by_name = dict(zip((m.name for m in parts), outcomes, strict=True))
    lines = ["# Suite report", ""]
    if description:  # the preset's texts are escaped (markdown_text), its links quoted
        lines += [markdown_text(description), ""]
    for report, listed in reports.items():
        results = [r for m in listed for r in by_name[m].results]
        with output_folder(out_dir / report):
            write_comparison(results, out_dir / report,
                             formats=COMPARISON_FORMATS if options.plots else (),
                             failures=[f for m in listed for f in by_name[m].failures])
        lines += [f"## {markdown_text(report)} (members "
                  f"{', '.join(markdown_text(m) for m in listed)} together)", "",
                  f"Full report: [{markdown_text(report)}/report.md]({quote(report)}/report.md)",
                  ""]
    for member, outcome in zip(parts, outcomes, strict=True):
        name, link = markdown_text(member.name), quote(member.name)
        lines += [f"## {name}", "", f"Full report: [{name}/report.md]({link}/report.md)"]
        if (out_dir / member.name / "average_accuracy.png").is_file():
            lines += ["", f"![{name}: average accuracy]({link}/average_accuracy.png)"]
        if outcome.failures:
            lines += ["", f"{len(outcome.failures)} run(s) did not finish (see its report)."]
        lines.append("")
    write_text(out_dir / "report.md", "\n".join(lines))
