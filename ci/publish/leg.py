"""Publish a built leg by digest to every registry of its family (verb): from an OCI image layout or
archive (:func:`push_layout`: the hand-off of builders that export one, or a leg another tool built),
or from the engine (:func:`push_image`: the classic store's docker driver, which can only ``--load``).

A layout is staged by :func:`stage_layout`: its blobs are uploaded from where they are, its manifest
is published exactly as written (an archive's layers are copied into the blob cache first; an
uncompressed layer is gzipped there and the manifest composed, as below). An engine image:

Pipeline (nothing holds a layer in memory):

1. **Stage** (:func:`stage_image`): if the blob cache holds a record for the engine image id
   (``images/<params>/<id>``: the manifest staged for it before) and every blob that manifest
   references, nothing is exported. Otherwise ``docker save`` is streamed once through
   ``tarfile`` in stream mode (a legacy docker-archive or, since Docker 25, an OCI image
   layout; entries in any order). Uncompressed layers (blob digest = a ``diff_id``: the
   classic image store, or layers loaded from a docker-archive) are gzipped once into the
   content-addressed cache (:mod:`ci.blobcache`, deterministic, chunks deflated on a thread
   pool); compressed layers (the containerd image store) are stored exactly as exported.
   The manifest, config and layers are then resolved from ``index.json`` (an index is
   narrowed to the inspected platform, attestations skipped) and checked against each other
   and against ``docker image inspect``.
2. **Upload** (:func:`push_image`, :func:`push_layout`), overlapping with staging:
   :data:`UPLOADS_PER_TARGET` worker threads per target repository, each with its own
   :class:`~ci.registry.RegistryClient`, all targets at once. Each blob is uploaded as
   soon as it is in the cache: HEAD first (present: skipped), then a cross-repository
   mount from a sibling repository of the same registry where the blob is known (the
   family's other repositories, the cache repository, the other family's repositories,
   and repositories this machine pushed it to before), else a streamed upload from the
   cache file.
3. **Manifest**: when every layer is one the engine had compressed, the engine's own
   manifest bytes (so the published digest is the engine's manifest digest, the containerd
   store's image id); otherwise a Docker v2 manifest composed once
   (:func:`ci.manifest.compose_image_manifest`) over the gzipped layers. After every target
   confirmed every blob, the *same bytes* are PUT by digest (no tag) to each target, HEADed
   back, and the digests compared. Only then are tags (PR tags, keepalive anchors) added
   and, in :func:`publish_leg`, the digest file written.

No provenance or SBOM attestation is ever published: a single image manifest is pushed (an
engine index is narrowed to its image manifest for the engine's platform), whose digest is
equal in every registry because the same bytes are sent everywhere, and stable across
re-publishes because gzip here is deterministic and engine manifests are sent unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..docker.engine import Engine
from ..github.artifacts import write_digest_file
from ..matrix.naming import LegKey
from ..oci.blobcache import BlobCache
from ..oci.platforms import Platform
from ..oci.reference import ImageName

if TYPE_CHECKING:
    from ..oci.client import ClientFactory
from .upload import PushReport, PushTarget, push_image, push_layout


@dataclass(frozen=True)
class PublishResult:
    digest: str
    artifact: str
    digest_file: Path | None
    report: PushReport
    refs: tuple[str, ...]  # every pushed reference, e.g. quay.io/x@sha256:..., quay.io/x:pr-12-amd64


def publish_leg(engine: Engine, image: str, *, leg: LegKey,
                targets: Sequence[PushTarget], cache: BlobCache, client_factory: ClientFactory,
                digests_dir: str | Path | None, tags: Sequence[str] = (), mount_from: Iterable[ImageName] = (),
                log: Callable[[str], None] = lambda s: None, content_dirs: Sequence[str] = ()) -> PublishResult:
    """Publish one leg; write its digest file (when ``digests_dir``) only after every registry agrees.

    ``tags`` go into every target repository, ``PushTarget.tags`` into that target only. A keepalive
    anchor (``--anchor``) is one such target: the family's cache repository, with the anchor tag
    (``ci.build.leg.publish_targets``); the repositories users browse get the digest and no tag. The
    anchor keeps an untagged copy alive where the registry garbage-collects untagged manifests per
    repository (Quay), and the merge copies a reaped child back from it (``ci.merge.run``).
    """
    report = push_image(engine, image, targets, cache=cache, client_factory=client_factory, tags=tags,
                        mount_from=mount_from, log=log, content_dirs=content_dirs)
    return _published(report, leg, targets, digests_dir, tags)


def publish_layout_leg(layout: str | Path, *, leg: LegKey, platform: Platform | None, targets: Sequence[PushTarget],
                       cache: BlobCache, client_factory: ClientFactory, digests_dir: str | Path | None,
                       tags: Sequence[str] = (), mount_from: Iterable[ImageName] = (),
                       log: Callable[[str], None] = lambda s: None) -> PublishResult:
    """:func:`publish_leg` for an OCI layout or image archive (a BuildKit export, or a leg another tool built)."""
    report = push_layout(layout, targets, cache=cache, client_factory=client_factory, platform=platform, tags=tags,
                         mount_from=mount_from, log=log)
    return _published(report, leg, targets, digests_dir, tags)


def _published(report: PushReport, leg: LegKey, targets: Sequence[PushTarget], digests_dir: str | Path | None,
               tags: Sequence[str]) -> PublishResult:
    path = write_digest_file(digests_dir, leg, report.digest) if digests_dir is not None else None
    refs = tuple(t.image.with_digest(report.digest) for t in targets) + tuple(
        t.image.with_tag(tag) for tag in report.tags for t in targets if tag in tags or tag in t.tags)
    return PublishResult(report.digest, leg.artifact, path, report, refs)
