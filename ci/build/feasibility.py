"""Can this builder build a planned leg, and how: the leg's Dockerfile resolved with its build args.

``invoke build-*`` refuses a leg it cannot build before BuildKit starts (an engine too old for a
Dockerfile feature, ``RUN`` steps for another architecture without QEMU, ``RUN`` on an offline
base without a shell); ``invoke pipeline`` reports such a leg as skipped, with the reason, and
does not merge its suffix.

:func:`assess` is pure (a resolved Dockerfile and the builder's facts in, a verdict out);
:func:`leg_feasibility` reads the Dockerfile and looks for busybox.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..docker.offline_bases import is_offline_base, offline_image
from ..dockerfile.features import check_engine
from ..dockerfile.model import Resolved, ResolvedStage, load_dockerfile
from ..dockerfile.resolve import resolve
from ..oci.platforms import Arch, Platform, parse_platform

BINFMT_FIX = ("register QEMU in binfmt_misc (apt-get install qemu-user-static, then .ci/binfmt.sh as root; "
              "on GitHub docker/setup-qemu-action)")
SHELL_FIX = ("install a static busybox: `apt-get install busybox-static` for this machine's own architecture, or "
             "put one per architecture in $CI_BUSYBOX_DIR (default ~/.cache/localai-ci/busybox; "
             "`bash .ci/install-system.sh DIR` downloads Debian's busybox-static for amd64 and arm64)")


@dataclass(frozen=True)
class Feasibility:
    runs: bool
    how: str  # "native", "QEMU binfmt (linux/arm64)", "cross-build: RUN steps on linux/amd64", ...
    reason: str = ""  # why not (when not runs), with what to do
    offline_bases: tuple[str, ...] = ()  # ci-offline/ images the build needs served
    resolved: Resolved | None = None


def _root_base(resolved: Resolved, rs: ResolvedStage) -> str:
    """The image a stage finally builds on (following FROM <stage> chains)."""
    seen = set()
    while rs.base_is_stage and rs.label not in seen:
        seen.add(rs.label)
        parent = resolved.stage(rs.base)
        if parent is None:
            break
        rs = parent
    return rs.base


def assess(resolved: Resolved, *, host: Arch, can_run: Callable[[Platform], bool], engine_problem: str | None = None,
           shells: Mapping[str, frozenset[str]] | None = None, reaches_loopback: bool = True) -> Feasibility:
    """The verdict for one resolved build on a builder running on ``host``.

    ``can_run``: whether the builder executes RUN steps for a platform (native or QEMU);
    ``engine_problem``: :func:`ci.dockerfile.check_engine`'s message; ``shells``: for each
    ``ci-offline/`` base, the architectures its synthesized image has a shell for;
    ``reaches_loopback``: whether BuildKit reaches the host's loopback registries (the docker driver
    does; a docker-container builder does not), where offline bases are served from.
    """
    offline = tuple(dict.fromkeys(i for i in resolved.external_images if is_offline_base(i)))
    target = resolved.target_platform

    def no(reason: str, how: str) -> Feasibility:
        return Feasibility(False, how, reason, offline, resolved)

    if engine_problem:
        return no(engine_problem, "engine too old")
    final = resolved.stages[-1]
    if final.platform.os != target.os or final.platform.arch is not target.arch:
        # BuildKit writes the requested platform into the config whatever the final stage ran on:
        # an amd64 final stage of an arm64 leg would be published as arm64 with amd64 binaries inside
        return no(f"the final stage {final.label} (line {final.stage.line}) is built for {final.platform}, not the leg's "
                  f"{target}: BuildKit would label {final.platform} files as {target}; drop "
                  f"--platform={final.stage.platform or final.platform} from the final stage's FROM (a builder stage "
                  "may run on $BUILDPLATFORM, the stage it copies into may not)",
                  f"final stage is {final.platform}")
    if offline and not reaches_loopback:
        return no(f"offline base images ({', '.join(offline)}) are served from a loopback registry, which this "
                  "builder cannot reach: build with the engine's own builder (docker buildx use default)",
                  "needs the docker driver for offline bases")
    emulated = resolved.emulated_stages(host)
    for rs in emulated:
        if not can_run(rs.platform):
            return no(f"stage {rs.label} (line {rs.stage.line}) runs RUN steps for {rs.platform} on this {host} "
                      f"builder: needs a native {rs.platform.arch} runner or QEMU binfmt; {BINFMT_FIX}",
                      f"needs a native {rs.platform.arch} runner or QEMU binfmt")
    for rs in resolved.stages:
        base = _root_base(resolved, rs)
        if rs.runs and is_offline_base(base) and str(rs.platform.arch) not in (shells or {}).get(base, frozenset()):
            return no(f"stage {rs.label} (line {rs.stage.line}) has RUN steps on the offline base {base}, which has no "
                      f"shell for {rs.platform.arch} here: {SHELL_FIX}", f"needs a shell in {base} ({rs.platform.arch})")
    if emulated:
        how = "QEMU binfmt (" + ", ".join(dict.fromkeys(str(rs.platform) for rs in emulated)) + ")"
    elif target.arch is host:
        how = "native"
    elif any(rs.runs for rs in resolved.stages):
        how = f"cross-build: RUN steps on the build platform, {target} stages COPY only"
    else:
        how = f"COPY only for {target}, no emulation"
    return Feasibility(True, how, "", offline, resolved)


def leg_feasibility(plan: Any, caps: Any, env: Mapping[str, str]) -> Feasibility:
    """:func:`assess` for a ``ci.build.LegPlan`` on a builder (``ci.builder.BuilderCaps``)."""
    df = load_dockerfile(Path(plan.context) / plan.dockerfile)
    host = Arch(caps.engine.arch)
    resolved = resolve(df, dict(plan.build_args), target_platform=plan.platform,
                       build_platform=parse_platform(f"linux/{host}"))
    shells = {name: frozenset(offline_image(name, env).shells)
              for name in resolved.external_images if is_offline_base(name)}
    return assess(resolved, host=host, can_run=caps.can_run, engine_problem=check_engine(df, caps.engine.version),
                  shells=shells, reaches_loopback=caps.reaches_loopback)
