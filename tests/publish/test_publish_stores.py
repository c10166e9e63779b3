"""Staging and publishing from both Docker image stores (``docker save`` shapes), against real engines.

Run this file once per engine: ``DOCKER_HOST`` at an engine with the classic image store
(overlay2) and at one with the containerd image store. What differs:

- classic store: ``docker save`` (Docker >= 25) writes an OCI layout whose layers are uncompressed
  tars; the published manifest is composed here over our deterministic gzip (Docker media types);
- containerd store: the layout holds the engine's compressed layers and its own manifest, which is
  published byte for byte (published digest = the engine's manifest digest, no recompression).
  Docker-archive loads keep uncompressed layers there too (composed, like the classic store).

The tests without an engine feed hand-made archives (legacy docker-archive, OCI layouts in odd
entry orders, corrupt and truncated ones) through :func:`localai_ci.publish.leg.stage_image`.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localai_ci.docker.offline_bases import ensure_base_image, write_base_archive
from localai_ci.oci.blobcache import BlobCache
from localai_ci.oci.client import RegistryClient, RegistryClients
from localai_ci.docker.engine import Engine, ImageInfo
from localai_ci.errors import EngineError, OperationError
from localai_ci.oci.manifest import (DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
                         OCI_MANIFEST, Descriptor, compose_image_manifest)
from localai_ci.oci.platforms import parse_platform
from localai_ci.publish.stage import StagedImage, stage_image
from localai_ci.publish.upload import PushReport, PushTarget, push_image
from localai_ci.oci.reference import ImageName, sha256_digest

real = [pytest.mark.engine, pytest.mark.registry]
MiB = 1 << 20


# ---- helpers for the real engines ----------------------------------------------------------------
def containerd_store(engine: Any) -> bool:
    """True when the engine at DOCKER_HOST uses the containerd image store."""
    status = engine.info().get("DriverStatus") or []
    return any(k == "driver-type" and "containerd" in str(v) for k, v in status)


def docker_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, f"docker {' '.join(args)} failed: {done.stderr.decode(errors='replace')[-3000:]}"
    return done


@pytest.fixture
def buildkit(engine: Any, imagetools: Any, tmp_path: Path, unique: str) -> Iterator[Callable[..., str]]:
    """``build(name, files, dockerfile=None, provenance=False, platform=None) -> tag``: ``docker buildx build
    --load`` of a context holding ``files`` (default Dockerfile: FROM scratch + one COPY per file)."""
    made: list[str] = []

    def build(name: str, files: dict[str, bytes], dockerfile: str | None = None, provenance: bool = False,
              platform: str | None = None) -> str:
        ctx = tmp_path / f"ctx-{name}"
        ctx.mkdir()
        for fname, data in files.items():
            (ctx / fname).write_bytes(data)
        (ctx / "Dockerfile").write_text(dockerfile or "FROM scratch\n" + "".join(f"COPY {f} /{f}\n" for f in files))
        tag = f"localai-ci-test/{unique}-{name}:latest"
        args = ["buildx", "build", "--load", f"--provenance={'true' if provenance else 'false'}", "--network", "host",
                "-t", tag]
        if platform:
            args += ["--platform", platform]
        made.append(tag)
        docker_cli(*args, str(ctx))
        return tag

    yield build
    for tag in made:
        try:
            engine.images.remove(tag, force=True)
        except Exception:  # never built, or already gone
            pass


@pytest.fixture
def loaded(engine: Any, unique: str) -> Iterator[Callable[..., str]]:
    """``load(platform, payload_bytes=0) -> tag``: an offline base image ``docker load``-ed from its docker-archive."""
    made: list[str] = []

    def load(platform: str, payload_bytes: int = 0) -> str:
        tag = f"ci-offline/{unique}-{platform.replace('/', '-')}:24.04"
        made.append(tag)
        if containerd_store(engine):
            # ensure_base_image checks that the loaded image's id is the config digest, which holds on
            # the classic store only (containerd: the id is the manifest digest): load the same archive here
            buf = io.BytesIO()
            write_base_archive(buf, tag, parse_platform(platform), payload_bytes)
            engine.images.load(buf.getvalue())
        else:
            ensure_base_image(engine, tag, parse_platform(platform), payload_bytes=payload_bytes)
        return tag

    yield load
    for tag in made:
        try:
            engine.images.remove(tag, force=True)
        except Exception:
            pass


def targets(registries: Any, repo: str) -> list[PushTarget]:
    return [PushTarget(ImageName(r.host, repo), plain_http=True) for r in registries]


def publish(engine: Any, image: str, registries: Any, repo: str, cache_dir: Path,
            eng: Engine | None = None) -> PushReport:
    with BlobCache(cache_dir) as cache:
        return push_image(eng or Engine(engine), image, targets(registries, repo), cache=cache,
                          client_factory=RegistryClients())


def read_back(registries: Any, repo: str, digest: str, imagetools: Any) -> tuple[bytes, dict[str, Any]]:
    """The manifest bytes (identical in every registry) and the config, checked with imagetools too."""
    bodies = []
    for r in registries:
        with RegistryClient(ImageName(r.host, repo), plain_http=True) as c:
            got = c.get_manifest(digest)
            assert got is not None, f"{r.host}/{repo}@{digest} is missing"
            body, _, _ = got
            assert sha256_digest(body) == digest
            raw = imagetools.inspect_raw(f"{r.host}/{repo}@{digest}")
            assert raw == json.loads(body) and "manifests" not in raw  # one image manifest, no index
            for d in [raw["config"], *raw["layers"]]:
                assert c.blob_exists(d["digest"]), f"{r.host}/{repo} lacks {d['digest']}"
            bodies.append(body)
    assert len(set(bodies)) == 1
    config = imagetools.inspect_image(f"{registries[0].host}/{repo}@{digest}")
    return bodies[0], config


def engine_layout(tag: str) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """What ``docker save`` (the CLI) says about ``tag``: (image manifest digest, manifest, small blobs)."""
    out = docker_cli("save", tag).stdout
    blobs: dict[str, bytes] = {}
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            if f is None:
                continue
            if m.name.startswith("blobs/sha256/"):
                blobs["sha256:" + m.name.rsplit("/", 1)[1]] = f.read()
            else:
                files[m.name] = f.read()
    entry = json.loads(files["index.json"])["manifests"][0]
    while True:
        body = json.loads(blobs[entry["digest"]])
        if "manifests" not in body:
            return entry["digest"], body, blobs
        entry = next(e for e in body["manifests"]
                     if (e.get("platform") or {}).get("architecture") not in (None, "unknown"))


def our_gzip(raw: bytes, tmp: Path) -> str:
    """The digest of our deterministic gzip of an uncompressed layer (a fresh cache)."""
    with BlobCache(tmp) as cache:
        return cache.compress_layer(io.BytesIO(raw))[1].digest


class NoExport(Engine):
    """The real engine, but ``docker save`` is a test failure."""

    def export(self, image: str) -> io.BufferedReader:
        raise AssertionError(f"{image} was exported although everything was in the blob cache")


# ---- real engines ------------------------------------------------------------------------------------
@pytest.mark.engine
@pytest.mark.registry
def test_containerd_store_publishes_from_its_content_store_without_export(
        engine: Any, buildkit: Any, registries: Any, imagetools: Any, unique: str, tmp_path: Path) -> None:
    """On a local containerd image store the blobs are read where containerd keeps them: no ``docker save``
    (NoExport), the engine's manifest published as it is, the same digest as through an export."""
    eng = Engine(engine)
    dirs = eng.content_store(dict(os.environ))
    if not containerd_store(engine):
        assert dirs == []  # the classic store has no content store: publish exports
        return
    assert dirs and any(Path(d, "blobs", "sha256").is_dir() for d in dirs), dirs
    tag = buildkit("cs", {"big.bin": random.Random(unique).randbytes(3 * MiB), "a.txt": unique.encode()})
    info = eng.inspect(tag)
    logs: list[str] = []
    with BlobCache(tmp_path / "cache-a") as cache:
        direct = push_image(NoExport(engine), tag, targets(registries, f"{unique}/cs"), cache=cache,
                            client_factory=RegistryClients(), content_dirs=dirs, log=logs.append)
    assert not direct.exported and direct.digest == info.id  # the engine's manifest, by its own digest
    assert any("containerd content store" in line for line in logs), logs
    body, config = read_back(registries, f"{unique}/cs", direct.digest, imagetools)
    assert config["architecture"] == info.architecture and direct.bytes_uploaded > 2 * 3 * MiB
    # the export path (a fresh cache, no content store) gives the very same manifest
    via_export = publish(engine, tag, registries, f"{unique}/cs2", tmp_path / "cache-b")
    assert via_export.exported and via_export.digest == direct.digest


@pytest.mark.engine
@pytest.mark.registry
def test_buildkit_image_publishes_same_digest_everywhere(engine: Any, buildkit: Any, registries: Any,
                                                         imagetools: Any, unique: str, tmp_path: Path) -> None:
    big = random.Random(unique).randbytes(18 * MiB)  # incompressible, over MAX_CONFIG_BYTES even compressed
    tag = buildkit("app", {"a.txt": f"a {unique}\n".encode(), "b.json": b'{"json": "looking"}\n', "big.bin": big})
    info = Engine(engine).inspect(tag)
    repo = f"{unique}/app"
    report = publish(engine, tag, registries, repo, tmp_path / "cache")
    assert report.exported
    body, config = read_back(registries, repo, report.digest, imagetools)
    manifest = json.loads(body)
    assert config["architecture"] == info.architecture and config["os"] == "linux"
    assert len(manifest["layers"]) == 3
    engine_digest, engine_manifest, blobs = engine_layout(tag)
    if containerd_store(engine):
        # the engine's own manifest, byte for byte: its digest, its compressed layers
        assert report.digest == engine_digest == info.id
        assert manifest == engine_manifest
        assert [d["digest"] for d in manifest["layers"]] == [d["digest"] for d in engine_manifest["layers"]]
    else:
        assert manifest["mediaType"] == DOCKER_MANIFEST and manifest["config"]["mediaType"] == DOCKER_CONFIG
        assert manifest["config"]["digest"] == info.id  # the id is the config digest on this store
        assert [d["mediaType"] for d in manifest["layers"]] == [DOCKER_LAYER_GZIP] * 3
        # the engine saved uncompressed layers (blob digest = diff_id); we sent our deterministic gzip of them
        assert [d["digest"] for d in engine_manifest["layers"]] == list(info.diff_ids)
        with RegistryClient(ImageName(registries[1].host, repo), plain_http=True) as c:
            small = c.get_blob(manifest["layers"][0]["digest"])
        assert small[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # mtime 0, no name
        assert gzip.decompress(small) == blobs[info.diff_ids[0]]
        assert manifest["layers"][0]["digest"] == our_gzip(blobs[info.diff_ids[0]], tmp_path / "fresh")


@pytest.mark.engine
@pytest.mark.registry
def test_republish_uploads_nothing_and_does_not_export(engine: Any, buildkit: Any, registries: Any,
                                                       imagetools: Any, unique: str, tmp_path: Path) -> None:
    tag = buildkit("again", {"f": unique.encode(), "g": os.urandom(64 << 10)})
    repo = f"{unique}/again"
    first = publish(engine, tag, registries, repo, tmp_path / "cache")
    assert first.exported and first.bytes_uploaded > 0
    second = publish(engine, tag, registries, repo, tmp_path / "cache", eng=NoExport(engine))
    assert not second.exported and second.digest == first.digest
    assert second.bytes_uploaded == 0
    assert all(t.uploaded == 0 and t.mounted == 0 for t in second.targets)
    with BlobCache(tmp_path / "cache") as cache:
        staged = stage_image(NoExport(engine), tag, cache)
    assert isinstance(staged, StagedImage) and not staged.exported
    assert staged.manifest.digest == first.digest
    assert staged.engine_manifest == containerd_store(engine)
    read_back(registries, repo, first.digest, imagetools)


@pytest.mark.engine
@pytest.mark.registry
def test_loaded_archive_image_and_an_image_built_on_it_publish(engine: Any, loaded: Any, buildkit: Any,
                                                               registries: Any, imagetools: Any, unique: str,
                                                               tmp_path: Path) -> None:
    base = loaded("linux/arm64", payload_bytes=2 * MiB)
    repo = f"{unique}/base"
    report = publish(engine, base, registries, repo, tmp_path / "cache")
    body, config = read_back(registries, repo, report.digest, imagetools)
    assert config["architecture"] == "arm64"
    # a docker-archive load keeps uncompressed layers on both stores: the manifest is composed here, so its
    # digest depends only on the archive (the same on either store), computed here without any engine
    archive = io.BytesIO()
    config_digest = write_base_archive(archive, base, parse_platform("linux/arm64"), 2 * MiB)
    archive.seek(0)
    with tarfile.open(fileobj=archive) as tar:
        names = tar.getnames()
        layer = tar.extractfile(next(n for n in names if n.endswith("/layer.tar")))
        cfg = tar.extractfile(next(n for n in names if n.endswith(".json") and n != "manifest.json"))
        assert layer is not None and cfg is not None
        raw, cfg_bytes = layer.read(), cfg.read()
    with BlobCache(tmp_path / "offline") as cache:
        gz = cache.compress_layer(io.BytesIO(raw))[1]
    expected = compose_image_manifest(Descriptor(DOCKER_CONFIG, config_digest, len(cfg_bytes)),
                                      [Descriptor(DOCKER_LAYER_GZIP, gz.digest, gz.size)])
    assert report.digest == expected.digest and body == expected.body

    # built FROM it with BuildKit: on the containerd store the base layer stays uncompressed and the new one
    # is gzip (a mixed manifest): composed, the engine's gzip layer kept as is
    tag = buildkit("onbase", {"x.txt": unique.encode()}, dockerfile=f"FROM {base}\nCOPY x.txt /x.txt\n",
                   platform="linux/arm64")
    repo2 = f"{unique}/onbase"
    rep2 = publish(engine, tag, registries, repo2, tmp_path / "cache")
    body2, config2 = read_back(registries, repo2, rep2.digest, imagetools)
    m2 = json.loads(body2)
    assert config2["architecture"] == "arm64" and m2["mediaType"] == DOCKER_MANIFEST
    assert m2["layers"][0] == expected_layer(expected.body, 0)  # the base layer: the same blob as above
    if containerd_store(engine):
        _, engine_manifest, _ = engine_layout(tag)
        assert m2["layers"][1]["digest"] == engine_manifest["layers"][1]["digest"]  # not recompressed
    again = publish(engine, tag, registries, repo2, tmp_path / "cache", eng=NoExport(engine))
    assert again.digest == rep2.digest and again.bytes_uploaded == 0


def expected_layer(body: bytes, i: int) -> Any:
    return json.loads(body)["layers"][i]


@pytest.mark.engine
@pytest.mark.registry
def test_cache_wipe_then_republish_gives_the_same_digest(engine: Any, buildkit: Any, registries: Any,
                                                         imagetools: Any, unique: str, tmp_path: Path) -> None:
    tag = buildkit("wipe", {"one": unique.encode(), "two": random.Random(unique).randbytes(3 * MiB)})
    repo = f"{unique}/wipe"
    cache_dir = tmp_path / "cache"
    first = publish(engine, tag, registries, repo, cache_dir)
    shutil.rmtree(cache_dir)
    second = publish(engine, tag, registries, repo, cache_dir)
    assert second.exported and second.digest == first.digest
    assert second.bytes_uploaded == 0  # the same blobs again: every registry already had them
    read_back(registries, repo, second.digest, imagetools)


@pytest.mark.engine
@pytest.mark.registry
def test_provenance_index_publishes_its_image_manifest(engine: Any, buildkit: Any, registries: Any,
                                                       imagetools: Any, unique: str, tmp_path: Path) -> None:
    """With an attestation, the containerd store's image id is an index digest: the image child is sent.

    (The classic store cannot hold attestations: buildx refuses them for the docker driver.)"""
    if not containerd_store(engine):
        with pytest.raises(AssertionError, match="Attestation is not supported"):
            buildkit("prov", {"p": unique.encode()}, provenance=True)
        return
    tag = buildkit("prov", {"p": unique.encode()}, provenance=True)
    info = Engine(engine).inspect(tag)
    repo = f"{unique}/prov"
    report = publish(engine, tag, registries, repo, tmp_path / "cache")
    body, config = read_back(registries, repo, report.digest, imagetools)
    assert config["architecture"] == info.architecture
    assert all(d["mediaType"] != "application/vnd.in-toto+json" for d in json.loads(body)["layers"])
    child, _, _ = engine_layout(tag)
    assert report.digest == child != info.id
    again = publish(engine, tag, registries, repo, tmp_path / "cache", eng=NoExport(engine))
    assert again.digest == report.digest and not again.exported


@pytest.mark.engine
def test_vanished_image_is_an_engine_error(engine: Any, unique: str, tmp_path: Path) -> None:
    with BlobCache(tmp_path / "cache") as cache, pytest.raises(EngineError) as err:
        stage_image(Engine(engine), f"localai-ci-test/{unique}-gone:latest", cache)
    assert "not in the engine" in str(err.value)


class Vanishing(Engine):
    """Inspect works, then the image is gone when ``docker save`` runs."""

    def __init__(self, client: Any, victim: str) -> None:
        super().__init__(client)
        self.victim = victim

    def export(self, image: str) -> io.BufferedReader:
        self.client.images.remove(self.victim, force=True)
        return super().export(image)


@pytest.mark.engine
def test_image_removed_between_inspect_and_export(engine: Any, buildkit: Any, tmp_path: Path) -> None:
    tag = buildkit("vanish", {"v": b"v"})
    with BlobCache(tmp_path / "cache") as cache, pytest.raises(EngineError) as err:
        stage_image(Vanishing(engine, tag), tag, cache)
    assert "no longer in the engine" in str(err.value), err.value


# ---- hand-made archives (no engine) ------------------------------------------------------------------
def _layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 0
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _archive(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 0
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class FakeEngine:
    """``inspect`` and ``export`` only, from bytes."""

    def __init__(self, info: ImageInfo, archive: bytes) -> None:
        self.info = info
        self.archive = archive
        self.exports = 0

    def inspect(self, image: str) -> ImageInfo:
        return self.info

    def export(self, image: str) -> io.BufferedReader:
        self.exports += 1
        return io.BufferedReader(io.BytesIO(self.archive))  # type: ignore[arg-type]


def _config(diff_ids: list[str], arch: str = "amd64") -> bytes:
    return json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}},
                      sort_keys=True).encode()


def _info(image_id: str, diff_ids: list[str], arch: str = "amd64") -> ImageInfo:
    return ImageInfo(id=image_id, os="linux", architecture=arch, variant="", diff_ids=tuple(diff_ids), size=0)


def _man(config: bytes, layers: list[tuple[str, bytes]], config_type: str = OCI_CONFIG,
         media_type: str = OCI_MANIFEST) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type,
                       "config": {"mediaType": config_type, "digest": sha256_digest(config), "size": len(config)},
                       "layers": [{"mediaType": t, "digest": sha256_digest(b), "size": len(b)} for t, b in layers]},
                      indent=2).encode()


def _index(entries: list[tuple[bytes, dict[str, Any]]], media_type: str = OCI_MANIFEST) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": extra.pop("mediaType", media_type), "digest": sha256_digest(b), "size": len(b), **extra}
        for b, extra in entries]}).encode()


def _blob(data: bytes) -> tuple[str, bytes]:
    return "blobs/sha256/" + hashlib.sha256(data).hexdigest(), data


LAYERS = [_layer_tar({"a": b"alpha" * 100}), _layer_tar({"b": random.Random(1).randbytes(17 * MiB)})]  # 2nd: > 16 MiB
DIFF_IDS = [sha256_digest(x) for x in LAYERS]


def _stage(tmp_path: Path, eng: FakeEngine) -> tuple[StagedImage, list[str]]:
    seen: list[str] = []
    with BlobCache(tmp_path / "cache") as cache:
        return stage_image(eng, "img", cache, on_blob=lambda b: seen.append(b.digest)), seen  # type: ignore[arg-type]


def test_legacy_docker_archive(tmp_path: Path) -> None:
    config = _config(DIFF_IDS)
    cid = sha256_digest(config)
    hexes = [hashlib.sha256(x).hexdigest() for x in LAYERS]
    manifest = json.dumps([{"Config": cid[7:] + ".json", "Layers": [f"{h}/layer.tar" for h in hexes]}]).encode()
    entries = [(f"{hexes[1]}/layer.tar", LAYERS[1]), (f"{hexes[1]}/json", b"{}"), ("manifest.json", manifest),
               (cid[7:] + ".json", config), (f"{hexes[0]}/layer.tar", LAYERS[0])]
    staged, seen = _stage(tmp_path, FakeEngine(_info(cid, DIFF_IDS), _archive(entries)))
    assert staged.exported and not staged.engine_manifest and staged.config.digest == cid
    assert json.loads(staged.manifest.body)["mediaType"] == DOCKER_MANIFEST
    assert [gzip.decompress(b.path.read_bytes()) for b in staged.layers] == LAYERS
    assert set(seen) == {b.digest for b in staged.blobs}


@pytest.mark.parametrize("order", ["index-first", "layers-first", "shuffled"])
def test_oci_layout_with_uncompressed_layers_any_order(order: str, tmp_path: Path) -> None:
    config = _config(DIFF_IDS)
    man = _man(config, [("application/vnd.oci.image.layer.v1.tar", x) for x in LAYERS])
    v1 = b'{"id": "legacy v1 json of a layer"}'
    entries = [("index.json", _index([(man, {})])), ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
               _blob(man), _blob(config), _blob(v1), *(_blob(x) for x in LAYERS),
               ("manifest.json", b"[]"), ("repositories", b"{}")]
    if order == "layers-first":
        entries.reverse()
    elif order == "shuffled":
        random.Random(3).shuffle(entries)
    eng = FakeEngine(_info(sha256_digest(config), DIFF_IDS), _archive(entries))
    staged, seen = _stage(tmp_path, eng)
    assert not staged.engine_manifest and staged.config.digest == sha256_digest(config)
    assert [gzip.decompress(b.path.read_bytes()) for b in staged.layers] == LAYERS
    assert sha256_digest(v1) not in seen  # the v1 JSON is no blob of the image
    again, _ = _stage(tmp_path, eng)
    assert not again.exported and again.manifest == staged.manifest and eng.exports == 1


def _compressed_layout(*, with_index: bool = False) -> tuple[FakeEngine, bytes, list[bytes]]:
    gz = [gzip.compress(x, mtime=0, compresslevel=1) for x in LAYERS]
    config = _config(DIFF_IDS)
    man = _man(config, [(OCI_LAYER_GZIP, g) for g in gz])
    entries = [*(_blob(g) for g in gz), _blob(config), _blob(man)]
    top = man
    if with_index:
        att = _man(b'{"architecture":"unknown","os":"unknown"}', [("application/vnd.in-toto+json", b'{"x":1}')])
        other = _man(_config(DIFF_IDS, "arm64"), [(OCI_LAYER_GZIP, gz[0])])
        idx = _index([(other, {"platform": {"os": "linux", "architecture": "arm64"}}),
                      (man, {"platform": {"os": "linux", "architecture": "amd64"}}),
                      (att, {"platform": {"os": "unknown", "architecture": "unknown"},
                             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})])
        entries += [_blob(idx), _blob(att), _blob(other), _blob(_config(DIFF_IDS, "arm64")),
                    _blob(b'{"architecture":"unknown","os":"unknown"}'), _blob(b'{"x":1}')]
        top = idx
    entries.append(("index.json", _index([(top, {"mediaType": OCI_INDEX if with_index else OCI_MANIFEST})])))
    return FakeEngine(_info(sha256_digest(top), DIFF_IDS), _archive(entries)), man, gz


@pytest.mark.parametrize("with_index", [False, True], ids=["manifest", "index-with-attestation"])
def test_oci_layout_with_compressed_layers_keeps_the_engine_manifest(with_index: bool, tmp_path: Path) -> None:
    eng, man, gz = _compressed_layout(with_index=with_index)
    staged, seen = _stage(tmp_path, eng)
    assert staged.engine_manifest and staged.manifest.body == man and staged.manifest.media_type == OCI_MANIFEST
    assert [b.path.read_bytes() for b in staged.layers] == gz  # never recompressed
    assert set(seen) >= {b.digest for b in staged.blobs}
    again, _ = _stage(tmp_path, eng)
    assert not again.exported and again.manifest == staged.manifest and eng.exports == 1


def test_corrupt_record_means_export_again(tmp_path: Path) -> None:
    eng, man, _ = _compressed_layout()
    _stage(tmp_path, eng)
    records = list((tmp_path / "cache" / "images").rglob("*"))
    for r in records:
        if r.is_file():
            r.write_text("not json")
    staged, _ = _stage(tmp_path, eng)
    assert staged.exported and staged.manifest.body == man and eng.exports == 2
    (tmp_path / "cache" / "sha256" / sha256_digest(man)[7:]).write_bytes(b"garbage")  # corrupt manifest blob
    staged, _ = _stage(tmp_path, eng)
    assert staged.exported and eng.exports == 3


def test_truncated_export_is_an_engine_error(tmp_path: Path) -> None:
    eng, _, _ = _compressed_layout()
    eng.archive = eng.archive[: len(eng.archive) // 2]
    with pytest.raises(EngineError) as err:
        _stage(tmp_path, eng)
    assert "exporting img" in str(err.value) and "retry" in str(err.value)


def test_blob_not_matching_its_name_is_an_engine_error(tmp_path: Path) -> None:
    config = _config(DIFF_IDS[:1])
    gz = gzip.compress(LAYERS[0], mtime=0)
    man = _man(config, [(OCI_LAYER_GZIP, gz)])
    bad_name, _ = _blob(gz)
    bad = gz[:20] + bytes([gz[20] ^ 0xFF]) + gz[21:]
    entries = [(bad_name, bad), _blob(config), _blob(man), ("index.json", _index([(man, {})]))]
    with pytest.raises(EngineError) as err:
        _stage(tmp_path, FakeEngine(_info(sha256_digest(man), DIFF_IDS[:1]), _archive(entries)))
    assert "corrupt" in str(err.value) and sha256_digest(gz) in str(err.value)


def test_missing_layer_is_an_engine_error(tmp_path: Path) -> None:
    config = _config(DIFF_IDS)
    man = _man(config, [(OCI_LAYER_GZIP, gzip.compress(x, mtime=0, compresslevel=1)) for x in LAYERS])
    entries = [_blob(config), _blob(man), ("index.json", _index([(man, {})]))]  # no layer blobs
    with pytest.raises(EngineError) as err:
        _stage(tmp_path, FakeEngine(_info(sha256_digest(man), DIFF_IDS), _archive(entries)))
    assert "lacks layer 1" in str(err.value)


def test_config_not_matching_the_manifest_is_an_engine_error(tmp_path: Path) -> None:
    config = _config(DIFF_IDS[:1])
    other = _config(DIFF_IDS[:1], "arm64")
    gz = gzip.compress(LAYERS[0], mtime=0)
    man = json.loads(_man(config, [(OCI_LAYER_GZIP, gz)]))
    man["config"]["size"] += 1
    body = json.dumps(man).encode()
    entries = [_blob(gz), _blob(config), _blob(other), _blob(body), ("index.json", _index([(body, {})]))]
    with pytest.raises(EngineError) as err:
        _stage(tmp_path, FakeEngine(_info(sha256_digest(body), DIFF_IDS[:1]), _archive(entries)))
    assert "config" in str(err.value) and "bytes" in str(err.value)


def test_diff_ids_not_matching_the_engine_is_an_engine_error(tmp_path: Path) -> None:
    eng, _, _ = _compressed_layout()
    eng.info = _info(eng.info.id, DIFF_IDS[:1])
    with pytest.raises(EngineError) as err:
        _stage(tmp_path, eng)
    assert "changed during export" in str(err.value)


def test_put_stream_checks_the_digest(tmp_path: Path) -> None:
    with BlobCache(tmp_path) as cache:
        good = cache.put_stream(io.BytesIO(b"hello"), sha256_digest(b"hello"), size=5)
        assert good.path.read_bytes() == b"hello"
        with pytest.raises(OperationError):
            cache.put_stream(io.BytesIO(b"hellO"), sha256_digest(b"hello"))
        with pytest.raises(OperationError):
            cache.put_stream(io.BytesIO(b"hello"), sha256_digest(b"hello"), size=6)
        assert not any((tmp_path / "tmp").iterdir())


# ---- a blob cache that is corrupt or lies never reaches a registry (issue 24) ------------------------
def layers_match_config(registry: str, repo: str, digest: str) -> None:
    """Every layer of the published image decompresses to its config's diff_id (read from the registry)."""
    with RegistryClient(ImageName(registry, repo), plain_http=True) as c:
        got = c.get_manifest(digest)
        assert got is not None, f"{registry}/{repo}@{digest} is missing"
        manifest = json.loads(got[0])
        diff_ids = json.loads(c.get_blob(manifest["config"]["digest"]))["rootfs"]["diff_ids"]
        for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            assert sha256_digest(gzip.decompress(c.get_blob(layer["digest"]))) == diff_id, layer


@pytest.mark.engine
@pytest.mark.registry
def test_a_corrupt_or_lying_blob_cache_never_reaches_a_registry(engine: Any, buildkit: Any, registries: Any,
                                                                unique: str, tmp_path: Path) -> None:
    """One cache, four kinds of bad entry, each followed by a publish to a repository that lacks the image: a
    flipped byte in a cached layer (was: DIGEST_INVALID for ever), a layer index entry naming another layer's
    blob (was: exit 0, a layer that does not match its config), a malformed index entry (was: a traceback),
    and a staged-image record naming another image with the same layers (a label apart). Each publish
    succeeds with the image's own digest, warns, and every published layer matches its config."""
    rng = random.Random(unique)
    files = {"big.bin": rng.randbytes(2 * MiB), "a.txt": unique.encode()}
    x = buildkit("x", files)
    twin = buildkit("twin", files, dockerfile="FROM scratch\nCOPY big.bin /big.bin\nCOPY a.txt /a.txt\nLABEL twin=1\n")
    other = buildkit("other", {"big.bin": rng.randbytes(2 * MiB), "b.txt": b"other"})
    cache_dir, first, reg = tmp_path / "cache", registries[0], registries[1]  # the second lacks everything at first
    eng = Engine(engine)
    warnings: list[str] = []

    def publish_to(tag: str, repo: str, to: Any = reg) -> PushReport:
        with BlobCache(cache_dir, warn=warnings.append) as cache:
            return push_image(eng, tag, [PushTarget(ImageName(to.host, repo), plain_http=True)], cache=cache,
                              client_factory=RegistryClients())

    honest = publish_to(x, f"{unique}/x0", first)
    publish_to(twin, f"{unique}/t0", first)
    theirs = publish_to(other, f"{unique}/o0", first)
    cache = BlobCache(cache_dir)
    info = eng.inspect(x)
    manifest = json.loads(cache.read_blob(honest.digest, 1 << 20) or b"{}")
    their_layers = json.loads(cache.read_blob(theirs.digest, 1 << 20) or b"{}")["layers"]
    records = cache.root / "images" / cache.params
    twin_record = (records / eng.inspect(twin).id[7:]).read_bytes()

    # 1. a flipped byte in the biggest cached layer of x
    layer = max(manifest["layers"], key=lambda d: d["size"])
    path = cache.blob_path(layer["digest"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    # 2. x's layer index entries name the other image's blobs; 3. ... or are malformed (no record: they are read)
    def lie_about_layers(how: str) -> None:
        for f in records.iterdir():
            f.unlink()
        for i, diff_id in enumerate(info.diff_ids):
            blob = their_layers[min(i, len(their_layers) - 1)]  # in the cache, whole: another image's layer
            line = f"{blob['digest']} {blob['size']}\n" if how == "wrong" else "sha256:nope twelve\n"
            (cache.root / "layers" / cache.params / diff_id[7:]).write_text(line)

    for n, how in enumerate(("flipped", "wrong", "malformed", "record")):
        if how in ("wrong", "malformed"):
            lie_about_layers(how)
        if how == "record":  # x's record names its twin's manifest: the same layers, another config
            (records / info.id[7:]).write_bytes(twin_record)
        warnings.clear()
        again = publish_to(x, f"{unique}/x{n + 1}")
        assert again.digest == honest.digest, how
        layers_match_config(reg.host, f"{unique}/x{n + 1}", again.digest)
        expect = {"flipped": "does not hash to its name", "wrong": "decompresses to another layer",
                  "malformed": "is malformed", "record": "is wrong"}[how]
        assert any(expect in w for w in warnings), (how, warnings)
