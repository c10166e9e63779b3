"""The test suite's own rules: a missing prerequisite skips locally and fails in CI (one rule, in
conftest), the engine-backed tests cover both image stores in CI, and nothing beside the repository
is read -- by a test, a bench or the tool."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import READS_BESIDE, REPO, engines_under_test, unavailable
from tests.support.localai_ref import ENV_TREE

PROBE = """
def test_probe({fixture}):
    pass
"""


def run_probe(tmp_path: Path, fixture: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A one-test session that needs ``fixture``, with conftest's fixtures loaded as a plugin."""
    (tmp_path / "test_probe.py").write_text(PROBE.format(fixture=fixture))
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "CI_TEST_REGISTRIES", "PYTEST_ADDOPTS")}
    base.update({"PYTHONPATH": str(REPO), **env})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-rsf", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=base, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("fixture, env, says", [
    ("busybox", {"CI_BUSYBOX_DIR": "{tmp}/empty"}, "apt-get download busybox-static:amd64 busybox-static:arm64"),
    ("engine", {"DOCKER_HOST": "unix://{tmp}/no-engine.sock"}, "start dockerd"),
    ("cosign", {"PATH": "{tmp}/empty"}, "apt-get install -t trixie cosign"),
], ids=["busybox", "engine", "cosign"])
def test_a_missing_prerequisite_skips_locally_and_fails_in_ci(tmp_path: Path, fixture: str, env: dict[str, str],
                                                             says: str) -> None:
    (tmp_path / "empty").mkdir()
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    local = run_probe(tmp_path, fixture, env)
    assert local.returncode == 0 and "1 skipped" in local.stdout and says in local.stdout, local.stdout + local.stderr
    ci = run_probe(tmp_path, fixture, {**env, "CI": "true"})
    # a fixture that fails is reported as an error of the test's setup: exit 1 either way
    assert ci.returncode == 1 and re.search(r"\b1 (failed|error)\b", ci.stdout) and says in ci.stdout, ci.stdout + ci.stderr
    assert "CI=true: this is a failure, not a skip" in ci.stdout


def test_a_local_skip_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install x"):
        unavailable("x is missing: apt-get install x")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not a skip"):
        unavailable("x is missing: apt-get install x")


def test_the_engine_backed_tests_run_on_both_image_stores() -> None:
    """``.ci/run`` hands ``nox -s tests`` a classic-store and a containerd-store engine; with one engine
    (a developer machine) the other store's runs are missing: a skip locally, a failure in CI."""
    from localai_ci.docker.engine import connect
    from localai_ci.errors import CiError
    from localai_ci.oci.localregistry import unix_socket_present

    stores = set()
    for host in engines_under_test():
        if not unix_socket_present(host):
            unavailable(f"no Docker engine socket at {host}; start dockerd (see .ci/run) or set DOCKER_HOST")
        try:
            eng = connect({**os.environ, "DOCKER_HOST": host}, timeout=20)
        except CiError as exc:
            unavailable(f"no Docker engine at {host} ({exc}); start dockerd (see .ci/run)")
            return
        try:
            stores.add("containerd" if eng.facts().containerd_store else "classic")
        finally:
            eng.client.close()
    if stores != {"classic", "containerd"}:
        unavailable(f"the engine-backed tests run on the {' and '.join(sorted(stores))} image store only: set "
                    "CI_TEST_ENGINES=HOST1,HOST2 to a classic-store and a containerd-store engine "
                    "(.ci/run starts both; dockerd's daemon.json feature containerd-snapshotter)")


def test_a_read_beside_the_repository_fails_the_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sibling = REPO.parent / f"{REPO.name}-not-the-repository" / "backend-matrix.yml"
    before = len(READS_BESIDE)
    with pytest.raises(RuntimeError, match="read outside the repository"):
        open(sibling)  # noqa: SIM115  (the hook refuses before anything is opened)
    with pytest.raises(RuntimeError, match="read outside the repository"):
        os.listdir(sibling.parent)
    assert READS_BESIDE[before:] == [str(sibling), str(sibling.parent)]
    del READS_BESIDE[before:]  # the guard itself is under test here; nothing else read beside the repository
    # inside the repository, temporary directories and a tree the user named: allowed
    assert (REPO / "README.md").read_text()
    (tmp_path / "x").write_text("x")
    monkeypatch.setenv(ENV_TREE, str(sibling.parent))
    with pytest.raises(FileNotFoundError):
        open(sibling)  # noqa: SIM115
    assert len(READS_BESIDE) == before


# Paths that walk above the repository root from a file inside it: a sibling directory of the checkout,
# REPO.parent / "...", "../" in a shell script's cd, and Path(__file__)'s parents[N] with N at least the file's depth
# (parents[2] is the root from tests/support/paths.py, beside it from tests/conftest.py). A user names
# outside paths; code never assumes them.
_OUTSIDE = re.compile(r"""\.\./shared|(?:REPO|ROOT)\.parent\s*/|["']shared["']\s*/""")
_PARENTS = re.compile(r"parents\[(\d+)\]")


# .ci/run is the one user of this repository that names a tree beside it (the reference LocalAI
# tree of the machine CI runs on, when it exists), as a user would with CI_TEST_LOCALAI_TREE.
_NAMES_A_TREE = {".ci/run", "tests/test_prerequisites.py"}


def test_no_file_in_the_repository_reaches_beside_it() -> None:
    offenders = []
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO).as_posix()
        if (not path.is_file() or path.suffix not in (".py", ".sh", ".mjs", ".yml", ".yaml", ".toml", ".cfg")
                or rel.split("/", 1)[0] in (".git", ".venv", ".nox", "build") or rel in _NAMES_A_TREE):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if _OUTSIDE.search(line) or any(int(n) >= rel.count("/") + 1 for n in _PARENTS.findall(line)):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)
