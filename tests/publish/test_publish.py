"""Build (BuildKit, through ``localai_ci.docker.builder``) + publish by digest against the real engine and two loopback
registries, and the registry cache as each image store gives it.

Registries are read back with the project's client *and* with ``docker buildx imagetools``
(the independent peer). Run once per engine (classic and containerd image store); where the stores
differ (published media types, inline vs mode=max cache), the tests say so.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localai_ci.build.leg import BuildRequest, LegResult, run_leg
from localai_ci.errors import EngineError
from localai_ci.oci.manifest import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST
from localai_ci.matrix.naming import Family
from localai_ci.oci.reference import parse_image_name
from localai_ci.oci.client import RegistryClient
from tests.support.paths import REPO as ROOT

pytestmark = [pytest.mark.engine, pytest.mark.registry]
CONFIG_OF = {DOCKER_MANIFEST: DOCKER_CONFIG, OCI_MANIFEST: OCI_CONFIG}


def leg_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for ``run_leg``: the engine under test (the builder runs ``docker buildx build``
    there), the docker CLI on PATH, busybox for the offline bases' shell, nothing else of this machine's."""
    from localai_ci.docker.offline_bases import ENV_BUSYBOX_DIR, busybox_dir

    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           ENV_BUSYBOX_DIR: str(busybox_dir(os.environ))}
    if os.environ.get("DOCKER_HOST"):
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    return {**env, **extra}


@pytest.fixture
def leg(engine: Any, registries: Any, tmp_path: Path, unique: str) -> Iterator[Callable[..., LegResult]]:
    """``leg(family, suffix, ptag, **overrides)`` runs the build verb with unique names everywhere."""
    base = f"ci-offline/{unique}:24.04"
    made: list[str] = []
    mats: dict[Family, Path] = {}
    for fam, name in ((Family.BACKENDS, "matrix.yml"), (Family.SERVER, "images.yml")):
        p = tmp_path / name
        p.write_text((ROOT / "backends" / name).read_text().replace("ci-offline/ubuntu:24.04", base))
        mats[fam] = p
    images = {fam: ",".join(f"{r.host}/{unique}/{fam}" for r in registries) for fam in Family}
    from localai_ci.docker.engine import Engine

    def run(family: Family, suffix: str, ptag: str, **kw: Any) -> LegResult:
        local = f"localai-ci-test/{unique}-{family}{suffix}:{ptag}"
        made.append(local)
        # a fixed SOURCE_DATE_EPOCH keeps the created label (and so the digest) stable without git
        env = kw.pop("env", leg_env(tmp_path, SOURCE_DATE_EPOCH="1700000000",
                                    CI_CACHE_IMAGE=f"{registries[0].host}/{unique}/ci-cache"))
        req = BuildRequest(family=family, tag_suffix=suffix, platform_tag=ptag, matrix=str(mats[family]),
                           images=kw.pop("images", images[family]), digests_dir=str(tmp_path / "digests"),
                           root=str(ROOT), local_tag=local, cache_dir=str(tmp_path / "cache"),
                           **{"push": True, **kw})
        return run_leg(req, env=env, engine=Engine(engine))

    yield run
    for ref in made:  # the base is served to BuildKit from a registry, never loaded into the engine
        try:
            engine.images.remove(ref, force=True)
        except Exception:
            pass


def clients(registries: Any, repo: str) -> list[RegistryClient]:
    return [RegistryClient(parse_image_name(f"{r.host}/{repo}"), plain_http=True) for r in registries]


def check_published(res: LegResult, registries: Any, repo: str, imagetools: Any, arch: str) -> None:
    for c in clients(registries, repo):
        with c:
            head = c.head_manifest(res.digest)
            # Docker media types when composed here (classic store); the engine's own manifest, which may
            # be OCI-typed, when published byte for byte (containerd store)
            assert head is not None and head[0] == res.digest and head[1] in CONFIG_OF, head
            assert c.list_tags() == []  # pushed by digest only
            body, _, _ = c.get_manifest(res.digest)  # type: ignore[misc]
            manifest = json.loads(body)
            assert manifest["mediaType"] == head[1] and manifest["config"]["mediaType"] == CONFIG_OF[head[1]]
            cfg = json.loads(c.get_blob(manifest["config"]["digest"]))
            assert (cfg["os"], cfg["architecture"]) == ("linux", arch)
        ref = f"{c.image}@{res.digest}"
        raw = imagetools.inspect_raw(ref)
        assert raw["mediaType"] in CONFIG_OF and "manifests" not in raw  # no index, no attestations
        assert imagetools.inspect_image(ref)["architecture"] == arch


INLINE_CACHE_KEY = "moby.buildkit.cache.v0"


def manifest_and_config(registries: Any, repo: str, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and config of ``ref`` (a digest or a tag) in the first registry."""
    with RegistryClient(parse_image_name(f"{registries[0].host}/{repo}"), plain_http=True) as c:
        got = c.get_manifest(ref)
        assert got is not None, ref
        manifest = json.loads(got[0])
        return manifest, json.loads(c.get_blob(manifest["config"]["digest"]))


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_backend_legs_publish_by_digest(leg: Any, registries: Any, imagetools: Any, unique: str,
                                        tmp_path: Path) -> None:
    for ptag in ("amd64", "arm64"):
        res = leg(Family.BACKENDS, "-cpu-hello", ptag)
        check_published(res, registries, f"{unique}/backends", imagetools, ptag)
        hex_ = res.digest.split(":")[1]
        assert Path(res.digest_file) == tmp_path / "digests" / f"digests-cpu-hello--{ptag}" / hex_
        assert Path(res.digest_file).stat().st_size == 0
        assert res.bytes_uploaded > 0
        again = leg(Family.BACKENDS, "-cpu-hello", ptag)  # rebuilt (cached) and published again: nothing re-sent
        assert again.digest == res.digest and again.bytes_uploaded == 0
        # no build cache record in the leg's own config, on either store (the inline cache, on the classic
        # store, goes into a separate image: its record comes out in no stable order)
        assert INLINE_CACHE_KEY not in manifest_and_config(registries, f"{unique}/backends", res.digest)[1]
    assert sorted(p.name for p in (tmp_path / "digests").iterdir()) == [
        "digests-cpu-hello--amd64", "digests-cpu-hello--arm64"]


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_server_core_and_variant(leg: Any, registries: Any, imagetools: Any, unique: str, tmp_path: Path) -> None:
    core = leg(Family.SERVER, "", "arm64")
    check_published(core, registries, f"{unique}/server", imagetools, "arm64")
    assert Path(core.digest_file).parent.name == "digests-localai-core--arm64"
    vk = leg(Family.SERVER, "-gpu-vulkan", "amd64")
    check_published(vk, registries, f"{unique}/server", imagetools, "amd64")
    assert Path(vk.digest_file).parent.name == "digests-localai-gpu-vulkan--amd64"
    assert vk.digest_file.endswith(vk.digest.split(":")[1])


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_anchor_goes_to_the_cache_repository_only(leg: Any, registries: Any, unique: str) -> None:
    """--anchor tags the leg keepalive-<run-id>... in the cache repository (the leg fixture's
    CI_CACHE_IMAGE); the targets users browse get the digest and no tag (LocalAI's anchor-digest-in-cache.sh)."""
    cache = f"{registries[0].host}/{unique}/ci-cache"
    res = leg(Family.BACKENDS, "-cpu-echo", "amd64", anchor=True, run_id="4242")
    for c in clients(registries, f"{unique}/backends"):
        with c:
            assert c.list_tags() == [] and c.head_manifest(res.digest) is not None
    with RegistryClient(parse_image_name(cache), plain_http=True) as c:
        assert "keepalive-4242-cpu-echo-amd64" in c.list_tags()
        assert c.head_manifest("keepalive-4242-cpu-echo-amd64")[0] == res.digest  # type: ignore[index]


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_pull_request_writes_no_digest_file(leg: Any, registries: Any, unique: str, tmp_path: Path) -> None:
    built = leg(Family.BACKENDS, "-cpu-echo", "amd64", event="pull_request")
    assert built.digest == "" and not (tmp_path / "digests").exists()
    pr_repo = f"{registries[0].host}/{unique}/ci-tests"
    pushed = leg(Family.BACKENDS, "-cpu-echo", "amd64", event="pull_request", username="u", password="secret-pw",
                 env=leg_env(tmp_path, CI_PR_IMAGE=pr_repo, GITHUB_REF="refs/pull/31/merge"))
    assert pushed.digest and not (tmp_path / "digests").exists()
    with RegistryClient(parse_image_name(pr_repo), plain_http=True) as c:
        assert c.list_tags() == ["pr-31-cpu-echo-amd64"]
    for c in clients(registries, f"{unique}/backends"):
        with c:
            assert c.list_tags() == [] and c.head_manifest(pushed.digest) is None


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_a_republish_that_fails_after_the_build_leaves_no_older_digest_file(
        leg: Any, registries: Any, unique: str, tmp_path: Path) -> None:
    """The leg is published once (its digest file written), then built again and published to a registry
    that is down: exit 1 (an OperationError), and the leg has no digest file left for a merge to tag."""
    from localai_ci.errors import OperationError
    from localai_ci.github.artifacts import read_digests_dir

    first = leg(Family.BACKENDS, "-cpu-echo", "amd64")
    assert [a.digest for a in read_digests_dir(tmp_path / "digests")] == [first.digest]
    with pytest.raises(OperationError):
        leg(Family.BACKENDS, "-cpu-echo", "amd64", images=f"127.0.0.1:1/{unique}/backends")
    assert read_digests_dir(tmp_path / "digests") == []


def test_arch_mismatch_fails_without_digest_file(engine: Any, registries: Any, tmp_path: Path,
                                                  unique: str) -> None:
    """A final stage ``FROM --platform=$BUILDPLATFORM`` holds the build platform's (amd64) files even for an
    arm64 leg: the leg is refused, with the advice, and nothing is published."""
    ctx = tmp_path / "scratch"
    ctx.mkdir()
    # (FROM --platform=$BUILDPLATFORM scratch would not do: scratch has no platform, BuildKit gives it the target's)
    (ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM --platform=$BUILDPLATFORM ${BASE_IMAGE}\nCOPY f /f\n")
    (ctx / "f").write_text(unique)
    matrix = tmp_path / "m.yml"
    matrix.write_text("""include:
  - build-type: ''
    cuda-major-version: ''
    cuda-minor-version: ''
    platforms: 'linux/arm64'
    tag-latest: 'auto'
    tag-suffix: '-cpu-scratch'
    runs-on: 'ubuntu-24.04-arm'
    base-image: 'ci-offline/ubuntu:24.04'
    skip-drivers: 'false'
    backend: 'scratch'
    dockerfile: 'scratch/Dockerfile'
    context: 'scratch'
    ubuntu-version: '2404'
""")
    from localai_ci.docker.engine import Engine

    tag = f"localai-ci-test/{unique}:arm64"
    images = f"{registries[0].host}/{unique}/b"
    req = BuildRequest(push=True, family=Family.BACKENDS, tag_suffix="-cpu-scratch", platform_tag="arm64",
                       matrix=str(matrix), root=str(tmp_path), images=images,
                       digests_dir=str(tmp_path / "digests"), local_tag=tag, cache_dir=str(tmp_path / "cache"))
    try:
        with pytest.raises(EngineError) as err:
            run_leg(req, env=leg_env(tmp_path, SOURCE_DATE_EPOCH="0", CI_CACHE_IMAGE=f"{images}-cache"),
                    engine=Engine(engine))
    finally:
        try:
            engine.images.remove(tag, force=True)
        except Exception:
            pass
    msg = str(err.value)
    assert "linux/arm64" in msg and "--platform=$BUILDPLATFORM" in msg, msg
    assert not (tmp_path / "digests").exists()


# ---- the registry cache -------------------------------------------------------------------------------
CACHE_DOCKERFILE = """ARG BASE_IMAGE=ci-offline/ubuntu:24.04
FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS builder
ARG TARGETARCH
RUN echo "expensive step UNIQUE" && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /value
COPY note.txt /note.txt
FROM scratch
COPY --from=builder /value /note.txt /
"""
CACHE_MATRIX = """include:
  - build-type: ''
    cuda-major-version: ''
    cuda-minor-version: ''
    platforms: 'linux/amd64'
    tag-latest: 'auto'
    tag-suffix: '-cpu-cache'
    runs-on: 'ubuntu-latest'
    base-image: 'ci-offline/ubuntu:24.04'
    skip-drivers: 'false'
    backend: 'cache'
    dockerfile: 'ctx/Dockerfile'
    context: 'ctx'
    ubuntu-version: '2404'
"""
INLINE_WARNING = "cannot export registry cache: publishing inline cache instead"


@pytest.fixture
def cache_leg(engine: Any, registries: Any, tmp_path: Path, unique: str) -> Iterator[Callable[..., LegResult]]:
    """``cache_leg(note='', event=None) -> LegResult``: a one-leg matrix whose builder stage has one expensive
    step writing a random value (its command names ``unique``, so no other build shares its cache)."""
    from localai_ci.docker.engine import Engine

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(CACHE_DOCKERFILE.replace("UNIQUE", unique))
    (tmp_path / "m.yml").write_text(CACHE_MATRIX)
    local = f"localai-ci-test/{unique}-cache:amd64"
    env = leg_env(tmp_path, SOURCE_DATE_EPOCH="1700000000", CI_CACHE_IMAGE=f"{registries[0].host}/{unique}/ci-cache")

    def run(note: str = "", event: str | None = None) -> LegResult:
        (ctx / "note.txt").write_text(note)
        req = BuildRequest(push=True, family=Family.BACKENDS, tag_suffix="-cpu-cache", platform_tag="amd64",
                           matrix=str(tmp_path / "m.yml"), root=str(tmp_path),
                           images=",".join(f"{r.host}/{unique}/backends" for r in registries), event=event,
                           digests_dir=str(tmp_path / "digests"), local_tag=local, cache_dir=str(tmp_path / "blobs"))
        return run_leg(req, env=env, engine=Engine(engine))

    yield run
    for ref in (local, f"{registries[0].host}/{unique}/ci-cache:cache-cpu-cache-"):
        try:
            engine.images.remove(ref, force=True)
        except Exception:
            pass


def clean_engine(engine: Any, local_tag: str) -> None:
    """What a fresh runner has: neither the built image nor any BuildKit cache of this engine."""
    try:
        engine.images.remove(local_tag, force=True)
    except Exception:
        pass
    done = subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stderr


def published_file(registries: Any, repo: str, digest: str, path: str) -> bytes:
    """One file of a published single-layer image, read back from the registry."""
    import gzip
    import io
    import tarfile

    with RegistryClient(parse_image_name(f"{registries[0].host}/{repo}"), plain_http=True) as c:
        body, _, _ = c.get_manifest(digest)  # type: ignore[misc]
        files: dict[str, bytes] = {}
        for layer in json.loads(body)["layers"]:
            data = c.get_blob(layer["digest"])
            data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for m in tar.getmembers():
                    f = tar.extractfile(m)
                    if f is not None:
                        files[m.name.lstrip("./")] = f.read()
    return files[path.lstrip("/")]


def expensive(res: LegResult, unique: str) -> list[str]:
    return [s for s in res.steps_run if f"expensive step {unique}" in s]


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_registry_cache_is_written_on_push_and_reused_by_a_clean_engine(
        cache_leg: Any, engine: Any, registries: Any, unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    """What a user of each image store gets from the registry cache after a publish (push event).

    Both: a runner with an empty engine rebuilding the same inputs skips the expensive builder-stage step
    and ships the value it wrote the first time (BuildKit needs no result of a stage whose output is cached).
    containerd store: BuildKit exports the cache with mode=max, builder-stage results included, so the step
    is skipped even when a later step of that stage changed. classic store: the docker driver can only write
    inline cache: the leg still succeeds, the user is warned once, an image of the leg's layers carrying the
    cache record is published as the cache ref, and with a later change in the builder stage the expensive step runs again (min mode: the
    cache holds the final stage's layers only, as the warning says). The leg itself is the same image on
    a rebuild of the same inputs: the same digest, nothing uploaded again.
    """
    from localai_ci.docker.engine import connect

    containerd = connect(dict(os.environ), timeout=60).facts().containerd_store
    cache_repo = parse_image_name(f"{registries[0].host}/{unique}/ci-cache")
    cache_tag = "cache-cpu-cache-"
    first = cache_leg()
    out, err = capsys.readouterr()
    assert first.plan.cache_ref == cache_repo.with_tag(cache_tag)
    assert len(expensive(first, unique)) == 1, first.steps_run  # nothing to import yet: it ran
    value = published_file(registries, f"{unique}/backends", first.digest, "/value")
    assert len(value) == 32, value
    with RegistryClient(cache_repo, plain_http=True) as c:
        assert c.list_tags() == [cache_tag]
        cached = c.get_manifest(cache_tag)
        assert cached is not None
    if containerd:
        assert first.cache == "registry mode=max" and first.cache_warning == ""
        assert INLINE_WARNING not in err
        # BuildKit's own cache manifest (not the leg image): the layers of every step, builder stage included
        assert cached[2] != first.digest and "application/vnd.buildkit.cacheconfig.v0" in cached[0].decode()
        assert f"registry cache: {first.plan.cache_ref} (registry mode=max)" in out
    else:
        assert first.cache == "inline" and first.cache_warning == ""
        assert err.count(INLINE_WARNING) == 1, err
        # the leg's inline-cache image (localai_ci.build.leg.publish_cache): the leg's layers, its cache record in the config
        leg_manifest, leg_config = manifest_and_config(registries, f"{unique}/backends", first.digest)
        cache_manifest, cache_config = manifest_and_config(registries, f"{unique}/ci-cache", cache_tag)
        assert cached[2] != first.digest and cache_manifest["layers"] == leg_manifest["layers"]
        assert INLINE_CACHE_KEY in cache_config and INLINE_CACHE_KEY not in leg_config
        assert f"registry cache: {first.plan.cache_ref} (inline)" in out
        # only what is new is published: its config, read from the engine's image database (when this process
        # may read it); its layers are the leg's, gzipped moments ago and mounted, never exported a second time
        from localai_ci.docker.engine import Engine

        if Engine(engine).config_store(dict(os.environ)):
            assert out.count("exported ") == 1, out  # the leg's own export, not the cache image's
            assert f"staged {len(leg_manifest['layers'])} layer(s) from the blob cache (no export)" in out, out

    # 1. a clean engine, the same inputs
    clean_engine(engine, first.plan.local_tag)
    again = cache_leg()
    out, err = capsys.readouterr()
    assert f"importing cache manifest from {first.plan.cache_ref}" in again.steps_run
    assert expensive(again, unique) == [], again.steps_run
    assert published_file(registries, f"{unique}/backends", again.digest, "/value") == value
    assert again.cache == first.cache and err.count(INLINE_WARNING) == (0 if containerd else 1), err
    assert again.digest == first.digest and again.bytes_uploaded == 0  # the same leg, on both stores
    # 2. a clean engine, a change after the expensive step in the builder stage
    clean_engine(engine, first.plan.local_tag)
    changed = cache_leg(note="a later step of the builder stage changed")
    assert published_file(registries, f"{unique}/backends", changed.digest, "/note.txt").startswith(b"a later")
    if containerd:  # mode=max: the expensive step's own result comes from the registry
        assert expensive(changed, unique) == [], changed.steps_run
        assert published_file(registries, f"{unique}/backends", changed.digest, "/value") == value
    else:  # min mode: it runs again (a new value), and the new leg becomes the cache
        assert len(expensive(changed, unique)) == 1, changed.steps_run
        assert published_file(registries, f"{unique}/backends", changed.digest, "/value") != value
        changed_layers = manifest_and_config(registries, f"{unique}/backends", changed.digest)[0]["layers"]
        assert manifest_and_config(registries, f"{unique}/ci-cache", cache_tag)[0]["layers"] == changed_layers


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_pull_request_reads_the_registry_cache_and_never_writes_it(
        cache_leg: Any, registries: Any, unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = cache_leg()
    cache_repo = parse_image_name(f"{registries[0].host}/{unique}/ci-cache")
    with RegistryClient(cache_repo, plain_http=True) as c:
        before = c.head_manifest("cache-cpu-cache-")
    assert before is not None
    capsys.readouterr()
    # a changed context: a cache export would change the cache manifest
    pr = cache_leg(note="changed by the pull request", event="pull_request")
    _, err = capsys.readouterr()
    assert pr.cache == "read only (pull request)" and pr.digest == "" and pr.cache_warning == ""
    assert any(s.startswith("importing cache manifest from " + first.plan.cache_ref) for s in pr.steps_run) \
        or "importing cache manifest" in err
    assert INLINE_WARNING not in err
    with RegistryClient(cache_repo, plain_http=True) as c:
        assert c.list_tags() == ["cache-cpu-cache-"]
        assert c.head_manifest("cache-cpu-cache-") == before


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_registry_cache_failure_is_a_warning(leg: Any, registries: Any, unique: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    dead = "127.0.0.1:9/cache"  # discard port: nothing listens, import and export both fail
    res = leg(Family.BACKENDS, "-cpu-echo", "amd64",
              env=leg_env(tmp_path, SOURCE_DATE_EPOCH="1700000000", CI_CACHE_IMAGE=dead))
    out, err = capsys.readouterr()
    assert res.digest and Path(res.digest_file).exists()  # the leg itself is published
    assert "no registry cache to import" in err, err
    if res.cache == "inline":  # classic store: re-tagging the published leg as the cache fails
        assert "registry cache 127.0.0.1:9/cache:cache-cpu-echo- not updated" in res.cache_warning
        assert f"warning: {res.cache_warning}" in out
        return
    # containerd store: BuildKit's export fails, ignore-error=true keeps the build green, the builder warns
    assert res.cache == "registry mode=max"
    assert "registry cache 127.0.0.1:9/cache:cache-cpu-echo- not exported" in err, err
    assert dead in res.cache_warning and f"warning: {res.cache_warning}" in out, out


@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_without_push_a_build_sends_nothing_to_any_registry(leg: Any, registries: Any, unique: str,
                                                            tmp_path: Path) -> None:
    """A maintainer logged in to the real registries builds locally: without --push nothing is
    written anywhere -- no blob, manifest, tag, anchor or cache export -- counted by a front that
    sees every request to the registry (the images and the cache repository are behind it)."""
    from tests.support.hostile import HostileServer

    with HostileServer("127.0.0.9", upstream=registries[0].host, lifetime=300) as front:
        images = f"{front.host}/{unique}/backends"
        env = leg_env(tmp_path, SOURCE_DATE_EPOCH="1700000000", CI_CACHE_IMAGE=f"{front.host}/{unique}/ci-cache")
        res = leg(Family.BACKENDS, "-cpu-echo", "amd64", images=images, env=env, anchor=True, run_id="5", push=False)
        assert res.image_id and res.digest == "" and not (tmp_path / "digests").exists()
        writes = [s for s in front.seen if s.method in ("PUT", "POST", "PATCH", "DELETE")]
        assert writes == [], writes
        published = leg(Family.BACKENDS, "-cpu-echo", "amd64", images=images, env=env, anchor=True, run_id="5")
        assert published.digest and [s for s in front.seen if s.method in ("PUT", "POST", "PATCH")]  # the front counts
