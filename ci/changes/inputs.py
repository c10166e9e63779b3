"""What goes into a leg's image: its inputs, derived from the repository (pure).

A Linux leg's inputs come from its Dockerfile, resolved with the leg's build args (so
``${BACKEND}`` and the ``BUILDER_TARGET`` stage choice are the leg's) by :mod:`ci.dockerfile`:

1. **The Dockerfile's own reads** in the stages the target reaches: ``COPY``/``ADD`` sources
   and ``RUN --mount=type=bind`` sources, relative to the build context, minus what the
   context's ``.dockerignore`` leaves out.
2. **A whole-context read** (``COPY . /LocalAI``) in a builder stage whose outputs alone reach
   the image (``COPY --from=builder .../package``) is narrowed to what the build commands use,
   followed from the RUN steps of the reached stages:

   * the directories ``make -C DIR`` / ``cd DIR`` run in, and every file below them;
   * ``make TARGET`` at the context root: that target of the root Makefile (its rules,
     prerequisites and variables, compared between revisions by :mod:`ci.makefile`), and the
     paths its recipes name;
   * the repository paths the RUN steps, the scripts they run (bind-mounted or copied) and
     the build files of those directories (Makefile, ``*.mk``, ``*.sh``, CMakeLists.txt,
     ``*.cmake``, Cargo.toml, build.rs, go.mod, package.json, pyproject.toml, setup.py, files with a
     ``#!`` line)
     name, transitively (:mod:`ci.pathrefs`);
   * for Go code in those directories, the module's import graph (:mod:`ci.gograph`): the
     non-test files of every imported package of the module, ``go.mod``, ``go.sum``; a package
     the build generates (not in the tree) adds the root Makefile rule that writes it.

   A whole-context read in the image's own stage (or a stage it is built ``FROM``) keeps
   every file of the context as an input.
3. ``*_test.go`` files are never inputs.

A Darwin entry (``includeDarwin:``) has no Dockerfile: its inputs are its source directory
(``backend/<lang>/<backend>/``, ``lang`` defaulting to python; ``backend/cpp/<backend>/`` when
that is the one the tree has), its macOS build script (``scripts/build/<backend>-darwin.sh``
when the tree has one, else ``scripts/build/<golang|python>-darwin.sh``), and what those
reach, followed as in 2 with ``BACKEND`` and ``BUILD_TYPE`` set.

The comparisons that need the base revision (the matrix entry, the Dockerfile's reached
stages, Makefile targets, ``.dockerignore``, ``.proto`` files, the workflows) are in
:mod:`ci.changes`; this module says what a leg depends on at one revision.
"""
from __future__ import annotations

import posixpath
import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..dockerfile.ignore import Ignore, parse_dockerignore
from ..dockerfile.model import AUTOMATIC_ARGS, Dockerfile, Resolved, parse_dockerfile
from ..dockerfile.resolve import resolve
from ..errors import UserError
from ..matrix.model import Entry
from .gograph import Closure, GoGraph, GoModule, is_test_file
from .gomod import generator_imports
from .makefile import Makefile, Rule, parse_makefile
from .pathrefs import Lexed, MakeRun, Ref, Where, could_name_a_path, lex, make_runs, references
from .tree import Tree, clean_path, join, parent_dirs

BUILD_FILE_NAMES = frozenset({"Makefile", "GNUmakefile", "makefile", "CMakeLists.txt", "Cargo.toml", "build.rs",
                              "go.mod", "package.json", "pyproject.toml", "setup.py"})
BUILD_FILE_SUFFIXES = (".mk", ".sh", ".bash", ".cmake")
DARWIN_LANG_SCRIPTS = {"go": "golang", "golang": "golang", "python": "python"}
_GLOB = re.compile(r"[*?\[]")
_RUN_PREFIX = re.compile(r"^\s*RUN(?:\s|\\\n)+(?:--\S+(?:\s|\\\n)+)*", re.S)  # the keyword and its flags
_REMOVES = re.compile(r"^[@+-]*\s*(?:rm|rmdir|\$\(RM\)|\$\{RM\})\s")  # a recipe line that deletes, never writes


def is_build_file(path: str, text: str | None = None) -> bool:
    name = posixpath.basename(path)
    if name in BUILD_FILE_NAMES or name.endswith(BUILD_FILE_SUFFIXES):
        return True
    return bool(text and text.startswith("#!"))


class Via:
    """Why a path is an input: the chain of steps from the leg's definition down to it.

    A chain shares its parent with its siblings (a Go package's Via is its importer's plus one
    step), so reaching 10,000 packages down one import chain takes 10,000 steps, not 50 million,
    and :meth:`text` shows at most ``2 * SHOWN`` of them: the innermost and the outermost."""

    __slots__ = ("step", "parent", "depth", "top")
    SHOWN = 8  # steps shown at each end of a longer chain

    def __init__(self, step: str, parent: Via | None = None) -> None:
        self.step = step
        self.parent = parent
        self.depth: int = 1 if parent is None else parent.depth + 1
        # the outermost SHOWN steps, shared by every chain below them
        self.top: tuple[str, ...] = (step,) if parent is None else (
            parent.top + (step,) if parent.depth < self.SHOWN else parent.top)

    def then(self, step: str) -> Via:
        return Via(step, self)

    @property
    def steps(self) -> tuple[str, ...]:
        """Outermost (the Dockerfile, the matrix entry) first."""
        out: list[str] = []
        v: Via | None = self
        while v is not None:
            out.append(v.step)
            v = v.parent
        return tuple(reversed(out))

    def text(self) -> str:
        """Innermost first: ``what reached it <- what reached that <- ... <- the Dockerfile``; a chain of
        more than ``2 * SHOWN`` steps says how many it leaves out in the middle."""
        if self.depth <= 2 * self.SHOWN:
            return " <- ".join(reversed(self.steps))
        inner: list[str] = []
        v: Via | None = self
        while v is not None and len(inner) < self.SHOWN:
            inner.append(v.step)
            v = v.parent
        hidden = self.depth - 2 * self.SHOWN
        return " <- ".join([*inner, f"... {hidden} more steps ...", *reversed(self.top)])

    def __repr__(self) -> str:
        return f"Via({self.text()!r})"


@dataclass(frozen=True)
class MakeInput:
    """A ``make`` run at a directory that is not itself an input: its Makefile's targets are."""

    makefile: str  # repository path of the Makefile
    targets: tuple[str, ...]  # () = the default goal
    via: Via


@dataclass(eq=False)
class GoUse:
    """A module a leg builds in, and what of other modules it imports (for the go.mod/go.sum rule)."""

    module: GoModule
    via: Via  # why the module's go.mod/go.sum are inputs
    files: list[str] = field(default_factory=list)  # its go.mod/go.sum, when they are inputs by this rule only
    imports: dict[str, Via] = field(default_factory=dict)  # import path of another module's package -> why
    generated: dict[str, tuple[tuple[str, ...] | None, Via]] = field(default_factory=dict)  # dir -> (its imports, why)


@dataclass
class LegInputs:
    """Everything one leg (or Darwin entry) depends on in the repository, with why."""

    label: str
    files: dict[str, Via] = field(default_factory=dict)
    dirs: dict[str, Via] = field(default_factory=dict)  # every file below
    packages: dict[str, Via] = field(default_factory=dict)  # Go packages: the files directly in them
    make_targets: list[MakeInput] = field(default_factory=list)
    dockerfile: str = ""
    context: str = ""
    ignore: Ignore = field(default_factory=Ignore)
    consumed_args: frozenset[str] = frozenset()  # build args a reached stage declares
    unknown: str = ""  # why the inputs could not be derived (then every change selects the leg)
    notes: list[str] = field(default_factory=list)
    resolved: Resolved | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    go: dict[str, GoUse] = field(default_factory=dict)  # module root -> the leg's use of that Go module

    def match(self, path: str, ignoring: bool = True) -> tuple[str, Via] | None:
        """(the input that contains ``path``, why it is an input), or None. ``ignoring=False``
        leaves the context's .dockerignore out (to ask whether a file it now excludes was an input)."""
        if is_test_file(path):
            return None
        if ignoring and self.ignore.patterns and (path == self.context or path.startswith(self.context + "/")
                                                  or not self.context):
            rel = path[len(self.context) + 1:] if self.context else path
            if self.ignore.excludes(rel):
                return None
        if path in self.files:
            return path, self.files[path]
        for d in parent_dirs(path) + [""]:
            if d in self.dirs:
                return (d or "."), self.dirs[d]
        parent = posixpath.dirname(path)
        if parent in self.packages:
            return parent, self.packages[parent]
        return None

    def reads(self, path: str) -> bool:
        """Whether the leg's build reads the repository file or directory ``path``: one of its inputs
        (:meth:`match`, the ``.dockerignore`` left to the caller), a directory that is one, or the
        Makefile of a ``make`` run (whole: a recipe is read from it). Everything, when the inputs
        could not be derived. ``invoke pipeline``'s up-to-date key hashes exactly these files."""
        if self.unknown:
            return True
        return (path in self.dirs or any(m.makefile == path for m in self.make_targets)
                or self.match(path, ignoring=False) is not None)

    def read_paths(self, paths: Sequence[str]) -> list[str]:
        """The paths among ``paths`` (sorted) that :meth:`reads` keeps, in order: found by prefix
        (``bisect``) from the inputs, not by testing every path (a LocalAI checkout has thousands)."""
        if self.unknown:
            return list(paths)
        index = set(paths)
        keep: set[str] = set()

        def below(d: str) -> Sequence[str]:  # the paths under directory d ('' is the root)
            if not d:
                return paths
            return paths[bisect_left(paths, d + "/"):bisect_left(paths, d + "0")]  # '0' follows '/'
        for d in self.dirs:
            if d in index:
                keep.add(d)
            keep.update(p for p in below(d) if not is_test_file(p))
        for pkg in self.packages:
            keep.update(p for p in below(pkg) if "/" not in p[len(pkg) + 1 if pkg else 0:] and not is_test_file(p))
        keep.update(f for f in self.files if f in index and not is_test_file(f))
        keep.update(m.makefile for m in self.make_targets if m.makefile in index)
        return sorted(keep)

    def identity(self) -> tuple[object, ...]:
        """What decides :meth:`reads` (legs that share a derivation share it): a cache key."""
        return (self.context, self.unknown, frozenset(self.files), frozenset(self.dirs), frozenset(self.packages),
                frozenset(m.makefile for m in self.make_targets))

    def summary(self) -> list[str]:
        """One line per input, for ``--explain``."""
        out = [f"{self.dockerfile} (its Dockerfile: the stages this leg reaches, compared with the base revision)"] \
            if self.dockerfile else []
        out += [f"{p or '.'}/ ({v.text()})" for p, v in sorted(self.dirs.items())]
        out += [f"{p} (Go package: {v.text()})" for p, v in sorted(self.packages.items())]
        out += [f"{p} ({v.text()})" for p, v in sorted(self.files.items())]
        out += [f"{m.makefile} target {' '.join(m.targets) or '(default goal)'} ({m.via.text()})"
                for m in self.make_targets]
        for use in self.go.values():
            names = sorted(use.imports)
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            out.append(f"the build list of Go module {use.module.path}: what its packages import of other modules "
                       f"({shown or 'nothing'}) and what those import, compared with the base revision's "
                       f"go.mod/go.sum ({use.via.text()})")
        return out


class Deriver:
    """Derives inputs over one tree; scripts, Makefiles and Go files are read and scanned once."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.go = GoGraph(tree)
        self._dockerfiles: dict[str, Dockerfile | str] = {}
        self._ignores: dict[str, Ignore] = {}
        self._makefiles: dict[str, Makefile | None] = {}
        self._scans: dict[tuple[object, ...], tuple[list[Ref], list[MakeRun]]] = {}
        self._lexed: dict[object, Lexed] = {}
        self._words: dict[tuple[object, ...], list[Ref]] = {}
        self._live: dict[tuple[object, ...], frozenset[str]] = {}
        self._legs: dict[tuple[object, ...], list[tuple[tuple[str, ...], tuple[object, ...], LegInputs]]] = {}
        self._makers: dict[tuple[str, str], list[Rule]] = {}
        self._exact: dict[tuple[object, ...], LegInputs] = {}
        self._declared: dict[str, frozenset[str]] = {}

    # ---- cached reads -------------------------------------------------------------------------
    def dockerfile(self, path: str) -> Dockerfile | str:
        """The parsed Dockerfile, or why it cannot be read."""
        if path not in self._dockerfiles:
            text = self.tree.text(path)
            if text is None:
                self._dockerfiles[path] = (f"{path} is not in the repository" if not self.tree.is_file(path)
                                           else f"{path} cannot be read as UTF-8 text")
            else:
                try:
                    self._dockerfiles[path] = parse_dockerfile(text, path)
                except UserError as exc:
                    self._dockerfiles[path] = str(exc)
        return self._dockerfiles[path]

    def ignore(self, context: str) -> Ignore:
        if context not in self._ignores:
            path = join(context, ".dockerignore")
            text = self.tree.text(path) if self.tree.is_file(path) else None
            self._ignores[context] = Ignore(parse_dockerignore(text), path) if text is not None else Ignore()
        return self._ignores[context]

    def makefile(self, path: str) -> Makefile | None:
        if path not in self._makefiles:
            text = self.tree.text(path) if self.tree.is_file(path) else None
            self._makefiles[path] = parse_makefile(text, path) if text is not None else None
        return self._makefiles[path]

    def _scan(self, key: object, text: str, where: Where, cwd: str | None = None,
              consulted: set[str] | None = None, cwd_known: bool = True) -> tuple[list[Ref], list[MakeRun]]:
        """References and make runs of a text, memoised on what they can depend on (the variables
        it uses are added to ``consulted``)."""
        lexed = self._lexed.get(key)
        if lexed is None:
            lexed = self._lexed[key] = lex(text)
        live = self._live.get((lexed.serial, where.here, where.root, where.image))
        if live is None:
            found = set(lexed.run_names)
            for _, word, names in lexed.path_words:
                if names and could_name_a_path(word, where, self.tree):
                    found.update(names)
            live = self._live[(lexed.serial, where.here, where.root, where.image)] = frozenset(found)
        if consulted is not None:
            consulted.update(live)
        env = tuple((k, v) for k, v in where.env if k in live) if live else ()
        image = where.image if any(w.startswith("/") or "$" in w for _, w, _ in lexed.path_words) else ()
        memo = (key, where.here, where.root, image, env, cwd, cwd_known)
        if memo not in self._scans:
            w = Where(where.here, where.root, image, env)
            self._scans[memo] = (references(lexed, w, self.tree, self._words),
                                 make_runs(lexed, w, self.tree, cwd=cwd, cwd_known=cwd_known))
        return self._scans[memo]

    # ---- Linux legs ---------------------------------------------------------------------------
    def leg(self, entry: Entry, extra_args: Mapping[str, str] | None = None) -> LegInputs:
        """The inputs of one Linux leg (``extra_args``: build args the workflows add, e.g. a default
        ``AMDGPU_TARGETS``).

        Legs whose resolved Dockerfile has the same shape (stages, reads, destinations, RUN steps)
        and the same values for the variables the derivation's scripts looked at share one
        derivation (a CUDA version that no path uses does not make a leg different).
        """
        args = {**entry.build_args(), **(extra_args or {})}
        dfp = clean_path(entry.dockerfile)
        ctx = clean_path(entry.context)
        label = entry.label()
        exact = (dfp, ctx, tuple(sorted(args.items())), str(entry.platform), label)
        if exact in self._exact:
            return self._exact[exact]
        self._exact[exact] = result = self._leg(entry, args, dfp, ctx, label)
        return result

    def _leg(self, entry: Entry, args: dict[str, str], dfp: str, ctx: str, label: str) -> LegInputs:
        df = self.dockerfile(dfp)
        if isinstance(df, str):
            return LegInputs(label=label, dockerfile=dfp, context=ctx, unknown=df, build_args=tuple(sorted(args.items())))
        try:
            res = resolve(df, args, target_platform=entry.platform, build_platform=entry.platform)
        except UserError as exc:
            return LegInputs(label=label, dockerfile=dfp, context=ctx, unknown=str(exc),
                             build_args=tuple(sorted(args.items())))
        steps = [step for rs in res.stages for step in rs.run_steps]
        shape = (dfp, ctx, res.target, tuple((rs.label, rs.base_is_stage and rs.base) for rs in res.stages),
                 res.sources, tuple((st.line, st.workdir) for st in steps))
        envs = [dict(st.env) for st in steps]
        merged: dict[str, str] = {}
        for e in envs:
            merged.update(e)
        variants = self._legs.setdefault(shape, [])
        per_leg = {"label": label, "build_args": tuple(sorted(args.items())), "resolved": res,
                   "consumed_args": frozenset(k for k in args if k not in res.unused_build_args)}
        for names, sig, cached in variants:
            if _signature(names, merged, envs) == sig:
                return replace(cached, **per_leg)  # type: ignore[arg-type]
        consulted: set[str] = set()
        result = self._derive_leg(label, dfp, ctx, res, merged, consulted)
        result = replace(result, **per_leg)  # type: ignore[arg-type]
        declared = self._declared.get(dfp)
        if declared is None:
            declared = self._declared[dfp] = _declared_names(df)
        names = tuple(sorted(consulted & declared))  # what a step's environment can hold, set or not
        variants.append((names, _signature(names, merged, envs), result))
        return result

    def _derive_leg(self, label: str, dfp: str, ctx: str, res: Resolved, env: dict[str, str],
                    consulted: set[str]) -> LegInputs:
        out = LegInputs(label=label, dockerfile=dfp, context=ctx, ignore=self.ignore(ctx))
        image = _prune(tuple((s.dest, join(ctx, s.path)) for s in res.sources if s.dest))
        whole = [s for s in res.sources if s.path == "."]
        image_stages = _image_stages(res)
        walker = _Walk(self, out, ctx, image, tuple(env.items()),
                       follow=bool(whole) and not any(s.from_ in image_stages for s in whole), consulted=consulted)
        for s in res.sources:
            word = {"copy": "COPY", "add": "ADD", "bind": "RUN --mount=type=bind,source="}[s.kind]
            via = Via(f"{dfp} line {s.line}: {word}{'' if s.kind == 'bind' else ' '}{s.path}")
            if s.path == ".":
                if s.from_ in image_stages:
                    out.dirs[ctx] = via.then("the whole build context is in the image")
                continue
            walker.path(join(ctx, s.path), via, explicit=True)
        if whole and ctx not in out.dirs:
            for rs in res.stages:
                for step in rs.run_steps:
                    here = _map_image(step.workdir, image)
                    where = Where(ctx if here is None else here, ctx, image, step.env)
                    via = Via(f"{dfp} line {step.line}: RUN (stage {rs.label})")
                    refs, runs = self._scan((dfp, step.line), _RUN_PREFIX.sub("", step.text, count=1), where,
                                            cwd=step.workdir, consulted=consulted)
                    for ref in refs:
                        walker.path(ref.path, via.then(f"names {ref.word}"))
                    for run in runs:
                        walker.make(run, via)
            walker.finish()
        return out

    # ---- Darwin entries -----------------------------------------------------------------------
    def darwin(self, entry: Mapping[str, str]) -> LegInputs:
        """The inputs of one ``includeDarwin:`` entry."""
        backend = entry.get("backend", "")
        lang = entry.get("lang", "") or "python"
        label = f"includeDarwin tag-suffix {entry.get('tag-suffix', '')!r}"
        out = LegInputs(label=label)
        if not backend or "/" in backend:
            out.unknown = f"{label} has no usable backend name"
            return out
        env = (("BACKEND", backend), ("BUILD_TYPE", entry.get("build-type", "")))
        walker = _Walk(self, out, "", (), env)
        found = False
        for d in (f"backend/{lang}/{backend}", f"backend/cpp/{backend}"):
            if self.tree.is_dir(d):
                walker.path(d, Via(f"{label}: source directory (lang {lang})"), explicit=True)
                found = True
                break
        for script in (f"scripts/build/{backend}-darwin.sh",
                       f"scripts/build/{DARWIN_LANG_SCRIPTS.get(lang, lang)}-darwin.sh"):
            if self.tree.is_file(script):
                walker.path(script, Via(f"{label}: macOS build script"), explicit=True)
                found = True
                break
        if not found:
            out.unknown = (f"{label}: neither backend/{lang}/{backend}/ nor a scripts/build/*-darwin.sh script "
                           "for it is in the repository")
            return out
        walker.finish()
        return out


def _declared_names(df: Dockerfile) -> frozenset[str]:
    """Every name a RUN step's environment can hold: global and stage ARGs, ENV keys, BuildKit's own."""
    names = set(AUTOMATIC_ARGS) | {name for name, _ in df.global_args}
    for st in df.stages:
        for ins in st.instructions:
            if ins.keyword == "ARG":
                names.update(w.split("=", 1)[0] for w in ins.args)
            elif ins.keyword == "ENV":
                words = ins.args
                names.update(words[i] for i in range(0, len(words) - 1, 2))
    return frozenset(names)


def _signature(names: tuple[str, ...], merged: Mapping[str, str],
               envs: list[dict[str, str]]) -> tuple[object, ...]:
    return (tuple(merged.get(n) for n in names), tuple(tuple(e.get(n) for n in names) for e in envs))


def _image_stages(res: Resolved) -> set[str]:
    """Labels of the stages whose filesystem is the image: the target and the stages it is built FROM."""
    by_label = {rs.label: rs for rs in res.stages}
    out: set[str] = set()
    rs = by_label.get(res.target)
    while rs is not None and rs.label not in out:
        out.add(rs.label)
        rs = by_label.get(rs.base.lower()) if rs.base_is_stage else None
    return out


def _prune(image: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Drop copies another one implies (``COPY backend/go/x /LocalAI/backend/go/x`` after
    ``COPY . /LocalAI``): the mapping is the same, and legs that differ only there share scans."""
    out: list[tuple[str, str]] = []
    for dest, src in image:
        d = posixpath.normpath(dest)
        implied = any(d != posixpath.normpath(d2) and d.startswith(posixpath.normpath(d2).rstrip("/") + "/")
                      and join(s2, d[len(posixpath.normpath(d2)):].lstrip("/")) == src for d2, s2 in image)
        if not implied and (dest, src) not in out:
            out.append((dest, src))
    return tuple(out)


def _map_image(path: str, image: tuple[tuple[str, str], ...]) -> str | None:
    """The repository directory an absolute image path was copied from, or None."""
    norm = posixpath.normpath(path or "/")
    best: tuple[int, str] | None = None
    for dest, repo in image:
        d = posixpath.normpath(dest)
        if norm == d or norm.startswith(d.rstrip("/") + "/"):
            if best is None or len(d) > best[0]:
                best = (len(d), join(repo, norm[len(d):].lstrip("/")))
    return best[1] if best else None


class _Walk:
    """The closure of one leg's inputs (whole-context narrowing, Darwin entries)."""

    def __init__(self, deriver: Deriver, out: LegInputs, root: str, image: tuple[tuple[str, str], ...],
                 env: tuple[tuple[str, str], ...], follow: bool = True, consulted: set[str] | None = None) -> None:
        self.d = deriver
        self.tree = deriver.tree
        self.out = out
        self.root = root
        self.image = image
        self.env = env
        self.follow = follow  # False: a Dockerfile that copies only narrow paths (nothing else is readable)
        self.go_starts: dict[str, Via] = {}
        self.seen: set[str] = set()
        self.consulted = set() if consulted is None else consulted

    def readable(self, path: str) -> bool:
        """Inside the build context (the build can read nothing else)."""
        return not self.root or path == self.root or path.startswith(self.root + "/")

    def path(self, path: str, via: Via, explicit: bool = False) -> None:
        """Add a file or directory input and (when following) what it reaches."""
        if path in self.seen or not (explicit or self.readable(path)):
            return
        self.seen.add(path)
        if not self.follow:
            if _GLOB.search(path):
                for hit in self.tree.glob(path):
                    (self.out.dirs if self.tree.is_dir(hit) else self.out.files).setdefault(hit, via)
            elif self.tree.is_dir(path):
                self.out.dirs.setdefault(path, via)
            else:
                self.out.files.setdefault(path, via)
                if not self.tree.is_file(path):  # not in the tree: a file or a directory, whichever appears
                    self.out.dirs.setdefault(path, via)
            return
        if _GLOB.search(path):
            for hit in self.tree.glob(path):
                self.path(hit, via, explicit)
            return
        if self.tree.is_dir(path) and path != "":
            if any(p in self.out.dirs for p in [path] + parent_dirs(path)):
                return
            self.out.dirs[path] = via
            for f in self.tree.under(path):
                if is_build_file(f):
                    self.scan(f, via.then(f"{f}"))
            for pkg in self.d.go.packages_under(path):
                self.go_starts.setdefault(pkg, via)
        elif self.tree.is_file(path) or explicit:
            self.out.files.setdefault(path, via)
            if self.tree.is_file(path) and is_build_file(path, self.tree.text(path)):
                self.scan(path, via)

    def scan(self, path: str, via: Via) -> None:
        text = self.tree.text(path)
        if text is None:
            return
        here = posixpath.dirname(path)
        makefile = posixpath.basename(path) in ("Makefile", "GNUmakefile", "makefile") or path.endswith(".mk")
        refs, runs = self.d._scan(path, text, Where(here, self.root, self.image, self.env), consulted=self.consulted,
                                  cwd_known=makefile)
        for ref in refs:
            if ref.path != path:
                self.path(ref.path, via.then(f"{path} line {ref.line} names {ref.word}"))
        for run in runs:
            self.make(run, via.then(f"{path} line {run.line}"))

    def make(self, run: MakeRun, via: Via) -> None:
        """A ``make`` run: its directory is an input, or (at the root) the targets it runs are."""
        m = run.directory
        if m is None or "\x00" in m:
            return
        via = via.then(f"make {' '.join(run.args.targets) if run.args.targets else '(default goal)'}"
                       f"{' in ' + m if m else ''}")
        if m != self.root and "/" in m and self.tree.is_dir(m):
            self.path(m, via)
            return
        if not self.tree.is_dir(m):
            return
        mk_path = join(m, run.args.makefile or "Makefile")
        mk = self.d.makefile(mk_path)
        if mk is None:
            return
        self.make_target(mk, mk_path, run.args.targets, via)

    def make_target(self, mk: Makefile, mk_path: str, targets: tuple[str, ...], via: Via) -> None:
        key = f"make:{mk_path}:{' '.join(targets)}"
        if key in self.seen:
            return
        self.seen.add(key)
        self.out.make_targets.append(MakeInput(mk_path, targets, via))
        rules, names, whole = mk.uses(targets)
        if whole:
            self.out.files.setdefault(mk_path, via.then(f"{mk_path} has no rule for {' '.join(targets)}"))
        texts = [r.text() for r in rules] + [v for n in sorted(names) for v in mk.variables.get(n, ())]
        here = posixpath.dirname(mk_path)
        for inc in mk.includes:
            self.path(join(here, inc), via.then(f"{mk_path}: include {inc}"))
        for text in texts:
            refs, runs = self.d._scan((mk_path, "rules", text), text, Where(here, self.root, self.image, self.env),
                                      consulted=self.consulted)
            for ref in refs:
                self.path(ref.path, via.then(f"{mk_path} target {' '.join(targets)} names {ref.word}"))
            for run in runs:
                if run.directory not in (None, here) or run.args.makefile:
                    self.make(run, via.then(f"{mk_path} target {' '.join(targets)}"))

    def finish(self) -> None:
        """Follow the Go import graph from every package found, until nothing new is reached."""
        done: set[str] = set()
        while set(self.go_starts) - done:
            starts = sorted(set(self.go_starts) - done)
            done.update(starts)
            closure = self.d.go.closure(starts)
            if closure is None:
                continue
            via0 = self.go_starts[starts[0]]
            use = self.out.go.get(closure.module.root)
            if use is None:
                use = self.out.go[closure.module.root] = GoUse(
                    closure.module, via0.then(f"go.mod/go.sum of module {closure.module.path}"))
            for f in closure.module.files:
                if self.tree.is_file(f) and f not in self.out.files:
                    self.out.files[f] = use.via
                    use.files.append(f)
            vias = self._package_vias(closure, via0)
            self._external(closure, use, vias, via0)
            for pkg, edge in closure.packages.items():
                if edge is None or any(p in self.out.dirs for p in [pkg] + parent_dirs(pkg)):
                    continue
                self.out.packages.setdefault(pkg, vias[pkg])
                if pkg in closure.embeds:
                    self.out.dirs.setdefault(pkg, vias[pkg].then("//go:embed: its subtree too"))
            for pkg, edge in closure.generated.items():
                self.generated(pkg, edge.importer, edge.import_path, closure.module.root, via0, use)

    def _package_vias(self, closure: Closure, via0: Via) -> dict[str, Via]:
        """Every reached package's Via: its start's, then one step per import edge (``IMPORTER imports
        PATH``), each package's built on its importer's (the closure lists an importer before what it
        reaches), so the whole graph takes one step per package however deep it goes."""
        vias: dict[str, Via] = {}
        for pkg, edge in closure.packages.items():
            if edge is None:
                vias[pkg] = self.go_starts.get(pkg, via0)
            else:
                parent = vias.get(posixpath.dirname(edge.importer), via0)
                vias[pkg] = parent.then(f"{edge.importer} imports {edge.import_path}")
        return vias

    def _external(self, closure: Closure, use: GoUse, vias: dict[str, Via], via0: Via) -> None:
        """The imports of other modules' packages, each with the in-repository chain that makes it."""
        for imp, edge in closure.external.items():
            if imp in use.imports:
                continue
            pkg = posixpath.dirname(edge.importer)
            use.imports[imp] = vias.get(pkg, via0).then(f"{edge.importer} imports {imp}")

    def generated(self, pkg: str, importer: str, import_path: str, module_root: str, via0: Via,
                  use: GoUse | None = None) -> None:
        """A module package the build generates: the root Makefile rules whose recipes name its directory
        (and, for ``use``, what the generated code imports: :func:`ci.changes.gomod.generator_imports`)."""
        mk_path = join(module_root, "Makefile")
        mk = self.d.makefile(mk_path)
        via = via0.then(f"{importer} imports {import_path}, which the build generates ({pkg} is not in the tree)")
        if use is not None and pkg not in use.generated:
            recipe = [line for r in (mk.rules if mk is not None else ()) if any(
                pkg in line and not _REMOVES.match(line) for line in r.recipe) for line in r.recipe]
            protos = [t for w in " ".join(recipe).split() if w.endswith(".proto")
                      for t in [self.tree.text(join(module_root, w))] if t is not None]
            use.generated[pkg] = (generator_imports(recipe, protos) if recipe else None, via)
        if mk is None:
            self.out.notes.append(f"{pkg}: generated, and {mk_path} is not in the tree to say how")
            return
        makers = self.d._makers.get((mk_path, pkg))
        if makers is None:
            makers = self.d._makers[(mk_path, pkg)] = [r for r in mk.rules if any(
                pkg in line and not _REMOVES.match(line) for line in r.recipe)]
        if not makers:
            self.out.files.setdefault(mk_path, via.then(f"no rule of {mk_path} names {pkg}: the whole file"))
            return
        for r in makers:
            self.make_target(mk, mk_path, (r.targets[0],), via.then(f"{mk_path} target {r.targets[0]} writes {pkg}"))
