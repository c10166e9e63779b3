"""Change detection: which build legs have inputs that changed between two revisions.

A leg is selected when any of its inputs changed (docs/CHANGES.md is the reference):

1. its Dockerfile (``dockerfile:``, repository-relative);
2. its backend's source directories (:func:`backend_paths`, modeled on LocalAI's layout);
3. its matrix entry, compared field by field with the matrix at the base revision
   (an entry is identified by ``(tag-suffix, platform-tag)``; a new entry counts as changed);
4. a shared build input (:data:`SHARED_INPUTS`: ``Makefile``, ``backend/backend.proto``,
   the backend workflows, this project's build code, ...), for the legs the rule names.

Everything is selected when the base is missing or all zeros (first push, tag push,
schedule, workflow_dispatch), when ``--force-all`` is given, when ``git diff`` cannot
compute the change list, or when the matrix file changed and its base revision cannot
be read or parsed. A leg never silently drops out because a diff was unavailable.

Legs are selected per tag-suffix: when one leg of a suffix is selected, all legs of
that suffix are (the merge publishes one manifest list from every leg's digest).

The selection logic is pure (:func:`select_legs`); the small git adapter at the end
runs ``git`` with argument lists, never through a shell.
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ci.errors import MatrixError, UserError
from ci.matrix import Entry, Matrix, parse_matrix
from ci.naming import Family

# --- backend -> paths -------------------------------------------------------------------------

#: Dockerfile kind (``backend/Dockerfile.<kind>``) -> language directory under ``backend/``.
LANGUAGE_DIRS: Mapping[str, str] = {"python": "python", "golang": "go", "rust": "rust"}
#: Backends that are thin wrappers around another backend's sources (llama.cpp forks).
DERIVED_FROM: Mapping[str, tuple[str, ...]] = {
    "turboquant": ("backend/cpp/llama-cpp/",),
    "bonsai": ("backend/cpp/llama-cpp/",),
    "buun-llama-cpp": ("backend/cpp/llama-cpp/",),
}
#: This project's own example backends live here (``backends/src/<backend>/``).
PROJECT_BACKENDS_DIR = "backends/src/"


def normalize_path(path: str) -> str:
    """Repository-relative POSIX path without ``./``; a trailing ``/`` is kept for directories."""
    text = path.strip().replace("\\", "/")
    is_dir = text.endswith("/")
    parts = [p for p in PurePosixPath(text).parts if p not in (".", "")]
    norm = "/".join(parts)
    return norm + "/" if is_dir and norm else norm


def dockerfile_kind(entry: Entry) -> str:
    """``./backend/Dockerfile.python`` -> ``python``; ``Dockerfile`` -> ``''``."""
    name = PurePosixPath(normalize_path(entry.dockerfile)).name
    return name.split(".", 1)[1] if name.startswith("Dockerfile.") else ""


def backend_paths(entry: Entry) -> tuple[str, ...]:
    """Directory prefixes (ending in ``/``) holding the sources of the leg's backend.

    ``Dockerfile.python`` -> ``backend/python/<backend>/``, ``Dockerfile.golang`` ->
    ``backend/go/<backend>/``, ``Dockerfile.rust`` -> ``backend/rust/<backend>/``, any other
    ``Dockerfile.<kind>`` (C/C++ engines) -> ``backend/cpp/<backend>/`` (and
    ``backend/cpp/<kind>/`` when the kind differs), llama.cpp forks also
    ``backend/cpp/llama-cpp/``; always ``backends/src/<backend>/``; and the build context
    when it is not the repository root.
    """
    out: list[str] = []
    backend = entry.backend.strip()
    if backend and "/" not in backend and backend not in (".", ".."):
        kind = dockerfile_kind(entry)
        if kind in LANGUAGE_DIRS:
            out.append(f"backend/{LANGUAGE_DIRS[kind]}/{backend}/")
        elif kind:
            out.append(f"backend/cpp/{backend}/")
            if kind != backend:
                out.append(f"backend/cpp/{kind}/")
        out.extend(DERIVED_FROM.get(backend, ()))
        out.append(f"{PROJECT_BACKENDS_DIR}{backend}/")
    context = normalize_path(entry.context.rstrip("/") + "/") if entry.context.strip() else ""
    if context:  # '' for the repository root ('./')
        out.append(context)
    return tuple(dict.fromkeys(out))


def entry_inputs(entry: Entry) -> tuple[str, ...]:
    """Every path whose change selects the leg: its Dockerfile, then its directory prefixes."""
    return (normalize_path(entry.dockerfile), *backend_paths(entry))


# --- shared build inputs -----------------------------------------------------------------------

def _always(_: Entry) -> bool:
    return True


def _kind_is(kind: str) -> Callable[[Entry], bool]:
    return lambda e: dockerfile_kind(e) == kind


@dataclass(frozen=True)
class SharedInput:
    """A file or directory outside any backend directory that goes into some images."""

    path: str  # a file, or a directory prefix ending in '/'
    applies: Callable[[Entry], bool] = field(default=_always, compare=False)
    why: str = ""

    def matches(self, changed: str) -> bool:
        return changed.startswith(self.path) if self.path.endswith("/") else changed == self.path


SHARED_INPUTS: tuple[SharedInput, ...] = (
    SharedInput("Makefile", why="top-level build entry point"),
    SharedInput("backend/backend.proto", why="gRPC contract every backend compiles"),
    SharedInput("backend/Makefile", why="shared backend build rules"),
    SharedInput("backend/python/common/", _kind_is("python"), "copied into every Python backend image"),
    SharedInput("pkg/grpc/", _kind_is("golang"), "compiled into every Go backend"),
    SharedInput("pkg/utils/", _kind_is("golang"), "compiled into every Go backend"),
    SharedInput("scripts/build/", why="image packaging scripts"),
    SharedInput(".github/workflows/backend.yml", why="backend pipeline"),
    SharedInput(".github/workflows/backend_build.yml", why="reusable leg build"),
    SharedInput(".github/workflows/backend_pr.yml", why="pull-request pipeline"),
    SharedInput("ci/", why="this project's build and publish code"),
    SharedInput("tasks.py", why="build task wrappers"),
    SharedInput("noxfile.py", why="merge/inspect session wrappers"),
    SharedInput("pyproject.toml", why="build tool dependencies"),
)


# --- selection ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BaseMatrix:
    """The matrix at the base revision, or why it is unavailable (then everything is selected)."""

    matrix: Matrix | None = None
    problem: str = ""


@dataclass(frozen=True)
class Selection:
    """The legs to build, in matrix order, and why each one was selected."""

    entries: tuple[Entry, ...]
    everything: bool
    reason: str
    reasons: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (suffix, ptag) -> why


_NULL_BASE = re.compile(r"^0*$")


def is_null_base(ref: str | None) -> bool:
    """True for a missing base: empty, or all zeros (GitHub's ``before`` of a first push)."""
    return ref is None or bool(_NULL_BASE.match(ref.strip()))


def select_all(matrix: Matrix, reason: str) -> Selection:
    return Selection(entries=tuple(matrix.entries), everything=True, reason=reason,
                     reasons={(e.tag_suffix, e.ptag): reason for e in matrix})


def _fingerprint(entry: Entry) -> tuple[tuple[str, str], ...]:
    """All fields, order-independent: a reordered or reformatted entry compares equal."""
    return tuple(sorted(entry.raw))


def changed_entries(current: Matrix, base: Matrix) -> dict[tuple[str, str], str]:
    """Keys of entries that are new or whose fields differ from ``base``, with the first difference."""
    before = {(e.tag_suffix, e.ptag): e for e in base}
    out: dict[tuple[str, str], str] = {}
    for e in current:
        old = before.get((e.tag_suffix, e.ptag))
        if old is None:
            out[(e.tag_suffix, e.ptag)] = "new matrix entry"
        elif _fingerprint(old) != _fingerprint(e):
            old_fields, new_fields = dict(old.raw), dict(e.raw)
            diff = sorted(k for k in old_fields.keys() | new_fields.keys() if old_fields.get(k) != new_fields.get(k))
            out[(e.tag_suffix, e.ptag)] = "matrix field(s) changed: " + ", ".join(diff)
    return out


def select_legs(matrix: Matrix, changed_files: Iterable[str], *, matrix_path: str,
                base: BaseMatrix | None = None) -> Selection:
    """The legs whose inputs are among ``changed_files`` (repository-relative paths).

    ``matrix_path`` is the matrix file's repository-relative path; when it is among the
    changed files, ``base`` must hold the base revision's matrix, else everything is selected.
    """
    files = sorted({normalize_path(f) for f in changed_files if f.strip()})
    mpath = normalize_path(matrix_path)
    reasons: dict[tuple[str, str], str] = {}

    if mpath in files:
        if base is None or base.matrix is None:
            problem = base.problem if base is not None else "no base revision to compare with"
            return select_all(matrix, f"{mpath} changed and cannot be diffed ({problem})")
        reasons.update(changed_entries(matrix, base.matrix))

    # index: path prefix or file -> entries; a changed file is looked up by itself and its ancestors
    index: dict[str, list[Entry]] = {}
    for e in matrix:
        for p in entry_inputs(e):
            index.setdefault(p, []).append(e)
    matched_rules: dict[SharedInput, str] = {}  # rule -> first changed file it matched
    for f in files:
        parts = f.split("/")
        candidates = [f] + ["/".join(parts[:i]) + "/" for i in range(len(parts) - 1, 0, -1)]
        for c in candidates:
            for e in index.get(c, ()):
                reasons.setdefault((e.tag_suffix, e.ptag), f"{f} changed ({'Dockerfile' if c == f else c})")
        for rule in SHARED_INPUTS:
            if rule not in matched_rules and rule.matches(f):
                matched_rules[rule] = f
    for rule, f in matched_rules.items():
        for e in matrix:
            if rule.applies(e):
                reasons.setdefault((e.tag_suffix, e.ptag), f"shared build input {f} changed ({rule.why})")

    # whole suffixes: a merge needs the digest of every leg of its suffix
    suffixes = {s for s, _ in reasons}
    for e in matrix:
        if e.tag_suffix in suffixes:
            reasons.setdefault((e.tag_suffix, e.ptag), f"sibling leg of {e.tag_suffix} changed")
    selected = tuple(e for e in matrix if (e.tag_suffix, e.ptag) in reasons)
    if len(selected) == len(matrix):
        return Selection(entries=selected, everything=True, reason="every leg's inputs changed", reasons=reasons)
    summary = f"{len(selected)} of {len(matrix)} legs have changed inputs ({len(files)} changed files)"
    return Selection(entries=selected, everything=False, reason=summary, reasons=reasons)


def read_changed_files(path: str | Path) -> list[str]:
    """A newline-separated list of repository-relative paths (blank lines ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--changed-files {path}: no such file; write one path per line "
                        "(e.g. `git diff --name-only BASE...HEAD > changed.txt`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--changed-files {path}: cannot read it: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- git adapter -------------------------------------------------------------------------------

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), capture_output=True, check=False, timeout=120)


def check_ref(ref: str) -> str:
    """Refuse a revision that git could read as an option or a path."""
    if ref.startswith("-") or any(c.isspace() or ord(c) < 32 for c in ref) or ":" in ref:
        raise UserError(f"--base {ref!r} is not a git revision; pass a commit SHA or a ref name such as origin/main")
    return ref


@dataclass(frozen=True)
class Git:
    """``git`` in one repository; ``run`` is injectable for tests."""

    root: Path
    run: Runner = _run

    @classmethod
    def discover(cls, start: Path, run: Runner = _run) -> Git:
        """The repository containing ``start``; UserError when it is not in one."""
        where = start if start.is_dir() else start.parent
        proc = run(["git", "-C", str(where), "rev-parse", "--show-toplevel"])
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip()
            raise UserError(f"--base needs a git checkout, but {where} is not in one ({msg}); "
                            "use --changed-files FILE instead")
        return cls(Path(proc.stdout.decode().strip()), run)

    def changed_files(self, base: str) -> list[str] | str:
        """``git diff --name-only BASE...HEAD`` (renames as delete + add); an error text on failure."""
        proc = self.run(["git", "-C", str(self.root), "diff", "--name-only", "--no-renames", "-z",
                         f"{check_ref(base)}...HEAD", "--"])
        if proc.returncode != 0:
            return proc.stderr.decode("utf-8", "replace").strip() or f"git diff exited {proc.returncode}"
        return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]

    def show(self, base: str, path: str) -> bytes | str:
        """File contents at ``base``; an error text when git cannot show it."""
        proc = self.run(["git", "-C", str(self.root), "show", f"{check_ref(base)}:{path}"])
        if proc.returncode != 0:
            return proc.stderr.decode("utf-8", "replace").strip() or f"git show exited {proc.returncode}"
        return proc.stdout

    def relpath(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            raise UserError(f"{path} is outside the git repository {self.root}; pass a matrix inside it") from None


def base_matrix(git: Git, base: str, matrix_rel: str, family: Family) -> BaseMatrix:
    """The matrix file as it was at ``base``, parsed; the problem text when that fails."""
    data = git.show(base, matrix_rel)
    if isinstance(data, str):
        return BaseMatrix(problem=f"git show {base}:{matrix_rel}: {data}")
    try:
        return BaseMatrix(matrix=parse_matrix(data.decode("utf-8"), f"{matrix_rel}@{base}", family))
    except UnicodeDecodeError:
        return BaseMatrix(problem=f"{matrix_rel}@{base} is not UTF-8")
    except MatrixError as exc:
        return BaseMatrix(problem=f"unparseable at base: {exc}")


def select_from_git(matrix: Matrix, base: str | None, *, matrix_file: Path, run: Runner = _run) -> Selection:
    """Select legs from ``git diff BASE...HEAD``; everything for a missing base or a failed diff."""
    if is_null_base(base):
        return select_all(matrix, "no base revision (first push, tag, schedule or manual run): building everything")
    assert base is not None
    git = Git.discover(matrix_file.resolve(), run)
    rel = git.relpath(matrix_file)
    files = git.changed_files(base)
    if isinstance(files, str):
        return select_all(matrix, f"git diff {base}...HEAD failed ({files}): building everything")
    bm = base_matrix(git, base, rel, matrix.family) if normalize_path(rel) in {normalize_path(f) for f in files} else None
    return select_legs(matrix, files, matrix_path=rel, base=bm)
