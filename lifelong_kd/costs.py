"""What a model costs: parameters, bytes, FLOPs per example and inference latency per example.

Every model of a run (the student, a teacher) is measured the same way, by :func:`model_costs`:

- ``parameters``: sum of ``p.numel()`` over the module's parameters (each counted once).
  ``nn.Linear(i, o)`` has ``i * o + o``; ``nn.Conv2d(c_in, c_out, k)`` has
  ``c_in * c_out * k * k + c_out`` (the ``+ c_out`` only with a bias). MLP 784-400-400-10:
  784*400+400 + 400*400+400 + 400*10+10 = 478,410.
- ``bytes``: ``numel * element_size`` summed over parameters and buffers (batch norm's running
  statistics and its int64 batch counter count too); 4 bytes per float32 value.
- ``flops_per_example``: the floating-point operations of one forward call, as PyTorch's own
  counter ``torch.utils.flop_counter.FlopCounterMode`` counts them, divided by the batch size.
  It counts 2 FLOPs per multiply-add: ``nn.Linear(i, o)`` is ``2 * i * o`` per example (the
  ``addmm``/``mm`` of the weight; the bias addition is not counted), a convolution is
  ``2 * c_in * c_out * k * k * h_out * w_out`` per example (its bias not counted either).
  MLP 784-400-400-10: 2 * (784*400 + 400*400 + 400*10) = 955,200 FLOPs = 477,600 multiply-adds.
- ``latency_batch_1`` and ``latency_batch_256``: seconds per example of one call on a batch of
  1 and of 256 examples, the median of repeated timings (``time.perf_counter``, the device
  synchronised around each call), on the device of the inputs.

What the counter counts, exactly: it has formulas only for matrix products (``aten.mm``,
``addmm``, ``bmm``, ``baddbmm``, ``_scaled_mm``), convolutions (``aten.convolution`` and its
variants, with their backward) and the scaled-dot-product / flex attention kernels. Every other
operation counts 0 FLOPs: ReLU, max- and average-pooling, batch norm, softmax, elementwise
additions and multiplications, reductions, and the bias additions of ``addmm`` and of
convolutions (``tests/test_costs.py`` checks these). The FLOPs are therefore those of the
products that dominate a network, not of every arithmetic operation; models that differ only in
their non-linearities or normalisation get the same count.

Reference: ``torch/utils/flop_counter.py`` (PyTorch >= 2.1): ``FlopCounterMode``,
``mm_flop`` (``2 * m * n * k``, "2 flops per multiply-add") and ``conv_flop_count``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

#: Examples of the larger latency batch (``latency_batch_256``).
LARGE_BATCH = 256
#: At most this many examples are run under the FLOP counter (the count is per example).
FLOP_EXAMPLES = 8


class _UnguardedMode(flop_counter._FlopCounterMode):
    """The dispatch mode behind :class:`FlopCounterMode`, its ``__torch_dispatch__`` without
    the ``torch._disable_dynamo`` guard that every ``TorchDispatchMode`` subclass gets
    (torch/utils/_python_dispatch.py, ``__init_subclass__``): the guard imports
    ``torch._dynamo`` on its first call, about 2 s of CPU here, and does nothing else outside
    a compiled function (the counter runs eagerly)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    __torch_dispatch__ = inspect.unwrap(flop_counter._FlopCounterMode.__torch_dispatch__)


class EagerFlopCounter(FlopCounterMode):
    """:class:`torch.utils.flop_counter.FlopCounterMode`, the same formulas and totals,
    without importing ``torch._dynamo`` (:class:`_UnguardedMode`); ``__enter__`` is
    FlopCounterMode's own with that mode."""

    def __enter__(self) -> EagerFlopCounter:
        self.flop_counts.clear()
        self.mod_tracker.__enter__()
        self.mode = _UnguardedMode(self)
        self.mode.__enter__()
        return self


def parameters(module: nn.Module) -> int:
    """Number of parameters: sum of ``p.numel()`` over ``module.parameters()`` (a shared
    parameter counted once). ``nn.Linear(i, o)``: ``i * o + o``."""
    return sum(p.numel() for p in module.parameters())


def model_bytes(module: nn.Module) -> int:
    """Bytes of the module's parameters and buffers: sum of ``t.numel() * t.element_size()``
    (a float32 value is 4 bytes; batch norm's running mean, variance and int64 batch counter
    are buffers and count)."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def flops_per_example(fn: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """FLOPs of ``fn(x)`` per example: the total that ``torch.utils.flop_counter.FlopCounterMode``
    counts over one call (under ``torch.inference_mode``, and inside ``torch.random.fork_rng`` so
    that the global random generators are as they were afterwards), divided by ``x.shape[0]``
    and rounded to the nearest integer (exact for a model that treats each example alike).

    2 FLOPs per multiply-add; only matrix products, convolutions and attention are counted (see
    the module's docstring). ``nn.Linear(i, o)``: ``2 * i * o``; a ``k x k`` convolution:
    ``2 * c_in * c_out * k * k * h_out * w_out``.
    """
    n = x.shape[0]
    if n < 1:
        raise ValueError("flops_per_example needs at least one example")
    counter = EagerFlopCounter(display=False)
    with torch.random.fork_rng(devices=_gpus(x)), torch.inference_mode(), counter:
        fn(x)
    total = counter.get_total_flops()
    return (total + n // 2) // n


def _gpus(x: Tensor) -> list[torch.device]:
    """The GPU whose random generator ``torch.random.fork_rng`` must keep besides the CPU's."""
    return [x.device] if x.device.type == "cuda" else []


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA and MPS run asynchronously; CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def latency_per_example(
    fn: Callable[[Tensor], Tensor], x: Tensor, *, repeats: int = 5, budget_seconds: float = 1.0
) -> float:
    """Seconds per example of one call ``fn(x)``: the median of repeated timings divided by
    ``x.shape[0]``.

    One untimed warm-up call first; then each call is timed with ``time.perf_counter`` (the
    device synchronised before and after it when it is a GPU), at least 3 and at most
    ``repeats`` times, stopping after the 3rd or any later timing once the timed calls together
    have taken ``budget_seconds``. Runs under ``torch.inference_mode``, and inside
    ``torch.random.fork_rng``: the global random generators (CPU and the input's GPU) are as
    they were afterwards, even if ``fn`` draws from them.
    """
    if repeats < 3:
        raise ValueError(f"latency_per_example takes at least 3 timings, not repeats={repeats}")
    n = x.shape[0]
    if n < 1:
        raise ValueError("latency_per_example needs at least one example")
    times: list[float] = []
    with torch.random.fork_rng(devices=_gpus(x)), torch.inference_mode():
        fn(x)
        _synchronize(x.device)
        while len(times) < repeats:
            start = time.perf_counter()
            fn(x)
            _synchronize(x.device)
            times.append(time.perf_counter() - start)
            if len(times) >= 3 and sum(times) >= budget_seconds:
                break
    return statistics.median(times) / n


def _batch(x: Tensor, size: int) -> Tensor:
    """``size`` examples of ``x``: its first ``size``, or ``x`` repeated along dim 0 and cut."""
    if x.shape[0] < size:
        x = x.repeat(math.ceil(size / x.shape[0]), *([1] * (x.dim() - 1)))
    return x[:size]


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` inside, then every submodule's own train/eval flag as it was."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def model_costs(
    name: str,
    module: nn.Module,
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    latency: bool = True,
    repeats: int = 5,
    budget_seconds: float = 1.0,
) -> dict[str, Any]:
    """The costs of one model: ``{"name", "parameters", "bytes", "flops_per_example",
    "latency_batch_1", "latency_batch_256"}``.

    ``module`` is what is counted (its parameters and buffers), ``fn`` what is run (the model's
    prediction, e.g. ``module`` itself or a strategy's ``predict``) on inputs like ``x`` (on the
    device to measure). FLOPs are counted on the first ``min(len(x), 8)`` examples and divided;
    latencies (seconds per example, :func:`latency_per_example`) are timed on ``x[:1]`` and on
    256 examples (``x`` repeated along dim 0 when it has fewer), or None when ``latency`` is
    False. The module is measured in eval mode, and every submodule's train/eval mode is
    restored afterwards.
    """
    with eval_mode(module):
        flops = flops_per_example(fn, x[:FLOP_EXAMPLES])
        one = large = None
        if latency:
            options = {"repeats": repeats, "budget_seconds": budget_seconds}
            one = latency_per_example(fn, x[:1], **options)
            large = latency_per_example(fn, _batch(x, LARGE_BATCH), **options)
    return {
        "name": name,
        "parameters": parameters(module),
        "bytes": model_bytes(module),
        "flops_per_example": flops,
        "latency_batch_1": one,
        "latency_batch_256": large,
    }
