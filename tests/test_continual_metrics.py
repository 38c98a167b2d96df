"""Continual-evaluation metrics (De Lange et al. 2023) on hand-made curves, and their table in
the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lifelong_kd import aggregate, report
from lifelong_kd import metrics as M

from .test_report import LWF, NAIVE, fake_result

T975_2 = 4.302652729911275  # t_{0.975, 2}: the 95% interval of a mean over 3 seeds


def curves_of(points: list[tuple[int, int, list[float]]]) -> list[list[float]]:
    """Rows [step, trained, evaluated, accuracy] of evaluations (step, trained, accuracy of
    tasks 0, 1, ...), as a run records them."""
    return [[step, trained, j, a] for step, trained, accs in points for j, a in enumerate(accs)]


# Three tasks, an evaluation every 2 steps; task 0 trains for 4 steps, tasks 1 and 2 for 4.
# (step, task trained, accuracies of tasks 0..trained)
THREE = curves_of([
    (0, 0, [0.1]), (2, 0, [0.6]), (4, 0, [0.9]),                         # task 0
    (4, 1, [0.85, 0.2]), (6, 1, [0.4, 0.7]), (8, 1, [0.6, 0.9]),         # task 1
    (8, 2, [0.6, 0.88, 0.1]), (10, 2, [0.5, 0.3, 0.6]), (12, 2, [0.45, 0.5, 0.8]),  # task 2
])
# Each task's accuracies in time order:
#   task 0: 0.1 0.6 0.9 | 0.85 0.4 0.6 | 0.6 0.5 0.45     (9 evaluations)
#   task 1:               0.2  0.7 0.9 | 0.88 0.3 0.5     (6)
#   task 2:                              0.1  0.6 0.8     (3)
# min-ACC: task 0 after its training (trained > 0): min(0.85 0.4 0.6 0.6 0.5 0.45) = 0.4;
#          task 1 (trained > 1): min(0.88 0.3 0.5) = 0.3               -> (0.4 + 0.3) / 2 = 0.35
# WC-ACC:  k = 3, current = task 2 at the last point = 0.8 -> 0.8 / 3 + (2/3) 0.35 = 1.5 / 3 = 0.5
# WF^10 (every pair within 10 evaluations, i.e. all of them here):
#          task 0: 0.9 -> 0.4 = 0.5; task 1: 0.9 -> 0.3 = 0.6; task 2 only rises: 0 -> 1.1 / 3
# WF^2 (adjacent evaluations): task 0: 0.85 -> 0.4 = 0.45; task 1: 0.88 -> 0.3 = 0.58;
#          task 2: 0                                                 -> 1.03 / 3
# WP^10:   task 0: 0.1 -> 0.9 = 0.8; task 1: 0.2 -> 0.9 = 0.7; task 2: 0.1 -> 0.8 = 0.7 -> 2.2 / 3
# WP^2:    task 0: 0.1 -> 0.6 = 0.5; task 1: 0.2 -> 0.7 = 0.5; task 2: 0.1 -> 0.6 = 0.5 -> 0.5
# Gaps:    switch to task 1 at step 4: task 0 from 0.85 down to 0.4 at step 6
#            -> depth 0.45, length 2
#          switch to task 2 at step 8: task 0 from 0.6 to 0.45 at step 12 (0.15, 4 steps),
#            task 1 from 0.88 to 0.3 at step 10 (0.58, 2 steps) -> depth 0.365, length 3
#          gap_depth = (0.45 + 0.365) / 2 = 0.4075, gap_length = (2 + 3) / 2 = 2.5
EXPECTED_THREE = {
    "min_acc": 0.35, "wc_acc": 0.5, "wf_10": 1.1 / 3, "wf_100": 1.1 / 3, "wp_10": 2.2 / 3,
    "wp_100": 2.2 / 3, "gap_depth": 0.4075, "gap_length": 2.5,
}
GAPS_THREE = [{"task": 1, "step": 4, "depth": 0.45, "length": 2.0},
              {"task": 2, "step": 8, "depth": 0.365, "length": 3.0}]


def assert_gaps(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(g["task"], g["step"]) for g in got] == [(g["task"], g["step"]) for g in expected]
    for g, e in zip(got, expected, strict=True):
        assert (g["depth"], g["length"]) == pytest.approx((e["depth"], e["length"]), abs=1e-12)


def test_each_metric_on_three_hand_made_tasks() -> None:
    assert M.min_acc(THREE) == pytest.approx(0.35, abs=1e-12)
    assert M.wc_acc(THREE) == pytest.approx(0.5, abs=1e-12)
    assert M.windowed_forgetting(THREE, 10) == pytest.approx(1.1 / 3, abs=1e-12)
    assert M.windowed_forgetting(THREE, 2) == pytest.approx(1.03 / 3, abs=1e-12)
    assert M.windowed_plasticity(THREE, 10) == pytest.approx(2.2 / 3, abs=1e-12)
    assert M.windowed_plasticity(THREE, 2) == pytest.approx(0.5, abs=1e-12)
    assert_gaps(M.stability_gaps(THREE), GAPS_THREE)


def test_continual_metrics_holds_every_key_of_the_contract() -> None:
    got = M.continual_metrics(THREE)
    assert set(got) == {*M.CONTINUAL_METRICS, "gaps"}
    for key, value in EXPECTED_THREE.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert_gaps(got["gaps"], GAPS_THREE)


def test_the_window_limits_how_far_apart_a_drop_is_measured() -> None:
    # One task, 15 evaluations falling by 0.05 each: 1.0, 0.95, ..., 0.30.
    falling = curves_of([(i, 0, [1.0 - 0.05 * i]) for i in range(15)])
    # WF^2: one step apart, 0.05; WF^3: two, 0.10; WF^10: nine, 0.45; WF^100: all 14, 0.70
    for w, drop in ((2, 0.05), (3, 0.10), (10, 0.45), (100, 0.70)):
        assert M.windowed_forgetting(falling, w) == pytest.approx(drop, abs=1e-12), w
    got = M.continual_metrics(falling)
    # never a rise: plasticity is 0 (defined: 15 evaluations), not None
    assert got["wp_10"] == 0.0 and got["wp_100"] == 0.0
    # one task: no earlier task, so no min-ACC and no gap; WC-ACC is the current accuracy
    assert got["min_acc"] is None
    assert got["wc_acc"] == pytest.approx(0.30, abs=1e-12)
    assert got["gaps"] == [] and got["gap_depth"] is None and got["gap_length"] is None


def test_undefined_values_are_none_never_zero() -> None:
    empty = M.continual_metrics([])
    assert empty == {**dict.fromkeys(M.CONTINUAL_METRICS), "gaps": []}
    # a single evaluation: no pair of evaluations for the windows, no earlier task
    one = M.continual_metrics([[0, 0, 0, 0.1]])
    assert one["wc_acc"] == 0.1
    assert {k: one[k] for k in M.CONTINUAL_METRICS if k != "wc_acc"} == dict.fromkeys(
        k for k in M.CONTINUAL_METRICS if k != "wc_acc")
    # a window of one evaluation holds no pair; none of no evaluations is an error
    assert M.windowed_forgetting(THREE, 1) is None and M.windowed_plasticity(THREE, 1) is None
    with pytest.raises(ValueError, match="at least 1"):
        M.windowed_forgetting(THREE, 0)
    # the last evaluation does not include the task being trained: no current accuracy
    assert M.wc_acc([[0, 0, 0, 0.5], [0, 1, 0, 0.4]]) is None
    with pytest.raises(ValueError, match="step, trained, evaluated, accuracy"):
        M.min_acc([[0, 0, 0.5]])


def test_the_start_and_end_point_of_a_task_without_steps_are_two_evaluations() -> None:
    # Task 1 takes no optimiser step: its start and end points share step 2 and trained 1.
    curves = curves_of([(0, 0, [0.1]), (2, 0, [0.9]), (2, 1, [0.9, 0.1]), (2, 1, [0.9, 0.1])])
    # task 0: 0.1 0.9 0.9 0.9 -> WP 0.8, WF 0; task 1: 0.1 0.1 (two evaluations) -> WP 0, WF 0
    assert M.windowed_plasticity(curves, 10) == pytest.approx(0.4, abs=1e-12)  # (0.8 + 0) / 2
    assert M.windowed_forgetting(curves, 10) == 0.0
    # min-ACC: task 0 after its training: 0.9; WC-ACC = 0.1 / 2 + 0.9 / 2 = 0.5
    assert M.min_acc(curves) == pytest.approx(0.9)
    assert M.wc_acc(curves) == pytest.approx(0.5)
    # no drop: the gap is there, 0 deep and 0 steps long (defined, not None)
    assert M.stability_gaps(curves) == [{"task": 1, "step": 2, "depth": 0.0, "length": 0.0}]


def test_a_gap_measures_from_the_start_point_not_from_the_end_of_the_previous_task() -> None:
    # Between the end of task 0 (0.9) and the start of task 1 (0.7) the strategy's
    # after_task / before_task changed the model; training task 1 then drops task 0 to 0.5
    # at step 3 (3 - 1 = 2 steps after the switch at step 1) and it recovers to 0.8.
    curves = curves_of([(0, 0, [0.2]), (1, 0, [0.9]), (1, 1, [0.7, 0.0]), (2, 1, [0.6, 0.3]),
                        (3, 1, [0.5, 0.5]), (4, 1, [0.8, 0.9])])
    assert_gaps(M.stability_gaps(curves), [{"task": 1, "step": 1, "depth": 0.2, "length": 2.0}])
    assert M.min_acc(curves) == pytest.approx(0.5)  # min(0.7, 0.6, 0.5, 0.8)


# ----------------------------------------------------------------------------- the report

# Hand-made continual metrics of 3 seeds of naive and lwf: (min_acc, wc_acc, wf_10, wf_100,
# wp_10, wp_100, gap_depth, gap_length); lwf's seed 2 has no gap depth (None).
CONTINUAL = {
    "naive": {0: (0.30, 0.40, 0.80, 0.85, 0.90, 0.95, 0.70, 10.0),
              1: (0.40, 0.45, 0.70, 0.75, 0.90, 0.95, 0.60, 12.0),
              2: (0.50, 0.50, 0.60, 0.65, 0.90, 0.95, 0.50, 14.0)},
    "lwf": {0: (0.50, 0.70, 0.30, 0.35, 0.80, 0.85, 0.20, 4.0),
            1: (0.60, 0.75, 0.20, 0.25, 0.80, 0.85, 0.30, 6.0),
            2: (0.70, 0.80, 0.10, 0.15, 0.80, 0.85, None, 8.0)},
}


def continual_runs() -> list[dict[str, Any]]:
    runs = []
    for strategy, matrices in (("naive", NAIVE), ("lwf", LWF)):
        for seed, matrix in matrices.items():
            result = fake_result(strategy, seed, matrix)
            result["config"]["train"].update(eval_every=5, eval_subset=1000)
            result["continual"] = {**dict(zip(M.CONTINUAL_METRICS,
                                              CONTINUAL[strategy][seed], strict=True)),
                                   "gaps": []}
            runs.append(result)
    return runs


def test_report_has_a_continual_table_with_means_and_intervals(tmp_path: Path) -> None:
    report.write_comparison(continual_runs(), tmp_path, formats=())
    summary = pd.read_csv(tmp_path / "summary.csv")
    mine = summary[summary.matrix == "continual"]
    assert set(mine.metric) == set(M.CONTINUAL_METRICS)
    row = mine[(mine.strategy == "naive") & (mine.metric == "min_acc")].iloc[0]
    # naive min-ACC: 0.3, 0.4, 0.5 -> mean 0.4, s = 0.1, half-width t_{0.975,2} 0.1 / sqrt 3
    half = T975_2 * 0.1 / math.sqrt(3)  # 0.248
    assert (row["mean"], row["ci_low"], row["ci_high"], row["n"]) == pytest.approx(
        (0.4, 0.4 - half, 0.4 + half, 3))
    # naive WP^100: 0.95 three times: no spread, the interval is the point
    wp = mine[(mine.strategy == "naive") & (mine.metric == "wp_100")].iloc[0]
    assert (wp["mean"], wp["ci_low"], wp["ci_high"]) == pytest.approx((0.95, 0.95, 0.95))
    # naive WF^100: 0.85, 0.75, 0.65: mean 0.75, s = 0.1; 0.75 + 0.248 = 0.998 < 1: unclipped
    wf = mine[(mine.strategy == "naive") & (mine.metric == "wf_100")].iloc[0]
    assert (wf["ci_low"], wf["ci_high"]) == pytest.approx((0.75 - half, 0.75 + half))
    # lwf gap depth: 0.2, 0.3 (seed 2 undefined): mean 0.25 over n = 2
    depth = mine[(mine.strategy == "lwf") & (mine.metric == "gap_depth")].iloc[0]
    assert (depth["mean"], depth["n"]) == (pytest.approx(0.25), 2)
    # lwf gap length: 4, 6, 8 steps: mean 6, s = 2, unclipped (not a percentage)
    length = mine[(mine.strategy == "lwf") & (mine.metric == "gap_length")].iloc[0]
    assert (length["ci_low"], length["ci_high"]) == pytest.approx(
        (6 - T975_2 * 2 / math.sqrt(3), 6 + T975_2 * 2 / math.sqrt(3)))
    # lwf - naive, seed by seed: min-ACC differs by 0.2 at every seed
    paired = pd.read_csv(tmp_path / "paired.csv")
    d = paired[(paired.matrix == "continual") & (paired.metric == "min_acc")].iloc[0]
    assert d["strategy"] == "lwf" and d["difference"] == pytest.approx(0.2) and d["n"] == 3

    text = (tmp_path / "report.md").read_text()
    assert "## Continual evaluation" in text and "De Lange, van de Ven & Tuytelaars" in text
    assert "every 5 optimiser steps" in text and "1000 test examples" in text
    lines = {line.split("|")[1].strip(): line for line in text.split("## Continual")[1]
             .split("\n## ")[0].splitlines() if line.startswith("| ")}
    assert lines["strategy"].startswith(
        "| strategy | runs | min-ACC ↑ | WC-ACC ↑ | WF10 ↓ | WF100 ↓ | WP10 ↑ | WP100 ↑ | "
        "gap depth ↓ | gap length (steps) |")
    h = 100 * half
    naive = [c.strip() for c in lines["naive"].split("|")[1:-1]]
    assert naive[:3] == ["naive", "3", f"40.00 ± {h:.2f}"]
    assert naive[7] == "95.00 ± 0.00"  # no spread
    hs = T975_2 * 2 / math.sqrt(3)  # gap length 10, 12, 14 steps: s = 2
    assert naive[9] == f"12.0 ± {hs:.1f}"
    lwf = [c.strip() for c in lines["lwf"].split("|")[1:-1]]
    # gap depth over 2 seeds: mean 0.25, s = 0.0707, t_{0.975,1} = 12.706: [0, 88.5]: clipped
    t1 = 12.706204736174698
    low, high = 0.25 - t1 * np.std([0.2, 0.3], ddof=1) / math.sqrt(2), 0.25 + t1 * np.std(
        [0.2, 0.3], ddof=1) / math.sqrt(2)
    assert low < 0
    assert lwf[8] == f"25.00 [0.00, {100 * high:.2f}] (n=2)"
    assert lwf[9] == f"6.0 ± {hs:.1f}"


def test_no_continual_section_without_curves(tmp_path: Path) -> None:
    runs = continual_runs()
    for r in runs:
        del r["continual"]
    report.write_comparison(runs, tmp_path, formats=())
    assert "Continual evaluation" not in (tmp_path / "report.md").read_text()
    assert "continual" not in set(pd.read_csv(tmp_path / "summary.csv").matrix)


def test_a_result_with_curves_only_gets_its_metrics_computed() -> None:
    result = fake_result("naive", 0, NAIVE[0])
    result["curves"] = THREE
    got = aggregate.continual_values(result)
    assert got == pytest.approx(EXPECTED_THREE, abs=1e-12)
    # recorded values win over the curves; null is nan
    result["continual"] = {**EXPECTED_THREE, "min_acc": None, "gaps": []}
    got = aggregate.continual_values(result)
    assert math.isnan(got["min_acc"]) and got["wc_acc"] == 0.5
    # joint trained only at the last task: its curves mean nothing before it
    joint = fake_result("joint", 0, NAIVE[0], mode="final")
    joint["curves"] = THREE
    assert all(math.isnan(v) for v in aggregate.continual_values(joint).values())
