"""A byte-for-byte TCP relay on loopback that counts the connections it accepts (stdlib only).

In front of a registry (or of a :class:`tests.support.faultproxy.FaultProxy`), it shows from outside the
client how many TCP connections the client opened: keep-alive reuse, observable. It reads and
changes nothing; each accepted connection gets its own connection upstream and two pumps
(daemon threads). Use it as a context manager (its lifecycle: :mod:`tests.support.served`).
"""
from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

from tests.support.served import Served, close_quietly


class TcpRelay:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.accepted = 0
        self._lock = threading.Lock()
        self._served = Served(self._relay, name="tcprelay", drop=close_quietly)

    @property
    def host(self) -> str:
        return self._served.host

    def start(self) -> TcpRelay:
        self._served.start()
        return self

    def stop(self) -> None:
        self._served.stop()

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _relay(self, conn: socket.socket, addr: Any) -> None:
        try:
            up = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            return  # not counted; the connection is closed
        if not self._served.track(up):
            close_quietly(up)
            return
        with self._lock:
            self.accepted += 1
        back = threading.Thread(target=self._pump, args=(up, conn), daemon=True)
        back.start()
        self._pump(conn, up)
        back.join()
        self._served.forget(up)
        close_quietly(up)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(None)
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
