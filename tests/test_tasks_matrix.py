"""The matrix tasks through the real ``invoke`` command: exit codes, messages, nothing written on errors.

Kept few (each is a subprocess); the logic is covered in test_matrix / test_lint / test_split.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import os

import pytest
from tests.support.localai_ref import M2608, RESOURCES

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "tests" / "resources" / "matrices"


def invoke(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(ROOT), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env} if env else None)


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_lint_missing_file_exit_2(tmp_path: Path) -> None:
    r = invoke("matrix.lint", "--matrix", "/nonexistent", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: /nonexistent: no such matrix file; pass --matrix PATH"
    assert "Traceback" not in r.stderr + r.stdout


BAD = {
    "not-yaml.yml": ("include: [\n", "not-yaml.yml line 2: not valid YAML"),
    "unknown-key.yml": ("include:\n  - tag-suffix: '-cpu-x'\n    runs_on: 'x'\n",
                        "unknown-key.yml line 3: entry tag-suffix '-cpu-x': unknown field 'runs_on'; "
                        "did you mean 'runs-on'?"),
    "unsafe.yml": ("include:\n" + (RES / "clean.yml").read_text().split("include:\n", 1)[1]
                   .replace("'-cpu-hello'", "'; rm -rf /'", 1), "unsafe.yml line 9: entry tag-suffix '; rm -rf /': "
                                                             "field 'tag-suffix': tag-suffix '; rm -rf /' is not a safe"),
    "bomb.yml": ("a: &a [x, x, x]\nb: &b [*a, *a, *a]\ninclude: *b\n", "bomb.yml line 1: not valid YAML: anchors"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_matrix_exit_2_and_nothing_written(tmp_path: Path, name: str) -> None:
    text, expected = BAD[name]
    (tmp_path / name).write_text(text)
    before = snapshot(tmp_path)
    for task in (["matrix.lint"], ["matrix.split", "--in-place"], ["matrix.report"]):
        r = invoke(*task, "--matrix", name, cwd=tmp_path)
        assert r.returncode == 2, (task, r.stdout, r.stderr)
        assert r.stderr.startswith("error: " + expected), r.stderr
        assert "Traceback" not in r.stderr + r.stdout
    assert snapshot(tmp_path) == before


def test_lint_real_matrix_text_and_json_findings_are_warnings_unless_strict(tmp_path: Path) -> None:
    fixed, pr9730 = str(RESOURCES / "workflows.2026-08"), str(RESOURCES / "workflows.pr9730")
    r = invoke("matrix.lint", "--matrix", str(M2608), "--workflows", fixed, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith(f"{M2608}:448: retired-runner: -gpu-nvidia-cuda-12-llama-cpp [amd64]: ")
    assert lines[-1] == f"{M2608}: 9 findings in 457 entries (retired-runner 6, missing-sibling 3)"
    strict = invoke("matrix.lint", "--matrix", str(M2608), "--workflows", fixed, "--strict", cwd=tmp_path)
    assert strict.returncode == 1 and strict.stdout == r.stdout
    j = invoke("matrix.lint", "--matrix", str(M2608), "--format", "json", "--retired", "nothing-retired",
               "--workflows", pr9730, cwd=tmp_path)
    assert j.returncode == 0
    data = json.loads(j.stdout)
    assert data["counts"]["retired-runner"] == 0 and data["counts"]["missing-sibling"] == 3
    assert data["counts"]["artifact-glob-overmatch"] == 35


def test_lint_github_format_annotates_and_summarizes(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    r = invoke("matrix.lint", "--matrix", str(M2608), "--workflows", str(RESOURCES / "workflows.2026-08"),
               "--format", "github", cwd=tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 10 and all(line.startswith("::warning file=") for line in lines[:9])
    assert lines[0].startswith(f"::warning file={M2608},line=448,title=matrix.lint retired-runner::"
                               "-gpu-nvidia-cuda-12-llama-cpp [amd64]: runs on retired runner 'bigger-runner'")
    assert lines[-1] == f"{M2608}: 9 findings in 457 entries (retired-runner 6, missing-sibling 3)"
    md = summary.read_text()
    assert md.startswith("### matrix.lint: ") and md.count("| retired-runner |") == 6


def test_lint_reads_the_workflows_of_the_repository_holding_the_matrix(tmp_path: Path) -> None:
    """This project's own matrix under its own workflows (the names invoke matrix.github computes): clean."""
    r = invoke("matrix.lint", "--matrix", str(ROOT / "backends" / "matrix.yml"), "--strict", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, f"{ROOT / 'backends' / 'matrix.yml'}: clean (8 entries, 7 rules "
                                                   "checked)"), r.stdout + r.stderr
    alone = tmp_path / "m.yml"
    alone.write_bytes((RES / "clean.yml").read_bytes())
    out = invoke("matrix.lint", "--matrix", str(alone), cwd=tmp_path)
    assert "note: artifact-glob-overmatch: no workflows were read (--workflows DIR)" in out.stdout


def test_lint_clean_exit_0_and_report(tmp_path: Path) -> None:
    r = invoke("matrix.lint", "--matrix", str(RES / "clean.yml"), cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, f"{RES / 'clean.yml'}: clean (4 entries, 7 rules checked)")
    rep = invoke("matrix.report", "--matrix", str(M2608), cwd=tmp_path)
    assert rep.returncode == 0
    assert "entries (include:)                457" in rep.stdout
    assert "legs per arch                     amd64 303, arm64 154" in rep.stdout
    assert "amd64/arm64 pairs                 71" in rep.stdout
    assert "on retired runners                bigger-runner 6" in rep.stdout
    assert "darwin entries (kept, not built)  62" in rep.stdout


def test_split_dry_run_then_in_place(tmp_path: Path) -> None:
    f = tmp_path / "matrix.yml"
    f.write_bytes((RES / "multi.yml").read_bytes())
    dry = invoke("matrix.split", "--matrix", "matrix.yml", "--in-place", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "multi-platform entries left: 0 (before: 2; 2 split into 4 per-arch entries)" in dry.stdout
    assert "+    platform-tag: 'arm64'" in dry.stdout
    assert f.read_bytes() == (RES / "multi.yml").read_bytes()
    none = invoke("matrix.split", "--matrix", "matrix.yml", cwd=tmp_path)
    assert none.returncode == 2 and "say where to write" in none.stderr
    done = invoke("matrix.split", "--matrix", "matrix.yml", "--in-place", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.rstrip().endswith("wrote matrix.yml")
    assert f.read_bytes() == (RES / "split-expected.yml").read_bytes()
    again = invoke("matrix.split", "--matrix", "matrix.yml", "--in-place", cwd=tmp_path)
    assert again.returncode == 0 and "no changes" in again.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["matrix.yml"]


def test_report_summary_and_rich_table(capsys: pytest.CaptureFixture[str]) -> None:
    from localai_ci.matrix.model import load_matrix
    from localai_ci.matrix.summary import rich_table, summarize
    from localai_ci.output.console import say_rich

    s = summarize(load_matrix(RES / "multi.yml"))
    assert (s.entries, s.suffixes, s.pairs, s.single_arch, s.multi_platform, s.darwin) == (5, 4, 3, 1, 2, 1)
    assert s.legs_per_arch == {"amd64": 2, "arm64": 1}
    assert s.retired_runners == {"bigger-runner": 1, "arc-runner-set": 1}
    say_rich(rich_table(s))
    out = capsys.readouterr().out
    assert "multi-platform entries" in out and "│" in out  # a rich table
    assert json.loads(s.render_json())["pairs"] == 3


def test_arguments_after_a_bare_double_dash_are_refused_not_dropped() -> None:
    """`invoke task -- --dry-run` used to drop --dry-run silently and do the real thing."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "invoke", "-r", str(root), "matrix.report", "--", "--format", "json"],
                          capture_output=True, text=True, cwd=root, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "unexpected arguments after '--'" in done.stderr and done.stdout == ""
