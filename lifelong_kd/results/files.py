"""Result files: written atomically, read back, and the CSV files beside them.

Every file a run or a report writes goes through :func:`atomic_path` (:func:`write_text`,
:func:`write_json`): a crash leaves the previous file or none, never half of one, and a
failure to write is one :class:`WriteError` line. :func:`read_result` reads a result.json
unchecked (:func:`lifelong_kd.results.load_result` checks it); :func:`curves_csv` and
:func:`read_curves` write and read the continual evaluation's curves.csv, :func:`matrix_csv`
the matrix's CSV.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

#: A run's result file, in its run folder.
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


# ----------------------------------------------------------------------------- CSV files

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
