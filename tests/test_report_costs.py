"""Costs and teachers in a comparison (issue 15 parts 4-5): the cost and teacher rows of
runs.csv and summary.csv, the report's "Costs", "Teacher" and "Accuracy kept per parameter"
tables, the accuracy-against-cost plots and their Pareto front, and older results without
costs. Every expected number is computed by hand from the matrices and costs below."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lifelong_kd import aggregate, plots, report
from lifelong_kd.results import build_result

T975_2 = 4.302652730  # t_{0.975, 2}: three seeds
SEEDS = (0, 1, 2)
SMALL, LARGE = [100, 100], [400, 400]
SMALL_LABEL = "naive [model.hidden = [100, 100]]"
LARGE_LABEL = "naive [model.hidden = [400, 400]]"


def mlp_costs(hidden: list[int], seed: int) -> dict[str, Any]:
    """An MLP 784-h-h-10's costs: P = 784h + h + h^2 + h + 10h + 10, FLOPs = 2 (784h + h^2 +
    10h) (a multiply-add is 2 FLOPs), 4 bytes per parameter; latencies chosen per seed."""
    h = hidden[0]
    p = 784 * h + h + h * h + h + 10 * h + 10
    return {"name": "mlp", "parameters": p, "bytes": 4 * p,
            "flops_per_example": 2 * (784 * h + h * h + 10 * h),
            "latency_batch_1": (2 + seed) * 1e-5, "latency_batch_256": 1e-6}


P_SMALL, P_LARGE = 89_610, 478_410
assert mlp_costs(SMALL, 0)["parameters"] == P_SMALL and mlp_costs(LARGE, 0)["parameters"] == P_LARGE
assert mlp_costs(LARGE, 0)["flops_per_example"] == 955_200


def config(strategy: str, seed: int, hidden: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "benchmark": "toy", "seed": seed,
        "data": {"dataset": "digits"},
        "stream": {"kind": "split", "scenario": "class-il", "n_tasks": 2},
        "model": {"name": "mlp", "hidden": hidden},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.1, "optimizer": "sgd",
                  "momentum": 0.9, "device": "cpu"},
        "strategy": {"name": strategy},
        **extra,
    }


AWARE = [[0.99, 0.5], [0.90, 0.99]]
TEACHER_AWARE = [[0.99, 0.5], [0.95, 0.99]]


def result(strategy: str, seed: int, hidden: list[int], first: float, last0: float,
           last1: float, *, costs: Any = "new", teacher: tuple[float, float, float] | None = None,
           scenario: str = "class-il") -> dict[str, Any]:
    """A class-il run of 2 tasks: R = [[first, 0], [last0, last1]] (task-agnostic), AWARE
    (task-aware); its costs (``new``: model, teacher, memory, time; None: none; or as given)
    and, with ``teacher`` = (first, last0, last1), a teacher block."""
    extra = {"teacher": {"name": "mlp", "hidden": LARGE}} if teacher else {}
    cfg = config(strategy, seed, hidden, **extra)
    cfg["stream"]["scenario"] = scenario
    if costs == "new":
        costs = {"memory_examples": 10 if teacher else 0, "memory_bytes": 1000 if teacher else 0,
                 "model": mlp_costs(hidden, seed), "device": "cpu",
                 "train_seconds": 10.0 + seed}
        if teacher:
            costs["teacher"] = mlp_costs(LARGE, seed)
    block = None
    if teacher:
        t0, t1, t2 = teacher
        block = {"rows": [[t0, 0.0], [t1, t2]], "rows_task_aware": TEACHER_AWARE,
                 "initial": [0.1, 0.1], "initial_task_aware": [0.5, 0.5]}
    return build_result(
        config=cfg, scenario=scenario, task_names=["0-4", "5-9"],
        rows=[[first, 0.0], [last0, last1]], rows_task_aware=AWARE, initial=[0.1, 0.1],
        initial_task_aware=[0.5, 0.5], timing={"total_seconds": 12.0 + seed},
        data={"dataset": "digits", "path": "sklearn", "fingerprint": "abc", "n_train": 10,
              "n_test": 10},
        costs=costs, teacher=block)


# final average accuracies (mean of the last row), per seed s:
#   naive small (0.10 + 0.02 s + 0.96) / 2 = 0.53, 0.54, 0.55   mean 0.54
#   naive large (0.20 + 0.02 s + 0.98) / 2 = 0.59, 0.60, 0.61   mean 0.60
#   compress    (0.30 + 0.02 s + 0.94) / 2 = 0.62, 0.63, 0.64   mean 0.63
#   its teacher (0.40 + 0.02 s + 0.96) / 2 = 0.68, 0.69, 0.70   mean 0.69
# Each ACC has sd 0.01 over the seeds: 95% half-width 4.3027 * 0.01 / sqrt(3) = 2.48 pp.
# forgetting (R[0][0] - R[1][0]): compress 0.65, 0.63, 0.61 (0.63); teacher 0.57, 0.55, 0.53
# (0.55); sd 0.02: half-width 4.97 pp.
def naive(hidden: list[int], seed: int, **kw: Any) -> dict[str, Any]:
    small = hidden == SMALL
    return result("naive", seed, hidden, 0.9 if small else 0.95,
                  (0.10 if small else 0.20) + 0.02 * seed, 0.96 if small else 0.98, **kw)


def compress(seed: int, **kw: Any) -> dict[str, Any]:
    return result("compress", seed, SMALL, 0.95, 0.30 + 0.02 * seed, 0.94,
                  teacher=(0.97, 0.40 + 0.02 * seed, 0.96), **kw)


def comparison() -> list[dict[str, Any]]:
    return ([naive(SMALL, s) for s in SEEDS] + [naive(LARGE, s) for s in SEEDS]
            + [compress(s) for s in SEEDS])


HALF = 100 * T975_2 * 0.01 / math.sqrt(3)  # 2.484 pp


# ----------------------------------------------------------------------------- runs.csv


def test_runs_csv_holds_the_cost_and_teacher_rows(tmp_path: Path) -> None:
    report.write_comparison(comparison(), tmp_path, formats=())
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns) == aggregate.RUNS_COLUMNS
    assert set(runs.strategy) == {SMALL_LABEL, LARGE_LABEL, "compress"}

    def value(run: str, matrix: str, metric: str) -> float:
        return runs[(runs.run == run) & (runs.matrix == matrix)
                    & (runs.metric == metric)]["value"].item()

    run = "compress/seed-1"
    assert value(run, "costs", "parameters") == P_SMALL
    assert value(run, "costs", "model_bytes") == 4 * P_SMALL
    assert value(run, "costs", "flops_per_example") == 178_800  # 2 (78400 + 10000 + 1000)
    assert value(run, "costs", "latency_batch_1") == pytest.approx(3e-5, rel=1e-9)
    assert value(run, "costs", "latency_batch_256") == pytest.approx(1e-6, rel=1e-9)
    assert value(run, "costs", "memory_bytes") == 1000
    assert value(run, "costs", "train_seconds") == 11.0
    assert value(run, "costs", "teacher_parameters") == P_LARGE
    assert value(run, "costs", "teacher_flops_per_example") == 955_200
    # the teacher's metrics under the model's names: main matrix `teacher`, class-il's other
    assert value(run, "teacher", "average_accuracy") == pytest.approx(0.69)
    assert value(run, "teacher", "forgetting") == pytest.approx(0.55)
    assert value(run, "teacher_task_aware", "average_accuracy") == pytest.approx(0.97)
    assert value(run, "teacher_task_aware", "forgetting") == pytest.approx(0.04)
    assert value(run, "task_agnostic", "average_accuracy") == pytest.approx(0.63)
    # per run: 7 metrics x 2 matrices, + 7 x 2 for a teacher, + 7 costs (9 with a teacher)
    counts = runs.groupby("run").size()
    assert counts[f"{SMALL_LABEL}/seed-0"] == 14 + 7
    assert counts["compress/seed-0"] == 14 + 14 + 9
    naive_rows = runs[runs.strategy == LARGE_LABEL]
    assert set(naive_rows.matrix) == {"task_agnostic", "task_aware", "costs"}
    assert "teacher_parameters" not in set(naive_rows.metric)
    assert value(f"{LARGE_LABEL}/seed-2", "costs", "parameters") == P_LARGE


def test_summary_carries_costs_unclipped_and_paired_leaves_them_out(tmp_path: Path) -> None:
    report.write_comparison(comparison(), tmp_path, formats=())
    summary = pd.read_csv(tmp_path / "summary.csv")
    row = summary[(summary.strategy == "compress") & (summary.matrix == "costs")
                  & (summary.metric == "train_seconds")].iloc[0]
    half = T975_2 * 1.0 / math.sqrt(3)  # seconds 10, 11, 12: sd 1
    assert (row["mean"], row["n"]) == (11.0, 3)
    assert (row.ci_low, row.ci_high) == pytest.approx((11 - half, 11 + half))  # not [0, 1]
    row = summary[(summary.strategy == "compress") & (summary.matrix == "teacher")
                  & (summary.metric == "average_accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(0.69)
    assert (row.ci_low, row.ci_high) == pytest.approx((0.69 - HALF / 100, 0.69 + HALF / 100))
    assert pd.read_csv(tmp_path / "paired.csv").empty  # naive has two variants here

    # one naive variant: compress - naive over the seeds, no costs, no teacher rows
    results = [naive(SMALL, s) for s in SEEDS] + [compress(s) for s in SEEDS]
    pairs = aggregate.paired_rows(aggregate.metric_rows(results))
    assert pairs and {p["matrix"] for p in pairs} == {"task_agnostic", "task_aware"}
    acc = next(p for p in pairs if p["matrix"] == "task_agnostic"
               and p["metric"] == "average_accuracy")
    assert acc["strategy"] == "compress" and acc["n"] == 3
    assert acc["difference"] == pytest.approx(0.63 - 0.54)  # 0.09 on every seed
    assert acc["p"] == 0.0


def test_cost_values_and_teacher_matrix_names() -> None:
    r = naive(SMALL, 0)
    r["costs"]["model"]["latency_batch_256"] = None  # not measured
    values = aggregate.cost_values(r)
    assert math.isnan(values["latency_batch_256"]) and values["parameters"] == P_SMALL
    assert "teacher_parameters" not in values
    assert aggregate.cost_values({"costs": {"memory_examples": 5, "memory_bytes": 80}}) == {
        "memory_bytes": 80.0}
    assert aggregate.cost_values({}) == {}
    assert aggregate.teacher_matrix("task_agnostic", "class-il") == "teacher"
    assert aggregate.teacher_matrix("task_aware", "class-il") == "teacher_task_aware"
    assert aggregate.teacher_matrix("task_aware", "task-il") == "teacher"
    assert aggregate.teacher_matrix("task_agnostic", "domain-il") == "teacher"
    # a task-il run: one matrix (task-aware), its teacher's rows under `teacher`
    rows = aggregate.metric_rows([compress(0, scenario="task-il")])
    assert {r["matrix"] for r in rows} == {"task_aware", "teacher", "costs"}
    acc = next(r for r in rows if r["matrix"] == "teacher" and r["metric"] == "average_accuracy")
    assert acc["value"] == pytest.approx(0.68)


# ----------------------------------------------------------------------------- report.md


def test_report_has_the_costs_teacher_and_kept_tables(tmp_path: Path) -> None:
    report.write_comparison(comparison(), tmp_path, formats=("png",))
    text = (tmp_path / "report.md").read_text()
    lines = text.splitlines()
    for title in ("## Costs (mean over seeds)", "## Teacher (%, mean ± 95% CI over seeds)",
                  "## Accuracy kept per parameter"):
        assert title in lines

    # Costs: means over seeds; latency in µs per example (3e-5 s, 1e-6 s), seconds 10..12
    assert (f"| {LARGE_LABEL} | 3 | 478,410 | 955,200 | 1,913,640 | — | 0 | 30.00 | 1.00 "
            "| 11.0 |") in lines
    assert (f"| {SMALL_LABEL} | 3 | 89,610 | 178,800 | 358,440 | — | 0 | 30.00 | 1.00 "
            "| 11.0 |") in lines
    assert "| compress | 3 | 89,610 | 178,800 | 358,440 | 478,410 | 1,000 | 30.00 | 1.00 | 11.0 |" \
        in lines

    # Teacher: acc and forgetting, model beside teacher, per matrix kind
    h, h2 = f"{HALF:.2f}", f"{2 * HALF:.2f}"
    assert (h, h2) == ("2.48", "4.97")
    teacher = lines[lines.index("## Teacher (%, mean ± 95% CI over seeds)"):
                    lines.index("## Costs (mean over seeds)")]
    rows = [line for line in teacher if line.startswith("| compress |")]
    assert rows == [
        f"| compress | 3 | 63.00 ± {h} | 69.00 ± {h} | 63.00 ± {h2} | 55.00 ± {h2} |",
        # task-aware: R[1] = [0.90, 0.99] (94.50, forgetting 9.00), teacher [0.95, 0.99]
        "| compress | 3 | 94.50 ± 0.00 | 97.00 ± 0.00 | 9.00 ± 0.00 | 4.00 ± 0.00 |",
    ]
    assert not [line for line in teacher if line.startswith("| naive")]

    # kept per parameter: naive small against naive large (the largest naive), compress
    # against its own teacher; naive large against itself
    kept = lines[lines.index("## Accuracy kept per parameter"):]
    assert any(line.startswith("Each variant's final average accuracy ACC") for line in kept)
    assert (f"| {SMALL_LABEL} | 89,610 | 54.00 | `{LARGE_LABEL}` | 478,410 | 60.00 | 0.90 "
            "| 0.19 | 4.80 |") in kept
    assert (f"| {LARGE_LABEL} | 478,410 | 60.00 | `{LARGE_LABEL}` | 478,410 | 60.00 | 1.00 "
            "| 1.00 | 1.00 |") in kept
    assert ("| compress | 89,610 | 63.00 | its teacher | 478,410 | 69.00 | 0.91 | 0.19 "
            "| 4.87 |") in kept
    # the plots, per matrix kind, written and embedded
    for stem in ("accuracy_vs_parameters", "accuracy_vs_flops",
                 "accuracy_vs_parameters_task_aware", "accuracy_vs_flops_task_aware"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
        assert f"![{stem}]({stem}.png)" in text
    assert "Final average accuracy against the model's parameters (log scale)" in text


def test_kept_per_parameter_by_hand() -> None:
    rows = aggregate.metric_rows(comparison())
    runs = aggregate.finished_runs(comparison())
    table = {r["strategy"]: r for r in report.kept_per_parameter(
        aggregate.summary_rows(rows), runs, "task_agnostic")}
    small = table[SMALL_LABEL]
    # kept = 0.54 / 0.60 = 0.9, share = 89610 / 478410, kept per parameter = 0.9 * 478410 /
    # 89610 = 4.804921...
    assert small["reference"] == LARGE_LABEL
    assert small["kept"] == pytest.approx(0.9)
    assert small["share"] == pytest.approx(89_610 / 478_410)
    assert small["kept_per_parameter"] == pytest.approx(4.804921326, rel=1e-8)
    ours = table["compress"]
    # against its teacher: kept = 0.63 / 0.69, kept per parameter = (0.63 / 0.69) * 478410 /
    # 89610 = 4.874558...
    assert ours["reference"] == "its teacher" and ours["reference_parameters"] == P_LARGE
    assert ours["kept"] == pytest.approx(0.63 / 0.69)
    assert ours["kept_per_parameter"] == pytest.approx(4.874557867, rel=1e-8)
    large = table[LARGE_LABEL]
    assert (large["kept"], large["share"], large["kept_per_parameter"]) == (1.0, 1.0, 1.0)


# ----------------------------------------------------------------------------- plots


def test_pareto_front_by_hand() -> None:
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.7), (0.5, 0.1), (2.0, 0.7),
              (math.nan, 0.9), (1.5, math.nan)]
    # 1 is dominated by 0 (cheaper, more accurate), 3 by 2 (cheaper, as accurate); 2 and 5
    # are equal and dominate neither each other; nan points are left out
    assert plots.pareto_front(points) == [4, 0, 2, 5]
    assert plots.pareto_front([]) == []
    assert plots.pareto_front([(1.0, 1.0), (1.0, 0.5)]) == [0]  # as cheap, more accurate
    assert plots.pareto_front([(1.0, 0.2), (2.0, 0.9), (4.0, 0.9)]) == [0, 1]


def test_cost_points_and_the_drawn_front() -> None:
    runs = aggregate.finished_runs(comparison())
    points = {p.label: p for p in plots.cost_points(runs, "task_agnostic", "parameters")}
    assert set(points) == {SMALL_LABEL, LARGE_LABEL, "compress", "compress teacher"}
    assert points["compress"].x == P_SMALL and not points["compress"].teacher
    assert points["compress"].accuracies == pytest.approx((0.62, 0.63, 0.64))
    assert points["compress teacher"].x == P_LARGE and points["compress teacher"].teacher
    assert points["compress teacher"].accuracies == pytest.approx((0.68, 0.69, 0.70))
    flops = {p.label: p.x for p in plots.cost_points(runs, "task_aware", "flops_per_example")}
    assert flops == {SMALL_LABEL: 178_800, LARGE_LABEL: 955_200, "compress": 178_800,
                     "compress teacher": 955_200}
    with plots.closing_figures():
        fig = plots.plot_accuracy_vs_cost(list(points.values()), "parameters")
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        # front: compress (89610, 63) beats naive small at its size, its teacher (478410,
        # 69) beats naive large
        step = next(line for line in ax.get_lines() if line.get_label() == "Pareto front")
        assert list(step.get_xdata()) == [P_SMALL, P_LARGE]
        assert list(step.get_ydata()) == pytest.approx([63.0, 69.0])
        labels = {t.get_text() for t in ax.texts}
        assert labels == {SMALL_LABEL, LARGE_LABEL, "compress", "compress teacher"}
        hollow = [line for line in ax.get_lines() if line.get_markerfacecolor() == "white"]
        assert len(hollow) == 1 and hollow[0].get_xdata()[0] == P_LARGE


def test_comparison_plots_in_task_il(tmp_path: Path) -> None:
    """One matrix kind: no _task_aware copies (SVG here; PNG in the report's test)."""
    results = [naive(SMALL, 0, scenario="task-il"), compress(0, scenario="task-il")]
    paths = plots.comparison_plots(results, tmp_path, formats=("svg",))
    cost = sorted(p.name for p in paths if p.name.startswith("accuracy_vs_"))
    assert cost == ["accuracy_vs_flops.svg", "accuracy_vs_parameters.svg"]
    assert all((tmp_path / name).stat().st_size > 1000 for name in cost)


# ----------------------------------------------------------------------------- older results


@pytest.mark.parametrize("costs", [None, {"memory_examples": 0, "memory_bytes": 0}])
def test_older_results_give_a_report_without_the_sections(tmp_path: Path, costs: Any) -> None:
    results = [naive(SMALL, s, costs=costs) for s in SEEDS] + [naive(LARGE, s, costs=costs)
                                                               for s in SEEDS]
    # the cost plots are drawn only when some run records costs.model
    assert not aggregate.has_model_costs(results)
    assert aggregate.has_model_costs([*results, compress(0)])
    report.write_comparison(results, tmp_path, formats=())
    text = (tmp_path / "report.md").read_text()
    for title in ("## Costs", "## Teacher", "## Accuracy kept per parameter"):
        assert title not in text
    assert "## Metrics (%, mean ± 95% CI over seeds)" in text
    runs = pd.read_csv(tmp_path / "runs.csv")
    costs_rows = runs[runs.matrix == "costs"]
    # what the file records is kept (the memory's bytes), nothing else
    assert set(costs_rows.metric) == (set() if costs is None else {"memory_bytes"})
    assert (costs_rows["value"] == 0).all()
    assert len(runs) == 6 * 14 + len(costs_rows)
