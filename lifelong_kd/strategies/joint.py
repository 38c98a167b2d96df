"""Joint training, the upper bound of every continual-learning method."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_choice
from .base import Strategy, TaskContext, TrainData
from .options import Options
from .union import MODES, union_data


@dataclass(frozen=True)
class JointOptions(Options):
    """The options of :class:`Joint`."""

    #: ``incremental`` (train on all data so far at every task) or ``final`` (once, at the
    #: last task).
    mode: str = "incremental"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("strategy.mode", self.mode, MODES)


class Joint(Strategy):
    """Joint training, the upper bound: at task t train on the union of the training data of
    tasks 0..t, continuing from the current model (``mode = incremental``).

    Every example keeps its own task id, so the cross-entropy of each example is taken over
    the outputs of its own task's row of ``train_masks`` (its head in task-il). Each task
    trains ``train.epochs`` epochs over the union (or ``train.iterations`` steps), so the
    cost grows with t. Row i of the matrix is, as for every strategy, the accuracy after
    training on what tasks 0..i made available: rows are comparable with the others'.

    ``mode = final`` trains once, at the last task, on the union of all tasks (the "Joint"
    of van de Ven & Tolias 2019, ``baseline='joint'`` in their ``train_task_based.py``).
    Nothing is trained before the last task, so rows 0..T-2 are the untrained model's
    accuracies (in task-il and domain-il exactly the initial row b; in class-il taken among
    the classes seen so far, as every strategy's row i is) and only the last row means
    something: use it for average accuracy; forgetting, backward and forward transfer of
    that matrix are not meaningful.
    """

    Options = JointOptions
    options: JointOptions

    @classmethod
    def last_row_only(cls, options: JointOptions) -> str | None:  # type: ignore[override]
        """``mode = final`` trains nothing before the last task: only the last row means
        something."""
        return "strategy.mode = final" if options.mode == "final" else None

    def train_data(self, ctx: TaskContext) -> TrainData:
        """The union of tasks 0..t (:func:`~lifelong_kd.strategies.union.union_data`)."""
        return union_data(ctx, self.options.mode)
