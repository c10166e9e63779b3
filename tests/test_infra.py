"""The ground the pipeline stands on, proven on the real engine and registries:
offline per-arch base images -> classic-builder COPY-only builds of that arch ->
``docker push`` to both registries -> read back with the independent peer tool
(``docker buildx imagetools``); registries survive a restart and fail clearly when killed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from ci.baseimage import OFFLINE_PREFIX
from ci.errors import OperationError
from ci.localregistry import LocalRegistry

pytestmark = [pytest.mark.engine, pytest.mark.registry]

DOCKER_V2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def build_context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nLABEL org.localai-ci.test=infra\n"
                                    "COPY hello.txt /hello.txt\n")
    (ctx / "hello.txt").write_text("hello\n")
    return ctx


def push(engine: Any, repository: str, tag: str) -> str:
    """``docker push`` through the SDK; returns the pushed manifest digest, raises on any error line."""
    digest = ""
    for line in engine.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"pushing {repository}:{tag}: {line['error']}")
        digest = line.get("aux", {}).get("Digest", digest)
    assert digest.startswith("sha256:"), f"no digest reported for {repository}:{tag}"
    return digest


@pytest.fixture
def built(engine: Any, base_image: Callable[..., str], unique: str, tmp_path: Path
          ) -> Iterator[Callable[[str], Any]]:
    """``build(arch) -> Image``: a COPY-only image built on an offline base of ``arch``."""
    tags: list[str] = []

    def build(arch: str) -> Any:
        base = f"{OFFLINE_PREFIX}{unique}-base-{arch}:1"
        base_image(base, arch)
        tag = f"ci-test/{unique}:{arch}"
        image, _ = engine.images.build(path=str(build_context(tmp_path / arch)), tag=tag, platform=f"linux/{arch}",
                                       buildargs={"BASE_IMAGE": base}, pull=False, rm=True, forcerm=True)
        tags.append(tag)
        return image

    try:
        yield build
    finally:
        for tag in tags:
            for ref in [tag, *engine.images.get(tag).tags] if _exists(engine, tag) else []:
                try:
                    engine.images.remove(ref)
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
        engine: Any, registries: tuple[LocalRegistry, LocalRegistry], built: Callable[[str], Any],
        imagetools: Any, unique: str, arch: str) -> None:
    image = built(arch)
    assert (image.attrs["Os"], image.attrs["Architecture"]) == ("linux", arch)
    for reg in registries:
        repository = f"{reg.host}/{unique}/hello"
        assert image.tag(repository, tag=arch)
        digest = push(engine, repository, arch)
        manifest = imagetools.inspect_raw(f"{repository}:{arch}")
        assert manifest["mediaType"] in (DOCKER_V2_MANIFEST, OCI_MANIFEST)
        assert manifest["config"]["digest"] == image.id, "the registry must hold exactly the built config"
        config = imagetools.inspect_image(f"{repository}@{digest}")
        assert (config["os"], config["architecture"]) == ("linux", arch)
        assert config["config"]["Labels"]["org.localai-ci.test"] == "infra"


@pytest.mark.parametrize("steps, outcome", [
    ("COPY hello.txt /hello.txt\n", "silently-amd64"),
    ("LABEL org.localai-ci.test=UNIQUE\nCOPY hello.txt /hello.txt\n", "platform-error"),
])
def test_build_for_another_arch_than_the_base_never_gives_that_arch(
        engine: Any, base_image: Callable[..., str], unique: str, tmp_path: Path, steps: str, outcome: str) -> None:
    """Why per-arch runners and a post-build arch check: asked for arm64 on an amd64 base, the
    classic builder (Engine 20.10) either builds amd64 anyway or fails, depending on the steps."""
    base = f"{OFFLINE_PREFIX}{unique}:amd"
    base_image(base, "amd64")
    ctx = build_context(tmp_path)
    (ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" + steps.replace("UNIQUE", unique))
    try:
        image, _ = engine.images.build(path=str(ctx), platform="linux/arm64", buildargs={"BASE_IMAGE": base},
                                       pull=False, rm=True, forcerm=True)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        # the failed build leaves its LABEL step's image behind: remove it so the base can go
        for left in engine.images.list(all=True, filters={"label": f"org.localai-ci.test={unique}"}):
            engine.images.remove(left.id)
        assert outcome == "platform-error", f"unexpected build failure: {exc}"
        assert "does not match the specified platform" in str(exc)
        return
    arch = image.attrs["Architecture"]
    engine.images.remove(image.id)
    assert (outcome, arch) == ("silently-amd64", "amd64")


@pytest.mark.slow
def test_pushed_image_survives_a_registry_restart(
        engine: Any, registry_factory: Callable[[], LocalRegistry], built: Callable[[str], Any],
        imagetools: Any, unique: str) -> None:
    reg = registry_factory()
    image = built("arm64")
    repository = f"{reg.host}/{unique}/restart"
    image.tag(repository, tag="v1")
    digest = push(engine, repository, "v1")
    reg.stop()
    assert imagetools.run("inspect", "--raw", f"{repository}:v1").returncode != 0
    reg.start()
    assert imagetools.inspect_raw(f"{repository}@{digest}")["config"]["digest"] == image.id
    assert imagetools.inspect_image(f"{repository}:v1")["architecture"] == "arm64"


@pytest.mark.slow
def test_killed_registry_fails_clearly(
        engine: Any, registry_factory: Callable[[], LocalRegistry], built: Callable[[str], Any],
        imagetools: Any, unique: str) -> None:
    reg = registry_factory()
    image = built("amd64")
    repository = f"{reg.host}/{unique}/killed"
    image.tag(repository, tag="v1")
    push(engine, repository, "v1")
    reg.kill()
    peer = imagetools.run("inspect", "--raw", f"{repository}:v1")
    assert peer.returncode != 0 and "connection refused" in peer.stderr.lower(), peer.stderr
    with pytest.raises((RuntimeError, docker.errors.APIError), match=r"(?i)connection refused"):
        push(engine, repository, "v1")
    with pytest.raises(OperationError, match=rf"registry {reg.host}: .*not running"):
        reg.wait_ready(timeout=0.5)
