"""The figures' shared vocabulary and their fixed layout: ``pyplot()`` (the Agg backend), the
bounds of what a figure draws (:data:`MAX_INCHES`, :data:`MAX_TICKS`), task ticks and the
tasks shown, legends, new axes and grids of panels, the margins worked out from font sizes
(:func:`_fit`, :func:`_fit_grid`), and the Okabe-Ito colours and the markers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: At most this many ticks label an axis of tasks.
MAX_TICKS = 12
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


def shown_tasks(n_tasks: int, at_most: int) -> list[int]:
    """At most ``at_most`` of the task indices 0..n_tasks-1, spread evenly, the first and the last
    included (all of them when n_tasks <= at_most)."""
    if n_tasks <= at_most:
        return list(range(n_tasks))
    return sorted({round(k * (n_tasks - 1) / (at_most - 1)) for k in range(at_most)})


def _left_out(shown: Sequence[int], n_tasks: int, what: str) -> str:
    """The note a figure carries when it shows only some tasks (1-based names)."""
    return f"{what} for {len(shown)} of {n_tasks} tasks: " + ", ".join(str(j + 1) for j in shown)


def _task_ticks(ax: Axes, n_tasks: int, axis: str = "x", first: int = 1,
                at_most: int = MAX_TICKS) -> None:
    """Ticks at no more than ``at_most`` of the positions first, ..., first + n_tasks - 1,
    labelled with their task numbers 1..n_tasks."""
    shown = shown_tasks(n_tasks, min(at_most, MAX_TICKS))
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


#: The least width and height of an axes, in inches, before its figure grows (to GROWN_AXES).
MIN_AXES = 0.5
GROWN_AXES = 1.5


def _place(fig: Figure, nrows: int, ncols: int, left: float, right: float, bottom: float,
           top: float, wspace: float = 0.0, hspace: float = 0.0) -> None:
    """Set the figure's grid of axes from margins and gaps in inches. The figure grows where
    the margins would leave an axes less than :data:`MIN_AXES` inches (a legend of many
    variants below a grid of panels): each axes then gets :data:`GROWN_AXES` inches."""
    width, height = fig.get_size_inches()
    axes_w = (width - left - right - wspace * (ncols - 1)) / ncols
    axes_h = (height - bottom - top - hspace * (nrows - 1)) / nrows
    if axes_w < MIN_AXES or axes_h < MIN_AXES:
        if axes_w < MIN_AXES:
            axes_w = GROWN_AXES
            width = left + right + wspace * (ncols - 1) + ncols * axes_w
        if axes_h < MIN_AXES:
            axes_h = GROWN_AXES
            height = bottom + top + hspace * (nrows - 1) + nrows * axes_h
        fig.set_size_inches(width, height)
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
