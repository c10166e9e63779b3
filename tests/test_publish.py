"""Build + publish by digest against the real engine and two loopback registries.

Registries are read back with the project's client *and* with ``docker buildx imagetools``
(the independent peer).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ci.build import BuildRequest, LegResult, prepare, run_leg
from ci.errors import EngineError
from ci.manifest import DOCKER_MANIFEST
from ci.naming import Family
from ci.reference import parse_image_name
from ci.registry import RegistryClient

pytestmark = [pytest.mark.engine, pytest.mark.registry]
ROOT = Path(__file__).resolve().parents[1]


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
    from ci.engine import Engine

    def run(family: Family, suffix: str, ptag: str, **kw: Any) -> LegResult:
        local = f"localai-ci-test/{unique}-{family}{suffix}:{ptag}"
        made.append(local)
        # a fixed SOURCE_DATE_EPOCH keeps the created label (and so the digest) stable without git
        env = kw.pop("env", {"HOME": str(tmp_path), "SOURCE_DATE_EPOCH": "1700000000",
                             "CI_CACHE_IMAGE": f"{registries[0].host}/{unique}/ci-cache"})
        req = BuildRequest(family=family, tag_suffix=suffix, platform_tag=ptag, matrix=str(mats[family]),
                           images=kw.pop("images", images[family]), digests_dir=str(tmp_path / "digests"),
                           root=str(ROOT), local_tag=local, cache_dir=str(tmp_path / "cache"), **kw)
        res = run_leg(req, env=env, engine=Engine(engine))
        made.append(res.plan.cache_ref)  # pulled into the engine by a rebuild
        return res

    yield run
    for ref in made + [base]:
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
            assert head is not None and head[0] == res.digest and head[1] == DOCKER_MANIFEST
            assert c.list_tags() == []  # pushed by digest only
            body, _, _ = c.get_manifest(res.digest)  # type: ignore[misc]
            cfg = json.loads(c.get_blob(json.loads(body)["config"]["digest"]))
            assert (cfg["os"], cfg["architecture"]) == ("linux", arch)
        ref = f"{c.image}@{res.digest}"
        raw = imagetools.inspect_raw(ref)
        assert raw["mediaType"] == DOCKER_MANIFEST and "manifests" not in raw  # no index, no attestations
        assert imagetools.inspect_image(ref)["architecture"] == arch


def test_backend_legs_publish_by_digest(leg: Any, registries: Any, imagetools: Any, unique: str,
                                        tmp_path: Path) -> None:
    for ptag in ("amd64", "arm64"):
        res = leg(Family.BACKENDS, "-cpu-hello", ptag)
        check_published(res, registries, f"{unique}/backends", imagetools, ptag)
        hex_ = res.digest.split(":")[1]
        assert Path(res.digest_file) == tmp_path / "digests" / f"digests-cpu-hello--{ptag}" / hex_
        assert Path(res.digest_file).stat().st_size == 0
        assert res.bytes_uploaded > 0
        again = leg(Family.BACKENDS, "-cpu-hello", ptag)  # second publish: nothing re-sent
        assert again.digest == res.digest and again.bytes_uploaded == 0
    assert sorted(p.name for p in (tmp_path / "digests").iterdir()) == [
        "digests-cpu-hello--amd64", "digests-cpu-hello--arm64"]


def test_server_core_and_variant(leg: Any, registries: Any, imagetools: Any, unique: str, tmp_path: Path) -> None:
    core = leg(Family.SERVER, "", "arm64")
    check_published(core, registries, f"{unique}/server", imagetools, "arm64")
    assert Path(core.digest_file).parent.name == "digests-localai-core--arm64"
    vk = leg(Family.SERVER, "-gpu-vulkan", "amd64")
    check_published(vk, registries, f"{unique}/server", imagetools, "amd64")
    assert Path(vk.digest_file).parent.name == "digests-localai-gpu-vulkan--amd64"
    assert vk.digest_file.endswith(vk.digest.split(":")[1])


def test_anchor_tags_every_target(leg: Any, registries: Any, unique: str) -> None:
    res = leg(Family.BACKENDS, "-cpu-echo", "amd64", anchor=True, run_id="4242")
    for c in clients(registries, f"{unique}/backends"):
        with c:
            assert c.list_tags() == ["keepalive-4242-cpu-echo-amd64"]
            assert c.head_manifest("keepalive-4242-cpu-echo-amd64")[0] == res.digest  # type: ignore[index]


def test_pull_request_writes_no_digest_file(leg: Any, registries: Any, unique: str, tmp_path: Path) -> None:
    built = leg(Family.BACKENDS, "-cpu-echo", "amd64", event="pull_request")
    assert built.digest == "" and not (tmp_path / "digests").exists()
    pr_repo = f"{registries[0].host}/{unique}/ci-tests"
    pushed = leg(Family.BACKENDS, "-cpu-echo", "amd64", event="pull_request", username="u", password="secret-pw",
                 env={"HOME": str(tmp_path), "CI_PR_IMAGE": pr_repo, "GITHUB_REF": "refs/pull/31/merge"})
    assert pushed.digest and not (tmp_path / "digests").exists()
    with RegistryClient(parse_image_name(pr_repo), plain_http=True) as c:
        assert c.list_tags() == ["pr-31-cpu-echo-amd64"]
    for c in clients(registries, f"{unique}/backends"):
        with c:
            assert c.list_tags() == [] and c.head_manifest(pushed.digest) is None


def test_arch_mismatch_fails_without_digest_file(engine: Any, registries: Any, tmp_path: Path,
                                                  unique: str) -> None:
    """FROM scratch + a cached amd64 step: the classic builder returns amd64 for an arm64 leg."""
    from ci.engine import Engine

    ctx = tmp_path / "scratch"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
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
    base-image: 'scratch'
    skip-drivers: 'false'
    backend: 'scratch'
    dockerfile: 'scratch/Dockerfile'
    context: 'scratch'
    ubuntu-version: '2404'
""")
    eng = Engine(engine)
    tags = [f"localai-ci-test/{unique}:amd64", f"localai-ci-test/{unique}:arm64"]
    req = BuildRequest(family=Family.BACKENDS, tag_suffix="-cpu-scratch", platform_tag="arm64",
                       matrix=str(matrix), root=str(tmp_path), images=f"{registries[0].host}/{unique}/b",
                       digests_dir=str(tmp_path / "digests"), local_tag=tags[1], cache_dir=str(tmp_path / "cache"))
    env = {"HOME": str(tmp_path), "SOURCE_DATE_EPOCH": "0"}
    plan, _ = prepare(req, env)
    try:
        # the same steps built for amd64 first: the arm64 build reuses them from the build cache
        eng.build(path=plan.context, dockerfile=plan.dockerfile, buildargs=dict(plan.build_args),
                  platform="linux/amd64", labels=dict(plan.labels), tag=tags[0])
        with pytest.raises(EngineError) as err:
            run_leg(req, env=env, engine=eng)
    finally:
        for t in tags:
            try:
                engine.images.remove(t, force=True)
            except Exception:
                pass
    msg = str(err.value)
    assert "is linux/amd64, but the leg's platform is linux/arm64" in msg
    assert "classic builder" in msg and "native arm64 runner (runs-on: ubuntu-24.04-arm)" in msg
    assert not (tmp_path / "digests").exists()


def test_registry_cache_is_published_and_used(leg: Any, engine: Any, registries: Any, unique: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """After a publish the cache repository holds cache<suffix>-<ptag> -> the leg's digest (blobs mounted,
    same registry); a rebuild in an engine without the image pulls it and reuses its steps."""
    first = leg(Family.BACKENDS, "-cpu-hello", "amd64")
    assert first.cache_from == () and first.cache_warning == ""  # nothing to pull yet
    cache_repo = parse_image_name(f"{registries[0].host}/{unique}/ci-cache")
    assert first.plan.cache_ref == cache_repo.with_tag("cache-cpu-hello-amd64")
    with RegistryClient(cache_repo, plain_http=True) as c:
        assert c.list_tags() == ["cache-cpu-hello-amd64"]
        assert c.head_manifest("cache-cpu-hello-amd64")[0] == first.digest  # type: ignore[index]
        assert c.bytes_uploaded == 0
    out = capsys.readouterr().out
    assert f"registry cache: {first.plan.cache_ref}" in out
    # a fresh engine state: the built image (and its intermediate steps) gone, only the registry has it
    engine.images.remove(first.plan.local_tag, force=True)
    again = leg(Family.BACKENDS, "-cpu-hello", "amd64")
    log = capsys.readouterr()
    assert again.cache_from == (first.plan.cache_ref,)
    assert f"pulled the registry cache {first.plan.cache_ref}" in log.out
    assert "Using cache" in log.err  # the build log (BuildProgress writes to stderr)
    assert again.digest == first.digest and again.bytes_uploaded == 0


def test_registry_cache_failure_is_a_warning(leg: Any, registries: Any, unique: str, tmp_path: Path) -> None:
    dead = "127.0.0.1:9/cache"  # discard port: nothing listens, pull and push both fail
    res = leg(Family.BACKENDS, "-cpu-echo", "amd64",
              env={"HOME": str(tmp_path), "SOURCE_DATE_EPOCH": "1700000000", "CI_CACHE_IMAGE": dead})
    assert res.digest and Path(res.digest_file).exists() and res.cache_from == ()
    assert "registry cache 127.0.0.1:9/cache:cache-cpu-echo-amd64 not updated" in res.cache_warning
