"""Staging an image for upload: its blobs in the blob cache and its manifest (``StagedImage``), from the
engine (:func:`stage_image`: a blob cache record, else the containerd content store, else one streamed
``docker save``) or from an OCI image layout or archive (:func:`stage_layout`). See
``localai_ci.publish.leg`` for the whole pipeline.
"""
from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from ..docker.engine import Engine, ImageInfo
from ..errors import EngineError, OperationError
from ..oci.blobcache import Blob, BlobCache
from ..oci.layout import read_layout
from ..oci.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    IMAGE_MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    OCI_LAYER_GZIP,
    Composed,
    Descriptor,
    compose_image_manifest,
    config_diff_ids,
    is_attestation_entry,
    is_attestation_manifest,
    parse_manifest,
    platform_key,
)
from ..oci.platforms import Platform
from ..oci.reference import parse_digest, sha256_digest

if TYPE_CHECKING:
    pass


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
                ours = _names_this_image(info, rec.manifest, config.digest, cache)
                if ours is None:  # an index id whose bytes the cache lacks: cannot tell, export again
                    return None, []
                if not ours:
                    raise _WrongRecord(f"its manifest {rec.manifest} and config {config.digest} are not image {info.id}")
                return StagedImage(info.id, config, layers, Composed(body, rec.media_type), exported=False,
                                   engine_manifest=rec.engine_manifest), []
            except _WrongRecord as exc:
                cache.forget_image(info.id, f"blob cache: the record staged for image {info.id} is wrong ({exc}); "
                                            "removed, the image is exported again")
                return None, []
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
            config_diff_ids(cache.read_blob(info.id, MAX_CONFIG_BYTES)) == list(info.diff_ids):
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
        if config_diff_ids(config_bytes) != list(info.diff_ids) or len(parsed.layers) != len(info.diff_ids):
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


def _names_this_image(info: ImageInfo, manifest: str, config: str, cache: BlobCache) -> bool | None:
    """Whether a manifest (with its config) is engine image ``info``: the id is the config's digest (classic
    image store) or the manifest's; else (containerd image store) the id names the engine's own index, which
    lists the manifest, or its own manifest, over the same config (one composed here over our gzip of its
    uncompressed layers). The engine's bytes are kept in the cache when the image is exported (hash-checked
    when read); None when they are not there."""
    if info.id in (manifest, config):
        return True
    body = cache.read_blob(info.id, MAX_MANIFEST_BYTES)
    if body is None:
        return None
    try:
        parsed = parse_manifest(body)
    except ValueError:
        return False
    if parsed.is_index:
        return any(d.digest == manifest for d in parsed.children)
    return parsed.config is not None and parsed.config.digest == config


class _WrongRecord(ValueError):
    """A staged-image record that names what is not this image (not merely a blob missing from the cache)."""


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
    diff_ids = config_diff_ids(cache.read_blob(config.digest, MAX_CONFIG_BYTES))
    if diff_ids is None:
        raise ValueError(f"config {config.digest} is not an image config")
    if diff_ids != list(info.diff_ids) or len(diff_ids) != len(parsed.layers):
        raise _WrongRecord(f"it has {len(parsed.layers)} layer(s) and its config {len(diff_ids)} diff_id(s), "
                           f"the engine's image {len(info.diff_ids)}")
    layers = tuple(blob(d, f"layer {i + 1}") for i, d in enumerate(parsed.layers))
    for i, (b, diff_id) in enumerate(zip(layers, diff_ids)):
        if not cache.layer_matches(b, diff_id):  # never trusted by name: it must decompress to the layer
            raise _WrongRecord(f"its layer {i + 1} {b.digest} does not decompress to {diff_id}")
    return config, layers


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
    top = ex.json_blob(info.id, cache) if info.id not in (staged.manifest.digest, staged.config.digest) else None
    if top is not None:  # the engine's own index or manifest: what shows a later record names this image
        cache.put_bytes(top)
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
    diff_ids = config_diff_ids(config_bytes)
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
