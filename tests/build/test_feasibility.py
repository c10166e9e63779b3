"""localai_ci.build.feasibility: can this builder build a leg, and how (pure verdicts on resolved Dockerfiles)."""
from __future__ import annotations

from typing import Any

import pytest

from localai_ci.dockerfile.model import parse_dockerfile
from localai_ci.dockerfile.resolve import resolve
from localai_ci.build.feasibility import Feasibility, assess
from localai_ci.oci.platforms import Arch, Platform, parse_platform
from tests.support.paths import REPO as ROOT

AMD64, ARM64 = parse_platform("linux/amd64"), parse_platform("linux/arm64")
BASE = "ci-offline/ubuntu:24.04"

TARGET_RUN = f"FROM {BASE}\nRUN make\n"  # RUN on the target platform (LocalAI's builder stages)
CROSS = f"FROM --platform=$BUILDPLATFORM {BASE} AS b\nRUN make\nFROM scratch\nCOPY --from=b /out /\n"
COPY_ONLY = f"FROM {BASE}\nCOPY x /x\n"


def verdict(text: str, target: Platform, host: Arch = Arch.AMD64, *, emulates: tuple[str, ...] = (),
            shells: tuple[str, ...] = ("amd64", "arm64"), loopback: bool = True, problem: str | None = None
            ) -> Feasibility:
    df = parse_dockerfile(text, "Dockerfile")
    resolved = resolve(df, {}, target_platform=target, build_platform=Platform("linux", host))
    return assess(resolved, host=host, can_run=lambda p: p.arch is host or str(p.arch) in emulates,
                  engine_problem=problem, shells={BASE: frozenset(shells)}, reaches_loopback=loopback)


def test_host_arch_leg_is_native() -> None:
    v = verdict(TARGET_RUN, AMD64)
    assert (v.runs, v.how, v.offline_bases) == (True, "native", (BASE,))


def test_run_steps_for_another_arch_need_qemu_or_a_native_runner() -> None:
    v = verdict(TARGET_RUN, ARM64)
    assert not v.runs and v.how == "needs a native arm64 runner or QEMU binfmt"
    assert "stage stage-0 (line 1) runs RUN steps for linux/arm64 on this amd64 builder" in v.reason
    assert "qemu-user-static" in v.reason and "setup-qemu-action" in v.reason


def test_qemu_binfmt_makes_them_buildable() -> None:
    v = verdict(TARGET_RUN, ARM64, emulates=("arm64",))
    assert v.runs and v.how == "QEMU binfmt (linux/arm64)"
    assert not verdict(TARGET_RUN, ARM64, emulates=("s390x",)).runs  # another emulator does not help


def test_cross_build_and_copy_only_need_no_emulation() -> None:
    cross = verdict(CROSS, ARM64)
    assert cross.runs and cross.how.startswith("cross-build: RUN steps on the build platform")
    copy = verdict(COPY_ONLY, ARM64)
    assert copy.runs and copy.how == "COPY only for linux/arm64, no emulation"


def test_a_final_stage_on_the_build_platform_is_refused() -> None:
    """BuildKit would label its amd64 files arm64 (tests/e2e/test_infra.py shows it): refused before building."""
    v = verdict(f"FROM {BASE} AS b\nRUN make\nFROM --platform=$BUILDPLATFORM {BASE}\nCOPY --from=b /o /o\n", ARM64)
    assert not v.runs and v.how == "final stage is linux/amd64"
    assert "the final stage stage-1 (line 3) is built for linux/amd64, not the leg's linux/arm64" in v.reason
    assert "drop --platform=$BUILDPLATFORM from the final stage's FROM" in v.reason
    assert verdict(f"FROM --platform=$BUILDPLATFORM {BASE}\nCOPY x /x\n", AMD64).runs  # the same platform: fine


def test_amd64_leg_on_an_arm64_host() -> None:
    v = verdict(TARGET_RUN, AMD64, host=Arch.ARM64)
    assert not v.runs and v.how == "needs a native amd64 runner or QEMU binfmt"


def test_run_on_an_offline_base_without_a_shell() -> None:
    v = verdict(CROSS, ARM64, shells=("arm64",))  # the cross-build stage runs on amd64, which has none
    assert not v.runs and v.how == f"needs a shell in {BASE} (amd64)"
    assert "busybox" in v.reason and "CI_BUSYBOX_DIR" in v.reason
    assert verdict(COPY_ONLY, ARM64, shells=()).runs  # COPY needs no shell


def test_offline_bases_need_a_builder_that_reaches_loopback() -> None:
    v = verdict(COPY_ONLY, AMD64, loopback=False)
    assert not v.runs and "loopback registry" in v.reason
    real = verdict("FROM ubuntu:24.04\nRUN true\n", AMD64, loopback=False)
    assert real.runs and real.offline_bases == ()


def test_engine_problem_comes_first() -> None:
    v = verdict(TARGET_RUN, ARM64, problem="Dockerfile line 2 uses a heredoc ...")
    assert not v.runs and v.reason.startswith("Dockerfile line 2 uses a heredoc")


def test_every_example_leg_builds_here_without_emulation(busybox: dict[str, str]) -> None:
    """The README's first command: every leg of backends/ builds on an amd64 machine with no QEMU."""
    from localai_ci.build.leg import BuildRequest, prepare
    from localai_ci.build.feasibility import leg_feasibility
    from localai_ci.matrix.model import load_matrix
    from localai_ci.matrix.naming import Family
    from localai_ci.pipeline.run import builder_caps_without_engine

    env = {"HOME": str(ROOT), "GITHUB_SHA": "0" * 40, **busybox}
    caps = builder_caps_without_engine(Arch.AMD64, frozenset())  # no binfmt at all
    seen = []
    for family, path in ((Family.BACKENDS, "backends/matrix.yml"), (Family.SERVER, "backends/images.yml")):
        for e in load_matrix(ROOT / path, family):
            plan, _ = prepare(BuildRequest(family=family, tag_suffix=e.tag_suffix, platform_tag=e.ptag,
                                           matrix=str(ROOT / path), root=str(ROOT), images="127.0.0.1:5000/x/y"), env)
            v = leg_feasibility(plan, caps, env)
            assert v.runs, (e.tag_suffix, e.ptag, v.reason)
            seen.append((e.ptag, v.how.split(":")[0]))
    assert ("arm64", "cross-build") in seen and ("amd64", "native") in seen
    assert sum(1 for p, _ in seen if p == "arm64") == 4


def _amd64_builder_verdicts(df: Any, name: str) -> None:
    """Native on amd64; the arm64 legs need emulation on an amd64 builder (the builder stages run on
    the target platform, meant for native arm64 runners) and run natively on arm64."""
    args = {"BASE_IMAGE": "ubuntu:24.04", "BACKEND": "rerankers", "BUILD_TYPE": "", "BUILDER_TARGET": "builder-fromsource"}
    for target, host, runs in ((AMD64, Arch.AMD64, True), (ARM64, Arch.AMD64, False), (ARM64, Arch.ARM64, True)):
        resolved = resolve(df, args, target_platform=target, build_platform=Platform("linux", host))
        v = assess(resolved, host=host, can_run=lambda p, h=host: p.arch is h)
        assert v.runs is runs, (name, target, host, v.reason)


@pytest.mark.parametrize("name", ["backend/Dockerfile.python", "backend/Dockerfile.golang",
                                  "backend/Dockerfile.llama-cpp"])
def test_localai_shaped_dockerfiles_on_an_amd64_builder(name: str) -> None:
    from localai_ci.dockerfile.model import parse_dockerfile
    from tests.support.localai_tree import files

    _amd64_builder_verdicts(parse_dockerfile(files()[name], name), name)


@pytest.mark.parametrize("name", ["backend/Dockerfile.python", "backend/Dockerfile.golang",
                                  "backend/Dockerfile.llama-cpp", "Dockerfile"])
def test_localai_dockerfiles_on_an_amd64_builder(name: str, localai_tree: Any) -> None:
    """LocalAI's own Dockerfiles (a named LocalAI tree)."""
    from localai_ci.dockerfile.model import load_dockerfile

    _amd64_builder_verdicts(load_dockerfile(localai_tree.path(name)), name)
