"""iCaRL (strategies/icarl.py): nearest-mean prediction and class means against hand
computations, the BCE loss with the teacher's sigmoids as old targets, the training data
joined by the memory, herding per class with a reduction that keeps the first chosen, and a
tiny run end to end with a bit-exact resume and the memory in result.json's costs."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lifelong_kd.cli import main
from lifelong_kd.data.streams import build_stream
from lifelong_kd.engine import Batch, RunState, TaskContext, new_state, task_context, train_stream
from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config
from lifelong_kd.strategies import Teacher
from lifelong_kd.strategies.icarl import ICaRL

from .conftest import toy_dataset as _toy

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ helpers


def toy_dataset(per_class: int = 6):
    """10 classes of random 4x4 images (3 tasks of 2 classes use 6 of them)."""
    return _toy(10, per_class, 4)


def setup(scenario: str = "class-il", **sets: Any):
    """(config, stream, state) of ``icarl`` on a 3-task stream of 2 classes each."""
    overrides = {"stream.scenario": scenario, "stream.n_tasks": 3, "stream.classes_per_task": 2,
                 "model.hidden": [8], "train.batch_size": 4, "train.epochs": 1,
                 "memory.size": 6, **sets}
    config = build_config("split-digits", "icarl", overrides)
    stream = build_stream(config, toy_dataset())
    return config, stream, new_state(config, stream)


def context(config, stream, state: RunState, index: int) -> TaskContext:
    ctx = task_context(config, stream, state, index)
    ctx.current_train_data = state.strategy.train_data(ctx)
    return ctx


def batch_of(ctx: TaskContext, idx: torch.Tensor) -> Batch:
    data = ctx.current_train_data
    assert data is not None
    raw = data.x[idx]
    return Batch(ctx.prepare(raw), data.y[idx], data.t[idx], idx, raw, ctx)


def give_teacher(strategy: ICaRL, ctx: TaskContext) -> None:
    """A teacher that differs from the student (so its sigmoids are not the student's)."""
    torch.manual_seed(1)
    teacher = copy.deepcopy(ctx.model)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.5 * torch.randn_like(p))
    strategy.teacher = Teacher(teacher, ctx.config.model, ctx.stream.input_shape,
                               ctx.stream.n_outputs)


def bce(z: float, q: float) -> float:
    """-(q log sigmoid(z) + (1 - q) log(1 - sigmoid(z))), by hand."""
    p = 1.0 / (1.0 + math.exp(-z))
    return -(q * math.log(p) + (1.0 - q) * math.log(1.0 - p))


def herding_by_hand(features: np.ndarray, m: int) -> list[int]:
    """Rebuffi et al. 2017, Algorithm 4, on L2-normalised features, one choice at a time
    (a zero feature vector stays zero, as ``F.normalize`` leaves it)."""
    phi = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    mu = phi.mean(axis=0)
    chosen: list[int] = []
    for k in range(1, min(m, len(phi)) + 1):
        best, best_d = -1, math.inf
        for i in range(len(phi)):
            if i in chosen:
                continue
            d = float(np.linalg.norm(mu - (phi[i] + phi[chosen].sum(axis=0)) / k))
            if d < best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


class Identity(nn.Module):
    """A model whose features are its flattened input (to hand-make features)."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


# ---------------------------------------------------------------------------- prediction


def test_nme_prediction_is_the_nearest_normalised_class_mean_computed_by_hand():
    config, stream, state = setup()
    strategy = state.strategy
    assert isinstance(strategy, ICaRL) and strategy.options.prediction == "nme"
    ctx = dataclasses.replace(task_context(config, stream, state, 1), model=Identity())
    # 6 outputs; classes 0-3 have exemplars, 4 and 5 do not (class 5's "mean" would win)
    means = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8],
                          [0.0, -1.0], [0.8, -0.6]])
    strategy.class_means = means
    strategy.has_mean = torch.tensor([True, True, True, True, False, False])
    x = torch.tensor([[3.0, 0.1], [0.2, 5.0], [-2.0, -0.5], [1.0, 1.5], [0.8, -0.6]])
    scores = strategy.predict(ctx, x)
    for i, row in enumerate(x.tolist()):
        norm = math.hypot(*row)
        phi = (row[0] / norm, row[1] / norm)
        for c in range(4):
            expected = -math.hypot(phi[0] - means[c, 0].item(), phi[1] - means[c, 1].item())
            assert scores[i, c].item() == pytest.approx(expected, abs=1e-6)
        assert scores[i, 4:].max().item() < scores[i, :4].min().item()
    # nearest mean: 0, 1, 2, 3; the last input is exactly class 5's "mean" yet gets class 0,
    # the nearest class with exemplars (0.8, -0.6) is 0.632 from class 0, 1.265 from 3
    assert scores.argmax(dim=1).tolist() == [0, 1, 2, 3, 0]
    strategy.options = dataclasses.replace(strategy.options, prediction="logits")
    model_ctx = task_context(config, stream, state, 1)
    x_img = torch.zeros(2, *stream.input_shape)
    assert torch.equal(strategy.predict(model_ctx, x_img), state.model(x_img))


def test_class_means_are_renormalised_means_of_normalised_exemplar_features():
    config, stream, state = setup()
    strategy = state.strategy
    ctx = context(config, stream, state, 0)
    strategy.after_task(ctx)
    x, y, _ = strategy.memory.examples()
    assert strategy.class_means is not None and strategy.has_mean is not None
    assert strategy.has_mean.tolist() == [True, True, False, False, False, False]
    with torch.no_grad():
        features = state.model.features(ctx.prepare(x)).double()
    for c in (0, 1):
        phi = features[y == c] / features[y == c].norm(dim=1, keepdim=True)
        mean = phi.mean(dim=0)
        expected = mean / mean.norm()
        assert torch.allclose(strategy.class_means[c].double(), expected, atol=1e-6)
    # predict through the engine's evaluation: only seen classes (0, 1) are ever predicted
    ctx.model.eval()
    with torch.inference_mode():
        test = stream[2].test_x[:]
        pred = strategy.predict(ctx, ctx.prepare(test)).argmax(dim=1)
    assert set(pred.tolist()) <= {0, 1}


def test_prediction_option_is_checked():
    with pytest.raises(ConfigError, match="nme"):
        build_config("split-digits", "icarl", {"strategy.prediction": "ncm"})


# ----------------------------------------------------------------------------- the loss


def test_loss_is_bce_over_the_seen_classes_with_teacher_sigmoids_as_old_targets():
    config, stream, state = setup()
    strategy = state.strategy
    ctx = context(config, stream, state, 1)
    give_teacher(strategy, ctx)
    strategy.before_task(ctx)
    batch = batch_of(ctx, torch.arange(0, 12, 3))  # classes 2 and 3 of task 1
    with torch.no_grad():
        features, logits = ctx.model.forward_features(batch.x)
        q_old = torch.sigmoid(strategy.teacher(batch.x))
        loss = float(strategy.loss(ctx, batch, features, logits))
    total, count = 0.0, 0
    for i, label in enumerate(batch.y.tolist()):
        for u in range(4):  # the classes seen so far: tasks 0 and 1
            q = q_old[i, u].item() if u < 2 else float(u == label)
            total += bce(logits[i, u].item(), q)
            count += 1
    assert loss == pytest.approx(total / count, rel=1e-6)
    # the teacher's sigmoids are not 0/1: they change the loss
    strategy.teacher = None
    with torch.no_grad():
        assert float(strategy.loss(ctx, batch, features, logits)) != pytest.approx(loss, rel=1e-3)


def test_loss_on_the_first_task_is_one_hot_bce_over_its_classes():
    config, stream, state = setup()
    strategy = state.strategy
    ctx = context(config, stream, state, 0)
    strategy.before_task(ctx)
    batch = batch_of(ctx, torch.arange(6))
    with torch.no_grad():
        features, logits = ctx.model.forward_features(batch.x)
        loss = float(strategy.loss(ctx, batch, features, logits))
    expected = np.mean([bce(logits[i, u].item(), float(u == y))
                        for i, y in enumerate(batch.y.tolist()) for u in range(2)])
    assert loss == pytest.approx(expected, rel=1e-6)


def test_task_il_loss_uses_each_examples_own_task_outputs():
    """A memory example of task 0 gets the teacher's sigmoids over task 0's outputs, the
    current task's examples one-hot targets over task 1's."""
    config, stream, state = setup("task-il")
    strategy = state.strategy
    first = context(config, stream, state, 0)
    strategy.after_task(first)
    ctx = context(config, stream, state, 1)
    give_teacher(strategy, ctx)
    strategy.before_task(ctx)
    n_task = len(stream[1].train_y)
    idx = torch.tensor([0, 7, n_task, n_task + 4])  # two of task 1, two from memory
    batch = batch_of(ctx, idx)
    assert batch.t.tolist() == [1, 1, 0, 0]
    with torch.no_grad():
        features, logits = ctx.model.forward_features(batch.x)
        q_old = torch.sigmoid(strategy.teacher(batch.x))
        loss = float(strategy.loss(ctx, batch, features, logits))
    terms = []
    for i, (label, t) in enumerate(zip(batch.y.tolist(), batch.t.tolist(), strict=True)):
        for u in stream[t].outputs:
            q = q_old[i, u].item() if t == 0 else float(u == label)
            terms.append(bce(logits[i, u].item(), q))
    assert loss == pytest.approx(float(np.mean(terms)), rel=1e-6)


# ---------------------------------------------------------------- memory and training data


def test_memory_is_herded_per_class_and_joins_the_training_data():
    config, stream, state = setup(**{"memory.size": 6, "model.hidden": [32]})
    strategy = state.strategy
    assert strategy.memory.config.policy == "herding"
    snapshots: list[dict[str, Any]] = []

    def after(st: RunState) -> None:
        x, y, t = strategy.memory.examples()
        # the memory keeps the examples in their order in the data; herding's order is the
        # priority (0 = chosen first)
        order = torch.argsort(strategy.memory.priority, stable=True)
        x, y, t = x[order], y[order], t[order]
        task = stream[st.next_task - 1]
        ctx = task_context(config, stream, st, st.next_task - 1)
        with torch.no_grad():
            st.model.eval()
            feats = st.model.features(ctx.prepare(task.train_x[:])).double().numpy()
        snapshots.append({"x": x.clone(), "y": y.clone(), "t": t.clone(), "feats": feats,
                          "train_x": task.train_x[:], "train_y": task.train_y.clone()})

    train_stream(config, stream, state, progress=False, on_task_end=after)
    # after task 0: 6 / 2 classes = 3 exemplars each, herding's first 3, in its order
    s0 = snapshots[0]
    assert len(s0["y"]) == 6 and sorted(s0["y"].tolist()) == [0, 0, 0, 1, 1, 1]
    for c in (0, 1):
        members = (s0["train_y"] == c).nonzero().flatten()
        order = herding_by_hand(s0["feats"][members.numpy()], 3)
        assert torch.equal(s0["x"][s0["y"] == c], s0["train_x"][members[order]])
    # after task 1: 6 / 4 classes -> 2, 2, 1, 1; the old classes keep their first chosen
    s1 = snapshots[1]
    assert [int((s1["y"] == c).sum()) for c in range(4)] == [2, 2, 1, 1]
    for c in (0, 1):
        assert torch.equal(s1["x"][s1["y"] == c], s0["x"][s0["y"] == c][:2])
        assert s1["t"][s1["y"] == c].tolist() == [0, 0]
    for c in (2, 3):
        members = (s1["train_y"] == c).nonzero().flatten()
        order = herding_by_hand(s1["feats"][members.numpy()], 1)
        assert torch.equal(s1["x"][s1["y"] == c], s1["train_x"][members[order]])


def test_training_data_is_the_task_then_the_memory_with_their_own_labels_and_tasks():
    config, stream, state = setup()
    strategy = state.strategy
    first = context(config, stream, state, 0)
    assert len(first.current_train_data) == len(stream[0].train_y)  # empty memory
    strategy.after_task(first)
    ctx = context(config, stream, state, 1)
    data = ctx.current_train_data
    x, y, t = strategy.memory.examples()
    n = len(stream[1].train_y)
    assert len(data) == n + 6 == n + len(strategy.memory)
    assert torch.equal(data.x[torch.arange(n)], stream[1].train_x[:])
    assert torch.equal(data.x[torch.arange(n, n + 6)], x)
    assert torch.equal(data.y[n:], y) and data.t[n:].tolist() == [0] * 6
    assert data.t[:n].tolist() == [1] * n


def test_random_policy_keeps_the_budget_split_per_class():
    config, stream, state = setup(**{"memory.policy": "random"})
    strategy = state.strategy
    for index in range(2):
        ctx = context(config, stream, state, index)
        strategy.after_task(ctx)
    _, y, _ = strategy.memory.examples()
    assert [int((y == c).sum()) for c in range(4)] == [2, 2, 1, 1]
    assert strategy.has_mean is not None and strategy.has_mean[:4].all()


# ------------------------------------------------------------------------ end to end

SMALL = ["--set", "stream.n_tasks=3", "--set", "stream.classes_per_task=2", "--set",
         "train.epochs=1", "--set", "model.hidden=[16]", "--set", "stream.scenario=class-il",
         "--set", "memory.size=20", "--set", "data.train_subset=300"]


def _run(out: Path, *extra: str) -> int:
    return main(["run", "split-digits", "--strategy", "icarl", *SMALL, "--offline", "--quiet",
                 "--out", str(out), *extra])


def test_icarl_run_records_the_memory_in_costs(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    assert _run(out) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished" and len(result["accuracy_matrix"]) == 3
    assert result["costs"]["memory_examples"] == 20
    # 20 uint8 8x8 images, int64 labels and task ids, float64 priorities
    assert result["costs"]["memory_bytes"] == 20 * (64 + 8 + 8 + 8)
    # nearest-mean prediction after the first task: well above chance (0.5) on its 2 digits
    assert result["accuracy_matrix"][0][0] > 0.8


def test_checkpoint_resume_gives_the_same_matrices_bit_for_bit():
    """RunState.checkpoint after task 1 -> torch.save/load (weights_only) -> restore_state:
    the memory, the teacher and the class means come back, and the rows are those of the
    uninterrupted run (class-il and task-il)."""
    from lifelong_kd.engine import restore_state

    for scenario in ("class-il", "task-il"):
        config, stream, state = setup(scenario, **{"train.epochs": 2})
        full = train_stream(config, stream, state, progress=False)
        saved: dict[str, bytes] = {}

        def keep_task_1(st: RunState, saved: dict[str, bytes] = saved) -> None:
            if st.next_task == 2:
                buffer = io.BytesIO()
                torch.save(st.checkpoint(), buffer)
                saved["bytes"] = buffer.getvalue()

        _, _, fresh = setup(scenario, **{"train.epochs": 2})
        train_stream(config, stream, fresh, progress=False, on_task_end=keep_task_1)
        checkpoint = torch.load(io.BytesIO(saved["bytes"]), weights_only=True)
        strategy_state = checkpoint["strategy"]
        assert strategy_state["teacher"] is not None and strategy_state["has_mean"][:4].all()
        assert len(strategy_state["memory"]["y"]) == 6
        restored = restore_state(config, stream, checkpoint)
        assert torch.equal(restored.strategy.class_means, strategy_state["class_means"])
        resumed = train_stream(config, stream, restored, progress=False)
        assert resumed.rows == full.rows, scenario
        assert resumed.rows_task_aware == full.rows_task_aware, scenario
