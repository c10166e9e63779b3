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

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CiError, OperationError, UserError
from ..github.actions import resolve_event, tag_source
from ..github.artifacts import DigestArtifact, read_digests_dir
from ..matrix.model import Matrix, load_matrix
from ..matrix.naming import Family, check_run_id, normalize_suffix, suffix_label
from ..matrix.tags import check_ref, check_sha, parse_latest
from ..oci.client import ClientFactory, RegistryClient, RegistryClients
from ..oci.quay import quay_api
from ..oci.reference import DOCKER_HUB, ImageName, parse_image_name
from ..oci.sign import SignOptions, sign_image
from ..settings import FamilyConfig, family_config, load_settings
from .model import DEFAULT_JOBS, MergeOptions, MergeReport, MergeTarget, Method, Outcome, SuffixResult, _Skip
from .plan import plan_suffix, reader_of, select_artifacts
from .pool import ClientPool
from .push import delete_keepalive, publish_imagetools, publish_native, read_back, restore_from_anchor, verify_published

ENV_PULL_COUNTED = "CI_PULL_COUNTED_REGISTRIES"  # registries whose manifest GETs count (default docker.io)


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
    grouped: dict[tuple[Family, str], list[DigestArtifact]] = {}  # one pass: linear in the artifacts
    for a in arts:
        grouped.setdefault((a.key.family, a.key.suffix), []).append(a)
    wanted = None if only is None else set(only)
    out: list[MergeTarget] = []
    for (fam, suf), selected in sorted(grouped.items(), key=lambda kv: kv[0]):
        if fam not in setups:  # a family not asked for (``--all --family X``)
            continue
        if wanted is not None and suf not in wanted:  # another class's suffix: not this job's
            continue
        s = setups[fam]
        out.append(MergeTarget(fam, suf, s.config, s.matrix, tuple(selected)))
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
