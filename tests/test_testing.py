"""The strategy test kit (``lifelong_kd/testing.py``): a toy run driven task by task as the
engine drives it, a batch as the engine prepares it, and the resume check, which every
built-in strategy preset passes (a preset added to the registry gets it without a word)."""

from __future__ import annotations

import pytest
import torch

from lifelong_kd.engine import train_stream
from lifelong_kd.strategies.registry import PRESETS
from lifelong_kd.testing import (
    assert_resumes_bit_for_bit,
    batch_of,
    finish_task,
    start_task,
    toy_run,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_toy_run_driven_task_by_task_is_the_engines_run():
    """start_task + finish_task for every task, then the engine's own loop on a fresh toy
    run of the same settings: the same model weights bit for bit."""
    by_hand = toy_run("lwf")
    for index in range(len(by_hand.stream)):
        finish_task(by_hand, start_task(by_hand, index))
    engine = toy_run("lwf")
    train_stream(engine.config, engine.stream, engine.state, progress=False)
    for a, b in zip(by_hand.state.model.parameters(), engine.state.model.parameters(),
                    strict=True):
        assert torch.equal(a, b)


def test_a_batch_is_prepared_as_the_engine_prepares_one():
    run = toy_run("der", **{"memory.size": 40})
    ctx = start_task(run, 0)
    data = ctx.current_train_data
    batch = batch_of(ctx, data, [0, 3, 5])
    assert batch.y.tolist() == data.y[[0, 3, 5]].tolist()
    assert torch.equal(batch.x, ctx.prepare(data.x[torch.tensor([0, 3, 5])]))
    loss = run.strategy.train_loss(ctx, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)


#: Settings a preset needs on the toy stream: a memory for those that keep one (the
#: presets' own budgets hold more than the toy stream has), a small teacher.
NEEDS = {"memory.size": 40, "memory.batch_size": 8, "teacher.hidden": [16]}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_builtin_preset_resumes_bit_for_bit(name, tmp_path):
    preset = PRESETS[name]
    sets = {"stream.scenario": "class-il" if "class-il" in preset.scenarios
            else preset.scenarios[0], "train.iterations": 4, "strategy.warmup_epochs": 0}
    if preset.cls.MEMORY != "none":
        sets.update({k: v for k, v in NEEDS.items() if k.startswith("memory.")})
    if preset.cls.TEACHER:
        sets["teacher.hidden"] = NEEDS["teacher.hidden"]
    result = assert_resumes_bit_for_bit(name, tmp_path, sets=sets)
    assert result["status"] == "finished" and result["n_tasks"] == 3
