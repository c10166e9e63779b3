"""OCI platforms, CPU architectures, platform tags and runner policy (pure).

OCI strings (``linux/arm64``) are used at boundaries; the platform tag
(``arm64``) is used in names. Each conversion has exactly one function here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Arch(StrEnum):
    """CPU architectures, spelled as in OCI image configs."""

    AMD64 = "amd64"
    ARM64 = "arm64"
    ARM = "arm"
    PPC64LE = "ppc64le"
    S390X = "s390x"
    RISCV64 = "riscv64"
    I386 = "386"


_PLATFORM_RE = re.compile(r"^(?P<os>[a-z0-9]+)/(?P<arch>[a-z0-9_]+)(?:/(?P<variant>[a-z0-9]+))?$")


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI platform: ``os/arch[/variant]``."""

    os: str
    arch: Arch
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")

    def to_oci(self) -> dict[str, str]:
        """The ``platform`` object of an OCI index descriptor."""
        d = {"architecture": str(self.arch), "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d


def parse_platform(text: str) -> Platform:
    """Parse ``os/arch[/variant]``; raise ValueError naming the expected shape."""
    m = _PLATFORM_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a platform of the form os/arch[/variant] (e.g. linux/amd64)")
    try:
        arch = Arch(m["arch"])
    except ValueError as exc:
        known = ", ".join(a.value for a in Arch)
        raise ValueError(f"{text!r} has unknown architecture {m['arch']!r} (known: {known})") from exc
    return Platform(os=m["os"], arch=arch, variant=m["variant"] or "")


def platform_from_oci(obj: dict[str, object]) -> Platform:
    """Platform from an OCI descriptor's ``platform`` or an image config."""
    os_ = str(obj.get("os", ""))
    arch = str(obj.get("architecture", ""))
    variant = str(obj.get("variant", "") or "")
    return parse_platform(f"{os_}/{arch}" + (f"/{variant}" if variant else ""))


def normalize(platform: Platform) -> Platform:
    """The platform as containerd's ``platforms.Normalize`` compares it: ``arm64/v8`` is ``arm64``,
    ``amd64/v1`` is ``amd64``. Descriptors keep what the config says; comparisons use this."""
    if (platform.arch is Arch.ARM64 and platform.variant in ("v8", "8")) or (
            platform.arch is Arch.AMD64 and platform.variant == "v1"):
        return Platform(platform.os, platform.arch, "")
    return platform


def same_platform(a: Platform, b: Platform) -> bool:
    """True when two platforms name the same target (after :func:`normalize`)."""
    return normalize(a) == normalize(b)


def platform_tag(platform: Platform) -> str:
    """The platform tag used in names: ``linux/arm64`` -> ``arm64``, ``linux/arm/v7`` -> ``armv7``."""
    return f"{platform.arch}{platform.variant}"


@dataclass(frozen=True)
class RunnerPolicy:
    """Which GitHub runner builds which architecture natively, and which runners are retired."""

    native: dict[Arch, str] = field(default_factory=lambda: {
        Arch.AMD64: "ubuntu-latest",
        Arch.ARM64: "ubuntu-24.04-arm",
    })
    retired: tuple[str, ...] = ("bigger-runner", "arc-runner-set")
    # runners (besides the native ones) known to be of an architecture
    extra: dict[str, Arch] = field(default_factory=dict)

    def runner_for(self, arch: Arch) -> str | None:
        return self.native.get(arch)

    def arch_of(self, runner: str) -> Arch | None:
        """The architecture a runner label runs on, or None when unknown."""
        for arch, name in self.native.items():
            if runner == name:
                return arch
        if runner in self.extra:
            return self.extra[runner]
        low = runner.lower()
        if re.search(r"(^|[-_])(arm|arm64|aarch64)($|[-_])", low):
            return Arch.ARM64
        if low.startswith(("ubuntu-", "debian-")) or re.search(r"(^|[-_])(x64|amd64|x86_64)($|[-_])", low):
            return Arch.AMD64
        return None

    def is_retired(self, runner: str) -> bool:
        return runner in self.retired


def host_arch(machine: str) -> Arch:
    """Map ``platform.machine()`` / engine ``Architecture`` to an Arch."""
    m = machine.lower()
    table = {"x86_64": Arch.AMD64, "amd64": Arch.AMD64, "aarch64": Arch.ARM64, "arm64": Arch.ARM64,
             "armv7l": Arch.ARM, "ppc64le": Arch.PPC64LE, "s390x": Arch.S390X, "riscv64": Arch.RISCV64,
             "i386": Arch.I386, "i686": Arch.I386}
    if m not in table:
        raise ValueError(f"unknown machine architecture {machine!r}")
    return table[m]
