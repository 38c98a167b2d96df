"""Figures for papers: every function takes ``ax=None`` and returns the figure.

Colours come from the Okabe-Ito palette (safe for colour-blind readers and in greyscale
print); axes are labelled; accuracies are shown in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Okabe & Ito 2008, "Color universal design".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")


def _axes(ax: Axes | None, size: tuple[float, float] = (5.0, 4.0)) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = plt.subplots(figsize=size, layout="constrained")
    return fig, new_ax


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def plot_accuracy_matrix(
    matrix: Sequence[Sequence[float]], ax: Axes | None = None, title: str = "",
    vmin: float = 0.0, vmax: float = 100.0,
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
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    ax.set_title(title or "accuracy matrix (%)")
    fig.colorbar(im, ax=ax, label="accuracy (%)")
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
    +- one standard deviation (``band = "std"``), as in van de Ven et al.'s figures.
    """
    fig, ax = _axes(ax)
    for i, (name, per_seed) in enumerate(curves.items()):
        c = np.asarray(per_seed, dtype=float) * 100.0
        x = np.arange(1, c.shape[1] + 1)
        mean = c.mean(axis=0)
        ax.plot(x, mean, marker="o", ms=3, color=colour(i), label=f"{name} (n={len(c)})")
        if len(c) > 1:
            if band == "std":
                lo, hi = mean - c.std(axis=0, ddof=1), mean + c.std(axis=0, ddof=1)
            else:
                from .stats import mean_ci

                lo, hi = np.transpose([mean_ci(c[:, k])[1:] for k in range(c.shape[1])])
            ax.fill_between(x, lo, hi, color=colour(i), alpha=0.2, linewidth=0)
        ax.set_xticks(x)
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("average accuracy on tasks seen (%)")
    ax.set_ylim(0, 101)
    label = "95% CI" if band == "ci95" else "+-1 std"
    ax.set_title(title or f"average accuracy (band: {label} over seeds)")
    ax.legend(fontsize=8)
    return fig


def plot_forgetting(
    per_task: Mapping[str, Sequence[Sequence[float]]], ax: Axes | None = None, title: str = ""
) -> Figure:
    """Forgetting per task (Chaudhry et al. 2018) as grouped bars, one colour per strategy,
    with the standard deviation over seeds as error bars."""
    fig, ax = _axes(ax, (6.0, 4.0))
    names = list(per_task)
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        f = np.asarray(per_task[name], dtype=float) * 100.0
        if f.size == 0:
            continue
        x = np.arange(1, f.shape[1] + 1)
        err = f.std(axis=0, ddof=1) if len(f) > 1 else None
        ax.bar(x + (i - (len(names) - 1) / 2) * width, f.mean(axis=0), width, yerr=err,
               color=colour(i), label=name, capsize=2)
    ax.set_xlabel("task")
    ax.set_ylabel("forgetting (percentage points)")
    ax.set_title(title or "forgetting per task (Chaudhry et al. 2018)")
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
