"""``docker buildx imagetools`` adapter: the reference peer, used exactly as LocalAI's workflows do.

LocalAI's merge step runs, per registry, one
``docker buildx imagetools create -t IMG:tag1 -t IMG:tag2 ... IMG@sha256:<leg1> IMG@sha256:<leg2>``.
Here that is :func:`create` (argument list, never a shell). :func:`inspect_raw` reads a
manifest back with ``imagetools inspect --raw`` (an independent check for tests).
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from ..errors import EngineError
from ..oci.reference import ImageName, parse_digest, parse_tag

TIMEOUT = 120.0


def create_command(image: ImageName, tags: Sequence[str], children: Sequence[str], docker: str = "docker") -> list[str]:
    """The argv of one ``imagetools create`` for one registry: every tag as ``-t``, children by digest."""
    if not tags:
        raise ValueError("imagetools create needs at least one tag")
    args = [docker, "buildx", "imagetools", "create"]
    for t in tags:
        args += ["-t", image.with_tag(parse_tag(t))]
    return args + [image.with_digest(parse_digest(d)) for d in children]


def _run(args: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which(args[0]) is None:
        raise EngineError(f"{what}: {args[0]!r} not found on PATH; install the Docker CLI with the buildx plugin "
                          "(Debian: apt-get install docker-buildx) or use --engine native")
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{what}: no answer within {TIMEOUT:.0f}s") from exc
    except OSError as exc:
        raise EngineError(f"{what}: cannot run {args[0]}: {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        tail = " | ".join(err[-4:]) or "(no output)"
        hint = (" (is the buildx plugin installed? `docker buildx version`)"
                if "buildx" in tail and "not a docker command" in tail else "")
        raise EngineError(f"{what}: exit status {proc.returncode}: {tail}{hint}")
    return proc


def create(image: ImageName, tags: Sequence[str], children: Sequence[str], docker: str = "docker") -> None:
    """Run ``docker buildx imagetools create`` for one registry."""
    args = create_command(image, tags, children, docker)
    _run(args, f"docker buildx imagetools create for {image}")


def inspect_raw(ref: str, docker: str = "docker") -> bytes:
    """The raw manifest bytes ``ref`` resolves to (``imagetools inspect --raw``)."""
    return _run([docker, "buildx", "imagetools", "inspect", "--raw", ref], f"imagetools inspect {ref}").stdout
