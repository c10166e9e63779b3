"""Small hostile HTTP(S) servers on other loopback addresses, for the hostile-registry tests (stdlib only).

A :class:`HostileServer` listens on ``127.0.0.N`` (N >= 2, so it is another host than the real
registries on ``127.0.0.1``), optionally over TLS, and answers each request by a *rule*: a
function of the :class:`Request` that returns

- a :class:`Reply` (status, headers, a body of bytes or of generated pieces, optionally dripped
  one byte at a time: a slow-loris answer),
- a :class:`Forward` (send it to the upstream registry; ``rewrite`` may change the upstream's
  answer, which is then read whole: only for small answers such as manifests), or
- ``None``: forward unchanged (bodies streamed in 64 KiB pieces both ways).

Every request is recorded in :attr:`HostileServer.seen` (method, path, the ``Authorization``
header it carried), so a test can assert that no credential reached a host. ``Location`` headers
naming the upstream are rewritten to the server, so upload sessions keep going through it.

Bounded: at most ``max_connections`` concurrent connections (more are reset), socket timeouts of
``io_timeout``, generated bodies end when the client goes away, and the server stops itself after
``lifetime`` seconds. Threads are daemons; use it as a context manager (stopped at teardown; its
lifecycle: :mod:`tests.support.served`).
"""
from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any, Union

from tests.support.faultproxy import PIECE, QuietHandler, body_pieces
from tests.support.served import Served, ServedBy

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "host"})


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def make_tls(root: Path, addresses: Sequence[str] = tuple(f"127.0.0.{n}" for n in range(1, 10))) -> TlsFiles:
    """A self-signed certificate valid for ``addresses`` (use ``cert`` as REQUESTS_CA_BUNDLE)."""
    root.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(root / "hostile-cert.pem", root / "hostile-key.pem")
    san = ",".join(f"IP:{a}" for a in addresses)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(files.key), "-out", str(files.cert), "-days", "1",
                    "-subj", "/CN=hostile", "-addext", f"subjectAltName={san}"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    return files


@dataclass
class Request:
    """One request as a rule sees it. ``body()`` reads (and keeps) the request body; call it only for small ones."""

    method: str
    path: str
    headers: Message
    _handler: Any = field(repr=False, default=None)
    _body: bytes | None = field(repr=False, default=None)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")

    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self._handler._body_pieces())
        return self._body


@dataclass(frozen=True)
class Reply:
    """An answer made by the server itself.

    ``body``: bytes, or a function returning an iterator of pieces (generated, never held whole).
    ``length``: the Content-Length to declare (default: ``len(body)`` for bytes; for generated
    bodies None means chunked). ``drip``: seconds between the bytes of the status line and headers.
    ``reason``: the reason phrase of the status line (any text a server may send there).
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | Callable[[], Iterable[bytes]] = b""
    length: int | None = None
    drip: float = 0.0
    reason: str | None = None  # the status line's reason phrase (default: the standard one)


@dataclass(frozen=True)
class Forward:
    """Forward to the upstream; ``rewrite(request, status, headers, body) -> (status, headers, body)``."""

    rewrite: Callable[[Request, int, list[tuple[str, str]], bytes], tuple[int, list[tuple[str, str]], bytes]] | None = None


Rule = Callable[[Request], Union[Reply, Forward, None]]


def pieces(total: int, piece: bytes = b" " * PIECE) -> Callable[[], Iterator[bytes]]:
    """A generated body of ``total`` bytes (whitespace: valid JSON padding), in 64 KiB pieces."""
    def gen() -> Iterator[bytes]:
        left = total
        while left > 0:
            chunk = piece[:min(left, len(piece))]
            left -= len(chunk)
            yield chunk
    return gen


class _Handler(QuietHandler):
    server: HostileServer  # type: ignore[assignment]

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _body_pieces(self) -> Iterator[bytes]:
        if getattr(self, "_body_done", False):
            return
        self._body_done = True
        yield from body_pieces(self.rfile, self.headers)

    def _handle(self) -> None:
        srv = self.server
        self._body_done = False  # one handler serves every request of a kept-alive connection
        req = Request(self.command, self.path, self.headers, self)
        with srv._lock:
            srv.seen.append(Seen(self.command, self.path, req.authorization))
        action = srv.rule(req) if srv.rule is not None else None
        if isinstance(action, Reply):
            for _ in self._body_pieces():
                pass  # drain what the client sends
            self._reply(action)
        elif srv.upstream is None:
            self._reply(Reply(404, [("Content-Type", "application/json")], b'{"errors":[{"code":"NOT_FOUND"}]}'))
        else:
            self._forward(req, action.rewrite if isinstance(action, Forward) else None)

    def _reply(self, r: Reply) -> None:
        body = r.body
        gen = body if callable(body) else None
        length = r.length if r.length is not None else (len(body) if isinstance(body, bytes) else None)
        reason = r.reason if r.reason is not None else http.client.responses.get(r.status, "Status")
        head = [f"HTTP/1.1 {r.status} {reason}\r\n"]
        names = {n.lower() for n, _ in r.headers}
        head += [f"{n}: {v}\r\n" for n, v in r.headers]
        chunked = length is None and "content-length" not in names and self.command != "HEAD"
        if "content-length" not in names:
            head.append(f"Content-Length: {length if length is not None else 0}\r\n" if not chunked
                        else "Transfer-Encoding: chunked\r\n")
        head.append("\r\n")
        raw = "".join(head).encode("latin-1")
        if r.drip > 0:
            self.close_connection = True
            for i in range(len(raw)):
                if self.server.stopped.is_set():
                    return
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
                time.sleep(r.drip)
        else:
            self.wfile.write(raw)
        if self.command == "HEAD":
            return
        if gen is None:
            self.wfile.write(body)  # type: ignore[arg-type]
            return
        for piece in gen():
            if self.server.stopped.is_set():
                self.close_connection = True
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _forward(self, req: Request, rewrite: Any) -> None:
        srv = self.server
        assert srv.upstream is not None
        host, _, port = srv.upstream.rpartition(":")
        up = http.client.HTTPConnection(host, int(port), timeout=srv.io_timeout)
        try:
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            up.putheader("Host", srv.upstream)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    up.putheader(name, value)
            if req._body is not None:
                up.putheader("Content-Length", str(len(req._body)))
                up.endheaders()
                up.send(req._body)
            elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                up.putheader("Transfer-Encoding", "chunked")
                up.endheaders()
                for piece in self._body_pieces():
                    up.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                up.send(b"0\r\n\r\n")
            else:
                if self.headers.get("Content-Length"):
                    up.putheader("Content-Length", self.headers["Content-Length"])
                up.endheaders()
                for piece in self._body_pieces():
                    up.send(piece)
            resp = up.getresponse()
            headers = [(n, v.replace(srv.upstream_url, srv.url)) if n.lower() in ("location", "link") else (n, v)
                       for n, v in resp.getheaders() if n.lower() not in HOP_BY_HOP]
            if rewrite is not None:
                status, headers, body = rewrite(req, resp.status, headers, resp.read())
                if self.command != "HEAD":  # a HEAD keeps the Content-Length the rewrite gives
                    headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
                self._reply(Reply(status, headers, body, length=None if self.command == "HEAD" else len(body)))
                return
            no_body = self.command == "HEAD" or resp.status in (204, 304)
            length = resp.getheader("Content-Length")
            self.send_response_only(resp.status, resp.reason)
            for n, v in headers:
                self.send_header(n, v)
            chunk_out = not no_body and length is None
            if chunk_out:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if no_body:
                return
            while True:
                piece = resp.read(PIECE)
                if not piece:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunk_out else piece)
            if chunk_out:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            up.close()


class HostileServer(ServedBy):
    """See the module docstring. ``upstream``: ``127.0.0.1:PORT`` of a plain-HTTP registry, or None."""

    def __init__(self, address: str, rule: Rule | None = None, *, upstream: str | None = None,
                 tls: TlsFiles | None = None, lifetime: float = 60.0, max_connections: int = 32,
                 io_timeout: float = 10.0) -> None:
        assert address.startswith("127.") and address != "127.0.0.1", "hostile servers live on other loopback hosts"
        self.address = address
        self.rule = rule
        self.upstream = upstream
        self.upstream_url = f"http://{upstream}" if upstream else ""
        self.tls = tls
        self.lifetime = lifetime
        self.io_timeout = io_timeout
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._served = Served(self._serve, name="hostile", address=address, backlog=32,
                              max_connections=max_connections, io_timeout=io_timeout, lifetime=lifetime)
        self._ctx: ssl.SSLContext | None = None
        if tls is not None:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(str(tls.cert), str(tls.key))

    @property
    def host(self) -> str:
        return self._served.host

    @property
    def stopped(self) -> threading.Event:
        """Set once stopped: a dripping or generated answer ends."""
        return self._served.stopped

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def authorizations(self) -> list[str]:
        """Every Authorization header value this server received."""
        with self._lock:
            return [s.authorization for s in self.seen if s.authorization]

    def requests(self, method: str | None = None, contains: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if (method is None or s.method == method) and contains in s.path]

    def _serve(self, conn: socket.socket, addr: Any) -> None:
        sock: socket.socket = conn
        try:
            if self._ctx is not None:
                sock = self._ctx.wrap_socket(conn, server_side=True)
            _Handler(sock, addr, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                sock.close()
