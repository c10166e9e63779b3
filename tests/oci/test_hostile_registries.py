"""Registries that misbehave the way real ones and attackers do: small hostile servers on other
loopback addresses (127.0.0.2, 127.0.0.3, ...; :mod:`tests.support.hostile`) in front of a real ``docker-registry``.

Each class of issue 12 has its tests here: credentials scoped to their registry, redirects,
bounds and deadlines (peak RSS measured in a subprocess, :mod:`tests.support.rss_probe`), read-back
verification of every write, redaction of every string a registry sent, malformed answers.
The commands run as users run them (``localai_ci.cli.main``) wherever no retry policy needs to be made
fast; the deadline test drives the verbs with a fast policy, as the fault tests do.
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from localai_ci.github.artifacts import write_digest_file
from localai_ci.cli import main
from localai_ci.errors import OperationError, RegistryError
from localai_ci.settings import family_config
from localai_ci.verify.inspect import expand_targets, inspect_refs
from localai_ci.oci.manifest import Composed, Descriptor, compose_index
from localai_ci.matrix.model import load_matrix
from localai_ci.merge.model import MergeOptions
from localai_ci.merge.run import FamilySetup, merge_suffix
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.oci.platforms import parse_platform
from localai_ci.oci.reference import ImageName, sha256_digest
from localai_ci.oci.client import RegistryClient
from localai_ci.oci.keychain import Credentials
from localai_ci.oci.retry import RetryPolicy
from localai_ci.matrix.tags import TagSource
from tests.support.authregistry import KNOWN_PASSWORD, start_auth_registry, stop
from tests.support.hostile import Forward, HostileServer, Reply, Request, TlsFiles, make_tls, pieces
from tests.support.oci_images import tiny_image, write_matrix
from tests.support.paths import SUPPORT

pytestmark = pytest.mark.registry

SHA = "89abcdef0123456789abcdef0123456789abcdef"
TAG = "master-cpu-h"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10.0, request_timeout=5.0)
CREDS = Credentials("tester", KNOWN_PASSWORD)
SECRETS = (KNOWN_PASSWORD, base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode(),
           base64.b64encode(KNOWN_PASSWORD.encode()).decode())
MiB = 1024 * 1024
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """One self-signed certificate for 127.0.0.1-127.0.0.9 (trusted through REQUESTS_CA_BUNDLE)."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def auth_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry demanding htpasswd auth (tester / KNOWN_PASSWORD), plain HTTP on 127.0.0.1:
    the hostile TLS fronts forward to it. Stopped at teardown."""
    proc, host = start_auth_registry(tmp_path_factory.mktemp("auth-upstream"), tls=False)
    try:
        yield host
    finally:
        stop(proc)


@pytest.fixture
def trust(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> TlsFiles:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))
    return tls


@pytest.fixture
def upstream(registries: Any) -> str:
    return registries[0].host  # type: ignore[no-any-return]


def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *hosts: str) -> None:
    """A Docker config.json holding tester / KNOWN_PASSWORD for ``hosts`` (what `docker login` writes)."""
    d = tmp_path / "docker-config"
    d.mkdir(exist_ok=True)
    auth = base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {h: {"auth": auth} for h in hosts}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(d))


def cli(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv, env=env)
    out, err = capsys.readouterr()
    return code, out, err


def push_child(c: RegistryClient, platform: str, seed: str) -> Descriptor:
    config, layer, manifest = tiny_image(platform, seed)
    for blob in (config, layer):
        c.push_blob(sha256_digest(blob), len(blob), lambda b=blob: io.BytesIO(b))
    c.put_manifest(manifest.digest, manifest.body, manifest.media_type)
    return Descriptor(manifest.media_type, manifest.digest, manifest.size, parse_platform(platform))


def push_list(c: RegistryClient, seed: str, tag: str | None = None) -> Composed:
    kids = [push_child(c, p, seed) for p in ("linux/amd64", "linux/arm64")]
    idx = compose_index(kids)
    c.put_manifest(tag or idx.digest, idx.body, idx.media_type)
    return idx


def merge_argv(tmp: Path, images: list[str], suffix: str = "-cpu-h") -> list[str]:
    return ["merge", f"--tag-suffix={suffix}", "--digests-dir", str(tmp / "digests"), "--matrix",
            str(tmp / "matrix.yml"), "--images", ",".join(images), "--ref", "refs/heads/master", "--sha", SHA,
            "--event", "push"]


def one_leg(tmp: Path, clients: list[RegistryClient], seed: str, suffix: str = "-cpu-h") -> Descriptor:
    """One amd64 leg pushed by digest with every client, its digest file and a one-leg matrix."""
    d = None
    for c in clients:
        d = push_child(c, "linux/amd64", seed)
    assert d is not None
    write_digest_file(tmp / "digests", LegKey(Family.BACKENDS, suffix, "amd64"), d.digest)
    write_matrix(tmp / "matrix.yml", [(suffix, "amd64")])
    return d


def assert_no_secret(*texts: str) -> None:
    blob = "\n".join(texts)
    for s in SECRETS:
        assert s not in blob, f"secret leaked:\n{blob[-3000:]}"


def secured(*servers: HostileServer) -> dict[str, str]:
    return {"CI_TLS_REGISTRIES": ",".join(s.host for s in servers)}


# ---- credentials stay with their registry -----------------------------------------------------
def test_redirect_target_challenge_is_not_answered_and_gets_no_credentials(
        trust: TlsFiles, auth_upstream: str, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A blob GET redirected to a "CDN" whose 401 names a third host's token service: no credential
    reaches either host, and the merge fails naming the registry and the foreign challenge."""
    with HostileServer("127.0.0.4", lambda r: Reply(200, [("Content-Type", "application/json")],
                                                    b'{"token": "stolen"}'), tls=trust) as thief, \
            HostileServer("127.0.0.3", lambda r: Reply(401, [("WWW-Authenticate", f'Bearer realm="{thief.url}/token",'
                                                              'service="cdn"')], b"{}"), tls=trust) as cdn:
        def to_cdn(req: Request) -> Reply | None:
            if req.method == "GET" and "/blobs/sha256:" in req.path:
                return Reply(307, [("Location", f"{cdn.url}/cdn{req.path}?sig=x")])
            return None

        with HostileServer("127.0.0.2", to_cdn, upstream=auth_upstream, tls=trust) as front:
            with RegistryClient(ImageName(front.host, f"{unique}/backends"), plain_http=False, credentials=CREDS,
                                retry=FAST) as c:
                one_leg(tmp_path, [c], unique)
            docker_config(tmp_path, monkeypatch, front.host)
            code, out, err = cli(merge_argv(tmp_path, [f"{front.host}/{unique}/backends"]),
                                 secured(front, cdn, thief), capsys)
    assert code == 1, out + err
    assert front.host in err and f"{cdn.host} (reached through a redirect) answered 401" in err, err
    assert cdn.requests("GET"), "the redirect was not followed at all"
    assert cdn.authorizations() == [] and thief.seen == [], (cdn.authorizations(), thief.seen)
    assert "Traceback" not in err
    assert_no_secret(out, err)


def test_upload_and_mount_cancel_locations_on_another_host_get_no_credentials(
        trust: TlsFiles, auth_upstream: str, unique: str) -> None:
    """Upload Locations pointing at another host: it receives the upload attempt without any
    Authorization, its 401 is not answered, and the upload fails naming the registry."""
    with HostileServer("127.0.0.3", upstream=auth_upstream, tls=trust) as foreign:
        def elsewhere(req: Request, status: int, headers: list[tuple[str, str]], body: bytes
                      ) -> tuple[int, list[tuple[str, str]], bytes]:
            moved = [(n, v.replace(f"https://{req.headers['Host']}", foreign.url) if n.lower() == "location" else v)
                     for n, v in headers]
            return status, moved, body

        def rule(req: Request) -> Forward | None:
            return Forward(elsewhere) if req.method == "POST" and "/blobs/uploads/" in req.path else None

        with HostileServer("127.0.0.2", rule, upstream=auth_upstream, tls=trust) as front, \
                RegistryClient(ImageName(front.host, f"{unique}/app"), plain_http=False, credentials=CREDS,
                               retry=FAST) as c:
            data = os.urandom(4096)
            with pytest.raises(RegistryError) as err:
                c.push_blob(sha256_digest(data), len(data), lambda: io.BytesIO(data))
            # a cross-repository mount the registry answers with an upload (202): its cancel goes
            # to the foreign Location, without credentials
            assert c.mount_blob(sha256_digest(b"absent" + unique.encode()), f"{unique}/other") is False
    msg = str(err.value)
    assert err.value.registry == front.host and f"{foreign.host} (reached through a redirect) answered 401" in msg
    assert foreign.requests("PUT", "/blobs/uploads/") and foreign.requests("DELETE", "/blobs/uploads/")
    assert foreign.authorizations() == [], foreign.authorizations()
    assert front.authorizations(), "the registry itself got the credentials"
    assert_no_secret(msg)


def _bearer_front(tokens: HostileServer, repo_realm: str | None = None) -> Callable[[Request], Reply | None]:
    """A front that wants ``Bearer good-token``; /v2/ names ``tokens``, repository paths ``repo_realm``."""
    def rule(req: Request) -> Reply | None:
        if req.authorization == "Bearer good-token":
            return None  # forwarded to the (anonymous) upstream
        realm = f"{tokens.url}/token" if req.path == "/v2/" or repo_realm is None else repo_realm
        return Reply(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="front"'),
                           ("Content-Type", "application/json")], b'{"errors":[{"code":"UNAUTHORIZED"}]}')
    return rule


def _token_service(answer: bytes = b'{"token": "good-token"}', anyone: bool = False) -> Callable[[Request], Reply]:
    """A token service answering ``answer`` to tester / KNOWN_PASSWORD (to anyone with ``anyone``)."""
    good = "Basic " + base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode()

    def rule(req: Request) -> Reply:
        if req.authorization != good and not anyone:
            return Reply(401, [("WWW-Authenticate", 'Basic realm="tokens"')], b"{}")
        return Reply(200, [("Content-Type", "application/json")], answer)
    return rule


def test_credentials_go_only_to_the_token_realm_the_v2_challenge_named(trust: TlsFiles, upstream: str,
                                                                      unique: str) -> None:
    with HostileServer("127.0.0.4", _token_service(), tls=trust) as tokens, \
            HostileServer("127.0.0.5", _token_service(), tls=trust) as other:
        # the registry's own token service (named by /v2/ and by the repository's challenge): works
        with HostileServer("127.0.0.2", _bearer_front(tokens), upstream=upstream, tls=trust) as front, \
                RegistryClient(ImageName(front.host, f"{unique}/app"), plain_http=False, credentials=CREDS,
                               retry=FAST) as c:
            assert c.get_manifest("v1") is None
        assert len(tokens.authorizations()) == 1
        # a repository challenge naming another token service than /v2/ did: not answered
        with HostileServer("127.0.0.2", _bearer_front(tokens, f"{other.url}/token"), upstream=upstream,
                           tls=trust) as front, \
                RegistryClient(ImageName(front.host, f"{unique}/app"), plain_http=False, credentials=CREDS,
                               retry=FAST) as c:
            with pytest.raises(RegistryError, match=f"names the token service {other.host}/token, but its /v2/ "
                                                    f"challenge named {tokens.host}/token") as err:
                c.get_manifest("v1")
    assert other.seen == [] and len(tokens.authorizations()) == 1
    assert err.value.registry == front.host and not err.value.transient
    assert_no_secret(str(err.value))


# ---- redirects --------------------------------------------------------------------------------
def test_redirect_to_plain_http_only_where_the_plain_http_policy_allows(
        trust: TlsFiles, upstream: str, unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    with RegistryClient(ImageName(upstream, f"{unique}/app"), plain_http=True, retry=FAST) as c:
        push_list(c, unique, "v1")
    with HostileServer("127.0.0.3", upstream=upstream) as plain:  # plain HTTP, serving the real content
        def downgrade(req: Request) -> Reply | None:
            if req.method == "GET" and "/manifests/" in req.path:
                return Reply(302, [("Location", f"{plain.url}{req.path}")])
            return None

        with HostileServer("127.0.0.2", downgrade, upstream=upstream, tls=trust) as front:
            ref = f"{front.host}/{unique}/app:v1"
            # 127.0.0.3 is TLS-only by policy: the redirect is refused, nothing is asked from it
            code, out, err = cli(["inspect", ref], secured(front, plain), capsys)
            assert code == 1 and plain.seen == [], out + err
            assert f"plain-HTTP URL {plain.url}/v2/{unique}/app/manifests/v1 is refused: {plain.host} is " \
                   "reached over TLS only" in out, out
            # a loopback host the policy allows over plain HTTP: followed, and the list verifies
            code, out, err = cli(["inspect", ref, "--expect-platforms", "linux/amd64,linux/arm64"],
                                 secured(front), capsys)
            assert code == 0 and plain.requests("GET", "/manifests/"), out + err


def test_redirects_are_bounded_and_writes_are_never_redirected(upstream: str, unique: str) -> None:
    def loop(req: Request) -> Reply | None:
        if "/manifests/" in req.path:
            return Reply(307, [("Location", req.path.split("?")[0] + f"?hop={len(req.path)}")])
        return None

    with HostileServer("127.0.0.2", loop, upstream=upstream) as front, \
            RegistryClient(ImageName(front.host, f"{unique}/app"), plain_http=True, retry=FAST) as c:
        with pytest.raises(RegistryError, match="more than 5 redirects") as err:
            c.get_manifest("v1")
        assert len(front.requests("GET", "/manifests/")) == 6  # the first request and 5 hops, once
        with pytest.raises(RegistryError, match="writes are never redirected"):
            idx = compose_index([push_child(c, "linux/amd64", unique)])
            c.put_manifest("v1", idx.body, idx.media_type)
    assert err.value.registry == front.host and not err.value.transient


# ---- bounds: memory and time --------------------------------------------------------------------
def rss_probe(spec: dict[str, object]) -> dict[str, Any]:
    """Run ``tests/support/rss_probe.py`` (one verb in a fresh interpreter); its peak RSS and outcome."""
    done = subprocess.run([sys.executable, str(SUPPORT / "rss_probe.py"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


HEADROOM_KIB = 32 * 1024  # over the peak of the same verb on a tiny list: the 4 MiB cap and its copies fit


@pytest.fixture(scope="module")
def baseline_kib(registries: Any) -> int:
    """Peak RSS of an inspect of a tiny list from an honest registry (the same interpreter start-up)."""
    import uuid

    repo = f"t{uuid.uuid4().hex[:10]}/backends"
    with RegistryClient(ImageName(registries[0].host, repo), plain_http=True, retry=FAST) as c:
        push_list(c, repo, TAG)
    got = rss_probe({"verb": "inspect", "refs": [f"{registries[0].host}/{repo}:{TAG}"]})
    assert got["exit"] == 0, got
    return int(got["peak_kib"])


@pytest.mark.parametrize("case", ["child-2GiB-declared", "list-1GiB-chunked", "error-512MiB"])
def test_huge_answers_are_refused_in_bounded_memory(case: str, baseline_kib: int, upstream: str, unique: str,
                                                    tmp_path: Path) -> None:
    """Bodies are read against caps (manifests 4 MiB, error bodies 8 KiB): a 2 GiB child manifest,
    a 1 GiB list sent chunked (no length) and a 503 with a 512 MiB body keep the peak RSS of a
    fresh merge / inspect process within 32 MiB of an inspect of a tiny list (measured in a
    subprocess with getrusage)."""
    with RegistryClient(ImageName(upstream, f"{unique}/backends"), plain_http=True, retry=FAST) as c:
        child = one_leg(tmp_path, [c], unique)

    def rule(req: Request) -> Reply | None:
        if req.method != "GET" or "/manifests/" not in req.path:
            return None
        if case == "child-2GiB-declared":
            return Reply(200, [("Content-Type", child.media_type)], pieces(2048 * MiB), length=2048 * MiB)
        if case == "list-1GiB-chunked":
            return Reply(200, [("Content-Type", DOCKER_LIST)], pieces(1024 * MiB))
        return Reply(503, [("Content-Type", "application/json")], pieces(512 * MiB), length=512 * MiB)

    with HostileServer("127.0.0.2", rule, upstream=upstream) as front:
        image = f"{front.host}/{unique}/backends"
        if case == "child-2GiB-declared":
            got = rss_probe({"verb": "merge", "digests": str(tmp_path / "digests"), "matrix": str(tmp_path / "matrix.yml"),
                             "suffix": "-cpu-h", "images": image})
            expect = "declares 2147483648 bytes, more than the 4194304 bytes allowed"
        else:
            got = rss_probe({"verb": "inspect", "refs": [f"{image}:{TAG}"]})
            expect = ("is more than the 4194304 bytes allowed" if case == "list-1GiB-chunked"
                      else "failed after 3 attempt(s)")
        print(f"{case}: peak RSS {got['peak_kib'] // 1024} MiB (a tiny list: {baseline_kib // 1024} MiB): "
              f"{got['text'][:300]}")
        assert got["exit"] == 1 and front.host in got["text"] and expect in got["text"], got
        assert got["peak_kib"] < baseline_kib + HEADROOM_KIB, f"peak RSS {got['peak_kib']} KiB"


def test_digest_mismatch_is_a_hard_error_never_retried(upstream: str, unique: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def altered(req: Request, status: int, headers: list[tuple[str, str]], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        return status, [(n, v) for n, v in headers if n.lower() != "docker-content-digest"], body + b"\n"

    with RegistryClient(ImageName(upstream, f"{unique}/backends"), plain_http=True, retry=FAST) as c:
        child = one_leg(tmp_path, [c], unique)
    with HostileServer("127.0.0.2", lambda r: Forward(altered) if r.method == "GET" and child.digest in r.path
                       else None, upstream=upstream) as front:
        code, out, err = cli(merge_argv(tmp_path, [f"{front.host}/{unique}/backends"]), {}, capsys)
    assert code == 1 and "digest mismatch: the body hashes to" in err and front.host in err, out + err
    assert len(front.requests("GET", child.digest)) == 1  # not retried as if it were transient


def test_a_dripping_server_cannot_hold_merge_or_inspect_past_the_deadline(upstream: str, unique: str,
                                                                          tmp_path: Path) -> None:
    """One byte of the answer every 0.2 s (of its headers for the merge's child, of its body for
    the inspected list) never trips the 5 s socket timeout; the 1 s request deadline and the 3 s
    operation deadline end the merge and the inspect, naming the registry."""
    policy = RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05, deadline=3.0, request_timeout=5.0,
                         request_deadline=1.0)
    with RegistryClient(ImageName(upstream, f"{unique}/backends"), plain_http=True, retry=FAST) as c:
        one_leg(tmp_path, [c], unique)

    def slow_body() -> Iterator[bytes]:
        for _ in range(1000):
            time.sleep(0.2)
            yield b" "

    def rule(req: Request) -> Reply | None:
        if f"/manifests/{TAG}" in req.path:
            return Reply(200, [("Content-Type", DOCKER_LIST)], slow_body, length=1000)
        if "/manifests/" in req.path:
            return Reply(200, [("Content-Type", DOCKER_LIST), ("X-Padding", "x" * 200)], b"{}", drip=0.2)
        return None

    with HostileServer("127.0.0.2", rule, upstream=upstream) as front:
        image = f"{front.host}/{unique}/backends"
        setup = FamilySetup(config=family_config(Family.BACKENDS, images=image),
                            matrix=load_matrix(tmp_path / "matrix.yml", Family.BACKENDS))
        t0 = time.monotonic()
        with pytest.raises(OperationError) as err:
            merge_suffix(tmp_path / "digests", Family.BACKENDS, "-cpu-h", setup,
                         MergeOptions(tag_source=TagSource(event="push", ref="refs/heads/master", sha=SHA)),
                         factory=lambda img, cfg: RegistryClient(img, plain_http=True, retry=policy))
        merge_took = time.monotonic() - t0
        t0 = time.monotonic()
        report = inspect_refs(expand_targets([f"{image}:{TAG}"], (), ()),
                              lambda img: RegistryClient(img, plain_http=True, retry=policy))
        inspect_took = time.monotonic() - t0
    print(f"merge ended after {merge_took:.1f}s, inspect after {inspect_took:.1f}s")
    for took, text in ((merge_took, str(err.value)), (inspect_took, "\n".join(map(str, report.failures)))):
        assert took < 5.0 and front.host in text and "wall-clock deadline of one request" in text, (took, text)
    assert not report.ok


# ---- every write read back ------------------------------------------------------------------------
def _dropping(stored: dict[str, tuple[str, int]]) -> Callable[[Request], Reply | None]:
    """Accepts manifest PUTs by tag and stores nothing; HEAD of any tag then claims the list that was PUT,
    and so does a HEAD of that list's digest: only a GET finds that nothing is there."""
    def rule(req: Request) -> Reply | None:
        ref = req.path.rsplit("/manifests/", 1)[-1] if "/manifests/" in req.path else None
        if ref is None:
            return None
        if ref.startswith("sha256:"):
            claimed = [v for v in stored.values() if v[0] == ref]
            if req.method == "HEAD" and claimed:
                return Reply(200, [("Docker-Content-Digest", ref), ("Content-Type", DOCKER_LIST),
                                   ("Content-Length", str(claimed[0][1]))])
            return None
        if req.method == "PUT":
            body = req.body()
            stored[ref] = (sha256_digest(body), len(body))
            return Reply(201, [("Docker-Content-Digest", stored[ref][0]), ("Location", req.path)])
        if req.method == "HEAD" and stored:
            digest, size = stored.get(ref) or next(iter(stored.values()))
            return Reply(200, [("Docker-Content-Digest", digest), ("Content-Type", DOCKER_LIST),
                               ("Content-Length", str(size))])
        return None  # GET: forwarded, and the registry has nothing
    return rule


def test_a_registry_that_drops_writes_fails_the_merge_by_name(registries: Any, unique: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    honest, upstream = registries[1].host, registries[0].host
    stored: dict[str, tuple[str, int]] = {}
    with HostileServer("127.0.0.2", _dropping(stored), upstream=upstream) as liar:
        images = [f"{honest}/{unique}/backends", f"{liar.host}/{unique}/backends"]
        clients = [RegistryClient(ImageName(h, f"{unique}/backends"), plain_http=True, retry=FAST)
                   for h in (honest, upstream)]
        one_leg(tmp_path, clients, unique)
        for c in clients:
            c.close()
        # the first merge: each PUT is read back with a HEAD (which the liar answers as if it had stored the
        # list), then the list's GET by digest finds nothing
        for attempt in ("first merge", "re-run"):  # a re-run: the liar's HEAD claims every tag, nothing is written
            code, out, err = cli(merge_argv(tmp_path, images), {}, capsys)
            assert code == 1, attempt + out + err
            assert f"read back from {liar.host}: {liar.host}/{unique}/backends@sha256:" in err and \
                   f"is not found, not the list sha256:" in err, attempt + err
            assert f"{liar.host} accepted the writes but does not serve them" in err, attempt + err
            assert stored and "merged" not in out and "unchanged" not in out, attempt + out


def test_inspect_fails_when_a_tag_serves_another_list_than_the_digest_given_with_it(
        upstream: str, unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{upstream}/{unique}/backends"
    with RegistryClient(ImageName(upstream, f"{unique}/backends"), plain_http=True, retry=FAST) as c:
        tagged = push_list(c, unique + "a", TAG)
        other = push_list(c, unique + "b")  # the list the merge reported, by digest only
    base = ["inspect", "--images", image, "--expect-platforms", "linux/amd64,linux/arm64"]
    code, out, err = cli([*base, "--tag", other.digest, "--tag", TAG], {}, capsys)
    assert code == 1, out + err
    assert f"[tag-matches-digest] {image}:{TAG}: the tag resolves to {tagged.digest}, but the list digest " \
           f"given with it is {other.digest}" in out, out
    code, out, err = cli([*base, "--tag", f"{tagged.digest},{TAG}"], {}, capsys)  # the merge's step output form
    assert code == 0, out + err


# ---- redaction of every string a registry sent ------------------------------------------------------
def test_strings_from_successful_answers_are_redacted_everywhere(
        trust: TlsFiles, auth_upstream: str, registries: Any, unique: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A registry that echoes the Authorization header into Content-Type, a manifest's mediaType
    and a descriptor digest (200 answers): stdout, stderr, --format json and the job summary show
    ``***`` instead (and nothing of it reaches a step-output file)."""
    def echo(req: Request, status: int, headers: list[tuple[str, str]], body: bytes
             ) -> tuple[int, list[tuple[str, str]], bytes]:
        said = req.authorization or ""
        rewritten = req.method == "GET"  # a rewritten body has another digest: drop the header
        headers = [(n, said if n.lower() == "content-type" else v) for n, v in headers
                   if not (rewritten and n.lower() == "docker-content-digest")]
        if req.method == "GET" and req.path.endswith("/manifests/echo"):
            body = json.dumps({"schemaVersion": 2, "mediaType": said, "config": {
                "mediaType": said, "digest": "sha256:" + "0" * 64, "size": 2}, "layers": []}).encode()
        if req.method == "GET" and req.path.endswith("/manifests/echo-list"):
            body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
                {"mediaType": said, "digest": said, "size": 1}]}).encode()
        return status, headers, body

    armed = [False]  # honest while the test pushes its images

    def rule(req: Request) -> Forward | None:
        echoed = req.method == "HEAD" or req.path.endswith(("/manifests/echo", "/manifests/echo-list"))
        return Forward(echo) if armed[0] and "/manifests/" in req.path and echoed and req.authorization else None

    honest = registries[0].host
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    with HostileServer("127.0.0.2", rule, upstream=auth_upstream, tls=trust) as front:
        docker_config(tmp_path, monkeypatch, front.host)
        env = {**secured(front), "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)}
        with RegistryClient(ImageName(front.host, f"{unique}/backends"), plain_http=False, credentials=CREDS,
                            retry=FAST) as c, \
                RegistryClient(ImageName(honest, f"{unique}/backends"), plain_http=True, retry=FAST) as h:
            one_leg(tmp_path, [h, c], unique)
            for tag in ("echo", "echo-list"):
                push_list(c, unique, tag)
        armed[0] = True
        texts: list[str] = []
        for fmt in ("text", "json"):
            for tag in ("echo", "echo-list"):
                code, out, err = cli(["inspect", f"{front.host}/{unique}/backends:{tag}", "--format", fmt],
                                     env, capsys)
                assert code == 1, out + err
                texts += [out, err]
        # merge: the second registry's HEAD of the child answers the echo as its media type
        code, out, err = cli(merge_argv(tmp_path, [f"{honest}/{unique}/backends", f"{front.host}/{unique}/backends"]),
                             env, capsys)
        assert code == 1 and "preflight failed" in err, out + err
        texts += [out, err]
    texts += [summary.read_text(), outputs.read_text() if outputs.exists() else ""]
    blob = "\n".join(texts)
    assert "Basic ***" in blob, blob[-3000:]  # the echo was there, and is redacted
    assert json.loads(texts[4])["lists"][0]["media_type"] == "Basic ***"
    assert_no_secret(blob)


def test_credentials_in_an_image_name_are_refused_without_repeating_them(
        upstream: str, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(tmp_path / "matrix.yml", [("-cpu-h", "amd64")])
    (tmp_path / "digests").mkdir()
    for images in (f"tester:{KNOWN_PASSWORD}@{upstream}/{unique}/x", f"tester:{KNOWN_PASSWORD}@{upstream}/x@sha256:" + "a" * 64):
        code, out, err = cli(merge_argv(tmp_path, [images]), {}, capsys)
        assert code == 2 and "credentials?" in err and f"***@{upstream}/" in err, err
        assert_no_secret(out, err)
    code, out, err = cli(["inspect", f"tester:{KNOWN_PASSWORD}@{upstream}/{unique}/x:v1"], {}, capsys)
    assert code == 2 and f"'***@{upstream}/{unique}/x:v1'" in err, err
    assert_no_secret(out, err)
    code, out, err = cli(["inspect", f"127.0.0.2:99999/{unique}/x:v1"], {}, capsys)
    assert code == 2 and "registry port 99999, outside 1-65535" in err, err


# ---- tag lists: every page, and no endless paging ------------------------------------------------
def test_tag_lists_follow_every_page_and_pages_that_come_round_again_are_refused(upstream: str, unique: str) -> None:
    """A front pages the real registry's tag list (distribution 2.8 sends it whole) the way distribution 3
    and Quay do: ``n`` tags after ``last``, then ``Link: <...?n=2&last=...>; rel="next"``; every page is
    read. A registry whose next page is one already read fails the listing, named, instead of looping."""
    repo = f"{unique}/tags"
    with RegistryClient(ImageName(upstream, repo), plain_http=True, retry=FAST) as c:
        idx = push_list(c, unique)
        for tag in ("a", "b", "c", "d", "e"):
            c.put_manifest(tag, idx.body, idx.media_type)

    def paginate(req: Request, status: int, headers: list[tuple[str, str]], body: bytes
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        query = dict(parse_qsl(req.path.partition("?")[2]))
        everything = sorted(json.loads(body)["tags"])
        after = [t for t in everything if t > query.get("last", "")]
        page, more = after[:int(query.get("n", "2"))], after[int(query.get("n", "2")):]
        link = [("Link", f'</v2/{repo}/tags/list?n=2&last={page[-1]}>; rel="next"')] if more else []
        return status, [(n, v) for n, v in headers if n.lower() != "link"] + link, \
            json.dumps({"name": repo, "tags": page}).encode()

    def round_again(req: Request) -> Reply | None:
        if "/tags/list" in req.path:
            return Reply(200, [("Content-Type", "application/json"),
                               ("Link", f'</v2/{repo}/tags/list?n=1&last=a>; rel="next"')],
                         json.dumps({"name": repo, "tags": ["a"]}).encode())
        return None

    with HostileServer("127.0.0.2", lambda r: Forward(paginate) if "/tags/list" in r.path else None,
                       upstream=upstream) as front, \
            RegistryClient(ImageName(front.host, repo), plain_http=True, retry=FAST) as c:
        assert c.list_tags() == ["a", "b", "c", "d", "e"]
        assert [s.path.partition("?")[2] for s in front.requests("GET", "/tags/list")] == [
            "", "n=2&last=b", "n=2&last=d"]
    with HostileServer("127.0.0.2", round_again, upstream=upstream) as front, \
            RegistryClient(ImageName(front.host, repo), plain_http=True, retry=FAST) as c:
        with pytest.raises(RegistryError, match="malformed answer from .*: its tag list pages come round again") as err:
            c.list_tags()
        assert len(front.requests("GET", "/tags/list")) == 2 and not err.value.transient


# ---- malformed answers: RegistryError naming the registry, exit 1, no traceback ----------------------
def _always(reply: Reply) -> Callable[[Request], Reply]:
    return lambda req: reply


MALFORMED = {
    "401 without a challenge": (_always(Reply(401, [], b"{}")), "without a WWW-Authenticate challenge"),
    "401 with a bare Bearer": (_always(Reply(401, [("WWW-Authenticate", "Bearer")], b"")),
                               "Bearer challenge without an absolute realm URL"),
    "401 with garbage": (_always(Reply(401, [("WWW-Authenticate", '"""')], b"")), "cannot be parsed"),
    "401 with an unknown scheme": (_always(Reply(401, [("WWW-Authenticate", "Negotiate abc")], b"")),
                                   "neither Basic nor Bearer"),
}
TOKEN_ANSWERS = {
    "token answer without a token": b"{}",
    "token answer not JSON": b"<html>",
    "token answer a list": b"[]",
    "token answer a number": b'{"token": 5}',
}


@pytest.mark.parametrize("case", [*MALFORMED, *TOKEN_ANSWERS])
def test_malformed_auth_answers_are_registry_errors_without_traceback(
        case: str, trust: TlsFiles, upstream: str, unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer("127.0.0.4", _token_service(TOKEN_ANSWERS.get(case, b""), anyone=True), tls=trust) as tokens:
        rule = MALFORMED[case][0] if case in MALFORMED else _bearer_front(tokens)
        with HostileServer("127.0.0.2", rule, upstream=upstream, tls=trust) as front:
            code, out, err = cli(["inspect", f"{front.host}/{unique}/x:v1"], secured(front, tokens), capsys)
    expect = MALFORMED[case][1] if case in MALFORMED else f"the token service {tokens.host} answered without a usable token"
    print(out)
    assert code == 1 and f"malformed answer from {front.host}: " in out and expect in out, out + err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("header", [("Content-Length", "abc"), ("Docker-Content-Digest", "sha256:nope")],
                         ids=["content-length-abc", "digest-header-garbage"])
def test_malformed_head_answers_fail_the_merge_by_name(header: tuple[str, str], registries: Any, unique: str,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, upstream = registries[1].host, registries[0].host

    def rule(req: Request) -> Reply | None:
        if req.method == "HEAD" and "/manifests/" in req.path:
            digest = ("Docker-Content-Digest", "sha256:" + "1" * 64)
            return Reply(200, [("Content-Type", DOCKER_LIST), digest if header[0] != digest[0] else header,
                               header if header[0] == "Content-Length" else ("Content-Length", "10")])
        return None

    with HostileServer("127.0.0.2", rule, upstream=upstream) as front:
        clients = [RegistryClient(ImageName(h, f"{unique}/backends"), plain_http=True, retry=FAST)
                   for h in (first, upstream)]
        one_leg(tmp_path, clients, unique)
        for c in clients:
            c.close()
        code, out, err = cli(merge_argv(tmp_path, [f"{first}/{unique}/backends", f"{front.host}/{unique}/backends"]),
                             {}, capsys)
    assert code == 1 and f"malformed answer from {front.host}: " in err, out + err
    assert ("Content-Length 'abc' is not a byte count" if header[0] == "Content-Length"
            else "Docker-Content-Digest header is not a sha256") in err, err
    assert "Traceback" not in out + err


# ---- parsing bounds (pure) ----------------------------------------------------------------------
def test_manifest_parsing_is_bounded() -> None:
    """What a registry serves is parsed within bounds: ValueError (a registry error upstream), never a
    RecursionError or an unbounded string."""
    from localai_ci.oci.manifest import MAX_MANIFEST_BYTES, config_platform, parse_manifest

    with pytest.raises(ValueError, match="nested too deeply"):
        parse_manifest(b"[" * 200_000 + b"]" * 200_000)
    assert config_platform(b"[" * 200_000 + b"]" * 200_000) is None
    with pytest.raises(ValueError, match=f"more than the {MAX_MANIFEST_BYTES} bytes allowed"):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1))
    long_type = json.dumps({"schemaVersion": 2, "mediaType": "a/" + "b" * 300, "manifests": []}).encode()
    with pytest.raises(ValueError, match="mediaType is 302 characters long"):
        parse_manifest(long_type)
    not_text = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": {"x": 1}, "digest": "sha256:" + "0" * 64,
                                                              "size": 1}]}).encode()
    with pytest.raises(ValueError, match="mediaType is not a string"):
        parse_manifest(not_text)
