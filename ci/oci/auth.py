"""Registry authentication (adapter support): the ``/v2/`` challenge, HTTP Basic and bearer tokens,
and the token realm credentials are kept to.

**Credentials are kept to a registry's token realm.** A ``401`` is answered only when it comes
from the registry's own origin (a redirect target's challenge -- a "CDN" -- gets no credentials
and no answer), and a bearer challenge is answered only when its realm is the token service the
registry's own ``GET /v2/`` challenge named (asked once, without credentials) or lies on the
registry's own origin. That realm becomes the session's
:attr:`ci.oci.transport.ScopedSession.token_realm`, the one other place the transport lets an
``Authorization`` header go. Credentials are never sent over plain HTTP: a registry reached
over plain HTTP that demands them is an error (:class:`InsecureAuth`).

The handshake (distribution's "Token Authentication Specification", as go-containerregistry's
``transport/bearer.go``), done by :class:`Authenticator` for one client:

- A request is first sent with what the client already holds (nothing, Basic, or a bearer
  token). A ``401`` from the registry is parsed (:func:`parse_challenges`, RFC 7235; a Bearer
  challenge is preferred to a Basic one) and answered once: ``Basic`` -> the credentials as an
  HTTP Basic ``Authorization``; ``Bearer realm=...,service=...,scope=...`` -> a token request
  ``GET <realm>?service=<service>&scope=<scope>...`` (over https; with the credentials as Basic,
  or anonymous without them), whose JSON answer's ``access_token`` (else ``token``) becomes
  ``Authorization: Bearer <token>``. The request is sent again only when that header changed; a
  second ``401`` is :class:`Unauthorized`.
- Scopes accumulate: each challenge's ``scope`` (space-separated) joins those asked before, the
  newest first (some token services read only the first), so a client that pulls then pushes
  holds one token for both. A challenge naming no scope asks for ``repository:<repo>:pull``
  (reads) or ``repository:<repo>:pull,push`` (writes).
- The token is kept and sent with every request to the registry; it is renewed before
  ``expires_in`` (default 60 s, the specification's) runs out, so a streamed upload is not sent
  with a stale one. ``refresh_token`` (OAuth) is not used.
- Malformed answers -- a ``401`` without a challenge, one that cannot be parsed, names neither
  Basic nor Bearer, or a Bearer challenge without an absolute realm URL; a token answer that is
  not JSON or holds no usable token -- are :class:`ci.oci.answers.Malformed`. Every token is
  registered as a secret (redacted wherever it could be shown).
"""
from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from ..redaction import register_secret
from .answers import Malformed, Refused
from .keychain import Credentials
from .transport import MAX_TOKEN_BYTES, Origin, ScopedSession, hostport, netloc, origin

Realm = tuple[Origin, str]  # a token service: origin and path

MAX_CHALLENGE_CHARS = 8192  # a WWW-Authenticate header longer than this is refused unread
MAX_SCOPES = 16  # scopes one client asks a token for (its repository, mount sources)
DEFAULT_TOKEN_SECONDS = 60.0  # a token answer without expires_in: the specification's default
RENEW_MARGIN = 10.0  # a token is renewed this long before it expires (at most half its lifetime)

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SPACE = " \t"


# ---- WWW-Authenticate (RFC 7235) ------------------------------------------------------------------
class ChallengeError(ValueError):
    """A ``WWW-Authenticate`` value that is not a list of RFC 7235 challenges; the message says why."""


@dataclass(frozen=True)
class Challenge:
    """One challenge: its scheme (lowercase), its auth-params (names lowercase) or its token68."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None


class _Reader:
    """A cursor over one header value (RFC 7230's token, quoted-string, OWS)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1
        return self.pos - start

    def token(self, chars: frozenset[str] = _TCHAR) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
        return self.text[start:self.pos]

    def quoted(self) -> str:
        """A quoted-string (the opening quote is at the cursor): its value, escapes undone."""
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\":
                if self.pos + 1 >= len(text):
                    break
                c = text[self.pos + 1]
                self.pos += 1
            if (ord(c) < 32 and c != "\t") or ord(c) == 127:
                raise ChallengeError(f"a control character in a quoted string at character {self.pos + 1}")
            out.append(c)
            self.pos += 1
        raise ChallengeError("a quoted string is not terminated")

    def end_of_element(self) -> bool:
        """After optional spaces: the end of the header or of a list element (a comma)."""
        self.skip_space()
        return self.done() or self.peek() == ","


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge of a ``WWW-Authenticate`` value (several challenges, or several headers joined
    with commas), as RFC 7235 writes them::

        challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
        auth-param = token BWS "=" BWS ( token / quoted-string )

    Schemes and parameter names are case-insensitive (lowercased here); quoted values keep their
    case, commas and escaped quotes. :class:`ChallengeError` for anything else: an unterminated
    quoted string, a parameter without a value or given twice in one challenge, stray characters,
    a header over :data:`MAX_CHALLENGE_CHARS`. Linear in the header's length.
    """
    if len(header) > MAX_CHALLENGE_CHARS:
        raise ChallengeError(f"longer than {MAX_CHALLENGE_CHARS} characters")
    r = _Reader(header)
    out: list[Challenge] = []
    params: dict[str, str] | None = None  # the current challenge's, while it can take more
    while True:
        r.skip_space()
        if r.done():
            return out
        if r.peek() == ",":  # empty list elements are allowed
            r.pos += 1
            continue
        where = r.pos + 1
        name = r.token()
        if not name:
            raise ChallengeError(f"expected an auth-scheme or auth-param at character {where}")
        spaced = r.skip_space()
        if r.peek() == "=":  # name = value: one more parameter of the current challenge
            if params is None:
                raise ChallengeError(f"the parameter {name.lower()!r} at character {where} belongs to no challenge")
            _param(r, name, params)
            continue
        # a new challenge: the scheme, then nothing, a token68, or its first parameter
        params = {}
        scheme = name.lower()
        if r.done() or r.peek() == ",":
            out.append(Challenge(scheme, params))
            continue
        if not spaced:
            raise ChallengeError(f"unexpected {r.peek()!r} after the auth-scheme at character {r.pos + 1}")
        start = r.pos
        first = r.token()
        r.skip_space()
        if first and r.peek() == "=":
            after_equals = r.pos + 1
            r.pos += 1
            r.skip_space()
            if r.peek() == '"' or (r.peek() in _TCHAR and r.peek() != "" and r.peek() != "="):
                r.pos = after_equals - 1
                _param(r, first, params)
                out.append(Challenge(scheme, params))
                continue
        r.pos = start  # a token68 ("Negotiate abc==")
        token68 = r.token(_TOKEN68)
        while token68 and r.peek() == "=":
            token68 += "="
            r.pos += 1
        if not token68 or not r.end_of_element():
            raise ChallengeError(f"unexpected {r.peek()!r} in the {scheme!r} challenge at character {r.pos + 1}")
        out.append(Challenge(scheme, {}, token68))
        params = None  # a token68 takes no parameters


def _param(r: _Reader, name: str, params: dict[str, str]) -> None:
    """``= value`` of the parameter ``name`` (the cursor is at the ``=``), into ``params``."""
    key = name.lower()
    r.pos += 1
    r.skip_space()
    if r.peek() == '"':
        value = r.quoted()
    else:
        value = r.token()
        if not value:
            raise ChallengeError(f"the parameter {key!r} has no value")
    if key in params:
        raise ChallengeError(f"the parameter {key!r} is given twice in one challenge")
    params[key] = value
    if not r.end_of_element():
        raise ChallengeError(f"unexpected {r.peek()!r} after the parameter {key!r} at character {r.pos + 1}")


# ---- a registry's challenge ------------------------------------------------------------------------
@dataclass(frozen=True)
class RegistryChallenge:
    """The challenge of a registry's ``401`` this client answers: Basic, or Bearer with its token
    service (``realm``: origin and path, ``realm_url``: the URL the token is asked from, over https)."""

    scheme: str  # "basic" or "bearer"
    realm: Realm | None = None
    realm_url: str = ""
    service: str | None = None
    scopes: tuple[str, ...] = ()


def registry_challenge(header: str | None) -> RegistryChallenge:
    """The Bearer challenge of a ``WWW-Authenticate`` value, else its Basic one.

    :class:`Malformed` when it is missing, unparsable, names neither scheme, or a bearer challenge has
    no absolute realm URL. The realm is used over https whatever it says (as python-dxf did):
    credentials never travel in clear text.
    """
    if not header or not header.strip():
        raise Malformed("it answered 401 without a WWW-Authenticate challenge")
    try:
        challenges = parse_challenges(header)
    except ChallengeError as exc:
        raise Malformed(f"it answered 401 with a WWW-Authenticate header that cannot be parsed ({exc})") from exc
    by_scheme = {c.scheme: c for c in reversed(challenges)}  # the first of each scheme
    bearer = by_scheme.get("bearer")
    if bearer is not None:
        realm = bearer.params.get("realm", "")
        try:
            parts = urlsplit(realm)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise Malformed("it answered 401 with a Bearer challenge without an absolute realm URL")
            forced = urlsplit(urlunsplit(("https",) + tuple(parts)[1:]))  # type: ignore[arg-type]
            where = (origin(forced), forced.path or "/")
        except ValueError as exc:
            raise Malformed("it answered 401 with a Bearer realm that is not a valid URL") from exc
        return RegistryChallenge("bearer", where, urlunsplit(forced), bearer.params.get("service"),
                                 tuple(bearer.params.get("scope", "").split()))
    if "basic" in by_scheme:
        return RegistryChallenge("basic")
    raise Malformed("it answered 401 with a WWW-Authenticate challenge that is neither Basic nor Bearer")


# ---- tokens ---------------------------------------------------------------------------------------
class Unauthorized(Exception):
    """The registry (or its token service) still answers 401 to what this client sent."""


class InsecureAuth(Exception):
    """The registry demands credentials but is reached over plain HTTP: they are never sent there."""


def basic_authorization(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_token_answer(body: bytes) -> tuple[str, float | None]:
    """(token, ``expires_in`` seconds or None) from a token service's answer; ValueError saying what
    is wrong. ``access_token`` is preferred to ``token`` (OAuth-style services send both)."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    token = answer.get("access_token") or answer.get("token")
    if token is None or token == "":
        raise ValueError("no token or access_token")
    if not isinstance(token, str):
        raise ValueError("its token is not a string")
    expires = answer.get("expires_in")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not 0 < expires < 10**9:
        expires = None
    return token, None if expires is None else float(expires)


def _printable_token(token: str) -> bool:
    return len(token) <= MAX_TOKEN_BYTES and token.isascii() and token.isprintable() and " " not in token


class Authenticator:
    """The credentials one client sends, and its answers to the registry's ``401``: see the module docstring."""

    def __init__(self, registry: str, session: ScopedSession, base_url: str, repository: str,
                 credentials: Credentials | None, *, plain_http: bool, request_timeout: float) -> None:
        self.registry = registry
        self._session = session
        self._base_url = base_url
        self._repository = repository
        self._credentials = credentials
        self._plain_http = plain_http
        self._request_timeout = request_timeout
        self._v2_realm: Realm | None | bool = False  # False: /v2/ not asked yet
        self._authorization: str | None = None  # sent with every request to the registry
        self._token: str | None = None
        self._renew_at: float | None = None  # monotonic
        self._bearer: RegistryChallenge | None = None  # the token service of the current token
        self._scopes: list[str] = []

    @property
    def token(self) -> str | None:
        """The bearer token held (a secret: registered for redaction when it arrived)."""
        return self._token

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` of the next request to the registry; a token about to expire is renewed first."""
        if self._bearer is not None and self._renew_at is not None and time.monotonic() >= self._renew_at:
            self._fetch_token(self._bearer)
        return {"Authorization": self._authorization} if self._authorization else {}

    def answer(self, response: requests.Response, method: str) -> bool:
        """Answer a ``401`` to ``method``: only the registry's own, only with its own token realm.

        True when the next request carries another ``Authorization`` (send it again); False when
        nothing else can be sent (no credentials for a Basic challenge, the same token again).
        """
        if origin(response.url) != self._session.registry_origin:
            raise Refused(f"{hostport(response.url)} (reached through a redirect) answered 401 with its own "
                          f"challenge; it is not {self.registry}, so it gets no credentials and no answer")
        if self._plain_http:
            raise InsecureAuth()
        challenge = registry_challenge(response.headers.get("WWW-Authenticate"))
        before = self._authorization
        if challenge.scheme == "basic":
            self._bearer = self._token = self._renew_at = None
            self._authorization = basic_authorization(self._credentials) if self._credentials else None
            return self._authorization != before
        realm = challenge.realm
        assert realm is not None
        named = self._registry_realm()
        if realm != named and realm[0] != self._session.registry_origin:
            where = netloc(named[0]) + named[1] if named else "no token service"
            raise Refused(f"its challenge names the token service {netloc(realm[0])}{realm[1]}, but its /v2/ "
                          f"challenge named {where}; credentials go only to the registry's own token service")
        self._session.token_realm = realm
        wanted = challenge.scopes or (self._default_scope(method),)
        self._scopes = list(dict.fromkeys([*wanted, *self._scopes]))[:MAX_SCOPES]
        self._fetch_token(challenge)
        return self._authorization != before

    def _default_scope(self, method: str) -> str:
        actions = "pull" if method.upper() in ("GET", "HEAD") else "pull,push"
        return f"repository:{self._repository}:{actions}"

    def _fetch_token(self, challenge: RegistryChallenge) -> None:
        """Ask ``challenge``'s token service for a token of this client's scopes (anonymous without
        credentials); keep it as the ``Authorization`` of the next requests."""
        parts = urlsplit(challenge.realm_url)
        query = parse_qsl(parts.query)
        if challenge.service is not None:
            query.append(("service", challenge.service))
        query += [("scope", s) for s in self._scopes]
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        headers = {"Authorization": basic_authorization(self._credentials)} if self._credentials else {}
        r = self._session.get(url, headers=headers, timeout=self._request_timeout, verify=True)
        if r.status_code == 401:
            raise Unauthorized()
        r.raise_for_status()
        host = netloc(challenge.realm[0]) if challenge.realm else self.registry
        try:
            token, expires_in = parse_token_answer(r.content)
        except ValueError as exc:
            raise Malformed(f"the token service {host} answered without a usable token ({exc})") from exc
        if not _printable_token(token):
            raise Malformed("the token service answered a token that is not a printable string")
        register_secret(token)
        lifetime = expires_in or DEFAULT_TOKEN_SECONDS
        self._renew_at = time.monotonic() + max(lifetime / 2, lifetime - RENEW_MARGIN)
        self._token, self._bearer = token, challenge
        self._authorization = "Bearer " + token

    def _registry_realm(self) -> Realm | None:
        """The token realm the registry's own ``GET /v2/`` challenge names (asked once, no credentials)."""
        if self._v2_realm is False:
            named: Realm | None = None
            r = self._session.get(self._base_url, allow_redirects=False, timeout=self._request_timeout, verify=True)
            if r.status_code == 401:
                with contextlib.suppress(Malformed):
                    found = registry_challenge(r.headers.get("WWW-Authenticate"))
                    named = found.realm if found.scheme == "bearer" else None
            self._v2_realm = named
        return self._v2_realm if isinstance(self._v2_realm, tuple) else None
