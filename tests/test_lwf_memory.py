"""LwF with an exemplar memory (strategies/lwf.py, FACIL's --num-exemplars): the memory's
examples join the task's, the loss on them is LwF's, the memory is updated after each task,
and without a memory nothing changes (the behaviour pin, tests/test_golden.py, holds the
matrices)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from lifelong_kd.data.streams import build_stream
from lifelong_kd.engine import Batch, new_state, restore_state, task_context, train_stream
from lifelong_kd.presets import build_config
from lifelong_kd.strategies import LwF, Teacher

from .conftest import toy_dataset as _toy

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_dataset(per_class: int = 6):
    """6 classes of random 4x4 images (3 tasks of 2 classes)."""
    return _toy(6, per_class, 4)


def setup(name: str = "lwf", per_class: int = 6, **sets):
    overrides = {"stream.scenario": "class-il", "stream.n_tasks": 3, "stream.classes_per_task": 2,
                 "model.hidden": [8], "train.epochs": 1, "train.batch_size": 8, **sets}
    config = build_config("split-digits", name, overrides, seed=0)
    stream = build_stream(config, toy_dataset(per_class))
    return config, stream, new_state(config, stream)


def context(config, stream, state, index):
    ctx = task_context(config, stream, state, index)
    ctx.current_train_data = state.strategy.train_data(ctx)
    return ctx


def batch(ctx, idx) -> Batch:
    data = ctx.current_train_data
    raw = data.x[idx]
    return Batch(ctx.prepare(raw), data.y[idx], data.t[idx], idx, raw, ctx)


def test_without_memory_lwf_has_none_and_keeps_its_checkpoint_layout():
    config, stream, state = setup()
    lwf = state.strategy
    assert isinstance(lwf, LwF) and LwF.MEMORY == "optional"
    assert lwf.memory is None
    ctx = context(config, stream, state, 0)
    assert len(ctx.current_train_data) == len(stream[0].train_y)
    lwf.after_task(ctx)
    assert set(lwf.state_dict()) == {"teacher"}
    assert lwf.costs() == {"memory_examples": 0, "memory_bytes": 0}


@pytest.mark.parametrize(("policy", "per_task"), [("random", [3, 3]), ("class_balanced", [3, 3]),
                                                  ("herding", [3, 3])])
def test_lwf_trains_on_the_task_and_the_memory(policy, per_task):
    config, stream, state = setup(**{"memory.size": 6, "memory.policy": policy})
    lwf = state.strategy
    ctx0 = context(config, stream, state, 0)
    lwf.after_task(ctx0)
    assert torch.bincount(lwf.memory.y, minlength=6).tolist()[:2] == per_task
    ctx = context(config, stream, state, 1)
    data = ctx.current_train_data
    n_task = len(stream[1].train_y)
    assert len(data) == n_task + 6
    # the task's examples first, then the memory's with their own labels and task ids
    assert torch.equal(data.y[:n_task], stream[1].train_y)
    assert torch.equal(data.y[n_task:], lwf.memory.y.cpu()) and (data.t[n_task:] == 0).all()
    assert torch.equal(data.x[torch.arange(n_task, n_task + 6)], lwf.memory.x.cpu())
    # the teacher's cache covers the union
    lwf.before_task(ctx)
    assert lwf._cache is not None and len(lwf._cache) == len(data)
    with torch.no_grad():
        assert torch.allclose(lwf._cache[n_task:], lwf.teacher(ctx.prepare(lwf.memory.x)),
                              atol=1e-6)
    # after task 1 the budget is shared by 4 classes
    lwf.after_task(ctx)
    assert len(lwf.memory) == 6 and set(lwf.memory.y.tolist()) <= {0, 1, 2, 3}
    assert lwf.costs()["memory_examples"] == 6 and lwf.costs()["memory_bytes"] > 6 * 16


@pytest.mark.parametrize("name", ["lwf", "lwf-facil"])
def test_loss_on_a_batch_with_memory_examples_is_lwf_formula(name):
    config, stream, state = setup(name, **{"memory.size": 6, "memory.policy": "random"})
    lwf = state.strategy
    lwf.after_task(context(config, stream, state, 0))
    ctx = context(config, stream, state, 1)
    torch.manual_seed(1)
    teacher = copy.deepcopy(ctx.model)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.5 * torch.randn_like(p))
    lwf.teacher = Teacher(teacher, config.model, stream.input_shape, stream.n_outputs)
    lwf.before_task(ctx)
    n_task = len(stream[1].train_y)
    idx = torch.arange(n_task - 4, n_task + 4)  # 4 of the task's examples, 4 of the memory's
    b = batch(ctx, idx)
    assert (b.t == torch.tensor([1] * 4 + [0] * 4)).all()
    with torch.no_grad():
        features, logits = ctx.model.forward_features(b.x)
        loss = lwf.loss(ctx, b, features, logits)
        t_logits = teacher(b.x)
    T = 2.0
    kd = -(F.softmax(t_logits[:, :2] / T, 1) * F.log_softmax(logits[:, :2] / T, 1)).sum(1).mean()
    if name == "lwf":  # CE over the classes seen, for every example
        ce = F.cross_entropy(logits[:, :4], b.y)
    else:  # lwf-facil, ce_scope = current: each example over its own task's classes
        own = torch.stack([logits[i, 2 * int(t):2 * int(t) + 2] for i, t in enumerate(b.t)])
        ce = F.cross_entropy(own, b.y - 2 * b.t)
    assert float(loss) == pytest.approx(float(ce + 1.0 * kd), abs=1e-6)
    assert float(kd) > 0


def test_warm_up_runs_on_the_task_only():
    config, stream, state = setup(**{"memory.size": 6, "memory.policy": "random"})
    lwf = state.strategy
    lwf.after_task(context(config, stream, state, 0))
    ctx = context(config, stream, state, 1)
    warmup, main = lwf.phases(ctx)
    assert warmup.name == "warm-up" and warmup.data is not None
    assert len(warmup.data) == len(stream[1].train_y) and main.data is None


def test_reservoir_is_offered_every_example_once_at_the_tasks_end():
    config, stream, state = setup(**{"memory.size": 5, "memory.policy": "reservoir"})
    lwf = state.strategy
    lwf.after_task(context(config, stream, state, 0))
    assert lwf.memory.seen == 12 and len(lwf.memory) == 5
    assert set(lwf.memory.y.tolist()) <= {0, 1}
    ctx = context(config, stream, state, 1)
    assert len(ctx.current_train_data) == 12 + 5
    lwf.after_task(ctx)
    assert lwf.memory.seen == 24 and len(lwf.memory) == 5


@pytest.mark.parametrize("policy", ["random", "reservoir"])
def test_resume_of_lwf_with_memory_gives_the_same_matrix(policy):
    config, stream, _ = setup(per_class=8, **{"memory.size": 6, "memory.policy": policy})
    full = train_stream(config, stream, progress=False)
    saved: dict = {}

    def keep_first(st) -> None:
        if st.next_task == 1:
            buffer = io.BytesIO()
            torch.save(st.checkpoint(), buffer)
            saved["bytes"] = buffer.getvalue()

    train_stream(config, stream, progress=False, on_task_end=keep_first)
    checkpoint = torch.load(io.BytesIO(saved["bytes"]), weights_only=True)
    assert set(checkpoint["strategy"]) == {"teacher", "memory"}
    resumed = train_stream(config, stream, restore_state(config, stream, checkpoint),
                           progress=False)
    assert resumed.rows == full.rows
    assert torch.equal(resumed.strategy.memory.x, full.strategy.memory.x)
