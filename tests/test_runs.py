"""Runs have one identity: plan -> run specs, execute(spec), a serial executor, and compare's
reuse of what is finished with the same identity (committed results included)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from lifelong_kd import runs
from lifelong_kd.cli import main
from lifelong_kd.config import parse_set
from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config
from lifelong_kd.results import (
    identity_as_recorded,
    identity_differences,
    identity_of,
    read_result,
    run_identity,
)

from .conftest import PARTIAL

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
