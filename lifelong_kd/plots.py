"""Figures for papers: every function takes ``ax=None`` and returns the figure.

Colours come from the Okabe-Ito palette (safe for colour-blind readers and in greyscale
print); axes are labelled; accuracies are shown in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Okabe & Ito 2008, "Color universal design".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _axes(ax: Axes | None, size: tuple[float, float] = (5.0, 4.0)) -> tuple[Figure, Axes]:
    plt = pyplot()
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = plt.subplots(figsize=size, layout="constrained")
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
    fig, grid = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
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


def _mean_band(values: np.ndarray, band: str = "ci95") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``values`` (seeds x points) and the band around them: the 95%
    confidence interval of the mean (Student's t, ``ci95``) or +- one standard deviation
    (``std``). The band is nan with one seed."""
    mean = values.mean(axis=0)
    if len(values) < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    if band == "std":
        sd = values.std(axis=0, ddof=1)
        return mean, mean - sd, mean + sd
    from .stats import mean_ci

    lo, hi = np.transpose([mean_ci(values[:, k])[1:] for k in range(values.shape[1])])
    return mean, lo, hi


def _band_label(band: str) -> str:
    return "95% CI" if band == "ci95" else "+-1 std"


def plot_accuracy_matrix(
    matrix: Sequence[Sequence[float]], ax: Axes | None = None, title: str = "",
    vmin: float = 0.0, vmax: float = 100.0, colorbar: bool = True,
) -> Figure:
    """Annotated heatmap of R (in %): row i = after training task i, column j = task j."""
    m = np.asarray(matrix, dtype=float) * 100.0
    fig, ax = _axes(ax, (0.6 * m.shape[1] + 2.5, 0.5 * m.shape[0] + 2.0))
    im = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    if m.size <= 400:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if v < (vmin + vmax) / 2 else "black")
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    ax.set_xticks(range(m.shape[1]), [str(j + 1) for j in range(m.shape[1])])
    ax.set_yticks(range(m.shape[0]), [str(i + 1) for i in range(m.shape[0])])
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
    side = 0.45 * t + 1.6
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
    """Each task's accuracy as the stream goes on: one line per task, from when it is learnt."""
    m = np.asarray(matrix, dtype=float) * 100.0
    fig, ax = _axes(ax)
    x = np.arange(1, m.shape[0] + 1)
    for j in range(m.shape[1]):
        ax.plot(x[j:], m[j:, j], marker="o", ms=3, color=colour(j), label=f"task {j + 1}")
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(x)
    ax.set_ylim(0, 101)
    ax.set_title(title or "accuracy on each task")
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
    confidence interval of the mean, or +- one standard deviation with ``band = "std"``).
    ``ax``, when given, is a sequence of T axes.
    """
    data = {name: np.asarray(ms, dtype=float) * 100.0 for name, ms in matrices.items()}
    t = max((d.shape[1] for d in data.values()), default=1)
    fig, axes = _panels(ax, t, 5, (2.6, 2.3))
    ncols = min(5, t)
    for j, a in enumerate(axes):
        for i, (name, d) in enumerate(data.items()):
            x = np.arange(j + 1, d.shape[1] + 1)
            mean, lo, hi = _mean_band(d[:, j:, j], band)
            a.plot(x, mean, marker=marker(i), ms=4, color=colour(i), alpha=0.9,
                   label=f"{name} (n={len(d)})" if j == 0 else None)
            if len(d) > 1:
                a.fill_between(x, lo, hi, color=colour(i), alpha=0.2, linewidth=0)
        a.set_title(f"task {j + 1}", fontsize=9)
        a.set_xticks(np.arange(1, t + 1))
        a.set_xlim(0.5, t + 0.5)
        a.set_ylim(0, 101)
        if ax is not None or j >= t - ncols:
            a.set_xlabel("tasks trained")
        if ax is not None or j % ncols == 0:
            a.set_ylabel("accuracy (%)")
    if axes:
        fig.legend(loc="outside lower center", ncol=min(len(data), 4), fontsize=8)
    fig.suptitle(title or f"accuracy on each task over the stream (band: {_band_label(band)} "
                          "over seeds)", fontsize=10)
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
    (van de Ven, Tuytelaars & Tolias 2022, "Three types of incremental learning").
    """
    fig, ax = _axes(ax, (6.0, 4.0))
    for i, (name, per_seed) in enumerate(curves.items()):
        c = np.asarray(per_seed, dtype=float) * 100.0
        x = np.arange(1, c.shape[1] + 1)
        mean, lo, hi = _mean_band(c, band)
        ax.plot(x, mean, marker=marker(i), ms=4, color=colour(i), alpha=0.9,
                label=f"{name} (n={len(c)})")
        if len(c) > 1:
            ax.fill_between(x, lo, hi, color=colour(i), alpha=0.2, linewidth=0)
        ax.set_xticks(x)
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("average accuracy on tasks seen (%)")
    ax.set_ylim(0, 101)
    ax.set_title(title or f"average accuracy (band: {_band_label(band)} over seeds)",
                 fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_forgetting(
    per_task: Mapping[str, Sequence[Sequence[float]]], ax: Axes | None = None, title: str = "",
    band: str = "ci95",
) -> Figure:
    """Forgetting per task (Chaudhry et al. 2018, eq. 2: max_{j<=l<=T-2} R[l][j] - R[T-1][j])
    as grouped bars, one colour per strategy: the mean over seeds, with error bars of the 95%
    confidence interval of the mean (or +- one standard deviation with ``band = "std"``).

    ``per_task`` maps a strategy to its per-seed vectors (see
    :func:`lifelong_kd.metrics.per_task_forgetting`), for tasks 1 .. T-1.
    """
    fig, ax = _axes(ax, (6.0, 4.0))
    names = list(per_task)
    width = 0.8 / max(len(names), 1)
    ticks: np.ndarray = np.arange(0)
    for i, name in enumerate(names):
        f = np.asarray(per_task[name], dtype=float) * 100.0
        if f.size == 0:
            continue
        x = np.arange(1, f.shape[1] + 1)
        ticks = x if len(x) > len(ticks) else ticks
        mean, lo, hi = _mean_band(f, band)
        err = np.vstack([mean - lo, hi - mean]) if len(f) > 1 else None
        ax.bar(x + (i - (len(names) - 1) / 2) * width, mean, width, yerr=err,
               color=colour(i), label=f"{name} (n={len(f)})", capsize=2,
               error_kw={"elinewidth": 0.8})
    ax.set_xticks(ticks)
    ax.set_xlabel("task")
    ax.set_ylabel("forgetting (percentage points)")
    ax.set_title(title or "forgetting per task (Chaudhry et al. 2018; error bars: "
                          f"{_band_label(band)})", fontsize=10)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8)
    return fig


def save(fig: Figure, path: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; close it; return the paths."""
    import matplotlib.pyplot as plt

    from .results import atomic_path

    out = []
    for fmt in formats:
        target = Path(path).with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
        out.append(target)
    plt.close(fig)
    return out


def run_plots(result: dict, out_dir: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """The plots of one run: matrix heatmap, per-task accuracies, average accuracy, forgetting."""
    rows = result["accuracy_matrix"]
    if not rows:
        return []
    name = result["strategy"]
    paths = []
    paths += save(plot_accuracy_matrix(rows, title=f"{name}: accuracy matrix (%)"),
                  out_dir / "accuracy_matrix", formats)
    paths += save(plot_task_accuracies(rows, title=f"{name}: accuracy on each task"),
                  out_dir / "task_accuracy", formats)
    k = len(rows)
    square = [r[:k] for r in rows]
    paths += save(plot_average_accuracy({name: [seen_average_curve(square)]}),
                  out_dir / "average_accuracy", formats)
    if k > 1:
        paths += save(plot_forgetting({name: [result["per_task_forgetting"]]}),
                      out_dir / "forgetting", formats)
    return paths
