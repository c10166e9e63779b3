"""The merge's values: how a list is published (``Method``), what became of a suffix (``Outcome``), the
options of a run, one (family, suffix) to merge (``MergeTarget``), its plan (``MergePlan``: the composed
list and its tags) and the results (``SuffixResult``, ``MergeReport``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ..docker import imagetools
from ..github.artifacts import DigestArtifact
from ..matrix.model import Matrix
from ..matrix.naming import Family, suffix_label
from ..matrix.tags import Latest, TagSource
from ..oci.manifest import (
    Composed,
    Descriptor,
)
from ..oci.quay import QuayApi
from ..oci.reference import DOCKER_HUB
from ..oci.sign import SignOptions
from ..settings import FamilyConfig

# suffixes merged at once: each costs some twenty requests one after the other, so with registries tens of
# milliseconds away (quay.io and Docker Hub from a hosted runner) a suffix waits most of a second on round
# trips; 32 keep a runner's two cores busy instead (bench/bench_merge.py --latency-ms 20)
DEFAULT_JOBS = 32


class Method(StrEnum):
    """How the list is published (``--engine``): this project's registry client, or ``docker buildx
    imagetools create`` (LocalAI's merge step). ``auto`` is ``native`` (proven equivalent by the tests).
    Not to be confused with :class:`ci.engine.Engine`, the Docker engine adapter."""

    AUTO = "auto"
    NATIVE = "native"
    IMAGETOOLS = "imagetools"

    def resolved(self) -> Method:
        return Method.NATIVE if self is Method.AUTO else self


class Outcome(StrEnum):
    MERGED = "merged"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class MergeOptions:
    method: Method = Method.AUTO
    tag_source: TagSource = TagSource()
    tag_latest: Latest | None = None  # None: from the matrix legs
    # tags the caller already decided per (family, suffix) (invoke pipeline plans them); others from tag_source
    planned_tags: Mapping[tuple[Family, str], tuple[str, ...]] = field(default_factory=dict)
    anchor_run_id: str | None = None  # restore reaped children from this run's keepalive anchors, delete them after
    quay: QuayApi | None = None  # Quay's REST API (and token), to delete the anchors Quay's registry API cannot
    sign: SignOptions | None = None
    dry_run: bool = False
    jobs: int = DEFAULT_JOBS
    # registries that count a manifest GET against a pull limit: children are read elsewhere when they can be
    pull_counted: frozenset[str] = frozenset({DOCKER_HUB})


@dataclass(frozen=True)
class MergeTarget:
    """One suffix to merge: its family, registries, matrix and selected artifacts."""

    family: Family
    suffix: str
    config: FamilyConfig
    matrix: Matrix
    artifacts: tuple[DigestArtifact, ...]

    @property
    def label(self) -> str:
        return suffix_label(self.family, self.suffix)


@dataclass(frozen=True)
class MergePlan:
    """The pure result of preflight + composition: what will be written where."""

    target: MergeTarget
    children: tuple[Descriptor, ...]
    composed: Composed
    tags: tuple[str, ...]

    def refs(self) -> list[str]:
        return [img.with_tag(t) for img in self.target.config.images for t in self.tags]

    def imagetools_commands(self) -> list[list[str]]:
        return [imagetools.create_command(img, self.tags, [c.digest for c in self.children])
                for img in self.target.config.images]


@dataclass(frozen=True)
class SuffixResult:
    family: Family
    suffix: str
    outcome: Outcome
    reason: str = ""
    digest: str = ""
    tags: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    changed: bool = False
    dry_run: bool = False
    list_json: str = ""
    commands: tuple[tuple[str, ...], ...] = ()
    signed: bool = False
    keepalive_deleted: tuple[str, ...] = ()
    keepalive_problems: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()  # children copied back from their keepalive anchor (reaped from a target)
    tagged_images: tuple[str, ...] = field(default=())
    retries: int = 0  # registry requests retried (transient failures survived)
    requests: int = 0  # HTTP requests sent to the registries for this suffix (keepalive cleanup included)
    manifest_gets: tuple[tuple[str, int], ...] = ()  # (registry, manifest GETs) for this suffix

    @property
    def label(self) -> str:
        return suffix_label(self.family, self.suffix)


@dataclass(frozen=True)
class MergeReport:
    results: tuple[SuffixResult, ...]
    strict: bool = False  # the suffixes were named (a class merge job): a skipped one fails too

    @property
    def failed(self) -> list[SuffixResult]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    @property
    def exit_code(self) -> int:
        skipped = self.strict and any(r.outcome is Outcome.SKIPPED for r in self.results)
        return 1 if self.failed or skipped else 0

    def manifest_gets(self) -> dict[str, int]:
        """Manifest GETs per registry over the whole merge (what Docker Hub counts as pulls)."""
        out: dict[str, int] = {}
        for r in self.results:
            for reg, n in r.manifest_gets:
                out[reg] = out.get(reg, 0) + n
        return out

    def requests_line(self, pull_counted: frozenset[str] = frozenset({DOCKER_HUB})) -> str:
        """One line: requests sent and manifest GETs per registry, those counted against a pull limit marked."""
        gets = self.manifest_gets()
        if not gets:
            return ""
        n = sum(1 for r in self.results if r.manifest_gets)
        parts = [f"{reg} {count}" + (" (counted against its pull limit)" if reg in pull_counted else "")
                 for reg, count in gets.items()]
        return (f"requests: {sum(r.requests for r in self.results)} for {n} suffix(es); manifest GETs: "
                + ", ".join(parts))


class _Skip(Exception):
    """A suffix that cannot merge because an upstream leg is missing (skipped under --all)."""
