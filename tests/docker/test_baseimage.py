"""localai_ci.docker.offline_bases: offline per-arch base images (pure archive checks, then the real engine)."""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from typing import Any

import pytest

from localai_ci.docker.offline_bases import OFFLINE_PREFIX, ensure_base_image, is_offline_base, split_name, write_base_archive
from localai_ci.errors import UserError
from localai_ci.oci.platforms import parse_platform

AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")
ARMV7 = parse_platform("linux/arm/v7")


def archive(name: str, platform: Any, payload: int = 0) -> tuple[bytes, str]:
    buf = io.BytesIO()
    image_id = write_base_archive(buf, name, platform, payload)
    return buf.getvalue(), image_id


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                for m in tar.getmembers()}


def test_archive_is_deterministic_per_name_and_platform() -> None:
    a, id_a = archive("ci-offline/ubuntu:24.04", ARM64)
    b, id_b = archive("ci-offline/ubuntu:24.04", ARM64)
    assert a == b and id_a == id_b
    _, id_amd = archive("ci-offline/ubuntu:24.04", AMD64)
    _, id_other = archive("ci-offline/debian:12", ARM64)
    assert len({id_a, id_amd, id_other}) == 3


def test_archive_is_a_docker_archive_of_the_platform() -> None:
    data, image_id = archive("ci-offline/ubuntu:24.04", ARMV7)
    files = members(data)
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] == ["ci-offline/ubuntu:24.04"]
    config_bytes = files[manifest[0]["Config"]]
    assert image_id == "sha256:" + manifest[0]["Config"].removesuffix(".json")
    config = json.loads(config_bytes)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm", "v7")
    layer = files[manifest[0]["Layers"][0]]
    import hashlib
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    inner = members(layer)
    assert b"linux/arm/v7" in inner["etc/os-release"]
    assert "README.ci-offline" in inner
    assert len(data) <= 32 * 1024, "the base archive must stay tiny (tar padding included)"


def test_payload_is_incompressible_and_sized() -> None:
    import zlib
    data, _ = archive("ci-offline/bench:1", AMD64, payload=1 << 20)
    layer = members(data)
    inner = members(next(v for k, v in layer.items() if k.endswith("layer.tar")))
    assert len(inner["payload.bin"]) == 1 << 20
    assert len(zlib.compress(inner["payload.bin"])) > 0.99 * (1 << 20)


def test_names() -> None:
    assert is_offline_base("ci-offline/ubuntu:24.04") and OFFLINE_PREFIX == "ci-offline/"
    assert not is_offline_base("ubuntu:24.04")
    assert split_name("ci-offline/ubuntu") == ("ci-offline/ubuntu", "latest")
    with pytest.raises(UserError, match="base image name"):
        split_name("ci-offline/Ubuntu:24.04")


def test_real_names_are_left_to_the_engine() -> None:
    with pytest.raises(UserError, match=r"'ubuntu:24.04' is a real image.*ci-offline/"):
        ensure_base_image(None, "ubuntu:24.04", AMD64)


@pytest.mark.engine
@pytest.mark.parametrize("platform", [AMD64, ARM64], ids=str)
def test_loaded_image_has_the_requested_arch(engine: Any, base_image: Callable[..., str], unique: str,
                                             platform: Any) -> None:
    image_id = base_image(f"{unique}:24.04", platform)
    image = engine.images.get(f"{OFFLINE_PREFIX}{unique}:24.04")
    assert image.id == image_id
    assert (image.attrs["Os"], image.attrs["Architecture"]) == ("linux", str(platform.arch))
    assert base_image(f"{unique}:24.04", platform) == image_id, "same name+platform must give the same id"


@pytest.mark.engine
def test_same_name_moves_to_the_other_arch(engine: Any, base_image: Callable[..., str], unique: str) -> None:
    arm = base_image(f"{unique}:1", "arm64")
    amd = base_image(f"{unique}:1", "amd64")
    assert arm != amd
    assert engine.images.get(f"{OFFLINE_PREFIX}{unique}:1").attrs["Architecture"] == "amd64"
    import docker.errors
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(arm)  # the replaced, unused image is not left dangling


@pytest.mark.engine
def test_payload_bytes_grow_the_image(engine: Any, base_image: Callable[..., str], unique: str) -> None:
    base_image(f"{unique}:big", "amd64", payload_bytes=2 << 20)
    assert engine.images.get(f"{OFFLINE_PREFIX}{unique}:big").attrs["Size"] >= 2 << 20


@pytest.mark.registry
def test_offline_bases_registry_is_private_and_leaves_nothing_behind(tmp_path: Any) -> None:
    """``OfflineBases`` without a host starts its own loopback registry, serves an amd64+arm64 index whose
    digest is the deterministic one, and removes its storage on close."""
    import os

    from localai_ci.docker.offline_bases import OfflineBases, offline_image
    from localai_ci.oci.reference import parse_image_name
    from localai_ci.oci.client import RegistryClient

    name = "ci-offline/ubuntu:24.04"
    with OfflineBases(dict(os.environ)) as bases:
        (served_name, ref), = bases.contexts([name, "ubuntu:24.04"])  # real images are not served
        assert served_name == name and ref.startswith("docker-image://127.0.0.1:")
        host_repo, digest = ref.removeprefix("docker-image://").split("@")
        assert digest == offline_image(name, os.environ).index.digest
        with RegistryClient(parse_image_name(host_repo.rsplit(":", 1)[0]), plain_http=True) as c:
            got = c.get_manifest(digest)
            assert got is not None
            index = json.loads(got[0])
        assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
        root = bases._tmp
        assert root is not None and root.exists()
    assert not root.exists()
