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

Text from outside in an Actions log (a build's output, step names that quote the Dockerfile): the
runner reads the log line by line (``\\r``, ``\\n`` and ``\\r\\n`` all end a line) and executes
a line that starts with ``::`` once leading whitespace is trimmed, and ``##[command]`` anywhere in a
line (the older syntax). On a pull request that output comes from its author, so none of it may
reach the log as a command:

* :func:`raw_block`: the lines between ``::stop-commands::<token>`` and ``::<token>::`` (the runner
  executes nothing in between; the token is random per process, so the output cannot end the block
  itself), each line also through :func:`terminal_text` when printed; :func:`group_block` puts one
  in a collapsible group.
* :func:`inert`: one line that stays readable but is no command: only what a terminal would show
  after a carriage return is kept, and a zero-width space goes before a leading ``::`` and inside
  ``##[``. For single lines (step names, warnings, an error message's tail) outside a raw block.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from ..redaction import redact

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# what the Actions runner reads as a command: '::' after leading whitespace (its TrimStart), '##[' anywhere
_COMMAND_START = re.compile(r"^([^\S\n]*):(?=:)", re.MULTILINE)
_LEGACY_COMMAND = "##["
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|&~])")
_PROPERTY = re.compile(r"^[a-z][A-Za-z]*$")
COMMANDS = ("error", "warning", "notice", "debug", "group", "endgroup")
ZWSP = "\u200b"  # not whitespace to the runner's TrimStart, invisible in the log


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
    """``lines`` with the runner's command processing stopped around them (the two ends are
    :class:`WorkflowCommand` lines; the others are still printed through :func:`terminal_text`)."""
    return [WorkflowCommand(f"::stop-commands::{token}"), *lines, WorkflowCommand(f"::{token}::")]


def group_block(title: str, lines: Iterable[str], token: str) -> list[str]:
    """A collapsible group titled ``title`` holding ``lines`` as :func:`raw_block` does."""
    return [workflow_command("group", inert(title)), *raw_block(lines, token), workflow_command("endgroup")]
