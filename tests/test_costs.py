"""costs.py: parameters, bytes and FLOPs against hand computations; latency's timing protocol,
its random generators and the module's train/eval mode."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong_kd import costs
from lifelong_kd.config import ModelConfig
from lifelong_kd.models import MLP, MODELS, ConvNet

pytestmark = pytest.mark.usefixtures("one_thread")

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)


def test_mlp_784_400_400_10() -> None:
    model = MLP(MNIST, (400, 400), 10)
    # Linear(i, o): i*o + o parameters, 2*i*o FLOPs per example.
    assert costs.parameters(model) == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10 == 478_410
    assert costs.model_bytes(model) == 478_410 * 4
    flops = costs.flops_per_example(model, torch.zeros(1, *MNIST))
    assert flops == 2 * (784 * 400 + 400 * 400 + 400 * 10) == 955_200
    assert flops // 2 == 477_600  # multiply-adds: the counter counts 2 FLOPs for each


def test_convnet_32_64_by_hand() -> None:
    model = ConvNet(CIFAR, (32, 64), 10)
    # 3x3 convs with padding 1 (32x32 and, after one 2x2 pool, 16x16 outputs), then
    # 64 * 8 * 8 -> 256 -> 10; 2 FLOPs per multiply-add, biases not counted.
    conv1 = 2 * 3 * 32 * 9 * 32 * 32
    conv2 = 2 * 32 * 64 * 9 * 16 * 16
    fc = 2 * (64 * 8 * 8) * 256
    head = 2 * 256 * 10
    assert costs.flops_per_example(model, torch.zeros(2, *CIFAR)) == conv1 + conv2 + fc + head \
        == 13_308_928
    assert costs.parameters(model) == (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) \
        + (64 * 8 * 8 * 256 + 256) + (256 * 10 + 10)


def test_biases_are_not_counted() -> None:
    x = torch.zeros(1, 3, 8, 8)
    with_bias, without = nn.Conv2d(3, 5, 3), nn.Conv2d(3, 5, 3, bias=False)
    assert costs.flops_per_example(with_bias, x) == costs.flops_per_example(without, x) \
        == 2 * 3 * 5 * 9 * 6 * 6
    assert costs.flops_per_example(nn.Linear(7, 3), torch.zeros(2, 7)) == 2 * 7 * 3


def test_only_products_and_convolutions_are_counted() -> None:
    """What the module's docstring says the counter leaves out counts 0 FLOPs."""
    x = torch.randn(2, 8, 4, 4)

    def everything_else(t: torch.Tensor) -> torch.Tensor:
        out = F.relu(t) + F.max_pool2d(t, 2).sum() + F.avg_pool2d(t, 2).sum()
        out = out + F.adaptive_avg_pool2d(t, 1) + F.softmax(t, dim=1) * t
        return out + F.batch_norm(t, torch.zeros(8), torch.ones(8), training=False)

    assert costs.flops_per_example(everything_else, x) == 0
    a = torch.randn(2, 3, 4)
    assert costs.flops_per_example(lambda t: t @ torch.ones(4, 5), a) == 2 * 3 * 4 * 5  # bmm


def test_flops_do_not_depend_on_the_batch() -> None:
    model = MLP(MNIST, (16,), 10)
    one = costs.flops_per_example(model, torch.zeros(1, *MNIST))
    assert one == 2 * (784 * 16 + 16 * 10)
    assert costs.flops_per_example(model, torch.zeros(4, *MNIST)) == one


def test_bytes_count_buffers() -> None:
    bn = nn.BatchNorm1d(5)  # weight, bias, running mean and var (float32), batch counter (int64)
    assert costs.parameters(bn) == 10
    assert costs.model_bytes(bn) == 4 * 5 * 4 + 8


def _scripted_clock(monkeypatch: pytest.MonkeyPatch, ticks: list[float]) -> None:
    clock = iter(ticks)
    monkeypatch.setattr(costs, "time", SimpleNamespace(perf_counter=lambda: next(clock)))


def test_latency_is_the_median_per_example(monkeypatch: pytest.MonkeyPatch) -> None:
    # start/end pairs: durations 1, 2, 7 -> median 2 s for a batch of 2 -> 1 s per example; the
    # three timings take 10 s > budget, so the 4th and 5th are not taken.
    _scripted_clock(monkeypatch, [0.0, 1.0, 10.0, 12.0, 20.0, 27.0])
    calls: list[int] = []
    x = torch.zeros(2, 3)
    assert costs.latency_per_example(lambda t: calls.append(1) or t, x, budget_seconds=5.0) == 1.0
    assert len(calls) == 1 + 3  # a warm-up, then the timed calls


def test_latency_timings_stop_at_repeats_or_budget() -> None:
    calls: list[int] = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return t

    x = torch.zeros(1, 3)
    assert costs.latency_per_example(fn, x, repeats=5, budget_seconds=1e9) >= 0
    assert len(calls) == 1 + 5
    calls.clear()
    costs.latency_per_example(fn, x, repeats=5, budget_seconds=0.0)
    assert len(calls) == 1 + 3
    with pytest.raises(ValueError, match="at least 3"):
        costs.latency_per_example(fn, x, repeats=2)


def test_latency_leaves_the_random_generator_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()  # draws at every call
    torch.manual_seed(0)
    before = torch.get_rng_state()
    costs.flops_per_example(model, torch.ones(3, 4))
    assert torch.equal(torch.get_rng_state(), before)
    costs.latency_per_example(model, torch.ones(3, 4), repeats=3, budget_seconds=0.0)
    assert torch.equal(torch.get_rng_state(), before)
    costs.model_costs("mlp", model, model, torch.ones(3, 4), repeats=3, budget_seconds=0.0)
    assert torch.equal(torch.get_rng_state(), before)


def test_mode_is_eval_during_and_restored_after() -> None:
    model = MLP(MNIST, (8,), 10).train()
    model.head.eval()  # mixed modes, as a student holding a frozen part
    seen: list[bool] = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        seen.append(model.training or model.backbone.training)
        return model(t)

    costs.model_costs("mlp", model, fn, torch.zeros(2, *MNIST), repeats=3, budget_seconds=0.0)
    assert seen and not any(seen)
    assert model.training and model.backbone.training and not model.head.training


def test_batch_256_means_256_examples() -> None:
    sizes: list[int] = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.shape[0])
        return t

    result = costs.model_costs("id", nn.Identity(), fn, torch.zeros(3, 2), repeats=3,
                               budget_seconds=0.0)
    # flops on min(3, 8) = 3 examples, then warm-up + 3 timings at 1 and at 256 examples
    assert sizes == [3] + [1] * 4 + [256] * 4
    assert result == {"name": "id", "parameters": 0, "bytes": 0, "flops_per_example": 0,
                      "latency_batch_1": result["latency_batch_1"],
                      "latency_batch_256": result["latency_batch_256"]}


def test_no_latency() -> None:
    model = MLP(MNIST, (8,), 10)
    result = costs.model_costs("mlp", model, model, torch.zeros(2, *MNIST), latency=False)
    assert result == {"name": "mlp", "parameters": 784 * 8 + 8 + 8 * 10 + 10,
                      "bytes": 4 * (784 * 8 + 8 + 8 * 10 + 10),
                      "flops_per_example": 2 * (784 * 8 + 8 * 10),
                      "latency_batch_1": None, "latency_batch_256": None}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_of_the_zoo(name: str) -> None:
    config = ModelConfig(name=name, nf=4) if name == "resnet18" else ModelConfig(name=name)
    shape = MNIST if name == "mlp" else CIFAR
    torch.manual_seed(0)
    model = MODELS[name](config, shape, 10)
    x = torch.rand(2, *shape).contiguous(memory_format=torch.channels_last)
    result = costs.model_costs(name, model, model, x, repeats=3, budget_seconds=0.0)
    assert result["name"] == name
    assert result["parameters"] > 0 and result["bytes"] >= 4 * result["parameters"]
    assert result["flops_per_example"] > 0
    for key in ("latency_batch_1", "latency_batch_256"):
        assert result[key] > 0 and math.isfinite(result[key])


def test_the_eager_counter_counts_as_torchs_own() -> None:
    """EagerFlopCounter (no torch._dynamo import) gives FlopCounterMode's totals and per-op
    counts, on a model with products, convolutions and a backward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    net = ConvNet((3, 8, 8), (4, 8), 5)
    x = torch.randn(3, 3, 8, 8)
    counts = []
    for counter in (FlopCounterMode(display=False), costs.EagerFlopCounter(display=False)):
        with counter:
            net(x).sum().backward()
        counts.append((counter.get_total_flops(), dict(counter.get_flop_counts()["Global"])))
    assert counts[0] == counts[1]
    assert counts[0][0] > 0
