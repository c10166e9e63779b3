"""When a registry request is tried again (adapter support): the policy, the backoff, ``Retry-After``,
and which failures are transient.

Transient: a status of :data:`TRANSIENT_STATUS` (with its ``Retry-After``), a connection error or
timeout other than a TLS verification failure, an answer cut off, a request past its wall-clock
deadline (:class:`ci.oci.deadline.DeadlineExceeded`). Everything else -- other statuses, an
answer refused or malformed (:mod:`ci.oci.answers`), an authentication failure -- ends the
operation at once (``RegistryClient`` says how). The loop itself is ``RegistryClient._attempts``:
it asks :func:`transient` what a failure is and :func:`delay` how long to wait.
"""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import requests

from .answers import first_line, registry_error_text, root_cause
from .deadline import DeadlineExceeded

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter.

    ``attempts`` counts every try (1 = no retry); an operation ends ``deadline`` seconds
    after its first try, whatever is in flight (no retry starts that would end later,
    and a request still running then is cut); one wait is at most ``max_delay``
    (Retry-After included); ``request_timeout`` is the per-socket-operation timeout;
    ``request_deadline`` is the wall-clock limit of one request (connect, headers and
    body), to which a request sending a body adds the time it takes at ``min_rate``
    bytes per second (the operation's deadline grows by the same allowance).
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float = 600.0
    request_timeout: float = 60.0
    request_deadline: float = 300.0
    min_rate: float = 1024.0 * 1024.0

    def transfer_allowance(self, size: int) -> float:
        """Extra seconds for sending ``size`` bytes at ``min_rate``."""
        return max(0, size) / self.min_rate if self.min_rate > 0 else 0.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Wait before retry number ``retry`` (1-based): base*2^(n-1), capped, jittered to [50%, 100%]."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return float(ceiling * rng.uniform(0.5, 1.0))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Transient(Exception):
    """A failure worth retrying: what happened, plus the HTTP status and ``Retry-After`` if any."""

    def __init__(self, text: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.status = status
        self.retry_after = retry_after


def transient(exc: BaseException) -> Transient | None:
    """What ``exc`` is as a transient failure; None when it is not one (see the module docstring)."""
    if isinstance(exc, Transient):
        return exc
    if isinstance(exc, DeadlineExceeded):
        return Transient(exc.text)
    if isinstance(exc, requests.HTTPError):
        resp = exc.response
        if resp is None:
            return Transient(f"HTTPError: {first_line(str(exc), 200)}")
        if resp.status_code in TRANSIENT_STATUS:
            return Transient(registry_error_text(resp), resp.status_code,
                             retry_after_seconds(resp.headers.get("Retry-After")))
        return None
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        if isinstance(exc, requests.exceptions.SSLError):
            return None
        return Transient(f"{type(exc).__name__} ({first_line(root_cause(exc), 200)})")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return Transient(f"response cut off ({first_line(root_cause(exc), 200)})")
    return None


def delay(policy: RetryPolicy, attempt: int, failure: Transient, rng: random.Random, elapsed: float,
          budget: float) -> float | None:
    """Seconds to wait before trying again after ``attempt`` tries failed, the last with ``failure``;
    None when the operation gives up (no tries left, or the wait would reach its deadline ``budget``)."""
    wait = policy.backoff(attempt, rng)
    if failure.retry_after is not None:
        wait = max(wait, failure.retry_after)
    wait = min(wait, policy.max_delay)
    if attempt >= policy.attempts or elapsed + wait >= budget:
        return None
    return wait
