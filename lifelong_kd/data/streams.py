"""Streams: a dataset cut into a sequence of tasks, and the scenario that says what is known.

A :class:`Stream` is plain data: a tuple of :class:`Task` you can index and slice. Each task
holds its own uint8 train/test tensors (already permuted or rotated) and its labels already
mapped to *output units* of the model. The scenario decides that mapping and which outputs
are active when training and testing (van de Ven & Tolias 2019, "Three scenarios for
continual learning"):

========== =============================================== ==================================
scenario   output units                                    active outputs
========== =============================================== ==================================
task-il    ``multi``: task t owns units t*k .. t*k+k-1      the task's own units, in training
           ``masked``: one unit per class (shared by tasks  and at test time (the task id is
           that share classes, e.g. permuted)               known)
class-il   one unit per class of the whole stream           training: the classes seen so far
                                                            (``ce_scope = seen``) or the
                                                            current task's; test: seen so far
domain-il  k units shared by every task (the label within   all k, always
           the task)
========== =============================================== ==================================

k is the number of classes per task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import RunConfig
from ..errors import ConfigError
from .sources import Dataset


@dataclass(frozen=True)
class Task:
    """One task of a stream: its data and the output units its labels map to."""

    id: int
    name: str
    #: Dataset class indices of this task (in the order that gives local labels 0..k-1).
    classes: tuple[int, ...]
    #: Output units of this task (local label i -> outputs[i]).
    outputs: tuple[int, ...]
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 output units
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass(frozen=True)
class Stream:
    """A sequence of tasks in a scenario."""

    name: str
    scenario: str
    tasks: tuple[Task, ...]
    n_outputs: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> Task:
        return self.tasks[i]

    def __iter__(self):  # noqa: ANN204 - iterator of Task
        return iter(self.tasks)

    # ------------------------------------------------------------------ masks over outputs
    def _units(self, task_ids: range | list[int]) -> torch.Tensor:
        mask = torch.zeros(self.n_outputs, dtype=torch.bool)
        for t in task_ids:
            mask[list(self.tasks[t].outputs)] = True
        return mask

    def train_masks(self, current: int, ce_scope: str = "seen") -> torch.Tensor:
        """(n_tasks, n_outputs) bool: row t = outputs active for the loss on task t's examples
        while training task ``current``."""
        rows = []
        for t in range(len(self.tasks)):
            if self.scenario == "task-il":
                rows.append(self._units([t]))
            elif self.scenario == "class-il" and ce_scope == "all":
                rows.append(torch.ones(self.n_outputs, dtype=torch.bool))
            elif self.scenario == "class-il":
                rows.append(self._units(range(current + 1) if ce_scope == "seen" else [t]))
            else:
                rows.append(torch.ones(self.n_outputs, dtype=torch.bool))
        return torch.stack(rows)

    def eval_mask(self, trained: int, task: int, task_aware: bool = False) -> torch.Tensor:
        """Outputs among which the prediction for task ``task`` is taken after training tasks
        0..``trained`` (``trained = -1``: the untrained model). ``task_aware`` restricts a
        class-il prediction to the task's own classes."""
        if self.scenario == "task-il" or (task_aware and self.scenario == "class-il"):
            return self._units([task])
        if self.scenario == "class-il":
            return self._units(range(trained + 1)) if trained >= 0 else self._units(range(len(self)))
        return torch.ones(self.n_outputs, dtype=torch.bool)

    def distill_groups(self, current: int, logits: str = "old") -> list[torch.Tensor]:
        """Output units the teacher's knowledge is distilled on while training ``current``.

        One softmax per group: in task-il one group per head (task), in class-il and domain-il
        one group. ``old``: only tasks before ``current``; ``all``: up to ``current`` too.
        """
        last = current if logits == "all" else current - 1
        if last < 0:
            return []
        if self.scenario == "task-il":
            groups: list[torch.Tensor] = []
            seen: set[tuple[int, ...]] = set()
            for t in range(last + 1):
                units = self.tasks[t].outputs
                if units not in seen:  # heads shared by several tasks are distilled once
                    seen.add(units)
                    groups.append(torch.tensor(units))
            return groups
        if self.scenario == "class-il":
            return [self._units(range(last + 1)).nonzero().flatten()]
        return [torch.arange(self.n_outputs)]


# ------------------------------------------------------------------------------ building


def _n_classes_per_task(config: RunConfig, n_classes: int) -> int:
    s = config.stream
    if s.kind != "split":
        return n_classes
    if s.classes_per_task:
        k = s.classes_per_task
        if n_classes % k:
            raise ConfigError(
                f"`stream.classes_per_task` = {k} does not divide the {n_classes} classes of "
                f"`{config.data.dataset}`; valid: a divisor of {n_classes}"
            )
        if s.n_tasks * k > n_classes:
            raise ConfigError(
                f"`stream.n_tasks` = {s.n_tasks} tasks of {k} classes need {s.n_tasks * k} "
                f"classes, but `{config.data.dataset}` has {n_classes}; at most {n_classes // k}"
            )
        return k
    if s.n_tasks > n_classes:
        raise ConfigError(
            f"`stream.n_tasks` = {s.n_tasks} is more tasks than the {n_classes} classes of "
            f"`{config.data.dataset}`"
        )
    if n_classes % s.n_tasks:
        divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
        raise ConfigError(
            f"the {n_classes} classes of `{config.data.dataset}` do not divide into "
            f"`stream.n_tasks` = {s.n_tasks} tasks; valid task counts: "
            f"{', '.join(map(str, divisors))} (or set `stream.classes_per_task`)"
        )
    return n_classes // s.n_tasks


#: Class counts of the known datasets, for checks before any data is loaded.
KNOWN_CLASS_COUNTS = {"mnist": 10, "fashion-mnist": 10, "digits": 10, "cifar10": 10,
                      "cifar100": 100, "cifar10-jpeg": 10}


def check_stream_config(config: RunConfig) -> None:
    """Checks of the stream settings that need only the number of classes."""
    s = config.stream
    n_classes = KNOWN_CLASS_COUNTS.get(config.data.dataset)
    if n_classes is not None:
        _n_classes_per_task(config, n_classes)
        if s.kind == "split" and not isinstance(s.class_order, str):
            _check_order(s.class_order, n_classes)
    if s.kind != "split" and s.scenario == "task-il" and config.model.head == "masked":
        pass  # masked heads of permuted/rotated tasks share their units (see module doc)


def _check_order(order: tuple[int, ...], n_classes: int) -> None:
    if sorted(order) != list(range(n_classes)):
        raise ConfigError(
            f"`stream.class_order` = {list(order)} must list each class 0..{n_classes - 1} "
            "exactly once"
        )


def class_order(config: RunConfig, n_classes: int) -> list[int]:
    """The order in which classes enter the stream."""
    order = config.stream.class_order
    if order == "natural":
        return list(range(n_classes))
    if order == "random":
        g = torch.Generator().manual_seed(config.seed)
        return torch.randperm(n_classes, generator=g).tolist()
    assert not isinstance(order, str)
    _check_order(order, n_classes)
    return list(order)


def _rotate(images: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate uint8 images (N, C, H, W) by ``angle`` degrees (bilinear, zero fill)."""
    from torchvision.transforms.v2.functional import InterpolationMode, rotate

    if angle % 360 == 0:
        return images
    out = []
    for chunk in images.split(4096):
        out.append(rotate(chunk, angle, interpolation=InterpolationMode.BILINEAR))
    return torch.cat(out)


def build_stream(config: RunConfig, ds: Dataset) -> Stream:
    """Cut ``ds`` into the tasks of ``config.stream`` (seeded by ``config.seed``)."""
    s = config.stream
    k = _n_classes_per_task(config, ds.n_classes)
    scenario = s.scenario
    # Output units: domain-il (and task-il masked heads of tasks that share classes) use the
    # label within the task; everything else gives task t the units t*k .. t*k+k-1.
    shared = scenario == "domain-il" or (
        scenario == "task-il" and config.model.head == "masked" and s.kind != "split"
    )
    n_outputs = k if shared else s.n_tasks * k
    g = torch.Generator().manual_seed(config.seed)
    tasks: list[Task] = []
    order = class_order(config, ds.n_classes) if s.kind == "split" else list(range(ds.n_classes))
    if s.kind == "rotated":
        angles = list(s.angles) or [
            float(a) for a in (torch.rand(s.n_tasks, generator=g) * 180.0).tolist()
        ]
        if not s.angles:
            angles[0] = 0.0
    for t in range(s.n_tasks):
        outputs = tuple(range(k)) if shared else tuple(range(t * k, (t + 1) * k))
        if s.kind == "split":
            classes = tuple(order[t * k:(t + 1) * k])
            lookup = torch.full((ds.n_classes,), -1, dtype=torch.long)
            lookup[list(classes)] = torch.tensor(outputs)
            tr = torch.isin(ds.train_y, torch.tensor(classes))
            te = torch.isin(ds.test_y, torch.tensor(classes))
            train_x, train_y = ds.train_x[tr], lookup[ds.train_y[tr]]
            test_x, test_y = ds.test_x[te], lookup[ds.test_y[te]]
            name = "classes " + ",".join(ds.classes[c] for c in classes)
        else:
            classes = tuple(range(ds.n_classes))
            offset = outputs[0]
            train_y, test_y = ds.train_y + offset, ds.test_y + offset
            if s.kind == "permuted":
                n_pix = math.prod(ds.input_shape[1:])
                perm = torch.randperm(n_pix, generator=g)
                if t == 0 and not s.permute_first:
                    perm = torch.arange(n_pix)
                    name = "original"
                else:
                    name = f"permutation {t}"

                def apply(x: torch.Tensor, p: torch.Tensor = perm) -> torch.Tensor:
                    n, c, h, w = x.shape
                    return x.reshape(n, c, h * w)[:, :, p].reshape(n, c, h, w).contiguous()

                train_x, test_x = apply(ds.train_x), apply(ds.test_x)
            else:
                angle = angles[t]
                name = f"rotation {angle:.1f}"
                train_x, test_x = _rotate(ds.train_x, angle), _rotate(ds.test_x, angle)
        tasks.append(Task(t, name, classes, outputs, train_x, train_y, test_x, test_y))
    return Stream(
        name=config.benchmark, scenario=scenario, tasks=tuple(tasks), n_outputs=n_outputs,
        input_shape=ds.input_shape,
        mean=ds.mean if config.data.normalize else tuple(0.0 for _ in ds.mean),
        std=ds.std if config.data.normalize else tuple(1.0 for _ in ds.std),
    )
