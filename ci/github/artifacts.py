"""Digest artifacts on disk: one directory per leg, named by :mod:`ci.naming`, holding
one empty file named by the leg's manifest digest hex (the layout of LocalAI's
``actions/upload-artifact`` digests). Which of them one suffix merges is the merge's
choice (``localai_ci.merge.plan.select_artifacts``).

Artifacts come from other jobs: everything read here is validated, nothing
outside the digests directory is followed (symlinks are refused).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError, OperationError
from ..matrix.naming import LegKey, parse_artifact_name
from ..oci.reference import is_hex64, parse_digest

TMP_PREFIX = ".digest-"  # write_digest_file's temporaries, each of a unique name
NAMES_SHOWN = 5  # names an error lists of a directory holding too many (one with 100,000 files stays one line)


@dataclass(frozen=True)
class DigestArtifact:
    key: LegKey
    digest: str
    path: Path


@contextmanager
def _leg_locked(leg_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the leg's directory itself (no lock file: a digests directory holds only
    artifacts), so that writers of one leg take turns; released when the process ends, however it ends."""
    fd = os.open(leg_dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _leg_dir(digests_dir: str | Path, leg: LegKey, *, create: bool) -> Path | None:
    root = Path(digests_dir)
    leg_dir = root / leg.artifact
    if leg_dir.is_symlink():
        raise ArtifactError(f"{leg_dir} is a symlink; refusing to write a digest through it")
    if create:
        root.mkdir(parents=True, exist_ok=True)
        leg_dir.mkdir(exist_ok=True)
    return leg_dir if leg_dir.is_dir() else None


def _is_ours(name: str) -> bool:
    """A digest file or a temporary of :func:`write_digest_file` (what a writer may replace or reclaim)."""
    return is_hex64(name) or (name.startswith(TMP_PREFIX) and name.endswith(".tmp"))


def write_digest_file(digests_dir: str | Path, leg: LegKey, digest: str) -> Path:
    """Write ``<dir>/<artifact name>/<hex>``, replacing a previous digest of the same leg.

    Concurrent writers of one leg (two jobs, two processes) take turns under a lock on the leg's
    directory; each writes a temporary of its own (unique name) and renames it into place, then removes
    the other digests and any temporary a killed writer left. The last writer's digest is the one left:
    never none, never two."""
    parse_digest(digest)
    hex_ = digest.split(":", 1)[1]
    leg_dir = Path(digests_dir) / leg.artifact
    try:
        made = _leg_dir(digests_dir, leg, create=True)
        assert made is not None
        with _leg_locked(made):
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".tmp", dir=made)
            try:
                os.fchmod(fd, 0o644)
                os.close(fd)
                os.replace(tmp, made / hex_)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            for other in made.iterdir():
                if other.name != hex_ and _is_ours(other.name) and other.is_file() and not other.is_symlink():
                    other.unlink()
    except OSError as exc:
        raise OperationError(f"writing digest file under {leg_dir}: {exc.strerror or exc}") from exc
    return made / hex_


def remove_digest_file(digests_dir: str | Path, leg: LegKey) -> list[str]:
    """Remove the leg's digest file(s) before it is built and published again (the digests it held):
    a publish that then fails leaves no digest of an older image for the merge to tag as this run's."""
    leg_dir = Path(digests_dir) / leg.artifact
    removed = []
    try:
        made = _leg_dir(digests_dir, leg, create=False)
        if made is None:
            return []
        with _leg_locked(made):
            for other in made.iterdir():
                if _is_ours(other.name) and other.is_file() and not other.is_symlink():
                    other.unlink()
                    if is_hex64(other.name):
                        removed.append("sha256:" + other.name)
        with contextlib.suppress(OSError):
            made.rmdir()  # empty now (an artifact directory holds its digest file only)
    except OSError as exc:
        raise OperationError(f"removing the previous digest file under {leg_dir}: {exc.strerror or exc}") from exc
    return removed


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
            shown = [repr(f.name) for f in files[:NAMES_SHOWN]]
            names = ", ".join(shown) + (f" and {len(files) - NAMES_SHOWN} more" if len(files) > NAMES_SHOWN else "") \
                if files else "nothing"
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
