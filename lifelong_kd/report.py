"""The comparison report: tables over seeds and the plots, from a list of run results."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from .metrics import HIGHER_IS_BETTER, METRICS
from .plots import (
    plot_accuracy_matrix,
    plot_average_accuracy,
    plot_forgetting,
    save,
    seen_average_curve,
)
from .results import write_text
from .stats import describe

#: What each metric column means, so that no two "forgetting"s are confused.
METRIC_NOTES = {
    "average_accuracy": "mean accuracy over all tasks after the last (Lopez-Paz & Ranzato 2017)",
    "average_incremental_accuracy": "mean over the stream of the accuracy on tasks seen "
                                    "(Rebuffi et al. 2017)",
    "learning_accuracy": "accuracy on each task just after learning it (Riemer et al. 2019)",
    "bwt": "backward transfer, final minus just-learnt (Lopez-Paz & Ranzato 2017)",
    "forgetting": "best earlier accuracy minus final, per task (Chaudhry et al. 2018)",
    "forgetting_after_learning": "just-learnt minus final, per task (Avalanche's definition)",
    "fwt": "forward transfer, before-training minus untrained accuracy (Lopez-Paz & Ranzato "
           "2017)",
}


def _finished(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r.get("status", "finished") == "finished"]


def summary_rows(results: list[dict[str, Any]], key: str = "metrics") -> list[dict[str, Any]]:
    """One row per strategy and metric: mean, std, sem, ci_low, ci_high, n over seeds."""
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: list[str] = []
    for r in _finished(results):
        if key not in r:
            continue
        if r["strategy"] not in order:
            order.append(r["strategy"])
        for metric, value in r[key].items():
            by[r["strategy"]][metric].append(math.nan if value is None else float(value))
    rows = []
    for strategy in order:
        for metric in METRICS:
            if metric in by[strategy]:
                rows.append({"strategy": strategy, "metric": metric,
                             **describe(by[strategy][metric])})
    return rows


def _fmt(v: float, scale: float = 100.0) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * scale:.2f}"


def write_comparison(
    results: list[dict[str, Any]], out_dir: Path, failures: list[dict[str, Any]] | None = None
) -> None:
    """summary.csv, report.md and the comparison plots in ``out_dir``."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finished = _finished(results)
    rows = summary_rows(finished)
    summary = pd.DataFrame(rows, columns=["strategy", "metric", "mean", "std", "sem", "ci_low",
                                          "ci_high", "n"])
    write_text(out_dir / "summary.csv", summary.to_csv(index=False))
    plots = comparison_plots(finished, out_dir)
    lines = ["# Comparison report", ""]
    if finished:
        first = finished[0]
        cfg = first["config"]
        lines += [
            f"- benchmark: `{first['benchmark']}` ({cfg.get('description', '')})",
            f"- scenario: `{first['scenario']}`, {first['n_tasks']} tasks",
            f"- model: `{cfg['model']}`",
            f"- training: `{cfg['train']}`",
            f"- seeds: {sorted({r['seed'] for r in finished})}",
            f"- data: {first['data']['dataset']} from `{first['data']['path']}`, "
            f"fingerprint `{first['data']['fingerprint'][:16]}...`",
            f"- software: torch {first['environment']['torch']}, lifelong-kd "
            f"{first['environment']['lifelong_kd']}",
            "",
            "## Metrics (%, mean ± std over seeds)",
            "",
        ]
        strategies = list(dict.fromkeys(r["strategy"] for r in finished))
        metrics = [m for m in METRICS if any(row["metric"] == m for row in rows)]
        lines.append("| strategy | " + " | ".join(metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for s in strategies:
            cells = []
            for m in metrics:
                match = [row for row in rows if row["strategy"] == s and row["metric"] == m]
                if match:
                    d = match[0]
                    std = "" if math.isnan(d["std"]) else f" ± {_fmt(d['std'])}"
                    cells.append(f"{_fmt(d['mean'])}{std}")
                else:
                    cells.append("n/a")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines += ["", "Metric definitions:", ""]
        lines += [f"- `{m}` ({'higher' if m in HIGHER_IS_BETTER else 'lower'} is better): "
                  f"{METRIC_NOTES[m]}" for m in metrics]
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots if p.suffix == ".png"]
    if failures:
        lines += ["", "## Runs that did not finish", ""]
        lines += [f"- {f['strategy']} seed {f['seed']}: {f['error']}" for f in failures]
    write_text(out_dir / "report.md", "\n".join(lines) + "\n")


def comparison_plots(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Average accuracy with bands and forgetting bars per strategy, and the mean matrices."""
    import numpy as np

    if not results:
        return []
    curves: dict[str, list[Any]] = defaultdict(list)
    forgetting: dict[str, list[Any]] = defaultdict(list)
    matrices: dict[str, list[Any]] = defaultdict(list)
    for r in results:
        curves[r["strategy"]].append(seen_average_curve(r["accuracy_matrix"]))
        forgetting[r["strategy"]].append(r["per_task_forgetting"])
        matrices[r["strategy"]].append(r["accuracy_matrix"])
    paths = save(plot_average_accuracy(curves), out_dir / "average_accuracy")
    if any(len(v[0]) for v in forgetting.values()):
        paths += save(plot_forgetting(forgetting), out_dir / "forgetting")
    for name, ms in matrices.items():
        safe = name.replace(":", "_").replace("/", "_")
        paths += save(plot_accuracy_matrix(np.mean(ms, axis=0),
                                           title=f"{name}: mean accuracy matrix (%)"),
                      out_dir / f"accuracy_matrix_{safe}")
    return paths
