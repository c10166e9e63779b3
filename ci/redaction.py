"""Redaction (pure): one process-wide list of secrets, applied to everything shown to a user.

Credentials register their password (and the forms it travels in) when they are made;
registry errors, retry notes, every string a registry sent, and every error message either
front end prints pass through :func:`redact` (``ci.errors.failure``, ``ci.cli``).
"""
from __future__ import annotations

import base64
import threading

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()


def secret_forms(username: str, password: str) -> list[str]:
    """The forms in which a password can travel (and be echoed back): as is, ``user:password``,
    and base64 of both (standard and URL-safe alphabets, with and without padding)."""
    if not password:
        return []
    out = [password, f"{username}:{password}"]
    for raw in (f"{username}:{password}".encode(), password.encode()):
        for enc in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
            out += [enc, enc.rstrip("=")]
    return out


def register_secret(*values: str) -> None:
    """Remember secrets (passwords, tokens) so :func:`redact` removes them from any text."""
    with _SECRETS_LOCK:
        _SECRETS.update(v for v in values if isinstance(v, str) and v)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``.

    The one redaction of this project: registry errors, retry notes, and every string a
    registry sent (media types, digests, error texts) pass through it before they are
    printed, written as JSON, to a job summary or to step outputs (``ci.cli`` applies it
    to all it writes).
    """
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text
