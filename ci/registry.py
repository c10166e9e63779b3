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
(one private call, isolated in :meth:`RegistryClient._send`; stable since dxf 7)
because dxf's public call for them does not fit:

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

Everything else -- retries with backoff, Retry-After, error parsing, digest checks,
"blobs before manifest", secret redaction, Docker credentials -- is this module.
Plain ``requests`` is not used directly: the ``requests.Session`` is the one dxf
opens for this client (``with``-style, kept until :meth:`close`).

Threads: one :class:`RegistryClient` per thread. Its session pools connections
(requests' default pool of 10 per host) and dxf keeps the auth token on the
client object, neither of which is meant to be shared between threads.

Plain HTTP: only when the caller says so (``plain_http``; see
:func:`ci.reference.uses_plain_http`). dxf never sends credentials over plain HTTP;
a registry that demands them there is reported with a clear error.
"""
from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import BinaryIO, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit, parse_qsl

import dxf
import dxf.exceptions
import requests

from ci.errors import RegistryError
from ci.manifest import ACCEPT_MANIFESTS, parse_manifest
from ci.reference import ImageName, parse_digest, sha256_digest

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter.

    ``attempts`` counts every try (1 = no retry); no retry starts after ``deadline``
    seconds from the first try of an operation; one wait is at most ``max_delay``
    (Retry-After included); ``request_timeout`` is the per-socket-operation timeout.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float = 600.0
    request_timeout: float = 60.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Wait before retry number ``retry`` (1-based): base*2^(n-1), capped, jittered to [50%, 100%]."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return float(ceiling * rng.uniform(0.5, 1.0))


@dataclass(frozen=True)
class Credentials:
    """Registry login; the password never appears in repr/str."""

    username: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def credentials_for(registry: str, *, username: str | None = None, password: str | None = None,
                    config_dir: str | None = None) -> Credentials | None:
    """Credentials for ``registry``: explicit > Docker ``config.json`` ``auths`` > ``credHelpers``/``credsStore``.

    ``config_dir`` is a Docker config directory (default: ``$DOCKER_CONFIG`` or ``~/.docker``,
    resolved by the Docker SDK). Returns None for anonymous access. A half-given explicit
    pair (only username or only password) is a :class:`ci.errors.UserError`.
    """
    from ci.errors import UserError

    if username is not None or password is not None:
        if not username or password is None:
            raise UserError(f"credentials for {registry}: give both --username and --password-stdin "
                            "(or neither, to use the Docker config / credential helpers)")
        return Credentials(username, password)
    import os

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


class RegistryClient:
    """One repository in one registry; see the module docstring for what dxf does.

    ``retries`` counts retries performed; ``bytes_uploaded`` counts blob bytes sent
    (failed attempts included). Every error is a :class:`ci.errors.RegistryError`
    naming the registry, the operation and the object.
    """

    def __init__(self, image: ImageName, *, plain_http: bool, credentials: Credentials | None = None,
                 retry: RetryPolicy = RetryPolicy(), on_retry: Callable[[str], None] | None = None) -> None:
        self.image = image
        self.registry = image.registry
        self.retries = 0
        self.bytes_uploaded = 0
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
        self._dxf = dxf.DXF(image.api_host, image.repository, auth=self._authenticate,
                            insecure=plain_http, tlsverify=True, timeout=retry.request_timeout)
        self._dxf.__enter__()  # opens the pooled requests.Session this client uses until close()

    def __repr__(self) -> str:
        who = f", user={self._credentials.username!r}" if self._credentials else ""
        scheme = "http" if self._plain_http else "https"
        return f"RegistryClient({scheme}://{self.image}{who})"

    # ---- context manager ------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dxf.__exit__(None, None, None)  # type: ignore[no-untyped-call]

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- auth, redaction ------------------------------------------------------------------
    def _authenticate(self, client: dxf.DXFBase, response: requests.Response) -> None:
        creds = self._credentials
        if creds is None:
            client.authenticate(response=response)  # anonymous bearer token (e.g. Docker Hub pulls)
        else:
            client.authenticate(creds.username, creds.password, response=response)

    def _secrets(self) -> list[str]:
        out = [self._dxf.token] if self._dxf.token else []
        if self._credentials and self._credentials.password:
            import base64
            c = self._credentials
            out += [c.password, base64.b64encode(f"{c.username}:{c.password}".encode()).decode()]
        return out

    def _redact(self, text: str) -> str:
        for s in self._secrets():
            if s:
                text = text.replace(s, "***")
        return text

    def _auth_hint(self) -> str:
        return (f"run `docker login {self.registry}` or pass --username/--password-stdin "
                f"(with a user allowed to push to {self.image.repository})")

    # ---- retry engine ---------------------------------------------------------------------
    def _error(self, text: str, *, status: int | None = None, transient: bool = False) -> RegistryError:
        return RegistryError(self._redact(text), registry=self.registry, status=status, transient=transient)

    def _call(self, op: str, obj: str, fn: Callable[[], T], *, before_retry: Callable[[], T | None] | None = None) -> T:
        """Run ``fn`` with retries; ``op obj`` names it in messages ("PUT manifest reg/repo@sha256:...").

        ``before_retry`` (optional) runs before each retry and may return a result that ends
        the operation (e.g. a blob found present after a reset upload).
        """
        policy = self._policy
        start = time.monotonic()
        what = f"{op} {obj}"
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except _Transient as exc:
                failure = exc
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
            last = f"last error: {failure.text}"
            elapsed = time.monotonic() - start
            delay = policy.backoff(attempt, self._rng)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            delay = min(delay, policy.max_delay)
            if attempt >= policy.attempts or elapsed + delay > policy.deadline:
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

    def _quiet(self, fn: Callable[[], T | None]) -> T | None:
        try:
            return fn()
        except (requests.RequestException, dxf.exceptions.DXFError, _Transient):
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

    def _send(self, method: str, path: str, *, ok: Iterable[int] = (), **kwargs: object) -> requests.Response:
        """One authenticated request through dxf (path relative to ``/v2/<repo>/`` or absolute URL).

        Statuses in ``ok`` are returned instead of raised. The single use of dxf's private API.
        """
        try:
            return self._dxf._request(method, path, **kwargs)  # type: ignore[no-any-return,no-untyped-call]
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code in set(ok):
                return exc.response
            raise

    def _ref(self, reference: str) -> str:
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.image.repository}{sep}{reference}"

    # ---- blobs ----------------------------------------------------------------------------
    def _blob_size(self, digest: str) -> int | None:
        r = self._send("head", "blobs/" + digest, ok=(404,))
        if r.status_code == 404:
            self._confirmed.pop(digest, None)
            return None
        size = int(r.headers.get("Content-Length", "-1"))
        if size >= 0:
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
                try:
                    self._send("delete", urljoin(r.url, location), ok=(404, 405))
                except requests.RequestException:
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

        self._call("upload blob", ref, attempt, before_retry=present_after_reset)
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
            r = self._send("get", "blobs/" + digest, stream=True)
            try:
                declared = int(r.headers.get("Content-Length", "0") or 0)
                if declared > max_bytes:
                    raise self._error(f"GET blob {ref}: {declared} bytes, more than the {max_bytes} bytes allowed")
                buf = bytearray()
                for chunk in r.iter_content(65536):
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise self._error(f"GET blob {ref}: more than the {max_bytes} bytes allowed")
            finally:
                r.close()
            data = bytes(buf)
            got = sha256_digest(data)
            if got != digest:
                raise _Transient(f"digest mismatch: received content hashes to {got}")
            return data

        return self._call("GET blob", ref, attempt)

    # ---- manifests ------------------------------------------------------------------------
    def _manifest_headers(self) -> dict[str, str]:
        return {"Accept": ACCEPT_MANIFESTS}

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        """PUT exactly ``body``; returns the registry's digest (== sha256(body), checked).

        Before the PUT every blob (config, layers) or child manifest it references is
        confirmed present (sizes compared); otherwise nothing is pushed.
        """
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
            return r.headers.get("Docker-Content-Digest") or computed

        got = self._call("PUT manifest", ref, attempt)
        if got != computed:
            raise self._error(f"{what}: the registry reports digest {got}, but the bytes sent hash to {computed}")
        self._confirmed[got] = len(body)
        return got

    def _require_referenced(self, what: str, parsed: object) -> None:
        from ci.manifest import ParsedManifest

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
            r = self._send("get", "manifests/" + reference, ok=(404,), headers=self._manifest_headers())
            if r.status_code == 404:
                return None
            body = r.content
            computed = sha256_digest(body)
            header = r.headers.get("Docker-Content-Digest")
            if reference.startswith("sha256:") and computed != reference:
                raise _Transient(f"digest mismatch: the body hashes to {computed}")
            if header and header.startswith("sha256:") and header != computed:
                raise _Transient(f"digest mismatch: header says {header}, the body hashes to {computed}")
            media = (r.headers.get("Content-Type") or "").split(";")[0].strip()
            return body, media, computed

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
            digest = r.headers.get("Docker-Content-Digest")
            media = (r.headers.get("Content-Type") or "").split(";")[0].strip()
            size = r.headers.get("Content-Length")
            if digest and size is not None:
                return digest, media, int(size)
            return "", media, -1  # no digest header: resolved by a GET below

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
