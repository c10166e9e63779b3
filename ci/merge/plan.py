"""What a suffix's list will be, before anything is written: its digest artifacts selected (exactly
the suffix's: parsed keys, never a prefix), its legs checked against the matrix and the
artifacts, the preflight (reads only: every child in every registry, a single-platform image of the
leg's platform) and the plan (the list composed once, bytes and digest, and its tags).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from ..errors import OperationError, RegistryError, UserError
from ..github.artifacts import DigestArtifact
from ..matrix.model import Entry, agreed_tag_latest
from ..matrix.naming import Family
from ..matrix.tags import Latest, parse_latest
from ..oci.client import RegistryClient
from ..oci.manifest import (
    IMAGE_MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    Descriptor,
    compose_index,
    config_platform,
    is_attestation,
    is_attestation_manifest,
    parse_manifest,
)
from ..oci.platforms import same_platform
from ..oci.reference import DOCKER_HUB, ImageName
from .model import MergeOptions, MergePlan, MergeTarget, _Skip

T = TypeVar("T")



def select_artifacts(artifacts: list[DigestArtifact], family: Family, suffix: str) -> list[DigestArtifact]:
    """Exactly the artifacts of one (family, suffix): equality on the parsed key, never a prefix."""
    return [a for a in artifacts if a.key.family is family and a.key.suffix == suffix]


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
