"""Merge verb (localai_ci.merge.run): pure checks, and integration against two real loopback registries."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.growth import assert_linear
from tests.support.paths import REPO

from localai_ci.github.artifacts import DigestArtifact, write_digest_file
from localai_ci.cli import main
from localai_ci.errors import MatrixError, UserError
from localai_ci.settings import family_config
from localai_ci.oci.manifest import compose_index
from localai_ci.matrix.model import load_matrix, parse_matrix
from localai_ci.merge.model import MergeOptions, MergeReport, Outcome, SuffixResult, MergeTarget, _Skip
from localai_ci.merge.plan import check_legs, tag_latest_of
from localai_ci.merge.pool import ClientPool
from localai_ci.merge.render import summary_markdown
from localai_ci.merge.run import FamilySetup, merge_all
from localai_ci.oci.manifest import config_platform
from localai_ci.matrix.naming import Family, LegKey, keepalive_tag
from localai_ci.oci.platforms import parse_platform
from localai_ci.oci.reference import ImageName
from localai_ci.oci.client import RegistryClient
from localai_ci.matrix.tags import TagSource
from tests.support.faultproxy import FaultProxy
from tests.support.oci_images import client, matrix_text, push_image, resolve, tags_of, write_matrix
from tests.support.tcprelay import TcpRelay

SHA = "89abcdef0123456789abcdef0123456789abcdef"
BRANCH = ["--ref", "refs/heads/master", "--sha", SHA, "--event", "push"]


# ---- pure ------------------------------------------------------------------------------------

def _target(legs: list[tuple[str, str]], arts: list[str], suffix: str = "-a", family: Family = Family.BACKENDS) -> MergeTarget:
    m = parse_matrix(matrix_text(legs, family), "m.yml", family)
    cfg = family_config(family, images="127.0.0.1:1/x")
    art = tuple(DigestArtifact(LegKey(family, suffix, p), "sha256:" + "0" * 64, Path(f"/d/digests{suffix}--{p}/x"))
                for p in arts)
    return MergeTarget(family, suffix, cfg, m, art)


def test_check_legs_ok_missing_and_foreign() -> None:
    assert [e.ptag for e in check_legs(_target([("-a", "amd64"), ("-a", "arm64")], ["amd64", "arm64"]))] == ["amd64", "arm64"]
    with pytest.raises(_Skip, match="arm64 have no digest artifact"):
        check_legs(_target([("-a", "amd64"), ("-a", "arm64")], ["amd64"]))
    with pytest.raises(UserError, match="not legs of this suffix"):
        check_legs(_target([("-a", "amd64")], ["amd64", "arm64"]))
    with pytest.raises(UserError, match="declares no leg"):
        check_legs(_target([("-b", "amd64")], ["amd64"]))


def test_tag_latest_must_agree_one_rule_for_merge_matrix_github_and_lint() -> None:
    from localai_ci.github.jobs import merge_elements
    from localai_ci.matrix.lint import lint_matrix

    m = parse_matrix(matrix_text([("-a", "amd64"), ("-a", "arm64")], latest={("-a", "arm64"): "false"}), "m.yml")
    with pytest.raises(MatrixError, match="disagree on tag-latest") as merged:
        tag_latest_of(m.legs_of("-a"), "tag-suffix '-a'")
    with pytest.raises(MatrixError) as planned:
        merge_elements(m.legs_of("-a"))
    assert str(merged.value) == str(planned.value)  # the same rule, the same words
    assert "amd64 (line" in str(merged.value) and "arm64 (line" in str(merged.value) and "'false'" in str(merged.value)
    found = [f for f in lint_matrix(m).findings if f.rule == "tag-latest-disagrees"]
    assert [(f.line, f.ptag) for f in found] == [(m.find("-a", "arm64").line, "arm64")]


def test_config_platform_and_core_suffix() -> None:
    assert config_platform(b'{"os":"linux","architecture":"arm64"}') == parse_platform("linux/arm64")
    assert config_platform(b'{"os":"unknown","architecture":"unknown"}') is None
    assert config_platform(b"not json") is None


def test_summary_lists_merged_per_registry_and_skipped_with_reason() -> None:
    rep = MergeReport((
        SuffixResult(Family.BACKENDS, "-a", Outcome.MERGED, digest="sha256:" + "1" * 64, tags=("master-a",),
                     images=("r1/x", "r2/x")),
        SuffixResult(Family.BACKENDS, "-b", Outcome.SKIPPED, reason="leg(s) arm64 have no digest artifact"),
    ))
    md = summary_markdown(rep)
    assert md.count("sha256:" + "1" * 64) == 2 and "r2/x" in md and "arm64 have no digest artifact" in md
    assert rep.exit_code == 0
    assert MergeReport((SuffixResult(Family.BACKENDS, "-c", Outcome.FAILED, reason="x"),)).exit_code == 1


# ---- integration -----------------------------------------------------------------------------

class World:
    """Two repositories (one per registry), a digests dir and matrices, for one test."""

    def __init__(self, tmp: Path, hosts: tuple[str, str], unique: str, family: Family = Family.BACKENDS) -> None:
        self.family = family
        name = "backends" if family is Family.BACKENDS else "localai"
        self.images = [f"{h}/{unique}/{name}" for h in hosts]
        self.digests = tmp / "digests"
        self.matrix = tmp / f"matrix-{family}.yml"
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)

    def leg(self, suffix: str, ptag: str, *, seed: str = "", images: list[str] | None = None,
            config_platform: str | None = None) -> str:
        d = push_image(images or self.images, f"linux/{ptag}", seed or f"{suffix}{ptag}{self.images[0]}",
                       config_platform=config_platform)
        write_digest_file(self.digests, LegKey(self.family, suffix, ptag), d.digest)
        return d.digest

    def args(self, *extra: str) -> list[str]:
        return ["merge", "--family", str(self.family), "--digests-dir", str(self.digests),
                "--matrix", str(self.matrix), "--images", ",".join(self.images), *BRANCH, *extra]

    def list_of(self, image: str, tag: str) -> dict:
        with client(image) as c:
            got = c.get_manifest(tag)
        assert got is not None, f"{image}:{tag} does not resolve"
        return json.loads(got[0])


@pytest.fixture
def world(tmp_path: Path, registries, unique: str) -> World:  # type: ignore[no-untyped-def]
    return World(tmp_path, (registries[0].host, registries[1].host), unique)


def run(capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    code = main(argv, env=env or {})
    out, err = capsys.readouterr()
    return code, out, err


def platforms_of(lst: dict) -> list[str]:
    return sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in lst["manifests"])


@pytest.mark.registry
def test_two_leg_backend_merges_into_both_registries(world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    a, b = world.leg("-cpu-hello", "amd64"), world.leg("-cpu-hello", "arm64")
    summary = tmp_path / "summary.md"
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-hello"), {"GITHUB_STEP_SUMMARY": str(summary)})
    assert code == 0, err
    digests = {resolve(img, t) for img in world.images for t in ("master-cpu-hello", "sha-89abcde-cpu-hello")}
    assert len(digests) == 1
    digest = digests.pop()
    assert digest in out
    lst = world.list_of(world.images[1], "master-cpu-hello")
    assert {m["digest"] for m in lst["manifests"]} == {a, b}
    assert platforms_of(lst) == ["linux/amd64", "linux/arm64"]
    assert "latest-cpu-hello" not in tags_of(world.images[0])  # branch push, latest=auto
    md = summary.read_text()
    assert digest in md and world.images[0] in md and world.images[1] in md


@pytest.mark.registry
def test_arm64_v8_child_merges_and_inspects_as_arm64(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Images built from official arm64 bases carry variant v8 in their config; the matrix says linux/arm64."""
    write_matrix(world.matrix, [("-cpu-v8", "amd64"), ("-cpu-v8", "arm64")])
    world.leg("-cpu-v8", "amd64")
    world.leg("-cpu-v8", "arm64", config_platform="linux/arm64/v8")
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-v8"))
    assert code == 0, err
    lst = world.list_of(world.images[0], "master-cpu-v8")
    assert {(m["platform"]["architecture"], m["platform"].get("variant", "")) for m in lst["manifests"]} == {
        ("amd64", ""), ("arm64", "v8")}  # the descriptor says what the config says
    code, out, err = run(capsys, ["inspect", *[f"{img}:master-cpu-v8" for img in world.images],
                                  "--expect-platforms", "linux/amd64,linux/arm64"])
    assert code == 0, out + err


@pytest.mark.registry
def test_single_leg_backend_is_merged_and_tagged(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-echo", "amd64")])
    a = world.leg("-cpu-echo", "amd64")
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-echo", "--ref", "refs/tags/v3.4.0"))
    assert code == 0, err
    for img in world.images:
        assert set(tags_of(img)) == {"v3.4.0-cpu-echo", "sha-89abcde-cpu-echo", "latest-cpu-echo"}
    assert [m["digest"] for m in world.list_of(world.images[0], "latest-cpu-echo")["manifests"]] == [a]


@pytest.mark.registry
def test_server_core_and_suffixed_variant(tmp_path: Path, registries, unique: str,  # type: ignore[no-untyped-def]
                                          capsys: pytest.CaptureFixture[str]) -> None:
    w = World(tmp_path, (registries[0].host, registries[1].host), unique, Family.SERVER)
    write_matrix(w.matrix, [("", "amd64"), ("", "arm64"), ("-gpu-vulkan", "amd64")], Family.SERVER)
    w.leg("", "amd64"), w.leg("", "arm64"), w.leg("-gpu-vulkan", "amd64")
    assert sorted(p.name for p in w.digests.iterdir()) == [
        "digests-localai-core--amd64", "digests-localai-core--arm64", "digests-localai-gpu-vulkan--amd64"]
    code, out, err = run(capsys, w.args("--tag-suffix", "-core"))
    assert code == 0, err
    assert platforms_of(w.list_of(w.images[0], "master")) == ["linux/amd64", "linux/arm64"]
    code, out, err = run(capsys, w.args("--tag-suffix", "-gpu-vulkan"))
    assert code == 0, err
    assert platforms_of(w.list_of(w.images[1], "master-gpu-vulkan")) == ["linux/amd64"]
    assert set(tags_of(w.images[0])) == {"master", "sha-89abcde", "master-gpu-vulkan", "sha-89abcde-gpu-vulkan"}


@pytest.mark.registry
@pytest.mark.engine
def test_both_engines_give_same_children_platforms_and_tags(tmp_path: Path, registries, unique: str,  # type: ignore[no-untyped-def]
                                                            capsys: pytest.CaptureFixture[str], imagetools) -> None:
    hosts = (registries[0].host, registries[1].host)
    results = {}
    for engine in ("native", "imagetools"):
        w = World(tmp_path / engine, hosts, f"{unique}{engine[:3]}")
        write_matrix(w.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
        # the same children in both worlds: the same seeds
        w.leg("-cpu-hello", "amd64", seed="same-amd64"), w.leg("-cpu-hello", "arm64", seed="same-arm64")
        code, out, err = run(capsys, w.args("--tag-suffix", "-cpu-hello", "--engine", engine, "--ref", "refs/tags/v1.2.3"))
        assert code == 0, f"{engine}: {err}"
        per_reg = []
        for img in w.images:
            raw = imagetools.inspect_raw(f"{img}:v1.2.3-cpu-hello")  # read back by the peer tool
            per_reg.append(sorted((m["digest"], m["platform"]["os"], m["platform"]["architecture"]) for m in raw["manifests"]))
            assert tags_of(img) == sorted(["v1.2.3-cpu-hello", "sha-89abcde-cpu-hello", "latest-cpu-hello"])
        assert per_reg[0] == per_reg[1]
        digests = {resolve(img, "v1.2.3-cpu-hello") for img in w.images}
        assert len(digests) == 1, f"{engine}: list digests differ between registries: {digests}"
        results[engine] = (per_reg[0], tuple(tags_of(w.images[0])))
    assert results["native"] == results["imagetools"]


@pytest.mark.registry
def test_remerge_is_a_noop_with_the_same_digest(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    world.leg("-cpu-hello", "amd64"), world.leg("-cpu-hello", "arm64")
    code, first, err = run(capsys, world.args("--tag-suffix", "-cpu-hello"))
    assert code == 0, err
    digest = resolve(world.images[0], "master-cpu-hello")
    code, second, err = run(capsys, world.args("--tag-suffix", "-cpu-hello"))
    assert code == 0, err
    assert "unchanged" in second and digest in second
    assert first.splitlines()[0].startswith("merged:")
    assert {resolve(img, "master-cpu-hello") for img in world.images} == {digest}


@pytest.mark.registry
def test_all_skips_a_suffix_with_a_missing_leg_and_merges_the_others(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64"), ("-cpu-hello-extra", "amd64"),
                                ("-cpu-hello-extra", "arm64"), ("-cpu-echo", "amd64")])
    world.leg("-cpu-hello", "amd64"), world.leg("-cpu-hello", "arm64")
    world.leg("-cpu-hello-extra", "amd64")  # its arm64 build failed: no artifact
    world.leg("-cpu-echo", "amd64")
    code, out, err = run(capsys, world.args("--all", "--jobs", "3"))
    assert code == 0, err  # skipped is not failed
    assert "skipped: -cpu-hello-extra: leg(s) arm64 have no digest artifact" in out
    assert "1 skipped, 0 failed" in out and "2 merged" in out
    tags = tags_of(world.images[1])
    assert "master-cpu-hello" in tags and "master-cpu-echo" in tags
    assert not any("extra" in t for t in tags)


@pytest.mark.registry
def test_all_exit_1_when_one_suffix_fails_and_the_others_still_merge(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-echo", "amd64")])
    world.leg("-cpu-hello", "amd64")
    world.leg("-cpu-echo", "amd64", images=world.images[:1])  # never reached the second registry
    code, out, err = run(capsys, world.args("--all"))
    assert code == 1
    assert "failed: -cpu-echo" in out and "missing from" in out and "error: -cpu-echo" in err
    assert "master-cpu-hello" in tags_of(world.images[1])
    assert "master-cpu-echo" not in tags_of(world.images[0])


@pytest.mark.registry
def test_child_deleted_from_one_registry_fails_preflight_and_writes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    world.leg("-cpu-hello", "amd64")
    gone = world.leg("-cpu-hello", "arm64")
    with client(world.images[1]) as c:
        c.delete_manifest(gone)  # garbage-collected untagged manifest
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-hello"))
    assert code == 1
    assert gone in err and world.images[1] in err and "nothing was written" in err
    assert "garbage-collect" in err and "--anchor" in err
    assert tags_of(world.images[0]) == [] and tags_of(world.images[1]) == []


@pytest.mark.registry
def test_prefix_sibling_suffix_is_never_picked_up(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64"),
                                ("-cpu-hello-extra", "amd64"), ("-cpu-hello-extra", "arm64")])
    mine = {world.leg("-cpu-hello", "amd64"), world.leg("-cpu-hello", "arm64")}
    world.leg("-cpu-hello-extra", "amd64"), world.leg("-cpu-hello-extra", "arm64")
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-hello"))
    assert code == 0, err
    assert {m["digest"] for m in world.list_of(world.images[0], "master-cpu-hello")["manifests"]} == mine
    assert not any("extra" in t for t in tags_of(world.images[0]))


@pytest.mark.registry
def test_dry_run_prints_list_tags_targets_and_writes_nothing(world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    a, b = world.leg("-cpu-hello", "amd64"), world.leg("-cpu-hello", "arm64")
    summary = tmp_path / "s.md"
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-hello", "--dry-run", "--engine", "imagetools"),
                         {"GITHUB_STEP_SUMMARY": str(summary)})
    assert code == 0, err
    assert a in out and b in out and '"manifests"' in out
    assert f"{world.images[1]}:master-cpu-hello" in out and "docker buildx imagetools create -t" in out
    assert tags_of(world.images[0]) == [] and not summary.exists()


@pytest.mark.registry
def test_preflight_refuses_a_list_child_and_a_platform_mismatch(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    world.leg("-cpu-hello", "amd64")
    world.leg("-cpu-hello", "arm64", config_platform="linux/amd64")  # an amd64 image published as the arm64 leg
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-hello"))
    assert code == 1 and "the matrix declares linux/arm64" in err
    # a manifest list given as a child
    child = push_image(world.images, "linux/amd64", "x")
    lst = compose_index([child])
    for img in world.images:
        with client(img) as c:
            c.put_manifest(lst.digest, lst.body, lst.media_type)
    write_digest_file(world.digests, LegKey(Family.BACKENDS, "-cpu-hello", "arm64"), lst.digest)
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-hello"))
    assert code == 1 and "is a manifest list" in err
    assert tags_of(world.images[0]) == []


@pytest.mark.registry
def test_missing_suffix_and_wrong_family_hint(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    write_matrix(world.matrix, [("-cpu-hello", "amd64")])
    world.leg("-cpu-hello", "amd64")
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-nope"))
    assert code == 2 and "no digest artifact for -cpu-nope" in err


@pytest.mark.registry
def test_one_registry_down_writes_nothing_anywhere(tmp_path: Path, registry_factory: Callable, unique: str,  # type: ignore[type-arg]
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    up, down = registry_factory(), registry_factory()
    w = World(tmp_path, (up.host, down.host), unique)
    write_matrix(w.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    w.leg("-cpu-hello", "amd64"), w.leg("-cpu-hello", "arm64")
    down.stop()
    code, out, err = run(capsys, w.args("--tag-suffix", "-cpu-hello"))
    assert code == 1 and down.host in err and "nothing was written" in err
    assert tags_of(w.images[0]) == []
    down.start()
    code, out, err = run(capsys, w.args("--tag-suffix", "-cpu-hello"))  # once it is back, a re-run completes
    assert code == 0, err
    assert resolve(w.images[0], "master-cpu-hello") == resolve(w.images[1], "master-cpu-hello")


@pytest.mark.registry
def test_anchor_cleanup_touches_only_exact_keepalive_tags_and_never_fails(world: World, capsys: pytest.CaptureFixture[str],
                                                                        unique: str) -> None:
    """The merge looks for its anchors in the cache repository (where builds put them) by exact name."""
    cache = f"{world.images[0].split('/', 1)[0]}/{unique}/ci-cache"
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello-extra", "amd64")])
    d = world.leg("-cpu-hello", "amd64", images=[*world.images, cache])
    e = world.leg("-cpu-hello-extra", "amd64", images=[*world.images, cache])
    mine = keepalive_tag("42", Family.BACKENDS, "-cpu-hello", "amd64")
    sibling = keepalive_tag("42", Family.BACKENDS, "-cpu-hello-extra", "amd64")
    assert sibling.startswith(mine.rsplit("-", 1)[0])  # a prefix match would over-match
    with client(cache) as c:
        for tag, dig in ((mine, d), (sibling, e)):
            got = c.get_manifest(dig)
            assert got is not None
            c.put_manifest(tag, got[0], got[1])
    code, out, err = run(capsys, world.args("--tag-suffix", "-cpu-hello", "--anchor", "--run-id", "42"),
                         env={"CI_CACHE_IMAGE": cache})
    assert code == 0, err
    tags = tags_of(cache)
    assert sibling in tags
    # distribution 2.x cannot delete a tag alone: reported, the merge still succeeds
    assert (mine not in tags and "keepalive tag deleted" in out) or (mine in tags and "not deleted" in out)
    assert resolve(world.images[0], d) == d  # the child itself is never deleted


@pytest.mark.registry
def test_merge_all_verb_runs_suffixes_concurrently(world: World) -> None:
    legs = [(f"-cpu-s{i}", p) for i in range(6) for p in ("amd64", "arm64")]
    write_matrix(world.matrix, legs)
    for s, p in legs:
        world.leg(s, p)
    from localai_ci.matrix.model import load_matrix
    setup = FamilySetup(family_config(Family.BACKENDS, images=",".join(world.images)), load_matrix(world.matrix))
    seen: list[str] = []
    rep = merge_all(world.digests, {Family.BACKENDS: setup},
                    MergeOptions(tag_source=TagSource("push", "refs/heads/main", SHA), jobs=4),
                    on_result=lambda r: seen.append(r.suffix))
    assert rep.exit_code == 0 and len(seen) == 6
    assert all(r.outcome is Outcome.MERGED and len(r.platforms) == 2 for r in rep.results)


@pytest.mark.registry
def test_local_merge_tags_from_the_checkout_like_the_pipeline(world: World, capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No GITHUB_REF/GITHUB_SHA and no --ref/--sha: the checkout's branch and HEAD give the tags."""
    import subprocess

    repo = tmp_path / "checkout"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "feature/x"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "c"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    write_matrix(world.matrix, [("-cpu-local", "amd64")])
    world.leg("-cpu-local", "amd64")
    argv = [a for a in world.args("--tag-suffix", "-cpu-local") if a not in BRANCH]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert f"tags from this checkout (ref refs/heads/feature/x, sha {sha[:7]})" in err
    assert set(tags_of(world.images[0])) == {"feature-x-cpu-local", f"sha-{sha[:7]}-cpu-local"}


# ---- requests and connections ------------------------------------------------------------------
@pytest.mark.registry
def test_merge_all_sends_the_counted_requests_over_one_connection_per_worker_and_registry(
        tmp_path: Path, registries, unique: str) -> None:  # type: ignore[no-untyped-def]
    """Six suffixes, two at a time, through a request-counting proxy behind a connection-counting
    relay per registry: each suffix costs exactly the requests of the localai_ci.merge.run docstring (nothing
    fetched twice; each PUT read back once), the results report them, and the clients' keep-alive
    connections serve suffix after suffix (one per worker and registry, not one per suffix)."""
    suffixes = [f"-cpu-r{i}" for i in range(6)]
    direct = [f"{r.host}/{unique}/backends" for r in registries]
    world = World(tmp_path, (registries[0].host, registries[1].host), unique)
    write_matrix(world.matrix, [(s, p) for s in suffixes for p in ("amd64", "arm64")])
    for s in suffixes:
        for p in ("amd64", "arm64"):
            d = push_image(direct, f"linux/{p}", f"{unique}{s}{p}")
            write_digest_file(world.digests, LegKey(Family.BACKENDS, s, p), d.digest)
    jobs = 2
    options = MergeOptions(tag_source=TagSource("push", "refs/heads/main", SHA), jobs=jobs)
    proxies = [FaultProxy(r.host, lifetime=120).start() for r in registries]
    relays = [TcpRelay(p.host).start() for p in proxies]
    try:
        images = ",".join(f"{r.host}/{unique}/backends" for r in relays)
        setup = FamilySetup(family_config(Family.BACKENDS, images=images), load_matrix(world.matrix))
        first = merge_all(world.digests, {Family.BACKENDS: setup}, options)
        assert first.exit_code == 0, [r.reason for r in first.results]
        tags = first.results[0].tags
        assert len(tags) == 2  # main-<suffix>, sha-<sha7>-<suffix>
        # first registry (the children's reader): 2 child GETs + 2 config GETs, HEAD of the first tag,
        # 2 x (PUT + HEAD), GET of the digest; second registry: 2 child HEADs, HEAD, 2 x (PUT + HEAD), GET of the digest
        assert [r.requests for r in first.results] == [6 + 2 * 2 + 4 + 2 * 2] * len(suffixes)
        assert sum(p.requests for p in proxies) == sum(r.requests for r in first.results)
        assert all(1 <= r.accepted <= jobs for r in relays), [r.accepted for r in relays]  # not one per suffix
        puts = [(m, path) for p in proxies for m, path, _ in p.seen if m == "PUT"]
        assert len(puts) == len(suffixes) * len(tags) * 2
        by_tag = [(m, path) for p in proxies for m, path, _ in p.seen if "/manifests/" in path
                  and "sha256:" not in path.rsplit("/", 1)[-1]]
        assert [m for m, _ in by_tag].count("HEAD") == len(puts) + 2 * len(suffixes)  # each PUT, and each first tag
        assert "GET" not in [m for m, _ in by_tag]  # a tag is never GET: HEAD answers its digest
        # manifest GETs (Docker Hub's pulls): the reader 2 children + the list, every other registry the list only
        counted = [p.routes[("GET", "manifests")] for p in proxies]
        assert counted == [3 * len(suffixes), len(suffixes)], counted
        hosts = [r.host for r in relays]
        assert first.manifest_gets() == {hosts[0]: 3 * len(suffixes), hosts[1]: len(suffixes)}
        assert f"manifest GETs: {hosts[0]} {3 * len(suffixes)}, {hosts[1]} {len(suffixes)}" in first.requests_line()

        again = merge_all(world.digests, {Family.BACKENDS: setup}, options)  # a re-run writes nothing
        assert all(r.outcome is Outcome.MERGED and not r.changed for r in again.results)
        assert [r.requests for r in again.results] == [5 + 2 + 3 + 2] * len(suffixes)  # the tags HEADed, the list GET
        assert all(r.accepted <= 2 * jobs for r in relays), [r.accepted for r in relays]  # a new pool per run
    finally:
        for relay in relays:
            relay.stop()
        for proxy in proxies:
            proxy.stop()
    for img in direct:
        for s in suffixes:
            assert world.list_of(img, f"main{s}")["manifests"]


def test_children_are_read_where_a_manifest_get_is_no_pull(tmp_path: Path, registries, unique: str,  # type: ignore[no-untyped-def]
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Docker Hub counts every manifest GET against the pull limit: with the Docker Hub stand-in named first
    and in CI_PULL_COUNTED_REGISTRIES, the children's manifests are read from the other registry; the
    stand-in gets one GET per suffix (the list, by digest, read back) and HEADs; the summary says so."""
    proxies = [FaultProxy(r.host, lifetime=120).start() for r in registries]
    try:
        hub, quay = proxies[1].host, proxies[0].host
        world = World(tmp_path, (hub, quay), unique)  # the pull-counted registry first in --images
        write_matrix(world.matrix, [("-cpu-a", "amd64"), ("-cpu-a", "arm64")])
        for ptag in ("amd64", "arm64"):
            world.leg("-cpu-a", ptag, images=[f"{r.host}/{unique}/backends" for r in registries])
        summary = tmp_path / "summary.md"
        before = [p.routes[("GET", "manifests")] for p in proxies]
        code, out, err = run(capsys, world.args("--tag-suffix=-cpu-a"),
                             {"CI_PULL_COUNTED_REGISTRIES": hub, "GITHUB_STEP_SUMMARY": str(summary)})
        assert code == 0, out + err
        gets = [p.routes[("GET", "manifests")] - b for p, b in zip(proxies, before)]
        assert gets == [3, 1], gets  # quay: 2 children + the list; hub: the list
        line = f"manifest GETs: {hub} 1 (counted against its pull limit), {quay} 3"
        assert line in out and line in summary.read_text(), out
        code, out, err = run(capsys, world.args("--tag-suffix=-cpu-a"), {"CI_PULL_COUNTED_REGISTRIES": "not a host!"})
        assert code == 2 and "CI_PULL_COUNTED_REGISTRIES: 'not a host!' is not a registry host" in err, err
    finally:
        for p in proxies:
            p.stop()


def test_client_pool_reuses_idle_clients_and_closes_failed_ones() -> None:
    """No network: clients are only made, leased, given back and closed."""
    made: list[RegistryClient] = []

    def factory(img: ImageName, config: object) -> RegistryClient:
        made.append(RegistryClient(img, plain_http=True))
        return made[-1]

    cfg = family_config(Family.BACKENDS, images="127.0.0.1:1/x,127.0.0.1:2/x")
    a, b = cfg.images
    with ClientPool(factory) as pool:
        c1, c2 = pool.lease(a, cfg), pool.lease(a, cfg)  # two threads at once: two clients
        assert c1 is not c2 and pool.made == 2
        pool.give_back(a, cfg, c1)
        assert pool.lease(a, cfg) is c1 and pool.made == 2  # an idle client is reused
        assert pool.lease(b, cfg) is not c1 and pool.made == 3  # one set per registry image
        pool.give_back(a, cfg, c2, reuse=False)  # its suffix failed: closed, never leased again
        assert c2._closed
        pool.give_back(a, cfg, c1)
        assert pool.lease(a, cfg) is c1
        pool.give_back(a, cfg, c1)
    assert c1._closed  # closed with the pool


def test_a_push_to_a_non_ascii_branch_is_merged_and_tagged_as_metadata_action_tags_it(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """``fix-ü`` is a valid git branch: the merge tags it ``fix---cpu-hello`` (metadata-action's sanitizeTag),
    from the Actions environment, instead of refusing the ref with exit 2 and tagging nothing."""
    write_matrix(world.matrix, [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    world.leg("-cpu-hello", "amd64"), world.leg("-cpu-hello", "arm64")
    argv = [a for a in world.args("--tag-suffix", "-cpu-hello") if a not in BRANCH]
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/fix-ü", "GITHUB_SHA": "0123456789abcdef" * 2 + "01234567"}
    code, out, err = run(capsys, argv, env)
    assert code == 0, out + err
    digests = {resolve(img, "fix---cpu-hello") for img in world.images}
    assert len(digests) == 1 and None not in digests, digests
    assert {resolve(img, "sha-0123456-cpu-hello") for img in world.images} == digests


MERGE_ALL = """
import sys, tempfile
from pathlib import Path
sys.path.insert(0, TESTS)
from tests.support.oci_images import write_matrix
from localai_ci.github.artifacts import write_digest_file
from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.merge.plan import check_legs
from localai_ci.merge.run import FamilySetup, discover_targets
from localai_ci.settings import family_config
root = Path(tempfile.mkdtemp())
legs = [(f"-cpu-s{i}", p) for i in range(n) for p in ("amd64", "arm64")]
write_matrix(root / "matrix.yml", legs)
for j, (s, p) in enumerate(legs):
    write_digest_file(root / "digests", LegKey(Family.BACKENDS, s, p), "sha256:" + f"{j:064x}")
setups = {Family.BACKENDS: FamilySetup(config=family_config(Family.BACKENDS, images="127.0.0.1:1/x/y", env={}),
                                       matrix=load_matrix(root / "matrix.yml"))}
only = [s for s, p in legs if p == "amd64"]
def run():
    for chosen in (None, only):
        targets = discover_targets(root / "digests", setups, chosen)
        assert len(targets) == n and [len(check_legs(t)) for t in targets] == [2] * n
"""


def test_merge_all_plans_in_time_linear_in_the_artifacts() -> None:
    """merge --all grew with the square of the artifact count (each suffix's artifacts and legs looked up in
    all of them; 16,000 artifacts: 11-19 s before any request): 600 and 6,000 artifacts, with and without
    --suffixes, ten times as many in about ten times the time."""
    setup = MERGE_ALL.replace("TESTS", repr(str(REPO)))
    assert_linear(setup, "run()", 300, timeout=300, repeat=2)
