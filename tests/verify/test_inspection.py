"""Inspect verb (localai_ci.verify.inspect): pure verification rules, and checks against real registries."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from localai_ci.cli import main
from localai_ci.errors import UserError
from localai_ci.verify.inspect import (ChildObservation, ListObservation, InspectRef, expand_targets, parse_reference, verify)
from localai_ci.oci.manifest import DOCKER_LIST, DOCKER_MANIFEST, Descriptor, compose_index
from localai_ci.oci.platforms import parse_platform
from localai_ci.oci.reference import ImageName
from tests.support.oci_images import client, push_image

D = {k: "sha256:" + k * 64 for k in "abcdef0123"}
AMD, ARM = parse_platform("linux/amd64"), parse_platform("linux/arm64")
R1, R2 = ImageName("127.0.0.1:1", "x/app"), ImageName("127.0.0.1:2", "x/app")


def child(d: str, plat=AMD, cfg=None, found=True, size=10) -> ChildObservation:  # type: ignore[no-untyped-def]
    return ChildObservation(Descriptor(DOCKER_MANIFEST, d, 10, plat), found=found, size=size,
                            config_platform=plat if cfg is None else cfg)


def ob(img: ImageName = R1, digest: str = D["a"], kids=None, tag: str = "v1", **kw) -> ListObservation:  # type: ignore[no-untyped-def]
    kids = (child(D["b"], AMD), child(D["c"], ARM)) if kids is None else kids
    return ListObservation(InspectRef(img, tag), digest=digest, media_type=DOCKER_LIST, is_index=True, children=tuple(kids), **kw)


def checks(obs, expected=(AMD, ARM)) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.check for f in verify(obs, expected)]


def test_good_lists_pass() -> None:
    assert checks([ob(R1), ob(R2)]) == []


def test_resolves() -> None:
    assert checks([ListObservation(InspectRef(R1, "v1"), error="not found in 127.0.0.1:1/x/app")]) == ["resolves"]


def test_is_list() -> None:
    assert checks([ListObservation(InspectRef(R1, "v1"), digest=D["a"], media_type=DOCKER_MANIFEST)]) == ["is-list"]


def test_missing_and_unexpected_platform() -> None:
    fails = verify([ob(kids=(child(D["b"], AMD),))], (AMD, ARM))
    assert [f.check for f in fails] == ["platforms"] and "missing linux/arm64" in fails[0].message
    assert checks([ob()], (AMD,)) == ["platforms"]


def test_duplicate_platform() -> None:
    assert "platforms" in checks([ob(kids=(child(D["b"]), child(D["c"])))], None)


def test_attestation_child() -> None:
    att = ChildObservation(Descriptor(DOCKER_MANIFEST, D["d"], 5, None))
    assert checks([ob(kids=(child(D["b"], AMD), child(D["c"], ARM), att))]) == ["no-attestation"]


def test_same_digest_across_registries() -> None:
    fails = verify([ob(R1, D["a"]), ob(R2, D["e"])], (AMD, ARM))
    assert [f.check for f in fails] == ["same-digest"] and D["a"] in fails[0].message and D["e"] in fails[0].message


def test_tag_must_resolve_to_the_digest_given_with_it() -> None:
    """``--tag <digest> --tag <tag>``: per repository, a tag serving another list fails; other repositories
    (no digest given for them) are not held to it."""
    by_digest, by_tag = ob(R1, D["a"], tag=D["a"]), ob(R1, D["e"], tag="v1")
    fails = verify([by_digest, by_tag], (AMD, ARM))
    assert [f.check for f in fails] == ["tag-matches-digest"]
    assert fails[0].ref == "127.0.0.1:1/x/app:v1" and D["e"] in fails[0].message and D["a"] in fails[0].message
    assert checks([by_digest, ob(R1, D["a"], tag="v1")]) == []
    assert checks([by_digest, ob(R2, D["e"], tag="v2")]) == []


def test_child_resolves_and_child_platform() -> None:
    assert checks([ob(kids=(child(D["b"], AMD), child(D["c"], ARM, found=False)))]) == ["child-resolves"]
    assert checks([ob(kids=(child(D["b"], AMD), child(D["c"], ARM, size=11)))]) == ["child-resolves"]
    assert checks([ob(kids=(child(D["b"], AMD), child(D["c"], ARM, cfg=AMD)))]) == ["child-platform"]


def test_signature_errors_are_failures() -> None:
    assert checks([ob(signature_errors=("no signature",))]) == ["signature"]


def test_reference_parsing() -> None:
    t = parse_reference("127.0.0.1:5000/a/b:v1")
    assert t == InspectRef(ImageName("127.0.0.1:5000", "a/b"), "v1")
    assert parse_reference(f"quay.io/a/b@{D['a']}").reference == D["a"]
    for bad in ("127.0.0.1:5000/a/b", "quay.io/A/b:t", "quay.io/a/b@sha256:12"):
        with pytest.raises(UserError):
            parse_reference(bad)
    assert len(expand_targets([], [R1, R2], ["v1", "v2"])) == 4
    with pytest.raises(UserError, match="nothing to inspect"):
        expand_targets([], [], [])


# ---- integration -----------------------------------------------------------------------------

def _publish_list(images: list[str], tag: str, plats: list[str], seed: str) -> str:
    kids = [push_image(images, p, f"{seed}{p}") for p in plats]
    lst = compose_index(kids)
    for img in images:
        with client(img) as c:
            c.put_manifest(tag, lst.body, lst.media_type)
    return lst.digest


def run(capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    code = main(argv, env=env or {})
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repos(registries, unique: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{r.host}/{unique}/app" for r in registries]


@pytest.mark.registry
def test_inspect_good_list_table_json_and_summary(repos: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    digest = _publish_list(repos, "v1", ["linux/amd64", "linux/arm64"], "good")
    summary = tmp_path / "summary.md"
    code, out, err = run(capsys, ["inspect", "--images", ",".join(repos), "--tag", "v1",
                                  "--expect-platforms", "linux/amd64,linux/arm64"], {"GITHUB_STEP_SUMMARY": str(summary)})
    assert code == 0, out + err
    assert out.count(digest) == 2 and "linux/amd64, linux/arm64" in out and out.rstrip().splitlines()[-1].startswith("ok:")
    assert digest in summary.read_text()
    code, out, err = run(capsys, ["inspect", f"{repos[0]}:v1", f"{repos[1]}:v1", "--format", "json"])
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and {x["digest"] for x in data["lists"]} == {digest}


@pytest.mark.registry
def test_inspect_fails_on_a_missing_platform(repos: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _publish_list(repos, "v1", ["linux/amd64"], "one")
    code, out, err = run(capsys, ["inspect", "--images", ",".join(repos), "--tag", "v1",
                                  "--expect-platforms", "linux/amd64,linux/arm64"])
    assert code == 1
    assert "[platforms]" in out and "missing linux/arm64" in out


@pytest.mark.registry
def test_inspect_fails_when_lists_differ_between_registries(repos: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _publish_list(repos[:1], "v1", ["linux/amd64", "linux/arm64"], "first")
    _publish_list(repos[1:], "v1", ["linux/amd64", "linux/arm64"], "second")
    code, out, err = run(capsys, ["inspect", "--images", ",".join(repos), "--tag", "v1", "--format", "json"])
    data = json.loads(out)
    assert code == 1 and [f["check"] for f in data["failures"]] == ["same-digest"]


@pytest.mark.registry
def test_inspect_fails_on_unresolved_tag_missing_child_and_lying_config(repos: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ["inspect", f"{repos[0]}:nope"])
    assert code == 1 and "[resolves]" in out
    # a child deleted after the merge
    kids = [push_image(repos, p, f"gone{p}") for p in ("linux/amd64", "linux/arm64")]
    lst = compose_index(kids)
    with client(repos[0]) as c:
        c.put_manifest("v2", lst.body, lst.media_type)
        c.delete_manifest(kids[1].digest)
    code, out, err = run(capsys, ["inspect", f"{repos[0]}:v2"])
    assert code == 1 and "[child-resolves]" in out and kids[1].digest in out
    # a child whose config says amd64 listed as arm64
    liar = push_image(repos, "linux/arm64", "liar", config_platform="linux/amd64")
    lst = compose_index([liar])
    with client(repos[0]) as c:
        c.put_manifest("v3", lst.body, lst.media_type)
    code, out, err = run(capsys, ["inspect", f"{repos[0]}:v3"])
    assert code == 1 and "[child-platform]" in out


@pytest.mark.registry
def test_inspect_refuses_attestation_and_single_image(repos: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    good = push_image(repos, "linux/amd64", "att")
    att = push_image(repos, "linux/amd64", "att-manifest", config_platform="linux/amd64")
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": good.digest, "size": good.size,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": DOCKER_MANIFEST, "digest": att.digest, "size": att.size,
         "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": good.digest}},
    ]}).encode()
    with client(repos[0]) as c:
        c.put_manifest("att", body, "application/vnd.oci.image.index.v1+json")
        c.put_manifest("single", *(lambda g: (g[0], g[1]))(c.get_manifest(good.digest)))  # type: ignore[misc]
    code, out, err = run(capsys, ["inspect", f"{repos[0]}:att", f"{repos[0]}:single"])
    assert code == 1 and "[no-attestation]" in out and "[is-list]" in out


def test_inspect_bad_input_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ["inspect", "quay.io/a/b"])
    assert code == 2 and "has no tag or digest" in err
    code, out, err = run(capsys, ["inspect", "quay.io/a/b:t", "--expect-platforms", "linux/amd46"])
    assert code == 2 and "amd46" in err


def test_tag_option_takes_the_merge_output_comma_separated() -> None:
    from localai_ci.verify.inspect import expand_targets
    from localai_ci.oci.reference import parse_image_name

    imgs = [parse_image_name("127.0.0.1:5000/a/b"), parse_image_name("127.0.0.1:5001/a/b")]
    got = expand_targets([], imgs, ["sha256:" + "a" * 64, "master-cpu-x,sha-1234567-cpu-x"])
    assert [t.reference for t in got] == ["sha256:" + "a" * 64] * 2 + ["master-cpu-x"] * 2 + ["sha-1234567-cpu-x"] * 2
