"""The blob cache trusts nothing it finds on disk (ci/oci/blobcache.py): a corrupt blob, a malformed or
wrong layer index entry, partial files of a killed writer. Real files, real processes; the publishes
through a real engine and registries are in tests/test_publish_stores.py
(``test_a_corrupt_or_lying_blob_cache_never_reaches_a_registry``)."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localai_ci.oci.blobcache import STALE_TMP_SECONDS, BlobCache


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cache_with_two_layers(root: Path, warnings: list[str]) -> tuple[BlobCache, list[tuple[str, str]]]:
    cache = BlobCache(root, chunk_size=128 << 10, warn=warnings.append)
    out = []
    for seed in (b"x", b"y"):
        diff_id, blob = cache.compress_layer(io.BytesIO(seed * 300_000 + os.urandom(50_000)))
        out.append((diff_id, blob.digest))
    return cache, out


def test_a_flipped_byte_in_a_cached_blob_is_dropped_with_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    cache, [(diff_id, digest), _] = cache_with_two_layers(tmp_path, warnings)
    cache.close()
    path = BlobCache(tmp_path).blob_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    again = BlobCache(tmp_path, chunk_size=128 << 10, warn=warnings.append)  # another process, as it were
    assert again.get_blob(digest) is None and again.layer(diff_id) is None
    assert not path.exists()
    assert len(warnings) == 1 and "does not hash to its name" in warnings[0], warnings


@pytest.mark.parametrize("line", ["", "garbage", "sha256:zz 12", "sha256:" + "a" * 64 + " abc", "a b c",
                                  "sha256:" + "a" * 64, "\x00\xff", "sha256:" + "a" * 64 + " -5"])
def test_a_malformed_index_line_is_dropped_with_a_warning_never_a_traceback(line: str, tmp_path: Path) -> None:
    warnings: list[str] = []
    cache, [(diff_id, _), _] = cache_with_two_layers(tmp_path, warnings)
    idx = tmp_path / "layers" / cache.params / diff_id[7:]
    idx.write_text(line)
    assert cache.layer(diff_id) is None
    assert not idx.exists() and len(warnings) == 1 and "is malformed" in warnings[0], warnings


def test_a_well_formed_but_wrong_index_line_is_dropped_with_a_warning(tmp_path: Path) -> None:
    """x's index entry naming y's blob (well formed, the blob whole): never returned for x."""
    warnings: list[str] = []
    cache, [(x_diff, x_digest), (_, y_digest)] = cache_with_two_layers(tmp_path, warnings)
    idx = tmp_path / "layers" / cache.params / x_diff[7:]
    y_size = cache.blob_path(y_digest).stat().st_size
    idx.write_text(f"{y_digest} {y_size}\n")
    assert cache.layer(x_diff) is None
    assert not idx.exists() and "decompresses to another layer" in warnings[0], warnings
    idx.write_text(f"{x_digest} {cache.blob_path(x_digest).stat().st_size}\n")  # the right one stays trusted
    assert cache.layer(x_diff) is not None and len(warnings) == 1
    # a fresh cache object (another run) checks the entry by decompressing it once, then remembers the fact
    facts = list((tmp_path / "verified").iterdir())
    assert [f.name for f in facts if f.name.startswith(x_diff[7:])] == [f"{x_diff[7:]}-{x_digest[7:]}"]


WRITER = """
import sys
from localai_ci.oci.blobcache import BlobCache
cache = BlobCache(sys.argv[1])
class Slow:
    def __init__(self): self.sent = 0
    def read(self, n):
        if self.sent > (4 << 20):
            print("writing", flush=True)
            sys.stdin.read()  # blocks: a publish stuck half-way
        self.sent += n
        return b"z" * n
cache.compress_layer(Slow())
"""


def _half_written(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def _age(root: Path) -> list[Path]:
    files = list((root / "tmp").iterdir())
    old = time.time() - 2 * STALE_TMP_SECONDS
    for f in files:
        os.utime(f, (old, old))
    return files


def test_the_partial_file_of_a_killed_publish_is_reclaimed_and_a_live_writers_is_not(tmp_path: Path) -> None:
    killed_root, live_root = tmp_path / "killed", tmp_path / "live"
    BlobCache(killed_root), BlobCache(live_root)
    killed, live = _half_written(killed_root), _half_written(live_root)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        left = _age(killed_root)
        assert len(left) == 1 and left[0].stat().st_size > 0
        fresh = killed_root / "tmp" / "just-made"
        fresh.write_bytes(b"a writer that has not locked it yet")
        warnings: list[str] = []
        BlobCache(killed_root, warn=warnings.append)
        assert not left[0].exists() and fresh.exists(), "the killed writer's file is reclaimed, a fresh one is not"
        assert len(warnings) == 1 and "reclaimed 1 partial file(s)" in warnings[0], warnings
        held = _age(live_root)
        BlobCache(live_root, warn=warnings.append)
        assert all(f.exists() for f in held) and len(warnings) == 1  # its writer still holds it
    finally:
        for proc in (killed, live):
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


def test_a_gzip_of_several_members_is_checked_whole(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    raw = os.urandom(200_000)
    two = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])
    blob = cache.put_bytes(two)
    assert cache.layer_matches(blob, sha(raw)) and not cache.layer_matches(cache.put_bytes(gzip.compress(b"x")), sha(raw))
