"""A run's identity, defined here once (:func:`identity_settings`, :class:`RunIdentity`).

``compare`` reuses a finished run when its identity is the one planned, a checkpoint resumes
only under the identity it was made with, and ``report`` groups runs by the same partition
of the settings: what every run of one report shares (benchmark, data, stream), what a
variant has of its own (model, training, strategy) and the seed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import ADDED_KEYS, SHARED_SECTIONS
from ..errors import UserError

#: Configuration keys that determine nothing of a run's result, left out of its identity:
#: the lists ``compare`` runs by default and the preset's description.
NOT_IDENTITY = ("description", "strategies", "seeds")
#: The key of the data fingerprint among a result's shared settings.
FINGERPRINT = "data.fingerprint"


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (an empty table gives no key)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _canonical(value: Any) -> Any:
    """One spelling per value, so that equal settings hash equally: tuples as lists (as JSON
    reads them back) and integral floats as integers (``0.0`` and ``0`` are one setting, as
    ``==`` has it)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _digest(value: Any) -> str:
    """The first 16 hex digits of the sha256 of ``value`` as canonical JSON."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


#: The strategy options of every run recorded before each strategy declared its own (one
#: table of 26 options, every run recording all of them, used or not), with their defaults then.
#: A configuration that lacks one (every run since records only the options of its
#: strategy) hashes as if it held that default, so a run keeps the identity it had: the
#: identity covers the options its strategy reads, and the others as constants. Frozen:
#: options added since are their strategies' own (``strategies/options.py``).
LEGACY_STRATEGY_OPTIONS: dict[str, Any] = {
    "alpha": 1.0, "temperature": 2.0, "t2_scaling": False, "distill_loss": "kl",
    "logits": "old", "distill_reduction": "sum", "teacher_input": "same",
    "alpha_schedule": "constant", "ce_scope": "seen", "warmup_epochs": 0,
    "mode": "incremental", "ewc_lambda": 100.0, "ewc_online": False, "ewc_gamma": 1.0,
    "fisher_samples": 1000, "ewc_fisher": "true", "beta": 0.5, "independent_draws": True,
    "prediction": "logits", "validation": 0.1, "bias_epochs": 2,
    "temperature_schedule": "constant", "temperature_end": 1.0, "schedule_span": "task",
    "annealing_share": 0.5, "kwargs": {},
}
#: Of :data:`LEGACY_STRATEGY_OPTIONS`, those added after results were first recorded: at
#: this default a run hashes as if the key were absent (as :data:`config.ADDED_KEYS`).
LEGACY_ADDED_OPTIONS = ("beta", "independent_draws", "prediction", "validation", "bias_epochs",
                        "temperature_schedule", "temperature_end", "schedule_span",
                        "annealing_share")


def identity_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's configuration as the dotted keys that determine its result (everything but
    :data:`NOT_IDENTITY`), with canonical values. A key added after results were first
    recorded (``config.ADDED_KEYS``, :data:`LEGACY_ADDED_OPTIONS`) counts only when it
    differs from the default that reproduces the earlier behaviour, and an option of
    :data:`LEGACY_STRATEGY_OPTIONS` the configuration lacks counts as its default, so earlier
    runs keep their identity."""
    strategy = config.get("strategy")
    if isinstance(strategy, Mapping):
        config = {**config, "strategy": {**LEGACY_STRATEGY_OPTIONS, **strategy}}
    added = {**ADDED_KEYS, **{f"strategy.{k}": LEGACY_STRATEGY_OPTIONS[k]
                              for k in LEGACY_ADDED_OPTIONS}}
    flat = _flat(config)
    return {k: _canonical(v) for k, v in flat.items()
            if k not in NOT_IDENTITY
            and not (k in added and _canonical(v) == _canonical(added[k]))}


def _part(key: str) -> str:
    """``shared``, ``seed`` or ``variant``: where a dotted key belongs (see the module
    docstring)."""
    if key == "benchmark" or key.partition(".")[0] in SHARED_SECTIONS:
        return "shared"
    return "seed" if key == "seed" else "variant"


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is: a readable stamp and a hash of everything that determines its result.

    ``config_hash`` is the digest of :func:`identity_settings` (known when the run is
    planned); ``data_fingerprint`` is the sha256 of the arrays read from disk, known only
    once the data is loaded: :meth:`with_data` completes the identity then. Two runs are the
    same run when their :attr:`key` (the digest of both) is the same.
    """

    strategy: str
    seed: int
    config_hash: str
    data_fingerprint: str | None = None
    #: The settings a grid varied for this run, as (dotted key, value as shown) pairs.
    grid: tuple[tuple[str, str], ...] = ()

    @property
    def stamp(self) -> str:
        """``strategy/seed-N``, or ``strategy/<grid stamp>/seed-N`` for a variant of a grid
        (:func:`grid_stamp`): the run's name in logs and, made safe for a path, its folder
        under ``compare``."""
        middle = f"{grid_stamp(self.grid)}/" if self.grid else ""
        return f"{self.strategy}/{middle}seed-{self.seed}"

    @property
    def title(self) -> str:
        """The stamp with the start of the configuration hash: ``lwf/train.lr=0.1/seed-0
        (3f2a9c1b0d)``, which tells apart two runs of one stamp with other settings."""
        return f"{self.stamp} ({self.config_hash[:10]})"

    @property
    def key(self) -> str:
        """The digest of the configuration hash and the data fingerprint."""
        if self.data_fingerprint is None:
            raise ValueError(f"the identity of {self.stamp} has no data fingerprint yet")
        return _digest([self.config_hash, self.data_fingerprint])

    def with_data(self, fingerprint: str) -> RunIdentity:
        """This identity completed with the fingerprint of the data loaded for it."""
        return replace(self, data_fingerprint=fingerprint)

    def to_dict(self) -> dict[str, Any]:
        """As result.json stores it (``grid`` only for a variant of a grid)."""
        out = {"stamp": self.stamp, "config_hash": self.config_hash,
               "data_fingerprint": self.data_fingerprint,
               "key": self.key if self.data_fingerprint else None}
        if self.grid:
            out["grid"] = dict(self.grid)
        return out


def grid_value(value: Any) -> str:
    """A setting's value as a grid stamp shows it: a string as is, a list joined by ``_``
    (``[400, 400]`` -> ``400_400``), anything else as JSON, an integral float as an integer
    (``0.1``, ``2``, ``true``: one spelling per value, as the identity hashes it)."""
    value = _canonical(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "_".join(grid_value(v) for v in value)
    return json.dumps(value)


def grid_stamp(grid: Sequence[tuple[str, str]]) -> str:
    """``strategy.alpha=2,train.lr=0.1``: the settings a grid varied, sorted by key (one name
    whatever order they were given in), as one folder name (characters other than letters,
    digits and ``._+-=`` become ``_``)."""
    text = ",".join(f"{key}={value}" for key, value in sorted(grid))
    return re.sub(r"[^A-Za-z0-9._+\-=,]", "_", text)


def run_identity(
    config: Mapping[str, Any], fingerprint: str | None = None,
    grid: Sequence[tuple[str, str]] = (),
) -> RunIdentity:
    """The identity of the run of ``config`` (a configuration as plain data) on the data of
    ``fingerprint`` (None while the data is not loaded); ``grid``: the settings a grid varied
    for it (they are in ``config`` too: they name the run, the hash is the same)."""
    strategy = config.get("strategy", {})
    return RunIdentity(strategy=str(strategy.get("name")), seed=config.get("seed"),
                       config_hash=_digest(identity_settings(config)),
                       data_fingerprint=fingerprint, grid=tuple(grid))


def identity_of(result: Mapping[str, Any]) -> RunIdentity:
    """A recorded run's identity, computed from its configuration and data (the source of
    truth: the copy stored in result.json is for other readers)."""
    config = result.get("config")
    data = result.get("data")
    fingerprint = data.get("fingerprint") if isinstance(data, Mapping) else None
    recorded = result.get("identity")
    grid = recorded.get("grid") if isinstance(recorded, Mapping) else None
    return run_identity(config if isinstance(config, Mapping) else {},
                        fingerprint if isinstance(fingerprint, str) else None,
                        [(str(k), str(v)) for k, v in grid.items()]
                        if isinstance(grid, Mapping) else ())


def as_recorded(current: Mapping[str, Any], recorded: Any) -> Mapping[str, Any]:
    """``current`` (a configuration as plain data) with the strategy options it does not hold
    taken from ``recorded`` (a stored configuration): options its strategy does not read,
    which have no effect on its run. A run recorded before each strategy declared its own
    options holds every option of the one table, some set by a preset for another strategy
    (``[strategy] mode = "final"`` for ``joint`` beside ``naive``); compared with today's
    configuration of the same run through this, it is the same run."""
    mine = current.get("strategy")
    theirs = recorded.get("strategy") if isinstance(recorded, Mapping) else None
    if not (isinstance(mine, Mapping) and isinstance(theirs, Mapping)):
        return current
    unread = {k: v for k, v in theirs.items() if k not in mine}
    return {**current, "strategy": {**unread, **mine}} if unread else current


def identity_as_recorded(
    current: Mapping[str, Any], recorded: Mapping[str, Any], grid: Sequence[tuple[str, str]] = (),
) -> RunIdentity:
    """The identity of the run of ``current`` to compare with the recorded run ``recorded``
    (a result): :func:`run_identity` of :func:`as_recorded`, with the recorded data."""
    data = recorded.get("data")
    fingerprint = data.get("fingerprint") if isinstance(data, Mapping) else None
    return run_identity(as_recorded(current, recorded.get("config")),
                        fingerprint if isinstance(fingerprint, str) else None, grid)


def identity_differences(recorded: Any, current: Mapping[str, Any]) -> list[str]:
    """What differs between a recorded configuration and ``current`` among the settings of
    the identity (the strategy options ``current``'s strategy does not read aside:
    :func:`as_recorded`), each as ``key = <recorded> there, <current> now``; empty when none
    does."""
    if not isinstance(recorded, Mapping):
        return ["no configuration recorded"]
    absent = "(absent)"
    a, b = identity_settings(recorded), identity_settings(as_recorded(current, recorded))
    return [f"{k} = {json.dumps(a.get(k, absent))} there, {json.dumps(b.get(k, absent))} now"
            for k in sorted(set(a) | set(b)) if a.get(k, absent) != b.get(k, absent)]


def _settings_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The identity settings of a recorded run; a result without a configuration (made by
    hand) still has its benchmark, scenario and number of tasks."""
    config = result.get("config")
    flat = identity_settings(config if isinstance(config, Mapping) else {})
    for key, top in (("benchmark", "benchmark"), ("stream.scenario", "scenario"),
                     ("stream.n_tasks", "n_tasks")):
        if top in result:
            flat.setdefault(key, result[top])
    return flat


def shared_settings(result: Mapping[str, Any]) -> dict[str, Any]:
    """What every run reported with this one must share: the benchmark, the data settings
    and fingerprint, the stream."""
    shared = {k: v for k, v in _settings_of(result).items() if _part(k) == "shared"}
    data = result.get("data")
    shared[FINGERPRINT] = data.get("fingerprint") if isinstance(data, Mapping) else None
    return shared


def variant_settings(result: Mapping[str, Any]) -> dict[str, Any]:
    """What this run's variant has of its own: its strategy (by name) and its model,
    training and strategy settings."""
    own = {k: v for k, v in _settings_of(result).items() if _part(k) == "variant"}
    own["strategy.name"] = result.get("strategy", own.get("strategy.name"))
    return own


def variant_key(result: Mapping[str, Any]) -> str:
    """The digest of :func:`variant_settings`: runs with one key are seeds of one variant."""
    return _digest(variant_settings(result))


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def check_compatible(runs: Sequence[tuple[Path, Mapping[str, Any]]]) -> None:
    """Raise a UserError unless the runs can be reported together: every run shares the
    first one's benchmark, data (settings and fingerprint) and stream; variants (a strategy
    with its own model, training and strategy settings) may differ; at most one run per
    variant and seed."""
    if not runs:
        return
    ref_path, ref = runs[0]
    ref_shared = shared_settings(ref)
    seen: dict[tuple[str, Any], Path] = {}
    for path, r in runs:
        mine = shared_settings(r)
        diff = [f"{k} ({_shown(ref_shared.get(k))} vs {_shown(mine.get(k))})"
                for k in dict.fromkeys([*ref_shared, *mine])
                if ref_shared.get(k) != mine.get(k)]
        if diff:
            raise UserError(
                f"cannot report these runs together: {ref_path} and {path} differ in what the "
                f"runs of one report share (benchmark, data, stream): {'; '.join(diff[:6])}"
                + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
                + ". Report them separately (one `lifelong-kd report` per benchmark, data and "
                  "stream)."
            )
        key = (variant_key(r), r["seed"])
        if key in seen:
            raise UserError(f"two runs of `{r['strategy']}` with seed {r['seed']} and the same "
                            f"settings: {seen[key]} and {path}; pass only one of them")
        seen[key] = path
