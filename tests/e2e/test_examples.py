"""The project's own example matrices (backends/*.yml) and Dockerfiles.

Pure checks of their shape (the matrices' legs, the Dockerfiles read with ``localai_ci.dockerfile.model`` and
resolved with each leg's build args), then (engine) every leg of both files built offline through
``localai_ci.build.leg.build_leg`` -- the BuildKit builder, offline bases served from the test registry -- and
read back: the image's platform, its labels and the build-info files inside it.
"""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from localai_ci.docker.offline_bases import is_offline_base
from localai_ci.build.leg import BuildRequest, LegPlan, build_leg, prepare
from localai_ci.docker.builder import BuilderCaps
from localai_ci.dockerfile.features import features
from localai_ci.dockerfile.model import Dockerfile, Resolved, load_dockerfile
from localai_ci.dockerfile.resolve import resolve
from localai_ci.docker.engine import IMAGE_STORE_CLASSIC, EngineFacts
from localai_ci.build.feasibility import leg_feasibility
from localai_ci.matrix.model import Entry, Matrix, load_matrix
from localai_ci.matrix.naming import Family
from localai_ci.oci.platforms import Arch, parse_platform
from tests.support.paths import REPO as ROOT

BACKENDS = ROOT / "backends" / "matrix.yml"
IMAGES = ROOT / "backends" / "images.yml"
CPP = ROOT / "backends" / "Dockerfile.cpp"
# what LocalAI's backend workflow passes to every backend Dockerfile
BUILD_ARGS = ("BUILD_TYPE", "SKIP_DRIVERS", "CUDA_MAJOR_VERSION", "CUDA_MINOR_VERSION", "BASE_IMAGE", "BACKEND",
              "UBUNTU_VERSION", "AMDGPU_TARGETS", "APT_MIRROR", "APT_PORTS_MIRROR")
RUNNERS = {"amd64": "ubuntu-latest", "arm64": "ubuntu-24.04-arm"}
OFFLINE_BASE = "ci-offline/ubuntu:24.04"
BUILDER_BASE = "ci-offline/builder-base:24.04"
PREBUILT, FROMSOURCE = "builder-prebuilt", "builder-fromsource"
BACKEND_LEGS = {  # tag-suffix -> platform tags, in matrix order
    "-cpu-hello": ["amd64", "arm64"],
    "-cpu-echo": ["amd64"],
    "-cpu-hello-extra": ["amd64", "arm64"],
    "-cpu-tiny-cpp": ["amd64", "arm64"],
    "-vulkan-tiny-cpp": ["amd64"],
}
SERVER_LEGS = {"": ["amd64", "arm64"], "-gpu-vulkan": ["amd64"]}


@pytest.fixture(scope="module")
def backends() -> Matrix:
    return load_matrix(BACKENDS, Family.BACKENDS)


@pytest.fixture(scope="module")
def images() -> Matrix:
    return load_matrix(IMAGES, Family.SERVER)


def legs(m: Matrix, suffix: str) -> dict[str, Entry]:
    return {e.ptag: e for e in m.legs_of(suffix)}


def family_of(path: Path) -> Family:
    return Family.SERVER if path == IMAGES else Family.BACKENDS


def resolved(e: Entry, build_arch: Arch = Arch.AMD64) -> Resolved:
    """The leg's Dockerfile as BuildKit resolves it for the leg on a ``build_arch`` machine."""
    return resolve(load_dockerfile(ROOT / e.dockerfile), e.build_args(), target_platform=e.platform,
                   build_platform=parse_platform(f"linux/{build_arch}"))


def declared_args(df: Dockerfile) -> set[str]:
    """Every ARG name of the file: the global ones and those of each stage."""
    names = {name for name, _ in df.global_args}
    for st in df.stages:
        for ins in st.instructions:
            if ins.keyword == "ARG":
                names |= {a.split("=", 1)[0] for a in ins.args}
    return names


# ---- the matrices ------------------------------------------------------------------------------
def test_backend_matrix_shape(backends: Matrix) -> None:
    assert backends.suffixes() == list(BACKEND_LEGS)
    assert len(list(backends)) == 8
    for suffix, ptags in BACKEND_LEGS.items():
        by_ptag = legs(backends, suffix)
        assert list(by_ptag) == ptags, suffix
        for ptag, e in by_ptag.items():
            assert not e.multi_platform and str(e.platform) == f"linux/{ptag}" and e.runs_on == RUNNERS[ptag], e.label()
    # echo and vulkan-tiny-cpp give no platform-tag: it is derived from the platform
    assert [e.platform_tag_field for e in backends.legs_of("-cpu-echo")] == [""]
    assert [e.platform_tag_field for e in backends.legs_of("-vulkan-tiny-cpp")] == [""]
    for e in backends:
        assert e.base_image == OFFLINE_BASE and is_offline_base(e.base_image)
        assert (ROOT / e.context / "src" / e.backend).is_dir(), f"{e.backend}: no sources in backends/src/"
        assert e.build_args()["BACKEND"] == e.backend
    tiny = [e for e in backends if e.backend == "tiny-cpp"]
    assert {e.tag_suffix for e in tiny} == {"-cpu-tiny-cpp", "-vulkan-tiny-cpp"}
    assert all(e.dockerfile.endswith("Dockerfile.cpp") for e in tiny)
    assert {e.build_type for e in backends.legs_of("-vulkan-tiny-cpp")} == {"vulkan"}


def test_builder_target_is_derived_from_builder_base_image(backends: Matrix) -> None:
    """LocalAI's backend_build.yml: builder-base-image set -> BUILDER_TARGET=builder-prebuilt."""
    for e in backends:
        args = e.build_args()
        if e.builder_base_image:
            assert args["BUILDER_TARGET"] == PREBUILT and args["BUILDER_BASE_IMAGE"] == e.builder_base_image, e.label()
        else:
            assert args["BUILDER_TARGET"] == FROMSOURCE and "BUILDER_BASE_IMAGE" not in args, e.label()
    assert {e.builder_base_image for e in backends.legs_of("-cpu-tiny-cpp")} == {BUILDER_BASE}
    assert {e.builder_base_image for e in backends.legs_of("-vulkan-tiny-cpp")} == {""}
    assert all(not e.builder_base_image for e in backends if e.backend != "tiny-cpp")


def test_backend_matrix_has_comments_between_entries() -> None:
    lines = BACKENDS.read_text().splitlines()
    start = lines.index("include:")
    between = [i for i, line in enumerate(lines[start + 1:], start + 1)
               if line.strip().startswith("#") and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("- ")]
    assert len(between) >= 4


def test_server_matrix_shape(images: Matrix) -> None:
    assert images.suffixes() == list(SERVER_LEGS)
    for suffix, ptags in SERVER_LEGS.items():
        by_ptag = legs(images, suffix)
        assert list(by_ptag) == ptags, repr(suffix)
        assert all(e.runs_on == RUNNERS[p] and str(e.platform) == f"linux/{p}" for p, e in by_ptag.items())
    assert images.legs_of("-gpu-vulkan")[0].build_type == "vulkan"
    for e in images:
        assert "MAKEFLAGS" in e.build_args() and is_offline_base(e.base_image)
        assert "BUILDER_TARGET" not in e.build_args()  # a backend-workflow argument only


@pytest.mark.parametrize("path", [BACKENDS, IMAGES], ids=lambda p: p.name)
def test_dockerfiles_and_contexts_resolve_from_the_repository_root(path: Path) -> None:
    for e in load_matrix(path, family_of(path)):
        assert (ROOT / e.dockerfile).is_file() and (ROOT / e.context).is_dir()
        assert (ROOT / e.dockerfile).resolve().is_relative_to((ROOT / e.context).resolve())
        # every context path the leg's build reads (COPY sources, RUN --mount=type=bind sources) exists
        for src in resolved(e).sources:
            assert (ROOT / e.context / src.path).exists(), f"{e.label()}: {e.dockerfile} line {src.line} reads {src.path}"


# ---- the Dockerfiles ---------------------------------------------------------------------------
DECLARED = {  # the build args each Dockerfile takes (LocalAI's workflow passes them; localai_ci.build.leg adds the APT/DEPS ones)
    "Dockerfile.backend": set(BUILD_ARGS),
    "Dockerfile.server": set(BUILD_ARGS) - {"BACKEND", "AMDGPU_TARGETS"} | {"MAKEFLAGS"},
    "Dockerfile.cpp": {"BASE_IMAGE", "BUILDER_BASE_IMAGE", "BUILDER_TARGET", "BACKEND", "BUILD_TYPE", "DEPS_REFRESH",
                       "APT_MIRROR", "APT_PORTS_MIRROR", "TARGETARCH", "TARGETPLATFORM", "BUILDPLATFORM"},
}
# build args a leg passes that its Dockerfile may ignore (LocalAI passes the same set to every backend)
IGNORED = {"Dockerfile.backend": {"BUILDER_TARGET"}, "Dockerfile.server": set(),
           "Dockerfile.cpp": {"SKIP_DRIVERS", "CUDA_MAJOR_VERSION", "CUDA_MINOR_VERSION", "UBUNTU_VERSION"}}


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_dockerfiles_take_the_build_args(name: str) -> None:
    declared = declared_args(load_dockerfile(ROOT / "backends" / name))
    assert DECLARED[name] <= declared, sorted(DECLARED[name] - declared)
    for path in (BACKENDS, IMAGES):
        for e in load_matrix(path, family_of(path)):
            if Path(e.dockerfile).name == name:
                assert set(resolved(e).unused_build_args) <= IGNORED[name], e.label()


def test_localai_shaped_dockerfile_uses_what_localai_uses() -> None:
    """Dockerfile.cpp: heredoc RUN, bind-mounted scripts, a cache mount keyed by TARGETARCH, FROM scratch,
    and a builder stage picked by BUILDER_TARGET (LocalAI's `FROM ${BUILDER_TARGET} AS builder` alias)."""
    df = load_dockerfile(CPP)
    found = {f.name for f in features(df)}
    assert {"heredoc", "RUN --mount", "FROM --platform variable"} <= found
    runs = [ins for st in df.stages for ins in st.instructions if ins.keyword == "RUN"]
    mounts = [m for ins in runs for m in ins.flag_values("mount")]
    assert any(ins.heredocs for ins in runs)
    assert any("type=bind" in m and "source=.docker/apt-mirror.sh" in m for m in mounts)
    assert any("type=bind" in m and "source=.docker/compile.sh" in m for m in mounts)
    cache = [m for m in mounts if "type=cache" in m]
    assert cache and all("${TARGETARCH}" in m for m in cache), cache
    assert dict(df.global_args)["BUILDER_TARGET"] == FROMSOURCE  # the default, as in LocalAI
    assert df.stage(PREBUILT) is not None and df.stage(FROMSOURCE) is not None
    alias = df.stage("builder")
    assert alias is not None and alias.base == "${BUILDER_TARGET}" and not alias.instructions
    assert df.stages[-1].base == "scratch" and not df.stages[-1].platform
    assert all(st.platform == "$BUILDPLATFORM" for st in df.stages if any(i.keyword == "RUN" for i in st.instructions))
    assert {"TARGETARCH"} <= declared_args(df)


def test_builder_target_selects_the_builder_stage(backends: Matrix) -> None:
    """Resolved with each tiny-cpp leg's build args, exactly the stage BUILDER_TARGET names is built,
    on the builder base image for builder-prebuilt."""
    for e in backends:
        if e.backend != "tiny-cpp":
            continue
        r = resolved(e)
        chosen = e.build_args()["BUILDER_TARGET"]
        other = FROMSOURCE if chosen == PREBUILT else PREBUILT
        assert r.stage(chosen) is not None and r.stage(other) is None, (e.label(), r.labels)
        alias = r.stage("builder")
        assert alias is not None and alias.base == chosen and alias.base_is_stage
        assert r.external_images == ((BUILDER_BASE,) if chosen == PREBUILT else (OFFLINE_BASE,)), e.label()
        unused = set(r.unused_build_args)
        assert not unused & {"BUILDER_TARGET", "BUILDER_BASE_IMAGE", "BACKEND", "BUILD_TYPE", "BASE_IMAGE"}, unused


@pytest.mark.parametrize("path", [BACKENDS, IMAGES], ids=lambda p: p.name)
@pytest.mark.parametrize("build_arch", [Arch.AMD64, Arch.ARM64], ids=str)
def test_run_steps_run_on_the_build_platform_and_final_stages_only_copy(path: Path, build_arch: Arch) -> None:
    """What replaced "no RUN: offline bases have no shell": RUN steps (a shell: the offline bases' busybox) run
    only in builder stages on $BUILDPLATFORM; the final stage, the leg's own architecture (FROM scratch for
    backends, FROM the base image for the server), only COPYs. So no leg needs QEMU, on either runner arch."""
    for e in load_matrix(path, family_of(path)):
        r = resolved(e, build_arch)
        final = r.stages[-1]
        assert final.label == r.target and final.platform == e.platform and not final.runs, e.label()
        assert not final.stage.platform, f"{e.label()}: a final stage on $BUILDPLATFORM would be {build_arch}"
        assert final.base == ("scratch" if path == BACKENDS else e.base_image)
        assert not r.needs_emulation(build_arch), e.label()
        assert any(rs.runs for rs in r.stages)
        for rs in r.stages:
            if rs.runs:
                assert rs.platform == parse_platform(f"linux/{build_arch}") and rs.stage.platform == "$BUILDPLATFORM"
                assert is_offline_base(rs.base), f"{e.label()}: RUN in {rs.label} needs a shell, from an offline base"


def _caps(arch: str = "amd64", version: str = "26.1.5+dfsg1") -> BuilderCaps:
    """A docker-driver builder without QEMU (RUN steps for the host's platform only)."""
    facts = EngineFacts(version=version, api_version="1.45", arch=arch, image_store=IMAGE_STORE_CLASSIC,
                        has_bridge=False)
    return BuilderCaps(name="default", driver="docker", platforms=(parse_platform(f"linux/{arch}"),), engine=facts)


def _plan(e: Entry, path: Path, env: dict[str, str], local_tag: str | None = None) -> LegPlan:
    """The leg planned as ``invoke pipeline`` plans it (``localai_ci.build.leg.prepare``), as a build-only pull request."""
    req = BuildRequest(family=e.family, tag_suffix=e.tag_suffix, platform_tag=e.ptag, matrix=str(path),
                       event="pull_request", root=str(ROOT), local_tag=local_tag,
                       images="127.0.0.1:9/localai-ci-test/examples")  # never pushed to: a pull request without credentials
    plan, _ = prepare(req, env)
    assert not plan.images and not plan.publishes and not plan.cache_write
    return plan


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_BACKEND", "CI_SERVER"))}
    env.update({"HOME": str(tmp_path), "SOURCE_DATE_EPOCH": "0"}, **extra)
    return env


@pytest.mark.parametrize("path", [BACKENDS, IMAGES], ids=lambda p: p.name)
def test_every_leg_is_feasible_without_qemu_given_a_shell(path: Path, tmp_path: Path, busybox: dict[str, str]) -> None:
    """On an amd64 builder without binfmt, every leg builds: amd64 natively, arm64 as a cross-build; without
    busybox the offline bases have no shell and every leg is refused, saying where to put one."""
    env = _env(tmp_path, **busybox)
    empty = tmp_path / "no-busybox"
    empty.mkdir()
    for e in load_matrix(path, family_of(path)):
        plan = _plan(e, path, env)
        feas = leg_feasibility(plan, _caps(), env)
        assert feas.runs, f"{e.label()}: {feas.reason}"
        if e.ptag == "amd64":
            assert feas.how == "native"
        else:
            assert feas.how.startswith("cross-build: RUN steps on the build platform"), feas.how
        assert feas.offline_bases and all(is_offline_base(b) for b in feas.offline_bases)
        no_shell = leg_feasibility(plan, _caps(), {**env, "CI_BUSYBOX_DIR": str(empty)})
        assert not no_shell.runs and "has no shell for amd64" in no_shell.reason and "CI_BUSYBOX_DIR" in no_shell.reason
        too_old = leg_feasibility(plan, _caps(version="20.10.24"), env)
        assert not too_old.runs and "Docker Engine 23.0 or newer" in too_old.reason, too_old.reason


# ---- every leg builds ----------------------------------------------------------------------------
def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}"
    return done


def read_files(image: str, platform: str, paths: list[str]) -> dict[str, str]:
    """Files of an image, read with `docker create` + `docker cp` (the image never runs)."""
    cid = _docker("create", "--platform", platform, "--network", "none", image, "/none").stdout.decode().strip()
    try:
        out: dict[str, str] = {}
        for p in paths:
            data = _docker("cp", f"{cid}:{p}", "-").stdout  # a tar stream of that one file
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = tar.extractfile(tar.getmembers()[0])
                assert member is not None, p
                out[p] = member.read().decode()
        return out
    finally:
        subprocess.run(["docker", "rm", "--force", cid], capture_output=True, timeout=60, check=False)


def build_env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.engine
@pytest.mark.parametrize("path", [BACKENDS, IMAGES], ids=lambda p: p.name)
def test_every_leg_builds_offline_for_its_arch(engine: Any, builder: Any, bases: Any, unique: str, tmp_path: Path,
                                               path: Path) -> None:
    family = family_of(path)
    build_platform = f"linux/{builder.caps().engine.arch}"
    env = _env(tmp_path)
    built: list[str] = []
    try:
        for e in load_matrix(path, family):
            plan = _plan(e, path, env, local_tag=f"localai-ci-test/{unique}{e.tag_suffix or '-core'}:{e.ptag}")
            events: list[Any] = []
            feas = leg_feasibility(plan, builder.caps(), bases.env)
            assert feas.runs and not feas.how.startswith("QEMU"), f"{e.label()}: {feas.how} {feas.reason}"
            image = build_leg(plan, builder, bases, on_event=events.append, load=True)  # its files are read below
            built.append(image.ref)
            where = f"{path.name} {e.label()}"
            # the image the engine holds (docker CLI, not this project's inspect) is the leg's platform
            os_arch = _docker("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image.ref).stdout
            assert os_arch.decode().strip() == str(e.platform), where
            assert image.info.os == "linux" and image.info.architecture == str(e.platform.arch), where
            labels = dict(image.info.labels)
            assert labels["org.localai.ci.leg"] == f"{family}{e.tag_suffix}-{e.ptag}", where
            if e.dockerfile.endswith("Dockerfile.cpp"):
                files = read_files(image.ref, str(e.platform), ["/TOOLCHAIN", "/run.sh", "/tiny-cpp.o"])
                target = e.build_args()["BUILDER_TARGET"]
                if target == PREBUILT:
                    assert files["/TOOLCHAIN"].strip() == f"prebuilt toolchain of {e.builder_base_image}", where
                else:
                    deps = dict(plan.build_args)["DEPS_REFRESH"]  # the weekly cache buster localai_ci.build.leg passes
                    assert files["/TOOLCHAIN"].strip() == f"from-source toolchain for {e.platform} (deps {deps})", where
                assert f"for {e.platform}, built on {build_platform}" in files["/run.sh"], where
                assert files["/tiny-cpp.o"].startswith(f"{e.ptag}-{e.build_type or 'cpu'} object"), where
            else:
                info_file = "/backend/build.env" if family is Family.BACKENDS else "/app/build.env"
                info = build_env(read_files(image.ref, str(e.platform), [info_file])[info_file])
                assert info["TARGETPLATFORM"] == str(e.platform), where  # linux/arm64 on the arm64 legs
                assert info["BUILD_TYPE"] == e.build_type, where
                assert labels["org.localai.build-type"] == e.build_type, where
                if family is Family.BACKENDS:
                    assert info["BACKEND"] == e.backend and labels["org.localai.backend"] == e.backend, where
                else:
                    assert info["MAKEFLAGS"] == e.makeflags and labels["org.localai.makeflags"] == e.makeflags, where
            assert not any(ev.kind == "failed" for ev in events), where
        assert {str(e.platform) for e in load_matrix(path, family)} == {"linux/amd64", "linux/arm64"}
    finally:
        for ref in reversed(built):
            subprocess.run(["docker", "image", "rm", "--force", ref], capture_output=True, timeout=60, check=False)
