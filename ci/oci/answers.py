"""How a registry's answers are read (adapter support): parsed error bodies, the headers every
operation relies on, and the two verdicts on an answer this client will not use.

- :class:`Refused`: a request or answer outside the registry's scope (a foreign challenge, a
  redirect to plain HTTP, a write answered with a redirect, ...).
- :class:`Malformed`: an answer that does not follow the protocol (a ``Content-Length`` that is
  not a byte count, a bad ``Docker-Content-Digest``, a body over its cap, a digest mismatch, ...).

Both are :class:`Problem`: never retried, reported as a :class:`ci.errors.RegistryError` naming
the registry. :func:`registry_error_text` is what an error answer says
(``HTTP 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)``).
"""
from __future__ import annotations

import json

import requests

from .reference import parse_digest

MAX_MEDIA_TYPE = 255  # RFC 6838: 127 + "/" + 127


class Problem(Exception):
    """An answer this client will not use (never retried): refused, malformed or too large."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Refused(Problem):
    """A request or answer outside this registry's scope (foreign challenge, plain-HTTP redirect, ...)."""


class Malformed(Problem):
    """An answer that does not follow the protocol."""


def registry_error_text(resp: requests.Response) -> str:
    """``HTTP 404 MANIFEST_UNKNOWN: manifest unknown`` from a distribution error body."""
    text = f"HTTP {resp.status_code}"
    if resp.reason:
        text += f" {resp.reason}"
    try:
        errors = json.loads(resp.content[:65536] or b"{}").get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
        if parts:
            text += " (" + "; ".join(parts)[:300] + ")"
    except (ValueError, AttributeError, RuntimeError):
        pass
    return text


def content_length(resp: requests.Response) -> int | None:
    """The declared body length; None when absent; :class:`Malformed` when it is not a byte count."""
    value = resp.headers.get("Content-Length")
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 19:
        raise Malformed(f"its Content-Length {text[:40]!r} is not a byte count")
    return int(text)


def digest_header(r: requests.Response) -> str:
    """``Docker-Content-Digest`` when it is a sha256 digest; '' when absent or of another algorithm
    (``sha512:<hex>``: not comparable here); :class:`Malformed` when it is not a digest at all."""
    value = (r.headers.get("Docker-Content-Digest") or "").strip()
    if not value:
        return ""
    algorithm, _, encoded = value.partition(":")
    if algorithm != "sha256" and algorithm.isalnum() and algorithm.islower() and encoded.isalnum() \
            and len(value) <= 200:
        return ""
    try:
        return parse_digest(value)
    except ValueError as exc:
        raise Malformed("its Docker-Content-Digest header is not a sha256:<64 hex> digest") from exc


def media_type(r: requests.Response) -> str:
    """The Content-Type without parameters, at most :data:`MAX_MEDIA_TYPE` characters."""
    return (r.headers.get("Content-Type") or "").split(";")[0].strip()[:MAX_MEDIA_TYPE]


def first_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, at most ``limit`` characters (what a message quotes of an error)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


def root_cause(exc: BaseException) -> str:
    """The most specific cause's text (``ConnectionResetError: [Errno 104] ...``), not the wrappers."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    best: BaseException = exc
    while todo:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and not isinstance(cur, requests.RequestException):
            best = cur  # the socket-level error: the most telling one
            break
        todo += [getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args]
    return f"{type(best).__name__}: {best}"
