"""Helpers for tests that look inside built images (no command runs in them)."""
from __future__ import annotations

from typing import Any


def read_file(engine: Any, image: str, path: str) -> str:
    """A file of an image, read through the engine (``docker create`` + ``docker cp``; no command runs)."""
    import io
    import tarfile

    container = engine.containers.create(image, command=["/none"])
    try:
        bits, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.getmembers()[0]
            f = tar.extractfile(member)
            assert f is not None
            return f.read().decode()
    finally:
        container.remove(force=True)


def read_published_file(image: str, digest: str, path: str) -> str:
    """A file of an image published by digest, read from the registry (``image``: host/repository): the
    topmost layer that has it wins. For legs whose image never entered the engine (an OCI layout hand-off)."""
    import gzip
    import io
    import json
    import tarfile

    from localai_ci.oci.reference import parse_image_name
    from localai_ci.oci.client import RegistryClient

    want = path.lstrip("/")
    with RegistryClient(parse_image_name(image), plain_http=True) as c:
        got = c.get_manifest(digest)
        assert got is not None, f"{image}@{digest} is not published"
        for layer in reversed(json.loads(got[0])["layers"]):
            data = gzip.decompress(c.get_blob(layer["digest"], 64 << 20))
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for m in tar.getmembers():
                    if m.name.lstrip("./") == want and m.isfile():
                        f = tar.extractfile(m)
                        assert f is not None
                        return f.read().decode()
    raise AssertionError(f"{path} is in no layer of {image}@{digest}")
