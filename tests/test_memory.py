"""The exemplar memory (``strategies/memory.py``): reservoir sampling (statistics, and the
batch-vectorised ``add`` against Mammoth's one-at-a-time loop), herding on a hand-computed
set, the task-end policies (budgets, shrinking, old classes, logits), draws, bytes, devices
and checkpoints."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import pytest
import torch

from lifelong_kd.config import MemoryConfig, RunConfig, StreamConfig
from lifelong_kd.errors import ConfigError
from lifelong_kd.strategies.base import TaskContext, TrainData
from lifelong_kd.strategies.memory import Memory, check_budget, group_lengths, herding_order

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ helpers


def ctx_of(generator: torch.Generator, device: str = "cpu", augment: bool = False) -> TaskContext:
    """A task context with what the memory reads: the generator, the device, the
    normalisation (mean 0, std 1: ``prepare`` is x / 255) and the augmentation switch."""
    dev = torch.device(device)
    return TaskContext(config=RunConfig(), stream=None, index=0, model=None,  # type: ignore[arg-type]
                       device=dev, generator=generator, train_masks=torch.ones(1, 1, dtype=torch.bool),
                       all_active=True, augment=augment, eval_batch_size=7,
                       mean=torch.zeros(1, 1, 1, 1, device=dev), std=torch.ones(1, 1, 1, 1, device=dev))


def images_of(ids: torch.Tensor) -> torch.Tensor:
    """uint8 images (n, 1, 2, 2) that carry their example's id (< 256) in every pixel."""
    return ids.to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()


def ids_of(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].long().tolist() if len(images) else []


def data_of(ids: list[int], labels: list[int], task: int) -> TrainData:
    """A task's training data: the images of ``ids`` (a plain uint8 tensor, indexed as
    :class:`~lifelong_kd.data.streams.Images` is), their labels and the task id."""
    ids_t = torch.tensor(ids)
    y = torch.tensor(labels)
    return TrainData(images_of(ids_t), y, torch.full_like(y, task))  # type: ignore[arg-type]


def held(memory: Memory) -> dict[int, list[int]]:
    """The ids held, by label, sorted."""
    x, y, _ = memory.examples()
    out: dict[int, list[int]] = {}
    for i, c in zip(ids_of(x), y.tolist(), strict=True):
        out.setdefault(c, []).append(i)
    return {c: sorted(v) for c, v in sorted(out.items())}


def clone(g: torch.Generator) -> torch.Generator:
    out = torch.Generator()
    out.set_state(g.get_state())
    return out


# --------------------------------------------------------------------------- reservoir


def test_reservoir_keeps_each_example_with_probability_size_over_n():
    """n = 40 examples offered in batches of varying size (one straddles the filling of the
    memory, one is larger than it) to Memory(size = 10), R = 1200 times from one seeded
    generator. Each example is kept with p = size / n = 1/4 in every repeat, independently
    across repeats, so its count is Binomial(R, p): mean 300, sigma = sqrt(R p (1 - p)) =
    15. Every count must be within 5 sigma, and the sum over the examples of the squared
    standardised deviations (E = n = 40: a chi-square-like statistic, its terms negatively
    correlated since every repeat keeps exactly 10) below n + 5 sqrt(2 n) = 84.7."""
    n, size, repeats = 40, 10, 1200
    sizes = [1, 7, 12, 20]
    assert sum(sizes) == n
    g = torch.Generator().manual_seed(1234)
    counts = torch.zeros(n)
    ids = torch.arange(n)
    raw = images_of(ids)
    for _ in range(repeats):
        memory = Memory(MemoryConfig(size=size))
        start = 0
        for b in sizes:
            part = slice(start, start + b)
            memory.add(raw[part], ids[part], torch.zeros(b, dtype=torch.long), None, g)
            start += b
        assert len(memory) == size and memory.seen == n
        kept = memory.y
        assert len(set(kept.tolist())) == size  # no example twice
        counts[kept] += 1
    p = size / n
    sigma = math.sqrt(repeats * p * (1 - p))
    z = (counts - repeats * p) / sigma
    assert z.abs().max() < 5, z
    assert float((z ** 2).sum()) < n + 5 * math.sqrt(2 * n)


class OneAtATime:
    """Mammoth's ``Buffer.add_data`` (utils/buffer.py@7ab9db9 l.65-87): a Python loop over
    the examples, the n-th (0-based, n = examples seen before it) taking slot n while
    n < size, else slot r = floor(u (n + 1)) if r < size (``reservoir``, l.12-26, whose
    ``np.random.randint(0, n + 1)`` is that r for u uniform in [0, 1)). Fed the uniform
    numbers ``Memory.add`` draws for the batch."""

    def __init__(self, size: int, shape: tuple[int, ...], n_logits: int):
        self.size, self.seen = size, 0
        self.x = torch.zeros((size, *shape), dtype=torch.uint8)
        self.y = torch.zeros(size, dtype=torch.long)
        self.t = torch.zeros(size, dtype=torch.long)
        self.logits = torch.zeros(size, n_logits)
        self.overwritten_in_batch = 0

    def add(self, raw, y, t, logits, u) -> None:
        written: set[int] = set()
        for i in range(len(y)):
            n = self.seen
            slot = n if n < self.size else math.floor(float(u[i]) * (n + 1))
            self.seen += 1
            if slot < self.size:
                self.overwritten_in_batch += slot in written
                written.add(slot)
                self.x[slot], self.y[slot], self.t[slot] = raw[i], y[i], t[i]
                self.logits[slot] = logits[i]


def test_batched_add_equals_offering_the_examples_one_at_a_time():
    size, n_logits = 6, 3
    g = torch.Generator().manual_seed(7)
    g_ref = clone(g)
    memory = Memory(MemoryConfig(size=size), with_logits=True)
    reference = OneAtATime(size, (1, 2, 2), n_logits)
    data_g = torch.Generator().manual_seed(0)
    start = 0
    for b in [4, 9, 1, 15, 30, 2, 25, 40, 3]:  # straddles the filling; batches > size
        ids = torch.arange(start, start + b) % 256
        raw, y = images_of(ids), ids.clone()
        t = torch.randint(0, 3, (b,), generator=data_g)
        logits = torch.randn(b, n_logits, generator=data_g)
        memory.add(raw, y, t, logits, g)
        reference.add(raw, y, t, logits, torch.rand(b, generator=g_ref, dtype=torch.float64))
        start += b
        assert memory.seen == reference.seen
        n = len(memory)  # the examples held (the room may be larger while filling)
        assert memory.x is not None and torch.equal(memory.x[:n], reference.x[:n])
        assert torch.equal(memory.y[:n], reference.y[:n])
        assert torch.equal(memory.t[:n], reference.t[:n])
        assert memory.logits is not None and torch.equal(memory.logits[:n], reference.logits[:n])
    # later examples of a batch did replace earlier ones of the same batch
    assert reference.overwritten_in_batch > 0
    # and both drew the same numbers: the generators are in the same state
    assert torch.equal(g.get_state(), g_ref.get_state())


def test_reservoir_fills_the_first_slots_in_order_and_counts_what_it_saw():
    memory = Memory(MemoryConfig(size=10))
    g = torch.Generator().manual_seed(0)
    memory.add(images_of(torch.arange(7)), torch.arange(7), torch.zeros(7, dtype=torch.long),
               None, g)
    assert len(memory) == 7 and memory.seen == 7
    assert ids_of(memory.examples()[0]) == list(range(7))
    memory.add(images_of(torch.arange(7, 13)), torch.arange(7, 13),
               torch.zeros(6, dtype=torch.long), None, g)
    assert len(memory) == 10 and memory.seen == 13
    # slot i took example i (i < 10), then perhaps example 10, 11 or 12 replaced it
    assert all(i in (slot, 10, 11, 12) for slot, i in enumerate(ids_of(memory.x)))


def test_reservoir_storage_grows_with_the_examples_offered_not_the_budget():
    """The issue's case: a budget of 10,000,000 allocated whole (16 GB); the storage follows
    what was offered, doubling, and holds what a small budget's memory holds."""
    g, g_small = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    huge = Memory(MemoryConfig(size=10_000_000), with_logits=True)
    small = Memory(MemoryConfig(size=40), with_logits=True)
    rooms = []
    for start in range(0, 30, 6):
        ids = torch.arange(start, start + 6)
        for memory, gen in ((huge, g), (small, g_small)):
            memory.add(images_of(ids), ids, torch.zeros(6, dtype=torch.long),
                       ids.float().view(-1, 1).expand(-1, 3), gen)
        assert huge.x is not None and huge.logits is not None
        rooms.append(len(huge.x))
        assert len(huge.y) == len(huge.t) == len(huge.logits) == rooms[-1]
    assert rooms == [6, 12, 24, 24, 48]  # doubling, never the budget
    assert len(huge) == 30 and huge.nbytes() == 30 * (4 + 8 + 8 + 12)
    for a, b in zip(huge.examples(), small.examples(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(huge.logits[:30], small.logits[:30])
    # full at its budget: the room stops there and sampling goes on as algorithm R
    capped = Memory(MemoryConfig(size=10))
    capped.add(images_of(torch.arange(7)), torch.arange(7), torch.zeros(7, dtype=torch.long),
               None, g)
    capped.add(images_of(torch.arange(7, 30)), torch.arange(7, 30),
               torch.zeros(23, dtype=torch.long), None, g)
    assert capped.x is not None and len(capped.x) == 10 and len(capped) == 10


@pytest.mark.parametrize(("policy", "size", "message"), [
    ("herding", 9, r"`memory.size` = 9 cannot hold one example of each of the 10 classes of "
                   r"the stream that `s` keeps.*memory.size >= 10, or memory.per_class"),
    ("class_balanced", 1, r"= 1 cannot hold one example of each of the 10 classes"),
    ("random", 3, r"= 3 cannot hold one example of each of the 10 classes"),
    ("task_balanced", 4, r"= 4 cannot hold one example of each of the 5 tasks"),
])
def test_a_budget_below_one_example_per_group_is_refused(policy, size, message):
    base = RunConfig(stream=StreamConfig(n_tasks=5))
    with pytest.raises(ConfigError, match=message):
        check_budget(replace(base, memory=MemoryConfig(size=size, policy=policy)), "s", 10)
    for enough in (MemoryConfig(size=10, policy=policy), MemoryConfig(per_class=1, policy=policy),
                   MemoryConfig(size=1)):  # the last a reservoir: any size is its budget
        check_budget(replace(base, memory=enough), "s", 10)


def test_add_refuses_a_task_end_memory_and_missing_logits():
    g = torch.Generator().manual_seed(0)
    raw, y = images_of(torch.arange(3)), torch.arange(3)
    with pytest.raises(ValueError, match="update"):
        Memory(MemoryConfig(size=5, policy="class_balanced")).add(raw, y, y, None, g)
    memory = Memory(MemoryConfig(size=5), with_logits=True)
    memory.add(raw, y, y, torch.zeros(3, 2), g)
    with pytest.raises(ValueError, match="logits"):
        memory.add(raw, y, y, None, g)


def test_add_and_draw_keep_the_memory_on_the_labels_device_without_reading_it_back():
    """The engine's batches carry their labels on the run's device and their uint8 images on
    the CPU. The memory lives on the labels' device and a step never copies a device tensor
    to the host (that waits for the device). A ``meta`` tensor cannot be read back at all, so
    on the meta device any such copy is an error."""
    g = torch.Generator().manual_seed(0)
    memory = Memory(MemoryConfig(size=5), with_logits=True)
    for i in range(4):
        memory.add(images_of(torch.arange(4) + 4 * i), torch.arange(4, device="meta"),
                   torch.zeros(4, dtype=torch.long, device="meta"),
                   torch.zeros(4, 3, device="meta"), g)
    assert memory.x is not None and memory.logits is not None
    assert {memory.x.device.type, memory.y.device.type, memory.t.device.type,
            memory.logits.device.type} == {"meta"}
    draw = memory.draw(ctx_of(g, "meta"), 3)
    assert draw is not None and draw.logits is not None
    assert draw.x.shape == (3, 1, 2, 2) and draw.logits.shape == (3, 3)
    assert draw.x.device.type == "meta" and draw.y.device.type == "meta"


# ------------------------------------------------------------------------------ drawing


def test_draw_is_a_seeded_slice_of_a_permutation_aligned_with_labels_and_logits():
    g = torch.Generator().manual_seed(3)
    memory = Memory(MemoryConfig(size=8), with_logits=True)
    ids = torch.arange(8)
    memory.add(images_of(ids), ids, ids % 2, ids.float().view(-1, 1).repeat(1, 2), g)
    expected = torch.randperm(8, generator=clone(g))[:5]
    draw = memory.draw(ctx_of(g), 5)
    assert draw is not None and len(draw) == 5
    assert torch.equal(draw.idx, expected)
    assert ids_of(draw.raw) == expected.tolist() and draw.y.tolist() == expected.tolist()
    assert draw.t.tolist() == (expected % 2).tolist()
    assert draw.logits is not None and torch.equal(draw.logits[:, 0], expected.float())
    assert torch.equal(draw.x, draw.raw.float() / 255)  # prepared, not augmented


def test_draw_from_an_empty_memory_is_none_and_draws_nothing_and_a_small_one_gives_all():
    g = torch.Generator().manual_seed(0)
    memory = Memory(MemoryConfig(size=8))
    before = g.get_state()
    assert memory.draw(ctx_of(g), 4) is None
    assert torch.equal(g.get_state(), before)
    memory.add(images_of(torch.arange(3)), torch.arange(3), torch.zeros(3, dtype=torch.long),
               None, g)
    draw = memory.draw(ctx_of(g), 10)
    assert draw is not None and sorted(ids_of(draw.raw)) == [0, 1, 2]  # each once
    assert memory.draw(ctx_of(g), 0) is None


# ------------------------------------------------------------------------------- herding

#: Four unit vectors (class 0) and the order herding picks, by hand. With
#: a = (1, 0), b = (0, 1), c = (3/5, 4/5), d = (5/13, 12/13) the mean is
#: mu = (129/260, 177/260). Squared distances ||mu - (s + p) / k||^2, s the sum chosen so far:
#:   k = 1: a 373/520, b 181/520, c 13/520, d 37/520          -> c
#:   k = 2: a 89/520,  b 45/520,  d 17/520   (s = c)          -> d
#:   k = 3: a 181/4680, b 373/4680           (s = c + d)      -> a
#:   k = 4: b                                                   -> b
#: At k = 3 herding takes a, although b is the nearer to the mean (181/520 < 373/520): the
#: running mean needs the x-direction. Given scaled (2a, 3b, c, d / 2): herding normalises.
HAND = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.6, 0.8], [5 / 26, 6 / 13]])
HAND_ORDER = [2, 3, 0, 1]


def test_herding_picks_the_hand_computed_order():
    assert herding_order(HAND, 4).tolist() == HAND_ORDER
    assert herding_order(HAND, 3).tolist() == HAND_ORDER[:3]
    assert herding_order(HAND, 9).tolist() == HAND_ORDER  # at most every example, once each
    # the order differs from "nearest the mean first" ([2, 3, 1, 0]) and from herding on the
    # raw (not normalised) features, so both the running sum and the normalisation count
    phi = HAND / HAND.norm(dim=1, keepdim=True)
    assert (phi.mean(0) - phi).norm(dim=1).argsort().tolist() == [2, 3, 1, 0]
    raw_order = []
    total = torch.zeros(2)
    for k in range(1, 5):
        dist = (HAND.mean(0) - (total + HAND) / k).norm(dim=1)
        dist[raw_order] = math.inf
        raw_order.append(int(dist.argmin()))
        total += HAND[raw_order[-1]]
    assert raw_order != HAND_ORDER


# ------------------------------------------------------------------ task-end policies


def test_group_lengths_give_the_remainder_to_the_first_groups():
    """Avalanche's ``BalancedExemplarsBuffer.get_group_lengths`` (storage_policy.py, 0.6.0,
    l.180-192, adaptive size): budget // k each, the first budget mod k one more."""
    assert group_lengths(10, 3) == [4, 3, 3]
    assert group_lengths(7, 5) == [2, 2, 1, 1, 1]
    assert group_lengths(3, 5) == [1, 1, 1, 0, 0]
    assert group_lengths(8, 4) == [2, 2, 2, 2]
    assert group_lengths(5, 0) == []


def lowest_priority(candidates: dict[int, float], m: int) -> list[int]:
    """The ``m`` ids of lowest priority (Avalanche's ``ReservoirSamplingBuffer``: the highest
    random weights; the same choice with u -> 1 - u), sorted."""
    return sorted(sorted(candidates, key=lambda i: candidates[i])[:m])


def priorities(memory: Memory) -> dict[int, float]:
    x, _, _ = memory.examples()
    return dict(zip(ids_of(x), memory.priority.tolist(), strict=True))


def test_class_balanced_splits_the_budget_over_classes_and_shrinks_by_priority():
    g = torch.Generator().manual_seed(5)
    memory = Memory(MemoryConfig(size=7, policy="class_balanced"))
    # task 0: classes 0 and 1, six examples each -> lengths [4, 3]
    task0 = data_of(list(range(12)), [0] * 6 + [1] * 6, 0)
    new0 = torch.rand(12, generator=clone(g), dtype=torch.float64).tolist()
    memory.update(ctx_of(g), task0)
    assert held(memory) == {0: lowest_priority(dict(zip(range(6), new0[:6], strict=True)), 4),
                            1: lowest_priority(dict(zip(range(6, 12), new0[6:], strict=True)), 3)}
    assert priorities(memory) == {i: new0[i] for i in sorted(sum(held(memory).values(), []))}
    before = held(memory)
    old = priorities(memory)
    # task 1: classes 2, 3, 4, five each -> five classes, lengths [2, 2, 1, 1, 1]
    task1 = data_of(list(range(12, 27)), [2] * 5 + [3] * 5 + [4] * 5, 1)
    new1 = torch.rand(15, generator=clone(g), dtype=torch.float64).tolist()
    memory.update(ctx_of(g), task1)
    after = held(memory)
    assert {c: len(v) for c, v in after.items()} == {0: 2, 1: 2, 2: 1, 3: 1, 4: 1}
    for c in (0, 1):  # the old classes keep their examples of highest priority
        assert set(after[c]) <= set(before[c])
        assert after[c] == lowest_priority({i: old[i] for i in before[c]}, 2)
    for c in (2, 3, 4):
        ids = range(12 + 5 * (c - 2), 17 + 5 * (c - 2))
        assert after[c] == lowest_priority({i: new1[i - 12] for i in ids}, 1)
    assert len(memory) == 7 and memory.seen == 27
    assert memory.examples()[2].tolist() == [0] * 4 + [1] * 3  # task ids kept with them


def test_per_class_budget_keeps_every_old_example_and_grows():
    g = torch.Generator().manual_seed(0)
    for policy in ("class_balanced", "herding", "random"):
        memory = Memory(MemoryConfig(per_class=2, policy=policy))
        feats = lambda images: images.flatten(1).float() + torch.arange(4.0)  # noqa: E731
        memory.update(ctx_of(g), data_of(list(range(8)), [0] * 4 + [1] * 4, 0),
                      features_of=feats)
        first = held(memory)
        assert {c: len(v) for c, v in first.items()} == {0: 2, 1: 2}
        memory.update(ctx_of(g), data_of(list(range(8, 20)), [2] * 4 + [3] * 4 + [4] * 4, 1),
                      features_of=feats)
        second = held(memory)
        assert {c: len(v) for c, v in second.items()} == {c: 2 for c in range(5)}, policy
        if policy != "random":  # random draws every class's share anew
            assert {c: second[c] for c in (0, 1)} == first


def test_task_balanced_splits_by_task_also_when_tasks_share_labels():
    """Domain-il: every task has labels 0 and 1; the groups are the tasks (Avalanche's
    ``ExperienceBalancedBuffer``, storage_policy.py l.233-243), the first tasks getting the
    remainder: 7 -> [4, 3] -> [3, 2, 2]."""
    g = torch.Generator().manual_seed(2)
    memory = Memory(MemoryConfig(size=7, policy="task_balanced"))
    per_task: list[dict[int, float]] = []
    for task in range(3):
        ids = list(range(10 * task, 10 * task + 10))
        new = torch.rand(10, generator=clone(g), dtype=torch.float64).tolist()
        per_task.append(dict(zip(ids, new, strict=True)))
        before = priorities(memory)
        memory.update(ctx_of(g), data_of(ids, [0, 1] * 5, task))
        x, y, t = memory.examples()
        lengths = group_lengths(7, task + 1)
        assert [int((t == k).sum()) for k in range(task + 1)] == lengths
        for k in range(task + 1):
            mine = sorted(i for i, tk in zip(ids_of(x), t.tolist(), strict=True) if tk == k)
            assert mine == lowest_priority(per_task[k], lengths[k])
            if k < task:
                assert set(mine) <= set(before)
        assert set(y.tolist()) == {0, 1}


def test_class_balanced_in_domain_il_is_a_reservoir_over_the_class_across_tasks():
    """A class seen again competes with its examples in memory: the class keeps the examples
    of lowest priority among the old (their stored priority) and the new (drawn now)."""
    g = torch.Generator().manual_seed(4)
    memory = Memory(MemoryConfig(size=4, policy="class_balanced"))
    memory.update(ctx_of(g), data_of(list(range(10)), [0, 1] * 5, 0))
    old = priorities(memory)
    new = torch.rand(10, generator=clone(g), dtype=torch.float64).tolist()
    memory.update(ctx_of(g), data_of(list(range(10, 20)), [0, 1] * 5, 1))
    for c in (0, 1):
        candidates = {i: p for i, p in old.items() if i % 2 == c}
        candidates |= {i: new[i - 10] for i in range(10 + c, 20, 2)}
        assert held(memory)[c] == lowest_priority(candidates, 2)


def test_random_draws_every_share_anew_from_memory_and_the_task():
    """FACIL's ``RandomExemplarsSelector``: a class's exemplars are drawn from its examples in
    memory and in the new task alike; the new priorities are drawn first, then the old."""
    g = torch.Generator().manual_seed(9)
    memory = Memory(MemoryConfig(size=6, policy="random"))
    memory.update(ctx_of(g), data_of(list(range(10)), [0] * 5 + [1] * 5, 0))
    before = held(memory)
    old_ids = ids_of(memory.examples()[0])
    replay = clone(g)
    new = torch.rand(10, generator=replay, dtype=torch.float64).tolist()
    redrawn = dict(zip(old_ids, torch.rand(len(old_ids), generator=replay,
                                           dtype=torch.float64).tolist(), strict=True))
    memory.update(ctx_of(g), data_of(list(range(10, 20)), [2] * 5 + [3] * 5, 1))
    after = held(memory)
    assert {c: len(v) for c, v in after.items()} == {0: 2, 1: 2, 2: 1, 3: 1}
    for c in (0, 1):
        assert after[c] == lowest_priority({i: redrawn[i] for i in before[c]}, 2)
    for c, ids in ((2, range(10, 15)), (3, range(15, 20))):
        assert after[c] == lowest_priority({i: new[i - 10] for i in ids}, 1)
    assert priorities(memory)[after[0][0]] == redrawn[after[0][0]]


def hand_features(ids: list[int]) -> torch.Tensor:
    """Class 0 (ids 0-3): the hand-computed set; class 1 (ids 4-7): its mirror image
    (x -> -x, the same order); others: seeded random."""
    table = torch.cat([HAND, HAND * torch.tensor([-1.0, 1.0]),
                       torch.randn(40, 2, generator=torch.Generator().manual_seed(0))])
    return table[ids]


class Features:
    """``features_of`` for herding: the features of the ids the images carry, recording the
    ids it was asked for."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        ids = ids_of(images)
        self.calls.append(ids)
        return hand_features(ids)


def test_herding_keeps_the_hand_computed_exemplars_and_shrinks_to_the_first_chosen():
    g = torch.Generator().manual_seed(0)
    memory = Memory(MemoryConfig(size=6, policy="herding"))
    features = Features()
    memory.update(ctx_of(g), data_of(list(range(8)), [0] * 4 + [1] * 4, 0), features_of=features)
    # 6 -> [3, 3]: class 0 keeps c, d, a (ids 2, 3, 0), not b; class 1 its mirror
    assert held(memory) == {0: [0, 2, 3], 1: [4, 6, 7]}
    assert priorities(memory) == {2: 0, 3: 1, 0: 2, 6: 0, 7: 1, 4: 2}  # the order chosen
    # task 1: classes 2 and 3 (ids 8-19) -> four classes, [2, 2, 1, 1]: the old classes keep
    # their first two choices, with no new look at their features (iCaRL, Algorithm 5)
    features.calls.clear()
    new_ids = list(range(8, 20))
    memory.update(ctx_of(g), data_of(new_ids, [2] * 6 + [3] * 6, 1), features_of=features)
    assert sorted(sum(features.calls, [])) == new_ids
    after = held(memory)
    assert after[0] == [2, 3] and after[1] == [6, 7]
    for c, ids in ((2, new_ids[:6]), (3, new_ids[6:])):
        assert after[c] == [ids[int(herding_order(hand_features(ids), 1)[0])]]


def test_herding_a_class_present_in_memory_and_in_the_task_herds_over_both():
    """Domain-il: class 0 again in task 1. Its exemplars are herded anew over its examples in
    memory (in memory order) and in the task (in order)."""
    g = torch.Generator().manual_seed(0)
    memory = Memory(MemoryConfig(per_class=3, policy="herding"))
    features = Features()
    memory.update(ctx_of(g), data_of([0, 1, 2, 3], [0] * 4, 0), features_of=features)
    old_ids = ids_of(memory.examples()[0])
    assert sorted(old_ids) == [0, 2, 3]
    new_ids = list(range(8, 14))
    memory.update(ctx_of(g), data_of(new_ids, [0] * 6, 1), features_of=features)
    candidates = old_ids + new_ids
    assert features.calls[-1] == candidates
    expected = [candidates[i] for i in herding_order(hand_features(candidates), 3).tolist()]
    assert held(memory) == {0: sorted(expected)}
    assert priorities(memory) == {i: k for k, i in enumerate(expected)}


def logits_by(weight: float):
    """``logits_of``: a fixed function of the images (what a model would give), refusing to
    be called with no image."""
    def logits_of(images: torch.Tensor) -> torch.Tensor:
        assert len(images), "logits_of called with no image"
        ids = torch.tensor(ids_of(images), dtype=torch.float32)
        return torch.stack([weight * ids, -ids, ids * ids], dim=1)
    return logits_of


def test_logits_are_recorded_when_an_example_enters_and_kept_after():
    g = torch.Generator().manual_seed(1)
    memory = Memory(MemoryConfig(size=6, policy="class_balanced"), with_logits=True)
    memory.update(ctx_of(g), data_of(list(range(8)), [0] * 4 + [1] * 4, 0),
                  logits_of=logits_by(1.0))
    x, _, _ = memory.examples()
    assert memory.logits is not None
    assert torch.equal(memory.logits, logits_by(1.0)(x))
    old = set(ids_of(x))
    # the model has changed by task 1: the new examples get its outputs, the old keep theirs
    memory.update(ctx_of(g), data_of(list(range(8, 16)), [2] * 4 + [3] * 4, 1),
                  logits_of=logits_by(2.0))
    x, _, _ = memory.examples()
    for row, i in zip(memory.logits, ids_of(x), strict=True):
        want = logits_by(1.0 if i in old else 2.0)(images_of(torch.tensor([i])))[0]
        assert torch.equal(row, want)
    assert {i for i in ids_of(x) if i not in old}  # some new examples entered


def test_a_task_with_no_new_example_kept_asks_no_logits_and_keeps_their_width():
    """size 1: task 0's classes [1, 0], then four classes [1, 0, 0, 0]: nothing of task 1
    enters (``logits_of`` would be called on no image, whose output has no width)."""
    g = torch.Generator().manual_seed(0)
    memory = Memory(MemoryConfig(size=1, policy="class_balanced"), with_logits=True)
    memory.update(ctx_of(g), data_of([0, 1, 2, 3], [0, 0, 1, 1], 0), logits_of=logits_by(1.0))
    memory.update(ctx_of(g), data_of([4, 5, 6, 7], [2, 2, 3, 3], 1), logits_of=logits_by(2.0))
    assert len(memory) == 1 and memory.y.tolist() == [0]
    assert memory.logits is not None and memory.logits.shape == (1, 3)
    assert torch.equal(memory.logits, logits_by(1.0)(memory.x))
    assert memory.draw(ctx_of(g), 4) is not None


# ------------------------------------------------------------------- bytes, checkpoints


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def test_nbytes_is_the_bytes_of_the_tensors_held():
    g = torch.Generator().manual_seed(0)
    reservoir = Memory(MemoryConfig(size=10), with_logits=True)
    assert reservoir.nbytes() == 0
    reservoir.add(images_of(torch.arange(4)), torch.arange(4), torch.zeros(4, dtype=torch.long),
                  torch.zeros(4, 3), g)
    # the 4 held: images of 4 bytes, labels and task ids int64, logits 3 float32
    assert reservoir.nbytes() == 4 * 4 + 4 * 8 + 4 * 8 + 4 * 3 * 4 == 128
    balanced = Memory(MemoryConfig(size=5, policy="class_balanced"), with_logits=True)
    balanced.update(ctx_of(g), data_of(list(range(8)), [0] * 4 + [1] * 4, 0),
                    logits_of=logits_by(1.0))
    # 5 examples: image 4 + label 8 + task 8 + priority 8 (float64) + logits 12
    assert balanced.nbytes() == 5 * (4 + 8 + 8 + 8 + 12)
    assert balanced.nbytes() == tensor_bytes(balanced.x, balanced.y, balanced.t,
                                             balanced.logits, balanced.priority)


def round_trip(memory: Memory) -> Memory:
    """A fresh memory loaded from ``memory.state_dict()`` through torch.save and a
    ``weights_only`` load (as checkpoints are read)."""
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    fresh = Memory(memory.config, memory.with_logits)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


def assert_same(a: Memory, b: Memory) -> None:
    assert a.seen == b.seen and len(a) == len(b)
    for name in ("x", "y", "t", "logits", "priority"):
        u, v = getattr(a, name), getattr(b, name)
        assert (u is None) == (v is None), name
        if u is not None:
            assert torch.equal(u, v), name


def test_state_dict_round_trip_continues_identically():
    g = torch.Generator().manual_seed(0)
    empty = Memory(MemoryConfig(size=4), with_logits=True)
    assert_same(round_trip(empty), empty)
    reservoir = Memory(MemoryConfig(size=4), with_logits=True)
    reservoir.add(images_of(torch.arange(9)), torch.arange(9), torch.arange(9) % 3,
                  torch.randn(9, 2, generator=g), g)
    fresh = round_trip(reservoir)
    assert_same(fresh, reservoir)
    g2 = clone(g)
    for memory, gen in ((reservoir, g), (fresh, g2)):
        memory.add(images_of(torch.arange(9, 20)), torch.arange(9, 20),
                   torch.zeros(11, dtype=torch.long), torch.ones(11, 2), gen)
    assert_same(fresh, reservoir)
    a, b = reservoir.draw(ctx_of(g), 3), fresh.draw(ctx_of(g2), 3)
    assert a is not None and b is not None and torch.equal(a.raw, b.raw)

    herding = Memory(MemoryConfig(size=6, policy="herding"), with_logits=True)
    herding.update(ctx_of(g), data_of(list(range(8)), [0] * 4 + [1] * 4, 0),
                   logits_of=logits_by(1.0), features_of=Features())
    fresh = round_trip(herding)
    assert_same(fresh, herding)
    g2 = clone(g)
    for memory, gen in ((herding, g), (fresh, g2)):
        memory.update(ctx_of(gen), data_of(list(range(8, 14)), [2] * 6, 1),
                      logits_of=logits_by(2.0), features_of=Features())
    assert_same(fresh, herding)
    assert held(herding)[0] == [2, 3]  # still the first chosen after the round trip


# ------------------------------------------------------------------------ budgets of runs


def test_icarl_with_a_memory_below_its_classes_is_refused_before_any_data(tmp_path, capsys):
    """The issue's case: iCaRL with memory.size=1 on 10 classes finished with rows [0.51, 0,
    ...]; now refused by name before any data is read (no run folder)."""
    from lifelong_kd.cli import main

    out = tmp_path / "run"
    assert main(["run", "split-digits", "--strategy", "icarl", "--set", "memory.size=1",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "`memory.size` = 1 cannot hold one example of each of the 10 classes" in err
    assert "`icarl`" in err and not out.exists()
    assert not (tmp_path / "cache").exists()  # nothing read, not even the cache


def test_a_memory_below_the_classes_of_an_image_folder_is_refused_once_it_is_read(tmp_path,
                                                                                 capsys):
    """An image folder's classes are known only once it is read: the engine checks then,
    before training."""
    import numpy as np
    from PIL import Image

    from lifelong_kd.cli import main

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b", "c", "d"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / cls / f"{i}.png")
    base = ["run", "split-digits", "--strategy", "icarl", "--set", "data.dataset=imagefolder",
            "--set", f"data.path={tmp_path / 'imgs'}", "--set", "stream.n_tasks=2",
            "--set", "train.iterations=1", "--set", "model.hidden=[8]", "--quiet"]
    assert main([*base, "--set", "memory.size=3", "--out", str(tmp_path / "small")]) == 2
    assert "`memory.size` = 3 cannot hold one example of each of the 4 classes" in \
        capsys.readouterr().err
    assert main([*base, "--set", "memory.size=4", "--out", str(tmp_path / "enough")]) == 0


def test_result_memory_bytes_are_those_held_with_a_huge_budget(tmp_path):
    """The issue's case: memory.size at its maximum reported 8,000,000,000 bytes."""
    from lifelong_kd.cli import main
    from lifelong_kd.results import read_result

    out = tmp_path / "der"
    assert main(["run", "split-digits", "--strategy", "der", "--set", "memory.size=10000000",
                 "--set", "stream.n_tasks=2", "--set", "train.iterations=5", "--out", str(out),
                 "--quiet"]) == 0
    costs = read_result(out)["costs"]
    examples, per_example = costs["memory_examples"], 8 * 8 + 8 + 8 + 10 * 4
    assert 0 < examples <= 5 * 2 * 32  # at most the examples offered in 10 steps of 32
    assert costs["memory_bytes"] == examples * per_example
