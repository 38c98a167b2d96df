"""Results as the reports read them: each file checked, the runs found under folders.

:func:`load_result` reads a result.json (:func:`lifelong_kd.results.read_result`), checks it
(:func:`lifelong_kd.results.validate_result`, the strategy names) and attaches its curves;
:func:`find_results` finds the runs under folders, loads each and checks that they can be
reported together (:func:`lifelong_kd.results.check_compatible`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from .files import CURVES, RESULT, read_curves, read_result
from .identity import check_compatible
from .schema import check_strategy_names, is_finished, validate_result


def load_result(path: Path) -> dict[str, Any]:
    """Read and check the result.json at ``path`` (or in the run folder ``path``): what the
    reports read (:func:`validate_result`) and its strategy names
    (:func:`check_strategy_names`); with the run's continual evaluation as ``curves`` when a
    curves.csv is beside it."""
    path = Path(path)
    file = path / RESULT if path.is_dir() else path
    result = check_strategy_names(validate_result(read_result(file), file), file)
    return attach_curves(result, file.parent)


def attach_curves(result: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``result`` with the run's continual evaluation as ``curves`` when ``folder`` holds a
    curves.csv (:func:`read_curves`); unchanged otherwise."""
    if (Path(folder) / CURVES).is_file():
        result["curves"] = read_curves(Path(folder) / CURVES)
    return result


def find_results(
    dirs: Sequence[Path],
) -> tuple[list[tuple[Path, dict[str, Any]]], list[dict[str, Any]]]:
    """The runs under ``dirs`` (each a run folder, a result.json, or a folder searched
    recursively, such as a comparison folder), each checked (:func:`validate_result`) and all
    of them with :func:`check_compatible`; and the failures: unfinished runs, and run folders
    with a checkpoint but no result.json."""
    found: dict[Path, None] = {}
    failures: list[dict[str, Any]] = []
    for d in map(Path, dirs):
        if d.is_file():
            found[d.resolve()] = None
            continue
        if not d.is_dir():
            raise UserError(f"{d} does not exist")
        files = sorted(d.rglob(RESULT))
        checkpoints = [c for c in sorted(d.rglob("checkpoint.pt"))
                       if not (c.parent / RESULT).is_file()]
        if not files and not checkpoints:
            raise UserError(f"no result.json under {d}: give run folders or a comparison "
                            "folder written by `lifelong-kd run` or `compare`")
        for f in files:
            found[f.resolve()] = None
        for c in checkpoints:
            seed: Any = c.parent.name.removeprefix("seed-")
            seed = int(seed) if seed.isdigit() else c.parent.name
            failures.append({"strategy": c.parent.parent.name, "seed": seed,
                             "error": f"incomplete: {c.parent} has a checkpoint but no "
                                      "result.json (resume it with --resume)"})
    runs = [(p.parent, load_result(p)) for p in found]
    check_compatible(runs)
    for _, r in runs:
        if not is_finished(r):
            failures.append({"strategy": r["strategy"], "seed": r["seed"],
                             "error": f"{r.get('status')}: {r.get('message', '')}"})
    return runs, failures
