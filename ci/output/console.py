"""The one output path: every line a front end or a verb shows users goes to a stream from here,
which redacts each write (:func:`localai_ci.redaction.redact`: registered secrets become ``***``).

The front ends print with :func:`say`; the verbs that report as they go (``run_leg``,
``run_pipeline``) write to the streams they are given, wrapped with :func:`redacted` (their
defaults, the process's stdout and stderr, too), and so does the live progress display they drive.
Escaping text that came from outside stays where it is shown (:mod:`localai_ci.output.escape`).
"""
from __future__ import annotations

import sys
from typing import Any, TextIO, cast

from ..redaction import redact


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


def say(text: str, *, err: bool = False, flush: bool = False, end: str = "\n") -> None:
    """Print a line for the user on stdout (``err``: stderr), redacted."""
    print(text, file=redacted(sys.stderr if err else sys.stdout), flush=flush, end=end)
