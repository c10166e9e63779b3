"""The nox sessions localai-ci ships: ``merge`` and ``inspect`` (what CI's fan-in jobs run).

A repository's ``noxfile.py`` registers them by importing them (``from localai_ci.sessions import
inspect, merge``); nox lists imported sessions like its own. Each runs the verb in-process through
:func:`localai_ci.cli.main`, in the current environment (no virtualenv: install localai-ci first),
and keeps its exit status: 0 ok, 1 a failure, 2 bad input. ``nox -s merge -- --help`` explains every option.
"""
from __future__ import annotations

import nox
import nox.virtualenv

__all__ = ["inspect", "merge"]

# nox looks for its optional virtualenv backends (uv, conda, ...) even for sessions that make no
# environment, and says "uv binary not found." on every run where uv is absent. These sessions make
# none (venv_backend "none"), so none of those backends is used: tell nox so, through its own
# override point for them.
nox.virtualenv.OPTIONAL_VENVS = dict.fromkeys(("conda", "mamba", "micromamba", "rattler", "uv"), False)


def _call(session: nox.Session, command: str) -> None:
    """Run ``localai-ci <command> <posargs>`` in-process and keep its exit status."""
    from .cli import run_command  # lazy: `nox --list` needs only the session names

    code = run_command([command, *session.posargs])
    if code:
        # SystemExit passes through nox unchanged, so `nox -s merge` exits 1 or 2 like the verb
        raise SystemExit(code)


@nox.session(python=False, venv_backend="none", default=False)  # run by name: they need arguments
def merge(session: nox.Session) -> None:
    """Merge per-arch digests into one multi-arch list per suffix, tagged in every registry (`-- --help`)."""
    _call(session, "merge")


@nox.session(python=False, venv_backend="none", default=False)  # run by name: they need arguments
def inspect(session: nox.Session) -> None:
    """Verify published manifest lists: platforms, children, same digest in every registry (`-- --help`)."""
    _call(session, "inspect")
