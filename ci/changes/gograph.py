"""The Go import graph of a module in a :class:`ci.tree.Tree` (pure).

What ``go build`` of a package reads from the repository: its own directory's files and,
transitively, those of every package it imports from the same module (or from a local
``replace`` directory), plus ``go.mod``/``go.sum``. Everything else comes from the module
cache, versioned by ``go.sum``.

Conservative where Go is conditional: build constraints (``//go:build``, ``_linux.go``) are
not evaluated, so every non-test file of a package counts and its imports are followed;
``_test.go`` files are never compiled into a binary and are never inputs; a package that
uses ``//go:embed`` also has its whole subtree as input (embedded files may live below it);
a module package that is imported but not in the tree is reported as *generated* (LocalAI's
``pkg/grpc/proto``, which ``make protogen-go`` writes), for the caller to find its generator;
the imports of other modules' packages (not the standard library's) are kept with the file that
makes them, for :mod:`ci.changes.gomod` to follow through the module graph.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .tree import Tree, join, parent_dirs

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"//[^\n]*")
_PACKAGE = re.compile(r"^\s*package\s+\w+", re.M)
_IMPORT_BLOCK = re.compile(r"\s*import\s*\((.*?)\)", re.S)
_IMPORT_ONE = re.compile(r"\s*import\s+(?:[\w.]+\s+)?(\"[^\"]*\"|`[^`]*`)")
_SPEC = re.compile(r"(?:[\w.]+\s+)?(\"[^\"]*\"|`[^`]*`)")
_EMBED = re.compile(r"^//go:embed\s", re.M)


def is_go_source(path: str) -> bool:
    return path.endswith(".go") and not path.endswith("_test.go")


def is_standard(import_path: str) -> bool:
    """Go's rule: an import path whose first element has no dot is the standard library's (or cgo's "C")."""
    return "." not in import_path.split("/", 1)[0]


def is_test_file(path: str) -> bool:
    """Go test files: compiled only by ``go test``, never into a binary."""
    return path.endswith("_test.go")


def go_imports(text: str) -> tuple[str, ...]:
    """The import paths of one Go source file (its import declarations after the package clause)."""
    code = _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub(" ", text))
    m = _PACKAGE.search(code)
    if not m:
        return ()
    pos = m.end()
    out: list[str] = []
    while True:
        block = _IMPORT_BLOCK.match(code, pos)
        if block:
            out.extend(s[1:-1] for s in _SPEC.findall(block.group(1)))
            pos = block.end()
            continue
        one = _IMPORT_ONE.match(code, pos)
        if one:
            out.append(one.group(1)[1:-1])
            pos = one.end()
            while pos < len(code) and code[pos] in " \t;":
                pos += 1
            continue
        break
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class GoModule:
    """A module: its root directory in the tree, its path, and its local replacements."""

    root: str  # '' for the repository root
    path: str  # "github.com/mudler/LocalAI"
    replaces: tuple[tuple[str, str], ...] = ()  # (import path prefix, directory in the tree)

    def directory_of(self, import_path: str) -> str | None:
        """The tree directory of a package of this module (or of a local replacement); None otherwise."""
        for prefix, directory in ((self.path, self.root),) + self.replaces:
            if import_path == prefix:
                return directory
            if import_path.startswith(prefix + "/"):
                return join(directory, import_path[len(prefix) + 1:])
        return None

    @property
    def files(self) -> tuple[str, ...]:
        """``go.mod`` and ``go.sum`` of the module."""
        return (join(self.root, "go.mod"), join(self.root, "go.sum"))


def parse_go_mod(text: str, root: str) -> GoModule | None:
    """``module`` and local ``replace`` directives of a go.mod; None without a module line."""
    code = _LINE_COMMENT.sub("", text)
    m = re.search(r"^\s*module\s+(\"[^\"]+\"|\S+)", code, re.M)
    if not m:
        return None
    path = m.group(1).strip('"')
    replaces: list[tuple[str, str]] = []
    lines: list[str] = []
    for block in re.finditer(r"^\s*replace\s*\((.*?)\)", code, re.M | re.S):
        lines.extend(block.group(1).splitlines())
    lines.extend(r.group(1) for r in re.finditer(r"^\s*replace\s+([^(\n].*)$", code, re.M))
    for line in lines:
        if "=>" not in line:
            continue
        left, right = (s.split() for s in line.split("=>", 1))
        if left and right and (right[0].startswith("./") or right[0].startswith("../")):
            replaces.append((left[0], join(root, right[0])))
    return GoModule(root=root, path=path, replaces=tuple(replaces))


@dataclass(frozen=True)
class Edge:
    """Why a package is reached: ``importer`` (a file) imports ``import_path``."""

    importer: str
    import_path: str


@dataclass(frozen=True)
class Closure:
    """Packages reached from some start directories, each with the edge that first reached it."""

    module: GoModule
    packages: dict[str, Edge | None] = field(default_factory=dict)  # dir -> edge (None: a start)
    generated: dict[str, Edge] = field(default_factory=dict)  # module packages not in the tree
    embeds: frozenset[str] = frozenset()  # packages with //go:embed (their subtree is input)
    external: dict[str, Edge] = field(default_factory=dict)  # import path of another module -> first edge

    def chain(self, directory: str) -> list[Edge]:
        """The import edges from a start package to ``directory`` (outermost first)."""
        out: list[Edge] = []
        seen: set[str] = set()
        edge = self.packages.get(directory) or self.generated.get(directory)
        while edge is not None and directory not in seen:
            seen.add(directory)
            out.append(edge)
            directory = posixpath.dirname(edge.importer)
            edge = self.packages.get(directory)
        return out[::-1]


class GoGraph:
    """Import graph queries over one tree; parses each file once."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._imports: dict[str, tuple[str, ...]] = {}
        self._modules: dict[str, GoModule | None] = {}
        self._embeds: dict[str, bool] = {}
        self._closures: dict[tuple[str, ...], Closure | None] = {}

    def module_for(self, directory: str) -> GoModule | None:
        """The module whose go.mod is nearest at or above ``directory``."""
        for d in [directory] + parent_dirs(directory) + ([""] if directory else []):
            if d in self._modules:
                if self._modules[d] is not None:
                    return self._modules[d]
                continue
            mod_file = join(d, "go.mod")
            text = self.tree.text(mod_file) if self.tree.is_file(mod_file) else None
            self._modules[d] = parse_go_mod(text, d) if text is not None else None
            if self._modules[d] is not None:
                return self._modules[d]
        return None

    def sources(self, directory: str) -> list[str]:
        """The non-test Go files directly in ``directory``."""
        return [f for f in self.tree.listdir(directory) if is_go_source(f)]

    def is_package(self, directory: str) -> bool:
        return bool(self.sources(directory))

    def packages_under(self, directory: str) -> list[str]:
        """Every package directory at or below ``directory``."""
        dirs = {posixpath.dirname(f) for f in self.tree.under(directory) if is_go_source(f)}
        return sorted(dirs)

    def imports_of(self, path: str) -> tuple[str, ...]:
        if path not in self._imports:
            text = self.tree.text(path)
            self._imports[path] = go_imports(text) if text is not None else ()
            self._embeds[path] = bool(text and _EMBED.search(text))
        return self._imports[path]

    def closure(self, starts: Iterable[str]) -> Closure | None:
        """Packages reached from the packages in ``starts`` (directories), within their module."""
        key = tuple(sorted(set(starts)))
        if key not in self._closures:
            self._closures[key] = self._closure(list(key))
        return self._closures[key]

    def _closure(self, starts: list[str]) -> Closure | None:
        starts = [s for s in starts if self.is_package(s)]
        if not starts:
            return None
        module = self.module_for(starts[0])
        if module is None:
            return None
        packages: dict[str, Edge | None] = {s: None for s in starts}
        generated: dict[str, Edge] = {}
        embeds: set[str] = set()
        external: dict[str, Edge] = {}
        todo = list(starts)
        while todo:
            directory = todo.pop()
            for src in self.sources(directory):
                for imp in self.imports_of(src):
                    target = module.directory_of(imp)
                    if target is None:
                        if not is_standard(imp) and imp not in external:
                            external[imp] = Edge(src, imp)
                        continue
                    if target in packages or target in generated:
                        continue
                    if self.is_package(target):
                        packages[target] = Edge(src, imp)
                        todo.append(target)
                    else:
                        generated[target] = Edge(src, imp)
                if self._embeds.get(src):
                    embeds.add(directory)
        return Closure(module=module, packages=packages, generated=generated, embeds=frozenset(embeds),
                       external=external)
