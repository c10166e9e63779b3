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
