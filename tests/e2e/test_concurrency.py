"""Concurrent publishes of different legs to the same repositories, then two concurrent
``--all`` merges of every suffix: nothing corrupts anything else.

Six legs (three suffixes x two arches), built through the builder seam (BuildKit) on one offline
base image, share one base layer per arch and go to the same two repositories at the same time
(like six runners), each with its own blob cache; then two
``merge --all`` runs (eight suffixes at a time each) race on the same suffixes. Every list must
hold exactly its suffix's children, with the right platforms, under one digest in both registries.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from localai_ci.oci.blobcache import BlobCache
from localai_ci.oci.client import RegistryClients
from localai_ci.docker.engine import Engine
from localai_ci.settings import family_config
from localai_ci.matrix.model import load_matrix
from localai_ci.merge.model import MergeOptions, Outcome
from localai_ci.merge.run import FamilySetup, merge_all
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.publish.leg import publish_leg
from localai_ci.publish.upload import PushTarget
from localai_ci.oci.reference import ImageName
from localai_ci.matrix.tags import TagSource
from tests.support.oci_images import client, write_matrix

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.slow]

SUFFIXES = ("-cpu-c1", "-cpu-c2", "-cpu-c3")
ARCHES = ("amd64", "arm64")
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_parallel_publishes_and_concurrent_merge_all(engine: Any, registries: Any, build_image: Any, unique: str,
                                                     tmp_path: Path) -> None:
    eng = Engine(engine)
    repo = f"{unique}/backends"
    images = [ImageName(r.host, repo) for r in registries]
    built: dict[tuple[str, str], str] = {}
    local_tags = []
    base = f"ci-offline/{unique}-base:24.04"
    base_layers: dict[str, set[str]] = {arch: set() for arch in ARCHES}
    try:
        for arch in ARCHES:
            for suffix in SUFFIXES:
                tag = f"localai-ci-test/{unique}{suffix}:{arch}"
                local_tags.append(tag)
                image = build_image(f"FROM {base}\nCOPY leg.txt /leg.txt\n", platform=f"linux/{arch}",
                                    files={"leg.txt": f"{unique}{suffix}-{arch}\n"}, tag=tag, contexts_for=(base,))
                assert image.info.architecture == arch and len(image.info.diff_ids) == 2
                base_layers[arch].add(image.info.diff_ids[0])
                built[(suffix, arch)] = image.info.id
        assert all(len(layers) == 1 for layers in base_layers.values()), base_layers  # one base layer per arch
        digests = tmp_path / "digests"

        def publish(key: tuple[str, str]) -> str:
            suffix, arch = key
            with BlobCache(tmp_path / f"cache{suffix}-{arch}") as cache:
                res = publish_leg(eng, built[key], leg=LegKey(Family.BACKENDS, suffix, arch),
                                  targets=[PushTarget(i, plain_http=True) for i in images], cache=cache,
                                  client_factory=RegistryClients(), digests_dir=digests)
            return res.digest

        with ThreadPoolExecutor(max_workers=len(built)) as pool:
            published = dict(zip(built, pool.map(publish, built)))
    finally:
        for t in local_tags:
            try:
                engine.images.remove(t, force=True)
            except Exception:
                pass
    assert len(set(published.values())) == len(published)
    assert sorted(p.name for p in digests.iterdir()) == sorted(f"digests{s}--{a}" for s, a in built)

    matrix = write_matrix(tmp_path / "matrix.yml", list(built))
    setups = {Family.BACKENDS: FamilySetup(family_config(Family.BACKENDS, images=",".join(map(str, images))),
                                           load_matrix(matrix, Family.BACKENDS))}
    options = MergeOptions(tag_source=TagSource(event="push", ref="refs/heads/main", sha=SHA), jobs=8)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: merge_all(digests, setups, options), range(2)))
    for report in reports:
        assert report.exit_code == 0, [r.reason for r in report.results]
        assert {r.suffix for r in report.results} == set(SUFFIXES)
        assert all(r.outcome is Outcome.MERGED for r in report.results)
    for suffix in SUFFIXES:
        seen = set()
        for img in images:
            with client(img) as c:
                for tag in (f"main{suffix}", f"sha-0123456{suffix}"):
                    got = c.get_manifest(tag)
                    assert got is not None, f"{img}:{tag}"
                    seen.add(got[2])
                    lst = json.loads(got[0])
                    assert {(m["digest"], m["platform"]["architecture"]) for m in lst["manifests"]} == {
                        (published[(suffix, a)], a) for a in ARCHES}
        assert len(seen) == 1, f"{suffix}: list digests differ: {seen}"


# ---- two invoke pipeline runs in one directory, and one killed half-way ---------------------------
PIPE_DOCKERFILE = """ARG BASE_IMAGE=ci-offline/ubuntu:24.04
FROM ${BASE_IMAGE} AS builder
ARG BACKEND
COPY src/ /src/
RUN sleep "$(cat /src/$BACKEND.delay)" && echo "$BACKEND UNIQUE" > /out
FROM scratch
COPY --from=builder /out /out
"""


def _pipeline_repo(tmp_path: Path, unique: str) -> Path:
    """A repository with two one-leg backends: -cpu-slow (a RUN step of 25 s) and -cpu-fast."""
    root = tmp_path / "repo"
    (root / "backends" / "src").mkdir(parents=True)
    (root / "backends" / "Dockerfile").write_text(PIPE_DOCKERFILE.replace("UNIQUE", unique))
    (root / "backends" / "src" / "slow.delay").write_text("25\n")
    (root / "backends" / "src" / "fast.delay").write_text("0\n")
    from tests.support.oci_images import matrix_text

    text = matrix_text([("-cpu-slow", "amd64"), ("-cpu-fast", "amd64")])
    text = text.replace('dockerfile: "./backends/Dockerfile.backend"', 'dockerfile: "./backends/Dockerfile"')
    text = text.replace('backend: "hello"', 'backend: "BACKEND"')
    parts = text.split("  - ")
    text = parts[0] + "  - " + parts[1].replace("BACKEND", "slow") + "  - " + parts[2].replace("BACKEND", "fast")
    (root / "backends" / "matrix.yml").write_text(text.replace("ci-offline/ubuntu:24.04", f"ci-offline/{unique}:24.04"))
    return root


def _pipeline_env(tmp_path: Path, busybox: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_BACKEND", "CI_SERVER"))}
    env.update(busybox, CI_BLOB_CACHE=str(tmp_path / "blobs"), GITHUB_REF="refs/heads/master", GITHUB_SHA=SHA,
               HOME=str(tmp_path))
    return env


def _start_pipeline(root: Path, suffix: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "localai_ci", "pipeline", "--root", str(root), "--only", suffix],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _wait_for(proc: subprocess.Popen[str], text: str, seen: list[str], timeout: float = 300) -> None:
    """Read the run's stderr until a line holds ``text`` (the lines go to ``seen``)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"the run ended before {text!r}:\n" + "".join(seen))
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {timeout}s:\n" + "".join(seen))


def _registry_pids(root: Path) -> list[int]:
    return [json.loads((root / ".localai-ci" / "registries" / n / "localregistry.json").read_text())["pid"]
            for n in ("quay", "hub")]


def _stop_registries(root: Path) -> None:
    """What a killed run leaves: its registries, stopped here so a failing test leaks no process."""
    from localai_ci.oci.localregistry import stop_registry_at

    for name in ("quay", "hub"):
        try:
            stop_registry_at(root / ".localai-ci" / "registries" / name)
        except Exception:
            pass


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.usefixtures("engine")
def test_a_second_pipeline_in_the_same_directory_is_refused_and_the_first_completes(
        tmp_path: Path, unique: str, busybox: dict[str, str]) -> None:
    root, env = _pipeline_repo(tmp_path, unique), _pipeline_env(tmp_path, busybox)
    first = _start_pipeline(root, "-cpu-slow", env)
    seen: list[str] = []
    try:
        _wait_for(first, "building", seen)
        second = subprocess.run([sys.executable, "-m", "localai_ci", "pipeline", "--root", str(root), "--only",
                                 "-cpu-fast"], cwd=root, env=env, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"another invoke pipeline (pid {first.pid}) is running with the state directory" in second.stderr
        assert "reusing" not in second.stderr
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=60)
            _stop_registries(root)
    assert first.returncode == 0, "".join(seen) + err + out
    assert "-cpu-slow" in out and "merged" in out, out


@pytest.mark.usefixtures("engine")
def test_a_killed_pipelines_registries_are_stopped_by_the_next_run(tmp_path: Path, unique: str,
                                                                   busybox: dict[str, str]) -> None:
    root, env = _pipeline_repo(tmp_path, unique), _pipeline_env(tmp_path, busybox)
    first = _start_pipeline(root, "-cpu-slow", env)
    seen: list[str] = []
    try:
        _wait_for(first, "building", seen)
        orphans = _registry_pids(root)
    finally:
        first.kill()  # a crash: nothing of it stops its registries
        first.communicate(timeout=60)
    assert all(_running(p) for p in orphans)
    try:
        second = subprocess.run([sys.executable, "-m", "localai_ci", "pipeline", "--root", str(root), "--only",
                                 "-cpu-fast"], cwd=root, env=env, capture_output=True, text=True, timeout=600,
                                stdin=subprocess.DEVNULL)
    finally:
        for pid in orphans:  # whatever the second run did: no process outlives the test
            if _running(pid):
                os.kill(pid, 9)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stderr.count("ended without stopping it") == 2 and "reusing" not in second.stderr, second.stderr
    assert not any(_running(p) for p in orphans)
    assert not any(_running(p) for p in _registry_pids(root))  # and the second run stopped its own
