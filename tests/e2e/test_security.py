"""Security properties: no shell, no path escapes, safe YAML, TLS by default, no leaked secret.

The secret test runs every task that touches credentials (build-backend, which builds through
BuildKit on a ``ci-offline/`` base, merge, inspect) as a real subprocess, verbosely (``--debug``), against a registry that demands htpasswd auth over
TLS on this machine's non-loopback address, with a known password given on stdin and in a
Docker ``config.json``; the password and its base64 form must appear in no output, summary,
step-output file or error, on success and on failure.
"""
from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localai_ci.github.artifacts import read_digests_dir, write_digest_file
from localai_ci.errors import ArtifactError, MatrixError, RegistryError
from localai_ci.settings import family_config
from localai_ci.matrix.model import parse_matrix
from localai_ci.matrix.naming import Family, LegKey, artifact_name, parse_artifact_name
from localai_ci.oci.reference import ImageName, uses_plain_http
from localai_ci.oci.client import RegistryClient
from localai_ci.oci.retry import RetryPolicy
from tests.support.authregistry import KNOWN_PASSWORD, auth_registries
from tests.support.paths import REPO as ROOT

SOURCES = sorted([*(ROOT / "ci").rglob("*.py"), ROOT / "tasks.py", ROOT / "noxfile.py"])  # every package
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
# calls that start a process, by their last name (``subprocess.run``, ``run`` imported from subprocess,
# ``asyncio.create_subprocess_exec``): only these can take a ``shell=`` that reaches a shell. Other
# functions may have a ``shell`` parameter of their own (``localai_ci.docker.offline_bases.image_config(shell=...)`` says
# whether a synthesized base image has busybox).
SPAWNING_CALLS = SUBPROCESS_CALLS | {"getoutput", "getstatusoutput", "create_subprocess_exec",
                                     "create_subprocess_shell"}
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, deadline=10, request_timeout=5)
SHA = "89abcdef0123456789abcdef0123456789abcdef"


# ---- static: nothing reaches a shell -----------------------------------------------------------
def _calls(path: Path) -> Iterator[tuple[ast.Call, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, f"{owner}.{name}" if owner else name


def test_no_shell_anywhere_and_subprocesses_take_lists() -> None:
    problems = []
    for path in SOURCES:
        for call, name in _calls(path):
            where = f"{path.relative_to(ROOT)}:{call.lineno} {name}"
            if name in ("os.system", "os.popen", "os.execl", "os.execlp", "os.spawnl", "commands.getoutput"):
                problems.append(f"{where}: runs a shell")
            for kw in call.keywords if name.split(".")[-1] in SPAWNING_CALLS else ():
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{where}: shell={ast.unparse(kw.value)}")
            if name.split(".")[-1] in SUBPROCESS_CALLS and name.startswith(("subprocess.", "asyncio.")) and call.args:
                first = call.args[0]
                if isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)) or (
                        isinstance(first, ast.Call) and ast.unparse(first.func).endswith(".format")):
                    problems.append(f"{where}: command is a string ({ast.unparse(first)[:60]}), not a list")
            if name in ("create_subprocess_shell", "asyncio.create_subprocess_shell"):
                problems.append(f"{where}: runs a shell")
    assert not problems, "\n".join(problems)


def test_yaml_is_only_loaded_safely() -> None:
    problems = []
    for path in SOURCES:
        for call, name in _calls(path):
            if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.full_load_all",
                        "yaml.unsafe_load_all"):
                loader = next((ast.unparse(k.value) for k in call.keywords if k.arg == "Loader"),
                              ast.unparse(call.args[1]) if len(call.args) > 1 else "")
                if "Safe" not in loader:
                    problems.append(f"{path.relative_to(ROOT)}:{call.lineno}: {name} with Loader={loader or 'default'}")
    assert not problems, "\n".join(problems)


def test_yaml_python_tags_and_aliases_never_construct_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for text in (f"include:\n  - !!python/object/apply:os.system ['touch {marker}']\n",
                 f"include: !!python/object/apply:os.system ['touch {marker}']\n",
                 "a: &a [x, x]\nb: [*a, *a]\ninclude: []\n"):
        with pytest.raises(MatrixError):
            parse_matrix(text, "evil.yml")
    assert not marker.exists()
    t0 = time.monotonic()
    with pytest.raises(MatrixError, match="byte limit"):
        parse_matrix("include:\n" + "#" * (5 << 20), "big.yml")
    assert time.monotonic() - t0 < 5


# ---- names and paths ---------------------------------------------------------------------------
EVIL = ["../x", "-a/../../b", "; rm -rf /", "-$(id)", "-a\nb", "-" + "a" * 200, "/abs", "-a/b", "-a\x00b", "-é"]


@pytest.mark.parametrize("evil", EVIL)
def test_artifact_names_only_from_validated_fragments(evil: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        artifact_name(Family.BACKENDS, evil, "amd64")
    with pytest.raises(ValueError):
        artifact_name(Family.BACKENDS, "-cpu-x", evil.lstrip("-") or "x/")
    with pytest.raises(ValueError):
        parse_artifact_name(f"digests{evil}--amd64")
    digests = tmp_path / "d" / "digests"
    with pytest.raises(Exception):  # ValueError or ArtifactError: never a write
        write_digest_file(digests, LegKey(Family.BACKENDS, evil, "amd64"), "sha256:" + "a" * 64)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_digest_files_never_escape_the_digests_dir(tmp_path: Path) -> None:
    digests, outside = tmp_path / "digests", tmp_path / "outside"
    outside.mkdir()
    path = write_digest_file(digests, LegKey(Family.BACKENDS, "-cpu-x", "amd64"), "sha256:" + "a" * 64)
    assert path.resolve().parent.parent == digests.resolve()
    for a in read_digests_dir(digests):
        assert a.path.resolve().is_relative_to(digests.resolve())
    # a leg directory replaced by a symlink to elsewhere: neither written through nor read
    (digests / "digests-cpu-y--amd64").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match="symlink"):
        write_digest_file(digests, LegKey(Family.BACKENDS, "-cpu-y", "amd64"), "sha256:" + "b" * 64)
    with pytest.raises(ArtifactError, match="symlink"):
        read_digests_dir(digests)
    assert list(outside.iterdir()) == []
    with pytest.raises(ValueError):
        write_digest_file(digests, LegKey(Family.BACKENDS, "-cpu-x", "amd64"), "sha256:../../" + "a" * 58)


# ---- TLS -----------------------------------------------------------------------------------------
def test_plain_http_only_for_loopback_or_named_insecure() -> None:
    assert uses_plain_http("127.0.0.1:5000") and uses_plain_http("localhost:5000") and uses_plain_http("[::1]:5000")
    for reg in ("quay.io", "docker.io", "192.0.2.2:5000", "127.0.0.1.nip.io:5000", "localhost.evil.com"):
        assert not uses_plain_http(reg), reg
    assert uses_plain_http("reg.internal:5000", {"reg.internal:5000"})
    cfg = family_config(Family.BACKENDS, images="quay.io/a/b,reg.internal:5000/c",
                        env={"CI_INSECURE_REGISTRIES": "reg.internal:5000"})
    assert not cfg.plain_http("quay.io") and cfg.plain_http("reg.internal:5000")
    assert "https://" in repr(RegistryClient(ImageName("quay.io", "a/b"), plain_http=False))


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS (self-signed, SAN = 127.0.0.1) + htpasswd registry on loopback: (host, cert).

    Tests name it in CI_TLS_REGISTRIES, so the tool treats it like a remote registry (verified
    HTTPS, credentials sent) while all traffic stays on this machine's loopback."""
    with auth_registries(tmp_path) as make:
        yield make(True), tmp_path / "auth-0" / "cert.pem"


@pytest.mark.registry
def test_tls_is_verified_for_registries_named_tls(auth_registry: tuple[str, Path], unique: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    host, _ = auth_registry
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert family_config(Family.BACKENDS, images=f"{host}/{unique}/x").plain_http(host)  # loopback default
    assert not family_config(Family.BACKENDS, images=f"{host}/{unique}/x",
                             env={"CI_TLS_REGISTRIES": host}).plain_http(host)
    with RegistryClient(ImageName(host, f"{unique}/x"), plain_http=False, retry=FAST) as c:
        with pytest.raises(RegistryError, match="TLS verification failed"):
            c.list_tags()


# ---- secrets: every task, verbosely, with a known password ------------------------------------------
def _run(argv: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, input=stdin, timeout=300, cwd=env["HOME"])


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.slow
@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_known_password_leaks_nowhere(auth_registry: tuple[str, Path], engine: Any, registries: Any, unique: str,
                                      tmp_path: Path) -> None:
    host, cert = auth_registry
    image = f"{host}/{unique}/backends"
    base = f"ci-offline/{unique}:24.04"
    matrix = tmp_path / "matrix.yml"
    from tests.support.oci_images import matrix_text
    matrix.write_text(matrix_text([("-cpu-sec", "amd64")]).replace("ci-offline/ubuntu:24.04", base))
    home = tmp_path / "home"
    home.mkdir()
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    auth_b64 = base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode()
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update({"HOME": str(home), "DOCKER_CONFIG": str(tmp_path / "empty-config"), "REQUESTS_CA_BUNDLE": str(cert),
                "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs),
                "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/master", "GITHUB_SHA": SHA,
                "GITHUB_RUN_ID": "99", "CI_DEBUG": "1", "CI_BLOB_CACHE": str(tmp_path / "cache"),
                "CI_TLS_REGISTRIES": host})
    invoke = [sys.executable, "-m", "invoke", "-r", str(ROOT)]
    build = [*invoke, "build-backend", "--tag-suffix=-cpu-sec", "--platform-tag", "amd64", "--matrix", str(matrix),
             "--root", str(ROOT), "--images", image, "--digests-dir", str(tmp_path / "digests"), "--debug", "--push"]
    merge = [sys.executable, "-m", "localai_ci", "merge", "--debug", "--tag-suffix=-cpu-sec", "--matrix", str(matrix),
             "--images", image, "--digests-dir", str(tmp_path / "digests")]
    inspect = [sys.executable, "-m", "localai_ci", "inspect", "--debug", f"{image}:master-cpu-sec",
               "--expect-platforms", "linux/amd64"]
    runs: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    try:
        # 1. password on stdin (plan, build, publish with anchor, outputs, summary)
        runs.append(("build --password-stdin", _run([*build, "--username", "tester", "--password-stdin", "--anchor"],
                                                    env, KNOWN_PASSWORD + "\n")))
        assert runs[-1][1].returncode == 0, runs[-1][1].stderr[-3000:]
        # built by BuildKit, the offline base served to it as a named context
        assert "buildx builder" in runs[-1][1].stdout and f"[context {base}]" in runs[-1][1].stderr, \
            runs[-1][1].stdout[-2000:] + runs[-1][1].stderr[-2000:]
        # 2. password in a Docker config.json (merge, inspect)
        (docker_config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth_b64}}}))
        cfg_env = {**env, "DOCKER_CONFIG": str(docker_config)}
        runs.append(("merge (config.json)", _run([*merge, "--anchor", "--run-id", "99"], cfg_env)))
        assert runs[-1][1].returncode == 0, runs[-1][1].stderr[-3000:]
        runs.append(("inspect (config.json)", _run(inspect, cfg_env)))
        assert runs[-1][1].returncode == 0, runs[-1][1].stdout[-3000:] + runs[-1][1].stderr[-3000:]
        # 3. failure paths: a wrong password (in the config), none at all, plain HTTP to an auth registry
        wrong = KNOWN_PASSWORD[::-1]
        (docker_config / "config.json").write_text(json.dumps(
            {"auths": {host: {"auth": base64.b64encode(f"tester:{wrong}".encode()).decode()}}}))
        runs.append(("merge (wrong password)", _run(merge, cfg_env)))
        assert runs[-1][1].returncode == 1 and "401" in runs[-1][1].stderr, runs[-1][1].stderr[-3000:]
        assert wrong not in runs[-1][1].stdout + runs[-1][1].stderr
        runs.append(("build (no password)", _run(build, env)))
        assert runs[-1][1].returncode == 1, runs[-1][1].stderr[-3000:]
        runs.append(("inspect (plain HTTP named insecure)", _run(inspect, {**cfg_env, "CI_INSECURE_REGISTRIES": host})))
        assert runs[-1][1].returncode != 0
    finally:
        texts = [f"== {name} (exit {done.returncode})\n{done.stdout}\n{done.stderr}" for name, done in runs]
        for f in (summary, outputs):
            texts.append(f.read_text() if f.exists() else "")
        texts += [p.name for p in (tmp_path / "digests").rglob("*")] if (tmp_path / "digests").exists() else []
        blob = "\n".join(texts)
        for secret in (KNOWN_PASSWORD, auth_b64, base64.b64encode(KNOWN_PASSWORD.encode()).decode()):
            assert secret not in blob, f"secret leaked:\n{blob[-4000:]}"
        try:  # keep the engine tidy (the base is served to BuildKit from a registry, never loaded)
            engine.images.remove("localai-ci/backend-cpu-sec:amd64", force=True)
        except Exception:
            pass
    assert "Traceback" not in "".join(d.stderr for _, d in runs[:3])
    assert summary.read_text() and "digest=sha256:" in outputs.read_text()


@pytest.mark.registry
def test_merge_says_when_it_uses_plain_http(registries: Any, unique: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from localai_ci.cli import main
    from tests.support.oci_images import push_image, write_matrix

    images = [f"{r.host}/{unique}/backends" for r in registries]
    d = push_image(images, "linux/amd64", unique)
    write_digest_file(tmp_path / "digests", LegKey(Family.BACKENDS, "-cpu-h", "amd64"), d.digest)
    write_matrix(tmp_path / "m.yml", [("-cpu-h", "amd64")])
    code = main(["merge", "--tag-suffix=-cpu-h", "--digests-dir", str(tmp_path / "digests"), "--matrix",
                 str(tmp_path / "m.yml"), "--images", ",".join(images), "--ref", "refs/heads/master", "--sha", SHA,
                 "--event", "push", "--dry-run"], env={})
    out, err = capsys.readouterr()
    assert code == 0, err
    for r in registries:
        assert f"plain HTTP for {r.host}" in out + err, out + err
