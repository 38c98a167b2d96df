"""The paper presets of issue 7 (benchmarks/paper/*.toml) stay runnable.

Each preset is run through ``lifelong-kd compare`` with every strategy it lists, for one seed,
on a small subset of MNIST and a few optimiser steps per task: a small fraction of its training,
enough to check that the preset validates, builds its stream and trains every strategy to the
end. The full runs are benchmark commands (see results/paper/README.md), not tests.

The plots are replaced by a stub (they are tested in test_report.py; drawing them for six
presets would take most of this file's time), and torch runs on one thread: on a busy two-core
machine its thread pool made every tiny operation of these runs wait ~10 ms.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from lifelong_kd import cli
from lifelong_kd.strategies import strategy_preset
from lifelong_kd.strategies.options import option_names

from .conftest import ROOT

PAPER = ROOT / "benchmarks" / "paper"
EXPECTED = {
    "vdv2019-split-mnist-task-il", "vdv2019-split-mnist-domain-il",
    "vdv2019-split-mnist-class-il", "buzzega2020-seq-mnist", "buzzega2020-perm-mnist",
    # issue 14: the memory methods per memory size, and Mammoth's 2020 LwF
    *(f"buzzega2020-{d}-m{b}" for d in ("seq-mnist", "perm-mnist") for b in (200, 500, 5120)),
    "buzzega2020-seq-mnist-lwf2020", "buzzega2020-seq-mnist-lwf7ab9db9",
}
PRESETS = sorted(PAPER.glob("*.toml"))
#: A small fraction of each protocol: 200 training and 50 test images, 2 steps per task
#: (``train.iterations`` replaces the presets' epochs).
TINY = ["data.train_subset=200", "data.test_subset=50", "train.iterations=2"]


@pytest.fixture(scope="module")
def mnist(data_dir: Path):  # noqa: ANN201 - a Dataset
    """MNIST, read once for all presets."""
    from lifelong_kd.data.sources import load_dataset

    return load_dataset("mnist", data_dir, True, "")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch, mnist) -> None:  # noqa: ANN001
    """Share the loaded MNIST between presets and skip drawing the plots."""
    from lifelong_kd import plots, report, runs

    monkeypatch.setattr(runs.DataProvider, "dataset", lambda self, config: mnist)
    monkeypatch.setattr(plots, "run_plots", lambda *a, **k: [])
    monkeypatch.setattr(report, "comparison_plots", lambda *a, **k: [])


def test_every_paper_preset_is_here() -> None:
    assert {p.stem for p in PRESETS} == EXPECTED


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_paper_preset_runs(preset: Path, tmp_path: Path) -> None:
    table = tomllib.loads(preset.read_text(encoding="utf-8"))
    assert table["description"] and table["strategies"] and table["seeds"]
    seed = str(table["seeds"][0])
    out = tmp_path / preset.stem
    args = ["compare", str(preset), "--seeds", seed, "--out", str(out), "--quiet", "--offline"]
    for item in TINY:
        args += ["--set", item]
    assert cli.main(args) == 0
    n_tasks = table["stream"]["n_tasks"]
    for strategy in table["strategies"]:
        result = json.loads((out / strategy / f"seed-{seed}" / "result.json").read_text())
        assert result["status"] == "finished", (strategy, result.get("message"))
        assert result["tasks_finished"] == n_tasks
        config = result["config"]
        # the preset's protocol reached the run, apart from the test's own overrides
        own = table.get("overrides", {}).get(strategy, {})
        reads = option_names(strategy_preset(strategy).cls.Options)
        for section in ("data", "stream", "model", "train", "strategy"):
            expected = {**table.get(section, {}), **own.get(section, {})}
            for key, value in expected.items():
                if f"{section}.{key}" in {t.split("=")[0] for t in TINY}:
                    continue
                if section == "strategy" and key not in reads:
                    assert key not in config[section], (strategy, key)  # no effect: not recorded
                    continue
                assert config[section][key] == value, (strategy, section, key)
    summary = (out / "summary.csv").read_text()
    assert all(s in summary for s in table["strategies"])
