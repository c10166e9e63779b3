"""Text from outside in a GitHub Actions log, made inert (pure).

The Actions runner reads the step's output line by line (``\\r``, ``\\n`` and ``\\r\\n`` all end a
line) and executes two kinds of workflow commands in it: a line that starts with ``::`` once
leading whitespace is trimmed (``::add-mask::``, ``::error::``, ``::stop-commands::``, ...), and
``##[command]`` anywhere in a line (the older syntax). A build's output (a ``RUN`` step's lines,
step names that quote the Dockerfile, BuildKit's messages) comes from the repository -- on a pull
request, from its author -- so none of it may reach the log as a command. Two tools:

- :func:`raw_block`: lines shown exactly as they are, between ``::stop-commands::<token>`` and
  ``::<token>::`` (the runner executes nothing in between; the token is random per process, so the
  output cannot end the block itself). Used for every step's output in a collapsible group
  (:func:`group_block`) and for a failing step's whole output.
- :func:`inert`: one line that stays readable but is no command: only what a terminal would show
  after a carriage return is kept, and a zero-width space goes before a leading ``::`` and inside
  ``##[``. Used for single lines (step names, warnings, the error message's tail) printed outside
  a raw block.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable

ZWSP = "\u200b"  # not whitespace to the runner's TrimStart, invisible in the log


def new_token() -> str:
    """A random ``stop-commands`` token (one per process is enough: the build cannot read it)."""
    return secrets.token_hex(16)


def escape_data(text: str) -> str:
    """A workflow command's data (after its ``::``), escaped as the Actions toolkit does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def inert(line: str) -> str:
    """``line`` as it would read on a terminal, never a workflow command (see the module docstring)."""
    segments = [s for s in line.split("\r") if s]
    text = segments[-1] if segments else ""
    text = text.replace("\n", " ").replace("##[", f"##{ZWSP}[")
    if text.lstrip().startswith("::"):
        text = ZWSP + text
    return text


def raw_block(lines: Iterable[str], token: str) -> list[str]:
    """``lines`` as they are, with the runner's command processing stopped around them."""
    return [f"::stop-commands::{token}", *lines, f"::{token}::"]


def group_block(title: str, lines: Iterable[str], token: str) -> list[str]:
    """A collapsible group titled ``title`` holding ``lines`` as they are."""
    return [f"::group::{escape_data(inert(title))}", *raw_block(lines, token), "::endgroup::"]
