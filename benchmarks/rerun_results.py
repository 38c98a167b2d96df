"""Re-run committed runs of results/ and compare their accuracy matrices with the stored ones.

    python benchmarks/rerun_results.py [--data-dir DIR] [--out FILE.json] [RUN_DIR ...]

Each run is rebuilt from the configuration its result.json stores (written out as a TOML preset
of the same benchmark name, so every resolved setting is given explicitly) and trained with
``lifelong-kd run`` in a temporary folder, with the torch thread count the stored run recorded.
Without RUN_DIR it takes one run of every comparison folder under results/ (the first seed of
one strategy each). It prints, per run, whether the matrix is equal bit for bit and otherwise
the largest difference, and writes them all to --out (JSON) for comparing two commits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: One run of every comparison folder of results/ (cheap ones where a folder has a choice).
DEFAULT_RUNS = [
    "results/quickstart/split-digits/lwf/seed-0",
    "results/quickstart/permuted-digits/lwf/seed-0",
    "results/permuted-mnist/lwf/seed-0",
    "results/split-cifar10-jpeg/task-il/naive/seed-0",
    "results/split-cifar10-jpeg/class-il/lwf/seed-0",
    "results/paper/vdv2019-split-mnist-task-il/lwf-vdv2019/seed-1",
    "results/paper/vdv2019-split-mnist-domain-il/lwf-vdv2019/seed-1",
    "results/paper/vdv2019-split-mnist-class-il/lwf-vdv2019/seed-1",
    "results/paper/buzzega2020-seq-mnist/lwf-mammoth/seed-0",
    "results/paper/buzzega2020-perm-mnist/naive/seed-0",
]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def preset_of(config: dict[str, Any]) -> str:
    """A TOML preset that resolves to exactly ``config`` for its strategy and seed."""
    lines = []
    for key in ("description", "strategies", "seeds"):
        if key in config:
            lines.append(f"{key} = {_toml_value(config[key])}")
    for section in ("data", "stream", "model", "train", "strategy"):
        lines.append(f"\n[{section}]")
        for key, value in config[section].items():
            if section == "strategy" and key == "name":
                continue
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def rerun(run_dir: Path, data_dir: Path) -> dict[str, Any]:
    stored = json.loads((run_dir / "result.json").read_text())
    config = stored["config"]
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(stored.get("environment", {}).get("torch_threads") or 1)
    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / f"{config['benchmark']}.toml"
        preset.write_text(preset_of(config))
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "lifelong_kd", "run", str(preset), "--strategy",
               config["strategy"]["name"], "--seed", str(config["seed"]), "--offline", "--quiet",
               "--data-dir", str(data_dir), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if not (out / "result.json").is_file():
            return {"run": str(run_dir), "error": proc.stderr.strip()[-2000:]}
        new = json.loads((out / "result.json").read_text())
    diffs = [abs(a - b) for ra, rb in zip(new["accuracy_matrix"], stored["accuracy_matrix"],
                                          strict=True) for a, b in zip(ra, rb, strict=True)]
    changed = sorted(k for k in set(_flat(new["config"])) | set(_flat(config))
                     if _flat(new["config"]).get(k) != _flat(config).get(k))
    return {"run": str(run_dir), "threads": env["OMP_NUM_THREADS"],
            "equal": new["accuracy_matrix"] == stored["accuracy_matrix"],
            "max_abs_difference": max(diffs, default=0.0),
            "config_equal": not changed,
            "config_keys_added_or_changed_since": changed,
            "accuracy_matrix": new["accuracy_matrix"], "stored_commit":
            stored.get("environment", {}).get("git_commit")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs = args.runs or [ROOT / r for r in DEFAULT_RUNS]
    outcomes = []
    for run_dir in runs:
        outcome = rerun(run_dir, args.data_dir)
        outcomes.append(outcome)
        if "error" in outcome:
            print(f"{run_dir}: failed: {outcome['error']}", flush=True)
        else:
            print(f"{run_dir}: equal={outcome['equal']} max |difference| = "
                  f"{outcome['max_abs_difference']:.6f}; settings added or changed since: "
                  f"{', '.join(outcome['config_keys_added_or_changed_since']) or 'none'}",
                  flush=True)
        if args.out:
            args.out.write_text(json.dumps(outcomes, indent=1) + "\n")


if __name__ == "__main__":
    main()
