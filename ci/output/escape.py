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
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u0085\u2028\u2029]")
_CONTROL_NL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|])")
_PROPERTY = re.compile(r"^[a-z][A-Za-z]*$")
COMMANDS = ("error", "warning", "notice", "debug")


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
