"""Markdown for job summaries (pure): the tables the verbs write to ``$GITHUB_STEP_SUMMARY``."""
from __future__ import annotations


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; ``|`` in a cell is escaped, a newline becomes a space."""
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"
