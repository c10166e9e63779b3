"""localai_ci.dockerfile.model: LocalAI-shaped Dockerfiles (written by the tests, ``tests/support/localai_tree.py``) and, when a
LocalAI tree is named (``CI_TEST_LOCALAI_TREE``), LocalAI's real ones parse and resolve to the stages,
paths and images BuildKit would use; ARG scoping, expansion, platforms and engine checks follow BuildKit."""
from __future__ import annotations

from pathlib import Path

import pytest

from localai_ci.dockerfile.expand import expand
from localai_ci.dockerfile.features import check_engine, features, parse_engine_version
from localai_ci.dockerfile.model import Dockerfile, Resolved, Source, load_dockerfile, parse_dockerfile
from localai_ci.dockerfile.resolve import resolve
from tests.support.growth import assert_linear
from localai_ci.errors import UserError
from localai_ci.oci.platforms import Arch, Platform, parse_platform
from tests.support.localai_ref import LocalAITree
from tests.support.localai_tree import files as shaped_files

# LocalAI's Dockerfiles at commit 82c191af (2026-08-22), by their path in LocalAI's repository
LOCALAI_FILES = ["Dockerfile"] + [f"backend/Dockerfile.{k}" for k in (
    "audio-cpp", "base-grpc-builder", "bonsai", "ds4", "golang", "ik-llama-cpp", "llama-cpp", "privacy-filter",
    "python", "rust", "turboquant")]
AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")
ARM7 = parse_platform("linux/arm/v7")
PREBUILT_BASE = "quay.io/go-skynet/ci-cache:base-grpc-amd64"
SHAPED = {k: v for k, v in shaped_files().items() if "Dockerfile" in k}


def localai(tree: LocalAITree, name: str) -> Dockerfile:
    """One of LocalAI's real Dockerfiles, from the tree a user named."""
    return load_dockerfile(tree.path(name))


def shaped(name: str) -> Dockerfile:
    """A LocalAI-shaped Dockerfile written by the tests (``localai_tree.files()``)."""
    return parse_dockerfile(SHAPED[name], name)


def args(**extra: str) -> dict[str, str]:
    """The build args LocalAI's backend workflow passes (cpu leg) plus ``extra``."""
    base = {"BASE_IMAGE": "ubuntu:24.04", "BACKEND": "rerankers", "BUILD_TYPE": "", "SKIP_DRIVERS": "false",
            "CUDA_MAJOR_VERSION": "", "CUDA_MINOR_VERSION": "", "UBUNTU_VERSION": "2404"}
    base.update(extra)
    return base


def res(df: Dockerfile, build_args: dict[str, str] | None = None, *, target: str | None = None,
        platform: Platform = AMD64, build: Platform = AMD64) -> Resolved:
    return resolve(df, build_args or {}, target_platform=platform, build_platform=build, target=target)


def df_of(text: str) -> Dockerfile:
    return parse_dockerfile(text, "backends/Dockerfile.test")


def paths(sources: tuple[Source, ...]) -> list[str]:
    return [s.path for s in sources]


# --------------------------------------------------------------------------- LocalAI-shaped files
# Written by the tests (``tests/support/localai_tree.py``), with the features of LocalAI's own: heredoc RUN, RUN
# --mount=type=bind, ARG TARGETARCH, FROM ${BUILDER_TARGET} AS builder, a FROM scratch final stage.


@pytest.mark.parametrize("name", sorted(SHAPED))
def test_shaped_dockerfile_parses_and_resolves(name: str) -> None:
    r = res(shaped(name), args(BUILD_TYPE="cublas"), platform=ARM64)
    assert r.stages[-1].label == r.target and r.stages[-1].base == "scratch"
    assert {rs.platform for rs in r.stages} == {ARM64}
    assert r.external_images == ("ubuntu:24.04",)
    seen: set[str] = set()
    for rs in r.stages:
        assert set(rs.depends_on) <= seen, rs.label
        seen.add(rs.label)
    assert r.emulated_stages(Arch.ARM64) == ()
    assert r.emulated_stages(Arch.AMD64) == tuple(rs for rs in r.stages if rs.runs) != ()
    assert check_engine(shaped(name), "23.0.0") is None


def test_shaped_python_backend_resolves_narrow_copies() -> None:
    r = res(shaped("backend/Dockerfile.python"), args(BACKEND="vllm", BUILD_TYPE="cublas"))
    assert r.labels == ("builder", "stage-1")
    builder, final = r.stages
    assert (final.base, final.runs, final.copies, final.depends_on) == ("scratch", False, (), ("builder",))
    assert [(s.kind, s.path, s.line) for s in builder.copies] == [
        ("bind", ".docker/apt-mirror.sh", 9),
        ("copy", "backend/python/vllm", 11),
        ("copy", "backend/backend.proto", 12),
        ("copy", "backend/python/common/", 13),
        ("copy", "scripts/build/package-gpu-libs.sh", 14),
    ]
    # ARG BACKEND=rerankers is the default when no build arg is given
    assert "backend/python/rerankers" in paths(res(shaped("backend/Dockerfile.python")).sources)


@pytest.mark.parametrize("builder", ["builder-fromsource", "builder-prebuilt"])
def test_shaped_llama_cpp_reaches_exactly_one_builder(builder: str) -> None:
    r = res(shaped("backend/Dockerfile.llama-cpp"),
            args(BACKEND="llama-cpp", BUILDER_TARGET=builder, BUILDER_BASE_IMAGE=PREBUILT_BASE))
    other = ({"builder-fromsource", "builder-prebuilt"} - {builder}).pop()
    assert r.labels == (builder, "builder", "stage-3") and r.stage(other) is None
    alias = r.stage("builder")
    assert alias is not None and (alias.base, alias.base_is_stage, alias.runs) == (builder, True, False)
    chosen = r.stage(builder)
    assert chosen is not None and chosen.runs
    assert [s.path for s in chosen.copies if s.kind == "copy"] == ["."]
    binds = [(s.path, s.line) for s in chosen.copies if s.kind == "bind"]
    if builder == "builder-fromsource":
        assert r.external_images == ("ubuntu:24.04",)
        assert binds == [(".docker/install-base-deps.sh", 10), (".docker/apt-mirror.sh", 10),
                         (".docker/llama-cpp-compile.sh", 14)]
    else:
        assert r.external_images == (PREBUILT_BASE,) and chosen.base == PREBUILT_BASE
        assert binds == [(".docker/llama-cpp-compile.sh", 24)]
    # no build args: the from-source builder; prebuilt without a builder base falls back to BASE_IMAGE
    assert res(shaped("backend/Dockerfile.llama-cpp")).labels == ("builder-fromsource", "builder", "stage-3")
    fallback = res(shaped("backend/Dockerfile.llama-cpp"), {"BUILDER_TARGET": "builder-prebuilt",
                                                            "BASE_IMAGE": "ubuntu:22.04"}).stage("builder-prebuilt")
    assert fallback is not None and fallback.base == "ubuntu:22.04"


def test_shaped_golang_backend_copies_whole_repository_and_uses_heredocs() -> None:
    r = res(shaped("backend/Dockerfile.golang"), args(BACKEND="whisper"))
    builder = r.stage("builder")
    assert builder is not None
    assert [(s.kind, s.path, s.line) for s in builder.copies] == [
        ("bind", ".docker/apt-mirror.sh", 10), ("copy", "backend/go/whisper/", 17), ("copy", ".", 19)]
    assert [f.line for f in features(shaped("backend/Dockerfile.golang")) if f.name == "heredoc"] == [12]
    assert {"BUILDER_TARGET"} <= set(res(shaped("backend/Dockerfile.golang"),
                                         args(BUILDER_TARGET="builder-prebuilt")).unused_build_args)


def test_engine_20_10_is_too_old_for_a_shaped_python_backend() -> None:
    df = shaped("backend/Dockerfile.python")
    msg = check_engine(df, "20.10.24+dfsg1")
    assert msg is not None and msg.startswith(f"{df.source} line 9 uses RUN --mount (")
    assert "which needs Docker Engine 23.0 or newer with BuildKit; this engine is 20.10.24: upgrade the engine" in msg


# --------------------------------------------------------------------------- LocalAI's files
# Compared with LocalAI's real tree: run when one is named (CI_TEST_LOCALAI_TREE), skipped otherwise.


def test_every_localai_dockerfile_is_present(localai_tree: LocalAITree) -> None:
    assert set(LOCALAI_FILES) <= set(localai_tree.dockerfiles())


@pytest.mark.parametrize("name", LOCALAI_FILES)
def test_localai_dockerfile_parses_and_resolves(name: str, localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, name)
    assert df.source.endswith(name.replace("/", "_")) or df.source.endswith(name)
    assert df.stages and df.stages[0].index == 0
    r = res(df, args(BUILD_TYPE="cublas"), platform=ARM64)
    assert r.stages[-1].label == r.target
    # everything runs on the target platform: no LocalAI stage uses FROM --platform
    assert {rs.platform for rs in r.stages} == {ARM64}
    assert "ubuntu:24.04" in r.external_images
    # no stage appears before a stage it depends on
    seen: set[str] = set()
    for rs in r.stages:
        assert set(rs.depends_on) <= seen, rs.label
        seen.add(rs.label)
    # native arm64 host: nothing emulated; amd64 host: every stage with RUN is
    assert r.emulated_stages(Arch.ARM64) == ()
    assert r.emulated_stages(Arch.AMD64) == tuple(rs for rs in r.stages if rs.runs)
    assert r.emulated_stages(Arch.AMD64)


def test_python_backend_model(localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "backend/Dockerfile.python")
    assert df.directives == ()
    assert df.global_args == (("BASE_IMAGE", "ubuntu:24.04"), ("APT_MIRROR", '""'), ("APT_PORTS_MIRROR", '""'))
    builder, final = df.stages
    assert (builder.index, builder.base, builder.name, builder.platform, builder.line) == (
        0, "${BASE_IMAGE}", "builder", "", 5)
    assert (final.base, final.name, final.line, final.label) == ("scratch", "", 241, "stage-1")
    mount = next(i for i in builder.instructions if i.line == 21)
    assert mount.keyword == "RUN"
    assert mount.flags == (("mount", "type=bind,source=.docker/apt-mirror.sh,target=/usr/local/sbin/apt-mirror"),)
    assert mount.end_line == 41 and not mount.json
    heredoc = next(i for i in builder.instructions if i.line == 43)
    assert heredoc.heredocs == ("EOT",) and heredoc.end_line == 49
    copy_from = final.instructions[-1]
    assert (copy_from.keyword, copy_from.flag("from"), copy_from.args) == ("COPY", "builder", ("/${BACKEND}/", "/"))


def test_python_backend_resolves_narrow_copies(localai_tree: LocalAITree) -> None:
    r = res(localai(localai_tree, "backend/Dockerfile.python"), args(BACKEND="vllm", BUILD_TYPE="cublas"))
    assert r.labels == ("builder", "stage-1")
    builder, final = r.stages
    assert (final.base, final.base_is_stage, final.runs, final.copies) == ("scratch", False, False, ())
    assert final.depends_on == ("builder",)
    assert (builder.base, builder.base_is_stage, builder.runs) == ("ubuntu:24.04", False, True)
    assert [(s.kind, s.path, s.line) for s in builder.copies] == [
        ("bind", ".docker/apt-mirror.sh", 21),
        ("copy", "backend/python/vllm", 207),
        ("copy", "backend/backend.proto", 208),
        ("copy", "backend/python/common/", 209),
        ("copy", "scripts/build/package-gpu-libs.sh", 210),
    ]
    assert {s.from_ for s in builder.copies} == {"builder"}
    assert r.external_images == ("ubuntu:24.04",)
    assert r.unused_build_args == ()


def test_python_backend_default_backend_and_base_image_override(localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "backend/Dockerfile.python")
    r = res(df, {"BASE_IMAGE": "nvidia/cuda:12.8.0-devel-ubuntu24.04"})
    assert r.external_images == ("nvidia/cuda:12.8.0-devel-ubuntu24.04",)
    # ARG BACKEND=rerankers in the builder stage is the default when no build arg is given
    assert "backend/python/rerankers" in paths(r.sources)


@pytest.mark.parametrize("builder", ["builder-fromsource", "builder-prebuilt"])
def test_llama_cpp_reaches_exactly_one_builder(builder: str, localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "backend/Dockerfile.llama-cpp")
    r = res(df, args(BACKEND="llama-cpp", BUILDER_TARGET=builder, BUILDER_BASE_IMAGE=PREBUILT_BASE))
    other = ({"builder-fromsource", "builder-prebuilt"} - {builder}).pop()
    assert r.labels == (builder, "builder", "stage-3")
    assert r.stage(other) is None
    alias = r.stage("builder")
    assert alias is not None
    assert (alias.base, alias.base_is_stage, alias.runs, alias.copies) == (builder, True, False, ())
    assert alias.stage.base == "${BUILDER_TARGET}"
    chosen = r.stage(builder)
    assert chosen is not None and chosen.runs
    assert ".docker/llama-cpp-compile.sh" in [s.path for s in chosen.copies if s.kind == "bind"]
    assert [s.path for s in chosen.copies if s.kind == "copy"] == ["."]
    if builder == "builder-fromsource":
        assert r.external_images == ("ubuntu:24.04",)
        assert [(s.path, s.line) for s in chosen.copies if s.kind == "bind"] == [
            (".docker/install-base-deps.sh", 75), (".docker/apt-mirror.sh", 75), (".docker/llama-cpp-compile.sh", 95)]
    else:
        assert r.external_images == (PREBUILT_BASE,)
        assert chosen.base == PREBUILT_BASE
        assert [(s.path, s.line) for s in chosen.copies if s.kind == "bind"] == [(".docker/llama-cpp-compile.sh", 137)]


def test_llama_cpp_defaults(localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "backend/Dockerfile.llama-cpp")
    assert df.global_args[:3] == (
        ("BASE_IMAGE", "ubuntu:24.04"), ("BUILDER_BASE_IMAGE", "${BASE_IMAGE}"),
        ("BUILDER_TARGET", "builder-fromsource"))
    # no build args: BUILDER_TARGET defaults to the from-source builder
    assert res(df).labels == ("builder-fromsource", "builder", "stage-3")
    # prebuilt without a builder base: BUILDER_BASE_IMAGE=${BASE_IMAGE} (expanded in order) is the fallback
    r = res(df, {"BUILDER_TARGET": "builder-prebuilt", "BASE_IMAGE": "ubuntu:22.04"})
    prebuilt = r.stage("builder-prebuilt")
    assert prebuilt is not None and prebuilt.base == "ubuntu:22.04"


def test_golang_backend_copies_whole_repository(localai_tree: LocalAITree) -> None:
    r = res(localai(localai_tree, "backend/Dockerfile.golang"), args(BACKEND="whisper"))
    builder = r.stage("builder")
    assert builder is not None
    assert [(s.kind, s.path, s.line) for s in builder.copies] == [
        ("bind", ".docker/apt-mirror.sh", 30),
        ("copy", "backend/go/whisper/", 407),
        ("copy", ".", 416),
    ]


def test_server_dockerfile_stage_graph(localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "Dockerfile")
    r = res(df, {"BASE_IMAGE": "ubuntu:24.04", "BUILD_TYPE": "vulkan"})
    assert r.target == "stage-9"
    assert r.labels == ("requirements", "requirements-drivers", "build-requirements", "builder-base",
                        "react-ui-builder", "builder-backends", "builder", "stage-9")
    assert r.stage("intel") is None and r.stage("devcontainer") is None
    assert r.external_images == ("ubuntu:24.04", "node:26-slim")
    final = r.stages[-1]
    # COPY --from=builder and RUN --mount=from=builder (no type=: a bind mount of a stage)
    assert final.depends_on == ("requirements-drivers", "builder")
    assert [(s.kind, s.path) for s in final.copies] == [("copy", "entrypoint.sh"), ("copy", "scripts/build/healthcheck.sh")]
    builder_backends = r.stage("builder-backends")
    assert builder_backends is not None
    assert paths(builder_backends.copies) == ["Makefile", "backend", "go.mod", "go.sum", ".git", "pkg/grpc", "pkg/utils"]
    build_req = r.stage("build-requirements")
    assert build_req is not None and paths(build_req.copies) == ["custom-ca-certs/*"]


def test_server_dockerfile_other_targets(localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "Dockerfile")
    dev = res(df, target="devcontainer")
    assert dev.labels == ("requirements", "requirements-drivers", "build-requirements", "builder-base", "devcontainer")
    assert dev.external_images == ("ubuntu:24.04",)
    intel = res(df, {"INTEL_BASE_IMAGE": "intel/oneapi-basekit:2025.3.2"}, target="INTEL")
    assert intel.labels == ("intel",)
    assert intel.external_images == ("intel/oneapi-basekit:2025.3.2",)
    # INTEL_BASE_IMAGE=${BASE_IMAGE} follows BASE_IMAGE when not given
    assert res(df, {"BASE_IMAGE": "ubuntu:22.04"}, target="intel").external_images == ("ubuntu:22.04",)


def test_audio_cpp_ignores_builder_args(localai_tree: LocalAITree) -> None:
    # the matrix comment: BUILDER_BASE_IMAGE / BUILDER_TARGET / SKIP_DRIVERS are never consumed
    r = res(localai(localai_tree, "backend/Dockerfile.audio-cpp"),
            args(BUILDER_BASE_IMAGE=PREBUILT_BASE, BUILDER_TARGET="builder-prebuilt"))
    assert {"BUILDER_BASE_IMAGE", "BUILDER_TARGET", "SKIP_DRIVERS", "BACKEND"} <= set(r.unused_build_args)
    assert "BUILD_TYPE" not in r.unused_build_args
    assert r.external_images == ("ubuntu:24.04",)


def test_localai_heredoc_lines(localai_tree: LocalAITree) -> None:
    py = [f.line for f in features(localai(localai_tree, "backend/Dockerfile.python")) if f.name == "heredoc"]
    assert py == [43, 59, 114, 151, 198]
    go = [f.line for f in features(localai(localai_tree, "backend/Dockerfile.golang")) if f.name == "heredoc"]
    assert go == [58, 113, 149, 196, 240, 326]
    server = features(localai(localai_tree, "Dockerfile"))
    assert [(f.name, f.line) for f in server if f.name == "COPY --chmod"] == [("COPY --chmod", 243)]
    assert [f.line for f in server if f.name == "RUN --mount"] == [18, 272, 416]


def test_base_grpc_builder_syntax_directive(localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "backend/Dockerfile.base-grpc-builder")
    assert df.directives == (("syntax", "docker/dockerfile:1.7"),)
    assert df.directive("SYNTAX") == "docker/dockerfile:1.7"
    first = features(df)[0]
    assert (first.name, first.line, first.min_engine) == ("syntax directive", 1, (23, 0))
    assert "registry" in first.hint and "offline" in first.hint and "docker/dockerfile:1.7" in first.hint


@pytest.mark.parametrize("name", LOCALAI_FILES)
@pytest.mark.parametrize("version", ["23.0.0", "26.1.5+dfsg1", "28.2.2"])
def test_localai_builds_on_current_engines(name: str, version: str, localai_tree: LocalAITree) -> None:
    assert check_engine(localai(localai_tree, name), version) is None


def test_engine_20_10_is_too_old_for_python_backend(localai_tree: LocalAITree) -> None:
    df = localai(localai_tree, "backend/Dockerfile.python")
    msg = check_engine(df, "20.10.24+dfsg1")
    assert msg is not None
    first = features(df)[0]
    assert (first.name, first.line) == ("RUN --mount", 21)
    assert msg.startswith(f"{df.source} line 21 uses RUN --mount (")
    assert "which needs Docker Engine 23.0 or newer with BuildKit; this engine is 20.10.24: upgrade the engine" in msg
    assert "Debian 13's docker.io" in msg


# --------------------------------------------------------------------------- ARG scoping


def copied(text: str, build_args: dict[str, str] | None = None) -> list[str]:
    return paths(res(df_of(text), build_args).sources)


SCOPES = """\
ARG G=global
ARG ONLY_GLOBAL=og
FROM alpine
COPY g-${G} /
ARG G
COPY g-${G} /
COPY og-${ONLY_GLOBAL} /
COPY l-${LOCAL} /
ARG LOCAL=local
COPY l-${LOCAL} /
"""


def test_stage_arg_visible_only_after_its_line() -> None:
    assert copied(SCOPES) == ["g-", "g-global", "og-", "l-", "l-local"]


def test_build_args_override_global_and_stage_defaults() -> None:
    assert copied(SCOPES, {"G": "cli", "LOCAL": "x", "ONLY_GLOBAL": "y"}) == ["g-", "g-cli", "og-", "l-", "l-x"]


def test_stage_default_beats_global_default_and_expands_in_stage() -> None:
    text = ("ARG G=global\nFROM alpine\nARG G=stage\nCOPY ${G} /\n"
            "ARG A=a\nARG B=${A}-${G}\nCOPY ${B} /\n")
    assert copied(text) == ["stage", "a-stage"]
    assert copied(text, {"G": "cli", "A": "x"}) == ["cli", "x-cli"]


def test_global_default_expands_earlier_globals_and_build_args() -> None:
    text = "ARG A=a\nARG B=${A}-b\nFROM img:${B}\n"
    assert res(df_of(text)).external_images == ("img:a-b",)
    assert res(df_of(text), {"A": "z"}).external_images == ("img:z-b",)
    assert res(df_of(text), {"B": "q"}).external_images == ("img:q",)
    # a build arg for a name no global ARG declares is not visible in FROM
    assert res(df_of("FROM img:${UNDECLARED:-none}\n"), {"UNDECLARED": "x"}).external_images == ("img:none",)


def test_automatic_platform_args() -> None:
    text = ("FROM alpine:${TARGETARCH}-${BUILDARCH}-${TARGETPLATFORM}\n"
            "COPY t-${TARGETARCH} /\nARG TARGETARCH\nARG TARGETVARIANT\nARG BUILDPLATFORM\n"
            "COPY t-${TARGETARCH}${TARGETVARIANT}-${BUILDPLATFORM} /\n")
    r = res(df_of(text), platform=ARM7, build=AMD64)
    assert r.external_images == ("alpine:arm-amd64-linux/arm/v7",)
    assert paths(r.sources) == ["t-", "t-armv7-linux/amd64"]


def test_args_and_env_are_inherited_by_a_child_stage() -> None:
    text = ("FROM alpine AS base\nARG NAME=joe\nENV E=env\n"
            "FROM base AS child\nCOPY ${NAME}-${E} /\n"
            "FROM alpine\nCOPY --from=child / /\nCOPY n-${NAME} /\n")
    assert copied(text) == ["joe-env", "n-"]


def test_env_and_arg_share_one_environment() -> None:
    text = ("FROM alpine\nENV X=env\nCOPY a-$X /\nARG X\nCOPY b-$X /\nARG X=arg\nCOPY c-$X /\n"
            "ENV X=again Y=$X\nCOPY d-$X-$Y /\n")
    # ARG X without value and no build arg leaves ENV's X; ENV pairs expand with the env before the line
    assert copied(text) == ["a-env", "b-env", "c-arg", "d-again-arg"]


# --------------------------------------------------------------------------- expansion

ENV: dict[str, str | None] = {"SET": "v", "EMPTY": "", "NONE": None, "PATH": "/usr/bin:/bin", "FILE": "a.tar.gz"}


@pytest.mark.parametrize(("word", "expected"), [
    ("$SET", "v"), ("${SET}", "v"), ("$SET/x", "v/x"), ("${SET}x", "vx"), ("$SETx", ""), ("a${UNSET}b", "ab"),
    ("$NONE", ""),
    ("${SET:-d}", "v"), ("${EMPTY:-d}", "d"), ("${UNSET:-d}", "d"), ("${NONE:-d}", "d"),
    ("${SET-d}", "v"), ("${EMPTY-d}", ""), ("${UNSET-d}", "d"), ("${NONE-d}", "d"),
    ("${SET:+w}", "w"), ("${EMPTY:+w}", ""), ("${UNSET:+w}", ""),
    ("${SET+w}", "w"), ("${EMPTY+w}", "w"), ("${UNSET+w}", ""),
    ("${UNSET:-${EMPTY:-z}}", "z"), ("${SET:-${EMPTY:-z}}", "v"), ("${UNSET:-$SET}", "v"),
    ("\\$SET", "$SET"), ("\\${SET}", "${SET}"), ("'$SET'", "$SET"), ('"$SET"', "v"), ('"a b"', "a b"),
    ('""', ""), ('"\\$SET"', "$SET"), ("$", "$"), ("a$", "a$"), ("$1", ""), ("$1abc", "abc"), ("$@x", "x"),
    ("${FILE%.*}", "a.tar"), ("${FILE%%.*}", "a"), ("${FILE#*.}", "tar.gz"), ("${FILE##*.}", "gz"),
    ("${PATH/bin/sbin}", "/usr/sbin:/bin"), ("${PATH//bin/sbin}", "/usr/sbin:/sbin"),
])
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


@pytest.mark.parametrize("word", ["${", "${}", "${SET", "${:x}", "'open", '"open', "${SET:x}", "${UNSET:?required}",
                                  "${SET:#v}", "${EMPTY:?}"])
def test_expand_syntax_errors(word: str) -> None:
    with pytest.raises(ValueError):
        expand(word, ENV)


def test_expand_with_backtick_escape() -> None:
    assert expand("`$SET\\x", ENV, escape="`") == "$SET\\x"


def test_expansion_error_names_the_line() -> None:
    with pytest.raises(UserError, match=r"Dockerfile.test line 3: cannot expand COPY: .*bad substitution"):
        res(df_of("FROM alpine\nRUN true\nCOPY ${} /\n"))


# --------------------------------------------------------------------------- platforms and reachability

CROSS = """\
FROM --platform=$BUILDPLATFORM golang AS build
RUN go build
FROM build AS tools
RUN make tools
FROM alpine
COPY --from=tools /x /x
RUN apk add x
"""


def test_build_platform_stage_and_target_stage() -> None:
    r = res(df_of(CROSS), platform=ARM64, build=AMD64)
    assert r.labels == ("build", "tools", "stage-2")
    assert [(rs.label, rs.platform) for rs in r.stages] == [("build", AMD64), ("tools", AMD64), ("stage-2", ARM64)]
    assert [rs.label for rs in r.emulated_stages(Arch.AMD64)] == ["stage-2"]
    assert [rs.label for rs in r.emulated_stages(Arch.ARM64)] == ["build", "tools"]
    assert r.needs_emulation(Arch.AMD64)
    assert not res(df_of(CROSS), platform=AMD64, build=AMD64).needs_emulation(Arch.AMD64)


def test_constant_platform_flag() -> None:
    r = res(df_of("FROM --platform=linux/arm64 alpine\nRUN true\n"), platform=AMD64, build=AMD64)
    assert r.stages[0].platform == ARM64
    assert r.emulated_stages(Arch.AMD64) == r.stages


def test_copy_from_index_and_external_image_and_unreached_stages() -> None:
    text = ("FROM alpine AS first\nRUN make\n"
            "FROM debian AS unused\nCOPY never /\n"
            "FROM busybox\nCOPY --from=0 /a /b\nCOPY --from=alpine:3 /c /d\nCOPY local /e\n")
    r = res(df_of(text))
    assert r.labels == ("first", "stage-2")
    assert r.stages[-1].depends_on == ("first",)
    assert r.external_images == ("alpine", "busybox", "alpine:3")
    assert paths(r.sources) == ["local"]
    assert res(df_of(text), target="unused").labels == ("unused",)


def test_copy_from_a_later_stage_by_name_case_insensitively() -> None:
    text = "FROM alpine AS first\nCOPY --from=Late / /\nFROM scratch AS late\nCOPY x /\n"
    r = res(df_of(text), target="first")
    assert r.labels == ("late", "first")
    first = r.stage("first")
    assert first is not None and first.depends_on == ("late",)
    assert res(df_of(text)).labels == ("late",)


def test_run_mounts() -> None:
    text = ("FROM alpine AS cache\nRUN make\n"
            "FROM alpine\n"
            "RUN --mount=type=bind,target=/src --mount=type=cache,target=/root/.cache "
            "--mount=type=bind,from=cache,source=/out,target=/o --mount=from=tools:1,src=/bin,dst=/t "
            "--mount=type=secret,id=tok --mount=src=scripts/${X:-run.sh},dst=/r make\n")
    r = res(df_of(text))
    assert r.labels == ("cache", "stage-1")
    assert r.stages[-1].depends_on == ("cache",)
    assert [(s.kind, s.path) for s in r.sources] == [("bind", "."), ("bind", "scripts/run.sh")]
    assert r.external_images == ("alpine", "tools:1")


def test_copy_and_add_sources() -> None:
    text = ("FROM alpine\nARG V=1\n"
            "COPY --chown=1 <<EOF a/${V} ./b/ /dest/\nhello\nEOF\n"
            "ADD https://example.com/x.tgz git@github.com:o/r.git local.tgz /opt/\n"
            "COPY [\"with space\", \"/abs/../up\", \"/x\"]\n"
            "COPY ../../outside /y\n")
    r = res(df_of(text))
    assert [(s.kind, s.path, s.line) for s in r.sources] == [
        ("copy", "a/1", 3), ("copy", "b/", 3), ("add", "local.tgz", 6),
        ("copy", "with space", 7), ("copy", "up", 7), ("copy", "outside", 8)]


def test_circular_dependency_is_refused() -> None:
    text = "FROM alpine AS x\nCOPY --from=y / /\nFROM alpine AS y\nCOPY --from=x / /\n"
    with pytest.raises(UserError, match=r"line \d: circular dependency between stages \((x -> y -> x|y -> x -> y)\)"):
        res(df_of(text))


def test_unknown_target_suggests_a_name() -> None:
    with pytest.raises(UserError, match=r"no stage named 'buildr'.*did you mean 'builder'\?"):
        res(shaped("backend/Dockerfile.python"), target="buildr")


def test_empty_base_name_fails_even_in_an_unreached_stage() -> None:
    text = "ARG PREBUILT\nFROM ${PREBUILT} AS prebuilt\nFROM alpine\n"
    with pytest.raises(UserError, match=r"Dockerfile.test line 2: FROM \$\{PREBUILT\} expands to an empty image name"):
        res(df_of(text))
    assert res(df_of(text), {"PREBUILT": "x"}).labels == ("stage-1",)


@pytest.mark.parametrize(("flag", "match"), [
    ("linux/mips", "unknown architecture 'mips'"),
    ("$UNSET", "expands to an empty platform"),
    ("amd64", "os/arch"),
])
def test_bad_platform_flag(flag: str, match: str) -> None:
    with pytest.raises(UserError, match=rf"line 1: .*{match}"):
        res(df_of(f"FROM --platform={flag} alpine\n"))


# --------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(("text", "match"), [
    ("FROM alpine\nRUN <<EOF\necho hi\n", r"line 2: unterminated heredoc"),
    ("FROM alpine\nRUN ok\n\n# note\nENV A\nRUN later\n", r"line 5: ENV must have two arguments"),
    ("ARG X=1\n", r"no FROM instruction"),
    ("# only a comment\n", r"no instructions"),
    ("ARG X=1\nRUN echo\nFROM alpine\n", r"line 2: RUN before the first FROM; only ARG may come before FROM"),
    ("FROM alpine AS x\nRUN a\nFROM debian AS X\n", r"line 3: duplicate stage name 'x' \(first defined on line 1\)"),
    ("FROM alpine\nRUNN echo\n", r"line 2: unknown instruction RUNN; did you mean RUN\?"),
    ("FROM alpine AS 1st\n", r"line 1: invalid stage name '1st'"),
    ("FROM alpine AS\n", r"line 1: FROM needs one image"),
    ("FROM --plat=x alpine\n", r"line 1: FROM has an unknown flag --plat"),
    ("FROM alpine\nCOPY --from=$X /a /b\n", r"line 2: COPY --from='\$X': variable expansion"),
    ("FROM alpine\nCOPY --from=3 /a /b\n", r"line 2: COPY --from=3: there is no stage 3"),
    ("FROM alpine\nCOPY onlyone\n", r"line 2: COPY needs at least one source and a destination"),
    ("FROM alpine\nRUN --mount=from=${S},target=/x true\n", r"line 2: .*'from' does not support variable expansion"),
    ("FROM alpine\nARG =x\n", r"line 2: ARG '=x' has no name"),
    ("# syntax=a\n# syntax=b\nFROM alpine\n", r"line 2: a second syntax parser directive"),
    ("FROM alpine\nRUN ok\n\\\n\n# c\n", r"line 3: an instruction with no keyword"),
    ('FROM alpine\nRUN ["a", 1]\n', r"line 2: when using JSON array syntax, arrays must be comprised of strings only"),
    ("# escape=x\nFROM alpine\n", r"line 1: invalid escape token 'x' does not match ` or \\"),
    ("FROM alpine\nCOPY <<${X:-a b} /x\n", r"line 2: failed to process \"\$\{X:-a\": syntax error: missing '\}'"),
])
def test_parse_errors_name_file_and_line(text: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        df_of(text)
    assert str(info.value).startswith("backends/Dockerfile.test")
    assert info.value.exit_code == 2


def test_model_of_a_small_file() -> None:
    df = df_of("#!/bin/sh-ish\n# Syntax = docker/dockerfile:1\n#escape=\\\n\n# check=skip=all\n"
               "ARG A=1 B\nFROM --platform=$BUILDPLATFORM alpine AS Build\nonbuild run echo\nexpose 80\n")
    assert df.directives == (("syntax", "docker/dockerfile:1"), ("escape", "\\"))
    assert df.directive_lines == (2, 3)
    assert df.global_args == (("A", "1"), ("B", None))
    (stage,) = df.stages
    assert (stage.name, stage.platform, stage.base, stage.line) == ("build", "$BUILDPLATFORM", "alpine", 7)
    assert df.stage("BUILD") is stage
    assert [(i.keyword, i.args) for i in stage.instructions] == [("ONBUILD", ("RUN", "echo")), ("EXPOSE", ("80",))]


def test_load_dockerfile_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such Dockerfile"):
        load_dockerfile(tmp_path / "missing")
    with pytest.raises(UserError, match="not a regular file"):
        load_dockerfile(tmp_path)
    bad = tmp_path / "Dockerfile"
    bad.write_bytes(b"FROM alpine\nRUN echo \xff\n")
    with pytest.raises(UserError, match="not UTF-8"):
        load_dockerfile(bad)


# --------------------------------------------------------------------------- features and engines


def test_features_and_thresholds() -> None:
    df = df_of("FROM --platform=$BUILDPLATFORM alpine AS a\nFROM --platform=linux/amd64 alpine AS b\n"
               "RUN --network=none true\nCOPY --link a /a\nCOPY --link=false b /b\n"
               "ADD --chmod=755 --checksum=sha256:00 https://x/y /y\nCOPY <<EOF /z\nz\nEOF\n")
    assert [(f.name, f.line, f.min_engine) for f in features(df)] == [
        ("FROM --platform variable", 1, (23, 0)),
        ("RUN --network", 3, (23, 0)),
        ("COPY --link", 4, (23, 0)),
        ("ADD --chmod", 6, (23, 0)),
        ("ADD --checksum", 6, (25, 0)),
        ("heredoc", 7, (23, 0)),
    ]
    assert features(df_of("FROM alpine\nRUN true\nCOPY a /a\n")) == ()


def test_check_engine_names_first_feature_and_highest_requirement() -> None:
    df = df_of("FROM alpine\nRUN <<EOF\ntrue\nEOF\nADD --checksum=sha256:00 https://x/y /y\n")
    old = check_engine(df, "20.10.24+dfsg1")
    assert old == (
        "backends/Dockerfile.test line 2 uses heredoc (RUN <<EOF: an inline here-document, Dockerfile frontend 1.4), "
        "which needs Docker Engine 23.0 or newer with BuildKit; line 5 uses ADD --checksum, which needs 25.0; "
        "this engine is 20.10.24: upgrade the engine (Debian 13's docker.io, Docker CE, Docker Desktop)")
    mid = check_engine(df, "24.0.7")
    assert mid is not None and mid.startswith("backends/Dockerfile.test line 5 uses ADD --checksum")
    assert "needs Docker Engine 25.0" in mid and "this engine is 24.0.7" in mid
    assert check_engine(df, "25.0.0") is None
    assert check_engine(df, "not-a-version") is None
    assert check_engine(df, "") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("26.1.5+dfsg1", (26, 1)), ("20.10.24+dfsg1", (20, 10)), ("28.2.2", (28, 2)), ("v27.0", (27, 0)),
    ("dev", None), ("", None), ("28", None),
])
def test_parse_engine_version(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_engine_version(text) == expected


# ---- no Dockerfile makes it recurse or go quadratic ----------------------------------------------------
CHAIN = ("lines = ['FROM scratch AS s0', 'COPY a /a']\n"
         "for i in range(1, n):\n"
         "    lines += [f'FROM s{i - 1} AS s{i}', f'COPY --from=s{i - 1} /a /a{i % 5}']\n"
         "text = '\\n'.join(lines) + '\\n'\n"
         "from localai_ci.dockerfile.model import parse_dockerfile\n"
         "from localai_ci.dockerfile.resolve import resolve\n"
         "from localai_ci.oci.platforms import parse_platform\n"
         "amd64 = parse_platform('linux/amd64')\n"
         "def run():\n"
         "    r = resolve(parse_dockerfile(text, 'Dockerfile'), {}, target_platform=amd64, build_platform=amd64)\n"
         "    assert len(r.stages) == n\n")


def test_a_chain_of_stages_resolves_without_recursion_in_linear_time() -> None:
    """buildx builds a chain of 1,200 stages in 0.7 s; resolving it raised RecursionError. 1,000 and 10,000
    stages (past Python's recursion limit), ten times the input in about ten times the time."""
    assert_linear(CHAIN, "run()", 1000, timeout=300, repeat=5)
