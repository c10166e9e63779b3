"""Change detection: which legs a change rebuilds (docs/CHANGES.md is the reference).

A leg is selected when one of its inputs changed between the base revision and HEAD. Its
inputs are derived from what really goes into its image (:mod:`ci.inputs`: the Dockerfile's
reads with the leg's build args, what the build commands use of a whole-repository copy,
the Go import graph), plus what is compared between the two revisions here:

* its matrix entry, field by field (``(tag-suffix, platform-tag)`` identifies an entry; a new
  entry counts as changed, a removed one builds nothing); Darwin entries the same way;
* its Dockerfile: the text of the stages the leg reaches and the global ARGs (an edit of
  another ``BUILDER_TARGET`` stage, or of a comment, does not select it);
* the Makefile targets its build runs at the repository root (``make protogen-go``);
* the ``.dockerignore`` of its context: the files whose inclusion flipped count as changed;
* ``.proto`` files: an additive-only edit (new fields, messages, enum values, RPCs) is not a
  change (:mod:`ci.proto`), unless ``strict_proto``;
* a Go module's ``go.mod``/``go.sum``: only a change of what the leg's packages build with
  (:mod:`ci.changes.goselect`: the changed modules, looked up in the package graph the Go
  toolchain lists; without the toolchain, every leg building in the module);
* workflows: the reusable build workflow selects every leg it builds; a caller workflow
  only where what it passes to the build changed (:mod:`ci.workflowcalls`): a new default
  for a matrix field selects the legs that leave the field empty and whose Dockerfile uses
  that build arg; this project's own build code (``ci/``, ``tasks.py``, ...) every leg.

Everything is selected when the base is missing or all zeros, when ``git diff`` fails, or
when the matrix file changed and its base revision cannot be read; a leg whose inputs cannot
be derived (its Dockerfile is missing or does not parse) is selected by any change. Legs are
selected per tag-suffix: one selected leg selects every leg of its suffix (the merge
publishes one list from all their digests).

:func:`select_legs` is pure (the tree and the base revision's reader are passed in); the
git-backed selection behind ``invoke matrix.github --base`` (``select_from_git``, with the git
and checkout adapters) and the ``--changed-files`` reader are in the verb, :mod:`ci.github_jobs`.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..dockerfile.ignore import Ignore, parse_dockerignore
from ..dockerfile.model import Dockerfile, Resolved, parse_dockerfile
from ..dockerfile.resolve import resolve
from ..errors import MatrixError, UserError
from ..matrix.model import Entry, Matrix, parse_matrix
from ..matrix.naming import Family
from .gomod import ModuleGraphs, Unavailable
from .goselect import GoModRule
from .inputs import Deriver, LegInputs
from .makefile import Makefile, parse_makefile
from .proto import compare_proto
from .tree import Tree, parent_dirs
from .workflowcalls import build_calls, compare_calls

#: This project's own build code: the tool that builds every leg.
PROJECT_CODE: tuple[str, ...] = ("ci/", "tasks.py", "noxfile.py", "pyproject.toml")
#: The reusable workflow that builds one leg, per family (it runs the build: every leg depends on it).
BUILD_WORKFLOWS: Mapping[Family, str] = {
    Family.BACKENDS: ".github/workflows/backend_build.yml",
    Family.SERVER: ".github/workflows/image_build.yml",
}
#: LocalAI's reusable workflow that builds one includeDarwin entry.
DARWIN_BUILD_WORKFLOW = ".github/workflows/backend_build_darwin.yml"
WORKFLOWS_DIR = ".github/workflows/"
#: the platform an includeDarwin entry builds for (its Go packages are listed for it)
DARWIN_PLATFORM = "darwin/arm64"

Key = tuple[str, str]


def normalize_path(path: str) -> str:
    """Repository-relative POSIX path without ``./`` or a leading ``/``; a trailing ``/`` is kept for
    directories."""
    text = path.strip().replace("\\", "/")
    is_dir = text.endswith("/")
    parts = [p for p in PurePosixPath(text).parts if p not in (".", "", "/", "//")]
    norm = "/".join(parts)
    return norm + "/" if is_dir and norm else norm


def arg_name(field_name: str) -> str:
    """A matrix field's build arg: ``amdgpu-targets`` -> ``AMDGPU_TARGETS``."""
    return field_name.upper().replace("-", "_")


def darwin_key(entry: Mapping[str, str]) -> str:
    """An includeDarwin entry's identity, as LocalAI's filter keys it (tag-suffix, platform-tag)."""
    suffix, ptag = entry.get("tag-suffix", ""), entry.get("platform-tag", "")
    return f"{suffix} ({ptag})" if ptag else suffix


# --- the base revision -------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    """The base revision's files, for the comparisons a path alone cannot decide."""

    name: str = ""  # "3f2c1ab", for messages
    reader: Callable[[str], str | None] | None = None  # None: no base to read (a changed-file list)
    problem: str = "no base revision to compare with"

    @property
    def available(self) -> bool:
        return self.reader is not None

    def text(self, path: str) -> str | None:
        return self.reader(path) if self.reader is not None else None

    def why_not(self, path: str) -> str:
        if not self.available:
            return self.problem
        return f"{path} is not readable at the base revision {self.name}"


# --- the result ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """The legs (and Darwin entries) to build, in matrix order, and why each one was selected."""

    entries: tuple[Entry, ...]
    everything: bool
    reason: str
    reasons: Mapping[Key, str] = field(default_factory=dict)  # (suffix, ptag) -> the first reason
    darwin: tuple[Mapping[str, str], ...] = ()
    darwin_reasons: Mapping[str, str] = field(default_factory=dict)  # darwin_key -> the first reason
    notes: tuple[str, ...] = ()
    details: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # leg or Darwin key -> every reason
    inputs: Mapping[str, LegInputs] = field(default_factory=dict)  # leg or Darwin key -> derived inputs
    spared: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # leg or Darwin key -> why a changed
    #                                                  input of it (go.mod/go.sum) did not select it


def leg_key(entry: Entry) -> str:
    return f"{entry.tag_suffix} ({entry.ptag})"


_NULL_BASE = re.compile(r"^0*$")


def is_null_base(ref: str | None) -> bool:
    """True for a missing base: empty, or all zeros (GitHub's ``before`` of a first push)."""
    return ref is None or bool(_NULL_BASE.match(ref.strip()))


def select_all(matrix: Matrix, reason: str, notes: Sequence[str] = ()) -> Selection:
    return Selection(entries=tuple(matrix.entries), everything=True, reason=reason,
                     reasons={(e.tag_suffix, e.ptag): reason for e in matrix},
                     darwin=tuple(matrix.darwin), darwin_reasons={darwin_key(d): reason for d in matrix.darwin},
                     notes=tuple(notes))


def _fingerprint(entry: Entry) -> tuple[tuple[str, str], ...]:
    """All fields, order-independent: a reordered or reformatted entry compares equal."""
    return tuple(sorted(entry.raw))


def changed_entries(current: Matrix, base: Matrix) -> dict[Key, str]:
    """Keys of entries that are new or whose fields differ from ``base``, with the difference."""
    before = {(e.tag_suffix, e.ptag): e for e in base}
    out: dict[Key, str] = {}
    for e in current:
        old = before.get((e.tag_suffix, e.ptag))
        if old is None:
            out[(e.tag_suffix, e.ptag)] = "new matrix entry"
        elif _fingerprint(old) != _fingerprint(e):
            old_fields, new_fields = dict(old.raw), dict(e.raw)
            diff = sorted(k for k in old_fields.keys() | new_fields.keys() if old_fields.get(k) != new_fields.get(k))
            out[(e.tag_suffix, e.ptag)] = "matrix field(s) changed: " + ", ".join(diff)
    return out


def changed_darwin(current: Sequence[Mapping[str, str]], base: Sequence[Mapping[str, str]]) -> dict[str, str]:
    before = {darwin_key(d): d for d in base}
    out: dict[str, str] = {}
    for d in current:
        old = before.get(darwin_key(d))
        if old is None:
            out[darwin_key(d)] = "new includeDarwin entry"
        elif dict(old) != dict(d):
            diff = sorted(k for k in old.keys() | d.keys() if old.get(k) != d.get(k))
            out[darwin_key(d)] = "includeDarwin field(s) changed: " + ", ".join(diff)
    return out


# --- revision comparisons ----------------------------------------------------------------------

def stage_texts(df: Dockerfile, res: Resolved) -> dict[str, str]:
    """What of a Dockerfile a leg builds: parser directives, global ARGs, and each reached
    stage's FROM line and instructions (comments and unreached stages left out)."""
    out = {"parser directives": repr(df.directives),
           "global ARGs": "\n".join(i.original for i in df.preamble)}
    for rs in res.stages:
        st = rs.stage
        out[f"stage {rs.label}"] = "\n".join([f"FROM {st.platform} {st.base} AS {st.name}"]
                                             + [i.original for i in st.instructions])
    out["target"] = res.target
    return out


class _Compare:
    """Comparisons against the base revision, each base file read and parsed once."""

    def __init__(self, tree: Tree, base: Base, deriver: Deriver) -> None:
        self.tree = tree
        self.base = base
        self.deriver = deriver
        self._df: dict[str, Dockerfile | str] = {}
        self._mk: dict[tuple[str, tuple[str, ...]], str] = {}
        self._parsed: dict[str, tuple[Makefile, Makefile]] = {}
        self._flips: dict[str, set[str] | str] = {}

    def dockerfile(self, li: LegInputs, entry: Entry) -> str:
        """Why the leg's reached stages differ at the base ('' when they do not)."""
        if li.resolved is None:
            return "its Dockerfile cannot be resolved"
        path = li.dockerfile
        if path not in self._df:
            text = self.base.text(path)
            if text is None:
                self._df[path] = self.base.why_not(path)
            else:
                try:
                    self._df[path] = parse_dockerfile(text, f"{path}@base")
                except UserError as exc:
                    self._df[path] = f"it does not parse at the base revision ({exc})"
        old = self._df[path]
        if isinstance(old, str):
            return old
        try:
            old_res = resolve(old, dict(li.build_args), target_platform=entry.platform, build_platform=entry.platform)
        except UserError as exc:
            return f"it does not resolve at the base revision ({exc})"
        head_df = self.deriver.dockerfile(path)
        if isinstance(head_df, str):
            return head_df
        head = stage_texts(head_df, li.resolved)
        before = stage_texts(old, old_res)
        diff = [k for k in head.keys() | before.keys() if head.get(k) != before.get(k)]
        return ", ".join(sorted(diff)) + " changed" if diff else ""

    def makefile(self, path: str, targets: tuple[str, ...]) -> str:
        """Why what a ``make targets`` run uses differs at the base ('' when it does not)."""
        if (path, targets) in self._mk:
            return self._mk[(path, targets)]
        head_text = self.tree.text(path)
        old_text = self.base.text(path)
        if old_text is None:
            why = self.base.why_not(path)
        elif head_text is None:
            why = f"{path} cannot be read at HEAD"
        else:
            if path not in self._parsed:
                self._parsed[path] = (parse_makefile(head_text, path), parse_makefile(old_text, path))
            head_mk, old_mk = self._parsed[path]
            head, before = head_mk.fingerprint(targets), old_mk.fingerprint(targets)
            diff = sorted(k for k in head.keys() | before.keys() if head.get(k) != before.get(k))
            why = (", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "") + " changed"
                   if diff else "")
        self._mk[(path, targets)] = why
        return why

    def dockerignore_flips(self, context: str, path: str) -> set[str] | str:
        """Repository files of ``context`` that one revision's .dockerignore excludes and the
        other's does not; a string when the base revision cannot be read."""
        if path not in self._flips:
            old_text = self.base.text(path)
            if old_text is None and self.base.available and path not in self.tree.files:
                old_text = ""
            if old_text is None:
                self._flips[path] = self.base.why_not(path)
            else:
                head_text = self.tree.text(path)
                head = Ignore(parse_dockerignore(head_text or ""))
                before = Ignore(parse_dockerignore(old_text))
                prefix = context + "/" if context else ""
                self._flips[path] = {f for f in self.tree.under(context)
                                     if head.excludes(f[len(prefix):]) != before.excludes(f[len(prefix):])}
        return self._flips[path]


# --- selection ---------------------------------------------------------------------------------

class _Picks:
    def __init__(self) -> None:
        self.legs: dict[str, list[str]] = {}

    def add(self, key: str, why: str) -> None:
        reasons = self.legs.setdefault(key, [])
        if why not in reasons:
            reasons.append(why)


def select_legs(matrix: Matrix, changed_files: Iterable[str], *, matrix_path: str, tree: Tree,
                base: Base | None = None, strict_proto: bool = False, deriver: Deriver | None = None,
                go: ModuleGraphs | Unavailable | None = None) -> Selection:
    """The legs whose inputs are among ``changed_files`` (repository-relative paths), with the
    repository at HEAD as ``tree`` and the base revision's files through ``base`` (``deriver``:
    one already derived over ``tree``, to reuse its work; ``go``: the Go toolchain's answers for
    the go.mod/go.sum rule, :mod:`ci.changes.goselect`, or why there are none)."""
    base = base or Base()
    files = sorted({normalize_path(f).rstrip("/") for f in changed_files if f.strip()})
    notes: list[str] = []
    picks = _Picks()
    everyone_linux: list[str] = []
    everyone_darwin: list[str] = []
    mpath = normalize_path(matrix_path)
    build_wf = BUILD_WORKFLOWS.get(matrix.family, BUILD_WORKFLOWS[Family.BACKENDS])

    # the matrix file: entry by entry
    if mpath in files:
        text = base.text(mpath)
        problem = base.why_not(mpath) if text is None else ""
        old: Matrix | None = None
        if text is not None:
            try:
                old = parse_matrix(text, f"{mpath}@{base.name or 'base'}", matrix.family)
            except MatrixError as exc:
                problem = f"unparseable at base: {exc}"
        if old is None:
            return select_all(matrix, f"{mpath} changed and cannot be diffed ({problem})")
        for (suffix, ptag), why in changed_entries(matrix, old).items():
            picks.add(f"{suffix} ({ptag})", why)
        for dkey, why in changed_darwin(matrix.darwin, old.darwin).items():
            picks.add("darwin " + dkey, why)

    # .proto files: an additive-only edit is no change
    effective = []
    for f in files:
        if f == mpath:
            continue
        if f.endswith(".proto") and not strict_proto:
            cmp = compare_proto(base.text(f), tree.text(f))
            if cmp.additive:
                notes.append(f"{f}: {cmp.describe()}; an image built without the additions behaves the same, "
                             "so no leg is rebuilt for it (--strict-proto rebuilds)")
                continue
        effective.append(f)

    # this project's code and the workflows
    calls_changed: dict[str, tuple[str | None, str | None, str]] = {}  # field -> (before, after, file)
    for f in effective:
        if any(f == p or (p.endswith("/") and f.startswith(p)) for p in PROJECT_CODE):
            everyone_linux.append(f"{f} changed (this project's build code builds every leg)")
        elif f == build_wf:
            everyone_linux.append(f"{f} changed (the workflow that builds every leg)")
        elif f == DARWIN_BUILD_WORKFLOW:
            everyone_darwin.append(f"{f} changed (the workflow that builds every includeDarwin entry)")
        elif f.startswith(WORKFLOWS_DIR) and f.endswith((".yml", ".yaml")):
            for target, bucket in ((build_wf, everyone_linux), (DARWIN_BUILD_WORKFLOW, everyone_darwin)):
                head = build_calls(tree.text(f), target)
                if head is None and f not in tree.files:
                    continue  # deleted: it builds nothing any more
                if head == ():
                    continue  # it does not call the build
                before = build_calls(base.text(f), target) if base.available else None
                change = compare_calls(before, head)
                if change.unreadable:
                    bucket.append(f"{f} changed and what it passes to {target} cannot be compared "
                                  f"({change.unreadable if base.available else base.problem})")
                for what in change.other:
                    bucket.append(f"{f} changed: {what} to {target}")
                for fld, old_v, new_v in change.defaults:
                    if target == build_wf:
                        calls_changed[fld] = (old_v, new_v, f)
                    else:  # the Darwin build's inputs are not build args: every Darwin entry
                        bucket.append(f"{f} changed the default {fld} it passes to {target}")

    effective_set = set(effective)
    deriver = deriver if deriver is not None and deriver.tree is tree else Deriver(tree)
    compare = _Compare(tree, base, deriver)
    inputs: dict[str, LegInputs] = {}
    ignore_changes = {f for f in effective if posixpath.basename(f) == ".dockerignore"}

    # Linux legs: derive every leg, then look each changed file up in an index of all their inputs
    derived: list[tuple[Entry, LegInputs]] = []
    for e in matrix:
        if everyone_linux:
            for why in everyone_linux:
                picks.add(leg_key(e), why)
            continue
        li = deriver.leg(e)
        inputs[leg_key(e)] = li
        derived.append((e, li))
    derived_darwin: list[tuple[str, LegInputs]] = []
    for d in matrix.darwin:
        key = "darwin " + darwin_key(d)
        if everyone_darwin:
            for why in everyone_darwin:
                picks.add(key, why)
            continue
        li = deriver.darwin(d)
        inputs[key] = li
        derived_darwin.append((key, li))
    # the go.mod/go.sum rule lists one package graph per module, for every leg using it
    gorule = GoModRule(tree, base.text, base_problem="" if base.available else base.problem, graphs=go)
    spared: dict[str, list[str]] = {}
    for e, li in derived:
        for use in li.go.values():
            gorule.register(use, str(e.platform))
    for _, li in derived_darwin:
        for use in li.go.values():
            gorule.register(use, DARWIN_PLATFORM)
    hits = _match_all([li for _, li in derived], effective)
    for e, li in derived:
        key = leg_key(e)
        if not _pick_by_files(picks, key, li, hits, bool(effective)):
            continue
        _pick_by_go_modules(picks, spared, key, li, effective_set, gorule)
        if li.dockerfile in effective_set:
            diff = compare.dockerfile(li, e)
            if diff:
                picks.add(key, f"{li.dockerfile} changed ({diff})")
        _pick_by_make_targets(picks, key, li, effective_set, compare)
        ign = li.ignore.source or posixpath.join(li.context, ".dockerignore").lstrip("/")
        if ign in ignore_changes:
            flips = compare.dockerignore_flips(li.context, ign)
            if isinstance(flips, str):
                picks.add(key, f"{ign} changed and cannot be compared ({flips})")
            else:
                for f in sorted(flips):
                    m = li.match(f, ignoring=False)
                    if m is not None:
                        rel = f[len(li.context) + 1:] if li.context else f
                        now = "left out of" if li.ignore.excludes(rel) else "part of"
                        picks.add(key, f"{ign} changed: {f} is now {now} the build context ({m[0]} <- {m[1].text()})")
                        break
        for fld, (old_v, new_v, wf) in calls_changed.items():
            if not e.get(fld):
                li2 = deriver.leg(e, {arg_name(fld): new_v or old_v or ""})
                if arg_name(fld) in li2.consumed_args:
                    picks.add(key, f"{wf} changed the default {fld} ({old_v!r} -> {new_v!r}), which this leg "
                                   f"builds with (build arg {arg_name(fld)})")

    # Darwin entries
    hits = _match_all([li for _, li in derived_darwin], effective)
    for key, li in derived_darwin:
        if _pick_by_files(picks, key, li, hits, bool(effective)):
            _pick_by_make_targets(picks, key, li, effective_set, compare)
            _pick_by_go_modules(picks, spared, key, li, effective_set, gorule)
    notes.extend(gorule.notes)

    # whole suffixes: a merge needs the digest of every leg of its suffix
    selected_suffixes = {e.tag_suffix for e in matrix if leg_key(e) in picks.legs}
    for e in matrix:
        if e.tag_suffix in selected_suffixes and leg_key(e) not in picks.legs:
            picks.add(leg_key(e), f"sibling leg of {e.tag_suffix} changed")
    for leg_inputs in inputs.values():
        if leg_inputs.notes:
            notes.extend(f"{leg_inputs.label}: {n}" for n in leg_inputs.notes[:1])

    chosen = tuple(e for e in matrix if leg_key(e) in picks.legs)
    darwin = tuple(d for d in matrix.darwin if "darwin " + darwin_key(d) in picks.legs)
    reasons = {(e.tag_suffix, e.ptag): picks.legs[leg_key(e)][0] for e in chosen}
    dreasons = {darwin_key(d): picks.legs["darwin " + darwin_key(d)][0] for d in darwin}
    details = {k: tuple(v) for k, v in picks.legs.items()}
    spared_out = {k: tuple(v) for k, v in spared.items() if k not in picks.legs}
    total = len(matrix) + len(matrix.darwin)
    count = len(chosen) + len(darwin)
    if count == total and total:
        return Selection(entries=chosen, everything=True, reason="every leg's inputs changed", reasons=reasons,
                         darwin=darwin, darwin_reasons=dreasons, notes=tuple(notes), details=details, inputs=inputs,
                         spared=spared_out)
    summary = f"{len(chosen)} of {len(matrix)} legs have changed inputs ({len(files)} changed files)"
    if matrix.darwin:
        summary += f"; {len(darwin)} of {len(matrix.darwin)} includeDarwin entries"
    return Selection(entries=chosen, everything=False, reason=summary, reasons=reasons, darwin=darwin,
                     darwin_reasons=dreasons, notes=tuple(notes), details=details, inputs=inputs, spared=spared_out)


def _pick_by_files(picks: _Picks, key: str, li: LegInputs, hits: Mapping[int, Sequence[tuple[str, str]]],
                   any_change: bool) -> bool:
    """Pick ``key`` for every changed file among its inputs (but the go.mod/go.sum the module rule
    decides); False when its inputs are unknown (then it is picked on any change and nothing else
    needs a look)."""
    if li.unknown:
        if any_change:
            picks.add(key, f"its inputs cannot be derived ({li.unknown}): selected on any change")
        return False
    by_rule = {f for use in li.go.values() for f in use.files}
    for f, why in hits.get(id(li.files), ()):
        if f not in by_rule:
            picks.add(key, why)
    return True


def _pick_by_go_modules(picks: _Picks, spared: dict[str, list[str]], key: str, li: LegInputs, changed: set[str],
                        rule: GoModRule) -> None:
    """Pick ``key`` when a changed go.mod/go.sum changes what its Go packages build with (else say why not)."""
    for use in li.go.values():
        if not any(f in changed for f in use.files):
            continue
        verdict = rule.verdict(use, changed)
        for why in verdict.selected:
            picks.add(key, why)
        for why in verdict.spared:
            if why not in spared.setdefault(key, []):
                spared[key].append(why)


def _pick_by_make_targets(picks: _Picks, key: str, li: LegInputs, changed: set[str], compare: _Compare) -> None:
    """Pick ``key`` when a Makefile changed in what the targets its Dockerfile runs use."""
    for mt in li.make_targets:
        if mt.makefile in changed:
            diff = compare.makefile(mt.makefile, mt.targets)
            if diff:
                picks.add(key, f"{mt.makefile} changed: what `make {' '.join(mt.targets)}` uses ({diff}) "
                               f"<- {mt.via.text()}")


def _match_all(legs: Sequence[LegInputs], files: Sequence[str]) -> dict[int, list[tuple[str, str]]]:
    """For each group of legs sharing one derivation (keyed by ``id(inputs.files)``), the reasons
    the changed files give. An index of every input path keeps this linear in the changed files."""
    groups: dict[int, LegInputs] = {}
    for li in legs:
        if not li.unknown:
            groups.setdefault(id(li.files), li)
    exact: dict[str, list[int]] = {}
    below: dict[str, list[int]] = {}
    packages: dict[str, list[int]] = {}
    for gid, li in groups.items():
        for p in li.files:
            exact.setdefault(p, []).append(gid)
        for d in li.dirs:
            below.setdefault(d, []).append(gid)
        for d in li.packages:
            packages.setdefault(d, []).append(gid)
    out: dict[int, list[tuple[str, str]]] = {}
    for f in files:
        cands = set(exact.get(f, ()))
        for d in parent_dirs(f) + [""]:
            cands.update(below.get(d, ()))
        cands.update(packages.get(posixpath.dirname(f), ()))
        for gid in cands:
            m = groups[gid].match(f)
            if m is not None:
                out.setdefault(gid, []).append((f, _reason(f, m[0], m[1].text())))
    return out


def _reason(changed: str, container: str, via: str) -> str:
    inner = "" if container == changed else f"{container if container != '.' else 'the build context'} <- "
    return f"{changed} changed: {inner}{via}"
