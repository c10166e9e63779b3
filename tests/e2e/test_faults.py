"""Publish and merge under real faults: registries behind a fault-injecting proxy, killed
registries, garbage-collected children, a registry down during a merge, an engine stopped
mid-build.

Everything is real (engine, distribution registries, sockets); only the retry policy is made
fast (small delays, short timeouts) so each test takes seconds. The verbs take a client
factory, which is where the policy goes (the command line has no knob for it yet).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from localai_ci.github.artifacts import write_digest_file
from localai_ci.oci.blobcache import BlobCache
from localai_ci.cli import main
from localai_ci.docker.engine import Engine
from localai_ci.errors import CiError, EngineError, OperationError
from localai_ci.settings import family_config
from localai_ci.oci.localregistry import LocalRegistry
from localai_ci.matrix.model import load_matrix
from localai_ci.merge.model import MergeOptions, Outcome
from localai_ci.merge.render import format_result
from localai_ci.merge.run import FamilySetup, merge_all, merge_suffix
from localai_ci.matrix.naming import Family, LegKey, keepalive_tag
from localai_ci.publish.upload import PushTarget, push_image
from localai_ci.oci.reference import ImageName
from localai_ci.oci.client import RegistryClient
from localai_ci.oci.retry import RetryPolicy
from localai_ci.matrix.tags import TagSource
from tests.support.faultproxy import FaultProxy, Faults
from tests.support.oci_images import client, push_image as push_tiny, tags_of, write_matrix
from tests.support.served import Served

pytestmark = [pytest.mark.registry, pytest.mark.slow]

SHA = "89abcdef0123456789abcdef0123456789abcdef"
SOURCE = TagSource(event="push", ref="refs/heads/master", sha=SHA)
TAGS = ("master-cpu-f", "sha-89abcde-cpu-f")
# fast but patient: 25% faults need a few retries per request, never 8 in a row
POLICY = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05, deadline=30.0, request_timeout=2.0)
SLOW_POLICY = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05, deadline=30.0, request_timeout=0.4)
FAIL_FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.2, deadline=5.0, request_timeout=2.0)
BOUND = 15.0  # seconds: a total failure is reported within this


# ---- helpers ---------------------------------------------------------------------------------
class Counted:
    """Client factories with a fixed retry policy that remember every client they made."""

    def __init__(self, policy: RetryPolicy, client_cls: type[RegistryClient] = RegistryClient) -> None:
        self.policy = policy
        self.cls = client_cls
        self.made: list[RegistryClient] = []
        self.messages: list[str] = []

    def __call__(self, img: ImageName, plain_http: Callable[[str], bool]) -> RegistryClient:
        """A ``localai_ci.oci.client.ClientFactory``: publish and merge take the same one."""
        c = self.cls(img, plain_http=plain_http(img.registry), retry=self.policy, on_retry=self.messages.append,
                     plain_http_policy=plain_http)
        self.made.append(c)
        return c

    publish = merge = __call__

    @property
    def retries(self) -> int:
        return sum(c.retries for c in self.made)


@contextlib.contextmanager
def proxies(*hosts: str, faults: Faults = Faults(), seed: int = 7) -> Iterator[list[FaultProxy]]:
    ps = [FaultProxy(h, faults, seed=seed + i, lifetime=120, io_timeout=10).start() for i, h in enumerate(hosts)]
    try:
        yield ps
    finally:
        for p in ps:
            p.stop()


def fault(kind: str) -> Faults:
    """25% of requests get ``kind``; slow responses outlast the client's timeout (a retry)."""
    if kind == "slow":
        return Faults(slow=0.25, slow_seconds=SLOW_POLICY.request_timeout * 2)
    if kind == "throttle":
        return Faults(throttle=0.25, retry_after="1")
    return Faults(**{kind: 0.25})


def leg_image(base_image: Callable[..., str], unique: str, arch: str, payload: int = 64 * 1024) -> str:
    return base_image(f"{unique}-{arch}:leg", arch, payload_bytes=payload)


def merge_setup(images: list[str], matrix: Path) -> FamilySetup:
    return FamilySetup(config=family_config(Family.BACKENDS, images=",".join(images)),
                       matrix=load_matrix(matrix, Family.BACKENDS))


def two_legs(tmp: Path, hosts: list[str], repo: str, suffix: str = "-cpu-f") -> tuple[Path, Path, list[str]]:
    """Two tiny legs pushed by digest to every registry, their digest files and the matrix."""
    images = [f"{h}/{repo}" for h in hosts]
    digests = tmp / "digests"
    children = []
    for ptag in ("amd64", "arm64"):
        d = push_tiny(images, f"linux/{ptag}", f"{repo}{suffix}{ptag}")
        write_digest_file(digests, LegKey(Family.BACKENDS, suffix, ptag), d.digest)
        children.append(d.digest)
    return digests, write_matrix(tmp / "matrix.yml", [(suffix, "amd64"), (suffix, "arm64")]), children


def list_children(image: str, tag: str) -> set[str]:
    with client(image) as c:
        got = c.get_manifest(tag)
    assert got is not None, f"{image}:{tag} does not resolve"
    return {m["digest"] for m in json.loads(got[0])["manifests"]}


# ---- >= 20% faults: publish and merge succeed, with retries ------------------------------------
@pytest.mark.engine
@pytest.mark.parametrize("kind", ["error", "throttle", "reset", "slow"])
def test_publish_survives_25_percent_faults(kind: str, engine: Any, registries: Any, base_image: Any,
                                            unique: str, tmp_path: Path) -> None:
    image = leg_image(base_image, unique, "amd64")
    with proxies(*(r.host for r in registries), faults=fault(kind)) as ps:
        targets = [PushTarget(ImageName(p.host, f"{unique}/backends"), plain_http=True) for p in ps]
        made = Counted(SLOW_POLICY if kind == "slow" else POLICY)
        with BlobCache(tmp_path / "cache") as cache:
            report = push_image(Engine(engine), image, targets, cache=cache, client_factory=made.publish)
        injected = sum(p.injected[kind] for p in ps)
    assert injected > 0
    assert report.retries > 0 and report.retries == made.retries, made.messages
    assert all(kind in m or "HTTP" in m or "Error" in m for m in made.messages)
    for r in registries:  # the real registries (not the proxies) hold the manifest by digest
        with client(f"{r.host}/{unique}/backends") as c:
            assert c.head_manifest(report.digest) is not None


@pytest.mark.parametrize("kind", ["error", "throttle", "reset", "slow"])
def test_merge_survives_25_percent_faults(kind: str, registries: Any, unique: str, tmp_path: Path) -> None:
    hosts = [r.host for r in registries]
    digests, matrix, children = two_legs(tmp_path, hosts, f"{unique}/backends")
    with proxies(*hosts, faults=fault(kind)) as ps:
        made = Counted(SLOW_POLICY if kind == "slow" else POLICY)
        setup = merge_setup([f"{p.host}/{unique}/backends" for p in ps], matrix)
        result = merge_suffix(digests, Family.BACKENDS, "-cpu-f", setup, MergeOptions(tag_source=SOURCE),
                              factory=made.merge)
        injected = sum(p.injected[kind] for p in ps)
    assert result.outcome is Outcome.MERGED and result.tags == TAGS
    assert injected > 0 and made.retries > 0, made.messages
    assert result.retries == made.retries  # the merge reports how many retries it needed
    assert f"{result.retries} registry request(s) retried" in format_result(result)
    for h in hosts:
        for t in TAGS:
            assert list_children(f"{h}/{unique}/backends", t) == set(children)


# ---- 100% faults: bounded failure naming the registry and the last status ------------------------
TOTAL = [("error", r"HTTP 50[0234]"), ("throttle", r"HTTP 429"), ("reset", r"Connection|reset|aborted|cut off"),
         ("down", r"refused|Connection")]


@pytest.mark.engine
@pytest.mark.parametrize(("kind", "status"), TOTAL, ids=[k for k, _ in TOTAL])
def test_publish_total_failure_is_bounded_and_named(kind: str, status: str, engine: Any, registries: Any,
                                                    base_image: Any, unique: str, tmp_path: Path) -> None:
    image = leg_image(base_image, unique, "amd64")
    with proxies(registries[0].host, faults=Faults(retry_after="3600")) as (bad,):
        if kind == "down":
            bad.set_down(True)
        else:
            bad.fail_all(kind)
        targets = [PushTarget(ImageName(bad.host, f"{unique}/backends"), plain_http=True),
                   PushTarget(ImageName(registries[1].host, f"{unique}/backends"), plain_http=True)]
        t0 = time.monotonic()
        with BlobCache(tmp_path / "cache") as cache, pytest.raises(OperationError) as err:
            push_image(Engine(engine), image, targets, cache=cache, client_factory=Counted(FAIL_FAST).publish)
        took = time.monotonic() - t0
    msg = str(err.value)
    assert took < BOUND, f"{took:.1f}s: {msg}"  # Retry-After: 3600 is capped by the policy
    assert bad.host in msg and "failed after 3 attempt(s)" in msg and "no manifest was pushed" in msg
    assert _re(status, msg), msg
    with client(f"{registries[1].host}/{unique}/backends") as healthy:
        assert healthy.list_tags() == []  # the healthy registry got blobs at most, never a manifest


@pytest.mark.parametrize(("kind", "status"), TOTAL[:2] + TOTAL[3:], ids=["error", "throttle", "down"])
def test_merge_total_failure_is_bounded_and_named(kind: str, status: str, registries: Any, unique: str,
                                                  tmp_path: Path) -> None:
    hosts = [r.host for r in registries]
    digests, matrix, _ = two_legs(tmp_path, hosts, f"{unique}/backends")
    with proxies(*hosts, faults=Faults(retry_after="3600")) as ps:
        if kind == "down":
            ps[1].set_down(True)
        else:
            ps[1].fail_all(kind)
        setup = merge_setup([f"{p.host}/{unique}/backends" for p in ps], matrix)
        t0 = time.monotonic()
        with pytest.raises(CiError) as err:
            merge_suffix(digests, Family.BACKENDS, "-cpu-f", setup, MergeOptions(tag_source=SOURCE),
                         factory=Counted(FAIL_FAST).merge)
        took = time.monotonic() - t0
    msg = str(err.value)
    assert took < BOUND and err.value.exit_code == 1, msg
    assert ps[1].host in msg and _re(status, msg) and "nothing was written" in msg, msg
    assert tags_of(f"{hosts[0]}/{unique}/backends") == []  # all or nothing: the healthy one is untouched


def _re(pattern: str, text: str) -> bool:
    import re
    return re.search(pattern, text) is not None


# ---- a registry killed in the middle of a publish ------------------------------------------------
class _KillAfter:
    """A blob stream that SIGKILLs a registry once ``after`` bytes were read from it."""

    def __init__(self, stream: BinaryIO, after: int, kill: Callable[[], None]) -> None:
        self.stream, self.after, self.kill, self.read_bytes = stream, after, kill, 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.read_bytes += len(data)
        if self.read_bytes >= self.after:
            self.kill()
        return data

    def __enter__(self) -> _KillAfter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def registry_revisions(reg: LocalRegistry) -> dict[str, set[str]]:
    """Manifest digests stored per repository, read from the registry's storage."""
    assert reg.root is not None
    base = reg.root / "docker" / "registry" / "v2" / "repositories"
    out: dict[str, set[str]] = {}
    for revs in base.glob("**/_manifests/revisions/sha256"):
        repo = str(revs.parent.parent.parent.relative_to(base))
        out[repo] = {"sha256:" + p.name for p in revs.iterdir() if (p / "link").exists()}
    return out


def assert_no_dangling_manifest(reg: LocalRegistry) -> None:
    """No stored manifest references a blob the repository does not serve."""
    for repo, digests in registry_revisions(reg).items():
        with client(f"{reg.host}/{repo}") as c:
            for d in digests:
                got = c.get_manifest(d)
                assert got is not None
                body = json.loads(got[0])
                for blob in [body.get("config") or {}] + list(body.get("layers") or []):
                    if blob:
                        assert c.blob_exists(blob["digest"]), f"{repo}@{d} references missing {blob['digest']}"


@pytest.mark.engine
def test_registry_killed_mid_publish_then_rerun_uploads_only_what_is_missing(
        engine: Any, registries: Any, registry_factory: Any, base_image: Any, unique: str, tmp_path: Path) -> None:
    victim: LocalRegistry = registry_factory()
    image = leg_image(base_image, unique, "amd64", payload=8 << 20)  # one 8 MiB layer + the config
    repo = f"{unique}/backends"
    targets = [PushTarget(ImageName(victim.host, repo), plain_http=True),
               PushTarget(ImageName(registries[0].host, repo), plain_http=True)]
    killed: list[float] = []

    def kill() -> None:
        if not killed:
            killed.append(time.monotonic())
            victim.kill()

    class KillMidUpload(RegistryClient):
        def push_blob(self, digest: str, size: int, open_stream: Callable[[], BinaryIO]) -> bool:
            if self.registry == victim.host and size >= 4 << 20:
                return super().push_blob(digest, size, lambda: _KillAfter(open_stream(), 1 << 20, kill))  # type: ignore[arg-type,return-value]
            return super().push_blob(digest, size, open_stream)

    cache_dir = tmp_path / "cache"
    with BlobCache(cache_dir) as cache, pytest.raises(OperationError) as err:
        push_image(Engine(engine), image, targets, cache=cache, client_factory=Counted(FAIL_FAST, KillMidUpload).publish)
    msg = str(err.value)
    assert killed and victim.host in msg and "no manifest was pushed" in msg, msg
    assert registry_revisions(victim) == {} or all(not v for v in registry_revisions(victim).values())

    victim.start()  # same port, same storage
    assert_no_dangling_manifest(victim)
    info = Engine(engine).inspect(image)
    with BlobCache(cache_dir) as cache:
        # what the killed publish staged: its manifest, config and layers are all in the blob cache (the image
        # id names the config on the classic store but the engine's manifest on the containerd store)
        rec = cache.image_record(info.id)
        assert rec is not None, "the killed publish did not record what it staged"
        manifest = json.loads(cache.read_blob(rec.manifest, 1 << 20) or b"{}")
        blobs = [cache.get_blob(d["digest"]) for d in [manifest["config"], *manifest["layers"]]]
        assert len(blobs) == 1 + len(info.diff_ids) and all(b is not None for b in blobs), manifest
        with client(f"{victim.host}/{repo}") as c:
            missing = [b for b in blobs if b is not None and not c.blob_exists(b.digest)]
        again = push_image(Engine(engine), image, targets, cache=cache, client_factory=Counted(POLICY).publish)
    by_host = {t.image.registry: t for t in again.targets}
    assert missing, "the killed upload cannot have completed"
    assert by_host[victim.host].bytes_uploaded == sum(b.size for b in missing)
    assert by_host[victim.host].uploaded == len(missing)
    assert by_host[registries[0].host].bytes_uploaded == 0  # everything was already there
    assert_no_dangling_manifest(victim)
    for host in (victim.host, registries[0].host):
        with client(f"{host}/{repo}") as c:
            assert c.head_manifest(again.digest) is not None


# ---- an untagged child garbage-collected between build and merge -------------------------------------
def gc_untagged(reg: LocalRegistry) -> list[str]:
    """What Quay's GC does: delete every manifest that no tag points at. Returns what it deleted."""
    assert reg.root is not None
    base = reg.root / "docker" / "registry" / "v2" / "repositories"
    deleted = []
    for repo, digests in registry_revisions(reg).items():
        tags_dir = base / repo / "_manifests" / "tags"
        tagged = {(t / "current" / "link").read_text().strip() for t in tags_dir.iterdir()} if tags_dir.exists() else set()
        with client(f"{reg.host}/{repo}") as c:
            for d in sorted(digests - tagged):
                c.delete_manifest(d)
                deleted.append(f"{repo}@{d}")
    return deleted


@pytest.mark.parametrize("anchor", [False, True], ids=["no-anchor-preflight-fails", "anchor-survives-gc"])
def test_gc_of_untagged_child_between_build_and_merge(anchor: bool, registry_factory: Any, unique: str,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regs = [registry_factory(), registry_factory()]
    repo, run_id = f"{unique}/backends", "777"
    images = [f"{r.host}/{repo}" for r in regs]
    digests, matrix, children = two_legs(tmp_path, [r.host for r in regs], repo)
    cache = f"{regs[1].host}/{unique}/ci-cache"
    if anchor:  # what build-backend --anchor --run-id 777 adds: the leg, tagged keepalive, in the cache repository
        from localai_ci.oci.manifest import parse_manifest

        for ptag, child in zip(("amd64", "arm64"), children):
            tag = keepalive_tag(run_id, Family.BACKENDS, "-cpu-f", ptag)
            with client(images[1]) as src, client(cache) as c:
                got = src.get_manifest(child)
                assert got is not None
                parsed = parse_manifest(got[0], got[1])
                for blob in (parsed.config, *parsed.layers):
                    assert blob is not None and c.mount_blob(blob.digest, repo)
                c.put_manifest(tag, got[0], got[1])
    deleted = gc_untagged(regs[1])
    assert deleted and all(d.startswith(f"{repo}@") for d in deleted)  # the targets lose their untagged children
    before = [registry_revisions(r) for r in regs]

    args = ["merge", "--digests-dir", str(digests), "--matrix", str(matrix), "--images", ",".join(images),
            "--tag-suffix=-cpu-f", "--event", "push", "--ref", "refs/heads/master", "--sha", SHA]
    code = main(args + (["--anchor", "--run-id", run_id] if anchor else []), env={"CI_CACHE_IMAGE": cache})
    out, err = capsys.readouterr()
    if not anchor:
        assert code == 1, out + err
        assert "preflight failed, nothing was written" in err and f"is missing from {images[1]}" in err
        assert "--anchor" in err and "garbage-collect" in err
        assert [registry_revisions(r) for r in regs] == before  # nothing written anywhere
        assert all(tags_of(img) == [] for img in images)
    else:
        assert code == 0, out + err
        for img in images:
            for t in TAGS:
                assert list_children(img, t) == set(children)
        # the reaped children were copied back from their anchors in the cache repository
        assert all(f"child restored from its keepalive anchor: {images[1]}@{c}" in out for c in children), out
        assert "keepalive tag" in out  # deleted, or reported as not deletable (never fatal)


# ---- one registry down during a merge: all or nothing (ci/merge.py docstring) -------------------------
def test_one_registry_down_during_merge_publishes_nothing_then_rerun_completes(registries: Any, unique: str,
                                                                                tmp_path: Path) -> None:
    hosts = [r.host for r in registries]
    digests, matrix, children = two_legs(tmp_path, hosts, f"{unique}/backends")
    with proxies(*hosts) as ps:
        images = [f"{p.host}/{unique}/backends" for p in ps]
        setups = {Family.BACKENDS: merge_setup(images, matrix)}
        ps[1].set_down(True)
        report = merge_all(digests, setups, MergeOptions(tag_source=SOURCE), factory=Counted(FAIL_FAST).merge)
        assert report.exit_code == 1
        (res,) = report.results
        assert res.outcome is Outcome.FAILED and ps[1].host in res.reason and "nothing was written" in res.reason
        assert tags_of(f"{hosts[0]}/{unique}/backends") == [] and tags_of(f"{hosts[1]}/{unique}/backends") == []
        ps[1].set_down(False)
        again = merge_all(digests, setups, MergeOptions(tag_source=SOURCE), factory=Counted(POLICY).merge)
    assert again.exit_code == 0 and again.results[0].outcome is Outcome.MERGED
    for h in hosts:
        assert list_children(f"{h}/{unique}/backends", TAGS[0]) == set(children)


# ---- the engine gone in the middle of a build -------------------------------------------------------
class SocketForwarder:
    """A unix socket relaying every connection, byte for byte, to the engine's socket (HTTP, the hijacked
    BuildKit session and gRPC streams alike). :meth:`close` drops the listener and every open connection at
    once: to the docker CLI and the SDK on this side, the engine went away (the shared engine keeps running).
    Its lifecycle: :mod:`tests.support.served`."""

    def __init__(self, upstream: str, path: Path) -> None:
        self.upstream = upstream
        self.path = path
        self._served = Served(self._forward, name="engine-forwarder", path=path, drop=_shut_and_close).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    @property
    def closed(self) -> threading.Event:
        return self._served.stopped

    def _forward(self, conn: socket.socket, addr: Any) -> None:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.connect(self.upstream)
        except OSError:
            up.close()
            return
        if not self._served.track(up):
            up.close()
            return
        back = threading.Thread(target=self._pump, args=(up, conn), daemon=True)
        back.start()
        self._pump(conn, up)
        back.join()
        self._served.forget(up)
        _shut_and_close(up)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # a half-close travels on (HTTP hijack)
        except OSError:
            pass

    def close(self) -> None:
        self._served.stop()


def _shut_and_close(sk: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sk.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sk.close()


class StopOnLine(io.StringIO):
    """The build's progress stream; runs ``action`` once, when a line holding ``marker`` says a step is running."""

    def __init__(self, marker: str, action: Callable[[], None]) -> None:
        super().__init__()
        self.marker, self.action, self.fired = marker, action, ""

    def write(self, text: str) -> int:
        n = super().write(text)
        for line in text.splitlines():
            if not self.fired and self.marker in line and "running" in line:
                self.fired = line
                self.action()
        return n


def build_losing_the_engine(engine: Any, registries: Any, unique: str, tmp_path: Path) -> tuple[str, str, float]:
    """Run ``invoke build-backend`` on a leg whose third step sleeps, through a forwarder of the engine's socket
    that is closed once that step runs; (error message, progress output, seconds). No digest file, nothing
    published, the shared engine still up: asserted here."""
    import docker

    from localai_ci.docker.offline_bases import ENV_BUSYBOX_DIR, busybox_dir
    from localai_ci.build.leg import BuildRequest, run_leg

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert where.startswith("unix://"), f"DOCKER_HOST={where}: this test forwards a unix socket"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    marker = f"long step {unique}"
    (ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY a /a\n"
                                    f"RUN echo '{marker}' && sleep 60\nCOPY c /c\n")
    for name in "ac":
        (ctx / name).write_bytes(os.urandom(4096))
    matrix = tmp_path / "m.yml"
    matrix.write_text(f"""include:
  - build-type: ''
    cuda-major-version: ''
    cuda-minor-version: ''
    platforms: 'linux/amd64'
    tag-latest: 'auto'
    tag-suffix: '-cpu-stop'
    runs-on: 'ubuntu-latest'
    base-image: 'ci-offline/{unique}:24.04'
    skip-drivers: 'false'
    backend: 'stop'
    dockerfile: 'ctx/Dockerfile'
    context: 'ctx'
    ubuntu-version: '2404'
""")
    sock_dir = Path(tempfile.mkdtemp(prefix="ci-fwd-", dir="/tmp"))  # short: a unix socket path has 107 bytes
    forwarder = SocketForwarder(where.removeprefix("unix://"), sock_dir / "docker.sock")
    client_ = docker.DockerClient(base_url=forwarder.docker_host, timeout=60)
    progress = StopOnLine(marker, forwarder.close)
    images = f"{registries[0].host}/{unique}/backends"
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SOURCE_DATE_EPOCH": "0",
           "DOCKER_HOST": forwarder.docker_host, ENV_BUSYBOX_DIR: str(busybox_dir(os.environ)),
           "CI_CACHE_IMAGE": f"{images}-cache"}
    req = BuildRequest(push=True, family=Family.BACKENDS, tag_suffix="-cpu-stop", platform_tag="amd64", matrix=str(matrix),
                       root=str(tmp_path), images=images, digests_dir=str(tmp_path / "digests"),
                       cache_dir=str(tmp_path / "cache"), local_tag=f"localai-ci-test/{unique}:amd64")
    t0 = time.monotonic()
    try:
        with pytest.raises(EngineError) as err:
            run_leg(req, env=env, engine=Engine(client_), err=progress)
    finally:
        forwarder.close()
        client_.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
    took = time.monotonic() - t0
    assert progress.fired, f"the build never ran the long step:\n{progress.getvalue()[-3000:]}"
    assert not (tmp_path / "digests").exists()
    with client(images) as c:
        assert c.list_tags() == []
    engine.ping()  # the shared engine never stopped
    return str(err.value), progress.getvalue(), took


@pytest.mark.engine
@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_engine_stopped_mid_build_is_a_clear_error_and_writes_no_digest_file(
        engine: Any, registries: Any, unique: str, tmp_path: Path) -> None:
    """The engine's socket goes away while BuildKit runs a step (``docker buildx build`` and the SDK both lose
    it): an EngineError at once naming the leg's build, no digest file, nothing published."""
    msg, progress, took = build_losing_the_engine(engine, registries, unique, tmp_path)
    assert took < 45, f"the lost engine was reported after {took:.0f}s (the step sleeps 60s)"
    assert msg.startswith(f"building localai-ci-test/{unique}:amd64 for linux/amd64: "), msg
    assert "Traceback" not in msg and "ProtocolError" not in msg, msg
    # the progress showed where it was, then that the build failed
    assert progress.index(f"RUN echo 'long step {unique}'") < progress.index("build FAILED"), progress


@pytest.mark.engine
@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_engine_stopped_mid_build_names_the_lost_engine_and_the_running_step(
        engine: Any, registries: Any, unique: str, tmp_path: Path) -> None:
    msg, _, _ = build_losing_the_engine(engine, registries, unique, tmp_path)
    assert f"long step {unique}" in msg, msg
    assert "engine" in msg.lower(), msg
