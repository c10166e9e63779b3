"""End to end: ``invoke pipeline --keep`` on a fresh copy of the project, checked with an independent tool.

The registries are read back with ``docker buildx imagetools inspect --raw`` (not this
project's inspect): every expected tag is a manifest list with exactly the matrix's
platforms, the same list in both embedded registries, and the digest the table printed.
A second run must report every leg up to date.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family
from tests.support.paths import REPO

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.slow]

LIST_TYPES = {"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"}


def _fresh_clone(tmp_path: Path) -> tuple[Path, str]:
    """A new git checkout holding the project's backends/ (branch main, one commit); its HEAD sha."""
    root = tmp_path / "clone"
    shutil.copytree(REPO / "backends", root / "backends")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fresh clone"]):
        subprocess.run(git + args, check=True, capture_output=True)
    sha = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return root, sha


def _pipeline(root: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "pipeline", "--root", str(root), *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def _table(stdout: str) -> dict[str, list[str]]:
    """suffix -> [legs, list digest, tags, result] from the plain-text table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("suffix "))
    head = lines[start]
    cols = [head.index(h) for h in ("legs", "list digest", "tags", "result")]
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1:]:
        if not line.strip() or re.match(r"^\d+ leg\(s\):", line):
            break
        bounds = [0, *cols, len(line) + 1]
        cells = [line[a:b].strip() for a, b in zip(bounds, bounds[1:])]
        rows[cells[0]] = cells[1:]
    return rows


def _hosts(root: Path) -> list[str]:
    return [json.loads((root / ".localai-ci" / "registries" / n / "localregistry.json").read_text())["host"]
            for n in ("quay", "hub")]


def _raw(imagetools: Any, ref: str) -> bytes:
    done = imagetools.run("inspect", "--raw", ref)
    assert done.returncode == 0, f"imagetools inspect --raw {ref}: {done.stderr.strip()}"
    return done.stdout.encode()


def test_pipeline_end_to_end_then_up_to_date(tmp_path: Path, engine: Any, imagetools: Any,
                                              busybox: dict[str, str]) -> None:
    root, sha = _fresh_clone(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI_BACKEND_IMAGES", "CI_SERVER_IMAGES", "GITHUB_REF", "GITHUB_SHA", "GITHUB_EVENT_NAME")}
    env.update(busybox, CI_BLOB_CACHE=str(tmp_path / "blobs"))
    try:
        first = _pipeline(root, "--keep", env=env)
        assert first.returncode == 0, f"first run failed:\n{first.stdout}\n{first.stderr}"
        rows = _table(first.stdout)
        expected: dict[str, tuple[Family, str]] = {}
        for fam, path in ((Family.BACKENDS, "backends/matrix.yml"), (Family.SERVER, "backends/images.yml")):
            for suf in load_matrix(root / path, fam).suffixes():
                expected[f"server {suf or '-core'}" if fam is Family.SERVER else suf] = (fam, suf)
        assert set(rows) == set(expected), first.stdout
        for title, (legs, digest, tags, result) in rows.items():
            assert result == "merged (verified)", f"{title}: {result}\n{first.stdout}"
            assert "(built)" in legs and "up to date" not in legs
        assert "registries kept running" in first.stdout and "localai_ci.oci.localregistry stop --root" in first.stdout

        # independent check: every tag in both registries is the same list, with the matrix's platforms
        quay, hub = _hosts(root)
        repos = {Family.BACKENDS: ("localai/local-ai-backends", "localai/localai-backends"),
                 Family.SERVER: ("localai/local-ai", "localai/localai")}
        for title, (fam, suf) in expected.items():
            matrix = load_matrix(root / ("backends/matrix.yml" if fam is Family.BACKENDS else "backends/images.yml"), fam)
            want = sorted(str(e.platform) for e in matrix.legs_of(suf))
            digest = rows[title][1]
            assert rows[title][2].split(", ") == [f"main{suf}", f"sha-{sha[:7]}{suf}"]
            for tag in (f"main{suf}", f"sha-{sha[:7]}{suf}"):
                bodies = [_raw(imagetools, f"{h}/{r}:{tag}") for h, r in zip((quay, hub), repos[fam])]
                lists = [json.loads(b) for b in bodies]
                assert lists[0] == lists[1], f"{title} {tag}: the registries serve different lists"
                assert lists[0]["mediaType"] in LIST_TYPES
                plats = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in lists[0]["manifests"])
                assert plats == want, f"{title} {tag}: platforms {plats}, expected {want}"
                assert "sha256:" + hashlib.sha256(bodies[0]).hexdigest() == digest, f"{title} {tag}: not the table's digest"
                for child in lists[0]["manifests"]:  # children's configs have the descriptor's architecture
                    cfg = imagetools.inspect_image(f"{quay}/{repos[fam][0]}@{child['digest']}")
                    assert cfg["architecture"] == child["platform"]["architecture"]

        # second run (reuses the kept registries and leaves them up: they belong to the --keep run)
        second = _pipeline(root, env=env)
        assert second.returncode == 0, f"second run failed:\n{second.stdout}\n{second.stderr}"
        rows2 = _table(second.stdout)
        for title, (legs, digest, _tags, result) in rows2.items():
            assert result == "up to date", f"{title}: {result}\n{second.stdout}"
            assert "(built)" not in legs and digest == rows[title][1]
        assert re.search(r"0 built, \d+ up to date", second.stdout)
        assert "published to: backends: " in second.stdout and "registries kept running" in second.stdout
        assert imagetools.run("inspect", "--raw", f"{quay}/{repos[Family.SERVER][0]}:main").returncode == 0, \
            "a later run must not stop registries kept by an earlier --keep run"
        for name in ("quay", "hub"):  # the stop command the output prints
            stop = subprocess.run([sys.executable, "-m", "localai_ci.oci.localregistry", "stop", "--root",
                                   str(root / ".localai-ci" / "registries" / name)],
                                  cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
            assert stop.returncode == 0, stop.stderr
        assert imagetools.run("inspect", "--raw", f"{quay}/{repos[Family.SERVER][0]}:main").returncode != 0, \
            "the printed stop command stops them"
    finally:
        for name in ("quay", "hub"):
            reg_root = root / ".localai-ci" / "registries" / name
            if (reg_root / "localregistry.json").exists():
                subprocess.run([sys.executable, "-m", "localai_ci.oci.localregistry", "stop", "--root", str(reg_root)],
                               cwd=REPO, capture_output=True, timeout=60, check=False)


BROKEN_LEG = """
  - build-type: ''
    cuda-major-version: ""
    cuda-minor-version: ""
    platforms: 'linux/amd64'
    tag-latest: 'auto'
    tag-suffix: '-cpu-broken'
    runs-on: 'ubuntu-latest'
    base-image: "ci-offline/ubuntu:24.04"
    skip-drivers: 'false'
    backend: "does-not-exist"
    dockerfile: "./backends/Dockerfile.backend"
    context: "./backends"
    ubuntu-version: '2404'
"""


# a leg whose RUN step prints a lot, then fails: the failure shows the step, its error and a bounded tail
NOISY_DOCKERFILE = """\
ARG BASE_IMAGE=ci-offline/ubuntu:24.04
FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS builder
ARG BACKEND
RUN for i in $(seq 1 500); do echo "noisy line $i"; done; echo "noisy: no sources for ${BACKEND}" >&2; exit 3
FROM scratch
COPY --from=builder /etc/os-release /os-release
"""
NOISY_LEG = BROKEN_LEG.replace("-cpu-broken", "-cpu-noisy").replace("Dockerfile.backend", "Dockerfile.noisy")


def _failures(stderr: str) -> list[list[str]]:
    """The failure list printed last: one ``error: ...`` line per failure, its details as ``  | `` lines."""
    lines = stderr.rstrip().splitlines()
    head = next(i for i, line in enumerate(lines) if re.fullmatch(r"failures \(\d+\):", line))
    out: list[list[str]] = []
    for line in lines[head + 1:]:
        if line.startswith("error: "):
            out.append([line])
        else:
            assert line.startswith("  | ") and out, f"not part of a failure: {line!r}\n{stderr}"
            out[-1].append(line)
    assert len(out) == int(lines[head].split("(")[1].rstrip("):")), stderr
    return out


def test_pipeline_failed_leg_fails_its_suffix_only(tmp_path: Path, engine: Any, busybox: dict[str, str]) -> None:
    root, _ = _fresh_clone(tmp_path)
    with open(root / "backends" / "matrix.yml", "a") as fh:
        fh.write(BROKEN_LEG + NOISY_LEG)
    (root / "backends" / "Dockerfile.noisy").write_text(NOISY_DOCKERFILE)
    env = {k: v for k, v in os.environ.items() if k not in ("CI_BACKEND_IMAGES", "CI_SERVER_IMAGES")}
    env.update(busybox, CI_BLOB_CACHE=str(tmp_path / "blobs"))
    done = _pipeline(root, "--only=-cpu-echo,-cpu-broken,-cpu-noisy", env=env)
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    rows = _table(done.stdout)
    assert rows["-cpu-echo"][3] == "merged (verified)"
    for suffix in ("-cpu-broken", "-cpu-noisy"):
        assert rows[suffix][3] == "failed: leg amd64" and rows[suffix][1] == "-", rows[suffix]
    broken, noisy = _failures(done.stderr)  # listed last, in matrix order

    # BuildKit's failure (the classic builder's "build failed: <log tail>" is gone): the leg, the image and
    # platform, the failing step by name and its error, on the first line
    first = broken[0]
    prefix = "error: -cpu-broken [amd64]: building localai-ci/backend-cpu-broken:amd64 for linux/amd64: step "
    assert first.startswith(prefix), first
    assert re.search(r"step \[builder \d+/\d+\] COPY src/does-not-exist/ /out/ failed: ", first), first
    assert '"/src/does-not-exist": not found' in first  # the error names what is missing
    assert len(broken) <= 3, broken  # a COPY prints no log: no tail, at most a hint

    first = noisy[0]
    assert first.startswith("error: -cpu-noisy [amd64]: building localai-ci/backend-cpu-noisy:amd64 for linux/amd64: "
                            "step [builder "), first
    assert re.search(r"step \[builder \d+/\d+\] RUN for i in \$\(seq 1 500\); .* failed: process .* did not complete "
                     r"successfully: exit code: 3$", first), first
    # then the step's last lines, bounded: not a wall of 500 lines
    tail_head = next(i for i, line in enumerate(noisy) if re.fullmatch(r"  \| --- last \d+ lines of that step ---", line))
    shown = int(noisy[tail_head].split()[3])
    tail = [line[4:] for line in noisy[tail_head + 1:tail_head + 1 + shown]]
    assert 5 <= shown <= 50 and len(noisy) <= 60, f"{len(noisy)} lines:\n" + "\n".join(noisy)
    details = [line[4:] for line in noisy[1:]]
    assert "noisy line 500" in tail and "noisy line 1" not in details and "noisy line 400" not in details, tail
    assert "noisy: no sources for does-not-exist" in details, details  # what the step said on stderr, before exiting


def test_a_run_that_skips_legs_fails_unless_allowed(tmp_path: Path, engine: Any, registries: Any) -> None:
    """No static busybox: no offline base has a shell, so every leg of -cpu-hello is skipped. The run
    builds nothing it was asked to build: exit 1, one summary line with how many and the fix, and it
    says it published nothing; --allow-skip accepts it (exit 0). Either way it says where its state is."""
    root, _ = _fresh_clone(tmp_path)
    empty = tmp_path / "no-busybox"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI_BACKEND_IMAGES", "CI_SERVER_IMAGES")}
    env.update(CI_BUSYBOX_DIR=str(empty), CI_BLOB_CACHE=str(tmp_path / "blobs"))
    done = _pipeline(root, "--only=-cpu-hello", env=env)
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    last = done.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: 2 of 2 leg(s) were skipped, this machine cannot build them: "), last
    assert "apt-get install busybox-static" in last and "CI_BUSYBOX_DIR" in last and "--allow-skip" in last, last
    assert "published to:" not in done.stdout and "published: nothing" in done.stdout, done.stdout
    state = root / ".localai-ci"
    assert f"state: {state / 'state.json'}" in done.stdout and f"digests: {state / 'digests'}" in done.stdout
    assert f"rm -rf {state}" in done.stdout
    allowed = _pipeline(root, "--only=-cpu-hello", "--allow-skip", env=env)
    assert allowed.returncode == 0, f"{allowed.stdout}\n{allowed.stderr}"
    assert allowed.stderr.rstrip().splitlines()[-1].startswith("note: 2 of 2 leg(s) skipped (--allow-skip): ")
