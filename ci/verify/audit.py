"""Catalog audit verb (``nox -s inspect -- --audit``): every tag the matrix promises, in every registry.

For each tag-suffix of a family's matrix, the tags a consumer pulls -- the branch tag and
``latest`` where the legs' ``tag-latest`` says a release gets it (or the tags of ``--ref``,
computed by :func:`ci.tags.compute_tags`) -- must exist in every registry, resolve to the same
list digest everywhere, hold exactly the platforms the matrix declares for that suffix, no
attestation child, and children that resolve with the right config. The checks are
:func:`ci.inspection.verify`'s; this module decides what to check and reports one line per
suffix (``ok``, ``missing in REGISTRY``, ``platforms differ``, ``digests differ``, ...).

``--references FILE`` also resolves every consumer reference (:mod:`ci.references`) live: a
reference whose tag or digest does not exist in its registry is reported.

Read only; suffixes are audited concurrently (``jobs``), each with its own registry clients,
within the registry client's deadlines.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import CiError
from ..matrix.model import Matrix
from ..matrix.naming import Family, suffix_label
from ..matrix.references import Reference
from ..matrix.tags import Latest, TagInput, compute_tags, parse_latest
from ..oci.client import RegistryClient
from ..oci.platforms import Platform
from ..oci.reference import ImageName
from ..output.markdown import Cell, code, md_cell, md_table
from ..settings import FamilyConfig
from .inspect import Failure, InspectRef, ListObservation, observe, verify

ClientFor = Callable[[ImageName], RegistryClient]  # a ci.clients.ClientFactory with the family's transport


@dataclass(frozen=True)
class SuffixAudit:
    family: Family
    suffix: str
    tags: tuple[str, ...]
    platforms: tuple[Platform, ...]
    failures: tuple[Failure, ...] = ()

    @property
    def label(self) -> str:
        return suffix_label(self.family, self.suffix)

    @property
    def ok(self) -> bool:
        return not self.failures

    def verdict(self) -> str:
        """``ok``, or what is wrong, in the words a user acts on."""
        if self.ok:
            return "ok"
        parts: list[str] = []
        for f in self.failures:
            word = {"resolves": "missing in", "platforms": "platforms differ", "same-digest": "digests differ",
                    "is-list": "not a list", "no-attestation": "attestation child",
                    "child-resolves": "child missing", "child-platform": "child config differs"}.get(f.check, f.check)
            if f.check == "resolves":
                word = f"missing in {f.ref.split('/', 1)[0]} ({f.ref.rsplit(':', 1)[-1]})"
            if word not in parts:
                parts.append(word)
        return "; ".join(parts)


@dataclass(frozen=True)
class ReferenceAudit:
    source: str
    line: int
    reference: str
    error: str  # '' when it resolves


@dataclass(frozen=True)
class AuditReport:
    suffixes: tuple[SuffixAudit, ...]
    references: tuple[ReferenceAudit, ...] = ()
    registries: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[SuffixAudit, ...]:
        return tuple(s for s in self.suffixes if not s.ok)

    @property
    def missing_references(self) -> tuple[ReferenceAudit, ...]:
        return tuple(r for r in self.references if r.error)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.missing_references else 0


def audit_tags(matrix: Matrix, suffix: str, *, ref: str, sha: str = "") -> tuple[str, ...]:
    """The tags a consumer pulls for ``suffix``: ``--ref``'s tags as the merge computes them, plus
    ``latest<suffix>`` when the legs' tag-latest publishes it for a release (auto, true)."""
    legs = matrix.legs_of(suffix)
    values = {leg.tag_latest for leg in legs}
    latest = parse_latest(sorted(values)[0]) if len(values) == 1 else Latest.AUTO
    tags = list(compute_tags(TagInput(event="push", ref=ref, sha=sha, suffix=suffix, latest=latest,
                                      family=matrix.family)))
    if latest is not Latest.FALSE:
        tags += list(compute_tags(TagInput(event="push", ref="", sha="0" * 40, suffix=suffix, latest=Latest.TRUE,
                                           family=matrix.family)))[-1:]  # the latest tag alone
    return tuple(t for t in dict.fromkeys(tags) if not t.startswith("sha-"))


def audit(matrices: Mapping[Family, Matrix], configs: Mapping[Family, FamilyConfig], client_for: ClientFor, *,
          ref: str = "refs/heads/master", sha: str = "", only: Sequence[str] = (), jobs: int = 8,
          references: Sequence[Reference] = ()) -> AuditReport:
    """Audit every suffix of every family (``only``: those suffixes), then the references."""
    plan = [(fam, s) for fam, m in matrices.items() for s in m.suffixes() if not only or s in only]

    def one(item: tuple[Family, str]) -> SuffixAudit:
        fam, suffix = item
        m = matrices[fam]
        tags = audit_tags(m, suffix, ref=ref, sha=sha)
        platforms = tuple(sorted({leg.platform for leg in m.legs_of(suffix)}, key=str))
        obs = []
        for img in configs[fam].images:
            client = client_for(img)
            try:
                obs += _observe_tags(img, tags, client)
            finally:
                client.close()
        return SuffixAudit(fam, suffix, tags, platforms, tuple(verify(obs, platforms)))

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="audit") as pool:
        results = list(pool.map(one, plan))
    refs = _audit_references(references, client_for, jobs)
    regs = tuple(dict.fromkeys(i.registry for c in configs.values() for i in c.images))
    return AuditReport(tuple(results), refs, regs)


def _observe_tags(img: ImageName, tags: Sequence[str], client: RegistryClient) -> list[ListObservation]:
    """Every tag of one repository; a tag serving the list already observed there reuses its children's
    observation (the list bytes are content-addressed: the same digest is the same list)."""
    seen: dict[str, ListObservation] = {}
    out = []
    for t in tags:
        target = InspectRef(img, t)
        first = next(iter(seen.values()), None)
        if first is not None:
            try:
                head = client.head_manifest(t)
            except CiError as exc:
                out.append(ListObservation(target, error=str(exc)))
                continue
            if head is not None and head[0] in seen:
                prev = seen[head[0]]
                out.append(ListObservation(target, prev.digest, prev.media_type, prev.is_index, prev.children))
                continue
        ob = observe(target, client)
        if ob.digest:
            seen.setdefault(ob.digest, ob)
        out.append(ob)
    return out


def _audit_references(references: Sequence[Reference], client_for: ClientFor, jobs: int) -> tuple[ReferenceAudit, ...]:
    """Resolve each distinct reference in its registry."""
    unique: dict[tuple[ImageName, str], list[Reference]] = {}
    for r in references:
        key = (r.image, r.tag or r.text.rsplit("@", 1)[-1])
        unique.setdefault(key, []).append(r)

    def one(key: tuple[ImageName, str]) -> str:
        img, reference = key
        client = client_for(img)
        try:
            head = client.head_manifest(reference)
            return "" if head is not None else f"{reference} is not in {img}"
        except CiError as exc:
            return str(exc)
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="audit-ref") as pool:
        errors = dict(zip(unique, pool.map(one, list(unique))))
    return tuple(ReferenceAudit(r.source, r.line, r.text, errors[key])
                 for key, rs in unique.items() for r in rs)


# ---- presentation ---------------------------------------------------------------------------------------
def format_text(report: AuditReport) -> str:
    width = max([len(s.label) for s in report.suffixes] + [6])
    lines = [f"{s.label:<{width}}  {s.verdict()}" for s in report.suffixes]
    for s in report.failed:
        lines += [f"  {s.label}: {f}" for f in s.failures]
    for r in report.missing_references:
        lines.append(f"{r.source}:{r.line}: reference {r.reference}: {r.error}")
    n, bad = len(report.suffixes), len(report.failed)
    refs = f"; {len(report.references)} reference(s), {len(report.missing_references)} missing" if report.references else ""
    lines.append(f"audit: {n - bad}/{n} suffix(es) ok in {', '.join(report.registries)}{refs}")
    return "\n".join(lines)


def to_json(report: AuditReport) -> str:
    return json.dumps({
        "ok": report.exit_code == 0,
        "registries": list(report.registries),
        "suffixes": [{"family": str(s.family), "suffix": s.suffix, "tags": list(s.tags),
                      "platforms": [str(p) for p in s.platforms], "result": s.verdict(),
                      "failures": [{"check": f.check, "ref": f.ref, "message": f.message} for f in s.failures]}
                     for s in report.suffixes],
        "references": [{"source": r.source, "line": r.line, "reference": r.reference, "error": r.error or None}
                       for r in report.references],
    }, indent=2)


def summary_markdown(report: AuditReport) -> str:
    rows: list[list[Cell]] = [[code(s.label), code(*s.tags), ", ".join(str(p) for p in s.platforms), s.verdict()]
                              for s in report.suffixes]
    text = "### Catalog audit\n\n" + md_table(["suffix", "tags", "platforms", "result"], rows)
    if report.missing_references:
        text += "\n**Missing references:**\n\n" + "".join(
            f"- {md_cell(code(r.reference))} ({md_cell(f'{r.source}:{r.line}')}): {md_cell(r.error)}\n"
            for r in report.missing_references)
    return text
