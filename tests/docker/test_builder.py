"""localai_ci.docker.builder: the BuildKit build seam (`docker buildx build`). Pure parts first, then real builds.

The real builds go through the ``build_image`` fixture (conftest): a context in tmp_path, built by
:class:`localai_ci.docker.builder.BuildxBuilder` on the engine under test (``.ci/run`` runs this file on the classic
and on the containerd image store), offline bases served by a loopback registry.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from localai_ci.docker.builder import BuilderCaps, BuildSpec, CacheSpec, buildx_command, cache_args, parse_buildx_inspect
from localai_ci.docker.buildprogress import BuildEvent, SolveStatusReader
from localai_ci.docker.engine import IMAGE_STORE_CLASSIC, IMAGE_STORE_CONTAINERD, EngineFacts
from localai_ci.errors import EngineError
from tests.support.builder_helpers import read_file
from tests.support.paths import REPO
from localai_ci.oci.platforms import parse_platform

AMD64, ARM64 = parse_platform("linux/amd64"), parse_platform("linux/arm64")
BASE = "ci-offline/ubuntu:24.04"


def caps(store: str = IMAGE_STORE_CLASSIC, driver: str = "docker", bridge: bool = False,
         version: str = "26.1.5+dfsg1") -> BuilderCaps:
    return BuilderCaps(name="default", driver=driver, platforms=(AMD64,),
                       engine=EngineFacts(version=version, api_version="1.45", arch="amd64", image_store=store,
                                          has_bridge=bridge))


def spec(**kw: Any) -> BuildSpec:
    base: dict[str, Any] = dict(context="/ctx", dockerfile="/ctx/Dockerfile", platform=ARM64, tag="x/y:arm64")
    base.update(kw)
    return BuildSpec(**base)


# ---- pure: inspect output, command line, cache modes -------------------------------------------------
INSPECT = """Name:          default
Driver:        docker
Last Activity: 2026-12-01 09:59:25 +0000 UTC

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.0.0+unknown
Platforms:        linux/amd64, linux/amd64/v2, linux/386, linux/arm64, linux/mips64le*
"""


def test_parse_buildx_inspect() -> None:
    name, driver, platforms = parse_buildx_inspect(INSPECT)
    assert (name, driver) == ("default", "docker")
    assert [str(p) for p in platforms] == ["linux/amd64", "linux/amd64/v2", "linux/386", "linux/arm64"]


def test_command_is_an_argument_list_with_everything_the_leg_needs() -> None:
    s = spec(build_args=(("BACKEND", "a b"), ("EMPTY", "")), labels=(("org.x", "y"),),
             contexts=((BASE, "docker-image://127.0.0.1:5000/ci-offline/ubuntu:24.04@sha256:" + "0" * 64),),
             target="final", cache=CacheSpec("reg/cache:cache-x-arm64", write=True))
    args = buildx_command(s, caps(IMAGE_STORE_CONTAINERD), "/tmp/meta.json", "docker")
    assert args[:3] == ["docker", "buildx", "build"] and args[-1] == "/ctx"
    pairs = list(zip(args, args[1:]))
    for pair in [("--platform", "linux/arm64"), ("--file", "/ctx/Dockerfile"), ("--tag", "x/y:arm64"),
                 ("--build-arg", "BACKEND=a b"), ("--build-arg", "EMPTY="), ("--label", "org.x=y"),
                 ("--target", "final"), ("--metadata-file", "/tmp/meta.json"), ("--network", "host"),
                 ("--build-context", f"{BASE}=docker-image://127.0.0.1:5000/ci-offline/ubuntu:24.04@sha256:" + "0" * 64),
                 ("--cache-from", "type=registry,ref=reg/cache:cache-x-arm64"),
                 ("--cache-to", "type=registry,ref=reg/cache:cache-x-arm64,mode=max,ignore-error=true")]:
        assert pair in pairs, pair
    # no attestation manifests (they split a list's digest between registries), the image lands in the engine
    assert {"--provenance=false", "--sbom=false", "--load", "--progress=rawjson"} <= set(args)


def test_the_hand_off_is_an_oci_layout_where_the_builder_can_export_one() -> None:
    """Decided by the builder's capabilities (driver and image store), never by a name; ``load`` wins."""
    from localai_ci.docker.builder import exports_layout

    assert not exports_layout(spec(), caps(IMAGE_STORE_CLASSIC))  # the docker driver refuses type=oci there
    assert exports_layout(spec(), caps(IMAGE_STORE_CONTAINERD))
    for driver in ("docker-container", "remote", "kubernetes"):
        assert exports_layout(spec(), caps(IMAGE_STORE_CLASSIC, driver=driver))
    assert not exports_layout(spec(load=True), caps(IMAGE_STORE_CONTAINERD))
    args = buildx_command(spec(), caps(IMAGE_STORE_CONTAINERD), "/m", layout="/tmp/layouts/leg.1.abcd0123")
    assert "--output=type=oci,dest=/tmp/layouts/leg.1.abcd0123,tar=false" in args and "--load" not in args
    assert {"--provenance=false", "--sbom=false"} <= set(args)
    odd = buildx_command(spec(), caps(IMAGE_STORE_CONTAINERD), "/m", layout='/tmp/a,b"c')
    assert '--output=type=oci,"dest=/tmp/a,b""c",tar=false' in odd  # buildx reads --output as CSV


def test_host_network_only_when_the_engine_has_no_bridge() -> None:
    assert "--network" not in buildx_command(spec(), caps(bridge=True), "/m")
    assert "--network" not in buildx_command(spec(), caps(driver="docker-container"), "/m")


@pytest.mark.parametrize("store, write, expected, mode, warns", [
    (IMAGE_STORE_CONTAINERD, True, "type=registry,ref=r/c:t,mode=max,ignore-error=true", "registry mode=max", False),
    (IMAGE_STORE_CLASSIC, True, None, "inline", True),  # the leg's image carries no cache record: a stable digest
    (IMAGE_STORE_CONTAINERD, False, None, "read only (pull request)", False),
    (IMAGE_STORE_CLASSIC, False, None, "read only (pull request)", False),
])
def test_cache_modes(store: str, write: bool, expected: str | None, mode: str, warns: bool) -> None:
    args, how, warning = cache_args(CacheSpec("r/c:t", write=write), caps(store))
    assert args[:2] == ["--cache-from", "type=registry,ref=r/c:t"]  # every build reads the cache
    assert (args[3] if len(args) > 2 else None) == expected  # pull requests never write it
    assert how == mode and bool(warning) == warns
    if warns:
        assert "inline cache" in warning and "containerd image store" in warning


def test_inline_cache_is_a_second_image() -> None:
    """Classic store: the leg's own build embeds nothing; a second (cached) build tags the inline-cache image."""
    s = spec(cache=CacheSpec("r/c:t", write=True))
    leg = buildx_command(s, caps(IMAGE_STORE_CLASSIC), "/m")
    second = buildx_command(s, caps(IMAGE_STORE_CLASSIC), "/m", inline_cache=True)
    assert "--cache-to" not in leg and ("--tag", "x/y:arm64") in list(zip(leg, leg[1:]))
    pairs = list(zip(second, second[1:]))
    assert ("--cache-to", "type=inline") in pairs and ("--tag", "x/y:arm64-inline-cache") in pairs


def test_no_cache_ref_no_cache_arguments() -> None:
    assert cache_args(CacheSpec(), caps()) == ([], "none", "")


def test_insecure_cache_registry_is_marked() -> None:
    args, _, _ = cache_args(CacheSpec("10.0.0.5:5000/c:t", write=True, insecure=True), caps(IMAGE_STORE_CONTAINERD))
    assert all("registry.insecure=true" in a for a in args[1::2])


# ---- pure: BuildKit's solve status ----------------------------------------------------------------------
def _obj(**kw: Any) -> str:
    return json.dumps(kw, indent=2) + "\n"


def _log(vertex: str, text: str) -> dict[str, Any]:
    return {"vertex": vertex, "stream": 1, "data": base64.b64encode(text.encode()).decode(),
            "timestamp": "2026-12-01T10:00:01Z"}


def _status_stream() -> str:
    t0, t1, t2 = "2026-12-01T10:00:00.000000001Z", "2026-12-01T10:00:01.5Z", "2026-12-01T10:00:02.25Z"
    return "".join([
        _obj(vertexes=[{"digest": "sha256:i", "name": "[internal] load build definition from Dockerfile", "started": t0,
                        "completed": t0}]),
        _obj(vertexes=[{"digest": "sha256:c", "name": "importing cache manifest from r/c:t", "started": t0,
                        "completed": t0, "error": "r/c:t: not found"}]),
        _obj(vertexes=[{"digest": "sha256:a", "name": "[builder 1/2] COPY . /src", "cached": True, "started": t0,
                        "completed": t0}]),
        _obj(vertexes=[{"digest": "sha256:b", "name": "[builder 2/2] RUN make", "started": t1}]),
        _obj(logs=[_log("sha256:b", "".join(f"line {i}\n" for i in range(1, 31)) + "partial ")]),
        _obj(logs=[_log("sha256:b", "end\n")]),
        _obj(vertexes=[{"digest": "sha256:b", "name": "[builder 2/2] RUN make", "started": t1, "completed": t2,
                        "error": "process \"/bin/sh -c make\" did not complete successfully: exit code: 2"}]),
        "Dockerfile:3\n--------------------\n   3 | >>> RUN make\n--------------------\n",
        "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2\n",
    ])


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_solve_status_events_in_any_chunking(chunk: int) -> None:
    events: list[BuildEvent] = []
    reader = SolveStatusReader(events.append)
    text = _status_stream()
    for i in range(0, len(text), chunk):
        reader.feed(text[i:i + chunk])
    reader.close()
    kinds = [(e.kind, e.step) for e in events if e.kind != "log"]
    assert kinds == [("note", "importing cache manifest from r/c:t"), ("cached", "[builder 1/2] COPY . /src"),
                     ("running", "[builder 2/2] RUN make"), ("failed", "[builder 2/2] RUN make")]
    failed = [e for e in events if e.kind == "failed"][0]
    assert failed.seconds == pytest.approx(0.75)
    logs = [e.text for e in events if e.kind == "log"]
    assert logs[0] == "line 1" and logs[-1] == "partial end"  # a line split across two log records is one line
    text_of_failure = reader.failure()
    assert text_of_failure.startswith('step [builder 2/2] RUN make failed: process "/bin/sh -c make"')
    tail = text_of_failure.split("---\n", 1)[1].splitlines()
    assert len(tail) == 20 and tail[-1] == "partial end" and tail[0] == "line 12"  # the last lines, not a wall
    assert [s.name for s in reader.steps()] == ["importing cache manifest from r/c:t", "[builder 1/2] COPY . /src",
                                                "[builder 2/2] RUN make"]


def test_failure_without_a_failed_step_shows_buildx_error_lines() -> None:
    reader = SolveStatusReader(lambda e: None)
    reader.feed("ERROR: failed to solve: failed to read dockerfile: open Dockerfile: no such file or directory\n")
    reader.close()
    assert reader.failure() == ("ERROR: failed to solve: failed to read dockerfile: open Dockerfile: "
                                "no such file or directory")


def test_progress_lines_name_state_and_duration() -> None:
    from localai_ci.output.progress import build_event_text

    assert build_event_text(BuildEvent("done", "[b 1/2] RUN  a \\\n   b", seconds=1.25)) == "done     [b 1/2] RUN a \\ b (1.2s)"
    assert build_event_text(BuildEvent("cached", "[b 2/2] COPY x /")) == "cached   [b 2/2] COPY x /"
    assert build_event_text(BuildEvent("running", "x" * 300)).endswith("...")  # one line, bounded
    assert build_event_text(BuildEvent("log", "s", "text")) is None


@pytest.mark.parametrize("how, name", [("option", "-x"), ("option", "--help"), ("env", "--debug"), ("env", "-h"),
                                       ("env", "x;y"), ("option", "ü")])
def test_a_builder_name_that_is_no_name_is_refused_wherever_it_comes_from(how: str, name: str, tmp_path: Path) -> None:
    """``--builder`` and ``CI_BUILDER`` go through one check: a name starting with '-' would become an option of
    ``docker buildx inspect``. Exit 2 naming where it came from, before any docker command runs (a ``docker`` on
    PATH that records each call stays uncalled) or any engine is asked."""
    import sys

    from localai_ci.docker.builder import BuildxBuilder
    from localai_ci.errors import UserError

    bin_dir, calls = tmp_path / "bin", tmp_path / "docker-calls"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", **({"CI_BUILDER": name} if how == "env" else {})}
    source = "--builder" if how == "option" else "CI_BUILDER"
    option = [f"--builder={name}"] if how == "option" else []
    root = REPO
    for args in (["build-backend", "--tag-suffix=-cpu-hello", "--platform-tag", "amd64", *option],
                 ["pipeline", "--root", str(tmp_path), "--matrix", str(root / "backends" / "matrix.yml"), *option]):
        done = subprocess.run([sys.executable, "-m", "localai_ci", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (args, done.stdout + done.stderr)
        assert f"{source} {name!r}: a buildx builder name starts with a letter or digit" in done.stderr, done.stderr
    assert not calls.exists(), calls.read_text()
    assert not (tmp_path / ".localai-ci").exists()  # the pipeline took no lock, started nothing
    with pytest.raises(UserError, match=source):
        BuildxBuilder(None, env, name=name if how == "option" else "")  # type: ignore[arg-type]


# ---- real builds -------------------------------------------------------------------------------------
FEATURES = """\
ARG BASE_IMAGE=ci-offline/ubuntu:24.04
ARG BUILDER_TARGET=builder-a

FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS builder-a
ARG TARGETARCH
ARG TARGETOS
ARG TARGETPLATFORM
ARG BUILDPLATFORM
RUN <<EOT sh
    set -e
    mkdir -p /out
    echo "TARGETARCH=${TARGETARCH} TARGETOS=${TARGETOS} TARGETPLATFORM=${TARGETPLATFORM} BUILDPLATFORM=${BUILDPLATFORM}" > /out/platforms
    echo "picked=builder-a" > /out/picked
EOT
RUN --mount=type=bind,source=scripts/hello.sh,target=/usr/local/bin/hello.sh sh /usr/local/bin/hello.sh > /out/bind
RUN --mount=type=cache,target=/cache,id=features-${TARGETARCH} echo run >> /cache/runs && cat /cache/runs | wc -l > /out/cache-runs

FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS builder-b
RUN mkdir -p /out && echo "picked=builder-b" > /out/picked

FROM ${BUILDER_TARGET} AS builder

FROM scratch
COPY --from=builder /out/ /
"""


@pytest.mark.registry
@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_buildkit_features_build_for_the_legs_arch(build_image: Any, engine: Any, platform: str) -> None:
    files = {"scripts/hello.sh": "echo bound-from-context\n"}
    events: list[BuildEvent] = []
    built = build_image(FEATURES, platform, files=files, contexts_for=(BASE,), events=events)
    arch = platform.split("/")[1]
    assert built.info.platform_text == platform  # FROM scratch final stage: the leg's architecture
    assert read_file(engine, built.ref, "/platforms").split() == [
        f"TARGETARCH={arch}", "TARGETOS=linux", f"TARGETPLATFORM={platform}", "BUILDPLATFORM=linux/amd64"]
    assert read_file(engine, built.ref, "/bind").strip() == "bound-from-context"
    assert read_file(engine, built.ref, "/picked").strip() == "picked=builder-a"
    assert any(e.kind in ("done", "cached") and "RUN <<EOT sh" in e.step for e in events)  # the step, as an event
    # a stage chosen by a build argument, the other one never built
    other = build_image(FEATURES, platform, files=files, contexts_for=(BASE,), build_args={"BUILDER_TARGET": "builder-b"})
    assert read_file(engine, other.ref, "/picked").strip() == "picked=builder-b"
    assert not any("builder-a" in s.name for s in other.steps)


@pytest.mark.registry
def test_cache_mount_persists_between_builds(build_image: Any, engine: Any) -> None:
    files = {"scripts/hello.sh": "echo x\n"}
    first = build_image(FEATURES, files=files, contexts_for=(BASE,))
    runs = int(read_file(engine, first.ref, "/cache-runs"))
    # a change above the cache-mount step re-runs it; the mount still holds the earlier runs
    files2 = {"scripts/hello.sh": "echo changed\n"}
    second = build_image(FEATURES, files=files2, contexts_for=(BASE,))
    assert int(read_file(engine, second.ref, "/cache-runs")) == runs + 1


@pytest.mark.registry
def test_labels_and_build_args_reach_the_image(builder: Any, bases: Any, engine: Any, tmp_path: Path, unique: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nARG GREETING\nLABEL greeting=${GREETING}\nCOPY f /f\n")
    (tmp_path / "f").write_text("x")
    built = builder.build(BuildSpec(context=str(tmp_path), dockerfile=str(tmp_path / "Dockerfile"), platform=AMD64,
                                    tag=f"localai-ci-test/{unique}:labels", build_args=(("GREETING", "hi there"),),
                                    labels=(("org.opencontainers.image.revision", "abc123"),)), lambda e: None)
    labels = dict(built.info.labels)
    if built.layout:  # the builder's own hand-off (an OCI layout): read from its config, then removed
        shutil.rmtree(built.layout)
    assert labels == {"greeting": "hi there", "org.opencontainers.image.revision": "abc123"}


@pytest.mark.registry
def test_a_layout_hand_off_leaves_nothing_in_the_engine(build_image: Any, builder: Any, engine: Any,
                                                       unique: str) -> None:
    """Where the builder exports an OCI layout, the image never enters the engine: the built image is
    the layout's (its manifest digest, its config's platform and labels); elsewhere it is loaded."""
    built = build_image("FROM scratch\nLABEL leg=arm64\nCOPY f /f\n", platform="linux/arm64", files={"f": "x"},
                        load=False)
    assert built.info.platform_text == "linux/arm64" and dict(built.info.labels)["leg"] == "arm64"
    names = [t for i in engine.images.list() for t in i.tags]
    if not builder.caps().oci_export:
        assert built.layout == "" and built.ref in names
        return
    layout = Path(built.layout)
    assert built.ref == "" and f"localai-ci-test/{unique}:0" not in names
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [built.info.id]  # no attestation manifest either
    manifest = json.loads((layout / "blobs" / "sha256" / built.info.id.split(":")[1]).read_bytes())
    assert manifest["config"]["digest"] == built.config_digest
    assert all(x["mediaType"].endswith("tar+gzip") for x in manifest["layers"])  # as BuildKit compressed them


@pytest.mark.registry
def test_arm64_run_step_runs_under_qemu(build_image: Any, engine: Any, qemu: None, busybox: dict[str, str]) -> None:
    dockerfile = f"FROM {BASE}\nRUN uname -m > /machine && echo ran > /proof\n"  # the target platform's stage
    built = build_image(dockerfile, "linux/arm64", contexts_for=(BASE,))
    assert built.info.platform_text == "linux/arm64"
    assert read_file(engine, built.ref, "/machine").strip() == "aarch64"


@pytest.mark.registry
def test_failing_step_is_named_with_its_last_lines(build_image: Any) -> None:
    dockerfile = (f"FROM {BASE} AS b\nRUN echo fine\n"
                  "RUN <<\"EOT\" sh\n  for i in $(seq 1 200); do echo noise-$i; done\n  echo the-real-cause >&2\n"
                  "  exit 7\nEOT\n")
    with pytest.raises(EngineError) as err:
        build_image(dockerfile, contexts_for=(BASE,))
    text = str(err.value)
    assert '] RUN <<"EOT" sh failed:' in text and "exit code: 7" in text, text
    assert "the-real-cause" in text  # stderr's last lines, wherever the interleaved streams put them
    assert "noise-150" not in text and len(text.splitlines()) < 30  # the tail, not a wall of text


@pytest.mark.registry
def test_missing_buildx_builder_is_a_clear_error(engine: Any) -> None:
    from localai_ci.docker.builder import BuildxBuilder
    from localai_ci.docker.engine import Engine

    with pytest.raises(EngineError, match="docker buildx inspect no-such-builder.*docker buildx ls"):
        BuildxBuilder(Engine(engine), dict(os.environ), name="no-such-builder").caps()


def test_engine_too_old_for_a_heredoc_is_refused_before_building(tmp_path: Path) -> None:
    """The preflight (localai_ci.build.feasibility) names the feature, its line and the engine version it needs."""
    from localai_ci.dockerfile.model import parse_dockerfile
    from localai_ci.build.feasibility import assess
    from localai_ci.dockerfile.features import check_engine
    from localai_ci.dockerfile.resolve import resolve

    df = parse_dockerfile("FROM scratch AS a\nCOPY x /x\nFROM a\nRUN <<EOT sh\necho hi\nEOT\n", "backends/Dockerfile.x")
    problem = check_engine(df, "20.10.24+dfsg1")
    assert problem is not None and "backends/Dockerfile.x line 4" in problem and "23.0" in problem
    assert "20.10.24" in problem
    verdict = assess(resolve(df, {}, target_platform=AMD64, build_platform=AMD64), host=AMD64.arch,
                     can_run=lambda p: True, engine_problem=problem)
    assert not verdict.runs and verdict.reason == problem


@pytest.mark.registry
@pytest.mark.slow
@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_base_image_from_an_authenticated_registry(builder: Any, engine: Any, tmp_path: Path, unique: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """FROM an image that exists only in a TLS + htpasswd registry: pulled with the Docker config's
    credentials (buildx's session), and the password appears in no event nor error."""
    from tests.support.authregistry import KNOWN_PASSWORD, auth_registries
    from localai_ci.docker.offline_bases import offline_image, push_offline_image
    from localai_ci.oci.reference import parse_image_name
    from localai_ci.oci.client import RegistryClient
    from localai_ci.oci.keychain import Credentials

    with auth_registries(tmp_path / "auth") as make:
        host = make(True)
        cert = tmp_path / "auth" / "auth-0" / "cert.pem"
        img = offline_image(f"ci-offline/{unique}:1", os.environ)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # this test's client trusts the registry's certificate
        with RegistryClient(parse_image_name(f"{host}/private/{unique}"), plain_http=False,
                            credentials=Credentials("tester", KNOWN_PASSWORD)) as client:
            push_offline_image(img, client, "1")
        config = tmp_path / "docker-config"
        config.mkdir()
        auth = base64.b64encode(f"tester:{KNOWN_PASSWORD}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {host}/private/{unique}:1\nRUN echo pulled > /proof\n")
        events: list[BuildEvent] = []
        from localai_ci.docker.builder import BuildxBuilder

        env = {**os.environ, "DOCKER_CONFIG": str(config)}
        b = BuildxBuilder(builder.engine, env)
        built = b.build(BuildSpec(context=str(ctx), dockerfile=str(ctx / "Dockerfile"), platform=AMD64,
                                  tag=f"localai-ci-test/{unique}:authbase", load=True), events.append)  # read below
        assert read_file(engine, built.ref, "/proof").strip() == "pulled"
        # without the credentials the pull is refused, and the error says where to look
        with pytest.raises(EngineError) as err:
            BuildxBuilder(builder.engine, {**os.environ, "DOCKER_CONFIG": str(tmp_path / "empty")}).build(
                BuildSpec(context=str(ctx), dockerfile=str(ctx / "Dockerfile"), platform=AMD64,
                          tag=f"localai-ci-test/{unique}:authbase2"), events.append)
        blob = "\n".join(f"{e.kind} {e.step} {e.text}" for e in events) + str(err.value)
        assert "401 Unauthorized" in str(err.value) and "docker login" in str(err.value)
        for secret in (KNOWN_PASSWORD, auth):
            assert secret not in blob
