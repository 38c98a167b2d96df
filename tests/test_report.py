"""The comparison report: tables, paired statistics, intransigence, plots, and the `report`
and `plot` commands on real run folders."""

from __future__ import annotations

import copy
import inspect
import json
import math
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lifelong_kd import aggregate, plots, report, results, stats
from lifelong_kd import metrics as M
from lifelong_kd.cli import main
from lifelong_kd.errors import UserError
from lifelong_kd.plots.figures import _mean_band

from .conftest import QUICK_MNIST, SHARED

CSVS = ("summary.csv", "paired.csv", "runs.csv", "matrices.csv")
QUICK_DIGITS = ["--set", "train.epochs=1", "--set", "data.train_subset=400"]

#: A benchmark of the tests' own (the shipped presets may change): Split-Digits, task-il.
TOY_TOML = """description = "Split-Digits for the report tests"
[data]
dataset = "digits"
[stream]
kind = "split"
scenario = "task-il"
n_tasks = 5
[model]
name = "mlp"
hidden = [50]
[train]
batch_size = 32
lr = 0.05
"""


def toml_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TOY_TOML, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- hand-made runs


def fake_result(
    strategy: str,
    seed: int,
    matrix: list[list[float]],
    *,
    aware: list[list[float]] | None = None,
    scenario: str = "task-il",
    status: str = "finished",
    mode: str = "incremental",
    lr: float = 0.1,
) -> dict[str, Any]:
    """A result.json as a run writes it, with a matrix chosen by the test."""
    t = len(matrix[0])
    result: dict[str, Any] = {
        "schema": 1, "status": status, "benchmark": "toy", "scenario": scenario,
        "strategy": strategy, "seed": seed, "n_tasks": t, "tasks_finished": len(matrix),
        "task_names": [f"task {j}" for j in range(t)],
        "accuracy_matrix": matrix, "initial_accuracy": [0.1] * t,
        "timing": {"total_seconds": 1.0},
        "config": {
            "benchmark": "toy", "description": "a toy", "seed": seed,
            "strategies": ["naive", "lwf"], "seeds": [0, 1, 2],
            "data": {"dataset": "digits"},
            "stream": {"kind": "split", "scenario": scenario, "n_tasks": t},
            "model": {"name": "mlp", "hidden": [10]},
            "train": {"epochs": 1, "batch_size": 8, "lr": lr, "optimizer": "sgd",
                      "momentum": 0.9, "device": "cpu"},
            "strategy": {"name": strategy, "alpha": 1.0, "mode": mode},
        },
        "environment": {"python": "3", "torch": "2", "lifelong_kd": "0.1.0"},
        "data": {"dataset": "digits", "path": "sklearn", "fingerprint": "abc",
                 "n_train": 10, "n_test": 10},
    }
    if status != "finished":
        result["message"] = "stopped by SIGINT"
    if scenario == "class-il":
        result["accuracy_matrix_task_aware"] = aware
        result["initial_accuracy_task_aware"] = [0.5] * t
    return result


def mat(d0: float, f0: float, d1: float, up: float = 0.2) -> list[list[float]]:
    """A 2 x 2 matrix: task 0 learnt to d0, then f0 after task 1 learnt to d1."""
    return [[d0, up], [f0, d1]]


NAIVE = {0: mat(0.9, 0.5, 0.95), 1: mat(0.92, 0.4, 0.9), 2: mat(0.88, 0.6, 0.93)}
LWF = {0: mat(0.9, 0.8, 0.9), 1: mat(0.91, 0.75, 0.85), 2: mat(0.87, 0.8, 0.88)}
JOINT = {0: mat(0.95, 0.9, 0.97), 1: mat(0.94, 0.93, 0.96)}


def toy_runs(with_joint: bool = False, **kw: Any) -> list[dict[str, Any]]:
    runs = [fake_result("naive", s, m, **kw) for s, m in NAIVE.items()]
    runs += [fake_result("lwf", s, m, **kw) for s, m in LWF.items()]
    if with_joint:
        runs += [fake_result("joint", s, m, **kw) for s, m in JOINT.items()]
    return runs


def read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name)


# ----------------------------------------------------------------------------- tables


def test_tables_from_hand_made_runs(tmp_path: Path) -> None:
    report.write_comparison(toy_runs(), tmp_path, formats=())
    runs, summary, paired = (read(tmp_path, n) for n in ("runs.csv", "summary.csv",
                                                          "paired.csv"))
    assert len(runs) == 6 * len(M.METRICS)
    assert set(runs["matrix"]) == {"task_aware"}
    assert "intransigence" not in set(runs["metric"])
    assert list(summary.columns) == aggregate.SUMMARY_COLUMNS
    assert list(paired.columns) == aggregate.PAIRED_COLUMNS

    for name, per_seed in (("naive", NAIVE), ("lwf", LWF)):
        for metric, fn in M.METRICS.items():
            values = [fn(m, [0.1, 0.1]) for m in per_seed.values()]
            row = summary[(summary.strategy == name) & (summary.metric == metric)].iloc[0]
            mean = np.mean(values)
            sd = np.std(values, ddof=1)
            half = 4.302652730 * sd / math.sqrt(3)  # t_{0.975, 2}
            assert row["mean"] == pytest.approx(mean, abs=1e-9)
            assert row["std"] == pytest.approx(sd, abs=1e-9)
            assert row["sem"] == pytest.approx(sd / math.sqrt(3), abs=1e-9)
            assert (row.ci_low, row.ci_high) == pytest.approx((mean - half, mean + half),
                                                              abs=1e-9)
            assert row["n"] == 3

    # paired: lwf - naive seed by seed, e.g. forgetting (task 0's drop)
    f = paired[(paired.strategy == "lwf") & (paired.metric == "forgetting")].iloc[0]
    d = [(LWF[s][0][0] - LWF[s][1][0]) - (NAIVE[s][0][0] - NAIVE[s][1][0]) for s in range(3)]
    t = np.mean(d) / (np.std(d, ddof=1) / math.sqrt(3))
    assert f["difference"] == pytest.approx(np.mean(d), abs=1e-9)
    assert f["p"] == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), abs=1e-8)  # df = 2
    assert f["n"] == 3 and f["baseline"] == "naive"
    assert set(paired.strategy) == {"lwf"}

    matrices = read(tmp_path, "matrices.csv")
    assert len(matrices) == 6 * 4
    cell = matrices[(matrices.run == "lwf/seed-1") & (matrices.row == 1) & (matrices.column == 0)]
    assert cell["accuracy"].item() == pytest.approx(0.75)

    text = (tmp_path / "report.md").read_text()
    assert "`intransigence` is absent" in text
    assert "| intransigence" not in text
    assert "Chaudhry" in text and "Avalanche" in text and "Lopez-Paz" in text
    assert "None: every run finished." in text


def test_best_entry_per_metric_is_bold(tmp_path: Path) -> None:
    report.write_comparison(toy_runs(), tmp_path, formats=())
    text = (tmp_path / "report.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()
             if line.startswith(("| naive | 3 |", "| lwf | 3 |"))}
    header = next(line for line in text.splitlines() if line.startswith("| strategy | runs"))
    col = [c.strip() for c in header.split("|")].index("forgetting ↓")
    assert "**" in lines["lwf"].split("|")[col]  # lwf forgets less
    assert "**" not in lines["naive"].split("|")[col]
    col = [c.strip() for c in header.split("|")].index("learning_accuracy ↑")
    assert "**" in lines["naive"].split("|")[col]  # naive learns each task a bit better


def test_intransigence_needs_joint_with_the_same_seed(tmp_path: Path) -> None:
    rows = aggregate.metric_rows(toy_runs(with_joint=False))
    assert not [r for r in rows if r["metric"] == "intransigence"]

    rows = aggregate.metric_rows(toy_runs(with_joint=True))
    intr = {(r["strategy"], r["seed"]): r["value"] for r in rows
            if r["metric"] == "intransigence"}
    # joint ran seeds 0 and 1 only: seed 2 has no intransigence (absent, not zero)
    assert set(intr) == {(s, seed) for s in ("naive", "lwf", "joint") for seed in (0, 1)}
    expected = np.mean(np.diag(JOINT[1]) - np.diag(LWF[1]))
    assert intr[("lwf", 1)] == pytest.approx(expected)
    assert intr[("joint", 0)] == 0.0

    report.write_comparison(toy_runs(with_joint=True), tmp_path, formats=())
    summary = read(tmp_path, "summary.csv")
    row = summary[(summary.strategy == "naive") & (summary.metric == "intransigence")].iloc[0]
    assert row["n"] == 2
    text = (tmp_path / "report.md").read_text()
    assert "intransigence ↓" in text and "is absent" not in text
    assert "`joint`, the upper bound, is not ranked" in text

    # a joint run that trains only at the end does not give a*_j
    runs = toy_runs() + [fake_result("joint", 0, JOINT[0], mode="final")]
    assert not [r for r in aggregate.metric_rows(runs) if r["metric"] == "intransigence"]


def test_class_il_every_metric_on_both_matrices(tmp_path: Path) -> None:
    aware = {s: [[min(1.0, v + 0.05) for v in row] for row in m] for s, m in NAIVE.items()}
    runs = [fake_result("naive", s, NAIVE[s], aware=aware[s], scenario="class-il")
            for s in NAIVE]
    runs += [fake_result("joint", s, JOINT[s], aware=JOINT[s], scenario="class-il")
             for s in JOINT]
    rows = aggregate.metric_rows(runs)
    got = {(r["seed"], r["matrix"], r["metric"]): r["value"] for r in rows
           if r["strategy"] == "naive"}
    for seed in NAIVE:
        for kind, matrix, initial in (("task_agnostic", NAIVE[seed], [0.1, 0.1]),
                                      ("task_aware", aware[seed], [0.5, 0.5])):
            for metric, value in M.all_metrics(matrix, initial).items():
                assert got[(seed, kind, metric)] == pytest.approx(value), (seed, kind, metric)
    assert got[(0, "task_aware", "intransigence")] == pytest.approx(
        M.intransigence(aware[0], JOINT[0]))
    assert (2, "task_aware", "intransigence") not in got

    paths = report.write_comparison(runs, tmp_path, formats=("png",))
    names = {p.name for p in paths}
    assert {"accuracy_matrices.png", "accuracy_matrices_task_aware.png",
            "forgetting_task_aware.png", "task_accuracy_task_aware.png"} <= names
    text = (tmp_path / "report.md").read_text()
    assert "### task-agnostic matrix" in text and "### task-aware matrix" in text
    assert set(read(tmp_path, "matrices.csv")["matrix"]) == {"task_agnostic", "task_aware"}


def test_unfinished_runs_are_listed_not_averaged(tmp_path: Path) -> None:
    runs = toy_runs()
    runs[-1] = fake_result("lwf", 2, [[0.9, 0.1]], status="interrupted")
    report.write_comparison(runs, tmp_path, formats=(), failures=[
        {"strategy": "lwf", "seed": 3, "error": "RuntimeError: boom"}])
    summary = read(tmp_path, "summary.csv")
    assert set(summary[summary.strategy == "lwf"]["n"]) == {2}
    assert "lwf/seed-2" not in set(read(tmp_path, "runs.csv")["run"])
    text = (tmp_path / "report.md").read_text()
    assert "- `lwf` seed 2: interrupted: stopped by SIGINT" in text
    assert "- `lwf` seed 3: RuntimeError: boom" in text
    # the paired comparison uses the seeds both finished
    paired = read(tmp_path, "paired.csv")
    assert set(paired["n"]) == {2}


def test_without_naive_the_paired_table_is_empty_with_a_note(tmp_path: Path) -> None:
    runs = [r for r in toy_runs(with_joint=True) if r["strategy"] != "naive"]
    report.write_comparison(runs, tmp_path, formats=())
    paired = read(tmp_path, "paired.csv")
    assert paired.empty and list(paired.columns) == aggregate.PAIRED_COLUMNS
    assert "No paired comparison: `naive`" in (tmp_path / "report.md").read_text()


def test_files_do_not_depend_on_the_order_of_runs(tmp_path: Path) -> None:
    runs = toy_runs(with_joint=True)
    report.write_comparison(runs, tmp_path / "a", formats=())
    random.Random(1).shuffle(runs)
    report.write_comparison(runs, tmp_path / "b", formats=())
    for name in (*CSVS, "report.md"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_check_compatible_refuses_what_runs_must_share(tmp_path: Path) -> None:
    from lifelong_kd.errors import UserError

    good = [(tmp_path / str(i), r) for i, r in enumerate(toy_runs())]
    results.check_compatible(good)
    # a variant with settings of its own (another learning rate, another alpha) is welcome
    results.check_compatible([*good, (tmp_path / "x", fake_result("lwf", 5, LWF[0], lr=0.5))])
    other = fake_result("lwf", 5, LWF[0])
    other["config"]["strategy"]["alpha"] = 2.0
    results.check_compatible([*good, (tmp_path / "y", other)])
    # what every run of a report shares: the benchmark, the data, the stream
    stream = fake_result("lwf", 5, LWF[0])
    stream["config"]["stream"]["kind"] = "permuted"
    with pytest.raises(UserError, match=r"share \(benchmark, data, stream\): stream\.kind "
                                        r"\(split vs permuted\)"):
        results.check_compatible([*good, (tmp_path / "s", stream)])
    data = fake_result("lwf", 5, LWF[0])
    data["data"]["fingerprint"] = "abd"
    with pytest.raises(UserError, match=r"data\.fingerprint \(abc vs abd\)"):
        results.check_compatible([*good, (tmp_path / "d", data)])
    with pytest.raises(UserError, match="two runs of `naive` with seed 0"):
        results.check_compatible([*good, (tmp_path / "z", fake_result("naive", 0, NAIVE[0]))])
    # the same strategy and seed with other settings is another variant, not a second run
    results.check_compatible([*good, (tmp_path / "v", fake_result("naive", 0, NAIVE[0], lr=0.5))])


def test_variants_of_one_strategy_are_reported_side_by_side(tmp_path: Path) -> None:
    """Two learning rates of LwF (a grid, or two comparisons reported together): each is a
    variant named by the setting that tells them apart, with its own row and pairs."""
    runs = [fake_result("naive", s, m) for s, m in NAIVE.items()]
    runs += [fake_result("lwf", s, m, lr=lr) for s, m in LWF.items() for lr in (0.1, 0.5)]
    fast, slow = "lwf [train.lr = 0.5]", "lwf [train.lr = 0.1]"
    report.write_comparison(runs, tmp_path / "a", formats=())
    summary = read(tmp_path / "a", "summary.csv")
    assert list(dict.fromkeys(summary.strategy)) == ["naive", slow, fast]
    assert set(summary[summary.strategy == fast]["n"]) == {3}
    assert set(read(tmp_path / "a", "paired.csv").strategy) == {slow, fast}
    assert f"{fast}/seed-2" in set(read(tmp_path / "a", "runs.csv").run)
    text = (tmp_path / "a" / "report.md").read_text()
    assert f"| {fast} | 3 |" in text and f"  - `{fast}`: " in text
    random.Random(0).shuffle(runs)
    report.write_comparison(runs, tmp_path / "b", formats=())
    for name in (*CSVS, "report.md"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    # two variants of naive: none of them is the baseline, and the report says so
    naive = [r for r in runs if r["strategy"] == "lwf"]
    for r in naive:
        r["strategy"] = r["config"]["strategy"]["name"] = "naive"
    report.write_comparison(naive, tmp_path / "c", formats=())
    assert read(tmp_path / "c", "paired.csv").empty
    assert "`naive` has 2 variants here" in (tmp_path / "c" / "report.md").read_text()


def test_metrics_are_read_from_the_result(tmp_path: Path) -> None:
    """The report shows what result.json records (a file that lacks a metric, as one of an
    older version, gets it computed from its matrix)."""
    runs = toy_runs()
    runs[0] = {**runs[0], "metrics": {**M.all_metrics(NAIVE[0], [0.1, 0.1]), "bwt": -0.123}}
    rows = aggregate.metric_rows(runs)
    got = {(r["run"], r["metric"]): r["value"] for r in rows}
    assert got[("naive/seed-0", "bwt")] == -0.123  # as recorded, not recomputed
    assert got[("naive/seed-1", "bwt")] == pytest.approx(M.bwt(NAIVE[1]))  # computed: absent
    assert results.matrix_kinds(runs[0])["task_aware"].metrics["bwt"] == -0.123


# ----------------------------------------------------------------------------- plots


def assert_images(paths: list[Path], min_kb: float = 8.0) -> None:
    from PIL import Image

    assert paths
    for p in paths:
        assert p.stat().st_size > min_kb * 1024, p
        if p.suffix == ".svg":
            assert ET.parse(p).getroot().tag.endswith("svg"), p
        else:
            with Image.open(p) as im:
                im.verify()
            with Image.open(p) as im:
                assert im.size[0] > 300 and im.size[1] > 200, (p, im.size)


def test_every_plot_file_is_a_readable_image(tmp_path: Path) -> None:
    paths = report.write_comparison(toy_runs(with_joint=True), tmp_path)
    plots = [p for p in paths if p.suffix in (".png", ".svg")]
    stems = {p.stem for p in plots}
    assert stems == {"accuracy_matrices", "average_accuracy", "task_accuracy", "forgetting"}
    assert {p.suffix for p in plots} == {".png", ".svg"}
    assert_images(plots)
    text = (tmp_path / "report.md").read_text()
    for stem in stems:
        assert f"![{stem}]({stem}.png)" in text and f"({stem}.svg)" in text


def test_plot_functions_draw_into_given_axes() -> None:
    import matplotlib.pyplot as plt

    from lifelong_kd import plots

    fig, axes = plt.subplots(1, 4)
    per_seed = {"naive": list(NAIVE.values()), "lwf": list(LWF.values())}
    assert plots.plot_accuracy_matrix(NAIVE[0], ax=axes[0]) is fig
    assert plots.plot_accuracy_matrices({"a": NAIVE[0], "b": LWF[0]}, ax=axes[:2]) is fig
    assert plots.plot_average_accuracy(
        {k: [plots.seen_average_curve(m) for m in v] for k, v in per_seed.items()},
        ax=axes[2]) is fig
    assert plots.plot_forgetting(
        {k: [M.per_task_forgetting(m) for m in v] for k, v in per_seed.items()},
        ax=axes[3]) is fig
    assert plots.plot_task_accuracies_by_strategy(per_seed, ax=axes[:2]) is fig
    assert axes[2].get_xlabel() and axes[2].get_ylabel() and axes[2].get_legend()
    plt.close(fig)
    fig = plots.plot_task_accuracies_by_strategy(per_seed)
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    plt.close(fig)


# ----------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real `compare` of naive, LwF and joint on the sklearn digits: 2 seeds, 1 epoch, 400
    training examples."""
    out = tmp_path_factory.mktemp("cmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(out.parent / "cache"))
        mp.setenv("MPLBACKEND", "Agg")
        code = main(["compare", str(toml_file(out.parent, "toy-digits")),
                     "--strategies", "naive", "lwf", "joint",
                     "--seeds", "0", "1", *QUICK_DIGITS, "--out", str(out), "--quiet"])
    assert code == 0
    yield out


def test_compare_writes_every_file(comparison: Path) -> None:
    for name in (*CSVS, "report.md"):
        assert (comparison / name).is_file(), name
    assert_images(sorted(comparison.glob("*.png")) + sorted(comparison.glob("*.svg")))
    runs = read(comparison, "runs.csv")
    # the metrics in runs.csv are those of the stored matrices (and of result.json)
    result = json.loads((comparison / "lwf" / "seed-1" / "result.json").read_text())
    for metric, value in result["metrics"].items():
        got = runs[(runs.run == "lwf/seed-1") & (runs.metric == metric)]["value"].item()
        assert got == pytest.approx(value if value is not None else math.nan, nan_ok=True)
    # intransigence of every run against the joint run of its seed (a*_j = joint's R[j][j])
    joint = json.loads((comparison / "joint" / "seed-1" / "result.json").read_text())
    got = runs[(runs.run == "lwf/seed-1") & (runs.metric == "intransigence")]["value"].item()
    assert got == pytest.approx(M.intransigence(result["accuracy_matrix"],
                                                joint["accuracy_matrix"]))
    intr = runs[runs.metric == "intransigence"]
    assert len(intr) == 6 and (intr[intr.strategy == "joint"]["value"] == 0).all()
    text = (comparison / "report.md").read_text()
    assert "toy-digits" in text and "fingerprint" in text and "torch" in text
    assert "intransigence ↓" in text
    assert "## Paired comparison with `naive`" in text


def test_report_from_saved_folders_equals_the_one_compare_wrote(
    comparison: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(comparison), "--out", str(tmp_path / "a")]) == 0
    folders = sorted(str(p.parent) for p in comparison.rglob("result.json"))
    assert len(folders) == 6
    assert main(["report", *folders, "--out", str(tmp_path / "b")]) == 0
    for out in ("a", "b"):
        for name in (*CSVS, "report.md"):
            assert (tmp_path / out / name).read_text() == (comparison / name).read_text(), name
    assert "report of 6 run(s)" in capsys.readouterr().err


def test_a_run_records_what_its_strategy_declares(comparison: Path, tmp_path: Path) -> None:
    """result.json's ``last_row_only`` is the strategy's declaration
    (``Strategy.last_row_only``), recorded at run time for the readers of results: null for
    the comparison's runs, the setting for ``joint`` with ``mode = final``, whose metrics but
    the last row's are then null."""
    for path in comparison.glob("*/seed-*/result.json"):
        assert json.loads(path.read_text())["last_row_only"] is None, path
    run = tmp_path / "final"
    assert main(["run", str(toml_file(tmp_path, "toy-digits")), *QUICK_DIGITS,
                 "--strategy", "joint", "--set", "strategy.mode=final", "--no-plots",
                 "--out", str(run), "--quiet"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["last_row_only"] == "strategy.mode = final"
    assert result["metrics"]["average_accuracy"] is not None
    assert result["metrics"]["forgetting"] is None


def test_report_refuses_folders_from_different_benchmarks(
    comparison: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = toml_file(tmp_path, "other-digits")
    run = tmp_path / "other"
    assert main(["run", str(toml), *QUICK_DIGITS, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    code = main(["report", str(comparison), str(run), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot report these runs together" in err
    assert "benchmark (toy-digits vs other-digits)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "report.md").exists()


def test_report_needs_out_for_a_run_folder(
    comparison: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(comparison / "naive" / "seed-0")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["report", str(comparison / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_regenerates_a_comparison_and_a_run(comparison: Path, tmp_path: Path) -> None:
    cmp_copy = tmp_path / "cmp"
    shutil.copytree(comparison, cmp_copy)
    for p in [*cmp_copy.glob("*.png"), *cmp_copy.glob("*.svg")]:
        p.unlink()
    assert main(["plot", str(cmp_copy)]) == 0
    regenerated = sorted(cmp_copy.glob("*.png")) + sorted(cmp_copy.glob("*.svg"))
    assert {p.name for p in regenerated} == {p.name for p in [*comparison.glob("*.png"),
                                                              *comparison.glob("*.svg")]}
    assert_images(regenerated)

    run = cmp_copy / "lwf" / "seed-0"
    for p in run.glob("*.png"):
        p.unlink()
    assert main(["plot", str(run)]) == 0
    assert {p.name for p in run.glob("*.png")} == {
        "accuracy_matrix.png", "task_accuracy.png", "average_accuracy.png", "forgetting.png"}
    assert_images(sorted(run.glob("*.png")))


def test_run_does_not_import_scipy(tmp_path: Path, data_dir: Path) -> None:
    """A run imports neither scipy nor pandas (the report's) nor torch._dynamo (about 2 s
    here; torch.optim's guards and the FLOP counter's would import it)."""
    out = tmp_path / "run"
    code = (
        "import sys\n"
        "from lifelong_kd.cli import main\n"
        f"rc = main(['run', 'permuted-mnist', '--out', {str(out)!r}, '--quiet', "
        + ", ".join(f"'--set', {s!r}" for s in QUICK_MNIST) + "])\n"
        "assert rc == 0, rc\n"
        "assert 'scipy' not in sys.modules, 'scipy imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'\n"
    )
    env = {"LIFELONG_KD_DATA": str(SHARED), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.suffix for p in out.iterdir() if p.suffix in (".png", ".svg")) == [".png"] * 4


def test_report_names_the_settings_a_strategy_has_of_its_own():
    """A preset's per-strategy override (here: LwF's own learning rate) shows in 'What was run'."""
    from lifelong_kd.report import _what_was_run

    runs = [fake_result("naive", s, m) for s, m in NAIVE.items()]
    runs += [fake_result("lwf", s, m, lr=0.03) for s, m in LWF.items()]
    lines = "\n".join(_what_was_run(runs))
    naive_line = next(line for line in lines.splitlines() if "`naive`" in line)
    lwf_line = next(line for line in lines.splitlines() if "`lwf`" in line)
    assert "own settings" not in naive_line
    assert "its own settings: train.lr = 0.03" in lwf_line
    assert "lr = 0.1" in lines  # the shared training line is the first strategy's


def test_report_of_the_committed_seq_mnist_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lifelong-kd report results/paper/buzzega2020-seq-mnist` (here on a copy): its
    lwf-mammoth runs have a weight decay of their own (the preset's per-strategy override),
    a variant's own setting, not a reason to refuse the comparison."""
    src = Path(__file__).resolve().parent.parent / "results" / "paper" / "buzzega2020-seq-mnist"
    copy = tmp_path / "buzzega2020-seq-mnist"
    for result in src.glob("*/seed-*/result.json"):
        (copy / result.parent.relative_to(src)).mkdir(parents=True)
        shutil.copy(result, copy / result.relative_to(src))
    assert main(["report", str(copy)]) == 0
    assert "report of 30 run(s)" in capsys.readouterr().err
    text = (copy / "report.md").read_text()
    lines = text.splitlines()
    mammoth = next(line for line in lines if line.startswith("  - `lwf-mammoth`:"))
    assert "its own settings: train.weight_decay = 0.0005" in mammoth
    assert "seeds 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in mammoth
    assert "weight_decay = 0," in next(line for line in lines if line.startswith("- **Training**"))
    assert "None: every run finished." in text
    summary = read(copy, "summary.csv")
    assert list(dict.fromkeys(summary.strategy)) == ["naive", "lwf-mammoth", "joint"]
    assert set(summary.n[summary.metric == "average_accuracy"]) == {10}
    # the numbers are those the result files record, to the last bit (runs.csv: 10 digits)
    found, _ = results.find_results([copy])
    rows = aggregate.metric_rows([r for _, r in found])
    got = {(r["run"], r["matrix"], r["metric"]): r["value"] for r in rows}
    runs = read(copy, "runs.csv")
    stored = json.loads((copy / "lwf-mammoth" / "seed-3" / "result.json").read_text())
    for kind, key in (("task_agnostic", "metrics"), ("task_aware", "metrics_task_aware")):
        for metric, value in stored[key].items():
            assert got[("lwf-mammoth/seed-3", kind, metric)] == value, (kind, metric)
            csv = runs[(runs.run == "lwf-mammoth/seed-3") & (runs.matrix == kind)
                       & (runs.metric == metric)]["value"].item()
            assert float(f"{value:.10g}") == csv, (kind, metric)


# ----------------------------------------------------------------------
# Reports and plots that never say something wrong (issue 12, items 6, 7, 10-13): bounded
# figures for long streams, one-line errors for malformed result.json files, no numbers for
# metrics that mean nothing, the real reason intransigence is absent, only the options a
# strategy reads, and confidence intervals inside the range of their metric.
# (formerly tests/test_report_safety.py)

T975_2 = 4.302652730  # t_{0.975, 2}: three seeds


def closed() -> bool:
    return not plots.pyplot().get_fignums()


# ----------------------------------------------------------------------------- 13: intervals


def test_clip_interval_by_hand() -> None:
    # the interval of a task-il accuracy over 3 seeds, [76.25, 108.15] %
    assert stats.clip_interval(0.7625, 1.0815, (0.0, 1.0)) == (0.7625, 1.0)
    assert stats.clip_interval(-0.2, 0.3, (0.0, 1.0)) == (0.0, 0.3)
    assert stats.clip_interval(-1.5, 1.5, (-1.0, 1.0)) == (-1.0, 1.0)
    assert stats.clip_interval(0.2, 0.3, (0.0, 1.0)) == (0.2, 0.3)  # inside: unchanged
    assert stats.clip_interval(1.2, 1.5, (0.0, 1.0)) == (1.0, 1.0)  # never inverted
    assert stats.clip_interval(-0.5, 2.0, None) == (-0.5, 2.0)
    lo, hi = stats.clip_interval(math.nan, math.nan, (0.0, 1.0))
    assert math.isnan(lo) and math.isnan(hi)
    assert stats.difference_bounds((0.0, 1.0)) == (-1.0, 1.0)
    assert stats.difference_bounds((-1.0, 1.0)) == (-2.0, 2.0)
    with pytest.raises(ValueError, match="bounds"):
        stats.clip_interval(0.1, 0.2, (1.0, 0.0))


def test_describe_and_paired_clip_to_bounds_by_hand() -> None:
    # 1.0, 1.0, 0.7: mean 0.9, s = sqrt((0.01 + 0.01 + 0.04) / 2) = sqrt(0.03), s / sqrt(3) = 0.1
    values = [1.0, 1.0, 0.7]
    free = stats.describe(values)
    assert (free["ci_low"], free["ci_high"]) == pytest.approx((0.9 - T975_2 * 0.1,
                                                               0.9 + T975_2 * 0.1))
    bounded = stats.describe(values, bounds=(0.0, 1.0))
    assert bounded["ci_low"] == pytest.approx(0.9 - T975_2 * 0.1)  # 0.4697...
    assert bounded["ci_high"] == 1.0
    assert bounded["mean"] == pytest.approx(0.9) and bounded["std"] == pytest.approx(free["std"])
    assert stats.mean_ci(values, bounds=(0.0, 1.0))[2] == 1.0
    # paired: d = (0.9, 0.9, 0.6) - 0: the same spread, a difference of accuracies in [-1, 1]
    res = stats.paired([0.9, 0.9, 0.6], [0.0, 0.0, 0.0], bounds=(-1.0, 1.0))
    assert res["difference"] == pytest.approx(0.8)
    assert res["ci_low"] == pytest.approx(0.8 - T975_2 * 0.1) and res["ci_high"] == 1.0


def seeds_near_the_top() -> list[dict[str, Any]]:
    """naive over 3 seeds with final accuracies 100, 100, 70 %: an unclipped interval of the
    mean average accuracy would reach 133 %."""
    finals = {0: 1.0, 1: 1.0, 2: 0.7}
    runs = [fake_result("naive", s, [[1.0, 0.1], [a, a]]) for s, a in finals.items()]
    runs += [fake_result("lwf", s, [[1.0, 0.1], [1.0, 1.0]]) for s in finals]
    return runs


def test_summary_paired_and_report_keep_intervals_in_range(tmp_path: Path) -> None:
    report.write_comparison(seeds_near_the_top(), tmp_path, formats=())
    summary = pd.read_csv(tmp_path / "summary.csv")
    for metric, (low, high) in M.BOUNDS.items():
        rows = summary[summary.metric == metric].dropna(subset=["ci_low"])
        assert ((rows.ci_low >= low) & (rows.ci_high <= high)).all(), metric
    acc = summary[(summary.strategy == "naive") & (summary.metric == "average_accuracy")].iloc[0]
    assert acc["ci_high"] == 1.0
    assert acc["ci_low"] == pytest.approx(0.9 - T975_2 * 0.1)
    paired = pd.read_csv(tmp_path / "paired.csv")
    p = paired[(paired.strategy == "lwf") & (paired.metric == "average_accuracy")].iloc[0]
    # d = (0, 0, 0.3): mean 0.1, s / sqrt(3) = 0.1; [-0.33, 0.53] stays in [-1, 1] unclipped
    assert (p["ci_low"], p["ci_high"]) == pytest.approx((0.1 - T975_2 * 0.1, 0.1 + T975_2 * 0.1))
    text = (tmp_path / "report.md").read_text()
    naive = next(line for line in text.splitlines() if line.startswith("| naive |"))
    assert f"90.00 [{100 * (0.9 - T975_2 * 0.1):.2f}, 100.00]" in naive
    assert "133." not in text
    assert "clipped to the range the metric can take" in text  # the method, in the definitions
    assert "keeps the 95% coverage" in text


def test_plot_bands_stay_on_the_axis() -> None:
    curves = {"naive": [[1.0, 1.0], [1.0, 1.0], [0.7, 0.7]]}
    fig = plots.plot_average_accuracy(curves)
    try:
        band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
        assert band.max() <= 100.0 and band.min() >= 0.0
        assert band.max() == pytest.approx(100.0)  # clipped, not dropped
    finally:
        plots.pyplot().close(fig)
    mean, lo, hi = _mean_band(np.array([[100.0], [100.0], [70.0]]), "ci95", (0.0, 100.0))
    assert hi[0] == 100.0 and lo[0] == pytest.approx(90 - T975_2 * 10)


# ----------------------------------------------------------------------------- 10: joint final


def joint_final(seed: int, t: int = 2) -> dict[str, Any]:
    """A finished joint run with mode = final: rows before the last are the initial row b."""
    rows = [[0.1] * t for _ in range(t - 1)] + [[0.9] * t]
    return fake_result("joint", seed, rows, mode="final")


def test_result_json_nulls_what_a_final_joint_run_cannot_measure(tmp_path: Path) -> None:
    from lifelong_kd.results import build_result, write_json
    from lifelong_kd.strategies import strategy_preset
    from lifelong_kd.strategies.options import make_options

    def build(strategy: dict[str, Any], rows: list[list[float]], t: int) -> dict[str, Any]:
        """As a run builds it: with what its strategy declares (``last_row_only``)."""
        config = {"benchmark": "toy", "seed": 0, "strategy": strategy}
        cls = strategy_preset(strategy["name"]).cls
        declared = cls.last_row_only(make_options(cls.Options, strategy))
        return build_result(config=config, scenario="class-il",
                            task_names=[f"t{j}" for j in range(t)], rows=rows,
                            rows_task_aware=rows, initial=[0.1] * t,
                            initial_task_aware=[0.5] * t, timing={}, data={},
                            last_row_only=declared)

    rows = [[0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.8, 0.9, 1.0]]
    result = build({"name": "joint", "mode": "final"}, rows, 3)
    results.validate_result(result, tmp_path / "result.json")  # its nan metrics, before JSON
    write_json(tmp_path / "result.json", result)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["last_row_only"] == "strategy.mode = final"
    for key in ("metrics", "metrics_task_aware"):
        assert stored[key]["average_accuracy"] == pytest.approx(0.9)
        assert {m for m, v in stored[key].items() if v is None} == set(M.METRICS) - {
            "average_accuracy"}
    assert stored["per_task_forgetting"] == [None, None]
    assert stored["per_task_forgetting_task_aware"] == [None, None]
    # an unfinished final joint run: its last finished row is untrained too
    partial = build({"name": "joint", "mode": "final"}, rows[:2], 3)
    assert all(math.isnan(v) for v in partial["metrics"].values())
    # incremental joint and every other strategy keep their numbers
    incremental = build({"name": "joint", "mode": "incremental"}, rows, 3)
    assert incremental["metrics"] == M.all_metrics(rows, [0.1] * 3)
    naive = build({"name": "naive", "mode": "final"}, rows, 3)
    assert naive["metrics"] == M.all_metrics(rows, [0.1] * 3)
    # with one task the only row is the trained one
    one = build({"name": "joint", "mode": "final"}, [[0.7]], 1)
    assert one["metrics"]["learning_accuracy"] == pytest.approx(0.7)


def test_report_leaves_out_the_metrics_of_a_final_joint_run(tmp_path: Path) -> None:
    runs = [fake_result("naive", s, m) for s, m in NAIVE.items()]
    runs += [joint_final(s) for s in NAIVE]
    report.write_comparison(runs, tmp_path, formats=())
    values = pd.read_csv(tmp_path / "runs.csv")
    joint = values[values.strategy == "joint"]
    kept = joint[joint.metric == "average_accuracy"]["value"]
    assert np.allclose(kept, 0.9) and len(kept) == 3
    assert joint[joint.metric != "average_accuracy"]["value"].isna().all()
    summary = pd.read_csv(tmp_path / "summary.csv")
    js = summary[summary.strategy == "joint"].set_index("metric")
    assert js.loc["average_accuracy", "mean"] == pytest.approx(0.9)
    for metric in ("learning_accuracy", "bwt", "forgetting", "fwt"):
        assert math.isnan(js.loc[metric, "mean"]) and js.loc[metric, "n"] == 0, metric
    paired = pd.read_csv(tmp_path / "paired.csv").set_index("metric")
    assert paired.loc["average_accuracy", "n"] == 3
    assert math.isnan(paired.loc["forgetting", "difference"])
    assert math.isnan(paired.loc["forgetting", "p"]) and paired.loc["forgetting", "n"] == 0
    text = (tmp_path / "report.md").read_text()
    assert text.count("trains only at the last task") == 1  # the reason, once
    header = next(line for line in text.splitlines() if line.startswith("| strategy | runs"))
    joint_line = next(line for line in text.splitlines() if line.startswith("| joint |"))
    cells = dict(zip([c.strip() for c in header.split("|")],
                     [c.strip() for c in joint_line.split("|")], strict=True))
    assert cells["average_accuracy ↑"].startswith("90.00")
    assert cells["forgetting ↓"] == "n/a" and cells["learning_accuracy ↑"] == "n/a"
    joint_pairs = [line for line in text.splitlines() if line.startswith("| joint | ")
                   and "| bwt" in line]
    assert joint_pairs and all("| n/a |" in line for line in joint_pairs)


def test_what_result_json_records_decides_which_rows_mean_something(tmp_path: Path) -> None:
    """Issue 26: the readers of results know no strategy by name. result.json's
    ``last_row_only`` (what the run's strategy declares, ``Strategy.last_row_only``) decides
    which metrics mean nothing, whatever the strategy; the rule by name (``joint`` with
    ``mode = final``) holds only for a file written before it was recorded."""
    declared = [fake_result("lwf", s, m) for s, m in LWF.items()]
    for result in declared:
        result["last_row_only"] = "strategy.warm_up = only"  # any strategy may declare it
    assert results.last_row_only(declared[0]) == "strategy.warm_up = only"
    (matrix,) = results.matrix_kinds(declared[0]).values()
    assert math.isnan(matrix.metrics["forgetting"])
    assert not math.isnan(matrix.metrics["average_accuracy"])
    recorded_none = joint_final(0)
    recorded_none["last_row_only"] = None  # recorded: every row means something
    assert results.last_row_only(recorded_none) is None
    (matrix,) = results.matrix_kinds(recorded_none).values()
    assert not math.isnan(matrix.metrics["learning_accuracy"])
    assert results.last_row_only(joint_final(0)) == "strategy.mode = final"  # an older file
    assert results.last_row_only(fake_result("naive", 0, NAIVE[0])) is None
    runs = [fake_result("naive", s, m) for s, m in NAIVE.items()] + declared
    report.write_comparison(runs, tmp_path, formats=())
    text = (tmp_path / "report.md").read_text()
    assert ("`lwf` with `strategy.warm_up = only` trains only at the last task, so rows "
            "0..T-2 of its matrix are the untrained model's accuracies.") in text
    for bad in (3, "", ["strategy.mode = final"]):
        broken = {**declared[0], "last_row_only": bad}
        with pytest.raises(UserError, match="last_row_only"):
            results.validate_result(broken, tmp_path / "result.json")


def test_only_joint_declares_a_last_row_only_setting() -> None:
    """The declaration that replaced metrics' rule by name: ``joint`` with ``mode = final``,
    and no other built-in strategy, whatever its mode."""
    from lifelong_kd.strategies import PRESETS, Joint, Strategy
    from lifelong_kd.strategies.joint import JointOptions
    from lifelong_kd.strategies.options import make_options

    assert Joint.last_row_only(JointOptions(mode="final")) == "strategy.mode = final"
    assert Joint.last_row_only(JointOptions(mode="incremental")) is None
    assert Strategy.last_row_only(Strategy.Options()) is None
    for name, preset in PRESETS.items():
        if preset.cls is not Joint:
            options = make_options(preset.cls.Options, {"mode": "final"})
            assert preset.cls.last_row_only(options) is None, name


class Drawn:
    """What each saved figure drew, recorded by a wrapper around ``plots.save``."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {}

    def record(self, fig: Any, path: Path) -> dict[str, Any]:
        axes = [a for a in fig.axes if a.get_visible()]
        info = {
            "size": tuple(fig.get_size_inches()),
            "axes": len(axes),
            "texts": sum(len(a.texts) for a in axes),
            "lines": max((len(a.lines) for a in axes), default=0),
            "patches": sum(len(a.patches) for a in axes),
            "xticks": max((len(a.get_xticks()) for a in axes), default=0),
            "yticks": max((len(a.get_yticks()) for a in axes), default=0),
            "labels": [t.get_text() for a in axes for t in (a.get_legend().get_texts()
                                                            if a.get_legend() else [])]
                      + [t.get_text() for leg in fig.legends for t in leg.get_texts()],
            "ydata": {line.get_label(): np.asarray(line.get_ydata(), dtype=float)
                      for a in axes for line in a.lines},
            "images": [np.ma.getdata(im.get_array()).astype(float) for a in axes
                       for im in a.images],
            "title": " ".join([fig._suptitle.get_text() if fig._suptitle else ""]
                              + [a.get_title() for a in axes]),
        }
        self.figures[Path(path).name] = info
        return info


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Drawn:
    record = Drawn()
    original = plots.save

    def save(fig: Any, path: Path, formats: Any = ("png",)) -> list[Path]:
        record.record(fig, path)
        return original(fig, path, formats)

    monkeypatch.setattr(plots, "save", save)
    return record


def test_plots_show_only_the_last_row_of_a_final_joint_run(tmp_path: Path, drawn: Drawn) -> None:
    t = 3
    naive = [[0.9, 0.1, 0.1], [0.6, 0.9, 0.1], [0.5, 0.6, 0.9]]
    runs = [fake_result("naive", s, naive) for s in (0, 1)]
    runs += [joint_final(s, t) for s in (0, 1)]
    plots.comparison_plots(runs, tmp_path, formats=("png",))
    curve = next(v for k, v in drawn.figures["average_accuracy"]["ydata"].items()
                 if k.startswith("joint"))
    assert np.isnan(curve[:-1]).all() and curve[-1] == pytest.approx(90.0)
    heat = drawn.figures["accuracy_matrices"]["images"]
    joint_heat = heat[1]  # naive first, joint last
    assert np.isnan(joint_heat[:-1]).all() and (joint_heat[-1] == pytest.approx(90.0))
    assert not np.isnan(heat[0]).any()
    panels = [v for k, v in drawn.figures["task_accuracy"]["ydata"].items()
              if k.startswith("joint")]
    assert panels and all(np.isnan(y[:-1]).all() for y in panels)
    forgetting = drawn.figures["forgetting"]["labels"]
    assert any(x.startswith("naive") for x in forgetting)
    assert not any(x.startswith("joint") for x in forgetting)
    # the run's own plots: no forgetting plot, the earlier rows blank
    paths = plots.run_plots(joint_final(0, t), tmp_path / "run")
    assert {p.stem for p in paths} == {"accuracy_matrix", "task_accuracy", "average_accuracy"}
    assert np.isnan(drawn.figures["accuracy_matrix"]["images"][0][:-1]).all()
    assert closed()


# ----------------------------------------------------------------------------- 11: intransigence


def test_intransigence_absent_states_the_real_reason(tmp_path: Path) -> None:
    runs = [fake_result("naive", s, m) for s, m in NAIVE.items()]
    report.write_comparison([*runs, *(joint_final(s) for s in NAIVE)], tmp_path / "a",
                            formats=())
    text = (tmp_path / "a" / "report.md").read_text()
    assert "needs a finished `joint` run with the same seed" not in text
    absent = next(line for line in text.splitlines() if line.startswith("`intransigence` is"))
    assert "`strategy.mode = final`" in absent and "tasks 0..j" in absent
    assert "`strategy.mode = incremental`" in absent
    # without any joint run: say what is needed, incremental included
    report.write_comparison(runs, tmp_path / "b", formats=())
    absent = next(line for line in (tmp_path / "b" / "report.md").read_text().splitlines()
                  if line.startswith("`intransigence` is"))
    assert "`strategy.mode = incremental`" in absent
    # with incremental joint runs, the definition says why final joint is not used
    report.write_comparison([*runs, *(fake_result("joint", s, m) for s, m in JOINT.items())],
                            tmp_path / "c", formats=())
    text = (tmp_path / "c" / "report.md").read_text()
    definition = next(line for line in text.splitlines() if line.startswith("- `intransigence`"))
    assert "mode = incremental" in definition and "mode = final" in definition


# ----------------------------------------------------------------------------- 12: options


def test_every_strategy_class_declares_the_options_it_reads() -> None:
    """Every option a strategy class reads (``self.options.<key>``) is a field of its options
    class; the classes extend one another as their strategies do."""
    from lifelong_kd import strategies
    from lifelong_kd.interop.avalanche import AvalancheStrategy
    from lifelong_kd.strategies.bic import BiC
    from lifelong_kd.strategies.compress import KD, Compress
    from lifelong_kd.strategies.der import DER
    from lifelong_kd.strategies.er import ER
    from lifelong_kd.strategies.icarl import ICaRL
    from lifelong_kd.strategies.options import option_names

    # every registered class, from the registry (a new strategy is checked without a line here)
    classes = {p.cls for p in strategies.PRESETS.values()} | {AvalancheStrategy}
    assert {strategies.Strategy, strategies.LwF, ER, DER, ICaRL, BiC, Compress, KD} <= classes
    for cls in classes:
        read = set(re.findall(r"self\.options\.(\w+)", inspect.getsource(cls)))
        names = set(option_names(cls.Options))
        assert read <= names, (cls, read - names)
    assert option_names(strategies.Strategy.Options) == ("ce_scope",)
    assert set(option_names(strategies.Joint.Options)) == {"mode", "ce_scope"}
    lwf = option_names(strategies.LwF.Options)
    assert "mode" not in lwf and "warmup_epochs" in lwf
    assert {"ewc_lambda", "fisher_samples", "ce_scope"} <= set(option_names(strategies.EWC.Options))
    assert set(option_names(AvalancheStrategy.Options)) == {"ce_scope", "kwargs"}
    assert issubclass(BiC.Options, strategies.LwF.Options)


def test_report_lists_only_the_options_a_strategy_reads() -> None:
    def with_options(strategy: str, seed: int, **options: Any) -> dict[str, Any]:
        r = fake_result(strategy, seed, NAIVE[seed], mode="final")
        r["config"]["strategy"].update(options)
        return r

    runs = [with_options("naive", 0, alpha=2.0, ewc_lambda=5.0),
            with_options("lwf", 0, alpha=2.0, ewc_lambda=5.0),
            with_options("joint", 0, alpha=2.0)]
    lines = "\n".join(report._what_was_run(runs)).splitlines()
    naive = next(line for line in lines if "`naive`" in line)
    lwf = next(line for line in lines if "`lwf`" in line)
    joint = next(line for line in lines if "`joint`" in line)
    assert "`naive`: no options" in naive and "mode" not in naive
    assert "alpha = 2" in lwf and "mode" not in lwf and "ewc_lambda" not in lwf
    assert "mode = final" in joint and "alpha" not in joint


# ----------------------------------------------------------------------------- 7: bad result.json


def write_run(folder: Path, result: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return folder


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_and_report_refuse_a_malformed_result_in_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = copy.deepcopy(fake_result("lwf", 0, LWF[0]))  # (the shared matrices stay intact)
    del missing["n_tasks"]
    ragged = copy.deepcopy(fake_result("lwf", 0, LWF[0]))
    ragged["accuracy_matrix"][1] = [0.5]
    for name, result, problem in (("missing", missing, "the key `n_tasks` is missing"),
                                  ("ragged", ragged, "`accuracy_matrix` row 1 has 1 value(s), "
                                                     "expected 2 (n_tasks): a ragged matrix")):
        run = write_run(tmp_path / name / "lwf" / "seed-0", result)
        for target in (run, run.parent.parent):  # a run folder; a comparison folder
            args = [command, str(target)]
            if command == "report":
                args += ["--out", str(tmp_path / f"out-{name}")]
            assert main(args) == 2, (name, target)
            line = one_line_error(capsys)
            assert str(run / "result.json") in line and problem in line, line
    assert not list(tmp_path.rglob("*.png")) and not (tmp_path / "out-missing").exists()


def corruptions() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    """Every top-level key deleted, and values of the wrong type or shape."""
    keys = list(fake_result("naive", 0, NAIVE[0], aware=NAIVE[0], scenario="class-il"))
    out: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        (f"no {k}", lambda r, k=k: r.pop(k)) for k in keys]

    def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def change(r: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            d = r
            for p in parents:
                d = d[p]
            d[last] = value
        return change

    for path, value in (
        ("accuracy_matrix", [[0.9, 0.2], [0.5]]), ("accuracy_matrix", [[0.9, 0.2]]),
        ("accuracy_matrix", [[0.9, 0.2], [0.5, "x"]]), ("accuracy_matrix", [[0.9, 0.2], [0.5, 7]]),
        ("accuracy_matrix", {"0": [0.9]}), ("accuracy_matrix", [0.9, 0.2]),
        ("accuracy_matrix_task_aware", [[0.9, 0.2, 0.1], [0.5, 0.5, 0.1]]),
        ("accuracy_matrix_task_aware", [[0.9, 0.2]]),
        ("initial_accuracy", [0.1]), ("initial_accuracy", None),
        ("initial_accuracy_task_aware", [0.5, 0.5, 0.5]),
        ("n_tasks", "2"), ("n_tasks", 0), ("n_tasks", 3), ("seed", "zero"), ("seed", True),
        ("strategy", None), ("strategy", 3), ("scenario", "online"), ("status", "done"),
        ("benchmark", ["toy"]), ("task_names", [1, 2]), ("task_names", "ab"),
        ("config", []), ("config.strategy", "lwf"), ("config.train", 3),
        ("config.stream", None), ("config.train.iterations", "many"), ("timing", 1.0),
        ("timing.total_seconds", "1 s"), ("data", "digits"), ("environment", None),
        ("metrics", "high"), ("metrics", {"bwt": "low"}), ("per_task_forgetting", [0.1, "x"]),
    ):
        out.append((f"{path} = {value!r}", setter(path, value)))
    return out


def test_every_corruption_of_a_result_is_refused_or_reported(tmp_path: Path) -> None:
    """Each corruption ends in a UserError naming the file, or in a report and plots made
    from what is there; never another exception."""
    good = [fake_result("naive", 0, NAIVE[0], aware=NAIVE[0], scenario="class-il")]
    accepted = set()
    for i, (name, corrupt) in enumerate(corruptions()):
        result = copy.deepcopy(good[0])
        corrupt(result)
        run = write_run(tmp_path / str(i), result)
        try:
            runs, _ = results.find_results([run])
        except UserError as exc:
            assert str(run / "result.json") in str(exc) and "\n" not in str(exc), name
            continue
        accepted.add(name)
        report.write_comparison([r for _, r in runs], tmp_path / f"report-{i}", formats=())
        plots.run_plots(runs[0][1], run, formats=())
        assert closed(), name
    # what a report can do without (a run of an older version, a hand-made result)
    assert accepted == {f"no {k}" for k in (
        "schema", "status", "tasks_finished", "task_names", "timing", "config", "environment",
        "data", "accuracy_matrix_task_aware", "initial_accuracy_task_aware")}
    # and the unchanged result passes
    results.find_results([write_run(tmp_path / "good", good[0])])


# ----------------------------------------------------------------------------- 6: long streams


def long_result(strategy: str, seed: int, t: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    m = np.tril(rng.uniform(0.3, 1.0, (t, t))) + np.triu(rng.uniform(0.0, 0.1, (t, t)), 1)
    return fake_result(strategy, seed, m.round(4).tolist())


def assert_bounded(info: dict[str, Any], name: str) -> None:
    """What a figure of a long stream may draw, whatever the number of tasks."""
    width, height = info["size"]
    assert width <= 16 and height <= 16, (name, info["size"])  # inches: 2400 px at 150 dpi
    assert info["texts"] == 0, (name, info["texts"])  # no per-cell labels past a few dozen
    assert info["axes"] <= 12, (name, info["axes"])  # panels and a colour bar
    assert info["lines"] <= 30, (name, info["lines"])
    assert info["patches"] <= 150, (name, info["patches"])
    assert info["xticks"] <= 15 and info["yticks"] <= 15, name


def test_plots_of_a_300_task_stream_stay_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = 300
    drawn = Drawn()
    original = plots.save

    def save(fig: Any, path: Path, formats: Any = ("png",)) -> list[Path]:
        assert_bounded(drawn.record(fig, path), Path(path).name)  # before any pixel is drawn
        assert len(plots.pyplot().get_fignums()) == 1  # one figure at a time
        return original(fig, path, formats)

    monkeypatch.setattr(plots, "save", save)
    runs = [long_result(s, seed, t) for s in ("naive", "lwf") for seed in (0, 1)]
    paths = plots.comparison_plots(runs, tmp_path / "cmp", formats=("png",))
    assert {p.stem for p in paths} == {"accuracy_matrices", "average_accuracy", "task_accuracy",
                                       "forgetting"}
    assert closed()
    panels = drawn.figures["task_accuracy"]
    assert panels["axes"] == plots.MAX_PANELS
    assert f"panels for {plots.MAX_PANELS} of {t} tasks" in panels["title"]  # what is left out
    paths = plots.run_plots(runs[0], tmp_path / "run")
    assert len(paths) == 4 and closed()
    lines = drawn.figures["task_accuracy"]
    assert lines["lines"] == plots.MAX_LINES and f"of {t} tasks" in lines["title"]
    assert all(p.stat().st_size < 2_000_000 for p in tmp_path.rglob("*.png"))


def test_figures_are_closed_when_drawing_or_saving_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [fake_result("naive", s, m) for s, m in NAIVE.items()]
    with pytest.raises(ValueError, match="bogus"):
        plots.run_plots(runs[0], tmp_path / "a", formats=("bogus",))
    assert closed()
    with pytest.raises(ValueError, match="bogus"):
        plots.comparison_plots(runs, tmp_path / "b", formats=("bogus",))
    assert closed()

    def broken(*args: Any, **kwargs: Any) -> Any:
        plots.pyplot().figure()
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(plots, "plot_forgetting", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        plots.comparison_plots(runs, tmp_path / "c", formats=("png",))
    assert closed()
    with pytest.raises(RuntimeError, match="drawing failed"):
        plots.run_plots(runs[0], tmp_path / "d")
    assert closed()


# ------------------------------------------------------- issue 25: text from files, escaped

#: Every construct of Markdown (and HTML) a hostile result.json or preset could bring.
HOSTILE = ("evil <script>alert(1)</script> | x |\n# heading\n- item\n> quote\n1. one\n"
           "**bold** _em_ `code` [link](javascript:alert(1)) <javascript:alert(1)> "
           "![img](x.png) &amp; \\")
#: HOSTILE as markdown_text writes it, by hand: one line; &, <, > as entities; \, `, *, #, |,
#: (, ), ! backslash-escaped; _ escaped where it could open or close emphasis (not inside a
#: word); the colon of a javascript: scheme escaped; [ and ] kept (with ( escaped, `](` cannot
#: open a link, and report.md holds no link reference definitions).
HOSTILE_ESCAPED = (
    r"evil &lt;script&gt;alert\(1\)&lt;/script&gt; \| x \| \# heading - item &gt; quote "
    r"1. one \*\*bold\*\* \_em\_ \`code\` [link]\(javascript\:alert\(1\)\) "
    r"&lt;javascript\:alert\(1\)&gt; \![img]\(x.png\) &amp;amp; \\")


def test_markdown_text_escapes_each_construct_by_hand() -> None:
    text = report.markdown_text
    assert text(HOSTILE) == HOSTILE_ESCAPED
    assert text("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert text("a | b\r\nc\u2028d\te") == r"a \| b c d e"
    # what would start a block at the start of a line
    for raw, escaped in (("# h", r"\# h"), ("- item", r"\- item"), ("+ item", r"\+ item"),
                         ("* item", r"\* item"), ("> quote", "&gt; quote"),
                         ("1. one", r"1\. one"), ("12) one", r"12\) one"), ("=== x", r"\=== x"),
                         ("  ~~~ fence", r"\~\~\~ fence"), ("    code", "code")):
        assert text(raw) == escaped, raw
    assert text("__a__ *b* `c` x_") == r"\_\_a\_\_ \*b\* \`c\` x\_"
    assert text("JavaScript:alert(1) vbscript:x data:text/html") == \
        r"JavaScript\:alert\(1\) vbscript\:x data\:text/html"
    assert text(None) == "None" and text(3) == "3"
    # ordinary names and settings are unchanged
    for plain in ("lwf", "derpp", "lwf-mammoth", "avalanche:Replay", "lwf [train.lr = 0.1]",
                  "naive [model.hidden = [400, 400]]", "lwf [strategy.ce_scope = seen]",
                  "weight_decay = 0.0005", "Linux-6.8.0-x86_64-with-glibc2.39", "2.4.1+cu121",
                  "task 0", "-0.5 and 1.5"):
        assert text(plain) == plain, plain


def test_markdown_code_keeps_a_code_span_only_for_inert_text() -> None:
    code = report.markdown_code
    for plain in ("lwf", "lwf [train.lr = 0.1]", "avalanche:Replay", "/data/mnist", "3f2a9c"):
        assert code(plain) == f"`{plain}`"
    assert code("lwf\n# x") == "`lwf # x`"  # one line: no block can start inside it
    # a backtick would close the span, | split a table cell, < > & \ and javascript: are
    # written as text is
    for hostile in ("a`b", "a|b", "<script>", "a & b", "C:\\data", "javascript:alert(1)",
                    HOSTILE):
        assert code(hostile) == report.markdown_text(hostile), hostile
    assert code(HOSTILE) == HOSTILE_ESCAPED


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def hostile_comparison() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs whose every text is HOSTILE: benchmark, description, task names, stream, model
    and training settings, data, environment, a variant's own setting (its label), an
    unfinished run's message and a failure's strategy, seed and error."""
    runs = [fake_result("naive", s, m) for s, m in NAIVE.items()]
    runs += [fake_result("lwf", s, m) for s, m in LWF.items()]
    variant = fake_result("lwf", 0, LWF[0])
    variant["config"]["train"]["optimizer"] = HOSTILE  # a variant of lwf, named by it
    unfinished = fake_result("lwf", 1, [[0.9, 0.1]], status="interrupted")
    unfinished["config"]["train"]["optimizer"] = HOSTILE
    unfinished["message"] = HOSTILE
    runs += [variant, unfinished]
    for r in runs:
        r["benchmark"] = r["config"]["benchmark"] = HOSTILE
        r["config"]["description"] = HOSTILE
        r["task_names"] = [HOSTILE, HOSTILE]
        r["config"]["stream"]["permute_first"] = HOSTILE
        r["config"]["stream"]["kind"] = HOSTILE
        r["config"]["model"]["name"] = HOSTILE
        r["config"]["model"]["depth"] = HOSTILE
        r["config"]["train"]["epochs"] = HOSTILE
        r["config"]["train"]["device"] = HOSTILE
        r["config"]["strategy"]["temperature"] = HOSTILE
        r["data"].update(dataset=HOSTILE, path=HOSTILE, fingerprint=HOSTILE, n_train=HOSTILE,
                         train_subset=HOSTILE)
        r["environment"].update(python=HOSTILE, platform=HOSTILE, git_commit=HOSTILE)
    failures = [{"strategy": HOSTILE, "seed": HOSTILE, "error": HOSTILE}]
    return runs, failures


def test_report_md_holds_no_live_markup_from_files(tmp_path: Path) -> None:
    """Issue 25: every text a result.json brings reaches report.md escaped, so that no tag,
    heading, list, quote, table cell, emphasis, code span, link or image of it is live."""
    runs, failures = hostile_comparison()
    report.write_comparison(runs, tmp_path, failures, formats=())
    text = (tmp_path / "report.md").read_text()
    for live in ("<script", "<javascript", "javascript:", "](", "**bold**", "`code`", " _em_",
                 "&amp; \\\n", "| x |"):
        assert live not in text, live
    # each place got the escaped text, on its own line's middle: the title, the description,
    # the variant's label (table cells, a list item), the failures
    assert text.startswith(f"# Comparison report: {HOSTILE_ESCAPED}\n")
    assert f"- **Benchmark**: {HOSTILE_ESCAPED}: {HOSTILE_ESCAPED}\n" in text
    label = f"lwf [train.optimizer = {HOSTILE_ESCAPED}]"
    assert f"| {label} | 1 |" in text and f"  - {label}: " in text
    assert f"- {HOSTILE_ESCAPED} seed {HOSTILE_ESCAPED}: {HOSTILE_ESCAPED}\n" in text
    assert f"interrupted: {HOSTILE_ESCAPED}\n" in text
    assert text.count(HOSTILE_ESCAPED) >= 20
    # no block of the hostile text starts a line: the headings are the report's own
    ours = ("# Comparison report: ", "## ", "### ")
    for line in text.splitlines():
        assert not line.startswith("#") or line.startswith(ours), line
        assert not line.lstrip().startswith(("evil", "&gt;", "- item", "1. one", "\\")), line
    # every table row has as many cell separators as its header
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        header = header if header is not None else unescaped_pipes(line)
        assert unescaped_pipes(line) == header, line


def test_report_command_escapes_a_hostile_description(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lifelong-kd report` on run folders whose result.json says what issue 25 tried."""
    for s in (0, 1):
        r = fake_result("lwf", s, LWF[s])
        r["config"]["description"] = HOSTILE
        write_run(tmp_path / "cmp" / "lwf" / f"seed-{s}", r)
    assert main(["report", str(tmp_path / "cmp"), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"- **Benchmark**: `toy`: {HOSTILE_ESCAPED}\n" in text
    assert "<script" not in text and "| lwf | 2 |" in text


def strategy_named(name: Any, where: str = "both") -> dict[str, Any]:
    r = fake_result("lwf", 0, LWF[0])
    if where in ("both", "top"):
        r["strategy"] = name
    if where in ("both", "config"):
        r["config"]["strategy"]["name"] = name
    if where == "teacher":
        r["config"]["teacher"] = {"strategy": name}
    return r


@pytest.mark.parametrize("command", ["report", "plot"])
@pytest.mark.parametrize(("name", "where", "problem"), [
    ("lwff", "both", "`strategy` is 'lwff', not a strategy (did you mean `lwf`?); valid: naive, "
                     "lwf, "),
    ("<script>alert(1)</script>", "both", "`strategy` is '<script>alert(1)</script>', not a "
                                          "strategy"),
    ("lwf\n# heading", "both", r"`strategy` is 'lwf\n# heading', not a strategy"),
    ("avalanche:Re play", "both", "`strategy` is 'avalanche:Re play', not a strategy"),
    ("EWC", "config", "`config.strategy.name` is 'EWC', not a strategy (did you mean `ewc`?)"),
    ("derpp", "config", "`strategy` is 'lwf' but `config.strategy.name` is 'derpp'"),
    ("lwf]", "teacher", "`config.teacher.strategy` is 'lwf]', not a strategy"),
])
def test_report_and_plot_refuse_a_name_that_is_no_strategy(
    command: str, name: str, where: str, problem: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = write_run(tmp_path / "cmp" / "x" / "seed-0", strategy_named(name, where))
    args = [command, str(run.parent.parent)]
    if command == "report":
        args += ["--out", str(tmp_path / "out")]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert str(run / "result.json") in line and problem in line, line
    if "valid:" in problem:
        assert "derpp" in line and "avalanche:<Name>" in line, line
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("*.png"))


def test_every_known_strategy_name_is_accepted(tmp_path: Path) -> None:
    """The registry's presets and the names of the Avalanche family (Avalanche need not be
    installed to report a run made where it was)."""
    from lifelong_kd.strategies import PRESETS

    for name in [*PRESETS, "avalanche:Replay", "avalanche:LwF", "avalanche:MyTemplate_2"]:
        r = strategy_named(name)
        r["config"]["teacher"] = {"strategy": "lwf"}
        assert results.check_strategy_names(r, tmp_path / "result.json") is r
        assert results.load_result(write_run(tmp_path / name, r))["strategy"] == name
    for bad in ("", "avalanche:", "avalanche:1x", "Naive", "naive ", "lwf-", None, 3):
        with pytest.raises(UserError, match=r"result\.json is not a usable .*not a strategy"):
            results.check_strategy_names(strategy_named(bad, "config"), tmp_path / "result.json")


def test_report_of_runs_that_declare_their_strategy_imports_no_torch(tmp_path: Path) -> None:
    """result.json records what the report needs of the strategy (``declared``): a fresh
    interpreter writes the report of such runs without importing torch or any strategy."""
    out = tmp_path / "cmp"
    env = {"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-m", "lifelong_kd", "compare", "split-digits", "--strategies", "naive",
         "kd", "--seeds", "0", "--set", "stream.n_tasks=2", "--set", "train.epochs=1",
         "--set", "model.hidden=[8]", "--out", str(out), "--offline", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    code = ("import sys\nfrom lifelong_kd.cli import main\n"
            f"assert main(['report', {str(out)!r}]) == 0\n"
            "print('torch' in sys.modules, 'lifelong_kd.strategies' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
    assert "`kd`" in (out / "report.md").read_text(encoding="utf-8")
