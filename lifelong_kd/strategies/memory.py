"""The exemplar memory: a small set of earlier tasks' examples that replay and distillation
strategies train on again.

A :class:`Memory` holds uint8 images (as the stream's tasks hold them, permuted or rotated
already), their output-unit labels, their task ids and, for the strategies that need them
(DER, DER++), the model's outputs (logits) recorded when each example entered. Everything is
a tensor on the run's device; a draw is a slice of a seeded permutation, indexed as the
engine's own batches are, and augmented the same way (``data/augment.py``).

The budget is ``memory.size`` examples in all, or ``memory.per_class`` per class seen. What
is kept (``memory.policy``):

- ``reservoir``: Vitter's algorithm R (Vitter 1985, "Random sampling with a reservoir"), as
  Mammoth's ``utils/buffer.py`` (``reservoir``, l.12-26 at 7ab9db9): the n-th example offered
  (0-based) takes slot n while the memory is not full, else slot r for r uniform in
  {0, ..., n}, if r < size. After n examples each of them is kept with probability size / n.
  Updated at every step with the batch's examples (:meth:`Memory.add`), not augmented. An
  example offered again in a later epoch is one more offer (Mammoth's too), so the memory may
  hold it twice.
- ``class_balanced``: Avalanche's ``ClassBalancedBuffer`` (avalanche/training/storage_policy.py,
  0.6.0, ``ClassBalancedBuffer.update`` and ``ReservoirSamplingBuffer.update_from_dataset``
  l.110-124; ``get_group_lengths`` l.180-192): after each task the budget is split equally
  over the classes seen so far (the first ``size mod k`` classes get one more), and inside a
  class each example carries a uniform random priority drawn when it arrived; the class keeps
  its examples of highest priority (a reservoir over the class's examples).
- ``task_balanced``: the same per task (Avalanche's ``ExperienceBalancedBuffer``, the default
  memory of its ``ReplayPlugin``).
- ``herding``: per class, the examples whose running feature mean stays nearest the class mean
  (Rebuffi et al. 2017, iCaRL, section 2.2 and Algorithm 4), on L2-normalised features of the
  model after the task; a smaller share keeps the first examples chosen (Algorithm 5).
- ``random``: per class, drawn anew at each task's end from the class's examples in memory and
  in the new task (FACIL's default, ``src/datasets/exemplars_selection.py``
  ``RandomExemplarsSelector``).

The per-class and per-task policies are applied at the end of a task (:meth:`Memory.update`);
in all of them a group's examples are ordered by priority (herding: the order chosen) and the
group keeps the first of them, so that shrinking a group is a cut. Every draw comes from the
run's seeded generator, and :meth:`Memory.state_dict` is part of the checkpoint (resume is
bit-exact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import MemoryConfig, RunConfig
from ..data.augment import random_crop_flip
from ..data.streams import Images, ImageUnion, to_device
from ..errors import ConfigError
from .base import TaskContext, TrainData

#: The policies updated at the end of a task (every other is updated at every step).
TASK_END_POLICIES = ("class_balanced", "task_balanced", "herding", "random")
#: The policies that split ``memory.size`` over the classes seen (``task_balanced``: the tasks).
PER_CLASS_POLICIES = ("class_balanced", "herding", "random")


def check_budget(config: RunConfig, strategy: str, n_outputs: int) -> None:
    """Refuse a ``memory.size`` that cannot hold one example of each class (output unit) of
    the stream, ``n_outputs``, under a policy that keeps examples per class (each task under
    ``task_balanced``): by the last task some class would have none, and a strategy that
    classifies by class means (iCaRL) could not tell it at all. ``reservoir`` keeps a
    uniform sample of every example offered, whatever its class: any size is its budget.
    A budget per class (``memory.per_class``) always holds one."""
    mem = config.memory
    if mem.per_class or not mem.size:
        return
    if mem.policy in PER_CLASS_POLICIES:
        groups, what = n_outputs, "classes of the stream"
    elif mem.policy == "task_balanced":
        groups, what = config.stream.n_tasks, "tasks"
    else:
        return
    if mem.size < groups:
        raise ConfigError(
            f"`memory.size` = {mem.size} cannot hold one example of each of the {groups} {what} "
            f"that `{strategy}` keeps examples of (`memory.policy` = {mem.policy!r} splits the "
            f"budget over them); use memory.size >= {groups}, or memory.per_class")

#: Outputs of the model for uint8 images (logits, or normalised features for herding).
ImagesFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Draw:
    """Examples drawn from memory: ``x`` the normalised (and, with ``train.augment``,
    augmented) input, ``raw`` the uint8 images, ``logits`` those recorded with them (or None)."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    logits: torch.Tensor | None
    raw: torch.Tensor
    idx: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


def group_lengths(budget: int, n_groups: int) -> list[int]:
    """Split ``budget`` examples over ``n_groups`` groups: ``budget // n_groups`` each, the
    first ``budget mod n_groups`` one more (Avalanche's ``get_group_lengths``, adaptive size)."""
    if n_groups <= 0:
        return []
    lengths = [budget // n_groups] * n_groups
    for i in range(budget - sum(lengths)):
        lengths[i] += 1
    return lengths


def herding_order(features: torch.Tensor, m: int) -> torch.Tensor:
    """The first ``m`` examples chosen by herding (Rebuffi et al. 2017, Algorithm 4).

    With phi the L2-normalised ``features`` (n, d) and mu their mean, the k-th choice is
    p_k = argmin over the examples not chosen yet of || mu - (1/k) (phi(x) + sum_{j<k}
    phi(p_j)) ||, as FACIL's ``HerdingExemplarsSelector`` and PyCIL's
    ``_construct_exemplar`` compute it (each example chosen at most once). Returns the
    positions chosen, in order.
    """
    n = features.shape[0]
    m = min(m, n)
    phi = torch.nn.functional.normalize(features.double(), dim=1)
    mu = phi.mean(dim=0)
    chosen = torch.empty(m, dtype=torch.long)
    running = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=phi.device)
    for k in range(1, m + 1):
        distance = (mu - (running + phi) / k).norm(dim=1)
        distance[taken] = float("inf")
        i = int(distance.argmin())
        chosen[k - 1] = i
        taken[i] = True
        running += phi[i]
    return chosen


class Memory:
    """The exemplar memory of one run (see the module docstring for the policies).

    ``with_logits``: also keep the model's outputs recorded with each example (DER). The
    tensors are made on the first insertion: on the device of the labels given (:meth:`add`),
    on ``ctx.device`` (:meth:`update`).
    """

    def __init__(self, config: MemoryConfig, with_logits: bool = False):
        self.config = config
        self.with_logits = with_logits
        self.x: torch.Tensor | None = None
        self.y = torch.zeros(0, dtype=torch.long)
        self.t = torch.zeros(0, dtype=torch.long)
        self.logits: torch.Tensor | None = None
        #: Order inside a group: the lower, the longer kept (reservoir: unused).
        self.priority = torch.zeros(0, dtype=torch.float64)
        #: Examples offered so far (the n of algorithm R).
        self.seen = 0

    # ------------------------------------------------------------------------ size
    def __len__(self) -> int:
        if self.config.policy == "reservoir":
            return min(self.seen, self.config.size)
        return len(self.y)

    @property
    def online(self) -> bool:
        """Whether the memory is updated at every step (reservoir) or at a task's end."""
        return self.config.policy == "reservoir"

    def nbytes(self) -> int:
        """Bytes of the examples the memory holds: their images, labels, task ids, priorities
        and logits (a reservoir's room for examples not offered yet is not counted)."""
        held = len(self)
        tensors = [self.x, self.y, self.t, self.logits]
        return (sum(t[:held].numel() * t.element_size() for t in tensors if t is not None)
                + self.priority.numel() * self.priority.element_size())

    # ---------------------------------------------------------------------- reservoir
    def add(self, raw: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
            logits: torch.Tensor | None, generator: torch.Generator) -> None:
        """Offer a batch to a ``reservoir`` memory (algorithm R, in order: a later example of
        the batch that draws the slot of an earlier one replaces it, as one at a time would,
        Mammoth's ``Buffer.add_data`` loop, l.65-87). One uniform number is drawn per example,
        whatever the memory holds.

        The memory lives on the device of the labels ``y`` (the engine's batches carry them on
        the run's device): the slots are chosen on the CPU and only copied to the device
        (``non_blocking``), so a step waits for no result of the device."""
        if not self.online:
            raise ValueError(f"`add` is for a reservoir memory; a {self.config.policy!r} memory "
                             "is updated at a task's end (`update`)")
        if self.with_logits and logits is None:
            raise ValueError("this memory keeps logits: give them with the examples")
        size, b = self.config.size, len(y)
        if size == 0 or b == 0:
            return
        if self.x is None or len(self.y) < min(size, self.seen + b):
            self._grow(min(size, self.seen + b), raw, y.device, logits)
        assert self.x is not None
        # the slots in numpy: a handful of operations on b numbers, each far cheaper there
        # than a torch operation's fixed cost (the step must not pay for the bookkeeping)
        u = torch.rand(b, generator=generator, dtype=torch.float64).numpy()
        n = np.arange(self.seen, self.seen + b, dtype=np.float64)
        chosen = np.where(n < size, n, np.floor(u * (n + 1))).astype(np.int64)
        self.seen += b
        src_np = np.flatnonzero(chosen < size)
        if not len(src_np):
            return
        slot_np = chosen[src_np]
        if len(src_np) > 1:  # the last example offered to a slot is the one it keeps
            slot_np, last = np.unique(slot_np[::-1], return_index=True)
            src_np = src_np[::-1][last]
        slot, src = torch.from_numpy(slot_np), torch.from_numpy(np.ascontiguousarray(src_np))
        device = self.x.device
        slot_d = to_device(slot, device)
        self.x[slot_d] = to_device(raw[to_device(src, raw.device)], device)
        self.y[slot_d] = to_device(y[to_device(src, y.device)], device)
        self.t[slot_d] = to_device(t[to_device(src, t.device)], device)
        if self.logits is not None and logits is not None:
            self.logits[slot_d] = to_device(logits[to_device(src, logits.device)].detach().float(), device)

    def _grow(self, needed: int, raw: torch.Tensor, device: torch.device,
              logits: torch.Tensor | None) -> None:
        """Room for at least ``needed`` examples (``memory.size`` at most), the examples held
        kept in their slots: the room doubles as examples arrive, so a reservoir's storage
        follows what it was offered, not its budget (a budget of millions on a stream of
        thousands allocates thousands)."""
        old = 0 if self.x is None else len(self.y)
        n = min(self.config.size, max(needed, 2 * old))

        def grown(t: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
            new = torch.zeros((n, *shape), dtype=dtype, device=device)
            if t is not None and old:
                new[:old] = t
            return new

        self.x = grown(self.x, tuple(raw.shape[1:]), torch.uint8)
        self.y = grown(self.y if old else None, (), torch.long)
        self.t = grown(self.t if old else None, (), torch.long)
        if self.with_logits:
            assert logits is not None
            self.logits = grown(self.logits, (logits.shape[1],), torch.float32)

    # ------------------------------------------------------------------- at a task's end
    def update(self, ctx: TaskContext, data: TrainData, *, logits_of: ImagesFn | None = None,
               features_of: ImagesFn | None = None) -> None:
        """Choose, at the end of task ``ctx.index``, what the memory keeps of itself and of
        ``data`` (the task's training examples), by ``memory.policy``.

        ``logits_of`` gives the outputs to record with the new examples kept (computed after
        the choice, for those only); ``features_of`` the features herding compares (for every
        example of a class that has new examples). Both take uint8 images.
        """
        policy, g = self.config.policy, ctx.generator
        if policy not in TASK_END_POLICIES or len(data) == 0:
            return
        n_old = len(self.y)
        device = ctx.device
        by_task = policy == "task_balanced"
        group = torch.cat([self.t if by_task else self.y, (data.t if by_task else data.y).to(self.y.device)])
        old_priority = self.priority
        new_priority = torch.rand(len(data), generator=g, dtype=torch.float64)
        if policy == "random":  # every candidate drawn anew
            old_priority = torch.rand(n_old, generator=g, dtype=torch.float64)
        priority = torch.cat([old_priority.cpu(), new_priority])
        group = group.cpu()
        groups = sorted(set(group.tolist()))
        if self.config.per_class:
            lengths = dict.fromkeys(groups, self.config.per_class)
        else:
            lengths = dict(zip(groups, group_lengths(self.config.size, len(groups)), strict=True))
        if policy == "herding":
            if features_of is None:
                raise ValueError("herding needs the model's features (features_of)")
            for c in sorted(set(data.y.tolist())):
                members = (group == c).nonzero().flatten()  # old members first, then new
                old_members, new_members = members[members < n_old], members[members >= n_old]
                images = [data.x[new_members - n_old].to(device)]
                if len(old_members) and self.x is not None:
                    images.insert(0, self.x[old_members.to(self.x.device)])
                order = herding_order(features_of(torch.cat(images)).cpu(), lengths[c])
                ranked = torch.full((len(members),), float("inf"), dtype=torch.float64)
                ranked[order] = torch.arange(len(order), dtype=torch.float64)
                priority[members] = ranked
        # order by group, then by priority (two stable sorts), and keep the first
        # lengths[group] of each group (herding: never an example it did not choose)
        order = torch.argsort(priority, stable=True)
        order = order[torch.argsort(_rank_of(group[order], groups), stable=True)]
        sorted_group = group[order]
        rank_in_group = torch.arange(len(order)) - _first_positions(sorted_group)
        limit = torch.tensor([lengths[c] for c in groups], dtype=torch.long)[
            _rank_of(sorted_group, groups).long()]
        kept = order[(rank_in_group < limit) & ~torch.isinf(priority[order])]
        kept = kept.sort().values
        old_kept, new_kept = kept[kept < n_old], kept[kept >= n_old] - n_old
        new_raw = data.x[new_kept]
        parts_x = [self.x[old_kept.to(self.x.device)]] if self.x is not None and len(old_kept) else []
        self.x = torch.cat([*parts_x, new_raw.to(device)]) if parts_x else new_raw.to(device)
        self.y = torch.cat([self.y[old_kept.to(self.y.device)].to(device), data.y[new_kept].to(device)])
        self.t = torch.cat([self.t[old_kept.to(self.t.device)].to(device), data.t[new_kept].to(device)])
        self.priority = priority[kept].clone()
        if self.with_logits:
            if logits_of is None:
                raise ValueError("this memory keeps logits: give logits_of")
            # the outputs of the new examples kept only (none: no call, whose output on no
            # image would have no width); the old keep those recorded when they entered
            parts = [] if self.logits is None else [self.logits[old_kept.to(self.logits.device)]]
            if len(new_kept):
                parts.append(logits_of(new_raw).detach().float())
            self.logits = torch.cat([p.to(device) for p in parts]) if parts else None
        self.seen += len(data)

    # ------------------------------------------------------------------------ drawing
    def draw(self, ctx: TaskContext, n: int) -> Draw | None:
        """``n`` examples drawn without replacement (all of them when the memory holds fewer;
        None when it is empty), as Mammoth's ``Buffer.get_data``; augmented like the engine's
        batches when ``train.augment`` is on."""
        held = len(self)
        if held == 0 or n <= 0 or self.x is None:
            return None
        idx = to_device(torch.randperm(held, generator=ctx.generator)[:n], self.x.device)
        raw = self.x[idx]
        x_in = random_crop_flip(raw, ctx.generator) if ctx.augment else raw
        logits = self.logits[idx] if self.logits is not None else None
        return Draw(ctx.prepare(x_in), to_device(self.y[idx], ctx.device), to_device(self.t[idx], ctx.device),
                    None if logits is None else to_device(logits, ctx.device), raw, idx)

    def examples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(uint8 images, labels, task ids) of every example held."""
        held = len(self)
        if self.x is None:
            return torch.zeros(0, dtype=torch.uint8), self.y[:0], self.t[:0]
        return self.x[:held], self.y[:held], self.t[:held]

    # ---------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The examples, their labels, task ids, priorities and logits, and the count seen."""
        return {"x": self.x, "y": self.y, "t": self.t, "logits": self.logits,
                "priority": self.priority, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.y, self.t = state["x"], state["y"], state["t"]
        self.logits, self.priority, self.seen = state["logits"], state["priority"], int(state["seen"])


def with_memory(data: TrainData, memory: Memory) -> TrainData:
    """``data`` followed by every example of ``memory`` (their own labels and task ids): the
    training set of a method whose exemplars join the task's data (iCaRL, Algorithm 3; FACIL's
    ``trn_loader.dataset + self.exemplars_dataset``, src/approach/lwf.py@66e3e8e l.58-64). The
    memory's images are one more part of an :class:`ImageUnion`, on the device of the first
    part's images; nothing is copied from the task's."""
    x, y, t = memory.examples()
    if not len(y):
        return data
    parts = data.x.parts if isinstance(data.x, ImageUnion) else (data.x,)
    device = parts[0].source.device if parts else x.device
    union = ImageUnion([*parts, Images(x.to(device))], tuple(data.x.shape[1:]))
    return TrainData(union, torch.cat([data.y, y.to(data.y.device)]),
                     torch.cat([data.t, t.to(data.t.device)]))


def _rank_of(group: torch.Tensor, groups: list[int]) -> torch.Tensor:
    """The position of each entry of ``group`` in the sorted list ``groups``."""
    table = torch.tensor(groups, dtype=torch.long)
    return torch.searchsorted(table, group).double()


def _first_positions(sorted_group: torch.Tensor) -> torch.Tensor:
    """For a sorted tensor, the position of the first entry equal to each entry."""
    if not len(sorted_group):
        return sorted_group.clone()
    start = torch.ones(len(sorted_group), dtype=torch.bool)
    start[1:] = sorted_group[1:] != sorted_group[:-1]
    starts = torch.arange(len(sorted_group))[start]
    return starts[torch.cumsum(start.long(), 0) - 1]
