"""The terminal: every line this tool writes to stdout or stderr goes through here.

:func:`say` writes text through :func:`ci.output.escape.terminal_text` (redacted, control characters
shown escaped, no line a workflow command the Actions runner would execute), so a registry's error
text, a file name or a BuildKit log line printed inside a message stays data. :func:`say_command`
writes a workflow command this tool composed (:func:`ci.output.escape.workflow_command`), the one
kind of line written as it is; :func:`say_rich` a rich table whose cells went through
``terminal_text``. The verbs that report as they go (``run_leg``, ``run_pipeline``) write to the
streams the front end gives them, wrapped with :func:`redacted` (their defaults, stdout and stderr,
too), through ``say``. ``tests/output/test_escape.py`` checks that nothing under ``ci/`` prints any other way.
"""
from __future__ import annotations

import sys
from typing import Any, TextIO, cast

from ..redaction import redact
from .escape import WorkflowCommand, terminal_text


def say(text: object, file: TextIO | None = None, *, end: str = "\n", flush: bool = False) -> None:
    """Print ``text`` for a user (stdout unless ``file``), made inert (see the module docstring)."""
    print(terminal_text(str(text)), file=file if file is not None else sys.stdout, end=end, flush=flush)


def say_rich(renderable: Any, file: TextIO | None = None) -> None:
    """Print a rich renderable (a table) on a terminal; every text in it went through ``terminal_text``."""
    from rich.console import Console  # noqa: PLC0415 (rich costs start-up; only matrix.report needs it here)

    Console(file=file if file is not None else sys.stdout, highlight=False).print(renderable)


def say_command(command: WorkflowCommand, file: TextIO | None = None) -> None:
    """Print one workflow command made by ``workflow_command`` (its parts are escaped already)."""
    if not isinstance(command, WorkflowCommand):
        raise TypeError("say_command takes a WorkflowCommand (ci.output.escape.workflow_command)")
    print(command, file=file if file is not None else sys.stdout, flush=True)


class RedactedStream:
    """A text stream that redacts every write and passes everything else (``flush``, ``isatty``,
    ``encoding``, ...) to the stream it wraps."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def redacted(stream: TextIO) -> TextIO:
    """``stream``, redacting every write (a stream already redacting is returned as it is)."""
    if isinstance(stream, RedactedStream):
        return cast(TextIO, stream)
    return cast(TextIO, RedactedStream(stream))
