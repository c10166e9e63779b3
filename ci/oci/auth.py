"""Registry authentication (adapter support): the ``/v2/`` challenge, HTTP Basic and bearer tokens,
and the token realm credentials are kept to.

**Credentials are kept to a registry's token realm.** A ``401`` is answered only when it comes
from the registry's own origin (a redirect target's challenge -- a "CDN" -- gets no credentials
and no answer), and a bearer challenge is answered only when its realm is the token service the
registry's own ``GET /v2/`` challenge named (asked once, without credentials) or lies on the
registry's own origin. That realm becomes the session's
:attr:`ci.oci.transport.ScopedSession.token_realm`, the one other place the transport lets an
``Authorization`` header go. Credentials are never sent over plain HTTP: a registry reached
over plain HTTP that demands them is an error.

The handshake itself (the token request, its answer) is python-dxf's ``authenticate``,
called from its ``auth`` hook (:meth:`Authenticator.answer`).
"""
from __future__ import annotations

import contextlib
from urllib.parse import urlsplit, urlunsplit

import dxf
import dxf.exceptions
import requests
import www_authenticate  # type: ignore[import-untyped]  # dxf's own challenge parser

from ..redaction import register_secret
from .answers import Malformed, Refused
from .keychain import Credentials
from .transport import MAX_TOKEN_BYTES, Origin, ScopedSession, hostport, netloc, origin

Realm = tuple[Origin, str]  # a token service: origin and path


def registry_challenge(header: str | None) -> tuple[str, Realm | None]:
    """``("basic", None)`` or ``("bearer", (realm origin, realm path))`` from a ``WWW-Authenticate``.

    :class:`Malformed` when it is missing, unparsable, names neither scheme, or a bearer challenge has
    no absolute realm URL. The realm is taken as dxf uses it: over https.
    """
    if not header or not header.strip():
        raise Malformed("it answered 401 without a WWW-Authenticate challenge")
    try:
        parsed = www_authenticate.parse(header[:4096])
    except (ValueError, TypeError, KeyError, IndexError):
        raise Malformed("it answered 401 with a WWW-Authenticate header that cannot be parsed") from None
    if "bearer" in parsed:
        info = parsed["bearer"]
        realm = info.get("realm") if isinstance(info, dict) else None
        parts = urlsplit(realm) if isinstance(realm, str) else None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise Malformed("it answered 401 with a Bearer challenge without an absolute realm URL")
        try:
            forced = urlsplit(urlunsplit(("https",) + tuple(parts)[1:]))  # type: ignore[arg-type]
            return "bearer", (origin(forced), forced.path or "/")
        except ValueError:
            raise Malformed("it answered 401 with a Bearer realm that is not a valid URL") from None
    if "basic" in parsed:
        return "basic", None
    raise Malformed("it answered 401 with a WWW-Authenticate challenge that is neither Basic nor Bearer")


class Authenticator:
    """Answers a registry's ``401`` challenges for one client: see the module docstring."""

    def __init__(self, registry: str, session: ScopedSession, base_url: str, credentials: Credentials | None, *,
                 plain_http: bool, request_timeout: float) -> None:
        self.registry = registry
        self._session = session
        self._base_url = base_url
        self._credentials = credentials
        self._plain_http = plain_http
        self._request_timeout = request_timeout
        self._v2_realm: Realm | None | bool = False  # False: /v2/ not asked yet

    def answer(self, client: dxf.DXFBase, response: requests.Response) -> None:
        """Answer a ``401`` (dxf's auth hook): only the registry's own, only with its own token realm."""
        if origin(response.url) != self._session.registry_origin:
            raise Refused(f"{hostport(response.url)} (reached through a redirect) answered 401 with its own "
                          f"challenge; it is not {self.registry}, so it gets no credentials and no answer")
        if self._plain_http:
            raise dxf.exceptions.DXFAuthInsecureError()
        scheme, realm = registry_challenge(response.headers.get("WWW-Authenticate"))
        if scheme == "bearer":
            assert realm is not None
            named = self._registry_realm()
            if realm != named and realm[0] != self._session.registry_origin:
                where = netloc(named[0]) + named[1] if named else "no token service"
                raise Refused(f"its challenge names the token service {netloc(realm[0])}{realm[1]}, but its /v2/ "
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
            host = netloc(realm[0]) if realm else self.registry
            raise Malformed(f"the token service {host} answered without a usable token "
                            f"({type(exc).__name__})") from None
        token = client.token
        if token is not None:
            if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES or \
                    not token.isascii() or not token.isprintable() or " " in token:
                client._token, client._headers = None, {}
                raise Malformed("the token service answered a token that is not a printable string")
            register_secret(token)

    def _registry_realm(self) -> Realm | None:
        """The token realm the registry's own ``GET /v2/`` challenge names (asked once, no credentials)."""
        if self._v2_realm is False:
            named: Realm | None = None
            r = self._session.get(self._base_url, allow_redirects=False, timeout=self._request_timeout, verify=True)
            if r.status_code == 401:
                with contextlib.suppress(Malformed):
                    scheme, realm = registry_challenge(r.headers.get("WWW-Authenticate"))
                    named = realm if scheme == "bearer" else None
            self._v2_realm = named
        return self._v2_realm if isinstance(self._v2_realm, tuple) else None
