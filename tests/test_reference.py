"""The manual's reference pages (docs/reference/*.md) are generated from the registries by
``python -m lifelong_kd.reference``: rendered again here, they must equal the committed ones,
and they must name every strategy preset, loss, schedule, dataset and configuration key."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from lifelong_kd import reference
from lifelong_kd.data.sources import DATASETS
from lifelong_kd.losses import LOSSES
from lifelong_kd.presets import valid_keys
from lifelong_kd.schedules import SCHEDULES
from lifelong_kd.strategies.presets import PRESETS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reference"
PAGES = reference.render_all()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_committed_page_is_what_the_code_renders(name: str) -> None:
    path = DOCS / name
    assert path.is_file(), f"{path} is missing: run `{reference.COMMAND}`"
    committed = path.read_text(encoding="utf-8")
    if committed != PAGES[name]:
        diff = "".join(difflib.unified_diff(committed.splitlines(True), PAGES[name].splitlines(True),
                                            f"committed {name}", f"rendered {name}", n=1))
        pytest.fail(f"docs/reference/{name} is out of date: run `{reference.COMMAND}` and commit "
                    f"the page.\n{diff[:4000]}")


def test_the_pages_name_every_registered_entry() -> None:
    for name in PRESETS:
        assert f"### `{name}`" in PAGES["strategies.md"], name
    for name in LOSSES:
        assert f"## `{name}`" in PAGES["losses.md"], name
    for name in SCHEDULES:
        assert f"## `{name}`" in PAGES["schedules.md"], name
    for name in DATASETS:
        assert f"## `{name}`" in PAGES["datasets.md"], name
    for key in valid_keys():
        assert f"| `{key}` |" in PAGES["configuration.md"], key


def test_the_pages_do_not_depend_on_the_checkout() -> None:
    for name, text in PAGES.items():
        assert str(reference.PACKAGE_PARENT) not in text, name
        assert " at 0x" not in text, name  # no object reprs with addresses
    assert "`lifelong_kd/strategies/lwf.py`, lines " in PAGES["strategies.md"]
    assert reference.render_all() == PAGES  # deterministic


def test_docstrings_become_markdown_that_renders_as_written() -> None:
    doc = ("LA = (1/T) sum_j R[j][j], a*_j - R[j][j] for ``x < y``; see :func:`~a.b.kl` and "
           "**Loss**. The loss is::\n\n    loss = a * b\n\nAfter.")
    assert reference.rest_to_markdown(doc) == (
        "LA = (1/T) sum_j R[j]\\[j], a\\*_j - R[j]\\[j] for `x < y`; see `kl` and **Loss**. "
        "The loss is:\n\n```text\nloss = a * b\n```\n\nAfter.")


def test_check_names_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--out", str(tmp_path)]) == 0
    assert reference.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "losses.md").write_text("# edited by hand\n", encoding="utf-8")
    assert reference.main(["--out", str(tmp_path), "--check"]) == 1
    assert f"losses.md is out of date: run `{reference.COMMAND}`" in capsys.readouterr().err
