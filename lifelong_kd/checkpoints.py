"""A run's checkpoint (``checkpoint.pt``, saved after every task): written, read, checked
and turned back into the engine's state.

A checkpoint is loaded with ``torch.load(weights_only=True)``: it holds tensors and plain data
only, so unpickling it cannot run code; one of the wrong structure is refused, in one line
that names what is wrong. Whether a checkpoint is of the run resumed (its configuration and
data) is the caller's question (:func:`lifelong_kd.runs.run_in_held_folder`).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import UserError
from .results import atomic_path


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_checkpoint(ckpt: Path, device: str) -> dict[str, Any]:
    """Read ``checkpoint.pt`` as tensors and plain data only (``weights_only=True``: an
    object that would run code when unpickled is refused, never built)."""
    import torch

    again = "use --force to start again"
    try:
        saved = torch.load(ckpt, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"the checkpoint {ckpt} holds more than tensors and plain data, so it "
                        f"was not loaded (unpickling it could run code); {again}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the same problem
        raise UserError(f"cannot read the checkpoint {ckpt} ({type(exc).__name__}: "
                        f"{_one_line(exc)}); {again}") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("config"), dict)
            and isinstance(saved.get("state"), dict)):
        raise UserError(f"the checkpoint {ckpt} has the wrong structure (expected a table with "
                        f"`config`, `data` and `state`); {again}")
    return saved


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def checkpoint_problem(state: dict[str, Any], n_tasks: int) -> str | None:
    """What is wrong with a checkpoint's ``state`` for a stream of ``n_tasks`` tasks (types
    of the entries present, and rows that fit), or None. Missing entries are reported by
    :func:`restore_checkpoint`."""
    import torch

    kinds: dict[str, tuple[type, ...]] = {
        "model": (dict,), "strategy": (dict,), "generator": (torch.Tensor,),
        "torch_rng": (torch.Tensor,), "next_task": (int,), "rows": (list,),
        "rows_task_aware": (list,), "initial": (list,), "initial_task_aware": (list,),
        "train_seconds": (int, float), "eval_seconds": (int, float),
        "optimizer_state": (dict, type(None)), "curves": (list,), "steps_done": (int,),
        "curve_seconds": (int, float),
    }
    for key, kind in kinds.items():
        if key in state and (not isinstance(state[key], kind) or isinstance(state[key], bool)):
            return f"`{key}` is a {type(state[key]).__name__}"
    if isinstance(state.get("model"), dict):
        for name, value in state["model"].items():
            if not isinstance(value, torch.Tensor):
                return f"the model's `{name}` is a {type(value).__name__}, not a tensor"
    if "next_task" in state and not 0 <= state["next_task"] <= n_tasks:
        return f"`next_task` = {state['next_task']} is outside 0..{n_tasks}"
    for key in ("rows", "rows_task_aware"):
        rows = state.get(key)
        if rows is None:
            continue
        if "next_task" in state and len(rows) != state["next_task"]:
            return f"{len(rows)} `{key}` for `next_task` = {state['next_task']}"
        if not all(isinstance(r, list) and len(r) == n_tasks and all(map(_is_number, r))
                   for r in rows):
            return f"`{key}` are not rows of {n_tasks} numbers"
    for key in ("initial", "initial_task_aware"):
        values = state.get(key)
        if values is not None and (len(values) not in (0, n_tasks)
                                   or not all(map(_is_number, values))):
            return f"`{key}` is not a list of {n_tasks} numbers"
    return None


def restore_checkpoint(ckpt: Path, config: RunConfig, stream: Any, state: dict[str, Any]) -> Any:
    """The engine's RunState from a checkpoint's ``state``, or one line saying what is wrong."""
    from .engine import restore_state

    again = "use --force to start again"
    problem = checkpoint_problem(state, len(stream))
    if problem is None:
        try:
            return restore_state(config, stream, state)
        except KeyError as exc:
            problem = f"no {exc}"
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            problem = f"{type(exc).__name__}: {_one_line(exc)}"
    raise UserError(f"the checkpoint {ckpt} has the wrong structure ({problem}); {again}")


def write_checkpoint(ckpt: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plain data and tensors) to ``ckpt`` atomically: a failed write (a
    full disk) leaves the previous checkpoint and raises :class:`~lifelong_kd.results.WriteError`."""
    import torch

    with atomic_path(ckpt) as tmp:
        buffer = io.BytesIO()  # written by Python's file I/O: a full disk is an OSError
        torch.save(payload, buffer)
        tmp.write_bytes(buffer.getbuffer())
