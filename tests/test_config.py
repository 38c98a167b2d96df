"""Benchmark presets: per-strategy overrides; the committed runs' configurations rebuild the same."""

from __future__ import annotations

import gzip
import json
import pickle
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lifelong_kd.cli import main
from lifelong_kd.config import ADDED_KEYS, parse_set
from lifelong_kd.data import cache as data_cache
from lifelong_kd.data import sources
from lifelong_kd.data.sources import load_dataset, load_image_folder, read_cifar_pickle, read_idx
from lifelong_kd.errors import ConfigError, DataError
from lifelong_kd.presets import build_config, preset_names, suite_members
from lifelong_kd.results import (
    LEGACY_ADDED_OPTIONS,
    LEGACY_STRATEGY_OPTIONS,
    as_recorded,
    run_identity,
)

from .conftest import PARTIAL, ROOT

PRESET = """
description = "a preset whose LwF trains with its own weight decay and alpha"
strategies = ["naive", "lwf"]

[data]
dataset = "digits"

[stream]
kind = "split"
scenario = "task-il"
n_tasks = 5

[train]
lr = 0.05
weight_decay = 0.0

[overrides.lwf.train]
weight_decay = 0.0005

[overrides.lwf.strategy]
alpha = 2.0
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "preset.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_overrides_apply_to_their_strategy_only(tmp_path):
    preset = write(tmp_path, PRESET)
    naive = build_config(preset, "naive")
    lwf = build_config(preset, "lwf")
    assert naive.train.weight_decay == 0.0 and lwf.train.weight_decay == 0.0005
    assert lwf.strategy.options["alpha"] == 2.0
    assert naive.train.lr == lwf.train.lr == 0.05
    # --set still wins over the preset's override
    forced = build_config(preset, "lwf", {"train.weight_decay": 0.001})
    assert forced.train.weight_decay == 0.001


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("[overrides.lfw.train]\nlr = 0.1\n", ["unknown strategy", "lfw", "lwf"]),
        ("[overrides.lwf.trian]\nlr = 0.1\n", ["overrides.lwf", "section tables"]),
        ("[overrides.lwf.train]\nlrr = 0.1\n", ["train.lrr", "did you mean `train.lr`"]),
        ("[overrides.lwf.train]\nlr = -1\n", ["train.lr", "-1"]),
        ("overrides = 3\n", ["`overrides` must be a table"]),
    ],
)
def test_bad_overrides_are_rejected_naming_what_is_wrong(tmp_path, table, words):
    text = PRESET.replace("[overrides.lwf.train]\nweight_decay = 0.0005\n", "").replace(
        "[overrides.lwf.strategy]\nalpha = 2.0\n", "")
    head, _, rest = text.partition("[data]")
    preset = write(tmp_path, (table + head + "[data]" + rest) if table.startswith("overrides =")
                   else text + table)
    with pytest.raises(ConfigError) as info:
        build_config(preset, "lwf")
    for word in words:
        assert word in str(info.value)


# ------------------------------------------- the committed runs' configurations rebuild the same

#: Committed comparison folders, the preset they ran and the ``--set`` of their command
#: (README.md, "Results", and results/paper/README.md).
COMMITTED = [
    *[(f"results/paper/{p.stem}", str(p), {})
      for p in sorted((ROOT / "benchmarks" / "paper").glob("*.toml"))
      if PARTIAL.get(p.stem, "") is not None],
    ("results/permuted-mnist", "permuted-mnist", {}),
    ("results/quickstart/permuted-digits", "permuted-digits", {}),
    ("results/quickstart/split-digits", "split-digits", {}),
    ("results/split-cifar10-jpeg/task-il", "split-cifar10-jpeg", {"train.epochs": 1}),
    ("results/split-cifar10-jpeg/class-il", "split-cifar10-jpeg",
     {"train.epochs": 1, "stream.scenario": "class-il"}),
]
#: Settings added after the runs outside results/paper/ were made (03fbae7): absent from their
#: result.json, and the values that do what the code did then (standardised inputs, PyTorch's
#: initial weights).
#: Strategy options added before each strategy declared its own, at the default that
#: reproduces the runs before them.
LEGACY_ADDED = {f"strategy.{k}": LEGACY_STRATEGY_OPTIONS[k] for k in LEGACY_ADDED_OPTIONS}
ADDED_LATER = {"data.normalize": True, "model.init": "default", **ADDED_KEYS, **LEGACY_ADDED}
#: A default changed since those runs (5412abd: 1000 -> 256); results do not depend on it.
CHANGED_DEFAULT = ("train.eval_batch_size", 1000, 256)


def _flat(table: dict, prefix: str = "") -> dict:
    """Dotted keys; the tables that are one setting (``strategy.kwargs``, ``teacher.settings``)
    stay whole."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict) and key not in ("kwargs", "settings"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize(("folder", "preset", "sets"), COMMITTED, ids=[c[0] for c in COMMITTED])
def test_committed_runs_rebuild_their_stored_config(folder: str, preset: str, sets: dict) -> None:
    """Every committed run's stored ``config`` is what ``build_config`` gives today for its
    benchmark, strategy and seed (with its command's ``--set``): presets, per-strategy
    overrides and strategy presets still resolve to the configurations that were run."""
    paths = sorted((ROOT / folder).glob("*/seed-*/result.json"))
    assert paths, f"no committed runs in {folder}"
    strategies = set()
    for path in paths:
        stored = json.loads(path.read_text(encoding="utf-8"))["config"]
        strategies.add(stored["strategy"]["name"])
        built = build_config(preset, stored["strategy"]["name"], sets, stored["seed"]).to_dict()
        # the strategy options its strategy does not read, which runs record no more
        built = dict(as_recorded(built, stored))
        if folder.startswith("results/paper/"):
            # keys added since (config.ADDED_KEYS) at the default that reproduces those runs
            def known(flat: dict) -> dict:
                return {k: v for k, v in flat.items()
                        if not (k in ADDED_LATER and v == ADDED_LATER[k])}

            assert known(_flat(stored)) == known(_flat(built)), path
            assert run_identity(stored) == run_identity(built), path
            continue
        old, new = _flat(stored), _flat(built)
        added = {k: new[k] for k in new.keys() - old.keys()}
        # every key added since, at its default (a strategy's: where the strategy reads it)
        assert added == {k: v for k, v in ADDED_LATER.items()
                         if not k.startswith("strategy.") or k in new}, path
        key, then, now = CHANGED_DEFAULT
        assert (old.pop(key), new.pop(key)) == (then, now), path
        assert old == {k: v for k, v in new.items() if k not in ADDED_LATER}, path
    planned = set(build_config(preset, None, sets).strategies)
    if Path(preset).stem in PARTIAL:
        assert strategies <= planned, folder
    else:
        assert strategies == planned, folder


# ----------------------------------------------------------------------
# Issue 12, configuration and data sources: corrupt files are one-line DataErrors naming the
# file; bad Avalanche arguments, bad per-strategy override tables, bad suite members and
# other bad values are rejected before any data is loaded; near-miss dataset names get a
# suggestion.
# (formerly tests/test_config_safety.py)

@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make loading any dataset fail the test: what is checked must be checked before."""
    loaded: list[str] = []

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        loaded.append(name)
        raise AssertionError(f"the dataset {name} was loaded before the bad value was rejected")

    monkeypatch.setattr(sources, "load_dataset", refuse)
    return loaded


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of the command line, with the previous output discarded."""
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def assert_one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err, err
    assert len([line for line in lines if line.startswith("error: ")]) == 1, err
    for word in words:
        assert word in lines[-1], (word, err)


# ------------------------------------------------------------------- 7a: corrupt files


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format: 0x0000 08 ndim, big-endian dims, data."""
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def corrupt_deflate(data: bytes) -> bytes:
    """A gzip file with a valid 10-byte header whose deflate stream is garbage (zlib.error)."""
    return gzip.compress(data)[:10] + bytes(range(256)) * 4


def bad_crc(data: bytes) -> bytes:
    """A complete gzip file whose CRC-32 trailer does not match its content."""
    gz = bytearray(gzip.compress(data))
    gz[-8] ^= 0xFF
    return bytes(gz)


def test_corrupt_deflate_stream_really_is_a_zlib_error():
    """The file the tests below write is the one of the issue: zlib itself rejects it."""
    with pytest.raises(zlib.error):
        gzip.decompress(corrupt_deflate(b"x" * 1000))


@pytest.mark.parametrize("breakage", [corrupt_deflate, bad_crc])
def test_corrupt_gzip_idx_is_a_data_error_naming_the_file(tmp_path, breakage):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(breakage(idx_bytes(np.zeros((3, 28, 28), np.uint8))))
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "gzip" in str(info.value)
    assert "\n" not in str(info.value)


def test_idx_header_whose_size_overflows_is_a_data_error(tmp_path):
    """Dims 2^31 x 2^31 x 4 multiply to 2^64, which wraps to 0 bytes in int64 arithmetic."""
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + b"".join(
        d.to_bytes(4, "big") for d in (2**31, 2**31, 4)))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        read_idx(path)


def test_cli_with_a_corrupt_mnist_gzip_exits_2_naming_the_file(tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(10) % 10).astype(np.uint8),
    }
    for stem, array in files.items():
        (raw / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))
    broken = raw / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(corrupt_deflate(idx_bytes(files["t10k-images-idx3-ubyte"])))
    code, err = run_cli(["run", "permuted-mnist", "--offline", "--quiet", "--data-dir",
                         str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                         "--set", "stream.n_tasks=2", "--set", "model.hidden=[8]"], capsys)
    assert code == 2
    assert_one_line_error(err, str(broken))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        # the persistent-id message of pickle spans two lines: the error must stay on one
        (b"Pabc\n.", ["not a CIFAR python pickle", "persistent"]),
        (gzip.compress(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]},
                                    protocol=2)), ["not a CIFAR python pickle"]),
        (pickle.dumps({b"data": 1}, protocol=2)[:-3], ["truncated"]),
        (b"", ["truncated"]),
    ],
)
def test_corrupt_cifar_pickles_are_one_line_data_errors(tmp_path, content, words):
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_cifar_pickle(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for word in words:
        assert word in message


def write_folder(root: Path, n: int = 2) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")


def test_corrupt_compressed_image_folder_cache_is_rebuilt_not_a_traceback(tmp_path):
    root = tmp_path / "folder"
    write_folder(root)
    first = load_image_folder(root, progress=False)
    (cache,) = sources.imagefolder_cache_dir().glob("*.npz")
    # the same arrays, but deflate-compressed with the stream of one member damaged
    with np.load(cache, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(cache, **arrays)
    blob = bytearray(cache.read_bytes())
    start = blob.find(b"train_x.npy") + len("train_x.npy")
    for i in range(start + 40, start + 120):
        blob[i] ^= 0x5A
    cache.write_bytes(bytes(blob))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_image_folder(root, progress=False)
    assert any("image-folder cache" in str(w.message) for w in caught)
    assert again.fingerprint == first.fingerprint


def test_cache_whose_train_and_test_images_differ_in_shape_is_rebuilt(tmp_path):
    root = tmp_path / "folder"
    write_folder(root)
    first = load_image_folder(root, progress=False)
    (cache,) = sources.imagefolder_cache_dir().glob("*.npz")
    with np.load(cache, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["test_x"] = np.zeros((len(arrays["test_y"]), 3, 4, 4), np.uint8)
    arrays["checksum"] = np.array(data_cache._checksum(arrays))  # malformed when written
    np.savez(cache, **arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_image_folder(root, progress=False)
    assert any("image-folder cache" in str(w.message) and "differ in shape" in str(w.message)
               for w in caught)
    assert tuple(again.test_x.shape[1:]) == (3, 8, 8)
    assert again.fingerprint == first.fingerprint


@pytest.mark.parametrize("cut", [0.5, 0.0])
def test_truncated_jpeg_in_an_image_folder_is_a_data_error_naming_it(tmp_path, cut):
    root = tmp_path / "folder"
    write_folder(root)
    bad = root / "test" / "b" / "broken.jpg"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(bad, quality=90)
    data = bad.read_bytes()
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(DataError) as info:
        load_image_folder(root, progress=False)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------ 7b: Avalanche arguments


@pytest.mark.parametrize(
    ("strategy", "items", "words"),
    [
        ("avalanche:Replay", ["strategy.mem_size=-5"], ["`strategy.mem_size` = -5", ">= 1"]),
        ("avalanche:Replay", ["strategy.mem_size=0"], ["`strategy.mem_size` = 0", ">= 1"]),
        ("avalanche:Replay", ["strategy.mem_size=abc"], ["`strategy.mem_size` = 'abc'", "integer"]),
        ("avalanche:GDumb", ["strategy.mem_size=2.5"], ["`strategy.mem_size` = 2.5", "integer"]),
        ("avalanche:GDumb", ["strategy.mem_size=true"], ["`strategy.mem_size` = True", "integer"]),
        ("avalanche:LwF", ["strategy.temperature=0"], ["`strategy.temperature` = 0", "> 0"]),
        ("avalanche:LwF", ["strategy.alpha=[1, -1]"], ["`strategy.alpha`", ">= 0"]),
        ("avalanche:LwF", ["strategy.alpha=inf"], ["`strategy.alpha`", "finite"]),
        ("avalanche:EWC", ["strategy.ewc_lambda=-1"], ["`strategy.ewc_lambda` = -1", ">= 0"]),
        ("avalanche:EWC", ["strategy.mode=bogus"], ["`strategy.mode` = 'bogus'", "online"]),
        ("avalanche:EWC", ["strategy.mode=online"], ["`strategy.decay_factor`", "online"]),
        ("avalanche:EWC", ["strategy.decay_factor=0.5"], ["`strategy.decay_factor`", "online"]),
        ("avalanche:EWC", ["strategy.mode=online", "strategy.decay_factor=2"],
         ["`strategy.decay_factor` = 2", "[0, 1]"]),
        ("avalanche:SI", ["strategy.eps=0"], ["`strategy.eps` = 0", "> 0"]),
        ("avalanche:GEM", ["strategy.patterns_per_exp=0"], ["`strategy.patterns_per_exp` = 0"]),
        ("avalanche:AGEM", ["strategy.sample_size=-1"], ["`strategy.sample_size` = -1"]),
        ("avalanche:ICaRL", ["stream.scenario=class-il", "strategy.fixed_memory=3"],
         ["`strategy.fixed_memory` = 3", "true or false"]),
        ("avalanche:ICaRL", ["stream.scenario=class-il", "strategy.memory_size=-1"],
         ["`strategy.memory_size` = -1"]),
        ("avalanche:Replay", ["strategy.kwargs={mem_size = -3}"], ["`strategy.mem_size` = -3"]),
    ],
)
def test_bad_avalanche_arguments_are_rejected_at_configuration(avalanche, strategy, items, words):
    with pytest.raises(ConfigError) as info:
        build_config("split-digits", strategy, parse_set(items))
    message = str(info.value)
    assert strategy in message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


def test_good_avalanche_arguments_still_pass(avalanche):
    config = build_config("split-digits", "avalanche:EWC", parse_set(
        ["strategy.mode=online", "strategy.decay_factor=0.9", "strategy.ewc_lambda=1"]))
    assert config.strategy.options["kwargs"] == {"ewc_lambda": 1, "mode": "online", "decay_factor": 0.9}
    assert build_config("split-digits", "avalanche:LwF", parse_set(
        ["strategy.alpha=[0, 0.5]"])).strategy.options["kwargs"]["alpha"] == [0, 0.5]
    assert build_config("split-digits", "avalanche:Replay", parse_set(
        ["strategy.mem_size=1"])).strategy.options["kwargs"] == {"mem_size": 1}


def test_avalanche_strategy_names_are_suggested_whatever_the_case(avalanche):
    with pytest.raises(ConfigError, match="did you mean `avalanche:Replay`"):
        build_config("split-digits", "avalanche:REPLAY")


def test_cli_bad_mem_size_exits_2_before_any_data(avalanche, tmp_path, capsys, no_data):
    code, err = run_cli(["run", "split-digits", "--strategy", "avalanche:Replay", "--quiet",
                         "--set", "strategy.mem_size=-5", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and not no_data
    assert_one_line_error(err, "strategy.mem_size", "-5", "avalanche:Replay")


def test_an_error_avalanche_raises_building_the_strategy_is_one_line(
    avalanche, tmp_path, capsys, monkeypatch
):
    import avalanche.training as training

    class Broken(training.Naive):  # type: ignore[misc, name-defined]
        def __init__(self, **kwargs: Any) -> None:
            raise AssertionError("something Avalanche does not like")

    monkeypatch.setattr(training, "Naive", Broken)
    code, err = run_cli(["run", "split-digits", "--strategy", "avalanche:Naive", "--quiet",
                         "--offline", "--out", str(tmp_path / "out"), "--set", "train.iterations=1",
                         "--set", "stream.n_tasks=2", "--set", "data.train_subset=100"], capsys)
    assert code == 2
    assert_one_line_error(err, "avalanche:Naive", "something Avalanche does not like")


# --------------------------------------------------- 8: override tables, suite members

SAFETY_PRESET = """
description = "naive and lwf on the digits, lwf with its own settings"
strategies = ["naive", "lwf"]

[data]
dataset = "digits"

[stream]
kind = "split"
scenario = "task-il"
n_tasks = 5

[train]
lr = 0.05
"""


def write_preset(tmp_path: Path, extra: str, name: str = "preset.toml") -> str:
    path = tmp_path / name
    path.write_text(SAFETY_PRESET + extra, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("[overrides.lwf.train]\nlrr = 0.1\n", ["train.lrr", "did you mean `train.lr`"]),
        ("[overrides.lwf.train]\nlr = -1\n", ["train.lr", "-1"]),
        ("[overrides.lwf.strategy]\nalpha = \"big\"\n", ["strategy.alpha", "big"]),
        ("[overrides.lwf.strategy]\nlogits = \"padded\"\ndistill_loss = \"mse_logits\"\n",
         ["padded", "mse_logits"]),
        ("[overrides.lwf.stream]\nclasses_per_task = 3\n", ["classes_per_task", "3"]),
        ("[overrides.ewc.strategy]\newc_gamma = 2\n", ["ewc_gamma", "2"]),
    ],
)
def test_every_override_table_is_validated_whatever_strategy_runs(tmp_path, table, words):
    preset = write_preset(tmp_path, table)
    strategy = table.split(".")[1]
    with pytest.raises(ConfigError) as info:
        build_config(preset, "naive")
    message = str(info.value)
    assert f"overrides.{strategy}" in message, message
    for word in words:
        assert word in message, (word, message)


def test_override_of_an_unsupported_scenario_is_rejected(avalanche, tmp_path):
    preset = write_preset(tmp_path, '[overrides."avalanche:ICaRL".strategy]\nmemory_size = 100\n')
    with pytest.raises(ConfigError, match="does not support the `task-il` scenario"):
        build_config(preset, "naive")


def test_valid_overrides_of_other_strategies_do_not_change_this_one(tmp_path):
    preset = write_preset(tmp_path, "[overrides.lwf.train]\nweight_decay = 0.0005\n")
    assert build_config(preset, "naive").train.weight_decay == 0.0
    assert build_config(preset, "lwf").train.weight_decay == 0.0005
    # --set values for this run do not make the other strategies' tables fail
    assert build_config(preset, "naive", parse_set(["stream.n_tasks=2"])).stream.n_tasks == 2


def test_cli_run_naive_with_a_typo_in_lwfs_overrides_exits_2_before_any_data(
    tmp_path, capsys, no_data
):
    preset = write_preset(tmp_path, "[overrides.lwf.train]\nlrr = 0.1\n")
    code, err = run_cli(["run", preset, "--strategy", "naive", "--quiet",
                         "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and not no_data
    assert_one_line_error(err, "overrides.lwf", "train.lrr")


def test_suite_with_an_unknown_member_fails_naming_it_and_the_presets(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text('benchmarks = ["split-digits", "split-digitz"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        suite_members(str(suite))
    message = str(info.value)
    assert "`split-digitz`" in message and "did you mean `split-digits`" in message
    singles = [name for name in preset_names() if suite_members(name) is None]
    assert "split-digits" in singles and "quickstart" not in singles
    assert all(f" {name}," in message for name in singles)
    assert "quickstart" not in message


def test_suite_with_a_suite_as_member_fails_naming_it(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text('benchmarks = ["split-digits", "quickstart"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="`quickstart`.*is itself a suite"):
        suite_members(str(suite))


def test_suite_naming_a_member_twice_fails(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text('benchmarks = ["split-digits", "permuted-digits", "split-digits"]\n',
                     encoding="utf-8")
    with pytest.raises(ConfigError, match="`split-digits` twice"):
        suite_members(str(suite))


def test_shipped_suite_members_are_valid():
    members = suite_members("quickstart")
    assert members is not None
    assert [(m.benchmark, m.name, m.settings) for m in members] == [
        ("split-digits", "split-digits", {}), ("permuted-digits", "permuted-digits", {})]
    compression = suite_members("compression-split-mnist")
    assert compression is not None and len(compression) == 10
    assert all(Path(m.benchmark).is_file() and m.benchmark.endswith("split-mnist.toml")
               for m in compression)  # found beside the suite file, wherever the command runs
    assert compression[1].settings == {"stream.scenario": "class-il", "model.hidden": [100, 100]}


# ------------------------------------------------------------------ 14: dataset names


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("FashionMNIST", "fashion-mnist"), ("fmnist", "fashion-mnist"),
     ("fashionmnist", "fashion-mnist"), ("Fashion_MNIST", "fashion-mnist"),
     ("CIFAR10", "cifar10"), ("cifar-10", "cifar10"), ("CIFAR-100", "cifar100"),
     ("cifar-10-batches-py", "cifar10"), ("MNIST", "mnist"), ("ImageFolder", "imagefolder"),
     ("CIFAR10-JPEG", "cifar10-jpeg")],
)
def test_near_miss_dataset_names_are_refused_with_the_right_suggestion(name, suggestion):
    with pytest.raises(ConfigError) as info:
        build_config("split-digits", None, {"data.dataset": name})
    assert f"did you mean `{suggestion}`?" in str(info.value)
    with pytest.raises(DataError, match=f"did you mean `{suggestion}`"):
        load_dataset(name, Path("unused"))


def test_cli_fashionmnist_gets_the_suggestion(tmp_path, capsys, no_data):
    code, err = run_cli(["run", "split-mnist", "--set", "data.dataset=FashionMNIST", "--quiet",
                         "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and not no_data
    assert_one_line_error(err, "FashionMNIST", "did you mean `fashion-mnist`?")


def test_unknown_benchmark_suggests_the_preset_whatever_the_case():
    with pytest.raises(ConfigError, match="did you mean `split-mnist`"):
        build_config("Split-MNIST")


def test_choices_are_suggested_whatever_the_case():
    with pytest.raises(ConfigError, match="did you mean `task-il`"):
        build_config("split-digits", None, {"stream.scenario": "Task-IL"})
    with pytest.raises(ConfigError, match="did you mean `soft_ce`"):
        build_config("split-digits", "lwf", {"strategy.distill_loss": "SOFT-CE"})


# -------------------------------------------- other values that used to pass validation


@pytest.mark.parametrize(
    ("items", "words"),
    [
        (["model.name=convnet", "model.channels=[8,8,8,8]"],
         ["model.channels", "8 x 8", "at most 3"]),
        (["benchmark=../../elsewhere"], ["`benchmark`", "../../elsewhere"]),
        (["benchmark="], ["`benchmark`"]),
        (["seeds=[1, 1]"], ["`seeds`", "`1` twice"]),
        (["strategies=[\"lwf\", \"lwf\"]"], ["`strategies`", "lwf` twice"]),
    ],
)
def test_values_that_failed_after_loading_are_rejected_before(items, words, tmp_path, capsys,
                                                              no_data):
    with pytest.raises(ConfigError) as info:
        build_config("split-digits", None, parse_set(items))
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    args = ["run", "split-digits", "--quiet", "--offline", "--out", str(tmp_path / "out")]
    for item in items:
        args += ["--set", item]
    code, err = run_cli(args, capsys)
    assert code == 2 and not no_data
    assert_one_line_error(err, words[0])


def test_convnet_as_deep_as_the_input_allows_still_builds():
    config = build_config("split-digits", None, parse_set(
        ["model.name=convnet", "model.channels=[8,8,8]"]))
    assert config.model.channels == (8, 8, 8)
