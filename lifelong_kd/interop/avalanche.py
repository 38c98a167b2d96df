"""Avalanche interoperability: our streams as Avalanche benchmarks, Avalanche's strategies in
our runner. Needs the optional extra: ``pip install 'lifelong-kd[avalanche]'``.

Two directions:

- :func:`to_avalanche_benchmark` turns a :class:`~lifelong_kd.data.streams.Stream` into an
  Avalanche benchmark with the same tasks, classes, order and task labels, so that Avalanche
  users can run their own code on our streams.
- ``--strategy avalanche:<Name>`` (:func:`avalanche_preset`) trains every task with the
  Avalanche strategy ``<Name>`` (its own loop, losses and plugins: one
  :class:`~lifelong_kd.strategies.base.ExternalLoop` phase of our strategy protocol) and leaves
  the evaluation after each task to our engine, so the accuracy matrix, result.json, metrics,
  plots and ``compare`` reports are those of our own strategies. The strategy's keyword
  arguments are ``--set strategy.<arg>=...`` (or a ``strategy.kwargs`` table). Importing this
  module registers the ``avalanche:`` family with ``strategies/presets.py``.

How our scenarios are carried over (van de Ven & Tolias 2019; Avalanche's own conventions):

========== ============================ ======================================================
scenario   Avalanche task labels        model handed to the Avalanche strategy
========== ============================ ======================================================
task-il    task id t (experience t)     a ``MultiTaskModule`` whose output for task t keeps
                                        that task's units and masks the others (one head per
                                        task, as Avalanche's ``MultiHeadClassifier``)
class-il   0                            the model, with the units of classes not seen yet
                                        masked (as Avalanche's ``IncrementalClassifier``)
domain-il  0                            the model
========== ============================ ======================================================

Labels are our output units; inputs are normalised as our engine does, (x / 255 - mean) / std.
Masked units get the value -1000, the ``mask_value`` of Avalanche's ``IncrementalClassifier``:
the cross-entropy is then the engine's to float precision.

Not carried over: resuming a run from a checkpoint (Avalanche strategies keep state that our
checkpoints do not hold, so ``--resume`` of an unfinished run is refused), the head warm-up,
and ``strategy.ce_scope = current``.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..config import SCENARIOS, RunConfig, closest_name
from ..errors import ConfigError, UserError
from ..strategies.base import ExternalLoop, Phase, Strategy, TaskContext
from ..strategies.loop import StopCheck
from ..strategies.optim import make_optimizer
from ..strategies.options import Options
from ..strategies.presets import StrategyPreset, register_family

if TYPE_CHECKING:
    import torch

    from ..config import MemoryConfig
    from ..data.streams import Images, Stream

#: What to install when Avalanche is missing.
INSTALL_HINT = "pip install 'lifelong-kd[avalanche]'"

#: Constructor arguments that the wrapper sets itself (not settable with --set).
_OURS = frozenset({
    "self", "model", "optimizer", "criterion", "train_mb_size", "train_epochs", "eval_mb_size",
    "device", "plugins", "evaluator", "eval_every", "feature_extractor", "classifier",
    "buffer_transform",
})


@dataclass(frozen=True)
class _Arg:
    """What one argument of an Avalanche strategy accepts, checked when the configuration is
    read (before any data is loaded) rather than found out by Avalanche mid-run.

    ``kind``: ``int``, ``number`` (an int or a finite float), ``numbers`` (a number or a list
    of them, e.g. LwF's per-task alpha), ``bool``, ``str`` or ``choice``; ``low`` / ``high``
    bound numbers (``low`` exclusive when ``strict``).
    """

    kind: str
    low: float | None = None
    strict: bool = False
    high: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """What would be valid, for the error message."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a string"
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}"
        what = "an integer" if self.kind == "int" else "a finite number"
        if self.low is not None and self.high is not None:
            what += f" in [{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            what += f" {'>' if self.strict else '>='} {self.low:g}"
        return what + (" or a list of them (one per task)" if self.kind == "numbers" else "")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is valid, else ``is not valid`` or ``is out of range``."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else "is not valid"
        if self.kind == "str":
            return None if isinstance(value, str) else "is not valid"
        if self.kind == "choice":
            return None if value in self.choices else "is not valid"
        values = value if self.kind == "numbers" and isinstance(value, list) and value else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) \
                    or (self.kind == "int" and not isinstance(v, int)):
                return "is not valid"
            if not math.isfinite(v):
                return "is not valid"
            if self.low is not None and (v <= self.low if self.strict else v < self.low):
                return "is out of range"
            if self.high is not None and v > self.high:
                return "is out of range"
        return None


@dataclass(frozen=True)
class _Known:
    """A supported Avalanche strategy: its class in ``avalanche.training``, our defaults for
    its required arguments, the scenarios it can run in, and what its arguments accept
    (the ranges Avalanche 0.6.0's code needs; arguments not listed are checked by their type
    annotation where it is a plain int, float, bool or str)."""

    cls_name: str
    defaults: dict[str, Any]
    scenarios: tuple[str, ...]
    description: str
    args: dict[str, _Arg] = field(default_factory=dict)


_MEMORY = _Arg("int", low=1)


#: The strategies that were checked to run on our streams. Other ``SupervisedTemplate``
#: subclasses of ``avalanche.training`` are accepted too, with no defaults.
KNOWN: dict[str, _Known] = {
    "Naive": _Known("Naive", {}, SCENARIOS, "Avalanche's plain fine-tuning"),
    "LwF": _Known("LwF", {"alpha": 1.0, "temperature": 2.0}, SCENARIOS,
                  "Avalanche's Learning without Forgetting: CE + alpha * KL(teacher/T || "
                  "student/T) over the old units, one term per earlier head; defaults alpha 1, "
                  "T 2 (LwFPlugin's)",
                  {"alpha": _Arg("numbers", low=0), "temperature": _Arg("number", low=0,
                                                                         strict=True)}),
    "EWC": _Known("EWC", {"ewc_lambda": 0.4}, SCENARIOS,
                  "Avalanche's Elastic Weight Consolidation; default ewc_lambda 0.4 "
                  "(Avalanche's EWC example)",
                  {"ewc_lambda": _Arg("number", low=0),
                   "mode": _Arg("choice", choices=("separate", "online")),
                   "decay_factor": _Arg("number", low=0, high=1),
                   "keep_importance_data": _Arg("bool")}),
    "SI": _Known("SynapticIntelligence", {"si_lambda": 0.0001}, SCENARIOS,
                 "Avalanche's Synaptic Intelligence; default si_lambda 1e-4 "
                 "(Avalanche's SI example)",
                 {"si_lambda": _Arg("numbers", low=0), "eps": _Arg("number", low=0, strict=True)}),
    "GEM": _Known("GEM", {"patterns_per_exp": 256}, SCENARIOS,
                  "Avalanche's Gradient Episodic Memory (needs quadprog, in the extra); "
                  "default patterns_per_exp 256",
                  {"patterns_per_exp": _MEMORY, "memory_strength": _Arg("number", low=0)}),
    "AGEM": _Known("AGEM", {"patterns_per_exp": 256}, SCENARIOS,
                   "Avalanche's Averaged GEM; default patterns_per_exp 256",
                   {"patterns_per_exp": _MEMORY, "sample_size": _MEMORY}),
    "Replay": _Known("Replay", {}, SCENARIOS,
                     "Avalanche's experience replay (mem_size, default 200)",
                     {"mem_size": _MEMORY}),
    "GDumb": _Known("GDumb", {}, SCENARIOS,
                    "Avalanche's GDumb: retrain from scratch on a class-balanced memory "
                    "(mem_size, default 200)",
                    {"mem_size": _MEMORY}),
    "ICaRL": _Known("ICaRL", {"memory_size": 2000, "fixed_memory": True}, ("class-il",),
                    "Avalanche's iCaRL (nearest-mean-of-exemplars classifier, evaluated as "
                    "such); class-il only; default memory_size 2000",
                    {"memory_size": _MEMORY, "fixed_memory": _Arg("bool")}),
}


def _annotation_arg(annotation: Any) -> _Arg | None:
    """The check of an argument from its type annotation when that is a plain ``int``,
    ``float``, ``bool`` or ``str`` (``Optional`` of one included: TOML has no None to set),
    else None (not checked here; Avalanche's own error is then reported in one line)."""
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            return None
        annotation = members[0]
    plain = {int: "int", float: "number", bool: "bool", str: "str",
             "int": "int", "float": "number", "bool": "bool", "str": "str"}
    try:
        kind = plain.get(annotation)
    except TypeError:  # an unhashable annotation
        return None
    return _Arg(kind) if kind else None


def _cross_check(name: str, kwargs: dict[str, Any]) -> None:
    """Checks between arguments, as Avalanche asserts them when the strategy is built."""
    if name == "avalanche:EWC":
        online = kwargs.get("mode") == "online"
        if online and kwargs.get("decay_factor") is None:
            raise ConfigError("`avalanche:EWC`: `strategy.mode` = 'online' needs "
                              "`strategy.decay_factor` (a finite number in [0, 1])")
        if not online and "decay_factor" in kwargs:
            raise ConfigError(f"`avalanche:EWC`: `strategy.decay_factor` = "
                              f"{kwargs['decay_factor']!r} is only used with `strategy.mode` "
                              "= 'online'; set that too, or drop it")


def _require_avalanche() -> Any:
    """Import ``avalanche.training``; a ConfigError naming the extra when it is missing."""
    try:
        with warnings.catch_warnings():
            # qpsolvers warns at import when no solver is installed; GEM says so itself.
            warnings.simplefilter("ignore", UserWarning)
            import avalanche.training as training
    except ImportError as exc:
        raise ConfigError(
            f"Avalanche strategies need the optional extra: {INSTALL_HINT} ({exc})"
        ) from None
    return training


@dataclass(frozen=True)
class AvalanchePreset(StrategyPreset):
    """A preset for ``avalanche:<Name>``; ``kwargs_names`` are the Avalanche strategy's own
    arguments, which ``--set strategy.<arg>=...`` sets (presets.py routes them to
    ``strategy.kwargs``)."""

    required: tuple[str, ...] = ()
    #: What each argument accepts (see :class:`_Arg`); arguments not listed are not checked.
    arg_checks: dict[str, _Arg] = field(default_factory=dict)

    def check(self, config: RunConfig) -> None:
        """The strategy's own arguments (:meth:`check_kwargs`), then what every preset
        checks."""
        kwargs = self.make_options(config).kwargs
        if set(kwargs) - set(self.kwargs_names):
            bad = sorted(set(kwargs) - set(self.kwargs_names))[0]
            raise ConfigError(f"strategy `{self.name}` has no argument `{bad}`; its arguments: "
                              f"{', '.join(self.kwargs_names) or 'none'}")
        self.check_kwargs(kwargs)
        super().check(config)

    def check_kwargs(self, kwargs: dict[str, Any]) -> None:
        """Check the strategy's arguments (``strategy.kwargs``) before any data is loaded:
        the required ones are given, each has a valid type and range; a ConfigError naming
        the argument, its value and what would be valid otherwise."""
        missing = [a for a in self.required if a not in kwargs]
        if missing:
            raise ConfigError(f"`{self.name}` needs its argument `{missing[0]}`: set it with "
                              f"--set strategy.{missing[0]}=...")
        for key, value in kwargs.items():
            check = self.arg_checks.get(key)
            problem = check.problem(value) if check is not None else None
            if problem is not None:
                assert check is not None
                raise ConfigError(f"`strategy.{key}` = {value!r} {problem} for `{self.name}`; "
                                  f"it must be {check.describe()}")
        _cross_check(self.name, kwargs)


@functools.cache
def avalanche_preset(name: str) -> StrategyPreset:
    """The preset of ``avalanche:<Name>``; a ConfigError when Avalanche is missing or has no
    such strategy."""
    short = name.removeprefix("avalanche:")
    training = _require_avalanche()
    known = KNOWN.get(short)
    cls_name = known.cls_name if known else short
    from avalanche.training.templates import SupervisedTemplate

    av_cls = getattr(training, cls_name, None)
    if not (isinstance(av_cls, type) and issubclass(av_cls, SupervisedTemplate)):
        close = closest_name(short, list(KNOWN))
        hint = f" (did you mean `avalanche:{close}`?)" if close else ""
        raise ConfigError(f"unknown Avalanche strategy `{name}`{hint}; supported: "
                          + ", ".join(f"avalanche:{k}" for k in KNOWN))
    params = inspect.signature(av_cls.__init__).parameters
    if known is None and not {"model", "optimizer"} <= set(params):
        raise ConfigError(f"`{name}` does not take a model and an optimiser, so it cannot run "
                          "on our models; supported: " + ", ".join(f"avalanche:{k}" for k in KNOWN))
    own = tuple(p.name for p in params.values()
                if p.name not in _OURS and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    required = tuple(p.name for p in params.values() if p.name in own and p.default is p.empty)
    checks = {a: c for a in own if (c := _annotation_arg(params[a].annotation)) is not None}
    checks.update(known.args if known else {})
    cls = type(f"Avalanche{short}", (AvalancheStrategy,), {"avalanche_name": short,
                                                             "avalanche_cls_name": cls_name})
    return AvalanchePreset(
        name=name,
        cls=cls,
        description=known.description if known else f"Avalanche's {cls_name} (not cross-checked)",
        source=f"avalanche-lib, avalanche.training.{cls_name}",
        options=dict(known.defaults) if known else {},
        scenarios=known.scenarios if known else SCENARIOS,
        kwargs_names=own,
        required=required,
        arg_checks=checks,
    )


# ------------------------------------------------------------------------ our streams there


class _NormalisedImages:
    """A task's examples as Avalanche reads them, one at a time: image i of ``images`` (a
    task's :class:`~lifelong_kd.data.streams.Images`, permuted or rotated on the fly from
    the shared dataset) as float32 (x / 255 - mean) / std, as ``ctx.prepare`` makes it, and
    its label. Nothing is copied ahead: no permuted, rotated or float copy of a task exists.
    """

    def __init__(self, images: Images, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        self.images, self.y = images, y
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[int(i)].float().div_(255.0).sub_(self.mean).div_(self.std)
        return x, int(self.y[i])


def _crop_flip(stream: Stream) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-example random crop (4-pixel padding) and horizontal flip of a normalised image:
    our engine's augmentation (``data/augment.py``); the padding is the normalised value of a
    black pixel, as the engine pads the uint8 image with zeros."""
    from torchvision.transforms import v2

    fill = [-m / s for m, s in zip(stream.mean, stream.std, strict=True)]
    _, h, w = stream.input_shape
    return v2.Compose([v2.RandomCrop((h, w), padding=4, fill=fill),
                       v2.RandomHorizontalFlip()])


def to_avalanche_benchmark(stream: Stream, *, augment: bool = False, test: bool = True) -> Any:
    """An Avalanche benchmark (``CLScenario``) with the tasks of ``stream``, in order.

    Experience t of ``train_stream`` (and ``test_stream`` when ``test``) holds task t's
    examples as float tensors normalised as our engine does (made example by example when
    Avalanche reads them, from the stream's shared uint8 images), labelled with our output units;
    task labels are t in task-il and 0 otherwise. Experiences carry ``task_labels`` and the
    classes timeline (``classes_in_this_experience``, ``classes_seen_so_far``, ...).
    ``augment`` adds our crop-and-flip augmentation as the training transform.
    """
    import torch

    _require_avalanche()
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
    from avalanche.benchmarks.scenarios.task_aware import with_task_labels
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset

    mean = torch.tensor(stream.mean)
    std = torch.tensor(stream.std)
    transform = _crop_flip(stream) if augment else None

    def dataset(x: Images, y: torch.Tensor, task: int, train: bool) -> Any:
        label = task if stream.scenario == "task-il" else 0
        groups = {"train": (transform if train else None, None), "eval": (None, None)}
        return _make_taskaware_classification_dataset(
            _NormalisedImages(x, y.clone(), mean, std), task_labels=label, targets=y.tolist(),
            transform_groups=groups, initial_transform_group="train" if train else "eval")

    streams = {"train": [dataset(t.train_x, t.train_y, t.id, True) for t in stream.tasks]}
    if test:
        streams["test"] = [dataset(t.test_x, t.test_y, t.id, False) for t in stream.tasks]
    bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(**streams)))
    # The fields of Avalanche's class-incremental scenarios that iCaRL reads from
    # ``experience.benchmark`` (the new-style benchmarks above do not have them).
    info = SimpleNamespace(
        n_classes_per_exp=[len(t.outputs) for t in stream.tasks],
        classes_order=[u for t in stream.tasks for u in t.outputs],
        n_classes=stream.n_outputs,
    )
    for s in bench.streams.values():
        for exp in s:
            exp.benchmark = info
    return bench


# ------------------------------------------------------------------ their strategies here




@dataclass(frozen=True)
class AvalancheOptions(Options):
    """The options of an Avalanche strategy: its own keyword arguments (``ce_scope`` must
    stay ``seen``)."""

    #: Keyword arguments of the Avalanche strategy, as a table: ``--set
    #: strategy.kwargs={mem_size=500}``, or ``--set strategy.mem_size=500`` for one of that
    #: strategy's own arguments.
    kwargs: dict[str, Any] = field(default_factory=dict)


class AvalancheStrategy(Strategy):
    """Trains each task with an Avalanche strategy; our engine evaluates after each task.

    The Avalanche strategy gets our model (wrapped for the scenario, see the module
    docstring), an optimiser built as the engine builds it (``train.optimizer``, ``lr``,
    ``momentum``, ``weight_decay``, ``betas``; its state reset at each task unless
    ``train.reset_optimizer = false``), ``train.batch_size``, ``train.epochs`` (or
    ``train.iterations`` steps), ``train.device``, a plain cross-entropy criterion, and
    ``strategy.kwargs``. Its own loggers and metrics are off. Its training loop is the one
    phase of each task (an :class:`~lifelong_kd.strategies.base.ExternalLoop`); iCaRL's
    nearest-mean-of-exemplars classifier is its :meth:`predict`.
    """

    Options = AvalancheOptions
    options: AvalancheOptions
    #: Avalanche's own loaders read the training examples on the host.
    HOST_DATA = True
    avalanche_name = ""
    avalanche_cls_name = ""

    def __init__(self, options: AvalancheOptions | None = None,
                 memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        self._av: Any = None
        self._bench: Any = None
        self._wrapper: Any = None
        self._control: Any = None
        self._trained = 0
        #: iCaRL: (weight, bias) of the linear map that scores the class means, after a task.
        self._ncm: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def check(cls, config: RunConfig, options: AvalancheOptions) -> None:  # type: ignore[override]
        if options.ce_scope != "seen":
            raise ConfigError(f"`strategy.ce_scope` = {options.ce_scope!r} is not "
                              f"supported by `{config.strategy.name}`; Avalanche strategies use "
                              "`seen`")

    # ------------------------------------------------------------------ building
    def _build(self, ctx: TaskContext) -> None:
        import torch

        training = _require_avalanche()
        from avalanche.training.plugins import EvaluationPlugin

        from .avalanche_modules import ActiveUnits, Control, TaskHeads
        stream, model, cfg = ctx.stream, ctx.model, ctx.config
        self._bench = to_avalanche_benchmark(stream, augment=ctx.augment, test=False)
        if stream.scenario == "task-il":
            units = torch.stack([stream.eval_mask(0, t) for t in range(len(stream))])
            self._wrapper = TaskHeads(model, units.to(ctx.device))
        else:
            self._wrapper = ActiveUnits(model, stream.n_outputs).to(ctx.device)
        self._control = Control()
        n = max(len(t.train_y) for t in stream.tasks)
        epochs = cfg.train.epochs
        if cfg.train.iterations > 0:
            epochs = math.ceil(cfg.train.iterations / max(math.ceil(n / cfg.train.batch_size), 1))
        with warnings.catch_warnings():  # "no loggers specified": on purpose, we evaluate
            warnings.simplefilter("ignore", UserWarning)
            evaluator = EvaluationPlugin(loggers=[])
        common: dict[str, Any] = {
            "model": self._wrapper, "criterion": torch.nn.CrossEntropyLoss(),
            "optimizer": make_optimizer(cfg, self.parameters(model)),
            "train_mb_size": cfg.train.batch_size, "train_epochs": epochs,
            "eval_mb_size": cfg.train.eval_batch_size, "device": ctx.device,
            "plugins": [self._control], "evaluator": evaluator,
            "eval_every": -1,
        }
        if self.avalanche_cls_name == "ICaRL":
            common.update(feature_extractor=model.backbone, classifier=model.head,
                          buffer_transform=None)
        av_cls = getattr(training, self.avalanche_cls_name)
        params = inspect.signature(av_cls.__init__).parameters
        args = {k: v for k, v in common.items() if k in params}
        try:
            self._av = av_cls(**args, **self.options.kwargs)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever Avalanche raises, one clear line
            text = " ".join(str(exc).split())
            raise ConfigError(f"`avalanche:{self.avalanche_name}` could not be built with its arguments "
                              f"{self.options.kwargs}: {type(exc).__name__}"
                              f"{': ' + text if text else ''}") from None

    # ------------------------------------------------------------------ the protocol
    def phases(self, ctx: TaskContext) -> list[Phase | ExternalLoop]:
        """One phase: the Avalanche strategy's own training loop (:meth:`train_task`)."""
        return [ExternalLoop("avalanche", self.train_task)]

    def train_task(self, ctx: TaskContext, should_stop: StopCheck | None = None) -> None:
        """Train task ``ctx.index`` with the Avalanche strategy."""
        if ctx.index != self._trained:
            raise UserError(f"`avalanche:{self.avalanche_name}` cannot continue a run from a checkpoint "
                            "(Avalanche's state is not in it); use --force to start again")
        if self._av is None:
            self._build(ctx)
        model = ctx.model
        if ctx.stream.scenario == "class-il":  # the units of the classes seen so far
            self._control.active = ctx.stream.train_masks(ctx.index)[ctx.index].to(ctx.device)
        cfg = ctx.config.train
        self._control.should_stop = should_stop
        self._control.max_steps = cfg.iterations
        self._control.task = ctx.index
        experience = self._bench.train_stream[ctx.index]
        self._av.train(experience, eval_streams=[], reset_optimizer_state=cfg.reset_optimizer)
        if self.avalanche_cls_name == "ICaRL":
            self._ncm = self._ncm_scores(model)
        elif self._av.model is not self._wrapper:
            # GDumb trains a fresh copy of the model at each task: take its weights
            model.load_state_dict(self._av.model.model.state_dict())
        self._trained += 1

    def _ncm_scores(self, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """iCaRL's nearest-mean-of-exemplars classifier as a linear map of the features.

        Avalanche's NCMClassifier predicts argmin_y ||f/|f| - mu_y|| with unit-norm class
        means mu_y; that is argmax_y mu_y . f (|f| > 0 scales every score alike), a linear
        map with weights mu_y and no bias (Rebuffi et al. 2017, section 2.1); classes without
        a mean score 0."""
        import torch

        weight = torch.zeros_like(model.head.weight.detach())
        bias = torch.zeros_like(model.head.bias.detach())
        means = self._av.model.eval_classifier.class_means
        if means is not None:
            weight[: len(means)] = means.to(weight)
        return weight, bias

    def predict(self, ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
        """The model's logits, or for iCaRL after a task the scores of its class means."""
        if self._ncm is None:
            return ctx.model(x)
        import torch.nn.functional as F

        return F.linear(ctx.model.features(x), *self._ncm)

    def state_dict(self) -> dict[str, Any]:
        return {"avalanche": f"avalanche:{self.avalanche_name}", "tasks_trained": self._trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("tasks_trained", 0) > 0:
            raise UserError(f"`avalanche:{self.avalanche_name}` cannot continue a run from a checkpoint "
                            "(Avalanche's state is not in it); use --force to start again")


register_family("avalanche:", avalanche_preset, AvalancheOptions)

__all__ = ["INSTALL_HINT", "KNOWN", "AvalanchePreset", "AvalancheStrategy", "avalanche_preset",
           "to_avalanche_benchmark"]
