"""Benchmark presets: per-strategy overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong_kd.errors import ConfigError
from lifelong_kd.presets import build_config

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
    assert lwf.strategy.alpha == 2.0
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
