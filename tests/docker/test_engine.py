"""Engine adapter: platform check (pure); facts, inspect and export against the real engine.

Builds are the builder's (``tests/docker/test_builder.py``); here they only make images to inspect and export.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localai_ci.oci.blobcache import BlobCache
from localai_ci.docker.engine import IMAGE_STORE_CLASSIC, IMAGE_STORE_CONTAINERD, Engine, ImageInfo, check_platform
from localai_ci.errors import EngineError
from localai_ci.oci.platforms import parse_platform
from tests.conftest import in_ci


def info(arch: str, variant: str = "") -> ImageInfo:
    return ImageInfo(id="sha256:" + "a" * 64, os="linux", architecture=arch, variant=variant, diff_ids=(), size=0)


def test_check_platform_ok() -> None:
    check_platform(info("arm64"), parse_platform("linux/arm64"), "leg")


def test_check_platform_variant_is_normalized() -> None:
    check_platform(info("arm64", "v8"), parse_platform("linux/arm64"), "leg")  # real arm64 bases say v8
    check_platform(info("arm64"), parse_platform("linux/arm64/v8"), "leg")
    with pytest.raises(EngineError, match="is linux/arm/v6, but the leg's platform is linux/arm/v7"):
        check_platform(info("arm", "v6"), parse_platform("linux/arm/v7"), "leg")
    with pytest.raises(EngineError, match="is linux/mips64"):
        check_platform(info("mips64"), parse_platform("linux/amd64"), "leg")


def test_check_platform_mismatch_explains() -> None:
    with pytest.raises(EngineError) as err:
        check_platform(info("amd64"), parse_platform("linux/arm64"), "backends tag-suffix '-x' platform-tag arm64")
    msg = str(err.value)
    assert "is linux/amd64, but the leg's platform is linux/arm64" in msg
    # BuildKit's truth: it labels the image with the platform asked for, so another one means another image
    assert "labels the image with the platform it was asked for" in msg and "rebuild it" in msg
    assert "native arm64 runner (runs-on: ubuntu-24.04-arm)" in msg


def test_check_platform_advice_without_a_runner() -> None:
    """An architecture without a native runner in the policy: the advice names no runs-on."""
    from localai_ci.oci.platforms import RunnerPolicy

    with pytest.raises(EngineError) as err:
        check_platform(info("amd64"), parse_platform("linux/s390x"), "leg", RunnerPolicy(native={}))
    msg = str(err.value)
    assert "for linux/s390x" in msg and "native s390x runner." in msg and "runs-on" not in msg


def test_blobcache_gzip_is_valid_and_deterministic(tmp_path: Path) -> None:
    import gzip
    import os

    data = os.urandom(300_000) + b"text\n" * 400_000
    with BlobCache(tmp_path / "a", chunk_size=128 << 10) as a, BlobCache(tmp_path / "b", chunk_size=128 << 10) as b:
        d1, b1 = a.compress_layer(io.BytesIO(data))
        d2, b2 = b.compress_layer(io.BytesIO(data))
        assert b1.digest == b2.digest and d1 == d2
        assert gzip.decompress(b1.path.read_bytes()) == data
        assert a.layer(d1) == b1
        assert b1.path.read_bytes()[4:8] == b"\0\0\0\0"  # mtime 0


def _docker(*args: str) -> str:
    """The docker CLI (the independent peer of the SDK) against the engine under test (DOCKER_HOST)."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout.strip()


@pytest.mark.engine
def test_facts_are_the_engines_own(engine: Any) -> None:
    """facts() says what `docker version` / `docker info` / `docker network ls` say, image store first."""
    facts = Engine(engine).facts()
    status = {str(k): str(v) for k, v in json.loads(_docker("info", "--format", "{{json .DriverStatus}}")) or []}
    driver = _docker("info", "--format", "{{.Driver}}")
    # the containerd image store reports driver-type io.containerd.snapshotter.v1; the classic one (overlay2)
    # has no driver-type at all
    want = IMAGE_STORE_CONTAINERD if "snapshotter" in status.get("driver-type", "") else IMAGE_STORE_CLASSIC
    assert facts.image_store == want, f"docker info: driver {driver!r}, DriverStatus {status}"
    assert facts.containerd_store is (want == IMAGE_STORE_CONTAINERD)
    assert want in facts.describe() and facts.version in facts.describe()
    assert facts.version == _docker("version", "--format", "{{.Server.Version}}")
    assert facts.api_version == _docker("version", "--format", "{{.Server.APIVersion}}")
    assert facts.arch == _docker("version", "--format", "{{.Server.Arch}}")  # amd64 / arm64, as in image configs
    networks = _docker("network", "ls", "--format", "{{.Name}}").split()
    assert facts.has_bridge is ("bridge" in networks), networks
    if in_ci():  # .ci/run (and the engines of this suite) start dockerd with --bridge none
        assert facts.has_bridge is False, f"expected an engine started with --bridge none; networks: {networks}"


def _layer_tar(data: bytes) -> bytes:
    """A layer blob as a tar: the classic store exports layers uncompressed, the containerd store gzipped."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.mark.engine
def test_inspect_export_of_a_built_image(engine: Any, build_image: Callable[..., Any], unique: str) -> None:
    eng = Engine(engine)
    store = eng.facts().image_store
    built = build_image(f"FROM scratch\nLABEL org.opencontainers.image.revision={unique}\nCOPY f /f\n",
                        files={"f": unique}, tag=f"localai-ci-test/{unique}:amd64")
    try:
        i = eng.inspect(built.ref)
        assert i.os == "linux" and i.architecture == "amd64" and i.platform_text == "linux/amd64"
        assert len(i.diff_ids) == 1 and dict(i.labels)["org.opencontainers.image.revision"] == unique
        assert i == built.info
        assert eng.has_image(built.ref) and eng.has_image(i.id)
        # the image id names the config on the classic store, the manifest on the containerd store
        assert built.config_digest.startswith("sha256:")
        assert (i.id == built.config_digest) is (store == IMAGE_STORE_CLASSIC), (store, i.id, built.config_digest)
        check_platform(i, parse_platform("linux/amd64"), "leg")

        with eng.export(built.ref) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            files: dict[str, bytes] = {}
            for m in tar:
                f = tar.extractfile(m) if m.isfile() else None
                if f is not None:
                    files[m.name] = f.read()
        # Docker >= 25: an OCI layout whose manifest.json names blobs by digest
        assert "index.json" in files and "oci-layout" in files
        entry = json.loads(files["manifest.json"])[0]
        assert entry["Config"] == "blobs/sha256/" + built.config_digest.split(":")[1]
        config_blob = files[entry["Config"]]
        assert "sha256:" + hashlib.sha256(config_blob).hexdigest() == built.config_digest
        config = json.loads(config_blob)
        assert config["architecture"] == "amd64" and tuple(config["rootfs"]["diff_ids"]) == i.diff_ids
        (layer_path,) = entry["Layers"]
        layer = _layer_tar(files[layer_path])
        assert "sha256:" + hashlib.sha256(layer).hexdigest() == i.diff_ids[0]
        with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
            member = lt.extractfile("f")
            assert member is not None and member.read().decode() == unique
    finally:
        engine.images.remove(built.ref, force=True)


@pytest.mark.engine
def test_inspect_of_an_arm64_build_passes_the_platform_check(engine: Any, build_image: Callable[..., Any],
                                                             unique: str) -> None:
    """A FROM scratch image built for linux/arm64 on this engine is arm64 (BuildKit sets the platform)."""
    built = build_image("FROM scratch\nCOPY f /f\n", platform="linux/arm64", files={"f": unique},
                        tag=f"localai-ci-test/{unique}:arm64")
    try:
        i = Engine(engine).inspect(built.ref)
        assert i.architecture == "arm64", i.platform_text
        check_platform(i, parse_platform("linux/arm64"), "leg")
        with pytest.raises(EngineError, match="is linux/arm64, but the leg's platform is linux/amd64"):
            check_platform(i, parse_platform("linux/amd64"), "leg")
    finally:
        engine.images.remove(built.ref, force=True)


@pytest.mark.engine
def test_export_of_a_missing_image_says_so(engine: Any, unique: str) -> None:
    with pytest.raises(EngineError, match=r"exporting image .*: it is no longer in the engine"):
        Engine(engine).export(f"localai-ci-test/{unique}:none")


@pytest.mark.engine
def test_inspect_missing_image(engine: Any, unique: str) -> None:
    with pytest.raises(EngineError, match="build it first"):
        Engine(engine).inspect(f"localai-ci-test/{unique}:none")
