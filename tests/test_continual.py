"""Continual evaluation (issue 18): ``train.eval_every`` / ``train.eval_subset``, the curves
the engine records, curves.csv beside result.json, and resume keeping them exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lifelong_kd import engine, runs
from lifelong_kd.config import parse_set
from lifelong_kd.data.sources import default_data_dir, load_dataset, subset
from lifelong_kd.data.streams import build_stream
from lifelong_kd.errors import ConfigError, UserError
from lifelong_kd.presets import build_config
from lifelong_kd.results import CURVES, CURVES_HEADER, curves_csv, load_result, read_curves

#: Split-Digits (sklearn's digits, no files): 5 tasks, a few hundred examples, seconds.
SETS = ["data.train_subset=400", "train.epochs=1", "model.hidden=[16]", "train.batch_size=16"]


def _stream(config):
    ds = load_dataset("digits", default_data_dir(), offline=True, progress=False)
    return build_stream(config, subset(ds, config.data.train_subset, config.data.test_subset))


def _train(strategy: str, *sets: str) -> engine.RunState:
    config = build_config("split-digits", strategy, parse_set([*SETS, *sets]))
    return engine.train_stream(config, _stream(config), progress=False)


def _execute(config, out: Path, resume: bool = False, stop=None) -> dict:
    return runs.execute(runs.RunSpec(config, out), runs.DataProvider(out.parent, progress=False),
                        runs.RunOptions(progress=False, resume=resume, plots=False), stop=stop)


@pytest.mark.parametrize("strategy", ["naive", "lwf", "er", "icarl"])
def test_continual_evaluation_changes_no_matrix_and_records_every_point(strategy: str) -> None:
    off = _train(strategy)
    on = _train(strategy, "train.eval_every=7", "train.eval_subset=50")
    assert off.curves == [] and off.steps_done == 0
    assert on.rows == off.rows and on.rows_task_aware == off.rows_task_aware
    assert on.initial == off.initial
    for _, trained, task, acc in on.curves:  # tasks 0..trained, accuracies of 50 examples
        assert 0 <= task <= trained and (acc * 50) == pytest.approx(round(acc * 50))
    per_point = {}
    for step, trained, task, _ in on.curves:
        per_point.setdefault((step, trained), []).append(task)
    assert all(tasks == list(range(trained + 1)) for (_, trained), tasks in per_point.items())
    assert on.curve_seconds > 0
    if strategy != "naive":  # the preset's LwF has a warm-up phase: the steps differ
        return
    # one epoch of batches of 16 per task
    sizes = [len(t.train_y) for t in _stream(build_config("split-digits", strategy,
                                                          parse_set(SETS))).tasks]
    per_task = [-(-n // 16) for n in sizes]
    assert on.steps_done == sum(per_task)
    points = sorted({(step, trained) for step, trained, _, _ in on.curves},
                    key=lambda p: (p[1], p[0]))
    expected, start = [], 0
    for k, n in enumerate(per_task):  # the start, every 7th step of the run, the end
        end = start + n
        steps = sorted({start, end, *(s for s in range(start + 1, end + 1) if s % 7 == 0)})
        expected += [(s, k) for s in steps]
        start = end
    assert points == expected


def test_the_end_point_of_a_task_is_its_row_on_the_subset() -> None:
    """With the whole test set as the subset, a task's last point is the matrix's row."""
    state = _train("naive", "train.eval_every=100", "train.eval_subset=0")
    for k, row in enumerate(state.rows):
        end = max(s for s, trained, _, _ in state.curves if trained == k)
        last = {task: acc for s, trained, task, acc in state.curves if (s, trained) == (end, k)}
        assert [last[j] for j in range(k + 1)] == pytest.approx(row[:k + 1], abs=0)


def test_the_probe_restores_the_modes_of_the_modules() -> None:
    """A point is taken in eval mode, and each module gets its own mode back (a phase that
    trains only the head keeps the backbone in eval mode)."""
    config = build_config("split-digits", "naive", parse_set([*SETS, "train.eval_every=1"]))
    stream = _stream(config)
    state = engine.new_state(config, stream)
    ctx = engine.task_context(config, stream, state, 0)
    probe = engine.CurveProbe(ctx, state.strategy, state)
    state.model.eval()
    state.model.head.train()
    modes = [m.training for m in state.model.modules()]
    seen = []
    original = state.strategy.predict
    state.strategy.predict = lambda c, x: (seen.append(c.model.training), original(c, x))[1]
    probe.point(ctx, 0)
    assert seen and not any(seen)  # predicted in eval mode
    assert [m.training for m in state.model.modules()] == modes
    probe.point(ctx, 0)  # a second point at the same step and task is not taken
    assert len(probe.pending) == 1
    probe.flush()
    assert len(state.curves) == 1 and state.curves[0][:3] == [0, 0, 0]


def test_a_warm_up_phase_keeps_its_matrix_with_a_point_after_every_step() -> None:
    state = _train("lwf", "train.eval_every=1", "train.eval_subset=20",
                   "strategy.warmup_epochs=1")
    reference = _train("lwf", "strategy.warmup_epochs=1")
    assert state.rows == reference.rows
    # a point after every step, and one at the start of each of the 5 tasks
    assert len({(s, k) for s, k, _, _ in state.curves}) == state.steps_done + 5


def test_curves_csv_round_trips_every_digit(tmp_path: Path) -> None:
    rows = [[0, 0, 0, 0.1], [3, 0, 0, 2 / 3], [3, 1, 1, 1.0]]
    text = curves_csv(rows)
    assert text.splitlines()[0] == CURVES_HEADER == "step,task_trained,task_evaluated,accuracy"
    (tmp_path / CURVES).write_text(text)
    assert read_curves(tmp_path / CURVES) == rows
    (tmp_path / "bad.csv").write_text(CURVES_HEADER + "\n1,0,0,1.5\n")
    with pytest.raises(UserError, match=r"bad.csv, line 2: `1,0,0,1.5`"):
        read_curves(tmp_path / "bad.csv")
    (tmp_path / "other.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="is not a curves.csv"):
        read_curves(tmp_path / "other.csv")


@pytest.mark.parametrize(("key", "value"), [("train.eval_every", -1), ("train.eval_subset", -5)])
def test_a_negative_setting_is_refused_by_name(key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"`{key}` = {value} is out of range; it must be >= 0"):
        build_config("split-digits", "naive", parse_set([f"{key}={value}"]))


def test_a_run_writes_curves_and_their_metrics_and_resume_keeps_them_exact(tmp_path: Path) -> None:
    config = build_config("split-digits", "lwf",
                          parse_set([*SETS, "train.eval_every=3", "train.eval_subset=40"]))
    whole = _execute(config, tmp_path / "whole")
    written = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert "curves" not in written  # curves.csv holds them
    curves = read_curves(tmp_path / "whole" / CURVES)
    assert curves == whole["curves"] and len(curves) > 0
    assert set(written["continual"]) >= {"min_acc", "wc_acc", "wf_10", "wf_100", "wp_10",
                                          "wp_100", "gap_depth", "gap_length", "gaps"}
    assert written["timing"]["curve_seconds"] > 0
    assert load_result(tmp_path / "whole")["curves"] == curves

    out = tmp_path / "resumed"
    interrupted = _execute(config, out, stop=lambda: (out / runs.CHECKPOINT).is_file())
    assert interrupted["status"] == "interrupted" and interrupted["tasks_finished"] == 1
    first = read_curves(out / CURVES)  # the finished task's curves, written with its checkpoint
    assert first == [row for row in curves if row[1] == 0]
    resumed = _execute(config, out, resume=True)
    assert resumed["status"] == "finished" and resumed["timing"]["resumed_from_task"] == 1
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert read_curves(out / CURVES) == curves
    assert json.loads((out / "result.json").read_text())["continual"] == written["continual"]


def test_without_eval_every_a_run_writes_no_curves(tmp_path: Path) -> None:
    config = build_config("split-digits", "naive", parse_set(SETS))
    result = _execute(config, tmp_path / "run")
    assert "continual" not in result and "curves" not in result
    assert "curve_seconds" not in result["timing"]
    assert not (tmp_path / "run" / CURVES).exists()


def test_the_subsets_are_drawn_from_their_own_generator() -> None:
    """Two runs with different subset sizes share every matrix: the run's generator is
    untouched by the subsets' draw."""
    a = _train("er", "train.eval_every=5", "train.eval_subset=10")
    b = _train("er", "train.eval_every=5", "train.eval_subset=30")
    assert a.rows == b.rows
    assert a.curves != b.curves
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


def test_an_external_strategy_refuses_eval_every_by_name() -> None:
    with pytest.raises(ConfigError, match=r"`train.eval_every` = 5 needs lifelong-kd's own "
                                          r"training loop, and `avalanche:Naive` trains"):
        build_config("split-digits", "avalanche:Naive", parse_set(["train.eval_every=5"]))
    build_config("split-digits", "avalanche:Naive", parse_set(["train.eval_every=0"]))
