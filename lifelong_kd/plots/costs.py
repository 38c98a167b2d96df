"""Accuracy against cost: a comparison's variants (and their teachers) at their parameters or
FLOPs per example, with the Pareto front of the means (:func:`plot_accuracy_vs_cost`), and
the points of each cost plot read from the stored results (:func:`cost_points`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .layout import ACCURACY_BOUNDS, RIGHT, _axes, _fit, _legend, colour, marker

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class CostPoint:
    """One point of :func:`plot_accuracy_vs_cost`: a variant (or its teacher) at its cost.

    ``x``: its parameters or FLOPs per example (the mean over its seeds; the same number for
    every seed of one model); ``accuracies``: its final average accuracy (ACC, in [0, 1])
    per seed; ``teacher``: the point is a variant's teacher (drawn hollow); ``group``: the
    variant's strategy (one colour and marker per strategy).
    """

    label: str
    x: float
    accuracies: tuple[float, ...]
    teacher: bool = False
    group: str = ""


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """The indices of the points (x = a cost, y = an accuracy) on the Pareto front, ordered
    by x (ties by index).

    Point i is on the front when no other point j dominates it: x_j <= x_i and y_j >= y_i
    with at least one of them strict (cheaper and at least as accurate, or as cheap and more
    accurate). Equal points do not dominate each other, so both are on the front. A point
    with a nan coordinate is never on it and dominates nothing.
    """
    ok = [i for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]

    def dominated(i: int) -> bool:
        xi, yi = points[i]
        return any(points[j][0] <= xi and points[j][1] >= yi
                   and (points[j][0] < xi or points[j][1] > yi) for j in ok if j != i)

    return sorted((i for i in ok if not dominated(i)), key=lambda i: (points[i][0], i))


#: Points of a cost plot up to which each is labelled with its variant's name (beyond, the
#: legend names the strategies and the lines join each strategy's sizes).
LABEL_MAX_POINTS = 8


def plot_accuracy_vs_cost(
    points: Sequence[CostPoint], x_label: str, ax: Axes | None = None, title: str = "",
) -> Figure:
    """Final average accuracy (%) against a cost, one point per variant: the mean over seeds
    with its 95% confidence interval as error bars (:func:`lifelong_kd.stats.describe`,
    clipped to [0, 100]; none with one seed), on a log x-axis.

    One colour and marker per ``group`` (the strategy): a strategy's variants (its model
    sizes) are joined by a thin line in order of cost, and the legend has one entry per
    strategy (and one per strategy's teachers); up to :data:`LABEL_MAX_POINTS` points, each
    is also labelled with its variant's name. Teachers (``CostPoint.teacher``) are hollow
    points in their strategy's colour. The Pareto front of the means (:func:`pareto_front`,
    over every point drawn, teachers included: each is a model one could deploy at its cost)
    is drawn as a step line (the best accuracy reached at each cost or less) and its points
    ringed. Points with no positive x (a log axis cannot show them) or no accuracy are left
    out.
    """
    from ..stats import describe

    own = ax is None
    fig, ax = _axes(ax, (7.0, 4.8))
    shown = [p for p in points if p.x > 0 and math.isfinite(p.x)
             and any(not math.isnan(a) for a in p.accuracies)]
    groups = list(dict.fromkeys(p.group or p.label for p in shown if not p.teacher))
    groups += [g for g in dict.fromkeys(p.group or p.label for p in shown) if g not in groups]
    stats = [describe([100.0 * a for a in p.accuracies], bounds=ACCURACY_BOUNDS) for p in shown]
    xs_all = [p.x for p in shown]
    middle = math.sqrt(min(xs_all) * max(xs_all)) if shown else 0.0  # the log-axis middle
    labelled = len(shown) <= LABEL_MAX_POINTS
    in_legend: set[tuple[str, bool]] = set()
    for p, d in zip(shown, stats, strict=True):
        group = p.group or p.label
        i = groups.index(group)
        err = (None if math.isnan(d["ci_low"])
               else [[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]])
        entry = (group, p.teacher)
        name = (p.label if labelled else group + (" teacher" if p.teacher else ""))
        ax.errorbar([p.x], [d["mean"]], yerr=err, fmt=marker(i), ms=6, color=colour(i),
                    mfc="white" if p.teacher else colour(i), mew=1.5, capsize=3,
                    elinewidth=0.8,
                    label=f"{name} (n={d['n']})" if entry not in in_legend else "_nolegend_")
        if not labelled:
            in_legend.add(entry)
        if labelled:
            right = p.x > middle  # labels of the costlier half run leftwards, inside the axes
            ax.annotate(p.label, (p.x, d["mean"]), textcoords="offset points",
                        xytext=(-6 if right else 6, 4), ha="right" if right else "left",
                        fontsize=7)
    for group in groups:  # a strategy's sizes, joined in order of cost
        line = sorted((p.x, d["mean"]) for p, d in zip(shown, stats, strict=True)
                      if (p.group or p.label) == group and not p.teacher)
        if len(line) > 1:
            ax.plot([x for x, _ in line], [y for _, y in line], color=colour(groups.index(group)),
                    linewidth=0.8, alpha=0.6, label="_nolegend_", zorder=1)
    front = pareto_front([(p.x, d["mean"]) for p, d in zip(shown, stats, strict=True)])
    if front:
        xs = [shown[i].x for i in front]
        ys = [stats[i]["mean"] for i in front]
        ax.step(xs, ys, where="post", color="black", linewidth=0.8, linestyle="--",
                label="Pareto front", zorder=1)
        ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="black", linewidths=0.8,
                   zorder=3)
    ax.set_xscale("log")
    if shown:  # room for the labels: a third of a decade beyond the extreme points
        ax.set_xlim(min(xs_all) / 2.2, max(xs_all) * 2.2)
    ax.set_xlabel(x_label)
    ax.set_ylabel("final average accuracy (%)")
    ax.set_ylim(0, 101)
    ax.set_title(title or f"accuracy against {x_label} (error bars: 95% CI over seeds)",
                 fontsize=10)
    beside = _legend(ax, fontsize=7) if shown else 0.0
    if own:
        _fit(fig, ax, right=RIGHT + beside, tall_x=True)
    return fig

#: The cost plots: file stem -> (the costs' key in ``costs.model`` and ``costs.teacher``,
#: the x-axis label).
COST_PLOTS = {
    "accuracy_vs_parameters": ("parameters", "parameters"),
    "accuracy_vs_flops": ("flops_per_example", "FLOPs per example (forward)"),
}


def cost_points(runs: Sequence[Any], kind: str, key: str) -> list[CostPoint]:
    """The points of one cost plot: per variant (``runs``: labelled finished runs, see
    :func:`lifelong_kd.aggregate.finished_runs`) whose runs record ``costs.model[key]``, x =
    its mean over those runs and the runs' final average accuracy (matrix ``kind``); then,
    for variants with a teacher block, their teacher's point (``costs.teacher[key]``, the
    teacher's matrix of ``kind``), labelled ``<variant> teacher``."""
    from ..aggregate import model_costs
    from ..results import matrix_kinds, teacher_kinds

    def number(table: Any) -> float | None:
        value = table.get(key) if isinstance(table, Mapping) else None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None

    own: dict[str, tuple[list[float], list[float]]] = {}
    theirs: dict[str, tuple[list[float], list[float]]] = {}
    for run in runs:
        x = number(model_costs(run.result))
        matrix = matrix_kinds(run.result).get(kind)
        if x is not None and matrix is not None:
            xs, ys = own.setdefault(run.label, ([], []))
            xs.append(x)
            ys.append(matrix.metrics.get("average_accuracy", math.nan))
        teacher = teacher_kinds(run.result).get(kind)
        costs = run.result.get("costs")
        tx = number(costs.get("teacher") if isinstance(costs, Mapping) else None)
        if teacher is not None and tx is not None:
            xs, ys = theirs.setdefault(run.label, ([], []))
            xs.append(tx)
            ys.append(teacher.metrics.get("average_accuracy", math.nan))
    strategy = {run.label: run.strategy for run in runs}
    points = [CostPoint(label, float(np.mean(xs)), tuple(ys), group=strategy[label])
              for label, (xs, ys) in own.items()]
    points += [CostPoint(f"{label} teacher", float(np.mean(xs)), tuple(ys), teacher=True,
                         group=strategy[label]) for label, (xs, ys) in theirs.items()]
    return points
