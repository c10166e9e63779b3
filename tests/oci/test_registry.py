"""localai_ci.oci.client against real distribution registries (shared ``registries`` fixture), a TLS +
htpasswd registry started here (auth and secret redaction), and the fault proxy (retries)."""
from __future__ import annotations

import base64
import functools
import io
import json
import logging
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localai_ci.errors import RegistryError, UserError
from localai_ci.oci.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Composed, Descriptor, compose_image_manifest, compose_index
from localai_ci.oci.platforms import parse_platform
from localai_ci.oci.reference import ImageName, parse_image_name, sha256_digest
from localai_ci.oci.client import RegistryClient
from localai_ci.oci.keychain import Credentials, credentials_for
from localai_ci.oci.retry import RetryPolicy, retry_after_seconds
from tests.support.authregistry import KNOWN_PASSWORD, auth_registries
from tests.support.faultproxy import FaultProxy, Faults

FAST = RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05, deadline=30.0, request_timeout=5.0)

# htpasswd line for user "tester", password KNOWN_PASSWORD (bcrypt cost 4 to keep the test fast, made once with libxcrypt)


# ---- helpers -----------------------------------------------------------------------------
def client(host: str, repo: str, **kw: object) -> RegistryClient:
    kw.setdefault("retry", FAST)
    return RegistryClient(ImageName(host, repo), plain_http=True, **kw)  # type: ignore[arg-type]


def push_image(c: RegistryClient, arch: str = "amd64", layer: bytes | None = None) -> Composed:
    """Push a config and a layer blob, return the (not yet pushed) manifest over them."""
    layer = layer if layer is not None else os.urandom(2048)
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    for blob in (config, layer):
        c.push_blob(sha256_digest(blob), len(blob), functools.partial(io.BytesIO, blob))
    return compose_image_manifest(Descriptor(DOCKER_CONFIG, sha256_digest(config), len(config)),
                                  [Descriptor(DOCKER_LAYER_GZIP, sha256_digest(layer), len(layer))])


@pytest.fixture
def reg(registries: tuple[object, object]) -> str:
    return registries[0].host  # type: ignore[attr-defined,no-any-return]


# ---- blobs -------------------------------------------------------------------------------
@pytest.mark.registry
def test_push_blob_then_second_push_uploads_nothing(reg: str, unique: str) -> None:
    data = os.urandom(300_000)
    digest = sha256_digest(data)
    opened = []

    def open_stream() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    with client(reg, f"{unique}/a") as c:
        assert not c.blob_exists(digest)
        assert c.push_blob(digest, len(data), open_stream) is True
        assert c.bytes_uploaded == len(data) and c.blob_exists(digest)
        assert c.push_blob(digest, len(data), open_stream) is False
        assert c.bytes_uploaded == len(data) and len(opened) == 1
        assert c.get_blob(digest, max_bytes=len(data)) == data
        with pytest.raises(RegistryError, match="more than the 1000 bytes allowed"):
            c.get_blob(digest, max_bytes=1000)


@pytest.mark.registry
def test_mount_across_repositories_sends_no_bytes(reg: str, unique: str) -> None:
    data = os.urandom(100_000)
    digest = sha256_digest(data)
    with client(reg, f"{unique}/src") as src, client(reg, f"{unique}/dst") as dst:
        src.push_blob(digest, len(data), lambda: io.BytesIO(data))
        assert dst.mount_blob(digest, f"{unique}/src") is True
        assert dst.bytes_uploaded == 0 and dst.blob_exists(digest)
        assert dst.push_blob(digest, len(data), lambda: io.BytesIO(data)) is False
        # not present anywhere: the registry opens an upload instead, which is cancelled
        missing = sha256_digest(b"nowhere" + unique.encode())
        assert dst.mount_blob(missing, f"{unique}/src") is False
        assert not dst.blob_exists(missing)


# ---- manifests ---------------------------------------------------------------------------
@pytest.mark.registry
def test_manifest_by_digest_exact_bytes_and_by_tag(reg: str, unique: str) -> None:
    with client(reg, f"{unique}/app") as c:
        m = push_image(c)
        assert c.put_manifest(m.digest, m.body, m.media_type) == m.digest
        body, media, digest = c.get_manifest(m.digest)  # type: ignore[misc]
        assert (body, media, digest) == (m.body, DOCKER_MANIFEST, m.digest)
        assert c.head_manifest(m.digest) == (m.digest, DOCKER_MANIFEST, len(m.body))
        assert c.put_manifest("v1", m.body, m.media_type) == m.digest
        assert c.get_manifest("v1") == (m.body, DOCKER_MANIFEST, m.digest)
        assert c.list_tags() == ["v1"]
        # an index over it, pushed by digest: the child is confirmed first
        idx = compose_index([Descriptor(DOCKER_MANIFEST, m.digest, len(m.body), parse_platform("linux/amd64"))])
        assert c.put_manifest(idx.digest, idx.body, idx.media_type) == idx.digest
        assert c.get_manifest(idx.digest) == (idx.body, idx.media_type, idx.digest)


@pytest.mark.registry
def test_absent_things_are_none_or_empty(reg: str, unique: str) -> None:
    with client(reg, f"{unique}/none") as c:
        nothing = sha256_digest(unique.encode())
        assert c.get_manifest(nothing) is None
        assert c.head_manifest("latest") is None
        assert c.list_tags() == []
        assert not c.blob_exists(nothing)


@pytest.mark.registry
def test_manifest_with_missing_blob_is_refused_before_put(reg: str, unique: str) -> None:
    with FaultProxy(reg) as px, client(px.host, f"{unique}/app") as c:
        m = push_image(c)
        ghost = Descriptor(DOCKER_LAYER_GZIP, sha256_digest(b"ghost" + unique.encode()), 5)
        cfg = json.loads(m.body)["config"]
        bad = compose_image_manifest(Descriptor(DOCKER_CONFIG, cfg["digest"], cfg["size"]), [ghost])
        with pytest.raises(RegistryError, match=f"not pushed.*blob {ghost.digest} is missing") as err:
            c.put_manifest(bad.digest, bad.body, bad.media_type)
        assert err.value.registry == px.host and not err.value.transient
        ghost_child = Descriptor(DOCKER_MANIFEST, ghost.digest, 10, parse_platform("linux/arm64"))
        idx = compose_index([ghost_child])
        with pytest.raises(RegistryError, match="child manifest .* is missing"):
            c.put_manifest("list", idx.body, idx.media_type)
        wrong_size = compose_image_manifest(Descriptor(DOCKER_CONFIG, cfg["digest"], cfg["size"] + 1), [])
        with pytest.raises(RegistryError, match="bytes, the manifest says"):
            c.put_manifest(wrong_size.digest, wrong_size.body, wrong_size.media_type)
        assert not [s for s in px.seen if s[0] == "PUT" and "/manifests/" in s[1]]
        assert c.get_manifest(bad.digest) is None
        with pytest.raises(RegistryError, match="hashes to"):
            c.put_manifest(m.digest, m.body + b" ", m.media_type)


@pytest.mark.registry
def test_delete_manifest_and_best_effort_delete_tag(reg: str, unique: str) -> None:
    with client(reg, f"{unique}/del") as c:
        m = push_image(c)
        c.put_manifest("keep", m.body, m.media_type)
        # distribution 2.x cannot delete a tag alone: False, and the manifest stays
        assert c.delete_tag("keep") is False
        assert c.get_manifest("keep") is not None
        c.delete_manifest(m.digest)
        assert c.get_manifest(m.digest) is None and c.list_tags() == []
        c.delete_manifest(m.digest)  # already gone: not an error


# ---- pure bits ---------------------------------------------------------------------------
def test_retry_after_forms_and_backoff_bounds() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    now = 1_700_000_000.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:30 GMT", now=now) == pytest.approx(10.0)
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0
    import random
    p = RetryPolicy(base_delay=1.0, max_delay=5.0)
    delays = [p.backoff(n, random.Random(n)) for n in range(1, 10)]
    assert all(0.5 <= d <= 5.0 for d in delays) and delays[-1] >= 2.5


def test_docker_hub_goes_to_registry_1_and_tls_by_default() -> None:
    c = RegistryClient(parse_image_name("localai/localai"), plain_http=False)
    assert c.registry == "docker.io"
    assert c._base_url == "https://registry-1.docker.io/v2/"  # no network touched
    assert c._repo_url == "https://registry-1.docker.io/v2/localai/localai/"
    c.close()
    with RegistryClient(parse_image_name("ubuntu"), plain_http=False) as official:
        assert official._repo_url == "https://registry-1.docker.io/v2/library/ubuntu/"


def test_credentials_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = credentials_for("quay.io", username="u", password=KNOWN_PASSWORD)
    assert creds == Credentials("u", KNOWN_PASSWORD)
    assert KNOWN_PASSWORD not in repr(creds) and KNOWN_PASSWORD not in str(creds)
    with pytest.raises(UserError, match="give both"):
        credentials_for("quay.io", username="u")
    auth = base64.b64encode(f"cfg-user:{KNOWN_PASSWORD}".encode()).decode()
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread server\necho \'{"ServerURL":"\'$server\'","Username":"helper-user","Secret":"from-helper"}\'\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {"quay.io": {"auth": auth}, "https://index.docker.io/v1/": {"auth": auth}},
        "credHelpers": {"ghcr.io": "fake"}}))
    assert credentials_for("quay.io", config_dir=str(tmp_path)) == Credentials("cfg-user", KNOWN_PASSWORD)
    assert credentials_for("docker.io", config_dir=str(tmp_path)) == Credentials("cfg-user", KNOWN_PASSWORD)
    assert credentials_for("ghcr.io", config_dir=str(tmp_path)) == Credentials("helper-user", "from-helper")
    assert credentials_for("example.com", config_dir=str(tmp_path)) is None
    assert credentials_for("quay.io", config_dir=str(tmp_path / "nowhere")) is None


# ---- auth (TLS + htpasswd registry started here) -----------------------------------------
@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Callable[[bool], str]]:
    """``make(tls) -> host`` of a registry requiring htpasswd auth (tester / KNOWN_PASSWORD)."""
    with auth_registries(tmp_path) as make:
        yield make


@pytest.mark.registry
def test_basic_auth_over_tls_and_no_secret_anywhere(auth_registry: Callable[[bool], str], tmp_path: Path,
                                                    unique: str, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    host = auth_registry(True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "auth-0" / "cert.pem"))  # trust the test CA
    image = ImageName(host, f"{unique}/private")
    texts: list[str] = []
    good = Credentials("tester", KNOWN_PASSWORD)
    with RegistryClient(image, plain_http=False, credentials=good, retry=FAST, on_retry=texts.append) as c:
        m = push_image(c)
        assert c.put_manifest("v1", m.body, m.media_type) == m.digest
        assert c.get_manifest(m.digest) == (m.body, DOCKER_MANIFEST, m.digest)
        texts.append(repr(c))
    errors: list[RegistryError] = []
    for creds in (Credentials("tester", KNOWN_PASSWORD + "-wrong"), None):
        with RegistryClient(image, plain_http=False, credentials=creds, retry=FAST, on_retry=texts.append) as c:
            with pytest.raises(RegistryError) as err:
                c.get_manifest("v1")
            errors.append(err.value)
            texts.append(repr(c))
    for exc in errors:
        assert exc.status == 401 and f"docker login {host}" in str(exc) and "--password-stdin" in str(exc)
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text, repr(good), str(good)]
    blob = "\n".join(texts)
    b64 = base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode()
    assert KNOWN_PASSWORD not in blob and b64 not in blob


@pytest.mark.registry
def test_auth_required_over_plain_http_is_a_clear_error(auth_registry: Callable[[bool], str], unique: str) -> None:
    host = auth_registry(False)
    creds = Credentials("tester", KNOWN_PASSWORD)
    with RegistryClient(ImageName(host, f"{unique}/x"), plain_http=True, credentials=creds, retry=FAST) as c:
        with pytest.raises(RegistryError, match="requires authentication but is reached over plain HTTP") as err:
            c.list_tags()
    assert KNOWN_PASSWORD not in str(err.value)


# ---- retries through the fault proxy -----------------------------------------------------
def _workflow(c: RegistryClient, unique: str) -> None:
    """Blobs, manifest by digest and tag, reads: everything a publish and a merge do."""
    m = push_image(c, layer=os.urandom(200_000))
    assert c.put_manifest(m.digest, m.body, m.media_type) == m.digest
    assert c.put_manifest("v1", m.body, m.media_type) == m.digest
    assert c.get_manifest("v1") == (m.body, DOCKER_MANIFEST, m.digest)
    assert c.head_manifest(m.digest) == (m.digest, DOCKER_MANIFEST, len(m.body))
    assert c.list_tags() == ["v1"]
    cfg = json.loads(m.body)["config"]
    assert json.loads(c.get_blob(cfg["digest"]))["architecture"] == "amd64"


@pytest.mark.registry
@pytest.mark.slow
@pytest.mark.parametrize("faults", [
    Faults(error=0.3), Faults(throttle=0.3), Faults(reset=0.3), Faults(slow=0.3, slow_seconds=0.4),
    Faults(error=0.1, throttle=0.1, reset=0.1, slow=0.1, slow_seconds=0.4),
], ids=["5xx", "429", "reset", "slow", "mixed"])
def test_faults_at_30_percent_are_retried(reg: str, unique: str, faults: Faults) -> None:
    texts: list[str] = []
    policy = RetryPolicy(attempts=12, base_delay=0.01, max_delay=0.05, deadline=30.0, request_timeout=0.25)
    start = time.monotonic()
    with FaultProxy(reg, faults, seed=7) as px, client(px.host, f"{unique}/f", retry=policy, on_retry=texts.append) as c:
        _workflow(c, unique)
    took = time.monotonic() - start
    print(f"faults={px.injected} requests={px.requests} retries={c.retries} took={took:.2f}s")
    assert px.total_faults > 0 and c.retries > 0 and len(texts) == c.retries
    assert all(t.startswith(f"{px.host}: ") for t in texts)
    assert took < 20


@pytest.mark.registry
@pytest.mark.slow
@pytest.mark.parametrize(("kind", "expect"), [("error", r"HTTP 50\d"), ("throttle", "HTTP 429"),
                                              ("reset", "ConnectionError|reset")])
def test_total_failure_is_bounded_and_named(reg: str, unique: str, kind: str, expect: str) -> None:
    policy = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, deadline=10.0, request_timeout=2.0)
    with FaultProxy(reg, seed=3) as px, client(px.host, f"{unique}/down", retry=policy) as c:
        px.fail_all(kind)
        start = time.monotonic()
        with pytest.raises(RegistryError) as err:
            c.get_manifest("v1")
        took = time.monotonic() - start
    msg = str(err.value)
    print(f"{kind}: {took:.2f}s: {msg}")
    assert px.host in msg and "after 4 attempt(s)" in msg and err.value.transient
    assert err.value.registry == px.host and c.retries == 3
    assert re.search(expect, msg)
    assert took < 3


@pytest.mark.registry
@pytest.mark.slow
def test_down_then_up_and_deadline(reg: str, unique: str) -> None:
    policy = RetryPolicy(attempts=1000, base_delay=0.05, max_delay=0.1, deadline=0.6, request_timeout=1.0)
    with FaultProxy(reg) as px, client(px.host, f"{unique}/d", retry=policy) as c:
        assert c.list_tags() == []
        px.set_down(True)
        start = time.monotonic()
        with pytest.raises(RegistryError, match=f"list tags {px.host}/{unique}/d failed after .*refused") as err:
            c.list_tags()
        took = time.monotonic() - start
        assert took < 1.5 and err.value.status is None and err.value.transient
        px.set_down(False)
        assert c.list_tags() == []


@pytest.mark.registry
@pytest.mark.slow
def test_retry_after_is_honoured_and_capped(reg: str, unique: str) -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=5.0, request_timeout=2.0)
    texts: list[str] = []
    with FaultProxy(reg, Faults(retry_after="1")) as px, \
            client(px.host, f"{unique}/ra", retry=policy, on_retry=texts.append) as c:
        px.fail_next(1, "throttle")
        start = time.monotonic()
        assert c.list_tags() == []
        waited = time.monotonic() - start
        assert waited >= 1.0 and c.retries == 1 and "HTTP 429" in texts[0]
        print(f"Retry-After: 1 -> waited {waited:.2f}s")
    capped = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.2, request_timeout=2.0)
    with FaultProxy(reg, Faults(retry_after="30")) as px, client(px.host, f"{unique}/ra", retry=capped) as c:
        px.fail_next(1, "throttle")
        start = time.monotonic()
        assert c.list_tags() == []
        assert time.monotonic() - start < 1.0


@pytest.mark.registry
@pytest.mark.slow
def test_failed_upload_restarts_from_a_fresh_stream(reg: str, unique: str) -> None:
    data = os.urandom(500_000)
    opened: list[int] = []
    with FaultProxy(reg) as px, client(px.host, f"{unique}/s") as c:
        def open_stream() -> io.BytesIO:
            if not opened:
                px.fail_next(1, "error")  # the PUT of this first attempt gets a 5xx
            opened.append(1)
            return io.BytesIO(data)

        assert c.push_blob(sha256_digest(data), len(data), open_stream) is True
        assert len(opened) == 2 and c.retries == 1 and c.bytes_uploaded == 2 * len(data)
        posts = [s for s in px.seen if s[0] == "POST"]
        assert len(posts) == 2  # a new upload session per attempt


# ---- keep-alive, request counts, one deadline thread ---------------------------------------------
@pytest.mark.registry
def test_one_keep_alive_connection_serves_a_clients_requests_and_they_are_counted(reg: str, unique: str) -> None:
    """Through a request-counting proxy behind a connection-counting relay: the client's counters
    are what went over the wire, and 20 requests take one TCP connection."""
    from tests.support.tcprelay import TcpRelay

    with client(reg, f"{unique}/k") as direct:  # blobs direct (an upload Location names the proxy, not the relay)
        m = push_image(direct)
    with FaultProxy(reg) as px, TcpRelay(px.host) as relay:
        with client(relay.host, f"{unique}/k") as c:
            c.put_manifest(m.digest, m.body, m.media_type)  # blobs confirmed, PUT, read back
            for _ in range(8):
                assert c.head_manifest(m.digest) is not None
                assert c.get_manifest("absent") is None  # a 404 keeps the connection too
            assert c.requests_sent == px.requests and c.requests_sent >= 20
            assert c.connections_opened == relay.accepted == 1


@pytest.mark.registry
def test_request_deadlines_share_one_watchdog_thread(reg: str, unique: str) -> None:
    """A request in flight has no timer thread of its own: one daemon thread watches every
    session's deadlines, and nothing stays armed after the requests end."""
    import threading

    from localai_ci.oci.deadline import _DEADLINES

    with FaultProxy(reg, Faults(slow=1.0, slow_seconds=0.6)) as px, client(px.host, f"{unique}/w") as c, \
            client(reg, f"{unique}/w") as other:
        assert other.list_tags() == []
        before = set(threading.enumerate())  # the proxy's own threads (and its lifetime timer) included
        worker = threading.Thread(target=c.list_tags)
        worker.start()
        time.sleep(0.3)  # the request waits in the proxy
        during = threading.enumerate()
        worker.join(10)
        started = [t for t in during if t not in before]
        assert not any(isinstance(t, threading.Timer) for t in started), started
        assert [t.name for t in during].count("registry-deadlines") == 1
    assert _DEADLINES.pending() == 0


def test_deadline_alarm_shuts_the_sockets_down_and_a_cancelled_one_does_not() -> None:
    import socket
    import weakref

    from localai_ci.oci.deadline import _DEADLINES

    class Conn:  # what the alarm looks at: a connection's ``sock``
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

    (a, b), (c, d) = socket.socketpair(), socket.socketpair()
    try:
        held = [Conn(a), Conn(c)]
        fires: weakref.WeakSet[Conn] = weakref.WeakSet([held[0]])
        stays: weakref.WeakSet[Conn] = weakref.WeakSet([held[1]])
        kept = _DEADLINES.arm(time.monotonic() + 0.05, stays)
        kept.cancel()
        start = time.monotonic()
        alarm = _DEADLINES.arm(start + 0.2, fires)
        assert a.recv(1) == b""  # unblocked by the shutdown at the deadline
        assert 0.15 <= time.monotonic() - start < 5 and alarm.fired
        alarm.cancel()  # after firing: nothing
        d.sendall(b"x")
        assert c.recv(1) == b"x" and not kept.fired  # the cancelled alarm left its socket alone
        for _ in range(1000):  # cancelled deadlines do not pile up
            _DEADLINES.arm(time.monotonic() + 300, stays).cancel()
        assert _DEADLINES.pending() == 0 and len(_DEADLINES._heap) < 200
    finally:
        for s in (a, b, c, d):
            s.close()


def test_proxies_from_the_environment_are_requests_own_looked_up_once_per_origin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    from localai_ci.oci.transport import ScopedSession

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    ours = ScopedSession("https://quay.io/v2/", lambda host: False, RetryPolicy())
    theirs = requests.Session()
    try:
        for url in ("https://quay.io/v2/x/manifests/t", "http://127.0.0.1:5000/v2/x/manifests/t",
                    "https://registry-1.docker.io/v2/library/x/blobs/sha256:00"):
            for proxies in ({}, {"no_proxy": "quay.io"}):
                want = theirs.merge_environment_settings(url, dict(proxies), None, None, None)
                assert ours.merge_environment_settings(url, dict(proxies), None, None, None) == want, (url, proxies)
        monkeypatch.setenv("HTTPS_PROXY", "http://other.invalid:1")  # a run's environment does not change
        got = ours.merge_environment_settings("https://quay.io/v2/y/manifests/u", {}, None, None, None)
        assert got["proxies"]["https"] == "http://proxy.invalid:3128"  # looked up once for this origin
    finally:
        ours.close()
        theirs.close()
