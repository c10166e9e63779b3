"""The ground the pipeline stands on, proven on the real engine and registries:
offline multi-arch base images served to BuildKit -> builds of that arch through the builder seam
(``localai_ci.docker.builder``, ``docker buildx build``) -> ``docker push`` to both registries -> read back with the
independent peer tool (``docker buildx imagetools``); what BuildKit makes of a leg's platform; registries
survive a restart and fail clearly when killed.
"""
from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
import pytest

from localai_ci.docker.offline_bases import OFFLINE_PREFIX, static_elf_arch
from localai_ci.docker.engine import check_platform
from localai_ci.errors import OperationError
from localai_ci.oci.localregistry import LocalRegistry
from localai_ci.oci.platforms import parse_platform

pytestmark = [pytest.mark.engine, pytest.mark.registry]

DOCKER_V2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nLABEL org.localai-ci.test=infra\nCOPY hello.txt /hello.txt\n"


def push(engine: Any, repository: str, tag: str) -> str:
    """``docker push`` through the SDK; returns the pushed manifest digest, raises on any error line."""
    digest = ""
    for line in engine.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"pushing {repository}:{tag}: {line['error']}")
        digest = line.get("aux", {}).get("Digest", digest)
        # the containerd image store reports it in the status line only: "<tag>: digest: sha256:... size: N"
        status = str(line.get("status", ""))
        if not digest and "digest: sha256:" in status:
            digest = status.split("digest: ", 1)[1].split()[0]
    assert digest.startswith("sha256:"), f"no digest reported for {repository}:{tag}"
    return digest


def image_file(engine: Any, ref: str, path: str) -> bytes:
    """One file of an image in the engine (a container is created, never started)."""
    container = engine.containers.create(ref, command=["/never-run"])
    try:
        bits, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            f = tar.extractfile(path.rsplit("/", 1)[-1])
            assert f is not None, f"{path} in {ref} is not a file"
            return f.read()
    finally:
        container.remove(force=True)


@pytest.fixture
def built(engine: Any, build_image: Callable[..., Any], unique: str) -> Iterator[Callable[[str], Any]]:
    """``build(arch) -> localai_ci.docker.builder.BuiltImage``: a COPY-only image on the offline base, for ``arch``."""
    tags: list[str] = []
    base = f"{OFFLINE_PREFIX}{unique}-base:1"

    def build(arch: str) -> Any:
        tag = f"ci-test/{unique}:{arch}"
        tags.append(tag)
        return build_image(DOCKERFILE, platform=f"linux/{arch}", files={"hello.txt": "hello\n"}, tag=tag,
                           build_args={"BASE_IMAGE": base}, contexts_for=(base,))

    try:
        yield build
    finally:
        for tag in tags:
            for ref in [tag, *engine.images.get(tag).tags] if _exists(engine, tag) else []:
                try:
                    engine.images.remove(ref, force=True)
                except docker.errors.APIError:
                    pass


def _exists(engine: Any, ref: str) -> bool:
    try:
        engine.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_build_per_arch_push_to_both_registries_and_read_back(
        engine: Any, builder: Any, registries: tuple[LocalRegistry, LocalRegistry], built: Callable[[str], Any],
        imagetools: Any, unique: str, arch: str) -> None:
    image = built(arch)
    assert (image.info.os, image.info.architecture) == ("linux", arch)
    assert image_file(engine, image.ref, "/hello.txt") == b"hello\n"
    containerd = builder.caps().engine.containerd_store
    if not containerd:
        assert image.info.id == image.config_digest  # the classic store's image id is the config digest
    for reg in registries:
        repository = f"{reg.host}/{unique}/hello"
        engine.api.tag(image.ref, repository, arch)
        digest = push(engine, repository, arch)
        manifest = imagetools.inspect_raw(f"{repository}:{arch}")
        assert manifest["mediaType"] in (DOCKER_V2_MANIFEST, OCI_MANIFEST)
        assert manifest["config"]["digest"] == image.config_digest, "the registry must hold exactly the built config"
        if containerd:
            assert digest == image.info.id  # the containerd store's image id is the manifest digest, pushed as is
        config = imagetools.inspect_image(f"{repository}@{digest}")
        assert (config["os"], config["architecture"]) == ("linux", arch)
        assert config["config"]["Labels"]["org.localai-ci.test"] == "infra"


BUILDER_STAGE = """ARG BASE_IMAGE
FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS builder
ARG TARGETARCH
ARG BUILDARCH
RUN echo "TARGETARCH=${TARGETARCH} BUILDARCH=${BUILDARCH}" > /arch.txt
"""


@pytest.mark.parametrize("final", ["scratch", "buildplatform"])
def test_what_buildkit_makes_of_an_arm64_build_on_an_amd64_machine(
        engine: Any, builder: Any, build_image: Callable[..., Any], unique: str, final: str) -> None:
    """Why the final stage must not be ``FROM --platform=$BUILDPLATFORM``.

    A builder stage on the build platform gets TARGETARCH=arm64 and runs natively; a ``FROM scratch``
    final stage holds exactly what is copied into it and is arm64. A final stage on the build platform
    holds the amd64 base's files, yet BuildKit writes the requested platform (arm64) into the config
    whenever --platform is given (the builder always gives it): the config says arm64, the binaries are
    amd64, and a check of the config (``localai_ci.docker.engine.check_platform``) cannot see it.
    """
    if builder.caps().engine.arch != "amd64":
        pytest.skip("this case is about an arm64 leg built on an amd64 machine")
    base = f"{OFFLINE_PREFIX}{unique}-base:1"
    last = ("FROM scratch\nCOPY --from=builder /arch.txt /arch.txt\n" if final == "scratch" else
            "FROM --platform=$BUILDPLATFORM ${BASE_IMAGE}\nCOPY --from=builder /arch.txt /arch.txt\n")
    tag = f"ci-test/{unique}:{final}"
    try:
        image = build_image(BUILDER_STAGE + last, platform="linux/arm64", build_args={"BASE_IMAGE": base},
                            contexts_for=(base,), tag=tag)
        assert image_file(engine, tag, "/arch.txt") == b"TARGETARCH=arm64 BUILDARCH=amd64\n"
        assert (image.info.os, image.info.architecture) == ("linux", "arm64")
        check_platform(image.info, parse_platform("linux/arm64"), f"{final} final stage")  # the config agrees
        if final == "scratch":
            assert len(image.info.diff_ids) == 1  # only the copied file: nothing of the amd64 build platform
        else:
            assert static_elf_arch(image_file(engine, tag, "/bin/busybox")) == "amd64"  # the base's, not arm64
    finally:
        try:
            engine.images.remove(tag, force=True)
        except docker.errors.APIError:
            pass


@pytest.mark.slow
def test_pushed_image_survives_a_registry_restart(
        engine: Any, registry_factory: Callable[[], LocalRegistry], built: Callable[[str], Any],
        imagetools: Any, unique: str) -> None:
    reg = registry_factory()
    image = built("arm64")
    repository = f"{reg.host}/{unique}/restart"
    engine.api.tag(image.ref, repository, "v1")
    digest = push(engine, repository, "v1")
    reg.stop()
    assert imagetools.run("inspect", "--raw", f"{repository}:v1").returncode != 0
    reg.start()
    assert imagetools.inspect_raw(f"{repository}@{digest}")["config"]["digest"] == image.config_digest
    assert imagetools.inspect_image(f"{repository}:v1")["architecture"] == "arm64"


@pytest.mark.slow
def test_killed_registry_fails_clearly(
        engine: Any, registry_factory: Callable[[], LocalRegistry], built: Callable[[str], Any],
        imagetools: Any, unique: str) -> None:
    reg = registry_factory()
    image = built("amd64")
    repository = f"{reg.host}/{unique}/killed"
    engine.api.tag(image.ref, repository, "v1")
    push(engine, repository, "v1")
    reg.kill()
    peer = imagetools.run("inspect", "--raw", f"{repository}:v1")
    assert peer.returncode != 0 and "connection refused" in peer.stderr.lower(), peer.stderr
    with pytest.raises((RuntimeError, docker.errors.APIError), match=r"(?i)connection refused"):
        push(engine, repository, "v1")
    with pytest.raises(OperationError, match=rf"registry {reg.host}: .*not running"):
        reg.wait_ready(timeout=0.5)
