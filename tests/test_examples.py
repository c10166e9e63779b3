"""The project's own example matrices (backends/*.yml) and Dockerfiles.

Pure checks of their shape, then (engine) every leg of both files builds offline on a
base image of its own arch.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ci.baseimage import OFFLINE_PREFIX, is_offline_base
from ci.matrix import Entry, Matrix, load_matrix
from ci.naming import Family

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ROOT / "backends" / "matrix.yml"
IMAGES = ROOT / "backends" / "images.yml"
BUILD_ARGS = ("BUILD_TYPE", "SKIP_DRIVERS", "CUDA_MAJOR_VERSION", "CUDA_MINOR_VERSION", "BASE_IMAGE", "BACKEND",
              "UBUNTU_VERSION", "AMDGPU_TARGETS")
OFFLINE_INSTRUCTIONS = {"ARG", "FROM", "ENV", "LABEL", "COPY"}
RUNNERS = {"amd64": "ubuntu-latest", "arm64": "ubuntu-24.04-arm"}


@pytest.fixture(scope="module")
def backends() -> Matrix:
    return load_matrix(BACKENDS, Family.BACKENDS)


@pytest.fixture(scope="module")
def images() -> Matrix:
    return load_matrix(IMAGES, Family.SERVER)


def legs(m: Matrix, suffix: str) -> dict[str, Entry]:
    return {e.ptag: e for e in m.legs_of(suffix)}


def test_backend_matrix_shape(backends: Matrix) -> None:
    assert backends.suffixes() == ["-cpu-hello", "-cpu-echo", "-cpu-hello-extra"]
    for two_leg in ("-cpu-hello", "-cpu-hello-extra"):
        by_ptag = legs(backends, two_leg)
        assert set(by_ptag) == {"amd64", "arm64"}
        for ptag, e in by_ptag.items():
            assert e.platform_tag_field == ptag and not e.multi_platform
            assert str(e.platform) == f"linux/{ptag}" and e.runs_on == RUNNERS[ptag]
    echo = backends.legs_of("-cpu-echo")
    assert [(str(e.platform), e.ptag, e.runs_on) for e in echo] == [("linux/amd64", "amd64", "ubuntu-latest")]
    for e in backends:
        assert e.base_image == "ci-offline/ubuntu:24.04" and is_offline_base(e.base_image)
        assert (ROOT / e.context / "src" / e.backend).is_dir(), f"{e.backend}: no sources in backends/src/"
        assert e.build_args()["BACKEND"] == e.backend


def test_backend_matrix_has_comments_between_entries() -> None:
    lines = BACKENDS.read_text().splitlines()
    start = lines.index("include:")
    between = [i for i, line in enumerate(lines[start + 1:], start + 1)
               if line.strip().startswith("#") and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("- ")]
    assert len(between) >= 2


def test_server_matrix_shape(images: Matrix) -> None:
    assert images.suffixes() == ["", "-gpu-vulkan"]
    core = legs(images, "")
    assert set(core) == {"amd64", "arm64"}
    assert all(e.runs_on == RUNNERS[p] for p, e in core.items())
    vulkan = images.legs_of("-gpu-vulkan")
    assert [(str(e.platform), e.ptag) for e in vulkan] == [("linux/amd64", "amd64")]
    assert vulkan[0].build_type == "vulkan"
    for e in images:
        assert "MAKEFLAGS" in e.build_args() and is_offline_base(e.base_image)


@pytest.mark.parametrize("path", [BACKENDS, IMAGES], ids=lambda p: p.name)
def test_dockerfiles_and_contexts_resolve_from_the_repository_root(path: Path) -> None:
    family = Family.SERVER if path == IMAGES else Family.BACKENDS
    for e in load_matrix(path, family):
        assert (ROOT / e.dockerfile).is_file() and (ROOT / e.context).is_dir()
        assert (ROOT / e.dockerfile).resolve().is_relative_to((ROOT / e.context).resolve())


@pytest.mark.parametrize("name, extra", [("Dockerfile.backend", ()), ("Dockerfile.server", ("MAKEFLAGS",))])
def test_dockerfiles_take_the_build_args_and_need_no_shell(name: str, extra: tuple[str, ...]) -> None:
    text = (ROOT / "backends" / name).read_text()
    instructions = re.findall(r"^\s*([A-Za-z]+)\s", text, flags=re.M)
    assert {i.upper() for i in instructions} <= OFFLINE_INSTRUCTIONS, "no RUN: offline base images have no shell"
    declared = set(re.findall(r"^\s*ARG\s+([A-Z_]+)", text, flags=re.M))
    assert set(BUILD_ARGS + extra) <= declared


@pytest.mark.engine
@pytest.mark.parametrize("path", [BACKENDS, IMAGES], ids=lambda p: p.name)
def test_every_leg_builds_offline_for_its_arch(engine: Any, base_image: Callable[..., str], unique: str,
                                               path: Path) -> None:
    family = Family.SERVER if path == IMAGES else Family.BACKENDS
    built: list[str] = []
    try:
        for e in load_matrix(path, family):
            base = f"{OFFLINE_PREFIX}{unique}-{e.ptag}:24.04"  # unique: a parallel run may retag the shared name
            base_image(base, e.platform)
            args = {**e.build_args(), "BASE_IMAGE": base}
            image, _ = engine.images.build(path=str(ROOT / e.context), dockerfile=str(ROOT / e.dockerfile),
                                           buildargs=args, platform=str(e.platform), pull=False, rm=True,
                                           forcerm=True)
            built.append(image.id)
            assert image.attrs["Architecture"] == str(e.platform.arch), e.label()
            labels = image.attrs["Config"]["Labels"]
            assert labels["org.localai.build-type"] == e.build_type
            if family is Family.BACKENDS:
                assert labels["org.localai.backend"] == e.backend
    finally:
        for image_id in dict.fromkeys(reversed(built)):
            try:
                engine.images.remove(image_id, force=True)
            except Exception:
                pass
