"""Tiny images pushed straight through RegistryClient, and tiny matrices (test helpers).

``push_image`` pushes a config blob + one layer blob + a Docker v2 manifest, by digest (no
tag), like a per-arch leg published by digest. ``matrix_text`` writes a LocalAI-format
matrix with only the legs a test needs.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

from localai_ci.oci.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, Composed, Descriptor, compose_image_manifest
from localai_ci.matrix.naming import Family
from localai_ci.oci.platforms import Platform, parse_platform
from localai_ci.oci.reference import ImageName, parse_image_name, sha256_digest
from localai_ci.oci.client import RegistryClient
from localai_ci.oci.retry import RetryPolicy

FAST = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.2, deadline=10, request_timeout=10)


def client(image: str | ImageName) -> RegistryClient:
    img = parse_image_name(image) if isinstance(image, str) else image
    return RegistryClient(img, plain_http=True, retry=FAST)


def tiny_image(platform: Platform | str, seed: str, config_platform: Platform | str | None = None
               ) -> tuple[bytes, bytes, Composed]:
    """(config bytes, layer bytes, manifest) for one platform; the config may lie about it."""
    plat = parse_platform(platform) if isinstance(platform, str) else platform
    cplat = plat if config_platform is None else (
        parse_platform(config_platform) if isinstance(config_platform, str) else config_platform)
    raw = f"layer {seed} {plat}".encode()
    layer = gzip.compress(raw, mtime=0)
    cfg: dict[str, object] = {"architecture": str(cplat.arch), "os": cplat.os,
                              "rootfs": {"type": "layers", "diff_ids": [sha256_digest(raw)]},
                              "config": {"Labels": {"seed": seed}}}
    if cplat.variant:
        cfg["variant"] = cplat.variant
    config = json.dumps(cfg, sort_keys=True).encode()
    manifest = compose_image_manifest(Descriptor(DOCKER_CONFIG, sha256_digest(config), len(config)),
                                      [Descriptor(DOCKER_LAYER_GZIP, sha256_digest(layer), len(layer))])
    return config, layer, manifest


def push_image(images: Sequence[str | ImageName], platform: Platform | str, seed: str,
               config_platform: Platform | str | None = None) -> Descriptor:
    """Push one tiny single-platform image by digest to every repository; its descriptor."""
    import io

    config, layer, manifest = tiny_image(platform, seed, config_platform)
    for image in images:
        with client(image) as c:
            for blob in (config, layer):
                c.push_blob(sha256_digest(blob), len(blob), lambda b=blob: io.BytesIO(b))
            c.put_manifest(manifest.digest, manifest.body, manifest.media_type)
    plat = parse_platform(platform) if isinstance(platform, str) else platform
    return Descriptor(manifest.media_type, manifest.digest, manifest.size, plat)


def tags_of(image: str) -> list[str]:
    with client(image) as c:
        return sorted(c.list_tags())


def resolve(image: str, ref: str) -> str | None:
    with client(image) as c:
        got = c.head_manifest(ref)
    return got[0] if got else None


_BACKEND_ENTRY = """  - build-type: ''
    cuda-major-version: ""
    cuda-minor-version: ""
    platforms: '{platform}'
    platform-tag: '{ptag}'
    tag-latest: '{latest}'
    tag-suffix: '{suffix}'
    runs-on: '{runner}'
    base-image: "ci-offline/ubuntu:24.04"
    skip-drivers: 'false'
    backend: "hello"
    dockerfile: "./backends/Dockerfile.backend"
    context: "./backends"
    ubuntu-version: '2404'
"""
_SERVER_ENTRY = """  - build-type: ''
    platforms: '{platform}'
    platform-tag: '{ptag}'
    tag-latest: '{latest}'
    tag-suffix: '{suffix}'
    runs-on: '{runner}'
    base-image: "ci-offline/ubuntu:24.04"
    dockerfile: "./backends/Dockerfile.server"
    context: "./backends"
"""


def matrix_text(legs: Sequence[tuple[str, str]], family: Family = Family.BACKENDS,
                latest: dict[tuple[str, str], str] | None = None) -> str:
    """A matrix with one entry per (suffix, platform-tag); ptag amd64/arm64 -> linux/<ptag>."""
    entry = _BACKEND_ENTRY if family is Family.BACKENDS else _SERVER_ENTRY
    out = ["include:\n"]
    for suffix, ptag in legs:
        out.append(entry.format(platform=f"linux/{ptag}", ptag=ptag, suffix=suffix,
                                latest=(latest or {}).get((suffix, ptag), "auto"),
                                runner="ubuntu-24.04-arm" if ptag == "arm64" else "ubuntu-latest"))
    return "".join(out)


def write_matrix(path: Path, legs: Sequence[tuple[str, str]], family: Family = Family.BACKENDS,
                 latest: dict[tuple[str, str], str] | None = None) -> Path:
    path.write_text(matrix_text(legs, family, latest))
    return path
