"""The accuracy figures: the accuracy matrix (one run's, or the strategies' side by side),
each task's accuracy over the stream (one run's lines, or one panel per task with the
strategies overlaid), the average accuracy on the tasks seen, and forgetting per task; and
the mean over seeds with its band (:func:`_mean_band`) that every figure over seeds draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .layout import (
    ACCURACY_BOUNDS,
    COLORBAR_RIGHT,
    DIFFERENCE_BOUNDS,
    DIGIT_EM,
    RIGHT,
    SIGNED_PERCENT_EM,
    _axes,
    _finish_panels,
    _fit,
    _fit_grid,
    _left_out,
    _legend,
    _panels,
    _points,
    _suptitle,
    _task_ticks,
    colour,
    marker,
    shown_tasks,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Heat-map cells get their value written in them only up to this many tasks (rows, columns).
ANNOTATE_MAX_TASKS = 20
#: At most this many per-task panels (one per task) in a figure.
MAX_PANELS = 10
#: At most this many per-task lines (one per task) in a figure: one colour each.
MAX_LINES = 8
#: Per-task forgetting is drawn as grouped bars up to this many tasks, as lines beyond.
MAX_BARS = 30


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
        from ..stats import LEVEL, t_quantile

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
    n_tasks = max((len(np.asarray(m)) for m in matrices.values()), default=1)
    side = min(0.45 * n_tasks + 1.6, 4.5)
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
                  tick_em=DIGIT_EM * len(str(n_tasks)), inner_y=True)
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
    n_tasks = max((d.shape[1] for d in data.values()), default=1)
    shown = shown_tasks(n_tasks, MAX_PANELS)
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
        _task_ticks(a, n_tasks, at_most=6)
        a.set_xlim(0.5, n_tasks + 0.5)
        a.set_ylim(0, 101)
        if ax is not None or k >= len(shown) - ncols:
            a.set_xlabel("tasks trained")
        if ax is not None or k % ncols == 0:
            a.set_ylabel("accuracy (%)")
    title = title or (f"accuracy on each task over the stream (band: {_band_label(band)} "
                      "over seeds)")
    if len(shown) < n_tasks:
        title += "\n" + _left_out(shown, n_tasks, "panels")
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
