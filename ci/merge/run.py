"""Merge verb: per-arch digests of one tag-suffix -> one manifest list, tagged in every registry.

Steps for one (family, suffix), in this order:

1. **Select** exactly the suffix's digest artifacts (parsed keys, never a prefix glob; the server
   image's empty suffix is the ``-core`` artifact) and check them against the matrix: every leg
   the matrix declares has an artifact and no artifact is foreign. ``tag-latest`` must agree.
2. **Preflight** (reads only): every child exists in *every* registry of the family, is a
   single-platform image manifest (not a list, not an attestation), its platform (from its
   config) is the leg's platform, and platforms are distinct. All problems are collected.
3. **Compose** the list once (:func:`ci.manifest.compose_index`): bytes and digest are fixed
   before any push. **Tags** come from :mod:`ci.tags` (metadata-action rules).
4. **Publish**: ``native`` PUTs the same bytes under every tag in every registry, one registry
   after the other (tags already pointing at the digest are left alone, so a re-run is a no-op);
   ``imagetools`` runs ``docker buildx imagetools create`` once per registry, as LocalAI does.
5. **Read back**: in every registry, the list is fetched by digest once (GET) and its bytes compared
   with the list that was written (native: the composed bytes; imagetools: the list buildx made,
   which must also be one digest everywhere with the expected children), and every tag is asked with
   HEAD, its ``Docker-Content-Digest`` and size compared: where a digest answers the question, a
   HEAD, which Docker Hub does not count against its pull limit, asks it. A registry's answer to a
   PUT is never taken as proof, nor a HEAD as proof of the bytes: a registry that accepts a PUT and
   stores nothing, or whose HEAD claims the list, fails the merge at the GET, named. Native: each
   tag it PUTs is HEADed at once by :meth:`ci.registry.RegistryClient.put_manifest`, a tag found in
   place was HEADed before; neither is asked again.
6. Optional: **sign** (cosign, by digest, recursive) and delete the suffix's **keepalive** tags.

Partial failure ("one registry down during merge") -- all-or-nothing by preflight:
every registry of the family must pass preflight before anything is written anywhere, so an
unreachable registry fails the suffix with nothing published (the list would otherwise differ
between registries: users of one registry would get the new tag, users of the other the old).
A registry failing *after* preflight (a race) fails the merge (exit 1) and the result names the
registries already tagged; every write is a PUT of the same bytes, so a re-run, once the
registry is back, completes it idempotently. Tags already pointing at the list are not
written again (a re-run writes nothing).

``--all``: every (family, suffix) in the digests directory, ``jobs`` at a time. A suffix with a
leg missing (its build failed) is *skipped* with the reason and the others still merge; anything
else that goes wrong is *failed*. Exit 1 when any failed.

Requests: one suffix of two legs with T tags costs, in the registry the children are read from (the
first of the family's registries that does not count manifest GETs against a pull limit:
``CI_PULL_COUNTED_REGISTRIES``, default Docker Hub), 2 manifest GETs and 2 config GETs (the
preflight), 1 HEAD (is the first tag in place?), T PUTs each HEADed back, and 1 GET of the list
digest; in each other registry 2 HEADs of the children instead of the reads: 6 + 2T and 4 + 2T, 22
requests for 3 tags and 2 registries, of which one manifest GET in each registry but the reader.
A re-run writes nothing: T HEADs instead of the PUTs and their HEADs, then the digest's GET. The
summary prints the requests and the manifest GETs per registry. The clients come from one
:class:`ClientPool` for the whole run, so their keep-alive connections (and tokens) serve suffix
after suffix: about ``jobs`` connections per registry, not one per suffix. ``jobs`` defaults to
:data:`DEFAULT_JOBS`: each suffix waits on some twenty round trips, so with registries tens of
milliseconds away it is round trips, not the registries' request rate, that bound the merge unless
many suffixes are in flight (``bench/bench_merge.py --latency-ms 20`` measures both).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from ..docker import imagetools
from ..errors import CiError, OperationError, RegistryError, UserError, VerificationError
from ..github.actions import resolve_event, tag_source
from ..github.artifacts import DigestArtifact, read_digests_dir, select_artifacts
from ..matrix.model import Entry, Matrix, agreed_tag_latest, load_matrix
from ..matrix.naming import Family, check_run_id, keepalive_tag, normalize_suffix, suffix_label
from ..matrix.tags import Latest, TagSource, check_ref, check_sha, parse_latest
from ..oci.client import ClientFactory, RegistryClient, RegistryClients
from ..oci.manifest import (
    IMAGE_MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    Composed,
    Descriptor,
    compose_index,
    config_platform,
    is_attestation,
    is_attestation_manifest,
    parse_manifest,
)
from ..oci.platforms import same_platform
from ..oci.quay import QuayApi, quay_api
from ..oci.reference import DOCKER_HUB, ImageName, parse_image_name, sha256_digest
from ..oci.sign import SignOptions, sign_image
from ..output.markdown import md_table
from ..settings import FamilyConfig, family_config, load_settings

T = TypeVar("T")
# suffixes merged at once: each costs some twenty requests one after the other, so with registries tens of
# milliseconds away (quay.io and Docker Hub from a hosted runner) a suffix waits most of a second on round
# trips; 32 keep a runner's two cores busy instead (bench/bench_merge.py --latency-ms 20)
DEFAULT_JOBS = 32
ENV_PULL_COUNTED = "CI_PULL_COUNTED_REGISTRIES"  # registries whose manifest GETs count (default docker.io)


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


# ---- pure checks ---------------------------------------------------------------------------

def check_legs(target: MergeTarget) -> list[Entry]:
    """The matrix legs of the suffix, checked against the artifacts (raises _Skip / UserError)."""
    legs = target.matrix.legs_of(target.suffix)
    where = target.matrix.path
    if not legs:
        known = ", ".join(target.matrix.suffixes()[:8]) or "none"
        raise UserError(f"{target.label}: the matrix {where} declares no leg with this tag-suffix "
                        f"(found digest artifacts for it); known suffixes include: {known}")
    want = {e.ptag: e for e in legs}
    have = {a.key.ptag: a for a in target.artifacts}
    extra = sorted(set(have) - set(want))
    if extra:
        names = ", ".join(have[p].path.parent.name for p in extra)
        raise UserError(f"{target.label}: artifact(s) {names} are not legs of this suffix in {where} "
                        f"(declared platform-tags: {', '.join(sorted(want))}); remove them or fix the matrix")
    missing = sorted(set(want) - set(have))
    if missing:
        raise _Skip(f"leg(s) {', '.join(missing)} have no digest artifact (their build failed, was cancelled "
                    f"or was not downloaded); {len(have)} of {len(want)} legs present, nothing merged")
    return [want[p] for p in sorted(want)]


def tag_latest_of(legs: Sequence[Entry], label: str) -> Latest:
    """The suffix's latest policy (:func:`ci.matrix.agreed_tag_latest`: its legs must agree)."""
    return parse_latest(agreed_tag_latest(legs, label))


GC_HINT = ("a manifest pushed by digest carries no tag, and registries garbage-collect untagged manifests "
           "(Quay within hours), so it was probably reaped between build and merge. Rebuild and publish the "
           "leg again; publish with --anchor (a keepalive tag per leg in the cache repository) and merge with "
           "--anchor --run-id, which copies a reaped child back from its anchor and deletes the anchors")


# ---- preflight (reads) ---------------------------------------------------------------------

def reader_of(images: Sequence[ImageName], pull_counted: frozenset[str]) -> ImageName:
    """The image whose registry the children are read from (GET): the first not counting manifest GETs
    against a pull limit, else the first; the others are only asked with HEAD."""
    return next((i for i in images if i.registry not in pull_counted), images[0])


def preflight(target: MergeTarget, legs: Sequence[Entry], clients: Mapping[ImageName, RegistryClient],
              pull_counted: frozenset[str] = frozenset({DOCKER_HUB})) -> tuple[Descriptor, ...]:
    """Child descriptors read from the registries (manifests and configs from one, :func:`reader_of`; HEAD
    in the others); OperationError listing every problem found."""
    first = reader_of(target.config.images, pull_counted)
    images = [first, *(i for i in target.config.images if i != first)]
    problems: list[str] = []
    missing_any = False
    children: list[Descriptor] = []
    by_ptag = {e.ptag: e for e in legs}
    for art in sorted(target.artifacts, key=lambda a: a.key.ptag):
        leg = by_ptag[art.key.ptag]
        what = f"child {art.digest} (leg {art.key.ptag})"
        got = _read(lambda: clients[first].get_manifest(art.digest), first, "reading " + what)  # noqa: B023 (called at once)
        if got is None:
            problems.append(f"{what} is missing from {first}")
            missing_any = True
            continue
        body, media, _ = got
        try:
            parsed = parse_manifest(body, media)
        except ValueError as exc:
            problems.append(f"{what} in {first} is not a manifest: {exc}")
            continue
        media = parsed.media_type or media
        if parsed.is_index:
            problems.append(f"{what} in {first} is a manifest list ({media}), not a single-platform image; "
                            "publish each leg by digest with one platform")
            continue
        if media not in IMAGE_MANIFEST_TYPES or parsed.config is None:
            problems.append(f"{what} in {first} has media type {media!r}, not an image manifest")
            continue
        if is_attestation_manifest(parsed):
            problems.append(f"{what} in {first} is an attestation manifest, not an image")
            continue
        cfg_digest = parsed.config.digest
        cfg = _read(lambda: clients[first].get_blob(cfg_digest, MAX_CONFIG_BYTES),  # noqa: B023 (called at once)
                    first, f"reading the config of {what}")
        plat = config_platform(cfg)
        desc = Descriptor(media_type=media, digest=art.digest, size=len(body), platform=plat)
        if is_attestation(desc):
            problems.append(f"{what} in {first} has no usable platform in its config (unknown/unknown: an "
                            "attestation?); expected " + str(leg.platform))
            continue
        if plat is None or not same_platform(plat, leg.platform):
            problems.append(f"{what} in {first} is {plat}, but the matrix declares {leg.platform} for it "
                            f"({leg.where})")
            continue
        children.append(desc)
    for img in images[1:]:
        for desc in list(children):
            head = _read(lambda: clients[img].head_manifest(desc.digest),  # noqa: B023 (called at once)
                         img, f"checking child {desc.digest}")
            if head is None:
                problems.append(f"child {desc.digest} ({desc.platform}) is missing from {img}")
                missing_any = True
            elif head[1] and head[1] != desc.media_type or head[2] != desc.size:
                problems.append(f"child {desc.digest} in {img} is {head[1]} {head[2]} bytes; in {first} "
                                f"{desc.media_type} {desc.size} bytes")
    plats = [str(c.platform) for c in children]
    dupes = sorted({p for p in plats if plats.count(p) > 1})
    if dupes:
        problems.append(f"two children have the same platform {', '.join(dupes)}; one list holds one image "
                        "per platform (check the legs' platforms in the matrix)")
    if problems:
        hint = f"; {GC_HINT}" if missing_any else ""
        raise OperationError(f"merge {target.label}: preflight failed, nothing was written: "
                             + "; ".join(problems) + hint)
    return tuple(children)


def _read(fn: Callable[[], T], img: ImageName, what: str) -> T:
    """Run one preflight read; a registry failure says nothing was written."""
    try:
        return fn()
    except RegistryError as exc:
        raise RegistryError(f"preflight: {what} in {img}: {exc} (nothing was written; the merge needs "
                            "every registry of the family reachable)", registry=exc.registry,
                            status=exc.status, transient=exc.transient) from exc


# ---- planning --------------------------------------------------------------------------------

def plan_suffix(target: MergeTarget, options: MergeOptions,
                clients: Mapping[ImageName, RegistryClient]) -> MergePlan:
    legs = check_legs(target)
    tags = options.planned_tags.get((target.family, target.suffix)) or options.tag_source.tags(
        target.suffix, options.tag_latest or tag_latest_of(legs, target.label), target.family)
    children = preflight(target, legs, clients, options.pull_counted)
    try:
        composed = compose_index(children)
    except ValueError as exc:
        raise OperationError(f"merge {target.label}: composing the list: {exc}") from exc
    return MergePlan(target=target, children=children, composed=composed, tags=tags)


# ---- publishing --------------------------------------------------------------------------------

def _current(clients: Mapping[ImageName, RegistryClient], plan: MergePlan) -> dict[tuple[ImageName, str], str | None]:
    out: dict[tuple[ImageName, str], str | None] = {}
    for img in plan.target.config.images:
        for t in plan.tags:
            head = clients[img].head_manifest(t)
            out[(img, t)] = head[0] if head else None
    return out


def _todo(client: RegistryClient, plan: MergePlan) -> list[str]:
    """Tags of ``plan`` not yet pointing at the composed list in one registry (HEAD: its
    ``Docker-Content-Digest`` and size).

    The first tag is looked up; only when it is already in place (a re-run) are the others
    looked up too. Otherwise every tag is written: a PUT of the same bytes under a tag that
    already has them changes nothing, and a first merge saves a HEAD per tag.
    """
    def in_place(tag: str) -> bool:
        head = client.head_manifest(tag)
        return head is not None and head[0] == plan.composed.digest and head[2] == plan.composed.size

    if not in_place(plan.tags[0]):
        return list(plan.tags)
    return [t for t in plan.tags[1:] if not in_place(t)]


def publish_native(plan: MergePlan, clients: Mapping[ImageName, RegistryClient]
                   ) -> tuple[bool, list[str], dict[ImageName, set[str]]]:
    """PUT the tags in every registry, one registry after the other.

    Returns (changed, images tagged, the tags written per image). A (registry, tag) whose HEAD
    already gives the composed digest is not written (a re-run is a no-op);
    :meth:`RegistryClient.put_manifest` confirms every child is present before the first PUT,
    checks the registry's ``Docker-Content-Digest`` answer and reads every tag it wrote back at
    once with a HEAD (digest and size compared; a GET would be a pull on Docker Hub). The tags
    it returns were all answered by a HEAD, written or found in place; :func:`read_back` then
    proves the bytes with one GET of the list by digest per registry.
    """
    c = plan.composed
    images = plan.target.config.images
    todo = {img: _todo(clients[img], plan) for img in images}
    tagged: list[str] = []
    written: dict[ImageName, set[str]] = {img: set() for img in images}
    for img in images:
        try:
            for t in todo[img]:
                clients[img].put_manifest(t, c.body, c.media_type, read_back="head")
                written[img].add(t)
        except RegistryError as exc:
            done = ", ".join(tagged) or "none"
            raise OperationError(f"merge {plan.target.label}: tagging {c.digest} in {img} failed: {exc}; "
                                 f"registries already tagged: {done}; re-run the merge when {img.registry} is "
                                 "back (it is idempotent)") from exc
        tagged.append(str(img))
    return any(todo.values()), tagged, {img: set(plan.tags) for img in images}


def publish_imagetools(plan: MergePlan, clients: Mapping[ImageName, RegistryClient]) -> tuple[bool, list[str]]:
    """One ``docker buildx imagetools create`` per registry, all tags as ``-t`` (LocalAI's way)."""
    before = _current(clients, plan)
    tagged: list[str] = []
    for img in plan.target.config.images:
        try:
            imagetools.create(img, plan.tags, [ch.digest for ch in plan.children])
        except CiError as exc:
            done = ", ".join(tagged) or "none"
            raise OperationError(f"merge {plan.target.label}: {exc}; registries already tagged: {done}") from exc
        tagged.append(str(img))
    after = _current(clients, plan)
    return before != after, tagged


def verify_published(plan: MergePlan, clients: Mapping[ImageName, RegistryClient], method: Method,
                     pull_counted: frozenset[str] = frozenset({DOCKER_HUB})) -> str:
    """Every tag in every registry resolves to one digest (HEAD; the composed one for native); returns it."""
    seen: dict[str, list[str]] = {}
    for img in plan.target.config.images:
        for t in plan.tags:
            head = clients[img].head_manifest(t)
            seen.setdefault(head[0] if head else "(missing)", []).append(img.with_tag(t))
    if len(seen) != 1 or "(missing)" in seen:
        detail = "; ".join(f"{d}: {', '.join(refs)}" for d, refs in seen.items())
        raise OperationError(f"merge {plan.target.label}: after publishing, the tags do not resolve to one list "
                             f"digest: {detail}; re-run the merge")
    digest = next(iter(seen))
    if method is Method.NATIVE and digest != plan.composed.digest:
        raise OperationError(f"merge {plan.target.label}: the registries serve {digest}, but the composed list is "
                             f"{plan.composed.digest}; another writer raced this merge, re-run it")
    if method is Method.IMAGETOOLS:
        img = reader_of(plan.target.config.images, pull_counted)
        got = clients[img].get_manifest(digest)
        kids = parse_manifest(got[0], got[1]).children if got else ()
        want = {(c.digest, str(c.platform)) for c in plan.children}
        have = {(k.digest, str(k.platform)) for k in kids}
        if want != have:
            raise OperationError(f"merge {plan.target.label}: imagetools produced a list with children "
                                 f"{sorted(have)}, expected {sorted(want)}")
    return digest


def read_back(plan: MergePlan, clients: Mapping[ImageName, RegistryClient], body: bytes,
              verified: Mapping[ImageName, set[str]] | None = None) -> None:
    """The list digest, in every registry, serves exactly ``body`` (one GET each, bytes compared), and every
    tag points at it (``Docker-Content-Digest`` of a HEAD, size compared).

    ``verified``: tags per image a HEAD already answered with the list's digest and size after they were
    written or found in place (:func:`publish_native`, :func:`verify_published`); they are not asked a
    second time. A HEAD never stands for the bytes: a registry that accepts the writes and stores
    nothing (or whose HEAD claims the list) fails at the GET. Raises :class:`VerificationError` naming
    the registry and what it serves instead.
    """
    digest = sha256_digest(body)
    for img in plan.target.config.images:
        problems: list[str] = []
        done = verified.get(img, set()) if verified else set()
        client = clients[img]
        for ref in (digest, *(t for t in plan.tags if t not in done)):
            shown = img.with_digest(ref) if ref.startswith("sha256:") else img.with_tag(ref)
            try:
                if ref == digest:
                    got = client.get_manifest(ref)
                    found = None if got is None else (got[2], len(got[0])) if got[0] != body else (digest, len(body))
                else:
                    head = client.head_manifest(ref)
                    found = None if head is None else (head[0], head[2])
            except RegistryError as exc:
                raise VerificationError(f"merge {plan.target.label}: reading back {shown} from {img.registry}: "
                                        f"{exc}; the writes are done, re-run the merge to verify them") from exc
            if found is None:
                problems.append(f"{shown} is not found")
            elif found != (digest, len(body)):
                problems.append(f"{shown} serves {found[0]} ({found[1]} bytes)")
        if problems:
            raise VerificationError(
                f"merge {plan.target.label}: read back from {img.registry}: {'; '.join(problems)}, not the list "
                f"{digest} ({len(body)} bytes) that was written; {img.registry} accepted the writes but does not "
                "serve them (a registry dropping writes, or another writer racing this merge); re-run the merge, "
                f"and check {img.registry} if it fails again")


def delete_keepalive(target: MergeTarget, run_id: str, pool: ClientPool,
                     quay: QuayApi | None = None) -> tuple[list[str], list[str], int]:
    """Delete the suffix's keepalive anchors (exact names, never a prefix match) from the anchor
    repository, the family's cache repository (builds tag nothing else).

    Quay refuses a tag delete through the registry API (405): its REST API deletes it when
    ``QUAY_TOKEN`` is given (:mod:`ci.oci.quay`); another registry is asked through the registry API.
    Returns (deleted, problems, requests sent); never raises: a failure to delete does not fail the
    merge, the anchor stays in the internal cache repository until its retention removes it.
    """
    ptags = sorted({a.key.ptag for a in target.artifacts} | {e.ptag for e in target.matrix.legs_of(target.suffix)})
    try:
        wanted = sorted({keepalive_tag(run_id, target.family, target.suffix, p) for p in ptags})
    except ValueError as exc:
        return [], [f"keepalive tags: {exc}"], 0
    repo = target.config.cache
    deleted: list[str] = []
    problems: list[str] = []
    try:
        client = pool.lease(repo, target.config)
    except CiError as exc:
        return [], [f"{repo}: {exc}"], 0
    before, ok = client.requests_sent, False
    sent = 0
    try:
        # look each exact name up (HEAD) instead of listing a repository's thousands of tags
        for t in [t for t in wanted if client.head_manifest(t) is not None]:
            if quay is not None and quay.speaks(repo.registry):
                done, why = quay.delete_tag(repo, t, plain_http=target.config.plain_http)
                sent += 1
            else:
                done, why = client.delete_tag(t), ("the registry does not allow deleting a tag alone (deleting by "
                                                   "digest would remove the child)")
            if done:
                deleted.append(repo.with_tag(t))
            else:
                problems.append(f"{repo.with_tag(t)}: {why}; it stays in the cache repository until its retention "
                                "removes it")
        ok = True
    except CiError as exc:
        problems.append(f"{repo}: deleting keepalive tags: {exc}")
    finally:
        sent += client.requests_sent - before
        pool.give_back(repo, target.config, client, reuse=ok)
    return deleted, problems, sent


def restore_from_anchor(target: MergeTarget, clients: Mapping[ImageName, RegistryClient],
                        pool: ClientPool) -> tuple[str, ...]:
    """Copy back, from the anchor repository, every child a registry reaped from a target.

    A leg is pushed by digest (untagged) into the targets and, with ``--anchor``, tagged
    ``keepalive-...`` in the cache repository. Quay garbage-collects untagged manifests per
    repository, so by the merge a target may have lost the child while the anchored copy lives on:
    for each target on the cache repository's registry, a missing child's blobs are mounted from the
    anchor repository and its manifest put back by digest, byte for byte (what LocalAI's
    ``imagetools create`` from ``ci-cache@digest`` does). Returns the children restored (``image@digest``);
    a child absent from the anchor too is left to the preflight, which names it."""
    anchor = target.config.cache
    images = [i for i in target.config.images if i.registry == anchor.registry and i != anchor]
    if not images:
        return ()
    restored: list[str] = []
    source: RegistryClient | None = None
    ok = False
    try:
        for art in sorted(target.artifacts, key=lambda a: a.key.ptag):
            for img in images:
                cl = clients[img]
                if cl.head_manifest(art.digest) is not None:
                    continue
                if source is None:
                    source = pool.lease(anchor, target.config)
                got = source.get_manifest(art.digest)
                if got is None:
                    continue
                body, media, _ = got
                try:
                    parsed = parse_manifest(body, media)
                except ValueError as exc:
                    raise OperationError(f"merge {target.label}: the anchored child {anchor}@{art.digest} is not a "
                                         f"manifest: {exc}") from exc
                for blob in (parsed.config, *parsed.layers):
                    if blob is not None and not cl.blob_exists(blob.digest) \
                            and not cl.mount_blob(blob.digest, anchor.repository):
                        raise OperationError(
                            f"merge {target.label}: restoring child {art.digest} in {img} from its anchor in {anchor}: "
                            f"{img.registry} did not mount blob {blob.digest} from {anchor.repository}; nothing else "
                            "was written; check that the credentials can read the cache repository")
                cl.put_manifest(art.digest, body, parsed.media_type or media)
                restored.append(img.with_digest(art.digest))
        ok = True
    finally:
        if source is not None:
            pool.give_back(anchor, target.config, source, reuse=ok)
    return tuple(restored)


# ---- one suffix ------------------------------------------------------------------------------

class ClientPool:
    """Registry clients shared by the suffixes of one merge (``--all``: hundreds of them).

    Per (image, family config), the idle clients, each holding its keep-alive connection (and
    token): a suffix leases one client per image, uses it in one thread, and gives it back, so
    a merge opens about ``jobs`` connections per registry instead of one per suffix. A client
    whose suffix failed is closed instead (the next suffix starts on a fresh one, as it would
    without the pool). Thread-safe; :meth:`close` closes every idle client.
    """

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._idle: dict[tuple[ImageName, FamilyConfig], list[RegistryClient]] = {}
        self._closed = False
        self.made = 0  # clients the factory made

    def lease(self, img: ImageName, config: FamilyConfig) -> RegistryClient:
        with self._lock:
            idle = self._idle.get((img, config))
            if idle:
                return idle.pop()
            self.made += 1
        return self._factory(img, config.plain_http)

    def give_back(self, img: ImageName, config: FamilyConfig, client: RegistryClient, *, reuse: bool = True) -> None:
        with self._lock:
            if reuse and not self._closed:
                self._idle.setdefault((img, config), []).append(client)
                return
        client.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in clients:
            c.close()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_target(target: MergeTarget, options: MergeOptions, pool: ClientPool) -> SuffixResult:
    """Merge one suffix with clients leased from ``pool``; raises _Skip or CiError (the callers
    turn them into results)."""
    method = options.method.resolved()
    images = target.config.images
    clients: dict[ImageName, RegistryClient] = {}
    start: dict[ImageName, tuple[int, int]] = {}  # (retries, requests) of each client when leased
    gets: dict[ImageName, int] = {}  # manifest GETs of each client when leased
    ok = False
    try:
        for img in images:
            clients[img] = pool.lease(img, target.config)
            start[img] = (clients[img].retries, clients[img].requests_sent)
            gets[img] = clients[img].manifest_gets
        restored = restore_from_anchor(target, clients, pool) if options.anchor_run_id and not options.dry_run else ()
        plan = plan_suffix(target, options, clients)
        base = SuffixResult(
            family=target.family, suffix=target.suffix, outcome=Outcome.MERGED, digest=plan.composed.digest,
            tags=plan.tags, images=tuple(str(i) for i in images),
            platforms=tuple(str(c.platform) for c in plan.children),
            children=tuple(c.digest for c in plan.children), list_json=plan.composed.body.decode(), restored=restored,
            commands=tuple(tuple(c) for c in plan.imagetools_commands()) if method is Method.IMAGETOOLS else ())
        if options.dry_run:
            ok = True
            return replace(base, dry_run=True, requests=_sent(clients, start), manifest_gets=_gets(clients, gets))
        verified: dict[ImageName, set[str]] = {}
        if method is Method.IMAGETOOLS:
            changed, tagged = publish_imagetools(plan, clients)
            # one digest everywhere (HEAD of every tag), the expected children
            digest = verify_published(plan, clients, method, options.pull_counted)
            made = clients[reader_of(images, options.pull_counted)].get_manifest(digest)
            body = made[0] if made is not None else b""
            verified = {img: set(plan.tags) for img in images}
        else:
            changed, tagged, verified = publish_native(plan, clients)
            digest, body = plan.composed.digest, plan.composed.body
        read_back(plan, clients, body, verified)  # every (registry, tag) and the digest serve exactly these bytes
        result = replace(base, digest=digest, changed=changed, tagged_images=tuple(tagged))
        if options.sign is not None:
            for img in images:
                sign_image(img.with_digest(digest), options.sign, plain_http=target.config.plain_http(img.registry))
            result = replace(result, signed=True)
        result = replace(result, retries=sum(cl.retries - start[img][0] for img, cl in clients.items()),
                         requests=_sent(clients, start), manifest_gets=_gets(clients, gets))
        ok = True
    except _Skip:
        ok = True  # a leg is missing: nothing went wrong with the clients
        raise
    finally:
        for img, cl in clients.items():
            pool.give_back(img, target.config, cl, reuse=ok)
    if options.anchor_run_id:
        deleted, problems, sent = delete_keepalive(target, options.anchor_run_id, pool, options.quay)
        result = replace(result, keepalive_deleted=tuple(deleted), keepalive_problems=tuple(problems),
                         requests=result.requests + sent)
    return result


def _sent(clients: Mapping[ImageName, RegistryClient], start: Mapping[ImageName, tuple[int, int]]) -> int:
    return sum(cl.requests_sent - start[img][1] for img, cl in clients.items())


def _gets(clients: Mapping[ImageName, RegistryClient], start: Mapping[ImageName, int]) -> tuple[tuple[str, int], ...]:
    """Manifest GETs per registry since ``start`` (the registry's images summed)."""
    out: dict[str, int] = {}
    for img, cl in clients.items():
        out[img.registry] = out.get(img.registry, 0) + cl.manifest_gets - start[img]
    return tuple(out.items())  # in the family's order of registries


def _run_one(target: MergeTarget, options: MergeOptions, pool: ClientPool) -> SuffixResult:
    try:
        return merge_target(target, options, pool)
    except _Skip as exc:
        return SuffixResult(target.family, target.suffix, Outcome.SKIPPED, reason=str(exc))
    except CiError as exc:
        return SuffixResult(target.family, target.suffix, Outcome.FAILED, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - one suffix's unforeseen failure must not abort the others
        return SuffixResult(target.family, target.suffix, Outcome.FAILED,
                            reason=f"unexpected {type(exc).__name__}: {exc} (please report it; re-run with --debug)")


# ---- entry points ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FamilySetup:
    """What a family needs to merge: where it publishes and its matrix."""

    config: FamilyConfig
    matrix: Matrix


def _check_options(options: MergeOptions) -> None:
    check_ref(options.tag_source.ref)
    check_sha(options.tag_source.sha)
    if options.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {options.jobs}")
    if options.anchor_run_id is not None:
        try:
            check_run_id(options.anchor_run_id)
        except ValueError as exc:
            raise UserError(f"--run-id: {exc}") from exc


def merge_suffix(digests_dir: str | Path, family: Family, suffix: str, setup: FamilySetup,
                 options: MergeOptions, factory: ClientFactory | None = None) -> SuffixResult:
    """Merge one suffix. Raises CiError on any problem (a missing leg is an OperationError here)."""
    _check_options(options)
    suffix = normalize_suffix(family, suffix)
    arts = read_digests_dir(digests_dir)
    selected = select_artifacts(arts, family, suffix)
    if not selected:
        other = family.sibling
        hint = ""
        if select_artifacts(arts, other, normalize_suffix(other, suffix)):
            hint = f"; there are {other} artifacts for it: pass --family {other}"
        raise UserError(f"no digest artifact for {suffix_label(family, suffix)} ({family}) in {digests_dir}{hint}; "
                        "download the legs' digests artifacts there first")
    target = MergeTarget(family, suffix, setup.config, setup.matrix, tuple(selected))
    try:
        with ClientPool(factory or RegistryClients()) as pool:
            return merge_target(target, options, pool)
    except _Skip as exc:
        raise OperationError(f"merge {target.label}: {exc}") from exc


def discover_targets(digests_dir: str | Path, setups: Mapping[Family, FamilySetup],
                     only: Sequence[str] | None = None) -> list[MergeTarget]:
    """Every (family, suffix) in the digests directory whose family is in ``setups`` (and, with ``only``,
    whose suffix is listed), in a stable order."""
    arts = read_digests_dir(digests_dir) if only is None or Path(digests_dir).exists() else []
    keys = sorted({(a.key.family, a.key.suffix) for a in arts})
    out: list[MergeTarget] = []
    for fam, suf in keys:
        if fam not in setups:  # a family not asked for (``--all --family X``)
            continue
        if only is not None and suf not in only:  # another class's suffix: not this job's
            continue
        s = setups[fam]
        out.append(MergeTarget(fam, suf, s.config, s.matrix, tuple(select_artifacts(arts, fam, suf))))
    return out


def merge_all(digests_dir: str | Path, setups: Mapping[Family, FamilySetup], options: MergeOptions,
              factory: ClientFactory | None = None,
              on_result: Callable[[SuffixResult], None] | None = None,
              only: Sequence[str] | None = None) -> MergeReport:
    """Merge every suffix found, ``options.jobs`` at a time; per-suffix outcomes, never raises for one suffix.

    ``only`` (a class merge job; ``setups`` then holds one family): exactly these suffixes. Others in the
    directory are left alone; a listed one without any digest artifact (every leg's build failed or was
    skipped) is reported skipped, and the report fails on a skipped suffix as on a failed one."""
    _check_options(options)
    targets = discover_targets(digests_dir, setups, only)
    results: list[SuffixResult] = []
    if only is not None:
        fam = next(iter(setups))
        found = {t.suffix for t in targets}
        for suf in dict.fromkeys(only):
            if suf not in found:
                res = SuffixResult(fam, suf, Outcome.SKIPPED, reason="no digest artifact: every leg's build failed "
                                   "or was skipped (see the build jobs); nothing was merged")
                results.append(res)
                if on_result is not None:
                    on_result(res)
        if not targets:
            return MergeReport(tuple(results), strict=True)
    elif not targets:
        raise UserError(f"{digests_dir} holds no digest artifacts; nothing to merge")
    with ClientPool(factory or RegistryClients()) as clients, \
            ThreadPoolExecutor(max_workers=min(options.jobs, len(targets)), thread_name_prefix="merge") as workers:
        for res in workers.map(lambda t: _run_one(t, options, clients), targets):
            results.append(res)
            if on_result is not None:
                on_result(res)
    return MergeReport(tuple(results), strict=only is not None)


# ---- the verb behind nox -s merge: options in, a report out ---------------------------------

@dataclass(frozen=True)
class MergeRequest:
    """The options of ``nox -s merge`` (one ``tag_suffix``, or ``all``); None: the default."""

    digests_dir: str = "digests"
    family: Family | None = None  # None: backends for one suffix; both families with --all
    tag_suffix: str = ""
    all: bool = False
    suffixes: tuple[str, ...] | None = None  # --all --family F --suffixes: a class merge job's
    images: str | None = None
    server_images: str | None = None
    matrix: str | None = None
    server_matrix: str | None = None
    event: str | None = None
    ref: str | None = None
    sha: str | None = None
    tag_latest: str | None = None
    anchor: bool = False
    run_id: str | None = None
    sign: bool = False
    key: str | None = None
    tlog: bool = True
    referrers_mode: str = ""  # cosign --registry-referrers-mode (oci-1-1)
    method: str = "auto"
    dry_run: bool = False
    jobs: int = DEFAULT_JOBS


def pull_counted(env: Mapping[str, str]) -> frozenset[str]:
    """Registries that count manifest GETs against a pull limit: ``CI_PULL_COUNTED_REGISTRIES`` (comma
    list), else Docker Hub. The merge reads children from another registry of the family when it can."""
    names = [n.strip() for n in env.get(ENV_PULL_COUNTED, "").split(",") if n.strip()]
    out: set[str] = set()
    for n in names:
        try:
            out.add(parse_image_name(f"{n}/x").registry)  # validates the host, folds Docker Hub's aliases
        except ValueError as exc:
            raise UserError(f"{ENV_PULL_COUNTED}: {n!r} is not a registry host[:port] (e.g. docker.io)") from exc
    return frozenset(out) if names else frozenset({DOCKER_HUB})


def merge_options(req: MergeRequest, env: Mapping[str, str], note: Callable[[str], None]) -> MergeOptions:
    """The merge policy of a request: tags from ``ci.github.tag_source`` (the flags, GITHUB_*, else the
    checkout, with a note), keepalive cleanup only with ``--anchor`` and a run id, a key only to sign."""
    event = resolve_event(req.event, env)
    source, told = tag_source(env, event=req.event, ref=req.ref, sha=req.sha)
    if told:  # a local run: tagged as CI would tag this checkout (invoke pipeline does the same)
        note(told)
    run_id = None
    if req.anchor:
        run_id = req.run_id or event.run_id
        if not run_id:
            raise UserError("--anchor needs the build's run id: pass --run-id ID (GITHUB_RUN_ID in Actions)")
    elif req.run_id:
        raise UserError("--run-id is only used with --anchor")
    if req.key and not req.sign:
        raise UserError("--key is only used with --sign")
    if req.referrers_mode and not req.sign:
        raise UserError("--registry-referrers-mode is only used with --sign")
    return MergeOptions(method=Method(req.method), tag_source=source,
                        tag_latest=parse_latest(req.tag_latest) if req.tag_latest else None, anchor_run_id=run_id,
                        quay=quay_api(env) if run_id else None,
                        sign=SignOptions(key=req.key, tlog=req.tlog, referrers_mode=req.referrers_mode, env=env)
                        if req.sign else None,
                        dry_run=req.dry_run, jobs=req.jobs, pull_counted=pull_counted(env))


def family_setup(family: Family, images: str | None, matrix: str | None, env: Mapping[str, str],
                 note: Callable[[str], None]) -> FamilySetup:
    """A family's registries (notes for those reached over plain HTTP) and its matrix."""
    settings = load_settings(".")
    config = family_config(family, images=images, env=env, settings=settings)
    for reg in config.registries:
        if config.plain_http(reg):
            note(f"using plain HTTP for {reg} (loopback or listed in CI_INSECURE_REGISTRIES)")
    return FamilySetup(config=config, matrix=load_matrix(matrix or settings.matrix_path(family), family))


def merge_setups(req: MergeRequest, env: Mapping[str, str], note: Callable[[str], None]) -> dict[Family, FamilySetup]:
    """The families ``--all`` merges: the named one (a class job: even with no artifact), else each
    family with artifacts in the digests directory, each with its own images and matrix options."""
    if req.suffixes is not None:
        fam = req.family or Family.BACKENDS
        return {fam: family_setup(fam, req.images, req.matrix, env, note)}
    found = {a.key.family for a in read_digests_dir(req.digests_dir)}
    primary = req.family or Family.BACKENDS
    setups = {}
    for fam in ([req.family] if req.family else [Family.BACKENDS, Family.SERVER]):
        if fam in found:
            mine = fam is primary
            setups[fam] = family_setup(fam, req.images if mine else req.server_images,
                                       req.matrix if mine else req.server_matrix, env, note)
    return setups


def run_merge(req: MergeRequest, env: Mapping[str, str], *, note: Callable[[str], None] = lambda s: None,
              on_result: Callable[[SuffixResult], None] | None = None) -> MergeReport:
    """``nox -s merge``: one suffix (its failure raises), or ``--all`` (per-suffix outcomes)."""
    options = merge_options(req, env, note)
    if req.all:
        return merge_all(req.digests_dir, merge_setups(req, env, note), options, on_result=on_result,
                         only=req.suffixes)
    fam = req.family or Family.BACKENDS
    result = merge_suffix(req.digests_dir, fam, req.tag_suffix, family_setup(fam, req.images, req.matrix, env, note),
                          options)
    if on_result is not None:
        on_result(result)
    return MergeReport((result,))


# ---- presentation ----------------------------------------------------------------------------

def summary_markdown(report: MergeReport, pull_counted: frozenset[str] = frozenset({DOCKER_HUB})) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: merged tags and digests per registry, skipped with why, and the
    requests sent (manifest GETs per registry: Docker Hub counts each against the pull limit)."""
    rows: list[list[str]] = []
    for r in report.results:
        if r.outcome is Outcome.MERGED:
            for img in r.images:
                rows.append([r.label, "merged" + (" (dry run)" if r.dry_run else ""), img,
                             ", ".join(f"`{t}`" for t in r.tags), f"`{r.digest}`"])
        else:
            rows.append([r.label, r.outcome.value, "", "", r.reason])
    line = report.requests_line(pull_counted)
    return ("### Merged manifest lists\n\n" + md_table(["suffix", "result", "registry", "tags", "list digest / reason"], rows)
            + (f"\n{line}\n" if line else ""))


def format_result(r: SuffixResult) -> str:
    """Human lines for one suffix."""
    if r.outcome is not Outcome.MERGED:
        return f"{r.outcome.value}: {r.label}: {r.reason}"
    lines = []
    if r.dry_run:
        lines += [f"dry run: {r.label}: nothing written", "list:", r.list_json.rstrip(), "tags: " + ", ".join(r.tags),
                  "targets:"] + [f"  {img}:{t}" for img in r.images for t in r.tags]
        lines += ["commands:"] + ["  " + " ".join(c) for c in r.commands] if r.commands else []
        lines.append(f"list digest: {r.digest}")
        return "\n".join(lines)
    state = "merged" if r.changed else "unchanged (already published)"
    lines.append(f"{state}: {r.label} -> {r.digest}")
    lines.append(f"  platforms: {', '.join(r.platforms)}")
    lines += [f"  {img}:{t}" for img in r.images for t in r.tags]
    if r.retries:
        lines.append(f"  {r.retries} registry request(s) retried after transient failures")
    if r.signed:
        lines.append("  signed (cosign, recursive, by digest)")
    lines += [f"  child restored from its keepalive anchor: {d}" for d in r.restored]
    lines += [f"  keepalive tag deleted: {d}" for d in r.keepalive_deleted]
    lines += [f"  warning: keepalive tag not deleted: {p}" for p in r.keepalive_problems]
    return "\n".join(lines)
