"""The repository as change detection and the pipeline see it: a :class:`ci.tree.Tree` (adapter).

In a git checkout the files are the ones git tracks (``git ls-files``: what HEAD has, no
build outputs or virtualenvs), read from the working tree; elsewhere a directory walk
(``.git`` skipped); :func:`working_tree` is the directory as it is on disk, untracked files
included (what a local build sends). Reads are bounded (:data:`ci.tree.MAX_TEXT_BYTES`) and never follow a
symbolic link out of the root. :func:`revision_tree` is the tree of any commit, read from
git's object store (``git ls-tree`` and one ``git cat-file --batch`` process).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..changes.tree import MAX_TEXT_BYTES, Tree
from .repo import Git


def _reader(root: Path):  # type: ignore[no-untyped-def]
    base = root.resolve()

    def read(path: str) -> bytes | None:
        p = base / path
        try:
            if p.is_symlink() and not p.resolve().is_relative_to(base):
                return None
            if not p.is_file() or p.stat().st_size > MAX_TEXT_BYTES:
                return None
            return p.read_bytes()
        except OSError:
            return None
    return read


def walk_files(root: Path, skip: Path | None = None) -> list[str]:
    """Every file below ``root`` (``.git`` and ``skip`` left out), repository-relative."""
    out: list[str] = []
    skip_at = skip.resolve() if skip is not None else None
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git" and (skip_at is None or (Path(current) / d).resolve() != skip_at)]
        rel = os.path.relpath(current, root)
        for f in files:
            out.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return out


def checkout_tree(root: str | Path, git: Git | None = None) -> Tree:
    """The tree of the checkout at ``root`` (git's tracked files when it is a repository)."""
    r = Path(root)
    paths = None
    if git is None:
        git = Git.find(r)
    if git is not None and git.root.resolve() == r.resolve():
        paths = git.tracked_files()
    if paths is None:
        paths = walk_files(r)
    return Tree(paths, _reader(r))


def working_tree(root: str | Path, skip: Path | None = None) -> Tree:
    """The files of the directory as they are now, untracked ones included (BuildKit sends them
    too): what ``invoke pipeline`` builds from. ``skip``: a directory left out (its state)."""
    r = Path(root)
    return Tree(walk_files(r, skip), _reader(r))


class _CatFile:
    """One ``git cat-file --batch`` process answering blob reads of one commit."""

    def __init__(self, repo: Path, rev: str) -> None:
        self.rev = rev
        self.proc = subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def read(self, path: str) -> bytes | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{self.rev}:{path}\n".encode())
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            return None
        size = int(header[2])
        data = self.proc.stdout.read(size + 1)[:-1]
        return data if size <= MAX_TEXT_BYTES else None

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def revision_tree(repo: str | Path, rev: str) -> tuple[Tree, _CatFile]:
    """The tree of commit ``rev`` in the repository (a work tree or a bare git directory) and the
    reader process behind it (close it when done)."""
    proc = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "-z", "--name-only", rev],
                          capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise OSError(f"git ls-tree {rev}: {proc.stderr.decode('utf-8', 'replace').strip()}")
    paths = [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
    cat = _CatFile(Path(repo), rev)
    return Tree(paths, cat.read), cat
