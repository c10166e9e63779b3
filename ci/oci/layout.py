"""OCI image layouts and image archives on this machine (filesystem adapter): one image read out of
what a builder exported or another tool wrote, ready to be published by digest.

Shapes read (the kind is told from the contents, never from the file name):

- an **OCI image layout directory** -- ``oci-layout``, ``index.json``, ``blobs/sha256/<hex>`` --
  what BuildKit writes with ``--output type=oci,dest=DIR,tar=false`` (layers compressed as BuildKit
  compressed them). Its blobs are used where they are: nothing is copied.
- the same **as a tar archive** (``type=oci,dest=F.tar``, ``skopeo copy oci-archive:``);
- a **docker-archive** tar: ``manifest.json`` naming the config and the layer files -- ``docker
  save`` before Docker 25 (``<id>.json``, ``<dir>/layer.tar``), go-containerregistry's ``tarball.Write``
  (``sha256:<hex>`` config, ``<hex>.tar.gz`` layers), which is what LocalAI's ``local-ai util
  create-oci-image`` writes for its Darwin backends.

From an archive, each layer is copied once into the blob cache, hashed on the way (a compressed
layer's decompressed bytes are checked against the config's ``diff_id`` as well); an uncompressed
layer is gzipped there once (:meth:`ci.oci.blobcache.BlobCache.compress_layer`). The result,
:class:`LayoutImage`, holds the manifest exactly as written when every layer is a compressed one of
an OCI layout (``manifest``), else None: the publisher then composes a Docker v2 manifest over the
gzipped layers. An index is narrowed to one image (attestations skipped, several platforms told
apart by ``platform``).

Layout directories this tool exports are named ``<label>.<pid>.<random>`` under one parent
(:func:`new_layout_dir`); :func:`remove_stale_layouts` removes those whose process is gone (a
crashed or cancelled run), :func:`remove_layout` the one a leg published.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..errors import OperationError
from .blobcache import Blob, BlobCache
from .manifest import (
    DOCKER_LAYER_GZIP,
    IMAGE_MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    OCI_LAYER_GZIP,
    Descriptor,
    config_diff_ids,
    is_attestation_entry,
    is_attestation_manifest,
    parse_manifest,
    platform_key,
)
from .platforms import Platform
from .reference import parse_digest, sha256_digest

OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
COMPRESSED_LAYER_TYPES = (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD,
                          "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                          "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
UNCOMPRESSED_LAYER_TYPES = (OCI_LAYER_TAR, DOCKER_LAYER_TAR)
MAX_INDEX_DEPTH = 4
MAX_SMALL = max(MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES)  # index.json, manifest.json, a manifest, a config
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LAYOUT_NAME = re.compile(r"^(?P<label>[A-Za-z0-9_.-]+)\.(?P<pid>\d+)\.(?P<rand>[0-9a-f]{8})$")


class LayoutError(OperationError):
    """The layout or archive is not one image this tool can publish (named, with what to do)."""


@dataclass(frozen=True)
class LayoutLayer:
    descriptor: Descriptor  # what the manifest lists (for a composed manifest: Docker gzip, our gzip's digest)
    path: Path  # a file holding exactly these bytes: the layout's own blob, or the blob cache's copy


@dataclass(frozen=True)
class LayoutImage:
    """One image read from a layout or archive (see the module docstring)."""

    source: str  # the path, for messages
    kind: str  # "OCI image layout", "OCI image layout (tar)", "docker-archive"
    manifest: bytes | None  # the image manifest exactly as written; None: to be composed over ``layers``
    manifest_media_type: str
    config: bytes
    config_digest: str
    config_media_type: str
    config_path: Path | None  # the config's file when it is one (a layout directory)
    layers: tuple[LayoutLayer, ...]
    copied: int = 0  # layers copied (or gzipped) into the blob cache while reading

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest) if self.manifest is not None else ""

    def _config(self) -> dict[str, object]:
        obj = json.loads(self.config)
        return obj if isinstance(obj, dict) else {}

    @property
    def platform(self) -> tuple[str, str, str]:
        """``(os, architecture, variant)`` of the config."""
        obj = self._config()
        return str(obj.get("os", "")), str(obj.get("architecture", "")), str(obj.get("variant") or "")

    @property
    def platform_text(self) -> str:
        return "/".join(p for p in self.platform if p)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(config_diff_ids(self.config) or ())

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        cfg = self._config().get("config")
        labels = cfg.get("Labels") if isinstance(cfg, dict) else None
        return tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else ()

    @property
    def size(self) -> int:
        """Bytes of the compressed layers."""
        return sum(layer.descriptor.size for layer in self.layers)


# ---- where the bytes are: a directory or a tar archive ---------------------------------------------
class _Source(Protocol):
    kind: str

    def has(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...
    def open(self, name: str) -> IO[bytes]: ...
    def file(self, name: str) -> Path | None: ...


class _Dir:
    kind = "OCI image layout"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, name: str) -> Path | None:
        p = self.root / name
        try:
            if p.is_symlink() or not p.is_file() or not p.resolve().is_relative_to(self.root):
                return None
        except OSError:
            return None
        return p

    def has(self, name: str) -> bool:
        return self._path(name) is not None

    def size(self, name: str) -> int:
        p = self._path(name)
        assert p is not None
        return p.stat().st_size

    def open(self, name: str) -> IO[bytes]:
        p = self._path(name)
        assert p is not None
        return open(p, "rb")

    def file(self, name: str) -> Path | None:
        return self._path(name)


class _Tar:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():  # headers only: the data of a seekable file is skipped
            if m.isfile() or m.islnk() or m.issym():
                self.members.setdefault(m.name.removeprefix("./"), m)
        self.kind = "OCI image layout (tar)" if "index.json" in self.members else "docker-archive"

    def has(self, name: str) -> bool:
        return name in self.members

    def size(self, name: str) -> int:
        m = self.members[name]
        return m.size if m.isfile() else self.tar._find_link_target(m).size  # type: ignore[attr-defined]

    def open(self, name: str) -> IO[bytes]:
        f = self.tar.extractfile(self.members[name])
        if f is None:
            raise LayoutError(f"{name} in the archive is not a file")
        return f

    def file(self, name: str) -> Path | None:
        return None


@contextmanager
def _opened(path: Path) -> Iterator[_Source]:
    if path.is_dir():
        yield _Dir(path)
        return
    try:
        tar = tarfile.open(path, mode="r:")
    except (OSError, tarfile.TarError) as exc:
        raise LayoutError(f"{path}: neither an OCI image layout directory nor a tar archive ({exc}); give the "
                          "directory BuildKit exported (--output type=oci,tar=false) or the image archive (.tar)") from exc
    with tar:
        try:
            yield _Tar(tar)
        except tarfile.TarError as exc:
            raise LayoutError(f"{path}: the archive is truncated or corrupt ({exc}); write it again") from exc


# ---- reading --------------------------------------------------------------------------------------
def read_layout(path: str | Path, cache: BlobCache | None, *, platform: Platform | None = None,
                log: Callable[[str], None] = lambda s: None) -> LayoutImage:
    """The one image of the layout or archive at ``path`` (``platform``: which one, when it holds several).

    ``cache``: where layers are copied or gzipped when they cannot be used in place (an archive, an
    uncompressed layer); None only for a layout directory of compressed layers (what BuildKit exports).
    LayoutError naming the file, what is wrong and what to do; nothing is published by reading."""
    p = Path(path)
    if not p.exists():
        raise LayoutError(f"{p}: no such file or directory; give the OCI image layout directory or the image "
                          "archive (.tar) to publish")
    with _opened(p) as src:
        if src.has("index.json"):
            image = _read_oci(p, src, cache, platform)
        elif src.has("manifest.json"):
            image = _read_docker_archive(p, src, cache, platform)
        else:
            raise LayoutError(f"{p}: holds neither index.json (an OCI image layout) nor manifest.json (a "
                              "docker-archive); is it an image archive?")
    if image.copied:
        log(f"read {image.kind} {p}: {len(image.layers)} layer(s), {image.copied} copied into the blob cache")
    return image


def read_layout_image(path: str | Path, *, platform: Platform | None = None) -> LayoutImage:
    """The image of an OCI layout directory without its layers (``layers`` empty): its manifest exactly as
    written (even when a layer is uncompressed: the publisher composes its own then), config and
    platform. What a build reports about the layout it exported; nothing is copied."""
    p = Path(path)
    if not (p / "index.json").is_file():
        raise LayoutError(f"{p}: no index.json; not the OCI image layout directory a build exports")
    with _opened(p) as src:
        return _read_oci(p, src, None, platform, layers_too=False)


def _small(src: _Source, name: str, what: str, digest: str | None = None, limit: int = MAX_SMALL) -> bytes:
    """A small file of the source (JSON), bounded; checked against ``digest`` when given."""
    if not src.has(name):
        raise LayoutError(f"{what} ({name}) is missing")
    size = src.size(name)
    if size > limit:
        raise LayoutError(f"{what} ({name}) is {size} bytes, more than the {limit} an image's {what} can be")
    with src.open(name) as fh:
        data = fh.read(limit + 1)
    if digest is not None and sha256_digest(data) != digest:
        raise LayoutError(f"{what} {name} hashes to {sha256_digest(data)}, not {digest}: the layout is corrupt")
    return data


def _json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise LayoutError(f"{what} is not JSON ({str(exc)[:120]})") from exc


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + parse_digest(digest).split(":", 1)[1]


def _want(platform: Platform | None) -> tuple[str, str, str] | None:
    return platform_key(platform.to_oci()) if platform is not None else None


def _choose(entries: list[dict[str, object]], want: tuple[str, str, str] | None, where: str) -> dict[str, object]:
    """One image entry of an index: attestations skipped, then narrowed to ``want``."""
    entries = [e for e in entries if not is_attestation_entry(e)]
    if len(entries) > 1 and want is not None:
        entries = [e for e in entries if platform_key(e.get("platform")) in (want, None)] or entries
        entries = [e for e in entries if platform_key(e.get("platform")) == want] or entries
    if len(entries) != 1:
        seen = ", ".join("/".join(x for x in (platform_key(e.get("platform")) or ("?",)) if x) for e in entries)
        raise LayoutError(f"{where} holds {len(entries)} image(s){f' ({seen})' if seen else ''}"
                          + (f", none of them {'/'.join(x for x in want if x)}" if want and len(entries) != 1 else "")
                          + "; publish a single-platform image (or name its platform)")
    return entries[0]


def _read_oci(path: Path, src: _Source, cache: BlobCache | None, platform: Platform | None,
              layers_too: bool = True) -> LayoutImage:
    where = f"{path} (index.json)"
    top = _json(_small(src, "index.json", "index.json"), where)
    entries = top.get("manifests") if isinstance(top, dict) else None
    if not isinstance(entries, list):
        raise LayoutError(f"{where} is not an OCI index (no 'manifests' list)")
    want = _want(platform)
    cur = [e for e in entries if isinstance(e, dict)]
    for _ in range(MAX_INDEX_DEPTH):
        entry = _choose(cur, want, where)
        try:
            digest = parse_digest(str(entry.get("digest", "")))
        except ValueError as exc:
            raise LayoutError(f"{where}: {exc}") from exc
        body = _small(src, _blob_name(digest), "manifest", digest, MAX_MANIFEST_BYTES)
        if entry.get("size") not in (None, len(body)):
            raise LayoutError(f"{path}: manifest {digest} is {len(body)} bytes, its index says {entry.get('size')}")
        obj = _json(body, f"{path}: manifest {digest}")
        if isinstance(obj, dict) and isinstance(obj.get("manifests"), list):  # a nested index
            cur = [e for e in obj["manifests"] if isinstance(e, dict)]
            where = f"{path} (index {digest})"
            continue
        media = str((obj.get("mediaType") if isinstance(obj, dict) else None) or entry.get("mediaType") or "")
        return _image_from_manifest(path, src, cache, body, media, layers_too)
    raise LayoutError(f"{path}: index.json nests indexes more than {MAX_INDEX_DEPTH} deep")


def _image_from_manifest(path: Path, src: _Source, cache: BlobCache | None, body: bytes, media: str,
                         layers_too: bool = True) -> LayoutImage:
    digest = sha256_digest(body)
    try:
        parsed = parse_manifest(body, media)
    except ValueError as exc:
        raise LayoutError(f"{path}: manifest {digest}: {exc}") from exc
    if parsed.is_index or parsed.config is None or parsed.media_type not in IMAGE_MANIFEST_TYPES:
        raise LayoutError(f"{path}: manifest {digest} is {parsed.media_type or 'untyped'}, not an image manifest")
    if is_attestation_manifest(parsed):
        raise LayoutError(f"{path}: manifest {digest} is an attestation, not an image")
    cfg = parsed.config
    config = _small(src, _blob_name(cfg.digest), "config", cfg.digest, MAX_CONFIG_BYTES)
    diff_ids = config_diff_ids(config)
    if diff_ids is None or len(diff_ids) != len(parsed.layers):
        raise LayoutError(f"{path}: config {cfg.digest} lists {len(diff_ids or [])} diff_id(s) for the manifest's "
                          f"{len(parsed.layers)} layer(s); it is not this image's config")
    layers: list[LayoutLayer] = []
    copied = 0
    keep_manifest = True
    for i, (d, diff_id) in enumerate(zip(parsed.layers, diff_ids)):
        if not layers_too:
            break
        name = _blob_name(d.digest)
        if not src.has(name) or src.size(name) != d.size:
            found = f"{src.size(name)} bytes" if src.has(name) else "missing"
            raise LayoutError(f"{path}: layer {i + 1} {d.digest} ({d.size} bytes) is {found}; the export was cut "
                              "short: build or write it again")
        uncompressed = d.media_type in UNCOMPRESSED_LAYER_TYPES or d.digest == diff_id
        if uncompressed:  # an uncompressed tar: gzipped once into the cache; the manifest is composed then
            with src.open(name) as fh:
                _, blob = _need(cache, path).compress_layer(fh, expected_diff_id=diff_id)
            layers.append(LayoutLayer(Descriptor(DOCKER_LAYER_GZIP, blob.digest, blob.size), blob.path))
            copied += 1
            keep_manifest = False
            continue
        if d.media_type not in COMPRESSED_LAYER_TYPES:
            raise LayoutError(f"{path}: layer {i + 1} {d.digest} has media type {d.media_type!r}, not an image layer")
        where_file = src.file(name)
        if where_file is None:
            with src.open(name) as fh:
                where_file = _copy(cache, fh, d.digest, d.size, path, i).path
            copied += 1
        layers.append(LayoutLayer(d, where_file))
    if not keep_manifest and any(x.descriptor.media_type == OCI_LAYER_ZSTD for x in layers):
        raise LayoutError(f"{path}: the image mixes uncompressed and zstd layers; a Docker v2 manifest carries only "
                          "gzip layers: export it with one compression (buildx --output compression=gzip)")
    return LayoutImage(source=str(path), kind=src.kind, manifest=body if keep_manifest else None,
                       manifest_media_type=parsed.media_type, config=config, config_digest=cfg.digest,
                       config_media_type=cfg.media_type, config_path=src.file(_blob_name(cfg.digest)),
                       layers=tuple(layers), copied=copied)


def _copy(cache: BlobCache | None, fh: IO[bytes], digest: str | None, size: int | None, path: Path, i: int,
          diff_id: str | None = None) -> Blob:
    """Copy one compressed layer into the cache, hashed on the way (and its decompressed bytes checked
    against ``diff_id``, when given and the layer is gzip)."""
    check = _GunzipHash() if diff_id else None
    cache = _need(cache, path)
    try:
        blob = cache.put_stream(fh, digest, size=size, on_chunk=check.feed if check else None)
    except OperationError as exc:
        raise LayoutError(f"{path}: layer {i + 1}: {exc}") from exc
    if check is not None and diff_id is not None:
        got = check.digest()
        if got != diff_id:
            raise LayoutError(f"{path}: layer {i + 1} ({blob.digest}) decompresses to {got}, but the config's "
                              f"diff_id {i + 1} is {diff_id}: the archive's layers and config do not belong together")
    return blob


def _read_docker_archive(path: Path, src: _Source, cache: BlobCache | None, platform: Platform | None) -> LayoutImage:
    top = _json(_small(src, "manifest.json", "manifest.json"), f"{path} (manifest.json)")
    entries = [e for e in top if isinstance(e, dict)] if isinstance(top, list) else []
    if not entries:
        raise LayoutError(f"{path}: manifest.json lists no image")
    configs: list[tuple[dict[str, object], bytes, str]] = []
    for e in entries:
        name = str(e.get("Config", ""))
        hexes = re.findall(r"[0-9a-f]{64}", name)
        expect = f"sha256:{hexes[-1]}" if hexes else None
        data = _small(src, name, "config", expect, MAX_CONFIG_BYTES)
        configs.append((e, data, sha256_digest(data)))
    want = _want(platform)
    if len(configs) > 1:
        configs = [c for c in configs if platform_key(_json(c[1], "config")) == want] if want else []
        if len(configs) != 1:
            raise LayoutError(f"{path}: manifest.json lists {len(entries)} images; publish an archive of one image")
    entry, config, config_digest = configs[0]
    diff_ids = config_diff_ids(config)
    names = entry.get("Layers")
    if diff_ids is None or not isinstance(names, list) or len(names) != len(diff_ids):
        raise LayoutError(f"{path}: manifest.json lists {len(names) if isinstance(names, list) else 0} layer(s), "
                          f"its config {len(diff_ids or [])} diff_id(s); it is not one image")
    layers: list[LayoutLayer] = []
    for i, (name, diff_id) in enumerate(zip((str(n) for n in names), diff_ids)):
        if not src.has(name):
            raise LayoutError(f"{path}: layer {i + 1} ({name}) named by manifest.json is missing")
        with src.open(name) as fh:
            head = fh.read(4)
        with src.open(name) as fh:
            if head.startswith(_GZIP_MAGIC):
                hexes = re.findall(r"[0-9a-f]{64}", name)
                named = f"sha256:{hexes[-1]}" if hexes and name.endswith((".gz", ".tgz")) else None
                blob = _copy(cache, fh, named, src.size(name), path, i, diff_id=diff_id)
            elif head.startswith(_ZSTD_MAGIC):
                raise LayoutError(f"{path}: layer {i + 1} ({name}) is zstd; a docker-archive's manifest is Docker v2, "
                                  "which carries gzip layers only: write the archive with gzip layers")
            else:
                _, blob = _need(cache, path).compress_layer(fh, expected_diff_id=diff_id)
        layers.append(LayoutLayer(Descriptor(DOCKER_LAYER_GZIP, blob.digest, blob.size), blob.path))
    return LayoutImage(source=str(path), kind=src.kind, manifest=None, manifest_media_type="", config=config,
                       config_digest=config_digest, config_media_type="", config_path=None, layers=tuple(layers),
                       copied=len(layers))


def _need(cache: BlobCache | None, path: Path) -> BlobCache:
    if cache is None:
        raise LayoutError(f"{path}: its layers must be copied or gzipped into the blob cache, and none was given")
    return cache


class _GunzipHash:
    """sha256 of what a gzip stream (one or more members) decompresses to, fed piece by piece."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        while data:
            self._h.update(self._d.decompress(data, 1 << 20))
            data = self._d.unconsumed_tail
            while self._d.eof and self._d.unused_data:  # the next member of a multi-member gzip
                rest = self._d.unused_data
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._h.update(self._d.decompress(rest, 1 << 20))
                data = self._d.unconsumed_tail + data if self._d.unconsumed_tail else data

    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


# ---- layout directories this tool exports ---------------------------------------------------------------
def new_layout_dir(parent: str | Path, label: str) -> Path:
    """A fresh, not yet existing path ``<parent>/<label>.<pid>.<random>`` for one export (the parent made)."""
    root = Path(parent)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperationError(f"creating {root} for the build's OCI layout: {exc.strerror or exc}; set TMPDIR to a "
                             "writable directory with room for the leg's compressed layers") from exc
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.") or "leg"
    return root / f"{safe[:80]}.{os.getpid()}.{secrets.token_hex(4)}"


def remove_layout(path: str | Path) -> None:
    """Remove one exported layout (best effort: a leftover is removed by the next :func:`remove_stale_layouts`)."""
    shutil.rmtree(path, ignore_errors=True)


def remove_stale_layouts(parent: str | Path) -> list[Path]:
    """Remove the layouts under ``parent`` whose exporting process is gone; the removed paths."""
    removed: list[Path] = []
    try:
        children = list(Path(parent).iterdir())
    except OSError:
        return removed
    for child in children:
        m = _LAYOUT_NAME.match(child.name)
        if m is None or not child.is_dir() or child.is_symlink():
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        remove_layout(child)
        removed.append(child)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True
