"""A fault-injecting HTTP reverse proxy on loopback, in front of one real registry (stdlib only).

Per request, with configurable probabilities and a deterministic seed, it answers
a 5xx itself, answers ``429`` with ``Retry-After``, resets the connection (RST,
either mid-request or mid-response after forwarding), or delays the response.
At runtime it can fail every request (:meth:`FaultProxy.fail_all`), fail the
next N (:meth:`FaultProxy.fail_next`) or go down (:meth:`FaultProxy.set_down`:
the listening socket is closed, so connections are refused, and open connections
are reset). It counts requests, forwarded requests and injected faults.

Bodies stream in both directions in 64 KiB pieces (``Content-Length`` and chunked
requests; chunked responses re-chunked), so blobs are never held in memory.
``Host`` is set to the upstream and ``Location``/``Link`` headers naming the
upstream are rewritten to the proxy, so upload URLs keep going through it.

A registry far away: ``latency`` (seconds, one way) holds every request that long before it is
forwarded and every answer that long before it is sent back, so a request costs a round trip of
``2 * latency`` as it does to a registry tens of milliseconds away; ``rate`` (bytes per second,
per connection) paces the bodies both ways, as a link of that bandwidth would. ``routes`` counts
requests by method and kind (``("GET", "manifests")``: what Docker Hub counts against its pull limit).

Bounded: at most ``max_connections`` concurrent connections (more are reset),
socket timeouts of ``io_timeout``, and the proxy stops itself after ``lifetime``
seconds. Threads are daemons. Use it as a context manager (its lifecycle: :mod:`tests.support.served`).
"""
from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

from tests.support.served import Served, ServedBy

KINDS = ("error", "throttle", "reset", "slow")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "host"})
PIECE = 64 * 1024


def body_pieces(rfile: Any, headers: Any) -> Iterator[bytes]:
    """Yield a request body read from ``rfile`` in pieces (Content-Length or chunked, as
    ``headers`` say), never all at once. Shared with :mod:`tests.support.hostile`."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        while True:
            line = rfile.readline(1024)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            while size:
                data = rfile.read(min(size, PIECE))
                if not data:
                    raise ConnectionError("client closed mid-chunk")
                size -= len(data)
                yield data
            rfile.readline(1024)
    else:
        left = int(headers.get("Content-Length") or 0)
        while left:
            data = rfile.read(min(left, PIECE))
            if not data:
                raise ConnectionError("client closed mid-body")
            left -= len(data)
            yield data


@dataclass(frozen=True)
class Faults:
    """Probability per request of each fault kind (their sum must be <= 1)."""

    error: float = 0.0      # answer a 5xx (one of ``statuses``) without forwarding
    throttle: float = 0.0   # answer 429 with ``Retry-After: retry_after``
    reset: float = 0.0      # RST the connection mid-request or mid-response
    slow: float = 0.0       # delay ``slow_seconds`` then forward
    retry_after: str = "0"
    slow_seconds: float = 0.2
    statuses: tuple[int, ...] = (500, 502, 503, 504)

    def __post_init__(self) -> None:
        total = self.error + self.throttle + self.reset + self.slow
        if not 0.0 <= total <= 1.0:
            raise ValueError(f"fault probabilities add up to {total}, expected 0..1")


def route_of(path: str) -> str:
    """What a registry request is about: ``manifests``, ``blobs``, ``uploads``, ``tags``, ``v2`` or ``other``."""
    parts = path.split("?", 1)[0].rstrip("/").split("/")
    for kind in ("uploads", "manifests", "blobs", "tags"):
        if kind in parts:
            return kind
    return "v2" if parts in (["", "v2"], [""]) else "other"


def _rst(sock: socket.socket, *, other_thread: bool = False) -> None:
    """Close with SO_LINGER 0: the peer sees a connection reset.

    The handler's rfile/wfile keep the descriptor open after ``close()`` until the handler
    returns; from another thread ``shutdown(SHUT_RD)`` wakes the handler's blocked read
    (nothing is sent), it returns, and the final close sends the RST.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if other_thread:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()



class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no log lines, and a client that went away is not an error (shared
    with :mod:`tests.support.hostile`)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()


class _Handler(QuietHandler):
    server: FaultProxy  # type: ignore[assignment]

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # ---- request body --------------------------------------------------------------------
    def _body_pieces(self) -> Any:
        return self.server._paced(body_pieces(self.rfile, self.headers))

    def _reset(self) -> None:
        self.close_connection = True
        self.server._forget(self.connection)
        _rst(self.connection)

    # ---- one request ---------------------------------------------------------------------
    def _proxy(self) -> None:
        kind, detail = self.server._decide(self.command, self.path)
        if self.server.latency:
            time.sleep(self.server.latency)  # the request on its way
        faults = self.server.faults
        if kind == "reset" and detail == "request":
            has_body = bool(self.headers.get("Content-Length", "0") != "0" or self.headers.get("Transfer-Encoding"))
            if has_body:  # take part of the body first: the client is mid-upload when the RST comes
                with contextlib.suppress(Exception):
                    next(iter(self._body_pieces()))
            self._reset()
            return
        if kind in ("error", "throttle"):
            for _ in self._body_pieces():
                pass  # drain (streamed, discarded) so the connection stays usable
            status = int(detail) if kind == "error" else 429
            body = b'{"errors":[{"code":"INJECTED","message":"fault proxy"}]}'
            self.send_response_only(status)
            if kind == "throttle":
                self.send_header("Retry-After", faults.retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if kind == "slow":
            time.sleep(faults.slow_seconds)
        self._forward(reset_response=(kind == "reset"))

    def _forward(self, *, reset_response: bool) -> None:
        proxy = self.server
        up = http.client.HTTPConnection(proxy.upstream_hostname, proxy.upstream_port, timeout=proxy.io_timeout)
        try:
            path = self.path
            if "://" in path:  # absolute-form
                path = "/" + path.split("://", 1)[1].split("/", 1)[1]
            up.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
            up.putheader("Host", proxy.upstream)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    up.putheader(name, value)
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            if chunked:
                up.putheader("Transfer-Encoding", "chunked")
            up.endheaders()
            for piece in self._body_pieces():
                up.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                up.send(b"0\r\n\r\n")
            resp = up.getresponse()
            with proxy._lock:
                proxy.forwarded += 1
            if proxy.latency:
                time.sleep(proxy.latency)  # the answer on its way back
            self._relay(resp, reset_response)
        except (OSError, http.client.HTTPException):
            self._reset()
        finally:
            up.close()

    def _relay(self, resp: http.client.HTTPResponse, reset_response: bool) -> None:
        proxy = self.server
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        length = resp.getheader("Content-Length")
        self.send_response_only(resp.status, resp.reason)
        if reset_response and (no_body or not length or int(length) < 2):
            self.wfile.write(b"".join(self._headers_buffer))  # type: ignore[attr-defined]  # status line only, then RST
            self._reset()
            return
        for name, value in resp.getheaders():
            low = name.lower()
            if low in HOP_BY_HOP:
                continue
            if low in ("location", "link"):
                value = value.replace(proxy.upstream_url, proxy.url)
            self.send_header(name, value)
        chunk_out = not no_body and length is None
        if chunk_out:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        if reset_response:
            assert length is not None
            self.wfile.write(resp.read(int(length) // 2))
            self._reset()
            return
        for piece in proxy._paced(iter(lambda: resp.read(PIECE), b"")):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunk_out else piece)
        if chunk_out:
            self.wfile.write(b"0\r\n\r\n")


class FaultProxy(ServedBy):
    """See the module docstring. ``upstream`` is ``127.0.0.1:PORT`` of a plain-HTTP registry."""

    def __init__(self, upstream: str, faults: Faults = Faults(), *, seed: int = 0, port: int = 0,
                 lifetime: float = 300.0, max_connections: int = 64, io_timeout: float = 30.0,
                 latency: float = 0.0, rate: float = 0.0) -> None:
        self.upstream = upstream
        self.upstream_hostname, _, up_port = upstream.rpartition(":")
        self.upstream_port = int(up_port)
        self.upstream_url = f"http://{upstream}"
        self.faults = faults
        self.io_timeout = io_timeout
        self.lifetime = lifetime
        self.latency = latency  # seconds, each way
        self.rate = rate  # bytes per second per connection, each way; 0: unbounded
        self.requests = 0
        self.forwarded = 0
        self.routes: Counter[tuple[str, str]] = Counter()  # (method, "manifests" | "blobs" | "uploads" | ...)
        self.injected: Counter[str] = Counter()
        self.seen: deque[tuple[str, str, str]] = deque(maxlen=2000)  # (method, path, fault or "")
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._all: str | None = None
        self._next: list[str] = []
        self._served = Served(self._serve, name="faultproxy", port=port, backlog=64, max_connections=max_connections,
                              io_timeout=io_timeout, lifetime=lifetime, refuse=_rst,
                              drop=lambda c: _rst(c, other_thread=True))

    # ---- identity ------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._served.host

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # ---- control -------------------------------------------------------------------------
    def set_faults(self, faults: Faults | None = None, **changes: Any) -> None:
        """Replace the fault probabilities (``set_faults(error=0.3)`` changes one field)."""
        with self._lock:
            self.faults = replace(faults or self.faults, **changes)

    def fail_all(self, kind: str | None) -> None:
        """Every request gets fault ``kind`` (one of KINDS); None heals."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {KINDS}")
        with self._lock:
            self._all = kind

    def fail_next(self, count: int, kind: str) -> None:
        """The next ``count`` requests get fault ``kind`` (before probabilities and fail_all)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {KINDS}")
        with self._lock:
            self._next.extend([kind] * count)

    def set_down(self, down: bool) -> None:
        """Down: refuse new connections (listener closed) and reset open ones. Up: listen again, same port."""
        if down:
            self._served.down()
        else:
            self._served.up()

    @property
    def total_faults(self) -> int:
        return sum(self.injected.values())

    # ---- internals (start, stop and the with block: ServedBy) --------------------------------
    def _serve(self, conn: socket.socket, addr: Any) -> None:
        _Handler(conn, addr, self)  # type: ignore[arg-type]

    def _forget(self, conn: socket.socket) -> None:
        self._served.forget(conn)

    def _paced(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """``pieces`` at no more than ``rate`` bytes per second."""
        if not self.rate:
            yield from pieces
            return
        start, sent = time.monotonic(), 0
        for piece in pieces:
            sent += len(piece)
            wait = start + sent / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield piece

    def _decide(self, method: str, path: str) -> tuple[str | None, str]:
        """The fault for the next request and its detail (status, or reset phase); recorded in ``seen``."""
        with self._lock:
            self.requests += 1
            self.routes[(method, route_of(path))] += 1
            f = self.faults
            if self._next:
                kind: str | None = self._next.pop(0)
            elif self._all:
                kind = self._all
            else:
                r = self._rng.random()
                kind = None
                for name, p in (("error", f.error), ("throttle", f.throttle), ("reset", f.reset), ("slow", f.slow)):
                    if r < p:
                        kind = name
                        break
                    r -= p
            detail = ""
            if kind == "error":
                detail = str(self._rng.choice(f.statuses))
            elif kind == "reset":
                detail = self._rng.choice(("request", "response"))
            if kind:
                self.injected[kind] += 1
            self.seen.append((method, path, kind or ""))
            return kind, detail
