"""A real distribution registry with htpasswd auth (optionally TLS) on loopback, for the auth and
secret-leak tests: user ``tester``, password :data:`KNOWN_PASSWORD`; or one with token auth
(:func:`start_token_registry`, its token service in :mod:`tests.support.tokenservice`)."""
from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from localai_ci.oci.localregistry import find_registry_binary, free_port

KNOWN_PASSWORD = "S3cr3t-known-PW"
HTPASSWD = "tester:$2b$04$GNQp0BlqpzEJ5WaFJ1q35OeKWWUeRQryuJbZEchgAUcwJXopKBLrW\n"  # bcrypt of KNOWN_PASSWORD


def start_auth_registry(root: Path, tls: bool) -> tuple[subprocess.Popen[bytes], str]:
    """Start it under ``root`` (cert at ``root/cert.pem`` when ``tls``); (process, host)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "htpasswd").write_text(HTPASSWD)
    return _start(root, tls, {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}})


def start_token_registry(root: Path, *, realm: str, service: str, issuer: str,
                         rootcertbundle: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A registry that takes only bearer tokens (distribution's token auth): JWTs from ``issuer`` for
    ``service``, signed by a key certified in ``rootcertbundle``; its challenges name ``realm``.
    Plain HTTP on 127.0.0.1 (put a TLS front before it); (process, host)."""
    root.mkdir(parents=True, exist_ok=True)
    return _start(root, False, {"token": {"realm": realm, "service": service, "issuer": issuer,
                                          "rootcertbundle": str(rootcertbundle)}})


def _start(root: Path, tls: bool, auth: dict[str, object]) -> tuple[subprocess.Popen[bytes], str]:
    binary = find_registry_binary()
    assert binary, "docker-registry is not installed (run .ci/run)"
    port = free_port()
    http: dict[str, object] = {"addr": f"127.0.0.1:{port}"}
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem"), "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        http["tls"] = {"certificate": str(root / "cert.pem"), "key": str(root / "key.pem")}
    cfg = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
           "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
           "http": http, "auth": auth}
    (root / "config.yml").write_text(json.dumps(cfg))
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        assert proc.poll() is None, (root / "registry.log").read_text()
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"auth registry did not listen: {(root / 'registry.log').read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def auth_registries(base: Path) -> Iterator[Callable[[bool], str]]:
    """``make(tls) -> host``; every registry made is stopped on exit. Certs: ``base/auth-N/cert.pem``."""
    procs: list[subprocess.Popen[bytes]] = []

    def make(tls: bool) -> str:
        proc, host = start_auth_registry(base / f"auth-{len(procs)}", tls)
        procs.append(proc)
        return host

    try:
        yield make
    finally:
        for p in procs:
            stop(p)
