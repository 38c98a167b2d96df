"""WA (Zhao et al. 2020, as PyCIL's models/wa.py): its loss on a hand-made batch, the weight
aligning against its formula, and the scenarios it refuses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config
from lifelong_kd.strategies.wa import WA, weight_aligned
from lifelong_kd.testing import batch_of, finish_task, start_task, toy_run


def test_weight_aligned_by_hand() -> None:
    """Old rows of norms 5 and 1 (mean 3), new rows of norms 1 and 2 (mean 1.5): gamma = 2
    multiplies the new rows, the old ones stay."""
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [0.0, 2.0]])
    out = weight_aligned(weight, torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert torch.equal(out, torch.tensor([[3.0, 4.0], [0.0, 1.0], [2.0, 0.0], [0.0, 4.0]]))
    assert out[2:].norm(dim=1).mean() == pytest.approx(out[:2].norm(dim=1).mean())


def test_the_loss_is_ce_over_the_seen_classes_plus_twice_the_soft_ce_over_the_old() -> None:
    """Task 1 of 3 (classes 0-1 old, 2-3 new): CE over outputs 0-3 + 2 * soft CE at T = 2
    (no T^2) between the previous model's and the model's softmax over outputs 0-1, on a
    batch that holds memory examples too."""
    run = toy_run("wa", **{"memory.size": 8})
    finish_task(run, start_task(run, 0))
    ctx = start_task(run, 1)
    data = ctx.current_train_data
    assert len(data) == 40 + 8  # the task's examples and the memory's
    batch = batch_of(ctx, data, range(len(data) - 12, len(data)))  # the memory's among them
    assert set(batch.y.tolist()) & {0, 1} and set(batch.y.tolist()) & {2, 3}
    strategy = run.strategy
    assert isinstance(strategy, WA) and strategy.teacher is not None
    with torch.no_grad():
        logits = ctx.model(batch.x)
        old = strategy.teacher(batch.x)
        loss = strategy.train_loss(ctx, batch)
    ce = F.cross_entropy(logits[:, :4], batch.y)
    p = F.softmax(old[:, :2] / 2, dim=1)
    kd = -(p * F.log_softmax(logits[:, :2] / 2, dim=1)).sum(dim=1).mean()
    assert float(loss) == pytest.approx(float(ce + 2 * kd), rel=1e-5)


def test_after_each_task_but_the_first_the_new_rows_take_the_old_rows_mean_norm() -> None:
    run = toy_run("wa", **{"memory.size": 8})
    head = run.state.model.head
    ctx = start_task(run, 0)
    finish_task(run, ctx)
    after_first = head.weight.detach().clone()
    for index in (1, 2):
        ctx = start_task(run, index)
        finish_task(run, ctx)
        norms = head.weight.detach().norm(dim=1)
        new = list(run.stream[index].outputs)
        old = [u for t in run.stream.tasks[:index] for u in t.outputs]
        assert float(norms[new].mean()) == pytest.approx(float(norms[old].mean()), rel=1e-5)
        # the teacher of the next task is the aligned model
        assert run.strategy.teacher is not None
        assert torch.equal(run.strategy.teacher.model.head.weight, head.weight)
    assert not torch.equal(after_first, head.weight)


def test_wa_is_class_incremental_only() -> None:
    with pytest.raises(ConfigError, match="strategy `wa` does not support the `task-il` scenario"):
        build_config("split-digits", "wa")  # split-digits is task-il
    with pytest.raises(ConfigError, match="memory"):
        build_config("split-digits", "wa", {"stream.scenario": "class-il", "memory.size": 0})
