"""Avalanche interoperability (issue 8): our streams as Avalanche benchmarks, Avalanche's
strategies in our runner, and our `lwf-avalanche` checked against Avalanche's own LwF.

These tests need the optional extra (``pip install -e '.[avalanche]'``). Without it they are
skipped on a developer's machine and FAIL in CI (where ``CI`` is set), so a CI that forgot to
install the extra cannot pass silently. The test of the "missing extra" message runs always.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lifelong_kd.config import RunConfig, parse_set
from lifelong_kd.errors import ConfigError, UserError
from lifelong_kd.presets import build_config


def _stream(config: RunConfig, data_dir: Path) -> Any:
    from lifelong_kd.data.sources import subset
    from lifelong_kd.data.streams import build_stream
    from lifelong_kd.runs import DataProvider

    ds = DataProvider(data_dir, offline=True).dataset(config)
    return build_stream(config, subset(ds, config.data.train_subset, config.data.test_subset))


def _config(benchmark: str, strategy: str, items: list[str]) -> RunConfig:
    return build_config(benchmark, strategy, parse_set(items))


# ------------------------------------------------------------------ without the extra


def test_avalanche_strategies_declare_that_they_read_their_data_on_the_host() -> None:
    """The engine keeps the stream on the host for them because they declare it
    (``Strategy.HOST_DATA``), not because of their name's ``avalanche:`` prefix."""
    from lifelong_kd.interop.avalanche import AvalancheStrategy
    from lifelong_kd.strategies import PRESETS

    assert AvalancheStrategy.HOST_DATA
    assert not any(preset.cls.HOST_DATA for preset in PRESETS.values())


def test_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lifelong_kd.cli import main
    from lifelong_kd.interop.avalanche import avalanche_preset
    from lifelong_kd.strategies import strategy_preset

    for name in [m for m in sys.modules if m == "avalanche" or m.startswith("avalanche.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "avalanche", None)  # `import avalanche` now fails
    avalanche_preset.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"pip install 'lifelong-kd\[avalanche\]'"):
            strategy_preset("avalanche:LwF")
        code = main(["run", "split-digits", "--strategy", "avalanche:LwF", "--quiet",
                     "--out", "unused"])
    finally:
        avalanche_preset.cache_clear()
    assert code == 2
    assert "pip install 'lifelong-kd[avalanche]'" in capsys.readouterr().err


# ------------------------------------------------------------------ configuration


def test_strategy_arguments_go_to_kwargs(avalanche: None) -> None:
    config = _config("split-digits", "avalanche:Replay", ["strategy.mem_size=50"])
    assert config.strategy.options["kwargs"] == {"mem_size": 50}
    assert config.to_dict()["strategy"]["kwargs"] == {"mem_size": 50}
    lwf = _config("split-digits", "avalanche:LwF", [])
    assert lwf.strategy.options["kwargs"] == {"alpha": 1.0, "temperature": 2.0}  # the preset's defaults
    lwf = _config("split-digits", "avalanche:LwF",
                  ["strategy.kwargs={alpha = 0.5, temperature = 3.0}", "strategy.alpha=0.25"])
    assert lwf.strategy.options["kwargs"] == {"alpha": 0.25, "temperature": 3.0}  # single keys win
    with pytest.raises(ConfigError, match="unknown configuration key `strategy.mem_sise`"):
        _config("split-digits", "avalanche:Replay", ["strategy.mem_sise=50"])
    with pytest.raises(ConfigError, match="has no argument `foo`"):
        _config("split-digits", "avalanche:Replay", ["strategy.kwargs={foo = 1}"])
    with pytest.raises(ConfigError, match="is not a table"):
        _config("split-digits", "avalanche:Replay", ["strategy.kwargs=3"])
    # our own strategies ignore the table, as any option they do not use
    assert _config("split-digits", "lwf", ["strategy.kwargs={mem_size = 5}"]).strategy.name == "lwf"


def test_scenarios_and_names_are_checked_before_training(avalanche: None) -> None:
    with pytest.raises(ConfigError, match="does not support the `task-il` scenario"):
        _config("split-digits", "avalanche:ICaRL", [])
    with pytest.raises(ConfigError, match="unknown Avalanche strategy `avalanche:LwFF`.*LwF"):
        _config("split-digits", "avalanche:LwFF", [])
    assert _config("split-digits", "avalanche:ICaRL", ["stream.scenario=class-il"])


# ------------------------------------------------------------------ our streams there


@pytest.mark.parametrize(
    ("benchmark", "items"),
    [("split-digits", []), ("split-digits", ["stream.scenario=class-il"]),
     ("permuted-digits", [])],
)
def test_benchmark_mirrors_the_stream(
    avalanche: None, data_dir: Path, benchmark: str, items: list[str]
) -> None:
    from lifelong_kd.interop.avalanche import to_avalanche_benchmark

    config = _config(benchmark, "naive", items)
    stream = _stream(config, data_dir)
    bench = to_avalanche_benchmark(stream)
    mean = torch.tensor(stream.mean).view(-1, 1, 1)
    std = torch.tensor(stream.std).view(-1, 1, 1)
    for name in ("train", "test"):
        experiences = list(getattr(bench, f"{name}_stream"))
        assert len(experiences) == len(stream)
        for task, exp in zip(stream.tasks, experiences, strict=True):
            x, y = (task.train_x, task.train_y) if name == "train" else (task.test_x, task.test_y)
            assert exp.current_experience == task.id
            assert set(exp.classes_in_this_experience) == set(task.outputs)
            label = task.id if stream.scenario == "task-il" else 0
            assert exp.task_labels == [label]
            data = exp.dataset
            assert len(data) == len(y)
            assert list(data.targets) == y.tolist()
            for i in (0, len(y) // 2, len(y) - 1):
                xi, yi, ti = data[i]
                assert torch.allclose(xi, (x[i].float() / 255 - mean) / std, atol=1e-6)
                assert (int(yi), int(ti)) == (int(y[i]), label)


# ------------------------------------------------------------------ the distillation term


@pytest.mark.parametrize(
    ("benchmark", "items"),
    [("permuted-digits", []), ("split-digits", ["stream.scenario=class-il"]),
     ("split-digits", [])],
    ids=["domain-il", "class-il", "task-il"],
)
def test_lwf_avalanche_distillation_term_equals_avalanches(
    avalanche: None, data_dir: Path, benchmark: str, items: list[str]
) -> None:
    """Same batch, same student and teacher: our `lwf-avalanche` term (loss - CE) equals
    Avalanche's LearningWithoutForgetting penalty, value and gradient, to 1e-5."""
    from avalanche.training import LearningWithoutForgetting

    from lifelong_kd.engine import Batch, TrainData, new_state, task_context
    from lifelong_kd.interop.avalanche import to_avalanche_benchmark
    from lifelong_kd.interop.avalanche_modules import TaskHeads

    config = _config(benchmark, "lwf-avalanche", items)
    stream = _stream(config, data_dir)
    index = 2  # two earlier tasks: two heads in task-il
    state = new_state(config, stream)
    model, ours = state.model, state.strategy
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():  # the student has moved away from the teacher
            p.add_(0.1 * torch.randn_like(p))
    teacher = teacher.eval().requires_grad_(False)
    ours.teacher = teacher
    ctx = task_context(config, stream, state, index)
    data = TrainData.of_task(stream[index])
    ctx.current_train_data = data
    ours.before_task(ctx)
    idx = torch.arange(min(64, len(data)))
    raw = data.x[idx]
    batch = Batch(ctx.prepare(raw), data.y[idx], data.t[idx], idx, raw, ctx)
    features, logits = model.forward_features(batch.x)
    kd_ours = ours.loss(ctx, batch, features, logits) - ours.ce(ctx, batch, logits)

    bench = to_avalanche_benchmark(stream, test=False)
    theirs = LearningWithoutForgetting(alpha=config.strategy.options["alpha"],
                                       temperature=config.strategy.options["temperature"])
    if stream.scenario == "task-il":
        units = torch.stack([stream.eval_mask(0, t) for t in range(len(stream))])
        heads = TaskHeads
        prev, student = heads(teacher, units), heads(model, units)
        prev.known_train_tasks_labels = set(range(index))
        student.known_train_tasks_labels = set(range(index + 1))
    else:
        prev, student = teacher, model
    for t in range(index):  # what Avalanche does after each task: teacher and old units
        theirs.post_adapt(SimpleNamespace(model=prev), bench.train_stream[t])
    kd_theirs = theirs(batch.x, logits, student)

    assert float(kd_ours.detach()) > 1e-3  # a real term, not two zeros
    assert float(kd_ours.detach()) == pytest.approx(float(kd_theirs.detach()), abs=1e-5)
    g_ours = torch.autograd.grad(kd_ours, model.head.weight, retain_graph=True)[0]
    g_theirs = torch.autograd.grad(kd_theirs, model.head.weight)[0]
    assert torch.allclose(g_ours, g_theirs, atol=1e-5)


# ------------------------------------------------------------------ whole runs


def _run(config: RunConfig, stream: Any) -> list[list[float]]:
    from lifelong_kd.engine import train_stream

    return train_stream(config, stream, progress=False).rows


#: Full-batch training (one step per epoch), so that the batch order, the one thing the two
#: loops do not share, cannot matter.
_SMALL = {
    "permuted": ["data.train_subset=300", "data.test_subset=500", "stream.n_tasks=3",
                 "model.hidden=[100]", "train.batch_size=300", "train.epochs=15",
                 "train.lr=0.05"],
    "split": ["data.train_subset=1000", "data.test_subset=500", "model.hidden=[100]",
              "train.iterations=0", "train.epochs=10", "train.batch_size=1000",
              "train.optimizer=sgd", "train.lr=0.05", "train.momentum=0.9"],
}


@pytest.mark.parametrize(("benchmark", "kind"),
                         [("permuted-mnist", "permuted"), ("split-mnist", "split")],
                         ids=["permuted-mnist-domain-il", "split-mnist-task-il"])
def test_lwf_avalanche_matches_avalanches_lwf(
    avalanche: None, data_dir: Path, benchmark: str, kind: str
) -> None:
    """Our `lwf-avalanche` and `avalanche:LwF`, same model, initial weights and optimiser:
    final average accuracy within 1 point, every entry of the matrix within 2."""
    ours_config = _config(benchmark, "lwf-avalanche", _SMALL[kind])
    theirs_config = _config(benchmark, "avalanche:LwF", _SMALL[kind])
    stream = _stream(ours_config, data_dir)
    assert stream.scenario == ("domain-il" if kind == "permuted" else "task-il")
    ours = _run(ours_config, stream)
    theirs = _run(theirs_config, stream)
    n = len(stream)
    final_ours, final_theirs = sum(ours[-1]) / n, sum(theirs[-1]) / n
    assert final_ours > 0.5  # they learned something
    assert abs(final_ours - final_theirs) <= 0.01, (ours, theirs)
    for row_ours, row_theirs in zip(ours, theirs, strict=True):
        for a, b in zip(row_ours, row_theirs, strict=True):
            assert abs(a - b) <= 0.02, (ours, theirs)


@pytest.mark.parametrize(
    ("strategy", "items"),
    [("avalanche:Naive", ["train.augment=true"]),
     ("avalanche:EWC", []),
     ("avalanche:SI", []),
     ("avalanche:GEM", ["strategy.patterns_per_exp=20"]),
     ("avalanche:AGEM", ["strategy.patterns_per_exp=20"]),
     ("avalanche:Replay", ["strategy.mem_size=50"]),
     ("avalanche:GDumb", ["strategy.mem_size=300", "stream.scenario=class-il",
                          "train.epochs=10"]),
     ("avalanche:ICaRL", ["strategy.memory_size=100", "stream.scenario=class-il"]),
     ("avalanche:LwF", ["stream.scenario=class-il", "train.iterations=7"])],
)
def test_avalanche_strategies_run_through_our_runner(
    avalanche: None, data_dir: Path, tmp_path: Path, strategy: str, items: list[str]
) -> None:
    """Each supported strategy trains every task and leaves a full result.json."""
    from lifelong_kd.results import read_result
    from lifelong_kd.runs import DataProvider, RunOptions, RunSpec, execute

    config = _config("split-digits", strategy, ["train.epochs=2", "stream.n_tasks=3",
                                                 "stream.classes_per_task=2", *items])
    result = execute(RunSpec(config, tmp_path / "run"), DataProvider(data_dir, offline=True),
                     RunOptions(progress=False, plots=False))
    assert result["status"] == "finished"
    assert read_result(tmp_path / "run")["config"]["strategy"]["name"] == strategy
    # a full matrix, and after the last task the model knows the last task (it was trained)
    csv = (tmp_path / "run" / "accuracy_matrix.csv").read_text().splitlines()
    last = [float(v) for v in csv[-1].split(",")[1:]]
    assert len(csv) == 1 + 3 and last[-1] > 0.5


def test_resuming_an_avalanche_run_is_refused(avalanche: None) -> None:
    from lifelong_kd.strategies import build_strategy

    strategy = build_strategy(_config("split-digits", "avalanche:Naive", []).strategy)
    strategy.load_state_dict({"tasks_trained": 0})  # a fresh start is fine
    with pytest.raises(UserError, match="cannot continue a run from a checkpoint"):
        strategy.load_state_dict({"tasks_trained": 2})


def test_a_diverging_avalanche_loop_is_diverged_naming_its_step(avalanche: None,
                                                               data_dir: Path) -> None:
    """Avalanche's own loop (an ExternalLoop phase) reports a NaN or infinite loss as the engine's
    loop does: checked every 50 steps and at the end of the task, naming the first bad step."""
    from lifelong_kd.engine import Diverged, train_stream

    config = _config("split-digits", "avalanche:Naive",
                     ["train.lr=1e30", "train.iterations=60", "stream.n_tasks=3",
                      "stream.classes_per_task=2", "model.hidden=[16]"])
    with pytest.raises(Diverged, match=r"^the loss became (nan|inf|-inf) in task 0 \(0-based\), "
                                       r"step \d+; lower train\.lr"):
        train_stream(config, _stream(config, data_dir), progress=False)
