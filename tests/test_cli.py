"""`lifelong-kd run`, `compare` and `list` end to end on a few hundred real MNIST images."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifelong_kd.cli import main
from lifelong_kd.config import parse_set
from lifelong_kd.errors import ConfigError, UserError
from lifelong_kd.metrics import all_metrics, per_task_forgetting
from lifelong_kd.presets import build_config, valid_keys
from lifelong_kd.results import write_json

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


# ----------------------------------------------------------------------
# Nothing lost, nothing silently wrong: resume, signals, divergence, refusal, atomic writes,
# and arbitrary --set strings.
# (formerly tests/test_robustness.py)

ROOT = Path(__file__).resolve().parent.parent

#: Permuted-MNIST slow enough (about a second per task) to be killed while it trains.
SLOW = ["--set", "data.train_subset=2000", "--set", "data.test_subset=500", "--set",
        "stream.n_tasks=3", "--set", "model.hidden=[64]", "--set", "train.iterations=200",
        "--set", "train.batch_size=32"]


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lifelong_kd", "run", "permuted-mnist", "--strategy", "lwf",
            "--offline", "--quiet", "--out", str(out), *SLOW, *extra]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600.0) -> None:
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() - start < timeout, f"{path} never appeared"
        time.sleep(0.02)


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, data_dir):
    killed = tmp_path / "killed"
    env = dict(os.environ)
    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    _wait_for(killed / "checkpoint.pt", proc)  # written after task 1 of 3: task 2 is training
    proc.kill()
    proc.wait(timeout=60)
    assert not (killed / "result.json").exists()
    # without --resume the folder is not silently overwritten
    assert main(_cmd(killed)[3:]) == 2
    assert main([*_cmd(killed)[3:], "--resume"]) == 0
    resumed = _result(killed)
    assert resumed["status"] == "finished"
    assert resumed["timing"]["resumed_from_task"] >= 1
    assert not (killed / "checkpoint.pt").exists()
    whole = tmp_path / "whole"
    assert main(_cmd(whole)[3:]) == 0
    assert resumed["accuracy_matrix"] == _result(whole)["accuracy_matrix"]
    assert resumed["initial_accuracy"] == _result(whole)["initial_accuracy"]


def test_sigint_leaves_a_valid_partial_result(tmp_path, data_dir):
    out = tmp_path / "int"
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=ROOT, text=True)
    _wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    result = _result(out)
    assert result["status"] == "interrupted"
    assert 1 <= result["tasks_finished"] < 3
    assert len(result["accuracy_matrix"]) == result["tasks_finished"]
    assert all(len(row) == 3 for row in result["accuracy_matrix"])
    assert "Traceback" not in err
    # and it can be finished with --resume
    assert main([*_cmd(out)[3:], "--resume"]) == 0
    assert _result(out)["status"] == "finished"


def test_sigterm_stops_cleanly(tmp_path, data_dir):
    out = tmp_path / "term"
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=ROOT)
    _wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert _result(out)["status"] == "interrupted"


QUICK = ["--set", "data.train_subset=300", "--set", "data.test_subset=100", "--set",
         "stream.n_tasks=2", "--set", "model.hidden=[16]"]


def test_finished_folder_refuses_unless_force_or_resume(tmp_path, capsys, data_dir):
    out = tmp_path / "done"
    args = ["run", "permuted-mnist", "--out", str(out), "--quiet", *QUICK]
    assert main(args) == 0
    assert not (out / "checkpoint.pt").exists()
    first = _result(out)
    assert main(args) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # nothing to do
    assert _result(out)["timing"] == first["timing"]
    assert main([*args, "--force"]) == 0
    assert _result(out)["accuracy_matrix"] == first["accuracy_matrix"]
    # --resume with other settings is refused rather than mixed
    assert main([*args, "--resume", "--set", "train.lr=0.05"]) == 2
    assert main([*args, "--force", "--keep-checkpoints"]) == 0
    assert (out / "checkpoint.pt").exists()


def test_nan_loss_stops_as_diverged(tmp_path, capsys, data_dir):
    out = tmp_path / "nan"
    code = main(["run", "permuted-mnist", "--out", str(out), "--quiet", *QUICK,
                 "--set", "train.lr=1e12", "--set", "train.momentum=0.99"])
    assert code == 1
    result = _result(out)
    assert result["status"] == "diverged"
    assert "task" in result["message"] and "epoch" in result["message"]
    assert "step" in result["message"]
    assert len(result["accuracy_matrix"]) == result["tasks_finished"]


def test_atomic_write_keeps_the_old_file_on_a_crash(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    write_json(target, {"a": 1})

    def broken_dumps(*args, **kwargs):
        raise RuntimeError("crash while serialising")

    monkeypatch.setattr(json, "dumps", broken_dumps)
    with pytest.raises(RuntimeError):
        write_json(target, {"a": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_compare_goes_on_when_a_run_fails(tmp_path, monkeypatch, data_dir):
    from lifelong_kd.runs import executor  # SerialExecutor looks execute up there

    real = executor.execute

    def flaky(spec, *args, **kwargs):
        if spec.config.strategy.name == "lwf" and spec.config.seed == 1:
            raise RuntimeError("simulated crash")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(executor, "execute", flaky)
    out = tmp_path / "cmp"
    code = main(["compare", "permuted-mnist", "--seeds", "0", "1", "--out", str(out), "--quiet",
                 *QUICK])
    assert code == 1
    report = (out / "report.md").read_text()
    assert "simulated crash" in report and "seed 1" in report
    assert (out / "naive" / "seed-1" / "result.json").exists()
    assert (out / "lwf" / "seed-0" / "result.json").exists()
    monkeypatch.setattr(executor, "execute", real)
    # run again: finished runs are skipped, the failed one is run
    assert main(["compare", "permuted-mnist", "--seeds", "0", "1", "--out", str(out),
                 "--quiet", *QUICK]) == 0
    assert (out / "lwf" / "seed-1" / "result.json").exists()


def test_unknown_keys_suggest_the_closest():
    with pytest.raises(ConfigError, match="did you mean `train.lr`"):
        build_config("split-digits", None, parse_set(["train.lrr=0.1"]))
    with pytest.raises(ConfigError, match="did you mean `strategy.temperature`"):
        build_config("split-digits", None, parse_set(["strategy.temprature=3"]))


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("train.lr=0", ["train.lr", "0", "> 0"]),
        ("strategy.temperature=-2", ["strategy.temperature", "-2", "> 0"]),
        ("stream.n_tasks=0", ["stream.n_tasks", ">= 1"]),
        ("train.batch_size=0", ["train.batch_size", "> 0"]),
        ("train.epochs=abc", ["train.epochs", "'abc'", "integer"]),
        ("strategy.t2_scaling=maybe", ["strategy.t2_scaling", "true or false"]),
        ("train.optimizer=rmsprop", ["train.optimizer", "sgd", "adam"]),
        ("stream.scenario=class_il", ["stream.scenario", "class-il"]),
    ],
)
def test_bad_values_name_key_value_and_valid(item, words):
    with pytest.raises(ConfigError) as info:
        # a strategy option is checked by a strategy that reads it (lwf reads these)
        build_config("split-digits", "lwf" if item.startswith("strategy.") else None,
                     parse_set([item]))
    for w in words:
        assert w in str(info.value)


VALUE = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-10**20, max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "[1,2]", "[]", "[[1]]", "\"x\"", "nan", "-inf", "1e999",
                     "{a=1}", "mlp", "class-il", "random", "[3,1,2]"]),
)
SET_ITEM = st.one_of(
    st.tuples(st.sampled_from(valid_keys()), VALUE).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(SET_ITEM, min_size=1, max_size=3))
def test_arbitrary_set_strings_never_raise_anything_but_a_clean_error(items):
    """Property: resolving any --set strings gives a config or a UserError, nothing else."""
    try:
        build_config("split-digits", None, parse_set(items))
    except UserError as exc:
        assert str(exc)


#: Overrides appended after the random one so that a valid run stays short.
SHORT = ["--set", "train.epochs=1", "--set", "train.iterations=3", "--set",
         "strategy.warmup_epochs=0", "--set", "data.train_subset=200", "--set",
         "data.test_subset=100"]


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(item=SET_ITEM)
def test_arbitrary_set_strings_run_or_fail_cleanly(item):
    """Property, through the command line: exit 0 (a run), 1 for a run that diverged (a value
    such as ``train.weight_decay=71`` is valid but blows the weights up; the run says so), or 2
    with exactly one line, ``error: ...``, and no traceback. Usage errors (``--set -x``:
    argparse takes ``-x`` for an option) look the same as every other bad input. Each example
    captures its own stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["run", "split-digits", "--out", str(Path(tmp) / "r"), "--quiet",
                         "--offline", "--set", item, *SHORT])
    text = err.getvalue()
    assert code in (0, 1, 2), text
    assert "Traceback" not in text
    if code == 1:
        assert ": diverged, " in text and "lower train.lr" in text, text
    if code == 2:
        assert text.startswith("error: "), text
        assert text.count("\n") == 1 and text.endswith("\n"), text


@pytest.mark.parametrize("argv", [
    ["run", "split-digits", "--set", "-x"],
    ["run"],
    ["compare", "--seeds", "one"],
    ["frobnicate"],
])
def test_usage_errors_are_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "--help" in captured.err
