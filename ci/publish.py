"""Publish an engine image by digest to every registry of its family (verb).

Pipeline (nothing holds a layer in memory):

1. **Stage** (:func:`stage_image`): if the blob cache already holds the image config
   (its digest is the image id) and a compressed blob for every ``diff_id`` (from
   ``docker image inspect``), nothing is exported. Otherwise ``docker save`` is streamed
   through ``tarfile`` in stream mode; each ``layer.tar`` is gzipped once into the
   content-addressed cache (:mod:`ci.blobcache`, chunks deflated on a thread pool) and
   the config is stored byte for byte. Layer order comes from the config's
   ``rootfs.diff_ids``.
2. **Upload** (:func:`push_image`), overlapping with staging: one worker thread and one
   :class:`~ci.registry.RegistryClient` per target repository. Each blob is uploaded as
   soon as it is in the cache: HEAD first (present: skipped), then a cross-repository
   mount from a sibling repository of the same registry where the blob is known (the
   family's other repositories, the cache repository, the other family's repositories,
   and repositories this machine pushed it to before), else a streamed upload from the
   cache file.
3. **Manifest**: composed once (:func:`ci.manifest.compose_image_manifest`) after every
   target confirmed every blob, then the *same bytes* are PUT by digest (no tag) to each
   target, HEADed back, and the digests compared. Only then are tags (PR tags, keepalive
   anchors) added and, in :func:`publish_leg`, the digest file written.

No provenance or SBOM attestation is ever created: the manifest is built here from the
engine's config and layers, so it is a single image manifest whose digest is equal in
every registry by construction.
"""
from __future__ import annotations

import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ci.artifacts import write_digest_file
from ci.blobcache import Blob, BlobCache
from ci.engine import Engine
from ci.errors import EngineError, OperationError, RegistryError, VerificationError
from ci.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, Composed, Descriptor, compose_image_manifest
from ci.naming import Family, artifact_name
from ci.reference import ImageName

MAX_CONFIG_BYTES = 16 << 20
MAX_MOUNT_TRIES = 4


class Client(Protocol):
    """What publishing needs from :class:`ci.registry.RegistryClient`."""

    retries: int
    bytes_uploaded: int

    def blob_exists(self, digest: str) -> bool: ...
    def mount_blob(self, digest: str, from_repository: str) -> bool: ...
    def push_blob(self, digest: str, size: int, open_stream: Callable[[], BinaryIO]) -> bool: ...
    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str: ...
    def head_manifest(self, reference: str) -> tuple[str, str, int] | None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Target:
    """One repository to publish to, with how to reach it. The credentials are never shown."""

    image: ImageName
    plain_http: bool = False
    credentials: Any = field(default=None, repr=False)  # ci.registry.Credentials | None
    tags: tuple[str, ...] = ()  # added in this repository only (e.g. a keepalive anchor)


ClientFactory = Callable[[Target], Client]


def registry_client_factory(on_retry: Callable[[str], None] | None = None) -> ClientFactory:
    """Factory making a real :class:`ci.registry.RegistryClient` per target."""
    from ci.registry import RegistryClient

    def make(t: Target) -> Client:
        return RegistryClient(t.image, plain_http=t.plain_http, credentials=t.credentials, on_retry=on_retry)
    return make


@dataclass(frozen=True)
class StagedImage:
    """An engine image as registry blobs in the cache, and its manifest."""

    image_id: str
    config: Blob
    layers: tuple[Blob, ...]
    manifest: Composed
    exported: bool  # False: everything came from the cache, ``docker save`` was not run

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (*self.layers, self.config)


# ---- staging -------------------------------------------------------------------------------
def stage_image(engine: Engine, image: str, cache: BlobCache,
                on_blob: Callable[[Blob], None] | None = None,
                log: Callable[[str], None] = lambda s: None) -> StagedImage:
    """Make every blob of ``image`` available in ``cache``; call ``on_blob`` as each one is ready."""
    info = engine.inspect(image)
    config = cache.get_blob(info.id)
    cached = [cache.layer(d) for d in info.diff_ids]
    if config is not None and all(b is not None for b in cached):
        layers = tuple(b for b in cached if b is not None)
        for b in (*layers, config):
            if on_blob:
                on_blob(b)
        log(f"staged {len(layers)} layer(s) from the blob cache (no export)")
        return StagedImage(info.id, config, layers, _compose(config, layers), exported=False)

    by_diff: dict[str, Blob] = {d: b for d, b in zip(info.diff_ids, cached) if b is not None}
    for b in dict.fromkeys(by_diff.values()):  # already compressed: upload can start now
        if on_blob:
            on_blob(b)
    config_bytes: bytes | None = None
    t0 = time.monotonic()
    try:
        with engine.export(info.id) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if not member.isfile():
                    continue  # directories; symlinked duplicate layers (same diff_id as their target)
                f = tar.extractfile(member)
                if f is None:
                    continue
                if name.endswith("/layer.tar"):
                    diff_id, blob = cache.compress_layer(f)
                    if diff_id not in by_diff:
                        by_diff[diff_id] = blob
                        if on_blob:
                            on_blob(blob)
                elif "/" not in name and name.endswith(".json") and name != "manifest.json":
                    if member.size > MAX_CONFIG_BYTES:
                        raise EngineError(f"exporting {image}: config {name} is {member.size} bytes; too large")
                    data = f.read()
                    if name == info.id.split(":", 1)[1] + ".json":
                        config_bytes = data
    except (tarfile.TarError, OSError) as exc:
        raise EngineError(f"exporting {image} from the engine: {exc}; is the engine still running? retry") from None
    if config_bytes is None:
        raise EngineError(f"exporting {image}: the archive holds no config {info.id}; the engine may have "
                          "removed or replaced the image during export: rebuild and retry")
    config = cache.put_bytes(config_bytes)
    if config.digest != info.id:
        raise EngineError(f"exporting {image}: config hashes to {config.digest}, expected the image id {info.id}")
    if on_blob:
        on_blob(config)
    diff_ids = [str(d) for d in json.loads(config_bytes).get("rootfs", {}).get("diff_ids", [])]
    missing = [d for d in diff_ids if d not in by_diff]
    if missing:
        raise EngineError(f"exporting {image}: the archive lacks layer(s) {', '.join(missing)}; retry the publish")
    layers = tuple(by_diff[d] for d in diff_ids)
    total = sum(b.size for b in dict.fromkeys(layers))
    log(f"exported and compressed {len(layers)} layer(s), {total / 2**20:.1f} MiB gzip, "
        f"in {time.monotonic() - t0:.1f}s")
    return StagedImage(info.id, config, layers, _compose(config, layers), exported=True)


def _compose(config: Blob, layers: Sequence[Blob]) -> Composed:
    return compose_image_manifest(
        Descriptor(DOCKER_CONFIG, config.digest, config.size),
        [Descriptor(DOCKER_LAYER_GZIP, b.digest, b.size) for b in layers])


# ---- pushing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetReport:
    image: ImageName
    uploaded: int  # blobs sent
    mounted: int
    present: int
    bytes_uploaded: int
    retries: int


@dataclass(frozen=True)
class PushReport:
    digest: str
    manifest: Composed = field(repr=False)
    targets: tuple[TargetReport, ...]
    tags: tuple[str, ...]
    exported: bool
    seconds: float

    @property
    def bytes_uploaded(self) -> int:
        return sum(t.bytes_uploaded for t in self.targets)

    @property
    def retries(self) -> int:
        return sum(t.retries for t in self.targets)


class _Uploader:
    """One target: one client, one thread (clients are not shared between threads)."""

    def __init__(self, target: Target, client: Client, siblings: Sequence[str], cache: BlobCache) -> None:
        self.target = target
        self.client = client
        self.siblings = [s for s in siblings if s != target.image.repository]
        self.cache = cache
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"push-{target.image.registry}")
        self.futures: list[Future[None]] = []
        self.seen: set[str] = set()
        self.uploaded = self.mounted = self.present = 0

    def submit(self, blob: Blob) -> None:
        if blob.digest not in self.seen:
            self.seen.add(blob.digest)
            self.futures.append(self.pool.submit(self._ensure, blob))

    def _ensure(self, blob: Blob) -> None:
        c, reg = self.client, self.target.image.registry
        if c.blob_exists(blob.digest):
            self.present += 1
        else:
            known = [r for r in self.cache.known_locations(blob.digest, reg) if r != self.target.image.repository]
            for repo in list(dict.fromkeys(known + self.siblings))[:MAX_MOUNT_TRIES]:
                if c.mount_blob(blob.digest, repo):
                    self.mounted += 1
                    break
            else:
                if c.push_blob(blob.digest, blob.size, lambda: open(blob.path, "rb")):
                    self.uploaded += 1
                else:
                    self.present += 1
        self.cache.remember_location(blob.digest, reg, self.target.image.repository)

    def wait(self) -> BaseException | None:
        for f in self.futures:
            exc = f.exception()
            if exc is not None:
                return exc
        return None

    def run(self, fn: Callable[[], Any]) -> Future[Any]:
        return self.pool.submit(fn)

    def report(self) -> TargetReport:
        return TargetReport(self.target.image, self.uploaded, self.mounted, self.present,
                            self.client.bytes_uploaded, self.client.retries)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (OperationError, RegistryError)) else f"{type(exc).__name__}: {exc}"


def push_image(engine: Engine, image: str, targets: Sequence[Target], *, cache: BlobCache,
               client_factory: ClientFactory, tags: Iterable[str] = (), mount_from: Iterable[ImageName] = (),
               log: Callable[[str], None] = lambda s: None) -> PushReport:
    """Publish ``image`` by digest to every target; add ``tags`` (same manifest) in every target and
    each target's own ``Target.tags`` in that target.

    Raises OperationError naming each failed target; no manifest is pushed anywhere
    unless every target confirmed every blob.
    """
    if not targets:
        raise OperationError(f"publishing {image}: no target repository; pass --images")
    t0 = time.monotonic()
    mounts = list(mount_from)
    uploaders: list[_Uploader] = []
    lock = threading.Lock()
    try:
        for t in targets:
            siblings = [m.repository for m in [*[x.image for x in targets], *mounts] if m.registry == t.image.registry]
            uploaders.append(_Uploader(t, client_factory(t), siblings, cache))

        def ready(blob: Blob) -> None:
            with lock:
                for u in uploaders:
                    u.submit(blob)

        staged = stage_image(engine, image, cache, on_blob=ready, log=log)
        failures = [(u, e) for u in uploaders if (e := u.wait()) is not None]
        if failures:
            raise OperationError(_failures(f"publishing {image}", failures, "no manifest was pushed; rerun to "
                                           "upload only what is missing"))
        m = staged.manifest
        futs = [(u, u.run(partial(u.client.put_manifest, m.digest, m.body, m.media_type))) for u in uploaders]
        failures = [(u, e) for u, f in futs if (e := f.exception()) is not None]
        if failures:
            raise OperationError(_failures(f"pushing manifest {m.digest}", failures, "rerun the publish"))
        heads = [(u, u.run(partial(u.client.head_manifest, m.digest))) for u in uploaders]
        seen: dict[str, str] = {}
        for u, f in heads:
            exc = f.exception()
            got = None if exc is not None else f.result()
            found = got[0] if got else f"nothing ({_describe(exc)})" if exc else "nothing"
            seen[str(u.target.image)] = found
        if any(v != m.digest for v in seen.values()):
            detail = "; ".join(f"{k}: {v}" for k, v in seen.items())
            raise VerificationError(f"publishing {image}: expected manifest {m.digest} in every registry, found "
                                    f"{detail}; no digest file was written, rerun the publish")
        common = tuple(tags)
        tag_list = tuple(dict.fromkeys([*common, *(t for u in uploaders for t in u.target.tags)]))
        for tag in tag_list:
            futs = [(u, u.run(partial(u.client.put_manifest, tag, m.body, m.media_type))) for u in uploaders
                    if tag in common or tag in u.target.tags]
            failures = [(u, e) for u, f in futs if (e := f.exception()) is not None]
            if failures:
                raise OperationError(_failures(f"tagging {m.digest} as {tag}", failures, "rerun the publish"))
        return PushReport(m.digest, m, tuple(u.report() for u in uploaders), tag_list, staged.exported,
                          time.monotonic() - t0)
    finally:
        for u in uploaders:
            u.close()


def _failures(what: str, failures: list[tuple[_Uploader, BaseException]], advice: str) -> str:
    lines = "; ".join(f"{u.target.image}: {_describe(e)}" for u, e in failures)
    return f"{what}: failed for {len(failures)} target(s): {lines}; {advice}"


# ---- the verb ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishResult:
    digest: str
    artifact: str
    digest_file: Path | None
    report: PushReport
    refs: tuple[str, ...]  # every pushed reference, e.g. quay.io/x@sha256:..., quay.io/x:pr-12-amd64


def publish_leg(engine: Engine, image: str, *, family: Family, suffix: str, ptag: str,
                targets: Sequence[Target], cache: BlobCache, client_factory: ClientFactory,
                digests_dir: str | Path | None, tags: Sequence[str] = (), mount_from: Iterable[ImageName] = (),
                log: Callable[[str], None] = lambda s: None) -> PublishResult:
    """Publish one leg; write its digest file (when ``digests_dir``) only after every registry agrees.

    ``tags`` go into every target repository, ``Target.tags`` into that target only. Keepalive
    anchors (``--anchor``) are per-target tags: registries like Quay garbage-collect untagged
    manifests *per repository*, so an anchor tag in another repository (say, a shared cache
    repository) would not protect the untagged child in this one; every repository of such a
    registry that will hold the merged list needs its own (and Docker Hub, which cannot delete
    tags through the API, gets none by default: see ``ci.build.plan_leg``).
    """
    name = artifact_name(family, suffix, ptag)
    report = push_image(engine, image, targets, cache=cache, client_factory=client_factory, tags=tags,
                        mount_from=mount_from, log=log)
    path = write_digest_file(digests_dir, family, suffix, ptag, report.digest) if digests_dir is not None else None
    refs = tuple(t.image.with_digest(report.digest) for t in targets) + tuple(
        t.image.with_tag(tag) for tag in report.tags for t in targets if tag in tags or tag in t.tags)
    return PublishResult(report.digest, name, path, report, refs)

