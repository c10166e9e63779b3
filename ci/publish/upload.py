"""Uploading a staged image to every target repository at once: blobs (HEAD, cross-repository mount,
else a streamed upload; :data:`UPLOADS_PER_TARGET` at a time per repository) as soon as they are
staged, then the manifest by digest and its tags, each read back (:func:`push_image`,
:func:`push_layout` -> ``PushReport``). See ``localai_ci.publish.leg`` for the whole pipeline.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from ..docker.engine import Engine
from ..errors import OperationError, RegistryError, VerificationError
from ..oci.blobcache import Blob, BlobCache
from ..oci.manifest import (
    Composed,
)
from ..oci.platforms import Platform
from ..oci.reference import ImageName, uses_plain_http

if TYPE_CHECKING:
    from ..oci.client import ClientFactory
from .stage import StagedImage, stage_image, stage_layout

MAX_MOUNT_TRIES = 4


UPLOADS_PER_TARGET = 3  # blobs sent to one repository at a time (docker push sends 5, containerd 3)


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
class PushTarget:
    """One repository to publish to, with how to reach it (credentials: the client factory's keychain)."""

    image: ImageName
    plain_http: bool = False
    tags: tuple[str, ...] = ()  # added in this repository only (e.g. a keepalive anchor)
    # which other hosts (redirects, upload Locations) may be reached over plain HTTP: the family's
    # policy (ci.families.FamilyConfig.plain_http); None: loopback only
    plain_http_policy: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)

    def transport(self, host: str) -> bool:
        """Whether ``host`` is reached over plain HTTP: the registry as ``plain_http`` says, any other
        host (a redirect, an upload ``Location``) as the policy says."""
        if host == self.image.registry:
            return self.plain_http
        return (self.plain_http_policy or uses_plain_http)(host)


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
    """One target: blobs uploaded ``workers`` at a time, each worker thread with its own client (clients
    are not shared between threads), manifests through one more client on one thread."""

    def __init__(self, target: PushTarget, make_client: Callable[[], Client], siblings: Sequence[str],
                 cache: BlobCache, workers: int = UPLOADS_PER_TARGET) -> None:
        self.target = target
        self._make = make_client
        self.client = make_client()  # manifests, tags
        self._clients: list[Client] = [self.client]
        self._local = threading.local()
        self._lock = threading.Lock()
        self.siblings = [s for s in siblings if s != target.image.repository]
        self.cache = cache
        name = f"push-{target.image.registry}"
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)
        self.manifests = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name + "-manifest")
        self.futures: list[Future[None]] = []
        self.seen: set[str] = set()
        self.uploaded = self.mounted = self.present = 0

    def submit(self, blob: Blob) -> None:
        if blob.digest not in self.seen:
            self.seen.add(blob.digest)
            self.futures.append(self.pool.submit(self._ensure, blob))

    def _thread_client(self) -> Client:
        c: Client | None = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = self._make()
            with self._lock:
                self._clients.append(c)
        return c

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def _ensure(self, blob: Blob) -> None:
        c, reg = self._thread_client(), self.target.image.registry
        if c.blob_exists(blob.digest):
            self._count("present")
        else:
            known = [r for r in self.cache.known_locations(blob.digest, reg) if r != self.target.image.repository]
            for repo in list(dict.fromkeys(known + self.siblings))[:MAX_MOUNT_TRIES]:
                if c.mount_blob(blob.digest, repo):
                    self._count("mounted")
                    break
            else:
                if c.push_blob(blob.digest, blob.size, lambda: open(blob.path, "rb")):
                    self._count("uploaded")
                else:
                    self._count("present")
        self.cache.remember_location(blob.digest, reg, self.target.image.repository)

    def wait(self) -> BaseException | None:
        for f in self.futures:
            exc = f.exception()
            if exc is not None:
                return exc
        return None

    def run(self, fn: Callable[[], Any]) -> Future[Any]:
        return self.manifests.submit(fn)

    def report(self) -> TargetReport:
        with self._lock:
            clients = list(self._clients)
        return TargetReport(self.target.image, self.uploaded, self.mounted, self.present,
                            sum(c.bytes_uploaded for c in clients), sum(c.retries for c in clients))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.manifests.shutdown(wait=True, cancel_futures=True)
        for c in self._clients:
            c.close()


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (OperationError, RegistryError)) else f"{type(exc).__name__}: {exc}"


def push_image(engine: Engine, image: str, targets: Sequence[PushTarget], *, cache: BlobCache,
               client_factory: ClientFactory, tags: Iterable[str] = (), mount_from: Iterable[ImageName] = (),
               log: Callable[[str], None] = lambda s: None, content_dirs: Sequence[str] = (),
               config_dirs: Sequence[str] = ()) -> PushReport:
    """Publish engine image ``image`` by digest to every target; add ``tags`` (same manifest) in every
    target and each target's own ``PushTarget.tags`` in that target.

    Raises OperationError naming each failed target; no manifest is pushed anywhere
    unless every target confirmed every blob.
    """
    return _push(lambda on_blob: stage_image(engine, image, cache, on_blob=on_blob, log=log, content_dirs=content_dirs,
                                             config_dirs=config_dirs),
                 image, targets, cache=cache, client_factory=client_factory, tags=tags, mount_from=mount_from)


def push_layout(layout: str | Path, targets: Sequence[PushTarget], *, cache: BlobCache, client_factory: ClientFactory,
                platform: Platform | None = None, tags: Iterable[str] = (), mount_from: Iterable[ImageName] = (),
                log: Callable[[str], None] = lambda s: None) -> PushReport:
    """Publish the image of an OCI layout or image archive (:func:`ci.oci.layout.read_layout`) by digest to
    every target, as :func:`push_image` does for an engine image: its blobs as they are (a layout
    directory's files are uploaded in place), its manifest exactly as written where it can be."""
    return _push(lambda on_blob: stage_layout(layout, cache, platform=platform, on_blob=on_blob, log=log),
                 str(layout), targets, cache=cache, client_factory=client_factory, tags=tags, mount_from=mount_from)


def _push(stage: Callable[[Callable[[Blob], None]], StagedImage], what: str, targets: Sequence[PushTarget], *,
          cache: BlobCache, client_factory: ClientFactory, tags: Iterable[str] = (),
          mount_from: Iterable[ImageName] = ()) -> PushReport:
    """Stage (``stage(on_blob)``, blobs uploaded as they are announced), then the manifest by digest to every
    target, read back, then the tags."""
    if not targets:
        raise OperationError(f"publishing {what}: no target repository; pass --images")
    t0 = time.monotonic()
    mounts = list(mount_from)
    uploaders: list[_Uploader] = []
    lock = threading.Lock()
    try:
        for t in targets:
            siblings = [m.repository for m in [*[x.image for x in targets], *mounts] if m.registry == t.image.registry]
            uploaders.append(_Uploader(t, partial(client_factory, t.image, t.transport), siblings, cache))

        def ready(blob: Blob) -> None:
            with lock:
                for u in uploaders:
                    u.submit(blob)

        staged = stage(ready)
        failures = [(u, e) for u in uploaders if (e := u.wait()) is not None]
        if failures:
            raise OperationError(_failures(f"publishing {what}", failures, "no manifest was pushed; rerun to "
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
            raise VerificationError(f"publishing {what}: expected manifest {m.digest} in every registry, found "
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
