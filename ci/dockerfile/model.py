"""Dockerfiles: the parsed model, ARG expansion, stage resolution and engine features (pure).

Parsing is BuildKit's own parser, ported to Python in :mod:`localai_ci.dockerfile.syntax` (the same
commands and messages as BuildKit's Go parser, plus the line of each error). This module adds
what BuildKit's ``dockerfile2llb`` does on top of that parser, for the questions this project
asks before it builds anything:

* :func:`parse_dockerfile` -> :class:`Dockerfile`: parser directives, the global ARGs and the
  stages, with errors that name the file and line;
* :func:`expand`: BuildKit's shell lexer for ``$VAR``, ``${VAR}``, ``${VAR:-word}`` and friends;
* :func:`resolve` -> :class:`Resolved`: with build args and platforms, which stages the target
  reaches, their expanded base images and platforms, the build-context paths they read, the
  external images they pull, and which stages run under emulation on a given host;
* :func:`features` / :func:`check_engine`: what a Dockerfile uses that an old engine (or the
  classic builder) cannot build, and one actionable message when the engine is too old.

Semantics follow moby/buildkit ``frontend/dockerfile`` (``dockerfile2llb/convert.go``,
``instructions/parse.go``, ``shell/lex.go``); where this module is stricter (a duplicate stage
name is an error here, a lint warning there) the docstring says so.
"""
from __future__ import annotations

import csv
import difflib
import functools
import heapq
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import UserError
from ..oci.platforms import Arch, Platform, parse_platform
from ..textfile import read_user_text
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
# Build args BuildKit consumes without an ARG line (proxies, frontend switches, reproducibility).
_IMPLICIT_BUILD_ARGS = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY", "SOURCE_DATE_EPOCH"}
    | {n.lower() for n in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")}
)
SCRATCH = "scratch"

_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9-_.]*$")
_DIRECTIVE_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC_WORD_RE = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_REMOTE_PREFIXES = ("http://", "https://", "git://", "git@", "ssh://")
_ENGINE_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
_UPGRADE = "upgrade the engine (Debian 13's docker.io, Docker CE, Docker Desktop)"

SourceKind = Literal["copy", "add", "bind"]


# --------------------------------------------------------------------------- model


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


@dataclass(frozen=True)
class Feature:
    """A Dockerfile feature an older engine or the classic builder cannot build."""

    name: str  # "heredoc", "RUN --mount", "ADD --checksum", ...
    line: int
    min_engine: tuple[int, int]  # first Docker Engine release that builds it by default
    hint: str  # what it is, in the words of the error message


# --------------------------------------------------------------------------- parsing


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


# --------------------------------------------------------------------------- expansion


def expand(word: str, env: Mapping[str, str | None], *, escape: str = "\\") -> str:
    """Expand one word as BuildKit's shell lexer does (``shell.Lex.ProcessWord``).

    ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``,
    ``${VAR:?msg}``, ``${VAR#pat}``/``##``/``%``/``%%`` and ``${VAR/pat/repl}``; single and double
    quotes are removed (single quotes keep ``$`` literal); ``\\$`` is a literal dollar. An unset
    name, or one mapped to None (declared without a value), expands to ''.
    Raises ValueError on a syntax error (``${``, ``${}``, an unterminated quote).
    """
    if "$" not in word and "'" not in word and '"' not in word and escape not in word:
        return word  # nothing to expand or unquote
    return _Lexer(word, env, escape).word()


class _Lexer:
    """A port of moby/buildkit frontend/dockerfile/shell/lex.go (ProcessWord only)."""

    def __init__(self, text: str, env: Mapping[str, str | None], escape: str) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1 if ch else 0
        return ch

    def word(self) -> str:
        try:
            return self.until("", raw_escapes=False)
        except ValueError as exc:
            raise ValueError(f"failed to process {self.s!r}: {exc}") from exc

    def until(self, stop: str, *, raw_escapes: bool) -> str:
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == "'":
                out.append(self.single_quote())
            elif ch == '"':
                out.append(self.double_quote())
            else:
                ch = self.next()
                if ch == self.escape:
                    if raw_escapes:
                        out.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                out.append(ch)
        if stop:
            raise ValueError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def single_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise ValueError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ValueError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                nxt = self.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def lookup(self, name: str) -> tuple[str, bool]:
        value = self.env.get(name)
        return ("", False) if value is None else (value, True)

    def name(self) -> str:
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if not out and ch.isdecimal():
                while self.peek().isdecimal():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in "@*#?-$!0":
                return self.next()
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def dollar(self) -> str:
        self.next()  # $
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()  # {
        if not self.peek():
            raise ValueError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ValueError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if not ch:
            raise ValueError("syntax error: missing '}'")
        if ch == "}":
            return self.lookup(name)[0]
        mod = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            mod += ch
        if ch and ch in "+-?#%":
            raw = ch in "#%"
            if null_is_unset and raw:
                raise ValueError(f"unsupported modifier ({mod}) in substitution")
            word = self.until("}", raw_escapes=raw)
            value, is_set = self.lookup(name)
            empty = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if empty:
                    what = "is not allowed to be unset" if not is_set else "is not allowed to be empty"
                    raise ValueError(f"{name}: {word or what}")
                return value
            greedy = word[:1] == ch
            pattern = word[1:] if greedy else word
            if ch == "#":
                return _trim_prefix(pattern, value, greedy)
            return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
        if ch == "/" and not null_is_unset:
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            pattern = self.until("/", raw_escapes=True)
            replacement = self.until("}", raw_escapes=True)
            value, _ = self.lookup(name)
            rx = _shell_pattern(pattern, greedy=True, anchored=False)
            return rx.sub(lambda _m: replacement, value, count=0 if replace_all else 1)
        raise ValueError(f"unsupported modifier ({mod}) in substitution")


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """``*`` and ``?`` wildcards (no brackets) as a regex (lex.go convertShellPatternToRegex)."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue
            if nxt not in ("*", "?", "\\"):
                raise ValueError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _shell_pattern(pattern, greedy=greedy, anchored=True).match(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping ``\\x`` escapes in front of their character."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


# --------------------------------------------------------------------------- resolution


def resolve(df: Dockerfile, build_args: Mapping[str, str], *, target_platform: Platform,
            build_platform: Platform, target: str | None = None) -> Resolved:
    """Apply build args and platforms as BuildKit does, for the stages ``target`` reaches.

    * Global scope (FROM lines, --platform): the automatic platform args, then each global ARG
      in order: the build arg when given, else its default expanded in the scope so far.
    * In a stage an ARG is visible after its ARG line: the build arg, else its default, else
      (``ARG NAME``) the global value, which is how ``ARG TARGETARCH`` imports the automatic
      one. ENV and ARG share one environment, later lines win; a stage built FROM another
      stage starts from that stage's environment and runs on that stage's platform.
    * The target (by name, else the last stage) reaches: its FROM when it names an earlier
      stage, ``COPY --from=`` (name or index; anything else is an image), ``RUN --mount=from=``.
    * Every stage's FROM and --platform are expanded and checked, reached or not (BuildKit does
      so too: an empty base name fails the build even in a pruned stage).
    """
    src = df.source
    escape = df.escape
    args = dict(build_args)
    if target:
        target_stage = df.stage(target)
        if target_stage is None:
            names = [s.name for s in df.stages if s.name]
            close = difflib.get_close_matches(target.lower(), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"stages: {', '.join(names) or 'none are named'}"
            raise UserError(f"{src}: no stage named {target!r} to build as the target; {hint}")
    else:
        target_stage = df.stages[-1]

    scope = _global_scope(df, args, target_platform, build_platform, target_stage, escape)

    # FROM and --platform of every stage, in file order (a FROM can only name an earlier stage)
    by_name: dict[str, int] = {}
    bases: list[str] = []
    base_index: list[int | None] = []
    own_platform: list[Platform | None] = []
    for st in df.stages:
        base = _expand_at(src, st.line, st.base, scope, escape, "the FROM image")
        if not base:
            raise UserError(
                f"{src} line {st.line}: FROM {st.base} expands to an empty image name; give the ARG a "
                f"default before the first FROM or pass it as a build arg")
        bases.append(base)
        base_index.append(None if base.lower() == SCRATCH else by_name.get(base.lower()))
        own_platform.append(_stage_platform(src, st, scope, escape))
        if st.name:
            by_name[st.name] = st.index

    # dependencies of every stage
    deps: list[list[tuple[int, int]]] = []  # (stage index, line) per stage
    refs: list[list[str]] = []  # external images per stage, in order
    for st in df.stages:
        d: list[tuple[int, int]] = []
        r: list[str] = []
        bi = base_index[st.index]
        if bi is not None:
            d.append((bi, st.line))
        elif bases[st.index].lower() != SCRATCH:
            r.append(bases[st.index])
        for ins in st.instructions:
            for ref in _stage_refs(ins, src):
                idx = int(ref) if ref.isdecimal() and ins.keyword == "COPY" else by_name.get(ref.lower())
                if idx is None:
                    r.append(ref)
                else:
                    d.append((idx, ins.line))
        deps.append(d)
        refs.append(r)

    reached = _reachable(df, target_stage.index, deps)
    order = _dependency_order(reached, deps)

    envs: dict[int, dict[str, str]] = {}
    workdirs: dict[int, str] = {}
    platforms: dict[int, Platform] = {}
    resolved: list[ResolvedStage] = []
    declared: set[str] = {name for name, _ in df.global_args}
    for idx in order:
        st = df.stages[idx]
        bi = base_index[idx]
        if bi is not None:
            env = dict(envs[bi])
            platform = platforms[bi]
            workdir = workdirs[bi]
        else:
            env = {}
            platform = own_platform[idx] or target_platform
            workdir = "/"
        copies, runs, steps, workdir = _walk_stage(src, st, env, scope, args, declared, escape, workdir)
        envs[idx] = env
        workdirs[idx] = workdir
        platforms[idx] = platform
        resolved.append(ResolvedStage(
            stage=st, base=bases[idx], base_is_stage=bi is not None, platform=platform, runs=runs,
            copies=tuple(copies), run_steps=tuple(steps),
            depends_on=tuple(dict.fromkeys(df.stages[i].label for i, _ in deps[idx]))))

    external = tuple(dict.fromkeys(ref for idx in order for ref in refs[idx]))
    unused = tuple(sorted(k for k in args if k not in declared and k not in _IMPLICIT_BUILD_ARGS
                          and k not in AUTOMATIC_ARGS and not k.startswith("BUILDKIT_")))
    return Resolved(source=src, target=target_stage.label, target_platform=target_platform,
                    build_platform=build_platform, stages=tuple(resolved), external_images=external,
                    unused_build_args=unused)


def _global_scope(df: Dockerfile, args: Mapping[str, str], target_platform: Platform,
                  build_platform: Platform, target: Stage, escape: str) -> dict[str, str]:
    """dockerfile2llb defaultArgs + buildMetaArgs: automatic args, then the global ARGs."""
    tp, bp = target_platform, build_platform
    scope: dict[str, str] = {
        "BUILDPLATFORM": str(bp), "BUILDOS": bp.os, "BUILDARCH": str(bp.arch), "BUILDVARIANT": bp.variant,
        "TARGETPLATFORM": str(tp), "TARGETOS": tp.os, "TARGETARCH": str(tp.arch), "TARGETVARIANT": tp.variant,
        "TARGETSTAGE": target.name or "default",
    }
    for name in list(scope):
        if name in args:
            scope[name] = args[name]
    for ins in df.preamble:
        for name, default in _arg_pairs(ins, df.source):
            if name in args:
                scope[name] = args[name]
            elif default is not None:
                scope[name] = _expand_at(df.source, ins.line, default, scope, escape, f"ARG {name}")
    return scope


def _stage_platform(src: str, st: Stage, scope: Mapping[str, str], escape: str) -> Platform | None:
    if not st.platform:
        return None
    value = _expand_at(src, st.line, st.platform, scope, escape, "--platform")
    if not value:
        raise UserError(f"{src} line {st.line}: FROM --platform={st.platform} expands to an empty platform; "
                        f"use a global ARG with a value or $BUILDPLATFORM / $TARGETPLATFORM")
    try:
        return parse_platform(value)
    except ValueError as exc:
        raise UserError(f"{src} line {st.line}: FROM --platform={st.platform}: {exc}") from exc


def _stage_refs(ins: Instruction, src: str) -> list[str]:
    """Names or images an instruction reads from: COPY --from, RUN --mount=...,from=."""
    if ins.keyword == "COPY":
        ref = ins.flag("from")
        return [ref] if ref else []
    if ins.keyword == "RUN":
        out = []
        for spec in ins.flag_values("mount"):
            ref = _mount_fields(spec, src, ins.line).get("from", "")
            if ref:
                out.append(ref)
        return out
    return []


def _reachable(df: Dockerfile, target: int, deps: list[list[tuple[int, int]]]) -> set[int]:
    """Stages the target needs; a dependency cycle is a UserError naming it."""
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    path: list[int] = []

    def visit(i: int) -> None:
        state[i] = 1
        path.append(i)
        for j, line in deps[i]:
            if state.get(j) == 1:
                cycle = " -> ".join(df.stages[k].label for k in path[path.index(j):] + [j])
                raise UserError(f"{df.source} line {line}: circular dependency between stages ({cycle}); "
                                f"a stage cannot use itself or a stage that uses it")
            if j not in state:
                visit(j)
        path.pop()
        state[i] = 2

    visit(target)
    return set(state)


def _dependency_order(reached: set[int], deps: list[list[tuple[int, int]]]) -> list[int]:
    """Reached stages with every stage after the ones it needs; file order where free."""
    pending = {i: {j for j, _ in deps[i]} for i in reached}
    users: dict[int, list[int]] = {i: [] for i in reached}
    for i in reached:
        for j in pending[i]:
            users[j].append(i)
    ready = [i for i in reached if not pending[i]]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            pending[u].discard(i)
            if not pending[u]:
                heapq.heappush(ready, u)
    return order


def _walk_stage(src: str, st: Stage, env: dict[str, str], scope: Mapping[str, str],
                args: Mapping[str, str], declared: set[str], escape: str,
                workdir: str = "/") -> tuple[list[Source], bool, list[RunStep], str]:
    """Dispatch a stage's ARG/ENV into ``env`` (in place); collect its build-context reads (with
    where they land), its RUN steps, and its final WORKDIR."""
    copies: list[Source] = []
    steps: list[RunStep] = []
    runs = False
    for ins in st.instructions:
        kw = ins.keyword
        if kw == "ARG":
            for name, default in _arg_pairs(ins, src):
                declared.add(name)
                value: str | None
                if name in args:
                    value = args[name]
                elif default is not None:
                    value = _expand_at(src, ins.line, default, env, escape, f"ARG {name}")
                else:
                    value = scope.get(name)
                if value is not None:
                    env[name] = value
        elif kw == "ENV":
            words = ins.args
            pairs = [(_expand_at(src, ins.line, words[i], env, escape, "ENV"),
                      _expand_at(src, ins.line, words[i + 1], env, escape, "ENV"))
                     for i in range(0, len(words) - 1, 2)]
            env.update(pairs)
        elif kw == "WORKDIR" and ins.args:
            workdir = _in_stage(workdir, _expand_at(src, ins.line, ins.args[0], env, escape, "WORKDIR"))
        elif kw in ("COPY", "ADD"):
            if kw == "COPY" and ins.flag("from"):
                continue
            dest = _in_stage(workdir, _expand_at(src, ins.line, ins.args[-1], env, escape, kw)) if ins.args else ""
            for word in ins.args[:-1]:
                if ins.heredocs and _HEREDOC_WORD_RE.match(word):
                    continue
                path = _expand_at(src, ins.line, word, env, escape, kw)
                if path.startswith(_REMOTE_PREFIXES):
                    continue
                copies.append(Source("copy" if kw == "COPY" else "add", _context_path(path), ins.line, st.label, dest))
        elif kw == "RUN":
            runs = True
            for spec in ins.flag_values("mount"):
                fields = {k: _expand_at(src, ins.line, v, env, escape, "--mount")
                          for k, v in _mount_fields(spec, src, ins.line).items()}
                if fields.get("type", "bind").lower() == "bind" and not fields.get("from"):
                    copies.append(Source("bind", _context_path(fields.get("source") or "."), ins.line, st.label,
                                         _in_stage(workdir, fields.get("target", ""))))
            steps.append(RunStep(ins.line, ins.original, tuple(env.items()), workdir))
    return copies, runs, steps, workdir


def _in_stage(workdir: str, path: str) -> str:
    """An absolute path in the stage: ``path`` as given when absolute, else below ``workdir``."""
    return posixpath.normpath(posixpath.join(workdir or "/", path)) if path else ""


def _expand_at(src: str, line: int, word: str, env: Mapping[str, str | None], escape: str, what: str) -> str:
    try:
        return expand(word, env, escape=escape)
    except ValueError as exc:
        raise UserError(f"{src} line {line}: cannot expand {what}: {exc}; fix the ${{...}} expression") from exc


def _context_path(path: str) -> str:
    """A source path relative to the context root, as BuildKit reads it: leading '/' and './'
    dropped, '..' clamped at the root, a trailing '/' kept; the root itself is '.'."""
    norm = posixpath.normpath("/" + path).lstrip("/")
    if not norm:
        return "."
    return norm + "/" if path.endswith("/") else norm


# --------------------------------------------------------------------------- features


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
