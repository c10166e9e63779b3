"""One lifecycle for the suite's threaded servers (stdlib only): the fault proxy
(:mod:`tests.support.faultproxy`), the hostile servers and the token service they run
(:mod:`tests.support.hostile`, :mod:`tests.support.tokenservice`), the TCP relay
(:mod:`tests.support.tcprelay`) and the engine socket forwarder of ``tests/e2e/test_faults.py``.

A :class:`Served` listens on ``address:port`` (port 0: a free one; or on a unix socket ``path``),
accepts in a daemon thread and serves each connection in a daemon thread of its own by calling
``serve(conn, addr)``. It keeps the open connections, refuses more than ``max_connections`` at once
(``refuse(conn)``), gives each connection ``io_timeout``, and stops itself after ``lifetime``
seconds. :meth:`stop` (also on leaving the ``with`` block) closes the listener, which ends the
accept loop, drops every open connection (``drop(conn)``) and joins the accept thread; no thread it
started outlives the test for long (they are daemons, and their sockets are closed).
:meth:`down` and :meth:`up` close and reopen the listener on the same port: a server that went
away and came back (TCP only: a unix socket's path is bound once).
"""
from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

Serve = Callable[[socket.socket, Any], None]


def close_quietly(sock: socket.socket) -> None:
    """Close, errors ignored."""
    with contextlib.suppress(OSError):
        sock.close()


def shutdown_quietly(sock: socket.socket) -> None:
    """Shut both ways (a blocked read in the connection's thread returns), errors ignored; the
    connection's thread closes it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def close_listener(sock: socket.socket | None) -> None:
    """Shut a listening socket down (unblocking its accept loop) and close it; errors ignored."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


class Served:
    """See the module docstring."""

    def __init__(self, serve: Serve, *, name: str, address: str = "127.0.0.1", port: int = 0,
                 path: Path | None = None, backlog: int = 64, max_connections: int | None = None,
                 io_timeout: float | None = None, lifetime: float | None = None,
                 refuse: Callable[[socket.socket], None] = close_quietly,
                 drop: Callable[[socket.socket], None] = shutdown_quietly) -> None:
        self.serve = serve
        self.name = name
        self.address = address
        self.path = path
        self.backlog = backlog
        self.io_timeout = io_timeout
        self.lifetime = lifetime
        self.refuse = refuse
        self.drop = drop
        self.stopped = threading.Event()
        self._port = port
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections) if max_connections else None
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ---- where -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        """``address:port`` (known once started; the port stays the same across down/up)."""
        return f"{self.address}:{self._port}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}"

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> Served:
        self.up()
        if self.lifetime is not None:
            self._timer = threading.Timer(self.lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        self.down()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def up(self) -> None:
        """Listen (again, on the same port); nothing once stopped."""
        if self._listener is not None or self.stopped.is_set():
            return
        if self.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(self.path))
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.address, self._port))
            self._port = sock.getsockname()[1]
        sock.listen(self.backlog)
        self._listener = sock
        self._thread = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True,
                                        name=f"{self.name}-{self.path or self.host}")
        self._thread.start()

    def down(self) -> None:
        """Refuse new connections (the listener closed) and drop the open ones."""
        sock, self._listener = self._listener, None
        close_listener(sock)
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            self.drop(conn)

    # ---- connections -----------------------------------------------------------------------
    def track(self, sock: socket.socket) -> bool:
        """Drop ``sock`` with the connections (a relay's upstream side); False once stopped."""
        with self._lock:
            if self.stopped.is_set():
                return False
            self._conns.add(sock)
            return True

    def forget(self, conn: socket.socket) -> None:
        """``conn`` is no longer dropped by :meth:`down` (its handler dropped it itself)."""
        with self._lock:
            self._conns.discard(conn)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self.stopped.is_set():
            try:
                conn, addr = listener.accept()
            except OSError:
                return
            if self._slots is not None and not self._slots.acquire(blocking=False):
                self.refuse(conn)
                continue
            if self.io_timeout is not None:
                conn.settimeout(self.io_timeout)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn, addr), daemon=True).start()

    def _serve(self, conn: socket.socket, addr: Any) -> None:
        try:
            self.serve(conn, addr)
        except Exception:  # noqa: BLE001 - a client going away must not kill the server
            pass
        finally:
            self.forget(conn)
            close_quietly(conn)
            if self._slots is not None:
                self._slots.release()


class ServedBy:
    """The lifecycle of a server that runs on a :class:`Served` (``self._served``): ``start``/``stop`` and
    the ``with`` block, returning the server itself."""

    _served: Served

    def start(self) -> Self:
        self._served.start()
        return self

    def stop(self) -> None:
        self._served.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
