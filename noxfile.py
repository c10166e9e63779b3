"""nox sessions of this repository: the ones localai-ci ships (``merge``, ``inspect``: CI's fan-in
jobs, from ``ci/sessions.py``) and this repository's own (``tests``, ``typecheck``, ``lint``,
``wheels``). ``nox --list`` shows them; ``nox -s <session> -- --help`` explains every option.

Every session runs in the current environment (``python=False``): install the project first
(``pip install -e '.[dev]'``). Exit statuses are kept: 0 ok, 1 a failure, 2 bad input.
"""
from __future__ import annotations

import os
import sys

import nox
import nox.command

from localai_ci.sessions import inspect, merge  # noqa: F401  (registers the shipped sessions)

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = False
nox.options.default_venv_backend = "none"  # every session runs in the current environment


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run the test suite; with CI_TEST_ENGINES=HOST1,HOST2 the engine tests run on every engine (see .ci/run)."""
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
    """Type-check the package (ci/) with mypy (configured in pyproject.toml)."""
    session.run(sys.executable, "-m", "mypy", *session.posargs)
