"""Behaviour is pinned: the accuracy matrices of tests/golden/cases.py, recorded with the code
before the redesign of issue 13 (tests/golden/matrices.json names the commit) and, for the
strategies added since (every memory and teacher strategy), with the code before issue 17's
work on the training loop (each such case names its commit), must come out of today's code
bit for bit.

Every built-in strategy preset runs in every scenario it supports, plus the stream kinds and
the options that take other code paths (see cases.py). The recording ran with one torch
thread, so these runs do too (the result of a float reduction may depend on the thread count).
To record again after an intended change of behaviour: ``python tests/golden/make_golden.py``
(and say why in the commit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lifelong_kd.cli import main

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN_DIR))
from cases import cases  # noqa: E402

GOLDEN = json.loads((GOLDEN_DIR / "matrices.json").read_text())["cases"]


def test_every_case_is_recorded() -> None:
    assert set(GOLDEN) == set(cases()), "re-record with tests/golden/make_golden.py"
    for name, argv in cases().items():
        assert GOLDEN[name]["argv"] == argv, name


def test_every_builtin_preset_has_a_golden_case() -> None:
    """Every built-in preset is run by a case (those of tests/golden/cases.py, the others
    generated from the registry) and, by :func:`test_every_case_is_recorded`, pinned: a new
    preset fails until ``tests/golden/make_golden.py`` has recorded it."""
    from lifelong_kd.strategies.presets import BUILT_IN

    covered = {argv[argv.index("--strategy") + 1] for argv in cases().values()}
    assert {p.name for p in BUILT_IN} <= covered
    assert "preset/wa" in cases()  # a preset added after the hand list, generated


def test_a_new_preset_gets_a_generated_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from lifelong_kd.strategies import presets
    from lifelong_kd.strategies.compress import Compress

    extra = presets.StrategyPreset("toy-new", Compress, "a test's preset", "tests")
    monkeypatch.setattr(presets, "BUILT_IN", (*presets.BUILT_IN, extra))
    generated = cases()["preset/toy-new"]
    assert generated[:3] == ["split-digits", "--strategy", "toy-new"]
    assert "stream.scenario=class-il" in generated and "teacher.hidden=[64]" in generated
    assert "memory.size=40" in generated
    assert "preset/toy-new" not in GOLDEN  # so test_every_case_is_recorded would name it


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(cases()))
def test_matrix_equals_the_recorded_one(name: str, tmp_path: Path, data_dir: Path,
                                        one_thread: None) -> None:
    argv = cases()[name]
    out = tmp_path / "run"
    assert main(["run", *argv, "--offline", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    golden = GOLDEN[name]
    assert result["initial_accuracy"] == golden["initial_accuracy"]
    assert result["accuracy_matrix"] == golden["accuracy_matrix"]
    assert result.get("accuracy_matrix_task_aware") == golden["accuracy_matrix_task_aware"]
