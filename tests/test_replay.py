"""The replay strategies on the exemplar memory (``strategies/er.py``, ``strategies/der.py``):
each loss against its formula computed by hand from the same draws, what enters the memory
and when, the memory settings' checks, run identities that the memory section leaves alone,
the memory's costs in result.json, and bit-exact resume with a memory."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch import nn

from lifelong_kd import runs
from lifelong_kd.config import ADDED_KEYS, MEMORY_POLICIES, MemoryConfig, RunConfig, parse_set
from lifelong_kd.data.augment import random_crop_flip
from lifelong_kd.data.streams import build_stream
from lifelong_kd.engine import Batch, TaskContext, TrainData, new_state, task_context
from lifelong_kd.errors import ConfigError
from lifelong_kd.models import Model
from lifelong_kd.presets import build_config
from lifelong_kd.results import (
    LEGACY_ADDED_OPTIONS,
    LEGACY_STRATEGY_OPTIONS,
    NOT_IDENTITY,
    _canonical,
    _digest,
    _flat,
    identity_of,
    run_identity,
)
from lifelong_kd.strategies.der import DER
from lifelong_kd.strategies.er import ER
from lifelong_kd.strategies.features import model_features, model_outputs

from .conftest import toy_dataset as _toy

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ helpers


def toy_dataset(n_classes: int = 6, per_class: int = 8, size: int = 8):
    """Random 8x8 images of 6 classes (3 tasks of 2)."""
    return _toy(n_classes, per_class, size)


def setup(name: str, index: int = 2, scenario: str = "task-il", **sets):
    """(strategy, ctx) for task ``index`` of a 3-task stream of 2 classes each."""
    overrides = {"stream.scenario": scenario, "stream.n_tasks": 3, "stream.classes_per_task": 2,
                 "model.hidden": [8], **sets}
    config = build_config("split-digits", name, overrides)
    stream = build_stream(config, toy_dataset())
    state = new_state(config, stream)
    ctx = task_context(config, stream, state, index)
    ctx.current_train_data = state.strategy.train_data(ctx)
    assert isinstance(state.strategy, ER)
    return state.strategy, ctx


def fill(strategy: ER, ctx: TaskContext, tasks: list[int], logits: bool = False) -> torch.Tensor | None:
    """Offer every training example of ``tasks``, the tasks' examples interleaved, to the
    (reservoir) memory, with seeded random logits when it keeps them; returns those logits."""
    data = TrainData.union([ctx.stream[i] for i in tasks])
    order = torch.arange(len(data)).view(len(tasks), -1).t().flatten()
    data = TrainData(data.x[order], data.y[order], data.t[order])  # type: ignore[arg-type]
    z = torch.randn(len(data), ctx.stream.n_outputs, generator=torch.Generator().manual_seed(3)) \
        if logits else None
    strategy.memory.add(data.x[torch.arange(len(data))], data.y, data.t, z,
                        torch.Generator().manual_seed(1))
    return z


def batch_of(ctx: TaskContext, n: int = 5, augment: bool = False) -> Batch:
    data = ctx.current_train_data
    assert data is not None
    idx = torch.arange(0, 3 * n, 3)  # both classes of the task
    raw = data.x[idx]
    x_in = random_crop_flip(raw, torch.Generator().manual_seed(2)) if augment else raw
    return Batch(ctx.prepare(x_in), data.y[idx], data.t[idx], idx, raw, ctx)


def clone(g: torch.Generator) -> torch.Generator:
    out = torch.Generator()
    out.set_state(g.get_state())
    return out


def hand_ce(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean over the examples of log sum_{k active} exp(z_k) - z_y, the active outputs of an
    example those of its own task's row of ``masks``."""
    terms = []
    for i in range(len(y)):
        active = masks[t[i]]
        assert active[y[i]]
        terms.append(torch.logsumexp(logits[i][active], 0) - logits[i, y[i]])
    return torch.stack(terms).mean()


def snapshot(strategy: ER) -> tuple[torch.Tensor, ...]:
    x, y, t = strategy.memory.examples()
    logits = strategy.memory.logits
    return x.clone(), y.clone(), t.clone(), (logits[:len(y)].clone() if logits is not None
                                             else torch.zeros(0))


# ------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("size", [6, 3])  # 3: the memory holds fewer than a draw (4)
def test_er_loss_is_one_mean_ce_over_batch_and_draw_each_with_its_own_task(size):
    er, ctx = setup("er", **{"memory.size": size, "memory.batch_size": 4})
    fill(er, ctx, [0, 1])
    x_m, y_m, t_m, _ = snapshot(er)
    assert len(y_m) == size and len(set(t_m.tolist())) == 2  # tasks 0 and 1 in memory
    batch = batch_of(ctx)
    g = clone(ctx.generator)
    with torch.no_grad():
        loss = er.train_loss(ctx, batch)
        idx = torch.randperm(size, generator=g)[:4]  # without replacement; all when fewer
        logits = ctx.model(torch.cat([batch.x, ctx.prepare(x_m[idx])]))
    y, t = torch.cat([batch.y, y_m[idx]]), torch.cat([batch.t, t_m[idx]])
    expected = hand_ce(logits, y, t, ctx.train_masks)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # each over its own task's head, not over all outputs
    everything = torch.ones_like(ctx.train_masks)
    assert abs(float(hand_ce(logits, y, t, everything)) - float(loss)) > 1e-3
    # the draw came first, then one uniform number per batch example for the reservoir
    torch.rand(len(batch.y), generator=g, dtype=torch.float64)
    assert torch.equal(g.get_state(), ctx.generator.get_state())


def test_er_with_an_empty_memory_is_the_batch_ce_and_fills_it_after():
    er, ctx = setup("er", index=0, **{"memory.size": 20})
    batch = batch_of(ctx, augment=True)
    with torch.no_grad():
        loss = er.train_loss(ctx, batch)
        expected = hand_ce(ctx.model(batch.x), batch.y, batch.t, ctx.train_masks)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # the batch entered after the step: its non-augmented images, in order (not full yet)
    x, y, t = er.memory.examples()
    assert torch.equal(x, batch.raw) and torch.equal(y, batch.y) and torch.equal(t, batch.t)
    assert not torch.equal(ctx.prepare(batch.raw), batch.x)  # the batch was augmented


@pytest.mark.parametrize(("name", "sets", "two_draws"), [
    ("der", {}, False),
    ("derpp", {}, True),
    ("derpp", {"strategy.independent_draws": False}, False),
])
def test_der_losses_equal_their_formulas(name, sets, two_draws):
    """DER: CE_B + alpha * MSE(f(x'), z') over every output of the draw; DER++: + beta * CE on
    a second, independent draw (Mammoth) or on the same one (Avalanche)."""
    der, ctx = setup(name, **{"memory.size": 6, "memory.batch_size": 4, **sets})
    assert isinstance(der, DER)
    alpha, beta = der.options.alpha, der.options.beta
    assert alpha > 0 and (beta > 0) == (name == "derpp")
    fill(der, ctx, [0, 1], logits=True)
    x_m, y_m, t_m, z_m = snapshot(der)
    batch = batch_of(ctx)
    g = clone(ctx.generator)
    with torch.no_grad():
        loss = der.train_loss(ctx, batch)
        first = torch.randperm(6, generator=g)[:4]
        second = torch.randperm(6, generator=g)[:4] if two_draws else first
        inputs = [batch.x, ctx.prepare(x_m[first])] + ([ctx.prepare(x_m[second])] if two_draws else [])
        logits = ctx.model(torch.cat(inputs))
    n = len(batch.y)
    out_first, out_second = logits[n:n + 4], logits[n + 4:] if two_draws else logits[n:n + 4]
    expected = hand_ce(logits[:n], batch.y, batch.t, ctx.train_masks)
    expected = expected + alpha * ((out_first - z_m[first]) ** 2).mean()
    if beta > 0:
        expected = expected + beta * hand_ce(out_second, y_m[second], t_m[second], ctx.train_masks)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    if two_draws:
        assert not torch.equal(first, second)
    torch.rand(n, generator=g, dtype=torch.float64)  # then the batch is offered
    assert torch.equal(g.get_state(), ctx.generator.get_state())


def test_der_reservoir_records_the_training_outputs_with_the_clean_images():
    """Mammoth's ``add_data(examples=not_aug_inputs, logits=outputs.data)``: the logits the
    step computed on the (augmented) input, stored with the non-augmented image."""
    der, ctx = setup("der", index=0, **{"memory.size": 20})
    batch = batch_of(ctx, augment=True)
    with torch.no_grad():
        der.train_loss(ctx, batch)
        outputs = ctx.model(batch.x)
    x, _, _ = der.memory.examples()
    assert der.memory.logits is not None
    assert torch.equal(x, batch.raw)
    torch.testing.assert_close(der.memory.logits[:5], outputs, rtol=1e-6, atol=1e-6)
    assert not torch.equal(batch.x, ctx.prepare(batch.raw))


class NormModel(Model):
    """An MLP with batch norm and dropout: its outputs differ between train and eval mode."""

    def __init__(self, n_in: int, n_outputs: int):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(n_in, 16), nn.BatchNorm1d(16),
                                      nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(16, n_outputs)


def test_class_balanced_der_records_eval_outputs_on_clean_inputs_at_the_task_end():
    """Avalanche's ``ClassBalancedBufferWithLogits.update`` (supervised/der.py l.89-148,
    ``compute_dataset_logits`` l.36-56): the model after the task, in eval mode, on the
    non-augmented inputs; the model is left in the mode it was in."""
    der, ctx = setup("der-avalanche", index=0, **{"memory.size": 6, "train.augment": True,
                                                   "train.eval_batch_size": 4})
    model = NormModel(64, ctx.stream.n_outputs)
    model.train()
    ctx.model = model
    der.after_task(ctx)
    x, y, _ = der.memory.examples()
    assert len(y) == 6 and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    evaluated = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = evaluated(ctx.prepare(x))
        in_train_mode = copy.deepcopy(model).train()(ctx.prepare(x))
    assert der.memory.logits is not None
    torch.testing.assert_close(der.memory.logits, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(in_train_mode, expected, atol=1e-3)
    assert model.training
    draws = der.draws(ctx)  # replayed from the next task on: all 6, with their logits
    assert len(draws) == 1 and draws[0].logits is not None
    assert draws[0].logits.shape == (6, ctx.stream.n_outputs)


def test_model_outputs_and_features_are_eval_mode_batches_and_empty_keeps_the_width():
    _, ctx = setup("er", index=0, **{"train.eval_batch_size": 2})
    model = NormModel(64, ctx.stream.n_outputs)
    model.train()
    ctx.model = model
    data = ctx.current_train_data
    assert data is not None
    images = data.x[torch.arange(5)]
    outputs, features = model_outputs(ctx)(images), model_features(ctx)(images)
    assert model.training
    evaluated = copy.deepcopy(model).eval()
    with torch.no_grad():
        torch.testing.assert_close(outputs, evaluated(ctx.prepare(images)))
        torch.testing.assert_close(features, evaluated.features(ctx.prepare(images)))
    none = images[:0]
    assert model_outputs(ctx)(none).shape == (0, ctx.stream.n_outputs)
    assert model_features(ctx)(none).shape == (0, 16)


# ------------------------------------------------------------------------ configuration


def test_memory_budget_given_two_ways_is_refused_naming_both():
    with pytest.raises(ConfigError) as err:
        build_config("split-digits", "er", {"memory.size": 10, "memory.per_class": 2})
    assert "`memory.size` = 10" in str(err.value) and "`memory.per_class` = 2" in str(err.value)


def test_per_class_budget_needs_a_per_class_policy():
    with pytest.raises(ConfigError) as err:
        build_config("split-digits", "er", {"memory.size": 0, "memory.per_class": 5})
    assert "memory.per_class" in str(err.value) and "'reservoir'" in str(err.value)
    with pytest.raises(ConfigError, match="task_balanced"):
        build_config("split-digits", "er-avalanche", {"memory.size": 0, "memory.per_class": 5})
    config = build_config("split-digits", "der-avalanche", {"memory.size": 0, "memory.per_class": 5})
    assert config.memory == MemoryConfig(per_class=5, policy="class_balanced")


def test_a_replay_strategy_without_memory_is_refused_naming_memory_size():
    for name in ("er", "der", "derpp-avalanche"):
        with pytest.raises(ConfigError, match=r"memory\.size") as err:
            build_config("split-digits", name, {"memory.size": 0})
        assert f"`{name}`" in str(err.value)


def test_unknown_memory_policy_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        build_config("split-digits", "er", {"memory.policy": "fifo"})
    message = str(err.value)
    assert "`memory.policy` = 'fifo'" in message
    assert all(policy in message for policy in MEMORY_POLICIES)


# ------------------------------------------------------------------------------ identity


def hash_before_memory(config: dict) -> str:
    """The configuration hash as it was computed before the memory section existed
    (results.py before 6282fd3: every flat setting but NOT_IDENTITY, no ADDED_KEYS rule)."""
    return _digest({k: _canonical(v) for k, v in _flat(config).items() if k not in NOT_IDENTITY})


def with_added_keys_at_defaults(config: dict) -> dict:
    """``config`` as today's code writes it: every key added since, at its default."""
    out = copy.deepcopy(config)
    defaults = RunConfig().to_dict()
    for key in ADDED_KEYS:
        section, field = key.split(".")
        out.setdefault(section, {})[field] = defaults[section][field]
    return out


def test_added_keys_default_to_what_earlier_runs_did():
    defaults = RunConfig().to_dict()
    assert {k: defaults[k.split(".")[0]][k.split(".")[1]] for k in ADDED_KEYS} == ADDED_KEYS
    assert set(asdict(MemoryConfig())) <= {k.split(".")[1] for k in ADDED_KEYS if k.startswith("memory.")}


def test_runs_recorded_before_the_memory_section_keep_their_identity():
    # the runs recorded before the memory section existed (later ones store it)
    paths = [p for p in sorted(ROOT.glob("results/paper/*/naive/seed-0/result.json"))
             if "memory" not in json.loads(p.read_text())["config"]]
    assert len(paths) >= 2
    for path in paths:
        result = json.loads(path.read_text())
        config = result["config"]
        before = hash_before_memory(config)
        assert identity_of(result).config_hash == before, path
        today = with_added_keys_at_defaults(config)
        assert run_identity(today).config_hash == before, path
        # a memory setting that changes what runs does change the identity
        today["memory"]["size"] = 200
        assert run_identity(today).config_hash != before, path
    # and a configuration built today without memory settings hashes as it did before
    config = build_config("split-digits", "naive").to_dict()
    old_style = {k: v for k, v in config.items() if k not in ("memory", "teacher")}
    old_style["train"] = {k: v for k, v in config["train"].items()
                          if f"train.{k}" not in ADDED_KEYS}  # the keys added to it since
    # the runs of then recorded every option of the one table but those added since
    old_style["strategy"] = {**{k: v for k, v in LEGACY_STRATEGY_OPTIONS.items()
                                if k not in LEGACY_ADDED_OPTIONS}, **config["strategy"]}
    assert run_identity(config).config_hash == hash_before_memory(old_style)


# ------------------------------------------------------------------ runs: costs, resume

#: Split-Digits (sklearn's digits, no files) with a small memory: a few hundred examples.
SETS = ["data.train_subset=400", "train.epochs=1", "model.hidden=[16]", "memory.size=30",
        "memory.batch_size=8"]


def _execute(config: RunConfig, out: Path, resume: bool = False, stop=None) -> dict:
    """``lifelong-kd run`` (with ``--resume``): what the command calls, without the plots."""
    return runs.execute(runs.RunSpec(config, out), runs.DataProvider(out.parent, progress=False),
                        runs.RunOptions(progress=False, resume=resume, plots=False), stop=stop)


@pytest.mark.parametrize(("name", "bytes_per_example"), [
    ("er", 64 + 8 + 8),                      # reservoir: image, label, task id
    ("der-avalanche", 64 + 8 + 8 + 8 + 40),  # + priority (float64) + 10 logits (float32)
])
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path, name, bytes_per_example):
    config = build_config("split-digits", name, parse_set(SETS))
    whole = _execute(config, tmp_path / "whole")
    assert whole["status"] == "finished"
    memory_costs = {k: whole["costs"][k] for k in ("memory_examples", "memory_bytes")}
    assert memory_costs == {"memory_examples": 30, "memory_bytes": 30 * bytes_per_example}
    assert json.loads((tmp_path / "whole" / "result.json").read_text())["costs"] == whole["costs"]

    out = tmp_path / "resumed"
    interrupted = _execute(config, out, stop=lambda: (out / runs.CHECKPOINT).is_file())
    assert interrupted["status"] == "interrupted" and interrupted["tasks_finished"] == 1
    saved = torch.load(out / runs.CHECKPOINT, weights_only=True)
    memory = saved["state"]["strategy"]["memory"]
    assert memory["seen"] > 0 and len(memory["y"]) == 30  # the checkpoint holds a memory
    resumed = _execute(config, out, resume=True)
    assert resumed["status"] == "finished" and resumed["timing"]["resumed_from_task"] == 1
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    measured = ("latency_batch_1", "latency_batch_256")  # timings: the rest is exact
    for key in ("memory_examples", "memory_bytes", "device"):
        assert resumed["costs"][key] == whole["costs"][key]
    assert ({k: v for k, v in resumed["costs"]["model"].items() if k not in measured}
            == {k: v for k, v in whole["costs"]["model"].items() if k not in measured})
