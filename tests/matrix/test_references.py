"""localai_ci.matrix.references: consumer references (galleries, docs) checked against what the matrix publishes (static)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localai_ci.errors import UserError
from localai_ci.settings import family_config
from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family
from localai_ci.matrix.references import (check_references, closest_suffix, find_references, lint_references, parse_branches,
                           read_references, tag_shapes)
from localai_ci.matrix.tags import Latest, TagInput, compute_tags
from tests.support.paths import REPO as ROOT

RES = ROOT / "tests" / "resources" / "references"
MATRIX = RES / "matrix.yml"


def lint(*paths: Path, branches: tuple[str, ...] = ("master",)):  # type: ignore[no-untyped-def]
    matrices = {Family.BACKENDS: load_matrix(MATRIX)}
    configs = {f: family_config(f, env={}) for f in Family}
    return lint_references(list(paths), matrices, configs, branches)


def test_gallery_findings_name_file_line_reference_rule_and_fix() -> None:
    result = lint(RES / "gallery.yaml")
    got = [(f.line, f.rule, f.reference) for f in result.findings]
    assert got == [
        (6, "reference-unknown-suffix", "quay.io/go-skynet/local-ai-backends:latest-cpu-whispr"),
        (22, "reference-latest-never-published", "quay.io/go-skynet/local-ai-backends:latest-gpu-nvidia-cuda-12-whisper"),
        (30, "reference-unknown-repository", "quay.io/go-skynet/local-ai-backend:latest-cpu-vllm"),
        (33, "reference-unknown-tag", "localai/localai-backends:stable-cpu-vllm"),
    ], result.render_text()
    by_rule = {f.rule: f for f in result.findings}
    assert by_rule["reference-unknown-suffix"].fix.startswith("use latest-cpu-whisper (tag-suffix '-cpu-whisper')")
    assert "tag-latest: false" in by_rule["reference-latest-never-published"].message
    assert by_rule["reference-unknown-repository"].fix.startswith("use quay.io/go-skynet/local-ai-backends")
    assert "--branches" in by_rule["reference-unknown-tag"].fix
    text = result.render_text().splitlines()
    assert text[0].startswith(f"{RES / 'gallery.yaml'}:6: reference-unknown-suffix: quay.io/")
    assert text[-1].endswith("4 findings in 13 references (reference-unknown-suffix 1, reference-latest-never-published 1, "
                             "reference-unknown-tag 1, reference-unknown-repository 1)")
    assert result.exit_code == 1


def test_what_the_gallery_gets_right_is_not_reported() -> None:
    """latest/master of a suffix, a release tag, a sha tag, a macOS suffix (includeDarwin), a digest, another
    family's image, a base image: none is a finding."""
    reported = {f.reference for f in lint(RES / "gallery.yaml").findings}
    for fine in ("quay.io/go-skynet/local-ai-backends:latest-cpu-whisper", "localai/localai-backends:master-cpu-whisper",
                 "localai/localai-backends:v3.4.0-gpu-nvidia-cuda-12-whisper",
                 "localai/localai-backends:sha-1234abc-cpu-vllm",
                 "quay.io/go-skynet/local-ai-backends:latest-metal-darwin-arm64-whisper",
                 "quay.io/go-skynet/local-ai:latest-gpu-vulkan"):
        assert fine not in reported


def test_branch_tags_follow_the_configured_branches(tmp_path: Path) -> None:
    f = tmp_path / "README.md"
    f.write_text("docker run quay.io/go-skynet/local-ai-backends:main-cpu-whisper\n")
    assert [x.rule for x in lint(f).findings] == ["reference-unknown-tag"]  # main is no configured branch
    assert lint(f, branches=("master", "main")).findings == ()
    assert parse_branches("master, main") == ("master", "main") and parse_branches(None) == ("master",)
    with pytest.raises(UserError, match="--branches: 'a..b' is not a branch name"):
        parse_branches("a..b")


def test_text_and_json_files_are_scanned_by_line(tmp_path: Path) -> None:
    md = tmp_path / "docs.md"
    md.write_text("# Install\n\nUse `localai/localai-backends:latest-cpu-whispr` or\n"
                  "quay.io/go-skynet/local-ai-backends:latest-cpu-vllm.\n")
    js = tmp_path / "gallery.json"
    js.write_text(json.dumps([{"uri": "quay.io/go-skynet/local-ai-backends:latest-cpu-vlm"}], indent=1))
    result = lint(md, js)
    assert [(Path(f.source).name, f.line, f.rule) for f in result.findings] == [
        ("docs.md", 3, "reference-unknown-suffix"), ("gallery.json", 3, "reference-unknown-suffix")]
    assert {r.text for r in read_references(md)} == {"localai/localai-backends:latest-cpu-whispr",
                                                     "quay.io/go-skynet/local-ai-backends:latest-cpu-vllm"}


def test_tag_shapes_are_the_merges_own_tags() -> None:
    """Every tag compute_tags gives a suffix for a branch push and for a release is matched by a shape, and
    nothing else is: the lint and the merge cannot disagree."""
    shapes = tag_shapes("-cpu-x", Latest.AUTO, Family.BACKENDS, ("master",))
    for ref, sha in (("refs/heads/master", "f" * 40), ("refs/tags/v3.4.0", "0" * 40), ("refs/tags/v3.5.0-rc1", "1" * 40)):
        for tag in compute_tags(TagInput("push", ref, sha, "-cpu-x", Latest.AUTO)):
            assert any(p.fullmatch(tag) for p in shapes), tag
    for wrong in ("latest-cpu-x-extra", "main-cpu-x", "sha-123-cpu-x", "3.4-cpu-x", "latest"):
        assert not any(p.fullmatch(wrong) for p in shapes), wrong
    never = tag_shapes("-cpu-x", Latest.FALSE, Family.BACKENDS, ("master",))
    assert not any(p.fullmatch("latest-cpu-x") for p in never)
    core = tag_shapes("", Latest.AUTO, Family.SERVER, ("master",))  # the server image: no suffix at all
    assert all(any(p.fullmatch(t) for p in core) for t in ("latest", "master", "v3.4.0", "sha-abcdef0"))


def test_server_references_against_the_server_matrix(tmp_path: Path) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  api:\n    image: quay.io/go-skynet/local-ai:latest-gpu-vulkann\n"
                 "  ok:\n    image: localai/localai:master-gpu-vulkan\n")
    matrices = {Family.BACKENDS: load_matrix(MATRIX), Family.SERVER: load_matrix(ROOT / "backends/images.yml", Family.SERVER)}
    configs = {fam: family_config(fam, env={}) for fam in Family}
    result = lint_references([f], matrices, configs)
    assert [(f.line, f.rule) for f in result.findings] == [(3, "reference-unknown-suffix")]
    assert "use latest-gpu-vulkan" in result.findings[0].fix


def test_closest_suffix_prefers_the_same_backend() -> None:
    known = ["-gpu-rocm-hipblas-coqui", "-cpu-turboquant", "-gpu-vulkan-turboquant"]
    assert closest_suffix("-gpu-rocm-hipblas-turboquant", known) in ("-cpu-turboquant", "-gpu-vulkan-turboquant")
    assert closest_suffix("-cpu-whispr", ["-cpu-whisper", "-cpu-vllm"]) == "-cpu-whisper"


def test_aliases_are_never_expanded(tmp_path: Path) -> None:
    """A billion-laughs gallery: composed, not constructed; each scalar is read once, in a moment."""
    lines = ["a0: &a0 ['quay.io/go-skynet/local-ai-backends:latest-cpu-nope']"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    refs = read_references(f)
    assert time.monotonic() - t0 < 5 and len(refs) == 1  # 10**11 references if aliases were expanded
    assert [x.rule for x in check_references(refs, {Family.BACKENDS: load_matrix(MATRIX)},
                                             {fam: family_config(fam, env={}) for fam in Family})] == [
        "reference-unknown-suffix"]


def test_bad_yaml_is_a_user_error_naming_the_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("- uri: ok\n- uri: [unclosed\n")
    with pytest.raises(UserError, match=r"broken.yaml line \d+: not valid YAML"):
        read_references(f)
    with pytest.raises(UserError, match="no such references file"):
        read_references(tmp_path / "missing.yaml")


def test_find_references_needs_a_repository_path() -> None:
    refs = find_references("image: ubuntu:24.04\nuri: a:b\nx: quay.io/org/repo:tag\n", "f", yaml_file=True)
    assert [(r.line, r.text) for r in refs] == [(3, "quay.io/org/repo:tag")]


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(ROOT), "matrix.lint", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_task_text_json_exit_codes_and_ignore() -> None:
    done = _invoke("--matrix", str(MATRIX), "--references", str(RES / "gallery.yaml"), "--strict")
    assert done.returncode == 1, done.stderr
    assert "gallery.yaml:22: reference-latest-never-published:" in done.stdout
    warned = _invoke("--matrix", str(MATRIX), "--references", str(RES / "gallery.yaml"))
    assert warned.returncode == 0 and warned.stdout == done.stdout  # findings are warnings unless --strict
    js = _invoke("--matrix", str(MATRIX), "--references", str(RES / "gallery.yaml"), "--format", "json")
    data = json.loads(js.stdout)
    assert data["references"]["entries"] == 13 and len(data["references"]["findings"]) == 4
    assert data["references"]["findings"][0]["reference"].endswith(":latest-cpu-whispr")
    ignored = _invoke("--matrix", str(MATRIX), "--references", str(RES / "gallery.yaml"), "--ignore",
                      "reference-unknown-suffix,reference-latest-never-published,reference-unknown-tag,"
                      "reference-unknown-repository", "--strict")
    assert ignored.returncode == 0, ignored.stdout + ignored.stderr
    bad = _invoke("--matrix", str(MATRIX), "--references", str(RES / "gallery.yaml"), "--ignore", "reference-unknwn-tag")
    assert bad.returncode == 2 and "did you mean 'reference-unknown-tag'" in bad.stderr
