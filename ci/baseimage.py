"""Offline per-arch base images: a generated docker-archive loaded into the engine.

The classic builder that the Docker SDK drives builds the *base image's* architecture
(and ignores ``platform`` for ``FROM scratch``), and nothing may be pulled here. So base
images named ``ci-offline/...`` are synthesized: a docker-archive (``manifest.json``, a
config naming os/architecture/variant with its rootfs diff_ids, one tiny layer holding
``/etc/os-release`` and ``/README.ci-offline``) is built and ``docker load``-ed under the
requested name. The result has no shell: Dockerfiles on top use COPY/ENV/LABEL/ARG only.

Deterministic: the same name, platform and payload give the same image id (the id is the
digest of the config, and every byte of the archive is fixed). Loading a platform under a
name that holds another platform's image moves the tag to the new image.

Names not starting with :data:`OFFLINE_PREFIX` are real images, left to the engine;
:func:`ensure_base_image` refuses them so a real ``ubuntu:24.04`` is never shadowed.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import tempfile
from typing import IO, Any

from ci.errors import EngineError, UserError
from ci.platforms import Platform
from ci.reference import parse_image_name, parse_tag

OFFLINE_PREFIX = "ci-offline/"
EPOCH = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CHUNK = 1 << 20


def is_offline_base(name: str) -> bool:
    """True when ``name`` is a base image this module synthesizes (``ci-offline/...``)."""
    return name.startswith(OFFLINE_PREFIX)


def split_name(name: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag), ``latest`` when no tag; UserError for anything else."""
    last = name.rsplit("/", 1)[-1]
    repo, tag = (name.rsplit(":", 1) if ":" in last else (name, "latest"))
    try:
        parse_image_name(repo)
        parse_tag(tag)
    except ValueError as exc:
        raise UserError(f"base image name {name!r}: {exc}") from None
    if "@" in name:
        raise UserError(f"base image name {name!r}: use a tag, not a digest")
    return repo, tag


def _tarinfo(path: str, size: int = 0, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.type = size, mode, kind
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


class _Payload:
    """``size`` deterministic incompressible bytes (seeded PRNG), read in chunks, never held whole."""

    def __init__(self, size: int, seed: str) -> None:
        self._left = size
        self._rng = random.Random(seed)

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


def _os_release(repo: str, tag: str, platform: Platform) -> bytes:
    distro = repo.rsplit("/", 1)[-1]
    return (f'PRETTY_NAME="ci-offline {distro} {tag} ({platform})"\n'
            f'NAME="ci-offline {distro}"\nID=ci-offline\nID_LIKE={distro}\nVERSION_ID="{tag}"\n').encode()


_README = (b"Synthesized offline base image (localai-ci, ci/baseimage.py).\n"
           b"No shell and no packages: Dockerfiles built on it may use COPY, ENV, LABEL and ARG only.\n")


def _write_layer(out: IO[bytes], repo: str, tag: str, platform: Platform, payload_bytes: int) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_tarinfo("etc/", mode=0o755, kind=tarfile.DIRTYPE))
        osr = _os_release(repo, tag, platform)
        tar.addfile(_tarinfo("etc/os-release", len(osr)), io.BytesIO(osr))
        tar.addfile(_tarinfo("README.ci-offline", len(_README)), io.BytesIO(_README))
        if payload_bytes:
            tar.addfile(_tarinfo("payload.bin", payload_bytes),
                        _Payload(payload_bytes, f"{repo}:{tag}|{platform}"))


def _sha256_file(f: IO[bytes]) -> str:
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    f.seek(0)
    return h.hexdigest()


def image_config(name: str, platform: Platform, diff_id: str) -> bytes:
    """The image config JSON (canonical bytes; its digest is the image id)."""
    cfg: dict[str, Any] = {
        "architecture": str(platform.arch),
        "os": platform.os,
        "config": {"Env": [PATH_ENV], "Labels": {"org.opencontainers.image.base.name": name,
                                                 "org.localai-ci.offline-base": "true"}},
        "created": EPOCH,
        "history": [{"created": EPOCH, "created_by": "ci.baseimage: synthesized offline base image"}],
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    if platform.variant:
        cfg["variant"] = platform.variant
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


def write_base_archive(out: IO[bytes], name: str, platform: Platform, payload_bytes: int = 0) -> str:
    """Write the docker-archive of base image ``name`` for ``platform`` to ``out``; return its image id."""
    if payload_bytes < 0:
        raise UserError(f"payload_bytes must be >= 0, not {payload_bytes}")
    repo, tag = split_name(name)
    with tempfile.TemporaryFile() as layer:
        _write_layer(layer, repo, tag, platform, payload_bytes)
        layer_size = layer.tell()
        layer_hex = _sha256_file(layer)
        config = image_config(f"{repo}:{tag}", platform, f"sha256:{layer_hex}")
        config_hex = hashlib.sha256(config).hexdigest()
        manifest = json.dumps([{"Config": f"{config_hex}.json", "RepoTags": [f"{repo}:{tag}"],
                                "Layers": [f"{layer_hex}/layer.tar"]}], separators=(",", ":")).encode()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.addfile(_tarinfo(f"{layer_hex}/", mode=0o755, kind=tarfile.DIRTYPE))
            tar.addfile(_tarinfo(f"{layer_hex}/layer.tar", layer_size), layer)
            tar.addfile(_tarinfo(f"{config_hex}.json", len(config)), io.BytesIO(config))
            tar.addfile(_tarinfo("manifest.json", len(manifest)), io.BytesIO(manifest))
    return f"sha256:{config_hex}"


def ensure_base_image(client: Any, name: str, platform: Platform, payload_bytes: int = 0) -> str:
    """Make ``name`` (``ci-offline/...``) an offline base image of ``platform`` in the engine; return its id.

    Does nothing when ``name`` already points at the expected image. ``client`` is a
    Docker SDK client; ``payload_bytes`` adds an incompressible file of that size (benchmarks).
    """
    if not is_offline_base(name):
        raise UserError(
            f"base image {name!r} is a real image: pull or build it with the engine; only names starting "
            f"with {OFFLINE_PREFIX!r} are synthesized offline")
    repo, tag = split_name(name)
    ref = f"{repo}:{tag}"
    with tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK) as archive:
        expected = write_base_archive(archive, ref, platform, payload_bytes)
        previous = _image_id(client, ref)
        if previous == expected:
            return expected
        archive.seek(0)
        try:
            client.images.load(archive.read() if payload_bytes < 8 * _CHUNK else archive)
        except Exception as exc:  # docker.errors.APIError and connection errors
            raise EngineError(f"loading offline base image {ref} ({platform}) into the engine: {exc}") from None
    found = _image_id(client, ref)
    if found != expected:
        raise EngineError(f"loading offline base image {ref} ({platform}): the tag points at {found or 'nothing'}, "
                          f"expected {expected}; is another process loading the same name for another arch?")
    if previous:
        _drop_if_unused(client, previous)
    return expected


def _drop_if_unused(client: Any, image_id: str) -> None:
    """Remove a replaced offline base image that nothing uses any more (no tag, no child, no container)."""
    try:
        image = client.images.get(image_id)
        if image.tags or image.labels.get("org.localai-ci.offline-base") != "true":
            return
        client.images.remove(image_id, force=False, noprune=False)
    except Exception:  # in use (child image, container) or already gone: leave it to the engine
        pass


def _image_id(client: Any, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except Exception:  # docker.errors.ImageNotFound; keep the SDK out of the import graph
        return None
