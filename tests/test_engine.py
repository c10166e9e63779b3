"""Engine adapter: platform check (pure) and build/inspect/export against the real engine."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ci.blobcache import BlobCache
from ci.engine import Engine, ImageInfo, check_platform
from ci.errors import EngineError
from ci.platforms import parse_platform


def info(arch: str, variant: str = "") -> ImageInfo:
    return ImageInfo(id="sha256:" + "a" * 64, os="linux", architecture=arch, variant=variant, diff_ids=(), size=0)


def test_check_platform_ok() -> None:
    check_platform(info("arm64"), parse_platform("linux/arm64"), "leg")


def test_check_platform_variant_is_normalized() -> None:
    check_platform(info("arm64", "v8"), parse_platform("linux/arm64"), "leg")  # real arm64 bases say v8
    check_platform(info("arm64"), parse_platform("linux/arm64/v8"), "leg")
    with pytest.raises(EngineError, match="is linux/arm/v6, but the leg's platform is linux/arm/v7"):
        check_platform(info("arm", "v6"), parse_platform("linux/arm/v7"), "leg")
    with pytest.raises(EngineError, match="is linux/mips64"):
        check_platform(info("mips64"), parse_platform("linux/amd64"), "leg")


def test_check_platform_mismatch_explains() -> None:
    with pytest.raises(EngineError) as err:
        check_platform(info("amd64"), parse_platform("linux/arm64"), "backends tag-suffix '-x' platform-tag arm64")
    msg = str(err.value)
    assert "linux/amd64" in msg and "linux/arm64" in msg and "classic builder" in msg
    assert "FROM scratch" in msg and "native arm64 runner" in msg and "ubuntu-24.04-arm" in msg


def test_blobcache_gzip_is_valid_and_deterministic(tmp_path: Path) -> None:
    import gzip
    import os

    data = os.urandom(300_000) + b"text\n" * 400_000
    with BlobCache(tmp_path / "a", chunk_size=128 << 10) as a, BlobCache(tmp_path / "b", chunk_size=128 << 10) as b:
        d1, b1 = a.compress_layer(io.BytesIO(data))
        d2, b2 = b.compress_layer(io.BytesIO(data))
        assert b1.digest == b2.digest and d1 == d2
        assert gzip.decompress(b1.path.read_bytes()) == data
        assert a.layer(d1) == b1
        assert b1.path.read_bytes()[4:8] == b"\0\0\0\0"  # mtime 0


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str]) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


@pytest.mark.engine
def test_build_inspect_export(engine: Any, tmp_path: Path, unique: str) -> None:
    ctx = _context(tmp_path, "FROM scratch\nCOPY f /f\n", {"f": unique})
    eng = Engine(engine)
    lines: list[str] = []
    tag = f"localai-ci-test/{unique}:amd64"
    try:
        out = eng.build(path=str(ctx), dockerfile="Dockerfile", buildargs={}, platform="linux/amd64",
                        labels={"org.opencontainers.image.revision": unique}, tag=tag, on_line=lines.append)
        assert any(ln.startswith("Step 1/") for ln in lines)
        i = eng.inspect(out.image_id)
        assert i.id == out.image_id and i.architecture == "amd64" and len(i.diff_ids) == 1
        assert dict(i.labels)["org.opencontainers.image.revision"] == unique
        with eng.export(out.image_id) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            names = {}
            for m in tar:
                f = tar.extractfile(m) if m.isfile() else None
                names[m.name] = f.read() if f and m.name.endswith(".json") else b""
        assert json.loads(names["manifest.json"])[0]["Config"] == out.image_id.split(":")[1] + ".json"
    finally:
        engine.images.remove(tag, force=True)


@pytest.mark.engine
def test_build_failure_keeps_log_tail(engine: Any, tmp_path: Path, unique: str) -> None:
    ctx = _context(tmp_path, f"FROM scratch\nLABEL x={unique}\nCOPY missing-{unique} /m\n", {})
    with pytest.raises(EngineError) as err:
        Engine(engine).build(path=str(ctx), dockerfile="Dockerfile", buildargs={}, platform="linux/amd64",
                             labels={}, tag=None)
    msg = str(err.value)
    assert "build failed" in msg and f"missing-{unique}" in msg and "Step 2/" in msg


@pytest.mark.engine
def test_inspect_missing_image(engine: Any, unique: str) -> None:
    with pytest.raises(EngineError, match="build it first"):
        Engine(engine).inspect(f"localai-ci-test/{unique}:none")
