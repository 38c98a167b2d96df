"""Build the compression tables of README.md from the suites' summary.csv files.

    python results/compression/make_table.py            # prints Markdown

Every number is read from ``results/compression/<suite>/<member>/summary.csv`` (written by
``lifelong-kd compare compression-split-mnist --out results/compression/split-mnist`` and
``lifelong-kd compare compression-split-cifar10-jpeg --out
results/compression/split-cifar10-jpeg``): the final average accuracy (ACC, %) of each strategy
on each student, mean ± half-width of the 95% CI over seeds, and in brackets the accuracy of the
teacher of ``kd`` / ``compress`` runs (the same network for every student).
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (suite folder, scenario, main matrix kind, members (folder, student label), caption)
TABLES = [
    ("split-mnist", "class-il", "task_agnostic",
     [("class-il-h400", "2×400"), ("class-il-h100", "2×100"), ("class-il-h50", "2×50"),
      ("class-il-h25", "2×25"), ("class-il-h10", "2×10")],
     "Split-MNIST, class-il (teacher MLP 2×400)"),
    ("split-mnist", "task-il", "task_aware",
     [("task-il-h400", "2×400"), ("task-il-h100", "2×100"), ("task-il-h50", "2×50"),
      ("task-il-h25", "2×25"), ("task-il-h10", "2×10")],
     "Split-MNIST, task-il (teacher MLP 2×400)"),
    ("split-cifar10-jpeg", "task-il", "task_aware",
     [("task-il-c32-64", "32-64"), ("task-il-c16-32", "16-32"), ("task-il-c8-16", "8-16")],
     "Split-CIFAR-10, CIFAR-10 (JPEG copy), task-il (teacher ConvNet 32-64)"),
]


def _summary(folder: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    path = folder / "summary.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {(r["strategy"], r["matrix"], r["metric"]): r for r in csv.DictReader(f)}


def _cell(row: dict[str, str] | None, scale: float = 100.0) -> str:
    if row is None or not row.get("mean"):
        return "—"
    mean = float(row["mean"]) * scale
    if row.get("ci_high"):
        return f"{mean:.1f} ± {(float(row['ci_high']) - float(row['ci_low'])) * scale / 2:.1f}"
    return f"{mean:.1f}"


def table(suite: str, kind: str, members: list[tuple[str, str]], caption: str) -> str:
    """One Markdown table: strategies x students, ACC (%) with teacher ACC in brackets."""
    summaries = {m: _summary(HERE / suite / m) for m, _ in members}
    strategies = list(dict.fromkeys(s for summ in summaries.values() for (s, _, _) in summ))
    params = []
    for m, _ in members:
        row = next((r for (s, mat, met), r in summaries[m].items()
                    if mat == "costs" and met == "parameters" and s == "naive"), None)
        params.append(f"{float(row['mean']):,.0f}" if row else "?")
    head = [f"{label} ({p} params)" for (_, label), p in zip(members, params, strict=True)]
    lines = [f"**{caption}**: ACC (%) of the student, mean ± 95% CI over seeds "
             "[teacher's ACC]", "",
             "| strategy | " + " | ".join(head) + " |",
             "|---|" + "---:|" * len(members)]
    for s in strategies:
        cells = []
        for m, _ in members:
            summ = summaries[m]
            cell = _cell(summ.get((s, kind, "average_accuracy")))
            teacher = summ.get((s, "teacher", "average_accuracy"))
            if teacher is not None:
                cell += f" [{_cell(teacher)}]"
            cells.append(cell)
        if any(c != "—" for c in cells):
            lines.append(f"| `{s}` | " + " | ".join(cells) + " |")
    seeds = {r["n"] for summ in summaries.values() for r in summ.values() if r.get("n")}
    lines += ["", f"Seeds per cell: {', '.join(sorted(seeds)) or '?'}."]
    return "\n".join(lines)


def main() -> None:
    for suite, _scenario, kind, members, caption in TABLES:
        if not any((HERE / suite / m / "summary.csv").is_file() for m, _ in members):
            continue
        print(table(suite, kind, members, caption))
        print()


if __name__ == "__main__":
    main()
