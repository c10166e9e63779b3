"""Text from outside made inert for where it is shown (pure): one function per sink.

Registries' error texts and reason phrases, file names, refs, matrix values, engine and BuildKit
messages reach users' terminals, GitHub's log (where the runner executes workflow commands) and the
job summary (Markdown with HTML). Each sink has one function, and every sink uses it; each first
applies :func:`ci.redaction.redact`:

* :func:`terminal_text`: stdout and stderr (``ci.output.console.say``, ``ci.errors.failure``,
  progress). Control characters (an ANSI escape or an OSC 8 link in a file name, a carriage return
  that would overwrite the line) are shown as ``\\x1b``, ``\\r``; newlines kept only where asked.
  Nothing in it is a workflow command for the Actions runner: a line whose first non-blank
  characters are ``::`` (``::error::``, ``::add-mask::``, ``::stop-commands::``) shows its first
  colon as ``\\u003a``, and ``##[`` (the runner's legacy form, a command anywhere in a line) shows
  as ``\\u0023#[``. Both forms are JSON string escapes: ``--format json`` output stays JSON that
  decodes to the same values.
* :func:`markdown_text`: one line of a job summary, shown literally: control characters as above,
  newlines as spaces, and the characters Markdown or HTML would act on (``<``, ``>``, ``&``,
  ``|``, `` ` ``, ``[``, ``]``, ``*``, ``_``, ``~``, ``\\``) escaped. :func:`markdown_code`: the
  same text as a code span (digests, tags). ``ci.output.markdown.md_table`` uses them for every cell.
* :func:`workflow_command`: a workflow command this tool writes (``::warning file=F,line=N::message``),
  escaped as GitHub documents it: in the message ``%`` -> ``%25``, ``\\r`` -> ``%0D``, ``\\n`` ->
  ``%0A``; in property values also ``:`` -> ``%3A`` and ``,`` -> ``%2C``; any other control
  character shown as by :func:`terminal_text`. It returns a :class:`WorkflowCommand`, the one kind
  of line ``ci.output.console.say_command`` writes unescaped.
"""
from __future__ import annotations

import re

from ..redaction import redact

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# what the Actions runner reads as a command: '::' after leading whitespace (its TrimStart), '##[' anywhere
_COMMAND_START = re.compile(r"^([^\S\n]*):(?=:)", re.MULTILINE)
_LEGACY_COMMAND = "##["
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|&~])")
_PROPERTY = re.compile(r"^[a-z][A-Za-z]*$")
COMMANDS = ("error", "warning", "notice", "debug", "group", "endgroup")


class WorkflowCommand(str):
    """A workflow command line made by :func:`workflow_command` (its parts escaped)."""


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    return {"\r": "\\r", "\t": "\\t", "\n": "\\n"}.get(ch, f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")


def _controls(text: str, *, newlines: bool) -> str:
    if newlines:
        return _CONTROL.sub(_visible, text)
    return _CONTROL_NL.sub(lambda m: " " if m.group(0) == "\n" else _visible(m), text)


def terminal_text(text: str, *, newlines: bool = True) -> str:
    """``text`` for stdout/stderr: redacted, every control character but newlines (and tabs) shown
    escaped, and no line of it a workflow command (see the module docstring)."""
    shown = _controls(redact(text), newlines=newlines)
    shown = _COMMAND_START.sub(lambda m: m.group(1) + "\\u003a", shown)
    return shown.replace(_LEGACY_COMMAND, "\\u0023#[")


def markdown_text(text: str) -> str:
    """One line of Markdown that shows ``text`` as it is (no HTML, no link, no table cell boundary)."""
    return _MARKDOWN.sub(r"\\\1", _controls(redact(text), newlines=False))


def markdown_code(text: str) -> str:
    """``text`` as one Markdown code span (literal inside: no HTML, no emphasis), safe in a table cell."""
    body = _controls(redact(text), newlines=False).replace("|", "\\|")
    runs = [len(r) for r in re.findall(r"`+", body)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _controls(_escape_data(text), newlines=True).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str = "", **properties: object) -> WorkflowCommand:
    """``::command prop=value,...::message``, every part redacted and escaped; properties with value
    None are left out."""
    if command not in COMMANDS:
        raise ValueError(f"{command!r} is not a workflow command this project writes ({', '.join(COMMANDS)})")
    props = []
    for key, value in properties.items():
        if value is None:
            continue
        if not _PROPERTY.match(key):
            raise ValueError(f"{key!r} is not a workflow command property")
        props.append(f"{key}={_escape_property(redact(str(value)))}")
    head = f"::{command}" + (" " + ",".join(props) if props else "")
    return WorkflowCommand(f"{head}::{_controls(_escape_data(redact(message)), newlines=True)}")
