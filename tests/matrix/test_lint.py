"""localai_ci.matrix.lint: every rule on small fixtures, and the real numbers on both LocalAI matrices."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from localai_ci.errors import MatrixError, UserError
from localai_ci.matrix.lint import RULES, collision_pairs, lint_file, lint_matrix, runner_allowances, runner_policy
from localai_ci.matrix.split import split_text
from localai_ci.matrix.model import load_matrix, parse_matrix
from localai_ci.matrix.workflownames import artifact_templates, read_workflows
from localai_ci.oci.platforms import Arch
from tests.support.localai_ref import M2608, M9730, RESOURCES
from tests.support.paths import REPO, RESOURCES as TEST_RESOURCES  # RESOURCES above: LocalAI's files

RES = TEST_RESOURCES / "matrices"
#: LocalAI's backend workflows: PR #9730's over-matching artifact names, and the 2026-08 ones that fixed them
PR9730_WORKFLOWS = artifact_templates(read_workflows(RESOURCES / "workflows.pr9730"), "workflows.pr9730")
FIXED_WORKFLOWS = artifact_templates(read_workflows(RESOURCES / "workflows.2026-08"), "workflows.2026-08")


def entry(suffix: str, plat: str = "linux/amd64", runner: str = "ubuntu-latest", *, ptag: str | None = None,
          latest: str = "auto", base: str = "ubuntu:24.04", extra: str = "") -> str:
    pt = f"    platform-tag: '{ptag}'\n" if ptag else ""
    return (f"  - build-type: ''\n    cuda-major-version: ''\n    cuda-minor-version: ''\n"
            f"    platforms: '{plat}'\n{pt}    tag-latest: '{latest}'\n    tag-suffix: '{suffix}'\n"
            f"    runs-on: '{runner}'\n    base-image: '{base}'\n{extra}    skip-drivers: 'false'\n"
            f"    backend: 'x'\n    dockerfile: './Dockerfile'\n    context: './'\n    ubuntu-version: '2404'\n")


def lint_text(*entries: str, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("naming", PR9730_WORKFLOWS)
    return lint_matrix(parse_matrix("include:\n" + "".join(entries), "m.yml"), **kw)  # type: ignore[arg-type]


def rules_of(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.rule for f in result.findings]


# ---- one fixture with one violation of every rule -------------------------------------------------
def test_all_rules_fixture_reports_each_rule_once_at_its_entry() -> None:
    result = lint_matrix(load_matrix(RES / "all-rules.yml"), naming=PR9730_WORKFLOWS)
    assert result.counts() == dict.fromkeys(RULES, 1)
    where = {f.rule: (f.line, f.suffix, f.ptag) for f in result.findings}
    assert where == {
        "multi-platform": (4, "-cpu-multi", "amd64-arm64"),
        "retired-runner": (18, "-cpu-old", "amd64"),
        "arch-runner-mismatch": (32, "-cpu-wrong", "arm64"),
        "missing-sibling": (46, "-cpu-lonely", "amd64"),
        "artifact-glob-overmatch": (61, "-cpu-pair", "amd64"),
        "sibling-disagrees": (75, "-cpu-pair", "arm64"),
        "tag-latest-disagrees": (104, "-cpu-latest", "arm64"),
    }
    assert result.exit_code == 1


def test_clean_fixture_is_clean() -> None:
    result = lint_matrix(load_matrix(RES / "clean.yml"), naming=PR9730_WORKFLOWS)
    assert result.findings == ()
    assert result.exit_code == 0
    assert result.render_text() == f"{RES / 'clean.yml'}: clean (4 entries, 7 rules checked)"


# ---- rule by rule ----------------------------------------------------------------------------------
def test_multi_platform() -> None:
    r = lint_text(entry("-a", "linux/amd64,linux/arm64"))
    assert rules_of(r) == ["multi-platform"]
    f = r.findings[0]
    assert "linux/amd64, linux/arm64 in one job" in f.message and "invoke matrix.split" in f.fix


def test_retired_runner_default_list_and_configurable() -> None:
    r = lint_text(entry("-a", runner="bigger-runner"), entry("-b", runner="arc-runner-set"), entry("-c", runner="old-box"))
    assert [(f.rule, f.suffix) for f in r.findings] == [("retired-runner", "-a"), ("retired-runner", "-b")]
    assert r.findings[0].fix.startswith("set runs-on: 'ubuntu-latest'")
    custom = lint_text(entry("-a", runner="bigger-runner"), entry("-c", runner="old-box"),
                       policy=runner_policy(retired="old-box"))
    assert [(f.rule, f.suffix) for f in custom.findings] == [("retired-runner", "-c")]


def test_arch_runner_mismatch_both_ways_and_custom_runners() -> None:
    r = lint_text(entry("-a", "linux/arm64", "ubuntu-latest"), entry("-b", "linux/amd64", "ubuntu-24.04-arm"),
                  entry("-c", "linux/arm64", "ubuntu-24.04-arm"), entry("-d", "linux/amd64", "self-hosted-gpu"))
    assert [(f.rule, f.suffix) for f in r.findings] == [("arch-runner-mismatch", "-a"), ("arch-runner-mismatch", "-b")]
    assert r.findings[0].fix == "set runs-on: 'ubuntu-24.04-arm'"
    assert r.findings[1].fix == "set runs-on: 'ubuntu-latest'"
    # a custom arm64 runner label is that arch, so it matches
    custom = lint_text(entry("-a", "linux/arm64", "my-graviton"), policy=runner_policy(runner_arm64="my-graviton"))
    assert custom.findings == ()


def test_missing_sibling_only_for_platform_tag_legs() -> None:
    r = lint_text(entry("-a", ptag="amd64"), entry("-b", "linux/arm64", "ubuntu-24.04-arm", ptag="arm64"),
                  entry("-single"), entry("-pair", ptag="amd64"),
                  entry("-pair", "linux/arm64", "ubuntu-24.04-arm", ptag="arm64"))
    assert [(f.rule, f.suffix, f.ptag) for f in r.findings] == [
        ("missing-sibling", "-a", "amd64"), ("missing-sibling", "-b", "arm64")]
    assert "no arm64 leg" in r.findings[0].message and "platform-tag: 'arm64'" in r.findings[0].fix
    assert "no amd64 leg" in r.findings[1].message and "runs-on: 'ubuntu-latest'" in r.findings[1].fix


def test_sibling_disagrees_ignores_platform_runner_and_own_platform_tag() -> None:
    same = lint_text(entry("-a", ptag="amd64", extra="    builder-base-image: 'q/c:grpc-amd64'\n"),
                     entry("-a", "linux/arm64", "ubuntu-24.04-arm", ptag="arm64",
                           extra="    builder-base-image: 'q/c:grpc-arm64'\n"))
    assert same.findings == ()
    diff = lint_text(entry("-a", ptag="amd64", extra="    amdgpu-targets: 'gfx90a'\n"),
                     entry("-a", "linux/arm64", "ubuntu-24.04-arm", ptag="arm64", base="debian:12"))
    assert rules_of(diff) == ["sibling-disagrees"]
    msg = diff.findings[0].message
    assert "base-image: 'debian:12' vs 'ubuntu:24.04'" in msg and "amdgpu-targets: '' vs 'gfx90a'" in msg
    assert "line 2" in msg  # the first leg


def test_tag_latest_disagrees() -> None:
    r = lint_text(entry("-a", ptag="amd64", latest="auto"),
                  entry("-a", "linux/arm64", "ubuntu-24.04-arm", ptag="arm64", latest="false"))
    assert rules_of(r) == ["tag-latest-disagrees"]
    assert r.findings[0].fix == "use tag-latest: 'auto' on every leg of the suffix"


def test_artifact_glob_overmatch_direction_and_all_legs() -> None:
    r = lint_text(entry("-cpu-vllm"), entry("-cpu-vllm-omni", ptag="amd64"),
                  entry("-cpu-vllm-omni", "linux/arm64", "ubuntu-24.04-arm", ptag="arm64"), entry("-cpu-vll"))
    assert rules_of(r) == ["artifact-glob-overmatch"]
    f = r.findings[0]
    assert (f.suffix, f.related) == ("-cpu-vllm", "-cpu-vllm-omni")
    assert ("download pattern 'digests-cpu-vllm-*' (backend_merge.yml line 40) also picks up "
            "'digests-cpu-vllm-omni-amd64', 'digests-cpu-vllm-omni-arm64', the artifacts backend_build.yml line 224 "
            "names for tag-suffix '-cpu-vllm-omni'") in f.message
    assert "digests<suffix>--<platform-tag>" in f.fix
    # the same matrix under the workflows that fixed the naming: nothing to report
    fixed = lint_text(entry("-cpu-vllm"), entry("-cpu-vllm-omni", ptag="amd64"),
                      entry("-cpu-vllm-omni", "linux/arm64", "ubuntu-24.04-arm", ptag="arm64"), naming=FIXED_WORKFLOWS)
    assert fixed.findings == () and fixed.notes == ()


def test_ignore_and_unknown_rule_ids() -> None:
    r = lint_matrix(load_matrix(RES / "all-rules.yml"), ignore=["multi-platform", "artifact-glob-overmatch"],
                    naming=PR9730_WORKFLOWS)
    assert "multi-platform" not in r.rules and len(r.findings) == 5
    with pytest.raises(UserError, match="unknown lint rule 'retired-runnr'; did you mean 'retired-runner'"):
        lint_matrix(load_matrix(RES / "clean.yml"), ignore=["retired-runnr"])


def test_runner_policy_options_are_validated() -> None:
    p = runner_policy(runner_amd64="x64-big", runner_arm64="arm-big", retired="a, b,")
    assert p.native == {Arch.AMD64: "x64-big", Arch.ARM64: "arm-big"} and p.retired == ("a", "b")
    with pytest.raises(UserError, match="'ubuntu-latest' is both the native amd64 runner and retired"):
        runner_policy(retired="ubuntu-latest")
    with pytest.raises(UserError, match="--runner-amd64 '; rm -rf /' is not a runner label"):
        runner_policy(runner_amd64="; rm -rf /")


# ---- output formats ----------------------------------------------------------------------------
def test_text_format_one_line_per_finding_plus_summary() -> None:
    r = lint_matrix(load_matrix(RES / "all-rules.yml"), naming=PR9730_WORKFLOWS)
    lines = r.render_text().splitlines()
    assert len(lines) == 8
    assert lines[1] == (f"{RES / 'all-rules.yml'}:18: retired-runner: -cpu-old [amd64]: runs on retired runner "
                        "'bigger-runner' (fix: set runs-on: 'ubuntu-latest' (the amd64 runner), or run "
                        "'invoke matrix.split'; or, if it must stay, record why inside the entry: "
                        "`# localai-ci: allow-runner bigger-runner (why)`)")
    assert lines[-1].endswith(": 7 findings in 9 entries (multi-platform 1, retired-runner 1, arch-runner-mismatch 1, "
                              "missing-sibling 1, sibling-disagrees 1, tag-latest-disagrees 1, "
                              "artifact-glob-overmatch 1)")


def test_json_format() -> None:
    data = json.loads(lint_matrix(load_matrix(RES / "all-rules.yml"), naming=PR9730_WORKFLOWS).render_json())
    assert data["entries"] == 9 and data["counts"] == dict.fromkeys(RULES, 1)
    first = data["findings"][0]
    assert set(first) == {"rule", "source", "line", "suffix", "ptag", "message", "fix", "related", "reference"}
    assert (first["rule"], first["line"], first["suffix"]) == ("multi-platform", 4, "-cpu-multi")


# ---- the real LocalAI matrices ------------------------------------------------------------------
def test_localai_2026_08_numbers() -> None:
    """With LocalAI's own 2026-08 workflows nothing is reported that they fixed (the download-glob
    over-match of PR #9730's names): 9 findings, not 44; under PR #9730's workflows the same matrix
    would have the 35 over-matches."""
    m = load_matrix(M2608)
    r = lint_matrix(m, naming=FIXED_WORKFLOWS)
    assert r.counts() == {"multi-platform": 0, "retired-runner": 6, "arch-runner-mismatch": 0, "missing-sibling": 3,
                          "sibling-disagrees": 0, "tag-latest-disagrees": 0, "artifact-glob-overmatch": 0}
    assert r.notes == ()
    retired = [(f.line, f.suffix) for f in r.findings if f.rule == "retired-runner"]
    assert retired == [(448, "-gpu-nvidia-cuda-12-llama-cpp"), (467, "-gpu-nvidia-cuda-12-turboquant"),
                       (483, "-gpu-nvidia-cuda-12-bonsai"), (1150, "-gpu-nvidia-cuda-13-llama-cpp"),
                       (1166, "-gpu-nvidia-cuda-13-turboquant"), (1181, "-gpu-nvidia-cuda-13-bonsai")]
    missing = [(f.line, f.suffix, f.ptag) for f in r.findings if f.rule == "missing-sibling"]
    assert missing == [(3157, "-gpu-vulkan-privacy-filter", "amd64"),
                       (3175, "-gpu-nvidia-cuda-13-privacy-filter", "amd64"), (6019, "-cpu-liquid-audio", "amd64")]
    assert lint_matrix(m, naming=PR9730_WORKFLOWS).counts()["artifact-glob-overmatch"] == 35


def test_localai_pr9730_has_exactly_25_glob_collisions() -> None:
    m = load_matrix(M9730)
    r = lint_matrix(m, naming=PR9730_WORKFLOWS)
    assert r.counts()["artifact-glob-overmatch"] == 25 and len(r.findings) == 25
    pairs = collision_pairs(m, PR9730_WORKFLOWS)
    assert len(set(pairs)) == 25
    assert ("-cpu-mlx", "-cpu-mlx-audio") in pairs and ("-gpu-nvidia-cuda-12-vllm", "-gpu-nvidia-cuda-12-vllm-omni") in pairs
    # every collision is a suffix extended by '-...' (the glob's '-*' eats the rest)
    assert all(t.startswith(s + "-") for s, t in pairs)
    assert Counter(s for s, _ in pairs)["-cpu-mlx"] == 3  # -audio, -distributed, -vlm
    assert all("(backend_merge.yml line 40)" in f.message for f in r.findings)
    # PR #9730's workflow uploaded a single-arch leg (no platform-tag) as 'digests<suffix>-': what it really named
    assert any("'digests-cpu-mlx-vlm-'" in f.message for f in r.findings)
    # LocalAI's later naming, and this project's, never collide
    assert collision_pairs(m, FIXED_WORKFLOWS) == []


def test_collisions_on_2026_08_include_cpu_vllm() -> None:
    pairs = collision_pairs(load_matrix(M2608), PR9730_WORKFLOWS)
    assert len(pairs) == 35 and ("-cpu-vllm", "-cpu-vllm-cpp") in pairs


# ---- runner exceptions recorded next to the entry -------------------------------------------------
ALLOW = "    # localai-ci: allow-runner bigger-runner (cold CUDA builds take 5-6 hours on ubuntu-latest)\n"


def lint_marked(text: str, **kw: object):  # type: ignore[no-untyped-def]
    m = parse_matrix(text, "m.yml")
    return lint_matrix(m, naming=FIXED_WORKFLOWS, allowances=runner_allowances(text, m), **kw)  # type: ignore[arg-type]


def test_an_allowed_runner_is_neither_reported_nor_moved() -> None:
    text = "include:\n" + entry("-a", runner="bigger-runner", extra=ALLOW) + entry("-b", runner="bigger-runner")
    r = lint_marked(text)
    assert [(f.rule, f.suffix) for f in r.findings] == [("retired-runner", "-b")]
    assert "`# localai-ci: allow-runner bigger-runner (why)`" in r.findings[0].fix
    allowed = runner_allowances(text, parse_matrix(text, "m.yml"))[("-a", "amd64")]
    assert (allowed.runner, allowed.reason, allowed.source) == (
        "bigger-runner", "cold CUDA builds take 5-6 hours on ubuntu-latest", "m.yml line 10")
    split = split_text(text, "m.yml")
    assert split.report.moved == (("-b", "bigger-runner", "ubuntu-latest"),)
    assert "m.yml line 2: '-a' stays on 'bigger-runner': allowed at m.yml line 10 (cold CUDA builds take 5-6 hours " \
           "on ubuntu-latest)" in split.report.left_reasons
    assert "runs-on: 'bigger-runner'" in split.text.split("- build-type", 2)[1]


def test_the_marker_can_trail_a_line_and_covers_the_arch_rule_too() -> None:
    gpu = entry("-a", "linux/arm64", "ubuntu-latest").replace(
        "runs-on: 'ubuntu-latest'\n", "runs-on: 'ubuntu-latest'  # localai-ci: allow-runner ubuntu-latest (cross-build)\n")
    assert lint_marked("include:\n" + gpu).findings == ()
    assert rules_of(lint_text(entry("-a", "linux/arm64", "ubuntu-latest"))) == ["arch-runner-mismatch"]


def test_a_marker_for_another_runner_or_in_a_value_allows_nothing() -> None:
    stale = entry("-a", runner="bigger-runner", extra="    # localai-ci: allow-runner arc-runner-set (moved)\n")
    quoted = entry("-b", runner="bigger-runner", base="x # localai-ci: allow-runner bigger-runner (no)")
    r = lint_marked("include:\n" + stale + quoted)
    assert [(f.rule, f.suffix) for f in r.findings] == [("retired-runner", "-a"), ("retired-runner", "-b")]


@pytest.mark.parametrize("comment,message", [
    ("# localai-ci: allow-runner bigger-runner", "m.yml line 10: malformed runner exception 'allow-runner bigger-runner': "
                                                "write `# localai-ci: allow-runner RUNNER (why it stays there)`"),
    ("# localai-ci: allow-runner bigger-runner ()", "m.yml line 10: malformed runner exception"),
    ("# localai-ci: allow-runer bigger-runner (x)", "m.yml line 10: unknown localai-ci: directive 'allow-runer'; "
                                                   "did you mean 'allow-runner'?"),
    ("# localai-ci: allow-runner ;rm (x)", "m.yml line 10: malformed runner exception"),
])
def test_a_malformed_marker_is_bad_input_naming_its_line(comment: str, message: str) -> None:
    text = "include:\n" + entry("-a", runner="bigger-runner", extra=f"    {comment}\n")
    with pytest.raises(MatrixError) as err:
        runner_allowances(text, parse_matrix(text, "m.yml"))
    assert str(err.value).startswith(message) and err.value.exit_code == 2


def test_a_marker_outside_every_entry_or_twice_is_bad_input() -> None:
    text = "# localai-ci: allow-runner bigger-runner (x)\ninclude:\n" + entry("-a", runner="bigger-runner")
    with pytest.raises(MatrixError, match="m.yml line 1: the runner exception is inside no entry"):
        runner_allowances(text, parse_matrix(text, "m.yml"))
    twice = "include:\n" + entry("-a", runner="bigger-runner", extra=ALLOW + ALLOW)
    with pytest.raises(MatrixError, match="m.yml line 11: a second runner exception for '-a' \\[amd64\\]"):
        runner_allowances(twice, parse_matrix(twice, "m.yml"))


def test_localai_with_its_reasons_recorded_as_markers_reports_no_runner_finding(tmp_path: Path) -> None:
    """LocalAI's matrix explains in comments why six CUDA legs stay on bigger-runner; recorded as markers,
    lint reports only the three missing siblings and matrix.split leaves the six where they are."""
    text = M2608.read_text().replace("    runs-on: 'bigger-runner'\n", ALLOW + "    runs-on: 'bigger-runner'\n")
    assert text.count("allow-runner") == 6
    marked = tmp_path / "backend-matrix.yml"
    marked.write_text(text)
    r = lint_file(marked, workflows=RESOURCES / "workflows.2026-08")
    assert [f.rule for f in r.findings] == ["missing-sibling"] * 3 and r.notes == ()
    split = split_text(text, str(marked))
    assert split.report.moved == () and split.text == text
    assert sum("stays on 'bigger-runner'" in reason for reason in split.report.left_reasons) == 6


# ---- what the repository's workflows say ---------------------------------------------------------
def test_without_workflows_the_glob_rule_says_it_did_not_check() -> None:
    r = lint_matrix(load_matrix(RES / "all-rules.yml"))
    assert r.counts()["artifact-glob-overmatch"] == 0
    assert r.notes == ("artifact-glob-overmatch: no workflows were read (--workflows DIR), so whether a merge's "
                       "download pattern picks up another suffix's artifacts is not checked",)
    assert "note: artifact-glob-overmatch: no workflows were read" in r.render_text()


def test_templates_that_cannot_be_evaluated_are_named_not_guessed(tmp_path: Path) -> None:
    (tmp_path / "build.yml").write_text(
        "on: push\njobs:\n  b:\n    runs-on: x\n    steps:\n      - uses: actions/upload-artifact@v4\n"
        "        with:\n          name: digests${{ inputs.tag-suffix }}-${{ github.run_id }}\n"
        "      - uses: actions/download-artifact@v4\n        with:\n          pattern: digests${{ inputs.tag-suffix }}-*\n")
    naming = artifact_templates(read_workflows(tmp_path), str(tmp_path))
    r = lint_matrix(load_matrix(RES / "all-rules.yml"), naming=naming)
    assert r.counts()["artifact-glob-overmatch"] == 0
    assert any("upload 'digests${{ inputs.tag-suffix }}-${{ github.run_id }}' (build.yml line 8) cannot be evaluated"
               in n for n in r.notes), r.notes
    none = tmp_path / "none"
    none.mkdir()
    assert "nothing to check" in lint_matrix(load_matrix(RES / "clean.yml"),
                                             naming=artifact_templates({}, str(none))).notes[0]


def test_this_projects_workflows_name_artifacts_that_never_over_match() -> None:
    naming = artifact_templates(read_workflows(REPO / ".github" / "workflows"), ".github/workflows")
    assert [t.text for t in naming.downloads] == ["${{ inputs.pattern }}", "${{ inputs.pattern }}"]
    for m in (load_matrix(REPO / "backends" / "matrix.yml"), load_matrix(M2608), load_matrix(M9730)):
        r = lint_matrix(m, naming=naming)
        assert r.counts()["artifact-glob-overmatch"] == 0 and r.notes == (), r.notes


def test_annotations_and_summary_escape_what_came_from_outside() -> None:
    text = "include:\n" + entry("-a", runner="bigger-runner")
    m = parse_matrix(text, "odd%dir,x:y\nz.yml")
    r = lint_matrix(m, naming=FIXED_WORKFLOWS)
    line = r.render_github()
    assert line.startswith("::warning file=odd%25dir%2Cx%3Ay%0Az.yml,line=2,title=matrix.lint retired-runner::-a [amd64]")
    assert "\n" not in line
    md = r.render_markdown()
    assert "odd%dir,x:y z.yml" in md and "\\`# localai-ci: allow-runner bigger-runner (why)\\`" in md


@pytest.mark.parametrize("expr", ["!" * 5000 + " matrix.tag-suffix", "(" * 5000 + "matrix.tag-suffix" + ")" * 5000],
                         ids=["5000-negations", "5000-parentheses"])
def test_a_deep_expression_in_a_workflow_is_no_traceback(expr: str, tmp_path: Path) -> None:
    """A workflow's ``${{ }}`` expression is evaluated without recursing into its depth: 5,000 '!' are one
    step, and parentheses nested deeper than GitHub allows (50) leave the template unevaluated, said in a note."""
    wf = tmp_path / "workflows"
    wf.mkdir()
    (wf / "b.yml").write_text(
        "on: push\njobs:\n  b:\n    runs-on: x\n    steps:\n      - uses: actions/upload-artifact@v4\n"
        f"        with:\n          name: digests${{{{ matrix.tag-suffix }}}}--x\n  m:\n    runs-on: x\n    steps:\n"
        f"      - uses: actions/download-artifact@v4\n        with:\n          pattern: digests${{{{ {expr} }}}}-*\n")
    code = ("import sys\nfrom localai_ci.matrix.lint import lint_file\n"
            f"r = lint_file({str(RES / 'clean.yml')!r}, workflows={str(wf)!r})\nprint(r.render_text())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
