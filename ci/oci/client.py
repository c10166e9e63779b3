"""OCI distribution client (adapter): :class:`RegistryClient`, the operations on one repository,
and :class:`RegistryClients`, the one factory every verb gets its clients from.

The registry protocol is spoken by this module and the ones it stands on, one concern each
(as go-containerregistry's ``pkg/v1/remote/transport``):

- :mod:`ci.oci.transport` -- the HTTP session every request goes through: which hosts get
  credentials, redirects, body caps, the plain-HTTP policy;
- :mod:`ci.oci.auth` -- the ``/v2/`` challenge, Basic and bearer tokens, the token realm
  credentials are kept to;
- :mod:`ci.oci.retry` -- the retry policy, backoff, ``Retry-After``, what is transient;
- :mod:`ci.oci.deadline` -- per-request and per-operation wall-clock deadlines;
- :mod:`ci.oci.answers` -- parsed error bodies and headers, refused and malformed answers;
- :mod:`ci.oci.keychain` -- credentials.

Every request goes through :meth:`RegistryClient._send`: the URL under
``/v2/<repository>/`` (Docker Hub's official images under ``library/``), the ``Authorization``
the :class:`ci.oci.auth.Authenticator` holds, one answer to a ``401``, the status checked. The
operations: blob ``HEAD``/``GET`` (digest verified), uploads (``POST`` -> ``PUT
<Location>?digest=``, the body streamed from a file-like object with ``Content-Length``,
``Location`` resolved with ``urljoin``), cross-repository mounts (a ``202`` upload session is
cancelled), manifest ``GET``/``HEAD`` (``Accept``: Docker v2 and OCI manifests and lists) and
``PUT`` of exact bytes with the given media type, ``DELETE`` by digest, tag listing
(``tags/list``, then each ``Link: <...>; rel="next"`` page).

What this module adds: retries with backoff, digest checks, "blobs before manifest", every
write read back. A malformed answer (a ``401`` without a usable challenge, a token answer
without a token, a ``Content-Length`` that is not a number, a bad digest header, a body over
its cap) is a non-transient :class:`ci.errors.RegistryError` naming the registry; a body whose
digest does not match is a hard error too, never retried. Every string a registry sent that the
wrappers print passes through :func:`ci.redaction.redact` (the process-wide secret list that
:class:`ci.oci.keychain.Credentials` registers its password in).

Threads: one :class:`RegistryClient` per thread at a time. Its session pools connections
(requests' default pool of 10 per host) and the client keeps the auth token, neither of which
is meant to be shared between threads; the deadline watchdog relies on it too (one request in
flight per session). A client may pass from thread to thread between operations
(``ci.merge`` keeps a pool of them, so their keep-alive connections and tokens serve many
suffixes).

Plain HTTP: only when the caller says so (``plain_http``; see
:func:`ci.oci.reference.uses_plain_http`). Credentials are never sent over plain HTTP;
a registry that demands them there is reported with a clear error.
"""
from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import BinaryIO, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from ..errors import RegistryError
from ..redaction import redact, register_secret
from .answers import Malformed, Problem, content_length, digest_header, first_line, media_type, registry_error_text
from .auth import Authenticator, InsecureAuth, Unauthorized
from .deadline import DeadlineExceeded
from .keychain import Credentials, Keychain
from .manifest import ACCEPT_MANIFESTS, MAX_MANIFEST_BYTES, ParsedManifest, parse_manifest
from .reference import DOCKER_HUB_API, ImageName, parse_digest, sha256_digest, uses_plain_http
from .retry import RetryPolicy, Transient, delay, transient
from .transport import MAX_SMALL_BODY, CountingReader, ScopedSession, url_for_message

T = TypeVar("T")

MAX_TAG_PAGE_BYTES = 8 * 1024 * 1024  # one page of a tag list (about 200,000 tags)
MAX_TAG_LIST_BYTES = 64 * 1024 * 1024  # all pages of one tag list (about 1.5 million tags)

# what an attempt may raise that the retry loop judges (ci.oci.retry.transient, else RegistryClient._fatal);
# anything else (an error of the caller's stream, a RegistryError made here) ends the operation as it is
_FAILURES = (Transient, DeadlineExceeded, Problem, requests.RequestException, Unauthorized, InsecureAuth, KeyError,
             TypeError, AttributeError, ValueError, IndexError, RecursionError)

PlainHttp = Callable[[str], bool]


class ClientFactory(Protocol):
    """``factory(image, plain_http) -> RegistryClient``: ``plain_http(host)`` says whether a host is
    reached over plain HTTP (the registry itself, and any redirect target or upload ``Location``:
    ``ci.settings.FamilyConfig.plain_http``). Publishing, merging, inspecting, auditing, signing and
    the pipeline all take one; tests pass their own to count clients or set a retry policy."""

    def __call__(self, image: ImageName, plain_http: PlainHttp) -> RegistryClient: ...


class RegistryClient:
    """One repository in one registry; see the module docstring.

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
        self._base_url = f"{'http' if plain_http else 'https'}://{image.api_host}/v2/"
        self._repo_url = self._base_url + _api_repository(image) + "/"
        policy = plain_http_policy or uses_plain_http
        self._session = ScopedSession(self._base_url, lambda host: host != image.api_host and policy(host), retry)
        self._auth = Authenticator(self.registry, self._session, self._base_url, _api_repository(image), credentials,
                                   plain_http=plain_http, request_timeout=retry.request_timeout)

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
            self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- auth, redaction ------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        register_secret(self._auth.token or "")
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
        budget = self._policy.deadline + extra_time
        with self._session.deadline.running(budget) as start:
            return self._attempts(op, obj, fn, before_retry, start, budget)

    def _attempts(self, op: str, obj: str, fn: Callable[[], T], before_retry: Callable[[], T | None] | None,
                  start: float, budget: float) -> T:
        policy = self._policy
        what = f"{op} {obj}"
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except _FAILURES as exc:
                failure = transient(exc)
                if failure is None:
                    raise self._fatal(what, exc) from exc
                cause = exc
            elapsed = time.monotonic() - start
            wait = delay(policy, attempt, failure, self._rng, elapsed, budget)
            if wait is None:
                raise self._error(f"{what} failed after {attempt} attempt(s) in {elapsed:.1f}s; "
                                  f"last error: {failure.text}", status=failure.status, transient=True) from cause
            self.retries += 1
            if self._on_retry is not None:
                self._on_retry(self._redact(f"{self.registry}: {what}: {failure.text}; "
                                            f"retry {attempt}/{policy.attempts - 1} in {wait:.2f}s"))
            time.sleep(wait)
            if before_retry is not None:
                early = self._quiet(before_retry)
                if early is not None:
                    return early

    def _fatal(self, what: str, exc: BaseException) -> RegistryError:
        """The error that ends the operation ``what`` on ``exc``, a failure that is not transient."""
        if isinstance(exc, Problem):
            prefix = f"malformed answer from {self.registry}: " if isinstance(exc, Malformed) else \
                f"refused ({self.registry}): "
            return self._error(f"{what}: {prefix}{exc.text}")
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            text, status = registry_error_text(exc.response), exc.response.status_code
            if status in (401, 403):
                return self._error(f"{what}: {text}; {self._auth_hint()}", status=status)
            return self._error(f"{what}: {text}", status=status)
        if isinstance(exc, requests.exceptions.SSLError):
            return self._error(f"{what}: TLS verification failed ({first_line(str(exc), 200)}); "
                               f"fix the registry certificate or name {self.registry} as insecure "
                               "only if it is on a trusted network")
        if isinstance(exc, requests.RequestException):
            return self._error(f"{what}: {type(exc).__name__}: {first_line(str(exc), 200)}")
        if isinstance(exc, Unauthorized):
            return self._error(f"{what}: HTTP 401 Unauthorized after authenticating; {self._auth_hint()}", status=401)
        if isinstance(exc, InsecureAuth):
            return self._error(f"{what}: {self.registry} requires authentication but is reached over plain "
                               "HTTP, and credentials are never sent in clear text; serve it over TLS "
                               "(and do not name it in CI_INSECURE_REGISTRIES)", status=401)
        # anything else an answer made fail (a value of an unexpected type, JSON nested too deeply, ...):
        # a malformed answer, never a traceback
        return self._error(f"{what}: malformed answer from {self.registry}: {type(exc).__name__}"
                           f"{': ' + first_line(str(exc), 200) if str(exc) else ''}")

    def _quiet(self, fn: Callable[[], T | None]) -> T | None:
        try:
            return fn()
        except (requests.RequestException, Unauthorized, InsecureAuth, Transient, Problem, DeadlineExceeded,
                ValueError, KeyError, TypeError):
            return None

    def _send(self, method: str, path: str, *, ok: Iterable[int] = (), limit: int = MAX_SMALL_BODY,
              data: bytes | CountingReader | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        """One authenticated request (``path`` relative to ``/v2/<repo>/``, or an absolute URL).

        Sent with the ``Authorization`` held; a ``401`` is answered (:meth:`ci.oci.auth.Authenticator.answer`)
        and the request sent again when that gave another ``Authorization`` -- unless its body was a
        stream, already sent: then a transient failure, so the operation starts it again from a fresh
        stream. A ``401`` after that is :class:`ci.oci.auth.Unauthorized`; another status of 400 or more
        not in ``ok`` a ``requests.HTTPError``. A successful answer's body is at most ``limit`` bytes.
        """
        url = urljoin(self._repo_url, path)
        with self._body_limit(limit):
            r = self._request(method, url, data, headers)
            if r.status_code == 401 and self._auth.answer(r, method):
                if not (data is None or isinstance(data, bytes)):
                    raise Transient("HTTP 401 Unauthorized: the registry asked for new credentials after the "
                                    "body was sent; sending it again", 401)
                r = self._request(method, url, data, headers)
        if r.status_code == 401:
            raise Unauthorized()
        if r.status_code >= 400 and r.status_code not in set(ok):
            r.raise_for_status()
        return r

    def _request(self, method: str, url: str, data: bytes | CountingReader | None,
                 headers: dict[str, str] | None) -> requests.Response:
        sent = {**(headers or {}), **self._auth.headers()}
        return self._session.request(method.upper(), url, data=data, headers=sent, allow_redirects=True,
                                     timeout=self._policy.request_timeout, verify=True)

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
        size = content_length(r)
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
                try:  # (a Location on another host gets no credentials: see ScopedSession)
                    self._send("delete", urljoin(r.url, location), ok=(404, 405))
                except (requests.RequestException, Unauthorized, InsecureAuth, Problem, DeadlineExceeded, ValueError):
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
                body = CountingReader(stream, size, count)
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
                raise Malformed(f"digest mismatch: received content hashes to {got}")
            return data

        return self._call("GET blob", ref, attempt)

    # ---- manifests ------------------------------------------------------------------------
    def _manifest_headers(self) -> dict[str, str]:
        return {"Accept": ACCEPT_MANIFESTS}

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        """PUT exactly ``body``; returns the registry's digest (== sha256(body), checked).

        Before the PUT every blob (config, layers) or child manifest it references is
        confirmed present (sizes compared); otherwise nothing is pushed. After it, what the
        registry serves under ``reference`` is read back (GET) and compared byte for byte:
        the registry's answer to the PUT is never taken as proof.
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
            raise self._error(f"{what}: {exc}") from exc
        self._require_referenced(what, parsed)

        def attempt() -> str:
            r = self._send("put", "manifests/" + reference, data=body, headers={"Content-Type": media_type})
            return digest_header(r) or computed

        got = self._call("PUT manifest", ref, attempt)
        if got != computed:
            raise self._error(f"{what}: the registry reports digest {got}, but the bytes sent hash to {computed}")
        served = self.get_manifest(reference)
        if served is None or served[0] != body:
            found = "nothing" if served is None else f"{served[2]} ({len(served[0])} bytes)"
            raise self._error(f"{what}: read back: {self.registry} serves {found} under {ref}, not the "
                              f"{len(body)} bytes sent ({computed}); it accepted the PUT but does not serve it")
        self._confirmed[got] = len(body)
        return got

    def _require_referenced(self, what: str, parsed: ParsedManifest) -> None:
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
            r = self._send("get", "manifests/" + reference, ok=(404,), headers=self._manifest_headers(),
                           limit=MAX_MANIFEST_BYTES)
            if r.status_code == 404:
                return None
            body = r.content
            computed = sha256_digest(body)
            header = digest_header(r)
            # a body that is not what was asked for is not a transient fault: never retried
            if reference.startswith("sha256:") and computed != reference:
                raise Malformed(f"digest mismatch: the body hashes to {computed}")
            if header and header != computed:
                raise Malformed(f"digest mismatch: header says {header}, the body hashes to {computed}")
            return body, media_type(r), computed

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
            digest = digest_header(r)
            size = content_length(r)
            if digest and size is not None:
                return digest, media_type(r), size
            return "", media_type(r), -1  # no digest header: resolved by a GET below

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
        """All tags of the repository ([] when the repository does not exist), every page of the list."""
        def attempt() -> list[str]:
            tags: list[str] = []
            url: str | None = urljoin(self._repo_url, "tags/list")
            seen: set[str] = set()
            read = 0
            while url is not None:
                if url in seen:
                    raise Malformed(f"its tag list pages come round again ({url_for_message(url)})")
                seen.add(url)
                r = self._send("get", url, ok=(404,), limit=MAX_TAG_PAGE_BYTES)
                if r.status_code == 404:
                    return []
                read += len(r.content)
                if read > MAX_TAG_LIST_BYTES:
                    raise Malformed(f"its tag list is more than the {MAX_TAG_LIST_BYTES} bytes allowed "
                                    f"({len(seen)} pages)")
                tags += _tag_page(r.content)
                link = r.links.get("next", {}).get("url")
                url = urljoin(r.url, link) if link else None
            return tags

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


def _api_repository(image: ImageName) -> str:
    """The repository's name in API paths: Docker Hub's one-component names are ``library/`` ones."""
    if image.api_host in (DOCKER_HUB_API, "index.docker.io") and "/" not in image.repository:
        return "library/" + image.repository
    return image.repository


def _tag_page(body: bytes) -> list[str]:
    """The tags of one ``tags/list`` page (``{"name": ..., "tags": [...]}``, ``tags`` may be null)."""
    try:
        page = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Malformed("its tag list page is not JSON") from exc
    tags = page.get("tags") if isinstance(page, dict) else None
    if tags is None and isinstance(page, dict) and "tags" in page:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise Malformed('its tag list page is not {"tags": [<strings>]}')
    return tags


class RegistryClients:
    """The :class:`ClientFactory` of this project: real :class:`RegistryClient` objects with the
    keychain's credentials. ``on_retry`` hears every retried request; ``retry`` is the policy."""

    def __init__(self, keychain: Keychain | None = None, *, on_retry: Callable[[str], None] | None = None,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        self.keychain = keychain if keychain is not None else Keychain()
        self.on_retry = on_retry
        self.retry = retry

    def __call__(self, image: ImageName, plain_http: PlainHttp) -> RegistryClient:
        return RegistryClient(image, plain_http=plain_http(image.registry), credentials=self.keychain.get(image.registry),
                              plain_http_policy=plain_http, on_retry=self.on_retry, retry=self.retry)

    def retrying(self, on_retry: Callable[[str], None] | None) -> RegistryClients:
        """The same keychain and policy, another retry listener."""
        return RegistryClients(self.keychain, on_retry=on_retry, retry=self.retry)
