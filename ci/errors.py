"""One error hierarchy; each class carries the process exit status it maps to.

Wrappers (tasks.py, noxfile.py, ci.cli) catch :class:`CiError` once and print what
:func:`failure` makes of it; tracebacks are shown only with ``--debug``.
"""
from __future__ import annotations

import traceback

from .output.escape import terminal_text


class CiError(Exception):
    """Base class of every error this project reports to a user."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserError(CiError):
    """Bad input from the user (matrix, flags, environment, artifacts): exit 2.

    Raised before anything is written, so nothing has changed.
    """

    exit_code = 2


class MatrixError(UserError):
    """A matrix file that cannot be loaded or fails validation."""


class ArtifactError(UserError):
    """A digests directory holding something that is not a valid digest artifact."""


class OperationError(CiError):
    """A build, publish, merge or verification failed: exit 1."""

    exit_code = 1


class RegistryError(OperationError):
    """A registry refused or failed a request after retries."""

    def __init__(self, message: str, *, registry: str = "", status: int | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.registry = registry
        self.status = status
        self.transient = transient


class EngineError(OperationError):
    """The Docker engine failed (build error, engine unreachable, ...)."""


class VerificationError(OperationError):
    """A published result does not match what was expected."""


def failure(exc: CiError | KeyboardInterrupt, *, debug: bool = False) -> tuple[str, int]:
    """The one mapping from an error a verb raised to what the user reads and the exit status, for
    both front ends (``localai-ci`` / ``python -m localai_ci`` / nox in ``localai_ci.cli``, invoke in ``tasks.py``): ``error: ...``
    with the error's exit code (2 bad input, 1 a failed operation), 130 for an interrupt,
    redacted and made inert for a terminal or an Actions log (``terminal_text``: an error quoting a
    registry's text carries no control character and no workflow command), the traceback only with
    ``--debug`` / ``CI_DEBUG``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    text = f"error: {exc}"
    if debug:
        text = "".join(traceback.format_exception(exc)).rstrip() + "\n" + text
    return terminal_text(text), exc.exit_code
