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
- ``artifact-glob-overmatch``: a pair of suffixes where one suffix's digest download glob picks up
  the other suffix's artifacts, under LocalAI PR #9730 naming (``digests<suffix>-<ptag>`` downloaded
  with ``digests<suffix>-*``) or under this project's naming (never, by construction).

Why ``platform-tag`` marks a sibling: LocalAI writes ``platform-tag`` only on legs that are merged
into one multi-arch list per suffix; an entry without it is a single-arch image published as is
(e.g. CUDA amd64-only backends). So a leg with ``platform-tag`` whose paired-arch leg is missing
would publish a "multi-arch" list with one architecture.
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from ..errors import UserError
from .model import Entry, Matrix, tag_latest_dissenters
from .naming import (
    artifact_name,
    artifact_pattern,
    glob_overmatches,
    pr9730_artifact_name,
    pr9730_download_glob,
)
from ..oci.platforms import Arch, RunnerPolicy

RULES: dict[str, str] = {
    "multi-platform": "one entry builds several platforms in one job (emulated under QEMU)",
    "retired-runner": "an entry runs on a retired runner",
    "arch-runner-mismatch": "a leg runs on a runner of another architecture",
    "missing-sibling": "a per-arch leg (platform-tag set) has no leg of the paired architecture",
    "sibling-disagrees": "legs of one suffix differ in a build input other than platform and runner",
    "tag-latest-disagrees": "legs of one suffix disagree on tag-latest",
    "artifact-glob-overmatch": "one suffix's digest download glob picks up another suffix's artifacts",
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


@dataclass(frozen=True)
class LintResult:
    source: str
    entries: int
    rules: tuple[str, ...]
    findings: tuple[Finding, ...]
    counted: str = "entries"  # what ``entries`` counts ("references" for ci.references)

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
        return "\n".join([f.text() for f in self.findings] + [self.summary()])

    def render_json(self) -> str:
        return json.dumps({
            "matrix": self.source,
            "entries": self.entries,
            "rules": list(self.rules),
            "counts": self.counts(),
            "findings": [asdict(f) for f in self.findings],
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
                ignore: Iterable[str] = (), known: Iterable[str] = ()) -> LintResult:
    """Run every rule not in ``ignore`` over ``matrix``; findings in file order (``known``: other rule
    ids ``ignore`` may name, see :func:`check_rule_ids`)."""
    policy = policy or RunnerPolicy()
    skip = set(check_rule_ids(ignore, known))
    rules = tuple(r for r in RULES if r not in skip)
    found: list[Finding] = []
    checks = {
        "multi-platform": lambda: _multi_platform(matrix),
        "retired-runner": lambda: _retired_runner(matrix, policy),
        "arch-runner-mismatch": lambda: _arch_runner_mismatch(matrix, policy),
        "missing-sibling": lambda: _missing_sibling(matrix, policy),
        "sibling-disagrees": lambda: _sibling_disagrees(matrix),
        "tag-latest-disagrees": lambda: _tag_latest_disagrees(matrix),
        "artifact-glob-overmatch": lambda: glob_collisions(matrix),
    }
    for rule in rules:
        found.extend(checks[rule]())
    found.sort(key=lambda f: (f.line, rules.index(f.rule)))
    return LintResult(source=matrix.path, entries=len(matrix), rules=rules, findings=tuple(found))


# ---- rules -----------------------------------------------------------------------------------
def _finding(rule: str, e: Entry, message: str, fix: str, related: str = "") -> Finding:
    return Finding(rule=rule, source=e.source, line=e.line, suffix=e.tag_suffix, ptag=e.ptag,
                   message=message, fix=fix, related=related)


def _multi_platform(m: Matrix) -> list[Finding]:
    return [_finding("multi-platform", e,
                     f"builds {', '.join(map(str, e.platforms))} in one job (non-native legs run under QEMU)",
                     "run 'invoke matrix.split' to make one entry per platform on its native runner")
            for e in m if e.multi_platform]


def _retired_runner(m: Matrix, policy: RunnerPolicy) -> list[Finding]:
    out = []
    for e in m:
        if not policy.is_retired(e.runs_on):
            continue
        native = None if e.multi_platform else policy.runner_for(e.platform.arch)
        fix = (f"set runs-on: '{native}' (the {e.platform.arch} runner), or run 'invoke matrix.split'"
               if native else "run 'invoke matrix.split' (one entry per platform on its native runner)")
        out.append(_finding("retired-runner", e, f"runs on retired runner {e.runs_on!r}", fix))
    return out


def _arch_runner_mismatch(m: Matrix, policy: RunnerPolicy) -> list[Finding]:
    out = []
    for e in m:
        if e.multi_platform:  # reported as multi-platform; any runner mismatches one of its legs
            continue
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


def glob_collisions(m: Matrix) -> list[Finding]:
    """Every (downloader, victim) suffix pair whose download glob matches the victim's artifacts.

    Checked under LocalAI PR #9730 naming and under this project's naming (which has none by
    construction; a hit there would be a bug in ci.naming and is reported the same way).
    """
    out = []
    legs_by_suffix = {s: m.legs_of(s) for s in m.suffixes()}
    project = m.family
    names = {t: (("LocalAI PR #9730", [pr9730_artifact_name(t, e.ptag) for e in legs]),
                 ("localai-ci", [artifact_name(project, t, e.ptag) for e in legs]))
             for t, legs in legs_by_suffix.items()}
    for s, s_legs in legs_by_suffix.items():
        globs = {"LocalAI PR #9730": pr9730_download_glob(s), "localai-ci": artifact_pattern(project, s)}
        for t, t_legs in legs_by_suffix.items():
            if t == s:
                continue
            for naming, candidates in names[t]:
                glob = globs[naming]
                hits = [n for n in candidates if _may_match(glob, n) and glob_overmatches(glob, n)]
                if hits:
                    out.append(_finding(
                        "artifact-glob-overmatch", s_legs[0],
                        f"{naming} download glob {glob!r} also picks up {', '.join(map(repr, hits))} "
                        f"of tag-suffix {t!r} (line {t_legs[0].line}), so this suffix's merge would "
                        "include another suffix's digests",
                        "name artifacts digests<suffix>--<platform-tag> and download exactly "
                        "'digests<suffix>--*' (ci.naming.artifact_name / artifact_pattern)", related=t))
    return out


_GLOB_META = re.compile(r"[*?\[]")


def _may_match(glob: str, name: str) -> bool:
    """Cheap pre-filter: a glob whose only wildcard is a final '*' needs its literal prefix."""
    head = glob[:-1] if glob.endswith("*") else None
    if head is None or _GLOB_META.search(head):
        return True
    return name.startswith(head)


def collision_pairs(m: Matrix) -> list[tuple[str, str]]:
    """(downloader suffix, victim suffix) pairs of :func:`glob_collisions`, in order."""
    return [(f.suffix, f.related) for f in glob_collisions(m)]


__all__ = ["RULES", "Finding", "LintResult", "lint_matrix", "runner_policy", "check_rule_ids",
           "glob_collisions", "collision_pairs"]
