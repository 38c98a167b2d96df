"""SS-IL (Ahn et al. 2021, as the authors' trainer/ssil.py): the separated cross-entropy and
the task-wise distillation against their formulas, the loss on a hand-made batch with a
memory draw, and the scenarios it refuses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config
from lifelong_kd.strategies.ssil import SSIL, separated_ce, task_wise_kd
from lifelong_kd.testing import batch_of, finish_task, start_task, toy_run


def test_separated_ce_knows_only_its_units() -> None:
    logits = torch.tensor([[5.0, -1.0, 0.5, 2.0], [0.0, 9.0, 1.0, -1.0]])
    y = torch.tensor([3, 2])
    got = separated_ce(logits, y, torch.tensor([2, 3]))
    by_hand = -(torch.log_softmax(logits[0, 2:], 0)[1] + torch.log_softmax(logits[1, 2:], 0)[0])
    assert float(got) == pytest.approx(float(by_hand), rel=1e-6)


def test_task_wise_kd_is_one_kl_per_task_times_t_squared() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 6), torch.randn(5, 6)
    groups = [torch.tensor([0, 1]), torch.tensor([2, 3])]
    got = task_wise_kd(student, teacher, groups, 2.0)
    by_hand = 0.0
    for g in groups:
        p = F.softmax(teacher[:, g] / 2, dim=1)
        q = F.softmax(student[:, g] / 2, dim=1)
        by_hand += float((p * (p.log() - q.log())).sum(dim=1).mean()) * 4
    assert float(got) == pytest.approx(by_hand, rel=1e-5)


def test_the_loss_of_a_batch_with_a_memory_draw() -> None:
    """Task 1 (classes 2-3 new, 0-1 old): the new examples' CE over units 2-3, the drawn
    ones' over 0-1, summed and divided by |B| + |R|, + T^2 KL at T = 2 over units 0-1 from
    the previous model on both."""
    run = toy_run("ssil", **{"memory.size": 8, "memory.batch_size": 4})
    finish_task(run, start_task(run, 0))
    strategy = run.strategy
    assert isinstance(strategy, SSIL) and strategy.teacher is not None and len(strategy.memory) == 8
    ctx = start_task(run, 1)
    batch = batch_of(ctx, ctx.current_train_data, range(6))
    (draw,) = strategy.draws(ctx)
    assert len(draw) == 4 and set(draw.y.tolist()) <= {0, 1}
    with torch.no_grad():
        logits, drawn = ctx.model(batch.x), ctx.model(draw.x)
        loss = strategy.replay_loss(ctx, batch, logits, [draw], [drawn])
        teacher = strategy.teacher(torch.cat([batch.x, draw.x]))
    ce = (F.cross_entropy(logits[:, 2:4], batch.y - 2, reduction="sum")
          + F.cross_entropy(drawn[:, 0:2], draw.y, reduction="sum")) / 10
    student = torch.cat([logits, drawn])
    p = F.softmax(teacher[:, :2] / 2, dim=1)
    kd = 4 * (p * (p.log() - F.log_softmax(student[:, :2] / 2, dim=1))).sum(dim=1).mean()
    assert float(loss) == pytest.approx(float(ce + kd), rel=1e-5)


def test_the_first_task_is_plain_ce_over_its_units_and_ssil_is_class_il_only() -> None:
    run = toy_run("ssil", **{"memory.size": 8, "memory.batch_size": 4})
    ctx = start_task(run, 0)
    batch = batch_of(ctx, ctx.current_train_data, range(6))
    assert run.strategy.draws(ctx) == []
    with torch.no_grad():
        logits = ctx.model(batch.x)
        loss = run.strategy.replay_loss(ctx, batch, logits, [], [])
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits[:, :2], batch.y)), rel=1e-6)
    with pytest.raises(ConfigError, match="strategy `ssil` does not support the `task-il`"):
        build_config("split-digits", "ssil")
