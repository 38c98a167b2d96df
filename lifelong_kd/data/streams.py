"""Streams: a dataset cut into a sequence of tasks, and the scenario that says what is known.

A :class:`Stream` is plain data: a tuple of :class:`Task` you can index and slice. Each task
holds its train/test images as :class:`Images` and its labels already mapped to *output units*
of the model. The images of a permuted or rotated task are never copied whole: every task
reads the one shared uint8 dataset through its pixel permutation (an index gather) or its
rotation, one batch at a time (``task.train_x[idx]``), so a stream of T tasks holds the dataset
once, not T times. Split tasks hold their own rows (together, one copy of the dataset).

The scenario decides the mapping to output units and which outputs are active when training
and testing (van de Ven & Tolias 2019, "Three scenarios for continual learning"):

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

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import RunConfig
from ..errors import ConfigError, DataError
from .dataset import Dataset
from .facts import KNOWN_CLASS_COUNTS

#: An index into a set of images: one position, a slice, or a tensor of positions.
Index = int | slice | torch.Tensor


# ------------------------------------------------------------------ where the data live

#: Treat every device as an accelerator (tests set it to run the accelerator's code path,
#: data placed once and copies that do not wait, on the CPU; see :func:`data_on_device`).
FORCE_DATA_ON_DEVICE = False


def data_on_device(device: torch.device | str) -> bool:
    """Whether a run on ``device`` keeps its data there apart from the host: any device that is
    not the CPU (an accelerator), or every device when :data:`FORCE_DATA_ON_DEVICE` is set.

    On such a device the engine places the stream's images and labels once per run
    (:meth:`Stream.to`), makes batches by indexing them there, and copies what it still draws
    on the host (the permutation of an epoch, augmentation's draws, a memory's slots) with
    :func:`to_device`, so that no step waits for the device."""
    return FORCE_DATA_ON_DEVICE or torch.device(device).type != "cpu"


def to_device(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``x`` on ``device``; a copy from the host to a :func:`data_on_device` device does not wait.

    A blocking copy from the host to an accelerator synchronises the host with the device's
    queue (CUDA: ``cudaMemcpyAsync`` then ``cudaStreamSynchronize``); ``non_blocking`` stages
    the host memory and returns. A copy to the host always waits (its values are read next).
    On the CPU this is ``x.to(device)``: the same tensor when it is there already."""
    device = torch.device(device)
    to_host = device.type == "cpu" and x.device.type != "cpu"
    return x.to(device, non_blocking=not to_host and (device.type != "cpu" or FORCE_DATA_ON_DEVICE))


# ------------------------------------------------------------------ images seen through a task


class Permute:
    """The pixel permutation of a Permuted-MNIST task: pixel k of every channel of the output
    is pixel ``perm[k]`` of the input (an index gather on uint8 images (N, C, H, W))."""

    def __init__(self, perm: torch.Tensor):
        self.perm = perm

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # torch.gather with the permutation broadcast over images and channels: the same
        # values as x[..., perm], several times faster on uint8 than advanced indexing
        flat = x.reshape(n, c, h * w)
        return torch.gather(flat, 2, self.perm.expand(n, c, h * w)).reshape(n, c, h, w)

    def to(self, device: torch.device | str) -> Permute:
        """The same permutation, its table on ``device`` (:func:`to_device`)."""
        return Permute(to_device(self.perm, device))

    def __repr__(self) -> str:
        return f"Permute({len(self.perm)} pixels)"


@functools.cache
def _torchvision_grid() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]] | None:
    """torchvision's own (private) steps of ``rotate`` for tensors: the inverse affine matrix,
    the sampling grid, and the grid transform; None where this torchvision lacks them."""
    try:
        from torchvision.transforms.v2.functional._geometry import (
            _affine_grid,
            _apply_grid_transform,
            _get_inverse_affine_matrix,
        )
    except ImportError:
        return None
    return _get_inverse_affine_matrix, _affine_grid, _apply_grid_transform


class Rotate:
    """Rotation of uint8 images (N, C, H, W) by ``angle`` degrees, counter-clockwise about the
    centre, bilinear, zero fill, same size: torchvision's ``rotate(x, angle, BILINEAR)``.

    Rotating a batch gives, bit for bit, the rotations of its images one by one (the same
    sampling grid for every image), so rotating batch by batch equals rotating the dataset
    once. The grid is made once per image size with torchvision's own steps of ``rotate``
    (:func:`_torchvision_grid`), so that one image, as Avalanche's loaders fetch them, costs
    one ``grid_sample`` rather than torchvision's set-up per call; the angles torchvision
    rotates by exact transposes (0, 90, 180, 270), and any angle where those steps are
    missing, go through the public ``rotate``.
    """

    def __init__(self, angle: float):
        self.angle = float(angle)
        self._grids: dict[tuple[int, int, str], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2.functional import InterpolationMode, rotate

        h, w = x.shape[-2:]
        angle = self.angle % 360
        steps = _torchvision_grid()
        if steps is None or angle in (0.0, 180.0) or (h == w and angle in (90.0, 270.0)) \
                or x.numel() == 0:
            return rotate(x, self.angle, interpolation=InterpolationMode.BILINEAR)
        inverse_matrix, affine_grid, apply_grid = steps
        key = (h, w, str(x.device))
        if key not in self._grids:
            # as torchvision's rotate_image: centre (0, 0), -angle (its rotate/affine convention)
            matrix = inverse_matrix([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
            theta = to_device(torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3), x.device)
            self._grids[key] = affine_grid(theta, w=w, h=h, ow=w, oh=h)
        return apply_grid(x, self._grids[key], "bilinear", fill=None)

    def __repr__(self) -> str:
        return f"Rotate({self.angle:g})"


class Images:
    """A task's uint8 images (N, C, H, W): the rows of a ``source`` tensor shared with the
    dataset (and the stream's other tasks), seen through ``transform`` (a :class:`Permute`, a
    :class:`Rotate`, or None).

    Indexing makes only the images asked for: ``images[idx]`` (a tensor of positions, a slice,
    or one position) gathers those rows of the source and transforms them, one vectorised
    operation on the batch. :meth:`materialise` makes them all (tests, exports).
    """

    __slots__ = ("source", "transform")

    def __init__(self, source: torch.Tensor, transform: Permute | Rotate | None = None):
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return int(self.source.shape[0])

    @property
    def shape(self) -> torch.Size:
        """(N, C, H, W): permutations and rotations keep the image size."""
        return self.source.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.source.dtype

    def __getitem__(self, index: Index) -> torch.Tensor:
        if isinstance(index, int):  # one image (C, H, W), as Avalanche's loaders fetch them
            position = index + len(self) if index < 0 else index
            if not 0 <= position < len(self):
                raise IndexError(f"image {index} of {len(self)}")
            return self[position:position + 1][0]  # a one-image view of the source, transformed
        x = self.source[index]
        return x if self.transform is None else self.transform(x)

    def materialise(self, chunk: int = 4096) -> torch.Tensor:
        """Every image, transformed: a full copy made ``chunk`` images at a time (the source
        itself when there is no transform)."""
        if self.transform is None:
            return self.source
        return torch.cat([self[i:i + chunk] for i in range(0, len(self), chunk)]) if len(self) \
            else self.source.clone()

    def __repr__(self) -> str:
        return f"Images({tuple(self.shape)}, {self.transform!r})"


class ImageUnion:
    """The images of several :class:`Images` as one set, in order (joint training's union of
    tasks): position i is image ``i - offset[p]`` of part p, the part whose range holds i.

    Only the parts' offsets are stored, never a copy of the images; indexing a batch gathers
    from each part it touches (a small loop over the distinct parts of the batch, each a
    vectorised gather and transform) and puts the images back in the batch's order. Parts
    that are permutations of one shared source (Permuted-MNIST's tasks) take one gather for
    the whole batch instead, each image with its own task's permutation (a table of them).

    When the parts' images are on a :func:`data_on_device` device (the engine's data on an
    accelerator), a batch is gathered there without a host synchronisation: the positions go
    to the device, the bounds are checked by a device-side assert (not read back) and, rather
    than the distinct parts of the batch (which the host would have to read), every part
    gathers the whole batch at clamped positions and each image is taken from its own part
    (``torch.where``): the same images, bit for bit.
    """

    def __init__(self, parts: Sequence[Images], image_shape: tuple[int, ...]):
        self.parts = tuple(parts)
        self.image_shape = tuple(image_shape)
        sizes = torch.tensor([len(p) for p in self.parts], dtype=torch.long)
        #: offsets[p] = position of part p's first image; offsets[-1] = the total.
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
        #: (parts, H*W) pixel permutation of each part, when they share one source.
        self._perms: torch.Tensor | None = None
        #: The offsets on each device positions came from (:meth:`_offsets_on`).
        self._device_offsets: dict[torch.device, torch.Tensor] = {}
        shared = bool(self.parts) and all(p.source is self.parts[0].source for p in self.parts)
        if shared and all(isinstance(p.transform, (Permute, type(None))) for p in self.parts):
            n_pix = math.prod(self.image_shape[1:])
            device = self.parts[0].source.device
            self._perms = torch.stack([
                p.transform.perm.to(device) if isinstance(p.transform, Permute)
                else torch.arange(n_pix, device=device) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.image_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8 if not self.parts else self.parts[0].dtype

    @property
    def device(self) -> torch.device:
        """Where the parts' images are (the host when there are none)."""
        return self.parts[0].source.device if self.parts else torch.device("cpu")

    def __getitem__(self, index: Index) -> torch.Tensor:
        if isinstance(index, int):
            return self[torch.tensor([index])][0]
        positions = torch.arange(*index.indices(len(self))) if isinstance(index, slice) \
            else index
        if data_on_device(self.device):
            return self._gather(to_device(positions, self.device))
        positions = positions.reshape(-1).long()
        if len(positions) and (int(positions.min()) < -len(self) or int(positions.max()) >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        positions = positions % max(len(self), 1)
        part = torch.searchsorted(self.offsets, positions, right=True) - 1
        local = positions - self.offsets[part]
        if self._perms is not None:
            c, n_pix = self.image_shape[0], self._perms.shape[1]
            rows = self.parts[0].source[local].reshape(len(local), c, n_pix)
            index = self._perms[part][:, None, :].expand(len(local), c, n_pix)
            return torch.gather(rows, 2, index).reshape(len(local), *self.image_shape)
        out = torch.empty((len(positions), *self.image_shape), dtype=self.dtype)
        for p in torch.unique(part).tolist():
            rows = (part == p).nonzero().flatten()
            out[rows] = self.parts[p][local[rows]]
        return out

    def _offsets_on(self, device: torch.device) -> torch.Tensor:
        """:attr:`offsets` on ``device`` (copied once per device)."""
        if device not in self._device_offsets:
            self._device_offsets[device] = to_device(self.offsets, device)
        return self._device_offsets[device]

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        """The images at the positions ``index`` (a tensor on the parts' :func:`data_on_device`
        device), without reading anything back to the host (see the class docstring)."""
        n = len(self)
        positions = index.reshape(-1).long()
        if not len(positions):
            return torch.empty((0, *self.image_shape), dtype=self.dtype, device=positions.device)
        torch._assert_async(((positions >= -n) & (positions < n)).all(),
                            f"index out of range for {n} images")
        positions = positions % max(n, 1)
        offsets = self._offsets_on(positions.device)
        part = torch.searchsorted(offsets, positions, right=True) - 1
        local = positions - offsets[part]
        if self._perms is not None:
            c, n_pix = self.image_shape[0], self._perms.shape[1]
            rows = self.parts[0].source[local].reshape(len(local), c, n_pix)
            index = self._perms[part][:, None, :].expand(len(local), c, n_pix)
            return torch.gather(rows, 2, index).reshape(len(local), *self.image_shape)
        out: torch.Tensor | None = None
        in_part = part.view(-1, *(1 for _ in self.image_shape))
        for p, images in enumerate(self.parts):
            if not len(images):
                continue
            rows = images[local.clamp(0, len(images) - 1)]
            out = rows if out is None else torch.where(in_part == p, rows, out)
        assert out is not None, "positions in range imply a part with images"
        return out

    def materialise(self) -> torch.Tensor:
        return self[:]


def image_storage_bytes(tensors: Sequence[Any]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (an :class:`Images` counts its
    source): how much memory a stream's images really hold."""
    seen: dict[int, int] = {}
    for t in tensors:
        t = t.source if isinstance(t, Images) else t
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


@dataclass(frozen=True)
class Task:
    """One task of a stream: its data and the output units its labels map to."""

    id: int
    name: str
    #: Dataset class indices of this task (in the order that gives local labels 0..k-1).
    classes: tuple[int, ...]
    #: Output units of this task (local label i -> outputs[i]).
    outputs: tuple[int, ...]
    #: uint8 (N, C, H, W) images, made batch by batch (see :class:`Images`).
    train_x: Images
    train_y: torch.Tensor  # int64 output units
    test_x: Images
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

    def to(self, device: torch.device | str) -> Stream:
        """The stream with its tasks' images (their sources, and a permuted task's pixel
        permutation) and labels on ``device`` (:func:`to_device`), each tensor copied once
        however many tasks share it (Permuted-MNIST's tasks read one dataset, and without an
        offset share its labels too): the device holds the data once, as the host does. A
        :class:`Rotate` is kept (it makes its grid once per device)."""
        moved: dict[int, torch.Tensor] = {}
        permutes: dict[int, Permute] = {}

        def move(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in moved:
                moved[id(t)] = to_device(t, device)
            return moved[id(t)]

        def images(x: Images) -> Images:
            transform = x.transform
            if isinstance(transform, Permute):
                if id(transform) not in permutes:
                    permutes[id(transform)] = transform.to(device)
                transform = permutes[id(transform)]
            return Images(move(x.source), transform)

        tasks = tuple(dataclasses.replace(
            task, train_x=images(task.train_x), train_y=move(task.train_y),
            test_x=images(task.test_x), test_y=move(task.test_y)) for task in self.tasks)
        return dataclasses.replace(self, tasks=tasks)

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


def _shared_outputs(config: RunConfig) -> bool:
    """Whether every task uses the same output units: domain-il (and task-il masked heads of
    tasks that share classes) use the label within the task; everything else gives task t
    the units t*k .. t*k+k-1."""
    s = config.stream
    return s.scenario == "domain-il" or (
        s.scenario == "task-il" and config.model.head == "masked" and s.kind != "split")


def stream_outputs(config: RunConfig, n_classes: int) -> int:
    """The output units (the classes a model and a memory tell apart) of the stream of
    ``config`` on a dataset of ``n_classes`` classes."""
    k = _n_classes_per_task(config, n_classes)
    return k if _shared_outputs(config) else config.stream.n_tasks * k


def check_stream_config(config: RunConfig) -> None:
    """Checks of the stream settings that need only the number of classes."""
    s = config.stream
    n_classes = KNOWN_CLASS_COUNTS.get(config.data.dataset)
    if n_classes is not None:
        _n_classes_per_task(config, n_classes)
        if s.kind == "split" and not isinstance(s.class_order, str):
            _check_order(s.class_order, n_classes)


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


def build_stream(config: RunConfig, ds: Dataset) -> Stream:
    """Cut ``ds`` into the tasks of ``config.stream`` (seeded by ``config.seed``)."""
    s = config.stream
    k = _n_classes_per_task(config, ds.n_classes)
    scenario = s.scenario
    shared = _shared_outputs(config)
    n_outputs = stream_outputs(config, ds.n_classes)
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
            # the task's own rows: the split tasks together hold one copy of the dataset
            train_x, train_y = Images(ds.train_x[tr]), lookup[ds.train_y[tr]]
            test_x, test_y = Images(ds.test_x[te]), lookup[ds.test_y[te]]
            name = "classes " + ",".join(ds.classes[c] for c in classes)
        else:
            classes = tuple(range(ds.n_classes))
            offset = outputs[0]
            # labels too are shared when they need no offset (domain-il, masked heads)
            train_y = ds.train_y if offset == 0 else ds.train_y + offset
            test_y = ds.test_y if offset == 0 else ds.test_y + offset
            transform: Permute | Rotate | None
            if s.kind == "permuted":
                n_pix = math.prod(ds.input_shape[1:])
                perm = torch.randperm(n_pix, generator=g)  # drawn for task 0 too: same seeds
                if t == 0 and not s.permute_first:
                    transform, name = None, "original"
                else:
                    transform, name = Permute(perm), f"permutation {t}"
            else:
                angle = angles[t]
                name = f"rotation {angle:.1f}"
                transform = None if angle % 360 == 0 else Rotate(angle)
            # every task reads the one shared dataset through its own transform
            train_x, test_x = Images(ds.train_x, transform), Images(ds.test_x, transform)
        tasks.append(Task(t, name, classes, outputs, train_x, train_y, test_x, test_y))
    _check_not_empty(tasks, ds)
    return Stream(
        name=config.benchmark, scenario=scenario, tasks=tuple(tasks), n_outputs=n_outputs,
        input_shape=ds.input_shape,
        mean=ds.mean if config.data.normalize else tuple(0.0 for _ in ds.mean),
        std=ds.std if config.data.normalize else tuple(1.0 for _ in ds.std),
    )


def _check_not_empty(tasks: list[Task], ds: Dataset) -> None:
    """Refuse a stream with a task that has no training or no test examples (a DataError):
    its accuracy would enter every average as a measured 0 %, and it would be "trained" with
    no step. A task missing only some of its classes is kept."""
    empty = [task for task in tasks if len(task.train_y) == 0 or len(task.test_y) == 0]
    if not empty:
        return
    task = empty[0]
    names = [ds.classes[c] for c in task.classes]
    shown = ", ".join(names[:10]) + (f", ... ({len(names)} classes)" if len(names) > 10 else "")
    others = f" (and {len(empty) - 1} more of the {len(tasks)} tasks)" if len(empty) > 1 else ""
    raise DataError(
        f"task {task.id} `{task.name}` (classes {shown}) has {len(task.train_y)} training and "
        f"{len(task.test_y)} test examples{others}: every task needs at least one of each; "
        "raise `data.train_subset` / `data.test_subset` or check the dataset's files"
    )
