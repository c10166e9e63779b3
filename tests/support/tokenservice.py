"""A small real token service for the bearer tests (distribution's "Token Authentication
Specification"): a :class:`tests.support.hostile.HostileServer` rule that answers ``GET /token?service=&scope=...``
with a JWT the real ``docker-registry`` (token auth, :func:`tests.support.authregistry.start_token_registry`)
verifies: RS256, signed with ``openssl dgst`` by a key whose self-signed certificate is the
registry's ``rootcertbundle`` (sent as ``x5c``).

Grants: ``tester`` / :data:`tests.support.authregistry.KNOWN_PASSWORD` (HTTP Basic) gets every action it asks
for; anonymous callers get ``pull`` on :attr:`TokenService.public` repositories only; a wrong
password gets ``401``. Every request is recorded (:attr:`TokenService.asked`: the Authorization
header, the service and the scopes). The answer's shape is configurable: ``token`` or
``access_token`` (with a bogus ``token`` beside it), ``expires_in``, and the JWT's own lifetime.
"""
from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tests.support.authregistry import KNOWN_PASSWORD
from tests.support.hostile import Reply, Request

ISSUER = "localai-ci-tests"
SERVICE = "token-registry"
GOOD = "Basic " + base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode()


@dataclass(frozen=True)
class Signer:
    key: Path
    cert: Path  # the registry's rootcertbundle

    @classmethod
    def make(cls, root: Path) -> Signer:
        root.mkdir(parents=True, exist_ok=True)
        signer = cls(root / "jwt-key.pem", root / "jwt-cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(signer.key),
                        "-out", str(signer.cert), "-days", "1", "-subj", "/CN=localai-ci-token-issuer"],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        return signer

    def jwt(self, subject: str, access: list[dict[str, object]], lifetime: float) -> str:
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True, stdin=subprocess.DEVNULL, timeout=30).stdout
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "iat": now, "nbf": now - 5,
                  "exp": now + int(lifetime), "jti": uuid.uuid4().hex, "access": access}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing, check=True,
                             capture_output=True, timeout=30).stdout
        return f"{signing.decode()}.{_b64(sig)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Asked:
    authorization: str | None
    service: str | None
    scopes: tuple[str, ...]


@dataclass
class TokenService:
    """The rule of a TLS :class:`tests.support.hostile.HostileServer` (see the module docstring)."""

    signer: Signer
    public: frozenset[str] = frozenset()
    access_token: bool = False  # answer {"access_token": JWT, "token": "bogus"} instead of {"token": JWT}
    expires_in: int | None = 300  # None: no expires_in in the answer
    lifetime: float = 300.0  # the JWT's own exp (the registry allows 60 s of leeway past it)
    asked: list[Asked] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, req: Request) -> Reply:
        url = urlsplit(req.path)
        query = parse_qsl(url.query)
        scopes = tuple(v for k, v in query if k == "scope")
        service = next((v for k, v in query if k == "service"), None)
        with self._lock:
            self.asked.append(Asked(req.authorization, service, scopes))
        if url.path != "/token":
            return Reply(404, [("Content-Type", "application/json")], b"{}")
        user = "tester" if req.authorization == GOOD else None
        if req.authorization is not None and user is None:
            return Reply(401, [("WWW-Authenticate", 'Basic realm="tokens"'), ("Content-Type", "application/json")],
                         b'{"details": "wrong password"}')
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = actions.split(",") if user else (["pull"] if name in self.public and "pull" in actions else [])
            if kind == "repository" and name and granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        token = self.signer.jwt(user or "", access, self.lifetime)
        answer: dict[str, object] = {"access_token": token, "token": "bogus"} if self.access_token else {"token": token}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return Reply(200, [("Content-Type", "application/json")], json.dumps(answer).encode())

    def tokens_issued(self) -> int:
        with self._lock:
            return len(self.asked)
