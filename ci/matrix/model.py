"""The backend build matrix (LocalAI format): loading, validation and the typed model (pure).

A matrix file has ``include:`` (Linux entries, one build leg each, kebab-case keys)
and optionally ``includeDarwin:`` (macOS entries: never built here; each is one leg another tool
builds on a macOS runner -- ``darwin/arm64`` unless the entry names ``platforms`` -- published from
its image archive with ``--from-oci`` and merged like any leg: :attr:`Matrix.darwin_legs`). Loading
is safe (no Python tags, no aliases, bounded size) and every error names the file,
the line, the entry's tag-suffix and the field.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..errors import MatrixError, UserError
from ..oci.platforms import Platform, parse_platform, platform_tag
from ..textfile import read_user_text
from .naming import Family, LegKey, check_platform_tag, check_suffix, normalize_suffix

MAX_MATRIX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 16  # a matrix is a mapping of lists of flat mappings: 3 levels; deeper is hostile input
TAG_LATEST_VALUES = ("auto", "true", "false")

# kebab-case key -> attribute name
_COMMON_REQUIRED = (
    "build-type", "platforms", "tag-latest", "tag-suffix", "runs-on", "base-image",
    "dockerfile", "context",
)
_BACKEND_REQUIRED = _COMMON_REQUIRED + (
    "cuda-major-version", "cuda-minor-version", "skip-drivers", "backend", "ubuntu-version",
)
_BACKEND_OPTIONAL = ("platform-tag", "builder-base-image", "amdgpu-targets")
_SERVER_OPTIONAL = _BACKEND_OPTIONAL + (
    "cuda-major-version", "cuda-minor-version", "skip-drivers", "backend", "ubuntu-version",
    "makeflags", "ubuntu-codename",
)
TOP_LEVEL_KEYS = ("include", "includeDarwin")
# where each family's matrix lives in a repository (relative to its root)
DARWIN_PLATFORM = "darwin/arm64"  # LocalAI's macOS runners (macos-latest: Apple Silicon)
DARWIN_RUNNER = "macos-latest"


def required_keys(family: Family) -> tuple[str, ...]:
    return _BACKEND_REQUIRED if family is Family.BACKENDS else _COMMON_REQUIRED


def known_keys(family: Family) -> tuple[str, ...]:
    opt = _BACKEND_OPTIONAL if family is Family.BACKENDS else _SERVER_OPTIONAL
    return tuple(dict.fromkeys(required_keys(family) + opt))


@dataclass(frozen=True)
class Entry:
    """One ``include:`` entry = one build leg."""

    family: Family
    tag_suffix: str
    platforms: tuple[Platform, ...]
    tag_latest: str
    runs_on: str
    base_image: str
    dockerfile: str
    context: str
    build_type: str = ""
    cuda_major_version: str = ""
    cuda_minor_version: str = ""
    skip_drivers: str = ""
    backend: str = ""
    ubuntu_version: str = ""
    platform_tag_field: str = ""  # as written; empty when absent
    builder_base_image: str = ""
    amdgpu_targets: str = ""
    makeflags: str = ""
    ubuntu_codename: str = ""
    source: str = ""
    line: int = 0  # 1-based line of the entry's first key
    end_line: int = 0  # 1-based line of the entry's last value
    raw: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # kebab key -> value, file order

    @property
    def multi_platform(self) -> bool:
        return len(self.platforms) > 1

    @property
    def platform(self) -> Platform:
        """The single platform of a per-arch leg (the first one for a multi-platform entry)."""
        return self.platforms[0]

    @property
    def ptag(self) -> str:
        """Platform tag: ``platform-tag`` when given, else derived from ``platforms``."""
        if self.platform_tag_field:
            return self.platform_tag_field
        return "-".join(platform_tag(p) for p in self.platforms)

    @property
    def key(self) -> LegKey:
        return LegKey(self.family, self.tag_suffix, self.ptag)

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"

    def label(self) -> str:
        return f"tag-suffix {self.tag_suffix!r}" + (f" platform-tag {self.ptag!r}")

    def get(self, kebab: str) -> str:
        """A field's value by its kebab-case key ('' when absent)."""
        for k, v in self.raw:
            if k == kebab:
                return v
        return ""

    def build_args(self) -> dict[str, str]:
        """Docker build args, as LocalAI's workflows pass them."""
        args = {
            "BUILD_TYPE": self.build_type,
            "SKIP_DRIVERS": self.skip_drivers or "false",
            "CUDA_MAJOR_VERSION": self.cuda_major_version,
            "CUDA_MINOR_VERSION": self.cuda_minor_version,
            "BASE_IMAGE": self.base_image,
            "UBUNTU_VERSION": self.ubuntu_version,
        }
        if self.family is Family.BACKENDS or self.backend:
            args["BACKEND"] = self.backend
        if self.amdgpu_targets:
            args["AMDGPU_TARGETS"] = self.amdgpu_targets
        if self.builder_base_image:
            args["BUILDER_BASE_IMAGE"] = self.builder_base_image
        if self.family is Family.BACKENDS:
            # LocalAI's backend_build.yml: the prebuilt builder stage when a builder base image is given
            args["BUILDER_TARGET"] = "builder-prebuilt" if self.builder_base_image else "builder-fromsource"
        if self.family is Family.SERVER:
            if self.makeflags:
                args["MAKEFLAGS"] = self.makeflags
            if self.ubuntu_codename:
                args["UBUNTU_CODENAME"] = self.ubuntu_codename
        return args


@dataclass(frozen=True)
class Matrix:
    path: str
    family: Family
    entries: tuple[Entry, ...]
    darwin: tuple[dict[str, str], ...] = ()
    darwin_lines: tuple[int, ...] = ()  # the line of each includeDarwin entry (same order)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def suffixes(self) -> list[str]:
        """Tag-suffixes in file order, each once."""
        return list(dict.fromkeys(e.tag_suffix for e in self.entries))

    @cached_property
    def _by_suffix(self) -> dict[str, list[Entry]]:
        """The legs of each tag-suffix, in file order: built once, so a lookup per suffix stays linear overall
        (a merge --all of thousands of suffixes looked every one up in the whole matrix)."""
        out: dict[str, list[Entry]] = {}
        for e in self.entries:
            out.setdefault(e.tag_suffix, []).append(e)
        return out

    def legs_of(self, suffix: str) -> list[Entry]:
        """The legs of a tag-suffix: its ``include:`` entries, else its ``includeDarwin:`` one."""
        return list(self._by_suffix.get(suffix, ()) or self._darwin_by_suffix.get(suffix, ()))

    @cached_property
    def darwin_legs(self) -> tuple[Entry, ...]:
        """Each ``includeDarwin:`` entry as a leg (built elsewhere, published with ``--from-oci``): platform
        ``darwin/arm64`` unless the entry names ``platforms``, no Dockerfile; MatrixError naming the line
        of an entry whose tag-suffix or platform is not one a leg can have."""
        return tuple(_darwin_leg(self, d, self.darwin_lines[i] if i < len(self.darwin_lines) else 0)
                     for i, d in enumerate(self.darwin))

    @cached_property
    def _darwin_by_suffix(self) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = {}
        for e in self.darwin_legs:
            out.setdefault(e.tag_suffix, []).append(e)
        return out

    def find(self, suffix: str, ptag: str) -> Entry | None:
        return next((e for e in self._by_suffix.get(suffix, ()) if e.ptag == ptag), None)


def _darwin_leg(matrix: Matrix, d: dict[str, str], line: int) -> Entry:
    suffix = d.get("tag-suffix", "")
    where = f"{matrix.path} line {line} (includeDarwin)"
    try:
        check_suffix(suffix, matrix.family)
        plat = parse_platform(d.get("platforms") or DARWIN_PLATFORM)
        check_platform_tag(d.get("platform-tag") or platform_tag(plat))
    except ValueError as exc:
        raise MatrixError(f"{where}: tag-suffix {suffix!r}: {exc}") from exc
    latest = d.get("tag-latest") or "auto"
    if latest not in TAG_LATEST_VALUES:
        raise MatrixError(f"{where}: tag-suffix {suffix!r}: field 'tag-latest': {latest!r} is not one of "
                          f"{', '.join(TAG_LATEST_VALUES)}")
    return Entry(family=matrix.family, tag_suffix=suffix, platforms=(plat,), tag_latest=latest,
                 runs_on=d.get("runs-on") or DARWIN_RUNNER, base_image="", dockerfile="", context="",
                 build_type=d.get("build-type", ""), backend=d.get("backend", ""),
                 platform_tag_field=d.get("platform-tag", ""), source=matrix.path, line=line, end_line=line,
                 raw=tuple(d.items()))


# ---- the one leg a command names --------------------------------------------------------------
def _leg_list(entries: list[Entry]) -> str:
    return ", ".join(f"{e.tag_suffix or repr('')} {e.ptag}" + (f" ({e.backend})" if e.backend else "")
                     for e in entries)


def resolve_leg(matrix: Matrix, suffix: str | None, ptag: str | None, backend: str | None = None, *,
                darwin: bool = False) -> Entry:
    """The one leg named by ``--tag-suffix``/``--platform-tag``/``--backend``; UserError listing candidates.
    ``darwin``: the ``includeDarwin:`` legs are candidates too (publishing a leg built elsewhere)."""
    if suffix is None and not backend:
        raise UserError("give --tag-suffix (and --platform-tag), or --backend NAME; "
                        f"legs in {matrix.path}: {_leg_list(list(matrix))}")
    if suffix is not None:
        suffix = normalize_suffix(matrix.family, suffix)  # the artifact spelling of the core image is accepted too
    cands = list(matrix) + (list(matrix.darwin_legs) if darwin else [])
    if suffix is not None:
        cands = [e for e in cands if e.tag_suffix == suffix]
        if not cands and not darwin and any(d.get("tag-suffix") == suffix for d in matrix.darwin):
            raise UserError(f"tag-suffix {suffix!r} is an includeDarwin entry of {matrix.path}: it is built on a "
                            "macOS runner, not here; publish the image archive that build wrote with --from-oci PATH")
        if not cands:
            close = difflib.get_close_matches(suffix, matrix.suffixes(), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UserError(f"no leg with tag-suffix {suffix!r} in {matrix.path}{hint} "
                            f"(tag-suffixes: {', '.join(repr(s) for s in matrix.suffixes())})")
    if backend:
        named = [e for e in cands if e.backend == backend]
        if not named:
            known = sorted({e.backend for e in matrix if e.backend})
            close = difflib.get_close_matches(backend, known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"no leg{'' if suffix is None else f' of tag-suffix {suffix!r}'} builds backend "
                            f"{backend!r} in {matrix.path}{hint} (backends: {', '.join(known) or 'none'})")
        cands = named
    if ptag is not None:
        found = [e for e in cands if e.ptag == ptag]
        if not found:
            ptags = [e.ptag for e in cands]
            close = difflib.get_close_matches(ptag, ptags, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"no leg with platform-tag {ptag!r} among {_leg_list(cands)} in {matrix.path}{hint}")
        cands = found
    if len(cands) > 1:
        raise UserError(f"{len(cands)} legs match ({_leg_list(cands)}) in {matrix.path}; add --platform-tag "
                        f"{' or --platform-tag '.join(dict.fromkeys(e.ptag for e in cands))}"
                        + ("" if suffix is not None else " and/or --tag-suffix"))
    return cands[0]


# ---- rules on one suffix's legs (one home: the merge, matrix.github and the lint use them) ------
def tag_latest_dissenters(legs: Sequence[Entry]) -> list[Entry]:
    """The legs of one suffix whose ``tag-latest`` differs from the first leg's (empty: they agree)."""
    return [e for e in legs[1:] if e.tag_latest != legs[0].tag_latest]


def agreed_tag_latest(legs: Sequence[Entry], label: str) -> str:
    """The one ``tag-latest`` of a suffix's legs (``label`` names the suffix); MatrixError (exit 2)
    naming every leg's value when they disagree: the merge publishes one list, with one latest policy."""
    if tag_latest_dissenters(legs):
        detail = ", ".join(f"{e.ptag} (line {e.line}) says {e.tag_latest!r}" for e in legs)
        raise MatrixError(f"{legs[0].source}: the legs of {label} disagree on tag-latest: {detail}; set the same "
                          "tag-latest on every leg of the suffix (the merge publishes one list)")
    return legs[0].tag_latest


# ---------------------------------------------------------------------------------------------
class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (YAML bombs) and Python tags."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed here; write the values out", ev.start_mark)
        ev = self.peek_event()
        anchor = getattr(ev, "anchor", None)
        if anchor:
            raise yaml.constructor.ConstructorError(
                None, None, "anchors (&name) are not allowed here; write the values out", ev.start_mark)
        return super().compose_node(parent, index)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return "" if node.tag == "tag:yaml.org,2002:null" else str(node.value)
    return None


def _compose_libyaml(text: str) -> tuple[bool, yaml.Node | None]:
    """(True, node) via libyaml (~5x faster) when the text has no anchor, alias or YAML error;
    (False, None) otherwise, so the pure-Python path below reports the problem. [issue 5 addition]"""
    if not getattr(yaml, "__with_libyaml__", False):
        return False, None
    try:
        for ev in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
                return False, None
        loader = yaml.CSafeLoader(text)
        try:
            return True, loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return False, None


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before composing (the composer recurses per level).

    Parsing events is iterative, so this walk cannot overflow the stack; YAML errors are left to
    the composer below, which reports them with their line.
    """
    loaders: list[Any] = [yaml.SafeLoader]
    if getattr(yaml, "__with_libyaml__", False):
        loaders.insert(0, yaml.CSafeLoader)  # fast; some libyaml builds stop at their own depth limit
    for loader in loaders:
        depth = 0
        try:
            for ev in yaml.parse(text, Loader=loader):
                if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                    depth += 1
                    if depth > MAX_DEPTH:
                        line = ev.start_mark.line + 1 if ev.start_mark else 1
                        raise MatrixError(
                            f"{source} line {line}: nested deeper than {MAX_DEPTH} levels; a matrix "
                            "is 'include:' with a list of flat key: value entries")
                elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                    depth -= 1
            return
        except yaml.YAMLError:
            continue  # libyaml refused it: walk again with the pure-Python parser (iterative, no limit)


def compose_yaml(text: str, source: str) -> yaml.Node | None:
    """Compose ``text`` into a node tree safely; MatrixError on any YAML problem."""
    _check_depth(text, source)
    done, fast = _compose_libyaml(text)
    if done:
        return fast
    try:
        loader = _NoAliasLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except RecursionError:  # pragma: no cover - _check_depth refuses such input first
        # from None, not from the RecursionError: its traceback is the parser's ~1000 frames, no cause
        # to show; the message says what is wrong with the input
        raise MatrixError(f"{source}: nested too deeply to load; a matrix is a list of flat entries") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source} line {mark.line + 1}" if mark else source
        raise MatrixError(f"{where}: not valid YAML: {exc.problem or exc}; fix the syntax and retry") from exc
    except yaml.YAMLError as exc:
        raise MatrixError(f"{source}: not valid YAML: {exc}") from exc
    return node


def _count_nodes(node: yaml.Node, limit: int) -> int:
    n, stack = 0, [node]
    while stack:
        cur = stack.pop()
        n += 1
        if n > limit:
            break
        if isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                stack.extend((k, v))
        elif isinstance(cur, yaml.SequenceNode):
            stack.extend(cur.value)
    return n


def read_matrix_text(path: str | Path) -> str:
    return read_user_text(path, what="matrix file", limit=MAX_MATRIX_BYTES, missing_hint="pass --matrix PATH",
                          not_a_file_hint="pass --matrix PATH to a YAML file", error=MatrixError)


def load_matrix(path: str | Path, family: Family = Family.BACKENDS) -> Matrix:
    """Read and validate a matrix file."""
    return parse_matrix(read_matrix_text(path), str(path), family)


def parse_matrix(text: str, source: str = "<matrix>", family: Family = Family.BACKENDS) -> Matrix:
    """Validate matrix text into a :class:`Matrix`; MatrixError names file/line/suffix/field."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MATRIX_BYTES:
        raise MatrixError(f"{source}: larger than the {MAX_MATRIX_BYTES} byte limit for a matrix file")
    root = compose_yaml(text, source)
    if root is None:
        raise MatrixError(f"{source}: the file is empty; a matrix needs an 'include:' list of entries")
    if _count_nodes(root, MAX_NODES) > MAX_NODES:
        raise MatrixError(f"{source}: more than {MAX_NODES} YAML nodes; refusing to load such a matrix")
    if not isinstance(root, yaml.MappingNode):
        raise MatrixError(f"{source} line {_line(root)}: the top level must be a mapping with an 'include:' list")
    top: dict[str, yaml.Node] = {}
    for knode, vnode in root.value:
        key = _scalar(knode)
        if key is None:
            raise MatrixError(f"{source} line {_line(knode)}: top-level keys must be plain strings")
        if key in top:
            raise MatrixError(f"{source} line {_line(knode)}: top-level key {key!r} appears twice")
        if key not in TOP_LEVEL_KEYS:
            raise MatrixError(
                f"{source} line {_line(knode)}: unknown top-level key {key!r}{_did_you_mean(key, TOP_LEVEL_KEYS)}"
                f" (allowed: {', '.join(TOP_LEVEL_KEYS)})")
        top[key] = vnode
    if "include" not in top:
        raise MatrixError(f"{source}: no 'include:' list; a matrix needs 'include:' with one entry per build leg")
    inc = top["include"]
    if not isinstance(inc, yaml.SequenceNode):
        raise MatrixError(f"{source} line {_line(inc)}: 'include:' must be a list of entries (lines starting with '- ')")
    entries = tuple(_entry(n, i, source, family) for i, n in enumerate(inc.value))
    _check_duplicates(entries)
    darwin: list[dict[str, str]] = []
    darwin_lines: list[int] = []
    if "includeDarwin" in top:
        dnode = top["includeDarwin"]
        if not isinstance(dnode, yaml.SequenceNode):
            raise MatrixError(f"{source} line {_line(dnode)}: 'includeDarwin:' must be a list of entries")
        for n in dnode.value:
            if not isinstance(n, yaml.MappingNode):
                raise MatrixError(f"{source} line {_line(n)}: each includeDarwin entry must be a mapping")
            d: dict[str, str] = {}
            for k, v in n.value:
                ks, vs = _scalar(k), _scalar(v)
                if ks is None or vs is None:
                    raise MatrixError(f"{source} line {_line(k)}: includeDarwin values must be plain strings")
                d[ks] = vs
            darwin.append(d)
            darwin_lines.append(_line(n))
    return Matrix(path=source, family=family, entries=entries, darwin=tuple(darwin), darwin_lines=tuple(darwin_lines))


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _entry(node: yaml.Node, index: int, source: str, family: Family) -> Entry:
    if not isinstance(node, yaml.MappingNode):
        raise MatrixError(
            f"{source} line {_line(node)}: include entry #{index + 1} is not a mapping "
            "(expected '- key: value' lines)")
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    raw: list[tuple[str, str]] = []
    suffix_hint = ""
    for k, v in node.value:
        if _scalar(k) == "tag-suffix" and _scalar(v) is not None:
            suffix_hint = _scalar(v) or ""
    who = f"entry tag-suffix {suffix_hint!r}" if suffix_hint else f"include entry #{index + 1}"
    known = known_keys(family)
    for k, v in node.value:
        key = _scalar(k)
        if key is None:
            raise MatrixError(f"{source} line {_line(k)}: {who}: keys must be plain strings")
        if key in values:
            raise MatrixError(f"{source} line {_line(k)}: {who}: field {key!r} appears twice; keep one")
        if key not in known:
            raise MatrixError(
                f"{source} line {_line(k)}: {who}: unknown field {key!r}{_did_you_mean(key, known)}")
        val = _scalar(v)
        if val is None:
            kind = "a list" if isinstance(v, yaml.SequenceNode) else "a mapping"
            raise MatrixError(
                f"{source} line {_line(v)}: {who}: field {key!r} must be a string, not {kind}")
        if any(ord(c) < 32 for c in val) or len(val) > 1024:
            raise MatrixError(
                f"{source} line {_line(v)}: {who}: field {key!r} has control characters or is over 1024 characters")
        values[key] = val
        lines[key] = _line(k)
        raw.append((key, val))
    start = _line(node)
    for req in required_keys(family):
        if req not in values:
            raise MatrixError(
                f"{source} line {start}: {who}: missing required field {req!r}; add '{req}: ...' to the entry")

    def fail(key: str, msg: str) -> MatrixError:
        return MatrixError(f"{source} line {lines.get(key, start)}: {who}: field {key!r}: {msg}")

    try:
        check_suffix(values["tag-suffix"], family)
    except ValueError as exc:
        raise fail("tag-suffix", str(exc)) from exc
    plats: list[Platform] = []
    for part in values["platforms"].split(","):
        try:
            plats.append(parse_platform(part))
        except ValueError as exc:
            raise fail("platforms", str(exc)) from exc
    for plat in plats:
        if plat.os != "linux":
            raise fail("platforms", f"{str(plat)!r} has os {plat.os!r}; include: entries build Linux images "
                                    "(macOS entries go under includeDarwin:)")
    if len(set(plats)) != len(plats):
        raise fail("platforms", f"{values['platforms']!r} lists a platform twice")
    ptag_field = values.get("platform-tag", "")
    if "platform-tag" in values:
        try:
            check_platform_tag(ptag_field)
        except ValueError as exc:
            raise fail("platform-tag", str(exc)) from exc
        if len(plats) == 1 and ptag_field != platform_tag(plats[0]):
            raise fail("platform-tag",
                       f"{ptag_field!r} does not match platforms {values['platforms']!r}; "
                       f"use {platform_tag(plats[0])!r}")
    else:  # the derived platform tag ends up in artifact names and tags too
        try:
            check_platform_tag("-".join(platform_tag(p) for p in plats))
        except ValueError as exc:
            raise fail("platforms", f"{exc}; give the entry one platform (invoke matrix.split) or a platform-tag") from exc
    if values["tag-latest"] not in TAG_LATEST_VALUES:
        raise fail("tag-latest", f"{values['tag-latest']!r} is not one of {', '.join(TAG_LATEST_VALUES)}")
    for key in ("runs-on", "dockerfile", "context", "base-image"):
        if not values[key].strip():
            raise fail(key, "must not be empty")
    for key in ("dockerfile", "context"):
        if values[key].startswith("/") or ".." in Path(values[key]).parts:
            raise fail(key, f"{values[key]!r} must be a relative path inside the repository")
    # the mapping's own end mark sits at the next token (after comments and blank lines),
    # so the entry ends where its last value ends (column 0 = a block scalar's final newline)
    last = node.value[-1][1] if node.value else node
    end = max(start, last.end_mark.line + (0 if last.end_mark.column == 0 else 1))
    return Entry(
        family=family,
        tag_suffix=values["tag-suffix"],
        platforms=tuple(plats),
        tag_latest=values["tag-latest"],
        runs_on=values["runs-on"],
        base_image=values["base-image"],
        dockerfile=values["dockerfile"],
        context=values["context"],
        build_type=values.get("build-type", ""),
        cuda_major_version=values.get("cuda-major-version", ""),
        cuda_minor_version=values.get("cuda-minor-version", ""),
        skip_drivers=values.get("skip-drivers", ""),
        backend=values.get("backend", ""),
        ubuntu_version=values.get("ubuntu-version", ""),
        platform_tag_field=ptag_field,
        builder_base_image=values.get("builder-base-image", ""),
        amdgpu_targets=values.get("amdgpu-targets", ""),
        makeflags=values.get("makeflags", ""),
        ubuntu_codename=values.get("ubuntu-codename", ""),
        source=source,
        line=start,
        end_line=end,
        raw=tuple(raw),
    )


def _check_duplicates(entries: tuple[Entry, ...]) -> None:
    seen: dict[tuple[str, str], Entry] = {}
    for e in entries:
        k = (e.tag_suffix, e.ptag)
        if k in seen:
            first = seen[k]
            raise MatrixError(
                f"{e.source} line {e.line}: entry tag-suffix {e.tag_suffix!r}: duplicate leg "
                f"(tag-suffix {e.tag_suffix!r}, platform-tag {e.ptag!r}) already defined at line {first.line}; "
                "remove one or give them different platforms")
        seen[k] = e
