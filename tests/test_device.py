"""Issue 16, part 5: the engine's accelerator path (``train.device = cuda``), tested on the CPU.

No GPU here, so :class:`DeviceEmulation` plays one: with ``streams.FORCE_DATA_ON_DEVICE`` the engine
takes its accelerator path on the CPU, for the device ``cpu:0`` (a CPU tensor like any other,
but a distinct ``torch.device``, so that every copy "to the device" is seen), and the
emulation, a ``TorchFunctionMode``, follows which tensors would live on the device (those
copied there or made there, and everything computed from them: by storage, so views and
``param.data`` follow) and records what a GPU would make the host wait for (a value read back:
``item``, ``tolist``, ``bool``, ``cpu``...; an output of data-dependent size: ``nonzero``,
``unique``, a boolean mask; a blocking copy from the host: ``.to(device)`` without
``non_blocking``, host indices into a device tensor, ``torch.tensor(..., device=...)``), the
copies from the host, and what a GPU would refuse (host and device tensors in one operation).

Each built-in strategy family runs a short stream that way and must give the CPU's matrices bit
for bit, read the device inside its step loop only for the loss checks (``LossWatch``: every 50
steps and at a phase's end), copy from the host inside that loop only indices and draws (never
images: batches are gathered from the data placed on the device once), and never mix devices.
"""

from __future__ import annotations

import dataclasses
import io
import math
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from lifelong_kd import engine
from lifelong_kd.data import streams
from lifelong_kd.data.sources import Dataset, make_dataset
from lifelong_kd.data.streams import (
    Images,
    ImageUnion,
    Permute,
    Rotate,
    Stream,
    Task,
    build_stream,
    image_storage_bytes,
    to_device,
)
from lifelong_kd.engine import Diverged, TaskContext, evaluate, place_stream, restore_state, train_stream
from lifelong_kd.presets import build_config
from lifelong_kd.strategies import Strategy
from lifelong_kd.strategies.loop import LossWatch

pytestmark = pytest.mark.usefixtures("one_thread")

HOST = torch.device("cpu")
#: The emulated accelerator: a CPU device with an index, which ``torch.device`` tells apart.
DEVICE = torch.device("cpu", 0)

T = torch.Tensor
_DEVICE_OF = T.device.__get__  # type: ignore[attr-defined]
_GRAD_OF = T.grad.__get__  # type: ignore[attr-defined]
#: Reading a value on the host: waits for the device.
READS = {T.item, T.tolist, T.__bool__, T.__int__, T.__float__, T.__index__, T.__format__,
         T.__repr__, T.__complex__}
#: What a GPU cannot do at all on one of its tensors (numpy has no view of device memory).
HOST_ONLY = {T.numpy, T.__array__}
#: Outputs whose size depends on the data: the host waits to know it.
SIZED = {torch.nonzero, T.nonzero, torch.argwhere, T.argwhere, torch.unique, T.unique,
         torch.unique_consecutive, T.unique_consecutive, torch.masked_select, T.masked_select,
         torch.repeat_interleave, T.repeat_interleave}
MOVES = {T.to, T.cpu, T.cuda}
INDEXING = {T.__getitem__, T.__setitem__}
#: Calls that may take tensors of both sides: copies, Module._apply's check, deepcopy's memo.
EITHER = {T.copy_, T.__deepcopy__, torch._has_compatible_shallow_copy_type}


def _tensors(*trees: Any) -> list[torch.Tensor]:
    """The tensors among ``trees`` and in their lists, tuples and dicts (two levels down:
    a fused optimiser's lists of tensors), without pytree's cost on every call."""
    out: list[torch.Tensor] = []
    for tree in trees:
        if isinstance(tree, torch.Tensor):
            out.append(tree)
        elif isinstance(tree, (list, tuple)):
            for item in tree:
                if isinstance(item, torch.Tensor):
                    out.append(item)
                elif isinstance(item, (list, tuple)):
                    out.extend(t for t in item if isinstance(t, torch.Tensor))
        elif isinstance(tree, dict):
            out.extend(_tensors(*tree.values()))
    return out


class DeviceEmulation(TorchFunctionMode):
    """A GPU played on the CPU (see the module docstring). ``counting`` (set around the
    engine's step loop) decides which waits and copies are recorded; devices mixed are
    recorded always."""

    def __init__(self) -> None:
        super().__init__()
        #: storage (its address; an empty tensor by id) -> a tensor that keeps it alive
        self.placed: dict[Any, torch.Tensor] = {}
        self.counting = False
        #: step loops run (phases) while emulated
        self.loops = 0
        self.waits: list[str] = []
        self.mixed: list[str] = []
        #: (dtype, shape, inside the step loop) of every copy from the host to the device
        self.copies: list[tuple[torch.dtype, tuple[int, ...], bool]] = []

    # ------------------------------------------------------------------- residency
    @staticmethod
    def _key(t: torch.Tensor) -> Any:
        if t.numel() == 0:
            return ("empty", id(t))
        return t.untyped_storage().data_ptr()

    def on(self, t: torch.Tensor) -> bool:
        return self._key(t) in self.placed

    def place(self, tree: Any) -> None:
        for t in _tensors(tree):
            self.placed[self._key(t)] = t

    def _record(self, into: list[str], what: str, always: bool = False) -> None:
        if not (self.counting or always):
            return
        frames = [f for f in traceback.extract_stack() if "lifelong_kd" in f.filename]
        where = (f"{frames[-1].filename.split('lifelong_kd/')[-1]}:{frames[-1].name}"
                 if frames else "?")
        into.append(f"{what} in {where}")

    # -------------------------------------------------------------------- dispatch
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func == _DEVICE_OF:
            return DEVICE if self.on(args[0]) else func(*args, **kwargs)
        if func == _GRAD_OF:  # autograd makes a gradient where its parameter is
            out = func(*args, **kwargs)
            if out is not None and self.on(args[0]):
                self.place(out)
            return out
        name = getattr(func, "__name__", str(func))
        inputs = _tensors(args, kwargs)
        placed = [t for t in inputs if self.on(t)]
        out = func(*args, **kwargs)
        if func in MOVES:
            return self._move(func, args, kwargs, out)
        if func in READS or func in HOST_ONLY:
            if placed and func in HOST_ONLY:
                self._record(self.mixed, f"{name} of a device tensor", always=True)
            elif placed:
                self._record(self.waits, f"{name} of a device tensor")
            return out
        if func in SIZED and placed:
            self._record(self.waits, f"{name} (an output of data-dependent size)")
        if func in INDEXING:
            self._index(func, args, name)
        elif placed and func not in EITHER:
            host = [tuple(t.shape) for t in inputs if not self.on(t) and t.dim() > 0]
            if host:
                self._record(self.mixed, f"{name} of device and host tensors {host}", always=True)
        if kwargs.get("device") is not None:  # a factory: where it was asked to make it
            if torch.device(kwargs["device"]) == DEVICE:
                if name in ("tensor", "as_tensor"):
                    self._record(self.waits, f"torch.{name}(..., device=) (a blocking copy)")
                self.place(out)
            return out
        if placed:
            self.place(out)
        return out

    def _move(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
        src = args[0]
        if func is T.cpu:
            target, non_blocking = HOST, False
        elif func is T.cuda:
            target, non_blocking = DEVICE, bool(kwargs.get("non_blocking", False))
        else:
            target, _, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
        if target is None:  # a change of dtype only: it stays where it is
            if self.on(src):
                self.place(out)
            return out
        if torch.device(target) == DEVICE:
            if not self.on(src) and src.numel():
                self.copies.append((src.dtype, tuple(src.shape), self.counting))
                if not non_blocking:
                    self._record(self.waits, "a blocking copy to the device")
            self.place(out)
        elif self.on(src):
            self._record(self.waits, "a copy to the host")
            if self.on(out):  # the CPU hands back the tensor itself; the host's copy is new
                out = out.clone()
        return out

    def _index(self, func: Any, args: tuple[Any, ...], name: str) -> None:
        on_target = self.on(args[0])
        for index in _tensors(args[1]):
            if index.dtype == torch.bool and index.dim() > 0 and (on_target or self.on(index)):
                scalar = func is T.__setitem__ and not (
                    isinstance(args[2], torch.Tensor) and args[2].numel() > 1)
                if not scalar:  # a mask filled with one value is masked_fill, which does not wait
                    self._record(self.waits, f"{name} with a boolean mask")
            if on_target and not self.on(index) and index.dim() > 0:
                self._record(self.waits, f"{name} with host indices (a blocking copy)")
            if not on_target and self.on(index):
                self._record(self.mixed, f"{name} of a host tensor at device indices", always=True)
        if func is T.__setitem__:
            value = args[2]
            if isinstance(value, torch.Tensor) and value.dim() > 0 and on_target != self.on(value):
                self._record(self.mixed, f"{name}: a {'host' if on_target else 'device'} value "
                             f"into a {'device' if on_target else 'host'} tensor", always=True)


@contextmanager
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceEmulation]:
    """The engine on the emulated device: the accelerator path forced, the emulation on, and
    ``counting`` set inside the engine's step loop (``engine._train_steps``)."""
    emulation = DeviceEmulation()
    steps = engine._train_steps

    def counted(*args: Any, **kwargs: Any) -> None:
        emulation.loops += 1
        emulation.counting = True
        try:
            steps(*args, **kwargs)
        finally:
            emulation.counting = False

    monkeypatch.setattr(streams, "FORCE_DATA_ON_DEVICE", True)
    monkeypatch.setattr(engine, "_train_steps", counted)
    with emulation:
        yield emulation


def on_device(config: Any, device: str = "cpu:0") -> Any:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, device=device))


# ----------------------------------------------------------------------------- data


def toy(n_classes: int = 4, per_class: int = 24, size: int = 8, channels: int = 1) -> Dataset:
    """Random uint8 images: ``per_class`` training and half as many test images per class."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), per_class)
    ey = np.repeat(np.arange(n_classes), per_class // 2)
    x = rng.integers(0, 256, size=(len(y), channels, size, size), dtype=np.uint8)
    ex = rng.integers(0, 256, size=(len(ey), channels, size, size), dtype=np.uint8)
    return make_dataset("toy", x, y, ex, ey, tuple(f"c{i}" for i in range(n_classes)), "memory")


DATA = toy()


def cfg(strategy: str, **sets: Any) -> Any:
    """2 tasks of 2 classes, an MLP 1x16, 60 steps of 8 examples per task (120 steps)."""
    overrides = {"stream.n_tasks": 2, "model.hidden": [16], "train.iterations": 60,
                 "train.batch_size": 8, "train.lr": 0.01, **sets}
    return build_config("split-digits", strategy, overrides)


# --------------------------------------------------------------- the emulation itself


def test_the_emulation_sees_what_a_gpu_would_wait_for(monkeypatch: pytest.MonkeyPatch):
    """The detector, checked on known cases: each line below waits (or not) on a GPU."""
    monkeypatch.setattr(streams, "FORCE_DATA_ON_DEVICE", True)
    with DeviceEmulation() as emu:
        emu.counting = True
        x = to_device(torch.arange(6.0), DEVICE)          # non_blocking: no wait
        assert emu.on(x) and x.device == DEVICE and emu.waits == []
        y = (x * 2).sum()                                  # computed there: stays there
        assert emu.on(y) and emu.waits == []
        host = torch.arange(6.0).to(DEVICE)                # blocking copy
        _ = y.item()
        _ = x[x > 2]                                       # boolean mask: data-dependent size
        _ = x[torch.tensor([0, 2])]                        # host indices: a blocking copy
        x[x >= 0] = 0.0                                    # masked_fill: no wait
        _ = to_device(x, HOST)                             # a copy to the host waits
        assert [w.split(" in ")[0] for w in emu.waits] == [
            "a blocking copy to the device", "item of a device tensor",
            "__getitem__ with a boolean mask", "__getitem__ with host indices (a blocking copy)",
            "a copy to the host"]
        assert emu.on(host) and not emu.on(torch.zeros(2))
        assert emu.copies == [(torch.float32, (6,), True), (torch.float32, (6,), True)]
        _ = torch.cat([x, torch.ones(2)])                  # a GPU refuses these
        _ = torch.ones(6)[to_device(torch.tensor([1]), DEVICE)]
        assert [m.split(" in ")[0] for m in emu.mixed] == [
            "cat of device and host tensors [(2,)]",
            "__getitem__ of a host tensor at device indices"]
        _ = x + torch.tensor(2.0)                          # a host scalar is fine
        assert len(emu.mixed) == 2


# -------------------------------------------------- every family: no wait per step


#: One run per built-in family and per code path of the data (unions, transforms, memory).
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "naive": ("naive", {}),
    "lwf": ("lwf", {}),                                          # warm-up phase: rows kept fixed
    "ewc": ("ewc", {}),
    "er": ("er", {"memory.size": 20, "train.augment": True}),   # reservoir, augmented draws
    "derpp": ("derpp", {"memory.size": 20}),
    "der-class-balanced": ("der", {"memory.size": 20, "memory.policy": "class_balanced"}),
    "icarl": ("icarl", {"memory.size": 20, "stream.scenario": "class-il"}),
    "bic": ("bic", {"memory.size": 40, "stream.scenario": "class-il", "strategy.bias_epochs": 2}),
    "joint": ("joint", {}),                                      # a union of split tasks
    "compress": ("compress", {"memory.size": 20, "teacher.strategy": "derpp",
                              "train.iterations": 30}),        # teacher + student phases
    "kd": ("kd", {"train.iterations": 20}),
    "permuted/joint": ("joint", {"stream.kind": "permuted", "stream.scenario": "domain-il",
                                 "train.iterations": 12}),       # one gather, a table of perms
    "rotated/lwf-memory": ("lwf", {"stream.kind": "rotated", "stream.scenario": "domain-il",
                                   "stream.angles": [10.0, 33.0], "memory.size": 20,
                                   "train.iterations": 12}),     # rotated part + memory part
    "convnet/lwf-mammoth": ("lwf-mammoth", {"model.name": "convnet", "model.channels": [4, 8],
                                            "train.augment": True, "stream.scenario": "class-il",
                                            "train.iterations": 12}),   # clean teacher input
    "compress/features": ("compress", {"strategy.distill_loss": "feature_l2",
                                       "teacher.hidden": [24], "teacher.strategy": "icarl",
                                       "memory.size": 20, "stream.scenario": "class-il",
                                       "train.iterations": 12}),        # projector
    "resnet/derpp": ("derpp", {"model.name": "resnet18", "model.nf": 2, "train.augment": True,
                               "memory.size": 20, "train.iterations": 12}),  # batch norm, 1x1
}


def _matrices(state: engine.RunState) -> tuple[Any, ...]:
    return (state.initial, state.initial_task_aware, state.rows, state.rows_task_aware,
            state.teacher_initial, state.teacher_rows, state.teacher_rows_task_aware)


@pytest.mark.parametrize("case", list(CASES))
def test_no_step_waits_for_the_device(case: str, monkeypatch: pytest.MonkeyPatch):
    strategy, sets = CASES[case]
    config = cfg(strategy, **sets)
    plain = train_stream(config, build_stream(config, DATA), progress=False)

    checks: list[int] = []
    check = LossWatch.check

    def counted_check(self: LossWatch) -> float | None:
        checks.append(len(self.pending))
        return check(self)

    monkeypatch.setattr(LossWatch, "check", counted_check)
    stream = build_stream(config, DATA)
    with emulated(monkeypatch) as emu:
        state = train_stream(on_device(config), stream, progress=False)

    # the accelerator's path gives the CPU's numbers, bit for bit
    assert _matrices(state) == _matrices(plain)
    assert emu.mixed == []
    # inside the step loops the device is read only by the loss checks, one read for up to 50
    # steps (and one at each phase's end)
    reads, steps = sum(1 for n in checks if n), sum(checks)
    assert steps >= 24 and max(checks) <= 50 and reads <= steps // 50 + emu.loops
    assert emu.waits == ["a copy to the host in strategies/loop.py:check"] * reads
    # ...and copies from the host only indices and draws, never images: the stream's images
    # went to the device once, before training (each source once, however many tasks share it)
    inside = [(dtype, shape) for dtype, shape, loop in emu.copies if loop]
    assert inside and {dtype for dtype, _ in inside} == {torch.int64}
    sources = {id(t.train_x.source) for t in stream} | {id(t.test_x.source) for t in stream}
    images = [shape for dtype, shape, loop in emu.copies if dtype == torch.uint8]
    assert len(images) == len(sources)


class _BlowsUp(Strategy):
    """Cross-entropy, made infinite at step 37 of every task."""

    def loss(self, ctx: TaskContext, batch: Any, features: torch.Tensor,
             logits: torch.Tensor) -> torch.Tensor:
        return super().loss(ctx, batch, features, logits) + (math.inf if ctx.step == 37 else 0.0)


def test_a_diverged_loss_is_caught_at_the_next_check_without_waiting_per_step(
        monkeypatch: pytest.MonkeyPatch):
    config = on_device(cfg("naive"))
    stream = build_stream(config, DATA)
    with emulated(monkeypatch) as emu:
        state = engine.new_state(config, stream)
        state.strategy = _BlowsUp()
        with pytest.raises(Diverged, match=r"^the loss became inf in task 0 \(0-based\), "
                                           r"epoch 6, step 37; lower train.lr"):
            train_stream(config, stream, state, progress=False)
    # found at the check of step 50: the one read of the loop
    assert emu.waits == ["a copy to the host in strategies/loop.py:check"]


def test_the_device_path_without_the_emulation_gives_the_same_matrices(
        monkeypatch: pytest.MonkeyPatch):
    """The forced branch on the plain CPU device too (every move the tensor itself)."""
    config = cfg("derpp", **{"memory.size": 20, "train.augment": True, "train.iterations": 20})
    plain = train_stream(config, build_stream(config, DATA), progress=False)
    monkeypatch.setattr(streams, "FORCE_DATA_ON_DEVICE", True)
    assert _matrices(train_stream(config, build_stream(config, DATA), progress=False)) == \
        _matrices(plain)


@pytest.mark.parametrize(("strategy", "sets"), [
    ("derpp", {"memory.size": 20}),
    ("bic", {"memory.size": 40, "stream.scenario": "class-il", "strategy.bias_epochs": 2}),
])
def test_the_device_path_resumes_bit_for_bit(strategy: str, sets: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch):
    """A checkpoint after task 0 (its memory and validation set on the device), loaded onto
    the device as ``runs.load_checkpoint`` does (``map_location``), continues to the matrix of
    the uninterrupted run."""
    monkeypatch.setattr(streams, "FORCE_DATA_ON_DEVICE", True)
    config = on_device(cfg(strategy, **{**sets, "stream.n_tasks": 2, "train.iterations": 20}))
    saved: list[bytes] = []

    def keep(state: engine.RunState) -> None:
        if state.next_task == 1:
            buffer = io.BytesIO()
            torch.save(state.checkpoint(), buffer)
            saved.append(buffer.getvalue())

    whole = train_stream(config, build_stream(config, DATA), progress=False, on_task_end=keep)
    # (torch.load knows no "cpu:0"; the host is the same memory)
    checkpoint = torch.load(io.BytesIO(saved[0]), map_location=HOST, weights_only=True)
    stream = build_stream(config, DATA)
    resumed = train_stream(config, stream, restore_state(config, stream, checkpoint),
                           progress=False)
    assert _matrices(resumed) == _matrices(whole) and len(whole.rows) == 2


# ------------------------------------------------------------- placing the data


def test_the_stream_goes_to_the_device_once_and_shared_stays_shared(
        monkeypatch: pytest.MonkeyPatch):
    config = cfg("naive", **{"stream.kind": "permuted", "stream.n_tasks": 3,
                             "stream.scenario": "domain-il", "stream.permute_first": True})
    stream = build_stream(config, DATA)
    with DeviceEmulation() as emu:
        moved = stream.to(DEVICE)
    sources = {id(x.source) for t in moved for x in (t.train_x, t.test_x)}
    assert len(sources) == 2 and id(DATA.train_x) not in sources   # one train, one test copy
    assert all(t.train_y is moved[0].train_y for t in moved)       # labels shared, as on the host
    assert image_storage_bytes([t.train_x for t in moved] + [t.test_x for t in moved]) == \
        DATA.train_x.nbytes + DATA.test_x.nbytes
    assert [dtype for dtype, _, _ in emu.copies].count(torch.uint8) == 2
    for old, new in zip(stream, moved, strict=True):
        assert isinstance(new.train_x.transform, Permute) and emu.on(new.train_x.transform.perm)
        assert new.test_x.transform is new.train_x.transform       # one permutation per task
        assert torch.equal(new.train_x.materialise(), old.train_x.materialise())
        assert torch.equal(new.test_y, old.test_y)
    # a run on the CPU keeps its stream; a built-in strategy on an accelerator places it; one
    # that declares it reads its data on the host (HOST_DATA: the Avalanche strategies, whose
    # own loaders do) keeps it
    assert place_stream(config, stream, Strategy) is stream
    monkeypatch.setattr(streams, "FORCE_DATA_ON_DEVICE", True)
    assert place_stream(config, stream, Strategy) is not stream

    class OnTheHost(Strategy):
        HOST_DATA = True

    assert place_stream(config, stream, OnTheHost) is stream
    assert place_stream(config, stream, OnTheHost()) is stream


def test_to_device_leaves_the_cpu_path_as_it_was():
    x = torch.arange(5)
    assert to_device(x, "cpu") is x and to_device(x, HOST) is x
    assert not streams.data_on_device("cpu")
    assert streams.data_on_device("cuda") and streams.data_on_device("mps")


@pytest.mark.parametrize("kind", ["split", "rotated", "permuted", "with-memory"])
def test_a_union_gathers_the_same_images_on_the_device_path(kind: str,
                                                           monkeypatch: pytest.MonkeyPatch):
    """Every part gathering the whole batch at clamped positions (or the table of
    permutations), on the device path, gives the images of the host's loop over parts."""
    g = torch.Generator().manual_seed(0)
    source = torch.randint(0, 256, (30, 2, 5, 5), dtype=torch.uint8, generator=g)
    if kind == "split":
        parts = [Images(source[:10]), Images(source[10:12]), Images(source[:0]), Images(source[12:])]
    elif kind == "rotated":
        parts = [Images(source), Images(source, Rotate(33.0)), Images(source, Rotate(90.0))]
    elif kind == "permuted":
        parts = [Images(source), Images(source, Permute(torch.randperm(25, generator=g)))]
    else:
        parts = [Images(source, Rotate(17.0)), Images(source[:7].clone())]
    union = ImageUnion(parts, (2, 5, 5))
    assert (union._perms is not None) == (kind == "permuted")
    n = len(union)
    idx = torch.cat([torch.randperm(n, generator=g), torch.tensor([-1, -n, 0])])
    expected = (union[idx], union[3:n - 2], union[idx[:0]])
    monkeypatch.setattr(streams, "FORCE_DATA_ON_DEVICE", True)
    with DeviceEmulation() as emu:
        sources = {id(p.source): to_device(p.source, DEVICE) for p in parts}
        placed = ImageUnion([Images(sources[id(p.source)], p.transform.to(DEVICE)
                                    if isinstance(p.transform, Permute) else p.transform)
                             for p in parts], (2, 5, 5))
        assert (placed._perms is not None) == (kind == "permuted")
        placed[to_device(idx[:1], DEVICE)]   # a rotation makes its grid there once (it waits)
        emu.counting = True
        got = (placed[to_device(idx, DEVICE)], placed[3:n - 2], placed[idx[:0]])
        assert emu.waits == [] and emu.mixed == []   # the device path reads nothing back
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape and torch.equal(a, b)
    with pytest.raises(RuntimeError, match="index out of range"):   # a device-side assert
        union[torch.tensor([n])]


# ------------------------------------------------------------------- evaluation


def _hand_stream() -> Stream:
    """Class-il, 2 tasks of 2 classes (units 0,1 | 2,3); a test image is 1x1x4 pixels whose
    values divided by 255 are the scores (``nn.Flatten`` as the model, mean 0, std 1)."""
    def task(i: int, pixels: list[list[int]], labels: list[int]) -> Task:
        x = Images(torch.tensor(pixels, dtype=torch.uint8).view(-1, 1, 1, 4))
        y = torch.tensor(labels)
        return Task(i, f"t{i}", (2 * i, 2 * i + 1), (2 * i, 2 * i + 1), x, y, x, y)

    t0 = task(0, [[0, 9, 5, 0], [9, 0, 0, 50], [1, 2, 80, 0]], [1, 0, 0])
    t1 = task(1, [[0, 90, 5, 6], [0, 0, 7, 3]], [3, 2])
    return Stream("hand", "class-il", (t0, t1), 4, (1, 1, 4), (0.0,), (1.0,))


class _FlaggedScores(Strategy):
    """The model's scores, inf for an image whose first pixel is 255."""

    def predict(self, ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
        scores = ctx.model(x)
        return scores.masked_fill(x.flatten(1)[:, :1] == 1.0, float("inf"))


def _eval_context(stream: Stream, device: torch.device) -> TaskContext:
    shape = (1, -1, 1, 1)
    return TaskContext(
        config=cfg("naive"), stream=stream, index=0, model=nn.Flatten(), device=device,
        generator=torch.Generator(), train_masks=torch.ones(2, 4, dtype=torch.bool),
        all_active=True, augment=False, eval_batch_size=2,
        mean=to_device(torch.tensor(stream.mean).view(shape), device),
        std=to_device(torch.tensor(stream.std).view(shape), device))


def test_evaluation_counts_on_the_device_and_reads_once_per_row(monkeypatch: pytest.MonkeyPatch):
    """By hand. After task 0 the prediction is among units {0, 1}: task 0's images score
    argmax 1 (y 1, right), 0 (y 0, right), 1 (y 0, wrong) -> 2/3; task 1's (y 3 and 2) can only
    be wrong -> 0. After task 1 among {0..3}: task 0 -> 1, 3, 2 -> 1/3; task 1 -> 1, 2 -> 1/2.
    Task-aware (own units): task 0 -> 1, 0, 1 -> 2/3; task 1 -> 3, 2 -> 1, both rows. The
    second batch of task 0 holds one image (eval_batch_size 2)."""
    stream, strategy = _hand_stream(), Strategy()
    expected = {0: ([2 / 3, 0.0], [2 / 3, 1.0]), 1: ([1 / 3, 1 / 2], [2 / 3, 1.0])}
    for trained, rows in expected.items():
        assert evaluate(_eval_context(stream, HOST), strategy, trained) == rows
    monkeypatch.setattr(streams, "FORCE_DATA_ON_DEVICE", True)
    with DeviceEmulation() as emu:
        placed = stream.to(DEVICE)
        ctx = _eval_context(placed, DEVICE)
        for trained, rows in expected.items():
            emu.counting, emu.waits = True, []
            assert evaluate(ctx, strategy, trained) == rows
            assert emu.waits == ["tolist of a device tensor in engine.py:evaluate"]
            assert emu.mixed == []


def test_a_row_with_scores_that_are_not_finite_names_its_first_task():
    """Read once at the row's end, the flags still name the first task whose scores are inf."""
    stream = _hand_stream()
    t1 = dataclasses.replace(stream[1], test_x=Images(torch.tensor(
        [[255, 0, 0, 0], [0, 0, 7, 3]], dtype=torch.uint8).view(-1, 1, 1, 4)))
    stream = dataclasses.replace(stream, tasks=(stream[0], t1))
    with pytest.raises(Diverged, match=r"test examples of task 1 `t1` are inf or NaN after task 0"):
        evaluate(_eval_context(stream, HOST), _FlaggedScores(), 0)
