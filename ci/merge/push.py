"""Writing a planned list to every registry and proving it: native PUTs of the same bytes (or
``docker buildx imagetools create``), the read-back, the keepalive anchors deleted, a tag restored
from its anchor.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..docker import imagetools
from ..errors import CiError, OperationError, RegistryError, VerificationError
from ..matrix.naming import keepalive_tag
from ..oci.client import RegistryClient
from ..oci.manifest import (
    parse_manifest,
)
from ..oci.quay import QuayApi
from ..oci.reference import DOCKER_HUB, ImageName, sha256_digest
from .model import MergePlan, MergeTarget, Method
from .plan import reader_of
from .pool import ClientPool


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
