"""Plots of continual evaluation (issue 18: each task's accuracy against the training step,
the stability gap's depth) and the fixed layout that makes a run's plots cheap (issue 17):
hand-made curves, hand-computed means and bands, every text inside its figure and clear of
the other axes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_hex

from lifelong_kd import plots
from lifelong_kd.plots.figures import _mean_band

from .test_report import fake_result

T975_1 = 12.706204736  # t_{0.975, 1}: two seeds
T975_2 = 4.302652730  # t_{0.975, 2}: three seeds

#: Strategy A's evaluations, (task trained, step) in time order (eval_every = 2, tasks of 4
#: steps): the end point of task 0 and the start point of task 1 share step 4, and so on.
A_POINTS = [(0, 0), (0, 2), (0, 4), (1, 4), (1, 6), (1, 8), (2, 8), (2, 10)]
#: Task 0's accuracy at each of A's points, per seed (in [0, 1]).
A_TASK0 = [
    [0.1, 0.6, 0.9, 0.9, 0.5, 0.7, 0.7, 0.4],
    [0.1, 0.7, 0.9, 0.9, 0.4, 0.8, 0.8, 0.5],
    [0.1, 0.8, 0.9, 0.9, 0.6, 0.9, 0.9, 0.6],
]
#: Strategy B: its first task takes 3 steps (switches at 3 and 7, A's at 4 and 8).
B_POINTS = [(0, 0), (0, 2), (0, 3), (1, 3), (1, 5), (1, 7), (2, 7), (2, 9)]
B_TASK0 = [0.2, 0.5, 0.8, 0.8, 0.3, 0.6, 0.6, 0.5]


def make_curves(points: list[tuple[int, int]], task0: list[float], seed: int = 0) -> list[list[float]]:
    """Rows [step, trained, evaluated, accuracy] in the contract's order: at each point every
    task trained so far; task 0 from ``task0``, task j >= 1 at 0.1 * (seed + 1) + 0.05 * n
    (n = the point's index since task j started)."""
    rows: list[list[float]] = []
    start: dict[int, int] = {}
    for n, ((trained, step), a0) in enumerate(zip(points, task0, strict=True)):
        start.setdefault(trained, n)
        rows.append([step, trained, 0, a0])
        for j in range(1, trained + 1):
            rows.append([step, trained, j, round(0.1 * (seed + 1) + 0.05 * (n - start[j]), 4)])
    return rows


def a_curves() -> list[list[list[float]]]:
    return [make_curves(A_POINTS, a, seed) for seed, a in enumerate(A_TASK0)]


def b_curves() -> list[list[list[float]]]:
    return [make_curves(B_POINTS, B_TASK0)]


def visible_axes(fig: Any) -> list[Any]:
    return [a for a in fig.axes if a.get_visible()]


def band_at(ax: Any, x: float, which: int = 0) -> tuple[float, float]:
    """The lowest and highest y of the ``which``-th band of ``ax`` at ``x``."""
    vertices = ax.collections[which].get_paths()[0].vertices
    ys = vertices[np.isclose(vertices[:, 0], x), 1]
    return float(ys.min()), float(ys.max())


# ----------------------------------------------------------------------------- data


def test_task_switches_are_the_start_points_of_tasks_1_and_on() -> None:
    assert plots.task_switches(a_curves()[0]) == {1: 4, 2: 8}
    assert plots.task_switches(b_curves()[0]) == {1: 3, 2: 7}
    assert plots.task_switches([]) == {}
    assert plots.task_switches(make_curves([(0, 0), (0, 2)], [0.1, 0.2])) == {}


def test_align_curves_keeps_the_switch_points_apart_and_marks_missing_ones() -> None:
    steps, values = plots.align_curves(a_curves(), 0)
    assert steps.tolist() == [0, 2, 4, 4, 6, 8, 8, 10]
    assert values == pytest.approx(100 * np.array(A_TASK0))
    # task 2: from its start point on (step 8), 0.1 (seed + 1) + 0.05 n
    steps, values = plots.align_curves(a_curves(), 2)
    assert steps.tolist() == [8, 10]
    assert values == pytest.approx(np.array([[10.0, 15.0], [20.0, 25.0], [30.0, 35.0]]))
    # a seed that stopped early: nan where it has no evaluation
    short = a_curves()
    short[1] = [row for row in short[1] if row[0] <= 6]
    steps, values = plots.align_curves(short, 0)
    assert steps.tolist() == [0, 2, 4, 4, 6, 8, 8, 10]
    assert np.isnan(values[1, 5:]).all() and values[1, :5] == pytest.approx([10, 70, 90, 90, 40])
    # two evaluations at one step within one task (a task that took no step) stay two columns
    twice = [[0, 0, 0, 0.1], [0, 0, 0, 0.3], [0, 1, 0, 0.3], [0, 1, 1, 0.2]]
    steps, values = plots.align_curves([twice], 0)
    assert steps.tolist() == [0, 0, 0] and values[0] == pytest.approx([10, 30, 30])
    steps, values = plots.align_curves([[]], 0)
    assert steps.shape == (0,) and values.shape == (1, 0)


def test_mean_band_over_the_seeds_that_have_each_point() -> None:
    values = np.array([[60.0, 50.0, 10.0, np.nan],
                       [70.0, 70.0, np.nan, np.nan],
                       [80.0, np.nan, np.nan, np.nan]])
    mean, lo, hi = _mean_band(values, "ci95", (0.0, 100.0))
    # column 0: 60, 70, 80: mean 70, s = 10, half = t2 * 10 / sqrt(3)
    # column 1: 50, 70: mean 60, s = sqrt(200), half = t1 * sqrt(200) / sqrt(2) = 10 t1 -> [0, 100]
    # column 2: one value: no band; column 3: none: nan
    assert mean[:3] == pytest.approx([70.0, 60.0, 10.0]) and np.isnan(mean[3])
    half = T975_2 * 10 / math.sqrt(3)
    assert (lo[0], hi[0]) == pytest.approx((70 - half, 70 + half))
    assert (lo[1], hi[1]) == (0.0, 100.0)
    assert np.isnan(lo[2:]).all() and np.isnan(hi[2:]).all()
    # +- one standard deviation, unclipped
    mean, lo, hi = _mean_band(values, "std")
    assert (lo[0], hi[0]) == pytest.approx((60.0, 80.0))
    assert (lo[1], hi[1]) == pytest.approx((60 - math.sqrt(200), 60 + math.sqrt(200)))
    # one seed: the mean, no band
    mean, lo, hi = _mean_band(values[:1], "ci95")
    assert mean[:3].tolist() == [60.0, 50.0, 10.0] and np.isnan(mean[3])
    assert np.isnan(lo).all() and np.isnan(hi).all()


# ----------------------------------------------------------------------------- curves


def test_plot_curves_means_bands_and_switches_by_hand() -> None:
    with plots.closing_figures():
        fig = plots.plot_curves({"A": a_curves(), "B": b_curves()})
        axes = visible_axes(fig)
        assert len(axes) == 3  # one panel per task evaluated
        assert [a.get_title() for a in axes] == ["task 1", "task 2", "task 3"]
        first = axes[0]
        data = [line for line in first.lines if line.get_label() in ("A (n=3)", "B (n=1)")]
        a_line, b_line = data
        assert a_line.get_xdata().tolist() == [0, 2, 4, 4, 6, 8, 8, 10]
        # mean over the three seeds, in percent
        assert a_line.get_ydata() == pytest.approx([10, 70, 90, 90, 50, 80, 80, 50])
        assert b_line.get_ydata() == pytest.approx(100 * np.array(B_TASK0))
        assert to_hex(a_line.get_color()) == plots.colour(0).lower()
        assert to_hex(b_line.get_color()) == plots.colour(1).lower()
        # A's band at step 2: 60, 70, 80 -> 70 +- t2 * 10 / sqrt(3); B (one seed) has none
        half = T975_2 * 10 / math.sqrt(3)
        assert band_at(first, 2.0) == pytest.approx((70 - half, 70 + half))
        assert len(first.collections) == 1
        # task switches: A at 4 and 8, B at 3 and 7, each dotted in its strategy's colour
        switches = {float(line.get_xdata()[0]): (to_hex(line.get_color()), line.get_linestyle())
                    for line in first.lines if line not in data}
        assert switches == {4.0: (plots.colour(0).lower(), ":"), 8.0: (plots.colour(0).lower(), ":"),
                            3.0: (plots.colour(1).lower(), ":"), 7.0: (plots.colour(1).lower(), ":")}
        assert all(len(a.lines) == 2 + 4 for a in axes[:2])  # two strategies, four switches
        # task 3: from its start point on; A's seeds 0.1 (s + 1) + 0.05 n: means 20, 25
        a3 = next(line for line in axes[2].lines if list(line.get_xdata()) == [8, 10])
        assert a3.get_ydata() == pytest.approx([20.0, 25.0])
        b3 = next(line for line in axes[2].lines if list(line.get_xdata()) == [7, 9])
        assert b3.get_ydata() == pytest.approx([10.0, 15.0])
        labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert labels == ["A (n=3)", "B (n=1)"]
        assert "dotted: a task switch of some strategies only" in fig._suptitle.get_text()
        assert fig.get_layout_engine() is None  # the fixed layout


def test_plot_curves_of_one_strategy_has_grey_dashed_switches() -> None:
    with plots.closing_figures():
        fig = plots.plot_curves({"A": a_curves()[:1]})
        first = visible_axes(fig)[0]
        switches = [line for line in first.lines if line.get_linestyle() == "--"]
        assert sorted(float(line.get_xdata()[0]) for line in switches) == [4.0, 8.0]
        assert {to_hex(line.get_color()) for line in switches} == {to_hex("0.55")}
        assert not first.collections  # one seed: no band
        assert "dotted" not in fig._suptitle.get_text()
        assert first.get_xlim() == (0.0, 10.0) and first.get_ylim() == (0.0, 101.0)


def test_plot_curves_bounds_the_panels_and_the_switch_lines() -> None:
    t = 30
    points = [(k, 2 * k + d) for k in range(t) for d in (0, 1)]
    curves = make_curves(points, [0.5] * len(points))
    with plots.closing_figures():
        fig = plots.plot_curves({"A": [curves]})
        axes = visible_axes(fig)
        assert len(axes) == plots.MAX_CURVE_PANELS
        assert [a.get_title() for a in axes] == ["task 1", "task 8", "task 15", "task 23",
                                                  "task 30"]
        dashed = [line for line in axes[0].lines if line.get_linestyle() == "--"]
        assert len(dashed) == plots.MAX_SWITCHES
        title = fig._suptitle.get_text()
        assert f"panels for {plots.MAX_CURVE_PANELS} of {t} tasks: 1, 8, 15, 23, 30" in title
        assert f"lines for {plots.MAX_SWITCHES} of {t - 1} task switches" in title


def test_plot_curves_draws_into_given_axes() -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1)
    try:
        assert plots.plot_curves({"A": a_curves()}, ax=list(axes)) is fig
        assert all(a.get_xlabel() for a in axes) and len(axes[0].collections) == 1
        with pytest.raises(ValueError, match="3 axes needed, 2 given"):
            plots.plot_curves({"A": a_curves()}, ax=list(axes[:2]))
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- stability gap


def test_plot_stability_gap_by_hand() -> None:
    depths = {"naive": [0.1, 0.2, 0.3], "lwf": [0.05, None, math.nan], "er": [None]}
    with plots.closing_figures():
        fig = plots.plot_stability_gap(depths)
        ax = visible_axes(fig)[0]
        # one row per strategy, the first at the top; n counts the defined depths
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == ["er (n=0)", "lwf (n=1)", "naive (n=3)"]
        seeds = [line for line in ax.lines if line.get_markerfacecolor() == "none"]
        assert seeds[0].get_xdata() == pytest.approx([10.0, 20.0, 30.0])
        assert seeds[0].get_ydata().tolist() == [2, 2, 2]
        assert seeds[1].get_xdata() == pytest.approx([5.0]) and seeds[1].get_ydata().tolist() == [1]
        means = [line for line in ax.lines if line.get_markerfacecolor() != "none"
                 and len(line.get_xdata()) == 1 and line.get_marker() not in ("|", "None", "")]
        assert [(float(m.get_xdata()[0]), float(m.get_ydata()[0])) for m in means] == [
            (pytest.approx(20.0), 2.0), (pytest.approx(5.0), 1.0)]
        # naive's error bar: 20 +- t2 * 10 / sqrt(3), clipped to 0 below; lwf (one seed) has none
        half = T975_2 * 10 / math.sqrt(3)
        bars = [c for c in ax.collections if len(c.get_segments())]
        assert len(bars) == 1
        (x0, _), (x1, _) = bars[0].get_segments()[0]
        assert (x0, x1) == pytest.approx((max(0.0, 20 - half), 20 + half))
        assert ax.get_xlim()[0] == 0.0
        assert fig.get_layout_engine() is None


# ----------------------------------------------------------------------------- wiring


def with_curves(strategy: str, seed: int, curves: list[list[float]] | None,
                depth: float | None = None) -> dict[str, Any]:
    m = [[0.9, 0.1, 0.1], [0.6, 0.9, 0.1], [0.5, 0.6, 0.9]]
    result = fake_result(strategy, seed, m)
    if curves is not None:
        result["curves"] = curves
        result["continual"] = {"gap_depth": depth}
    return result


class Recorded:
    """The figures ``plots.save`` was given (a stem -> a summary); ``laid_out``: each checked
    for its layout (:func:`assert_laid_out`) instead of being saved."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, laid_out: bool = False) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        original = plots.save

        def save(fig: Any, path: Path, formats: Any = ("png",)) -> list[Path]:
            axes = visible_axes(fig)
            self.figures[Path(path).name] = {
                "axes": len(axes),
                "labels": [t.get_text() for leg in fig.legends for t in leg.get_texts()],
                "yticks": [t.get_text() for a in axes for t in a.get_yticklabels()],
            }
            if laid_out:
                assert_laid_out(fig, Path(path).name)
                plots.pyplot().close(fig)
                return [Path(path).with_suffix(f".{f}") for f in formats]
            return original(fig, path, formats)

        monkeypatch.setattr(plots, "save", save)


def test_run_plots_add_the_curves_of_a_run_with_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = Recorded(monkeypatch)
    paths = plots.run_plots(with_curves("lwf", 0, a_curves()[0], 0.1), tmp_path / "a")
    assert [p.name for p in paths] == ["accuracy_matrix.png", "task_accuracy.png",
                                       "average_accuracy.png", "forgetting.png", "curves.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert record.figures["curves"]["axes"] == 3
    assert record.figures["curves"]["labels"] == ["lwf (n=1)"]
    paths = plots.run_plots(with_curves("lwf", 0, None), tmp_path / "b")
    assert len(paths) == 4 and "curves" not in {p.stem for p in paths}
    assert plots.CURVE_PLOTS[0] == "curves"


def test_comparison_plots_add_curves_and_gap_depth_when_some_run_has_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = Recorded(monkeypatch)
    runs = [with_curves("naive", 0, a_curves()[0], 0.2), with_curves("naive", 1, a_curves()[1], 0.4)]
    runs += [with_curves("lwf", 0, b_curves()[0], 0.05), with_curves("er", 0, None)]
    paths = plots.comparison_plots(runs, tmp_path / "cmp", formats=("png",))
    stems = [p.stem for p in paths]
    assert stems[-2:] == list(plots.CURVE_PLOTS)
    assert set(stems) == {"accuracy_matrices", "average_accuracy", "task_accuracy",
                          "forgetting", "curves", "stability_gap"}
    # only the variants with curves, each with its number of seeds
    assert record.figures["curves"]["labels"] == ["naive (n=2)", "lwf (n=1)"]
    assert record.figures["stability_gap"]["yticks"] == ["lwf (n=1)", "naive (n=2)"]  # upwards
    # without curves: the comparison's plots as before
    paths = plots.comparison_plots([with_curves("naive", s, None) for s in (0, 1)],
                                   tmp_path / "none", formats=("png",))
    assert {p.stem for p in paths} == {"accuracy_matrices", "average_accuracy",
                                       "task_accuracy", "forgetting"}


# ----------------------------------------------------------------------------- fixed layout


def assert_laid_out(fig: Any, name: str) -> None:
    """No layout engine, every text inside the figure, and no axes' labels over another
    axes or a figure legend (1 pixel of slack)."""
    assert fig.get_layout_engine() is None, name
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox

    def inside(b: Any) -> bool:
        return (b.x0 >= box.x0 - 1 and b.y0 >= box.y0 - 1 and b.x1 <= box.x1 + 1
                and b.y1 <= box.y1 + 1)

    def overlap(a: Any, b: Any) -> bool:
        return min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1

    axes = visible_axes(fig)
    for a in axes:  # its tick labels, labels, title, legend and texts
        assert inside(a.get_tightbbox(renderer)), (name, a.get_title())
        parts = [a.xaxis.get_tightbbox(renderer), a.yaxis.get_tightbbox(renderer)]
        if a.get_title():
            parts.append(a.title.get_window_extent(renderer))
        parts = [b for b in parts if b is not None]
        for b in axes:
            if a is not b:
                assert not any(overlap(part, b.bbox) for part in parts), (name, a, b)
        for legend in fig.legends:
            assert not any(overlap(part, legend.get_window_extent(renderer)) for part in parts), name
    for legend in fig.legends:
        assert inside(legend.get_window_extent(renderer)), name
    if fig._suptitle is not None:
        title = fig._suptitle.get_window_extent(renderer)
        assert inside(title), name
        assert not any(overlap(title, a.get_tightbbox(renderer)) for a in axes), name


@pytest.mark.parametrize("variants", [2, 12])
def test_every_figure_has_room_for_its_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variants: int
) -> None:
    """Run and comparison plots, with a legend inside (2 variants) and beside the axes
    (12): the fixed layout leaves every label inside the figure and clear of the others."""
    Recorded(monkeypatch, laid_out=True)
    runs = [with_curves(f"strategy {i}", s, a_curves()[s], 0.1 * (s + 1))
            for i in range(variants) for s in (0, 1)]
    assert len(plots.comparison_plots(runs, tmp_path / "cmp", formats=("png",))) == 6
    if variants == 2:
        class_il = fake_result("naive", 0, [[0.9, 0.1], [0.6, 0.9]],
                               aware=[[0.9, 0.5], [0.8, 0.9]], scenario="class-il")
        assert len(plots.run_plots(runs[0], tmp_path / "run")) == 5
        assert len(plots.comparison_plots([class_il], tmp_path / "cil", formats=("png",))) == 8


def test_a_legend_of_many_variants_grows_the_figure_instead_of_failing() -> None:
    """90 runs of 30 variants (a report over several folders): the legend below the panels
    is taller than the figure was; the figure grows so that every panel keeps its height
    (matplotlib refused the layout before: 'bottom cannot be >= top')."""
    from lifelong_kd.plots.figures import plot_task_accuracies_by_strategy
    from lifelong_kd.plots.layout import GROWN_AXES

    matrix = [[0.9, 0.1], [0.5, 0.8]]
    many = {f"strategy-{i} [model.hidden = {i}]": [matrix, matrix] for i in range(30)}
    fig = plot_task_accuracies_by_strategy(many, title="many variants")
    few = plot_task_accuracies_by_strategy({"naive": [matrix]}, title="one")
    assert fig.get_size_inches()[1] > few.get_size_inches()[1]
    for ax in fig.axes[:2]:
        height = ax.get_position().height * fig.get_size_inches()[1]
        assert height == pytest.approx(GROWN_AXES, rel=1e-6)
