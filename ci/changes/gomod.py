"""Go modules in change detection: go.mod/go.sum, build lists, package graphs (pure).

A Go leg builds in a module (LocalAI's Go backends in the root module); its ``go.mod`` and
``go.sum`` decide which version of every other module the build compiles. Their change
selects the leg only when it changes what the leg builds with:

1. **What changed** between the two revisions: a module whose required version,
   ``replace`` or ``exclude`` changed (:func:`diff_module_files`, from the two texts), and,
   where the Go toolchain can compute them, every module whose *selected* version differs
   between the two build lists (:func:`diff_build_lists`: ``go list -m all`` of each
   revision's go.mod; this also catches a version raised by minimal version selection
   through another module's requirements). A go.sum line whose hash changed or was removed
   counts as a change of that module version; added lines change nothing. A change of the
   ``module`` path, the ``go`` or ``toolchain`` line or a ``godebug`` setting, or a go.mod
   that does not parse, changes every package of the module (``whole``).
2. **Whether the leg builds with it**: the leg's packages in the repository (the import
   graph of :mod:`ci.changes.gograph`, build constraints not evaluated) import packages of
   other modules; from those the package graph (:class:`PackageGraph`, ``go list -deps``
   per platform and cgo setting) leads to every package the leg compiles. A changed module
   one of them belongs to is one the leg builds with; :func:`reach` gives the import path
   that reaches it. A package the build generates (LocalAI's ``pkg/grpc/proto``, written by
   ``protoc``) counts with the packages its generator's output imports
   (:func:`generator_imports`); a generator this module does not know, or a package the
   toolchain cannot load, makes the leg's answer unknown, and it is selected.

The toolchain is an adapter (:mod:`ci.changes.gotool`) behind :class:`ModuleGraphs`; when
it cannot answer (no ``go``, no module proxy, a go.mod it refuses), the caller falls back
to the rule without it: every leg building in the module is selected, and says why.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .gograph import is_standard

# --- go.mod -------------------------------------------------------------------------------------

#: go.mod directives whose change changes every package of the module (the language version,
#: the toolchain that compiles it, runtime GODEBUG defaults, its own import path).
WHOLE_MODULE_DIRECTIVES = ("module", "go", "toolchain", "godebug")
#: directives that change no build: retracted versions matter to the module's users only, ``tool``
#: lines name commands for ``go tool``, ``ignore`` only narrows ``./...`` patterns.
INERT_DIRECTIVES = ("retract", "tool", "ignore")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|=>|[^\s"`]+')


class GoModError(ValueError):
    """A go.mod line this parser cannot read (the module's packages then count as changed)."""


@dataclass(frozen=True)
class GoModFile:
    """What a go.mod says about a build."""

    module: str
    directives: tuple[tuple[str, str], ...] = ()  # (verb, the rest) of the whole-module directives
    requires: Mapping[str, str] = field(default_factory=dict)  # module path -> version
    replaces: Mapping[str, str] = field(default_factory=dict)  # "path" or "path version" -> "target [version]"
    excludes: frozenset[tuple[str, str]] = frozenset()  # (module path, version)
    other: tuple[tuple[str, str], ...] = ()  # directives not known here, as written (a change is a whole change)


def _unquote(token: str) -> str:
    if token.startswith('"') and token.endswith('"') and len(token) >= 2:
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    if token.startswith("`") and token.endswith("`") and len(token) >= 2:
        return token[1:-1]
    return token


def _tokens(line: str) -> list[str]:
    """The tokens of a go.mod line, ``//`` comments left out."""
    out: list[str] = []
    for tok in _TOKEN.findall(line):
        if tok.startswith("//"):
            break
        if "//" in tok and not tok.startswith(('"', "`")):
            out.append(tok.split("//", 1)[0])
            break
        out.append(tok)
    return [t for t in out if t]


def parse_go_mod_file(text: str, source: str = "go.mod") -> GoModFile:
    """The directives of a go.mod that decide a build; GoModError (naming the line) otherwise."""
    module = ""
    directives: list[tuple[str, str]] = []
    requires: dict[str, str] = {}
    replaces: dict[str, str] = {}
    excludes: set[tuple[str, str]] = set()
    other: list[tuple[str, str]] = []
    block: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        toks = _tokens(raw)
        if not toks:
            continue
        if block is not None:
            if toks == [")"]:
                block = None
                continue
            verb, args = block, toks
        elif len(toks) == 2 and toks[1] == "(":
            block = toks[0]
            continue
        else:
            verb, args = toks[0], toks[1:]
        args = [_unquote(a) if a != "=>" else a for a in args]
        if verb == "module":
            if len(args) != 1:
                raise GoModError(f"{source} line {n}: expected `module PATH`, found {raw.strip()!r}")
            module = args[0]
            directives.append(("module", args[0]))
        elif verb in WHOLE_MODULE_DIRECTIVES:
            directives.append((verb, " ".join(args)))
        elif verb == "require":
            if len(args) != 2:
                raise GoModError(f"{source} line {n}: expected `require PATH VERSION`, found {raw.strip()!r}")
            requires[args[0]] = args[1]
        elif verb == "exclude":
            if len(args) != 2:
                raise GoModError(f"{source} line {n}: expected `exclude PATH VERSION`, found {raw.strip()!r}")
            excludes.add((args[0], args[1]))
        elif verb == "replace":
            if "=>" not in args:
                raise GoModError(f"{source} line {n}: expected `replace PATH [VERSION] => TARGET [VERSION]`, "
                                 f"found {raw.strip()!r}")
            at = args.index("=>")
            left, right = args[:at], args[at + 1:]
            if len(left) not in (1, 2) or len(right) not in (1, 2):
                raise GoModError(f"{source} line {n}: expected `replace PATH [VERSION] => TARGET [VERSION]`, "
                                 f"found {raw.strip()!r}")
            replaces[" ".join(left)] = " ".join(right)
        elif verb in INERT_DIRECTIVES:
            continue
        else:
            other.append((verb, " ".join(args)))
    if block is not None:
        raise GoModError(f"{source}: a `{block} (` block is not closed")
    if not module:
        raise GoModError(f"{source}: no `module` line")
    return GoModFile(module=module, directives=tuple(directives), requires=requires, replaces=replaces,
                     excludes=frozenset(excludes), other=tuple(other))


def parse_go_sum(text: str) -> dict[tuple[str, str], str]:
    """``(module path, version or version/go.mod)`` -> hash, for every well-formed line."""
    out: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[(parts[0], parts[1])] = parts[2]
    return out


# --- what changed -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModuleChange:
    """One module whose version, replacement, exclusion or checksum differs between the revisions."""

    path: str
    before: str  # "v1.7.32", "(none)", "v1.0.0 => ./local"
    after: str
    what: str = "version"  # version, replace, exclude, go.sum
    version: str = ""  # go.sum changes: the version whose hash changed (only a build with it is affected)

    def text(self) -> str:
        if self.what == "go.sum":
            return f"{self.path} {self.version} (its go.sum hash {self.before} -> {self.after})"
        if self.what == "version":
            return f"{self.path} {self.before} -> {self.after}"
        return f"{self.path} ({self.what} {self.before} -> {self.after})"


@dataclass(frozen=True)
class GoModDiff:
    modules: tuple[ModuleChange, ...] = ()
    whole: tuple[str, ...] = ()  # why every package of the module changed

    @property
    def changed(self) -> bool:
        return bool(self.modules or self.whole)

    def merged(self, more: Iterable[ModuleChange]) -> GoModDiff:
        """This diff with ``more`` changes of modules it does not name yet (a build list's)."""
        known = {(m.path, m.what) for m in self.modules} | {(m.path, "version") for m in self.modules
                                                            if m.what == "replace"}
        extra = tuple(m for m in more if (m.path, m.what) not in known)
        return GoModDiff(modules=self.modules + extra, whole=self.whole)

    def describe(self, limit: int = 3) -> str:
        """The changes, briefly: a go.sum change of a module whose version changed too is implied."""
        moved = {m.path for m in self.modules if m.what != "go.sum"}
        parts = list(self.whole) + [m.text() for m in self.modules if m.what != "go.sum" or m.path not in moved]
        text = "; ".join(parts[:limit])
        return text + (f" and {len(parts) - limit} more" if len(parts) > limit else "")


def _short(h: str) -> str:
    return h[:11] + "..." if len(h) > 14 else h


def diff_module_files(old_mod: str | None, new_mod: str | None, old_sum: str | None, new_sum: str | None,
                      *, source: str = "go.mod") -> GoModDiff:
    """What differs between two revisions of a module's go.mod and go.sum (texts; None: not there)."""
    if old_mod is None or new_mod is None:
        return GoModDiff(whole=(f"{source} {'is new' if old_mod is None and new_mod is not None else 'was removed'}"
                                if (old_mod is None) != (new_mod is None) else f"{source} cannot be read",))
    try:
        old = parse_go_mod_file(old_mod, f"{source} (base)")
        new = parse_go_mod_file(new_mod, source)
    except GoModError as exc:
        return GoModDiff(whole=(f"it cannot be compared ({exc})",))
    whole: list[str] = []
    od, nd = dict(old.directives), dict(new.directives)
    for verb in WHOLE_MODULE_DIRECTIVES:
        if od.get(verb) != nd.get(verb):
            whole.append(f"`{verb}` {od.get(verb) or '(none)'} -> {nd.get(verb) or '(none)'}")
    if sorted(old.other) != sorted(new.other):
        whole.append("a directive this tool does not know changed (" + ", ".join(
            sorted({v for v, _ in set(old.other) ^ set(new.other)})) + ")")
    mods: list[ModuleChange] = []
    for path in sorted(old.requires.keys() | new.requires.keys()):
        a, b = old.requires.get(path), new.requires.get(path)
        if a != b:
            mods.append(ModuleChange(path, a or "(none)", b or "(none)"))
    for key in sorted(old.replaces.keys() | new.replaces.keys()):
        a, b = old.replaces.get(key), new.replaces.get(key)
        if a != b:
            mods.append(ModuleChange(key.split()[0], f"=> {a}" if a else "(none)", f"=> {b}" if b else "(none)",
                                     what="replace"))
    for path, ver in sorted(old.excludes ^ new.excludes):
        mods.append(ModuleChange(path, "(none)" if (path, ver) in new.excludes else ver,
                                 ver if (path, ver) in new.excludes else "(none)", what="exclude"))
    if old_sum is not None or new_sum is not None:
        os_, ns = parse_go_sum(old_sum or ""), parse_go_sum(new_sum or "")
        for (path, ver), h in sorted(os_.items()):
            if ns.get((path, ver)) != h:
                version = ver.removesuffix("/go.mod")
                mods.append(ModuleChange(path, _short(h), _short(ns[(path, ver)]) if (path, ver) in ns else "(removed)",
                                         what="go.sum", version=version))
    return GoModDiff(modules=tuple(mods), whole=tuple(whole))


# --- build lists and package graphs (what the toolchain answers) --------------------------------

BuildList = Mapping[str, str]  # module path -> "version" or "version => replacement [version]"


def diff_build_lists(old: BuildList, new: BuildList) -> tuple[ModuleChange, ...]:
    """Every module whose selected version or replacement differs between two build lists."""
    return tuple(ModuleChange(p, old.get(p) or "(none)", new.get(p) or "(none)")
                 for p in sorted(old.keys() | new.keys()) if old.get(p) != new.get(p))


@dataclass(frozen=True)
class Package:
    """One package as ``go list -deps`` lists it."""

    path: str
    module: str  # '' for the standard library
    imports: tuple[str, ...] = ()
    error: str = ""  # set when the toolchain could not load it (its imports are then unknown)
    standard: bool = False


@dataclass(frozen=True)
class PackageGraph:
    packages: Mapping[str, Package]
    configs: tuple[str, ...] = ()  # the GOOS/GOARCH/cgo settings listed ("linux/amd64 CGO_ENABLED=0")
    versions: BuildList = field(default_factory=dict)  # the build list the packages were listed with

    def platforms(self) -> str:
        """``linux/amd64, linux/arm64 (cgo on and off)``: the settings listed, briefly."""
        plats = list(dict.fromkeys(c.split()[0] for c in self.configs))
        return ", ".join(plats) + (" (cgo on and off)" if plats else "")


@dataclass(frozen=True)
class Unavailable:
    """Why the toolchain could not answer (the caller falls back to the rule without it)."""

    reason: str


@dataclass(frozen=True)
class ModuleFiles:
    """A module as the toolchain needs it to list a build: its go.mod, go.sum and the go.mod of
    every local replacement (``replace x => ../x``), relative to the module root."""

    root: str  # the module's directory in the repository ('' for the root), for messages
    go_mod: str
    go_sum: str | None = None
    local: tuple[tuple[str, str], ...] = ()  # (directory relative to the module root, its go.mod text)


class ModuleGraphs(Protocol):
    """What change detection asks the Go toolchain (:class:`ci.changes.gotool.GoToolchain`)."""

    def describe(self) -> str:
        """The toolchain and its module source, for messages (``go1.24.4 (GOPROXY=...)``)."""
        ...

    def build_list(self, files: ModuleFiles) -> BuildList | Unavailable:
        """The module's build list (``go list -m all``)."""
        ...

    def package_graph(self, files: ModuleFiles, patterns: Sequence[str], platforms: Sequence[str]) -> PackageGraph | Unavailable:
        """Every package ``patterns`` (import paths of other modules) build with, on each platform
        (``linux/amd64``), with and without cgo (``go list -deps``)."""
        ...


def local_replacements(mod: GoModFile) -> tuple[str, ...]:
    """The directories (relative to the module root) of a go.mod's local ``replace`` targets."""
    out = []
    for target in mod.replaces.values():
        path = target.split()[0]
        if path.startswith(("./", "../")) or path in (".", ".."):
            out.append(path)
    return tuple(dict.fromkeys(out))


# --- what a leg reaches -------------------------------------------------------------------------

@dataclass(frozen=True)
class Reach:
    """The changed modules a leg's packages reach, each with the import path to it."""

    hits: Mapping[str, tuple[str, ...]]  # module -> import paths, from the leg's import to a package of it
    unknown: tuple[str, ...] = ()  # reached packages the toolchain could not load (their imports unknown)
    packages: int = 0  # packages of other modules the leg builds with
    modules: int = 0  # and their modules


def reach(graph: PackageGraph, roots: Iterable[str], changed: Iterable[str]) -> Reach:
    """Breadth first from ``roots`` (the leg's imports of other modules' packages) through ``graph``:
    the first package of every module in ``changed`` it reaches, with the shortest import path."""
    want = set(changed)
    parent: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for r in roots:
        if r not in parent and not is_standard(r):
            parent[r] = None
            queue.append(r)
    hits: dict[str, tuple[str, ...]] = {}
    unknown: list[str] = []
    modules: set[str] = set()
    seen_pkgs = 0
    while queue:
        p = queue.popleft()
        pkg = graph.packages.get(p)
        if pkg is None or pkg.error or (not pkg.module and not pkg.standard):
            unknown.append(p if pkg is None or not pkg.error else f"{p} ({pkg.error})")
            continue
        if pkg.standard:
            continue
        seen_pkgs += 1
        modules.add(pkg.module)
        if pkg.module in want and pkg.module not in hits:
            chain: list[str] = []
            cur: str | None = p
            while cur is not None:
                chain.append(cur)
                cur = parent[cur]
            hits[pkg.module] = tuple(reversed(chain))
        for imp in pkg.imports:
            if imp not in parent and not is_standard(imp):
                parent[imp] = p
                queue.append(imp)
    return Reach(hits=hits, unknown=tuple(unknown), packages=seen_pkgs, modules=len(modules))


def chain_text(chain: Sequence[str]) -> str:
    """``a -> b -> c`` as the explanation writes import paths: innermost first (``c <- b imports c <- ...``)."""
    if not chain:
        return ""
    out = [chain[-1]]
    for i in range(len(chain) - 1, 0, -1):
        out.append(f"{chain[i - 1]} imports {chain[i]}")
    return " <- ".join(out)


# --- generated packages -------------------------------------------------------------------------

#: What the output of the code generators LocalAI's builds run imports (besides the standard
#: library): protoc-gen-go (``protoc --go_out``) and protoc-gen-go-grpc (``--go-grpc_out``).
GENERATOR_IMPORTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("--go_out", ("google.golang.org/protobuf/reflect/protoreflect", "google.golang.org/protobuf/runtime/protoimpl")),
    ("--go-grpc_out", ("google.golang.org/grpc", "google.golang.org/grpc/codes", "google.golang.org/grpc/status")),
)
#: a .proto importing a well-known type makes protoc-gen-go import its Go package
_WELL_KNOWN = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"google/protobuf/(\w+)\.proto"', re.M)


def generator_imports(recipe: Sequence[str], protos: Sequence[str] = ()) -> tuple[str, ...] | None:
    """The import paths of the Go code a Makefile recipe generates with ``protoc`` (``protos``: the
    texts of the .proto files it compiles); None when no generator this module knows writes it."""
    text = "\n".join(recipe)
    if "protoc" not in text:
        return None
    out: list[str] = []
    for flag, imports in GENERATOR_IMPORTS:
        if re.search(rf"(^|\s){re.escape(flag)}[=\s]", text):
            out.extend(imports)
    if not out:
        return None
    for proto in protos:
        for name in _WELL_KNOWN.findall(proto):
            if name == "descriptor":
                out.append("google.golang.org/protobuf/types/descriptorpb")
            else:
                out.append(f"google.golang.org/protobuf/types/known/{name.replace('_', '')}pb")
    return tuple(dict.fromkeys(out))
