"""A read-only view of a repository's files at one revision (pure: the reader is injected).

Change detection derives each leg's inputs from what is in the repository: the Dockerfile,
the scripts it runs, the Go packages its backend imports. :class:`Tree` is that repository:
the set of file paths (repository-relative, POSIX, no ``./``), the directories they imply,
and a reader for a file's text. The adapters that list and read a real checkout are in
:mod:`ci.worktree`; tests build a Tree from a dict.

Texts are read once and kept (a selection reads the same scripts for many legs); a file
that cannot be read, is not UTF-8 or is larger than :data:`MAX_TEXT_BYTES` reads as None,
which callers treat as "unknown" (conservatively), never as empty.
"""
from __future__ import annotations

import bisect
import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping

MAX_TEXT_BYTES = 2 * 1024 * 1024

Reader = Callable[[str], "bytes | None"]


def clean_path(path: str) -> str:
    """``./a//b/../c/`` -> ``a/c``: repository-relative, ``..`` clamped at the root, '' for the root."""
    norm = posixpath.normpath("/" + path.replace("\\", "/")).lstrip("/")
    return "" if norm in (".", "") else norm


def parent_dirs(path: str) -> list[str]:
    """``a/b/c.txt`` -> ``['a/b', 'a']`` (nearest first; the root '' is not included). Each step moves
    left past one ``/``, so it ends for any text (``posixpath.dirname`` stays at ``//`` for ever)."""
    out = []
    end = path.rfind("/")
    while end > 0:
        out.append(path[:end])
        end = path.rfind("/", 0, end)
    return out


def join(base: str, rel: str) -> str:
    """``rel`` relative to the directory ``base`` (both repository-relative), cleaned."""
    return clean_path(posixpath.join(base, rel) if base else rel)


class Tree:
    """The files of a repository at one revision."""

    def __init__(self, paths: Iterable[str], read: Reader) -> None:
        files = sorted({clean_path(p) for p in paths} - {""})
        self._sorted = files
        self.files = frozenset(files)
        dirs: set[str] = set()
        for f in files:
            dirs.update(parent_dirs(f))
        self.dirs = frozenset(dirs)
        self._read = read
        self._texts: dict[str, str | None] = {}

    @classmethod
    def from_mapping(cls, files: Mapping[str, str | bytes]) -> Tree:
        """A tree of in-memory files (text or bytes)."""
        data = {clean_path(k): (v.encode() if isinstance(v, str) else v) for k, v in files.items()}
        return cls(data, data.get)

    def is_file(self, path: str) -> bool:
        return path in self.files

    def is_dir(self, path: str) -> bool:
        return path == "" or path in self.dirs

    def exists(self, path: str) -> bool:
        return self.is_file(path) or self.is_dir(path)

    def under(self, directory: str) -> list[str]:
        """Every file below ``directory`` ('' for the whole tree), sorted."""
        if not directory:
            return list(self._sorted)
        prefix = directory.rstrip("/") + "/"
        lo = bisect.bisect_left(self._sorted, prefix)
        hi = bisect.bisect_left(self._sorted, prefix[:-1] + "0")  # '0' sorts right after '/'
        return self._sorted[lo:hi]

    def has_prefix(self, prefix: str) -> bool:
        """True when some file path starts with ``prefix`` (a string prefix, not only a directory)."""
        i = bisect.bisect_left(self._sorted, prefix)
        return i < len(self._sorted) and self._sorted[i].startswith(prefix)

    def listdir(self, directory: str) -> list[str]:
        """Files directly in ``directory`` (not in its subdirectories)."""
        prefix = directory.rstrip("/") + "/" if directory else ""
        return [f for f in self.under(directory) if "/" not in f[len(prefix):]]

    def text(self, path: str) -> str | None:
        """The file's UTF-8 text, or None (missing, unreadable, not UTF-8, too large)."""
        if path in self._texts:
            return self._texts[path]
        text: str | None = None
        if path in self.files:
            try:
                data = self._read(path)
            except OSError:
                data = None
            if data is not None and len(data) <= MAX_TEXT_BYTES:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
        self._texts[path] = text
        return text

    def glob(self, pattern: str) -> list[str]:
        """Files and directories matching a shell glob (``*``, ``?``, ``[...]`` within one path segment)."""
        pattern = clean_path(pattern)
        if not pattern:
            return []
        fixed: list[str] = []
        for part in pattern.split("/"):
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        base = "/".join(fixed)
        if not self.is_dir(base) and not self.is_file(base):
            return []
        rx = re.compile(fnmatch.translate(pattern).replace(".*", "[^/]*"))
        depth = pattern.count("/")
        candidates = {f for f in self.under(base)} | {d for d in self.dirs if d.startswith(base)}
        return sorted(c for c in candidates if c.count("/") == depth and rx.match(c))
