"""Build the comparison table of results/paper/README.md from the runs' summary.csv files.

    /work/venv/bin/python results/paper/make_table.py            # prints Markdown

Every "ours" number is read from ``results/paper/<preset>/summary.csv`` (written by
``lifelong-kd compare``); the published numbers and their spread are the constants below, with
where each comes from. A published mean "agrees" when it lies inside our 95% CI of the mean
widened on both sides by the published spread: ci_low - spread <= published <= ci_high + spread.
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (protocol, preset, scenario label, matrix, strategy, published %, spread %, source of both)
# Protocol 1: means as transcribed in issue 7 (a range -> its midpoint, spread = half the
# range); the paper gives mean +- SEM over 20 seeds, which issue 7 does not transcribe, and
# issue 7 warns its values "may be off by a point", so the spread is at least 1 point.
VDV = "issue 7 (van de Ven & Tolias 2019, Fig./Table, 20 seeds)"
VDV_T4 = {  # Table 4 of arXiv:1904.07734 as transcribed by a third party (see README)
    ("task-il", "naive"): 87.19, ("task-il", "lwf-vdv2019"): 99.57,
    ("domain-il", "naive"): 59.21, ("domain-il", "lwf-vdv2019"): 71.50,
    ("class-il", "naive"): 19.90, ("class-il", "lwf-vdv2019"): 23.85,
}
DER = "issue 7 / Mammoth README (DER Table 2, 10 seeds)"
PUBLISHED = [
    ("1", "vdv2019-split-mnist-task-il", "task-il", "task_aware", "naive", 85.5, 1.5, VDV),
    ("1", "vdv2019-split-mnist-task-il", "task-il", "task_aware", "lwf-vdv2019", 99.6, 1.0, VDV),
    ("1", "vdv2019-split-mnist-task-il", "task-il", "task_aware", "joint", 99.7, 1.0, VDV),
    ("1", "vdv2019-split-mnist-domain-il", "domain-il", "task_agnostic", "naive", 59.0, 1.0, VDV),
    ("1", "vdv2019-split-mnist-domain-il", "domain-il", "task_agnostic", "lwf-vdv2019", 71.5, 1.0, VDV),
    ("1", "vdv2019-split-mnist-domain-il", "domain-il", "task_agnostic", "joint", 98.4, 1.0, VDV),
    ("1", "vdv2019-split-mnist-class-il", "class-il", "task_agnostic", "naive", 19.9, 1.0, VDV),
    ("1", "vdv2019-split-mnist-class-il", "class-il", "task_agnostic", "lwf-vdv2019", 23.0, 1.0, VDV),
    ("1", "vdv2019-split-mnist-class-il", "class-il", "task_agnostic", "joint", 98.05, 1.0, VDV),
    # Protocol 2: means from issue 7 (Mammoth README); the +- are DER Table 2's, recalled (the
    # issue quotes the means only) - see README.
    ("2", "buzzega2020-seq-mnist", "class-il", "task_agnostic", "naive", 19.60, 0.04, DER),
    ("2", "buzzega2020-seq-mnist", "class-il", "task_agnostic", "lwf-mammoth", 19.62, 0.01, DER),
    ("2", "buzzega2020-seq-mnist", "class-il", "task_agnostic", "joint", 95.57, 0.24, DER),
    ("2", "buzzega2020-seq-mnist", "task-il (task-aware)", "task_aware", "naive", 94.94, 2.18, DER),
    ("2", "buzzega2020-seq-mnist", "task-il (task-aware)", "task_aware", "lwf-mammoth", 94.11, 3.01, DER),
    ("2", "buzzega2020-seq-mnist", "task-il (task-aware)", "task_aware", "joint", 99.51, 0.07, DER),
    # Protocol 3: mean +- std from issue 7 (DER Table 2); no published LwF.
    ("3", "buzzega2020-perm-mnist", "domain-il", "task_agnostic", "naive", 40.70, 2.33, DER),
    ("3", "buzzega2020-perm-mnist", "domain-il", "task_agnostic", "joint", 94.33, 0.17, DER),
    ("3", "buzzega2020-perm-mnist", "domain-il", "task_agnostic", "lwf", None, None, "-"),
    # Issue 14: Mammoth's LwF as its first commit has it (weight decay 0.001); the published
    # numbers are protocol 2's.
    ("2", "buzzega2020-seq-mnist-lwf2020", "class-il", "task_agnostic", "lwf-mammoth", 19.62, 0.01, DER),
    ("2", "buzzega2020-seq-mnist-lwf2020", "task-il (task-aware)", "task_aware", "lwf-mammoth",
     94.11, 3.01, DER),
    # ... and as that code ran it (begin_task never called): fine-tuning, CE over all outputs,
    # weight decay 0.001 (the `naive` strategy of this preset)
    ("2", "buzzega2020-seq-mnist-lwf7ab9db9", "class-il", "task_agnostic", "naive", 19.62, 0.01, DER),
    ("2", "buzzega2020-seq-mnist-lwf7ab9db9", "task-il (task-aware)", "task_aware", "naive",
     94.11, 3.01, DER),
]
#: Rows whose strategy column needs saying what the preset makes of it.
LABELS = {"buzzega2020-seq-mnist-lwf2020": "lwf-mammoth, weight decay 0.001 (7ab9db9's wd_reg)",
          "buzzega2020-seq-mnist-lwf7ab9db9": "LwF as 7ab9db9 ran it = naive, CE over all, wd 0.001"}

# Issue 14, protocols 4 and 5: the memory methods of Buzzega et al. 2020, Table 2, as Mammoth's
# README at its first commit 7ab9db9 gives them (means only: the README has no spread, and the
# paper's table was not at hand), so the agreement test widens our interval by MEMORY_SPREAD.
MEMORY_SPREAD = 1.0
README_7AB9DB9 = "Mammoth README@7ab9db9 (DER Table 2, means)"
SEQ_MNIST = {  # buffer: {strategy: (class-il, task-il)}
    200: {"er": (80.43, 97.86), "der": (84.55, 98.80), "derpp": (85.61, 98.76), "icarl": (70.51, 98.28)},
    500: {"er": (86.12, 99.04), "der": (90.54, 98.84), "derpp": (91.00, 98.94), "icarl": (70.10, 98.32)},
    5120: {"er": (93.40, 99.33), "der": (94.90, 99.29), "derpp": (95.30, 99.47), "icarl": (70.60, 98.32)},
}
P_MNIST = {
    200: {"er": 72.37, "der": 81.74, "derpp": 83.58},
    500: {"er": 80.60, "der": 87.29, "derpp": 88.21},
    5120: {"er": 89.90, "der": 91.66, "derpp": 92.26},
}
for _buffer, _rows in SEQ_MNIST.items():
    for _strategy, (_cil, _til) in _rows.items():
        PUBLISHED.append((f"4 (m{_buffer})", f"buzzega2020-seq-mnist-m{_buffer}", "class-il",
                          "task_agnostic", _strategy, _cil, MEMORY_SPREAD, README_7AB9DB9))
        PUBLISHED.append((f"4 (m{_buffer})", f"buzzega2020-seq-mnist-m{_buffer}",
                          "task-il (task-aware)", "task_aware", _strategy, _til, MEMORY_SPREAD,
                          README_7AB9DB9))
for _buffer, _rows in P_MNIST.items():
    for _strategy, _dil in _rows.items():
        PUBLISHED.append((f"5 (m{_buffer})", f"buzzega2020-perm-mnist-m{_buffer}", "domain-il",
                          "task_agnostic", _strategy, _dil, MEMORY_SPREAD, README_7AB9DB9))


def summary(preset: str) -> dict[tuple[str, str], dict[str, str]]:
    """(strategy, matrix) -> the average_accuracy row of the preset's summary.csv."""
    path = HERE / preset / "summary.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {(r["strategy"], r["matrix"]): r for r in csv.DictReader(f)
                if r["metric"] == "average_accuracy"}


def table() -> str:
    lines = [
        "| protocol | scenario | strategy | published | ours: mean ± std | ours: 95% CI | n | "
        "ours − published | published inside CI ± spread |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for proto, preset, scenario, matrix, strategy, pub, spread, source in PUBLISHED:
        row = summary(preset).get((strategy, matrix))
        published = "—" if pub is None else f"{pub:.2f} ± {spread:.2f}"
        strategy = LABELS.get(preset, strategy)
        if source == README_7AB9DB9:  # a mean only; the test's tolerance is MEMORY_SPREAD
            published = f"{pub:.2f} (mean only)"
        if (scenario, strategy) in VDV_T4 and proto == "1":
            published += f" (Table 4: {VDV_T4[scenario, strategy]:.2f})"
        if row is None or not row["mean"]:
            lines.append(f"| {proto} | {scenario} | {strategy} | {published} | not run | | 0 | | |")
            continue
        mean, std, n = 100 * float(row["mean"]), 100 * float(row["std"] or 0), int(row["n"])
        if n < 2 or not row["ci_low"]:
            diff = "—" if pub is None else f"{mean - pub:+.2f}"
            lines.append(f"| {proto} | {scenario} | {strategy} | {published} | {mean:.2f} (one seed) "
                         f"| — | {n} | {diff} | n/a (one seed) |")
            continue
        lo, hi = 100 * float(row["ci_low"]), 100 * float(row["ci_high"])
        if pub is None:
            diff = verdict = "—"
        else:
            diff = f"{mean - pub:+.2f}"
            verdict = "yes" if lo - spread <= pub <= hi + spread else "**no**"
        lines.append(f"| {proto} | {scenario} | {strategy} | {published} | {mean:.2f} ± {std:.2f} "
                     f"| [{lo:.2f}, {hi:.2f}] | {n} | {diff} | {verdict} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
