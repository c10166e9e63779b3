"""localai_ci.oci.platforms: OCI platform strings, platform tags, runner policy."""
from __future__ import annotations

import pytest

from localai_ci.oci.platforms import Arch, Platform, RunnerPolicy, host_arch, parse_platform, platform_from_oci, platform_tag


@pytest.mark.parametrize(("text", "platform", "ptag"), [
    ("linux/amd64", Platform("linux", Arch.AMD64), "amd64"),
    ("linux/arm64", Platform("linux", Arch.ARM64), "arm64"),
    (" linux/arm/v7 ", Platform("linux", Arch.ARM, "v7"), "armv7"),
    ("linux/s390x", Platform("linux", Arch.S390X), "s390x"),
])
def test_parse_platform_and_tag(text: str, platform: Platform, ptag: str) -> None:
    assert parse_platform(text) == platform
    assert platform_tag(platform) == ptag
    assert str(platform) == text.strip()


@pytest.mark.parametrize(("text", "why"), [
    ("linux", "os/arch"), ("amd64", "os/arch"), ("linux/amd64/v1/x", "os/arch"), ("Linux/AMD64", "os/arch"),
    ("linux/amd46", "unknown architecture 'amd46'"), ("linux/amd64;reboot", "os/arch"), ("", "os/arch"),
])
def test_parse_platform_rejects(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_platform(text)


def test_oci_round_trip() -> None:
    p = Platform("linux", Arch.ARM, "v7")
    assert p.to_oci() == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert platform_from_oci(p.to_oci()) == p
    assert platform_from_oci({"os": "linux", "architecture": "arm64"}) == Platform("linux", Arch.ARM64)


def test_runner_policy_defaults() -> None:
    p = RunnerPolicy()
    assert p.runner_for(Arch.AMD64) == "ubuntu-latest" and p.runner_for(Arch.ARM64) == "ubuntu-24.04-arm"
    assert p.runner_for(Arch.S390X) is None
    assert p.is_retired("bigger-runner") and p.is_retired("arc-runner-set") and not p.is_retired("ubuntu-latest")


@pytest.mark.parametrize(("runner", "arch"), [
    ("ubuntu-latest", Arch.AMD64), ("ubuntu-22.04", Arch.AMD64), ("ubuntu-24.04-arm", Arch.ARM64),
    ("ubuntu-22.04-arm", Arch.ARM64), ("self-hosted-arm64", Arch.ARM64), ("linux-x64-big", Arch.AMD64),
    ("bigger-runner", None), ("arc-runner-set", None), ("macos-14", None), ("armada", None),
])
def test_runner_arch(runner: str, arch: Arch | None) -> None:
    assert RunnerPolicy().arch_of(runner) is arch


def test_runner_policy_configured() -> None:
    p = RunnerPolicy(native={Arch.AMD64: "big-x86", Arch.ARM64: "graviton"}, retired=("old",),
                     extra={"gpu-box": Arch.AMD64})
    assert p.arch_of("graviton") is Arch.ARM64 and p.arch_of("big-x86") is Arch.AMD64
    assert p.arch_of("gpu-box") is Arch.AMD64
    assert p.is_retired("old") and not p.is_retired("bigger-runner")


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", Arch.AMD64), ("aarch64", Arch.ARM64), ("arm64", Arch.ARM64)])
def test_host_arch(machine: str, arch: Arch) -> None:
    assert host_arch(machine) is arch


def test_host_arch_unknown() -> None:
    with pytest.raises(ValueError, match="unknown machine architecture 'mips'"):
        host_arch("mips")
