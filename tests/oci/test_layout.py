"""localai_ci.oci.layout: OCI image layouts and image archives read into one publishable image (files only).

The shapes are written the way their tools write them (``tests/support/oci_archives.py``): BuildKit's OCI
layout directory, the same as a tar, go-containerregistry's docker-archive (LocalAI's Darwin
backends), ``docker save`` before Docker 25.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from localai_ci.oci.blobcache import BlobCache
from localai_ci.oci.layout import (LayoutError, new_layout_dir, read_layout, remove_layout,
                                   remove_stale_layouts)
from localai_ci.oci.manifest import DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_MANIFEST
from localai_ci.oci.platforms import parse_platform
from localai_ci.oci.reference import sha256_digest
from tests.support.oci_archives import tar_dir, write_darwin_archive, write_legacy_archive, write_oci_layout


@pytest.fixture
def cache(tmp_path: Path) -> BlobCache:
    return BlobCache(tmp_path / "cache")


def test_a_buildkit_layout_directory_is_used_in_place(tmp_path: Path) -> None:
    w = write_oci_layout(tmp_path / "lay", platform="linux/arm64", layers=3)
    image = read_layout(w.path, None)  # no cache: nothing to copy
    assert image.kind == "OCI image layout" and image.copied == 0
    assert image.manifest is not None and sha256_digest(image.manifest) == w.manifest_digest  # as written
    assert image.manifest_media_type == OCI_MANIFEST and image.config_digest == w.config_digest
    assert [x.descriptor.digest for x in image.layers] == list(w.layer_digests)
    assert all(x.descriptor.media_type == OCI_LAYER_GZIP for x in image.layers)
    assert all(x.path.parent == (w.path / "blobs" / "sha256").resolve() for x in image.layers)  # the layout's files
    assert image.platform_text == "linux/arm64" and image.diff_ids == w.diff_ids
    assert dict(image.labels) == {"org.localai.ci.leg": "leg"}


def test_the_same_layout_as_a_tar_is_copied_into_the_cache_and_keeps_its_manifest(tmp_path: Path,
                                                                                  cache: BlobCache) -> None:
    w = write_oci_layout(tmp_path / "lay")
    image = read_layout(tar_dir(w.path, tmp_path / "lay.tar"), cache)
    assert image.kind == "OCI image layout (tar)" and image.copied == 2
    assert image.manifest_digest == w.manifest_digest
    assert all(x.path.parent == cache.root / "sha256" for x in image.layers)
    assert [x.path.read_bytes() for x in image.layers] == \
           [(w.path / "blobs" / "sha256" / d.split(":")[1]).read_bytes() for d in w.layer_digests]


def test_an_index_is_narrowed_to_the_platform_and_attestations_are_skipped(tmp_path: Path) -> None:
    w = write_oci_layout(tmp_path / "lay", platform="linux/amd64", other_platform="linux/arm64", attestation=True)
    image = read_layout(w.path, None, platform=parse_platform("linux/amd64"))
    assert image.manifest_digest == w.manifest_digest
    assert read_layout(w.path, None, platform=parse_platform("linux/arm64")).platform_text == "linux/arm64"
    with pytest.raises(LayoutError, match=r"holds 2 image\(s\) \(linux/amd64, linux/arm64\).*single-platform"):
        read_layout(w.path, None)
    one = write_oci_layout(tmp_path / "one", attestation=True)  # one image and its attestation: the image
    assert read_layout(one.path, None).manifest_digest == one.manifest_digest


def test_a_darwin_backend_archive_is_a_docker_archive_of_gzip_layers(tmp_path: Path, cache: BlobCache) -> None:
    """What ``local-ai util create-oci-image`` writes: the layers are kept as they are (their digests are
    the archive's), the manifest is composed by the publisher, each layer's content is checked against
    the config's diff_id."""
    w = write_darwin_archive(tmp_path / "llama-cpp.tar", layers=2)
    image = read_layout(w.path, cache, platform=parse_platform("darwin/arm64"))
    assert image.kind == "docker-archive" and image.manifest is None and image.copied == 2
    assert image.platform_text == "darwin/arm64" and image.config_digest == w.config_digest
    assert [x.descriptor.digest for x in image.layers] == list(w.layer_digests)
    assert all(x.descriptor.media_type == DOCKER_LAYER_GZIP for x in image.layers)
    bad = write_darwin_archive(tmp_path / "bad.tar", seed="bad", corrupt_diff_id=True)
    with pytest.raises(LayoutError, match=r"layer 1 .* decompresses to sha256:.*but the config's diff_id 1 is"):
        read_layout(bad.path, cache)


def test_uncompressed_layers_are_gzipped_once_and_the_manifest_composed(tmp_path: Path, cache: BlobCache) -> None:
    w = write_legacy_archive(tmp_path / "legacy.tar")
    image = read_layout(w.path, cache)
    assert image.manifest is None and len(image.layers) == 1
    layer = image.layers[0]
    assert layer.descriptor.media_type == DOCKER_LAYER_GZIP
    assert sha256_digest(gzip.decompress(layer.path.read_bytes())) == w.diff_ids[0]
    again = read_layout(w.path, cache)
    assert again.layers[0].descriptor.digest == layer.descriptor.digest  # deterministic gzip: the same digest


@pytest.mark.parametrize("damage, message", [
    ("manifest", r"manifest blobs/sha256/\w+ hashes to sha256:\w+, not sha256:\w+: the layout is corrupt"),
    ("layer", r"layer 2 sha256:\w+ \(\d+ bytes\) is missing; the export was cut short"),
    ("config", r"config \(blobs/sha256/\w+\) is missing"),
    ("index", r"index.json\) is not JSON"),
])
def test_a_damaged_layout_is_refused_naming_what(tmp_path: Path, damage: str, message: str) -> None:
    w = write_oci_layout(tmp_path / "lay")
    blobs = w.path / "blobs" / "sha256"
    if damage == "manifest":
        (blobs / w.manifest_digest.split(":")[1]).write_bytes(b'{"schemaVersion": 2}')
    elif damage == "layer":
        (blobs / w.layer_digests[1].split(":")[1]).unlink()
    elif damage == "config":
        (blobs / w.config_digest.split(":")[1]).unlink()
    else:
        (w.path / "index.json").write_text("{not json")
    with pytest.raises(LayoutError, match=message):
        read_layout(w.path, None)


def test_a_truncated_archive_and_a_non_archive_are_refused(tmp_path: Path, cache: BlobCache) -> None:
    w = write_darwin_archive(tmp_path / "a.tar", layers=1)
    with tarfile.open(w.path) as tar:
        layer = tar.getmembers()[-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(w.path.read_bytes()[: layer.offset_data + layer.size // 2])  # in the middle of the layer
    with pytest.raises(LayoutError, match="the archive is truncated or corrupt .*write it again"):
        read_layout(cut, cache)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LayoutError, match="neither an OCI image layout directory nor a tar archive"):
        read_layout(tmp_path / "notes.txt", cache)
    with pytest.raises(LayoutError, match="no such file or directory"):
        read_layout(tmp_path / "missing.tar", cache)
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(LayoutError, match="neither index.json .* nor manifest.json"):
        read_layout(empty, cache)


def test_a_symlinked_blob_in_a_layout_directory_is_not_followed(tmp_path: Path) -> None:
    w = write_oci_layout(tmp_path / "lay")
    outside = tmp_path / "outside"
    blob = w.path / "blobs" / "sha256" / w.layer_digests[0].split(":")[1]
    outside.write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(outside)
    with pytest.raises(LayoutError, match="layer 1 .* is missing"):
        read_layout(w.path, None)


def test_stale_layouts_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    mine = new_layout_dir(tmp_path, "localai-ci/backend-cpu-x:amd64")
    assert not mine.exists() and mine.parent == tmp_path and mine.name.startswith("localai-ci-backend-cpu-x-amd64.")
    mine.mkdir()
    # a layout exported by a process that has exited since
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"leg.{done.stdout.strip()}.0123abcd"
    write_oci_layout(dead)
    alive = tmp_path / f"leg.{os.getppid()}.0123abcd"  # our parent is alive
    alive.mkdir()
    other = tmp_path / "not-a-layout"
    other.mkdir()
    assert remove_stale_layouts(tmp_path) == [dead]
    assert not dead.exists() and mine.exists() and alive.exists() and other.exists()
    remove_layout(mine)
    assert not mine.exists()


def test_layout_json_is_bounded(tmp_path: Path) -> None:
    w = write_oci_layout(tmp_path / "lay")
    (w.path / "index.json").write_text(json.dumps({"manifests": [], "pad": "x" * (5 << 20)}))
    with pytest.raises(LayoutError, match=r"index.json \(index.json\) is \d+ bytes, more than"):
        read_layout(w.path, None)
