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
around their axes (see :func:`lifelong_kd.plots.layout._fit`), not matplotlib's constrained
layout, which measures every text again at each draw and took about as long as the draw
itself (issue 17).
:func:`run_plots` and :func:`comparison_plots` make one figure at a time and close it after
saving it, also when drawing or saving fails. They read the stored results (matrices and
per-task forgetting from result.json, through :mod:`lifelong_kd.aggregate` for a comparison);
the ``plot_*`` functions draw what they are given.

The package: ``layout.py`` (``pyplot()``, the fixed layout, colours and markers),
``figures.py`` (the accuracy matrix, task accuracies, average accuracy, forgetting),
``curves.py`` (continual evaluation: curves and the stability gap), ``costs.py`` (accuracy
against cost) and, here, the entry points that read stored results and save the figures
(:func:`run_plots`, :func:`comparison_plots`, :func:`save`), with the public names of the
modules re-exported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .costs import COST_PLOTS, LABEL_MAX_POINTS, CostPoint, cost_points, pareto_front, plot_accuracy_vs_cost
from .curves import (
    CURVE_PLOTS,
    MAX_CURVE_PANELS,
    MAX_SWITCHES,
    align_curves,
    plot_curves,
    plot_stability_gap,
    task_switches,
)
from .figures import (
    ANNOTATE_MAX_TASKS,
    MAX_BARS,
    MAX_LINES,
    MAX_PANELS,
    plot_accuracy_matrices,
    plot_accuracy_matrix,
    plot_average_accuracy,
    plot_forgetting,
    plot_task_accuracies,
    plot_task_accuracies_by_strategy,
    seen_average_curve,
)
from .layout import (
    ACCURACY_BOUNDS,
    DIFFERENCE_BOUNDS,
    LEGEND_INSIDE_MAX,
    MARKERS,
    MAX_INCHES,
    MAX_TICKS,
    PALETTE,
    colour,
    marker,
    pyplot,
    shown_tasks,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..metrics import Curves

__all__ = [
    "ACCURACY_BOUNDS", "ANNOTATE_MAX_TASKS", "COST_PLOTS", "CURVE_PLOTS", "DIFFERENCE_BOUNDS",
    "LABEL_MAX_POINTS", "LEGEND_INSIDE_MAX", "MARKERS", "MAX_BARS", "MAX_CURVE_PANELS",
    "MAX_INCHES", "MAX_LINES", "MAX_PANELS", "MAX_SWITCHES", "MAX_TICKS", "PALETTE", "CostPoint",
    "align_curves", "closing_figures", "colour", "comparison_plots", "cost_points", "marker",
    "mask_rows", "pareto_front", "plot_accuracy_matrices", "plot_accuracy_matrix",
    "plot_accuracy_vs_cost", "plot_average_accuracy", "plot_curves", "plot_forgetting",
    "plot_stability_gap", "plot_task_accuracies", "plot_task_accuracies_by_strategy", "pyplot",
    "run_plots", "save", "seen_average_curve", "shown_tasks", "task_switches",
]


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

    from ..results import atomic_path

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
    from ..results import last_row_only, matrix_kinds, validate_result

    out_dir = Path(out_dir)
    validate_result(result, out_dir / "result.json")
    rows = result["accuracy_matrix"]
    if not rows:
        return []
    name = result["strategy"]
    n_tasks = int(result["n_tasks"])
    setting = last_row_only(result)
    partial = n_tasks > 1 and setting is not None
    m = mask_rows(rows, setting, n_tasks)
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
    from ..aggregate import finished_runs, has_model_costs
    from ..results import last_row_only, matrix_kinds

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
    from ..aggregate import continual_values

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
