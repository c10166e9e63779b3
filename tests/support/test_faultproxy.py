"""The fault proxy itself: transparent forwarding, streaming bodies, Location rewriting, faults, down."""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import FaultProxy, Faults


def _conn(host: str) -> http.client.HTTPConnection:
    name, _, port = host.rpartition(":")
    return http.client.HTTPConnection(name, int(port), timeout=5)


def _upload(px: FaultProxy, repo: str, data: bytes, *, chunked: bool) -> tuple[int, str]:
    """POST + PUT a blob through the proxy with a streamed body; returns (status, Location of the POST)."""
    c = _conn(px.host)
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    r = c.getresponse()
    r.read()
    location = r.getheader("Location") or ""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = location.split(px.host, 1)[1] + "&digest=" + digest

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]

    if chunked:
        c.request("PUT", path, body=pieces(), encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    else:
        c.request("PUT", path, body=pieces(), headers={"Content-Length": str(len(data))})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, location


@pytest.mark.registry
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_streams_bodies_and_rewrites_location(registries: tuple[object, object], unique: str, chunked: bool) -> None:
    upstream = registries[0].host  # type: ignore[attr-defined]
    data = os.urandom(1_000_000)
    with FaultProxy(upstream) as px:
        status, location = _upload(px, f"{unique}/p", data, chunked=chunked)
        assert status == 201
        assert location.startswith(px.url + "/v2/") and upstream not in location
        c = _conn(px.host)  # the blob reads back, chunked response or not, over one keep-alive connection
        for _ in range(2):
            c.request("GET", f"/v2/{unique}/p/blobs/sha256:{hashlib.sha256(data).hexdigest()}")
            r = c.getresponse()
            assert r.status == 200 and r.read() == data
        c.close()
        assert px.requests == px.forwarded == 4 and px.total_faults == 0


@pytest.mark.registry
def test_injects_each_fault_deterministically(registries: tuple[object, object]) -> None:
    upstream = registries[0].host  # type: ignore[attr-defined]

    def run(seed: int) -> list[str]:
        with FaultProxy(upstream, Faults(error=0.25, throttle=0.25, reset=0.25, slow=0.1, slow_seconds=0.01,
                                         retry_after="7"), seed=seed) as px:
            seen = []
            for _ in range(24):
                c = _conn(px.host)
                try:
                    c.request("GET", "/v2/")
                    r = c.getresponse()
                    r.read()
                    seen.append(f"{r.status}:{r.getheader('Retry-After') or ''}")
                except (ConnectionError, http.client.HTTPException):
                    seen.append("reset")
                finally:
                    c.close()
            assert px.requests == 24 and set(px.injected) <= {"error", "throttle", "reset", "slow"}
            assert px.injected["error"] and px.injected["throttle"] and px.injected["reset"]
            return seen

    first = run(11)
    assert first == run(11)
    assert "429:7" in first and "reset" in first and any(s.startswith("50") for s in first)


@pytest.mark.registry
def test_fail_all_fail_next_and_down(registries: tuple[object, object]) -> None:
    upstream = registries[0].host  # type: ignore[attr-defined]

    def get(px: FaultProxy) -> int:
        c = _conn(px.host)
        try:
            c.request("GET", "/v2/")
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    with FaultProxy(upstream, lifetime=30) as px:
        assert get(px) == 200
        px.fail_all("error")
        assert all(get(px) >= 500 for _ in range(5))
        px.fail_all(None)
        px.fail_next(2, "throttle")
        assert [get(px), get(px), get(px)] == [429, 429, 200]
        port = int(px.host.rpartition(":")[2])
        px.set_down(True)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # refused
        px.set_down(False)
        assert get(px) == 200 and px.host.endswith(f":{port}")
    with socket.socket() as s:  # stopped on exit
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_stops_by_itself_after_its_lifetime() -> None:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        upstream = f"127.0.0.1:{dead.getsockname()[1]}"
    px = FaultProxy(upstream, lifetime=0.2).start()
    port = int(px.host.rpartition(":")[2])
    time.sleep(0.5)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(ValueError, match="add up"):
        Faults(error=0.7, reset=0.7)


def test_latency_rate_and_routes(registries: tuple[object, object], unique: str) -> None:
    """A registry far away: each request costs two one-way latencies, bodies move at the rate, and
    requests are counted by method and kind."""
    upstream = registries[0].host  # type: ignore[attr-defined]
    with FaultProxy(upstream, latency=0.05) as px:
        c = _conn(px.host)
        t0 = time.monotonic()
        for _ in range(3):
            c.request("GET", "/v2/")
            c.getresponse().read()
        assert time.monotonic() - t0 >= 3 * 0.1
        c.request("HEAD", f"/v2/{unique}/manifests/latest")
        c.getresponse().read()
        c.request("GET", f"/v2/{unique}/manifests/latest")
        c.getresponse().read()
        c.close()
        assert px.routes[("GET", "v2")] == 3 and px.routes[("HEAD", "manifests")] == 1
        assert px.routes[("GET", "manifests")] == 1
    data = os.urandom(400_000)
    with FaultProxy(upstream, rate=1_000_000) as px:
        t0 = time.monotonic()
        status, _ = _upload(px, f"{unique}/rate", data, chunked=False)
        assert status == 201 and time.monotonic() - t0 >= 0.35  # 400 kB at 1 MB/s
        assert px.routes[("POST", "uploads")] == 1 and px.routes[("PUT", "uploads")] == 1
