"""Dockerfiles: the parsed model (pure).

Parsing is BuildKit's own parser, ported to Python in :mod:`localai_ci.dockerfile.syntax` (the same
commands and messages as BuildKit's Go parser, plus the line of each error). This module adds
what BuildKit's ``dockerfile2llb`` does on top of that parser, for the questions this project
asks before it builds anything:

* :func:`parse_dockerfile` -> :class:`Dockerfile`: parser directives, the global ARGs and the
  stages, with errors that name the file and line; the types a resolution returns
  (:class:`Resolved`);
* :func:`localai_ci.dockerfile.expand.expand`: BuildKit's shell lexer for ``$VAR``, ``${VAR}``,
  ``${VAR:-word}`` and friends;
* :func:`localai_ci.dockerfile.resolve.resolve` -> :class:`Resolved`: with build args and
  platforms, which stages the target reaches, their expanded base images and platforms, the
  build-context paths they read, the external images they pull, and which stages run under
  emulation on a given host;
* :func:`localai_ci.dockerfile.features.features` / ``check_engine``: what a Dockerfile uses that
  an old engine (or the classic builder) cannot build, and one actionable message when the engine
  is too old.

Semantics follow moby/buildkit ``frontend/dockerfile`` (``dockerfile2llb/convert.go``,
``instructions/parse.go``, ``shell/lex.go``); where this module is stricter (a duplicate stage
name is an error here, a lint warning there) the docstring says so.
"""
from __future__ import annotations

import csv
import difflib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import UserError
from ..oci.platforms import Arch, Platform
from ..textfile import read_user_text
from .expand import expand
from .syntax import Command, ParseError, parse_string

MAX_DOCKERFILE_BYTES = 4 * 1024 * 1024


# Instructions BuildKit knows (instructions/parse.go); anything else is "unknown instruction".
KEYWORDS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)


DIRECTIVES = ("syntax", "escape", "check")


# The build args BuildKit sets itself (dockerfile2llb/platform.go defaultArgs), visible in the
# global scope (FROM lines) and, after ``ARG NAME``, inside a stage.
AUTOMATIC_ARGS = (
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT", "TARGETSTAGE",
)


_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9-_.]*$")


_DIRECTIVE_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


SourceKind = Literal["copy", "add", "bind"]


@dataclass(frozen=True)
class Instruction:
    """One instruction as BuildKit's parser saw it (line numbers are 1-based, inclusive)."""

    keyword: str  # upper case: RUN, COPY, ...
    flags: tuple[tuple[str, str], ...]  # ("mount", "type=bind,source=x,target=/y"); bare --link -> ("link", "")
    args: tuple[str, ...]  # words after the flags, unexpanded (ONBUILD: the inner keyword first)
    json: bool  # exec form: RUN ["a", "b"]
    line: int
    end_line: int
    heredocs: tuple[str, ...] = ()  # here-document names (RUN <<EOT -> ("EOT",))
    original: str = ""

    def flag(self, name: str) -> str | None:
        """The value of ``--name`` (the last one when repeated), '' for a bare flag, None when absent."""
        values = self.flag_values(name)
        return values[-1] if values else None

    def flag_values(self, name: str) -> tuple[str, ...]:
        """Every value of a repeatable flag (``--mount``), in order."""
        return tuple(v for k, v in self.flags if k == name)

    def has_flag(self, name: str) -> bool:
        """True for ``--name``, ``--name=true``, ``--name=<anything but false>``."""
        value = self.flag(name)
        return value is not None and value.lower() != "false"


@dataclass(frozen=True)
class Stage:
    """One build stage: its FROM line and the instructions after it."""

    index: int
    base: str  # raw, unexpanded: "${BASE_IMAGE}", "scratch", "builder"
    name: str  # lower case; '' when the FROM has no AS
    platform: str  # raw --platform value or ''
    line: int  # the FROM line
    instructions: tuple[Instruction, ...]

    @property
    def label(self) -> str:
        """The name BuildKit shows: the AS name, else ``stage-<index>``."""
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile. ``global_args`` are the ARGs before the first FROM with their raw
    default (quotes kept, unexpanded) or None; ``preamble`` holds those ARG instructions."""

    source: str
    directives: tuple[tuple[str, str], ...]  # ("syntax", "docker/dockerfile:1.7"), lower-case names
    global_args: tuple[tuple[str, str | None], ...]
    stages: tuple[Stage, ...]
    preamble: tuple[Instruction, ...] = field(default=(), repr=False)
    directive_lines: tuple[int, ...] = field(default=(), repr=False)  # line of each directive

    def directive(self, name: str) -> str | None:
        for key, value in self.directives:
            if key == name.lower():
                return value
        return None

    @property
    def escape(self) -> str:
        """The escape character (``# escape=`` directive), backslash by default."""
        return self.directive("escape") or "\\"

    def stage(self, name: str) -> Stage | None:
        """The stage called ``name`` (case-insensitive), or None."""
        low = name.lower()
        for st in self.stages:
            if st.name and st.name == low:
                return st
        return None


@dataclass(frozen=True)
class Source:
    """A path a stage reads from the build context."""

    kind: SourceKind  # COPY, ADD, or a RUN --mount=type=bind without from=
    path: str  # expanded, relative to the context root: "backend/python/rerankers", "."
    line: int
    from_: str  # the stage that reads it (its name, or stage-<index>)
    dest: str = ""  # where it lands in the stage, absolute: "/LocalAI", "/usr/local/sbin/compile.sh"


@dataclass(frozen=True)
class RunStep:
    """A RUN instruction of a reached stage, as its shell sees it."""

    line: int
    text: str  # the instruction as written (flags and here-documents included)
    env: tuple[tuple[str, str], ...]  # ARG and ENV values visible to it
    workdir: str  # its working directory (WORKDIR, absolute; '/' by default)


@dataclass(frozen=True)
class ResolvedStage:
    """A stage the target reaches, with build args and platforms applied."""

    stage: Stage
    base: str  # expanded: "scratch", an image reference, or the name of a reached stage
    base_is_stage: bool
    platform: Platform  # where its RUN steps execute
    runs: bool  # has RUN instructions
    copies: tuple[Source, ...]  # build-context reads of this stage's own instructions
    depends_on: tuple[str, ...] = ()  # labels of the stages it needs (FROM, COPY --from, mount from=)
    run_steps: tuple[RunStep, ...] = ()  # its RUN instructions, in order

    @property
    def label(self) -> str:
        return self.stage.label


@dataclass(frozen=True)
class Resolved:
    """What one build (target, platforms, build args) of a Dockerfile does."""

    source: str
    target: str  # label of the target stage
    target_platform: Platform
    build_platform: Platform
    stages: tuple[ResolvedStage, ...]  # dependency order: every stage after the ones it needs; target last
    external_images: tuple[str, ...]  # images pulled: FROM bases, COPY --from / mount from= images
    unused_build_args: tuple[str, ...] = ()  # build args no global or reached-stage ARG declares

    def stage(self, name: str) -> ResolvedStage | None:
        """A reached stage by name (case-insensitive) or label (``stage-3``), or None."""
        low = name.lower()
        for rs in self.stages:
            if rs.label == low:
                return rs
        return None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(rs.label for rs in self.stages)

    @property
    def sources(self) -> tuple[Source, ...]:
        """Every build-context read of every reached stage, in stage order."""
        return tuple(s for rs in self.stages for s in rs.copies)

    def emulated_stages(self, host: Arch) -> tuple[ResolvedStage, ...]:
        """Reached stages with RUN steps whose platform's architecture is not the host's:
        on that host they run under QEMU binfmt emulation."""
        return tuple(rs for rs in self.stages if rs.runs and rs.platform.arch is not host)

    def needs_emulation(self, host: Arch) -> bool:
        return bool(self.emulated_stages(host))


def load_dockerfile(path: str | Path) -> Dockerfile:
    """Read and parse a Dockerfile; every failure is a :class:`UserError` naming the path."""
    text = read_user_text(path, what="Dockerfile", limit=MAX_DOCKERFILE_BYTES,
                          missing_hint="check the entry's dockerfile and context", error=UserError)
    return parse_dockerfile(text, str(path))


@functools.lru_cache(maxsize=64)
def parse_dockerfile(text: str, source: str) -> Dockerfile:
    """Parse Dockerfile text with BuildKit's parser and check the stage structure.

    Pure, and cached (the result is immutable): planning 457 legs of a handful of Dockerfiles
    parses each once.

    Refused (as :class:`UserError` "<source> line N: ...; fix ..."): a syntax error, no FROM,
    an unknown instruction, an instruction other than ARG before the first FROM, a malformed
    FROM or stage name, a duplicate stage name (BuildKit only warns; later references would be
    ambiguous), ``COPY --from`` / ``--mount=from=`` with a variable or an out-of-range index.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    directives, directive_lines = _parse_directives(text, source)
    try:
        commands = parse_string(text)
    except ParseError as exc:
        message = str(exc)
        if message == "file with no instructions":
            raise UserError(f"{source}: no instructions (the file is empty or only comments); "
                            f"a Dockerfile needs at least one FROM") from exc
        raise UserError(f"{source} line {exc.line}: {message}; fix the instruction that starts on or "
                        f"before that line (BuildKit's Dockerfile parser refused it)") from exc

    preamble: list[Instruction] = []
    global_args: list[tuple[str, str | None]] = []
    stages: list[tuple[Instruction, list[Instruction]]] = []
    for cmd in commands:
        ins = _instruction(cmd)
        if not ins.keyword:  # a line continuation with nothing after it, e.g. a lone '\'
            raise UserError(f"{source} line {ins.line}: an instruction with no keyword (a line continuation "
                            f"that continues into nothing but blank lines, comments or the end of the file); "
                            f"remove the escape character that ends line {ins.line}")
        if ins.keyword not in KEYWORDS:
            close = difflib.get_close_matches(ins.keyword, KEYWORDS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known instructions: {', '.join(KEYWORDS)}"
            raise UserError(f"{source} line {ins.line}: unknown instruction {cmd.cmd}; {hint}")
        if ins.keyword == "FROM":
            stages.append((ins, []))
        elif not stages:
            if ins.keyword != "ARG":
                raise UserError(
                    f"{source} line {ins.line}: {ins.keyword} before the first FROM; only ARG may come "
                    f"before FROM; move it into a stage (after a FROM line)")
            global_args.extend(_arg_pairs(ins, source))
            preamble.append(ins)
        else:
            stages[-1][1].append(ins)
    if not stages:
        raise UserError(f"{source}: no FROM instruction; a Dockerfile needs at least one stage "
                        f"(FROM image [AS name])")

    built: list[Stage] = []
    seen: dict[str, int] = {}
    for index, (frm, body) in enumerate(stages):
        stage = _stage(index, frm, body, source)
        if stage.name:
            if stage.name in seen:
                raise UserError(
                    f"{source} line {stage.line}: duplicate stage name {stage.name!r} (first defined on "
                    f"line {seen[stage.name]}); rename one of them so FROM and COPY --from are unambiguous")
            seen[stage.name] = stage.line
        built.append(stage)
    for stage in built:
        for ins in stage.instructions:
            _check_instruction(ins, len(built), source)
    return Dockerfile(source=source, directives=directives, global_args=tuple(global_args),
                      stages=tuple(built), preamble=tuple(preamble), directive_lines=directive_lines)


def _parse_directives(text: str, source: str) -> tuple[tuple[tuple[str, str], ...], tuple[int, ...]]:
    """Leading ``# key=value`` parser directives (parser/directives.go): they end at the first
    line that is not one (a blank line, another comment, an instruction); ``#!`` is skipped."""
    found: list[tuple[str, str]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if number == 1 and line.startswith("#!"):
            continue
        if not line.startswith("#"):
            break
        m = _DIRECTIVE_RE.match(line[1:].lstrip())
        if not m or m[1].lower() not in DIRECTIVES:
            break
        key = m[1].lower()
        if any(k == key for k, _ in found):
            raise UserError(f"{source} line {number}: a second {key} parser directive; only one "
                            f"'# {key}=' line may be used, delete this one")
        found.append((key, m[2]))
        lines.append(number)
    return tuple(found), tuple(lines)


def _instruction(cmd: Command) -> Instruction:
    flags = []
    for raw in cmd.flags:
        name, _, value = raw.removeprefix("--").partition("=")
        flags.append((name.lower(), value))
    args = tuple(cmd.value)
    if cmd.sub_cmd:  # ONBUILD RUN ...: keep the inner keyword (the parser drops its flags)
        args = (cmd.sub_cmd.upper(),) + args
    return Instruction(  # the parser gives None for an empty keyword or text
        keyword=(cmd.cmd or "").upper(), flags=tuple(flags), args=args, json=bool(cmd.json),
        line=cmd.start_line, end_line=cmd.end_line,
        heredocs=tuple(h.name for h in cmd.heredocs), original=cmd.original or "")


def _arg_pairs(ins: Instruction, source: str) -> list[tuple[str, str | None]]:
    """``ARG A=1 B`` -> [("A", "1"), ("B", None)]; values raw (instructions/parse.go parseArg)."""
    if not ins.args:
        raise UserError(f"{source} line {ins.line}: ARG without a name; write ARG NAME or ARG NAME=default")
    pairs: list[tuple[str, str | None]] = []
    for word in ins.args:
        if "=" in word:
            key, value = word.split("=", 1)
            if not key:
                raise UserError(f"{source} line {ins.line}: ARG {word!r} has no name before '='; "
                                f"write ARG NAME=value")
            pairs.append((key, value))
        else:
            pairs.append((word, None))
    return pairs


def _stage(index: int, frm: Instruction, body: list[Instruction], source: str) -> Stage:
    unknown = [k for k, _ in frm.flags if k != "platform"]
    if unknown:
        raise UserError(f"{source} line {frm.line}: FROM has an unknown flag --{unknown[0]}; "
                        f"FROM accepts only --platform=os/arch")
    args = frm.args
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME_RE.match(name):
            raise UserError(
                f"{source} line {frm.line}: invalid stage name {args[2]!r}; a stage name starts with a "
                f"letter and has only letters, digits, '-', '_' and '.'")
    elif len(args) != 1:
        raise UserError(f"{source} line {frm.line}: FROM needs one image, optionally followed by "
                        f"'AS name' (found {len(args)} words: {' '.join(args) or 'none'}); fix the FROM line")
    return Stage(index=index, base=args[0], name=name, platform=frm.flag("platform") or "",
                 line=frm.line, instructions=tuple(body))


def _check_instruction(ins: Instruction, n_stages: int, source: str) -> None:
    """Static checks BuildKit makes on every stage, reachable or not (instructions.Parse,
    dockerfile2llb toCommand)."""
    if ins.keyword == "ARG":
        _arg_pairs(ins, source)
    elif ins.keyword == "COPY":
        if len(ins.args) < 2:
            raise UserError(f"{source} line {ins.line}: COPY needs at least one source and a destination")
        ref = ins.flag("from")
        if ref is not None:
            if ref and expand(ref, {}) != ref:
                raise UserError(
                    f"{source} line {ins.line}: COPY --from={ref!r}: variable expansion (and quoting) is not "
                    f"supported in --from; define a stage 'FROM ${{VAR}} AS name' using a global ARG and "
                    f"COPY --from=name")
            if ref.isdecimal() and int(ref) >= n_stages:
                raise UserError(f"{source} line {ins.line}: COPY --from={ref}: there is no stage {ref} "
                                f"(stages are numbered 0 to {n_stages - 1})")
    elif ins.keyword == "ADD" and len(ins.args) < 2:
        raise UserError(f"{source} line {ins.line}: ADD needs at least one source and a destination")
    elif ins.keyword == "RUN":
        for spec in ins.flag_values("mount"):
            ref = _mount_fields(spec, source, ins.line).get("from", "")
            i = ref.find("$")
            if i != -1 and i != len(ref) - 1:
                raise UserError(
                    f"{source} line {ins.line}: RUN --mount=...,from={ref}: 'from' does not support variable "
                    f"expansion; define a stage 'FROM ${{VAR}} AS name' and mount from=name")


def _mount_fields(spec: str, source: str, line: int) -> dict[str, str]:
    """The key=value fields of a --mount value (CSV, like BuildKit); bare words map to ''."""
    try:
        rows = list(csv.reader([spec], skipinitialspace=False, strict=True))
    except csv.Error as exc:
        raise UserError(f"{source} line {line}: --mount={spec}: not valid CSV ({exc}); "
                        f"write --mount=type=bind,source=path,target=/path") from exc
    fields: dict[str, str] = {}
    for item in rows[0] if rows else []:
        key, _, value = item.partition("=")
        key = key.strip().lower()
        fields[{"src": "source", "dst": "target", "destination": "target"}.get(key, key)] = value
    return fields
