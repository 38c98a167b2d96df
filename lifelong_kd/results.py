"""result.json: what a run records, written atomically, and read back.

Schema (``schema = 1``), one file per run::

    status            finished | interrupted | diverged
    message           why the run stopped early (absent when finished)
    benchmark, scenario, strategy, seed, n_tasks, task_names
    accuracy_matrix   rows finished so far, each n_tasks floats in [0, 1]  (R[i][j])
    accuracy_matrix_task_aware   class-il only: prediction restricted to the task's classes
    initial_accuracy  the untrained model's accuracy on each task (b_j)
    metrics           every metric of ``metrics.METRICS`` on the matrix (null if undefined)
    metrics_task_aware, per_task_forgetting(_task_aware)
    timing            total_seconds, train_seconds, eval_seconds
    config            the fully resolved configuration
    environment       python, torch, torchvision, numpy, lifelong_kd, platform, git commit
    data              dataset name, path, fingerprint (sha256 of the arrays), sizes
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UserError
from .metrics import all_metrics, meaningful_metrics, meaningful_per_task, per_task_forgetting

SCHEMA = 1


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


def check_output_folder(folder: Path, option: str = "--out") -> None:
    """Refuse an output folder that is a file or lies under a file (before anything runs)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the output folder {folder} is a file; choose another {option}")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"the output folder {folder} lies under the file {parent}; "
                                f"choose another {option}")
            return


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash, Ctrl-C or a full disk while writing leaves the previous file (or none), never
    half a file, and no temporary file. An OSError while writing (a full disk, a read-only
    folder) becomes a :class:`WriteError` naming ``path``: one line for the command line.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    try:
        try:
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


def read_result(path: Path) -> dict[str, Any]:
    """Read a result.json (or the result.json inside a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
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
) -> dict[str, Any]:
    """Assemble the result.json of one run (see the module docstring)."""
    k = len(rows)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "status": status,
        "benchmark": config["benchmark"],
        "scenario": scenario,
        "strategy": config["strategy"]["name"],
        "seed": config["seed"],
        "n_tasks": len(task_names),
        "tasks_finished": k,
        "task_names": task_names,
        "accuracy_matrix": rows,
        "initial_accuracy": initial,
        # metrics that mean nothing for the run (joint, mode = final: rows 0..T-2 untrained) are null
        "metrics": meaningful_metrics(square_metrics(rows, initial), config["strategy"],
                                      len(task_names), k),
        "per_task_forgetting": meaningful_per_task(
            per_task_forgetting([r[:k] for r in rows]) if k else [], config["strategy"],
            len(task_names)),
    }
    if message:
        result["message"] = message
    if scenario == "class-il":
        result["accuracy_matrix_task_aware"] = rows_task_aware
        result["initial_accuracy_task_aware"] = initial_task_aware
        result["metrics_task_aware"] = meaningful_metrics(
            square_metrics(rows_task_aware, initial_task_aware), config["strategy"],
            len(task_names), k)
        result["per_task_forgetting_task_aware"] = meaningful_per_task(
            per_task_forgetting([r[:k] for r in rows_task_aware]) if k else [],
            config["strategy"], len(task_names))
    result["timing"] = timing
    result["config"] = config
    result["environment"] = environment()
    result["data"] = data
    return result


def matrix_csv(rows: list[list[float]]) -> str:
    """The matrix as CSV: header ``after_task,task_0,...``, one line per finished task."""
    n = len(rows[0]) if rows else 0
    lines = ["after_task," + ",".join(f"task_{j}" for j in range(n))]
    for i, row in enumerate(rows):
        lines.append(f"{i}," + ",".join(f"{v:.6f}" for v in row))
    return "\n".join(lines) + "\n"
