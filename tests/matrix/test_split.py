"""localai_ci.matrix.split: byte-exact splice, idempotence, the report, atomic writes -- on fixtures and the real LocalAI files."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from localai_ci.errors import MatrixError, UserError
from localai_ci.matrix.lint import lint_matrix, runner_policy
from localai_ci.matrix.model import Matrix, load_matrix, parse_matrix, read_matrix_text
from localai_ci.matrix.split import split_file, split_text
from tests.support.localai_ref import M2608, M9730
from tests.support.paths import RESOURCES

RES = RESOURCES / "matrices"


# ---- fixture ------------------------------------------------------------------------------------
def test_fixture_split_matches_expected_bytes_and_report() -> None:
    text = (RES / "multi.yml").read_text()
    result = split_text(text, "multi.yml")
    assert result.text == (RES / "split-expected.yml").read_text()
    rep = result.report
    assert (rep.entries_before, rep.entries_after, rep.multi_before, rep.multi_left) == (5, 7, 2, 0)
    assert (rep.split_entries, rep.legs_created, rep.pairs_new, rep.pairs_present) == (2, 4, 2, 1)
    assert rep.moved == (("-gpu-nvidia-cuda-12-whisper", "bigger-runner", "ubuntu-latest/ubuntu-24.04-arm"),
                         ("-gpu-rocm-hipblas-whisper", "arc-runner-set", "ubuntu-latest"))
    assert (rep.retired_left, rep.retired_mentions) == (0, 1)  # the comment '# bigger-runner: ...' stays
    assert rep.render().splitlines() == [
        "split multi.yml: changed",
        "  entries: 7 (before: 5)",
        "  multi-platform entries left: 0 (before: 2; 2 split into 4 per-arch entries)",
        "  per-arch pairs (amd64+arm64): 3 (2 new, 1 already present)",
        "  moved off retired runners: 2 (1 bigger-runner -> ubuntu-latest/ubuntu-24.04-arm, "
        "1 arc-runner-set -> ubuntu-latest)",
        "  retired-runner references left: 0 entries (1 mentions in the text, e.g. comments)",
    ]
    # the result re-loads, lints clean of the migrated rules, and a second run changes nothing
    assert lint_matrix(result.after).counts()["multi-platform"] == 0
    again = split_text(result.text, "multi.yml")
    assert again.text == result.text and not again.report.changed
    assert again.report.render().startswith("split multi.yml: no changes (already per-arch)")


def test_fixture_crlf_is_kept() -> None:
    text = (RES / "multi.yml").read_text().replace("\n", "\r\n")
    out = split_text(text).text
    assert out == (RES / "split-expected.yml").read_text().replace("\n", "\r\n")
    assert "\n" not in out.replace("\r\n", "")


def test_byte_order_mark_and_non_ascii_comments_are_kept() -> None:
    text = "\ufeff# caf\u00e9 \u2014 notes\n" + (RES / "multi.yml").read_text()
    assert split_text(text).text == "\ufeff# caf\u00e9 \u2014 notes\n" + (RES / "split-expected.yml").read_text()


def test_no_trailing_newline_and_plain_first_key() -> None:
    text = ("include:\n  - platforms: linux/amd64,linux/arm64\n    build-type: ''\n    tag-latest: auto\n"
            "    tag-suffix: -a\n    runs-on: x-runner\n    base-image: b\n    dockerfile: d\n    context: c\n"
            "    cuda-major-version: ''\n    cuda-minor-version: ''\n    skip-drivers: 'false'\n    backend: x\n"
            "    ubuntu-version: '2404'")
    out = split_text(text).text
    m = parse_matrix(out)
    assert [(e.ptag, e.runs_on, e.platform_tag_field) for e in m] == [
        ("amd64", "ubuntu-latest", "amd64"), ("arm64", "ubuntu-24.04-arm", "arm64")]
    assert "  - platforms: linux/amd64\n    platform-tag: amd64\n" in out
    assert not out.endswith("\n")


def test_existing_platform_tag_on_multi_entry_is_rewritten_not_duplicated() -> None:
    text = (RES / "multi.yml").read_text().replace(
        "    platforms: 'linux/amd64,linux/arm64'\n", "    platforms: 'linux/amd64,linux/arm64'\n    platform-tag: 'multi'\n")
    out = split_text(text).text
    assert out.count("platform-tag: 'multi'") == 0
    assert out == (RES / "split-expected.yml").read_text()


def test_custom_policy_runners() -> None:
    policy = runner_policy(runner_amd64="x64-big", runner_arm64="arm-big", retired="ubuntu-latest-old")
    out = split_text((RES / "multi.yml").read_text(), policy=policy)
    runners = [e.runs_on for e in out.after]
    assert runners.count("x64-big") == 2 and runners.count("arm-big") == 2
    # bigger-runner / arc-runner-set are not retired under this policy: left alone
    assert "bigger-runner" not in runners and "arc-runner-set" in runners


def test_split_refuses_to_create_a_duplicate_leg() -> None:
    text = (RES / "multi.yml").read_text().replace("tag-suffix: '-cpu-kokoro'", "tag-suffix: '-cpu-whisper'")
    with pytest.raises(MatrixError, match=r"line 6: entry tag-suffix '-cpu-whisper': splitting it would create "
                                          r"the amd64 leg that line \d+ already defines"):
        split_text(text)


def test_split_leaves_platform_without_native_runner() -> None:
    text = (RES / "multi.yml").read_text().replace("'linux/amd64,linux/arm64'", "'linux/amd64,linux/s390x'")
    result = split_text(text, "m.yml")
    assert result.report.multi_left == 1 and result.report.split_entries == 1
    assert result.report.left_reasons == (
        "m.yml line 6: '-cpu-whisper' has no native runner for linux/s390x; it stays multi-platform",)


def test_split_refuses_bad_input_like_the_loader() -> None:
    with pytest.raises(MatrixError, match="no 'include:' list"):
        split_text("includeDarwin: []\n")
    with pytest.raises(MatrixError, match="line breaks other than"):
        split_text((RES / "multi.yml").read_text().replace("# Comments", "# x\u2028# Comments"))


# ---- the real LocalAI files ----------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def remerge(text: str, m: Matrix) -> tuple[str, int]:
    """Undo the migration for every restorable amd64/arm64 pair, using only the loader's line spans.

    A pair is restorable when the arm64 entry directly follows the amd64 one and differs from it
    only in platforms / platform-tag / runs-on. The pair becomes one 'linux/amd64,linux/arm64'
    entry without platform-tag. Returns the new text and the number of merged pairs.
    """
    lines = _lines(text)
    entries = list(m)
    drop: set[int] = set()  # 0-based line numbers to delete
    replace: dict[int, str] = {}
    merged = 0
    for a, b in zip(entries, entries[1:]):
        if (a.tag_suffix, a.ptag, b.tag_suffix, b.ptag) != (a.tag_suffix, "amd64", a.tag_suffix, "arm64"):
            continue
        if b.line != a.end_line + 1 or a.runs_on != "ubuntu-latest":
            continue
        block_a, block_b = lines[a.line - 1:a.end_line], lines[b.line - 1:b.end_line]
        as_arm = [ln.replace("'linux/amd64'", "'linux/arm64'").replace("platform-tag: 'amd64'", "platform-tag: 'arm64'")
                  .replace("'ubuntu-latest'", "'ubuntu-24.04-arm'") for ln in block_a]
        if as_arm != block_b:
            continue
        merged += 1
        for i in range(a.line - 1, a.end_line):
            if lines[i].strip() == "platforms: 'linux/amd64'":
                replace[i] = lines[i].replace("'linux/amd64'", "'linux/amd64,linux/arm64'")
            elif lines[i].strip() == "platform-tag: 'amd64'":
                drop.add(i)
        drop.update(range(b.line - 1, b.end_line))
    out = [replace.get(i, ln) for i, ln in enumerate(lines) if i not in drop]
    return "".join(out), merged


def put_on_retired(text: str, m: Matrix, count: int) -> tuple[str, list[int]]:
    """Move the first ``count`` single-arch amd64 entries from ubuntu-latest to bigger-runner."""
    lines = _lines(text)
    moved = []
    for e in m:
        if len(moved) == count:
            break
        if e.platform_tag_field or e.multi_platform or e.runs_on != "ubuntu-latest":
            continue
        for i in range(e.line - 1, e.end_line):
            if lines[i].strip() == "runs-on: 'ubuntu-latest'":
                lines[i] = lines[i].replace("'ubuntu-latest'", "'bigger-runner'")
                moved.append(i)
    return "".join(lines), moved


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_pr9730_remerged_then_split_is_byte_identical(crlf: bool) -> None:
    original = read_matrix_text(M9730)
    if crlf:
        original = original.replace("\n", "\r\n")
    m = parse_matrix(original, str(M9730))
    merged, n = remerge(original, m)
    assert n == 27  # of the 36 pairs; the other 9 have comments between their legs
    retired, moved = put_on_retired(merged, parse_matrix(merged), 5)
    before = parse_matrix(retired)
    assert sum(e.multi_platform for e in before) == 27 and len(before) == 271 - 27
    result = split_text(retired, "pr9730.yml")
    assert result.text == original  # every byte: comments, quoting, order, line ends
    rep = result.report
    assert (rep.entries_before, rep.entries_after, rep.multi_left) == (244, 271, 0)
    assert (rep.split_entries, rep.legs_created, len(rep.moved)) == (27, 54, 5)
    assert (rep.pairs_new, rep.pairs_present, rep.retired_left) == (27, 9, 0)
    assert split_text(result.text).text == result.text  # idempotent


def test_2026_08_remerged_then_split_restores_all_but_the_retired_runner_lines() -> None:
    original = read_matrix_text(M2608)
    m = load_matrix(M2608)
    merged, n = remerge(original, m)
    assert n == 43  # of 71 pairs: 8 have text between the legs, 3 differ in builder-base-image
    result = split_text(merged, "2026-08.yml")
    # split also moves the six real bigger-runner entries (amd64) to ubuntu-latest; nothing else differs
    got, want = _lines(result.text), _lines(original)
    assert len(got) == len(want) == 6542
    changed = [i + 1 for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert changed == [460, 476, 492, 1159, 1174, 1189]
    assert all(want[i - 1] == "    runs-on: 'bigger-runner'\n" and got[i - 1] == "    runs-on: 'ubuntu-latest'\n"
               for i in changed)
    rep = result.report
    assert (rep.entries_before, rep.entries_after, rep.multi_before, rep.multi_left) == (414, 457, 43, 0)
    assert (rep.pairs_new, rep.pairs_present, len(rep.moved), rep.retired_left) == (43, 28, 6, 0)
    assert rep.retired_mentions == 7  # in comments only
    assert split_text(result.text).text == result.text


def test_real_files_split_as_they_are() -> None:
    pr = split_text(read_matrix_text(M9730), "pr9730")
    assert not pr.report.changed and pr.text == read_matrix_text(M9730)
    assert (pr.report.entries_after, pr.report.pairs_present, pr.report.multi_left) == (271, 36, 0)
    aug = split_text(read_matrix_text(M2608), "2026-08").report
    assert (aug.entries_after, aug.pairs_present, len(aug.moved), aug.retired_left) == (457, 71, 6, 0)


# ---- the file edge ---------------------------------------------------------------------------------
def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_split_file_in_place_is_atomic_and_keeps_mode(tmp_path: Path) -> None:
    f = tmp_path / "matrix.yml"
    f.write_bytes((RES / "multi.yml").read_bytes())
    os.chmod(f, 0o640)
    out = split_file(f, in_place=True)
    assert out.written == str(f)
    assert f.read_bytes() == (RES / "split-expected.yml").read_bytes()
    assert f.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["matrix.yml"]  # no temp file left behind
    mtime = f.stat().st_mtime_ns
    assert split_file(f, in_place=True).written is None  # nothing to change: not rewritten
    assert f.stat().st_mtime_ns == mtime


def test_split_file_output_and_dry_run(tmp_path: Path) -> None:
    src = tmp_path / "in.yml"
    src.write_bytes((RES / "multi.yml").read_bytes())
    dry = split_file(src, output=tmp_path / "out.yml", dry_run=True)
    assert dry.written is None and _snapshot(tmp_path) == {"in.yml": (RES / "multi.yml").read_bytes()}
    assert re.search(r"^-    platforms: 'linux/amd64,linux/arm64'$", dry.diff, re.M)
    assert "+    platform-tag: 'arm64'\n" in dry.diff
    done = split_file(src, output=tmp_path / "out.yml")
    assert done.written == str(tmp_path / "out.yml")
    assert (tmp_path / "out.yml").read_bytes() == (RES / "split-expected.yml").read_bytes()
    assert src.read_bytes() == (RES / "multi.yml").read_bytes()


def test_split_file_argument_errors_write_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in.yml"
    src.write_bytes((RES / "multi.yml").read_bytes())
    snap = _snapshot(tmp_path)
    with pytest.raises(UserError, match="say where to write: --in-place, --output PATH"):
        split_file(src)
    with pytest.raises(UserError, match="either --in-place or --output PATH, not both"):
        split_file(src, in_place=True, output=tmp_path / "o.yml")
    with pytest.raises(UserError, match="directory .*/nope does not exist"):
        split_file(src, output=tmp_path / "nope" / "o.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("include:\n  - tag-suffix: '; rm -rf /'\n")
    snap = _snapshot(tmp_path)
    with pytest.raises(MatrixError):
        split_file(bad, in_place=True)
    assert _snapshot(tmp_path) == snap
