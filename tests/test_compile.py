"""``train.compile``: the model's backbone and head run through ``torch.compile``.

The test compiles with the ``eager`` backend (dynamo traces the model and runs the traced
graph with PyTorch's own kernels, no code generation: seconds, not the minutes inductor takes
on a CPU), which must give the eager run's matrix bit for bit; the identity of a compiled
run differs from an eager one's (its numbers may round differently with inductor)."""

from __future__ import annotations

import pytest

from lifelong_kd import engine
from lifelong_kd.config import parse_set
from lifelong_kd.data.sources import default_data_dir, load_dataset, subset
from lifelong_kd.data.streams import build_stream
from lifelong_kd.presets import build_config
from lifelong_kd.results import run_identity

SETS = ["data.train_subset=300", "stream.n_tasks=2", "train.epochs=1", "model.hidden=[16]"]


def _run(*sets: str) -> engine.RunState:
    config = build_config("split-digits", "lwf", parse_set([*SETS, *sets]))
    ds = load_dataset("digits", default_data_dir(), offline=True, progress=False)
    stream = build_stream(config, subset(ds, config.data.train_subset, 0))
    return engine.train_stream(config, stream, progress=False)


def test_a_compiled_model_gives_the_eager_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "COMPILE_BACKEND", "eager")
    eager = _run()
    compiled = _run("train.compile=true")
    assert compiled.model.backbone._compiled_call_impl is not None
    assert compiled.model.head._compiled_call_impl is not None
    assert eager.model.backbone._compiled_call_impl is None
    assert compiled.rows == eager.rows and compiled.initial == eager.initial
    # the weights are the eager modules' own: their state-dict keys are unchanged
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())


def test_compile_is_part_of_the_identity_and_its_default_keeps_old_ones() -> None:
    eager = build_config("split-digits", "lwf", parse_set(SETS)).to_dict()
    compiled = build_config("split-digits", "lwf", parse_set([*SETS, "train.compile=true"]))
    assert run_identity(eager, "f").config_hash != run_identity(compiled.to_dict(), "f").config_hash
    without = {**eager, "train": {k: v for k, v in eager["train"].items()
                                  if k not in ("compile", "eval_every", "eval_subset")}}
    assert run_identity(without, "f").config_hash == run_identity(eager, "f").config_hash
