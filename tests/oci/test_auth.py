"""localai_ci.oci.auth: the WWW-Authenticate parser (pure, hostile inputs) and the bearer token
handshake against a real ``docker-registry`` with token auth, behind a TLS front, with a small
real token service (:mod:`tests.support.tokenservice`) issuing the JWTs the registry verifies."""
from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from localai_ci.errors import RegistryError
from localai_ci.oci.answers import Malformed
from localai_ci.oci.auth import (MAX_CHALLENGE_CHARS, Challenge, ChallengeError, parse_challenges, parse_token_answer,
                                 registry_challenge)
from localai_ci.oci.client import RegistryClient
from localai_ci.oci.keychain import Credentials
from localai_ci.oci.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, Composed, Descriptor, compose_image_manifest
from localai_ci.oci.reference import ImageName, sha256_digest
from localai_ci.oci.retry import RetryPolicy
from localai_ci.redaction import redact
from tests.support.authregistry import KNOWN_PASSWORD, start_token_registry, stop
from tests.support.hostile import HostileServer, Reply, Request, TlsFiles, make_tls
from tests.support.tokenservice import GOOD, ISSUER, SERVICE, Asked, Signer, TokenService

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=20.0, request_timeout=5.0)
CREDS = Credentials("tester", KNOWN_PASSWORD)
SECRETS = (KNOWN_PASSWORD, base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode())


# ---- the parser (pure) ------------------------------------------------------------------------------
def test_challenges_as_registries_send_them() -> None:
    assert parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                            'scope="repository:library/ubuntu:pull"') == [
        Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/ubuntu:pull"})]
    assert parse_challenges('Basic realm="Registry Realm"') == [Challenge("basic", {"realm": "Registry Realm"})]
    # distribution's insufficient-scope answer: two scopes in one parameter, an error parameter
    got = parse_challenges('Bearer realm="https://t/token",service="s",scope="repository:a:pull,push '
                           'repository:b:pull",error="insufficient_scope"')
    assert got[0].params["scope"] == "repository:a:pull,push repository:b:pull"
    assert got[0].params["error"] == "insufficient_scope"
    assert parse_challenges("Negotiate") == [Challenge("negotiate", {})]
    assert parse_challenges("Negotiate YWJj==") == [Challenge("negotiate", {}, "YWJj==")]
    assert parse_challenges("Basic realm=") == [Challenge("basic", {}, "realm=")]  # a token68, as RFC 7235 reads it


def test_several_challenges_in_one_header_and_odd_case() -> None:
    header = ('Negotiate, BASIC REALM="quay", bearer Realm="https://quay.io/v2/auth" ,  Service=quay.io, '
              'ScOpE="repository:org/x:pull"')
    assert parse_challenges(header) == [
        Challenge("negotiate", {}),
        Challenge("basic", {"realm": "quay"}),
        Challenge("bearer", {"realm": "https://quay.io/v2/auth", "service": "quay.io",
                             "scope": "repository:org/x:pull"})]
    # several WWW-Authenticate headers arrive joined with ", "; empty list elements are allowed
    assert [c.scheme for c in parse_challenges(', Basic realm="a",, Bearer realm="https://b/t", ')] == ["basic", "bearer"]
    # spaces around "=" (RFC 7235's BWS) and tabs
    assert parse_challenges('Bearer realm =\t"https://b/t" ,\tservice= s') == [
        Challenge("bearer", {"realm": "https://b/t", "service": "s"})]


def test_quoted_strings_keep_commas_escapes_and_case() -> None:
    [c] = parse_challenges(r'Bearer realm="https://t/token?a=1,b=2",service="My \"Service\", Inc.",scope="x\\y"')
    assert c.params == {"realm": "https://t/token?a=1,b=2", "service": 'My "Service", Inc.', "scope": "x\\y"}
    [c] = parse_challenges('Basic realm="caf\xe9 ,Bearer realm=x"')  # obs-text and a challenge-looking value
    assert c == Challenge("basic", {"realm": "caf\xe9 ,Bearer realm=x"})


@pytest.mark.parametrize(("header", "why"), [
    ('Bearer realm="https://t/token', "a quoted string is not terminated"),
    ('Bearer realm="https://t/token\\', "a quoted string is not terminated"),
    ('Bearer realm="a\\"', "a quoted string is not terminated"),
    ('Bearer realm="a\x00b"', "a control character in a quoted string"),
    ("Bearer realm=", None),  # a token68 "realm=" (valid), checked below: no realm for a Bearer challenge
    ("Bearer service=s, realm=, x=y", "the parameter 'realm' has no value"),
    ('Bearer realm="a",realm="b"', "the parameter 'realm' is given twice in one challenge"),
    ('realm="a", Bearer', "the parameter 'realm' at character 1 belongs to no challenge"),
    ('Bearer realm="a" service="b"', "unexpected 's' after the parameter 'realm'"),
    ('Bearer"x"', "unexpected '\"' after the auth-scheme"),
    ('"""', "expected an auth-scheme or auth-param at character 1"),
    ("Bearer realm=https://t/token", "unexpected ':' after the parameter 'realm'"),
    ("Negotiate abc def", "unexpected 'd' in the 'negotiate' challenge"),
    ("Negotiate abc=, x=y", "the parameter 'x' at character 17 belongs to no challenge"),
    ("Bearer " + "a=b, " * (MAX_CHALLENGE_CHARS // 5) + "c=d", f"longer than {MAX_CHALLENGE_CHARS} characters"),
], ids=["unterminated", "backslash-at-end", "escaped-closing-quote", "control-char", "token68-realm=",
        "empty-value", "twice", "param-before-scheme", "no-comma", "no-space-after-scheme", "quotes-only",
        "unquoted-url", "token68-then-junk", "param-after-token68", "huge"])
def test_malformed_challenges_are_refused_with_the_reason(header: str, why: str | None) -> None:
    if why is None:
        with pytest.raises(Malformed, match="Bearer challenge without an absolute realm URL"):
            registry_challenge(header)
        return
    with pytest.raises(ChallengeError) as err:
        parse_challenges(header)
    assert why in str(err.value)
    with pytest.raises(Malformed, match=r"it answered 401 with a WWW-Authenticate header that cannot be parsed \(") as m:
        registry_challenge(header)
    assert why in str(m.value)


def test_hostile_headers_are_parsed_in_linear_time() -> None:
    """Headers up to the cap built to make a backtracking parser crawl: each takes milliseconds."""
    n = MAX_CHALLENGE_CHARS
    headers = ['Bearer realm="' + "\\a" * (n // 2 - 10),  # escapes, never terminated
               "Bearer " + ",".join(f"p{i}=v" for i in range(n // 8)),  # a thousand parameters
               "Basic a" + "=" * (n - 8),  # a token68 of padding
               "Basic " + "=" * (n - 7),  # padding only: no token68
               " ," * (n // 2 - 1),  # nothing but empty elements
               "B" * n,  # one long scheme
               'Bearer realm="' + "," * (n - 20) + '"']
    for header in headers:
        assert len(header) <= n
        start = time.perf_counter()
        try:
            parse_challenges(header)
        except ChallengeError:
            pass
        assert time.perf_counter() - start < 0.25, header[:40]
    with pytest.raises(ChallengeError, match="longer than"):
        parse_challenges("B" * (n + 1))
    with pytest.raises(ChallengeError, match="longer than"):  # 1 MiB is refused before it is read
        parse_challenges('Bearer realm="' + "x" * (1 << 20))


def test_registry_challenge_prefers_bearer_takes_the_realm_over_https_and_splits_scopes() -> None:
    got = registry_challenge('Basic realm="r", Bearer realm="http://127.0.0.4:5001/token?account=x",service="svc",'
                             'scope="repository:a:pull repository:b:pull,push"')
    assert got.scheme == "bearer" and got.service == "svc"
    assert got.realm == (("https", "127.0.0.4", 5001), "/token")
    assert got.realm_url == "https://127.0.0.4:5001/token?account=x"  # never asked over plain HTTP
    assert got.scopes == ("repository:a:pull", "repository:b:pull,push")
    assert registry_challenge('Negotiate, Basic realm="r"').scheme == "basic"
    first = registry_challenge('Bearer realm="https://one/t", Bearer realm="https://two/t"')
    assert first.realm == (("https", "one", 443), "/t")
    for header, why in [("", "without a WWW-Authenticate challenge"), ("Negotiate abc", "neither Basic nor Bearer"),
                        ('Bearer realm="/token"', "without an absolute realm URL"),
                        ('Bearer realm="ftp://x/token"', "without an absolute realm URL"),
                        ('Bearer realm="https://[::1/token"', "realm that is not a valid URL"),
                        ('Bearer realm="https://x:99999/token"', "realm that is not a valid URL")]:
        with pytest.raises(Malformed, match=why):
            registry_challenge(header)


def test_token_answers() -> None:
    assert parse_token_answer(b'{"token": "abc"}') == ("abc", None)
    assert parse_token_answer(b'{"access_token": "oauth", "token": "abc", "expires_in": 300}') == ("oauth", 300.0)
    assert parse_token_answer(b'{"access_token": "", "token": "abc", "expires_in": "soon"}') == ("abc", None)
    assert parse_token_answer(b'{"token": "abc", "expires_in": true}') == ("abc", None)
    for body, why in [(b"<html>", "not JSON"), (b"[]", "not a JSON object"), (b"{}", "no token or access_token"),
                      (b'{"token": ""}', "no token or access_token"), (b'{"token": 5}', "its token is not a string"),
                      (b"[" * 100_000, "not JSON")]:
        with pytest.raises(ValueError, match=why):
            parse_token_answer(body)


# ---- the handshake against a real token-auth registry ------------------------------------------------
@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer.make(tmp_path_factory.mktemp("jwt"))


@pytest.fixture
def trust(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> TlsFiles:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))
    return tls


@dataclass(frozen=True)
class Setup:
    front: HostileServer  # TLS, records and forwards every request to the registry
    tokens: HostileServer  # TLS, the token service the registry's challenges name
    service: TokenService


Rule = Callable[[Request], "Reply | None"]
Make = Callable[..., AbstractContextManager[Setup]]


@pytest.fixture
def token_registry(trust: TlsFiles, signer: Signer, tmp_path: Path) -> Make:
    """``with token_registry(service, front_rule) as s``: the token service on 127.0.0.3, a real
    docker-registry taking only its tokens (plain HTTP on 127.0.0.1), and a front on 127.0.0.2 that
    records every request and forwards it (``front_rule(request, s)`` may answer some itself)."""
    made: list[int] = []

    @contextmanager
    def make(service: TokenService, front_rule: Callable[[Request, Setup], Reply | None] | None = None
             ) -> Iterator[Setup]:
        made.append(1)
        holder: list[Setup] = []
        rule = None if front_rule is None else (lambda req: front_rule(req, holder[0]))
        with HostileServer("127.0.0.3", service, tls=trust) as tokens:
            proc, host = start_token_registry(tmp_path / f"registry-{len(made)}", realm=f"{tokens.url}/token",
                                              service=SERVICE, issuer=ISSUER, rootcertbundle=signer.cert)
            try:
                with HostileServer("127.0.0.2", rule, upstream=host, tls=trust) as front:
                    holder.append(Setup(front, tokens, service))
                    yield holder[0]
            finally:
                stop(proc)
    return make


def push_image(c: RegistryClient, tag: str) -> Composed:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(4096)
    for blob in (config, layer):
        c.push_blob(sha256_digest(blob), len(blob), lambda b=blob: io.BytesIO(b))
    m = compose_image_manifest(Descriptor(DOCKER_CONFIG, sha256_digest(config), len(config)),
                               [Descriptor(DOCKER_LAYER_GZIP, sha256_digest(layer), len(layer))])
    assert c.put_manifest(tag, m.body, m.media_type) == m.digest
    return m


def client(s: Setup, repo: str, credentials: Credentials | None = CREDS, **kw: object) -> RegistryClient:
    return RegistryClient(ImageName(s.front.host, repo), plain_http=False, credentials=credentials,
                          retry=FAST, **kw)  # type: ignore[arg-type]


def scopes(asked: Asked) -> tuple[str, ...]:
    """The scopes of a token request, each one's actions sorted (the registry names them in any order)."""
    return tuple(f"{s.rpartition(':')[0]}:{','.join(sorted(s.rpartition(':')[2].split(',')))}" for s in asked.scopes)


def assert_no_secret(*texts: str) -> None:
    blob = "\n".join(texts)
    for secret in SECRETS:
        assert secret not in blob, blob[-2000:]


@pytest.mark.registry
def test_push_pull_and_mount_through_a_real_token_registry(token_registry: Make, signer: Signer, unique: str) -> None:
    """The registry's challenge -> the token service (credentials as Basic, to the realm only) -> a
    JWT the registry verifies; scopes accumulate so that one token serves pulls and pushes, and a
    mount's challenge (two repositories in one scope parameter) is answered with both."""
    texts: list[str] = []
    with token_registry(TokenService(signer)) as s:
        with client(s, f"{unique}/app", on_retry=texts.append) as c:
            m = push_image(c, "v1")
            assert c.get_manifest("v1") == (m.body, m.media_type, m.digest)
            assert c.head_manifest(m.digest) == (m.digest, m.media_type, len(m.body))
            assert c.list_tags() == ["v1"]
            token = c._auth.token
            assert token and redact(f"token {token}") == "token ***"  # registered as a secret
            texts.append(repr(c))
        asked_by_app = list(s.service.asked)
        layer = json.loads(m.body)["layers"][0]["digest"]
        with client(s, f"{unique}/other") as other:
            assert other.mount_blob(layer, f"{unique}/app") is True
            assert other.blob_exists(layer)
        seen = s.front.authorizations()
    # the first request asked for pull (a HEAD), the push added pull,push in front; the reads after it
    # needed nothing more: two tokens for the whole push and pull
    assert [scopes(a) for a in asked_by_app] == [
        (f"repository:{unique}/app:pull",),
        (f"repository:{unique}/app:pull,push", f"repository:{unique}/app:pull")]
    assert {a.service for a in s.service.asked} == {SERVICE} and {a.authorization for a in s.service.asked} == {GOOD}
    mount = s.service.asked[len(asked_by_app)]
    assert set(scopes(mount)) >= {f"repository:{unique}/other:pull,push", f"repository:{unique}/app:pull"}, mount
    # the registry (its front) never saw the password: each first request carried nothing, every other
    # a bearer token
    assert seen and all(a.startswith("Bearer ") for a in seen)
    assert_no_secret(*texts, *seen)


@pytest.mark.registry
def test_anonymous_tokens_pull_a_public_repository_and_cannot_push(token_registry: Make, signer: Signer,
                                                                  unique: str) -> None:
    repo = f"{unique}/public"
    with token_registry(TokenService(signer, public=frozenset({repo}))) as s:
        with client(s, repo) as c:
            m = push_image(c, "v1")
        before = len(s.service.asked)
        with client(s, repo, credentials=None) as anon:
            assert anon.get_manifest("v1") == (m.body, m.media_type, m.digest)
            assert anon.list_tags() == ["v1"]
            data = os.urandom(100)
            with pytest.raises(RegistryError) as err:
                anon.push_blob(sha256_digest(data), len(data), lambda: io.BytesIO(data))
    anonymous = s.service.asked[before:]
    assert anonymous and all(a.authorization is None for a in anonymous)
    assert err.value.status == 401 and not err.value.transient and err.value.registry == s.front.host
    assert "HTTP 401 Unauthorized after authenticating" in str(err.value)
    assert f"docker login {s.front.host}" in str(err.value)


@pytest.mark.registry
def test_access_token_is_preferred_to_token(token_registry: Make, signer: Signer, unique: str) -> None:
    """OAuth-style answers carry ``access_token``; the ``token`` beside it (here bogus) is not used."""
    with token_registry(TokenService(signer, access_token=True, expires_in=None)) as s:
        with client(s, f"{unique}/app") as c:
            m = push_image(c, "v1")
            assert c.get_manifest(m.digest) is not None
    assert "Bearer bogus" not in s.front.authorizations() and len(s.service.asked) == 2


@pytest.mark.registry
def test_a_wrong_password_fails_at_the_token_service_and_reaches_no_registry(token_registry: Make, signer: Signer,
                                                                              unique: str) -> None:
    wrong = Credentials("tester", KNOWN_PASSWORD + "-wrong")
    with token_registry(TokenService(signer)) as s:
        with client(s, f"{unique}/app", credentials=wrong) as c:
            with pytest.raises(RegistryError) as err:
                c.get_manifest("v1")
    msg = str(err.value)
    assert err.value.status == 401 and err.value.registry == s.front.host and not err.value.transient
    assert "HTTP 401 Unauthorized after authenticating" in msg and f"docker login {s.front.host}" in msg
    assert s.front.authorizations() == [] and len(s.service.asked) == 1  # the password went to the token service only
    assert KNOWN_PASSWORD not in msg and base64.b64encode(f"tester:{KNOWN_PASSWORD}-wrong".encode()).decode() not in msg


@pytest.mark.registry
def test_a_token_is_renewed_before_it_expires(token_registry: Make, signer: Signer, unique: str) -> None:
    """``expires_in: 2``: a second and a half later the next request goes out with a new token, asked
    for first, instead of a stale one and a 401 round trip."""
    with token_registry(TokenService(signer, expires_in=2)) as s:
        with client(s, f"{unique}/app") as c:
            assert c.get_manifest("absent") is None
            first, asked = c._auth.token, len(s.service.asked)
            assert c.get_manifest("absent") is None
            assert c._auth.token == first and len(s.service.asked) == asked  # still fresh: no token request
            time.sleep(1.5)
            seen = len(s.front.seen)
            assert c.get_manifest("absent") is None
            assert c._auth.token != first and len(s.service.asked) == asked + 1
            after = s.front.seen[seen:]
            renewed = c._auth.token
    assert [(x.method, x.authorization) for x in after] == [("GET", f"Bearer {renewed}")], after


@pytest.mark.registry
def test_a_401_after_the_body_was_sent_renews_the_token_and_a_streamed_upload_starts_again(
        token_registry: Make, signer: Signer, unique: str) -> None:
    """A registry that rejects a token mid-operation (revoked, expired early): its 401 is answered with a
    new token. A manifest PUT (bytes) is sent again at once; a blob upload, whose stream was consumed,
    is a transient failure: the operation starts again from a fresh stream (one retry)."""
    rejected: list[str] = []

    def once(req: Request, s: Setup) -> Reply | None:
        kind = "upload" if req.method == "PUT" and "/blobs/uploads/" in req.path else \
            "manifest" if req.method == "PUT" and "/manifests/" in req.path else None
        if kind is None or kind in rejected:
            return None
        rejected.append(kind)
        challenge = (f'Bearer realm="{s.tokens.url}/token",service="{SERVICE}",'
                     f'scope="repository:{unique}/app:pull,push",error="invalid_token"')
        return Reply(401, [("WWW-Authenticate", challenge), ("Content-Type", "application/json")],
                     b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}')

    notes: list[str] = []
    opened: list[int] = []
    data = os.urandom(300_000)

    def stream() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    with token_registry(TokenService(signer), once) as s:
        with client(s, f"{unique}/app", on_retry=notes.append) as c:
            assert c.push_blob(sha256_digest(data), len(data), stream) is True
            assert c.retries == 1 and len(opened) == 2 and c.blob_exists(sha256_digest(data))
            m = push_image(c, "v1")  # its manifest PUT is answered 401 once: sent again in the same attempt
            assert c.retries == 1 and c.get_manifest("v1") == (m.body, m.media_type, m.digest)
    assert rejected == ["upload", "manifest"]
    assert len(notes) == 1 and "asked for new credentials after the body was sent" in notes[0], notes
