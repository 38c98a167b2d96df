"""Continual-learning metrics: pure functions of the accuracy matrix.

R is a T x T matrix (0-based): R[i][j] is the test accuracy on task j after training task i.
b is the vector of the untrained model's accuracies (b_j on task j). A metric that is not
defined for a matrix (for example backward transfer with one task) is ``nan``, stored as
``null`` in result.json, never as 0.

Several libraries call different quantities "forgetting"; here each has its own name:
``forgetting`` (Chaudhry et al. 2018, max over earlier rows), ``forgetting_after_learning``
(Avalanche's, the drop from just after learning), and ``bwt`` (Lopez-Paz & Ranzato 2017,
its sign reversed). ``intransigence`` (Chaudhry et al. 2018) needs a second matrix, that of
joint training with the same seed, so it is not in :data:`METRICS` (nor in result.json):
:mod:`lifelong_kd.aggregate` computes it across runs when a comparison includes ``joint``
trained incrementally (``strategy.mode = incremental``: its R[j][j] is the accuracy on task
j of a model trained jointly on tasks 0..j, Chaudhry's a*_j).
A ``joint`` run with ``mode = final`` trains once on all T tasks: its accuracies are those of
a model trained on tasks 0..T-1, not 0..j, so they are not a*_j for j < T-1 and are not used.

Some runs' matrices mean something only in their last row: ``joint`` with ``mode = final``
evaluates the untrained model after tasks 0..T-2. For those only the metrics of
:data:`LAST_ROW_METRICS` are kept; the others are nan (:func:`meaningful_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Matrix = Sequence[Sequence[float]] | np.ndarray


def _square(r: Matrix) -> np.ndarray:
    m = np.asarray(r, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square and non-empty, got shape {m.shape}")
    return m


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def average_accuracy(r: Matrix) -> float:
    """ACC = (1/T) sum_j R[T-1][j]: mean accuracy over all tasks after the last one.

    Lopez-Paz & Ranzato 2017, "Gradient episodic memory", eq. 2 (ACC); Chaudhry et al. 2018,
    "Riemannian walk", eq. 1 (A_T).
    """
    m = _square(r)
    return float(m[-1].mean())


def average_incremental_accuracy(r: Matrix) -> float:
    """(1/T) sum_i ( (1/(i+1)) sum_{j<=i} R[i][j] ): the average, over the stream, of the
    mean accuracy on the tasks seen so far.

    Rebuffi et al. 2017, "iCaRL", section 4 ("average incremental accuracy").
    """
    m = _square(r)
    return float(np.mean([m[i, : i + 1].mean() for i in range(len(m))]))


def learning_accuracy(r: Matrix) -> float:
    """LA = (1/T) sum_j R[j][j]: accuracy on each task just after learning it.

    Riemer et al. 2019, "Learning to learn without forgetting by maximizing transfer and
    minimizing interference" (LA), also Mirzadeh et al. 2020.
    """
    m = _square(r)
    return float(np.diag(m).mean())


def bwt(r: Matrix) -> float:
    """BWT = (1/(T-1)) sum_{j<T-1} ( R[T-1][j] - R[j][j] ); negative means forgetting.

    Lopez-Paz & Ranzato 2017, "Gradient episodic memory", eq. 3. ``nan`` when T = 1.
    """
    m = _square(r)
    t = len(m)
    return _mean(m[-1, : t - 1] - np.diag(m)[: t - 1])


def per_task_forgetting(r: Matrix) -> list[float]:
    """f_j = max_{j<=l<=T-2} R[l][j] - R[T-1][j] for each task j < T-1.

    The vector behind :func:`forgetting` (Chaudhry et al. 2018, eq. 2). Empty when T = 1.
    """
    m = _square(r)
    t = len(m)
    return [float(m[j : t - 1, j].max() - m[-1, j]) for j in range(t - 1)]


def forgetting(r: Matrix) -> float:
    """F = (1/(T-1)) sum_{j<T-1} ( max_{j<=l<=T-2} R[l][j] - R[T-1][j] ).

    Chaudhry et al. 2018, "Riemannian walk for incremental learning", eq. 2-3 (the best
    accuracy ever reached on a task minus the final one). ``nan`` when T = 1.
    """
    return _mean(np.asarray(per_task_forgetting(r)))


def forgetting_after_learning(r: Matrix) -> float:
    """(1/(T-1)) sum_{j<T-1} ( R[j][j] - R[T-1][j] ): the drop from just after learning.

    Avalanche's "forgetting" (``avalanche.evaluation.metrics.forgetting_bwt``, the accuracy
    right after training on a task minus the final one), which equals -BWT. ``nan`` when T = 1.
    """
    return -bwt(r)


def fwt(r: Matrix, initial: Sequence[float]) -> float:
    """FWT = (1/(T-1)) sum_{j>=1} ( R[j-1][j] - b_j ), b_j the untrained model's accuracy.

    Lopez-Paz & Ranzato 2017, "Gradient episodic memory", eq. 4. ``nan`` when T = 1.
    """
    m = _square(r)
    b = np.asarray(initial, dtype=float)
    if b.shape != (len(m),):
        raise ValueError(f"initial accuracies must have length {len(m)}, got {b.shape}")
    return _mean(np.array([m[j - 1, j] - b[j] for j in range(1, len(m))]))


def intransigence(r: Matrix, joint: Matrix) -> float:
    """I = (1/T) sum_j ( a*_j - R[j][j] ), a*_j = joint[j][j] the accuracy on task j of the
    model trained jointly on tasks 0..j (same seed): how much the strategy's sequential
    training keeps it from learning each new task as well as joint training does. Lower is
    better; joint training itself has I = 0.

    Chaudhry et al. 2018, "Riemannian walk", section 4.1, eq. 4 (their I_k, here averaged
    over all T tasks, k = T - 1). Defined for T = 1.
    """
    m, a = _square(r), _square(joint)
    if a.shape != m.shape:
        raise ValueError(f"joint matrix shape {a.shape} differs from {m.shape}")
    return float((np.diag(a) - np.diag(m)).mean())


#: Scalar metrics of one matrix (and the untrained accuracies), by their published names.
METRICS: dict[str, Callable[[Matrix, Sequence[float]], float]] = {
    "average_accuracy": lambda r, b: average_accuracy(r),
    "average_incremental_accuracy": lambda r, b: average_incremental_accuracy(r),
    "learning_accuracy": lambda r, b: learning_accuracy(r),
    "bwt": lambda r, b: bwt(r),
    "forgetting": lambda r, b: forgetting(r),
    "forgetting_after_learning": lambda r, b: forgetting_after_learning(r),
    "fwt": fwt,
}

#: Metrics where higher is better (the others: lower is better).
HIGHER_IS_BETTER = {"average_accuracy", "average_incremental_accuracy", "learning_accuracy",
                    "bwt", "fwt"}


#: Metrics the report shows, in this order (``intransigence`` only when ``joint`` was run).
REPORT_METRICS = (*METRICS, "intransigence")

#: The range each metric can take (accuracies in [0, 1]; differences of accuracies, such as
#: forgetting, bwt, fwt and intransigence, in [-1, 1]). Confidence intervals are clipped to it.
BOUNDS: dict[str, tuple[float, float]] = {
    "average_accuracy": (0.0, 1.0),
    "average_incremental_accuracy": (0.0, 1.0),
    "learning_accuracy": (0.0, 1.0),
    "bwt": (-1.0, 1.0),
    "forgetting": (-1.0, 1.0),
    "forgetting_after_learning": (-1.0, 1.0),
    "fwt": (-1.0, 1.0),
    "intransigence": (-1.0, 1.0),
}

#: Metrics that read only the last row of R: still meaningful when the earlier rows are not
#: those of a trained model (``joint`` with ``mode = final``).
LAST_ROW_METRICS = frozenset({"average_accuracy"})


def last_row_only(strategy: Mapping[str, Any]) -> str | None:
    """Why only the last row of a run's matrix means something, or None when every row does.

    ``strategy`` is the run's ``config["strategy"]``. ``joint`` with ``mode = final`` trains
    nothing before the last task (see ``strategies.Joint``), so rows 0..T-2 are the untrained
    model's accuracies.
    """
    if strategy.get("name") == "joint" and strategy.get("mode") == "final":
        return ("`joint` with `strategy.mode = final` trains only at the last task, so rows "
                "0..T-2 of its matrix are the untrained model's accuracies")
    return None


def meaningful_metrics(
    values: Mapping[str, float], strategy: Mapping[str, Any], n_tasks: int,
    rows_finished: int | None = None,
) -> dict[str, float]:
    """``values`` (metric -> value) with nan for every metric that means nothing for the run.

    For a run whose matrix means something only in its last row (:func:`last_row_only`)
    with T = ``n_tasks`` > 1, every metric but those of :data:`LAST_ROW_METRICS` is nan, and
    all of them are nan while the run has not finished its T rows (``rows_finished`` < T: its
    last finished row is not the trained one). Other runs' values are returned unchanged.
    """
    rows = n_tasks if rows_finished is None else rows_finished
    if n_tasks <= 1 or last_row_only(strategy) is None:
        return dict(values)
    return {m: (v if m in LAST_ROW_METRICS and rows >= n_tasks else math.nan)
            for m, v in values.items()}


def meaningful_per_task(
    values: Sequence[float], strategy: Mapping[str, Any], n_tasks: int
) -> list[float]:
    """A per-task vector (e.g. :func:`per_task_forgetting`), all nan for a run whose matrix
    means something only in its last row (see :func:`meaningful_metrics`)."""
    if n_tasks <= 1 or last_row_only(strategy) is None:
        return list(values)
    return [math.nan] * len(values)

#: The formula and the source of every metric, as the report prints them.
DEFINITIONS = {
    "average_accuracy": "mean_j R[T-1][j]: accuracy over all tasks after the last "
                        "(ACC, Lopez-Paz & Ranzato 2017, eq. 2)",
    "average_incremental_accuracy": "mean_i mean_{j<=i} R[i][j]: the accuracy on the tasks "
                                    "seen so far, averaged over the stream (Rebuffi et al. "
                                    "2017, iCaRL)",
    "learning_accuracy": "mean_j R[j][j]: accuracy on each task just after learning it "
                         "(LA, Riemer et al. 2019)",
    "bwt": "mean_{j<T-1} ( R[T-1][j] - R[j][j] ): backward transfer, negative means "
           "forgetting (BWT, Lopez-Paz & Ranzato 2017, eq. 3)",
    "forgetting": "mean_{j<T-1} ( max_{j<=l<=T-2} R[l][j] - R[T-1][j] ): the best accuracy "
                  "a task ever had minus its final one (forgetting measure, Chaudhry et al. "
                  "2018, eq. 2-3)",
    "forgetting_after_learning": "mean_{j<T-1} ( R[j][j] - R[T-1][j] ): the accuracy just "
                                 "after learning a task minus its final one (Avalanche's "
                                 "\"forgetting\"; equals -bwt)",
    "fwt": "mean_{j>=1} ( R[j-1][j] - b_j ), b_j the untrained model's accuracy: forward "
           "transfer (FWT, Lopez-Paz & Ranzato 2017, eq. 4)",
    "intransigence": "mean_j ( a*_j - R[j][j] ), a*_j the accuracy on task j of joint "
                     "training on tasks 0..j with the same seed (Chaudhry et al. 2018, eq. 4): "
                     "R[j][j] of `joint` with `strategy.mode = incremental`; a `joint` run "
                     "with `mode = final` is trained on all tasks, not on 0..j, and gives no "
                     "a*_j",
}


def all_metrics(r: Matrix, initial: Sequence[float]) -> dict[str, float]:
    """Every scalar metric of :data:`METRICS`."""
    return {name: fn(r, initial) for name, fn in METRICS.items()}
