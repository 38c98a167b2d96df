"""Issue 12, the engine's part: empty tasks refused (3), permuted and rotated tasks made batch by
batch from the one shared dataset and models too large for the machine refused (6), weights
or outputs that blow up while the loss stays finite end the run as diverged (9)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2.functional import InterpolationMode, rotate

from lifelong_kd import models
from lifelong_kd.cli import main
from lifelong_kd.data.sources import Dataset, make_dataset
from lifelong_kd.data.streams import Images, ImageUnion, Rotate, Stream, build_stream, image_storage_bytes
from lifelong_kd.engine import Diverged, RunState, TrainData, new_state, train_stream
from lifelong_kd.errors import ConfigError, DataError
from lifelong_kd.models import build_model, check_model_size, model_size
from lifelong_kd.presets import build_config
from lifelong_kd.strategies import Strategy


def toy(n_classes: int = 10, per_class: int = 12, size: int = 8, channels: int = 1,
        test_per_class: int | None = None, drop_train: tuple[int, ...] = (),
        drop_test: tuple[int, ...] = (), seed: int = 0) -> Dataset:
    """Random uint8 images; ``drop_*`` leaves those classes out of a split."""
    rng = np.random.default_rng(seed)

    def split(per: int, drop: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        y = np.array([c for c in range(n_classes) if c not in drop for _ in range(per)], dtype=np.int64)
        x = rng.integers(0, 256, size=(len(y), channels, size, size), dtype=np.uint8)
        return x, y

    tx, ty = split(per_class, drop_train)
    ex, ey = split(per_class // 2 if test_per_class is None else test_per_class, drop_test)
    return make_dataset("toy", tx, ty, ex, ey, tuple(f"c{i}" for i in range(n_classes)), "memory")


def cfg(kind: str = "split", n_tasks: int = 5, strategy: str = "naive", **sets):
    overrides = {"stream.kind": kind, "stream.n_tasks": n_tasks, "model.hidden": [16],
                 "train.iterations": 6, "train.batch_size": 16, **sets}
    if kind != "split":
        overrides.setdefault("stream.scenario", "domain-il")
    return build_config("split-digits", strategy, overrides)


# ------------------------------------------------------------------ 3: empty tasks refused


def test_a_task_without_test_examples_is_refused_naming_it_and_its_classes():
    ds = toy(drop_test=(4, 5))
    with pytest.raises(DataError) as err:
        build_stream(cfg(), ds)
    message = str(err.value)
    assert message == ("task 2 `classes c4,c5` (classes c4, c5) has 24 training and 0 test "
                       "examples: every task needs at least one of each; raise "
                       "`data.train_subset` / `data.test_subset` or check the dataset's files")


def test_a_task_without_training_examples_is_refused():
    with pytest.raises(DataError, match=r"^task 0 `classes c0,c1` \(classes c0, c1\) has 0 training "
                                        r"and 12 test examples"):
        build_stream(cfg(), toy(drop_train=(0, 1)))


def test_empty_test_set_names_the_first_task_and_counts_the_others():
    ds = toy(test_per_class=0)
    assert len(ds.test_y) == 0
    with pytest.raises(DataError, match=r"^task 0 `original` \(classes c0, c1, .*c9\) has 120 "
                                        r"training and 0 test examples \(and 2 more of the 3 tasks\)"):
        build_stream(cfg("permuted", 3), ds)


def test_a_task_missing_only_one_of_its_classes_is_kept():
    stream = build_stream(cfg(), toy(drop_test=(5,), drop_train=(8,)))
    assert [len(t.test_y) for t in stream] == [12, 12, 6, 12, 12]
    assert [len(t.train_y) for t in stream] == [24, 24, 24, 24, 12]


def test_cli_refuses_a_test_subset_that_leaves_tasks_empty(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    code = main(["run", "split-digits", "--set", "data.test_subset=1", "--out",
                 str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: task ")
    assert "0 test examples" in lines[0] and "(classes " in lines[0]
    assert not (tmp_path / "run" / "result.json").exists()


# ------------------------------------------------------- 6: one shared copy of the dataset


def test_a_20_task_permuted_stream_holds_the_dataset_once():
    ds = toy(size=28, per_class=20)
    stream = build_stream(cfg("permuted", 20), ds)
    for task in stream:
        assert task.train_x.source is ds.train_x and task.test_x.source is ds.test_x
    images = [x for task in stream for x in (task.train_x, task.test_x)]
    assert image_storage_bytes(images) == ds.train_x.nbytes + ds.test_x.nbytes
    # joint training's union of every task: the same single copy
    union = TrainData.union(list(stream.tasks))
    assert isinstance(union.x, ImageUnion) and len(union) == 20 * len(ds.train_y)
    assert image_storage_bytes(union.x.parts) == ds.train_x.nbytes
    # the labels need no offset in domain-il: shared too
    assert all(task.train_y is ds.train_y for task in stream)


def test_a_rotated_stream_holds_the_dataset_once():
    ds = toy(size=12)
    stream = build_stream(cfg("rotated", 4, **{"stream.angles": [0, 30, 90, 200]}), ds)
    assert image_storage_bytes([t.train_x for t in stream] + [t.test_x for t in stream]) == \
        ds.train_x.nbytes + ds.test_x.nbytes


def test_permuted_batches_equal_the_materialised_permutation():
    ds = toy(size=6, per_class=10)
    stream = build_stream(cfg("permuted", 4, **{"stream.permute_first": True}), ds)
    g = torch.Generator().manual_seed(0)
    flat = ds.train_x.reshape(len(ds.train_x), 1, -1)
    for task in stream:
        perm = task.train_x.transform.perm  # type: ignore[union-attr]
        whole = flat[:, :, perm].reshape(ds.train_x.shape)   # the old materialised copy
        assert torch.equal(task.train_x.materialise(), whole)
        for bs in (1, 7, 64, len(ds.train_x)):
            idx = torch.randperm(len(ds.train_x), generator=g)[:bs]
            assert torch.equal(task.train_x[idx], whole[idx])
        assert torch.equal(task.train_x[3], whole[3]) and torch.equal(task.train_x[-1], whole[-1])
        assert torch.equal(task.train_x[5:17], whole[5:17])
        with pytest.raises(IndexError):
            task.train_x[len(whole)]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 6, 5)])
def test_rotating_a_batch_equals_rotating_each_image_alone(shape: tuple[int, int, int]):
    """Bit for bit, for fast-path and general angles, against torchvision's public rotate of the
    whole set (what the stream used to materialise) and of each image alone."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (300, *shape), dtype=torch.uint8, generator=g)
    for angle in (0.0, 18.0, 90.0, 133.7, 180.0, 270.0, 359.9, -45.0, 1e-3):
        whole = rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
        alone = torch.stack([rotate(x[i], angle, interpolation=InterpolationMode.BILINEAR)
                             for i in range(0, 300, 37)])
        images = Images(x, Rotate(angle))
        assert torch.equal(images[torch.arange(0, 300, 37)], alone), angle
        for bs in (1, 2, 5, 64, 300):
            idx = torch.randperm(300, generator=g)[:bs]
            assert torch.equal(images[idx], whole[idx]), (angle, bs)
        assert torch.equal(images[7], whole[7])
        assert torch.equal(images.materialise(chunk=128), whole)


def test_rotation_without_torchvisions_private_steps_is_the_same(monkeypatch: pytest.MonkeyPatch):
    from lifelong_kd.data import streams

    x = torch.randint(0, 256, (40, 1, 9, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    fast = Images(x, Rotate(33.0))[torch.arange(40)]
    monkeypatch.setattr(streams, "_torchvision_grid", lambda: None)
    assert torch.equal(Images(x, Rotate(33.0))[torch.arange(40)], fast)
    assert torch.equal(fast, rotate(x, 33.0, interpolation=InterpolationMode.BILINEAR))


@pytest.mark.parametrize("kind", ["rotated", "permuted", "split"])
def test_image_union_batches_equal_the_concatenated_copies(kind: str):
    """Rotations (a loop over the parts of a batch), permutations of one source (one gather
    with a table of permutations), split tasks (separate sources)."""
    ds = toy(size=6, channels=2)
    extra = {"stream.angles": [0, 40, 100]} if kind == "rotated" else {}
    extra.update({"stream.permute_first": True} if kind == "permuted" else {})
    stream = build_stream(cfg(kind, 5 if kind == "split" else 3, **extra), ds)
    union = ImageUnion([t.train_x for t in stream], tuple(ds.train_x.shape[1:]))
    whole = torch.cat([t.train_x.materialise() for t in stream])
    g = torch.Generator().manual_seed(2)
    for bs in (1, 3, 50, len(whole)):
        idx = torch.randperm(len(whole), generator=g)[:bs]
        assert torch.equal(union[idx], whole[idx])
    assert torch.equal(union[torch.arange(10, 20)], whole[10:20])   # one part only
    assert torch.equal(union[100:260], whole[100:260])
    assert torch.equal(union[len(whole) - 1], whole[-1])
    assert union[torch.arange(0)].shape == (0, *ds.train_x.shape[1:])
    assert TrainData.empty(stream[0]).x[torch.arange(0)].shape == (0, 2, 6, 6)
    assert (union._perms is not None) == (kind == "permuted")


def _materialised(stream: Stream) -> Stream:
    """The same stream with every task's images copied whole (the code before issue 12)."""
    def copy(task):  # noqa: ANN001, ANN202
        return dataclasses.replace(task, train_x=Images(task.train_x.materialise().clone()),
                                   test_x=Images(task.test_x.materialise().clone()))
    return dataclasses.replace(stream, tasks=tuple(copy(t) for t in stream))


@pytest.mark.parametrize(("kind", "strategy", "sets"), [
    ("permuted", "lwf", {}),                                   # teacher outputs cached per task
    ("permuted", "ewc", {"strategy.fisher_samples": 50}),      # Fisher samples
    ("rotated", "joint", {}),                                  # the union of the tasks
    ("rotated", "lwf", {"train.augment": True}),               # teacher on each augmented batch
    ("permuted", "joint", {"stream.scenario": "task-il"}),
    ("rotated", "ewc", {"stream.scenario": "class-il", "strategy.ewc_fisher": "empirical"}),
])
def test_runs_on_batch_made_images_equal_runs_on_materialised_copies(kind: str, strategy: str, sets):
    """Training batches, evaluation, LwF's teacher cache, EWC's Fisher samples and joint's
    union give, bit for bit, the matrix and weights of the materialised stream."""
    extra = {"stream.angles": [0, 25, 110]} if kind == "rotated" else {}
    config = cfg(kind, 3, strategy, **extra, **sets)
    ds = toy(size=10, per_class=16)
    lazy = build_stream(config, ds)
    copied = _materialised(lazy)
    assert image_storage_bytes([t.train_x for t in copied]) > image_storage_bytes([t.train_x for t in lazy])
    a = train_stream(config, lazy, progress=False)
    b = train_stream(config, copied, progress=False)
    assert a.rows == b.rows and a.rows_task_aware == b.rows_task_aware and a.initial == b.initial
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_avalanche_experiences_read_the_shared_images_bit_for_bit():
    from lifelong_kd.interop.avalanche import _NormalisedImages, to_avalanche_benchmark

    ds = toy(size=10)
    stream = build_stream(cfg("rotated", 3, **{"stream.angles": [0, 30, 250]}), ds)
    bench = to_avalanche_benchmark(stream)
    mean = torch.tensor(stream.mean).view(-1, 1, 1)
    std = torch.tensor(stream.std).view(-1, 1, 1)
    for task, exp in zip(stream, bench.train_stream, strict=True):
        whole = task.train_x.materialise()
        for i in (0, 17, len(whole) - 1):
            x, y, _ = exp.dataset[i]
            assert torch.equal(x, (whole[i].float() / 255.0 - mean) / std)
            assert y == int(task.train_y[i])
    lazy = _NormalisedImages(stream[1].train_x, stream[1].train_y, torch.tensor(stream.mean),
                             torch.tensor(stream.std))
    assert lazy.images.source is ds.train_x


# --------------------------------------------------- 6: models too large for the machine


def _huge() -> models.ModelConfig:
    return build_config("permuted-mnist", "naive", {"model.hidden": [16384] * 64}).model


def test_model_size_is_counted_without_allocating_or_drawing_random_numbers():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    n_params, size = model_size(_huge(), (1, 28, 28), 10)
    assert torch.equal(torch.get_rng_state(), state)
    assert n_params == 784 * 16384 + 16384 + 63 * (16384 * 16384 + 16384) + 16384 * 10 + 10
    assert size == 4 * n_params
    # the check leaves the weights a seed gives as they were
    config = build_config("split-digits", "naive", {"model.hidden": [20, 30]}).model
    torch.manual_seed(3)
    checked = build_model(config, (1, 8, 8), 10)
    torch.manual_seed(3)
    plain = models.MODELS["mlp"](config, (1, 8, 8), 10)
    assert all(torch.equal(p, q) for p, q in zip(checked.parameters(), plain.parameters(), strict=True))


def test_a_model_larger_than_memory_is_refused_before_it_is_built(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(models, "physical_memory", lambda: 16 * 10**9)
    with pytest.raises(ConfigError) as err:
        build_model(_huge(), (1, 28, 28), 10)   # building it would need 67.7 GB
    assert str(err.value) == (
        "the `mlp` model of `model.hidden` = [16384]*64 has 16,925,491,210 parameters: 67.7 GB "
        "for its weights alone, more than this machine's 16.0 GB of memory; choose a smaller model")
    check_model_size(_huge(), (1, 28, 28), 10, memory=68 * 10**9)   # fits: not refused
    monkeypatch.setattr(models, "physical_memory", lambda: None)
    check_model_size(_huge(), (1, 28, 28), 10)                      # unknown memory: not refused


def test_physical_memory_is_the_machines():
    memory = models.physical_memory()
    assert memory is not None and memory > 10**8


def test_cli_refuses_a_huge_model_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(models, "physical_memory", lambda: 16 * 10**9)
    hidden = ",".join(["16384"] * 64)
    code = main(["run", "split-digits", "--set", f"model.hidden=[{hidden}]", "--out",
                 str(tmp_path / "run"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("error: the `mlp` model of `model.hidden` = [16384]*64 has ")
    assert "GB for its weights alone" in lines[0]


# ----------------------------------------- 9: weights that blow up while the loss is finite


def test_outputs_that_overflow_with_a_finite_loss_are_diverged():
    config = cfg(n_tasks=1, **{"stream.classes_per_task": 2, "train.iterations": 1,
                               "train.lr": 1e30})
    stream = build_stream(config, toy())
    state = new_state(config, stream)
    with pytest.raises(Diverged, match=r"^the model's outputs on the test examples of task 0 "
                                       r"`classes c0,c1` are inf or NaN after task 0 \(0-based\)"):
        train_stream(config, stream, state, progress=False)
    assert state.rows == [] and state.next_task == 0


def test_weights_that_become_infinite_are_diverged():
    config = cfg(n_tasks=2, **{"stream.classes_per_task": 2, "train.iterations": 1, "train.lr": 1e300,
                               "train.momentum": 0.0})
    stream = build_stream(config, toy())
    with pytest.raises(Diverged, match=r"^the weights became inf or NaN in task 0 \(0-based\) "
                                       r"`classes c0,c1` \(first: `backbone.1.weight`\)"):
        train_stream(config, stream, progress=False)


class _OwnWeights(Strategy):
    """A strategy that trains a weight of its own (unused by the loss), which blows up after
    task 1."""

    def __init__(self, options=None) -> None:  # noqa: ANN001
        super().__init__(options)
        self.bias = torch.nn.Parameter(torch.zeros(3))

    def parameters(self, model) -> list[torch.Tensor]:  # noqa: ANN001
        return [*super().parameters(model), self.bias]

    def after_task(self, ctx) -> None:  # noqa: ANN001
        if ctx.index == 1:
            with torch.no_grad():
                self.bias[1] = float("nan")


def test_a_strategys_own_weights_that_become_nan_are_diverged():
    config = cfg(n_tasks=3, **{"stream.classes_per_task": 2})
    stream = build_stream(config, toy())
    state = new_state(config, stream)
    state = RunState(model=state.model, strategy=_OwnWeights(), generator=state.generator)
    with pytest.raises(Diverged, match=r"^the strategy's own weights became inf or NaN in task 1 "
                                       r"\(0-based\) `classes c2,c3` \(first: `parameter 0`\)"):
        train_stream(config, stream, state, progress=False)
    assert len(state.rows) == 1


def test_cli_run_with_weights_blown_up_ends_diverged(tmp_path: Path):
    out = tmp_path / "run"
    code = main(["run", "split-digits", "--set", "stream.n_tasks=1", "--set",
                 "stream.classes_per_task=2", "--set", "train.iterations=1", "--set",
                 "train.lr=1e30", "--out", str(out), "--quiet"])
    result = json.loads((out / "result.json").read_text())
    assert code == 1
    assert result["status"] == "diverged"
    assert result["message"].startswith("the model's outputs on the test examples of task 0 ")
    assert result["accuracy_matrix"] == []


class _NanAt(Strategy):
    """Fine-tuning whose loss is NaN from step ``bad`` on (0-based); counts the steps."""

    bad = 0
    steps = 0

    def train_loss(self, ctx, batch):  # noqa: ANN001, ANN201
        _NanAt.steps += 1
        loss = super().train_loss(ctx, batch)
        return loss * float("nan") if _NanAt.steps - 1 >= _NanAt.bad else loss


@pytest.mark.parametrize(("bad", "total", "found_after"), [
    (7, 120, 50),     # found at the check of step 50 (where the progress bar is updated)
    (75, 80, 80),     # found at the end of the phase
    (0, 3, 3),
])
def test_a_nan_loss_is_diverged_naming_its_step_without_a_host_sync_per_step(
        bad: int, total: int, found_after: int, monkeypatch: pytest.MonkeyPatch):
    config = cfg(n_tasks=1, **{"stream.classes_per_task": 2, "train.iterations": total})
    stream = build_stream(config, toy())
    state = new_state(config, stream)
    state = RunState(model=state.model, strategy=_NanAt(), generator=state.generator)
    _NanAt.bad, _NanAt.steps = bad, 0

    def no_item(self):  # noqa: ANN001, ANN202
        raise AssertionError("loss.item() in the training loop")

    monkeypatch.setattr(torch.Tensor, "item", no_item)
    per_epoch = -(-24 // 16)   # 24 training examples of 2 classes, batches of 16
    with pytest.raises(Diverged, match=rf"^the loss became nan in task 0 \(0-based\), epoch "
                                       rf"{bad // per_epoch}, step {bad}; lower train\.lr"):
        train_stream(config, stream, state, progress=False)
    assert _NanAt.steps == found_after
    assert state.rows == []
