"""BiC (strategies/bic.py): the validation split, the stage-1 loss, the bias correction and
its stage, prediction, checks and resume, on a tiny synthetic class-il stream."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from lifelong_kd.config import MemoryConfig
from lifelong_kd.data.streams import build_stream
from lifelong_kd.engine import Batch, new_state, restore_state, run_phase, task_context, train_stream
from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config
from lifelong_kd.strategies import Teacher
from lifelong_kd.strategies.bic import BiC, split_sizes

from .conftest import toy_dataset as _toy

#: The options of the bic preset (Wu et al. 2019 / FACIL), set here so that the tests do not
#: depend on the preset table's defaults.
BIC = {"strategy.distill_loss": "soft_ce", "strategy.temperature": 2.0,
       "strategy.t2_scaling": False, "strategy.logits": "old", "strategy.alpha": 1.0,
       "strategy.alpha_schedule": "bic", "strategy.ce_scope": "seen",
       "strategy.warmup_epochs": 0, "memory.policy": "random"}


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_dataset(per_class: int = 20):
    """6 classes of random 4x4 images (3 tasks of 2 classes)."""
    return _toy(6, per_class, 4)


def config_of(**sets):
    overrides = {"stream.scenario": "class-il", "stream.n_tasks": 3, "stream.classes_per_task": 2,
                 "model.hidden": [8], "train.epochs": 1, "train.batch_size": 16,
                 "memory.size": 40, **BIC, **sets}
    return build_config("split-digits", "bic", overrides, seed=0)


def setup(index: int = 0, per_class: int = 20, **sets):
    config = config_of(**sets)
    stream = build_stream(config, toy_dataset(per_class))
    state = new_state(config, stream)
    return config, stream, state


def start(config, stream, state, index):
    ctx = task_context(config, stream, state, index)
    ctx.current_train_data = state.strategy.train_data(ctx)
    state.strategy.before_task(ctx)
    return ctx


def finish(state, ctx):
    for phase in state.strategy.phases(ctx):
        run_phase(ctx, state, phase, False, None)
    state.strategy.after_task(ctx)


def batch(ctx, data, idx) -> Batch:
    raw = data.x[idx]
    return Batch(ctx.prepare(raw), data.y[idx], data.t[idx], idx, raw, ctx)


def images(x) -> set[bytes]:
    return {bytes(row.numpy().tobytes()) for row in x}


# -------------------------------------------------------------------------- the split


@pytest.mark.parametrize(("memory", "n_seen", "expected"), [
    (MemoryConfig(size=2000), 2, (100, 900)),   # FACIL on Split-MNIST: floor(2000/2) = 1000
    (MemoryConfig(size=2000), 4, (50, 450)),
    (MemoryConfig(size=2000), 10, (20, 180)),
    (MemoryConfig(size=2000), 3, (67, 599)),    # floor(2000/3) = 666, ceil(66.6) = 67
    (MemoryConfig(size=3000), 10, (30, 270)),   # 0.1 * 300 = 30.000000000000004 -> 30
    (MemoryConfig(per_class=20), 7, (2, 18)),   # a growing memory: m = per_class
])
def test_split_sizes_follow_facil(memory, n_seen, expected):
    assert split_sizes(memory, 0.1, n_seen) == expected


def test_validation_split_sizes_and_disjointness_over_three_tasks():
    config, stream, state = setup()
    bic = state.strategy
    assert isinstance(bic, BiC)
    seen_validation: set[bytes] = set()
    # (validation per class, training exemplars per class) with 2, 4, 6 classes and 40 in all
    for index, (n_val, n_trn) in enumerate([(2, 18), (1, 9), (1, 5)]):
        ctx = start(config, stream, state, index)
        task = stream[index]
        split = bic._split
        assert split is not None
        val, train = split.validation, ctx.current_train_data
        assert train is not None
        # the validation set: n_val of every class seen, each once
        assert torch.bincount(val.y, minlength=6).tolist()[: 2 * index + 2] == [n_val] * (2 * index + 2)
        # the task's examples minus the held-out ones, then the memory's
        n_memory = 0 if index == 0 else 2 * index * [18, 9][index - 1]
        assert len(train) == len(task.train_y) - 2 * n_val + n_memory
        assert (train.t[: len(split.train)] == index).all()
        # no validation example is ever trained on (old ones were held out when new)
        trained = images(train.x[:])
        validation = images(val.x[:])
        assert not trained & validation
        assert images(val.x[:][val.t < index]) <= seen_validation  # old: kept from before
        seen_validation |= validation
        finish(state, ctx)
        assert torch.bincount(bic.memory.y, minlength=6).tolist()[: 2 * index + 2] == \
            [n_trn] * (2 * index + 2)
        assert not images(bic.memory.x.cpu()) & seen_validation
        assert bic.costs()["memory_examples"] == (n_trn + n_val) * (2 * index + 2)


def test_too_small_a_memory_is_a_config_error():
    # 3 exemplars for the 6 classes of the stream: 0 each by the last task
    with pytest.raises(ConfigError, match=r"`memory.size` = 3 cannot hold one example of each "
                                          r"of the 6 classes of the stream that `bic` keeps"):
        setup(**{"memory.size": 3})


# ---------------------------------------------------------------------- the correction


def test_correction_is_alpha_o_plus_beta_on_each_tasks_classes_only():
    config, stream, state = setup()
    bic = state.strategy
    ctx = start(config, stream, state, 2)  # layers for tasks 0, 1, 2
    with torch.no_grad():
        bic.alphas[1].fill_(0.5)
        bic.betas[1].fill_(0.3)
        bic.alphas[2].fill_(2.0)
        bic.betas[2].fill_(-1.0)
    o = torch.randn(5, stream.n_outputs, generator=torch.Generator().manual_seed(0))
    owner = bic.owner_of_units(ctx)
    q = bic.correct(o, owner, 3)
    assert torch.equal(q[:, :2], o[:, :2])                  # task 0: (1, 0)
    assert torch.equal(q[:, 2:4], 0.5 * o[:, 2:4] + 0.3)    # task 1
    assert torch.equal(q[:, 4:6], 2.0 * o[:, 4:6] + -1.0)   # task 2
    assert torch.equal(q[:, 6:], o[:, 6:])                  # units of no task
    # only the first n_tasks pairs apply; only the live pair gets a gradient
    assert torch.equal(bic.correct(o, owner, 2)[:, 4:6], o[:, 4:6])
    bic.correct(o, owner, 3, live=2).sum().backward()
    assert bic.alphas[2].grad is not None and bic.alphas[1].grad is None
    assert torch.allclose(bic.alphas[2].grad, o[:, 4:6].sum())
    assert float(bic.betas[2].grad) == 10.0                 # 5 examples x 2 units
    # prediction applies every pair
    x = ctx.prepare(stream[0].test_x[:5])
    with torch.inference_mode():
        logits = ctx.model(x)
        assert torch.equal(bic.predict(ctx, x), bic.correct(logits, owner, 3))


def test_stage_one_loss_is_weighted_ce_plus_kd_on_corrected_logits():
    config, stream, state = setup()
    bic = state.strategy
    ctx = start(config, stream, state, 2)
    torch.manual_seed(1)
    teacher = copy.deepcopy(ctx.model)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.5 * torch.randn_like(p))
        bic.alphas[1].fill_(1.3)
        bic.betas[1].fill_(-0.2)
    bic.teacher = Teacher(teacher, config.model, stream.input_shape, stream.n_outputs)
    bic.before_task(ctx)
    data = ctx.current_train_data
    b = batch(ctx, data, torch.arange(8))
    with torch.no_grad():
        loss = bic.train_loss(ctx, b)
        o, o_t = ctx.model(b.x), teacher(b.x)
    q, q_t = o.clone(), o_t.clone()
    q[:, 2:4] = 1.3 * o[:, 2:4] - 0.2      # task 1's correction, on student and teacher
    q_t[:, 2:4] = 1.3 * o_t[:, 2:4] - 0.2
    lam = 4 / 6                            # old classes / classes seen
    ce = F.cross_entropy(q[:, :6], b.y)    # over the classes seen
    T = 2.0
    kd = -(F.softmax(q_t[:, :4] / T, 1) * F.log_softmax(q[:, :4] / T, 1)).sum(1).mean()
    assert float(loss) == pytest.approx(float((1 - lam) * ce + lam * kd), abs=1e-6)
    assert float(kd) > 0


def test_stage_two_trains_only_the_tasks_alpha_and_beta():
    config, stream, state = setup(**{"strategy.bias_epochs": 3, "train.lr": 0.5})
    bic = state.strategy
    finish(state, start(config, stream, state, 0))
    ctx = start(config, stream, state, 1)
    phases = bic.phases(ctx)
    assert [p.name for p in phases] == ["train", "bias correction"]
    main, stage2 = phases
    assert not {id(p) for p in main.parameters} & {id(p) for p in bic.alphas + bic.betas}
    assert stage2.parameters == [bic.alphas[1], bic.betas[1]]
    assert stage2.data is bic._split.validation and len(stage2.data) == 4
    assert (stage2.epochs, stage2.steps) == (3, 3)          # 4 examples, batches of 16
    # the engine checks the strategy's own weights: the pairs are among its parameters
    assert all(any(p is q for q in bic.parameters(ctx.model)) for p in bic.alphas + bic.betas)
    run_phase(ctx, state, main, False, None)
    # the loss of stage 2, by hand on the whole validation set
    val = stage2.data
    b = batch(ctx, val, torch.arange(len(val)))
    with torch.no_grad():
        bic.alphas[1].fill_(0.8)
        bic.betas[1].fill_(0.4)
        o = ctx.model.eval()(b.x)
        q = o.clone()
        q[:, 2:4] = 0.8 * o[:, 2:4] + 0.4
        expected = F.cross_entropy(q[:, :4], b.y) + 0.1 * 0.4**2 / 2
        assert float(bic.bias_loss(ctx, b)) == pytest.approx(float(expected), abs=1e-6)
        bic.alphas[1].fill_(1.0)
        bic.betas[1].fill_(0.0)
    model_before = copy.deepcopy(ctx.model.state_dict())
    run_phase(ctx, state, stage2, False, None)
    for key, value in ctx.model.state_dict().items():
        assert torch.equal(value, model_before[key]), key
    assert (float(bic.alphas[1].detach()), float(bic.betas[1].detach())) != (1.0, 0.0)
    assert (float(bic.alphas[0].detach()), float(bic.betas[0].detach())) == (1.0, 0.0)  # task 0


def test_first_task_has_no_bias_stage():
    config, stream, state = setup()
    ctx = start(config, stream, state, 0)
    assert [p.name for p in state.strategy.phases(ctx)] == ["train"]


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(("key", "value", "match"), [
    ("strategy.validation", 0.0, r"validation.*\(0, 1\)"),
    ("strategy.validation", 1.0, r"validation.*\(0, 1\)"),
    ("strategy.validation", -0.5, r"validation.*\(0, 1\)"),
    ("strategy.bias_epochs", 0, r"bias_epochs.*\[1, 100000\]"),
])
def test_bad_validation_and_bias_epochs_are_config_errors(key, value, match):
    with pytest.raises(ConfigError, match=match):
        config_of(**{key: value})


@pytest.mark.parametrize("policy", ["reservoir", "task_balanced"])
def test_bic_refuses_a_memory_not_chosen_per_class(policy):
    config = config_of()
    with pytest.raises(ConfigError, match="class_balanced, herding, random"):
        BiC(config.strategy, MemoryConfig(size=40, policy=policy))


def test_bic_is_class_il_only():
    with pytest.raises(ConfigError, match="class-il"):
        config_of(**{"stream.scenario": "task-il"})


# --------------------------------------------------------------------------- resume


def test_resume_after_a_task_gives_the_same_matrix_and_corrections():
    config = config_of(**{"memory.size": 24, "strategy.bias_epochs": 2, "train.lr": 0.1})
    stream = build_stream(config, toy_dataset(per_class=8))
    full = train_stream(config, stream, progress=False)
    saved: dict = {}

    def keep_second(st) -> None:
        if st.next_task == 2:
            buffer = io.BytesIO()
            torch.save(st.checkpoint(), buffer)
            saved["bytes"] = buffer.getvalue()

    train_stream(config, stream, progress=False, on_task_end=keep_second)
    checkpoint = torch.load(io.BytesIO(saved["bytes"]), weights_only=True)
    assert set(checkpoint["strategy"]) == {"teacher", "memory", "validation", "alpha", "beta"}
    resumed = train_stream(config, stream, restore_state(config, stream, checkpoint),
                           progress=False)
    assert resumed.rows == full.rows
    bic_full, bic_resumed = full.strategy, resumed.strategy
    assert torch.equal(torch.stack(bic_resumed.alphas), torch.stack(bic_full.alphas))
    assert torch.equal(torch.stack(bic_resumed.betas), torch.stack(bic_full.betas))
    assert torch.equal(bic_resumed.memory.x, bic_full.memory.x)
    assert torch.equal(bic_resumed.validation_x, bic_full.validation_x)
