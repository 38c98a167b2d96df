"""The continual-evaluation figures (De Lange, van de Ven & Tuytelaars 2023, "Continual
evaluation for lifelong learning: identifying the stability gap", ICLR): each task's accuracy
against the training step, and the depth of the stability gap per strategy.

A run trained with ``train.eval_every > 0`` records ``result["curves"]``, rows [step, trained,
evaluated, accuracy] (the run's optimiser steps so far, the task being trained, the task
evaluated, its accuracy in [0, 1]) in time order; ``result["continual"]`` holds their metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .figures import _band_label, _mean_band
from .layout import (
    ACCURACY_BOUNDS,
    LETTER_EM,
    _axes,
    _finish_panels,
    _fit,
    _left_out,
    _panels,
    colour,
    marker,
    shown_tasks,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..metrics import Curves

#: At most this many per-task panels (one per task evaluated) in a curves figure.
MAX_CURVE_PANELS = 5
#: At most this many task switches get a vertical line in a curves figure.
MAX_SWITCHES = 20
#: The figures of the curves: ``run_plots`` draws the first for a run with curves,
#: ``comparison_plots`` both when some run has curves.
CURVE_PLOTS = ("curves", "stability_gap")


def task_switches(curves: Curves) -> dict[int, int]:
    """Task k (k >= 1) -> the step of its first evaluation (its start point, before its
    first step): where the curves switch from task k-1 to task k."""
    out: dict[int, int] = {}
    for row in curves:
        trained = int(row[1])
        if trained >= 1 and trained not in out:
            out[trained] = int(row[0])
    return out


def align_curves(per_seed: Sequence[Curves], task: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, accuracies) of ``task`` over the seeds' curves, aligned on step.

    A column per evaluation of ``task`` that some seed has, keyed by (task trained, step,
    occurrence), in time order: the end point of task k-1 and the start point of task k
    share their step but stay two columns (the strategy's after_task / before_task ran
    between them), and a repeated evaluation at one step keeps its place. ``steps`` holds
    each column's step; ``accuracies`` (seeds x columns, in percent) is nan where a seed has
    no such evaluation (seeds whose configurations match share their steps, so there is
    none)."""
    keyed: list[dict[tuple[int, int, int], float]] = []
    for rows in per_seed:
        seen: dict[tuple[int, int], int] = {}
        points: dict[tuple[int, int, int], float] = {}
        for row in rows:
            if int(row[2]) != task:
                continue
            base = (int(row[1]), int(row[0]))
            occurrence = seen.get(base, 0)
            seen[base] = occurrence + 1
            points[(*base, occurrence)] = 100.0 * float(row[3])
        keyed.append(points)
    keys = sorted(set().union(*keyed))
    steps = np.array([k[1] for k in keys], dtype=float)
    values = np.array([[p.get(k, np.nan) for k in keys] for p in keyed],
                      dtype=float).reshape(len(keyed), len(keys))
    return steps, values


def plot_curves(
    curves: Mapping[str, Sequence[Curves]], ax: Sequence[Axes] | None = None, title: str = "",
    band: str = "ci95",
) -> Figure:
    """Each task's accuracy against the training step, across task boundaries (De Lange et
    al. 2023, figure 1): one panel per task evaluated (at most :data:`MAX_CURVE_PANELS`,
    spread over the stream; the title names them), the strategies overlaid.

    ``curves`` maps a strategy to its per-seed curves (``result["curves"]``). A strategy's
    line is the mean over seeds at each evaluation (:func:`align_curves`), with a band (95%
    confidence interval of the mean, or +- one standard deviation with ``band = "std"``,
    clipped to [0, 100]; none with one seed). Vertical lines mark the task switches (the
    start point of each task k >= 1, :func:`task_switches`): grey and dashed where every
    strategy switches at that step, dotted in a strategy's colour where only some do (their
    phases take different numbers of steps); at most :data:`MAX_SWITCHES` of them (spread
    over the stream). ``ax``, when given, is a sequence of one axes per panel.
    """
    runs = {name: [c for c in per_seed if c] for name, per_seed in curves.items()}
    runs = {name: per_seed for name, per_seed in runs.items() if per_seed}
    rows = [row for per_seed in runs.values() for c in per_seed for row in c]
    n_tasks = max((int(row[2]) for row in rows), default=0) + 1
    last = max((float(row[0]) for row in rows), default=0.0)
    shown = shown_tasks(n_tasks, MAX_CURVE_PANELS)
    own = ax is None
    fig, axes = _panels(ax, len(shown), 1, (8.0, 1.9), sharex=True)
    owners: dict[tuple[int, int], set[int]] = {}
    for i, per_seed in enumerate(runs.values()):
        for c in per_seed:
            for k, step in task_switches(c).items():
                owners.setdefault((k, step), set()).add(i)
    switched = sorted({k for k, _ in owners})
    kept = {switched[j] for j in shown_tasks(len(switched), MAX_SWITCHES)}
    labelled: set[str] = set()
    for p, (j, a) in enumerate(zip(shown, axes, strict=True)):
        for (k, step), who in sorted(owners.items()):
            if k not in kept:
                continue
            every = len(who) == len(runs)
            a.axvline(step, color="0.55" if every else colour(min(who)), linewidth=0.8,
                      linestyle="--" if every else ":", zorder=1)
        for i, (name, per_seed) in enumerate(runs.items()):
            steps, values = align_curves(per_seed, j)
            if not len(steps):
                continue
            mean, lo, hi = _mean_band(values, band, ACCURACY_BOUNDS)
            label = f"{name} (n={len(per_seed)})"
            a.plot(steps, mean, color=colour(i), marker=marker(i), ms=3, linewidth=1.2,
                   markevery=0.08, zorder=3,
                   label=label if label not in labelled else None)
            labelled.add(label)
            if len(per_seed) > 1:
                a.fill_between(steps, lo, hi, color=colour(i), alpha=0.2, linewidth=0)
        a.set_title(f"task {j + 1}", fontsize=9)
        a.set_ylim(0, 101)
        a.set_xlim(0, max(last, 1.0))
        a.set_ylabel("accuracy (%)")
        if ax is not None or p == len(shown) - 1:
            a.set_xlabel("training step (optimiser steps)")
    title = title or (f"accuracy on each task during training (band: {_band_label(band)} "
                      "over seeds; dashed: task switches)")
    if len(shown) < n_tasks:
        title += "\n" + _left_out(shown, n_tasks, "panels")
    if any(len(who) < len(runs) for (k, _), who in owners.items() if k in kept):
        title += "\ndotted: a task switch of some strategies only, in their colour"
    if len(kept) < len(switched):
        title += f"\nlines for {len(kept)} of {len(switched)} task switches"
    return _finish_panels(fig, axes, own, labelled, len(runs), title, 1, inner_x=False)


def plot_stability_gap(
    depths: Mapping[str, Sequence[float | None]], ax: Axes | None = None, title: str = "",
) -> Figure:
    """The depth of the stability gap per strategy (``result["continual"]["gap_depth"]``:
    the mean over task switches of the earlier tasks' mean drop from the new task's start
    point to their lowest accuracy during its training; De Lange et al. 2023, section 4), in
    percentage points, as a dot chart: one row per strategy, each seed a small hollow dot,
    the mean a filled one with the 95% confidence interval of the mean as error bars
    (:func:`lifelong_kd.stats.describe`, clipped to [0, 100]; none with one seed).

    ``depths`` maps a strategy to its per-seed depths in [0, 1]; None or nan (undefined: no
    switch with an earlier task) are left out of its n.
    """
    from ..stats import describe

    names = list(depths)
    values = {name: [100.0 * float(d) for d in depths[name]
                     if d is not None and not math.isnan(float(d))] for name in names}
    stats = {name: describe(values[name], bounds=ACCURACY_BOUNDS) for name in names}
    labels = [f"{name} (n={stats[name]['n']})" for name in names]
    widest = max((len(label) for label in labels), default=0) * LETTER_EM
    own = ax is None
    fig, ax = _axes(ax, (5.5 + widest * 10 / 72, 1.5 + 0.32 * max(len(names), 1)))
    for i, name in enumerate(names):
        y = len(names) - 1 - i
        d = stats[name]
        if not values[name]:
            continue
        ax.plot(values[name], [y] * len(values[name]), linestyle="none", marker=marker(i),
                ms=4, mfc="none", color=colour(i), alpha=0.7, label="_nolegend_")
        err = (None if math.isnan(d["ci_low"])
               else [[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]])
        ax.errorbar([d["mean"]], [y], xerr=err, fmt=marker(i), ms=7, color=colour(i),
                    capsize=3, elinewidth=1.0, label="_nolegend_")
    ax.set_yticks(range(len(names)), labels[::-1])
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(left=0)
    ax.set_xlabel("stability-gap depth (percentage points)")
    ax.set_title(title or "stability-gap depth (De Lange et al. 2023), mean over task "
                          "switches\nhollow: seeds; error bars: 95% CI over seeds",
                 fontsize=10)
    if own:
        _fit(fig, ax, widest)
    return fig

