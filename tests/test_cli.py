"""`lifelong-kd run`, `compare` and `list` end to end on a few hundred real MNIST images."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lifelong_kd.cli import main
from lifelong_kd.metrics import all_metrics, per_task_forgetting

from .conftest import QUICK_MNIST

EXPECTED_KEYS = {"benchmark", "scenario", "strategy", "seed", "n_tasks", "accuracy_matrix",
                 "initial_accuracy", "metrics", "timing", "config", "environment", "data",
                 "status"}


def _sets(extra: list[str] | None = None) -> list[str]:
    out = []
    for s in QUICK_MNIST + (extra or []):
        out += ["--set", s]
    return out


def _run(out: Path, strategy: str = "lwf", seed: int = 0, extra: list[str] | None = None) -> dict:
    code = main(["run", "permuted-mnist", "--strategy", strategy, "--seed", str(seed),
                 "--out", str(out), "--quiet", "--offline", *_sets(extra)])
    assert code == 0
    return json.loads((out / "result.json").read_text())


def test_run_writes_a_complete_result(tmp_path, data_dir):
    result = _run(tmp_path / "lwf")
    assert set(result) >= EXPECTED_KEYS
    assert result["status"] == "finished"
    assert (result["benchmark"], result["scenario"], result["strategy"]) == (
        "permuted-mnist", "domain-il", "lwf")
    r = np.array(result["accuracy_matrix"])
    assert r.shape == (3, 3) and result["n_tasks"] == 3
    assert ((r >= 0) & (r <= 1)).all()
    assert len(result["initial_accuracy"]) == 3
    # learning happened: the diagonal beats chance clearly
    assert r.diagonal().min() > 0.3
    expected = all_metrics(r, result["initial_accuracy"])
    for name, value in expected.items():
        assert math.isclose(result["metrics"][name], value, rel_tol=1e-12), name
    assert result["per_task_forgetting"] == pytest.approx(per_task_forgetting(r))
    timing = result["timing"]
    assert timing["total_seconds"] >= timing["train_seconds"] > 0
    assert result["config"]["strategy"]["temperature"] == 2.0
    assert result["config"]["train"]["batch_size"] == 64
    assert len(result["data"]["fingerprint"]) == 64
    assert result["data"]["dataset"] == "mnist"
    assert result["environment"]["torch"]
    csv = (tmp_path / "lwf" / "accuracy_matrix.csv").read_text().splitlines()
    assert csv[0] == "after_task,task_0,task_1,task_2" and len(csv) == 4
    for name in ("accuracy_matrix", "task_accuracy", "average_accuracy", "forgetting"):
        png = tmp_path / "lwf" / f"{name}.png"
        assert png.stat().st_size > 5000, name


def test_same_seed_same_matrix_other_seed_differs(tmp_path, data_dir):
    a = _run(tmp_path / "a", seed=3)
    b = _run(tmp_path / "b", seed=3)
    c = _run(tmp_path / "c", seed=4)
    assert a["accuracy_matrix"] == b["accuracy_matrix"]
    assert a["initial_accuracy"] == b["initial_accuracy"]
    assert a["accuracy_matrix"] != c["accuracy_matrix"]


def test_iterations_and_adam_and_t2(tmp_path, data_dir):
    result = _run(tmp_path / "it", extra=["train.iterations=5", "train.optimizer=adam",
                                          "train.lr=0.001", "strategy.t2_scaling=true"])
    assert result["config"]["train"]["iterations"] == 5
    assert result["config"]["strategy"]["t2_scaling"] is True


def test_compare_writes_summary_report_and_runs(tmp_path, data_dir):
    out = tmp_path / "cmp"
    code = main(["compare", "permuted-mnist", "--strategies", "naive", "lwf", "--seeds", "0", "1",
                 "--out", str(out), "--quiet", *_sets()])
    assert code == 0
    for strategy in ("naive", "lwf"):
        for seed in (0, 1):
            res = json.loads((out / strategy / f"seed-{seed}" / "result.json").read_text())
            assert res["strategy"] == strategy and res["seed"] == seed
    summary = (out / "summary.csv").read_text()
    assert "naive" in summary and "lwf" in summary and "average_accuracy" in summary
    report = (out / "report.md").read_text()
    assert "average_accuracy" in report and ".png" in report
    assert (out / "average_accuracy.png").stat().st_size > 5000
    # a second compare reuses the finished runs instead of training again
    before = (out / "lwf" / "seed-0" / "result.json").stat().st_mtime_ns
    assert main(["compare", "permuted-mnist", "--strategies", "naive", "lwf", "--seeds", "0",
                 "1", "--out", str(out), "--quiet", *_sets()]) == 0
    assert (out / "lwf" / "seed-0" / "result.json").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "permuted-mnst", "--strategy", "lwf"], ["unknown benchmark", "permuted-mnist",
                                                          "did you mean"]),
        (["run", "permuted-mnist", "--strategy", "lfw"], ["unknown strategy", "naive", "lwf"]),
        (["run", "permuted-mnist", "--set", "train.l=0.1"], ["unknown configuration key",
                                                              "train.lr"]),
        (["run", "permuted-mnist", "--set", "train.lr=-1"], ["train.lr", "-1", "> 0"]),
        (["run", "permuted-mnist", "--set", "model.name=vgg"], ["model.name", "mlp", "convnet"]),
    ],
)
def test_bad_names_give_a_clear_error(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    for text in expected:
        assert text in err


def test_offline_missing_data_names_the_directory(tmp_path, capsys):
    empty = tmp_path / "nodata"
    empty.mkdir()
    assert main(["run", "permuted-mnist", "--data-dir", str(empty), "--offline", "--quiet",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "train-images-idx3-ubyte" in err and "Traceback" not in err


def test_console_entry_points(tmp_path):
    """`python -m lifelong_kd` works as a process and exits 2 with a message on bad input."""
    proc = subprocess.run([sys.executable, "-m", "lifelong_kd", "run", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown benchmark `nope`" in proc.stderr and "Traceback" not in proc.stderr
    listing = subprocess.run([sys.executable, "-m", "lifelong_kd", "list"], capture_output=True,
                             text=True, timeout=120)
    assert listing.returncode == 0
    for word in ("permuted-mnist", "quickstart", "naive", "lwf", "mlp", "kl", "avalanche:LwF",
                 "avalanche:ICaRL"):
        assert word in listing.stdout


def test_compare_without_benchmark_runs_the_quickstart_suite(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["compare", "--seeds", "0", "--set", "train.epochs=1", "--out", str(out),
                 "--quiet"]) == 0
    index = (out / "report.md").read_text()
    for member in ("split-digits", "permuted-digits"):
        assert f"{member}/report.md" in index
        assert (out / member / "report.md").is_file()
        for strategy in ("naive", "lwf"):
            result = json.loads((out / member / strategy / "seed-0" / "result.json").read_text())
            assert result["benchmark"] == member and result["status"] == "finished"
    # a suite is not a single benchmark: `run` says what to do instead
    assert main(["run", "quickstart", "--out", str(tmp_path / "r")]) == 2
    assert "suite of benchmarks" in capsys.readouterr().err


def test_list_names_every_preset_with_its_description_and_every_key(capsys):
    import tomllib

    from lifelong_kd.presets import BENCHMARK_DIR, preset_names, valid_keys

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in preset_names():
        table = tomllib.loads((BENCHMARK_DIR / f"{name}.toml").read_text(encoding="utf-8"))
        assert f"  {name:<22} {table.get('description', '')}" in lines, name
    assert main(["list", "--keys"]) == 0
    assert capsys.readouterr().out.split() == valid_keys()


def test_no_plots_writes_the_results_and_no_plot(tmp_path, data_dir):
    """--no-plots: a run's result.json and matrix, a comparison's report and CSVs, no image;
    `lifelong-kd plot` makes them afterwards."""
    run_dir = tmp_path / "run"
    assert main(["run", "permuted-mnist", "--out", str(run_dir), "--quiet", "--offline",
                 "--no-plots", *_sets()]) == 0
    assert sorted(p.name for p in run_dir.iterdir() if p.name != ".lifelong-kd.lock") == [
        "accuracy_matrix.csv", "result.json"]
    cmp_dir = tmp_path / "cmp"
    assert main(["compare", "permuted-mnist", "--strategies", "naive", "--seeds", "0",
                 "--out", str(cmp_dir), "--quiet", "--offline", "--no-plots", *_sets()]) == 0
    assert (cmp_dir / "report.md").is_file() and (cmp_dir / "summary.csv").is_file()
    assert not list(cmp_dir.rglob("*.png")) and not list(cmp_dir.rglob("*.svg"))
    assert ".png" not in (cmp_dir / "report.md").read_text()
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "accuracy_matrix.png").is_file()


def test_progress_into_a_file_is_a_line_per_phase_not_bar_frames(tmp_path):
    """Issue 25: progress bars wrote their carriage-return frames into redirected logs (CI,
    nohup); into a file there is one line per task (and per extra phase) instead."""
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "lifelong_kd", "run", "split-digits", "--strategy", "bic",
             "--set", "stream.scenario=class-il", "--set", "memory.size=50", "--set",
             "stream.n_tasks=2", "--set", "train.iterations=20", "--set", "strategy.bias_epochs=2",
             "--out", str(tmp_path / "run"), "--no-plots"],
            stdout=fh, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_bytes().decode()  # as written: read_text() would turn "\r" into "\n"
    assert done.returncode == 0, text
    assert "\r" not in text and "\x1b" not in text
    lines = [line.split(":")[0] for line in text.splitlines() if line.startswith("task ")]
    assert lines == ["task 1/2", "task 2/2", "task 2/2 bias correction"], text


def test_a_warning_is_one_line_on_the_command_line(tmp_path):
    """A rebuilt cache is a warning: ``warning: ...`` on one line, as errors are shown, not
    Python's file, line number and source line."""
    import numpy as np

    from lifelong_kd.data.sources import cache_dir

    args = [sys.executable, "-m", "lifelong_kd", "run", "split-digits", "--set",
            "train.iterations=1", "--set", "stream.n_tasks=2", "--quiet", "--no-plots"]
    first = subprocess.run([*args, "--out", str(tmp_path / "a")], capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    (cache,) = cache_dir("digits").glob("*.npz")
    with np.load(cache) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(cache, **arrays, extra=np.zeros(1))
    again = subprocess.run([*args, "--out", str(tmp_path / "b")], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0
    assert again.stderr.startswith("warning: ignoring the digits cache ")
    # no "<file>.py:<line>:" of Python's format (the readers are in lifelong_kd/data/*.py)
    assert again.stderr.count("\n") == 1 and ".py:" not in again.stderr, again.stderr
