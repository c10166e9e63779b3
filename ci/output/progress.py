"""Progress display (``invoke pipeline`` and the build tasks) and the pipeline's final table.

On a terminal: a rich live bar (legs done/total, the current step, elapsed time) with log
lines printed above it. Not on a terminal (CI logs, pipes, tests): one plain line per
event, prefixed by the elapsed time and the legs count, e.g.
``[  3.2s 2/7] backends -cpu-hello arm64: building``.

A build step's output is kept while the step runs (in memory, then in a temporary file: a CUDA
compile writes megabytes). When the step fails, all of it is printed, not a tail. In GitHub
Actions (``actions=True``) every finished step's output is printed too, in a collapsible group
(``::group::``), as it was written but with the runner's command processing stopped around it
(:mod:`ci.output.escape`): a line of build output is never executed as a workflow command.
Every other line this class prints goes through :func:`ci.output.escape.inert`.

Thread-safe: legs run on a thread pool and report from their threads. Every text shown (step names,
BuildKit's log lines and errors, registry notes) goes through ``terminal_text`` on both paths; only
the workflow commands that open and close a group or a raw block are written as they are.
"""
from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from .console import say, say_command, say_rich
from .escape import WorkflowCommand, group_block, inert, new_token, raw_block, terminal_text


@dataclass(frozen=True)
class Row:
    """One line of the final table: a suffix of one family."""

    suffix: str  # "-cpu-hello", "server -core"
    legs: str  # "amd64 arm64" with markers, e.g. "amd64 arm64(up to date)"
    digest: str  # list digest or "-"
    tags: str  # comma-separated tags or "-"
    result: str  # merged / up to date / skipped: reason / failed: reason
    failed: bool = False


HEADERS = ("suffix", "legs", "list digest", "tags", "result")


class Progress:
    """Legs done/total, current step, elapsed; see the module docstring."""

    def __init__(self, total: int, out: TextIO | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, actions: bool = False) -> None:
        self.total = total
        self.out = out or sys.stderr
        self.actions = actions  # GitHub Actions: every step's output in a group, commands stopped around it
        self.tty = (self.out.isatty() if tty is None else tty) and not actions
        self._token = new_token()
        self._pending: list[dict[str, StepLog]] = []  # each leg's steps still running (flushed at exit)
        self.clock = clock
        self.started = clock()
        self.done_count = 0
        self._lock = threading.Lock()
        self._rich: Any = None  # rich.progress.Progress
        self._task: Any = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        if self.tty:
            console = Console(file=self.out, highlight=False)
            self._rich = RichProgress(SpinnerColumn(), TextColumn("legs"), BarColumn(bar_width=20),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TextColumn("{task.description}", markup=False), console=console, transient=True)
            self._rich.__enter__()
            self._task = self._rich.add_task("starting", total=max(self.total, 1))
        return self

    def __exit__(self, *exc: object) -> None:
        for logs in self._pending:  # output that came after its step finished, or of steps never finished
            for step, log in list(logs.items()):
                if log.count and self.actions:
                    self._block(group_block(f"output of {step_name(step)}", log.lines(), self._token))
                log.close()
            logs.clear()
        if self._rich is not None:
            self._rich.__exit__(None, None, None)
            self._rich = None

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    # ---- events --------------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        text = inert(text)
        if self._rich is not None:
            self._rich.console.print(terminal_text(text), markup=False, highlight=False, soft_wrap=True)
        else:
            say(f"[{self.elapsed:6.1f}s {self.done_count}/{self.total}] {text}", self.out, flush=True)

    def _block(self, lines: Iterator[str] | list[str]) -> None:
        """Lines as they are (raw output, workflow commands), one after the other; the caller holds the lock
        or no one else prints."""
        if self._rich is not None:
            for line in lines:
                self._rich.console.print(terminal_text(line), markup=False, highlight=False, soft_wrap=True)
            return
        for line in lines:
            if isinstance(line, WorkflowCommand):
                say_command(line, self.out)
            else:
                say(line, self.out)
        self.out.flush()

    def step(self, what: str, text: str) -> None:
        """The current step of ``what`` (a leg, or a phase such as ``merge``)."""
        with self._lock:
            if self._rich is not None:
                self._rich.update(self._task, description=terminal_text(f"{what}: {text}", newlines=False)[:120])
            else:
                self._line(f"{what}: {text}")

    def log(self, text: str) -> None:
        """A line kept in the output (above the live bar on a terminal)."""
        with self._lock:
            self._line(text)

    def leg_done(self, what: str, outcome: str) -> None:
        """One leg finished (built and published, up to date, skipped or failed)."""
        with self._lock:
            self.done_count += 1
            if self._rich is not None:
                self._rich.update(self._task, completed=self.done_count,
                                  description=terminal_text(f"{what}: {outcome}", newlines=False)[:120])
            self._line(f"{what}: {outcome}")


    def build_event(self, what: str) -> Callable[[Any], None]:
        """A ``ci.builder`` event sink for leg ``what``: steps as lines (running, done with their duration,
        cached), warnings and notes kept; log lines move the live status on a terminal and are kept per
        step: a failing step's whole output is printed, and in Actions every step's, in a group."""
        logs: dict[str, StepLog] = {}
        with self._lock:
            self._pending.append(logs)

        def sink(ev: Any) -> None:
            if ev.kind == "log":
                log = logs.get(ev.step)
                if log is None:
                    log = logs[ev.step] = StepLog()
                log.add(ev.text)
                if self.tty:
                    self.step(what, f"{ev.step} | {ev.text}")
                return
            text = build_event_text(ev)
            if text is None:
                return
            if ev.kind == "running":
                self.step(what, text)
                return
            out = logs.pop(ev.step, None) if ev.step else None
            try:
                with self._lock:
                    self._line(f"{what}: {text}")
                    if out is None or not out.count:
                        return
                    if ev.kind == "failed":
                        self._line(f"{what}: the whole output of {step_name(ev.step)} ({out.count} lines):")
                        self._block(raw_block(out.lines(), self._token) if self.actions
                                    else (f"  | {line}" for line in out.lines()))
                    elif self.actions:
                        self._block(group_block(f"{what}: output of {step_name(ev.step)} ({out.count} lines)",
                                                out.lines(), self._token))
            finally:
                if out is not None:
                    out.close()
        return sink


class StepLog:
    """The output of one build step so far: in memory up to 1 MiB, then in a temporary file."""

    def __init__(self) -> None:
        self._f = tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+", encoding="utf-8", errors="replace",
                                                newline="\n")
        self.count = 0

    def add(self, line: str) -> None:
        self._f.write(line.replace("\n", " ") + "\n")
        self.count += 1

    def lines(self) -> Iterator[str]:
        self._f.seek(0)
        for line in self._f:
            yield line[:-1] if line.endswith("\n") else line

    def close(self) -> None:
        self._f.close()


STEP_WIDTH = 110


def step_name(name: str, width: int = STEP_WIDTH) -> str:
    """A build step's name on one line (BuildKit keeps a RUN's continuation lines in it)."""
    one = " ".join(name.split())
    return one if len(one) <= width else one[:width - 3] + "..."


def build_event_text(ev: Any) -> str | None:
    """The line shown for one ``ci.builder.BuildEvent`` (None: not shown as a line)."""
    if ev.kind == "running":
        return f"running  {step_name(ev.step)}"
    if ev.kind == "done":
        return f"done     {step_name(ev.step)} ({ev.seconds:.1f}s)"
    if ev.kind == "cached":
        return f"cached   {step_name(ev.step)}"
    if ev.kind == "failed":
        return f"FAILED   {step_name(ev.step)} ({ev.seconds:.1f}s)"
    if ev.kind in ("warning", "note"):
        return f"{ev.kind}: {ev.text}"
    return None


# ---- final table ----------------------------------------------------------------------------------
def format_table(rows: Sequence[Row]) -> str:
    """Aligned plain-text table (non-terminal output, tests)."""
    cells = [list(HEADERS)] + [[r.suffix, r.legs, r.digest, r.tags, r.result] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def print_table(rows: Sequence[Row], out: TextIO | None = None, tty: bool | None = None) -> None:
    """The final table: rich on a terminal, plain text otherwise."""
    stream = out or sys.stdout
    if not (stream.isatty() if tty is None else tty):
        say(format_table(rows), stream, flush=True)
        return
    table = Table(title="pipeline")
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for r in rows:
        style = "red" if r.failed else ("yellow" if r.result.startswith("skipped") else "green")
        table.add_row(*(terminal_text(c) for c in (r.suffix, r.legs, r.digest, r.tags.replace(", ", "\n"), r.result)),
                      style=style)
    say_rich(table, stream)
