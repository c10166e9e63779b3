"""OCI distribution adapter: the only module that speaks the registry protocol.

What python-dxf does and what is written here
---------------------------------------------
python-dxf (``dxf.DXF``) is the transport: URL building, the ``401`` ->
``WWW-Authenticate`` handshake (HTTP Basic and bearer tokens, token refresh on a
later ``401``), TLS verification, and these public calls::

    blob_size (blob HEAD)   pull_blob (streamed GET, digest verified by dxf)
    head_manifest_and_response / get_manifest_and_response (Accept: Docker v2 + list, OCI manifest + index)
    list_aliases (tags, paginated)

Four operations go through dxf's authenticated request method ``DXF._request``
(isolated in :meth:`RegistryClient._send`; stable since dxf 7) because dxf's public
call for them does not fit:

- blob upload: ``DXF.push_blob`` rebuilds the ``Location`` URL with ``urlunparse``,
  which breaks on registries that answer a *relative* ``Location``, and it cannot
  cancel a failed upload session. Here: ``POST`` -> ``PUT <Location>?digest=`` with
  the body streamed from a file-like object with ``Content-Length`` (no chunking,
  nothing held in memory), ``Location`` resolved with ``urljoin``.
- cross-repository mount: ``DXF.mount_blob`` raises on ``202`` without returning the
  upload ``Location``, so the upload the registry started cannot be cancelled.
- manifest ``PUT``: ``DXF.set_manifest`` takes ``str`` and takes the Content-Type from
  the body's ``mediaType`` (optional in OCI); here the exact bytes and the given media type.
- manifest ``DELETE``: ``DXF.del_alias`` GETs and parses the manifest first (and refuses
  OCI manifests without ``mediaType``); here one ``DELETE`` by digest.

The second private touch: the ``requests.Session`` dxf sends everything through is this
module's :class:`_ScopedSession`, put into ``DXF._sessions`` (where dxf's own ``with`` puts the
session it opens). Every HTTP request dxf or this module makes -- the ``/v2/`` probe, the
token request, manifests, blobs, uploads, tag pages -- passes through its ``send``, which is
where the scoping and bounds below are enforced, once for all of them:

- **Credentials stay with their registry.** An ``Authorization`` header (Basic, or the bearer
  token) is sent only to the registry's own origin and to the token realm named by that
  registry's own ``/v2/`` challenge; it is removed from any request to another origin (a
  redirect target, an upload ``Location`` or a mount-cancel ``Location`` on another host).
  A ``401`` challenge coming from any other origin is not answered (:meth:`_authenticate`).
- **Redirects** are followed by hand, for GET and HEAD only, at most :data:`MAX_REDIRECTS`
  hops, and only to ``https`` or to hosts the plain-HTTP policy allows (``plain_http_policy``,
  as :meth:`ci.families.FamilyConfig.plain_http`). Every request URL is checked the same way.
- **Bodies are bounded**: every answer is read here, incrementally, against a cap: manifests
  :data:`ci.manifest.MAX_MANIFEST_BYTES` (4 MiB, distribution's own limit), tag pages
  :data:`MAX_TAG_PAGE_BYTES`, token answers :data:`MAX_TOKEN_BYTES`, other successful answers
  :data:`MAX_SMALL_BODY`; an error answer is read up to :data:`MAX_ERROR_BODY` and cut there.
  A declared ``Content-Length`` over the cap is refused before reading.
- **Wall-clock deadlines**: each request has one (``RetryPolicy.request_deadline``, plus the
  time its body needs at ``RetryPolicy.min_rate``), never past the operation's deadline
  (``RetryPolicy.deadline``); a watchdog shuts the session's sockets when it passes, so a
  server dripping one byte at a time cannot hold an operation beyond it.

A malformed answer (a ``401`` without a usable challenge, a token answer without a token, a
``Content-Length`` that is not a number, a bad digest header, a body over its cap) is a
non-transient :class:`ci.errors.RegistryError` naming the registry; a body whose digest does
not match is a hard error too, never retried.

Everything else -- retries with backoff, Retry-After, error parsing, digest checks,
"blobs before manifest", Docker credentials -- is this module; every string a registry sent
that the wrappers print passes through :func:`ci.redaction.redact` (the process-wide secret
list that :class:`Credentials` registers its password in).

Threads: one :class:`RegistryClient` per thread at a time. Its session pools connections
(requests' default pool of 10 per host) and dxf keeps the auth token on the
client object, neither of which is meant to be shared between threads; the
deadline watchdog relies on it too (one request in flight per session). A client
may pass from thread to thread between operations (``ci.merge`` keeps a pool of
them, so their keep-alive connections and tokens serve many suffixes). The deadlines
of every session are watched by one thread of the process (:class:`_Deadlines`), not
by a timer thread per request.

Plain HTTP: only when the caller says so (``plain_http``; see
:func:`ci.reference.uses_plain_http`). dxf never sends credentials over plain HTTP;
a registry that demands them there is reported with a clear error.
"""
from __future__ import annotations

import contextlib
import email.utils
import heapq
import json
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, BinaryIO, TypeVar
from urllib.parse import SplitResult, urlencode, urljoin, urlsplit, urlunsplit, parse_qsl

import dxf
import dxf.exceptions
import requests
import requests.adapters
import urllib3
import www_authenticate  # type: ignore[import-untyped]  # dxf's own challenge parser
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import RegistryError
from ..redaction import redact, register_secret, secret_forms
from .manifest import ACCEPT_MANIFESTS, MAX_MANIFEST_BYTES, parse_manifest
from .reference import ImageName, parse_digest, sha256_digest, uses_plain_http

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK = 1024 * 1024
_READ_PIECE = 64 * 1024
MAX_REDIRECTS = 5
MAX_ERROR_BODY = 8 * 1024  # an error answer is read this far, then cut (enough for its error codes)
MAX_TOKEN_BYTES = 64 * 1024  # a token answer (a JWT of a few KiB)
MAX_SMALL_BODY = 64 * 1024  # any other successful answer with nothing to read (HEAD, PUT, POST, DELETE)
MAX_TAG_PAGE_BYTES = 8 * 1024 * 1024  # one page of a tag list (about 200,000 tags)
MAX_MEDIA_TYPE = 255  # RFC 6838: 127 + "/" + 127


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter.

    ``attempts`` counts every try (1 = no retry); an operation ends ``deadline`` seconds
    after its first try, whatever is in flight (no retry starts that would end later,
    and a request still running then is cut); one wait is at most ``max_delay``
    (Retry-After included); ``request_timeout`` is the per-socket-operation timeout;
    ``request_deadline`` is the wall-clock limit of one request (connect, headers and
    body), to which a request sending a body adds the time it takes at ``min_rate``
    bytes per second (the operation's deadline grows by the same allowance).
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float = 600.0
    request_timeout: float = 60.0
    request_deadline: float = 300.0
    min_rate: float = 1024.0 * 1024.0

    def transfer_allowance(self, size: int) -> float:
        """Extra seconds for sending ``size`` bytes at ``min_rate``."""
        return max(0, size) / self.min_rate if self.min_rate > 0 else 0.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Wait before retry number ``retry`` (1-based): base*2^(n-1), capped, jittered to [50%, 100%]."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return float(ceiling * rng.uniform(0.5, 1.0))


@dataclass(frozen=True)
class Credentials:
    """Registry login; the password never appears in repr/str."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(*secret_forms(self.username, self.password))

    def __str__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def credentials_for(registry: str, *, username: str | None = None, password: str | None = None,
                    config_dir: str | None = None) -> Credentials | None:
    """Credentials for ``registry``: explicit > Docker ``config.json`` ``auths`` > ``credHelpers``/``credsStore``.

    ``config_dir`` is a Docker config directory (default: ``$DOCKER_CONFIG`` or ``~/.docker``,
    resolved by the Docker SDK). Returns None for anonymous access. A half-given explicit
    pair (only username or only password) is a :class:`ci.errors.UserError`.
    """
    from ..errors import UserError

    if username is not None or password is not None:
        if not username or password is None:
            raise UserError(f"credentials for {registry}: give both --username and --password-stdin "
                            "(or neither, to use the Docker config / credential helpers)")
        return Credentials(username, password)
    import docker.auth
    import docker.errors

    path = os.path.join(config_dir, "config.json") if config_dir else None
    try:
        cfg = docker.auth.load_config(config_path=path)
        entry = cfg.resolve_authconfig(registry)
    except (docker.errors.DockerException, OSError, ValueError) as exc:
        # helper failures: the message names the helper, never a secret
        raise RegistryError(f"reading Docker credentials for {registry}: {type(exc).__name__}: "
                            f"{_first_line(str(exc))}; run `docker login {registry}` or pass "
                            "--username/--password-stdin", registry=registry) from None
    if not entry:
        return None
    user = entry.get("Username") or entry.get("username")
    secret = entry.get("Password") or entry.get("password")
    if not user or not secret:
        return None  # identity tokens (OAuth refresh) are not supported: anonymous
    return Credentials(str(user), str(secret))


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def registry_error_text(resp: requests.Response) -> str:
    """``HTTP 404 MANIFEST_UNKNOWN: manifest unknown`` from a distribution error body."""
    text = f"HTTP {resp.status_code}"
    if resp.reason:
        text += f" {resp.reason}"
    try:
        errors = json.loads(resp.content[:65536] or b"{}").get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
        if parts:
            text += " (" + "; ".join(parts)[:300] + ")"
    except (ValueError, AttributeError, RuntimeError):
        pass
    return text


class _CountingReader:
    """File-like view of a stream that counts bytes read and reports a fixed length.

    requests sends it with ``Content-Length`` (``__len__``) and urllib3 reads it in
    blocks, so a layer is never held in memory. Deliberately not an ``io`` subclass:
    requests would call its ``tell()`` and treat the failure as "length 0".
    """

    def __init__(self, stream: BinaryIO, size: int, counter: Callable[[int], None]) -> None:
        self._stream = stream
        self._size = size
        self._count = counter

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:  # marks it as a stream for requests
        return iter(lambda: self.read(_CHUNK), b"")

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(_CHUNK if n is None or n < 0 else n)
        if data:
            self._count(len(data))
        return data


class _Transient(Exception):
    """A failure worth retrying (internal): what happened, plus the HTTP status if any."""

    def __init__(self, text: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.status = status
        self.retry_after = retry_after


class _Problem(Exception):
    """An answer this client will not use (internal; never retried): refused, malformed or too large."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Refused(_Problem):
    """A request or answer outside this registry's scope (foreign challenge, plain-HTTP redirect, ...)."""


class _Malformed(_Problem):
    """An answer that does not follow the protocol."""


class _DeadlineExceeded(Exception):
    """A request still incomplete at its wall-clock deadline (internal; retried while the operation's lasts)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:.1f}s (wall-clock deadline of one request)")
        self.text = str(self)


Origin = tuple[str, str, int]  # scheme, lowercase host, port


def _origin(url: str | SplitResult) -> Origin:
    parts = urlsplit(url) if isinstance(url, str) else url
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def _netloc(origin: Origin) -> str:
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"


def _hostport(url: str) -> str:
    """``host[:port]`` of a URL, for messages and for the plain-HTTP policy (registry-style names)."""
    return _netloc(_origin(url))


def _url_for_message(url: str) -> str:
    """A URL without its query (upload state, signed CDN parameters) for messages."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


def _content_length(resp: requests.Response) -> int | None:
    """The declared body length; None when absent; _Malformed when it is not a byte count."""
    value = resp.headers.get("Content-Length")
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 19:
        raise _Malformed(f"its Content-Length {text[:40]!r} is not a byte count")
    return int(text)


def _challenge(header: str | None) -> tuple[str, tuple[Origin, str] | None]:
    """``("basic", None)`` or ``("bearer", (realm origin, realm path))`` from a ``WWW-Authenticate``.

    _Malformed when it is missing, unparsable, names neither scheme, or a bearer challenge has
    no absolute realm URL. The realm is taken as dxf uses it: over https.
    """
    if not header or not header.strip():
        raise _Malformed("it answered 401 without a WWW-Authenticate challenge")
    try:
        parsed = www_authenticate.parse(header[:4096])
    except (ValueError, TypeError, KeyError, IndexError):
        raise _Malformed("it answered 401 with a WWW-Authenticate header that cannot be parsed") from None
    if "bearer" in parsed:
        info = parsed["bearer"]
        realm = info.get("realm") if isinstance(info, dict) else None
        parts = urlsplit(realm) if isinstance(realm, str) else None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise _Malformed("it answered 401 with a Bearer challenge without an absolute realm URL")
        try:
            forced = urlsplit(urlunsplit(("https",) + tuple(parts)[1:]))  # type: ignore[arg-type]
            return "bearer", (_origin(forced), forced.path or "/")
        except ValueError:
            raise _Malformed("it answered 401 with a Bearer realm that is not a valid URL") from None
    if "basic" in parsed:
        return "basic", None
    raise _Malformed("it answered 401 with a WWW-Authenticate challenge that is neither Basic nor Bearer")


def _tracking_pools(conns: weakref.WeakSet[Any], opened: Callable[[], None]) -> dict[str, type]:
    """urllib3 pool classes that remember every connection they open (for the deadline watchdog)
    and count them (``opened``)."""

    class TrackingHTTPPool(HTTPConnectionPool):
        def _new_conn(self) -> Any:
            conn = super()._new_conn()
            conns.add(conn)
            opened()
            return conn

    class TrackingHTTPSPool(HTTPSConnectionPool):
        def _new_conn(self) -> Any:
            conn = super()._new_conn()
            conns.add(conn)
            opened()
            return conn

    return {"http": TrackingHTTPPool, "https": TrackingHTTPSPool}


class _TrackingAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, conns: weakref.WeakSet[Any], opened: Callable[[], None]) -> None:
        self._conns = conns
        self._opened = opened
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _tracking_pools(self._conns, self._opened)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:  # SOCKS managers have their own pool classes
            manager.pool_classes_by_scheme = _tracking_pools(self._conns, self._opened)
        return manager


class _Alarm:
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
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._seq = 0
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def arm(self, at: float, conns: weakref.WeakSet[Any]) -> _Alarm:
        alarm = _Alarm(at, conns)
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="registry-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is alarm:  # earlier than what the thread sleeps for
                self._cond.notify()
        return alarm

    def cancel(self, alarm: _Alarm) -> None:
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


class _ScopedSession(requests.Session):
    """The session dxf sends every request through: scope, redirects, body caps and deadlines.

    The client sets ``body_limit`` (cap of a successful answer) and ``op_deadline`` (the
    operation's end, monotonic) around each operation, and ``token_realm`` once the
    registry's token service is known. See the module docstring.
    """

    def __init__(self, registry_url: str, plain_http_allowed: Callable[[str], bool], policy: RetryPolicy) -> None:
        super().__init__()
        self.registry_origin = _origin(registry_url)
        self.plain_http_allowed = plain_http_allowed
        self.policy = policy
        self.body_limit = MAX_SMALL_BODY
        self.op_deadline: float | None = None
        self.token_realm: tuple[Origin, str] | None = None  # (origin, path) that may receive credentials
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self.connections_opened = 0  # TCP connections this session opened (keep-alive reuse shows here)
        self.requests_sent = 0  # HTTP requests sent (redirect hops, the token and /v2/ requests included)
        # the proxies requests derives from the environment, by (origin, no_proxy): see
        # merge_environment_settings
        self._env_proxies: dict[tuple[Origin, str | None], dict[str, str]] = {}
        self._netrc: dict[Origin, Any] = {}  # ~/.netrc credentials by origin: see prepare_request
        for prefix in ("https://", "http://"):
            self.mount(prefix, _TrackingAdapter(self._conns, self._opened))

    def _opened(self) -> None:
        self.connections_opened += 1

    # -- proxies from the environment, looked up once per origin ---------------------------------------
    # requests scans every environment variable on each request to find the proxies for its URL
    # (0.1 ms of CPU per request on this project's CI machine); the answer depends on the URL's origin and
    # no_proxy only, so this session asks once per origin (the environment of a run does not change
    # under it). Otherwise requests' own merge, unchanged.
    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if self.trust_env and isinstance(url, str):
            no_proxy = proxies.get("no_proxy") if proxies is not None else None
            key = (_origin(url), no_proxy)
            env = self._env_proxies.get(key)
            if env is None:
                env = self._env_proxies[key] = requests.utils.get_environ_proxies(url, no_proxy=no_proxy)
            if proxies is not None:
                for k, v in env.items():
                    proxies.setdefault(k, v)
            if verify is True or verify is None:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
            return {"proxies": requests.sessions.merge_setting(proxies, self.proxies),
                    "stream": requests.sessions.merge_setting(stream, self.stream),
                    "verify": requests.sessions.merge_setting(verify, self.verify),
                    "cert": requests.sessions.merge_setting(cert, self.cert)}
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


    # -- ~/.netrc, looked up once per origin ----------------------------------------------------------
    # requests reads the netrc file (a stat of ~/.netrc and ~/_netrc, and a parse when one exists) for each
    # request without credentials of its own; the answer depends on the URL's host only, so this session
    # asks once per origin, then lets requests prepare the request without asking again.
    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if not self.trust_env or request.auth or self.auth or not isinstance(request.url, str):
            return super().prepare_request(request)
        origin = _origin(request.url)
        if origin not in self._netrc:
            self._netrc[origin] = requests.utils.get_netrc_auth(request.url)
        request.auth = self._netrc[origin]
        self.trust_env = False  # only netrc depends on it in prepare_request (proxies: merge_environment_settings)
        try:
            return super().prepare_request(request)
        finally:
            self.trust_env = True

    # -- scope ------------------------------------------------------------------------------------
    def _is_token_request(self, url: str) -> bool:
        parts = urlsplit(url)
        return self.token_realm is not None and self.token_realm == (_origin(parts), parts.path or "/")

    def _may_carry_credentials(self, url: str) -> bool:
        return _origin(url) == self.registry_origin or self._is_token_request(url)

    def _check_target(self, request: requests.PreparedRequest, why: str) -> None:
        url = request.url or ""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise _Refused(f"{why} {_url_for_message(url)!r} is not an http(s) URL; not followed")
        if scheme == "http" and _origin(url) != self.registry_origin and not self.plain_http_allowed(_hostport(url)):
            raise _Refused(f"{why} plain-HTTP URL {_url_for_message(url)} is refused: {_hostport(url)} is reached "
                           "over TLS only (plain HTTP is used only for loopback registries and those named in "
                           "CI_INSECURE_REGISTRIES, and never for those in CI_TLS_REGISTRIES)")
        if not self._may_carry_credentials(url):
            for name in ("Authorization", "Cookie", "Proxy-Authorization"):
                request.headers.pop(name, None)

    # -- one request --------------------------------------------------------------------------------
    def _deadline_for(self, request: requests.PreparedRequest) -> tuple[float, float]:
        """(monotonic deadline, seconds allowed) of one request."""
        sent = request.headers.get("Content-Length") or "0"
        extra = self.policy.transfer_allowance(int(sent)) if sent.isdigit() else 0.0
        allowed = self.policy.request_deadline + extra
        at = time.monotonic() + allowed
        if self.op_deadline is not None and self.op_deadline < at:
            at = self.op_deadline
            allowed = max(0.0, at - time.monotonic())
        return at, allowed

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        follow = kwargs.pop("allow_redirects", True)
        kwargs.pop("stream", None)  # every answer is read here, bounded
        at, allowed = self._deadline_for(request)
        if at <= time.monotonic():
            raise _DeadlineExceeded(allowed)
        watchdog = _DEADLINES.arm(at, self._conns)
        try:
            self._check_target(request, "request to")
            hops = 0
            while True:
                self.requests_sent += 1
                resp = super().send(request, stream=True, allow_redirects=False, **kwargs)
                if not (300 <= resp.status_code < 400) or resp.status_code == 304 or not follow:
                    break
                location = resp.headers.get("Location")
                method = (request.method or "").upper()
                resp.close()
                if not location:
                    raise _Malformed(f"it answered {resp.status_code} (a redirect) without a Location")
                if method not in ("GET", "HEAD"):
                    raise _Refused(f"it answered {method} {_url_for_message(request.url or '')} with a redirect "
                                   f"({resp.status_code}); writes are never redirected")
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise _Refused(f"more than {MAX_REDIRECTS} redirects; not followed further")
                nxt = request.copy()
                nxt.prepare_url(urljoin(resp.url, location), None)
                request = nxt
                self._check_target(request, "redirect to")
            if 300 <= resp.status_code < 400 and resp.status_code != 304 and follow:
                raise _Malformed(f"it answered {resp.status_code}")
            limit = MAX_TOKEN_BYTES if self._is_token_request(resp.url) else self.body_limit
            self._read_body(resp, limit)
            return resp
        except _Problem:
            raise
        except BaseException:
            if watchdog.fired:
                raise _DeadlineExceeded(allowed) from None
            raise
        finally:
            watchdog.cancel()

    def _read_body(self, resp: requests.Response, limit: int) -> None:
        """Read the body now, at most ``limit`` bytes for a success (else _Malformed) and
        :data:`MAX_ERROR_BODY` for an error (cut there)."""
        ok = 200 <= resp.status_code < 300
        cap = limit if ok else MAX_ERROR_BODY
        declared = _content_length(resp) if ok else None
        if declared is not None and declared > cap and (resp.request.method or "").upper() != "HEAD":
            resp.close()
            raise _Malformed(f"its answer declares {declared} bytes, more than the {cap} bytes allowed")
        buf = bytearray()
        cut = False
        for piece in resp.iter_content(_READ_PIECE):  # urllib3 errors wrapped as requests errors; HEAD: none
            buf += piece
            if len(buf) > cap:
                if ok:
                    resp.close()
                    raise _Malformed(f"its answer is more than the {cap} bytes allowed")
                del buf[cap:]
                cut = True
                break
        resp._content = bytes(buf)
        resp._content_consumed = True  # type: ignore[attr-defined]
        if cut:
            resp.close()  # the rest is never read: the connection is dropped, not reused
        else:
            resp.raw.release_conn()


class RegistryClient:
    """One repository in one registry; see the module docstring for what dxf does.

    ``retries`` counts retries performed; ``bytes_uploaded`` counts blob bytes sent
    (failed attempts included); ``requests_sent`` and ``connections_opened`` count HTTP
    requests and the TCP connections they took (one keep-alive connection serves a client's
    requests one after the other). Every error is a :class:`ci.errors.RegistryError`
    naming the registry, the operation and the object.
    """

    def __init__(self, image: ImageName, *, plain_http: bool, credentials: Credentials | None = None,
                 retry: RetryPolicy = RetryPolicy(), on_retry: Callable[[str], None] | None = None,
                 plain_http_policy: Callable[[str], bool] | None = None) -> None:
        """``plain_http_policy(host)`` says whether another host (a redirect target, an upload
        ``Location``) may be reached over plain HTTP; default: loopback hosts only. The registry
        itself is reached as ``plain_http`` says."""
        self.image = image
        self.registry = image.registry
        self.retries = 0
        self.bytes_uploaded = 0
        self.manifest_gets = 0  # GET requests for manifests (Docker Hub counts each against the pull limit)
        self._plain_http = plain_http
        self._credentials = credentials
        self._policy = retry
        self._on_retry = on_retry
        self._rng = random.Random()
        self._closed = False
        # digest -> size of objects this client has seen present in its repository (HEAD, upload,
        # PUT); a manifest PUT need not re-check references confirmed moments ago (the registry
        # still validates references on PUT, so a reaped object cannot slip through)
        self._confirmed: dict[str, int] = {}
        self._v2_realm: tuple[Origin, str] | None | bool = False  # False: /v2/ not asked yet
        self._dxf = dxf.DXF(image.api_host, image.repository, auth=self._authenticate,
                            insecure=plain_http, tlsverify=True, timeout=retry.request_timeout)
        policy = plain_http_policy or uses_plain_http
        self._session = _ScopedSession(self._dxf._base_url, lambda host: host != image.api_host and policy(host),
                                       retry)
        # the pooled session dxf sends everything through until close() (what dxf's own __enter__ does)
        self._dxf._sessions.insert(0, self._session)

    @property
    def requests_sent(self) -> int:
        """HTTP requests this client has sent (every attempt, redirect hop, token and /v2/ request)."""
        return self._session.requests_sent

    @property
    def connections_opened(self) -> int:
        """TCP connections this client has opened; with keep-alive, far fewer than requests."""
        return self._session.connections_opened

    def __repr__(self) -> str:
        who = f", user={self._credentials.username!r}" if self._credentials else ""
        scheme = "http" if self._plain_http else "https"
        return f"RegistryClient({scheme}://{self.image}{who})"

    # ---- context manager ------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dxf.__exit__(None, None, None)  # type: ignore[no-untyped-call]  # pops and closes the session

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- auth, redaction ------------------------------------------------------------------
    def _authenticate(self, client: dxf.DXFBase, response: requests.Response) -> None:
        """Answer a ``401`` (dxf's auth hook): only the registry's own, only with its own token realm."""
        if _origin(response.url) != self._session.registry_origin:
            raise _Refused(f"{_hostport(response.url)} (reached through a redirect) answered 401 with its own "
                           f"challenge; it is not {self.registry}, so it gets no credentials and no answer")
        if self._plain_http:
            raise dxf.exceptions.DXFAuthInsecureError()
        scheme, realm = _challenge(response.headers.get("WWW-Authenticate"))
        if scheme == "bearer":
            assert realm is not None
            named = self._registry_realm()
            if realm != named and realm[0] != self._session.registry_origin:
                where = _netloc(named[0]) + named[1] if named else "no token service"
                raise _Refused(f"its challenge names the token service {_netloc(realm[0])}{realm[1]}, but its /v2/ "
                               f"challenge named {where}; credentials go only to the registry's own token service")
            self._session.token_realm = realm
        creds = self._credentials
        try:
            if creds is None:
                client.authenticate(response=response)  # anonymous bearer token (e.g. Docker Hub pulls)
            else:
                client.authenticate(creds.username, creds.password, response=response)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            client._token = None  # dxf may have kept what it could not use
            host = _netloc(realm[0]) if realm else self.registry
            raise _Malformed(f"the token service {host} answered without a usable token "
                             f"({type(exc).__name__})") from None
        token = client.token
        if token is not None:
            if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES or \
                    not token.isascii() or not token.isprintable() or " " in token:
                client._token, client._headers = None, {}
                raise _Malformed("the token service answered a token that is not a printable string")
            register_secret(token)

    def _registry_realm(self) -> tuple[Origin, str] | None:
        """The token realm the registry's own ``GET /v2/`` challenge names (asked once, no credentials)."""
        if self._v2_realm is False:
            named: tuple[Origin, str] | None = None
            r = self._session.get(self._dxf._base_url, allow_redirects=False, timeout=self._policy.request_timeout,
                                  verify=True)
            if r.status_code == 401:
                with contextlib.suppress(_Malformed):
                    scheme, realm = _challenge(r.headers.get("WWW-Authenticate"))
                    named = realm if scheme == "bearer" else None
            self._v2_realm = named
        return self._v2_realm if isinstance(self._v2_realm, tuple) else None

    def _redact(self, text: str) -> str:
        register_secret(self._dxf.token or "")
        return redact(text)

    def _auth_hint(self) -> str:
        return (f"run `docker login {self.registry}` or pass --username/--password-stdin "
                f"(with a user allowed to push to {self.image.repository})")

    # ---- retry engine ---------------------------------------------------------------------
    def _error(self, text: str, *, status: int | None = None, transient: bool = False) -> RegistryError:
        return RegistryError(self._redact(text), registry=self.registry, status=status, transient=transient)

    def _call(self, op: str, obj: str, fn: Callable[[], T], *, before_retry: Callable[[], T | None] | None = None,
              extra_time: float = 0.0) -> T:
        """Run ``fn`` with retries; ``op obj`` names it in messages ("PUT manifest reg/repo@sha256:...").

        ``before_retry`` (optional) runs before each retry and may return a result that ends
        the operation (e.g. a blob found present after a reset upload). The operation ends
        ``policy.deadline + extra_time`` seconds after it started, whatever is in flight.
        """
        policy = self._policy
        start = time.monotonic()
        budget = policy.deadline + extra_time
        outer = self._session.op_deadline
        self._session.op_deadline = start + budget if outer is None else min(outer, start + budget)
        try:
            return self._attempts(op, obj, fn, before_retry, start, budget)
        finally:
            self._session.op_deadline = outer

    def _attempts(self, op: str, obj: str, fn: Callable[[], T], before_retry: Callable[[], T | None] | None,
                  start: float, budget: float) -> T:
        policy = self._policy
        what = f"{op} {obj}"
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except _Transient as exc:
                failure = exc
            except _DeadlineExceeded as exc:
                failure = _Transient(exc.text)
            except _Problem as exc:
                raise self._error(f"{what}: {self._malformed_prefix(exc)}{exc.text}") from None
            except requests.HTTPError as exc:
                failure = self._classify_http(what, exc)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if isinstance(exc, requests.exceptions.SSLError):
                    raise self._error(f"{what}: TLS verification failed ({_first_line(str(exc), 200)}); "
                                      f"fix the registry certificate or name {self.registry} as insecure "
                                      "only if it is on a trusted network") from None
                failure = _Transient(f"{type(exc).__name__} ({_first_line(_root_cause(exc), 200)})")
            except requests.exceptions.ChunkedEncodingError as exc:
                failure = _Transient(f"response cut off ({_first_line(_root_cause(exc), 200)})")
            except requests.RequestException as exc:
                raise self._error(f"{what}: {type(exc).__name__}: {_first_line(str(exc), 200)}") from None
            except dxf.exceptions.DXFUnauthorizedError:
                raise self._error(f"{what}: HTTP 401 Unauthorized after authenticating; {self._auth_hint()}",
                                  status=401) from None
            except dxf.exceptions.DXFAuthInsecureError:
                raise self._error(f"{what}: {self.registry} requires authentication but is reached over plain "
                                  "HTTP, and credentials are never sent in clear text; serve it over TLS "
                                  "(and do not name it in CI_INSECURE_REGISTRIES)", status=401) from None
            except (dxf.exceptions.DXFError, KeyError, TypeError, AttributeError, ValueError, IndexError,
                    RecursionError) as exc:
                # what dxf raises on answers it cannot use (a token answer without a token, a tag page
                # that is not the expected JSON, ...): a malformed answer, never a traceback
                raise self._error(f"{what}: malformed answer from {self.registry}: {type(exc).__name__}"
                                  f"{': ' + _first_line(str(exc), 200) if str(exc) else ''}") from None
            last = f"last error: {failure.text}"
            elapsed = time.monotonic() - start
            delay = policy.backoff(attempt, self._rng)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            delay = min(delay, policy.max_delay)
            if attempt >= policy.attempts or elapsed + delay >= budget:
                raise self._error(f"{what} failed after {attempt} attempt(s) in {elapsed:.1f}s; {last}",
                                  status=failure.status, transient=True) from None
            self.retries += 1
            if self._on_retry is not None:
                self._on_retry(self._redact(f"{self.registry}: {what}: {failure.text}; "
                                            f"retry {attempt}/{policy.attempts - 1} in {delay:.2f}s"))
            time.sleep(delay)
            if before_retry is not None:
                early = self._quiet(before_retry)
                if early is not None:
                    return early

    def _malformed_prefix(self, exc: _Problem) -> str:
        return f"malformed answer from {self.registry}: " if isinstance(exc, _Malformed) else \
            f"refused ({self.registry}): "

    def _quiet(self, fn: Callable[[], T | None]) -> T | None:
        try:
            return fn()
        except (requests.RequestException, dxf.exceptions.DXFError, _Transient, _Problem, _DeadlineExceeded,
                ValueError, KeyError, TypeError):
            return None

    def _classify_http(self, what: str, exc: requests.HTTPError) -> _Transient:
        resp = exc.response
        if resp is None:
            return _Transient(f"HTTPError: {_first_line(str(exc), 200)}")
        text = registry_error_text(resp)
        if resp.status_code in TRANSIENT_STATUS:
            return _Transient(text, resp.status_code, retry_after_seconds(resp.headers.get("Retry-After")))
        if resp.status_code in (401, 403):
            raise self._error(f"{what}: {text}; {self._auth_hint()}", status=resp.status_code) from None
        raise self._error(f"{what}: {text}", status=resp.status_code) from None

    def _send(self, method: str, path: str, *, ok: Iterable[int] = (), limit: int = MAX_SMALL_BODY,
              **kwargs: object) -> requests.Response:
        """One authenticated request through dxf (path relative to ``/v2/<repo>/`` or absolute URL).

        Statuses in ``ok`` are returned instead of raised; a successful answer's body is at most
        ``limit`` bytes. The single use of dxf's private request method.
        """
        with self._body_limit(limit):
            try:
                return self._dxf._request(method, path, **kwargs)  # type: ignore[no-any-return,no-untyped-call]
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code in set(ok):
                    return exc.response
                raise

    @contextlib.contextmanager
    def _body_limit(self, limit: int) -> Iterator[None]:
        before, self._session.body_limit = self._session.body_limit, limit
        try:
            yield
        finally:
            self._session.body_limit = before

    def _ref(self, reference: str) -> str:
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.image.repository}{sep}{reference}"

    # ---- blobs ----------------------------------------------------------------------------
    def _blob_size(self, digest: str) -> int | None:
        r = self._send("head", "blobs/" + digest, ok=(404,))
        if r.status_code == 404:
            self._confirmed.pop(digest, None)
            return None
        size = _content_length(r)
        if size is None:
            return -1
        self._confirmed[digest] = size
        return size

    def blob_exists(self, digest: str) -> bool:
        parse_digest(digest)
        return self._call("HEAD blob", self._ref(digest), lambda: self._blob_size(digest)) is not None

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; False (upload session cancelled) when the registry did not mount."""
        parse_digest(digest)

        def attempt() -> bool:
            query = urlencode({"mount": digest, "from": from_repository})
            r = self._send("post", "blobs/uploads/?" + query)
            if r.status_code == 201:
                return True
            location = r.headers.get("Location")
            if location:  # 202: an upload session was opened instead; do not leave it behind
                try:  # (a Location on another host gets no credentials: see _ScopedSession)
                    self._send("delete", urljoin(r.url, location), ok=(404, 405))
                except (requests.RequestException, dxf.exceptions.DXFError, _Problem, _DeadlineExceeded, ValueError):
                    pass
            return False

        return self._call("mount blob", f"{self._ref(digest)} from {from_repository}", attempt)

    def push_blob(self, digest: str, size: int, open_stream: Callable[[], BinaryIO]) -> bool:
        """Upload a blob from ``open_stream()`` (called afresh for every attempt); False if present.

        The blob is confirmed afterwards by HEAD (present, size ``size``).
        """
        parse_digest(digest)
        ref = self._ref(digest)
        if self._call("HEAD blob", ref, lambda: self._blob_size(digest)) is not None:
            return False

        def count(n: int) -> None:
            self.bytes_uploaded += n

        def attempt() -> bool:
            r = self._send("post", "blobs/uploads/")
            location = r.headers.get("Location")
            if r.status_code != 202 or not location:
                raise self._error(f"upload blob {ref}: expected 202 with a Location, got {registry_error_text(r)}",
                                  status=r.status_code)
            parts = urlsplit(urljoin(r.url, location))
            query = urlencode(parse_qsl(parts.query, keep_blank_values=True) + [("digest", digest)])
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
            with open_stream() as stream:
                body = _CountingReader(stream, size, count)
                self._send("put", url, data=body, headers={"Content-Type": "application/octet-stream"})
            return True

        def present_after_reset() -> bool | None:
            return True if self._blob_size(digest) == size else None

        self._call("upload blob", ref, attempt, before_retry=present_after_reset,
                   extra_time=self._policy.transfer_allowance(size))
        self._confirmed[digest] = size
        found = self._call("HEAD blob", ref, lambda: self._blob_size(digest))
        if found != size:
            raise self._error(f"upload blob {ref}: after upload the registry reports "
                              f"{'no blob' if found is None else f'{found} bytes'}, expected {size} bytes")
        return True

    def get_blob(self, digest: str, max_bytes: int = 4 * 1024 * 1024) -> bytes:
        """A small blob (a config), at most ``max_bytes``, digest verified."""
        parse_digest(digest)
        ref = self._ref(digest)

        def attempt() -> bytes:
            data = self._send("get", "blobs/" + digest, limit=max_bytes).content  # read and bounded by the session
            got = sha256_digest(data)
            if got != digest:  # the registry serves other content under this digest: never retried
                raise _Malformed(f"digest mismatch: received content hashes to {got}")
            return data

        return self._call("GET blob", ref, attempt)

    # ---- manifests ------------------------------------------------------------------------
    def _manifest_headers(self) -> dict[str, str]:
        return {"Accept": ACCEPT_MANIFESTS}

    def put_manifest(self, reference: str, body: bytes, media_type: str, *, read_back: str = "get") -> str:
        """PUT exactly ``body``; returns the registry's digest (== sha256(body), checked).

        Before the PUT every blob (config, layers) or child manifest it references is
        confirmed present (sizes compared); otherwise nothing is pushed. After it, what the
        registry serves under ``reference`` is read back and compared: the registry's answer to
        the PUT is never taken as proof. ``read_back="get"``: the bytes, compared byte for byte;
        ``"head"``: the digest and size a HEAD answers (``Docker-Content-Digest``), where the
        caller proves the bytes another way (the merge GETs the list by digest once: a GET is
        a pull on Docker Hub, a HEAD is not).
        """
        if read_back not in ("get", "head"):
            raise ValueError(f"read_back {read_back!r} is not 'get' or 'head'")
        computed = sha256_digest(body)
        ref = self._ref(reference)
        what = f"PUT manifest {ref}"
        if reference.startswith("sha256:") and reference != computed:
            raise self._error(f"{what}: the body hashes to {computed}, not to the digest it is pushed as")
        if not media_type:
            raise self._error(f"{what}: no media type given")
        try:
            parsed = parse_manifest(body, media_type)
        except ValueError as exc:
            raise self._error(f"{what}: {exc}") from None
        self._require_referenced(what, parsed)

        def attempt() -> str:
            r = self._send("put", "manifests/" + reference, data=body, headers={"Content-Type": media_type})
            return _digest_header(r) or computed

        got = self._call("PUT manifest", ref, attempt)
        if got != computed:
            raise self._error(f"{what}: the registry reports digest {got}, but the bytes sent hash to {computed}")
        if read_back == "head":
            head = self.head_manifest(reference)
            if head is None or head[0] != computed or head[2] != len(body):
                found = "nothing" if head is None else f"{head[0]} ({head[2]} bytes)"
                raise self._error(f"{what}: read back: {self.registry} answers {found} for {ref}, not the "
                                  f"{len(body)} bytes sent ({computed}); it accepted the PUT but does not serve it")
            self._confirmed[got] = len(body)
            return got
        served = self.get_manifest(reference)
        if served is None or served[0] != body:
            found = "nothing" if served is None else f"{served[2]} ({len(served[0])} bytes)"
            raise self._error(f"{what}: read back: {self.registry} serves {found} under {ref}, not the "
                              f"{len(body)} bytes sent ({computed}); it accepted the PUT but does not serve it")
        self._confirmed[got] = len(body)
        return got

    def _require_referenced(self, what: str, parsed: object) -> None:
        from .manifest import ParsedManifest

        assert isinstance(parsed, ParsedManifest)
        missing: list[str] = []
        if parsed.is_index:
            for child in parsed.children:
                if self._confirmed.get(child.digest) == child.size:
                    continue
                head = self.head_manifest(child.digest)
                if head is None:
                    missing.append(f"child manifest {child.digest} is missing")
                elif head[2] != child.size:
                    missing.append(f"child manifest {child.digest} is {head[2]} bytes, the list says {child.size}")
        else:
            blobs = ([parsed.config] if parsed.config else []) + list(parsed.layers)
            for blob in blobs:
                if self._confirmed.get(blob.digest) == blob.size:
                    continue
                size = self._call("HEAD blob", self._ref(blob.digest), partial(self._blob_size, blob.digest))
                if size is None:
                    missing.append(f"blob {blob.digest} is missing")
                elif size != blob.size:
                    missing.append(f"blob {blob.digest} is {size} bytes, the manifest says {blob.size}")
        if missing:
            raise self._error(f"{what}: not pushed, {len(missing)} referenced object(s) not confirmed in "
                              f"{self.registry}/{self.image.repository}: {'; '.join(missing[:5])}; "
                              "push the blobs/children first (a registry may also have garbage-collected them)")

    def get_manifest(self, reference: str) -> tuple[bytes, str, str] | None:
        """(exact body, media type, digest) or None when the registry has no such manifest."""
        ref = self._ref(reference)

        def attempt() -> tuple[bytes, str, str] | None:
            self.manifest_gets += 1
            r = self._send("get", "manifests/" + reference, ok=(404,), headers=self._manifest_headers(),
                           limit=MAX_MANIFEST_BYTES)
            if r.status_code == 404:
                return None
            body = r.content
            computed = sha256_digest(body)
            header = _digest_header(r)
            # a body that is not what was asked for is not a transient fault: never retried
            if reference.startswith("sha256:") and computed != reference:
                raise _Malformed(f"digest mismatch: the body hashes to {computed}")
            if header and header != computed:
                raise _Malformed(f"digest mismatch: header says {header}, the body hashes to {computed}")
            return body, _media_type(r), computed

        got = self._call("GET manifest", ref, attempt)
        if got is not None:
            self._confirmed[got[2]] = len(got[0])
        return got

    def head_manifest(self, reference: str) -> tuple[str, str, int] | None:
        """(digest, media type, size) or None; falls back to GET when the registry sends no digest header."""
        ref = self._ref(reference)

        def attempt() -> tuple[str, str, int] | None:
            r = self._send("head", "manifests/" + reference, ok=(404,), headers=self._manifest_headers())
            if r.status_code == 404:
                return None
            digest = _digest_header(r)
            size = _content_length(r)
            if digest and size is not None:
                return digest, _media_type(r), size
            return "", _media_type(r), -1  # no digest header: resolved by a GET below

        got = self._call("HEAD manifest", ref, attempt)
        if got is not None and got[2] < 0:
            full = self.get_manifest(reference)
            got = None if full is None else (full[2], full[1], len(full[0]))
        if got is not None:
            self._confirmed[got[0]] = got[2]
        elif reference.startswith("sha256:"):
            self._confirmed.pop(reference, None)
        return got

    def list_tags(self) -> list[str]:
        """All tags of the repository ([] when the repository does not exist)."""
        def attempt() -> list[str]:
            try:
                with self._body_limit(MAX_TAG_PAGE_BYTES):
                    return [str(t) for t in self._dxf.list_aliases()]
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return []
                raise

        return self._call("list tags", f"{self.registry}/{self.image.repository}", attempt)

    def delete_manifest(self, digest: str) -> None:
        """Delete a manifest by digest (every tag pointing at it goes too). Absent is not an error."""
        parse_digest(digest)

        def attempt() -> None:
            self._send("delete", "manifests/" + digest, ok=(404,))

        self._call("DELETE manifest", self._ref(digest), attempt)

    def delete_tag(self, tag: str) -> bool:
        """Best effort: True when the registry deleted just the tag.

        The distribution registry (2.x) can only delete by digest, which would also remove
        every other tag of that manifest and break lists referencing it; that is never
        done here. Unsupported (400/405/501...) or forbidden (401/403) gives False;
        transient failures past the retry budget raise :class:`RegistryError`.
        """
        ref = self._ref(tag)

        def attempt() -> bool:
            r = self._send("delete", "manifests/" + tag, ok=(400, 401, 403, 404, 405, 501))
            return r.status_code in (200, 202, 204)

        try:
            return self._call("DELETE tag", ref, attempt)
        except RegistryError as exc:
            if exc.transient:
                raise
            return False


def _digest_header(r: requests.Response) -> str:
    """``Docker-Content-Digest`` when it is a sha256 digest; '' when absent or of another algorithm
    (``sha512:<hex>``: not comparable here); _Malformed when it is not a digest at all."""
    value = (r.headers.get("Docker-Content-Digest") or "").strip()
    if not value:
        return ""
    algorithm, _, encoded = value.partition(":")
    if algorithm != "sha256" and algorithm.isalnum() and algorithm.islower() and encoded.isalnum() \
            and len(value) <= 200:
        return ""
    try:
        return parse_digest(value)
    except ValueError:
        raise _Malformed("its Docker-Content-Digest header is not a sha256:<64 hex> digest") from None


def _media_type(r: requests.Response) -> str:
    """The Content-Type without parameters, at most :data:`MAX_MEDIA_TYPE` characters."""
    return (r.headers.get("Content-Type") or "").split(";")[0].strip()[:MAX_MEDIA_TYPE]


def _root_cause(exc: BaseException) -> str:
    """The most specific cause's text (``ConnectionResetError: [Errno 104] ...``), not the wrappers."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    best: BaseException = exc
    while todo:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and not isinstance(cur, requests.RequestException):
            best = cur  # the socket-level error: the most telling one
            break
        todo += [getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args]
    return f"{type(best).__name__}: {best}"
