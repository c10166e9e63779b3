"""One merge job per class (issue 14): ``merge --all --suffixes`` merges exactly a class's suffixes, reports
a suffix without artifacts as skipped and fails after the others are merged, writes ``--report``, and
``inspect --merged`` verifies every list and tag it published (real registries)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from localai_ci.cli import main
from tests.support.oci_images import client, resolve, tags_of, write_matrix
from tests.merge.test_merge import World, run

BRANCH = ["--event", "push", "--ref", "refs/heads/master", "--sha", "89abcdef0123456789abcdef0123456789abcdef"]


@pytest.mark.registry
def test_class_merge_merges_exactly_its_suffixes_and_fails_on_a_missing_one(
        tmp_path: Path, registries, unique: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    world = World(tmp_path, (registries[0].host, registries[1].host), unique)
    write_matrix(world.matrix, [(s, p) for s in ("-cpu-a", "-cpu-b", "-cpu-c", "-cpu-other") for p in ("amd64", "arm64")])
    for s in ("-cpu-a", "-cpu-b", "-cpu-other"):  # -cpu-c's legs failed: no artifact; -cpu-other is another class
        world.leg(s, "amd64"), world.leg(s, "arm64")
    report = tmp_path / "merged.json"
    summary = tmp_path / "summary.md"
    code, out, err = run(capsys, ["merge", "--all", "--family", "backends", "--suffixes", '["-cpu-a","-cpu-b","-cpu-c"]',
                                  "--digests-dir", str(world.digests), "--matrix", str(world.matrix), "--images",
                                  ",".join(world.images), "--report", str(report), *BRANCH],
                         {"GITHUB_STEP_SUMMARY": str(summary)})
    assert code == 1, err  # -cpu-c skipped: the job fails, after the others are merged
    assert "skipped: -cpu-c: no digest artifact" in out
    for s in ("-cpu-a", "-cpu-b"):
        assert f"master{s}" in tags_of(world.images[0]) and f"master{s}" in tags_of(world.images[1])
    assert "master-cpu-other" not in tags_of(world.images[0])  # not this class's
    results = {r["suffix"]: r for r in json.loads(report.read_text())["results"]}
    assert set(results) == {"-cpu-a", "-cpu-b", "-cpu-c"}
    assert results["-cpu-a"]["outcome"] == "merged" and results["-cpu-a"]["digest"] == resolve(world.images[0], "master-cpu-a")
    assert results["-cpu-a"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert results["-cpu-c"]["outcome"] == "skipped" and "failed or was skipped" in results["-cpu-c"]["reason"]
    md = summary.read_text()
    assert "-cpu-c" in md and "skipped" in md and "-cpu-a" in md

    # every merged list, by digest and by each tag, in every registry, with its platforms
    images = ",".join(world.images)
    code, out, err = run(capsys, ["inspect", "--family", "backends", "--images", images, "--merged", str(report)])
    assert code == 0, out + err
    assert "ok: 12 list(s) verified" in out  # 2 suffixes x (digest + 2 tags) x 2 registries
    # a tag moved to another list in one registry: caught against the digest the merge published
    other = resolve(world.images[1], "master-cpu-b")
    with client(world.images[1]) as c:
        body, media, _ = c.get_manifest(other)  # type: ignore[misc]
        c.put_manifest("master-cpu-a", body, media)
    code, out, err = run(capsys, ["inspect", "--family", "backends", "--images", images, "--merged", str(report)])
    assert code == 1 and "[tag-matches-digest]" in out and f"{world.images[1]}:master-cpu-a" in out, out

    # a re-run redoes only what is missing: -cpu-c's legs arrive, the others are unchanged
    world.leg("-cpu-c", "amd64"), world.leg("-cpu-c", "arm64")
    code, out, err = run(capsys, ["merge", "--all", "--family", "backends", "--suffixes", "-cpu-a,-cpu-b,-cpu-c",
                                  "--digests-dir", str(world.digests), "--matrix", str(world.matrix), "--images",
                                  ",".join(world.images), *BRANCH])
    assert code == 0, err
    assert "master-cpu-c" in tags_of(world.images[0]) and "3 merged" in out


@pytest.mark.registry
def test_class_merge_with_no_artifact_at_all_reports_every_suffix_skipped(
        tmp_path: Path, registries, unique: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    world = World(tmp_path, (registries[0].host, registries[1].host), unique)
    write_matrix(world.matrix, [("-cpu-a", "amd64")])
    report = tmp_path / "merged.json"
    code, out, _ = run(capsys, ["merge", "--all", "--family", "backends", "--suffixes", "-cpu-a", "--digests-dir",
                                str(tmp_path / "nothing-downloaded"), "--matrix", str(world.matrix), "--images",
                                ",".join(world.images), "--report", str(report), *BRANCH])
    assert code == 1 and "skipped: -cpu-a" in out
    assert [r["outcome"] for r in json.loads(report.read_text())["results"]] == ["skipped"]
    code, out, _ = run(capsys, ["inspect", "--family", "backends", "--images", ",".join(world.images),
                                "--merged", str(report)])
    assert code == 0 and "reports no merged suffix" in out


@pytest.mark.parametrize("argv, message", [
    (["merge", "--tag-suffix", "-a", "--suffixes", "-a"], "--suffixes names a class's suffixes for `--all --family F`"),
    (["merge", "--all", "--family", "backends", "--suffixes", "[1, 2]"], "--suffixes: expected a list of tag-suffixes"),
    (["merge", "--all", "--family", "backends", "--suffixes", "-a,bad suffix"], "--suffixes:"),
    (["inspect", "--merged", "/nonexistent/merged.json"], "no such merge report"),
])
def test_class_merge_bad_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, argv)
    assert code == 2 and message in err, err

