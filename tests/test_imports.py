"""The package's import contracts (``[tool.importlinter]`` in pyproject.toml) hold.

``lint-imports`` checks them in .ci/run; this runs the same check, so that a developer's pytest
catches an import cycle or a layer broken by a lazy import too. The contracts are also checked
on a copy of the package with one deliberate bad import each, so that a test which passes says
something: each contract is broken by the import it exists to forbid.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from .conftest import ROOT

PYPROJECT = ROOT / "pyproject.toml"
LINT = ("import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())")


@pytest.fixture(scope="module", autouse=True)
def _import_linter() -> None:
    """Skip without import-linter on a developer's machine; fail in CI (the dev extra has it)."""
    try:
        import importlinter  # noqa: F401
    except ImportError:
        message = "import-linter is not installed: pip install -e '.[dev]'"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must install the dev extra)")
        pytest.skip(message)


def contract_names() -> dict[str, str]:
    """Contract id -> name, as pyproject.toml declares them."""
    table = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {c["id"]: c["name"] for c in table["contracts"]}


def lint_imports(folder: Path, config: Path) -> tuple[int, str]:
    """Exit code and output of ``lint-imports`` run in ``folder`` (which it puts on the path)."""
    done = subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(config)],
                          cwd=folder, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def broken(output: str) -> set[str]:
    """The ids of the contracts that the output reports broken."""
    return {cid for cid, name in contract_names().items() if f"{name} BROKEN" in output}


def test_the_package_keeps_its_contracts() -> None:
    code, output = lint_imports(ROOT, PYPROJECT)
    assert code == 0 and not broken(output), output
    for name in contract_names().values():
        assert f"{name} KEPT" in output, output


#: (module of the copy, the import appended to it, the contracts it must break)
BAD_IMPORTS = [
    ("config.py", "def _f():\n    from .runs import execute",
     {"config-imports-nothing", "no-cycles", "training-layers", "reporting-layers",
      "training-knows-no-results"}),
    ("errors.py", "from .config import RunConfig",
     {"config-imports-nothing", "no-cycles", "training-layers", "reporting-layers"}),
    ("models.py", "def _f():\n    from .presets import validate", {"no-cycles", "training-layers"}),
    ("metrics.py", "def _f():\n    from .report import write_comparison",
     {"no-cycles", "reporting-layers"}),
    ("engine.py", "def _f():\n    from .presets import build_config", {"training-layers"}),
    # (not results: it reads the strategy registry, so losses -> results would close a cycle)
    ("losses.py", "from . import stats", {"training-knows-no-results"}),
]


@pytest.mark.parametrize(("module", "line", "expected"), BAD_IMPORTS,
                         ids=[f"{m}:{sorted(e)[0]}" for m, _, e in BAD_IMPORTS])
def test_a_bad_import_breaks_its_contract(tmp_path: Path, module: str, line: str,
                                          expected: set[str]) -> None:
    """A copy of the package named ``toy_kd`` (the editable install's finder would shadow a copy
    named ``lifelong_kd``), checked by the same contracts with one bad import added."""
    shutil.copytree(ROOT / "lifelong_kd", tmp_path / "toy_kd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp_path / "pyproject.toml"
    config.write_text(PYPROJECT.read_text(encoding="utf-8").replace("lifelong_kd", "toy_kd"),
                      encoding="utf-8")
    code, output = lint_imports(tmp_path, config)
    assert code == 0 and not broken(output), output  # the copy itself keeps them all
    target = tmp_path / "toy_kd" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n\n{line}\n", encoding="utf-8")
    code, output = lint_imports(tmp_path, config)
    assert code != 0, output
    assert broken(output) == expected, output


def test_importing_config_loads_nothing_else_of_the_package_nor_torch() -> None:
    """What the first contract says, seen at run time: a fresh interpreter that imports
    ``lifelong_kd.config`` has loaded the package's ``__init__``, config.py and errors.py only,
    and no torch (so reading and checking a configuration stays cheap)."""
    code = ("import sys, lifelong_kd.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lifelong_kd', 'torch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert ast.literal_eval(done.stdout) == ["lifelong_kd", "lifelong_kd.config",
                                             "lifelong_kd.errors"]


def test_every_subpackage_is_installed() -> None:
    """pyproject.toml lists the packages a (non-editable) install copies: a new subpackage
    left out of it would be missing there (``lifelong_kd.strategies`` was, at first)."""
    table = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "lifelong_kd").rglob("__init__.py")}
    assert on_disk <= set(table["packages"]), sorted(on_disk - set(table["packages"]))
