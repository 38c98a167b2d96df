"""Markdown text: every text report.md takes from a result.json, a preset or a failure
(names, descriptions, settings, versions, error messages) is escaped where it enters it,
:func:`markdown_text` for plain text and :func:`markdown_code` for a code span, so that it
shows as written and adds no tag, block, cell, emphasis or link (issue 25)."""

from __future__ import annotations

import re
from typing import Any

#: Runs of whitespace (line breaks of every kind included) and control characters: one space.
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f]+")
#: Written as HTML entities: no tag, comment or autolink (``<javascript:...>``) can open.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: Backslash-escaped wherever they are (CommonMark's escapable ASCII punctuation, GFM's ``|``
#: and ``~``): the escape itself, code spans, emphasis, strikethrough, headings, table cells,
#: and links and images: with ``(`` escaped, ``](`` cannot give a link its destination, so
#: ``[`` and ``]`` stay as they are (variant names such as ``lwf [train.lr = 0.1]`` hold
#: them), report.md having no link reference definitions.
_ESCAPED = frozenset("\\`*~#|()!")
#: A URL scheme that runs or carries content: its colon is escaped, so that no renderer that
#: links bare URLs makes a link of it (CommonMark does not: without ``<`` it is text).
_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data):")
#: What could start a block at the start of a line once the characters above are escaped: a
#: list item (``- ``, ``+ ``, ``1. ``), a thematic break or setext underline (``---``,
#: ``===``); a marker followed by a letter or digit (``-0.5``, ``1.5``) starts none.
_BLOCK_START = re.compile(r"(?:[-+=]|\d{1,9}\.)(?![^\W_])")


def _one_line(value: Any) -> str:
    """``str(value)`` on one line, without control characters or surrounding spaces."""
    return _BREAKS.sub(" ", str(value)).strip()


def markdown_text(value: Any) -> str:
    """``value`` (any text a result.json, a preset or a failure brings: names, descriptions,
    settings, error messages) as Markdown that shows it as written and does nothing else.

    Issue 25: report.md is read on GitHub and rendered to HTML; a text written into it as is
    could add tags (``<script>``), headings, list items, quotes, table cells, emphasis,
    code, links or images. Here the text is put on one line (line breaks become spaces: no
    block can start inside it), ``&``, ``<``, ``>`` become entities, the punctuation of
    :data:`_ESCAPED` is backslash-escaped, and so is ``_`` where it could open or close
    emphasis (not between two letters or digits: ``weight_decay`` stays), the colon of a
    ``javascript:`` (``vbscript:``, ``data:``) scheme and a list or setext marker at the
    start. Ordinary names and settings (``lwf``, ``lwf-mammoth``, ``avalanche:Replay``,
    ``lwf [train.lr = 0.1]``) come out unchanged.
    """
    text = _one_line(value)
    out = []
    for i, ch in enumerate(text):
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _ESCAPED:
            out.append(f"\\{ch}")
        elif ch == "_" and not (0 < i < len(text) - 1 and text[i - 1].isalnum()
                                and text[i + 1].isalnum()):
            out.append("\\_")
        else:
            out.append(ch)
    escaped = _SCHEME.sub(r"\1\\:", "".join(out))
    start = _BLOCK_START.match(escaped)
    if start:
        end = start.end() - 1  # the marker's last character: "-", "+", "=" or the "." of "1."
        escaped = f"{escaped[:end]}\\{escaped[end:]}"
    return escaped


#: What a code span cannot hold as it is: its closing backtick, a table's cell separator,
#: and what would read as markup in a renderer that does not keep code spans literal.
_CODE_UNSAFE = frozenset("`|<>&\\")


def markdown_code(value: Any) -> str:
    """``value`` as an inline code span (`` `lwf` ``) when the span shows it as written: on one
    line (:func:`markdown_text`), without a backtick, ``|``, ``<``, ``>``, ``&``, ``\\`` or a
    ``javascript:`` scheme; otherwise as :func:`markdown_text`, plain escaped text."""
    text = _one_line(value)
    if text and not (_CODE_UNSAFE & set(text)) and not _SCHEME.search(text):
        return f"`{text}`"
    return markdown_text(value)
