"""nox sessions of this repository: the ones localai-ci ships (``merge``, ``inspect``: CI's fan-in
jobs, from ``ci/sessions.py``) and this repository's own (``tests``, ``typecheck``, ``lint``,
``wheels``). ``nox --list`` shows them; ``nox -s <session> -- --help`` explains every option.

Every session runs in the current environment (``python=False``): install the project first
(``pip install -e '.[dev]'``). Exit statuses are kept: 0 ok, 1 a failure, 2 bad input.
"""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import tomllib

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


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Lint with ruff (configured in pyproject.toml): style, import order and placement, bugbear."""
    session.run(sys.executable, "-m", "ruff", "check", *(session.posargs or LINT_PATHS))


#: what ``nox -s lint`` checks by default
LINT_PATHS = ("ci", "tests", "bench", "noxfile.py", "tasks.py")


def _manylinux(arch: str) -> tuple[str, ...]:
    """The platform tags a glibc 2.28 Linux on ``arch`` installs (pip 23 does not expand manylinux_2_x itself)."""
    return (*(f"manylinux_2_{minor}_{arch}" for minor in range(28, 16, -1)), f"manylinux2014_{arch}")


#: where every runtime dependency must install from a wheel: Linux (glibc 2.28: Debian 10, RHEL 8 and
#: newer; GitHub's runners), macOS on Apple silicon (14: GitHub's oldest arm64 runner image)
WHEEL_PLATFORMS = {"linux x86_64": _manylinux("x86_64"), "linux aarch64": _manylinux("aarch64"),
                   "macOS arm64": ("macosx_14_0_arm64",)}
WHEEL_PYTHONS = ("3.11", "3.12", "3.13", "3.14")  # 3.10 reached its end of life in October 2026


def _pip_reason(done: subprocess.CompletedProcess[str]) -> str:
    """What pip said was missing: the requirement without a wheel or, for a dependency's, who needs it."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("ERROR: No matching distribution found for "):
            return "no wheel of " + line.removeprefix("ERROR: No matching distribution found for ")
    needs = [line for line in lines if " depends on " in line]
    if needs:
        return f"{needs[0]}, which has no wheel here"
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    return " / ".join(errors[-2:]) or f"pip download failed (exit status {done.returncode})"


@nox.session(python=False, default=False)
def wheels(session: nox.Session) -> None:
    """Check that every runtime dependency (pyproject.toml's [project] dependencies and theirs) installs from wheels on linux x86_64/aarch64 and macOS arm64, Python 3.11-3.14 (pip download --only-binary=:all:; needs PyPI)."""
    with open("pyproject.toml", "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    pairs = [(name, version) for name in WHEEL_PLATFORMS for version in WHEEL_PYTHONS]
    session.log(f"pip download --only-binary=:all: {' '.join([*dependencies, *session.posargs])}")
    with tempfile.TemporaryDirectory(prefix="localai-ci-wheels-") as dest, \
            concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:  # network-bound: four at a time
        def download(pair: tuple[str, str]) -> subprocess.CompletedProcess[str]:
            name, version = pair
            return subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                                   "--only-binary=:all:", "--python-version", version,
                                   "--dest", os.path.join(dest, f"{name.replace(' ', '-')}-{version}"),
                                   *(f"--platform={p}" for p in WHEEL_PLATFORMS[name]), *dependencies,
                                   *session.posargs],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
        failed = []
        for (name, version), done in zip(pairs, pool.map(download, pairs)):
            if done.returncode == 0:
                session.log(f"{name}, Python {version}: ok")
                continue
            failed.append(f"{name}, Python {version}")
            session.warn(f"{name}, Python {version}: {_pip_reason(done)}")
    if failed:
        session.error(f"no wheel for a runtime dependency on: {'; '.join(failed)}")
