"""Temperature schedules and Annealing-KD against hand-computed values (lifelong_kd/schedules.py)."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong_kd.schedules import (
    DESCRIPTIONS,
    SCHEDULES,
    SPANS,
    AnnealingStep,
    annealing,
    annealing_loss,
    progress,
    stream_progress,
    temperature,
)

R2 = math.sqrt(2.0)

# start 4, end 1 over 5 steps: p = 0, 1/4, 1/2, 3/4, 1.
# cosine at p = 1/4: 1 + 3 (1 + cos(pi/4)) / 2 = 2.5 + 0.75 sqrt(2); at p = 3/4: 2.5 - 0.75 sqrt(2).
# exponential: 4 (1/4)^p = 4, 2 sqrt(2), 2, sqrt(2), 1.
EXPECTED = {
    "constant": [4.0, 4.0, 4.0, 4.0, 4.0],
    "linear": [4.0, 3.25, 2.5, 1.75, 1.0],
    "cosine": [4.0, 2.5 + 0.75 * R2, 2.5, 2.5 - 0.75 * R2, 1.0],
    "exponential": [4.0, 2 * R2, 2.0, R2, 1.0],
}


def test_the_registries_name_every_schedule_once():
    assert set(DESCRIPTIONS) == set(SCHEDULES) and len(SCHEDULES) == 5
    assert SPANS == ("task", "stream")
    assert all(DESCRIPTIONS[name] for name in SCHEDULES)


def test_progress_runs_from_zero_at_the_first_step_to_one_at_the_last():
    assert [progress(step, 5) for step in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert progress(3, 7) == 0.5
    assert progress(0, 1) == 0.0 and progress(0, 0) == 0.0


def test_stream_progress_counts_every_task_as_steps_steps():
    # 3 tasks of 4 steps: 12 steps in all, p = (4 task + step) / 11.
    assert stream_progress(0, 3, 0, 4) == 0.0
    assert stream_progress(0, 3, 3, 4) == pytest.approx(3 / 11)
    assert stream_progress(1, 3, 0, 4) == pytest.approx(4 / 11)
    assert stream_progress(1, 3, 2, 4) == pytest.approx(6 / 11)
    assert stream_progress(2, 3, 3, 4) == 1.0
    assert stream_progress(0, 1, 0, 1) == 0.0


@pytest.mark.parametrize("schedule", sorted(EXPECTED))
def test_every_schedule_matches_its_formula_at_every_step(schedule):
    got = [temperature(schedule, 4.0, 1.0, progress(step, 5)) for step in range(5)]
    assert got == pytest.approx(EXPECTED[schedule], abs=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exponential"])
def test_every_shape_starts_at_start_and_ends_at_end_either_way(schedule):
    for start, end in [(1.0, 4.0), (2.0, 2.0), (10.0, 0.5)]:
        assert temperature(schedule, start, end, 0.0) == pytest.approx(start)
        assert temperature(schedule, start, end, 1.0) == pytest.approx(end)
    # rising from 1 to 4: linear 2.5, exponential 2 in the middle; cosine 4 - 3 (1 + cos(pi/4)) / 2 at p = 1/4
    assert temperature("linear", 1.0, 4.0, 0.5) == pytest.approx(2.5)
    assert temperature("exponential", 1.0, 4.0, 0.5) == pytest.approx(2.0)
    assert temperature("cosine", 1.0, 4.0, 0.25) == pytest.approx(2.5 - 0.75 * R2)


def test_annealing_steps_tau_max_down_to_one_then_plain_cross_entropy():
    # tau_max 4, 16 steps, share 1/2: n1 = 8, stage = step * 4 // 8 = step // 2.
    got = [annealing(4, step, 16) for step in range(16)]
    # T = 4 - stage, phi = 1 - (T - 1) / 4.
    phase1 = [(4.0, 0.25), (3.0, 0.5), (2.0, 0.75), (1.0, 1.0)]
    assert got[:8] == [AnnealingStep(1, T, phi) for T, phi in phase1 for _ in range(2)]
    assert got[8:] == [AnnealingStep(2, 1.0, 1.0)] * 8


def test_annealing_phase_one_length():
    # share 1: every step in phase 1 (tau_max 2, 4 steps: T = 2, 2, 1, 1).
    assert [annealing(2, s, 4, share=1.0) for s in range(4)] == [
        AnnealingStep(1, 2.0, 0.5), AnnealingStep(1, 2.0, 0.5),
        AnnealingStep(1, 1.0, 1.0), AnnealingStep(1, 1.0, 1.0)]
    # 5 steps, share 1/2: n1 = 2.5 rounded half up = 3, one step per stage for tau_max 3.
    assert [annealing(3, s, 5).temperature for s in range(5)] == [3.0, 2.0, 1.0, 1.0, 1.0]
    assert [annealing(3, s, 5).phase for s in range(5)] == [1, 1, 1, 2, 2]
    # a tiny share keeps one step of phase 1 (n1 = max(1, round(0.1)) = 1), at T = tau_max.
    assert annealing(4, 0, 10, share=0.01) == AnnealingStep(1, 4.0, 0.25)
    assert annealing(4, 1, 10, share=0.01).phase == 2
    # tau_max 1: phase 1 is plain logit matching, phi = 1.
    assert annealing(1, 0, 2) == AnnealingStep(1, 1.0, 1.0)


def test_annealing_loss_by_hand():
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 2.0, 2.0], [4.0, 0.0, -2.0]], requires_grad=True)
    # z_s - 0.5 z_t = [[0, 1, 2], [-2, -1, 3]]: squared sums 5 and 14, mean 9.5.
    loss = annealing_loss(student, teacher, 0.5)
    assert loss.item() == pytest.approx(9.5)
    loss.backward()
    # d/dz_s = 2 (z_s - phi z_t) / B = the difference itself (B = 2); nothing reaches the teacher.
    assert student.grad is not None and teacher.grad is None
    assert torch.equal(student.grad, torch.tensor([[0.0, 1.0, 2.0], [-2.0, -1.0, 3.0]]))
    assert annealing_loss(student, teacher, 1.0).item() == pytest.approx((1 + 0 + 1 + 16 + 1 + 16) / 2)


@pytest.mark.parametrize("call, message", [
    (lambda: temperature("step", 4, 1, 0.5), "unknown schedule 'step'; valid: constant, linear"),
    (lambda: temperature("annealing", 4, 1, 0.5), "use annealing()"),
    (lambda: temperature("exponential", 0.0, 1, 0.5), "start > 0 and end > 0, got 0.0 and 1"),
    (lambda: temperature("exponential", 4, -1.0, 0.5), "got 4 and -1.0"),
    (lambda: temperature("linear", 4, 1, 1.5), "p = 1.5 is outside"),
    (lambda: progress(5, 5), "step 5 is outside 0..4"),
    (lambda: stream_progress(3, 3, 0, 4), "task 3 is outside 0..2"),
    (lambda: stream_progress(0, 3, 4, 4), "step 4 is outside 0..3"),
    (lambda: annealing(0, 0, 16), "tau_max must be an integer >= 1, got 0"),
    (lambda: annealing(2.0, 0, 16), "got 2.0"),
    (lambda: annealing(True, 0, 16), "got True"),
    (lambda: annealing(4, 0, 16, share=0.0), "share must be in (0, 1], got 0.0"),
    (lambda: annealing(4, 0, 16, share=1.5), "got 1.5"),
    (lambda: annealing(4, 0, 0), "steps must be >= 1, got 0"),
    (lambda: annealing(4, 16, 16), "step 16 is outside 0..15"),
    (lambda: annealing(4, -1, 16), "step -1 is outside"),
    (lambda: annealing_loss(torch.zeros(2, 3), torch.zeros(2, 4), 0.5), "got (2, 3) and (2, 4)"),
])
def test_bad_inputs_are_refused_naming_the_bad_value(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
