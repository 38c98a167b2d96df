"""Runs have one identity: plan -> run specs, execute(spec), a serial executor, and compare's
reuse of what is finished with the same identity (committed results included)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from lifelong_kd import runs
from lifelong_kd.cli import main
from lifelong_kd.config import parse_set
from lifelong_kd.errors import ConfigError, UserError
from lifelong_kd.presets import build_config
from lifelong_kd.results import (
    atomic_path,
    identity_as_recorded,
    identity_differences,
    identity_of,
    read_result,
    run_identity,
    write_text,
)

from .conftest import PARTIAL, QUICK_MNIST

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "results" / "paper"

#: Split-Digits (sklearn's digits, no files) in a few optimiser steps per task.
DIGITS = ["--set", "train.epochs=1", "--set", "train.iterations=3", "--set",
          "strategy.warmup_epochs=0", "--set", "stream.n_tasks=2"]


def _overrides() -> dict:
    return parse_set(DIGITS[1::2])


# ----------------------------------------------------------------------------- identity


def test_identity_is_the_configuration_that_determines_the_result() -> None:
    config = build_config("split-digits", "lwf", _overrides(), 3).to_dict()
    identity = run_identity(config)
    assert identity.stamp == "lwf/seed-3"
    assert identity.data_fingerprint is None
    with pytest.raises(ValueError, match="no data fingerprint"):
        identity.key  # noqa: B018 - the property raises
    # what compare runs by default and the description determine nothing of the result
    same = {**config, "description": "another text", "seeds": [7], "strategies": ["naive"]}
    assert run_identity(same).config_hash == identity.config_hash
    assert identity_differences(config, same) == []
    # 0 and 0.0, a tuple and a list: one setting
    spelled = json.loads(json.dumps(config))
    spelled["train"]["weight_decay"] = 0
    assert run_identity(spelled).config_hash == identity.config_hash
    # any setting of the run, its seed, or its data makes another run
    other = {**config, "train": {**config["train"], "lr": 0.5}}
    assert run_identity(other).config_hash != identity.config_hash
    assert identity_differences(config, other) == ["train.lr = 0.05 there, 0.5 now"]
    assert run_identity({**config, "seed": 4}).config_hash != identity.config_hash
    a, b = identity.with_data("aa" * 32), identity.with_data("bb" * 32)
    assert a.key != b.key and a.config_hash == b.config_hash
    assert a.to_dict() == {"stamp": "lwf/seed-3", "config_hash": identity.config_hash,
                           "data_fingerprint": "aa" * 32, "key": a.key}


def test_result_json_records_its_identity(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "split-digits", "--strategy", "lwf", "--out", str(out), "--quiet",
                 *DIGITS]) == 0
    result = read_result(out)
    spec = runs.RunSpec(build_config("split-digits", "lwf", _overrides()), out)
    assert result["identity"] == spec.identity.with_data(result["data"]["fingerprint"]).to_dict()
    # computed the same from the configuration and data alone (as for older files)
    del result["identity"]
    assert identity_of(result).to_dict() == read_result(out)["identity"]


# ----------------------------------------------------------------------------- plan


def test_plan_is_strategies_times_seeds_in_todays_folders(tmp_path: Path) -> None:
    specs = runs.plan("split-digits", ["naive", "lwf"], [0, 1], _overrides(), tmp_path)
    assert [s.stamp for s in specs] == ["naive/seed-0", "naive/seed-1", "lwf/seed-0",
                                        "lwf/seed-1"]
    assert [s.folder for s in specs] == [tmp_path / n / f"seed-{k}" for n in ("naive", "lwf")
                                         for k in (0, 1)]
    assert all(s.config.train.iterations == 3 for s in specs)
    assert runs.run_folder(tmp_path, "avalanche:Naive", 2) == tmp_path / "avalanche_Naive" / "seed-2"
    default = runs.plan("split-digits", None, None, {}, tmp_path)
    preset = build_config("split-digits")
    assert [s.stamp for s in default] == [f"{n}/seed-{k}" for n in preset.strategies
                                          for k in preset.seeds]
    assert not list(tmp_path.iterdir())  # planning writes nothing


@pytest.mark.parametrize(("option", "values", "twice"), [
    ("--seeds", ["0", "1", "0"], "0"), ("--strategies", ["lwf", "naive", "lwf"], "lwf")])
def test_a_value_named_twice_on_the_command_line_is_refused(tmp_path, capsys, option, values,
                                                            twice):
    out = tmp_path / "cmp"
    assert main(["compare", "split-digits", option, *values, "--out", str(out), "--quiet",
                 *DIGITS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"`{option}`" in err and f"`{twice}` twice" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="twice"):
        runs.plan("split-digits", ["lwf", "lwf"], None, {}, out)


# ----------------------------------------------------------------------------- executors


class Recording(runs.SerialExecutor):
    """A serial executor that remembers what it was given (any executor has this shape)."""

    def __init__(self) -> None:
        self.given: list[list[str]] = []

    def run(self, specs: Sequence[runs.RunSpec], *args, **kwargs) -> list[runs.Outcome]:
        self.given.append([s.stamp for s in specs])
        return super().run(specs, *args, **kwargs)


def test_compare_gives_the_executor_only_what_is_not_finished(tmp_path: Path) -> None:
    provider = runs.DataProvider(tmp_path, progress=False)
    options = runs.RunOptions(progress=False)
    executor = Recording()
    out = tmp_path / "cmp"
    first = runs.compare("split-digits", ["naive", "lwf"], [0], _overrides(), provider, out,
                         options=options, executor=executor)
    assert executor.given == [["naive/seed-0", "lwf/seed-0"]]
    assert not first.failures and len(first.results) == 2
    assert (out / "report.md").is_file()
    assert not list((out / "lwf" / "seed-0").glob("*.png"))  # the comparison has the plots
    # a new seed: only its runs are executed, the finished ones (same identity) reused
    again = runs.compare("split-digits", ["naive", "lwf"], [0, 1], _overrides(), provider,
                         out, options=options, executor=executor)
    assert executor.given[-1] == ["naive/seed-1", "lwf/seed-1"]
    assert {identity_of(r).stamp for r in again.results} == {
        "naive/seed-0", "lwf/seed-0", "naive/seed-1", "lwf/seed-1"}
    # --force executes everything again
    runs.compare("split-digits", ["naive"], [0], _overrides(), provider, out,
                 options=runs.RunOptions(progress=False, force=True), executor=executor)
    assert executor.given[-1] == ["naive/seed-0"]


def test_a_stop_leaves_the_runs_not_started_as_not_run(tmp_path: Path) -> None:
    stop = runs.StopFlag()
    stop.requested = True
    specs = runs.plan("split-digits", ["naive"], [0, 1], _overrides(), tmp_path)
    outcomes = runs.SerialExecutor().run(specs, runs.DataProvider(tmp_path, progress=False),
                                         runs.RunOptions(progress=False), stop=stop)
    assert [o.failure() for o in outcomes] == [
        {"strategy": "naive", "seed": k, "error": "not run (interrupted)"} for k in (0, 1)]
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- suites


def test_a_suite_member_given_as_a_path_stays_inside_out(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    member = elsewhere / "tiny-digits.toml"
    member.write_text((ROOT / "benchmarks" / "split-digits.toml").read_text())
    suite = tmp_path / "suite.toml"
    suite.write_text(f'description = "a suite"\nbenchmarks = ["split-digits", "{member}"]\n')
    out = tmp_path / "out"
    assert main(["compare", str(suite), "--strategies", "naive", "--seeds", "0", "--out",
                 str(out), "--quiet", *DIGITS]) == 0
    assert [p.name for p in elsewhere.iterdir()] == ["tiny-digits.toml"]
    assert (out / "tiny-digits" / "naive" / "seed-0" / "result.json").is_file()
    index = (out / "report.md").read_text()
    assert "[tiny-digits/report.md](tiny-digits/report.md)" in index
    # the suite's own texts are escaped where they enter its index (issue 25)
    hostile = tmp_path / "hostile.toml"
    hostile.write_text('description = "<script>x</script>\\n# pwned | [a](javascript:b)"\n'
                       'benchmarks = ["split-digits"]\n')
    assert main(["compare", str(hostile), "--strategies", "naive", "--seeds", "0", "--out",
                 str(tmp_path / "hostile"), "--quiet", "--no-plots", *DIGITS]) == 0
    index = (tmp_path / "hostile" / "report.md").read_text()
    assert ("&lt;script&gt;x&lt;/script&gt; \\# pwned \\| [a]\\(javascript\\:b\\)"
            in index.splitlines()), index
    assert "<script>" not in index and "\n# pwned" not in index
    # two members that would share a folder are refused before anything runs
    twin = elsewhere / "sub"
    twin.mkdir()
    (twin / "tiny-digits.toml").write_text(member.read_text())
    suite.write_text(f'benchmarks = ["{member}", "{twin / "tiny-digits.toml"}"]\n')
    with pytest.raises(ConfigError, match="names `tiny-digits` twice"):
        runs_members(suite)   # the suite file's members (issue 15: a member has a folder name)
    from lifelong_kd.presets import SuiteMember

    twins = [SuiteMember(str(member), "tiny-digits"),
             SuiteMember(str(twin / "tiny-digits.toml"), "tiny-digits")]
    with pytest.raises(ConfigError, match="would both write into"):
        runs.compare_suite(twins, tmp_path / "out2", overrides=_overrides(),
                           provider=runs.DataProvider(tmp_path, progress=False))
    assert not (tmp_path / "out2").exists()


def runs_members(suite: Path) -> list[str]:
    from lifelong_kd.presets import suite_members

    members = suite_members(str(suite))
    assert members is not None
    return members


# ----------------------------------------------------------------------------- committed


@pytest.mark.parametrize("folder", sorted(p.name for p in PAPER.iterdir() if p.is_dir()))
def test_every_committed_paper_run_has_the_identity_its_preset_plans(folder: str) -> None:
    """The committed comparisons are found where plan puts them, and their configuration is
    the one planned now: compare reuses them (given the same data)."""
    preset = ROOT / "benchmarks" / "paper" / f"{folder}.toml"
    specs = runs.plan(str(preset), None, None, {}, PAPER / folder)
    assert len(specs) >= 10
    if folder in PARTIAL:  # a series that did not finish: the runs that did
        specs = [s for s in specs if (s.folder / "result.json").is_file()]
        assert specs, folder
    for spec in specs:
        old = read_result(spec.folder)
        recorded = identity_of(old)
        assert recorded.stamp == spec.stamp
        # the options its strategy does not read aside (results.as_recorded)
        assert (recorded.config_hash
                == identity_as_recorded(spec.config.to_dict(), old).config_hash), spec.folder


def test_compare_reuses_the_committed_runs(tmp_path: Path, data_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`compare` of the committed Seq-MNIST comparison (seed 0, a copy) trains nothing."""
    out = tmp_path / "buzzega2020-seq-mnist"
    src = PAPER / "buzzega2020-seq-mnist"
    for result in src.glob("*/seed-0/result.json"):
        target = out / result.relative_to(src)
        target.parent.mkdir(parents=True)
        shutil.copy(result, target)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although every run is finished")

    monkeypatch.setattr("lifelong_kd.engine.train_stream", no_training)
    preset = ROOT / "benchmarks" / "paper" / "buzzega2020-seq-mnist.toml"
    assert main(["compare", str(preset), "--seeds", "0", "--out", str(out), "--offline",
                 "--quiet", "--data-dir", str(data_dir)]) == 0
    text = (out / "report.md").read_text()
    assert "its own settings: train.weight_decay = 0.0005" in text
    assert "None: every run finished." in text


# ----------------------------------------------------------------------
# Run folders that never mix, lose or hide results: the data is part of a run's identity,
# checkpoints run no code, one process per folder, --force leaves no stale outputs, refusals
# change nothing, and every failure to read or write is one line with exit code 2.
# (formerly tests/test_runs_safety.py)

#: Split-Digits (sklearn's digits, no files) in a few optimiser steps per task.


#: Resume quietly (and draw the run's plots).
RESUME = runs.RunOptions(progress=False, resume=True)


def _mnist_sets(extra: list[str] | None = None) -> list[str]:
    out: list[str] = []
    for item in [*QUICK_MNIST, "train.iterations=3", *(extra or [])]:
        out += ["--set", item]
    return out


def _one_error_line(err: str) -> str:
    """The message of a one-line ``error: ...`` on stderr (and nothing else)."""
    assert err.startswith("error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to check that nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != runs.LOCK}


@pytest.fixture(scope="module")
def other_mnist(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A data folder with MNIST whose test labels differ from the shared copy in one label
    (another fingerprint, same file names and sizes)."""
    root = tmp_path_factory.mktemp("other-data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = data_dir / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz"):
        (raw / name).symlink_to(src / name)
    labels = bytearray(gzip.decompress((src / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[8] = (labels[8] + 1) % 10  # the first label (after the 8-byte header)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    return root


def _mnist_run(out: Path, data: Path, *extra: str) -> int:
    return main(["run", "permuted-mnist", "--out", str(out), "--data-dir", str(data), "--quiet",
                 "--offline", *_mnist_sets(), *extra])


def _interrupted_after_task_0(out: Path, data: Path) -> None:
    """An interrupted run with the checkpoint of task 0 (stopped at the next step)."""
    config = build_config("permuted-mnist", None, parse_set([*QUICK_MNIST, "train.iterations=3"]))
    provider = runs.DataProvider(data, offline=True, progress=False)
    result = runs.execute(runs.RunSpec(config, out), provider,
                          runs.RunOptions(progress=False, plots=False),
                          stop=lambda: (out / runs.CHECKPOINT).is_file())
    assert result["status"] == "interrupted" and result["tasks_finished"] == 1


# ------------------------------------------------------------------ 1. the data is identity


def test_resume_refuses_a_checkpoint_made_on_other_data(tmp_path, capsys, data_dir, other_mnist):
    out = tmp_path / "run"
    _interrupted_after_task_0(out, data_dir)
    before = _snapshot(out)
    assert _mnist_run(out, other_mnist, "--resume") == 2
    err = _one_error_line(capsys.readouterr().err)
    saved = torch.load(out / runs.CHECKPOINT, weights_only=True)
    old_fp = saved["data"]["fingerprint"]
    assert old_fp[:12] in err and "other data" in err
    assert str(data_dir) in err and str(other_mnist) in err
    new_fp = [w for w in err.replace(",", " ").split() if len(w) >= 12 and w != old_fp[:12]
              and all(c in "0123456789abcdef" for c in w)]
    assert new_fp, err  # the other fingerprint is named too
    assert _snapshot(out) == before  # nothing was written
    # the same data resumes it
    assert _mnist_run(out, data_dir, "--resume") == 0
    assert json.loads((out / "result.json").read_text())["status"] == "finished"


def test_resume_of_a_finished_run_on_other_data_is_refused(tmp_path, data_dir, other_mnist):
    out = tmp_path / "done"
    assert _mnist_run(out, data_dir) == 0
    config = build_config("permuted-mnist", None, parse_set([*QUICK_MNIST, "train.iterations=3"]))
    provider = runs.DataProvider(other_mnist, offline=True, progress=False)
    with pytest.raises(UserError, match="other data") as info:
        runs.execute(runs.RunSpec(config, out), provider, RESUME)
    old = json.loads((out / "result.json").read_text())["data"]["fingerprint"]
    assert old[:12] in str(info.value)
    same = runs.DataProvider(data_dir, offline=True, progress=False)
    assert runs.execute(runs.RunSpec(config, out), same, RESUME)["data"]["fingerprint"] == old


def test_compare_does_not_reuse_runs_made_on_other_data(tmp_path, capsys, data_dir, other_mnist):
    out = tmp_path / "cmp"
    args = ["compare", "permuted-mnist", "--strategies", "naive", "--seeds", "0", "--out",
            str(out), "--quiet", "--offline", *_mnist_sets()]
    assert main([*args, "--data-dir", str(data_dir)]) == 0
    before = _snapshot(out)
    assert main([*args, "--data-dir", str(other_mnist)]) == 2
    err = _one_error_line(capsys.readouterr().err)
    old = json.loads((out / "naive" / "seed-0" / "result.json").read_text())["data"]["fingerprint"]
    assert old[:12] in err and str(out / "naive" / "seed-0") in err
    assert _snapshot(out) == before  # no report over two fingerprints
    # --force runs it again on the new data
    assert main([*args, "--data-dir", str(other_mnist), "--force"]) == 0
    new = json.loads((out / "naive" / "seed-0" / "result.json").read_text())["data"]["fingerprint"]
    assert new != old


# ------------------------------------------------------------- 2. checkpoints run no code


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_with_a_pickle_payload_does_not_run_it(tmp_path, capsys):
    out = tmp_path / "evil"
    out.mkdir()
    marker = tmp_path / "payload-ran"
    torch.save({"config": {}, "state": _Payload(marker)}, out / runs.CHECKPOINT)
    assert not marker.exists()
    assert main(["run", "split-digits", "--out", str(out), "--quiet", "--resume", *DIGITS]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert str(out / runs.CHECKPOINT) in err and "--force" in err
    assert not marker.exists()


@pytest.mark.parametrize("strategy", ["naive", "lwf", "ewc", "joint"])
def test_checkpoints_hold_only_tensors_and_plain_data(tmp_path, strategy):
    out = tmp_path / strategy
    sets = ["train.optimizer=adam", "train.lr=0.001", *DIGITS[1::2]]
    config = build_config("split-digits", strategy, parse_set(sets))
    provider = runs.DataProvider(tmp_path, progress=False)
    first = runs.execute(runs.RunSpec(config, out), provider,
                         runs.RunOptions(progress=False, keep_checkpoints=True, plots=False))
    saved = torch.load(out / runs.CHECKPOINT, weights_only=True)
    assert saved["state"]["next_task"] == 2
    assert saved["data"]["fingerprint"] == first["data"]["fingerprint"]
    # and it resumes (nothing to train: the result is rebuilt from the checkpoint)
    (out / "result.json").unlink()
    again = runs.execute(runs.RunSpec(config, out), provider,
                         runs.RunOptions(progress=False, resume=True, plots=False))
    assert again["accuracy_matrix"] == first["accuracy_matrix"]
    assert again["timing"]["resumed_from_task"] == 2


def _break(saved: dict, how: str) -> object:
    if how == "not a dict":
        return [saved]
    if how == "no state":
        return {k: v for k, v in saved.items() if k != "state"}
    state = dict(saved["state"])
    if how == "no rows":
        del state["rows"]
    elif how == "model is a string":
        state["model"] = "weights"
    elif how == "next_task is text":
        state["next_task"] = "1"
    elif how == "wrong tensor shapes":
        state["model"] = {k: torch.zeros(1) for k in state["model"]}
    return {**saved, "state": state}


@pytest.mark.parametrize("how", ["not a dict", "no state", "no rows", "model is a string",
                                 "next_task is text", "wrong tensor shapes"])
def test_a_checkpoint_of_the_wrong_structure_is_one_line(tmp_path, capsys, data_dir, how):
    out = tmp_path / "run"
    _interrupted_after_task_0(out, data_dir)
    saved = torch.load(out / runs.CHECKPOINT, weights_only=True)
    torch.save(_break(saved, how), out / runs.CHECKPOINT)
    assert _mnist_run(out, data_dir, "--resume") == 2
    err = _one_error_line(capsys.readouterr().err)
    assert str(out / runs.CHECKPOINT) in err and "--force" in err


def test_avalanche_strategy_checkpoints_load_as_weights(tmp_path, capsys):
    out = tmp_path / "av"
    args = ["run", "split-digits", "--strategy", "avalanche:Naive", "--out", str(out), "--quiet",
            *DIGITS]
    assert main([*args, "--keep-checkpoints"]) == 0
    saved = torch.load(out / runs.CHECKPOINT, weights_only=True)
    assert saved["state"]["strategy"]["tasks_trained"] == 2
    # Avalanche's own state is not in it: resuming says so in one line
    (out / "result.json").unlink()
    assert main([*args, "--resume"]) == 2
    assert "Avalanche's state" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------- 4. one process a folder


class _Holder:
    """A second process that holds the lock of ``folder`` until it is closed."""

    def __init__(self, folder: Path) -> None:
        code = ("import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
                "lock.acquire(); print('locked', flush=True); sys.stdin.read(); lock.release()")
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(folder / runs.LOCK)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def test_a_run_folder_in_use_by_another_process_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    holder = _Holder(out)
    try:
        assert main(["run", "split-digits", "--out", str(out), "--quiet", *DIGITS]) == 2
        err = _one_error_line(capsys.readouterr().err)
        assert str(out) in err and "another" in err
        assert not (out / "result.json").exists()
    finally:
        holder.close()
    assert main(["run", "split-digits", "--out", str(out), "--quiet", *DIGITS]) == 0


@pytest.mark.parametrize("where", ["comparison", "run"])
def test_compare_refuses_a_folder_in_use(tmp_path, capsys, where):
    out = tmp_path / "cmp"
    locked = out if where == "comparison" else out / "naive" / "seed-0"
    holder = _Holder(locked)
    try:
        code = main(["compare", "split-digits", "--strategies", "naive", "--seeds", "0",
                     "--out", str(out), "--quiet", *DIGITS])
        err = capsys.readouterr().err
    finally:
        holder.close()
    assert code == 2
    assert str(locked) in _one_error_line(err) and "another" in err
    assert not (out / "report.md").exists()
    assert not (out / "naive" / "seed-0" / "result.json").exists()


def test_a_large_grid_runs_under_a_low_open_file_limit(tmp_path):
    """The issue's case: one lock file was kept open per run for the whole comparison, so a
    grid of more runs than the open-file limit (1,100 runs under ``ulimit -n 1024``) stopped
    with "cannot write in the output folder ...: Too many open files". Here 40 runs under a
    limit of 40: each run's lock is held only while it is looked at and while it runs."""
    import resource

    lrs = ",".join(f"{0.01 * (i + 1):.2f}" for i in range(40))
    code = ("import resource, sys; from lifelong_kd.cli import main; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit("
            "resource.RLIMIT_NOFILE)[1])); sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "grid"
    done = subprocess.run(
        [sys.executable, "-c", code, "compare", "split-digits", "--strategies", "naive",
         "--seeds", "0", "--grid", f"train.lr={lrs}", "--out", str(out), "--quiet",
         "--no-plots", *DIGITS, "--set", "stream.n_tasks=2"],
        capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("naive/*/seed-0/result.json"))) == 40
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 40  # this process's is untouched


def test_the_open_file_limit_is_named_as_the_cause_not_the_folder(tmp_path, monkeypatch):
    from filelock import FileLock

    def too_many(self, *args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(FileLock, "acquire", too_many)
    with pytest.raises(UserError) as info, runs.locked(tmp_path):
        pass
    message = str(info.value)
    assert "as many files open as it may" in message and "ulimit -n" in message
    assert "choose another --out" not in message


def test_a_grid_folder_name_too_long_is_refused_leaving_no_folder(tmp_path, capsys):
    out = tmp_path / "long"
    hidden = "[" + ",".join(["10000"] * 60) + "]"  # model.hidden=10000_10000_...: 372 bytes
    assert main(["compare", "split-digits", "--strategies", "naive", "--seeds", "0", "--grid",
                 f"model.hidden={hidden}", "--out", str(out), "--quiet", "--no-plots",
                 *DIGITS]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "is 372 bytes, more than the file system allows" in err and "vary fewer keys" in err
    assert not out.exists()  # neither the comparison's folder nor the strategy's


# ---------------------------------------------------------------- 5. no stale outputs


def test_force_removes_the_previous_outputs_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    args = ["run", "split-digits", "--out", str(out), "--quiet", *DIGITS]
    assert main(args) == 0
    assert (out / "forgetting.png").is_file()
    assert main(["plot", str(out), "--formats", "svg", "pdf"]) == 0
    (out / "notes.txt").write_text("mine")
    (out / ".result.json.abc123.tmp").write_text("a temporary file left by a crash")
    assert main([*args, "--force", "--set", "stream.n_tasks=1"]) == 0  # one task: no forgetting
    names = {p.name for p in out.iterdir()} - {runs.LOCK}
    assert names == {"result.json", "accuracy_matrix.csv", "accuracy_matrix.png",
                     "task_accuracy.png", "average_accuracy.png", "notes.txt"}
    assert json.loads((out / "result.json").read_text())["n_tasks"] == 1


def test_compare_force_removes_the_comparison_outputs(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "split-digits", "--strategies", "naive", "--seeds", "0", "--out", str(out),
            "--quiet", *DIGITS]
    assert main([*args, "--set", "stream.scenario=class-il"]) == 0
    aware = {p.name for p in out.glob("*_task_aware.*")}
    assert aware  # class-il: task-aware copies of the plots
    (out / "notes.txt").write_text("mine")
    (out / "average_accuracy.pdf").write_bytes(b"%PDF stale")
    assert main([*args, "--force"]) == 0  # task-il: no task-aware copies
    names = {p.name for p in out.iterdir()}
    assert not names & aware
    assert "notes.txt" in names and "average_accuracy.pdf" not in names
    assert {"report.md", "summary.csv", "average_accuracy.png", "naive"} <= names


def test_compare_with_changed_settings_refuses_up_front_and_changes_nothing(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "cmp"
    args = ["compare", "split-digits", "--strategies", "naive", "lwf", "--seeds", "0", "--out",
            str(out), "--quiet", *DIGITS]
    assert main(args) == 0
    before = _snapshot(out)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the comparison must be refused")

    monkeypatch.setattr("lifelong_kd.engine.train_stream", no_training)
    assert main([*args, "--set", "train.lr=0.123"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert str(out / "naive" / "seed-0") in err and "train.lr" in err and "--force" in err
    assert _snapshot(out) == before


# --------------------------------------------------- 7. one line and exit 2, files intact


def test_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub" / "dir"):
        for command in (["run", "split-digits"], ["compare", "split-digits", "--seeds", "0"]):
            assert main([*command, "--out", str(out), "--quiet", *DIGITS]) == 2
            err = _one_error_line(capsys.readouterr().err)
            assert str(afile) in err
    assert afile.read_text() == "x"


def test_read_only_out_is_one_line(tmp_path, capsys, monkeypatch):
    """(Tests run as root: a read-only folder is simulated.)"""
    import filelock

    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.lock_file))

    monkeypatch.setattr(filelock.FileLock, "acquire", denied)
    out = tmp_path / "ro"
    out.mkdir()
    assert main(["run", "split-digits", "--out", str(out), "--quiet", *DIGITS]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert str(out) in err and "Permission denied" in err

    def no_mkdir(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", no_mkdir)
    assert main(["run", "split-digits", "--out", str(out / "new"), "--quiet", *DIGITS]) == 2
    assert str(out / "new") in _one_error_line(capsys.readouterr().err)


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "full"
    args = ["run", "split-digits", "--out", str(out), "--quiet", *DIGITS,
            "--set", "stream.n_tasks=5"]
    real_save = torch.save
    calls = []

    def full_after_one(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_after_one)
    assert main(args) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "no space left" in err.lower() and str(out / runs.CHECKPOINT) in err
    assert "--resume" in err
    monkeypatch.setattr(torch, "save", real_save)
    saved = torch.load(out / runs.CHECKPOINT, weights_only=True)
    assert saved["state"]["next_task"] == 1  # the good one, after task 0
    assert sorted(p.name for p in out.iterdir() if p.name != runs.LOCK) == [runs.CHECKPOINT]
    assert main([*args, "--resume"]) == 0
    resumed = json.loads((out / "result.json").read_text())
    assert resumed["timing"]["resumed_from_task"] == 1
    whole = tmp_path / "whole"
    assert main([*args[:3], str(whole), *args[4:]]) == 0
    assert resumed["accuracy_matrix"] == json.loads((whole / "result.json").read_text())[
        "accuracy_matrix"]


def test_full_disk_at_the_result_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "full"
    args = ["run", "split-digits", "--out", str(out), "--quiet", *DIGITS]
    real_replace = os.replace

    def full_for_results(src, dst, *a, **kw):
        if Path(dst).name == "result.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", full_for_results)
    assert main(args) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "no space left" in err and str(out / "result.json") in err and "--resume" in err
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir() if p.name != runs.LOCK) == [runs.CHECKPOINT]
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["timing"]["resumed_from_task"] == 1


@pytest.mark.parametrize("failing", ["mkstemp", "replace", "body"])
def test_atomic_path_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, failing):
    target = tmp_path / "result.json"
    write_text(target, "old")
    full = OSError(errno.ENOSPC, "No space left on device")

    def boom(*args, **kwargs):
        raise full

    if failing == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", boom)
    elif failing == "replace":
        monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(UserError, match="no space left on the device") as info, \
            atomic_path(target) as tmp:
        tmp.write_text("new")
        if failing == "body":
            raise full
    assert str(target) in str(info.value)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_written_files_get_the_usual_mode(tmp_path):
    """result.json, CSVs, plots and checkpoints are readable as any file the user writes:
    0666 less the umask (mkstemp alone would make them 0600, the owner's only)."""
    old = os.umask(0o022)
    os.umask(old)
    target = tmp_path / "result.json"
    write_text(target, "{}")
    assert target.stat().st_mode & 0o777 == 0o666 & ~old
    write_text(target, "{}")  # replacing a file gives the same mode
    assert target.stat().st_mode & 0o777 == 0o666 & ~old


def test_plot_and_report_into_a_read_only_folder(tmp_path, capsys, monkeypatch):
    cmp_ = tmp_path / "cmp"
    assert main(["compare", "split-digits", "--strategies", "naive", "--seeds", "0", "--out",
                 str(cmp_), "--quiet", *DIGITS]) == 0
    run = cmp_ / "naive" / "seed-0"
    assert main(["plot", str(run)]) == 0
    before = _snapshot(cmp_)
    capsys.readouterr()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    for argv in (["plot", str(run)], ["plot", str(cmp_)], ["report", str(cmp_)]):
        assert main(argv) == 2, argv
        err = _one_error_line(capsys.readouterr().err)
        assert "permission denied" in err.lower() and str(tmp_path) in err
    assert main(["compare", "split-digits", "--strategies", "naive", "--seeds", "0", "--out",
                 str(cmp_), "--quiet", *DIGITS]) == 2
    assert "permission denied" in _one_error_line(capsys.readouterr().err).lower()
    monkeypatch.undo()
    assert _snapshot(cmp_) == before
    assert not [p for p in cmp_.rglob("*.tmp")]


def test_report_out_that_is_a_file(tmp_path, capsys):
    cmp_ = tmp_path / "cmp"
    assert main(["compare", "split-digits", "--strategies", "naive", "--seeds", "0", "--out",
                 str(cmp_), "--quiet", *DIGITS]) == 0
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["report", str(cmp_), "--out", str(afile)]) == 2
    assert str(afile) in _one_error_line(capsys.readouterr().err)


# --------------------------------------------- 8. a suite is validated before anything runs

SUITE = 'description = "a test suite"\nbenchmarks = [{members}]\n'


def _no_data_no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("data loaded or trained before every configuration was checked")

    monkeypatch.setattr("lifelong_kd.data.sources.load_dataset", refuse)
    monkeypatch.setattr("lifelong_kd.engine.train_stream", refuse)


@pytest.mark.parametrize(("members", "sets", "words"), [
    ('"split-digits", "no-such-benchmark"', [], ["unknown benchmark", "no-such-benchmark"]),
    ('"permuted-digits", "split-digits"', ["--set", "stream.n_tasks=3"], ["do not divide"]),
])
def test_every_suite_member_is_validated_first(tmp_path, capsys, monkeypatch, members, sets,
                                               words):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(members=members))
    _no_data_no_training(monkeypatch)
    out = tmp_path / "out"
    assert main(["compare", str(suite), "--seeds", "0", "--out", str(out), "--quiet",
                 *sets]) == 2
    err = _one_error_line(capsys.readouterr().err)
    for w in words:
        assert w in err
    assert not out.exists()


# --------------------------------------- 14. a failed data load leaves no output folder


def test_a_failed_data_load_leaves_no_folder(tmp_path, capsys):
    empty = tmp_path / "nodata"
    empty.mkdir()
    for command in (["run", "permuted-mnist"], ["compare", "permuted-mnist", "--seeds", "0"]):
        out = tmp_path / "a" / "b" / "out"
        assert main([*command, "--data-dir", str(empty), "--offline", "--quiet",
                     "--out", str(out)]) == 2
        err = _one_error_line(capsys.readouterr().err)
        assert str(empty) in err
        assert not (tmp_path / "a").exists()
    # a folder that was there before stays (and holds nothing new)
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["run", "permuted-mnist", "--data-dir", str(empty), "--offline", "--quiet",
                 "--out", str(kept)]) == 2
    assert kept.is_dir() and [p.name for p in kept.iterdir() if p.name != runs.LOCK] == []


def test_every_comparison_plot_is_an_output_force_removes():
    from lifelong_kd.plots import COST_PLOTS, CURVE_PLOTS

    assert set(COST_PLOTS) <= set(runs.COMPARISON_PLOTS)
    assert set(CURVE_PLOTS) <= set(runs.COMPARISON_PLOTS) and "curves" in runs.RUN_PLOTS
    names = runs.comparison_output_names()
    assert {"accuracy_vs_parameters_task_aware.svg", "accuracy_vs_flops.png"} <= set(names)
