"""How the GitHub Actions runner reads a step's log (test helper): which workflow commands it executes.

A faithful reading of actions/runner (``ActionCommandManager``, ``ActionCommand.TryParseV2`` and
``TryParse``): a line ends at ``\\r``, ``\\n`` or ``\\r\\n``; ``::cmd props::data`` is a command when
the line starts with ``::`` after its leading whitespace is trimmed; ``##[cmd props]data`` is one
anywhere in a line; ``::stop-commands::TOKEN`` stops all of it until a line ``::TOKEN::``.
"""
from __future__ import annotations

import re

REGISTERED = {"add-mask", "add-matcher", "remove-matcher", "debug", "notice", "warning", "error", "group",
              "endgroup", "echo", "stop-commands", "save-state", "set-output", "set-env", "add-path"}


def runner_commands(log: str) -> list[tuple[str, str]]:
    """The workflow commands the runner would execute in ``log``: ``(command, data)`` in order."""
    done: list[tuple[str, str]] = []
    stopped = ""
    for line in re.split(r"\r\n|\r|\n", log):
        if stopped:
            if line == f"::{stopped}::":
                stopped = ""
                done.append(("resume", stopped))
            continue
        found = _v2(line) or _v1(line)
        if found is None:
            continue
        done.append(found)
        if found[0] == "stop-commands":
            stopped = found[1]
    return done


def _v2(line: str) -> tuple[str, str] | None:
    text = line.lstrip()
    if not text.startswith("::"):
        return None
    end = text.find("::", 2)
    if end < 0:
        return None
    name = text[2:end].split(" ", 1)[0]
    return (name, text[end + 2:]) if name in REGISTERED else None


def _v1(line: str) -> tuple[str, str] | None:
    start = line.find("##[")
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    name = line[start + 3:end].split(" ", 1)[0]
    return (name, line[end + 1:]) if name in REGISTERED else None


# lines a build could print that are workflow commands when printed as they are
HOSTILE = ["::error::pwned", "   ::add-mask::hide-everything", "text ##[set-output name=x;]y", "99%\r::warning::bar",
           "::stop-commands::guessed-token", "::endgroup::", "##[group]fake", "plain line 100% done"]
