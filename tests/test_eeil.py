"""EEIL as FACIL's src/approach/eeil.py: the distillation of each old task's outputs against
its formula, which tasks each phase distils, the balanced fine-tuning's data and learning
rate, and the scenarios it refuses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config
from lifelong_kd.strategies.eeil import EEIL, softmax_bce
from lifelong_kd.testing import batch_of, finish_task, start_task, toy_run

SETS = {"memory.size": 8, "strategy.finetuning_epochs": 2}


def test_softmax_bce_by_hand() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    q, p = F.softmax(s / 2, dim=1), F.softmax(t / 2, dim=1)
    by_hand = -(p * q.log() + (1 - p) * (1 - q).log()).mean()
    assert float(softmax_bce(s, t, 2.0)) == pytest.approx(float(by_hand), rel=1e-6)


def _at_task(index: int):  # noqa: ANN202
    run = toy_run("eeil", **SETS)
    for i in range(index):
        finish_task(run, start_task(run, i))
    return run, start_task(run, index)


def _kd(logits: torch.Tensor, old: torch.Tensor, tasks: list[tuple[int, int]]) -> torch.Tensor:
    return sum(softmax_bce(logits[:, a:b], old[:, a:b], 2.0) for a, b in tasks)


def test_the_unbalanced_phase_distils_tasks_0_to_t_minus_2_as_facil() -> None:
    """FACIL's ``range(t - 1)``: nothing on task 1, task 0's outputs on task 2."""
    for index, tasks in ((1, []), (2, [(0, 2)])):
        run, ctx = _at_task(index)
        strategy = run.strategy
        assert isinstance(strategy, EEIL) and strategy.teacher is not None
        batch = batch_of(ctx, ctx.current_train_data, range(10))
        with torch.no_grad():
            logits = ctx.model(batch.x)
            old = strategy.teacher(batch.x)
            loss = strategy.loss(ctx, batch, None, logits)
        ce = F.cross_entropy(logits[:, : 2 * (index + 1)], batch.y)
        expected = ce + (_kd(logits, old, tasks) if tasks else 0.0)
        assert float(loss) == pytest.approx(float(expected), rel=1e-5), index


def test_the_balanced_fine_tuning_distils_every_old_task_on_balanced_data() -> None:
    run, ctx = _at_task(2)
    strategy = run.strategy
    assert isinstance(strategy, EEIL) and strategy.teacher is not None
    main, balanced = strategy.phases(ctx)
    assert main.name == "train" and balanced.name == "balanced"
    assert balanced.lr_factor == 0.01 and balanced.epochs == 2
    data = balanced.data
    assert data is not None and len(data) == 16  # the memory's 8 and 8 of the task's
    assert sorted(data.y.tolist()).count(4) + sorted(data.y.tolist()).count(5) == 8
    batch = batch_of(ctx, data, range(16))
    with torch.no_grad():
        logits = ctx.model(batch.x)
        old = strategy.teacher(batch.x)
        loss = strategy.balanced_loss(ctx, batch)
    expected = F.cross_entropy(logits[:, :6], batch.y) + _kd(logits, old, [(0, 2), (2, 4)])
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_eeil_is_class_incremental_only_and_checks_its_options() -> None:
    with pytest.raises(ConfigError, match="strategy `eeil` does not support the `task-il`"):
        build_config("split-digits", "eeil")
    with pytest.raises(ConfigError, match="strategy.finetuning_lr_factor"):
        build_config("split-digits", "eeil", {"stream.scenario": "class-il",
                                              "strategy.finetuning_lr_factor": 0})


def test_the_engine_builds_the_balanced_phase_optimiser_at_its_learning_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``Phase.lr_factor`` reaches the optimiser: the balanced fine-tuning's SGD runs at
    0.01 * train.lr, the unbalanced phase's at train.lr."""
    from lifelong_kd import engine

    made = []
    original = engine.make_optimizer

    def recording(config, params, weight_decay=None, lr_factor=1.0):  # noqa: ANN001, ANN202
        optimizer = original(config, params, weight_decay, lr_factor)
        made.append(optimizer.param_groups[0]["lr"])
        return optimizer

    monkeypatch.setattr(engine, "make_optimizer", recording)
    run, ctx = _at_task(1)
    made.clear()
    finish_task(run, ctx)
    lr = run.config.train.lr
    assert made == [pytest.approx(lr), pytest.approx(0.01 * lr)]
