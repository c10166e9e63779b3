"""Wall-clock deadlines of registry requests and operations (adapter support).

A socket timeout (``RetryPolicy.request_timeout``) bounds each read, not a request: a server
sending one byte every few seconds never trips it. So every request also has a wall-clock
deadline (``RetryPolicy.request_deadline``, plus the time its body needs at
``RetryPolicy.min_rate``), never later than the end of the operation it belongs to
(``RetryPolicy.deadline``: every attempt of one ``RegistryClient`` call, retries included).

- :class:`OperationDeadline` is a session's clock: the end of the operation in progress
  (nested operations keep the earlier end) and :meth:`OperationDeadline.request_window`, the
  deadline of the next request.
- :func:`arm` puts a request's deadline in the one watchdog of the process
  (:class:`_Deadlines`): when it passes before :meth:`Alarm.cancel`, every socket of the
  session is shut down, which unblocks a read in progress; the transport then raises
  :class:`DeadlineExceeded` (retried while the operation's deadline lasts).
"""
from __future__ import annotations

import contextlib
import heapq
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any


class DeadlineExceeded(Exception):
    """A request still incomplete at its wall-clock deadline (retried while the operation's lasts)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:.1f}s (wall-clock deadline of one request)")
        self.text = str(self)


class OperationDeadline:
    """The end (monotonic) of the operation a session is running, if any; see the module docstring."""

    def __init__(self) -> None:
        self.at: float | None = None

    @contextlib.contextmanager
    def running(self, seconds: float) -> Iterator[float]:
        """An operation of at most ``seconds`` from now (never past an enclosing one's end); yields its start."""
        start = time.monotonic()
        outer = self.at
        self.at = start + seconds if outer is None else min(outer, start + seconds)
        try:
            yield start
        finally:
            self.at = outer

    def request_window(self, seconds: float) -> tuple[float, float]:
        """(monotonic deadline, seconds allowed) of a request allowed ``seconds``, cut at the operation's end."""
        at = time.monotonic() + seconds
        allowed = seconds
        if self.at is not None and self.at < at:
            at = self.at
            allowed = max(0.0, at - time.monotonic())
        return at, allowed


class Alarm:
    """One request's deadline, armed in :data:`_DEADLINES`: when it passes before :meth:`cancel`,
    every socket of the session is shut down (unblocking a read in progress) and ``fired`` is set."""

    __slots__ = ("at", "conns", "fired", "cancelled")

    def __init__(self, at: float, conns: weakref.WeakSet[Any]) -> None:
        self.at = at
        self.conns = conns
        self.fired = False
        self.cancelled = False

    def cancel(self) -> None:
        _DEADLINES.cancel(self)

    def _fire(self) -> None:
        self.fired = True
        for conn in list(self.conns):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError, ValueError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS


class _Deadlines:
    """The one watchdog thread of the process: a heap of request deadlines, every session's.

    Arming and cancelling a deadline is a heap push and a flag under a lock (a request does not
    start a timer thread of its own: that cost a thread start and a GIL hand-over per request).
    The thread sleeps until the earliest deadline and fires only alarms not cancelled by then;
    cancelled entries are dropped when they reach the top, or all at once when they are most of
    the heap. Started on first use (again in a forked child), a daemon.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = 0
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def arm(self, at: float, conns: weakref.WeakSet[Any]) -> Alarm:
        alarm = Alarm(at, conns)
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="registry-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is alarm:  # earlier than what the thread sleeps for
                self._cond.notify()
        return alarm

    def cancel(self, alarm: Alarm) -> None:
        with self._cond:
            if alarm.cancelled or alarm.fired:
                return
            alarm.cancelled = True
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [e for e in self._heap if not e[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def pending(self) -> int:
        """Deadlines armed and neither cancelled nor fired (for tests)."""
        with self._cond:
            return sum(1 for e in self._heap if not e[2].cancelled)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled -= 1
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, alarm = heapq.heappop(self._heap)
                alarm._fire()

    def _after_fork(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap, self._cancelled, self._thread = [], 0, None


_DEADLINES = _Deadlines()
os.register_at_fork(after_in_child=_DEADLINES._after_fork)


def arm(at: float, conns: weakref.WeakSet[Any]) -> Alarm:
    """Watch the deadline ``at`` (monotonic) of a request sent over the connections ``conns``."""
    return _DEADLINES.arm(at, conns)
