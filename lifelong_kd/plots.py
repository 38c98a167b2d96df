"""Figures for papers: every function takes ``ax=None`` and returns the figure.

Colours come from the Okabe-Ito palette (safe for colour-blind readers and in greyscale
print); axes are labelled; accuracies are shown in percent.

What a figure draws stays bounded whatever the number of tasks T (``n_tasks`` up to 1000 is
accepted): figures are at most :data:`MAX_INCHES` on a side, heat-map cells are labelled only
up to :data:`ANNOTATE_MAX_TASKS` tasks, at most :data:`MAX_TICKS` ticks label an axis, at
most :data:`MAX_PANELS` per-task panels and :data:`MAX_LINES` per-task lines are drawn (tasks
spread evenly over the stream, the first and the last included; the figure names the ones
shown), and per-task forgetting becomes one line per strategy past :data:`MAX_BARS` tasks.
A run's curves (``train.eval_every > 0``: each task's accuracy every few optimiser steps)
get :func:`plot_curves` (at most :data:`MAX_CURVE_PANELS` panels, :data:`MAX_SWITCHES`
switch lines) and, in a comparison, :func:`plot_stability_gap`.

The figures made here have a fixed layout, worked out once from the font sizes of what sits
around their axes (see :func:`_fit`), not matplotlib's constrained layout, which measures
every text again at each draw and took about as long as the draw itself (issue 17).
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

    from .metrics import Curves

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


def _legend(ax: Axes, fontsize: float = 8) -> float:
    """The axes' legend: inside (``best`` place) up to :data:`LEGEND_INSIDE_MAX` entries,
    else to the right of the axes in a smaller font, the figure made wider by the legend's
    width (one column per 30 entries). Returns the inches added (0 for a legend inside)."""
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) <= LEGEND_INSIDE_MAX:
        ax.legend(fontsize=fontsize)
        return 0.0
    ncol = -(-len(handles) // 30)
    fig = ax.figure
    added = _inches(4.2) * ncol
    fig.set_figwidth(fig.get_figwidth() + added)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              ncol=ncol)
    return added


def _axes(ax: Axes | None, size: tuple[float, float] = (5.0, 4.0)) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``size`` inches (capped) with one axes; a new
    figure gets its layout from the plot function (:func:`_fit`)."""
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = pyplot().figure(figsize=(_inches(size[0]), _inches(size[1])))
    return fig, fig.add_subplot()


def _panels(
    ax: Sequence[Axes] | None, n: int, ncols: int, panel: tuple[float, float],
    sharey: bool = True, sharex: bool = False,
) -> tuple[Figure, list[Axes]]:
    """``n`` axes: the given ones (at least ``n``), or a new grid of ``ncols`` columns whose
    unused cells are hidden (its layout from the plot function, :func:`_fit_grid`)."""
    if ax is not None:
        axes = list(ax)
        if len(axes) < n:
            raise ValueError(f"{n} axes needed, {len(axes)} given")
        return axes[0].figure, axes[:n]  # type: ignore[return-value]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = pyplot().figure(figsize=(_inches(panel[0] * ncols), _inches(panel[1] * nrows)))
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey, sharex=sharex)
    flat = list(grid.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    return fig, flat[:n]


# ----------------------------------------------------------------------------- fixed layout
#
# A figure made here gets a fixed layout: margins in inches worked out from the font sizes of
# what sits around its axes (tick labels, axis labels, titles, a colour bar, a legend) and
# set once (``subplots_adjust``). Matplotlib's constrained or tight layout measures every
# text at each draw, which takes about as long as the draw itself (issue 17: a run's plots
# made cheaply); what the figure shows is the same.

#: Blank space at a figure's edges (inches).
EDGE = 0.06
#: The height of a line of text, in multiples of its font size.
LINE_SPACING = 1.25
#: The width of a digit in DejaVu Sans (matplotlib's default font), in ems; a minus sign
#: (U+2212) is 0.84 em, a letter about 0.6 em on average.
DIGIT_EM = 0.64
MINUS_EM = 0.84
LETTER_EM = 0.6
#: What tick labels of 0..100 take (three digits), and of -100..100 (a minus and three).
PERCENT_EM = 3 * DIGIT_EM
SIGNED_PERCENT_EM = MINUS_EM + 3 * DIGIT_EM
#: The space right of axes whose last tick label may reach past them (inches), and right of
#: a colour bar's ticks and label.
RIGHT = 0.2
COLORBAR_RIGHT = EDGE + (PERCENT_EM * 10 + 3.5 + 3.5 + 4 + 10 * LINE_SPACING) / 72 + 0.05


def _points(size: Any) -> float:
    """A font size in points (``"large"`` and the like resolved against ``font.size``)."""
    from matplotlib.font_manager import FontProperties

    return float(FontProperties(size=size).get_size_in_points())


def _text_in(text: Any, pad_points: float = 0.0) -> float:
    """The height (inches) of a Text (axis label, title) and the pad before it; 0 if empty."""
    s = text.get_text()
    if not s:
        return 0.0
    return (s.count("\n") + 1) * text.get_fontsize() * LINE_SPACING / 72 + pad_points / 72


def _tick_in(axis: str, em: float | None = None, tall: bool = False) -> float:
    """What the tick marks and labels of an ``axis`` ("x" or "y") take out of the axes
    (inches): the tick length and pad, and the labels' height (x; ``tall``: powers of ten)
    or width (y: ``em`` ems)."""
    import matplotlib

    rc = matplotlib.rcParams
    size = _points(rc[f"{axis}tick.labelsize"])
    extent = size * (em if em is not None else LINE_SPACING * (1.4 if tall else 1.0))
    return (rc[f"{axis}tick.major.size"] + rc[f"{axis}tick.major.pad"] + extent) / 72


def _title_in(ax: Axes) -> float:
    import matplotlib

    return _text_in(ax.title, matplotlib.rcParams["axes.titlepad"])


def _label_in(label: Any) -> float:
    import matplotlib

    return _text_in(label, matplotlib.rcParams["axes.labelpad"])


def _place(fig: Figure, nrows: int, ncols: int, left: float, right: float, bottom: float,
           top: float, wspace: float = 0.0, hspace: float = 0.0) -> None:
    """Set the figure's grid of axes from margins and gaps in inches (each axes keeps at
    least a tenth of an inch)."""
    width, height = fig.get_size_inches()
    axes_w = max((width - left - right - wspace * (ncols - 1)) / ncols, 0.1)
    axes_h = max((height - bottom - top - hspace * (nrows - 1)) / nrows, 0.1)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace / axes_w, hspace=hspace / axes_h)


def _fit(fig: Figure, ax: Axes, tick_em: float = PERCENT_EM, right: float = RIGHT,
         tall_x: bool = False) -> None:
    """The fixed layout of a figure with one axes: room for its y tick labels (``tick_em``
    ems wide) and label, x tick labels (``tall_x``: powers of ten) and label, its title,
    and ``right`` inches on the right (a colour bar's, a legend's)."""
    left = EDGE + _label_in(ax.yaxis.label) + _tick_in("y", tick_em)
    bottom = EDGE + _label_in(ax.xaxis.label) + _tick_in("x", tall=tall_x)
    _place(fig, 1, 1, left, right, bottom, EDGE + _title_in(ax))


def _suptitle(fig: Figure, text: str, fontsize: float) -> float:
    """Set the figure's title (the figure widened to hold its longest line, up to
    :data:`MAX_INCHES`); return the height it takes (inches)."""
    widest = max(len(line) for line in text.split("\n")) * LETTER_EM * fontsize / 72 + 2 * EDGE
    if widest > fig.get_figwidth():
        fig.set_figwidth(_inches(widest))
    fig.suptitle(text, fontsize=fontsize, y=1 - EDGE / fig.get_size_inches()[1], va="top")
    return (text.count("\n") + 1) * fontsize * LINE_SPACING / 72 + 0.06


def _bottom_legend(fig: Figure, ncol: int, fontsize: float = 8) -> float:
    """A figure legend of every labelled line, centred at the bottom edge; return the height
    it takes (inches)."""
    handles, labels = [], []
    for a in fig.axes:
        for h, label in zip(*a.get_legend_handles_labels(), strict=True):
            handles.append(h)
            labels.append(label)
    if not handles:
        return 0.0
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=fontsize,
               bbox_to_anchor=(0.5, EDGE / fig.get_size_inches()[1]), borderaxespad=0)
    rows = -(-len(handles) // ncol)
    return (rows * LINE_SPACING + (rows - 1) * 0.5 + 0.8) * fontsize / 72 + 0.1


def _fit_grid(fig: Figure, axes: Sequence[Axes], ncols: int, top: float = 0.0,
              bottom: float = 0.0, right: float = RIGHT, tick_em: float = PERCENT_EM,
              inner_y: bool = False, inner_x: bool = True) -> None:
    """The fixed layout of a grid of panels (``axes`` in rows of ``ncols``): ``top`` and
    ``bottom`` inches taken by a figure title and legend, room for each panel's title,
    x tick labels (on every row, or only the last, ``inner_x = False``) and labels, y tick
    labels (``tick_em`` ems; on every column with ``inner_y``, else only the first) and
    labels, and ``right`` inches on the right."""
    nrows = math.ceil(len(axes) / ncols)
    rows = [list(axes[r * ncols:(r + 1) * ncols]) for r in range(nrows)]
    title = max((_title_in(a) for a in axes), default=0.0)
    ylabel = max((_label_in(a.yaxis.label) for a in axes), default=0.0)
    upper_xlabel = max((_label_in(a.xaxis.label) for row in rows[:-1] for a in row),
                       default=0.0)
    xlabel = max((_label_in(a.xaxis.label) for a in axes), default=0.0)
    left = EDGE + ylabel + _tick_in("y", tick_em)
    wspace = 0.12 + (ylabel + _tick_in("y", tick_em) if inner_y else ylabel)
    hspace = 0.1 + title + upper_xlabel + (_tick_in("x") if inner_x else 0.0)
    _place(fig, nrows, ncols, left, right, EDGE + bottom + xlabel + _tick_in("x"),
           EDGE + top + title, wspace, hspace)


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
    """Column means of ``values`` (seeds x points; nan: a seed without the point) over the
    seeds that have each point, and the band around them: the 95% confidence interval of the
    mean (Student's t, ``ci95``: mean +- t_{0.975, n-1} s / sqrt(n), as
    :func:`lifelong_kd.stats.mean_ci`) or +- one standard deviation (``std``), s the sample
    standard deviation (ddof = 1) of the column's n values, clipped to ``bounds`` (what the
    quantity can take, e.g. [0, 100] for an accuracy in percent; see
    :func:`lifelong_kd.stats.clip_interval`). The band is nan with one seed (n < 2); every
    column is done at once (one t quantile per n)."""
    values = np.asarray(values, dtype=float)
    have = ~np.isnan(values)
    n = have.sum(axis=0)
    total = np.where(have, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        squares = np.where(have, (values - mean) ** 2, 0.0).sum(axis=0)
        sd = np.sqrt(squares / (n - 1))
    nan = np.full_like(mean, np.nan)
    if not (n >= 2).any():
        return mean, nan, nan.copy()
    if band == "std":
        half = sd
    else:
        from .stats import LEVEL, t_quantile

        t = np.full(mean.shape, np.nan)
        for k in np.unique(n[n >= 2]):
            t[n == k] = t_quantile((1 + LEVEL) / 2, int(k) - 1)
        half = t * sd / np.sqrt(np.maximum(n, 1))
    half = np.where(n >= 2, half, np.nan)
    lo, hi = mean - half, mean + half
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
    own = ax is None
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
    if own:
        _fit(fig, ax, DIGIT_EM * len(str(rows)), COLORBAR_RIGHT if colorbar else RIGHT)
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
    own = ax is None
    fig, axes = _panels(ax, n, 4, (side, side), sharey=False)
    for a, (name, m) in zip(axes, matrices.items(), strict=True):
        plot_accuracy_matrix(m, ax=a, title=name, colorbar=False)
    for a in axes[1:]:
        a.set_ylabel("")
    top = 0.0
    if title and own:
        top = _suptitle(fig, title, _points("large"))
    elif title:
        fig.suptitle(title)
    if own:
        _fit_grid(fig, axes, max(1, min(4, n)), top=top, right=COLORBAR_RIGHT,
                  tick_em=DIGIT_EM * len(str(t)), inner_y=True)
    if axes:
        fig.colorbar(axes[0].images[0], ax=axes, label="accuracy (%)", shrink=0.8)
    return fig


def plot_task_accuracies(
    matrix: Sequence[Sequence[float]], ax: Axes | None = None, title: str = ""
) -> Figure:
    """Each task's accuracy as the stream goes on: one line per task, from when it is learnt
    (at most :data:`MAX_LINES` tasks, spread over the stream; the title names them)."""
    m = np.asarray(matrix, dtype=float) * 100.0
    shown = shown_tasks(m.shape[1], MAX_LINES)
    own = ax is None
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
    if own:
        _fit(fig, ax)
    return fig


def _finish_panels(fig: Figure, axes: Sequence[Axes], own: bool, legend: bool, n: int,
                   title: str, ncols: int, inner_x: bool = True) -> Figure:
    """Title and legend (``n`` entries, at most 4 a row, below the panels when ``legend``) of
    a figure of panels: laid out by :func:`_fit_grid` when this module made the figure
    (``own``), else left to the figure's own layout engine."""
    if not own:
        if legend:
            fig.legend(loc="outside lower center", ncol=min(n, 4), fontsize=8)
        fig.suptitle(title, fontsize=10)
        return fig
    bottom = _bottom_legend(fig, min(n, 4)) if legend else 0.0
    _fit_grid(fig, axes, ncols, top=_suptitle(fig, title, 10), bottom=bottom, inner_x=inner_x)
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
    own = ax is None
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
    title = title or (f"accuracy on each task over the stream (band: {_band_label(band)} "
                      "over seeds)")
    if len(shown) < t:
        title += "\n" + _left_out(shown, t, "panels")
    return _finish_panels(fig, axes, own, bool(axes), len(data), title, ncols)


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
    own = ax is None
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
    beside = _legend(ax, fontsize=8)
    if own:
        _fit(fig, ax, right=RIGHT + beside)
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
    own = ax is None
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
    beside = _legend(ax, fontsize=8) if names else 0.0
    if own:
        _fit(fig, ax, SIGNED_PERCENT_EM, RIGHT + beside)
    return fig


# ----------------------------------------------------------------------------- curves
#
# Continual evaluation (De Lange, van de Ven & Tuytelaars 2023, "Continual evaluation for
# lifelong learning: identifying the stability gap", ICLR): a run trained with
# ``train.eval_every > 0`` records ``result["curves"]``, rows [step, trained, evaluated,
# accuracy] (the run's optimiser steps so far, the task being trained, the task evaluated,
# its accuracy in [0, 1]) in time order; ``result["continual"]`` holds their metrics.

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
    t = max((int(row[2]) for row in rows), default=0) + 1
    last = max((float(row[0]) for row in rows), default=0.0)
    shown = shown_tasks(t, MAX_CURVE_PANELS)
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
    if len(shown) < t:
        title += "\n" + _left_out(shown, t, "panels")
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
    from .stats import describe

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


def mask_rows(matrix: Sequence[Sequence[float]], last_row_only: str | None,
              n_tasks: int) -> np.ndarray:
    """The matrix with nan in the rows that mean nothing for the run, so that plots leave
    them out: under ``last_row_only`` (the setting under which its strategy trains nothing
    before the last task, :func:`lifelong_kd.results.last_row_only`; ``joint`` with
    ``mode = final``) every row but the last, and every row while such a run has not
    finished. None: the matrix as it is."""
    m = np.array(matrix, dtype=float)
    if n_tasks > 1 and last_row_only is not None:
        m[: (n_tasks - 1 if len(m) == n_tasks else len(m))] = np.nan
    return m


def run_plots(result: dict, out_dir: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """The plots of one run: matrix heatmap, per-task accuracies, average accuracy, forgetting,
    and for a run with curves (``train.eval_every > 0``) ``curves`` (:func:`plot_curves`).

    ``result`` is checked first (:func:`lifelong_kd.results.validate_result`: a UserError
    naming ``out_dir/result.json`` when it is not a well-formed result). Rows that mean
    nothing (``joint`` with ``mode = final`` before its last task) are left out, and such a
    run gets no forgetting plot.
    """
    from .results import last_row_only, matrix_kinds, validate_result

    out_dir = Path(out_dir)
    validate_result(result, out_dir / "result.json")
    rows = result["accuracy_matrix"]
    if not rows:
        return []
    name = result["strategy"]
    t = int(result["n_tasks"])
    setting = last_row_only(result)
    partial = t > 1 and setting is not None
    m = mask_rows(rows, setting, t)
    if np.isnan(m).all():
        return []
    note = f" (last row only: {setting.removeprefix('strategy.')})" if partial and setting else ""
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
        curves = result.get("curves")
        if curves:
            paths += save(plot_curves({name: [curves]},
                                      title=f"{name}: accuracy on each task during training "
                                            "(dashed: task switches)"),
                          out_dir / CURVE_PLOTS[0], formats)
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
    the teachers of those with a teacher block as hollow points). When some run has curves
    (``train.eval_every > 0``): ``curves`` (:func:`plot_curves`, each task's accuracy against
    the training step, variants overlaid) and ``stability_gap`` (:func:`plot_stability_gap`,
    each variant's gap depth), from the runs with curves. What each figure draws is
    bounded whatever the number of tasks; one figure exists at a time, closed after saving,
    also on an error. No ``formats``: no plots."""
    from .aggregate import finished_runs, has_model_costs
    from .results import last_row_only, matrix_kinds

    runs = finished_runs(results)
    if not runs or not formats:
        return []
    kinds = list(dict.fromkeys(k for run in runs for k in matrix_kinds(run.result)))
    partial = {run.label for run in runs if len(run.result["accuracy_matrix"]) > 1
               and last_row_only(run.result) is not None}
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
                    mask_rows(matrix.rows, last_row_only(run.result), len(matrix.rows)))
                forgetting.setdefault(run.label, []).append(matrix.per_task_forgetting)
            forgetting = {s: f for s, f in forgetting.items()
                          if s not in partial and len(matrices[s][0]) > 1}
            paths += _kind_plots(matrices, forgetting, kind, kind == kinds[0], len(kinds) > 1,
                                 Path(out_dir), formats)
            if has_model_costs(run.result for run in runs):
                paths += _cost_plots(runs, kind, kind == kinds[0], len(kinds) > 1,
                                     Path(out_dir), formats)
        if any(run.result.get("curves") for run in runs):
            paths += _curve_plots(runs, Path(out_dir), formats)
    return paths


def _curve_plots(runs: Sequence[Any], out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """The curve plots of a comparison (see :func:`comparison_plots`): the variants' curves
    and their gap depths (:func:`lifelong_kd.aggregate.continual_values`: nan for a run whose
    curves mean nothing before its last task), from the runs that have curves."""
    from .aggregate import continual_values

    curves: dict[str, list[Curves]] = {}
    depths: dict[str, list[float]] = {}
    for run in runs:
        if not run.result.get("curves"):
            continue
        curves.setdefault(run.label, []).append(run.result["curves"])
        depths.setdefault(run.label, []).append(
            continual_values(run.result)["gap_depth"])
    title = ("accuracy on each task during training (band: 95% CI over seeds; dashed: task "
             "switches)")
    paths = save(plot_curves(curves, title=title), out_dir / CURVE_PLOTS[0], formats)
    paths += save(plot_stability_gap(depths), out_dir / CURVE_PLOTS[1], formats)
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
