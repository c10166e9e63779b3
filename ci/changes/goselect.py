"""The go.mod/go.sum rule of change detection (pure: the toolchain's answers are injected).

A Go leg's ``go.mod`` and ``go.sum`` are inputs of a kind a path cannot decide: the change of
a module no package of the leg builds with leaves its image as it was. :class:`GoModRule`
decides, for one leg's use of a module (:class:`ci.changes.inputs.GoUse`), whether a change
of those files selects it, and says why either way (:mod:`ci.changes.gomod` has the rule):

* nothing that decides a build changed (go.sum lines added, comments, ``// indirect``
  markers, ``retract``): not selected, no toolchain needed;
* the ``module``, ``go``, ``toolchain`` or ``godebug`` line changed, or the files cannot be
  compared: every leg building in the module;
* otherwise the changed modules (the texts' diff, and the build lists' where the toolchain
  computes them) are looked up in the package graph of everything the leg's packages import
  of other modules (one ``go list -deps`` per module for every leg, on the union of their
  platforms): selected with the import path that reaches a changed module, or not selected
  with what was looked at. A package the toolchain cannot load, or one the build generates
  with a generator :func:`ci.changes.gomod.generator_imports` does not know, selects the leg.

Where the toolchain cannot answer (:class:`ci.changes.gomod.Unavailable`: no ``go``, no
module proxy, a go.mod it refuses), the rule is the one without it: every leg building in
the module, with the reason in the leg's explanation and a note for the job summary.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .gomod import (
    GoModDiff,
    GoModError,
    ModuleChange,
    ModuleFiles,
    ModuleGraphs,
    PackageGraph,
    Unavailable,
    chain_text,
    diff_build_lists,
    diff_module_files,
    local_replacements,
    parse_go_mod_file,
    reach,
)
from .inputs import GoUse
from .tree import Tree, join

NO_TOOLCHAIN = Unavailable("no Go toolchain was asked (`invoke matrix.github` asks the one on PATH)")


@dataclass
class Verdict:
    selected: list[str] = field(default_factory=list)  # reasons (the leg is selected when there is one)
    spared: list[str] = field(default_factory=list)  # why a changed go.mod/go.sum did not select it


@dataclass
class _Module:
    root: str
    diff: GoModDiff
    graph: PackageGraph | Unavailable | None = None  # None: not asked yet
    changes: dict[str, ModuleChange] = field(default_factory=dict)  # module path -> its first change


class GoModRule:
    """Decides the go.mod/go.sum rule for every leg of one selection (answers cached per module)."""

    def __init__(self, tree: Tree, base_text: Callable[[str], str | None], *, base_problem: str = "",
                 graphs: ModuleGraphs | Unavailable | None = None) -> None:
        self.tree = tree
        self.base_text = base_text
        self.base_problem = base_problem  # set when there is no base revision to read
        self.graphs: ModuleGraphs | Unavailable = graphs if graphs is not None else NO_TOOLCHAIN
        self._modules: dict[str, _Module] = {}
        self._patterns: dict[str, set[str]] = {}
        self._platforms: dict[str, set[str]] = {}
        self.notes: list[str] = []
        self._noted: set[str] = set()

    # ---- what the selection announces before asking ------------------------------------------
    def register(self, use: GoUse, platform: str) -> None:
        """A leg's use of a module: its imports join the one package graph listed for the module."""
        root = use.module.root
        pats = self._patterns.setdefault(root, set())
        pats.update(use.imports)
        for imports, _ in use.generated.values():
            pats.update(imports or ())
        self._platforms.setdefault(root, set()).add(platform)

    # ---- per module ---------------------------------------------------------------------------
    def _files(self, root: str, read: Callable[[str], str | None]) -> ModuleFiles | str:
        mod = read(join(root, "go.mod"))
        if mod is None:
            return f"{join(root, 'go.mod')} cannot be read"
        local: list[tuple[str, str]] = []
        try:
            parsed = parse_go_mod_file(mod, join(root, "go.mod"))
        except GoModError as exc:
            return str(exc)
        for rel in local_replacements(parsed):
            text = read(join(join(root, rel), "go.mod"))
            if text is not None:
                local.append((rel, text))
        return ModuleFiles(root=root, go_mod=mod, go_sum=read(join(root, "go.sum")), local=tuple(local))

    def module(self, root: str) -> _Module:
        if root in self._modules:
            return self._modules[root]
        mod_path, sum_path = join(root, "go.mod"), join(root, "go.sum")
        if self.base_problem:
            m = _Module(root, GoModDiff(whole=(f"the base revision's go.mod cannot be compared ({self.base_problem})",)))
            self._modules[root] = m
            return m
        diff = diff_module_files(self.base_text(mod_path), self.tree.text(mod_path), self.base_text(sum_path),
                                 self.tree.text(sum_path), source=mod_path)
        m = self._modules[root] = _Module(root, diff)
        if diff.changed and not diff.whole:
            self._compute(m)
        return m

    def _compute(self, m: _Module) -> None:
        """Ask the toolchain for both build lists and the package graph of every registered import."""
        graphs = self.graphs
        if isinstance(graphs, Unavailable):
            m.graph = graphs
            return
        head, base = self._files(m.root, self.tree.text), self._files(m.root, self.base_text)
        if isinstance(head, str) or isinstance(base, str):
            m.graph = Unavailable(head if isinstance(head, str) else f"at the base revision: {base}")
            return
        new, old = graphs.build_list(head), graphs.build_list(base)
        if isinstance(new, Unavailable):
            m.graph = new
            return
        if isinstance(old, Unavailable):
            m.graph = Unavailable(f"{old.reason} (the base revision's go.mod)")
            return
        m.graph = graphs.package_graph(head, sorted(self._patterns.get(m.root, ())),
                                       sorted(self._platforms.get(m.root, ())) or ["linux/amd64"])
        if isinstance(m.graph, Unavailable):
            return
        m.diff = m.diff.merged(diff_build_lists(old, new))
        for c in m.diff.modules:
            if c.what == "go.sum" and not _selects_version(new.get(c.path, ""), c.version):
                continue  # a checksum of a version this build does not select
            m.changes.setdefault(c.path, c)

    # ---- per leg -------------------------------------------------------------------------------
    def verdict(self, use: GoUse, changed: Iterable[str]) -> Verdict:
        files = [f for f in use.files if f in set(changed)]
        out = Verdict()
        if not files:
            return out
        named = " and ".join(files)
        m = self.module(use.module.root)
        tail = use.via.text()
        if not m.diff.changed:
            out.spared.append(f"{named} changed, but no required version, replace, exclude or go/toolchain line, "
                              "and no checksum of a version in use: its build list is the same")
            return out
        if m.diff.whole:
            out.selected.append(f"{named} changed: {'; '.join(m.diff.whole)} (every package of module "
                                f"{use.module.path}) <- {tail}")
            return out
        if not isinstance(m.graph, PackageGraph):
            why = m.graph.reason if isinstance(m.graph, Unavailable) else "not computed"
            out.selected.append(f"{named} changed ({m.diff.describe()}); the Go module graph cannot be computed "
                                f"({why}), so every leg building in module {use.module.path} is selected "
                                f"<- {tail}")
            self._note(m.root, f"{named} changed ({m.diff.describe()}) and the Go module graph cannot be computed "
                               f"({why}): every leg building in module {use.module.path} is selected (give the matrix "
                               "job a Go toolchain and the module proxy: actions/setup-go)")
            return out
        self._note(m.root, f"{named} changed ({m.diff.describe()}): the legs that build with a changed module are "
                           f"selected, by the module graph of {use.module.path} ({self._describe()}; "
                           f"{m.graph.platforms()})")
        if not m.changes:
            out.spared.append(f"{named} changed ({m.diff.describe()}), but only checksums of versions this build does "
                              "not select")
            return out
        unknown = [(d, via) for d, (imports, via) in use.generated.items() if imports is None]
        if unknown:
            d, via = unknown[0]
            out.selected.append(f"{named} changed ({m.diff.describe()}) and {d} is generated by the build with a "
                                f"generator whose imports are not known here, so it may build with a changed module "
                                f"<- {via.text()}")
            return out
        roots: dict[str, str] = {imp: v.text() for imp, v in use.imports.items()}
        for imports, via in use.generated.values():
            for imp in imports or ():
                roots.setdefault(imp, f"the generated code imports {imp} <- {via.text()}")
        r = reach(m.graph, roots, m.changes)
        for module, chain in r.hits.items():
            c = m.changes[module]
            out.selected.append(f"{named} changed: {c.text()}, a module this leg builds with: {chain_text(chain)} "
                                f"<- {roots[chain[0]]}")
        if not out.selected and r.unknown:
            out.selected.append(f"{named} changed ({m.diff.describe()}) and {len(r.unknown)} package(s) this leg "
                                f"builds with cannot be loaded by go ({r.unknown[0]}), so whether it builds with a "
                                f"changed module is unknown <- {tail}")
        if not out.selected:
            out.spared.append(f"{named} changed ({m.diff.describe()}), but this leg builds with none of those modules: "
                              f"its packages reach {r.packages} packages of {r.modules} other modules "
                              f"(go list -deps on {m.graph.platforms()}), none of them changed")
        return out

    def _describe(self) -> str:
        return self.graphs.describe() if not isinstance(self.graphs, Unavailable) else "go list"

    def _note(self, root: str, text: str) -> None:
        if root not in self._noted:
            self._noted.add(root)
            self.notes.append(text)


def _selects_version(selected: str, version: str) -> bool:
    """Whether a build list entry (``v1.2.3`` or ``v1.2.3 => x v1``) uses ``version`` of the module."""
    return selected.split(" => ")[0] == version or (" => " in selected and selected.endswith(" " + version))
