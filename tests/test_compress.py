"""Distillation as compression (issue 15, ``strategies/compress.py``): ``compress`` and ``kd``
reduce to ``naive`` and ``joint`` without their distillation terms; result.json's teacher block
and both models' costs against hand counts; a teacher of its own width; bit-exact resume with a
teacher and a memory; the projector of a feature loss between widths; temperature schedules
(``distillation_temperature``) at their first, middle and last steps, in LwF's and compress's
losses computed by hand; Annealing-KD's two phases by hand; the configuration checks of the
teacher's settings; suites with member tables and reports; run identities left as they were
before issue 15.
"""

from __future__ import annotations

import copy
import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong_kd import runs
from lifelong_kd.config import RunConfig
from lifelong_kd.data.streams import build_stream
from lifelong_kd.engine import Batch, TaskContext, new_state, task_context, train_stream
from lifelong_kd.errors import ConfigError
from lifelong_kd.models import build_model
from lifelong_kd.presets import SuiteMember, build_config, suite_members, suite_reports
from lifelong_kd.results import identity_settings, run_identity
from lifelong_kd.schedules import temperature
from lifelong_kd.strategies import Teacher
from lifelong_kd.strategies.base import distillation_temperature
from lifelong_kd.strategies.compress import Compress, teacher_run_config, teacher_seed
from lifelong_kd.strategies.options import DistillationOptions

from .conftest import ROOT
from .conftest import toy_dataset as _toy

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ helpers

#: Split-Digits (sklearn's 8x8 digits, 64 inputs, no files) cut small: 3 tasks of 2 digits,
#: a few steps per task.
TINY: dict[str, Any] = {"data.train_subset": 300, "data.test_subset": 100, "stream.n_tasks": 3,
                        "stream.classes_per_task": 2, "model.hidden": [20], "train.epochs": 1,
                        "train.batch_size": 32}


def _execute(config: RunConfig, out: Path, resume: bool = False, stop=None) -> dict:
    """``lifelong-kd run`` (with ``--resume``): what the command calls, without the plots."""
    return runs.execute(runs.RunSpec(config, out), runs.DataProvider(out.parent, progress=False),
                        runs.RunOptions(progress=False, resume=resume, plots=False), stop=stop)


def run(tmp_path: Path, folder: str, strategy: str, **sets: Any) -> dict:
    """result.json of a tiny Split-Digits run of ``strategy`` (``sets`` over :data:`TINY`)."""
    return _execute(build_config("split-digits", strategy, {**TINY, **sets}), tmp_path / folder)


def mlp_parameters(n_in: int, hidden: list[int], n_out: int) -> int:
    """sum over the layers of i * o + o (weights and biases), by hand."""
    widths = [n_in, *hidden, n_out]
    return sum(i * o + o for i, o in zip(widths, widths[1:], strict=False))


def mlp_flops(n_in: int, hidden: list[int], n_out: int) -> int:
    """2 * sum over the layers of i * o (one multiply-add = 2 FLOPs, biases not counted)."""
    widths = [n_in, *hidden, n_out]
    return 2 * sum(i * o for i, o in zip(widths, widths[1:], strict=False))


def toy_dataset():
    """10 classes of random 4x4 images (3 tasks of 2 classes use 6 of them)."""
    return _toy(10, 6, 4)


def setup(index: int, scenario: str = "class-il", name: str = "compress", built: bool = True,
          **sets: Any) -> tuple[Compress, TaskContext]:
    """(strategy, ctx) of ``name`` for task ``index`` of a 3-task toy stream (6 outputs),
    student MLP 8, teacher MLP 12; the teacher built by ``setup()`` when ``built``."""
    overrides = {"stream.scenario": scenario, "stream.n_tasks": 3, "stream.classes_per_task": 2,
                 "model.hidden": [8], "teacher.hidden": [12], **sets}
    config = build_config("split-digits", name, overrides)
    stream = build_stream(config, toy_dataset())
    state = new_state(config, stream)
    ctx = task_context(config, stream, state, index)
    ctx.current_train_data = state.strategy.train_data(ctx)
    strategy = state.strategy
    assert isinstance(strategy, Compress)
    if built:
        strategy.setup(ctx)
    return strategy, ctx


def perturbed_copy(ctx: TaskContext, scale: float = 0.5) -> Teacher:
    """A frozen copy of the student with seeded noise on its weights (a previous self that
    differs from the student)."""
    gen = torch.Generator().manual_seed(1)
    model = copy.deepcopy(ctx.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return Teacher(model, ctx.config.model, ctx.stream.input_shape, ctx.stream.n_outputs)


def ready(strategy: Compress, ctx: TaskContext, previous: bool = False) -> None:
    """before_task and the end of the teacher's training (without training it), with a
    previous self when ``previous``."""
    if previous:
        strategy.previous = perturbed_copy(ctx)
    strategy.before_task(ctx)
    strategy.teacher_ready(ctx)


def batch_of(ctx: TaskContext, n: int = 6) -> Batch:
    data = ctx.current_train_data
    assert data is not None
    idx = torch.arange(n)
    raw = data.x[idx]
    return Batch(ctx.prepare(raw), data.y[idx], data.t[idx], idx, raw, ctx)


def hand_ce(logits: torch.Tensor, y: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Mean over the examples of log sum_{k active} exp(z_k) - z_y."""
    return torch.stack([torch.logsumexp(logits[i][active], 0) - logits[i, y[i]]
                        for i in range(len(y))]).mean()


def hand_kl(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """sum_k p_k (log p_k - log q_k), p = softmax(t / T), q = softmax(s / T); batch mean."""
    p = torch.exp(teacher / T) / torch.exp(teacher / T).sum(1, keepdim=True)
    q = torch.exp(student / T) / torch.exp(student / T).sum(1, keepdim=True)
    return (p * (p.log() - q.log())).sum(1).mean()


#: The outputs of the cross-entropy on task 1 of the toy stream (6 outputs, 2 per task):
#: class-il, every class seen (0..3); task-il, task 1's head (2, 3).
SEEN_AT_1 = torch.tensor([True] * 4 + [False] * 2)
HEAD_1 = torch.tensor([False] * 2 + [True] * 2 + [False] * 2)


def without_timings(costs: dict) -> dict:
    """A run's costs without what is timed (latencies, training seconds)."""
    return {k: ({kk: vv for kk, vv in v.items() if not kk.startswith("latency")}
                if isinstance(v, dict) else v)
            for k, v in costs.items() if k != "train_seconds"}


# ------------------------------------------------ reductions to naive and joint (issue 15)


@pytest.mark.parametrize("scenario", ["class-il", "task-il"])
def test_compress_without_distillation_is_naive_bit_for_bit(tmp_path, scenario):
    naive = run(tmp_path, "naive", "naive", **{"stream.scenario": scenario})
    compress = run(tmp_path, "compress", "compress", **{
        "stream.scenario": scenario, "strategy.alpha": 0.0, "strategy.beta": 0.0})
    assert compress["status"] == naive["status"] == "finished"
    assert len(naive["accuracy_matrix"]) == 3
    assert compress["accuracy_matrix"] == naive["accuracy_matrix"]
    assert compress["initial_accuracy"] == naive["initial_accuracy"]
    if scenario == "class-il":
        assert compress["accuracy_matrix_task_aware"] == naive["accuracy_matrix_task_aware"]
    # the matrix is a real one: class-il's naive forgets task 0 entirely here
    assert naive["accuracy_matrix"][0][0] > 0.5


@pytest.mark.parametrize(("scenario", "mode"), [("class-il", "incremental"), ("task-il", "final")])
def test_kd_without_distillation_is_joint_bit_for_bit(tmp_path, scenario, mode):
    sets = {"stream.scenario": scenario, "strategy.mode": mode}
    joint = run(tmp_path, "joint", "joint", **sets)
    kd = run(tmp_path, "kd", "kd", **sets, **{"strategy.alpha": 0.0})
    assert kd["accuracy_matrix"] == joint["accuracy_matrix"]
    if scenario == "class-il":
        assert kd["accuracy_matrix_task_aware"] == joint["accuracy_matrix_task_aware"]
    assert len(kd["teacher"]["accuracy_matrix"]) == 3


# -------------------------------------------------------------- result.json: teacher, costs


def test_result_json_holds_the_teacher_block_and_both_models_costs(tmp_path):
    # 5 tasks of 2 digits: 10 outputs; student MLP 64-20-10, teacher MLP 64-30-10
    sets = {"stream.n_tasks": 5, "stream.scenario": "class-il", "teacher.hidden": [30],
            "data.train_subset": 200}
    result = run(tmp_path, "compress", "compress", **sets)
    teacher = result["teacher"]
    matrix = teacher["accuracy_matrix"]
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    assert len(teacher["accuracy_matrix_task_aware"]) == 5
    assert len(teacher["initial_accuracy"]) == 5
    final = matrix[-1]
    assert teacher["metrics"]["average_accuracy"] == pytest.approx(sum(final) / 5)
    assert teacher["metrics"]["bwt"] == pytest.approx(
        sum(final[j] - matrix[j][j] for j in range(4)) / 4)
    assert teacher["per_task_forgetting"] == pytest.approx(
        [max(matrix[i][j] for i in range(j, 4)) - final[j] for j in range(4)])

    costs = result["costs"]
    student = mlp_parameters(64, [20], 10)
    assert student == 64 * 20 + 20 + 20 * 10 + 10 == 1510
    big = mlp_parameters(64, [30], 10)
    assert big == 64 * 30 + 30 + 30 * 10 + 10 == 2260
    for key, name, params, flops in (("model", "mlp", student, 2 * (64 * 20 + 20 * 10)),
                                     ("teacher", "mlp", big, 2 * (64 * 30 + 30 * 10))):
        assert costs[key]["name"] == name
        assert costs[key]["parameters"] == params
        assert costs[key]["bytes"] == 4 * params   # float32, no buffers
        assert costs[key]["flops_per_example"] == flops
        assert costs[key]["latency_batch_1"] > 0 and costs[key]["latency_batch_256"] > 0
    assert costs["memory_examples"] == costs["memory_bytes"] == 0  # a naive teacher keeps none
    assert costs["device"] == "cpu" and costs["train_seconds"] > 0

    naive = run(tmp_path, "naive", "naive", **sets)
    assert "teacher" not in naive and "teacher" not in naive["costs"]
    assert naive["costs"]["model"]["parameters"] == student
    # LwF's teacher is the previous student: the model's own cost
    lwf = run(tmp_path, "lwf", "lwf", **sets)
    assert "teacher" not in lwf
    assert lwf["costs"]["teacher"]["parameters"] == lwf["costs"]["model"]["parameters"] == student
    assert lwf["costs"]["teacher"]["flops_per_example"] == mlp_flops(64, [20], 10) == 2960


def test_a_teacher_of_its_own_width_has_its_own_matrix(tmp_path):
    same = run(tmp_path, "same", "compress", **{"stream.scenario": "class-il"})
    wide = run(tmp_path, "wide", "compress", **{"stream.scenario": "class-il",
                                                "teacher.hidden": [40]})
    assert wide["teacher"]["accuracy_matrix"] != wide["accuracy_matrix"]
    assert wide["teacher"]["accuracy_matrix"] != same["teacher"]["accuracy_matrix"]
    assert wide["costs"]["teacher"]["parameters"] == mlp_parameters(64, [40], 6) == 2846
    assert wide["config"]["teacher"]["hidden"] == [40]
    assert wide["costs"]["model"]["parameters"] == mlp_parameters(64, [20], 6) == 1426


def test_teacher_seed_is_apart_from_the_runs_seeds():
    seeds = [teacher_seed(s) for s in range(100)]
    assert seeds == [teacher_seed(s) for s in range(100)]          # deterministic
    assert len(set(seeds)) == 100 and set(seeds).isdisjoint(range(100))
    assert all(0 <= s < 2**63 for s in [*seeds, teacher_seed(2**63 - 1)])  # a valid seed


def test_the_teacher_is_built_from_its_seed_and_leaves_the_global_generator_alone():
    strategy, ctx = setup(0, **{"teacher.hidden": [8]})
    torch.manual_seed(teacher_seed(ctx.config.seed))
    expected = build_model(teacher_run_config(ctx.config).model, ctx.stream.input_shape,
                           ctx.stream.n_outputs)
    assert strategy.net is not None
    for a, b in zip(strategy.net.state_dict().values(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # setup() draws inside fork_rng: the global generator is as it was
    fresh, ctx = setup(0, built=False, **{"strategy.distill_loss": "feature_l2"})
    before = torch.get_rng_state()
    fresh.setup(ctx)
    assert fresh.projector is not None   # the projector is drawn under the teacher's seed too
    assert torch.equal(torch.get_rng_state(), before)


def test_a_teacher_of_the_students_architecture_does_not_start_as_the_student():
    # what torch's generators see of a seed: its low 32 bits (mt19937)
    assert {teacher_seed(s) % 2**32 for s in range(100)}.isdisjoint(range(100))
    strategy, ctx = setup(0, **{"teacher.hidden": [8]})
    assert strategy.net is not None
    torch.manual_seed(ctx.config.seed)
    student = build_model(ctx.config.model, ctx.stream.input_shape, ctx.stream.n_outputs)
    assert not torch.equal(strategy.net.head.weight, student.head.weight)
    assert strategy.generator is not None
    assert not torch.equal(torch.randperm(50, generator=strategy.generator),
                           torch.randperm(50, generator=torch.Generator().manual_seed(0)))


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("sets", [
    {},
    # a feature loss between widths: the projector is in the checkpoint too
    {"strategy.distill_loss": "feature_l2", "strategy.alpha": 0.1, "strategy.beta": 0.1},
], ids=["kl", "feature_l2"])
def test_interrupted_and_resumed_compress_derpp_equals_the_uninterrupted_run(tmp_path, sets):
    config = build_config("split-digits", "compress-derpp", {
        **TINY, "stream.scenario": "class-il", "teacher.hidden": [24], "memory.size": 30,
        "memory.batch_size": 8, **sets})
    whole = _execute(config, tmp_path / "whole")
    assert whole["status"] == "finished"
    assert whole["costs"]["memory_examples"] > 0

    out = tmp_path / "resumed"
    interrupted = _execute(config, out, stop=lambda: (out / runs.CHECKPOINT).is_file())
    assert interrupted["status"] == "interrupted" and interrupted["tasks_finished"] == 1
    assert len(interrupted["teacher"]["accuracy_matrix"]) == 1
    saved = torch.load(out / runs.CHECKPOINT, weights_only=True)["state"]
    assert len(saved["teacher_rows"]) == 1
    teacher_state = saved["strategy"]["teacher_strategy"]
    assert teacher_state["memory"]["seen"] > 0   # the teacher's DER++ memory is in it
    assert (saved["strategy"]["projector"] is not None) == bool(sets)
    resumed = _execute(config, out, resume=True)
    assert resumed["status"] == "finished" and resumed["timing"]["resumed_from_task"] == 1
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["accuracy_matrix_task_aware"] == whole["accuracy_matrix_task_aware"]
    assert resumed["teacher"] == whole["teacher"]
    assert without_timings(resumed["costs"]) == without_timings(whole["costs"])


# --------------------------------------------------------- a feature loss between widths


def test_feature_loss_between_widths_trains_a_projector_kept_in_the_checkpoint():
    overrides = {**TINY, "strategy.distill_loss": "feature_l2", "teacher.hidden": [12],
                 "model.hidden": [8], "data.train_subset": 120}
    config = build_config("split-digits", "compress", overrides)
    stream = build_stream(config, toy_dataset())
    state = new_state(config, stream)
    strategy = state.strategy
    assert isinstance(strategy, Compress)
    strategy.setup(task_context(config, stream, state, 0))
    projector = strategy.projector
    assert isinstance(projector, nn.Linear)
    assert (projector.in_features, projector.out_features) == (8, 12)
    before = projector.weight.detach().clone()
    ids = {id(p) for p in strategy.student_parameters(state.model)}
    assert {id(projector.weight), id(projector.bias)} <= ids
    train_stream(config, stream, state, progress=False)
    assert strategy.projector is projector
    assert not torch.equal(projector.weight, before)
    saved = strategy.state_dict()["projector"]
    assert torch.equal(saved["weight"], projector.weight) and torch.equal(saved["bias"], projector.bias)

    # the same width: no projector
    same = build_config("split-digits", "compress", {**overrides, "teacher.hidden": [8]})
    state = new_state(same, stream)
    state.strategy.setup(task_context(same, stream, state, 0))
    assert state.strategy.projector is None and state.strategy.state_dict()["projector"] is None
    # and a logits loss between widths needs none either
    logits = build_config("split-digits", "compress", {**overrides, "strategy.distill_loss": "kl"})
    state = new_state(logits, stream)
    state.strategy.setup(task_context(logits, stream, state, 0))
    assert state.strategy.projector is None


def test_feature_loss_between_widths_equals_its_formula():
    strategy, ctx = setup(1, **{"strategy.distill_loss": "feature_l2", "strategy.alpha": 0.7,
                                "strategy.beta": 0.3})
    ready(strategy, ctx, previous=True)
    batch = batch_of(ctx)
    assert strategy.projector is not None and strategy.net is not None
    with torch.no_grad():
        loss = strategy.student_loss(ctx, batch)
        f, logits = ctx.model.forward_features(batch.x)
        f_t = strategy.net.features(batch.x)
        f_p = strategy.previous.model.features(batch.x)
        w, b = strategy.projector.weight, strategy.projector.bias
        distance = ((f @ w.T + b - f_t) ** 2).sum(1).mean()
        previous = ((f - f_p) ** 2).sum(1).mean()
    ce = hand_ce(logits, batch.y, SEEN_AT_1)
    assert float(loss) == pytest.approx(float(ce + 0.7 * distance + 0.3 * previous), rel=1e-5)


# --------------------------------------------------------------- temperature schedules


#: (schedule, T at the first step, the middle one, the last one) from T0 = 4 to T1 = 1:
#: linear 4 + (1 - 4) p; cosine 1 + 3 (1 + cos(pi p)) / 2; exponential 4 (1/4)^p.
SCHEDULED = [("constant", 4.0, 4.0, 4.0), ("linear", 4.0, 2.5, 1.0),
             ("cosine", 4.0, 2.5, 1.0), ("exponential", 4.0, 2.0, 1.0),
             ("annealing", 4.0, 4.0, 4.0)]  # annealing's stepped T is the strategy's


def fake_ctx(step: int, steps: int, index: int = 0, n_tasks: int = 3) -> Any:
    return types.SimpleNamespace(step=step, steps=steps, index=index, stream=[None] * n_tasks)


@pytest.mark.parametrize(("schedule", "first", "middle", "last"), SCHEDULED)
def test_distillation_temperature_over_a_task(schedule, first, middle, last):
    config = DistillationOptions(temperature=4.0, temperature_end=1.0,
                                 temperature_schedule=schedule)
    got = [distillation_temperature(config, fake_ctx(step, 5)) for step in (0, 2, 4)]
    assert got == pytest.approx([first, middle, last], abs=1e-12)
    if schedule not in ("constant", "annealing"):
        assert got == pytest.approx([temperature(schedule, 4.0, 1.0, p) for p in (0, 0.5, 1)])
    # the same at every task: the span is the task's
    assert distillation_temperature(config, fake_ctx(4, 5, index=2)) == pytest.approx(last)
    # a step past the phase's last (never taken) stays at the end; one step: the start
    assert distillation_temperature(config, fake_ctx(9, 5)) == pytest.approx(last)
    assert distillation_temperature(config, fake_ctx(0, 1)) == 4.0


@pytest.mark.parametrize(("schedule", "first", "middle", "last"), SCHEDULED)
def test_distillation_temperature_across_the_stream(schedule, first, middle, last):
    config = DistillationOptions(temperature=4.0, temperature_end=1.0,
                                 temperature_schedule=schedule, schedule_span="stream")
    # 3 tasks of 5 steps: p = (5 index + step) / 14
    points = [(0, 0), (1, 2), (2, 4)]   # p = 0, 7/14, 14/14
    got = [distillation_temperature(config, fake_ctx(s, 5, index=i)) for i, s in points]
    assert got == pytest.approx([first, middle, last], abs=1e-12)
    # the end of the first task is only part of the way: p = 4/14
    if schedule == "linear":
        assert distillation_temperature(config, fake_ctx(4, 5, index=0)) == pytest.approx(
            4.0 - 3.0 * 4 / 14)


@pytest.mark.parametrize("step", [0, 9])
def test_lwf_distillation_follows_the_temperature_schedule(step):
    # lwf-avalanche: alpha * sum over the old heads of KL(teacher/T || student/T), no T^2
    config = build_config("split-digits", "lwf-avalanche", {
        "stream.n_tasks": 3, "stream.classes_per_task": 2, "model.hidden": [8],
        "strategy.temperature_schedule": "linear", "strategy.temperature_end": 5.0})
    stream = build_stream(config, toy_dataset())
    state = new_state(config, stream)
    ctx = task_context(config, stream, state, 2)
    ctx.current_train_data = state.strategy.train_data(ctx)
    strategy = state.strategy
    strategy.teacher = perturbed_copy(ctx)
    strategy.before_task(ctx)
    ctx.step, ctx.steps = step, 10
    batch = batch_of(ctx, 8)
    with torch.no_grad():
        features, logits = ctx.model.forward_features(batch.x)
        ours = strategy.distillation(ctx, batch, features, logits)
        t = strategy.teacher(batch.x)
    T = 2.0 if step == 0 else 5.0   # temperature at the first step, temperature_end at the last
    kd = hand_kl(logits[:, :2], t[:, :2], T) + hand_kl(logits[:, 2:4], t[:, 2:4], T)
    assert float(ours) == pytest.approx(float(kd), rel=1e-5)
    other = hand_kl(logits[:, :2], t[:, :2], 7.0 - T) + hand_kl(logits[:, 2:4], t[:, 2:4], 7.0 - T)
    assert abs(float(ours) - float(other)) > 1e-4


def loss_and_outputs(strategy, ctx, step, steps):
    """The student's loss at ``step`` of ``steps`` (teacher and previous self ready), its
    batch, and the student's, teacher's and previous student's logits on it."""
    ready(strategy, ctx, previous=True)
    ctx.step, ctx.steps = step, steps
    batch = batch_of(ctx)
    assert strategy.net is not None and strategy.previous is not None
    with torch.no_grad():
        loss = strategy.student_loss(ctx, batch)
        return (loss, batch, ctx.model(batch.x), strategy.net(batch.x),
                strategy.previous.model(batch.x))


@pytest.mark.parametrize("scenario", ["class-il", "task-il"])
def test_compress_loss_at_the_last_step_uses_temperature_end(scenario):
    strategy, ctx = setup(1, scenario, **{"strategy.temperature_schedule": "linear",
                                          "strategy.temperature": 2.0,
                                          "strategy.temperature_end": 4.0,
                                          "strategy.alpha": 0.7, "strategy.beta": 0.3})
    loss, batch, s, t, p = loss_and_outputs(strategy, ctx, 9, 10)
    T = 4.0
    if scenario == "class-il":   # one softmax over the units seen (teacher) and the old ones
        ce = hand_ce(s, batch.y, SEEN_AT_1)
        kd_t = hand_kl(s[:, :4], t[:, :4], T)
        kd_p = hand_kl(s[:, :2], p[:, :2], T)
    else:                        # one softmax per head, summed; CE over the task's own head
        ce = hand_ce(s, batch.y, HEAD_1)
        kd_t = hand_kl(s[:, :2], t[:, :2], T) + hand_kl(s[:, 2:4], t[:, 2:4], T)
        kd_p = hand_kl(s[:, :2], p[:, :2], T)
    expected = ce + 0.7 * T**2 * kd_t + 0.3 * T**2 * kd_p   # t2_scaling in the preset
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


# -------------------------------------------------------------------------- Annealing-KD


@pytest.mark.parametrize(("step", "phi"), [(0, 0.5), (3, 1.0)])
def test_annealing_phase_one_matches_phi_times_the_teachers_logits(step, phi):
    # tau_max = 2, 10 steps, share 0.5: phase 1 is steps 0..4, T = 2 on 0..2 (Phi = 1/2) and
    # T = 1 on 3..4 (Phi = 1); no cross-entropy there
    strategy, ctx = setup(1, **{"strategy.temperature_schedule": "annealing",
                                "strategy.temperature": 2.0, "strategy.alpha": 0.7,
                                "strategy.beta": 0.3})
    loss, batch, s, t, p = loss_and_outputs(strategy, ctx, step, 10)
    teacher = ((s[:, :4] - phi * t[:, :4]) ** 2).sum(1).mean()    # every unit seen
    previous = ((s[:, :2] - phi * p[:, :2]) ** 2).sum(1).mean()   # the old units
    assert float(loss) == pytest.approx(float(0.7 * teacher + 0.3 * previous), rel=1e-5)


def test_annealing_phase_two_is_the_masked_cross_entropy():
    strategy, ctx = setup(1, **{"strategy.temperature_schedule": "annealing",
                                "strategy.temperature": 2.0})
    ready(strategy, ctx, previous=True)
    ctx.step, ctx.steps = 7, 10
    batch = batch_of(ctx)
    with torch.no_grad():
        loss = strategy.student_loss(ctx, batch)
        s = ctx.model(batch.x)
    ce = hand_ce(s, batch.y, SEEN_AT_1)
    assert float(loss) == pytest.approx(float(ce), rel=1e-6)
    assert float(ce) == pytest.approx(float(F.cross_entropy(s[:, :4], batch.y)), rel=1e-6)


def test_an_annealing_compress_run_finishes(tmp_path):
    result = run(tmp_path, "annealing", "compress", **{
        "stream.scenario": "class-il", "strategy.temperature_schedule": "annealing",
        "strategy.temperature": 3.0, "teacher.hidden": [30]})
    assert result["status"] == "finished" and len(result["accuracy_matrix"]) == 3
    # a phase 1 over every step (share 1) trains no cross-entropy: another matrix
    only_matching = run(tmp_path, "share-1", "compress", **{
        "stream.scenario": "class-il", "strategy.temperature_schedule": "annealing",
        "strategy.temperature": 3.0, "teacher.hidden": [30], "strategy.annealing_share": 1.0})
    assert only_matching["accuracy_matrix"] != result["accuracy_matrix"]
    assert only_matching["teacher"] == result["teacher"]   # the teacher trains alike


# ----------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("strategy", "sets", "words"), [
    ("lwf", {"strategy.temperature_schedule": "annealing"}, ["annealing", "kd", "compress"]),
    ("lwf-vdv2019", {"strategy.temperature_schedule": "annealing"}, ["kd, compress"]),
    ("compress", {"strategy.temperature_schedule": "annealing", "strategy.temperature": 2.5},
     ["strategy.temperature", "2.5", "whole number"]),
    ("kd", {"strategy.temperature_schedule": "annealing", "strategy.temperature": 2.5},
     ["strategy.temperature", "2.5"]),
    ("compress", {"strategy.temperature_schedule": "cosin"}, ["did you mean `cosine`"]),
    ("compress", {"strategy.schedule_span": "all"}, ["strategy.schedule_span", "task, stream"]),
    ("compress", {"strategy.annealing_share": 0.0}, ["strategy.annealing_share", "(0, 1]"]),
    ("lwf", {"strategy.temperature_end": 0.0}, ["strategy.temperature_end", "> 0"]),
    ("compress", {"teacher.strategy": "compress"}, ["teacher.strategy", "'compress'"]),
    ("compress", {"teacher.strategy": "kd"}, ["teacher.strategy", "'kd'"]),
    ("compress", {"teacher.strategy": "compress-lwf"}, ["teacher.strategy", "'compress-lwf'"]),
    ("compress", {"teacher.strategy": "lwv"}, ["unknown strategy `lwv`", "did you mean `lwf`"]),
    ("compress", {"teacher.strategy": "lwf", "teacher.settings": {"alhpa": 0.5}},
     ["teacher.settings", "alhpa", "alpha"]),
    ("compress", {"teacher.settings": {"alpha": 0.5}}, ["teacher.settings", "`alpha`", "`naive`"]),
    ("compress", {"teacher.settings": {"name": "lwf"}}, ["teacher.settings", "`name`"]),
    ("compress", {"teacher.strategy": "lwf", "teacher.settings": {"alpha": -1}},
     ["the teacher's strategy `lwf`", "strategy.alpha"]),
    ("compress", {"teacher.strategy": "lwf-mammoth"}, ["the teacher's strategy `lwf-mammoth`",
                                                       "class-il"]),
    ("compress", {"teacher.hidden": [0]}, ["teacher.hidden", "[0]"]),
    ("compress", {"teacher.hidden": [20_000]}, ["teacher.hidden", "20000", "at most"]),
    ("compress", {"teacher.head": "mult"}, ["teacher.head", "multi"]),
])
def test_bad_teacher_and_schedule_settings_are_refused_naming_them(strategy, sets, words):
    with pytest.raises(ConfigError) as info:
        build_config("split-digits", strategy, sets)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_the_teachers_strategy_gets_its_preset_and_the_teachers_settings():
    config = build_config("split-digits", "compress-lwf", {
        "teacher.hidden": [30], "teacher.settings": {"alpha": 0.25}, "strategy.alpha": 0.5})
    teacher = teacher_run_config(config)
    assert teacher.strategy.name == "lwf"
    assert teacher.strategy.options["alpha"] == 0.25            # teacher.settings over the lwf preset's
    assert teacher.strategy.options["warmup_epochs"] == 1       # the lwf preset's own option
    assert teacher.strategy.options["distill_loss"] == "soft_ce"
    assert teacher.model.hidden == (30,) and teacher.model.name == config.model.name
    assert config.strategy.options["alpha"] == 0.5 and config.model.hidden == (100, 100)
    assert teacher.train == config.train and teacher.seed == config.seed
    # a preset's own option fixes the teacher's strategy (compress-lwf: lwf)
    assert build_config("split-digits", "compress-lwf").teacher.strategy == "lwf"
    assert build_config("split-digits", "compress-derpp").teacher.strategy == "derpp"


def test_an_external_strategy_is_refused_as_teacher(avalanche):
    with pytest.raises(ConfigError, match="avalanche:LwF"):
        build_config("split-digits", "compress", {"teacher.strategy": "avalanche:LwF"})


def test_an_external_strategy_without_arguments_is_refused_as_teacher(avalanche):
    with pytest.raises(ConfigError, match="avalanche:Naive"):
        build_config("split-digits", "compress", {"teacher.strategy": "avalanche:Naive"})


@pytest.mark.parametrize("sets", [{"teacher.name": "mlpp"},
                                  {"teacher.name": "convnet", "teacher.channels": [4, 4, 4, 4]}])
def test_the_teachers_model_is_checked_as_the_students(sets):
    with pytest.raises(ConfigError, match="teacher"):
        build_config("split-digits", "compress", sets)


def test_the_teachers_memory_is_the_runs():
    """The run's memory settings win; the teacher preset's (derpp: memory.size = 500) fill in
    only what the run leaves at its default, and a run's per-class budget replaces its size."""
    config = build_config("split-digits", "compress-derpp", {"memory.size": 30,
                                                             "memory.policy": "class_balanced"})
    assert teacher_run_config(config).memory == config.memory
    default = build_config("split-digits", "compress-derpp")
    assert teacher_run_config(default).memory.size == 500
    per_class = build_config("split-digits", "compress-derpp",
                             {"memory.per_class": 5, "memory.policy": "class_balanced"})
    memory = teacher_run_config(per_class).memory
    assert (memory.size, memory.per_class, memory.policy) == (0, 5, "class_balanced")


# ------------------------------------------------------------------------------ suites


def test_suite_member_tables_and_reports(tmp_path, monkeypatch):
    from lifelong_kd import report

    monkeypatch.setattr(report, "comparison_plots", lambda *a, **k: [])
    (tmp_path / "presets").mkdir()
    base = tmp_path / "presets" / "digits.toml"
    base.write_text((ROOT / "benchmarks" / "split-digits.toml").read_text())
    suite = tmp_path / "presets" / "suite.toml"
    suite.write_text(
        'description = "two student sizes"\n'
        'benchmarks = [\n'
        '  {name = "small", benchmark = "digits.toml", set = {"model.hidden" = [8]}},\n'
        '  {name = "large", benchmark = "digits.toml", set = {"model.hidden" = [16], '
        '"stream.n_tasks" = 5}},\n'
        '  "split-digits",\n'
        ']\n\n[reports]\nsizes = ["small", "large"]\n')
    members = suite_members(str(suite))
    assert members is not None
    assert [(m.benchmark, m.name, m.settings) for m in members] == [
        (str(base), "small", {"model.hidden": [8]}),
        (str(base), "large", {"model.hidden": [16], "stream.n_tasks": 5}),
        ("split-digits", "split-digits", {}),
    ]
    reports = suite_reports(str(suite))
    assert reports == {"sizes": ["small", "large"]}

    out = tmp_path / "out"
    overrides = {"data.train_subset": 100, "data.test_subset": 50, "train.epochs": 1,
                 "stream.n_tasks": 5}
    outcomes = runs.compare_suite(
        members[:2], out, "two student sizes", strategies=["naive"], seeds=[0],
        overrides=overrides, provider=runs.DataProvider(tmp_path, progress=False),
        options=runs.RunOptions(progress=False), reports=reports)
    assert [len(o.results) for o in outcomes] == [1, 1] and not any(o.failures for o in outcomes)
    small = out / "small" / "naive" / "seed-0" / "result.json"
    large = out / "large" / "naive" / "seed-0" / "result.json"
    assert small.is_file() and large.is_file()
    assert outcomes[0].results[0]["config"]["model"]["hidden"] == [8]
    assert outcomes[1].results[0]["config"]["model"]["hidden"] == [16]
    text = (out / "sizes" / "report.md").read_text()
    assert "naive [model.hidden = [8]]" in text and "naive [model.hidden = [16]]" in text
    assert "naive [model.hidden = [8]]" not in (out / "small" / "report.md").read_text()
    index = (out / "report.md").read_text()
    assert "two student sizes" in index
    assert "[sizes/report.md](sizes/report.md)" in index
    assert "[small/report.md](small/report.md)" in index

    # two members writing into one folder are refused before anything runs
    twins = [members[0], SuiteMember(str(base), "small", {})]
    with pytest.raises(ConfigError, match="would both write into"):
        runs.compare_suite(twins, tmp_path / "twins", strategies=["naive"], seeds=[0],
                           overrides=overrides, provider=runs.DataProvider(tmp_path, progress=False))
    assert not (tmp_path / "twins").exists()


@pytest.mark.parametrize(("reports", "words"), [
    ('sizes = ["small", "huge"]', ["reports.sizes", "huge", "large, small"]),
    ('sizes = []', ["reports.sizes", "must list members"]),
    ('small = ["small", "large"]', ["reports.small", "member's folder"]),
    ('"a/b" = ["small"]', ["reports.a/b", "without /"]),
])
def test_bad_suite_reports_are_refused(tmp_path, reports, words):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'benchmarks = [{name = "small", benchmark = "split-digits", set = {"model.hidden" = [8]}},'
        ' {name = "large", benchmark = "split-digits"}]\n\n[reports]\n' + reports + "\n")
    with pytest.raises(ConfigError) as info:
        suite_reports(str(suite))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_member_table_with_an_unknown_key_or_setting_is_refused(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text('benchmarks = [{name = "a", benchmark = "split-digits", sett = {}}]\n')
    with pytest.raises(ConfigError, match="member table"):
        suite_members(str(suite))
    suite.write_text('benchmarks = [{benchmark = "split-digits", set = {"model.hiden" = [8]}}]\n')
    with pytest.raises(ConfigError, match="did you mean `model.hidden`"):
        suite_members(str(suite))


# ---------------------------------------------------------------------------- identity

#: Configuration hashes computed with the code before issue 15 (231fffb: no teacher section,
#: no temperature schedules), for the defaults and split-digits' strategies.
HASHES_BEFORE = {None: "773f710c523ac40c", "naive": "d8176053eb29daa7",
                 "lwf": "313a64f73aade810", "lwf-vdv2019": "332b1173bfb70a0b",
                 "derpp": "9da9aa34db01f475", "joint": "79004da49327faf2",
                 "ewc": "dede96144cb911a3"}
#: The settings issue 15 added.
ISSUE_15_KEYS = ("strategy.temperature_schedule", "strategy.temperature_end",
                 "strategy.schedule_span", "strategy.annealing_share")


@pytest.mark.parametrize("strategy", list(HASHES_BEFORE))
def test_runs_at_the_defaults_keep_their_identity_from_before_issue_15(strategy):
    config = (RunConfig() if strategy is None else build_config("split-digits", strategy)).to_dict()
    assert "teacher" in config
    settings = identity_settings(config)
    assert not [k for k in settings if k.startswith("teacher.") or k in ISSUE_15_KEYS]
    assert run_identity(config).config_hash == HASHES_BEFORE[strategy]
    # a teacher or schedule setting that changes the run changes its identity
    for key, value in (("teacher", {"hidden": [30]}), ("teacher", {"strategy": "lwf"}),
                       ("strategy", {"temperature_schedule": "linear"}),
                       ("teacher", {"settings": {"alpha": 0.5}})):
        changed = copy.deepcopy(config)
        changed[key].update(value)
        assert run_identity(changed).config_hash != HASHES_BEFORE[strategy], (key, value)


def test_lwf_class_il_hash_from_before_issue_15_is_kept():
    config = build_config("split-digits", "lwf", {"stream.scenario": "class-il",
                                                  "strategy.temperature": 3.0})
    assert run_identity(config.to_dict()).config_hash == "dd350b3899e5b562"
    assert math.isclose(config.strategy.options["temperature_end"], 1.0)
