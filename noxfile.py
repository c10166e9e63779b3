"""nox sessions: thin; the logic lives in ``ci/``. ``nox --list`` shows them;
``nox -s <session> -- --help`` explains every option.

The CI-facing sessions (merge, inspect) run in the current environment
(``python=False``): install the project first (``pip install -e '.[dev]'``).
Exit statuses are kept: 0 ok, 1 a failure, 2 bad input.
"""
from __future__ import annotations

import sys

import nox
import nox.command
import nox.virtualenv

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = False
nox.options.default_venv_backend = "none"  # every session runs in the current environment
# nox looks for its optional virtualenv backends (uv, conda, ...) even for sessions that make no
# environment, and says "uv binary not found." on every run where uv is absent. No session here
# makes one, so none of those backends is used: tell nox so (its own override point for them).
nox.virtualenv.OPTIONAL_VENVS = dict.fromkeys(("conda", "mamba", "micromamba", "rattler", "uv"), False)


def _call(session: nox.Session, command: str) -> None:
    """Run ``python -m ci <command> <posargs>`` in-process and keep its exit status."""
    from localai_ci.cli import main

    code = main([command, *session.posargs])
    if code:
        # SystemExit passes through nox unchanged, so `nox -s merge` exits 1 or 2 like the verb
        raise SystemExit(code)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run the test suite; with CI_TEST_ENGINES=HOST1,HOST2 the engine tests run on every engine (see .ci/run)."""
    import os

    engines = [h.strip() for h in os.environ.get("CI_TEST_ENGINES", "").split(",") if h.strip()]
    if not engines:  # the engine at DOCKER_HOST (or the default socket), if any
        session.run(sys.executable, "-m", "pytest", *session.posargs)
        return
    # the whole suite against the first engine, then the engine-backed tests against each other one
    # (e.g. the classic image store, then the containerd image store); every run runs, failures are
    # reported at the end
    failed = []
    for i, host in enumerate(engines):
        args = [*session.posargs] if i == 0 else ["-m", "engine", *session.posargs]
        try:
            session.run(sys.executable, "-m", "pytest", *args, env={"DOCKER_HOST": host})
        except nox.command.CommandFailed:
            failed.append(host)
    if failed:
        session.error(f"the tests failed against {', '.join(failed)}")


@nox.session(python=False)
def typecheck(session: nox.Session) -> None:
    """Type-check the ci package with mypy (configured in pyproject.toml)."""
    session.run(sys.executable, "-m", "mypy", *session.posargs)


# (section: sessions)


@nox.session(python=False)
def merge(session: nox.Session) -> None:
    """Merge per-arch digests into one multi-arch list per suffix, tagged in every registry (`-- --help`)."""
    _call(session, "merge")


@nox.session(python=False)
def inspect(session: nox.Session) -> None:
    """Verify published manifest lists: platforms, children, same digest in every registry (`-- --help`)."""
    _call(session, "inspect")
