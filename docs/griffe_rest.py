"""A Griffe extension for the API pages (mkdocs.yml): the package's docstrings are written in a
reST-ish style (double backticks, ``:func:`` roles, ``::`` before a formula block, and formulas
such as ``R[i][j]`` that Markdown would take for reference links); turn them into the Markdown
that renders them as written, with the function the generated reference pages use."""

from __future__ import annotations

from typing import Any

import griffe

from lifelong_kd.reference import rest_to_markdown


class RestToMarkdown(griffe.Extension):
    """Rewrite every docstring of the objects Griffe loads with :func:`rest_to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called once per loaded object (module, class, function, attribute)."""
        if obj.docstring is not None:
            obj.docstring.value = rest_to_markdown(obj.docstring.value)
