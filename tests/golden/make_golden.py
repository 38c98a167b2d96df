"""Record the accuracy matrices of tests/golden/cases.py with the code this script imports.

    python tests/golden/make_golden.py [OUT.json]     (default: tests/golden/matrices.json)

Run it once, with the code whose behaviour is to be kept; tests/test_golden.py compares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import cases  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("matrices.json")
    golden: dict[str, dict] = json.loads(out.read_text())["cases"] if out.is_file() else {}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip()
    for name, argv in cases().items():
        if golden.get(name, {}).get("argv") == argv:
            continue  # recorded before (the script continues an interrupted recording)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "lifelong_kd", "run", *argv, "--offline", "--quiet",
                   "--out", str(Path(tmp) / "run")]
            subprocess.run(cmd, check=False)
            result = json.loads((Path(tmp) / "run" / "result.json").read_text())
        golden[name] = {"argv": argv, "commit": commit,
                        "accuracy_matrix": result["accuracy_matrix"],
                        "accuracy_matrix_task_aware": result.get("accuracy_matrix_task_aware"),
                        "initial_accuracy": result["initial_accuracy"]}
        if result["status"] != "finished":
            raise SystemExit(f"{name}: {result['status']}: {result.get('message')}")
        print(name, result["metrics"].get("average_accuracy"), flush=True)
        first = json.loads(out.read_text())["commit"] if out.is_file() else commit
        out.write_text(json.dumps({"commit": first, "cases": golden}, indent=1) + "\n")


if __name__ == "__main__":
    main()
