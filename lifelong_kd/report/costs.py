"""The costs' sections of report.md, for runs that record their models' costs (result.json's
``costs.model``): "Costs" (parameters, FLOPs, bytes, latency, memory, training time per
variant) and "Accuracy kept per parameter" (:func:`kept_per_parameter`: each variant's final
average accuracy and parameters against its reference's)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..aggregate import COST_METRICS, COSTS, Run, teacher_matrix, variants_of
from .cells import _cells, _mean, _pct
from .markdown import markdown_code, markdown_text


def _count(v: float) -> str:
    """A count (parameters, FLOPs, bytes) with thousands separators; n/a for nan."""
    if math.isnan(v):
        return "n/a"
    return f"{round(v):,}" if float(v).is_integer() else f"{v:,.1f}"


def _micro(v: float) -> str:
    """Seconds as microseconds, two decimals; n/a for nan."""
    return "n/a" if math.isnan(v) else f"{1e6 * v:.2f}"


def _costs_section(summary: list[dict[str, Any]], variants: list[str],
                   n_runs: dict[str, int]) -> list[str]:
    """The "Costs" section: per variant, the means over its runs of what result.json's
    ``costs`` records (n/a where a run does not record it; — for no teacher)."""
    cells = _cells(summary)
    lines = [
        "## Costs (mean over seeds)",
        "",
        "What each variant's model costs: its parameters, forward FLOPs per example "
        "(PyTorch's counter, `torch.utils.flop_counter`: a multiply-add is 2 FLOPs) and "
        "bytes; the parameters of the teacher the strategy holds (— for none); the "
        "memory's bytes (exemplars and stored outputs); inference latency per example on "
        "the run's device at batch size 1 and 256 (median of repeated timings after "
        "training, µs per example); the training wall time.",
        "",
        "| strategy | runs | parameters | FLOPs / example | model bytes | teacher parameters "
        "| memory bytes | latency batch 1 (µs) | latency batch 256 (µs) | training (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in variants:
        mean = {metric: _mean(cells, s, COSTS, metric) for metric in COST_METRICS}
        teacher = (_count(mean["teacher_parameters"])
                   if (s, COSTS, "teacher_parameters") in cells else "—")
        seconds = mean["train_seconds"]
        shown = [_count(mean["parameters"]), _count(mean["flops_per_example"]),
                 _count(mean["model_bytes"]), teacher, _count(mean["memory_bytes"]),
                 _micro(mean["latency_batch_1"]), _micro(mean["latency_batch_256"]),
                 "n/a" if math.isnan(seconds) else f"{seconds:.1f}"]
        lines.append(f"| {markdown_text(s)} | {n_runs[s]} | " + " | ".join(shown) + " |")
    return [*lines, ""]


def _ratio(v: float) -> str:
    """A ratio: two decimals, two significant digits below 0.1; n/a for nan."""
    if math.isnan(v) or math.isinf(v):
        return "n/a"
    return f"{v:.2f}" if v == 0 or abs(v) >= 0.1 else f"{v:.2g}"


def kept_per_parameter(summary: list[dict[str, Any]], runs: Sequence[Run],
                       kind: str) -> list[dict[str, Any]]:
    """The rows of the table "Accuracy kept per parameter", one per variant whose runs
    record their parameters, in report order.

    ACC: the variant's final average accuracy (``average_accuracy`` of the matrix ``kind``),
    P its parameters (means over its runs). Its reference: its own teacher when its runs
    record one (ACC_ref: the teacher's ``average_accuracy``, P_ref: ``teacher_parameters``,
    over the same runs); otherwise the variant of the same strategy with the most
    parameters in this comparison (the first in report order on a tie; possibly itself).
    kept = ACC / ACC_ref, share = P / P_ref, kept_per_parameter = kept / share. Each row:
    strategy, parameters, acc, reference (``its teacher`` or a variant),
    reference_parameters, reference_acc, kept, share, kept_per_parameter.
    """
    cells = _cells(summary)
    scenario = str(runs[0].result.get("scenario")) if runs else ""
    teacher = teacher_matrix(kind, scenario)
    strategy_of = {run.label: run.strategy for run in runs}
    params = {s: _mean(cells, s, COSTS, "parameters") for s in variants_of(runs)}
    params = {s: p for s, p in params.items() if not math.isnan(p)}
    out = []
    for s, p in params.items():
        acc = _mean(cells, s, kind, "average_accuracy")
        if (s, teacher, "average_accuracy") in cells:
            ref = "its teacher"
            ref_acc = _mean(cells, s, teacher, "average_accuracy")
            ref_p = _mean(cells, s, COSTS, "teacher_parameters")
        else:
            same = [v for v in params if strategy_of[v] == strategy_of[s]]
            ref = max(same, key=lambda v: params[v])  # the first of the largest
            ref_acc, ref_p = _mean(cells, ref, kind, "average_accuracy"), params[ref]
        if ref == s:
            kept = share = 1.0
        else:
            kept = acc / ref_acc if ref_acc else math.nan
            share = p / ref_p if ref_p else math.nan
        out.append({"strategy": s, "parameters": p, "acc": acc, "reference": ref,
                    "reference_parameters": ref_p, "reference_acc": ref_acc, "kept": kept,
                    "share": share, "kept_per_parameter": kept / share if share else math.nan})
    return out


def _kept_section(summary: list[dict[str, Any]], runs: Sequence[Run], kind: str) -> list[str]:
    """The table "Accuracy kept per parameter" (see :func:`kept_per_parameter`)."""
    rows = kept_per_parameter(summary, runs, kind)
    if not rows:
        return []
    lines = [
        "## Accuracy kept per parameter",
        "",
        "Each variant's final average accuracy ACC (`average_accuracy` of the "
        f"{kind.replace('_', '-')} matrix) and parameters P, means over seeds, against its "
        "reference's (its own teacher when its runs record one, over the same runs; "
        "otherwise the variant of the same strategy with the most parameters here): kept = "
        "ACC / ACC_ref, parameter share = P / P_ref and kept per parameter = kept / share "
        "(above 1: more accuracy per parameter than the reference).",
        "",
        "| strategy | parameters | ACC (%) | reference | reference parameters "
        "| reference ACC (%) | kept | parameter share | kept per parameter |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = (r["reference"] if r["reference"] == "its teacher"
               else markdown_code(r["reference"]))
        lines.append(
            f"| {markdown_text(r['strategy'])} | {_count(r['parameters'])} | {_pct(r['acc'])} | {ref} | "
            f"{_count(r['reference_parameters'])} | {_pct(r['reference_acc'])} | "
            f"{_ratio(r['kept'])} | {_ratio(r['share'])} | {_ratio(r['kept_per_parameter'])} |")
    return [*lines, ""]
