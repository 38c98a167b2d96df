"""Metric functions against small matrices computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lifelong_kd import metrics as M

# R[i][j]: accuracy on task j after training task i.
R3 = [
    [0.5, 0.1, 0.2],
    [0.9, 0.8, 0.1],
    [0.6, 0.7, 0.9],
]
B3 = [0.1, 0.2, 0.3]

# Hand computations for R3 (T = 3):
#   average_accuracy              (0.6 + 0.7 + 0.9) / 3                       = 0.7333...
#   average_incremental_accuracy  (0.5 + (0.9+0.8)/2 + (0.6+0.7+0.9)/3) / 3  = (0.5+0.85+0.7333)/3
#   learning_accuracy             (0.5 + 0.8 + 0.9) / 3                       = 0.7333...
#   bwt                           ((0.6-0.5) + (0.7-0.8)) / 2                 = 0
#   forgetting (Chaudhry)         task 0: max(0.5, 0.9) - 0.6 = 0.3; task 1: 0.8 - 0.7 = 0.1 -> 0.2
#   forgetting_after_learning     ((0.5-0.6) + (0.8-0.7)) / 2                 = 0
#   fwt                           ((0.1-0.2) + (0.1-0.3)) / 2                 = -0.15
EXPECTED_R3 = {
    "average_accuracy": 2.2 / 3,
    "average_incremental_accuracy": (0.5 + 0.85 + 2.2 / 3) / 3,
    "learning_accuracy": 2.2 / 3,
    "bwt": 0.0,
    "forgetting": 0.2,
    "forgetting_after_learning": 0.0,
    "fwt": -0.15,
}

# A matrix with plain forgetting: every task drops after it is learnt and never recovers.
R2 = [[1.0, 0.3], [0.4, 0.9]]
B2 = [0.5, 0.5]
EXPECTED_R2 = {
    "average_accuracy": 0.65,
    "average_incremental_accuracy": (1.0 + 0.65) / 2,
    "learning_accuracy": 0.95,
    "bwt": -0.6,
    "forgetting": 0.6,
    "forgetting_after_learning": 0.6,
    "fwt": 0.3 - 0.5,
}


@pytest.mark.parametrize(("matrix", "initial", "expected"),
                         [(R3, B3, EXPECTED_R3), (R2, B2, EXPECTED_R2)])
def test_every_metric_on_hand_computed_matrices(
    matrix: list[list[float]], initial: list[float], expected: dict[str, float]
) -> None:
    got = M.all_metrics(matrix, initial)
    assert set(got) == set(M.METRICS)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
        assert M.METRICS[name](np.asarray(matrix), initial) == pytest.approx(value, abs=1e-12)


def test_forgetting_and_forgetting_after_learning_differ() -> None:
    # Task 0 peaks after task 1 (0.9), above its just-learnt 0.5: Chaudhry's forgetting
    # counts the drop from the peak, Avalanche's the change from just after learning.
    assert M.forgetting(R3) == pytest.approx(0.2)
    assert M.forgetting_after_learning(R3) == pytest.approx(0.0)
    assert M.per_task_forgetting(R3) == pytest.approx([0.3, 0.1])
    assert M.forgetting_after_learning(R3) == pytest.approx(-M.bwt(R3))


def test_per_task_forgetting_is_the_vector_behind_forgetting() -> None:
    r = [[0.9, 0.0, 0.0, 0.0],
         [0.7, 0.8, 0.0, 0.0],
         [0.95, 0.6, 0.7, 0.0],
         [0.5, 0.7, 0.75, 1.0]]
    # task 0: max(0.9, 0.7, 0.95) - 0.5 = 0.45; task 1: max(0.8, 0.6) - 0.7 = 0.1;
    # task 2: 0.7 - 0.75 = -0.05 (it improved)
    assert M.per_task_forgetting(r) == pytest.approx([0.45, 0.1, -0.05])
    assert M.forgetting(r) == pytest.approx(0.5 / 3)


def test_one_task_gives_nan_where_undefined() -> None:
    r, b = [[0.8]], [0.1]
    got = M.all_metrics(r, b)
    for name in ("bwt", "forgetting", "forgetting_after_learning", "fwt"):
        assert math.isnan(got[name]), name
    assert got["average_accuracy"] == pytest.approx(0.8)
    assert got["average_incremental_accuracy"] == pytest.approx(0.8)
    assert got["learning_accuracy"] == pytest.approx(0.8)
    assert M.per_task_forgetting(r) == []
    assert M.intransigence(r, [[0.9]]) == pytest.approx(0.1)


def test_intransigence_uses_the_joint_diagonal() -> None:
    joint = [[0.6, 0.0, 0.0],
             [0.9, 0.9, 0.0],
             [0.9, 0.85, 0.95]]
    # ((0.6 - 0.5) + (0.9 - 0.8) + (0.95 - 0.9)) / 3 = 0.25 / 3
    assert M.intransigence(R3, joint) == pytest.approx(0.25 / 3)
    assert M.intransigence(joint, joint) == 0.0
    with pytest.raises(ValueError, match="differs"):
        M.intransigence(R3, R2)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="square"):
        M.average_accuracy([[0.1, 0.2]])
    with pytest.raises(ValueError, match="square"):
        M.bwt([])
    with pytest.raises(ValueError, match="length"):
        M.fwt(R3, [0.1, 0.2])


def test_every_reported_metric_has_a_definition_and_a_direction() -> None:
    assert set(M.REPORT_METRICS) == set(M.METRICS) | {"intransigence"}
    assert set(M.DEFINITIONS) == set(M.REPORT_METRICS)
    assert "intransigence" not in M.HIGHER_IS_BETTER
    assert {"forgetting", "forgetting_after_learning"}.isdisjoint(M.HIGHER_IS_BETTER)
