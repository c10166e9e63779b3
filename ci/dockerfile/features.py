"""Engine features (pure): what a Dockerfile uses that an old engine (or the classic builder) cannot
build (:func:`features`), and one actionable message when the engine is too old (:func:`check_engine`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .model import Dockerfile, Instruction

_ENGINE_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


_UPGRADE = "upgrade the engine (Debian 13's docker.io, Docker CE, Docker Desktop)"


@dataclass(frozen=True)
class Feature:
    """A Dockerfile feature an older engine or the classic builder cannot build."""

    name: str  # "heredoc", "RUN --mount", "ADD --checksum", ...
    line: int
    min_engine: tuple[int, int]  # first Docker Engine release that builds it by default
    hint: str  # what it is, in the words of the error message


def features(df: Dockerfile) -> tuple[Feature, ...]:
    """Features the classic builder or an old engine cannot build, in line order.

    Engine versions: 23.0 is the first Docker Engine with BuildKit as the default builder on
    Linux (and ships Dockerfile frontend 1.4+); 25.0 ships frontend 1.6 (``ADD --checksum``).
    """
    found: list[Feature] = []
    syntax = df.directive("syntax")
    if syntax is not None:
        line = df.directive_lines[[k for k, _ in df.directives].index("syntax")] if df.directive_lines else 1
        image = syntax.split()[0]
        found.append(Feature(
            "syntax directive", line, (23, 0),
            f"'# syntax={syntax}' makes BuildKit pull the frontend image {image} from a registry at "
            f"build time, so an offline build fails; delete the line to use the engine's built-in frontend"))
    for st in df.stages:
        if st.platform and "$" in st.platform:
            found.append(Feature(
                "FROM --platform variable", st.line, (23, 0),
                f"--platform={st.platform}: a platform from BuildKit's automatic build args"))
        for ins in st.instructions:
            found.extend(_instruction_features(ins))
    return tuple(sorted(found, key=lambda f: f.line))


def _instruction_features(ins: Instruction) -> Iterable[Feature]:
    kw = ins.keyword
    if ins.heredocs and kw in ("RUN", "COPY", "ADD"):
        yield Feature("heredoc", ins.line, (23, 0),
                      f"{kw} <<{ins.heredocs[0]}: an inline here-document, Dockerfile frontend 1.4")
    if kw == "RUN":
        mounts = ins.flag_values("mount")
        if mounts:
            kinds = sorted({(_type_of(m)) for m in mounts})
            yield Feature("RUN --mount", ins.line, (23, 0),
                          f"a {'/'.join(kinds)} mount for one RUN step, BuildKit only")
        if ins.flag("network") is not None:
            yield Feature("RUN --network", ins.line, (23, 0),
                          f"--network={ins.flag('network')} for one RUN step, BuildKit only")
    if kw in ("COPY", "ADD"):
        if ins.has_flag("link"):
            yield Feature(f"{kw} --link", ins.line, (23, 0),
                          "a copy layered independently of the layers before it, Dockerfile frontend 1.4")
        if ins.flag("chmod") is not None:
            yield Feature(f"{kw} --chmod", ins.line, (23, 0),
                          f"--chmod={ins.flag('chmod')}: permissions set while copying, BuildKit only")
    if kw == "ADD" and ins.flag("checksum") is not None:
        yield Feature("ADD --checksum", ins.line, (25, 0),
                      "a remote file verified against a checksum, Dockerfile frontend 1.6")


def _type_of(mount: str) -> str:
    for item in mount.split(","):
        key, _, value = item.partition("=")
        if key.strip().lower() == "type":
            return value.strip().lower() or "bind"
    return "bind"


def parse_engine_version(version: str) -> tuple[int, int] | None:
    """'26.1.5+dfsg1' -> (26, 1); None when it does not start with major.minor."""
    m = _ENGINE_RE.match(version.strip())
    return (int(m[1]), int(m[2])) if m else None


def check_engine(df: Dockerfile, engine_version: str) -> str | None:
    """None when an engine of ``engine_version`` builds ``df`` (or the version is unparseable),
    else one message naming the first feature it cannot build and what to do."""
    have = parse_engine_version(engine_version)
    if have is None:
        return None
    too_new = [f for f in features(df) if f.min_engine > have]
    if not too_new:
        return None
    first = too_new[0]
    m = _ENGINE_RE.match(engine_version.strip())
    shown = m[0].lstrip("v") if m else engine_version
    need = first.min_engine
    msg = (f"{df.source} line {first.line} uses {first.name} ({first.hint}), which needs Docker Engine "
           f"{need[0]}.{need[1]} or newer with BuildKit")
    highest = max(too_new, key=lambda f: (f.min_engine, -f.line))
    if highest.min_engine > need:
        msg += (f"; line {highest.line} uses {highest.name}, which needs "
                f"{highest.min_engine[0]}.{highest.min_engine[1]}")
    return f"{msg}; this engine is {shown}: {_UPGRADE}"
