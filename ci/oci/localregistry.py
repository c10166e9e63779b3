"""Throwaway OCI registries on loopback: the CNCF distribution registry as a child process.

Used by the tests, by ``.ci/run`` and by ``invoke pipeline`` (its embedded default).

- :func:`start_registry` runs ``docker-registry`` (Debian) or ``registry`` (upstream) from
  ``PATH`` with a generated config: ``127.0.0.1:PORT``, filesystem storage under ``root``,
  deletes enabled, no auth, log level warn, storage health checks off. When neither binary
  is on ``PATH`` it falls back to a ``registry:2`` container (host network) through the
  Docker SDK, but only when that image is already present locally (nothing is pulled).
- Port 0 picks a free port. Picking is race-safe for parallel use: every instance sends a
  random token in a response header, readiness requires that token (so a port taken in the
  meantime by another registry is never mistaken for ours), and a lost race retries on a
  new port.
- :class:`LocalRegistry` can be stopped, SIGKILLed (fault tests) and started again on the
  same port and storage; it is a context manager.

Files kept in ``root``: ``config.yml``, ``registry.log`` and ``localregistry.json`` (host,
pid or container id; used by ``python -m localai_ci.oci.localregistry stop``). The registry's own data
lives under ``root/docker/registry/v2``.

CLI (for ``.ci/run`` and ``invoke pipeline --keep``)::

    python -m localai_ci.oci.localregistry serve --root DIR [--port N]   # prints "HOST PID", returns
    python -m localai_ci.oci.localregistry stop --root DIR
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import docker  # type: ignore[import-untyped,unused-ignore]

from ..errors import CiError, OperationError
from ..output.console import say

BINARIES = ("docker-registry", "registry")
CONTAINER_IMAGE = "registry:2"
TOKEN_HEADER = "X-Localregistry-Token"
STATE_FILE = "localregistry.json"
CONFIG_FILE = "config.yml"
LOG_FILE = "registry.log"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 8
INSTALL_HINT = ("install the distribution registry (Debian/Ubuntu: apt-get install docker-registry; "
                "elsewhere put its 'registry' binary on PATH), or load a registry:2 image into the engine")

#: this module's import name (``python -m`` it to serve or stop a registry that outlives the caller)
_MODULE = __spec__.name if __spec__ is not None else __name__


def find_registry_binary() -> str | None:
    """Path of ``docker-registry`` or ``registry`` on PATH, else None."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    """A loopback TCP port free right now (the caller must still handle losing it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_config(root: Path, port: int, token: str) -> str:
    """The registry config (JSON is valid YAML): loopback, filesystem storage, no auth."""
    cfg = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": token,
            "headers": {TOKEN_HEADER: [token], "X-Content-Type-Options": ["nosniff"]},
        },
        "health": {"storagedriver": {"enabled": False}},
    }
    return json.dumps(cfg, indent=2) + "\n"


def probe(host: str, timeout: float = 2.0) -> tuple[int, str]:
    """``GET http://HOST/v2/`` without proxies: (status, token header); (0, error text) on failure."""
    name, _, port = host.rpartition(":")
    conn = http.client.HTTPConnection(name, int(port), timeout=timeout)
    try:
        conn.request("GET", "/v2/")
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader(TOKEN_HEADER) or ""
    except OSError as exc:
        return 0, str(exc) or type(exc).__name__
    finally:
        conn.close()


def process_start(pid: int) -> str | None:
    """When ``pid`` started (``/proc/PID/stat`` field 22, clock ticks since boot): with the pid, what names
    one process even after its pid is reused; None when it does not run (or no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie (PID 1 in a container may not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class LocalRegistry:
    """One throwaway registry on ``127.0.0.1``; see the module docstring."""

    root: Path | None
    port: int
    binary: str | None = None  # None: the registry:2 container fallback (or an attached one)
    client: Any = None  # Docker SDK client for the container fallback
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    owned: bool = True  # False for a registry attached by host (someone else stops it)
    kept: bool = False  # meant to outlive the run that started it (serve, --keep): adopted by a later run
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _container: Any = field(default=None, repr=False)
    _detached_pid: int | None = field(default=None, repr=False)

    # ---- identity -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, usable in image references (``HOST/repo:tag``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int | None:
        """Process id of the registry binary (None for a container or an attached registry)."""
        if self._proc is not None:
            return self._proc.pid
        return self._detached_pid

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        if self._detached_pid is not None:
            return _pid_alive(self._detached_pid)
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.reload()
                return bool(self._container.status == "running")
            return False
        return not self.owned and probe(self.host)[0] == 200

    @classmethod
    def attach(cls, host: str, timeout: float = 5.0) -> LocalRegistry:
        """A registry someone else runs (e.g. ``CI_TEST_REGISTRIES``); cannot be stopped from here."""
        name, sep, port = host.rpartition(":")
        if not sep or name not in ("127.0.0.1", "localhost") or not port.isdigit():
            raise OperationError(f"registry {host!r} is not of the form 127.0.0.1:PORT")
        reg = cls(root=None, port=int(port), owned=False, token="")
        reg.wait_ready(timeout)
        return reg

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> LocalRegistry:
        """Start (or restart) on the same port and storage; wait until ``GET /v2/`` answers."""
        if not self.owned:
            raise OperationError(f"registry {self.host} was attached, not started here; start it where it runs")
        if self.running:
            return self
        assert self.root is not None
        self.root.mkdir(parents=True, exist_ok=True)
        if self.binary:
            self._spawn()
        else:
            self._run_container()
        self.wait_ready(READY_TIMEOUT)
        self._write_state()
        return self

    def _spawn(self, detach: bool = False) -> None:
        assert self.root is not None and self.binary
        config = self.root / CONFIG_FILE
        config.write_text(render_config(self.root, self.port, self.token))
        with open(self.root / LOG_FILE, "ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=detach, close_fds=True)

    def _run_container(self) -> None:
        assert self.root is not None
        # the registry reads the generated config (a header list cannot be set through env)
        (self.root / CONFIG_FILE).write_text(render_config(Path("/var/lib/registry"), self.port, self.token))
        try:
            self._container = self.client.containers.run(
                CONTAINER_IMAGE, ["/etc/docker/registry/config.yml"], detach=True, network_mode="host",
                entrypoint=["registry", "serve"], name=f"ci-localregistry-{self.port}-{self.token}",
                volumes={str(self.root): {"bind": "/var/lib/registry", "mode": "rw"},
                         str(self.root / CONFIG_FILE): {"bind": "/etc/docker/registry/config.yml", "mode": "ro"}},
                labels={"ci.localregistry": "1"})
        except Exception as exc:  # docker.errors.* : keep the SDK out of the import graph
            raise OperationError(f"starting a {CONTAINER_IMAGE} container on {self.host}: {exc}") from exc

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until ``GET /v2/`` answers 200 with our token; OperationError saying why not."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            status, info = probe(self.host, timeout=1.0)
            if status == 200 and (not self.token or info == self.token):
                return
            if status == 200:
                last = "another registry answers on this port"
            elif status:
                last = f"HTTP {status}"
            else:
                last = info
            exited = self._exit_status()
            if exited is not None or time.monotonic() >= deadline:
                raise OperationError(self._not_ready_message(last, exited, timeout))
            if self.owned and self._proc is None and self._detached_pid is None and self._container is None:
                raise OperationError(self._not_ready_message(last, None, 0))
            time.sleep(0.05)

    def _exit_status(self) -> int | None:
        if self._proc is not None:
            return self._proc.poll()
        if self._detached_pid is not None and not _pid_alive(self._detached_pid):
            return -1
        return None

    def _not_ready_message(self, last: str, exited: int | None, timeout: float) -> str:
        what = f"registry {self.host}"
        if exited is not None:
            why = f"the registry process exited with status {exited}"
        elif not self.owned:
            why = "it is not answering"
        elif timeout == 0:
            why = "it is not running (stopped or killed)"
        else:
            why = f"no answer within {timeout:g}s"
        tail = self.log_tail()
        msg = f"{what}: GET /v2/ failed ({last}); {why}"
        if tail:
            msg += f"; registry log: {tail}"
        if self.owned:
            msg += "; restart it with LocalRegistry.start() or check the port and the log"
        else:
            msg += "; start the registries (see .ci/run) or unset CI_TEST_REGISTRIES"
        return msg

    def log_tail(self, lines: int = 5) -> str:
        if self.root is None:
            return ""
        with contextlib.suppress(OSError):
            text = (self.root / LOG_FILE).read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
        elif self._detached_pid is not None and _pid_alive(self._detached_pid):
            os.kill(self._detached_pid, sig)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.1)
                    return True
            elif self._detached_pid is not None:
                if not _pid_alive(self._detached_pid):
                    return True
                time.sleep(0.05)
            else:
                return True
        return False

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after a bound); storage is kept. Idempotent."""
        self._require_owned("stop")
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.stop(timeout=int(STOP_TIMEOUT))
            with contextlib.suppress(Exception):
                self._container.remove(force=True)
            self._container = None
            return
        self._signal(signal.SIGTERM)
        if not self._wait_exit(STOP_TIMEOUT):
            self._signal(signal.SIGKILL)
            self._wait_exit(STOP_TIMEOUT)
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL the registry (fault injection); ``start()`` brings it back on the same storage."""
        self._require_owned("kill")
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.kill()
            with contextlib.suppress(Exception):
                self._container.remove(force=True)
            self._container = None
            return
        self._signal(signal.SIGKILL)
        self._wait_exit(STOP_TIMEOUT)
        self._forget_process()

    def _forget_process(self) -> None:
        self._proc = None
        self._detached_pid = None

    def _require_owned(self, verb: str) -> None:
        if not self.owned:
            raise OperationError(f"cannot {verb} registry {self.host}: it was attached, not started here")

    def _write_state(self) -> None:
        """``localregistry.json``: where it listens, its process, and who owns it -- the run (this process,
        with its start time) for a registry that dies with its run, or nobody (``kept``) for one that
        outlives it; a later run reaps one whose owner is gone (:func:`start_registry_set`)."""
        if self.root is None:
            return
        me = os.getpid()
        state = {"host": self.host, "pid": self.pid, "container": getattr(self._container, "id", None),
                 "kept": self.kept, "owner": None if self.kept else {"pid": me, "start": process_start(me)}}
        tmp = self.root / f".{STATE_FILE}.{me}.tmp"
        tmp.write_text(json.dumps(state) + "\n")
        os.replace(tmp, self.root / STATE_FILE)

    def __enter__(self) -> LocalRegistry:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.owned:
            self.stop()


def unix_socket_present(docker_host: str) -> bool:
    """False when DOCKER_HOST (or the default) names a unix socket that does not exist.

    Checked before creating a Docker SDK client: a failed unix connect in the SDK leaks its
    socket (a ResourceWarning, an error under ``-W error``).
    """
    host = docker_host or "unix:///var/run/docker.sock"
    return not host.startswith("unix://") or Path(host[len("unix://"):]).exists()


def _container_client(client: Any) -> Any:
    """The Docker SDK client to run ``registry:2`` with, or None when unusable."""
    own = client is None
    if own and not unix_socket_present(os.environ.get("DOCKER_HOST", "")):
        return None
    try:
        if own:
            client = docker.from_env()
        client.ping()
        client.images.get(CONTAINER_IMAGE)
        return client
    except Exception:  # no engine, or no registry:2 image (nothing is ever pulled)
        if own and client is not None:
            client.close()
        return None


def start_registry(root: Path, port: int = 0, *, client: Any = None, detach: bool = False,
                   kept: bool = False) -> LocalRegistry:
    """Start a throwaway registry storing under ``root`` on ``127.0.0.1:port`` (0 = a free port).

    ``client`` is the Docker SDK client for the ``registry:2`` fallback (``docker.from_env()``
    when None). ``detach`` puts the process in its own session so it outlives the caller
    (the CLI uses it); ``kept`` records that it is meant to (a later run adopts it instead of reaping
    it). Raises OperationError saying what to install when nothing can run it.
    """
    root = Path(root).resolve()
    binary = find_registry_binary()
    fallback = None
    if binary is None:
        fallback = _container_client(client)
        if fallback is None:
            raise OperationError(
                f"cannot start a local registry: neither {' nor '.join(BINARIES)} is on PATH and no "
                f"{CONTAINER_IMAGE} image is present in the Docker engine; {INSTALL_HINT}")
    attempts = 1 if port else PORT_ATTEMPTS
    last: OperationError | None = None
    for _ in range(attempts):
        reg = LocalRegistry(root=root, port=port or free_port(), binary=binary, client=fallback, kept=kept)
        try:
            root.mkdir(parents=True, exist_ok=True)
            if binary:
                reg._spawn(detach=detach)
            else:
                reg._run_container()
            reg.wait_ready(READY_TIMEOUT)
            reg._write_state()
            return reg
        except OperationError as exc:
            last = exc
            with contextlib.suppress(CiError):
                reg.kill()
            if "address already in use" not in str(exc) and "another registry" not in str(exc):
                break
    assert last is not None
    if port and ("address already in use" in str(last) or "another registry" in str(last)):
        raise OperationError(f"starting a registry on 127.0.0.1:{port}: the port is in use; "
                             f"stop what listens there or pass port 0 for a free one ({last})") from last
    raise OperationError(f"starting a registry in {root}: {last}") from last


def stop_registry_at(root: Path) -> str:
    """Stop what ``serve`` started in ``root`` (reads its state file); returns the host."""
    state_path = Path(root) / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError) as exc:
        raise OperationError(f"no registry state in {state_path} ({exc}); was it started with 'serve --root'?") from exc
    host = str(state.get("host", ""))
    port = int(host.rpartition(":")[2] or 0)
    reg = LocalRegistry(root=Path(root), port=port, binary=find_registry_binary())
    if state.get("pid"):
        reg._detached_pid = int(state["pid"])
    elif state.get("container"):
        with contextlib.suppress(Exception):
            reg._container = docker.from_env().containers.get(state["container"])
    reg.stop()
    return host


# ---- a set of named registries under one directory, kept across runs (invoke pipeline's) ------------
def previous_host(root: Path) -> str | None:
    """The host the registry stored in ``root`` had last time (its state file), if any."""
    try:
        host = str(json.loads((root / STATE_FILE).read_text()).get("host", ""))
    except (OSError, ValueError, AttributeError):
        return None
    return host if host.startswith("127.0.0.1:") and host.rpartition(":")[2].isdigit() else None


def _previous_port(root: Path) -> int:
    host = previous_host(root)
    return int(host.rpartition(":")[2]) if host else 0


def _serves_root(pid: int, root: Path) -> bool:
    """True when process ``pid`` is the registry serving ``root`` (its command line names the root's
    config): a recorded pid that now belongs to another process is never signalled."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(str(root / CONFIG_FILE)) in args


def _owner_alive(owner: object) -> int | None:
    """The pid of the run that owns a registry, when that run still runs (pid and start time match)."""
    if not isinstance(owner, dict):
        return None
    pid, start = owner.get("pid"), owner.get("start")
    if not isinstance(pid, int) or pid <= 0 or not _pid_alive(pid):
        return None
    return pid if start is None or process_start(pid) == start else None


def adopt_or_reap(root: Path, name: str, log: Callable[[str], None]) -> str | None:
    """What runs in ``root`` from an earlier run: the host of a registry to reuse (kept by an earlier
    ``--keep`` run or ``serve``: alive, its process the one recorded, answering), else None -- after
    stopping a registry whose run ended without stopping it (killed, crashed: an orphan nobody would
    stop). A registry whose owning run still runs is not taken: OperationError naming that run."""
    try:
        state = json.loads((root / STATE_FILE).read_text())
        host, pid = str(state.get("host", "")), state.get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(pid, int) or pid <= 0 or not _pid_alive(pid) or not _serves_root(pid, root):
        return None  # nothing of it runs (its recorded pid is gone, or is another process now)
    owner = _owner_alive(state.get("owner"))
    if owner is not None and owner != os.getpid():
        raise OperationError(f"registry {name} ({host}, storage {root}) belongs to the run with pid {owner}, which "
                             "is still running; wait for it to finish, or give this run its own --root/--state-dir")
    kept = state.get("kept", True)  # state files of before ownership was recorded: kept, as they were taken
    if kept and probe(host, timeout=1.0)[0] == 200:
        log(f"registry {name}: reusing {host} (kept by an earlier --keep run)")
        return host
    why = "it does not answer" if kept else \
        f"the run that started it (pid {(state.get('owner') or {}).get('pid', '?')}) ended without stopping it"
    log(f"registry {name}: stopping {host} (pid {pid}) left in {root}: {why}")
    orphan = LocalRegistry(root=root, port=int(host.rpartition(":")[2] or 0), binary=find_registry_binary())
    orphan._detached_pid = pid
    orphan.stop()
    return None


@dataclass
class RegistrySet:
    """Registries stored under ``<parent>/<name>``, one per name, for one run."""

    roots: tuple[Path, ...]
    hosts: tuple[str, ...]
    owned: list[LocalRegistry]  # started in-process (stopped by stop())
    detached: list[Path]  # roots of registries running detached (kept now, or by an earlier run)

    def stop(self) -> None:
        """Stop what this run started for itself; kept registries stay up (their owner stops them)."""
        for reg in self.owned:
            reg.stop()

    def how_to_reach(self, example_repository: str) -> str:
        lines = ["registries kept running:"]
        lines += [f"  {h}  (storage {r})" for h, r in zip(self.hosts, self.roots)]
        lines.append(f"  e.g. docker buildx imagetools inspect {self.hosts[0]}/{example_repository}:TAG")
        lines.append("stop them with:")
        lines += [f"  {sys.executable} -m {_MODULE} stop --root {r}" for r in self.roots]
        return "\n".join(lines)


def planned_hosts(parent: Path, names: tuple[str, ...]) -> tuple[str, ...]:
    """Where :func:`start_registry_set` would put each registry (a dry run starts nothing): the
    previous port, else a free one."""
    return tuple(previous_host(parent / n) or f"127.0.0.1:{free_port()}" for n in names)


def _serve_detached(root: Path, port: int) -> str:
    """Start a registry that outlives this process (``python -m localai_ci.oci.localregistry serve``); its host."""
    done = subprocess.run([sys.executable, "-m", _MODULE, "serve", "--root", str(root), "--port", str(port)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    if done.returncode != 0 or not done.stdout.split():
        raise OperationError(f"starting a kept registry in {root}: {done.stderr.strip() or 'no output'}")
    return done.stdout.split()[0]


def start_registry_set(parent: Path, names: tuple[str, ...], *, keep: bool,
                       log: Callable[[str], None]) -> RegistrySet:
    """Start (or reuse one kept by an earlier ``keep`` run) a registry per name under ``parent``, each on
    its previous port where free, so a second run finds what the first published. ``keep``: they
    outlive this process (stopped with ``python -m localai_ci.oci.localregistry stop``); otherwise this
    run owns them, stops them at its end, and a later run stops them should this one be killed first
    (:func:`adopt_or_reap`)."""
    regs = RegistrySet(roots=(), hosts=(), owned=[], detached=[])
    roots, hosts = [], []
    try:
        for name in names:
            root = (parent / name).resolve()
            roots.append(root)
            kept = adopt_or_reap(root, name, log)
            if kept:
                hosts.append(kept)
                regs.detached.append(root)
                continue
            port = _previous_port(root)
            for attempt in ((port, 0) if port else (0,)):
                try:
                    if keep:
                        host = _serve_detached(root, attempt)
                        regs.detached.append(root)
                    else:
                        reg = start_registry(root, attempt)
                        regs.owned.append(reg)
                        host = reg.host
                    break
                except OperationError as exc:
                    if attempt == 0:
                        raise
                    log(f"registry {name}: port {attempt} unavailable ({exc}); taking a free port "
                        "(legs published on the old port are rebuilt once)")
            hosts.append(host)
            log(f"registry {name}: {host} (storage {root})")
    except BaseException:
        regs.stop()
        raise
    regs.roots, regs.hosts = tuple(roots), tuple(hosts)
    return regs


def main(argv: list[str] | None = None) -> int:
    """``serve`` starts a detached registry and prints ``HOST PID``; ``stop`` stops it."""
    ap = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="start a registry in the background; print 'HOST PID' and return")
    s.add_argument("--root", required=True, type=Path, help="storage directory (created)")
    s.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    t = sub.add_parser("stop", help="stop the registry that 'serve' started in --root")
    t.add_argument("--root", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "serve":
            reg = start_registry(args.root, args.port, detach=True, kept=True)
            pid = reg.pid if reg.pid is not None else getattr(reg._container, "id", "-")
            say(f"{reg.host} {pid}", flush=True)
            say(f"registry {reg.host} serving {reg.root}; stop it with: "
                  f"python -m {_MODULE} stop --root {reg.root}", file=sys.stderr)
            if reg._proc is not None:  # detached on purpose: keep Popen from warning that it still runs
                reg._proc.returncode = 0
        else:
            host = stop_registry_at(args.root)
            say(f"registry {host} stopped", file=sys.stderr)
    except CiError as exc:
        say(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
