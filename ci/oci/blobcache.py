"""Local content-addressed cache of registry blobs (layers, image configs, manifests) (filesystem adapter).

Layout under the cache root (``$CI_BLOB_CACHE``, else ``$XDG_CACHE_HOME/localai-ci/blobs``,
else ``~/.cache/localai-ci/blobs``)::

    sha256/<hex>                       blob bytes, named by digest: layers we gzipped, layers the engine
                                       had compressed (stored as exported), image configs, manifests
    layers/<params>/<diff-id hex>      "<gzip digest> <size>": which blob a layer compressed to
    images/<params>/<image-id hex>     {"manifest": <digest>, "mediaType": <type>, "engineManifest": <bool>}:
                                       the manifest staged for an engine image id (bytes in sha256/)
    where/<hex>                        "<registry> <repository>" lines: where this machine pushed a blob
    verified/<diff-id hex>-<hex>       empty: blob <hex> was found to decompress to layer <diff-id>
    tmp/                               partial files, renamed into place when complete

Nothing in it is trusted by its name or size. A blob is hashed the first time a process uses it
(:meth:`BlobCache.get_blob`; one flipped byte would otherwise make every upload of it fail with
``DIGEST_INVALID`` for ever), and a layer index entry or a staged image's layer is used only once
the blob is known to decompress to the layer's diff_id (:meth:`BlobCache.layer_matches`: checked by
decompressing it the first time, then remembered in ``verified/``, a fact about the two digests'
contents that no later change of an index line can make true). A bad entry -- a corrupt blob, a
malformed or wrong index line -- is removed with a warning (``warn``) and made again by the caller;
never a traceback. A partial file in ``tmp/`` is locked (``flock``) by the process writing it; one
that nobody holds and that is a minute old (left by a killed publish) is reclaimed when a cache is
opened.

An ``images/`` record lets a re-publish skip ``docker save``: the engine image id is the
config digest on the classic image store but the manifest (or index) digest on the
containerd image store, so neither the id alone nor the diff_ids say which blobs to send.
A record names the manifest; when that manifest and every blob it references are in the
cache, staging needs nothing from the engine but ``docker image inspect``. A missing or
unreadable record only means exporting again.

A layer is compressed once per compression setting (``params``, e.g. ``gz1-c1m``): the
same uncompressed layer (diff_id) always maps to the same gzip bytes, so re-publishing
an image (or publishing it to another registry later) never recompresses nor changes
the manifest digest.

Compression is a deterministic, pigz-style gzip: the layer is cut into fixed-size chunks,
each chunk is deflated independently on a thread pool (zlib releases the GIL), and the
raw deflate streams are concatenated after a fixed header (mtime 0, no name) with a
combined CRC-32 trailer. Chunks that do not compress (already-compressed payloads) are
stored instead of deflated: zlib level 1 runs at ~50 MiB/s on incompressible data and
at ~500 MiB/s storing it. The output depends only on the input bytes, the level and the
chunk size.

The level (:data:`DEFAULT_LEVEL`, 1) was chosen by the time a layer takes to reach two registries
20 ms away, compressed and uploaded, not by bytes alone (``bench/bench_gzip.py``; 1 GiB of this
machine's libraries, 2 shared cores): level 1 sends 9.6% more bytes than level 6 (BuildKit's
default compresses about as level 6 does) and got there 2.5x sooner with no bandwidth limit, 2.3x
at 100 MB/s per connection, 1.8x at 25 MB/s and 1.6x at 10 MB/s: the CPU a higher level costs is
not won back on the wire until a link slower than that.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import struct
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import OperationError
from .reference import parse_digest

ENV_CACHE_DIR = "CI_BLOB_CACHE"
DEFAULT_LEVEL = 1
DEFAULT_CHUNK = 1 << 20
SAMPLE = 64 << 10  # probe this much of a chunk to decide deflate vs store
STORE_RATIO = 0.97  # a probe that compresses worse than this is stored
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, OS unknown
_COPY = 1 << 20
STALE_TMP_SECONDS = 60.0  # a partial file nobody locks and untouched this long: left by a killed writer


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """Where blobs are cached: ``$CI_BLOB_CACHE``, else under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    if env.get(ENV_CACHE_DIR):
        return Path(env[ENV_CACHE_DIR])
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "localai-ci" / "blobs"


@dataclass(frozen=True)
class Blob:
    """A blob in the cache: its digest, size and file."""

    digest: str
    size: int
    path: Path


def _deflate_chunk(data: bytes, level: int) -> bytes:
    """Raw deflate of one chunk ending on a byte boundary (sync flush), so chunks concatenate."""
    if level > 0 and len(data) >= 1024:
        probe = data[:SAMPLE]
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        if len(c.compress(probe) + c.flush(zlib.Z_SYNC_FLUSH)) > STORE_RATIO * len(probe):
            level = 0
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


@dataclass(frozen=True)
class ImageRecord:
    """Which manifest was staged for an engine image id (``images/<params>/<id hex>``)."""

    manifest: str  # digest of the manifest bytes, stored in sha256/
    media_type: str
    engine_manifest: bool  # the engine's own manifest (compressed layers as stored), else composed here


_FINAL_EMPTY_BLOCK = zlib.compressobj(0, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)


class BlobCache:
    """The cache directory plus the compression setting and worker pool used to fill it."""

    def __init__(self, root: str | Path, *, level: int = DEFAULT_LEVEL, chunk_size: int = DEFAULT_CHUNK,
                 workers: int | None = None, warn: Callable[[str], None] | None = None) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level {level} is not in 0..9")
        if chunk_size < SAMPLE:
            raise ValueError(f"chunk size {chunk_size} is smaller than {SAMPLE}")
        self.root = Path(root)
        self.level = level
        self.chunk_size = chunk_size
        self.workers = max(1, workers or (os.cpu_count() or 1))
        self.params = f"gz{level}-c{chunk_size // 1024}k"
        self._pool: ThreadPoolExecutor | None = None
        self.warn = warn or (lambda text: None)  # a bad entry dropped, partial files reclaimed
        self._whole: dict[str, tuple[int, int, int]] = {}  # digest -> (size, mtime, inode) of the file found whole
        try:
            for sub in ("sha256", f"layers/{self.params}", f"images/{self.params}", "tmp", "where", "verified"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationError(f"creating the blob cache at {self.root}: {exc.strerror or exc}; "
                                 f"set {ENV_CACHE_DIR} to a writable directory") from exc
        self._reclaim_tmp()

    # -- lookups ----------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.root / "sha256" / parse_digest(digest).split(":", 1)[1]

    def get_blob(self, digest: str) -> Blob | None:
        """The cached blob ``digest``, once its file is known to hash to it (hashed the first time this
        process uses it); a file that does not is removed with a warning, and None returned."""
        p = self.blob_path(digest)
        try:
            st = p.stat()
        except OSError:
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._whole.get(digest) != key:
            try:
                found = _file_digest(p)
            except OSError:
                return None
            if found != digest:
                self._drop(p, f"blob cache: {p} does not hash to its name (it hashes to {found}: a changed byte on "
                              "disk); removed, it is made again")
                return None
            self._whole[digest] = key
        return Blob(digest, st.st_size, p)

    def layer(self, diff_id: str) -> Blob | None:
        """The compressed blob of an uncompressed layer, when this setting produced it before: its index
        entry well formed, the blob whole and known to decompress to ``diff_id``. A malformed or wrong
        entry is removed with a warning (the caller compresses the layer again)."""
        idx = self.root / "layers" / self.params / parse_digest(diff_id).split(":", 1)[1]
        try:
            text = idx.read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        parts = text.split()
        try:
            digest, size = parse_digest(parts[0]), int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else -1
        except (IndexError, ValueError):
            digest, size = "", -1
        if size < 0:
            self._drop(idx, f"blob cache: the layer index entry {idx} is malformed ({text[:100]!r}); removed, the layer "
                            "is compressed again")
            return None
        blob = self.get_blob(digest)
        if blob is None or blob.size != size:
            return None
        if not self.layer_matches(blob, diff_id):
            self._drop(idx, f"blob cache: the layer index entry for {diff_id} names {digest}, which decompresses to "
                            "another layer; removed, the layer is compressed again")
            return None
        return blob

    def layer_matches(self, blob: Blob, diff_id: str) -> bool:
        """True when the (whole) gzip ``blob`` decompresses to the layer ``diff_id``: decompressed and hashed
        the first time, remembered in ``verified/`` (a fact about the two contents) after that."""
        fact = self.root / "verified" / f"{parse_digest(diff_id)[7:]}-{parse_digest(blob.digest)[7:]}"
        if fact.exists():
            return True
        try:
            found = _gunzip_digest(blob.path)
        except (OSError, zlib.error, EOFError):
            found = None
        if found != diff_id:
            return False
        self._remember_match(diff_id, blob.digest)
        return True

    def _remember_match(self, diff_id: str, digest: str) -> None:
        with contextlib.suppress(OSError):
            (self.root / "verified" / f"{diff_id[7:]}-{digest[7:]}").touch()

    def _drop(self, path: Path, message: str) -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        self.warn(message)

    # -- temporary files ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self, mode: str = "wb") -> Iterator[tuple[IO[Any], Path]]:
        """A new file in ``tmp/``, locked (``flock``) from its creation until it is renamed into place (by
        :meth:`_commit`, inside the block) or removed: a partial file is reclaimed only when its writer is gone."""
        fd, name = tempfile.mkstemp(dir=self.root / "tmp")
        tmp = Path(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(fd, mode, closefd=False) as fh:
                yield fh, tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # not committed
            os.close(fd)  # releases the lock

    def _commit(self, fh: IO[Any], tmp: Path, target: Path) -> None:
        fh.flush()
        os.replace(tmp, target)

    def _reclaim_tmp(self) -> None:
        """Remove partial files nobody writes any more (a killed publish's), see the module docstring."""
        count = size = 0
        now = time.time()
        try:
            entries = list(os.scandir(self.root / "tmp"))
        except OSError:
            return
        for ent in entries:
            try:
                st = ent.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_TMP_SECONDS:
                    continue
                fd = os.open(ent.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(ent.path)
                count, size = count + 1, size + st.st_size
            except OSError:
                continue  # a live writer holds it (or it is gone already)
            finally:
                os.close(fd)
        if count:
            self.warn(f"blob cache: reclaimed {count} partial file(s) ({size} bytes) a killed publish left in "
                      f"{self.root / 'tmp'}")

    # -- writes -----------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> Blob:
        """Store small bytes (an image config) exactly as given."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blob = self.get_blob(digest)
        if blob is not None:
            return blob
        p = self.blob_path(digest)
        with self._writing() as (fh, tmp):
            fh.write(data)
            self._commit(fh, tmp, p)
        return self._known_whole(digest, p)

    def _known_whole(self, digest: str, p: Path) -> Blob:
        """A blob this process just wrote (its bytes hashed on the way in): no need to hash it again."""
        st = p.stat()
        self._whole[digest] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return Blob(digest, st.st_size, p)

    def put_stream(self, stream: IO[bytes], digest: str | None, *, size: int | None = None,
                   on_chunk: Callable[[bytes], None] | None = None) -> Blob:
        """Store a blob exactly as read from ``stream`` (an already-compressed layer) under ``digest``
        (None: under the digest its bytes hash to).

        The bytes are hashed on the way in; OperationError (and nothing stored) when they do not
        hash to ``digest`` or, with ``size``, are not ``size`` bytes long. Reads the stream to its end;
        ``on_chunk`` sees every piece (e.g. to check what a compressed layer decompresses to).
        """
        if digest is not None:
            parse_digest(digest)
        h, got = hashlib.sha256(), 0
        with self._writing() as (out, tmp):
            while chunk := stream.read(_COPY):
                h.update(chunk)
                got += len(chunk)
                out.write(chunk)
                if on_chunk is not None:
                    on_chunk(chunk)
            found = "sha256:" + h.hexdigest()
            digest = digest or found
            if found != digest or (size is not None and got != size):
                raise OperationError(f"blob {digest} ({size if size is not None else '?'} bytes) arrived as "
                                     f"{got} bytes hashing to {found}; the data is truncated or corrupt: retry")
            target = self.blob_path(digest)
            self._commit(out, tmp, target)
        return self._known_whole(digest, target)

    def read_blob(self, digest: str, max_bytes: int) -> bytes | None:
        """The bytes of a small cached blob (manifest, config), checked against its digest; None when
        absent, larger than ``max_bytes`` or corrupt (a corrupt file is removed)."""
        p = self.blob_path(digest)
        try:
            if p.stat().st_size > max_bytes:
                return None
            data = p.read_bytes()
        except OSError:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            try:
                p.unlink()
            except OSError:
                pass
            return None
        return data

    # -- image records (re-publish without ``docker save``) ---------------------------------
    def _record_path(self, image_id: str) -> Path:
        return self.root / "images" / self.params / parse_digest(image_id).split(":", 1)[1]

    def image_record(self, image_id: str) -> ImageRecord | None:
        """The manifest staged before for engine image ``image_id``; None when absent or unreadable."""
        try:
            obj = json.loads(self._record_path(image_id).read_text())
            return ImageRecord(parse_digest(str(obj["manifest"])), str(obj["mediaType"]),
                               bool(obj.get("engineManifest", False)))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # the caller exports again

    def forget_image(self, image_id: str, message: str) -> None:
        """Drop the record of ``image_id`` (it named what is not that image), with a warning."""
        self._drop(self._record_path(image_id), message)

    def record_image(self, image_id: str, manifest_digest: str, media_type: str, *,
                     engine_manifest: bool) -> None:
        """Remember which manifest (its bytes already in the cache) was staged for ``image_id``."""
        body = json.dumps({"manifest": parse_digest(manifest_digest), "mediaType": media_type,
                           "engineManifest": engine_manifest}, sort_keys=True)
        try:
            with self._writing("w") as (fh, tmp):
                fh.write(body + "\n")
                self._commit(fh, tmp, self._record_path(image_id))
        except OSError:
            pass  # only an optimisation: the next publish exports again

    def _pool_get(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gzip")
        return self._pool

    def compress_layer(self, stream: IO[bytes], *, expected_diff_id: str | None = None,
                       on_progress: Callable[[int], None] | None = None) -> tuple[str, Blob]:
        """Compress an uncompressed layer stream into the cache; return ``(diff_id, blob)``.

        Memory stays bounded: at most ``2 * workers`` chunks are in flight.
        """
        pool = self._pool_get()
        raw_hash, gz_hash = hashlib.sha256(), hashlib.sha256()
        crc, isize, gz_size = 0, 0, 0
        inflight: deque[Future[bytes]] = deque()
        try:
            with self._writing() as (out, tmp):
                def emit(data: bytes) -> None:
                    nonlocal gz_size
                    out.write(data)
                    gz_hash.update(data)
                    gz_size += len(data)

                emit(_GZIP_HEADER)
                while True:
                    chunk = _read_full(stream, self.chunk_size)
                    if not chunk:
                        break
                    raw_hash.update(chunk)
                    crc = zlib.crc32(chunk, crc)
                    isize += len(chunk)
                    inflight.append(pool.submit(_deflate_chunk, chunk, self.level))
                    while len(inflight) >= 2 * self.workers or (inflight and inflight[0].done()):
                        emit(inflight.popleft().result())
                    if on_progress:
                        on_progress(isize)
                while inflight:
                    emit(inflight.popleft().result())
                emit(_FINAL_EMPTY_BLOCK + struct.pack("<II", crc & 0xFFFFFFFF, isize & 0xFFFFFFFF))
                diff_id = "sha256:" + raw_hash.hexdigest()
                if expected_diff_id is not None and diff_id != expected_diff_id:
                    raise OperationError(f"layer content hashed to {diff_id}, expected {expected_diff_id}; "
                                         "the image changed during export: retry")
                digest = "sha256:" + gz_hash.hexdigest()
                target = self.blob_path(digest)
                self._commit(out, tmp, target)
            self._remember_match(diff_id, digest)  # made here from those very bytes
            self._index(diff_id, digest, gz_size)
            return diff_id, self._known_whole(digest, target)
        finally:
            for f in inflight:
                f.cancel()

    def _index(self, diff_id: str, digest: str, size: int) -> None:
        idx = self.root / "layers" / self.params / diff_id.split(":", 1)[1]
        with self._writing("w") as (fh, tmp):
            fh.write(f"{digest} {size}\n")
            self._commit(fh, tmp, idx)

    def remember_location(self, digest: str, registry: str, repository: str) -> None:
        """Record that ``registry/repository`` holds ``digest`` (a hint for cross-repository mounts)."""
        line = f"{registry} {repository}\n"
        p = self.root / "where" / parse_digest(digest).split(":", 1)[1]
        try:
            if p.exists() and line in p.read_text().splitlines(keepends=True):
                return
            with open(p, "a") as fh:  # one short append: atomic enough for concurrent writers
                fh.write(line)
        except OSError:
            pass  # only a hint

    def known_locations(self, digest: str, registry: str) -> list[str]:
        """Repositories of ``registry`` this machine pushed ``digest`` to (hints; may be stale)."""
        p = self.root / "where" / parse_digest(digest).split(":", 1)[1]
        try:
            lines = p.read_text().splitlines()
        except OSError:
            return []
        return [repo for reg, _, repo in (ln.partition(" ") for ln in lines) if reg == registry and repo]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BlobCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_COPY):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _gunzip_digest(path: Path) -> str:
    """The digest of what the gzip file ``path`` decompresses to (every member, in constant memory)."""
    h = hashlib.sha256()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""
    with open(path, "rb") as fh:
        while True:
            if not pending:
                pending = fh.read(_COPY)
                if not pending:
                    break
            if d.eof:  # the member before ended: the next one starts here
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            h.update(d.decompress(pending, _COPY))
            pending = d.unused_data if d.eof else d.unconsumed_tail
        h.update(d.flush())
    if not d.eof:
        raise EOFError(f"{path} ends in the middle of a gzip stream")
    return "sha256:" + h.hexdigest()


def _read_full(stream: IO[bytes], n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; b'' only at end of stream."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)
