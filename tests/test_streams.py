"""Streams and scenarios: permutations, splits, output units and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong_kd.data.sources import make_dataset
from lifelong_kd.data.streams import build_stream
from lifelong_kd.engine import evaluate, new_state, task_context
from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config


def toy_dataset(n_classes: int = 10, per_class: int = 6, size: int = 4):
    """A tiny dataset whose image encodes its index, so permutations can be checked."""
    rng = np.random.default_rng(0)
    n = n_classes * per_class
    x = rng.integers(0, 256, size=(n, 1, size, size), dtype=np.uint8)
    y = np.repeat(np.arange(n_classes), per_class)
    return make_dataset("toy", x, y, x[::2], y[::2],
                        tuple(str(i) for i in range(n_classes)), "memory")


def cfg(**sets):
    return build_config("split-digits", "naive", sets)


def test_permuted_tasks_are_seeded_permutations_with_identity_first():
    ds = toy_dataset()
    stream = build_stream(cfg(**{"stream.kind": "permuted", "stream.scenario": "domain-il",
                                 "stream.n_tasks": 4}), ds)
    flat = ds.train_x.reshape(len(ds.train_x), -1)
    assert torch.equal(stream[0].train_x.materialise(), ds.train_x)
    perms = []
    for task in stream.tasks[1:]:
        t_flat = task.train_x.materialise().reshape(len(task.train_x), -1)
        # recover the permutation from the first image's pixel columns
        perm = [int((flat == t_flat[:, [k]]).all(0).nonzero()[0]) for k in range(flat.shape[1])]
        assert sorted(perm) == list(range(flat.shape[1]))
        assert torch.equal(flat[:, perm], t_flat)
        assert torch.equal(task.test_x.materialise().reshape(len(task.test_x), -1), ds.test_x.reshape(
            len(ds.test_x), -1)[:, perm])
        perms.append(perm)
    assert perms[0] != perms[1]
    again = build_stream(cfg(**{"stream.kind": "permuted", "stream.scenario": "domain-il",
                                "stream.n_tasks": 4}), ds)
    assert all(torch.equal(a.train_x.materialise(), b.train_x.materialise())
               for a, b in zip(stream, again, strict=True))
    other = build_stream(build_config("split-digits", "naive", {
        "stream.kind": "permuted", "stream.scenario": "domain-il", "stream.n_tasks": 4}, seed=1), ds)
    assert not torch.equal(other[1].train_x.materialise(), stream[1].train_x.materialise())
    first = build_stream(cfg(**{"stream.kind": "permuted", "stream.scenario": "domain-il",
                                "stream.n_tasks": 2, "stream.permute_first": True}), ds)
    assert not torch.equal(first[0].train_x.materialise(), ds.train_x)
    assert stream.n_outputs == 10
    assert all(torch.equal(t.train_y, ds.train_y) for t in stream)


def test_split_classes_disjoint_covering_and_ordered():
    ds = toy_dataset()
    stream = build_stream(cfg(**{"stream.class_order": "random"}), ds)
    classes = [c for t in stream for c in t.classes]
    assert sorted(classes) == list(range(10))
    assert classes != list(range(10))
    for task in stream:
        assert set(task.outputs) == set(range(task.id * 2, task.id * 2 + 2))
        assert set(task.train_y.tolist()) <= set(task.outputs)
    explicit = build_stream(cfg(**{"stream.class_order": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]}), ds)
    assert explicit[0].classes == (9, 8)
    # class 9's examples get the first output unit of task 0
    assert torch.equal(explicit[0].train_y[explicit[0].train_y == 0],
                       torch.zeros_like(explicit[0].train_y[explicit[0].train_y == 0]))


def test_indivisible_and_too_many_tasks_rejected_before_loading():
    with pytest.raises(ConfigError, match="do not divide"):
        cfg(**{"stream.n_tasks": 3})
    with pytest.raises(ConfigError, match="more tasks than"):
        cfg(**{"stream.n_tasks": 11})
    with pytest.raises(ConfigError, match="does not divide"):
        cfg(**{"stream.classes_per_task": 3})
    with pytest.raises(ConfigError, match="exactly once"):
        cfg(**{"stream.class_order": [0, 1, 2]})


def test_domain_il_split_maps_to_local_labels():
    ds = toy_dataset()
    stream = build_stream(cfg(**{"stream.scenario": "domain-il"}), ds)
    assert stream.n_outputs == 2
    for task in stream:
        assert task.outputs == (0, 1)
        assert set(task.train_y.tolist()) == {0, 1}


class FixedModel(torch.nn.Module):
    """Returns fixed logits whatever the input (for hand-made prediction checks)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.head = torch.nn.Linear(1, logits.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def test_scenario_masks_give_the_right_predictions():
    ds = toy_dataset(n_classes=4, per_class=4)
    # logits favour unit 3, then unit 0: class-il picks 3 once task 1 is seen
    logits = torch.tensor([[2.0, 1.0, 0.0, 3.0]])
    for scenario, expected_after_0, expected_after_1 in (
        # task-il: task 0 (units 0,1) predicts unit 0; task 1 (units 2,3) predicts unit 3
        ("task-il", [0, 3], [0, 3]),
        # class-il: after task 0 only units 0,1 are seen -> unit 0; after task 1 -> unit 3
        ("class-il", [0, 0], [3, 3]),
    ):
        config = cfg(**{"stream.scenario": scenario, "stream.n_tasks": 2})
        stream = build_stream(config, ds)
        state = new_state(config, stream)
        ctx = task_context(config, stream, state, 0)
        for trained, expected in ((0, expected_after_0), (1, expected_after_1)):
            masks = [stream.eval_mask(trained, j) for j in range(2)]
            preds = [int(logits.masked_fill(~m, float("-inf")).argmax()) for m in masks]
            assert preds == expected, scenario
        ctx.model = FixedModel(logits)
        row, aware = evaluate(ctx, state.strategy, 1)
        # test labels of task 0 are units {0,1}; of task 1 units {2,3} (half of each)
        if scenario == "task-il":
            assert row == [0.5, 0.5] and aware == row
        else:
            assert row == [0.0, 0.5] and aware == [0.5, 0.5]


def test_task_aware_matrix_never_below_task_agnostic(tmp_path):
    from lifelong_kd.cli import main

    out = tmp_path / "run"
    assert main(["run", "split-digits", "--strategy", "naive", "--set", "stream.scenario=class-il",
                 "--set", "train.epochs=2", "--out", str(out), "--quiet"]) == 0
    import json

    result = json.loads((out / "result.json").read_text())
    agnostic = np.array(result["accuracy_matrix"])
    aware = np.array(result["accuracy_matrix_task_aware"])
    assert agnostic.shape == aware.shape == (5, 5)
    assert (aware >= agnostic - 1e-12).all()
    # naive forgets old classes in class-il; knowing the task recovers part of them
    assert (aware[-1, :-1] > agnostic[-1, :-1]).any()
    assert set(result["metrics_task_aware"]) == set(result["metrics"])


def test_normalize_false_feeds_pixels_in_unit_range():
    ds = toy_dataset()
    standard = build_stream(cfg(), ds)
    raw = build_stream(cfg(**{"data.normalize": "false"}), ds)
    assert standard.mean == ds.mean and standard.std == ds.std
    assert raw.mean == (0.0,) and raw.std == (1.0,)
    config = cfg(**{"data.normalize": "false"})
    ctx = task_context(config, raw, new_state(config, raw), 0)
    x = ctx.prepare(raw[0].train_x[:])
    assert torch.allclose(x, raw[0].train_x[:].float() / 255.0)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_class_il_cross_entropy_scopes():
    """seen: the classes of tasks 0..current; current: the task's own; all: every output."""
    ds = toy_dataset()
    stream = build_stream(cfg(**{"stream.scenario": "class-il", "stream.n_tasks": 5}), ds)
    seen, current, every = (stream.train_masks(1, scope) for scope in ("seen", "current", "all"))
    assert seen[0].tolist() == [True] * 4 + [False] * 6
    assert current[1].tolist() == [False, False, True, True] + [False] * 6
    assert every.all()
    with pytest.raises(ConfigError, match="ce_scope.*'every'.*seen.*current.*all"):
        cfg(**{"strategy.ce_scope": "every"})
