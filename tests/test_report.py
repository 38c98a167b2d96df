"""The comparison report: tables, paired statistics, intransigence, plots, and the `report`
and `plot` commands on real run folders."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lifelong_kd import aggregate, report, results
from lifelong_kd import metrics as M
from lifelong_kd.cli import main

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
