"""Keepalive anchors kept as LocalAI keeps them: in the internal cache repository, never in the
repositories users browse; a merge copies back a child the registry reaped, and deletes the anchors
through Quay's REST API, since Quay's registry API refuses a tag delete (405).

The registry is a real ``docker-registry`` behind a Quay-like front (``hostile.HostileServer``): the
front answers 405 to ``DELETE /v2/<repo>/manifests/<tag>`` as Quay does and serves Quay's REST tag
delete (``DELETE /api/v1/repository/<repo>/tag/<tag>``, Bearer token). The registry's own garbage
collector (``garbage-collect --delete-untagged``) reaps the untagged children between build and merge.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostile import HostileServer, Reply, Request
from localai_ci.build.leg import plan_leg, publish_targets
from localai_ci.cli import main
from localai_ci.git.repo import SourceInfo
from localai_ci.github.actions import Event
from localai_ci.github.artifacts import write_digest_file
from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family, keepalive_tag
from localai_ci.oci.localregistry import find_registry_binary
from localai_ci.oci.reference import ImageName, parse_image_name
from localai_ci.oci.client import RegistryClient
from localai_ci.settings import family_config
from tests.support.oci_images import client, push_image, tags_of, write_matrix

pytestmark = pytest.mark.registry

TOKEN = "quay-oauth-token-31337"
SHA = "89abcdef0123456789abcdef0123456789abcdef"
BRANCH = ["--ref", "refs/heads/master", "--sha", SHA, "--event", "push"]
RUN_ID = "77"
_TAG_DELETE = re.compile(r"/v2/(.+)/manifests/([^/]+)")
_REST_DELETE = re.compile(r"/api/v1/repository/(.+)/tag/([^/]+)")


def quay_rule(upstream: str):  # type: ignore[no-untyped-def]
    """What Quay does that the distribution registry does not (and refuses what it refuses)."""

    def rule(req: Request) -> Reply | None:
        path = req.path.split("?", 1)[0]
        m = _TAG_DELETE.fullmatch(path)
        if req.method == "DELETE" and m and not m.group(2).startswith("sha256:"):
            return Reply(405, [("Content-Type", "application/json")],
                         b'{"errors":[{"code":"UNSUPPORTED","message":"cannot delete a tag"}]}')
        m = _REST_DELETE.fullmatch(path)
        if m:
            if req.method != "DELETE":
                return Reply(405)
            if req.authorization != f"Bearer {TOKEN}":
                return Reply(401, [("Content-Type", "application/json")], b'{"error":"unauthorized"}')
            repo, tag = m.groups()
            # Quay removes the tag and leaves the manifest untagged; the distribution registry behind
            # the front deletes by digest only, which is the same once no other tag names the manifest
            with RegistryClient(ImageName(upstream, repo), plain_http=True) as c:
                head = c.head_manifest(tag)
                if head is None:
                    return Reply(404)
                others = [t for t in c.list_tags() if t != tag and (c.head_manifest(t) or ("",))[0] == head[0]]
                if not others:
                    c.delete_manifest(head[0])
            return Reply(204)
        return None

    return rule


def legs_published(tmp_path: Path, targets: str, cache: str, env: dict[str, str]) -> tuple[Path, Path, dict[str, str]]:
    """A two-leg suffix planned with --anchor and pushed where its plan says (a tiny image of each
    leg's platform stands in for the built one); its digest files. Returns (matrix, digests, digests)."""
    matrix = tmp_path / "matrix.yml"
    write_matrix(matrix, [("-cpu-x", "amd64"), ("-cpu-x", "arm64")])
    config = family_config(Family.BACKENDS, images=targets, env=env)
    digests = tmp_path / "digests"
    out = {}
    for e in load_matrix(matrix):
        plan = plan_leg(e, config, root=tmp_path, source=SourceInfo("", "", ""), event=Event(name="push"),
                        anchor=True, run_id=RUN_ID, anchor_in=frozenset({parse_image_name(cache).registry}), push=True)
        pushed = push_image([t.image for t in publish_targets(plan)], str(e.platform), f"-cpu-x{e.ptag}{tmp_path}")
        for t in publish_targets(plan):
            for tag in t.tags:
                with client(t.image) as c:
                    got = c.get_manifest(pushed.digest)
                    assert got is not None
                    c.put_manifest(tag, got[0], got[1])
        write_digest_file(digests, e.key, pushed.digest)
        out[e.ptag] = pushed.digest
    return matrix, digests, out


def garbage_collect(reg: Any) -> None:
    """The registry's own collector, deleting untagged manifests (what Quay does within hours)."""
    reg.stop()
    done = subprocess.run([find_registry_binary() or "docker-registry", "garbage-collect", "--delete-untagged",
                           str(reg.root / "config.yml")], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    reg.start()


def test_anchors_live_in_the_cache_repository_and_survive_garbage_collection(
        tmp_path: Path, registry_factory: Any, registries: Any, unique: str) -> None:
    reg = registry_factory()
    with HostileServer("127.0.0.7", quay_rule(reg.host), upstream=reg.host, lifetime=300) as quay:
        quay.start()
        target, hub = f"{quay.host}/{unique}/backends", f"{registries[1].host}/{unique}/backends"
        cache = f"{quay.host}/{unique}/ci-cache"
        env = {"CI_CACHE_IMAGE": cache, "CI_QUAY_REGISTRIES": quay.host, "QUAY_TOKEN": TOKEN,
               "CI_ANCHOR_REGISTRIES": quay.host}
        # the repository users browse holds other images already (the registry's collector also
        # refuses a repository without any tag: distribution/distribution#3178)
        other = push_image([target], "linux/amd64", "an earlier release")
        with client(target) as c:
            got = c.get_manifest(other.digest)
            assert got is not None
            c.put_manifest("v1.0.0", got[0], got[1])
        matrix, digests, legs = legs_published(tmp_path, f"{target},{hub}", cache, env)
        anchors = sorted(keepalive_tag(RUN_ID, Family.BACKENDS, "-cpu-x", p) for p in legs)
        assert tags_of(target) == ["v1.0.0"] and tags_of(hub) == []  # users' repositories get no anchor
        assert sorted(tags_of(cache)) == anchors

        garbage_collect(reg)  # the untagged children in the target are reaped; the anchored copies live
        with client(target) as c:
            assert all(c.head_manifest(d) is None for d in legs.values())
        with client(cache) as c:
            assert all(c.head_manifest(d) is not None for d in legs.values())

        args = ["merge", "--family", "backends", "--tag-suffix=-cpu-x", "--digests-dir", str(digests), "--matrix",
                str(matrix), "--images", f"{target},{hub}", "--anchor", "--run-id", RUN_ID, *BRANCH]
        import contextlib
        import io
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args, env=env)
        text = out.getvalue() + err.getvalue()
        assert code == 0, text
        for d in legs.values():
            assert f"child restored from its keepalive anchor: {target}@{d}" in text
        assert text.count("keepalive tag deleted") == 2 and TOKEN not in text
        # the list is complete in both registries, no anchor is left anywhere
        for image in (target, hub):
            with client(image) as c:
                got = c.get_manifest("master-cpu-x")
                assert got is not None
            assert sorted(m["digest"] for m in json.loads(got[0])["manifests"]) == sorted(legs.values())
            assert not [t for t in tags_of(image) if t.startswith("keepalive-")]
        assert not [t for t in tags_of(cache) if t.startswith("keepalive-")]
        # the anchors went through the REST API, with the token, to the Quay host only
        rest = quay.requests("DELETE", "/api/v1/repository/")
        assert len(rest) == 2 and all(s.authorization == f"Bearer {TOKEN}" for s in rest)


def test_without_a_token_the_anchors_stay_in_the_cache_repository_and_the_merge_succeeds(
        tmp_path: Path, registry_factory: Any, unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    reg = registry_factory()
    with HostileServer("127.0.0.8", quay_rule(reg.host), upstream=reg.host, lifetime=300) as quay:
        quay.start()
        target, cache = f"{quay.host}/{unique}/backends", f"{quay.host}/{unique}/ci-cache"
        env = {"CI_CACHE_IMAGE": cache, "CI_QUAY_REGISTRIES": quay.host, "CI_ANCHOR_REGISTRIES": quay.host}
        matrix, digests, legs = legs_published(tmp_path, target, cache, env)
        code = main(["merge", "--family", "backends", "--tag-suffix=-cpu-x", "--digests-dir", str(digests),
                     "--matrix", str(matrix), "--images", target, "--anchor", "--run-id", RUN_ID, *BRANCH], env=env)
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert out.count("keepalive tag not deleted") == 2 and "no QUAY_TOKEN" in out
        assert len([t for t in tags_of(cache) if t.startswith("keepalive-")]) == 2  # left for retention
        assert not [t for t in tags_of(target) if t.startswith("keepalive-")]
        assert quay.requests("DELETE", "/v2/") == []  # a tag delete Quay refuses is not even tried
