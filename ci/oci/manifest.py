"""OCI / Docker manifest composition and classification (pure: bytes in, bytes out).

Composition returns the exact bytes and the digest computed from those bytes
before anything is pushed; publishers send the same bytes to every registry,
so the digest is identical everywhere by construction.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from .platforms import Platform, platform_from_oci
from .reference import parse_digest, sha256_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

IMAGE_MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
ALL_MANIFEST_TYPES = IMAGE_MANIFEST_TYPES + INDEX_TYPES
ACCEPT_MANIFESTS = ", ".join(ALL_MANIFEST_TYPES)

# An image config is a few KiB (a long history: a few hundred). One limit for every reader -- the export
# publish stages, the merge's platform check, inspect -- so that a leg publish accepts is one merge can read.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the distribution registry refuses bigger manifests; so does this project
MAX_MEDIA_TYPE_CHARS = 255  # RFC 6838: 127 characters, "/", 127 characters
INTOTO_LAYER = "application/vnd.in-toto+json"  # the layer type of provenance/SBOM attestation manifests

# buildx marks attestation manifests in an index with this annotation
ATTESTATION_REF_TYPE = "vnd.docker.reference.type"
ATTESTATION_VALUE = "attestation-manifest"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            d["platform"] = self.platform.to_oci()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


@dataclass(frozen=True)
class Composed:
    """Manifest bytes and the descriptor computed from exactly those bytes."""

    body: bytes
    media_type: str
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256_digest(self.body))

    @property
    def size(self) -> int:
        return len(self.body)


def _dump(obj: object) -> bytes:
    # fixed key order and separators: same input -> same bytes -> same digest
    return json.dumps(obj, indent=3, separators=(",", ": "), ensure_ascii=True).encode() + b"\n"


def compose_image_manifest(config: Descriptor, layers: Sequence[Descriptor],
                           media_type: str = DOCKER_MANIFEST) -> Composed:
    """A single-platform image manifest: Docker v2 schema 2 (what ``docker push`` produces) or OCI."""
    if media_type not in IMAGE_MANIFEST_TYPES:
        raise ValueError(f"{media_type} is not an image manifest media type")
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return Composed(_dump(body), media_type)


def compose_index(children: Sequence[Descriptor]) -> Composed:
    """A manifest list over single-platform children, sorted by platform.

    Docker list when every child is a Docker manifest, OCI index otherwise (as buildx does).
    Children are deduplicated by digest; every child must carry a platform.
    """
    if not children:
        raise ValueError("a manifest list needs at least one child")
    seen: dict[str, Descriptor] = {}
    for c in children:
        if c.platform is None:
            raise ValueError(f"child {c.digest} has no platform")
        if c.media_type not in IMAGE_MANIFEST_TYPES:
            raise ValueError(f"child {c.digest} is {c.media_type}, not a single-platform image manifest")
        seen.setdefault(c.digest, c)
    ordered = sorted(seen.values(), key=lambda d: (str(d.platform), d.digest))
    plats = [str(d.platform) for d in ordered]
    if len(set(plats)) != len(plats):
        raise ValueError(f"two children share a platform: {', '.join(plats)}")
    media = DOCKER_LIST if all(c.media_type == DOCKER_MANIFEST for c in ordered) else OCI_INDEX
    body = {"schemaVersion": 2, "mediaType": media, "manifests": [c.to_json() for c in ordered]}
    return Composed(_dump(body), media)


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    is_index: bool
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]


def _descriptor(obj: object) -> Descriptor:
    """A descriptor from registry JSON (untrusted): ValueError unless digest and size are well formed."""
    if not isinstance(obj, dict):
        raise ValueError(f"a descriptor is not a JSON object: {str(obj)[:80]!r}")
    digest, size = obj.get("digest"), obj.get("size")
    parse_digest(str(digest))  # also keeps path characters out of later manifests/<digest> requests
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"descriptor {digest} has size {size!r}, not a non-negative integer")
    plat = obj.get("platform")
    ann = obj.get("annotations") or {}
    return Descriptor(
        media_type=_media_type(obj.get("mediaType", ""), f"descriptor {digest}"),
        digest=str(digest),
        size=size,
        platform=platform_from_oci(plat) if isinstance(plat, dict) and plat.get("architecture") not in (None, "unknown") else None,
        annotations=tuple(sorted((str(k), str(v)) for k, v in ann.items())) if isinstance(ann, dict) else (),
    )


def _media_type(value: object, what: str) -> str:
    """A media type from registry JSON (untrusted): a string of at most MAX_MEDIA_TYPE_CHARS characters."""
    if not isinstance(value, str):
        raise ValueError(f"{what}: mediaType is not a string")
    if len(value) > MAX_MEDIA_TYPE_CHARS:
        raise ValueError(f"{what}: mediaType is {len(value)} characters long, more than the "
                         f"{MAX_MEDIA_TYPE_CHARS} a media type can have")
    return value


def parse_manifest(body: bytes, media_type: str = "") -> ParsedManifest:
    """Parse manifest bytes (at most MAX_MANIFEST_BYTES); ValueError when they are not a manifest we understand."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise ValueError(f"manifest is {len(body)} bytes, more than the {MAX_MANIFEST_BYTES} bytes allowed")
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"manifest is not JSON: {exc}") from exc
    except RecursionError:
        # from None, not from the RecursionError: its traceback is the parser's ~1000 frames, no cause
        # to show; the message says what is wrong with the input
        raise ValueError("manifest is not JSON a manifest can be: nested too deeply") from None
    if not isinstance(obj, dict) or obj.get("schemaVersion") != 2:
        raise ValueError("manifest is not a schemaVersion 2 manifest")
    mt = _media_type(obj.get("mediaType") or media_type, "manifest")
    if "manifests" in obj:
        kids = obj["manifests"]
        if not isinstance(kids, list):
            raise ValueError("manifest list 'manifests' is not a list")
        return ParsedManifest(mt or OCI_INDEX, True, None, (), tuple(_descriptor(k) for k in kids))
    cfg = obj.get("config")
    layers = obj.get("layers") or []
    if not isinstance(cfg, dict) or not isinstance(layers, list):
        raise ValueError("image manifest has no config or layers")
    return ParsedManifest(mt or OCI_MANIFEST, False, _descriptor(cfg), tuple(_descriptor(x) for x in layers), ())


def is_attestation_manifest(parsed: ParsedManifest) -> bool:
    """An attestation image manifest (provenance/SBOM): its layers are in-toto statements."""
    return any(layer.media_type == INTOTO_LAYER for layer in parsed.layers)


def config_diff_ids(config: bytes | None) -> list[str] | None:
    """An image config's ``rootfs.diff_ids``; None when ``config`` is None or not an image config."""
    if config is None:
        return None
    try:
        obj = json.loads(config)
        ids = obj["rootfs"]["diff_ids"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, RecursionError):
        return None
    return [str(d) for d in ids] if isinstance(ids, list) and all(isinstance(d, str) for d in ids) else None


def config_platform(config: bytes) -> Platform | None:
    """Platform from an image config; None for ``unknown`` (attestations) or no architecture."""
    try:
        obj = json.loads(config)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("architecture") in (None, "", "unknown") or obj.get("os") in (None, "", "unknown"):
        return None
    try:
        return platform_from_oci(obj)
    except ValueError:
        return None


def is_attestation(desc: Descriptor) -> bool:
    """An attestation (provenance/SBOM) entry of an index, or an unknown/unknown platform."""
    if dict(desc.annotations).get(ATTESTATION_REF_TYPE) == ATTESTATION_VALUE:
        return True
    return desc.platform is None


def platform_key(obj: object) -> tuple[str, str, str] | None:
    """``(os, architecture, variant)`` of a descriptor's platform (or an image config), normalised as
    containerd compares them (``arm64/v8`` is ``arm64``); None when it names no platform. Unlike
    :class:`Platform` it keeps operating systems and architectures this project does not model."""
    if not isinstance(obj, dict) or not obj.get("architecture"):
        return None
    os_, arch, variant = str(obj.get("os", "")), str(obj["architecture"]), str(obj.get("variant") or "")
    if (arch == "arm64" and variant in ("v8", "8")) or (arch == "amd64" and variant == "v1"):
        variant = ""
    return os_, arch, variant


def is_attestation_entry(entry: dict[str, object]) -> bool:
    """An index entry (raw JSON) that is an attestation manifest, or names the unknown platform."""
    ann = entry.get("annotations")
    if isinstance(ann, dict) and ann.get(ATTESTATION_REF_TYPE) == ATTESTATION_VALUE:
        return True
    plat = entry.get("platform")
    return isinstance(plat, dict) and "unknown" in (plat.get("os"), plat.get("architecture"))
