"""GitHub Actions job matrices from the build matrix (pure; the verb that reads the files and git and
writes the outputs is :mod:`ci.github_jobs`).

Classes: a leg is **multi-arch** when its tag-suffix has more than one leg (every leg has a
platform tag: ``platform-tag`` or the one derived from ``platforms``), **single-arch**
otherwise. Each merge job ``needs:`` only its own class, so slow single-arch builds never
hold a multi-arch merge back long enough for a registry to reap its untagged digests.

The single-arch class is cut into N contiguous, balanced shards (sizes differ by at most
one); GitHub never starts a matrix of more than 256 jobs (the run hangs), so a shard or a
class over the limit is refused with the number of shards it needs.

Outputs (``invoke matrix.github``; compact JSON values):

* ``multi-arch-matrix`` / ``multi-arch-merge-matrix`` / ``has-multi-arch``
* ``single-arch-<i>-matrix`` / ``single-arch-<i>-merge-matrix`` / ``has-single-arch-<i>`` for i = 1..N
* ``<class>-merge-suffixes`` (a JSON list of the class's tag-suffixes) and ``<class>-merge-pattern``
  (:func:`ci.naming.class_artifact_pattern`: one download pattern for exactly those suffixes'
  artifacts): what the class's one merge job (``merge --all --suffixes``) needs
* ``has-single-arch``, ``has-builds``, ``legs``, ``suffixes``, ``shards``
* ``darwin-matrix`` / ``has-darwin``: the selected ``includeDarwin:`` entries (their fields as
  written), for a macOS build job (LocalAI's ``matrix-darwin``); ``darwin-merge-suffixes`` /
  ``darwin-merge-pattern``: their merge class (each Darwin entry is one leg, published from its
  image archive with ``--from-oci``); ``run-all``: everything selected
* ``<backend>``: ``true``/``false`` for every backend of the matrix (Linux and Darwin), true when
  one of its legs or Darwin entries is selected (LocalAI's per-backend outputs)

A build element holds every field a leg can have for its family (kebab-case, ``''`` when the
entry leaves it out), ``platform-tag`` (the effective value) and ``artifact-name``
(:func:`ci.naming.artifact_name`). A merge element holds ``tag-suffix``, ``tag-latest``
(every leg must agree), ``artifact-pattern`` (:func:`ci.naming.artifact_pattern`, which
cannot match another suffix's artifacts), ``platforms`` and ``legs``.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..changes.inputs import Deriver
from ..changes.select import Selection, darwin_key, leg_key
from ..changes.tree import Tree
from ..errors import UserError
from ..matrix.model import Entry, Matrix, agreed_tag_latest, known_keys
from ..matrix.naming import Family, artifact_pattern, class_artifact_pattern
from ..output.escape import markdown_text
from ..output.markdown import md_table

GITHUB_MATRIX_LIMIT = 256
DEFAULT_SHARDS = 4
MAX_OUTPUT_BYTES = 1024 * 1024  # GitHub keeps at most 1 MB of outputs per job
EXTRA_FIELDS = ("platform-tag", "artifact-name")
EXPLAIN_REASONS = 8  # reasons --explain prints per leg


def element_fields(family: Family) -> tuple[str, ...]:
    """The keys of every build element of ``family``, in a stable order."""
    return tuple(dict.fromkeys(known_keys(family) + EXTRA_FIELDS))


def build_element(entry: Entry) -> dict[str, str]:
    """One build-matrix element: everything the build job passes to the build task."""
    el = {k: entry.get(k) for k in known_keys(entry.family)}
    el["platform-tag"] = entry.ptag
    el["artifact-name"] = entry.key.artifact
    return el


def check_leg_fields(entry: Entry, given: Mapping[str, str | None]) -> None:
    """Refuse a build whose matrix-element fields (as passed by the workflow) differ from the leg.

    ``given`` maps kebab-case keys to the values the workflow passed (None = not passed).
    For the build tasks: the leg they resolve from the matrix must be the leg the job planned.
    """
    expected = build_element(entry)
    bad = [f"{k}: workflow passed {v!r}, matrix says {expected.get(k, '')!r}"
           for k, v in given.items() if v is not None and v != expected.get(k, "")]
    if bad:
        raise UserError(f"{entry.where}: leg {entry.label()} does not match its build-matrix element ("
                        + "; ".join(bad) + "); regenerate the matrix (invoke matrix.github) from the same commit")


def split_classes(entries: Sequence[Entry], matrix: Matrix) -> tuple[list[Entry], list[Entry]]:
    """(multi-arch, single-arch) legs of ``entries``, each in matrix order; classes come from ``matrix``."""
    counts = Counter(e.tag_suffix for e in matrix)
    multi = [e for e in entries if counts[e.tag_suffix] > 1]
    single = [e for e in entries if counts[e.tag_suffix] <= 1]
    return multi, single


def shards_needed(n: int) -> int:
    return max(1, math.ceil(n / GITHUB_MATRIX_LIMIT))


def shard(legs: Sequence[Entry], n: int) -> list[list[Entry]]:
    """``n`` contiguous shards whose sizes differ by at most one; UserError if one exceeds 256 jobs."""
    if n < 1:
        raise UserError(f"--shards {n}: need at least 1 shard")
    size, extra = divmod(len(legs), n)
    if size + (1 if extra else 0) > GITHUB_MATRIX_LIMIT:
        need = shards_needed(len(legs))
        raise UserError(
            f"the single-arch class has {len(legs)} legs: {n} shard(s) would hold up to {size + (1 if extra else 0)} "
            f"jobs, over GitHub's limit of {GITHUB_MATRIX_LIMIT} jobs per matrix (a larger matrix never starts; "
            f"the run hangs). {need} shards are needed: pass --shards {need} and add the jobs "
            f"build-single-arch-N/merge-single-arch-N for N up to {need} to the workflows")
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(list(legs[start:end]))
        start = end
    return out


def merge_elements(legs: Sequence[Entry]) -> list[dict[str, str]]:
    """One merge element per tag-suffix of ``legs`` (first-appearance order).

    MatrixError (exit 2) when the legs of one suffix disagree on ``tag-latest``.
    """
    by_suffix: dict[str, list[Entry]] = {}
    for e in legs:
        by_suffix.setdefault(e.tag_suffix, []).append(e)
    out = []
    for suffix, group in by_suffix.items():
        out.append({
            "tag-suffix": suffix,
            "tag-latest": agreed_tag_latest(group, f"tag-suffix {suffix!r}"),
            "artifact-pattern": artifact_pattern(group[0].family, suffix),
            "platforms": ",".join(str(p) for e in group for p in e.platforms),
            "legs": str(len(group)),
        })
    return out


@dataclass(frozen=True)
class JobPlan:
    """The job matrices of one run."""

    family: Family
    selection: Selection
    multi: tuple[Entry, ...]
    shards: tuple[tuple[Entry, ...], ...]
    multi_merge: tuple[dict[str, str], ...]
    shard_merges: tuple[tuple[dict[str, str], ...], ...]
    darwin: tuple[Mapping[str, str], ...] = ()
    backends: tuple[tuple[str, bool], ...] = ()  # every backend of the matrix -> selected

    @property
    def legs(self) -> int:
        return len(self.multi) + sum(len(s) for s in self.shards)

    @property
    def suffixes(self) -> int:
        return len(self.multi_merge) + sum(len(m) for m in self.shard_merges)


def plan(matrix: Matrix, selection: Selection, shards: int = DEFAULT_SHARDS) -> JobPlan:
    """Split, shard and build the merge matrices of the selected legs (pure)."""
    multi_platform = [e for e in matrix.entries if e.multi_platform]
    if multi_platform:
        where = ", ".join(f"{e.tag_suffix or repr('')} ({e.where})" for e in multi_platform[:5])
        raise UserError(
            f"{len(multi_platform)} multi-platform entries ({where}) would build under QEMU in one job, and the "
            "build task refuses them; run `invoke matrix.split --in-place` to give each platform its own leg")
    merge_elements(matrix.entries)  # tag-latest must agree in the whole matrix, selected or not
    multi, single = split_classes(selection.entries, matrix)
    if len(multi) > GITHUB_MATRIX_LIMIT:
        raise UserError(
            f"the multi-arch class has {len(multi)} legs, over GitHub's limit of {GITHUB_MATRIX_LIMIT} jobs per "
            f"matrix (a larger matrix never starts; the run hangs); it would need {shards_needed(len(multi))} "
            "matrices, and multi-arch legs are not sharded: build fewer legs per run (--changed-files/--base) "
            "or split the multi-arch build job in the workflow")
    parts = shard(single, shards)
    if len(selection.darwin) > GITHUB_MATRIX_LIMIT:
        raise UserError(
            f"{len(selection.darwin)} includeDarwin entries are selected, over GitHub's limit of {GITHUB_MATRIX_LIMIT} "
            "jobs per matrix (a larger matrix never starts; the run hangs); build fewer per run (--changed-files/--base)")
    return JobPlan(
        family=matrix.family, selection=selection, multi=tuple(multi),
        shards=tuple(tuple(p) for p in parts),
        multi_merge=tuple(merge_elements(multi)),
        shard_merges=tuple(tuple(merge_elements(p)) for p in parts),
        darwin=tuple(selection.darwin), backends=backend_flags(matrix, selection, shards),
    )


_OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def reserved_outputs(shards: int) -> set[str]:
    names = {"multi-arch-matrix", "multi-arch-merge-matrix", "has-multi-arch", "has-single-arch", "has-builds",
             "legs", "suffixes", "shards", "darwin-matrix", "has-darwin", "run-all", "multi-arch-merge-suffixes",
             "multi-arch-merge-pattern", "darwin-merge-suffixes", "darwin-merge-pattern"}
    for i in range(1, shards + 1):
        names |= {f"single-arch-{i}-matrix", f"single-arch-{i}-merge-matrix", f"has-single-arch-{i}",
                  f"single-arch-{i}-merge-suffixes", f"single-arch-{i}-merge-pattern"}
    return names


def backend_flags(matrix: Matrix, selection: Selection, shards: int) -> tuple[tuple[str, bool], ...]:
    """``(backend, selected)`` for every backend of the matrix, Linux entries first, each once.

    UserError (exit 2) for a backend name that cannot be a step output, or that is one of
    the other outputs' names.
    """
    names: dict[str, str] = {}
    for e in matrix:
        if e.backend:
            names.setdefault(e.backend, e.where)
    for d in matrix.darwin:
        if d.get("backend"):
            names.setdefault(d["backend"], f"{matrix.path} includeDarwin tag-suffix {d.get('tag-suffix', '')!r}")
    reserved = reserved_outputs(shards)
    for name, where in names.items():
        if not _OUTPUT_NAME.match(name):
            raise UserError(f"{where}: backend {name!r} cannot be a step output name (the per-backend "
                            "<backend>=true outputs); use letters, digits, '.', '_' and '-'")
        if name in reserved:
            raise UserError(f"{where}: backend {name!r} has the name of another output of invoke matrix.github; "
                            "rename the backend")
    chosen = {e.backend for e in selection.entries} | {d.get("backend", "") for d in selection.darwin}
    return tuple((n, n in chosen) for n in names)


def class_merge_outputs(name: str, family: Family, merges: Sequence[Mapping[str, str]]) -> dict[str, object]:
    """``<name>-merge-suffixes`` and ``<name>-merge-pattern`` of one class ('' pattern when it has none)."""
    suffixes = [m["tag-suffix"] for m in merges]
    return {f"{name}-merge-suffixes": suffixes,
            f"{name}-merge-pattern": class_artifact_pattern(family, suffixes) if suffixes else ""}


def outputs(p: JobPlan) -> dict[str, object]:
    """Step outputs of a plan (values: JSON-able objects, booleans, strings)."""
    out: dict[str, object] = {
        "multi-arch-matrix": {"include": [build_element(e) for e in p.multi]},
        "multi-arch-merge-matrix": {"include": list(p.multi_merge)},
        "has-multi-arch": bool(p.multi),
        **class_merge_outputs("multi-arch", p.family, p.multi_merge),
    }
    for i, (legs, merges) in enumerate(zip(p.shards, p.shard_merges), start=1):
        out[f"single-arch-{i}-matrix"] = {"include": [build_element(e) for e in legs]}
        out[f"single-arch-{i}-merge-matrix"] = {"include": list(merges)}
        out[f"has-single-arch-{i}"] = bool(legs)
        out.update(class_merge_outputs(f"single-arch-{i}", p.family, merges))
    out["has-single-arch"] = any(p.shards)
    out["has-builds"] = p.legs > 0
    out["legs"] = str(p.legs)
    out["suffixes"] = str(p.suffixes)
    out["shards"] = str(len(p.shards))
    out["darwin-matrix"] = {"include": [dict(d) for d in p.darwin]}
    out["has-darwin"] = bool(p.darwin)
    # the Darwin legs are merged like any single-arch class (published with --from-oci by their jobs)
    out.update(class_merge_outputs("darwin", p.family, [{"tag-suffix": d.get("tag-suffix", "")} for d in p.darwin]))
    out["run-all"] = p.selection.everything
    for name, chosen in p.backends:
        out[name] = chosen
    size = sum(len(k) + len(v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))) for k, v in out.items())
    if size > MAX_OUTPUT_BYTES:
        raise UserError(f"the job matrices take {size} bytes, over GitHub's {MAX_OUTPUT_BYTES} byte limit for a "
                        "job's outputs; build fewer legs per run (--changed-files/--base)")
    return out


def summary(p: JobPlan, seconds: float) -> str:
    """A Markdown block for ``$GITHUB_STEP_SUMMARY``."""
    rows = [["multi-arch", "-", str(len(p.multi)), str(len(p.multi_merge))]]
    rows += [["single-arch", str(i), str(len(s)), str(len(m))]
             for i, (s, m) in enumerate(zip(p.shards, p.shard_merges), start=1)]
    if p.darwin:
        rows.append(["includeDarwin", "-", str(len(p.darwin)), "-"])
    head = (f"### Build matrices ({p.family})\n\n{markdown_text(p.selection.reason)}; "
            f"{p.legs} legs, {p.suffixes} suffixes to merge; planned in {seconds:.2f} s\n\n")
    notes = "".join(f"\n- {markdown_text(n)}" for n in p.selection.notes)
    return head + md_table(["class", "shard", "legs", "merges"], rows) + (f"\nNotes:{notes}\n" if notes else "")


def describe(p: JobPlan, seconds: float) -> str:
    """One line for the terminal."""
    sizes = ",".join(str(len(s)) for s in p.shards)
    darwin = f", {len(p.darwin)} includeDarwin entries" if p.darwin else ""
    return (f"{p.selection.reason}: {p.legs} legs ({len(p.multi)} multi-arch, {p.legs - len(p.multi)} single-arch "
            f"in {len(p.shards)} shards [{sizes}]), {p.suffixes} merges "
            f"({len(p.multi_merge)} multi-arch){darwin}; {seconds:.2f} s")


def explain(p: JobPlan, matrix: Matrix, suffixes: Sequence[str], *, tree: Callable[[], Tree]) -> str:
    """For every leg (and includeDarwin entry) of ``suffixes``: selected or not, each reason (the
    changed file and the chain through which it reaches the leg), and the leg's inputs.

    ``tree`` gives the repository's files, called only when a leg's inputs are not in the
    selection already (everything was selected without deriving them)."""
    known = set(matrix.suffixes()) | {d.get("tag-suffix", "") for d in matrix.darwin}
    for s in suffixes:
        if s not in known:
            close = difflib.get_close_matches(s, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"--explain {s!r}: no leg of {matrix.path} has that tag-suffix{hint}")
    sel = p.selection
    chosen = {leg_key(e) for e in sel.entries} | {"darwin " + darwin_key(d) for d in sel.darwin}
    deriver: Deriver | None = None
    lines: list[str] = []
    targets: list[tuple[str, str, Entry | None, Mapping[str, str] | None]]
    targets = [(leg_key(e), e.where, e, None) for e in matrix if e.tag_suffix in suffixes]
    targets += [("darwin " + darwin_key(d), f"{matrix.path} includeDarwin", None, d)
                for d in matrix.darwin if d.get("tag-suffix", "") in suffixes]
    for key, where, entry, darwin in targets:
        reasons = sel.details.get(key) or ((sel.reasons.get((entry.tag_suffix, entry.ptag), sel.reason),)
                                           if entry is not None and key in chosen
                                           else (sel.darwin_reasons.get(darwin_key(darwin), sel.reason),)
                                           if darwin is not None and key in chosen else ())
        shown = key if not key.startswith(" (") else "''" + key  # the server's core image: suffix ''
        lines.append(f"{shown} [{where}]: {'selected' if key in chosen else 'not selected'}")
        for why in reasons[:EXPLAIN_REASONS]:
            lines.append(f"  because {why}")
        if len(reasons) > EXPLAIN_REASONS:
            lines.append(f"  and {len(reasons) - EXPLAIN_REASONS} more changed files")
        spared = sel.spared.get(key, ())
        for why in spared:
            lines.append(f"  left out: {why}")
        if key not in chosen and not spared:
            lines.append("  no changed file is one of its inputs" if not sel.everything else "")
        li = sel.inputs.get(key)
        if li is None:
            if deriver is None:
                deriver = Deriver(tree())
            li = deriver.leg(entry) if entry is not None else deriver.darwin(darwin or {})
        if li.unknown:
            lines.append(f"  its inputs cannot be derived: {li.unknown}")
            continue
        summary = li.summary()
        lines.append(f"  inputs ({len(summary)}):")
        lines.extend(f"    {line}" for line in summary)
    for note in sel.notes:
        lines.append(f"note: {note}")
    return "\n".join(line for line in lines if line) + "\n"
