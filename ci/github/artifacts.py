"""Digest artifacts on disk: one directory per leg, named by :mod:`ci.naming`, holding
one empty file named by the leg's manifest digest hex (the layout of LocalAI's
``actions/upload-artifact`` digests). Which of them one suffix merges is the merge's
choice (``localai_ci.merge.plan.select_artifacts``).

Artifacts come from other jobs: everything read here is validated, nothing
outside the digests directory is followed (symlinks are refused).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError, OperationError
from ..matrix.naming import LegKey, parse_artifact_name
from ..oci.reference import is_hex64, parse_digest


@dataclass(frozen=True)
class DigestArtifact:
    key: LegKey
    digest: str
    path: Path


def write_digest_file(digests_dir: str | Path, leg: LegKey, digest: str) -> Path:
    """Write ``<dir>/<artifact name>/<hex>`` atomically; replaces a previous digest of the same leg."""
    parse_digest(digest)
    root = Path(digests_dir)
    leg_dir = root / leg.artifact
    try:
        root.mkdir(parents=True, exist_ok=True)
        if leg_dir.is_symlink():
            raise ArtifactError(f"{leg_dir} is a symlink; refusing to write a digest through it")
        leg_dir.mkdir(exist_ok=True)
        hex_ = digest.split(":", 1)[1]
        target = leg_dir / hex_
        tmp = leg_dir / f".{hex_}.tmp"
        tmp.write_bytes(b"")
        os.replace(tmp, target)
        for other in leg_dir.iterdir():
            if other.name != hex_ and is_hex64(other.name) and other.is_file() and not other.is_symlink():
                other.unlink()
    except OSError as exc:
        raise OperationError(f"writing digest file under {leg_dir}: {exc.strerror or exc}") from exc
    return target


def _entries(path: Path) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def read_digests_dir(digests_dir: str | Path) -> list[DigestArtifact]:
    """Every digest artifact in a directory, validated; ArtifactError on anything unexpected."""
    root = Path(digests_dir)
    if root.is_symlink() or not root.is_dir():
        raise ArtifactError(f"{root}: not a directory of digest artifacts; pass --digests-dir DIR "
                            "(where actions/download-artifact put them)")
    out: list[DigestArtifact] = []
    seen: set[LegKey] = set()
    for ent in _entries(root):
        p = root / ent.name
        if ent.is_symlink():
            raise ArtifactError(f"{p}: is a symlink; digest artifacts are plain directories, remove it")
        if not ent.is_dir():
            raise ArtifactError(f"{p}: unexpected file; a digests directory holds only artifact directories")
        try:
            key = parse_artifact_name(ent.name)
        except ValueError as exc:
            raise ArtifactError(f"{p}: {exc}") from exc
        files = _entries(p)
        if len(files) != 1:
            names = ", ".join(f.name for f in files) or "nothing"
            raise ArtifactError(f"{p}: expected exactly one digest file, found {len(files)} ({names}); "
                                "one leg has one digest: clear the directory and download the artifact again")
        f = files[0]
        fp = p / f.name
        if f.is_symlink():
            raise ArtifactError(f"{fp}: is a symlink; digest files are empty regular files")
        st = f.stat(follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{fp}: not a regular file (a nested directory?); digest files are empty files")
        if not is_hex64(f.name):
            raise ArtifactError(f"{fp}: file name {f.name!r} is not a digest (64 lowercase hex characters)")
        if st.st_size != 0:
            raise ArtifactError(f"{fp}: digest files are empty; this one has {st.st_size} bytes")
        if key in seen:  # pragma: no cover - names are unique in a directory
            raise ArtifactError(f"{p}: leg {key} appears twice")
        seen.add(key)
        out.append(DigestArtifact(key=key, digest="sha256:" + f.name, path=fp))
    return out
