"""A new strategy, end to end: what adding a method to lifelong-kd takes.

The toy strategy below, ``Shifted``, stands for a method's own file (it would be
``lifelong_kd/strategies/shifted.py``): plain fine-tuning plus a module of its own, a trained
shift b added to every output (a bias correction), which the optimiser trains next to the
model (``parameters``), which the prediction uses (``predict``: logits + b) and which a
checkpoint holds (``state_dict``). It has two options of its own (``ShiftedOptions``: the
shift's starting value and the weight of an L2 penalty on it), which users set as
``--set strategy.shift_init=0.5``. Registering its preset is the one line that would go into
``lifelong_kd/strategies/presets.py``. The files a new strategy touches:

- its own file (``lifelong_kd/strategies/<name>.py``): the class and its options class;
- ``lifelong_kd/strategies/presets.py``: its preset(s) (name, class, option values, description,
  source, scenarios), or a ``register(...)`` call in its own file, as here;
- its test (``tests/test_<name>.py``), with its golden case (``GOLDEN``, see
  ``tests/test_golden.py``).

Nothing in the engine, the runner, the command line, the configuration or the report changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lifelong_kd.cli import main
from lifelong_kd.config import check_positive
from lifelong_kd.strategies import PRESETS, Batch, Strategy, StrategyPreset, TaskContext, register
from lifelong_kd.strategies.loop import Interrupted
from lifelong_kd.strategies.options import Options

# ------------------------------------------------------- the strategy's own "file"


@dataclass(frozen=True)
class ShiftedOptions(Options):
    """The options of :class:`Shifted`."""

    #: The value every output's shift starts from.
    shift_init: float = 0.0
    #: Weight of the L2 penalty ``shift_decay * ||b||^2`` added to the loss.
    shift_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("strategy.shift_decay", self.shift_decay, strict=False)


class Shifted(Strategy):
    """Fine-tuning with a trained shift of the outputs: scores = logits + b, b one learnt
    number per output unit (``shift_init`` at the start), trained with the model on the
    cross-entropy of the shifted scores plus ``shift_decay * ||b||^2``, and used at
    prediction."""

    Options = ShiftedOptions
    options: ShiftedOptions
    #: Test hook: raise Interrupted before training this task (as a stop request would).
    stop_before: int | None = None
    predictions = 0

    def __init__(self, options: ShiftedOptions | None = None):
        super().__init__(options)
        self.shift: nn.Parameter | None = None

    def before_task(self, ctx: TaskContext) -> None:
        if ctx.index == Shifted.stop_before:
            raise Interrupted(f"interrupted during task {ctx.index} (0-based)")
        if self.shift is None:
            self.shift = nn.Parameter(torch.full((ctx.stream.n_outputs,), self.options.shift_init,
                                                 device=ctx.device))

    def parameters(self, model: nn.Module) -> list[torch.Tensor]:
        assert self.shift is not None
        return [*super().parameters(model), self.shift]

    def train_loss(self, ctx: TaskContext, batch: Batch) -> torch.Tensor:
        assert self.shift is not None
        features, logits = ctx.model.forward_features(batch.x)
        loss = self.loss(ctx, batch, features, logits + self.shift)
        return loss + self.options.shift_decay * self.shift.square().sum()

    def predict(self, ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
        Shifted.predictions += 1
        logits = ctx.model(x)
        return logits if self.shift is None else logits + self.shift

    def state_dict(self) -> dict[str, Any]:
        return {"shift": None if self.shift is None else self.shift.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("shift")
        self.shift = None if saved is None else nn.Parameter(saved.clone())


PRESET = StrategyPreset("toy-shifted", Shifted,
                        "fine-tuning with a trained shift of every output (a test's toy)",
                        "tests/test_toy_strategy.py")


# ------------------------------------------------------------------------ the tests


@pytest.fixture
def registered() -> Iterator[StrategyPreset]:
    register(PRESET)
    Shifted.stop_before, Shifted.predictions = None, 0
    try:
        yield PRESET
    finally:
        PRESETS.pop(PRESET.name, None)
        Shifted.stop_before = None


SMALL = ["--set", "stream.n_tasks=3", "--set", "stream.classes_per_task=2", "--set",
         "train.epochs=2", "--set", "model.hidden=[32]", "--set", "stream.scenario=class-il"]


def _run(out: Path, *extra: str) -> int:
    return main(["run", "split-digits", "--strategy", "toy-shifted", *SMALL, "--offline",
                 "--quiet", "--out", str(out), *extra])


def _result(out: Path) -> dict[str, Any]:
    return json.loads((out / "result.json").read_text())


def test_a_registered_strategy_runs_end_to_end_and_resumes_bit_for_bit(
        registered: StrategyPreset, tmp_path: Path, data_dir: Path) -> None:
    whole = tmp_path / "whole"
    assert _run(whole) == 0
    result = _result(whole)
    assert result["status"] == "finished" and result["config"]["strategy"]["name"] == "toy-shifted"
    assert len(result["accuracy_matrix"]) == 3
    # the engine's evaluation went through predict: the initial row and 3 rows, 3 tasks each
    assert Shifted.predictions >= 4 * 3

    # stopped before task 2, then resumed: the shift comes back from the checkpoint
    cut = tmp_path / "cut"
    Shifted.stop_before = 2
    assert _run(cut) == 130
    assert _result(cut)["status"] == "interrupted" and _result(cut)["tasks_finished"] == 2
    saved = torch.load(cut / "checkpoint.pt", weights_only=True)
    shift = saved["state"]["strategy"]["shift"]
    assert shift.abs().sum() > 0   # trained: the optimiser had it among its parameters
    Shifted.stop_before = None
    assert _run(cut, "--resume") == 0
    resumed = _result(cut)
    assert resumed["status"] == "finished" and resumed["timing"]["resumed_from_task"] == 2
    assert resumed["accuracy_matrix"] == result["accuracy_matrix"]
    assert resumed["initial_accuracy"] == result["initial_accuracy"]


def test_the_matrix_measures_predict(registered: StrategyPreset, tmp_path: Path,
                                     data_dir: Path) -> None:
    """The engine scores what predict returns: a predict that always says output 0 scores,
    on task 0 (digits 0 and 1) after task 0, the share of zeros, not the trained accuracy."""
    assert _run(tmp_path / "shifted") == 0
    original = Shifted.predict

    def always_zero(self: Shifted, ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(len(x), ctx.stream.n_outputs, device=x.device)
        scores[:, 0] = 1.0
        return scores

    try:
        Shifted.predict = always_zero  # type: ignore[method-assign]
        assert _run(tmp_path / "zero") == 0
    finally:
        Shifted.predict = original  # type: ignore[method-assign]
    trained = _result(tmp_path / "shifted")["accuracy_matrix"]
    zero = _result(tmp_path / "zero")["accuracy_matrix"]
    assert trained[0][0] > 0.9
    assert 0.3 < zero[0][0] < 0.7 and zero[0][1] == 0.0


def test_a_name_is_registered_once(registered: StrategyPreset) -> None:
    with pytest.raises(ValueError, match="exists already"):
        register(PRESET)
    with pytest.raises(ValueError, match="exists already"):
        register(StrategyPreset("avalanche:Mine", Shifted, "-", "-"))


def test_its_options_are_set_checked_and_recorded(registered: StrategyPreset, tmp_path: Path,
                                                 data_dir: Path) -> None:
    """``--set strategy.<its option>`` reaches the strategy (built with it, its shift starts
    there); a bad value is refused naming the key; result.json records its options (and only
    its), with their defaults, so that the report reads them without importing the class; a
    key only another strategy reads has no effect on the run, nor on its identity."""
    from lifelong_kd.errors import ConfigError
    from lifelong_kd.presets import build_config
    from lifelong_kd.results import run_identity
    from lifelong_kd.strategies import build_strategy

    assert _run(tmp_path / "set", "--set", "strategy.shift_init=0.5", "--set",
                "strategy.shift_decay=10") == 0
    result = _result(tmp_path / "set")
    assert result["config"]["strategy"] == {"name": "toy-shifted", "ce_scope": "seen",
                                            "shift_init": 0.5, "shift_decay": 10.0}
    assert result["declared"]["option_defaults"] == {"ce_scope": "seen", "shift_init": 0.0,
                                                     "shift_decay": 0.0}
    config = build_config("split-digits", "toy-shifted", {"strategy.shift_init": "0.5"})
    strategy = build_strategy(config.strategy)
    assert isinstance(strategy, Shifted) and strategy.options.shift_init == 0.5
    with pytest.raises(ConfigError, match=r"`strategy.shift_decay` = -1.0 is out of range"):
        build_config("split-digits", "toy-shifted", {"strategy.shift_decay": -1})
    plain = build_config("split-digits", "toy-shifted")
    other = build_config("split-digits", "toy-shifted", {"strategy.alpha": 3.0})  # lwf's
    assert other == plain
    assert (run_identity(plain.to_dict()).config_hash
            != run_identity(build_config("split-digits", "toy-shifted",
                                         {"strategy.shift_init": 0.5}).to_dict()).config_hash)
