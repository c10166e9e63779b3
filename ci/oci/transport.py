"""The HTTP session every registry request goes through (adapter support): which hosts get
credentials, redirects, body caps, the plain-HTTP policy, and each request's deadline.

Every HTTP request a :class:`ci.oci.client.RegistryClient` makes -- the ``/v2/`` probe, the
token request, manifests, blobs, uploads, tag pages -- passes through
:meth:`ScopedSession.send`, which is where these rules are enforced, once for all of them:

- **Credentials stay with their registry.** An ``Authorization`` header (Basic, or the bearer
  token), a ``Cookie`` or a ``Proxy-Authorization`` is sent only to the registry's own origin and
  to :attr:`ScopedSession.token_realm`, the token service the registry's own ``/v2/`` challenge
  named (:mod:`ci.oci.auth` decides which one that is); it is removed from any request to another
  origin (a redirect target, an upload ``Location`` or a mount-cancel ``Location`` on another host).
- **Redirects** are followed by hand, for GET and HEAD only, at most :data:`MAX_REDIRECTS`
  hops, and only to ``https`` or to hosts the plain-HTTP policy allows (``plain_http_allowed``,
  as :meth:`ci.settings.FamilyConfig.plain_http`). Every request URL is checked the same way.
- **Bodies are bounded**: every answer is read here, incrementally, against a cap: token answers
  :data:`MAX_TOKEN_BYTES`; any other success the caller's ``body_limit`` (manifests
  :data:`ci.oci.manifest.MAX_MANIFEST_BYTES`, 4 MiB, distribution's own limit; tag pages and
  configs their own; anything else :data:`MAX_SMALL_BODY`); an error answer is read up to
  :data:`MAX_ERROR_BODY` and cut there. A declared ``Content-Length`` over the cap is refused
  before reading.
- **Wall-clock deadlines** (:mod:`ci.oci.deadline`): each request has one, never past the
  operation's; when it passes, the session's sockets are shut down.

A request or answer outside these rules raises :class:`ci.oci.answers.Refused` or
:class:`ci.oci.answers.Malformed`; a request past its deadline
:class:`ci.oci.deadline.DeadlineExceeded`. The session also counts the requests it sent and the
TCP connections it opened (keep-alive reuse shows there).
"""
from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import requests
import requests.adapters
import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .answers import Malformed, Problem, Refused, content_length
from .deadline import DeadlineExceeded, OperationDeadline, arm
from .retry import RetryPolicy

_CHUNK = 1024 * 1024
_READ_PIECE = 64 * 1024
MAX_REDIRECTS = 5
MAX_ERROR_BODY = 8 * 1024  # an error answer is read this far, then cut (enough for its error codes)
MAX_TOKEN_BYTES = 64 * 1024  # a token answer (a JWT of a few KiB)
MAX_SMALL_BODY = 64 * 1024  # any other successful answer with nothing to read (HEAD, PUT, POST, DELETE)

Origin = tuple[str, str, int]  # scheme, lowercase host, port


def origin(url: str | SplitResult) -> Origin:
    parts = urlsplit(url) if isinstance(url, str) else url
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def netloc(where: Origin) -> str:
    scheme, host, port = where
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"


def hostport(url: str) -> str:
    """``host[:port]`` of a URL, for messages and for the plain-HTTP policy (registry-style names)."""
    return netloc(origin(url))


def url_for_message(url: str) -> str:
    """A URL without its query (upload state, signed CDN parameters) for messages."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


class CountingReader:
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


class ScopedSession(requests.Session):
    """The session every registry request goes through: scope, redirects, body caps and deadlines.

    The client sets ``body_limit`` (cap of a successful answer) around each request and runs each
    operation in ``deadline`` (:class:`ci.oci.deadline.OperationDeadline`); :mod:`ci.oci.auth`
    sets ``token_realm`` once the registry's token service is known. See the module docstring.
    """

    def __init__(self, registry_url: str, plain_http_allowed: Callable[[str], bool], policy: RetryPolicy) -> None:
        super().__init__()
        self.registry_origin = origin(registry_url)
        self.plain_http_allowed = plain_http_allowed
        self.policy = policy
        self.body_limit = MAX_SMALL_BODY
        self.deadline = OperationDeadline()
        self.token_realm: tuple[Origin, str] | None = None  # (origin, path) that may receive credentials
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self.connections_opened = 0  # TCP connections this session opened (keep-alive reuse shows here)
        self.requests_sent = 0  # HTTP requests sent (redirect hops, the token and /v2/ requests included)
        # the proxies requests derives from the environment, by (origin, no_proxy): see
        # merge_environment_settings
        self._env_proxies: dict[tuple[Origin, str | None], dict[str, str]] = {}
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
            key = (origin(url), no_proxy)
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

    # -- scope ------------------------------------------------------------------------------------
    def _is_token_request(self, url: str) -> bool:
        parts = urlsplit(url)
        return self.token_realm is not None and self.token_realm == (origin(parts), parts.path or "/")

    def _may_carry_credentials(self, url: str) -> bool:
        return origin(url) == self.registry_origin or self._is_token_request(url)

    def _check_target(self, request: requests.PreparedRequest, why: str) -> None:
        url = request.url or ""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise Refused(f"{why} {url_for_message(url)!r} is not an http(s) URL; not followed")
        if scheme == "http" and origin(url) != self.registry_origin and not self.plain_http_allowed(hostport(url)):
            raise Refused(f"{why} plain-HTTP URL {url_for_message(url)} is refused: {hostport(url)} is reached "
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
        return self.deadline.request_window(self.policy.request_deadline + extra)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        follow = kwargs.pop("allow_redirects", True)
        kwargs.pop("stream", None)  # every answer is read here, bounded
        at, allowed = self._deadline_for(request)
        if at <= time.monotonic():
            raise DeadlineExceeded(allowed)
        watchdog = arm(at, self._conns)
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
                    raise Malformed(f"it answered {resp.status_code} (a redirect) without a Location")
                if method not in ("GET", "HEAD"):
                    raise Refused(f"it answered {method} {url_for_message(request.url or '')} with a redirect "
                                  f"({resp.status_code}); writes are never redirected")
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise Refused(f"more than {MAX_REDIRECTS} redirects; not followed further")
                nxt = request.copy()
                nxt.prepare_url(urljoin(resp.url, location), None)
                request = nxt
                self._check_target(request, "redirect to")
            if 300 <= resp.status_code < 400 and resp.status_code != 304 and follow:
                raise Malformed(f"it answered {resp.status_code}")
            limit = MAX_TOKEN_BYTES if self._is_token_request(resp.url) else self.body_limit
            self._read_body(resp, limit)
            return resp
        except Problem:
            raise
        except BaseException as exc:
            if watchdog.fired:
                raise DeadlineExceeded(allowed) from exc
            raise
        finally:
            watchdog.cancel()

    def _read_body(self, resp: requests.Response, limit: int) -> None:
        """Read the body now, at most ``limit`` bytes for a success (else :class:`Malformed`) and
        :data:`MAX_ERROR_BODY` for an error (cut there)."""
        ok = 200 <= resp.status_code < 300
        cap = limit if ok else MAX_ERROR_BODY
        declared = content_length(resp) if ok else None
        if declared is not None and declared > cap and (resp.request.method or "").upper() != "HEAD":
            resp.close()
            raise Malformed(f"its answer declares {declared} bytes, more than the {cap} bytes allowed")
        buf = bytearray()
        cut = False
        for piece in resp.iter_content(_READ_PIECE):  # urllib3 errors wrapped as requests errors; HEAD: none
            buf += piece
            if len(buf) > cap:
                if ok:
                    resp.close()
                    raise Malformed(f"its answer is more than the {cap} bytes allowed")
                del buf[cap:]
                cut = True
                break
        resp._content = bytes(buf)
        resp._content_consumed = True  # type: ignore[attr-defined]
        if cut:
            resp.close()  # the rest is never read: the connection is dropped, not reused
        else:
            resp.raw.release_conn()
