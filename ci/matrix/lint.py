"""Policy rules for a backend matrix (pure): each finding has a rule id, the entry, a message and a fix.

Rules (ids are stable; ``--ignore`` takes them):

- ``multi-platform``: one entry builds several platforms (emulated under QEMU);
- ``retired-runner``: an entry on a retired runner (default ``bigger-runner``, ``arc-runner-set``);
- ``arch-runner-mismatch``: a single-platform leg on a runner of the other architecture;
- ``missing-sibling``: a per-arch leg (one with ``platform-tag``) of a suffix that has no leg of
  the paired architecture (amd64 <-> arm64);
- ``sibling-disagrees``: legs of one suffix that differ in a build input other than
  ``platforms``, ``platform-tag`` and ``runs-on`` (after writing the leg's own platform tag as
  ``<platform-tag>``, so ``base-grpc-amd64`` / ``base-grpc-arm64`` agree);
- ``tag-latest-disagrees``: legs of one suffix that disagree on ``tag-latest``;
- ``artifact-glob-overmatch``: a pair of suffixes where one suffix's digest download pattern picks
  up the other suffix's artifacts, as the repository's workflows name and download them
  (:mod:`ci.matrix.workflownames`: LocalAI PR #9730's ``digests<suffix>-<ptag>`` downloaded with
  ``digests<suffix>-*`` does; LocalAI's later ``digests<suffix>--<ptag>`` and this project's names
  do not). Without workflows that upload and download digest artifacts the rule does not apply,
  and the result says so.

Runner exceptions: an entry may record why it stays on a runner the policy would move it off,
with a comment inside the entry (any of its lines, e.g. above or beside ``runs-on``)::

    # localai-ci: allow-runner bigger-runner (cold CUDA builds take 5-6 hours on ubuntu-latest)

The runner named must be the entry's ``runs-on`` and the reason (in parentheses) is required.
``retired-runner`` and ``arch-runner-mismatch`` then report nothing for the entry, and
``invoke matrix.split`` leaves it where it is. :func:`runner_exception` is the one check both
use (the markers today; a per-repository settings file can feed the same mapping). A malformed
marker, an unknown ``localai-ci:`` directive or a marker outside every entry is bad input
(exit 2, with the line and the form to write).

Why ``platform-tag`` marks a sibling: LocalAI writes ``platform-tag`` only on legs that are merged
into one multi-arch list per suffix; an entry without it is a single-arch image published as is
(e.g. CUDA amd64-only backends). So a leg with ``platform-tag`` whose paired-arch leg is missing
would publish a "multi-arch" list with one architecture.
"""
from __future__ import annotations

import difflib
import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import MatrixError, UserError
from ..oci.platforms import Arch, RunnerPolicy
from ..output.escape import WorkflowCommand, markdown_text, terminal_text, workflow_command
from ..output.markdown import Cell, md_table
from .model import Entry, Matrix, parse_matrix, read_matrix_text, tag_latest_dissenters
from .naming import Family
from .workflownames import (
    ArtifactNaming,
    Evaluator,
    Leg,
    Template,
    Unevaluable,
    artifact_templates,
    is_over_match,
    read_workflows,
)

RULES: dict[str, str] = {
    "multi-platform": "one entry builds several platforms in one job (emulated under QEMU)",
    "retired-runner": "an entry runs on a retired runner",
    "arch-runner-mismatch": "a leg runs on a runner of another architecture",
    "missing-sibling": "a per-arch leg (platform-tag set) has no leg of the paired architecture",
    "sibling-disagrees": "legs of one suffix differ in a build input other than platform and runner",
    "tag-latest-disagrees": "legs of one suffix disagree on tag-latest",
    "artifact-glob-overmatch": "one suffix's digest download pattern picks up another suffix's artifacts "
                               "(as the repository's workflows name them)",
}

PAIRED: dict[Arch, Arch] = {Arch.AMD64: Arch.ARM64, Arch.ARM64: Arch.AMD64}
# fields that may differ between the legs of one suffix (tag-latest has its own rule)
PER_LEG_FIELDS = frozenset({"platforms", "platform-tag", "runs-on", "tag-latest"})
_RUNNER_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class Finding:
    """One rule violation, located at one entry."""

    rule: str
    source: str
    line: int
    suffix: str
    ptag: str
    message: str
    fix: str
    related: str = ""  # the other suffix of an artifact-glob-overmatch pair
    reference: str = ""  # a consumer reference (ci.references), as written in its file

    def text(self) -> str:
        """``file:line: rule-id: suffix [ptag]: message (fix: ...)`` (a reference instead of suffix [ptag])."""
        what = self.reference or f"{self.suffix or repr('')} [{self.ptag}]"
        return f"{self.source}:{self.line}: {self.rule}: {what}: {self.message} (fix: {self.fix})"

    def annotation(self) -> WorkflowCommand:
        """The finding as a GitHub ``::warning`` on its file and line (escaped)."""
        what = self.reference or f"{self.suffix or repr('')} [{self.ptag}]"
        return workflow_command("warning", f"{what}: {self.message} (fix: {self.fix})", file=self.source,
                                line=self.line, title=f"matrix.lint {self.rule}")


@dataclass(frozen=True)
class LintResult:
    source: str
    entries: int
    rules: tuple[str, ...]
    findings: tuple[Finding, ...]
    counted: str = "entries"  # what ``entries`` counts ("references" for ci.references)
    notes: tuple[str, ...] = ()  # what was not checked, and why (a rule that does not apply)

    @property
    def exit_code(self) -> int:
        return 1 if self.findings else 0

    def counts(self) -> dict[str, int]:
        """Findings per rule, for every rule that was checked (zeros included)."""
        out = dict.fromkeys(self.rules, 0)
        for f in self.findings:
            out[f.rule] += 1
        return out

    def summary(self) -> str:
        if not self.findings:
            return f"{self.source}: clean ({self.entries} {self.counted}, {len(self.rules)} rules checked)"
        per = ", ".join(f"{r} {n}" for r, n in self.counts().items() if n)
        n = len(self.findings)
        return f"{self.source}: {n} finding{'s' if n != 1 else ''} in {self.entries} {self.counted} ({per})"

    def render_text(self) -> str:
        """One line per finding, the notes, the summary line (control characters shown escaped)."""
        lines = [f.text() for f in self.findings] + [f"note: {n}" for n in self.notes] + [self.summary()]
        return terminal_text("\n".join(lines))

    def annotations(self) -> list[WorkflowCommand]:
        """One ``::warning file=...,line=...::`` workflow command per finding (shown on the file in a run)."""
        return [f.annotation() for f in self.findings]

    def render_github(self) -> str:
        """:meth:`annotations`, one per line."""
        return "\n".join(self.annotations())

    def render_markdown(self) -> str:
        """The job summary: the counts, a table of the findings, the notes."""
        head = f"### matrix.lint: {markdown_text(self.summary())}\n\n"
        rows: list[list[Cell]] = [[f.rule, f"{f.source}:{f.line}", f.reference or f"{f.suffix} [{f.ptag}]", f.message,
                                   f.fix] for f in self.findings]
        table = md_table(["rule", "where", "leg", "finding", "fix"], rows) if rows else ""
        notes = "".join(f"- {markdown_text(n)}\n" for n in self.notes)
        return head + table + (f"\nNot checked:\n{notes}" if notes else "")

    def render_json(self) -> str:
        return json.dumps({
            "matrix": self.source,
            "entries": self.entries,
            "rules": list(self.rules),
            "counts": self.counts(),
            "findings": [asdict(f) for f in self.findings],
            "notes": list(self.notes),
        }, indent=2)


def runner_policy(*, runner_amd64: str | None = None, runner_arm64: str | None = None,
                  retired: str | Iterable[str] | None = None) -> RunnerPolicy:
    """A RunnerPolicy from task options; ``retired`` is a comma list or names (None = default list)."""
    base = RunnerPolicy()
    native = dict(base.native)
    for arch, name, flag in ((Arch.AMD64, runner_amd64, "--runner-amd64"), (Arch.ARM64, runner_arm64, "--runner-arm64")):
        if name is not None:
            if not _RUNNER_RE.match(name):
                raise UserError(f"{flag} {name!r} is not a runner label: use 1-100 characters of [A-Za-z0-9._-]")
            native[arch] = name
    if retired is None:
        names = base.retired
    else:
        items = retired.split(",") if isinstance(retired, str) else list(retired)
        names = tuple(n.strip() for n in items if n.strip())
        for n in names:
            if not _RUNNER_RE.match(n):
                raise UserError(f"--retired {n!r} is not a runner label: use [A-Za-z0-9._-], comma-separated")
    for arch, name in native.items():
        if name in names:
            raise UserError(f"runner {name!r} is both the native {arch} runner and retired; drop it from --retired")
    return RunnerPolicy(native=native, retired=names, extra=dict(base.extra))


def check_rule_ids(ids: Iterable[str], known: Iterable[str] = ()) -> tuple[str, ...]:
    """Validate rule ids given by a user (e.g. ``--ignore``; ``known``: more valid ids, such as
    ``ci.references.REFERENCE_RULES``); UserError with did-you-mean."""
    valid = [*RULES, *known]
    out = []
    for rid in ids:
        if rid not in valid:
            close = difflib.get_close_matches(rid, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"unknown lint rule {rid!r}{hint} (rules: {', '.join(valid)})")
        out.append(rid)
    return tuple(out)


def lint_matrix(matrix: Matrix, policy: RunnerPolicy | None = None, *,
                ignore: Iterable[str] = (), known: Iterable[str] = (), naming: ArtifactNaming | None = None,
                allowances: Mapping[tuple[str, str], RunnerAllowance] | None = None) -> LintResult:
    """Run every rule not in ``ignore`` over ``matrix``; findings in file order (``known``: other rule
    ids ``ignore`` may name, see :func:`check_rule_ids`; ``naming``: how the repository's workflows
    name digest artifacts, :func:`ci.matrix.workflownames.artifact_templates`, None when none were
    read; ``allowances``: the recorded runner exceptions, :func:`runner_allowances`)."""
    policy = policy or RunnerPolicy()
    allowed = allowances or {}
    skip = set(check_rule_ids(ignore, known))
    rules = tuple(r for r in RULES if r not in skip)
    found: list[Finding] = []
    notes: list[str] = []
    checks = {
        "multi-platform": lambda: _multi_platform(matrix),
        "retired-runner": lambda: _retired_runner(matrix, policy, allowed),
        "arch-runner-mismatch": lambda: _arch_runner_mismatch(matrix, policy, allowed),
        "missing-sibling": lambda: _missing_sibling(matrix, policy),
        "sibling-disagrees": lambda: _sibling_disagrees(matrix),
        "tag-latest-disagrees": lambda: _tag_latest_disagrees(matrix),
        "artifact-glob-overmatch": lambda: glob_collisions(matrix, naming, notes),
    }
    for rule in rules:
        found.extend(checks[rule]())
    found.sort(key=lambda f: (f.line, rules.index(f.rule)))
    return LintResult(source=matrix.path, entries=len(matrix), rules=rules, findings=tuple(found), notes=tuple(notes))


def repository_workflows(matrix_path: str | Path) -> Path | None:
    """The ``.github/workflows`` of the git checkout holding a matrix file (the nearest directory at or
    above it with a ``.git``); None outside a checkout or when it has none."""
    here = Path(matrix_path).resolve().parent
    for d in (here, *here.parents):
        if (d / ".git").exists():
            found = d / ".github" / "workflows"
            return found if found.is_dir() else None
    return None


def lint_file(matrix_path: str | Path, policy: RunnerPolicy | None = None, *, ignore: Iterable[str] = (),
              known: Iterable[str] = (), workflows: str | Path | None = None,
              family: Family = Family.BACKENDS,
              recorded: Callable[[Matrix], Mapping[tuple[str, str], RunnerAllowance]] | None = None) -> LintResult:
    """``invoke matrix.lint``: read the matrix file (and its runner-exception markers) and the workflows
    that build it (``workflows``, else :func:`repository_workflows`), then :func:`lint_matrix`.
    Reads only the files named (the matrix, and the workflows directory named or beside it).
    ``recorded``: runner exceptions recorded elsewhere (the settings file's ``runners: allow:``), by leg."""
    text = read_matrix_text(matrix_path)
    matrix = parse_matrix(text, str(matrix_path), family)
    allowances = {**(recorded(matrix) if recorded else {}), **runner_allowances(text, matrix)}
    directory = Path(workflows) if workflows else repository_workflows(matrix_path)
    naming = artifact_templates(read_workflows(directory), str(directory)) if directory is not None else None
    return lint_matrix(matrix, policy, ignore=ignore, known=known, naming=naming, allowances=allowances)


# ---- runner exceptions -------------------------------------------------------------------------------
MARKER = "localai-ci:"
DIRECTIVES = ("allow-runner",)
_MARKER_RE = re.compile(r"#\s*localai-ci:\s*(?P<rest>.*)$")
_ALLOW_RE = re.compile(r"^allow-runner\s+(?P<runner>[A-Za-z0-9._-]{1,100})\s*\((?P<reason>[^()]*\S[^()]*)\)\s*$")
MARKER_FORM = "# localai-ci: allow-runner RUNNER (why it stays there)"


@dataclass(frozen=True)
class RunnerAllowance:
    """A recorded exception: ``runner`` is where this leg builds, for ``reason``."""

    runner: str
    reason: str
    source: str  # where it is recorded ("matrix.yml line 455")


def _comment(line: str) -> str | None:
    """The comment of a YAML line (after a ``#`` outside quotes), or None."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[i:]
    return None


def runner_allowances(text: str, matrix: Matrix) -> dict[tuple[str, str], RunnerAllowance]:
    """``(tag-suffix, platform-tag)`` -> the ``# localai-ci: allow-runner RUNNER (reason)`` marker inside
    that entry of ``text`` (the matrix's own text). MatrixError (exit 2) for a malformed marker, an
    unknown directive, or a marker that is inside no entry."""
    by_line: dict[int, Entry] = {}
    for e in matrix:
        for n in range(e.line, max(e.end_line, e.line) + 1):
            by_line[n] = e
    out: dict[tuple[str, str], RunnerAllowance] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        comment = _comment(line)
        m = _MARKER_RE.search(comment) if comment else None
        if not m:
            continue
        where = f"{matrix.path} line {n}"
        rest = m.group("rest").strip()
        directive = rest.split()[0] if rest.split() else ""
        if directive not in DIRECTIVES:
            close = difflib.get_close_matches(directive, DIRECTIVES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise MatrixError(f"{where}: unknown {MARKER} directive {directive!r}{hint} (write `{MARKER_FORM}`)")
        allow = _ALLOW_RE.match(rest)
        if not allow:
            raise MatrixError(f"{where}: malformed runner exception {rest!r}: write `{MARKER_FORM}` (a runner label "
                              "of [A-Za-z0-9._-] and the reason in parentheses)")
        owner = by_line.get(n)
        if owner is None:
            raise MatrixError(f"{where}: the runner exception is inside no entry; put it on one of the entry's own "
                              "lines (e.g. above its runs-on)")
        key = (owner.tag_suffix, owner.ptag)
        if key in out:
            raise MatrixError(f"{where}: a second runner exception for {owner.tag_suffix!r} [{owner.ptag}] (the first is at "
                              f"{out[key].source}); keep one")
        out[key] = RunnerAllowance(allow.group("runner"), allow.group("reason").strip(), where)
    return out


def runner_exception(entry: Entry, allowances: Mapping[tuple[str, str], RunnerAllowance]) -> RunnerAllowance | None:
    """The recorded exception that lets ``entry`` build on its ``runs-on``, or None. The one check the
    runner rules and ``invoke matrix.split`` make (``allowances``: the matrix's markers today)."""
    allowed = allowances.get((entry.tag_suffix, entry.ptag))
    return allowed if allowed is not None and allowed.runner == entry.runs_on else None


# ---- rules -----------------------------------------------------------------------------------
def _finding(rule: str, e: Entry, message: str, fix: str, related: str = "") -> Finding:
    return Finding(rule=rule, source=e.source, line=e.line, suffix=e.tag_suffix, ptag=e.ptag,
                   message=message, fix=fix, related=related)


def _multi_platform(m: Matrix) -> list[Finding]:
    return [_finding("multi-platform", e,
                     f"builds {', '.join(map(str, e.platforms))} in one job (non-native legs run under QEMU)",
                     "run 'invoke matrix.split' to make one entry per platform on its native runner")
            for e in m if e.multi_platform]


def _retired_runner(m: Matrix, policy: RunnerPolicy, allowed: Mapping[tuple[str, str], RunnerAllowance]) -> list[Finding]:
    out = []
    for e in m:
        if not policy.is_retired(e.runs_on) or runner_exception(e, allowed) is not None:
            continue
        native = None if e.multi_platform else policy.runner_for(e.platform.arch)
        fix = (f"set runs-on: '{native}' (the {e.platform.arch} runner), or run 'invoke matrix.split'"
               if native else "run 'invoke matrix.split' (one entry per platform on its native runner)")
        fix += f"; or, if it must stay, record why inside the entry: `# localai-ci: allow-runner {e.runs_on} (why)`"
        out.append(_finding("retired-runner", e, f"runs on retired runner {e.runs_on!r}", fix))
    return out


def _arch_runner_mismatch(m: Matrix, policy: RunnerPolicy,
                          allowed: Mapping[tuple[str, str], RunnerAllowance]) -> list[Finding]:
    out = []
    for e in m:
        if e.multi_platform or runner_exception(e, allowed) is not None:
            continue  # multi-platform: reported as such; any runner mismatches one of its legs
        runner_arch = policy.arch_of(e.runs_on)
        if runner_arch is None or runner_arch == e.platform.arch:
            continue
        native = policy.runner_for(e.platform.arch)
        fix = f"set runs-on: '{native}'" if native else f"run it on a native {e.platform.arch} runner"
        out.append(_finding("arch-runner-mismatch", e,
                            f"{e.platform} leg runs on {e.runs_on!r}, which is a {runner_arch} runner (built under emulation)",
                            fix))
    return out


def _archs(legs: list[Entry]) -> set[Arch]:
    return {p.arch for e in legs for p in e.platforms}


def _missing_sibling(m: Matrix, policy: RunnerPolicy) -> list[Finding]:
    out = []
    for suffix in m.suffixes():
        legs = m.legs_of(suffix)
        archs = _archs(legs)
        for e in legs:
            if e.multi_platform or not e.platform_tag_field or e.platform.arch not in PAIRED:
                continue
            want = PAIRED[e.platform.arch]
            if want in archs:
                continue
            runner = policy.runner_for(want) or f"a native {want} runner"
            out.append(_finding(
                "missing-sibling", e,
                f"{e.platform.arch} leg has platform-tag {e.ptag!r} but the suffix has no {want} leg, "
                f"so its multi-arch list would ship {e.platform.arch} only",
                f"add the {want} entry (platforms: 'linux/{want}', platform-tag: '{want}', runs-on: '{runner}'), "
                "or drop platform-tag to publish a single-arch image"))
    return out


def _normalized(e: Entry) -> dict[str, str]:
    """Build inputs of a leg with its own platform tag written as ``<platform-tag>``."""
    word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(e.ptag)}(?![A-Za-z0-9])")
    return {k: word.sub("<platform-tag>", v) for k, v in e.raw if k not in PER_LEG_FIELDS}


def _sibling_disagrees(m: Matrix) -> list[Finding]:
    out = []
    for suffix in m.suffixes():
        legs = m.legs_of(suffix)
        if len(legs) < 2:
            continue
        first, ref = legs[0], _normalized(legs[0])
        for e in legs[1:]:
            cur = _normalized(e)
            diff = [k for k in dict.fromkeys([*ref, *cur]) if ref.get(k) != cur.get(k)]
            if not diff:
                continue
            detail = "; ".join(f"{k}: {e.get(k)!r} vs {first.get(k)!r}" for k in diff)
            out.append(_finding(
                "sibling-disagrees", e,
                f"differs from the {first.ptag} leg at line {first.line} in {detail}",
                "make every build input equal across the legs of the suffix "
                "(only platforms, platform-tag and runs-on may differ)"))
    return out


def _tag_latest_disagrees(m: Matrix) -> list[Finding]:
    out = []
    for suffix in m.suffixes():
        legs = m.legs_of(suffix)
        first = legs[0]
        for e in tag_latest_dissenters(legs):
            out.append(_finding(
                "tag-latest-disagrees", e,
                f"tag-latest {e.tag_latest!r} but the {first.ptag} leg at line {first.line} "
                f"says {first.tag_latest!r}: the merged list gets one latest tag",
                f"use tag-latest: '{first.tag_latest}' on every leg of the suffix"))
    return out


def glob_collisions(m: Matrix, naming: ArtifactNaming | None, notes: list[str] | None = None) -> list[Finding]:
    """Every (downloader, victim) suffix pair where a download pattern of the repository's workflows
    (``naming``) matches an artifact name they give another suffix's leg.

    A download pattern and an upload name belong together when the pattern of a suffix matches
    the name of that suffix's own legs (a merge of backends never pairs with the server image's
    uploads). Templates that cannot be evaluated for a leg are left out and named in ``notes``; so is
    the rule itself when no workflow uploads and downloads digest artifacts.
    """
    notes = notes if notes is not None else []
    if naming is None:
        notes.append("artifact-glob-overmatch: no workflows were read (--workflows DIR), so whether a merge's download "
                     "pattern picks up another suffix's artifacts is not checked")
        return []
    notes.extend(naming.notes)
    if not naming.names_artifacts:
        notes.append(f"artifact-glob-overmatch: no workflow in {naming.source or 'the workflows read'} both uploads "
                     "artifacts named from the leg and downloads them by a pattern; nothing to check")
        return []
    ev = Evaluator(naming)
    legs_by_suffix = {s: m.legs_of(s) for s in m.suffixes()}

    def values(t: Template, legs: Iterable[Entry]) -> list[str] | None:
        out: list[str] = []
        for e in legs:
            try:
                out.extend(ev.instantiate(t, Leg.of(e)))
            except Unevaluable as exc:
                notes.append(f"artifact-glob-overmatch: {t.kind} {t.text!r} ({posixpath.basename(t.file)} line "
                             f"{t.line}) cannot be evaluated for a leg ({exc}); it is not checked")
                return None
        return out

    uploads = {t: {s: values(t, legs) for s, legs in legs_by_suffix.items()} for t in naming.uploads}
    downloads = {t: {s: values(t, legs[:1]) for s, legs in legs_by_suffix.items()} for t in naming.downloads}
    out = []
    for d, pats in downloads.items():
        if any(v is None for v in pats.values()):
            continue
        for u, names in uploads.items():
            if any(v is None for v in names.values()):
                continue
            own = sum(1 for s in legs_by_suffix if any(is_over_match(p, n) for p in pats[s] or () for n in names[s] or ()))
            if own * 2 <= len(legs_by_suffix):
                continue  # this download is not of these uploads
            for s, s_legs in legs_by_suffix.items():
                for pattern in pats[s] or ():
                    head = pattern[:-1] if pattern.endswith("*") and not _GLOB_META.search(pattern[:-1]) else None
                    for t, t_legs in legs_by_suffix.items():
                        if t == s:
                            continue
                        hits = [n for n in names[t] or () if (head is None or n.startswith(head))
                                and is_over_match(pattern, n)]
                        if hits:
                            out.append(_finding(
                                "artifact-glob-overmatch", s_legs[0],
                                f"download pattern {pattern!r} ({posixpath.basename(d.file)} line {d.line}) also picks "
                                f"up {', '.join(map(repr, hits))}, the artifacts {posixpath.basename(u.file)} line "
                                f"{u.line} names for tag-suffix {t!r} (line {t_legs[0].line}), so this suffix's merge "
                                "would include another suffix's digests",
                                "name artifacts digests<suffix>--<platform-tag> and download exactly "
                                "'digests<suffix>--*' (a tag-suffix never contains '--'; ci.matrix.naming)", related=t))
    return out


_GLOB_META = re.compile(r"[*?\[]")


def collision_pairs(m: Matrix, naming: ArtifactNaming | None) -> list[tuple[str, str]]:
    """(downloader suffix, victim suffix) pairs of :func:`glob_collisions`, in order."""
    return [(f.suffix, f.related) for f in glob_collisions(m, naming)]


__all__ = ["RULES", "Finding", "LintResult", "lint_matrix", "runner_policy", "check_rule_ids",
           "glob_collisions", "collision_pairs", "RunnerAllowance", "runner_allowances", "runner_exception",
           "lint_file", "repository_workflows"]
