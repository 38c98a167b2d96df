"""Grids: ``compare --grid KEY=V1,V2`` and a preset's ``[grid]`` table make one variant per point
of the cartesian product, for the strategies that read each key; each variant has its own
folder, identity and rows in the report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from lifelong_kd import runs
from lifelong_kd.cli import main
from lifelong_kd.config import parse_set
from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import grid_points, parse_grid, preset_grid, reads
from lifelong_kd.results import identity_of, read_result
from lifelong_kd.runs import planning

ROOT = Path(__file__).resolve().parent.parent
#: Split-Digits (sklearn's digits, no files) in a few optimiser steps per task.
DIGITS = ["--set", "train.epochs=1", "--set", "train.iterations=3", "--set",
          "strategy.warmup_epochs=0", "--set", "stream.n_tasks=2"]


def _overrides() -> dict:
    return parse_set(DIGITS[1::2])


# ------------------------------------------------------------------------------- parsing


def test_grid_values_are_split_at_commas_outside_brackets() -> None:
    grid = parse_grid(["train.lr=0.01, 0.1", "model.hidden=[100,100],[400, 400]",
                       "strategy.distill_loss=kl,mse"])
    assert grid == {"train.lr": [0.01, 0.1], "model.hidden": [[100, 100], [400, 400]],
                    "strategy.distill_loss": ["kl", "mse"]}
    assert parse_grid(None) == {}


@pytest.mark.parametrize("item", ["train.lr", "=0.1,0.2", "train.lr=", "train.lr=0.1,,0.2",
                                  "train.lr=0.1,"])
def test_a_malformed_grid_item_is_refused_with_an_example(item: str) -> None:
    with pytest.raises(ConfigError, match=r"--grid expects KEY=V1,V2.*train\.lr=0\.01,0\.1"):
        parse_grid([item])


@pytest.mark.parametrize(("item", "value"), [
    ("train.lr=0.05,[0.2", "[0.2"),                  # the issue's: 0.2 was dropped
    ("model.hidden=[100,100],[400", "[400"),         # the issue's: [400 was dropped
    ("train.lr=0.05]", "0.05]"),
    ("model.hidden=[100,100)],[400]", "[100,100)]"),
    ("model.hidden=(1,2", "(1,2"),
])
def test_a_grid_value_with_an_unbalanced_bracket_is_refused_naming_it(item, value) -> None:
    with pytest.raises(ConfigError, match=rf"--grid '{re.escape(item)}': the value "
                                          rf"'{re.escape(value)}' has a bracket that is not "
                                          r"closed.*model\.hidden=\[100,100\],\[400,400\]"):
        parse_grid([item])


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"`train.lr` twice"):
        parse_grid(["train.lr=0.1", "train.lr=0.2"])


# ------------------------------------------------------------------------------- which keys


def test_a_strategy_reads_its_options_its_memory_and_its_teacher_only() -> None:
    assert reads("lwf", "strategy.alpha") and not reads("naive", "strategy.alpha")
    assert reads("ewc", "strategy.ewc_lambda") and not reads("lwf", "strategy.ewc_lambda")
    assert reads("der", "memory.size") and not reads("naive", "memory.size")
    assert reads("compress", "teacher.hidden") and not reads("lwf", "teacher.hidden")
    assert all(reads(s, k) for s in ("naive", "lwf") for k in ("train.lr", "model.hidden"))


def test_grid_points_are_the_product_of_the_keys_read_in_sorted_order() -> None:
    grid = {"train.lr": [0.01, 0.1], "strategy.alpha": [0.5, 1, 2]}
    assert grid_points("naive", grid) == [{"train.lr": 0.01}, {"train.lr": 0.1}]
    points = grid_points("lwf", grid)
    assert points == [
        {"strategy.alpha": a, "train.lr": lr} for a in (0.5, 1, 2) for lr in (0.01, 0.1)]
    assert [list(p) for p in points] == [["strategy.alpha", "train.lr"]] * 6
    assert grid_points("lwf", dict(reversed(grid.items()))) == points  # whatever the order
    assert grid_points("naive", {"strategy.alpha": [1, 2]}) == [{}]


# ------------------------------------------------------------------------------- the plan


def test_plan_makes_one_variant_per_point_with_its_own_folder_and_identity(tmp_path) -> None:
    grid = {"train.lr": [0.01, 0.1], "strategy.alpha": [0.5, 2]}
    specs = runs.plan("split-digits", ["naive", "lwf"], [0, 1], _overrides(), tmp_path, grid)
    assert len(specs) == 2 * 2 + 4 * 2  # naive reads lr only; lwf lr x alpha; 2 seeds each
    assert [s.stamp for s in specs[:4]] == [
        "naive/train.lr=0.01/seed-0", "naive/train.lr=0.01/seed-1",
        "naive/train.lr=0.1/seed-0", "naive/train.lr=0.1/seed-1"]
    lwf = [s for s in specs if s.config.strategy.name == "lwf"]
    assert lwf[0].stamp == "lwf/strategy.alpha=0.5,train.lr=0.01/seed-0"
    assert lwf[0].folder == tmp_path / "lwf" / "strategy.alpha=0.5,train.lr=0.01" / "seed-0"
    assert lwf[0].variant == "lwf [strategy.alpha = 0.5, train.lr = 0.01]"
    assert [(s.config.strategy.options["alpha"], s.config.train.lr) for s in lwf[::2]] == [
        (0.5, 0.01), (0.5, 0.1), (2.0, 0.01), (2.0, 0.1)]
    # the same grid, its keys in the other order: the same runs in the same folders
    swapped = runs.plan("split-digits", ["naive", "lwf"], [0, 1], _overrides(), tmp_path,
                        dict(reversed(grid.items())))
    assert [(s.folder, s.identity) for s in swapped] == [(s.folder, s.identity) for s in specs]
    assert "alpha" not in specs[0].config.strategy.options  # naive does not read it
    hashes = {s.identity.config_hash for s in specs}
    assert len(hashes) == len(specs)
    assert specs[0].identity.title == f"{specs[0].stamp} ({specs[0].identity.config_hash[:10]})"
    # a list value: shown joined by _, the setting itself a list
    [spec] = runs.plan("split-digits", ["naive"], [0], _overrides(), tmp_path,
                       {"model.hidden": [[50, 20]]})
    assert spec.stamp == "naive/model.hidden=50_20/seed-0"
    assert spec.config.model.hidden == (50, 20)


def test_without_a_grid_the_plan_is_unchanged(tmp_path) -> None:
    specs = runs.plan("split-digits", ["naive", "lwf"], [0], _overrides(), tmp_path, {})
    assert [s.stamp for s in specs] == ["naive/seed-0", "lwf/seed-0"]
    assert [s.folder for s in specs] == [tmp_path / "naive" / "seed-0", tmp_path / "lwf" / "seed-0"]
    assert all(s.grid == () for s in specs)


@pytest.mark.parametrize(("grid", "overrides", "match"), [
    ({"data.train_subset": [100, 200]}, {}, r"cannot vary `data.train_subset`.*data and the "
                                            r"stream.*--set data.train_subset="),
    ({"stream.n_tasks": [2, 3]}, {}, r"cannot vary `stream.n_tasks`"),
    ({"seed": [0, 1]}, {}, r"cannot vary `seed`: .*--seeds"),
    ({"strategy.name": ["lwf"]}, {}, r"cannot vary `strategy.name`: .*--strategies"),
    ({"train.lrr": [0.1]}, {}, r"unknown configuration key `train.lrr`.*did you mean `train.lr`"),
    ({"train.lr": [0.1, 0.2]}, {"train.lr": 0.3}, r"`train.lr` is both set \(--set "
                                                  r"train.lr=0.3\) and varied"),
    ({"train.lr": []}, {}, r"`train.lr` lists no values"),
    ({"train.lr": [0.1, 0.2, 0.1]}, {}, r"holds 0.1 twice"),
    ({"strategy.ewc_lambda": [1, 10]}, {}, r"no strategy of this comparison \(naive, lwf\) reads "
                                           r"`strategy.ewc_lambda`"),
    ({"train.augment": [True, "yes"]}, {}, r"gives naive \[train.augment = true\] twice"),
    ({"train.lr": ["fast"]}, {}, r"`train.lr` = 'fast' is not a number"),
])
def test_a_grid_that_cannot_make_variants_is_refused_before_anything_runs(
        tmp_path, grid, overrides, match) -> None:
    with pytest.raises(ConfigError, match=match):
        runs.plan("split-digits", ["naive", "lwf"], [0], {**_overrides(), **overrides},
                  tmp_path, grid)
    assert not any(tmp_path.iterdir())


def _preset_with_grid(tmp_path: Path, grid: str) -> Path:
    path = tmp_path / "digits-grid.toml"
    path.write_text((ROOT / "benchmarks" / "split-digits.toml").read_text() + "\n" + grid)
    return path


def test_a_preset_grid_table_is_read_and_the_command_line_replaces_its_keys(tmp_path) -> None:
    path = _preset_with_grid(tmp_path, '[grid]\n"strategy.alpha" = [0.5, 2]\n\n'
                                       "[grid.train]\nlr = [0.01, 0.1]\n")
    assert preset_grid(str(path)) == {"strategy.alpha": [0.5, 2], "train.lr": [0.01, 0.1]}
    specs = runs.plan(str(path), ["lwf"], [0], _overrides(), tmp_path / "out")
    assert len(specs) == 4
    specs = runs.plan(str(path), ["lwf"], [0], _overrides(), tmp_path / "out",
                      {"train.lr": [0.05]})
    assert [s.stamp for s in specs] == ["lwf/strategy.alpha=0.5,train.lr=0.05/seed-0",
                                        "lwf/strategy.alpha=2,train.lr=0.05/seed-0"]
    # a key of the preset's grid that the strategies asked for do not read is left out
    assert [s.stamp for s in runs.plan(str(path), ["naive"], [0], _overrides(),
                                       tmp_path / "out")] == [
        "naive/train.lr=0.01/seed-0", "naive/train.lr=0.1/seed-0"]


def test_a_preset_grid_key_its_own_override_table_sets_is_refused(tmp_path) -> None:
    path = _preset_with_grid(tmp_path, '[overrides.lwf.train]\nlr = 0.3\n\n'
                                       '[grid]\n"train.lr" = [0.01, 0.1]\n')
    with pytest.raises(ConfigError, match=r"`train.lr` is both varied by \[grid\] "
                                          r"\(\[0.01, 0.1\]\) and set for `lwf` by "
                                          r"\[overrides.lwf\] \(0.3\)"):
        runs.plan(str(path), ["naive", "lwf"], [0], _overrides(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # a key the overridden strategy does not read is no conflict: the grid skips it there
    path = _preset_with_grid(tmp_path, '[overrides.naive.strategy]\nalpha = 3.0\n\n'
                                       '[grid]\n"strategy.alpha" = [0.5, 2]\n')
    assert len(runs.plan(str(path), ["naive", "lwf"], [0], _overrides(), tmp_path / "o")) == 3


def test_a_preset_grid_entry_that_is_not_a_list_is_refused(tmp_path) -> None:
    path = _preset_with_grid(tmp_path, '[grid]\n"train.lr" = 0.1\n')
    with pytest.raises(ConfigError, match=r"\[grid\]: `train.lr` = 0.1 must be a list.*\[0.1\]"):
        preset_grid(str(path))


# ------------------------------------------------------------------------------ end to end


def _summary(folder: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(folder / "summary.csv", newline="") as f:
        return {(r["strategy"], r["matrix"], r["metric"]): r for r in csv.DictReader(f)}


def test_compare_with_a_grid_reports_each_variant_and_reuses_them(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "split-digits", "--strategies", "naive", "lwf", "--seeds", "0", "1",
            "--grid", "strategy.alpha=0.5,2", "--out", str(out), *DIGITS]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[1/6] naive/seed-0 (" in err and "lwf/strategy.alpha=2/seed-1 (" in err
    folder = out / "lwf" / "strategy.alpha=2" / "seed-1"
    result = read_result(folder)
    assert result["config"]["strategy"]["alpha"] == 2.0
    assert result["identity"]["grid"] == {"strategy.alpha": "2"}
    assert result["identity"]["stamp"] == "lwf/strategy.alpha=2/seed-1"
    assert identity_of(result).stamp == "lwf/strategy.alpha=2/seed-1"
    summary = _summary(out)
    variants = {s for s, _, _ in summary}
    assert variants == {"naive", "lwf [strategy.alpha = 0.5]", "lwf [strategy.alpha = 2]"}
    row = summary[("lwf [strategy.alpha = 2]", "task_aware", "average_accuracy")]
    assert row["n"] == "2"
    with open(out / "paired.csv", newline="") as f:
        paired = {r["strategy"] for r in csv.DictReader(f)}
    assert paired == {"lwf [strategy.alpha = 0.5]", "lwf [strategy.alpha = 2]"}
    report = (out / "report.md").read_text()
    assert "lwf [strategy.alpha = 0.5]" in report and "lwf [strategy.alpha = 2]" in report
    # again: every run is finished with its identity, nothing trains
    assert main([*argv, "--quiet"]) == 0
    assert json.loads((folder / "result.json").read_text())["timing"] == result["timing"]
    assert main(["compare", "split-digits", "--strategies", "naive", "lwf", "--seeds", "0",
                 "--grid", "strategy.alpha=0.5,2", "--out", str(out), *DIGITS]) == 0
    assert "finished before, reused" in capsys.readouterr().err
    # the case: two keys, then the same keys in the other order into the same folder:
    # every run is reused (one folder per variant) and the report of the folder works
    two = ["compare", "split-digits", "--strategies", "lwf", "--seeds", "0", "--out",
           str(tmp_path / "two"), *DIGITS]
    assert main([*two, "--grid", "strategy.alpha=1,2", "--grid", "train.lr=0.05"]) == 0
    capsys.readouterr()
    assert main([*two, "--grid", "train.lr=0.05", "--grid", "strategy.alpha=1,2"]) == 0
    assert capsys.readouterr().err.count("finished before, reused") == 2
    assert sorted(p.name for p in (tmp_path / "two" / "lwf").iterdir() if p.is_dir()) == [
        "strategy.alpha=1,train.lr=0.05", "strategy.alpha=2,train.lr=0.05"]
    assert main(["report", str(tmp_path / "two"), "--out", str(tmp_path / "two-report")]) == 0
    # the report of the folder, from its files, names the same variants
    again = tmp_path / "again"
    assert main(["report", str(out), "--out", str(again)]) == 0
    assert {s for s, _, _ in _summary(again)} == variants


def test_a_failed_variant_is_named_by_its_grid_settings(tmp_path) -> None:
    out = tmp_path / "cmp"
    overrides = {**_overrides(), "train.lr": 1e30}  # diverges at once
    outcome = runs.compare("split-digits", ["lwf"], [0], overrides,
                           runs.DataProvider(tmp_path, progress=False), out,
                           options=runs.RunOptions(progress=False),
                           grid={"strategy.alpha": [0.5]})
    assert [f["strategy"] for f in outcome.failures] == ["lwf [strategy.alpha = 0.5]"]
    assert outcome.failures[0]["error"].startswith("diverged")
    report = (out / "report.md").read_text()
    assert report.count("lwf [strategy.alpha = 0.5]") == 1, report


@pytest.mark.parametrize(("argv", "message"), [
    (["--jobs", "0"], "--jobs must be a whole number of at least 1, not 0"),
    (["--executor", "cluster"], "unknown executor `cluster`; choose one of: serial, processes, ray"),
    (["--ray-address", "head:6379"], "--ray-address head:6379 is for --executor ray"),
    (["--threads", "0"], "--threads must be a whole number of at least 1, not 0"),
    (["--grid", "data.train_subset=10,20"], "cannot vary `data.train_subset`"),
])
def test_compare_refuses_bad_executor_and_grid_options_in_one_line(tmp_path, capsys, argv,
                                                                   message) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", "split-digits", "--out", str(out), "--quiet", *argv, *DIGITS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_a_grid_of_too_many_runs_is_refused_before_any_is_built(tmp_path, monkeypatch) -> None:
    """A thousand values times a thousand planned for hours (1 ms a run) and ignored Ctrl-C."""
    built = []
    monkeypatch.setattr(planning, "build_config", lambda *a, **k: built.append(a))
    grid = {"strategy.alpha": list(range(1, 1001)), "strategy.temperature": list(range(1, 1001))}
    with pytest.raises(ConfigError, match=r"would make 4,000,000 runs \(2 strategies x the "
                                          r"grid's points x 2 seeds\); at most 100,000"):
        runs.plan("split-digits", ["lwf", "lwf-mammoth"], [0, 1], _overrides(), tmp_path, grid)
    assert len(built) <= 1  # the base configuration only


def test_a_stop_while_planning_ends_the_planning(tmp_path) -> None:
    stop = runs.StopFlag()
    stop.requested = True
    with pytest.raises(KeyboardInterrupt):
        runs.plan("split-digits", ["lwf"], [0], _overrides(), tmp_path,
                  {"strategy.alpha": [1, 2]}, stop)
    assert not tmp_path.joinpath("lwf").exists()
