"""Training on the union of the tasks so far (joint training): its two modes and the examples
each trains on. ``joint`` (``joint.py``) trains so, and so does ``kd`` (``compress.py``), whose
student trains on what its jointly trained teacher sees; both import this rather than each other.
"""

from __future__ import annotations

from .base import TaskContext, TrainData

__all__ = ["MODES", "union_data"]

#: ``strategy.mode`` of joint training: ``incremental`` (at task t, the union of tasks 0..t)
#: or ``final`` (nothing before the last task, then the union of all of them).
MODES = ("incremental", "final")


def union_data(ctx: TaskContext, mode: str) -> TrainData:
    """The examples to train on for task ``ctx.index`` under ``mode`` (:data:`MODES`): the
    union of tasks 0..t, each example with its own task id; with ``final``, no example before
    the stream's last task."""
    tasks = list(ctx.stream.tasks[: ctx.index + 1])
    if mode == "final" and ctx.index < len(ctx.stream) - 1:
        return TrainData.empty(tasks[0])
    return TrainData.union(tasks)
