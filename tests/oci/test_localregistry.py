"""localai_ci.oci.localregistry: throwaway distribution registries on loopback (real processes)."""
from __future__ import annotations

import hashlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from localai_ci.errors import OperationError
from localai_ci.oci.localregistry import (
    STATE_FILE,
    TOKEN_HEADER,
    LocalRegistry,
    probe,
    render_config,
    start_registry,
    stop_registry_at,
)


def _request(host: str, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    name, _, port = host.rpartition(":")
    conn = http.client.HTTPConnection(name, int(port), timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def upload_blob(host: str, repo: str, data: bytes) -> str:
    """Monolithic blob upload through the distribution API; returns the digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = _request(host, "POST", f"/v2/{repo}/blobs/uploads/")
    assert start.status == 202, start.status
    location = start.getheader("Location") or ""
    location = location.split(host, 1)[-1]  # absolute URL -> path
    sep = "&" if "?" in location else "?"
    done = _request(host, "PUT", f"{location}{sep}digest={digest}", body=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert done.status == 201, done.status
    return digest


def blob_status(host: str, repo: str, digest: str) -> int:
    return _request(host, "HEAD", f"/v2/{repo}/blobs/{digest}").status


def test_config_is_loopback_filesystem_with_delete_and_no_auth(tmp_path: Path) -> None:
    cfg = yaml.safe_load(render_config(tmp_path, 5123, "tok"))
    assert cfg["http"]["addr"] == "127.0.0.1:5123"
    assert cfg["storage"]["filesystem"]["rootdirectory"] == str(tmp_path)
    assert cfg["storage"]["delete"]["enabled"] is True
    assert cfg["log"]["level"] == "warn"
    assert cfg["health"]["storagedriver"]["enabled"] is False
    assert "auth" not in cfg
    assert cfg["http"]["headers"][TOKEN_HEADER] == ["tok"]


def test_missing_binary_and_image_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # no registry:2 fallback either
    with pytest.raises(OperationError, match=r"apt-get install docker-registry"):
        start_registry(tmp_path / "root")


def test_attach_to_nothing_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OperationError, match=rf"127\.0\.0\.1:{port}.*CI_TEST_REGISTRIES"):
        LocalRegistry.attach(f"127.0.0.1:{port}", timeout=0.3)
    with pytest.raises(OperationError, match="127.0.0.1:PORT"):
        LocalRegistry.attach("example.com:5000")


@pytest.mark.registry
def test_start_answers_v2_with_its_own_token(registry_factory) -> None:  # type: ignore[no-untyped-def]
    reg = registry_factory()
    assert reg.host.startswith("127.0.0.1:") and reg.port > 0
    assert probe(reg.host) == (200, reg.token)
    assert reg.running and reg.pid
    state = json.loads((reg.root / STATE_FILE).read_text())
    assert state["host"] == reg.host and state["pid"] == reg.pid


@pytest.mark.registry
def test_parallel_starts_get_distinct_working_ports(tmp_path: Path) -> None:
    regs: list[LocalRegistry] = []
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            regs.append(start_registry(tmp_path / f"r{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert len({r.port for r in regs}) == 4
        for r in regs:
            assert probe(r.host) == (200, r.token)
    finally:
        for r in regs:
            r.stop()


@pytest.mark.registry
def test_explicit_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(OperationError, match=rf"127\.0\.0\.1:{port}: the port is in use"):
            start_registry(tmp_path / "r", port)


@pytest.mark.registry
def test_restart_keeps_port_and_data(registry_factory) -> None:  # type: ignore[no-untyped-def]
    reg = registry_factory()
    digest = upload_blob(reg.host, "keep/me", b"survives a restart")
    host = reg.host
    reg.stop()
    assert not reg.running
    assert probe(host)[0] == 0
    reg.start()
    assert reg.host == host
    assert blob_status(reg.host, "keep/me", digest) == 200
    assert blob_status(reg.host, "keep/me", "sha256:" + "0" * 64) == 404


@pytest.mark.registry
@pytest.mark.slow
def test_kill_then_clear_error_then_restart(registry_factory) -> None:  # type: ignore[no-untyped-def]
    reg = registry_factory()
    digest = upload_blob(reg.host, "fault/kill", b"before the kill")
    reg.kill()
    assert not reg.running
    assert probe(reg.host)[0] == 0
    with pytest.raises(OperationError, match=rf"registry {reg.host}: .*not running.*start"):
        reg.wait_ready(timeout=0.5)
    reg.start()
    assert blob_status(reg.host, "fault/kill", digest) == 200


@pytest.mark.registry
def test_attached_registry_cannot_be_stopped(registry_factory) -> None:  # type: ignore[no-untyped-def]
    reg = registry_factory()
    attached = LocalRegistry.attach(reg.host)
    with pytest.raises(OperationError, match="attached"):
        attached.stop()
    with pytest.raises(OperationError, match="attached"):
        attached.kill()
    assert probe(reg.host)[0] == 200


@pytest.mark.registry
def test_cli_serve_prints_host_and_pid_then_stop(tmp_path: Path) -> None:
    root = tmp_path / "cli"
    out = subprocess.run([sys.executable, "-m", "localai_ci.oci.localregistry", "serve", "--root", str(root)],
                         capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    host, pid = out.stdout.split()
    try:
        assert host.startswith("127.0.0.1:")
        assert probe(host)[0] == 200
        assert "stop --root" in out.stderr
    finally:
        stop = subprocess.run([sys.executable, "-m", "localai_ci.oci.localregistry", "stop", "--root", str(root)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert stop.returncode == 0, stop.stderr
    assert probe(host)[0] == 0
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]:
        assert time.monotonic() < deadline, f"registry pid {pid} still running after stop"
        time.sleep(0.05)


def test_stop_without_state_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="serve --root"):
        stop_registry_at(tmp_path)


# ---- who owns a registry: the run that started it --------------------------------------------------
RUN = """
import sys, time
from pathlib import Path
from localai_ci.oci.localregistry import start_registry_set
regs = start_registry_set(Path(sys.argv[1]), ("quay", "hub"), keep=False, log=lambda s: None)
print(" ".join(str(r.pid) for r in regs.owned), flush=True)
time.sleep(300)
"""


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def _a_run(parent: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """Another process that started the registries under ``parent`` for itself and is still running."""
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(parent)], stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip(), "the run printed no registry pids"
    return proc, [int(p) for p in line.split()]


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.mark.registry
def test_registries_of_a_killed_run_are_reaped_by_the_next_run_not_adopted(tmp_path: Path) -> None:
    from localai_ci.oci.localregistry import start_registry_set

    parent = tmp_path / "registries"
    proc, orphans = _a_run(parent)
    _kill(proc)  # a crash: nobody stops its registries
    assert not any(_gone(p, within=0.5) for p in orphans), "the registries should outlive the killed run"
    logs: list[str] = []
    regs = start_registry_set(parent, ("quay", "hub"), keep=False, log=logs.append)
    try:
        assert all(_gone(p) for p in orphans), logs
        assert sum("ended without stopping it" in line for line in logs) == 2, logs
        assert not any("reusing" in line for line in logs), logs
        assert {r.pid for r in regs.owned}.isdisjoint(orphans) and len(regs.owned) == 2
        assert all(probe(h)[0] == 200 for h in regs.hosts)
    finally:
        regs.stop()


@pytest.mark.registry
def test_registries_of_a_run_still_running_are_not_taken(tmp_path: Path) -> None:
    from localai_ci.oci.localregistry import start_registry_set

    parent = tmp_path / "registries"
    proc, pids = _a_run(parent)
    try:
        with pytest.raises(OperationError, match=f"belongs to the run with pid {proc.pid}, which is still running"):
            start_registry_set(parent, ("quay", "hub"), keep=False, log=lambda s: None)
        assert not any(_gone(p, within=0.2) for p in pids)  # untouched
    finally:
        _kill(proc)
        start_registry_set(parent, ("quay", "hub"), keep=False, log=lambda s: None).stop()  # reaps, then stops
    assert all(_gone(p) for p in pids)


@pytest.mark.registry
def test_kept_registries_are_adopted_and_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    from localai_ci.oci.localregistry import start_registry_set

    parent = tmp_path / "registries"
    kept = start_registry_set(parent, ("quay",), keep=True, log=lambda s: None)
    logs: list[str] = []
    again = start_registry_set(parent, ("quay",), keep=False, log=logs.append)
    assert again.hosts == kept.hosts and not again.owned and "reusing" in logs[0], logs
    subprocess.run([sys.executable, "-m", "localai_ci.oci.localregistry", "stop", "--root", str(parent / "quay")],
                   capture_output=True, timeout=60, check=True)
    # its recorded pid now names another process (pid reuse): that process is left alone
    other = subprocess.Popen(["sleep", "60"])
    try:
        state = json.loads((parent / "quay" / STATE_FILE).read_text())
        state.update(pid=other.pid, kept=False, owner={"pid": 1, "start": "0"})
        (parent / "quay" / STATE_FILE).write_text(json.dumps(state))
        fresh = start_registry_set(parent, ("quay",), keep=False, log=lambda s: None)
        fresh.stop()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait(timeout=30)
