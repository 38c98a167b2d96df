"""result.json: what a run records, its identity, written atomically, read back and checked.

Schema (``schema = 1``), one file per run::

    status            finished | interrupted | diverged
    message           why the run stopped early (absent when finished)
    benchmark, scenario, strategy, seed, n_tasks, task_names
    identity          stamp, config_hash, data_fingerprint, key (see :class:`RunIdentity`;
                      computed from config and data for files written before it was stored)
    accuracy_matrix   rows finished so far, each n_tasks floats in [0, 1]  (R[i][j])
    accuracy_matrix_task_aware   class-il only: prediction restricted to the task's classes
    initial_accuracy  the untrained model's accuracy on each task (b_j)
    last_row_only     the setting under which the strategy trains nothing before the last
                      task (``strategy.mode = final`` of ``joint``), so that only the matrix's
                      last row means something; null: every row does (``Strategy.last_row_only``;
                      for files written before it was recorded, :func:`last_row_only`)
    metrics           every metric of ``metrics.METRICS`` on the matrix (null if undefined,
                      or meaningless under ``last_row_only``)
    metrics_task_aware, per_task_forgetting(_task_aware)
    timing            total_seconds, train_seconds, eval_seconds
    costs             what the run's models and memory cost (``costs.py``): memory_examples,
                      memory_bytes; ``model`` and, where the strategy holds one, ``teacher``:
                      name, parameters, bytes, flops_per_example, latency_batch_1,
                      latency_batch_256 (seconds per example); device, train_seconds
    teacher           strategies with a teacher model of their own (``compress``, ``kd``): its
                      accuracy_matrix, initial_accuracy, metrics, per_task_forgetting (and the
                      task-aware ones in class-il), evaluated as the run's model is
    config            the fully resolved configuration (``strategy``: its name and every option
                      the running strategy reads)
    declared          what the strategy declares for readers that import no strategy (absent
                      from files written before it was recorded): ``option_defaults`` (each
                      of its options' default), ``preset_options`` (those its preset fixes),
                      ``teacher_strategy`` (the preset training its teacher, ``kd``, ``compress``)
    environment       python, torch, torchvision, numpy, lifelong_kd, platform, git commit
    data              dataset name, path, fingerprint (sha256 of the arrays), sizes

A run's identity is defined here, once (:func:`identity_settings`, :class:`RunIdentity`):
``compare`` reuses a finished run when its identity is the one planned, a checkpoint resumes
only under the identity it was made with, and ``report`` groups runs by the same partition
of the settings: what every run of one report shares (benchmark, data, stream), what a
variant has of its own (model, training, strategy) and the seed.

Readers get a result's matrices with their metrics through :func:`matrix_kinds`: the metrics
are those result.json records (a file of an older version that lacks one gets it computed
from the matrix), masked where they mean nothing (:func:`lifelong_kd.metrics.meaningful_metrics`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import numbers
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import __version__
from .config import ADDED_KEYS, SHARED_SECTIONS, closest_name
from .errors import UserError
from .metrics import (
    METRICS,
    all_metrics,
    continual_metrics,
    meaningful_metrics,
    meaningful_per_task,
    per_task_forgetting,
)

SCHEMA = 1
RESULT = "result.json"


# ------------------------------------------------------------------------- writing files


class WriteError(UserError):
    """A file could not be written: a full disk, a read-only folder, a file in the way."""


def write_error(path: Path, exc: OSError) -> WriteError:
    """One line that says why ``path`` could not be written (from the OSError ``exc``)."""
    code = exc.errno
    if code == errno.ENOSPC:
        why = "no space left on the device"
    elif code == errno.EDQUOT:
        why = "the disk quota is exceeded"
    elif isinstance(exc, PermissionError) or code == errno.EROFS:
        why = f"{exc.strerror or 'permission denied'} (is {path.parent} read-only?)"
    elif isinstance(exc, (FileExistsError, NotADirectoryError)) or code in (errno.EEXIST,
                                                                           errno.ENOTDIR):
        why = f"a file is in the way ({exc.filename or exc.strerror})"
    else:
        why = exc.strerror or str(exc)
    return WriteError(f"cannot write {path}: {why}")


def check_output_folder(folder: Path) -> None:
    """Refuse an output folder that is a file or lies under a file (before anything runs)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the output folder {folder} is a file; choose another --out")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"the output folder {folder} lies under the file {parent}; "
                                "choose another --out")
            return


def _umask() -> int:
    """The process's umask (read by setting it and setting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The mode of every file written here: what ``open()`` gives, 0666 less the umask read when
#: this module is imported (reading it later would briefly change it under other threads).
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash, Ctrl-C or a full disk while writing leaves the previous file (or none), never
    half a file, and no temporary file. An OSError while writing (a full disk, a read-only
    folder) becomes a :class:`WriteError` naming ``path``: one line for the command line.
    The file gets the usual mode, :data:`FILE_MODE` (``mkstemp`` creates it 0600).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON atomically; NaN and infinity become null."""
    write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


# ------------------------------------------------------------------------------ identity

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


# ------------------------------------------------------------------------------- reading


def read_result(path: Path) -> dict[str, Any]:
    """Read a result.json (or the result.json inside a run folder), unchecked."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no result.json at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a valid result.json: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or "accuracy_matrix" not in data:
        raise UserError(f"{path} is not a lifelong-kd result.json (no accuracy_matrix)")
    return data


def is_finished(result: Mapping[str, Any]) -> bool:
    """Whether a run finished its whole stream (only those are averaged)."""
    return result.get("status", "finished") == "finished"


_SCENARIOS = ("task-il", "class-il", "domain-il")
_STATUSES = ("finished", "interrupted", "diverged")
#: Sections of a result (and of its config) that must be tables where they are present.
_TABLES = ("config", "data", "environment", "timing", "declared")
_CONFIG_TABLES = ("data", "stream", "model", "train", "strategy")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_metric(v: Any) -> bool:
    """A metric's value: a number, or null (nan in memory) where it is undefined."""
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))


def _accuracies(value: Any, name: str, n: int, ragged: str = "") -> str | None:
    """The problem with ``value`` (called ``name``) as a list of ``n`` accuracies in [0, 1],
    or None; ``ragged`` is appended to a wrong length."""
    if not isinstance(value, list):
        return f"{name} is {type(value).__name__}, not a list"
    if len(value) != n:
        return f"{name} has {len(value)} value(s), expected {n} (n_tasks){ragged}"
    # the fast path: plain numbers, as JSON gives them, in range (a comparison with nan is false)
    if (all(type(v) is float or type(v) is int for v in value)
            and all(-1e-9 <= v <= 1 + 1e-9 for v in value)):
        return None
    for j, v in enumerate(value):
        if not _is_number(v) or not -1e-9 <= v <= 1 + 1e-9:
            return f"{name}: value {j} is {v!r}, not an accuracy in [0, 1]"
    return None


def _matrix_problem(value: Any, name: str, n: int, finished: bool) -> str | None:
    """The problem with ``value`` as an accuracy matrix of n columns (n rows when the run
    finished, at most n otherwise), or None."""
    if not isinstance(value, list):
        return f"`{name}` is {type(value).__name__}, not a list of rows"
    if len(value) > n or (finished and len(value) != n):
        return (f"`{name}` has {len(value)} row(s), expected "
                f"{n if finished else f'at most {n}'} (n_tasks = {n})")
    for i, row in enumerate(value):
        problem = _accuracies(row, f"`{name}` row {i}", n, ": a ragged matrix")
        if problem:
            return problem
    return None


#: What follows an external family's prefix in a strategy name (``avalanche:Replay``): the name
#: of a class of that library, so a Python identifier.
_FAMILY_MEMBER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The form of a strategy name a run writes: a preset's name (letters, digits, ``-``, ``+``,
#: ``.``, ``_``), or a family's prefix and a class name.
_NAME_FORM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*(:[A-Za-z_][A-Za-z0-9_]*)?")


def strategy_names() -> tuple[list[str], list[str]]:
    """The strategy names this version runs: (the registered presets' names, the prefixes of
    the external families, ``avalanche:``). Read from the registry
    (:mod:`lifelong_kd.strategies.registry`, the one list of strategies; importing it loads
    the built-in presets), when a result file is checked: the import contracts allow it (the
    training layers know nothing of results, not the reverse), and importing it here only,
    not at the top, keeps ``results`` light for the readers that check no names."""
    from .strategies.registry import FAMILIES, PRESETS

    return list(PRESETS), list(FAMILIES)


def is_strategy_name(name: Any, names: tuple[list[str], list[str]] | None = None) -> bool:
    """Whether ``name`` names a strategy of this version: a registered preset, or a family's
    prefix followed by a class name (``avalanche:Replay``; the family itself need not be
    installed to report a run made where it was). ``names``: :func:`strategy_names`."""
    presets, families = names or strategy_names()
    if not isinstance(name, str):
        return False
    return name in presets or any(name.startswith(prefix) and _FAMILY_MEMBER.fullmatch(
        name.removeprefix(prefix)) for prefix in families)


def _shown_name(value: Any, limit: int = 60) -> str:
    """``value`` as an error message shows a bad name: its repr (one line, whatever the name
    holds), cut at ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def check_strategy_names(result: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """``result`` (read from ``path``, checked by :func:`validate_result`) when the strategy
    names it records are strategies of this version; a UserError naming ``path``, the key,
    the bad name, the closest valid one and every valid one otherwise.

    ``strategy``, ``config.strategy.name`` and ``config.teacher.strategy`` (where present)
    must each name a strategy (:func:`is_strategy_name`), and the first two the same one. A
    name that is none was not written by a run of this project (or was edited by hand): a
    report would show it and name a variant after it. Results built in memory by a run are
    not checked here: their names come from the registry. A result that records what its
    strategy declares (``declared``) has its names checked for their form only, so that a
    report of such results imports no strategy (nor torch).
    """
    problem = _strategy_problem(result, strategy_names() if "declared" not in result else None)
    if problem:
        raise UserError(f"{path} is not a usable lifelong-kd result: {problem}")
    return result


def _strategy_problem(result: Mapping[str, Any],
                      names: tuple[list[str], list[str]] | None) -> str | None:
    """The problem with the strategy names ``result`` records (:func:`check_strategy_names`),
    or None. ``names``: :func:`strategy_names`; None for a result that records what its
    strategy declares (``declared``: written by a run of a version that records it, whose
    report imports no strategy), whose names are checked for their form only."""
    config = result.get("config", {})
    recorded = [("strategy", result["strategy"])]
    if "name" in config.get("strategy", {}):
        recorded.append(("config.strategy.name", config["strategy"]["name"]))
    teacher = config.get("teacher")
    if isinstance(teacher, Mapping) and "strategy" in teacher:
        recorded.append(("config.teacher.strategy", teacher["strategy"]))
    for key, name in recorded:
        if names is None:
            if not (isinstance(name, str) and _NAME_FORM.fullmatch(name)):
                return f"`{key}` is {_shown_name(name)}, not a strategy name"
            continue
        if not is_strategy_name(name, names):
            presets, families = names
            close = closest_name(name, presets) if isinstance(name, str) else None
            hint = f" (did you mean `{close}`?)" if close else ""
            valid = ", ".join([*presets, *(f"{prefix}<Name>" for prefix in families)])
            return f"`{key}` is {_shown_name(name)}, not a strategy{hint}; valid: {valid}"
    if len(recorded) > 1 and recorded[1][1] != recorded[0][1]:
        return (f"`strategy` is {_shown_name(recorded[0][1])} but `config.strategy.name` is "
                f"{_shown_name(recorded[1][1])}: one run has one strategy")
    return None


def validate_result(result: Any, path: Path | str) -> dict[str, Any]:
    """``result`` (read from ``path``) when it holds what the reports and plots read; a
    UserError naming ``path`` and the first problem otherwise (a missing key, a value of the
    wrong type, a ragged matrix, an accuracy outside [0, 1]).

    Required: ``benchmark``, ``strategy``, ``scenario`` (task-il, class-il, domain-il),
    ``seed`` (an integer), ``n_tasks`` (>= 1), ``accuracy_matrix`` (n_tasks rows of n_tasks
    accuracies when ``status`` is finished, the default; at most n_tasks rows otherwise) and
    ``initial_accuracy`` (n_tasks accuracies). Checked where present: ``status``,
    ``task_names``, ``last_row_only`` (a setting or null), the class-il task-aware matrix and
    initial accuracies (the same shapes), that ``config`` (with its sections), ``data``,
    ``environment`` and ``timing`` are tables, and that recorded metrics are tables and
    per-task forgetting lists. (A result read from a file also has its strategy names
    checked: :func:`load_result`.)
    """
    def bad(problem: str) -> UserError:
        return UserError(f"{path} is not a usable lifelong-kd result: {problem}")

    if not isinstance(result, dict):
        raise bad(f"it holds a {type(result).__name__}, not a JSON object")
    for key in ("benchmark", "strategy", "scenario", "seed", "n_tasks", "accuracy_matrix",
                "initial_accuracy"):
        if key not in result:
            raise bad(f"the key `{key}` is missing")
    for key in ("benchmark", "strategy", "scenario"):
        if not isinstance(result[key], str) or not result[key]:
            raise bad(f"`{key}` is {result[key]!r}, not a name")
    if result["scenario"] not in _SCENARIOS:
        raise bad(f"`scenario` is {result['scenario']!r}, not one of {', '.join(_SCENARIOS)}")
    for key, low in (("seed", None), ("n_tasks", 1)):
        v = result[key]
        if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
            raise bad(f"`{key}` is {v!r}, not an integer" + (f" >= {low}" if low else ""))
    status = result.get("status", "finished")
    if status not in _STATUSES:
        raise bad(f"`status` is {status!r}, not one of {', '.join(_STATUSES)}")
    n, finished = result["n_tasks"], status == "finished"
    problem = (_matrix_problem(result["accuracy_matrix"], "accuracy_matrix", n, finished)
               or _accuracies(result["initial_accuracy"], "`initial_accuracy`", n))
    if problem is None and result.get("accuracy_matrix_task_aware") is not None:
        aware = result["accuracy_matrix_task_aware"]
        problem = _matrix_problem(aware, "accuracy_matrix_task_aware", n, finished)
        if problem is None and len(aware) != len(result["accuracy_matrix"]):
            problem = (f"`accuracy_matrix_task_aware` has {len(aware)} row(s), "
                       f"`accuracy_matrix` {len(result['accuracy_matrix'])}")
    if problem is None and result.get("initial_accuracy_task_aware") is not None:
        problem = _accuracies(result["initial_accuracy_task_aware"],
                              "`initial_accuracy_task_aware`", n)
    if problem:
        raise bad(problem)
    last = result.get("last_row_only")
    if last is not None and not (isinstance(last, str) and last):
        raise bad(f"`last_row_only` is {_shown_name(last)}, not a setting (or null)")
    names = result.get("task_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(x, str) for x in names)):
        raise bad("`task_names` is not a list of names")
    for key in _TABLES:
        if key in result and not isinstance(result[key], dict):
            raise bad(f"`{key}` is {type(result[key]).__name__}, not a table")
    config = result.get("config", {})
    for key in _CONFIG_TABLES:
        if key in config and not isinstance(config[key], dict):
            raise bad(f"`config.{key}` is {type(config[key]).__name__}, not a table")
    for section, key in (("timing", "total_seconds"), ("train", "iterations")):
        table = result.get(section, {}) if section == "timing" else config.get(section, {})
        where = section if section == "timing" else f"config.{section}"
        if key in table and not _is_number(table[key]):
            raise bad(f"`{where}.{key}` is {table[key]!r}, not a number")
    for key in ("metrics", "metrics_task_aware"):
        values = result.get(key)
        if values is not None and not (isinstance(values, dict) and all(
                map(_is_metric, values.values()))):
            raise bad(f"`{key}` is not a table of numbers (or null)")
    for key in ("per_task_forgetting", "per_task_forgetting_task_aware"):
        values = result.get(key)
        if values is not None and not (isinstance(values, list) and all(map(_is_metric, values))):
            raise bad(f"`{key}` is not a list of numbers (or null)")
    return result


def load_result(path: Path) -> dict[str, Any]:
    """Read and check the result.json at ``path`` (or in the run folder ``path``): what the
    reports read (:func:`validate_result`) and its strategy names
    (:func:`check_strategy_names`); with the run's continual evaluation as ``curves`` when a
    curves.csv is beside it."""
    path = Path(path)
    file = path / RESULT if path.is_dir() else path
    result = check_strategy_names(validate_result(read_result(file), file), file)
    return attach_curves(result, file.parent)


def attach_curves(result: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``result`` with the run's continual evaluation as ``curves`` when ``folder`` holds a
    curves.csv (:func:`read_curves`); unchanged otherwise."""
    if (Path(folder) / CURVES).is_file():
        result["curves"] = read_curves(Path(folder) / CURVES)
    return result


def find_results(
    dirs: Sequence[Path],
) -> tuple[list[tuple[Path, dict[str, Any]]], list[dict[str, Any]]]:
    """The runs under ``dirs`` (each a run folder, a result.json, or a folder searched
    recursively, such as a comparison folder), each checked (:func:`validate_result`) and all
    of them with :func:`check_compatible`; and the failures: unfinished runs, and run folders
    with a checkpoint but no result.json."""
    found: dict[Path, None] = {}
    failures: list[dict[str, Any]] = []
    for d in map(Path, dirs):
        if d.is_file():
            found[d.resolve()] = None
            continue
        if not d.is_dir():
            raise UserError(f"{d} does not exist")
        files = sorted(d.rglob(RESULT))
        checkpoints = [c for c in sorted(d.rglob("checkpoint.pt"))
                       if not (c.parent / RESULT).is_file()]
        if not files and not checkpoints:
            raise UserError(f"no result.json under {d}: give run folders or a comparison "
                            "folder written by `lifelong-kd run` or `compare`")
        for f in files:
            found[f.resolve()] = None
        for c in checkpoints:
            seed: Any = c.parent.name.removeprefix("seed-")
            seed = int(seed) if seed.isdigit() else c.parent.name
            failures.append({"strategy": c.parent.parent.name, "seed": seed,
                             "error": f"incomplete: {c.parent} has a checkpoint but no "
                                      "result.json (resume it with --resume)"})
    runs = [(p.parent, load_result(p)) for p in found]
    check_compatible(runs)
    for _, r in runs:
        if not is_finished(r):
            failures.append({"strategy": r["strategy"], "seed": r["seed"],
                             "error": f"{r.get('status')}: {r.get('message', '')}"})
    return runs, failures


# --------------------------------------------------------------------- a run's matrices

#: The prediction is over every class seen (no task identity at test time).
TASK_AGNOSTIC = "task_agnostic"
#: The prediction is restricted to the task's own classes (or head).
TASK_AWARE = "task_aware"


@dataclass(frozen=True)
class Matrix:
    """One accuracy matrix of a run, with what result.json records about it.

    ``metrics``: every metric of :data:`lifelong_kd.metrics.METRICS` as recorded (nan for
    null; a metric the file lacks, as one of an older version, computed from ``rows``), nan
    where it means nothing for the run (:func:`lifelong_kd.metrics.meaningful_metrics`: a
    file written before those were null records numbers there). ``per_task_forgetting``
    likewise.
    """

    rows: list[list[float]]
    initial: list[float]
    metrics: dict[str, float]
    per_task_forgetting: list[float]


def strategy_config(result: Mapping[str, Any]) -> dict[str, Any]:
    """The run's ``config["strategy"]`` (with its ``name``, even where the config lacks it)."""
    config = result.get("config", {})
    return {"name": result["strategy"], **config.get("strategy", {})}


#: The one strategy whose matrix meant something only in its last row before result.json
#: recorded ``last_row_only``, with that setting (``Joint.last_row_only``): read only for
#: such older files (:func:`last_row_only`).
_LAST_ROW_ONLY_BEFORE = ("joint", "mode", "final", "strategy.mode = final")


def last_row_only(result: Mapping[str, Any]) -> str | None:
    """The setting under which the run's strategy trains nothing before the last task, so
    that only the last row of its matrices means something (``strategy.mode = final``); None
    when every row does. Read from result.json's ``last_row_only`` (the strategy's
    declaration, ``Strategy.last_row_only``, recorded at run time), so that no reader of
    results needs to know a strategy. A file written before it was recorded gets the rule of
    then: ``joint`` with ``strategy.mode = final`` (the only strategy that declares it)."""
    if "last_row_only" in result:
        value = result["last_row_only"]
        return value if isinstance(value, str) and value else None
    name, key, value, setting = _LAST_ROW_ONLY_BEFORE
    strategy = strategy_config(result)
    return setting if strategy.get("name") == name and strategy.get(key) == value else None


def _numbers(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: math.nan if v is None else float(v) for k, v in values.items()}
    return [math.nan if v is None else float(v) for v in values]


def _recorded(result: Mapping[str, Any], rows: list[list[float]], initial: list[float],
              metrics_key: str, per_task_key: str) -> Matrix:
    k = len(rows)
    last, n = last_row_only(result), result["n_tasks"]
    stored = result.get(metrics_key)
    metrics = _numbers(stored) if isinstance(stored, dict) else {}
    if k and not all(m in metrics for m in METRICS):
        computed = square_metrics(rows, initial)
        metrics = {**computed, **metrics}
    stored_per_task = result.get(per_task_key)
    per_task = (_numbers(stored_per_task) if isinstance(stored_per_task, list)
                else per_task_forgetting([r[:k] for r in rows]) if k else [])
    return Matrix(rows=rows, initial=initial,
                  metrics=meaningful_metrics(metrics, last, n, k),
                  per_task_forgetting=meaningful_per_task(per_task, last, n))


def teacher_kinds(result: Mapping[str, Any]) -> dict[str, Matrix]:
    """The teacher's accuracy matrices by kind, as :func:`matrix_kinds` gives the run's
    model's (empty when the run recorded no ``teacher`` block: strategies whose teacher is a
    copy of the model, or none)."""
    block = result.get("teacher")
    if not isinstance(block, Mapping) or not block.get("accuracy_matrix"):
        return {}
    inner = {**block, "scenario": result.get("scenario"), "n_tasks": result["n_tasks"],
             "strategy": result["strategy"], "config": result.get("config", {})}
    if "last_row_only" in result:  # the run's declaration holds for its teacher's matrices
        inner["last_row_only"] = result["last_row_only"]
    return matrix_kinds(inner)


def matrix_kinds(result: Mapping[str, Any]) -> dict[str, Matrix]:
    """The run's accuracy matrices by kind: a task-il run's is ``task_aware``, a domain-il
    run's ``task_agnostic``, a class-il run has both (the task-aware one when recorded)."""
    rows, initial = result["accuracy_matrix"], result.get("initial_accuracy", [])
    main = _recorded(result, rows, initial, "metrics", "per_task_forgetting")
    if result.get("scenario") == "task-il":
        return {TASK_AWARE: main}
    kinds = {TASK_AGNOSTIC: main}
    if result.get("scenario") == "class-il" and result.get("accuracy_matrix_task_aware"):
        kinds[TASK_AWARE] = _recorded(
            result, result["accuracy_matrix_task_aware"],
            result.get("initial_accuracy_task_aware", initial), "metrics_task_aware",
            "per_task_forgetting_task_aware")
    return kinds


# ------------------------------------------------------------------------------ building


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Versions of what produced a result."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:  # importing torchvision would cost seconds; its metadata has the version
        tv = version("torchvision")
    except PackageNotFoundError:
        tv = None
    return {
        "python": sys.version.split()[0],
        "lifelong_kd": __version__,
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }


def square_metrics(rows: list[list[float]], initial: list[float]) -> dict[str, float]:
    """Metrics of the leading k x k block of a matrix with k finished rows."""
    k = len(rows)
    if k == 0:
        return {}
    block = [row[:k] for row in rows]
    return all_metrics(block, initial[:k])


def build_result(
    *,
    config: dict[str, Any],
    scenario: str,
    task_names: list[str],
    rows: list[list[float]],
    rows_task_aware: list[list[float]],
    initial: list[float],
    initial_task_aware: list[float],
    timing: dict[str, float],
    data: dict[str, Any],
    status: str = "finished",
    message: str | None = None,
    costs: dict[str, Any] | None = None,
    teacher: dict[str, list[Any]] | None = None,
    grid: Sequence[tuple[str, str]] = (),
    curves: Sequence[Sequence[float]] = (),
    last_row_only: str | None = None,
    declared: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the result.json of one run (see the module docstring). ``last_row_only``:
    what the run's strategy declares (``Strategy.last_row_only``: the setting under which
    only the last row of its matrices means something, None when every row does); the
    metrics that need the other rows are then null. ``costs``: what the
    run's models and memory cost. ``teacher``: the rows of the strategy's own teacher
    (``rows``, ``rows_task_aware``, ``initial``, ``initial_task_aware``), recorded with their
    metrics as the run's are. ``grid``: the settings a grid varied for the run (its
    identity's stamp names them). ``curves``: the continual evaluation's rows (``train.eval_every``;
    written to curves.csv by :func:`curves_csv`), whose metrics go to ``continual``
    (:func:`lifelong_kd.metrics.continual_metrics`). ``declared``: what the strategy
    declares for the report (its options' defaults, those its preset fixes, its teacher's
    strategy)."""
    k = len(rows)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "status": status,
        "benchmark": config["benchmark"],
        "scenario": scenario,
        "strategy": config["strategy"]["name"],
        "seed": config["seed"],
        "identity": run_identity(config, data.get("fingerprint"), grid).to_dict(),
        "n_tasks": len(task_names),
        "tasks_finished": k,
        "task_names": task_names,
        "accuracy_matrix": rows,
        "initial_accuracy": initial,
        "last_row_only": last_row_only,
        # metrics that mean nothing for the run (under last_row_only: rows 0..T-2 untrained) are null
        "metrics": meaningful_metrics(square_metrics(rows, initial), last_row_only,
                                      len(task_names), k),
        "per_task_forgetting": meaningful_per_task(
            per_task_forgetting([r[:k] for r in rows]) if k else [], last_row_only,
            len(task_names)),
    }
    if message:
        result["message"] = message
    if scenario == "class-il":
        result["accuracy_matrix_task_aware"] = rows_task_aware
        result["initial_accuracy_task_aware"] = initial_task_aware
        result["metrics_task_aware"] = meaningful_metrics(
            square_metrics(rows_task_aware, initial_task_aware), last_row_only,
            len(task_names), k)
        result["per_task_forgetting_task_aware"] = meaningful_per_task(
            per_task_forgetting([r[:k] for r in rows_task_aware]) if k else [],
            last_row_only, len(task_names))
    if teacher is not None and teacher.get("rows"):
        result["teacher"] = _matrix_block(last_row_only, scenario, len(task_names), teacher)
    if curves:
        result["continual"] = continual_metrics(curves)
    result["timing"] = timing
    if costs is not None:
        result["costs"] = costs
    result["config"] = config
    if declared is not None:
        result["declared"] = declared
    result["environment"] = environment()
    result["data"] = data
    return result


def _matrix_block(last_row_only: str | None, scenario: str, n_tasks: int,
                  rows: dict[str, list[Any]]) -> dict[str, Any]:
    """A model's matrices with their metrics, as result.json records the run's own (masked
    as the run's under its strategy's ``last_row_only``)."""
    k = len(rows["rows"])
    block: dict[str, Any] = {}
    kinds = [("", rows["rows"], rows["initial"])]
    if scenario == "class-il":
        kinds.append(("_task_aware", rows["rows_task_aware"], rows["initial_task_aware"]))
    for suffix, matrix, initial in kinds:
        block[f"accuracy_matrix{suffix}"] = matrix
        block[f"initial_accuracy{suffix}"] = initial
        block[f"metrics{suffix}"] = meaningful_metrics(square_metrics(matrix, initial),
                                                       last_row_only, n_tasks, k)
        block[f"per_task_forgetting{suffix}"] = meaningful_per_task(
            per_task_forgetting([r[:k] for r in matrix]) if k else [], last_row_only,
            n_tasks)
    return block


#: The continual evaluation's file beside result.json (``train.eval_every``).
CURVES = "curves.csv"
CURVES_HEADER = "step,task_trained,task_evaluated,accuracy"


def curves_csv(curves: Sequence[Sequence[float]]) -> str:
    """The continual evaluation as CSV (:data:`CURVES_HEADER`), one line per point and task
    evaluated; accuracies with every digit of their float (``repr``), so that reading the
    file back gives the same numbers."""
    lines = [CURVES_HEADER]
    lines += [f"{int(step)},{int(trained)},{int(task)},{float(acc)!r}"
              for step, trained, task, acc in curves]
    return "\n".join(lines) + "\n"


def read_curves(path: Path) -> list[list[float]]:
    """The rows of a curves.csv (:func:`curves_csv`): [step, trained, evaluated, accuracy];
    a UserError naming the file and line when it is not one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not lines or lines[0].strip() != CURVES_HEADER:
        raise UserError(f"{path} is not a curves.csv (its header is not `{CURVES_HEADER}`)")
    rows: list[list[float]] = []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        try:
            step, trained, task, acc = int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3])
            if len(parts) != 4 or not 0.0 <= acc <= 1.0:
                raise ValueError
        except (ValueError, IndexError):
            raise UserError(f"{path}, line {number}: `{line}` is not `step,task_trained,"
                            "task_evaluated,accuracy` (integers, then an accuracy in [0, 1])"
                            ) from None
        rows.append([step, trained, task, acc])
    return rows


def matrix_csv(rows: list[list[float]]) -> str:
    """The matrix as CSV: header ``after_task,task_0,...``, one line per finished task."""
    n = len(rows[0]) if rows else 0
    lines = ["after_task," + ",".join(f"task_{j}" for j in range(n))]
    for i, row in enumerate(rows):
        lines.append(f"{i}," + ",".join(f"{v:.6f}" for v in row))
    return "\n".join(lines) + "\n"
