"""Publish a built leg by digest to every registry of its family (verb): from an OCI image layout or
archive (:func:`push_layout`: the hand-off of builders that export one, or a leg another tool built),
or from the engine (:func:`push_image`: the classic store's docker driver, which can only ``--load``).

A layout is staged by :func:`stage_layout`: its blobs are uploaded from where they are, its manifest
is published exactly as written (an archive's layers are copied into the blob cache first; an
uncompressed layer is gzipped there and the manifest composed, as below). An engine image:

Pipeline (nothing holds a layer in memory):

1. **Stage** (:func:`stage_image`): if the blob cache holds a record for the engine image id
   (``images/<params>/<id>``: the manifest staged for it before) and every blob that manifest
   references, nothing is exported. Otherwise ``docker save`` is streamed once through
   ``tarfile`` in stream mode (a legacy docker-archive or, since Docker 25, an OCI image
   layout; entries in any order). Uncompressed layers (blob digest = a ``diff_id``: the
   classic image store, or layers loaded from a docker-archive) are gzipped once into the
   content-addressed cache (:mod:`ci.blobcache`, deterministic, chunks deflated on a thread
   pool); compressed layers (the containerd image store) are stored exactly as exported.
   The manifest, config and layers are then resolved from ``index.json`` (an index is
   narrowed to the inspected platform, attestations skipped) and checked against each other
   and against ``docker image inspect``.
2. **Upload** (:func:`push_image`, :func:`push_layout`), overlapping with staging:
   :data:`UPLOADS_PER_TARGET` worker threads per target repository, each with its own
   :class:`~ci.registry.RegistryClient`, all targets at once. Each blob is uploaded as
   soon as it is in the cache: HEAD first (present: skipped), then a cross-repository
   mount from a sibling repository of the same registry where the blob is known (the
   family's other repositories, the cache repository, the other family's repositories,
   and repositories this machine pushed it to before), else a streamed upload from the
   cache file.
3. **Manifest**: when every layer is one the engine had compressed, the engine's own
   manifest bytes (so the published digest is the engine's manifest digest, the containerd
   store's image id); otherwise a Docker v2 manifest composed once
   (:func:`ci.manifest.compose_image_manifest`) over the gzipped layers. After every target
   confirmed every blob, the *same bytes* are PUT by digest (no tag) to each target, HEADed
   back, and the digests compared. Only then are tags (PR tags, keepalive anchors) added
   and, in :func:`publish_leg`, the digest file written.

No provenance or SBOM attestation is ever published: a single image manifest is pushed (an
engine index is narrowed to its image manifest for the engine's platform), whose digest is
equal in every registry because the same bytes are sent everywhere, and stable across
re-publishes because gzip here is deterministic and engine manifests are sent unchanged.
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
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from ..docker.engine import Engine, ImageInfo
from ..errors import EngineError, OperationError, RegistryError, VerificationError
from ..github.artifacts import write_digest_file
from ..matrix.naming import LegKey
from ..oci.blobcache import Blob, BlobCache
from ..oci.layout import read_layout
from ..oci.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    IMAGE_MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    OCI_LAYER_GZIP,
    Composed,
    Descriptor,
    compose_image_manifest,
    is_attestation_entry,
    is_attestation_manifest,
    parse_manifest,
    platform_key,
)
from ..oci.platforms import Platform
from ..oci.reference import ImageName, parse_digest, sha256_digest, uses_plain_http

if TYPE_CHECKING:
    from ..oci.client import ClientFactory

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
class StagedImage:
    """An engine image as registry blobs in the cache, and its manifest."""

    image_id: str  # the engine's id: config digest (classic store) or manifest/index digest (containerd store)
    config: Blob
    layers: tuple[Blob, ...]
    manifest: Composed
    exported: bool  # False: everything came from the cache, ``docker save`` was not run
    engine_manifest: bool = False  # True: the engine's own manifest bytes (its compressed layers), not composed

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (*self.layers, self.config)


# ---- staging -------------------------------------------------------------------------------
# ``docker save`` writes one of three shapes, entries in no guaranteed order:
# - a legacy docker-archive (Docker < 25): ``<id>.json`` config, ``<dir>/layer.tar`` uncompressed
#   layers, ``manifest.json``;
# - an OCI image layout (Docker >= 25) from the classic store: ``index.json`` -> an OCI manifest whose
#   layers are uncompressed tars (blob digest = diff_id), plus the config and one legacy v1 JSON per
#   layer as blobs, and ``manifest.json``/``repositories`` for compatibility;
# - an OCI image layout from the containerd store: ``index.json`` -> the engine's manifest (or an index
#   of manifests, e.g. with a provenance attestation) whose layers are the stored compressed blobs;
#   layers loaded from a docker-archive stay uncompressed there, so one manifest can hold both kinds.
# Blobs whose digest is one of the image's diff_ids are uncompressed layers: gzipped into the cache at
# once. Other blobs that look like JSON (configs, manifests, indexes, attestation statements) are kept
# in memory until the end of the stream; everything else is a compressed layer, stored as is.
SMALL_BUDGET = 4 * MAX_CONFIG_BYTES  # JSON blobs held in memory during one export; more go to the cache
MAX_INDEX_DEPTH = 4
_PEEK = 512
_GZIP_LAYER_TYPES = (DOCKER_LAYER_GZIP, OCI_LAYER_GZIP)


class _ExportLost(Exception):
    """Reading the ``docker save`` stream failed (told apart from failures writing the cache)."""


class _EngineReader:
    """The export stream; read errors become :class:`_ExportLost`."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def read(self, n: int = -1) -> bytes:
        try:
            return self._inner.read(n)
        except OSError as exc:
            raise _ExportLost(str(exc) or type(exc).__name__) from exc


class _Prefixed:
    """``head`` (already read) then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(out):]
            return out
        return self._rest.read(n)


@dataclass
class _Export:
    """What one pass over the ``docker save`` stream left behind."""

    files: dict[str, bytes] = field(default_factory=dict)  # top-level JSON: index.json, manifest.json, <id>.json
    small: dict[str, bytes] = field(default_factory=dict)  # JSON-looking blobs by digest, hash-checked
    spilled: set[str] = field(default_factory=set)  # JSON-looking blobs over SMALL_BUDGET: in the cache instead
    by_diff: dict[str, Blob] = field(default_factory=dict)  # diff_id -> our gzip of an uncompressed layer
    raw: dict[str, Blob] = field(default_factory=dict)  # digest -> a compressed layer stored as exported
    compressed_here: int = 0  # layers gzipped during this export
    held: int = 0  # bytes in ``small``

    def json_blob(self, digest: str, cache: BlobCache) -> bytes | None:
        if digest in self.small:
            return self.small[digest]
        return cache.read_blob(digest, MAX_CONFIG_BYTES) if digest in self.spilled else None


def stage_image(engine: Engine, image: str, cache: BlobCache,
                on_blob: Callable[[Blob], None] | None = None,
                log: Callable[[str], None] = lambda s: None,
                content_dirs: Sequence[str] = (), config_dirs: Sequence[str] = ()) -> StagedImage:
    """Make every blob of ``image`` available in ``cache``; call ``on_blob`` as each one is ready.

    Without ``docker save`` when the cache already holds the manifest staged for this image id and
    every blob it references. Otherwise the export is streamed once (never held in memory nor
    written whole to disk). When the engine holds compressed layers (containerd image store) and no
    uncompressed ones, the engine's own manifest bytes are kept, so the published digest is the
    engine's; otherwise a Docker v2 manifest is composed over deterministically gzipped layers.

    ``content_dirs`` (:meth:`ci.engine.Engine.content_store`): where a local containerd image store
    keeps its blobs. When the image's manifest, config and every (compressed) layer are found there,
    nothing is exported at all: the layers are uploaded from those files (``docker save`` of the
    containerd store streams every byte through dockerd and containerd, several times slower than
    the upload itself).

    ``config_dirs`` (:meth:`ci.engine.Engine.config_store`): where a local classic image store keeps its
    image configs. When every layer of the image was gzipped into the cache before (another image with
    the same layers: the inline-cache image of a leg just published) and its config is found there,
    nothing is exported: only the new config is sent.
    """
    info = engine.inspect(image)
    announced: set[str] = set()

    def announce(blob: Blob) -> None:
        if blob.digest not in announced:
            announced.add(blob.digest)
            if on_blob:
                on_blob(blob)

    staged, early = _stage_from_cache(info, cache, config_dirs)
    if staged is None and content_dirs:
        staged = _stage_from_content_store(info, cache, content_dirs)
        if staged is not None:
            log(f"staged {len(staged.layers)} layer(s) from the engine's containerd content store (no export)")
    elif staged is not None:
        log(f"staged {len(staged.layers)} layer(s) from the blob cache (no export)")
    if staged is not None:
        for b in staged.blobs:
            announce(b)
        return staged
    for b in early:  # already in the cache: the upload can start before the export
        announce(b)
    return _stage_from_export(engine, image, info, cache, announce, log)


def _stage_from_cache(info: ImageInfo, cache: BlobCache,
                      config_dirs: Sequence[str] = ()) -> tuple[StagedImage | None, list[Blob]]:
    """The staged image when the cache holds all of it (the config possibly read from the engine's own
    store, ``config_dirs``), else None and the blobs it does hold."""
    rec = cache.image_record(info.id)
    early: list[Blob] = []
    if rec is not None:
        body = cache.read_blob(rec.manifest, MAX_CONFIG_BYTES)
        if body is not None:
            try:
                config, layers = _cached_parts(body, info, cache)
                return StagedImage(info.id, config, layers, Composed(body, rec.media_type), exported=False,
                                   engine_manifest=rec.engine_manifest), []
            except ValueError:
                try:  # some blob is missing: send what is there while exporting
                    parsed = parse_manifest(body)
                    early = [b for d in parsed.layers if (b := cache.get_blob(d.digest)) is not None
                             and b.size == d.size]
                except ValueError:
                    pass
                return None, early
    # no record (a cache filled before records existed, or an image whose layers another image brought):
    # on the classic store the id is the config
    id_blob = cache.get_blob(info.id)
    cached = [cache.layer(d) for d in info.diff_ids]
    present = tuple(b for b in cached if b is not None)
    if id_blob is None and config_dirs and len(present) == len(cached):
        cfg_bytes = _config_from_store(info.id, config_dirs)
        if cfg_bytes is not None:
            id_blob = cache.put_bytes(cfg_bytes)
    if id_blob is not None and len(present) == len(cached) and \
            _diff_ids(cache.read_blob(info.id, MAX_CONFIG_BYTES)) == list(info.diff_ids):
        composed = _compose(id_blob, present)
        cache.put_bytes(composed.body)
        cache.record_image(info.id, composed.digest, composed.media_type, engine_manifest=False)
        return StagedImage(info.id, id_blob, present, composed, exported=False), []
    return None, list(dict.fromkeys(present))


def _config_from_store(digest: str, dirs: Sequence[str]) -> bytes | None:
    """The image config ``digest`` from the classic store's image database, checked against its digest."""
    hex_ = digest.split(":", 1)[1]
    for d in dirs:
        p = Path(d) / "sha256" / hex_
        try:
            if p.stat().st_size > MAX_CONFIG_BYTES:
                continue
            data = p.read_bytes()
        except OSError:
            continue
        if sha256_digest(data) == digest:
            return data
    return None


def _stage_from_content_store(info: ImageInfo, cache: BlobCache, dirs: Sequence[str]) -> StagedImage | None:
    """The image straight from a local containerd content store, or None (then it is exported).

    The manifest (the image id, or the platform's child of an index id) and the config are read and
    hash-checked; the layers must all be compressed ones of the size the manifest says, and are
    uploaded from the store's files (the registry checks each digest on upload)."""
    def path(digest: str) -> Path | None:
        hex_ = digest.split(":", 1)[1]
        for d in dirs:
            p = Path(d) / "blobs" / "sha256" / hex_
            if p.is_file():
                return p
        return None

    def small(digest: str) -> bytes | None:
        p = path(digest)
        try:
            data = p.read_bytes() if p is not None and p.stat().st_size <= MAX_CONFIG_BYTES else None
        except OSError:
            return None
        return data if data is not None and sha256_digest(data) == digest else None

    try:
        digest, body = info.id, small(info.id)
        want = _plat({"os": info.os, "architecture": info.architecture, "variant": info.variant})
        for _ in range(MAX_INDEX_DEPTH):
            if body is None:
                return None
            obj = json.loads(body)
            if not (isinstance(obj, dict) and isinstance(obj.get("manifests"), list)):
                break
            entries = [e for e in obj["manifests"] if isinstance(e, dict) and not _entry_is_attestation(e)
                       and _plat(e.get("platform")) == want]
            if len(entries) != 1:
                return None
            digest = parse_digest(str(entries[0].get("digest", "")))
            body = small(digest)
        if body is None:
            return None
        parsed = parse_manifest(body)
        if parsed.is_index or parsed.config is None or parsed.media_type not in IMAGE_MANIFEST_TYPES:
            return None
        config_bytes = small(parsed.config.digest)
        if _diff_ids(config_bytes) != list(info.diff_ids) or len(parsed.layers) != len(info.diff_ids):
            return None
        layers: list[Blob] = []
        for d, diff_id in zip(parsed.layers, info.diff_ids):
            p = path(d.digest)
            if d.digest == diff_id or d.media_type not in _GZIP_LAYER_TYPES or p is None or p.stat().st_size != d.size:
                return None  # uncompressed (composed with our gzip after an export), or not all here
            layers.append(Blob(d.digest, d.size, p))
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    assert config_bytes is not None
    config = cache.put_bytes(config_bytes)
    return StagedImage(info.id, config, tuple(layers), Composed(body, parsed.media_type), exported=False,
                       engine_manifest=True)


def _diff_ids(config: bytes | None) -> list[str] | None:
    """The config's ``rootfs.diff_ids``, or None when ``config`` is not an image config."""
    if config is None:
        return None
    try:
        obj = json.loads(config)
        ids = obj["rootfs"]["diff_ids"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return [str(d) for d in ids] if isinstance(ids, list) else None


def _cached_parts(body: bytes, info: ImageInfo, cache: BlobCache) -> tuple[Blob, tuple[Blob, ...]]:
    """Config and layer blobs of image manifest ``body``, all in the cache; ValueError saying what is not."""
    parsed = parse_manifest(body)
    if parsed.is_index or parsed.config is None:
        raise ValueError("it is a manifest list, not a single-platform image manifest")
    if parsed.media_type not in IMAGE_MANIFEST_TYPES:
        raise ValueError(f"its media type {parsed.media_type!r} is not an image manifest type")

    def blob(d: Descriptor, what: str) -> Blob:
        b = cache.get_blob(d.digest)
        if b is None or b.size != d.size:
            raise ValueError(f"{what} {d.digest} ({d.size} bytes) is not in the blob cache"
                             + (f" (found {b.size} bytes)" if b is not None else ""))
        return b

    config = blob(parsed.config, "config")
    diff_ids = _diff_ids(cache.read_blob(config.digest, MAX_CONFIG_BYTES))
    if diff_ids is None:
        raise ValueError(f"config {config.digest} is not an image config")
    if diff_ids != list(info.diff_ids) or len(diff_ids) != len(parsed.layers):
        raise ValueError(f"it has {len(parsed.layers)} layer(s) and its config {len(diff_ids)} diff_id(s), "
                         f"the engine's image {len(info.diff_ids)}")
    return config, tuple(blob(d, f"layer {i + 1}") for i, d in enumerate(parsed.layers))


def _stage_from_export(engine: Engine, image: str, info: ImageInfo, cache: BlobCache,
                       announce: Callable[[Blob], None], log: Callable[[str], None]) -> StagedImage:
    t0 = time.monotonic()
    ex = _Export()
    try:
        with engine.export(info.id) as stream, tarfile.open(fileobj=cast(IO[bytes], _EngineReader(stream)),
                                                              mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    _take(member, tar, ex, image, info, cache, announce)
                # else: directories; symlinked duplicate layers of a legacy archive (same diff_id)
    except _ExportLost as exc:
        raise EngineError(f"exporting {image}: lost the export stream from the engine ({_short(exc)}); is the "
                          "engine still running? retry the publish") from exc
    except tarfile.TarError as exc:
        raise EngineError(f"exporting {image}: the export is truncated or not a tar archive ({_short(exc)}); the "
                          "engine may have stopped or removed the image: retry the publish") from exc
    except EngineError:
        raise
    except OperationError as exc:  # a blob that does not hash to its name
        raise EngineError(f"exporting {image}: {exc}") from exc
    except OSError as exc:
        raise OperationError(f"exporting {image} into the blob cache at {cache.root}: {exc.strerror or exc}; free "
                             f"disk space there or set CI_BLOB_CACHE to another directory") from exc
    try:
        staged = _resolve(ex, image, info, cache, announce)
    except OSError as exc:
        raise OperationError(f"staging {image} in the blob cache at {cache.root}: {exc.strerror or exc}") from exc
    cache.put_bytes(staged.manifest.body)
    cache.record_image(info.id, staged.manifest.digest, staged.manifest.media_type,
                       engine_manifest=staged.engine_manifest)
    kept = [b for b in dict.fromkeys(staged.layers) if b.digest in ex.raw or b.digest in ex.small]
    total = sum(b.size for b in dict.fromkeys(staged.layers))
    how = ("the engine's manifest and compressed layers" if staged.engine_manifest else
           f"a composed manifest ({ex.compressed_here} layer(s) gzipped here, {len(kept)} kept as the engine "
           "compressed them)")
    log(f"exported {len(staged.layers)} layer(s), {total / 2**20:.1f} MiB compressed, in "
        f"{time.monotonic() - t0:.1f}s: {how}")
    return staged


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + "..."


def _take(member: tarfile.TarInfo, tar: tarfile.TarFile, ex: _Export, image: str, info: ImageInfo,
          cache: BlobCache, announce: Callable[[Blob], None]) -> None:
    """Consume one file of the export."""
    name = member.name.lstrip("./")
    f = tar.extractfile(member)
    if f is None:
        return
    if name.startswith("blobs/"):
        parts = name.split("/")
        if len(parts) != 3 or parts[1] != "sha256":
            return  # another algorithm: nothing this project writes references it
        try:
            digest = parse_digest("sha256:" + parts[2])
        except ValueError:
            return
        _take_blob(digest, member.size, f, ex, image, info, cache, announce)
    elif name.endswith("/layer.tar"):  # legacy docker-archive: an uncompressed layer
        diff_id, blob = cache.compress_layer(f)
        ex.compressed_here += 1
        if diff_id not in ex.by_diff:
            ex.by_diff[diff_id] = blob
            announce(blob)
    elif "/" not in name and (name in ("index.json", "manifest.json")
                              or (name.endswith(".json") and len(name) == 69)):  # legacy <id hex>.json
        if member.size > MAX_CONFIG_BYTES:
            raise EngineError(f"exporting {image}: {name} is {member.size} bytes, more than {MAX_CONFIG_BYTES}; "
                              "this is not an image the engine saved: check the image and retry")
        ex.files[name] = f.read()


def _take_blob(digest: str, size: int, f: IO[bytes], ex: _Export, image: str, info: ImageInfo,
               cache: BlobCache, announce: Callable[[Blob], None]) -> None:
    if digest in info.diff_ids:  # an uncompressed layer (classic store, or loaded from a docker-archive)
        if digest not in ex.by_diff:
            b = cache.layer(digest)
            if b is None:
                _, b = cache.compress_layer(f, expected_diff_id=digest)
                ex.compressed_here += 1
            ex.by_diff[digest] = b
            announce(b)
        return
    stream = f
    if size <= MAX_CONFIG_BYTES:
        head = f.read(min(size, _PEEK))
        if head.lstrip()[:1] in (b"{", b"["):  # a config, manifest, index or attestation statement
            data = head + f.read()
            if len(data) != size or sha256_digest(data) != digest:
                raise EngineError(f"exporting {image}: blob {digest} ({size} bytes) arrived as {len(data)} bytes "
                                  f"hashing to {sha256_digest(data)}; the export is corrupt: retry the publish")
            if ex.held + size <= SMALL_BUDGET:
                ex.small[digest] = data
                ex.held += size
            else:
                cache.put_bytes(data)
                ex.spilled.add(digest)
            return
        stream = cast(IO[bytes], _Prefixed(head, f))
    b = cache.get_blob(digest)
    if b is None or b.size != size:  # else already cached: tarfile skips the unread rest
        b = cache.put_stream(stream, digest, size=size)
    ex.raw[digest] = b
    announce(b)  # a compressed layer (of this image, or of another platform of its index)


def _resolve(ex: _Export, image: str, info: ImageInfo, cache: BlobCache,
             announce: Callable[[Blob], None]) -> StagedImage:
    """From what the export left: the manifest, the config and the layers, verified against each other."""
    what = f"exporting {image}"
    engine_manifest: tuple[bytes, str] | None = None
    descs: list[Descriptor] | None = None
    if "index.json" in ex.files:
        body, media_type = _pick_manifest(ex, image, info, cache)
        try:
            parsed = parse_manifest(body, media_type)
        except ValueError as exc:
            raise EngineError(f"{what}: the engine's manifest is not usable: {exc}") from exc
        if parsed.is_index or parsed.config is None:
            raise EngineError(f"{what}: the chosen manifest is a manifest list, not an image manifest")
        if is_attestation_manifest(parsed):
            raise EngineError(f"{what}: the export's manifest is an attestation, not an image; save the image itself")
        cfg_digest = parsed.config.digest
        config_bytes = ex.json_blob(cfg_digest, cache)
        if config_bytes is None:
            raise EngineError(f"{what}: the archive lacks config {cfg_digest} named by the manifest; the export may "
                              "be truncated: retry the publish")
        if len(config_bytes) != parsed.config.size:
            raise EngineError(f"{what}: config {cfg_digest} is {len(config_bytes)} bytes, the manifest says "
                              f"{parsed.config.size}")
        engine_manifest = (body, media_type)
        descs = list(parsed.layers)
    else:
        config_bytes, cfg_digest = _legacy_config(ex, image, info, cache)
    diff_ids = _diff_ids(config_bytes)
    if diff_ids is None:
        raise EngineError(f"{what}: config {cfg_digest} has no rootfs.diff_ids; it is not an image config")
    if diff_ids != list(info.diff_ids):
        raise EngineError(f"{what}: the exported config lists {len(diff_ids)} layer(s), the engine's image "
                          f"{len(info.diff_ids)} (different diff_ids); the image changed during export: retry")
    if descs is not None and len(descs) != len(diff_ids):
        raise EngineError(f"{what}: the manifest has {len(descs)} layer(s) but its config {len(diff_ids)} diff_id(s)")
    config = cache.put_bytes(config_bytes)

    layers: list[Blob] = []
    kinds: list[str] = []  # media type of each layer blob we send
    for i, diff_id in enumerate(diff_ids):
        d = descs[i] if descs is not None else None
        if d is None or d.digest == diff_id:  # uncompressed: sent as our deterministic gzip
            b = ex.by_diff.get(diff_id) or cache.layer(diff_id)
            if b is None:
                raise EngineError(f"{what}: the archive lacks layer {i + 1} ({diff_id}); the export may be "
                                  "truncated: retry the publish")
            announce(b)
            layers.append(b)
            kinds.append(DOCKER_LAYER_GZIP)
            continue
        found = ex.raw.get(d.digest) or cache.get_blob(d.digest)
        if found is None and d.digest in ex.small:  # a small compressed layer that looked like JSON
            found = cache.put_bytes(ex.small[d.digest])
        if found is None or found.size != d.size:
            raise EngineError(f"{what}: the archive lacks layer {i + 1} ({d.digest}, {d.size} bytes, "
                              f"{d.media_type}); the engine may hold this image only in part (pulled for "
                              "another platform?): pull or rebuild it and retry")
        announce(found)
        layers.append(found)
        kinds.append(d.media_type)
    announce(config)

    if engine_manifest is not None and all(d.digest != diff_id for d, diff_id in zip(descs or [], diff_ids)):
        body, media_type = engine_manifest
        try:
            _cached_parts(body, info, cache)
        except ValueError as exc:
            raise EngineError(f"{what}: the engine's manifest cannot be published as is: {exc}") from exc
        return StagedImage(info.id, config, tuple(layers), Composed(body, media_type), exported=True,
                           engine_manifest=True)
    odd = [f"layer {i + 1} ({k})" for i, k in enumerate(kinds) if k not in _GZIP_LAYER_TYPES]
    if odd:
        raise EngineError(f"{what}: the image mixes uncompressed layers with {', '.join(odd)}; a Docker v2 "
                          "manifest can only carry gzip layers: rebuild with gzip compression "
                          "(buildx --output compression=gzip) and retry")
    return StagedImage(info.id, config, tuple(layers), _compose(config, layers), exported=True)


def _legacy_config(ex: _Export, image: str, info: ImageInfo, cache: BlobCache) -> tuple[bytes, str]:
    """The config of a docker-archive without index.json (Docker < 25): named by manifest.json, else <id>.json."""
    name = info.id.split(":", 1)[1] + ".json"
    if "manifest.json" in ex.files:
        try:
            entries = json.loads(ex.files["manifest.json"])
            name = str(entries[0]["Config"]) if len(entries) == 1 else name
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError):
            pass
    hex_name = name.removeprefix("blobs/sha256/").removesuffix(".json")
    digest = f"sha256:{hex_name}"
    data = ex.files.get(name)
    if data is None and name.startswith("blobs/sha256/"):
        data = ex.json_blob(digest, cache)
    if data is None:
        raise EngineError(f"exporting {image}: the archive holds neither index.json nor the config {name}; the "
                          "engine may have removed or replaced the image during export: rebuild and retry")
    if sha256_digest(data) != digest:
        raise EngineError(f"exporting {image}: config {name} hashes to {sha256_digest(data)}; the export is corrupt: "
                          "retry the publish")
    return data, digest


_plat = platform_key
_entry_is_attestation = is_attestation_entry


def _pick_manifest(ex: _Export, image: str, info: ImageInfo, cache: BlobCache) -> tuple[bytes, str]:
    """The image manifest the export's index.json leads to for the inspected platform: ``(bytes, media type)``."""
    what = f"exporting {image}"
    want = _plat({"os": info.os, "architecture": info.architecture, "variant": info.variant})
    try:
        top = json.loads(ex.files["index.json"])
        entries = [e for e in top["manifests"] if isinstance(e, dict)]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise EngineError(f"{what}: index.json is not an OCI index ({_short(exc)}); retry the publish") from exc
    entries = [e for e in entries if e.get("digest") == info.id] or entries  # the id names it on the containerd store
    for _depth in range(MAX_INDEX_DEPTH):
        entries = [e for e in entries if not _entry_is_attestation(e)]
        if len(entries) > 1:
            entries = [e for e in entries if _plat(e.get("platform")) in (want, None)]
        if len(entries) > 1:
            entries = [e for e in entries if _plat(e.get("platform")) == want] or entries
        if len(entries) != 1:
            seen = ", ".join("/".join(p for p in (_plat(e.get("platform")) or ("?",)) if p) for e in entries)
            raise EngineError(f"{what}: the export holds {len(entries)} candidate manifest(s) for "
                              f"{info.platform_text}{f' ({seen})' if seen else ''}; save a single-platform image "
                              "(build with --load for one platform) and retry")
        entry = entries[0]
        digest = str(entry.get("digest", ""))
        body = ex.json_blob(digest, cache)
        if body is None:
            raise EngineError(f"{what}: the archive lacks manifest {digest} named by index.json; the export may be "
                              "truncated: retry the publish")
        if entry.get("size") != len(body):
            raise EngineError(f"{what}: manifest {digest} is {len(body)} bytes, index.json says {entry.get('size')}")
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EngineError(f"{what}: manifest {digest} is not JSON ({_short(exc)})") from exc
        media_type = str((obj.get("mediaType") if isinstance(obj, dict) else None) or entry.get("mediaType") or "")
        if isinstance(obj, dict) and isinstance(obj.get("manifests"), list):  # an index: go one level down
            entries = [e for e in obj["manifests"] if isinstance(e, dict)]
            entries = [e for e in entries if _plat(e.get("platform")) is not None or len(entries) == 1]
            continue
        if media_type not in IMAGE_MANIFEST_TYPES:
            raise EngineError(f"{what}: manifest {digest} has media type {media_type or 'none'}, not an image "
                              "manifest")
        return body, media_type
    raise EngineError(f"{what}: index.json nests indexes more than {MAX_INDEX_DEPTH} deep")


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


def stage_layout(layout: str | Path, cache: BlobCache, *, platform: Platform | None = None,
                 on_blob: Callable[[Blob], None] | None = None,
                 log: Callable[[str], None] = lambda s: None) -> StagedImage:
    """The image of a layout or archive as a :class:`StagedImage`: the layout's own manifest when every
    layer is one it compressed, else a Docker v2 manifest composed over the gzipped layers (an archive's
    uncompressed layers are gzipped into the cache once; the digest is then this tool's, stable)."""
    image = read_layout(layout, cache, platform=platform, log=log)
    config = (Blob(image.config_digest, len(image.config), image.config_path) if image.config_path is not None
              else cache.put_bytes(image.config))
    layers = tuple(Blob(x.descriptor.digest, x.descriptor.size, x.path) for x in image.layers)
    if image.manifest is not None:
        manifest = Composed(image.manifest, image.manifest_media_type)
    else:
        manifest = _compose(config, layers)
    if on_blob is not None:
        for b in dict.fromkeys((*layers, config)):
            on_blob(b)
    return StagedImage(manifest.digest if image.manifest is not None else image.config_digest, config, layers,
                       manifest, exported=False, engine_manifest=image.manifest is not None)


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


# ---- the verb ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishResult:
    digest: str
    artifact: str
    digest_file: Path | None
    report: PushReport
    refs: tuple[str, ...]  # every pushed reference, e.g. quay.io/x@sha256:..., quay.io/x:pr-12-amd64


def publish_leg(engine: Engine, image: str, *, leg: LegKey,
                targets: Sequence[PushTarget], cache: BlobCache, client_factory: ClientFactory,
                digests_dir: str | Path | None, tags: Sequence[str] = (), mount_from: Iterable[ImageName] = (),
                log: Callable[[str], None] = lambda s: None, content_dirs: Sequence[str] = ()) -> PublishResult:
    """Publish one leg; write its digest file (when ``digests_dir``) only after every registry agrees.

    ``tags`` go into every target repository, ``PushTarget.tags`` into that target only. A keepalive
    anchor (``--anchor``) is one such target: the family's cache repository, with the anchor tag
    (``ci.build.leg.publish_targets``); the repositories users browse get the digest and no tag. The
    anchor keeps an untagged copy alive where the registry garbage-collects untagged manifests per
    repository (Quay), and the merge copies a reaped child back from it (``ci.merge.run``).
    """
    report = push_image(engine, image, targets, cache=cache, client_factory=client_factory, tags=tags,
                        mount_from=mount_from, log=log, content_dirs=content_dirs)
    return _published(report, leg, targets, digests_dir, tags)


def publish_layout_leg(layout: str | Path, *, leg: LegKey, platform: Platform | None, targets: Sequence[PushTarget],
                       cache: BlobCache, client_factory: ClientFactory, digests_dir: str | Path | None,
                       tags: Sequence[str] = (), mount_from: Iterable[ImageName] = (),
                       log: Callable[[str], None] = lambda s: None) -> PublishResult:
    """:func:`publish_leg` for an OCI layout or image archive (a BuildKit export, or a leg another tool built)."""
    report = push_layout(layout, targets, cache=cache, client_factory=client_factory, platform=platform, tags=tags,
                         mount_from=mount_from, log=log)
    return _published(report, leg, targets, digests_dir, tags)


def _published(report: PushReport, leg: LegKey, targets: Sequence[PushTarget], digests_dir: str | Path | None,
               tags: Sequence[str]) -> PublishResult:
    path = write_digest_file(digests_dir, leg, report.digest) if digests_dir is not None else None
    refs = tuple(t.image.with_digest(report.digest) for t in targets) + tuple(
        t.image.with_tag(tag) for tag in report.tags for t in targets if tag in tags or tag in t.tags)
    return PublishResult(report.digest, leg.artifact, path, report, refs)
