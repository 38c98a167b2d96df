"""Figures for papers: every function takes ``ax=None`` and returns the figure.

Colours come from the Okabe-Ito palette (safe for colour-blind readers and in greyscale
print); axes are labelled; accuracies are shown in percent.

What a figure draws stays bounded whatever the number of tasks T (``n_tasks`` up to 1000 is
accepted): figures are at most :data:`MAX_INCHES` on a side, heat-map cells are labelled only
up to :data:`ANNOTATE_MAX_TASKS` tasks, at most :data:`MAX_TICKS` ticks label an axis, at
most :data:`MAX_PANELS` per-task panels and :data:`MAX_LINES` per-task lines are drawn (tasks
spread evenly over the stream, the first and the last included; the figure names the ones
shown), and per-task forgetting becomes one line per strategy past :data:`MAX_BARS` tasks.
:func:`run_plots` and :func:`comparison_plots` make one figure at a time and close it after
saving it, also when drawing or saving fails. They read the stored results (matrices and
per-task forgetting from result.json, through :mod:`lifelong_kd.aggregate` for a comparison);
the ``plot_*`` functions draw what they are given.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Heat-map cells get their value written in them only up to this many tasks (rows, columns).
ANNOTATE_MAX_TASKS = 20
#: At most this many ticks label an axis of tasks.
MAX_TICKS = 12
#: At most this many per-task panels (one per task) in a figure.
MAX_PANELS = 10
#: At most this many per-task lines (one per task) in a figure: one colour each.
MAX_LINES = 8
#: Per-task forgetting is drawn as grouped bars up to this many tasks, as lines beyond.
MAX_BARS = 30
#: No side of a figure is longer than this (inches; at 150 dpi, 2100 pixels).
MAX_INCHES = 14.0
#: The band's bounds (percent) of an accuracy, and of a difference of accuracies.
ACCURACY_BOUNDS = (0.0, 100.0)
DIFFERENCE_BOUNDS = (-100.0, 100.0)

#: Okabe & Ito 2008, "Color universal design".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _inches(x: float) -> float:
    return min(x, MAX_INCHES)


def shown_tasks(t: int, at_most: int) -> list[int]:
    """At most ``at_most`` of the task indices 0..t-1, spread evenly, the first and the last
    included (all of them when t <= at_most)."""
    if t <= at_most:
        return list(range(t))
    return sorted({round(k * (t - 1) / (at_most - 1)) for k in range(at_most)})


def _left_out(shown: Sequence[int], t: int, what: str) -> str:
    """The note a figure carries when it shows only some tasks (1-based names)."""
    return f"{what} for {len(shown)} of {t} tasks: " + ", ".join(str(j + 1) for j in shown)


def _task_ticks(ax: Axes, t: int, axis: str = "x", first: int = 1,
                at_most: int = MAX_TICKS) -> None:
    """Ticks at no more than ``at_most`` of the positions first, ..., first + t - 1,
    labelled with their task numbers 1..t."""
    shown = shown_tasks(t, min(at_most, MAX_TICKS))
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_ticks([first + j for j in shown], [str(j + 1) for j in shown])


#: Legend entries up to which a legend sits inside its axes; a longer one goes beside them
#: (the figure widened to hold it), so that it hides no data and the axes keep their size.
LEGEND_INSIDE_MAX = 8


def _legend(ax: Axes, fontsize: float = 8) -> None:
    """The axes' legend: inside (``best`` place) up to :data:`LEGEND_INSIDE_MAX` entries,
    else to the right of the axes in a smaller font, the figure made wider by the legend's
    width (one column per 30 entries)."""
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) <= LEGEND_INSIDE_MAX:
        ax.legend(fontsize=fontsize)
        return
    ncol = -(-len(handles) // 30)
    fig = ax.figure
    fig.set_figwidth(fig.get_figwidth() + _inches(4.2) * ncol)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              ncol=ncol)


def _axes(ax: Axes | None, size: tuple[float, float] = (5.0, 4.0)) -> tuple[Figure, Axes]:
    plt = pyplot()
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = plt.subplots(figsize=(_inches(size[0]), _inches(size[1])), layout="constrained")
    return fig, new_ax


def _panels(
    ax: Sequence[Axes] | None, n: int, ncols: int, panel: tuple[float, float],
    sharey: bool = True,
) -> tuple[Figure, list[Axes]]:
    """``n`` axes: the given ones (at least ``n``), or a new grid of ``ncols`` columns whose
    unused cells are hidden."""
    plt = pyplot()
    if ax is not None:
        axes = list(ax)
        if len(axes) < n:
            raise ValueError(f"{n} axes needed, {len(axes)} given")
        return axes[0].figure, axes[:n]  # type: ignore[return-value]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(_inches(panel[0] * ncols), _inches(panel[1] * nrows)),
                             layout="constrained", squeeze=False, sharey=sharey)
    flat = list(grid.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    return fig, flat[:n]


#: One marker per strategy, so that lines stay apart in greyscale and where they overlap.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def colour(i: int) -> str:
    """The i-th Okabe-Ito colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def marker(i: int) -> str:
    """The i-th marker (cycling)."""
    return MARKERS[i % len(MARKERS)]


def _mean_band(
    values: np.ndarray, band: str = "ci95", bounds: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``values`` (seeds x points) and the band around them: the 95%
    confidence interval of the mean (Student's t, ``ci95``) or +- one standard deviation
    (``std``), clipped to ``bounds`` (what the quantity can take, e.g. [0, 100] for an
    accuracy in percent; see :func:`lifelong_kd.stats.clip_interval`). The band is nan with
    one seed."""
    mean = values.mean(axis=0)
    if len(values) < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    if band == "std":
        sd = values.std(axis=0, ddof=1)
        lo, hi = mean - sd, mean + sd
    else:
        from .stats import mean_ci

        lo, hi = np.transpose([mean_ci(values[:, k])[1:] for k in range(values.shape[1])])
    if bounds is not None:
        lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    return mean, lo, hi


def _band_label(band: str) -> str:
    return "95% CI" if band == "ci95" else "+-1 std"


def plot_accuracy_matrix(
    matrix: Sequence[Sequence[float]], ax: Axes | None = None, title: str = "",
    vmin: float = 0.0, vmax: float = 100.0, colorbar: bool = True,
) -> Figure:
    """Heatmap of R (in %): row i = after training task i, column j = task j. Each cell holds
    its value up to :data:`ANNOTATE_MAX_TASKS` rows and columns; nan cells (rows that mean
    nothing) are left blank."""
    m = np.asarray(matrix, dtype=float) * 100.0
    rows, cols = m.shape
    fig, ax = _axes(ax, (0.6 * cols + 2.5, 0.5 * rows + 2.0))
    im = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto",
                   interpolation="nearest")
    if max(rows, cols) <= ANNOTATE_MAX_TASKS:
        for (i, j), v in np.ndenumerate(m):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v < (vmin + vmax) / 2 else "black")
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    _task_ticks(ax, cols, "x", first=0, at_most=8)
    _task_ticks(ax, rows, "y", first=0, at_most=8)
    ax.set_title(title or "accuracy matrix (%)")
    if colorbar:
        fig.colorbar(im, ax=ax, label="accuracy (%)")
    return fig


def plot_accuracy_matrices(
    matrices: Mapping[str, Sequence[Sequence[float]]], ax: Sequence[Axes] | None = None,
    title: str = "",
) -> Figure:
    """The strategies' accuracy matrices (in %) side by side, on one colour scale (0-100%)
    with one colour bar. ``matrices`` maps a panel title (a strategy) to its matrix (the mean
    over seeds, say); ``ax``, when given, is a sequence of one axes per matrix."""
    n = len(matrices)
    t = max((len(np.asarray(m)) for m in matrices.values()), default=1)
    side = min(0.45 * t + 1.6, 4.5)
    fig, axes = _panels(ax, n, 4, (side, side), sharey=False)
    for a, (name, m) in zip(axes, matrices.items(), strict=True):
        plot_accuracy_matrix(m, ax=a, title=name, colorbar=False)
    for a in axes[1:]:
        a.set_ylabel("")
    if axes:
        fig.colorbar(axes[0].images[0], ax=axes, label="accuracy (%)", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def plot_task_accuracies(
    matrix: Sequence[Sequence[float]], ax: Axes | None = None, title: str = ""
) -> Figure:
    """Each task's accuracy as the stream goes on: one line per task, from when it is learnt
    (at most :data:`MAX_LINES` tasks, spread over the stream; the title names them)."""
    m = np.asarray(matrix, dtype=float) * 100.0
    shown = shown_tasks(m.shape[1], MAX_LINES)
    fig, ax = _axes(ax, (5.0 if len(shown) == m.shape[1] else 6.5, 4.0))
    x = np.arange(1, m.shape[0] + 1)
    for k, j in enumerate(shown):
        ax.plot(x[j:], m[j:, j], marker="o", ms=3, color=colour(k), label=f"task {j + 1}",
                markevery=max(1, (len(x) - j) // 20))
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("test accuracy (%)")
    _task_ticks(ax, m.shape[0])
    ax.set_ylim(0, 101)
    title = title or "accuracy on each task"
    if len(shown) < m.shape[1]:
        title += "\n" + _left_out(shown, m.shape[1], "lines")
    ax.set_title(title, fontsize=10 if len(shown) == m.shape[1] else 8)
    if shown:
        ax.legend(fontsize=7, ncol=2)
    return fig


def plot_task_accuracies_by_strategy(
    matrices: Mapping[str, Sequence[Sequence[Sequence[float]]]],
    ax: Sequence[Axes] | None = None,
    title: str = "",
    band: str = "ci95",
) -> Figure:
    """Each task's accuracy over the stream, one panel per task, the strategies overlaid.

    ``matrices`` maps a strategy to its per-seed T x T matrices. Panel j shows R[i][j] for
    i >= j (from when task j is learnt): the mean over seeds as a line, with a band (95%
    confidence interval of the mean, or +- one standard deviation with ``band = "std"``,
    clipped to [0, 100]). At most :data:`MAX_PANELS` tasks get a panel (spread over the
    stream; the title names them). ``ax``, when given, is a sequence of one axes per panel.
    """
    data = {name: np.asarray(ms, dtype=float) * 100.0 for name, ms in matrices.items()}
    t = max((d.shape[1] for d in data.values()), default=1)
    shown = shown_tasks(t, MAX_PANELS)
    fig, axes = _panels(ax, len(shown), 5, (2.6, 2.3))
    ncols = min(5, len(shown))
    for k, (j, a) in enumerate(zip(shown, axes, strict=True)):
        for i, (name, d) in enumerate(data.items()):
            if j >= d.shape[1]:
                continue
            x = np.arange(j + 1, d.shape[1] + 1)
            mean, lo, hi = _mean_band(d[:, j:, j], band, ACCURACY_BOUNDS)
            a.plot(x, mean, marker=marker(i), ms=4, color=colour(i), alpha=0.9,
                   markevery=max(1, len(x) // 20),
                   label=f"{name} (n={len(d)})" if k == 0 else None)
            if len(d) > 1:
                a.fill_between(x, lo, hi, color=colour(i), alpha=0.2, linewidth=0)
        a.set_title(f"task {j + 1}", fontsize=9)
        _task_ticks(a, t, at_most=6)
        a.set_xlim(0.5, t + 0.5)
        a.set_ylim(0, 101)
        if ax is not None or k >= len(shown) - ncols:
            a.set_xlabel("tasks trained")
        if ax is not None or k % ncols == 0:
            a.set_ylabel("accuracy (%)")
    if axes:
        fig.legend(loc="outside lower center", ncol=min(len(data), 4), fontsize=8)
    title = title or (f"accuracy on each task over the stream (band: {_band_label(band)} "
                      "over seeds)")
    if len(shown) < t:
        title += "\n" + _left_out(shown, t, "panels")
    fig.suptitle(title, fontsize=10)
    return fig


def seen_average_curve(matrix: Sequence[Sequence[float]]) -> np.ndarray:
    """After each task i: mean_{j<=i} R[i][j], the average accuracy over the tasks seen."""
    m = np.asarray(matrix, dtype=float)
    return np.array([m[i, : i + 1].mean() for i in range(m.shape[0])])


def plot_average_accuracy(
    curves: Mapping[str, Sequence[Sequence[float]]],
    ax: Axes | None = None,
    title: str = "",
    band: str = "ci95",
) -> Figure:
    """Average accuracy over the tasks seen so far, a line per strategy with a band over seeds.

    ``curves`` maps a strategy to its per-seed curves (see :func:`seen_average_curve`). The
    band is the 95% confidence interval of the mean (Student's t; ``band = "ci95"``) or
    +- one standard deviation (``band = "std"``), as in van de Ven et al.'s figures
    (van de Ven, Tuytelaars & Tolias 2022, "Three types of incremental learning"), clipped
    to [0, 100].
    """
    fig, ax = _axes(ax, (6.0, 4.0))
    longest = 1
    for i, (name, per_seed) in enumerate(curves.items()):
        c = np.asarray(per_seed, dtype=float) * 100.0
        x = np.arange(1, c.shape[1] + 1)
        longest = max(longest, c.shape[1])
        mean, lo, hi = _mean_band(c, band, ACCURACY_BOUNDS)
        ax.plot(x, mean, marker=marker(i), ms=4, color=colour(i), alpha=0.9,
                markevery=max(1, len(x) // 20), label=f"{name} (n={len(c)})")
        if len(c) > 1:
            ax.fill_between(x, lo, hi, color=colour(i), alpha=0.2, linewidth=0)
    _task_ticks(ax, longest)
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("average accuracy on tasks seen (%)")
    ax.set_ylim(0, 101)
    ax.set_title(title or f"average accuracy (band: {_band_label(band)} over seeds)",
                 fontsize=10)
    _legend(ax, fontsize=8)
    return fig


def plot_forgetting(
    per_task: Mapping[str, Sequence[Sequence[float]]], ax: Axes | None = None, title: str = "",
    band: str = "ci95",
) -> Figure:
    """Forgetting per task (Chaudhry et al. 2018, eq. 2: max_{j<=l<=T-2} R[l][j] - R[T-1][j])
    as grouped bars, one colour per strategy: the mean over seeds, with error bars of the 95%
    confidence interval of the mean (or +- one standard deviation with ``band = "std"``),
    clipped to [-100, 100]. Past :data:`MAX_BARS` tasks, one line per strategy with a band
    instead of bars.

    ``per_task`` maps a strategy to its per-seed vectors (see
    :func:`lifelong_kd.metrics.per_task_forgetting`), for tasks 1 .. T-1.
    """
    fig, ax = _axes(ax, (6.0, 4.0))
    names = list(per_task)
    width = 0.8 / max(len(names), 1)
    longest = max((np.asarray(v, dtype=float).shape[-1] for v in per_task.values()
                   if np.asarray(v).size), default=0)
    as_lines = longest > MAX_BARS
    for i, name in enumerate(names):
        f = np.asarray(per_task[name], dtype=float) * 100.0
        if f.size == 0:
            continue
        x = np.arange(1, f.shape[1] + 1)
        mean, lo, hi = _mean_band(f, band, DIFFERENCE_BOUNDS)
        if as_lines:
            ax.plot(x, mean, color=colour(i), marker=marker(i), ms=3,
                    markevery=max(1, len(x) // 20), label=f"{name} (n={len(f)})")
            if len(f) > 1:
                ax.fill_between(x, lo, hi, color=colour(i), alpha=0.2, linewidth=0)
            continue
        err = np.vstack([mean - lo, hi - mean]) if len(f) > 1 else None
        ax.bar(x + (i - (len(names) - 1) / 2) * width, mean, width, yerr=err,
               color=colour(i), label=f"{name} (n={len(f)})", capsize=2,
               error_kw={"elinewidth": 0.8})
    if longest:
        _task_ticks(ax, longest)
    ax.set_xlabel("task")
    ax.set_ylabel("forgetting (percentage points)")
    what = "bands" if as_lines else "error bars"
    ax.set_title(title or "forgetting per task (Chaudhry et al. 2018; "
                          f"{what}: {_band_label(band)})", fontsize=10)
    ax.axhline(0, color="black", linewidth=0.5)
    if names:
        _legend(ax, fontsize=8)
    return fig


# ------------------------------------------------------------------- accuracy against cost


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
    from .stats import describe

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
    if shown:
        _legend(ax, fontsize=7)
    return fig


@contextlib.contextmanager
def closing_figures() -> Iterator[None]:
    """Close every figure opened inside the block when it ends, also on an error, so that
    a failed plot leaves no figure (and its memory) behind."""
    plt = pyplot()
    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)


def save(fig: Figure, path: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; close it (also when saving
    fails); return the paths."""
    import matplotlib.pyplot as plt

    from .results import atomic_path

    out = []
    try:
        for fmt in formats:
            target = Path(path).with_suffix(f".{fmt}")
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, dpi=150)
            out.append(target)
    finally:
        plt.close(fig)
    return out


def mask_rows(matrix: Sequence[Sequence[float]], strategy: Mapping[str, Any],
              n_tasks: int) -> np.ndarray:
    """The matrix with nan in the rows that mean nothing for the run (see
    :func:`lifelong_kd.metrics.last_row_only`: every row but the last of ``joint`` with
    ``mode = final``, and every row while such a run has not finished), so that plots leave
    them out."""
    from .metrics import last_row_only

    m = np.array(matrix, dtype=float)
    if n_tasks > 1 and last_row_only(strategy) is not None:
        m[: (n_tasks - 1 if len(m) == n_tasks else len(m))] = np.nan
    return m


def run_plots(result: dict, out_dir: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """The plots of one run: matrix heatmap, per-task accuracies, average accuracy, forgetting.

    ``result`` is checked first (:func:`lifelong_kd.results.validate_result`: a UserError
    naming ``out_dir/result.json`` when it is not a well-formed result). Rows that mean
    nothing (``joint`` with ``mode = final`` before its last task) are left out, and such a
    run gets no forgetting plot.
    """
    from .metrics import last_row_only
    from .results import matrix_kinds, strategy_config, validate_result

    out_dir = Path(out_dir)
    validate_result(result, out_dir / "result.json")
    rows = result["accuracy_matrix"]
    if not rows:
        return []
    name = result["strategy"]
    t = int(result["n_tasks"])
    strategy = strategy_config(result)
    partial = t > 1 and last_row_only(strategy) is not None
    m = mask_rows(rows, strategy, t)
    if np.isnan(m).all():
        return []
    note = " (last row only: mode = final)" if partial else ""
    k = len(rows)
    square = m[:, :k]
    paths: list[Path] = []
    with closing_figures():
        paths += save(plot_accuracy_matrix(m, title=f"{name}: accuracy matrix (%){note}"),
                      out_dir / "accuracy_matrix", formats)
        paths += save(plot_task_accuracies(m, title=f"{name}: accuracy on each task{note}"),
                      out_dir / "task_accuracy", formats)
        paths += save(plot_average_accuracy({name: [seen_average_curve(square)]},
                                            title=f"{name}: average accuracy{note}"
                                            if note else ""),
                      out_dir / "average_accuracy", formats)
        if k > 1 and not partial:
            forgetting = next(iter(matrix_kinds(result).values())).per_task_forgetting
            paths += save(plot_forgetting({name: [forgetting]}), out_dir / "forgetting",
                          formats)
    return paths


def comparison_plots(
    results: Sequence[dict[str, Any]], out_dir: Path, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """The comparison's plots, per matrix kind (class-il: a ``_task_aware`` copy of each):
    ``accuracy_matrices`` (mean over seeds, side by side on one colour scale),
    ``average_accuracy`` (tasks seen, line and 95% band), ``task_accuracy`` (each task over
    the stream, variants overlaid), ``forgetting`` (per task, grouped bars with 95% CI).
    Only finished runs are drawn, one line (or panel) per variant
    (:func:`lifelong_kd.aggregate.finished_runs`). Rows that mean nothing for a run are left
    out (``joint`` with ``mode = final``: only its last row is drawn, and it has no
    forgetting bars). When some run records its model's costs (``costs.model``):
    ``accuracy_vs_parameters`` and ``accuracy_vs_flops`` (:func:`plot_accuracy_vs_cost`,
    each variant's final average accuracy against its parameters or FLOPs per example, and
    the teachers of those with a teacher block as hollow points). What each figure draws is
    bounded whatever the number of tasks; one figure exists at a time, closed after saving,
    also on an error. No ``formats``: no plots."""
    from .aggregate import finished_runs, has_model_costs
    from .metrics import last_row_only
    from .results import matrix_kinds, strategy_config

    runs = finished_runs(results)
    if not runs or not formats:
        return []
    kinds = list(dict.fromkeys(k for run in runs for k in matrix_kinds(run.result)))
    partial = {run.label for run in runs if len(run.result["accuracy_matrix"]) > 1
               and last_row_only(strategy_config(run.result)) is not None}
    paths: list[Path] = []
    with closing_figures():
        for kind in kinds:
            matrices: dict[str, list[np.ndarray]] = {}
            forgetting: dict[str, list[list[float]]] = {}
            for run in runs:
                matrix = matrix_kinds(run.result).get(kind)
                if matrix is None:
                    continue
                matrices.setdefault(run.label, []).append(
                    mask_rows(matrix.rows, strategy_config(run.result), len(matrix.rows)))
                forgetting.setdefault(run.label, []).append(matrix.per_task_forgetting)
            forgetting = {s: f for s, f in forgetting.items()
                          if s not in partial and len(matrices[s][0]) > 1}
            paths += _kind_plots(matrices, forgetting, kind, kind == kinds[0], len(kinds) > 1,
                                 Path(out_dir), formats)
            if has_model_costs(run.result for run in runs):
                paths += _cost_plots(runs, kind, kind == kinds[0], len(kinds) > 1,
                                     Path(out_dir), formats)
    return paths


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
    from .aggregate import model_costs
    from .results import matrix_kinds, teacher_kinds

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


def _cost_plots(
    runs: Sequence[Any], kind: str, main: bool, several: bool, out_dir: Path,
    formats: Sequence[str],
) -> list[Path]:
    """The accuracy-against-cost plots of one matrix kind (see :func:`comparison_plots`)."""
    paths: list[Path] = []
    suffix = "" if main else f"_{kind}"
    label = f" [{kind.replace('_', '-')}]" if several else ""
    for stem, (key, x_label) in COST_PLOTS.items():
        points = cost_points(runs, kind, key)
        if not points:
            continue
        title = (f"final average accuracy against {x_label}{label}\n(error bars: 95% CI "
                 "over seeds; dashed: Pareto front; hollow: teachers)")
        paths += save(plot_accuracy_vs_cost(points, x_label, title=title),
                      out_dir / f"{stem}{suffix}", formats)
    return paths


def _kind_plots(
    matrices: dict[str, list[np.ndarray]], forgetting: dict[str, list[list[float]]], kind: str,
    main: bool, several: bool, out_dir: Path, formats: Sequence[str],
) -> list[Path]:
    """The four comparison plots of one matrix kind (see :func:`comparison_plots`):
    ``matrices`` maps a variant to its runs' (masked) matrices, ``forgetting`` to their
    per-task forgetting."""
    paths: list[Path] = []
    suffix = "" if main else f"_{kind}"
    label = f" [{kind.replace('_', '-')}]" if several else ""
    means = {f"{s} (n={len(ms)})": np.mean(np.asarray(ms, dtype=float), axis=0)
             for s, ms in matrices.items()}
    paths += save(plot_accuracy_matrices(means, title="accuracy matrix (%), mean over seeds"
                                                      + label),
                  out_dir / f"accuracy_matrices{suffix}", formats)
    curves = {s: [seen_average_curve(m) for m in ms] for s, ms in matrices.items()}
    paths += save(plot_average_accuracy(curves, title="average accuracy on tasks seen "
                                                      "(band: 95% CI over seeds)" + label),
                  out_dir / f"average_accuracy{suffix}", formats)
    paths += save(plot_task_accuracies_by_strategy(
        matrices, title="accuracy on each task over the stream (band: 95% CI over seeds)"
                        + label),
        out_dir / f"task_accuracy{suffix}", formats)
    if forgetting:
        paths += save(plot_forgetting(forgetting, title="forgetting per task (Chaudhry "
                                                        "et al. 2018), 95% CI" + label),
                      out_dir / f"forgetting{suffix}", formats)
    return paths
