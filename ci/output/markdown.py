"""Markdown for job summaries (pure): the tables the verbs write to ``$GITHUB_STEP_SUMMARY``.

Every cell is text from somewhere (a registry's error, a file name, a tag) and is shown literally:
a ``str`` cell through :func:`ci.output.escape.markdown_text`, a :class:`Code` cell as code spans
through :func:`ci.output.escape.markdown_code`. Callers pass plain text, never Markdown.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .escape import markdown_code, markdown_text


@dataclass(frozen=True)
class Code:
    """A cell shown as code: one code span per text, separated by commas (tags, digests)."""

    texts: tuple[str, ...]


def code(*texts: str) -> Code:
    return Code(tuple(str(t) for t in texts))


Cell = str | Code


def md_cell(value: Cell) -> str:
    """One cell's Markdown (also usable outside a table: a list item's code or text)."""
    if isinstance(value, Code):
        return ", ".join(markdown_code(t) for t in value.texts)
    return markdown_text(str(value))


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A GitHub-flavoured Markdown table; every cell shown literally (no HTML, no row or cell boundary)."""
    out = ["| " + " | ".join(md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"
