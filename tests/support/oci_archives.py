"""Image layouts and archives written the way other tools write them (test helpers).

- :func:`write_oci_layout`: an OCI image layout directory as BuildKit exports it
  (``--output type=oci,dest=DIR,tar=false``): ``oci-layout``, ``index.json`` (the manifest with its
  platform and annotations), ``blobs/sha256/``; OCI media types, gzip layers; optionally a second
  platform and an attestation manifest in the index.
- :func:`tar_dir`: any directory as a tar archive (an OCI layout ``.tar``).
- :func:`write_darwin_archive`: what LocalAI's ``local-ai util create-oci-image`` writes for a Darwin
  backend (go-containerregistry's ``tarball.Write``): a docker-archive with ``manifest.json``, the
  config as ``sha256:<hex>``, each layer gzipped as ``<hex>.tar.gz``; platform ``darwin/arm64``.
- :func:`write_legacy_archive`: ``docker save`` before Docker 25: ``<id>.json``, ``<dir>/layer.tar``
  (uncompressed).

Layers are real tars of a few small files (deterministic: fixed mtimes and owners).
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localai_ci.oci.manifest import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST
from localai_ci.oci.reference import sha256_digest


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer: a tar of ``files`` (path -> content), deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def config_json(platform: str, raws: Sequence[bytes], labels: dict[str, str] | None = None) -> bytes:
    os_, arch, *variant = platform.split("/")
    cfg: dict[str, object] = {"architecture": arch, "os": os_, "config": {"Labels": labels or {}},
                              "rootfs": {"type": "layers", "diff_ids": [sha256_digest(r) for r in raws]},
                              "history": [{"created_by": "localai", "comment": "Custom image"} for _ in raws]}
    if variant:
        cfg["variant"] = variant[0]
    return json.dumps(cfg, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Written:
    path: Path
    manifest_digest: str  # '' for docker-archives (the publisher composes the manifest)
    config_digest: str
    layer_digests: tuple[str, ...]  # the compressed layers' digests
    diff_ids: tuple[str, ...]


def _blob(root: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    p = root / "blobs" / "sha256" / digest.split(":", 1)[1]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return digest


def _oci_image(root: Path, platform: str, seed: str, layers: int) -> tuple[dict[str, object], Written]:
    raws = [layer_tar({f"backend/{seed}-{i}.txt": f"{seed} layer {i} for {platform}\n".encode() * 50})
            for i in range(layers)]
    gz = [gzip.compress(r, mtime=0) for r in raws]
    config = config_json(platform, raws, {"org.localai.ci.leg": seed})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _blob(root, config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _blob(root, g), "size": len(g)} for g in gz],
    }, indent=2).encode()
    digest = _blob(root, manifest)
    os_, arch, *variant = platform.split("/")
    plat: dict[str, str] = {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}
    entry: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                                "annotations": {"org.opencontainers.image.created": "2026-12-07T00:00:00Z"},
                                "platform": plat}
    return entry, Written(root, digest, sha256_digest(config), tuple(sha256_digest(g) for g in gz),
                          tuple(sha256_digest(r) for r in raws))


def write_oci_layout(root: Path, platform: str = "linux/amd64", seed: str = "leg", layers: int = 2,
                     other_platform: str | None = None, attestation: bool = False) -> Written:
    """An OCI image layout directory as BuildKit exports it (see the module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entry, written = _oci_image(root, platform, seed, layers)
    entries = [entry]
    if other_platform:
        entries.append(_oci_image(root, other_platform, seed + "-other", layers)[0])
    if attestation:
        stmt = b'{"_type":"https://in-toto.io/Statement/v0.1"}'
        att = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": _blob(root, b"{}"), "size": 2},
                          "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": _blob(root, stmt),
                                      "size": len(stmt)}]}).encode()
        entries.append({"mediaType": OCI_MANIFEST, "digest": _blob(root, att), "size": len(att),
                        "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                        "vnd.docker.reference.digest": written.manifest_digest},
                        "platform": {"architecture": "unknown", "os": "unknown"}})
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    return written


def tar_dir(src: Path, dest: Path) -> Path:
    """``src``'s files as a tar archive at ``dest`` (names relative to ``src``)."""
    with tarfile.open(dest, "w") as tar:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=str(p.relative_to(src)))
    return dest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def write_darwin_archive(dest: Path, seed: str = "darwin", platform: str = "darwin/arm64", layers: int = 1,
                         config_platform: str | None = None, corrupt_diff_id: bool = False) -> Written:
    """A docker-archive as go-containerregistry's ``tarball.Write`` (LocalAI's create-oci-image) writes it."""
    raws = [layer_tar({f"{seed}/bin/backend-{i}": f"#!/bin/sh\necho {seed} {i} on {platform}\n".encode() * 40,
                       f"{seed}/run.sh": b"#!/bin/sh\nexec ./bin/backend-0 \"$@\"\n"}) for i in range(layers)]
    gz = [gzip.compress(r, mtime=0) for r in raws]
    config = config_json(config_platform or platform, [b"not this layer"] * layers if corrupt_diff_id else raws)
    cdigest = sha256_digest(config)
    names = [f"{sha256_digest(g).split(':', 1)[1]}.tar.gz" for g in gz]
    with tarfile.open(dest, "w") as tar:
        _add(tar, "manifest.json", json.dumps([{"Config": cdigest, "RepoTags": [f"localai/{seed}:latest"],
                                                "Layers": names}]).encode())
        _add(tar, cdigest, config)
        for name, g in zip(names, gz):
            _add(tar, name, g)
    return Written(dest, "", cdigest, tuple(sha256_digest(g) for g in gz), tuple(sha256_digest(r) for r in raws))


def write_legacy_archive(dest: Path, platform: str = "linux/amd64", seed: str = "legacy") -> Written:
    """``docker save`` of Docker < 25: ``<id>.json``, one uncompressed ``<dir>/layer.tar``."""
    raw = layer_tar({f"{seed}.txt": seed.encode() * 100})
    config = config_json(platform, [raw])
    cid = sha256_digest(config).split(":", 1)[1]
    with tarfile.open(dest, "w") as tar:
        _add(tar, "manifest.json", json.dumps([{"Config": f"{cid}.json", "RepoTags": None,
                                                "Layers": ["abc/layer.tar"]}]).encode())
        _add(tar, f"{cid}.json", config)
        _add(tar, "abc/layer.tar", raw)
    return Written(dest, "", sha256_digest(config), (), (sha256_digest(raw),))
