"""Bounded reads of the text files users hand the tool (matrices, Dockerfiles): pure core, local files only.

One place for the checks every such read needs, each failure an error of the caller's type
naming the path and what to do: missing, not a regular file, too large, not UTF-8, unreadable.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CiError


def read_user_text(path: str | Path, *, what: str, limit: int, missing_hint: str, error: type[CiError],
                   not_a_file_hint: str = "") -> str:
    """The UTF-8 text of ``path`` (a ``what``: "matrix file", "Dockerfile"), at most ``limit`` bytes."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError as exc:
        raise error(f"{path}: no such {what}; {missing_hint}") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    if not p.is_file():
        raise error(f"{path}: not a regular file; {not_a_file_hint or missing_hint}")
    if size > limit:
        raise error(f"{path}: {size} bytes is larger than the {limit} byte limit for a {what}")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from exc
