"""Continual-learning metrics: pure functions of the accuracy matrix, and of the curves of
continual evaluation (:func:`continual_metrics`, De Lange et al. 2023; see the section
"curves" below).

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

Some runs' matrices mean something only in their last row: a strategy that trains nothing
before the last task (``joint`` with ``mode = final``) evaluates the untrained model after tasks
0..T-2. The strategy declares it (``Strategy.last_row_only``) and the run records it in
result.json (``last_row_only``); for those runs only the metrics of :data:`LAST_ROW_METRICS` are
kept, the others are nan (:func:`meaningful_metrics`).
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
    n_tasks = len(m)
    return _mean(m[-1, : n_tasks - 1] - np.diag(m)[: n_tasks - 1])


def per_task_forgetting(r: Matrix) -> list[float]:
    """f_j = max_{j<=l<=T-2} R[l][j] - R[T-1][j] for each task j < T-1.

    The vector behind :func:`forgetting` (Chaudhry et al. 2018, eq. 2). Empty when T = 1.
    """
    m = _square(r)
    n_tasks = len(m)
    return [float(m[j : n_tasks - 1, j].max() - m[-1, j]) for j in range(n_tasks - 1)]


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


def meaningful_metrics(
    values: Mapping[str, float], last_row_only: str | None, n_tasks: int,
    rows_finished: int | None = None,
) -> dict[str, float]:
    """``values`` (metric -> value) with nan for every metric that means nothing for the run.

    ``last_row_only``: why only the last row of the run's matrix means something (the
    setting its strategy declares, ``Strategy.last_row_only``, as result.json records it:
    :func:`lifelong_kd.results.last_row_only`), None when every row does. For such a run
    with T = ``n_tasks`` > 1, every metric but those of :data:`LAST_ROW_METRICS` is nan, and
    all of them are nan while the run has not finished its T rows (``rows_finished`` < T: its
    last finished row is not the trained one). Other runs' values are returned unchanged.
    """
    rows = n_tasks if rows_finished is None else rows_finished
    if n_tasks <= 1 or last_row_only is None:
        return dict(values)
    return {m: (v if m in LAST_ROW_METRICS and rows >= n_tasks else math.nan)
            for m, v in values.items()}


def meaningful_per_task(
    values: Sequence[float], last_row_only: str | None, n_tasks: int
) -> list[float]:
    """A per-task vector (e.g. :func:`per_task_forgetting`), all nan for a run whose matrix
    means something only in its last row (``last_row_only`` not None: see
    :func:`meaningful_metrics`)."""
    if n_tasks <= 1 or last_row_only is None:
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


# ----------------------------------------------------------------------------- curves
#
# Continual evaluation (De Lange, van de Ven & Tuytelaars 2023, "Continual evaluation for
# lifelong learning: identifying the stability gap", ICLR; arXiv 2205.13452): the accuracy of
# every task seen so far, evaluated every few optimiser steps while the tasks are trained.
# The definitions follow the paper's code, Mattdl/ContinualEvaluation (commit bae2a58),
# src/eval/continual_eval_metrics.py; its continual_eval.py evaluates only the tasks seen so
# far (``skip_unseen_tasks``), and main.py (``get_continual_evaluation_plugins``) averages
# each per-task metric over the tasks that have it (``TaskAveragingPluginMetric``).

#: Curves as ``result["curves"]`` holds them: rows ``[step, trained, evaluated, accuracy]``
#: (the run's optimiser steps so far, the task being trained, the task evaluated, its
#: accuracy in [0, 1]), sorted by position in time, then by the task evaluated.
Curves = Sequence[Sequence[float]]

#: The keys of ``result["continual"]`` (:func:`continual_metrics`), ``gaps`` aside, in the
#: order the report shows them.
CONTINUAL_METRICS = ("min_acc", "wc_acc", "wf_10", "wf_100", "wp_10", "wp_100", "gap_depth",
                     "gap_length")

#: The range each continual metric can take: accuracies and drops or rises of accuracies in
#: [0, 1] (windowed forgetting and plasticity are at least 0 by definition, and so is a gap's
#: depth, its minimum being taken over points that include the switch itself); a gap's length
#: is a number of optimiser steps, at least 0.
CONTINUAL_BOUNDS: dict[str, tuple[float, float]] = {
    **{m: (0.0, 1.0) for m in CONTINUAL_METRICS}, "gap_length": (0.0, math.inf)}

#: Continual metrics where higher is better (the others: lower is better).
CONTINUAL_HIGHER_IS_BETTER = frozenset({"min_acc", "wc_acc", "wp_10", "wp_100"})


class _Point:
    """One evaluation: the step, the task being trained, and task -> accuracy."""

    __slots__ = ("step", "trained", "accuracy")

    def __init__(self, step: int, trained: int) -> None:
        self.step, self.trained = step, trained
        self.accuracy: dict[int, float] = {}


def _points(curves: Curves) -> list[_Point]:
    """The evaluations of ``curves`` in time order. A row starts a new point when its step
    or its task trained differs from the previous row's, or when its task evaluated is not
    above the previous one (the start and the end point of a task that took no step share
    both)."""
    points: list[_Point] = []
    last = -1
    for row in curves:
        if len(row) != 4:
            raise ValueError(f"a curves row is [step, trained, evaluated, accuracy], got {row!r}")
        step, trained, evaluated, acc = int(row[0]), int(row[1]), int(row[2]), float(row[3])
        p = points[-1] if points else None
        if p is None or (p.step, p.trained) != (step, trained) or evaluated <= last:
            p = _Point(step, trained)
            points.append(p)
        p.accuracy[evaluated] = acc
        last = evaluated
    return points


def _mean_or_none(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _min_acc(points: Sequence[_Point]) -> float | None:
    if not points:
        return None
    last = points[-1].trained
    minima = []
    for j in range(last):
        after = [p.accuracy[j] for p in points if p.trained > j and j in p.accuracy]
        if after:
            minima.append(min(after))
    return _mean_or_none(minima)


def min_acc(curves: Curves) -> float | None:
    """Average minimum accuracy, min-ACC = (1/(k-1)) sum_{j<k-1} min_{n: trained_n > j}
    a_j(n): for each earlier task j (every task but the last one trained, k-1 = the last
    task's 0-based index), the lowest accuracy it had at any evaluation n after its own
    training ended (points with ``trained > j``, the start point of task j+1 included), then
    the mean over those tasks.

    De Lange et al. 2023 (min-ACC, their "average minimum accuracy"); their code:
    src/eval/continual_eval_metrics.py, ``TaskTrackingMINAccuracyPluginMetric``, lines
    281-320 (``update_acc_minimum``, lines 302-308: the minimum over evaluations while
    another task is trained), averaged over tasks by ``TaskAveragingPluginMetric``.
    None with one task trained (no earlier task) or empty curves.
    """
    return _min_acc(_points(curves))


def wc_acc(curves: Curves) -> float | None:
    """Worst-case accuracy, WC-ACC = (1/k) a_{k-1}(t) + (1 - 1/k) min-ACC, k = the number of
    tasks trained (0..k-1), a_{k-1}(t) the accuracy of the last task trained at the last
    evaluation t: a trade-off between learning the current task and the worst any earlier
    task has been since it was learnt. With k = 1 it is a_0(t) (no earlier task).

    De Lange et al. 2023 (WC-ACC); their code: src/eval/continual_eval_metrics.py,
    ``WCACCPluginMetric.update_WCACC``, lines 356-375: the mean of the current task's accuracy
    and the minima of the other tasks, which is the formula above. None for empty curves or
    when the last evaluation does not include the last task trained.
    """
    return _wc_acc(_points(curves))


def _wc_acc(points: Sequence[_Point]) -> float | None:
    if not points:
        return None
    k = points[-1].trained + 1
    current = points[-1].accuracy.get(k - 1)
    if current is None:
        return None
    if k == 1:
        return current
    low = _min_acc(points)
    return None if low is None else current / k + (1 - 1 / k) * low


def _per_task(points: Sequence[_Point]) -> dict[int, np.ndarray]:
    """task -> its accuracies at every evaluation that includes it, in time order."""
    out: dict[int, list[float]] = {}
    for p in points:
        for j, a in p.accuracy.items():
            out.setdefault(j, []).append(a)
    return {j: np.asarray(a) for j, a in sorted(out.items())}


def _windowed(per_task: dict[int, np.ndarray], w: int, sign: float) -> float | None:
    """The mean over tasks of the largest ``sign``-ed change within ``w`` evaluations
    (:func:`windowed_forgetting`: sign -1, :func:`windowed_plasticity`: sign +1), from
    :func:`_per_task`'s accuracies."""
    if w < 1:
        raise ValueError(f"the window must hold at least 1 evaluation, got {w}")
    changes = []
    for a in per_task.values():
        if len(a) < 2 or w < 2:
            continue  # no pair of evaluations within a window: undefined for this task
        best = max(float((sign * (a[d:] - a[:-d])).max()) for d in range(1, min(w, len(a))))
        changes.append(max(0.0, best))
    return _mean_or_none(changes)


def windowed_forgetting(curves: Curves, w: int) -> float | None:
    """Windowed forgetting, WF^w = (1/|J|) sum_{j in J} max(0, max_{m<n, n-m<w} a_j(m) -
    a_j(n)): for each task j, the largest drop of its accuracy from one evaluation m to a
    later one n within a window of w consecutive evaluations of j (its evaluations from when
    it is first trained on, across task switches), at least 0; then the mean over the tasks
    J with two evaluations or more (every task seen, the one being trained included).

    De Lange et al. 2023 (WF^w, reported for w = 10 and 100); their code:
    src/eval/continual_eval_metrics.py, ``WindowedForgettingPluginMetric``, lines 191-265: a
    sliding window of each task's last w accuracies (``update_task_window``, lines 213-227),
    the largest A_m - A_n with m < n in it (``max_consec_delta_from_window``, lines 229-245),
    the maximum over windows starting from 0 (``max_forgetting``, a defaultdict(float), line
    200); averaged over the tasks by ``TaskAveragingPluginMetric``. One difference: their code
    counts a task with a single evaluation as 0, here it is left out (undefined), and the
    result is None when no task has two evaluations (or ``w`` = 1).
    """
    return _windowed(_per_task(_points(curves)), w, -1.0)


def windowed_plasticity(curves: Curves, w: int) -> float | None:
    """Windowed plasticity, WP^w = (1/|J|) sum_{j in J} max(0, max_{m<n, n-m<w} a_j(n) -
    a_j(m)): as :func:`windowed_forgetting`, with the largest rise instead of the largest
    drop (mostly a task's rise while it is being learnt, or its recovery after a gap).

    De Lange et al. 2023 (WP^w); their code: src/eval/continual_eval_metrics.py,
    ``WindowedPlasticityPluginMetric``, lines 268-278 (the same windows, ``delta`` = next -
    first). None as for :func:`windowed_forgetting`.
    """
    return _windowed(_per_task(_points(curves)), w, 1.0)


def stability_gaps(curves: Curves) -> list[dict[str, Any]]:
    """The stability gap at each switch to a task k >= 1 (De Lange et al. 2023:
    the sharp drop of earlier tasks' accuracy when a new task starts, then a partial
    recovery).

    s = the step of task k's start point (its first evaluation, before its first step and
    after the strategy's after_task / before_task). For each earlier task j < k evaluated
    there, over the evaluations n of task k's training (``trained = k``, the start point
    and the end point included):

        depth_j  = a_j(start) - min_n a_j(n)          (>= 0; 0 when j never drops)
        length_j = step(n*) - s, n* the first evaluation where that minimum is reached

    and the switch's ``depth`` and ``length`` are their means over j (length in optimiser
    steps). The paper shows the gap in plots without a formula; this definition measures it
    from the start point, so a change made between tasks (after_task / before_task, e.g. a
    bias correction) is not part of it. One dict per switch, in order: ``{"task": k,
    "step": s, "depth": float | None, "length": float | None}`` (None when the start point
    evaluates no earlier task). Empty without a switch.
    """
    return _stability_gaps(_points(curves))


def _stability_gaps(points: Sequence[_Point]) -> list[dict[str, Any]]:
    gaps = []
    for k in dict.fromkeys(p.trained for p in points):
        if k < 1:
            continue
        during = [p for p in points if p.trained == k]
        start = during[0]
        depths, lengths = [], []
        for j in sorted(start.accuracy):
            if j >= k:
                continue
            seen = [(p.accuracy[j], p.step) for p in during if j in p.accuracy]
            low = min(a for a, _ in seen)
            at = next(step for a, step in seen if a == low)
            depths.append(start.accuracy[j] - low)
            lengths.append(float(at - start.step))
        gaps.append({"task": k, "step": start.step, "depth": _mean_or_none(depths),
                     "length": _mean_or_none(lengths)})
    return gaps


def continual_metrics(curves: Curves) -> dict[str, Any]:
    """``result["continual"]``: :func:`min_acc`, :func:`wc_acc`, ``wf_10`` / ``wf_100``
    (:func:`windowed_forgetting`, w = 10, 100), ``wp_10`` / ``wp_100``
    (:func:`windowed_plasticity`), ``gap_depth`` and ``gap_length`` (the means over task
    switches of :func:`stability_gaps`' depths and lengths, switches without one left out)
    and ``gaps`` (:func:`stability_gaps`). None where undefined, never 0; empty curves give
    None everywhere and no gaps.
    """
    points = _points(curves)  # parsed once for every metric
    per_task = _per_task(points)
    gaps = _stability_gaps(points)
    depths = [g["depth"] for g in gaps if g["depth"] is not None]
    lengths = [g["length"] for g in gaps if g["length"] is not None]
    return {
        "min_acc": _min_acc(points),
        "wc_acc": _wc_acc(points),
        "wf_10": _windowed(per_task, 10, -1.0),
        "wf_100": _windowed(per_task, 100, -1.0),
        "wp_10": _windowed(per_task, 10, 1.0),
        "wp_100": _windowed(per_task, 100, 1.0),
        "gap_depth": _mean_or_none(depths),
        "gap_length": _mean_or_none(lengths),
        "gaps": gaps,
    }


#: The formula and the source of every continual metric, as the report prints them.
CONTINUAL_DEFINITIONS = {
    "min_acc": "mean over earlier tasks j of min a_j after task j's training ended",
    "wc_acc": "(1/k) a_current + (1 - 1/k) min-ACC, k tasks trained, a_current the last "
              "task's final accuracy",
    "wf_10": "mean over tasks of the largest drop of a task's accuracy within 10 "
             "consecutive evaluations of it",
    "wf_100": "the same within 100 evaluations",
    "wp_10": "mean over tasks of the largest rise of a task's accuracy within 10 "
             "consecutive evaluations of it",
    "wp_100": "the same within 100 evaluations",
    "gap_depth": "per task switch, mean over earlier tasks of (accuracy at the new task's "
                 "start - its minimum during the new task's training); mean over switches",
    "gap_length": "per task switch, mean over earlier tasks of the optimiser steps from the "
                  "switch to that minimum; mean over switches",
}
