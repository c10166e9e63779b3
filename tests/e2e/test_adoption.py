"""Adopting localai-ci in a LocalAI-shaped repository, through the installed wheel (issue 21).

The repository is made by the tests (``tests/support/localai_tree.py``): its matrix at ``.github/backend-matrix.yml``,
Dockerfiles under ``backend/``, and a ``ci/`` package of its own (LocalAI-like repositories have
one; it used to shadow the tool, whose import name was ``ci``). The tool is this project built as a
wheel and installed into a directory of its own (``pip install --no-deps --target``: its code, its
``localai-ci`` console script), so the test drives what ``pip install localai-ci`` gives a user,
not this checkout. The README's adoption steps are the files written here: a one-line
``tasks.py``, a two-line ``noxfile.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family
from localai_ci.settings import DEFAULT_BUILD_ARGS
from tests.support.localai_tree import MATRIX_PATH, files, matrix_text
from tests.support.paths import REPO

TASKS_PY = "from localai_ci.tasks import ns  # noqa: F401\n"
NOXFILE_PY = "from localai_ci.sessions import inspect, merge  # noqa: F401\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's wheel, built and installed into a directory of its own; returns that directory."""
    wheels = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = wheels.glob("localai_ci-*.whl")
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "bin" / "localai-ci").is_file() and not (target / "ci").exists()
    return target


@pytest.fixture(scope="module")
def adopter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LocalAI-shaped repository with its own ci/ package and the README's adoption files."""
    root = tmp_path_factory.mktemp("adopter")
    for rel, text in {**files(), MATRIX_PATH: matrix_text()}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "ci").mkdir()
    (root / "ci" / "__init__.py").write_text('"""The repository\'s own CI helpers (not localai-ci)."""\n')
    (root / "ci" / "errors.py").write_text("raise ImportError('the adopter ci package was imported')\n")
    (root / "tasks.py").write_text(TASKS_PY)
    (root / "noxfile.py").write_text(NOXFILE_PY)
    return root


def run(installed: Path, cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A command of the installed tool, in the adopting repository: the repository first on sys.path
    (invoke puts the tasks.py directory there), then the installed wheel, then the test's own
    environment for the dependencies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_BACKEND", "CI_SERVER"))}
    env.update(PYTHONPATH=f"{cwd}{os.pathsep}{installed}", PATH=f"{installed / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               DOCKER_HOST=f"unix://{cwd}/no-engine.sock", HOME=str(cwd), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_the_installed_tool_comes_from_the_wheel_not_this_checkout(installed: Path, adopter: Path) -> None:
    done = run(installed, adopter, sys.executable, "-c", "import localai_ci, ci; print(localai_ci.__file__, ci.__file__)")
    assert done.returncode == 0, done.stderr
    tool, theirs = done.stdout.split()
    assert tool.startswith(str(installed)) and theirs.startswith(str(adopter))


def test_console_script_lists_its_verbs(installed: Path, adopter: Path) -> None:
    done = run(installed, adopter, str(installed / "bin" / "localai-ci"), "--help")
    assert done.returncode == 0, done.stderr
    for verb in ("build-backend", "build-image", "pipeline", "merge", "inspect", "matrix.github", "matrix.lint"):
        assert f"\n  {verb} " in done.stdout, done.stdout


def test_invoke_and_nox_reach_the_packaged_tasks_despite_the_repositorys_own_ci_package(
        installed: Path, adopter: Path) -> None:
    tasks = run(installed, adopter, sys.executable, "-m", "invoke", "--list")
    assert tasks.returncode == 0, tasks.stderr
    assert "build-backend" in tasks.stdout and "matrix.github" in tasks.stdout and "pipeline" in tasks.stdout
    sessions = run(installed, adopter, sys.executable, "-m", "nox", "--list")
    assert sessions.returncode == 0, sessions.stderr
    assert "- merge ->" in sessions.stdout and "- inspect ->" in sessions.stdout


def test_the_pipeline_plan_finds_localais_matrix_and_gives_every_leg_localais_build_args(
        installed: Path, adopter: Path) -> None:
    done = run(installed, adopter, str(installed / "bin" / "localai-ci"), "pipeline", "--dry-run", "--format", "json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    legs = plan["legs"]
    assert len(legs) == len(load_matrix(adopter / MATRIX_PATH)) and all(l["matrix"].endswith(MATRIX_PATH) for l in legs)
    own = {(e.tag_suffix, e.ptag): e.amdgpu_targets for e in load_matrix(adopter / MATRIX_PATH)}
    assert any(own.values()) and not all(own.values())  # both kinds of leg are checked
    for leg in legs:
        # the entry's own amdgpu-targets, else LocalAI's workflow default, as backend.yml passes it
        want = own[(leg["tag-suffix"], leg["platform-tag"])] or DEFAULT_BUILD_ARGS[Family.BACKENDS][0][1]
        assert leg["build-args"]["AMDGPU_TARGETS"] == want, leg["tag-suffix"]
        assert leg["build-args"]["BUILDER_TARGET"] in ("builder-fromsource", "builder-prebuilt")
        assert set(leg) >= {"tag-suffix", "platform-tag", "build-args", "dockerfile", "context", "platform", "runs-on",
                            "images", "tags", "cache-ref"}
    assert "no backends/images.yml" in done.stderr  # a repository without a server matrix: noted, not an error


def test_matrix_github_runs_in_the_adopting_repository(installed: Path, adopter: Path) -> None:
    out = adopter / "outputs"
    done = run(installed, adopter, sys.executable, "-m", "invoke", "matrix.github", "--force-all",
               "--github-output", str(out))
    assert done.returncode == 0, done.stderr
    assert "multi-arch-matrix=" in out.read_text()


def test_a_build_without_push_says_what_push_would_send(installed: Path, adopter: Path) -> None:
    settings = adopter / ".github" / "localai-ci.yml"
    settings.write_text("backends:\n  images: [registry.example/org/backends]\n  build-args:\n"
                        "    AMDGPU_TARGETS: gfx1100\ncache-image: registry.example/org/ci-cache\n")
    try:
        done = run(installed, adopter, str(installed / "bin" / "localai-ci"), "build-backend", "--tag-suffix=-cpu-whisper",
                   "--platform-tag", "amd64", "--dry-run")
    finally:
        settings.unlink()
    assert done.returncode == 0, done.stderr
    assert "push:       no: nothing leaves this machine" in done.stdout
    assert "images:     registry.example/org/backends" in done.stdout and "AMDGPU_TARGETS=gfx1100" in done.stdout
    assert "cache ref:  registry.example/org/ci-cache:cache-cpu-whisper-amd64 (" in done.stdout
