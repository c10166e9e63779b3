"""Text from outside (file names, module paths, workflow values) made safe for where it is shown (pure).

* :func:`terminal_text`: control characters (an ANSI escape in a file name, a carriage return
  that would overwrite the line) shown as ``\\x1b``, ``\\r``; newlines kept only where asked.
* :func:`markdown_text`: one line of a job summary: control characters as above, newlines as
  spaces, and the characters Markdown or HTML would act on (``<``, ``>``, ``|``, `` ` ``,
  ``[``, ``]``, ``*``, ``_``) escaped.
* :func:`workflow_command`: a GitHub Actions workflow command (``::warning file=F,line=N::message``),
  escaped as GitHub documents it: in the message ``%`` -> ``%25``, ``\\r`` -> ``%0D``,
  ``\\n`` -> ``%0A``; in property values also ``:`` -> ``%3A`` and ``,`` -> ``%2C``; any other
  control character shown as by :func:`terminal_text`.

Text from outside in an Actions log (a build's output, step names that quote the Dockerfile): the
runner reads the log line by line (``\\r``, ``\\n`` and ``\\r\\n`` all end a line) and executes
a line that starts with ``::`` once leading whitespace is trimmed, and ``##[command]`` anywhere in a
line (the older syntax). On a pull request that output comes from its author, so none of it may
reach the log as a command:

* :func:`raw_block`: lines shown exactly as they are, between ``::stop-commands::<token>`` and
  ``::<token>::`` (the runner executes nothing in between; the token is random per process, so the
  output cannot end the block itself); :func:`group_block` puts one in a collapsible group.
* :func:`inert`: one line that stays readable but is no command: only what a terminal would show
  after a carriage return is kept, and a zero-width space goes before a leading ``::`` and inside
  ``##[``. For single lines (step names, warnings, an error message's tail) outside a raw block.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u0085\u2028\u2029]")
_CONTROL_NL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|])")
_PROPERTY = re.compile(r"^[a-z][A-Za-z]*$")
COMMANDS = ("error", "warning", "notice", "debug")
ZWSP = "\u200b"  # not whitespace to the runner's TrimStart, invisible in the log


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    return {"\r": "\\r", "\t": "\\t", "\n": "\\n"}.get(ch, f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def terminal_text(text: str, *, newlines: bool = True) -> str:
    """``text`` with every control character but newlines (and tabs) shown escaped."""
    if newlines:
        return _CONTROL.sub(lambda m: m.group(0) if m.group(0) == "\t" else _visible(m), text)
    return _CONTROL_NL.sub(lambda m: " " if m.group(0) == "\n" else _visible(m), text)


def markdown_text(text: str) -> str:
    """One line of Markdown that shows ``text`` as it is."""
    return _MARKDOWN.sub(r"\\\1", terminal_text(text, newlines=False))


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return terminal_text(_escape_data(text)).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: object) -> str:
    """``::command prop=value,...::message``, every part escaped; properties with value None are left out."""
    if command not in COMMANDS:
        raise ValueError(f"{command!r} is not a workflow command this project writes ({', '.join(COMMANDS)})")
    props = []
    for key, value in properties.items():
        if value is None:
            continue
        if not _PROPERTY.match(key):
            raise ValueError(f"{key!r} is not a workflow command property")
        props.append(f"{key}={_escape_property(str(value))}")
    head = f"::{command}" + (" " + ",".join(props) if props else "")
    return f"{head}::{terminal_text(_escape_data(message))}"


# ---- text from outside in an Actions log ---------------------------------------------------------
def new_token() -> str:
    """A random ``stop-commands`` token (one per process is enough: the build cannot read it)."""
    return secrets.token_hex(16)


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
    return [f"::group::{_escape_data(inert(title))}", *raw_block(lines, token), "::endgroup::"]
