"""Benchmark presets: per-strategy overrides; the committed runs' configurations rebuild the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong_kd.config import ADDED_KEYS
from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config
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
