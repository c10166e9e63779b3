"""GitHub job matrices: class split, sharding at the 256 limit, merge matrices, the real task."""
from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest

from localai_ci.changes.select import select_all
from localai_ci.errors import MatrixError, UserError
from localai_ci.github.jobs import (
    GITHUB_MATRIX_LIMIT, build_element, check_leg_fields, element_fields, merge_elements, outputs, plan,
    shard, split_classes,
)
from localai_ci.matrix.model import Entry, Matrix, load_matrix, parse_matrix
from localai_ci.matrix.naming import Family, artifact_name, artifact_pattern
from localai_ci.oci.platforms import parse_platform
from tests.support.localai_ref import M2608, M9730
from tests.support.paths import REPO



def entry_yaml(suffix: str, platform: str = "linux/amd64", ptag: str | None = None, tag_latest: str = "auto",
               backend: str = "foo", dockerfile: str = "./backend/Dockerfile.python") -> str:
    lines = [
        "  - build-type: ''", "    cuda-major-version: ''", "    cuda-minor-version: ''",
        f"    platforms: '{platform}'", f"    tag-latest: '{tag_latest}'", f"    tag-suffix: '{suffix}'",
        f"    runs-on: '{'ubuntu-24.04-arm' if 'arm64' in platform else 'ubuntu-latest'}'",
        "    base-image: 'ubuntu:24.04'", "    skip-drivers: 'false'", f"    backend: '{backend}'",
        f"    dockerfile: '{dockerfile}'", "    context: './'", "    ubuntu-version: '2404'",
    ]
    if ptag:
        lines.append(f"    platform-tag: '{ptag}'")
    return "\n".join(lines) + "\n"


def matrix_text(*entries: str) -> str:
    return "include:\n" + "".join(entries)


def pair(suffix: str, **kw: str) -> str:
    return entry_yaml(suffix, "linux/amd64", "amd64", **kw) + entry_yaml(suffix, "linux/arm64", "arm64", **kw)


def make_entries(n: int, prefix: str = "-s", legs: int = 1) -> list[Entry]:
    """``n`` suffixes of ``legs`` legs each, built directly (fast, for the size tests)."""
    plats = [parse_platform("linux/amd64"), parse_platform("linux/arm64")][:legs]
    return [Entry(family=Family.BACKENDS, tag_suffix=f"{prefix}{i}", platforms=(p,), tag_latest="auto",
                  runs_on="ubuntu-latest", base_image="ubuntu:24.04", dockerfile="Dockerfile", context="./",
                  platform_tag_field=str(p.arch) if legs > 1 else "", backend="foo",
                  raw=(("tag-suffix", f"{prefix}{i}"),))
            for i in range(n) for p in plats]


def as_matrix(entries: list[Entry]) -> Matrix:
    return Matrix(path="<test>", family=Family.BACKENDS, entries=tuple(entries))


# --- class split -------------------------------------------------------------------------------

def test_class_split_pairs_are_multi_arch_singletons_single_arch() -> None:
    m = parse_matrix(matrix_text(
        pair("-cpu-a"),
        entry_yaml("-cuda-b"),
        entry_yaml("-l4t-c", "linux/arm64", "arm64"),  # a platform tag but no sibling: single-arch
        pair("-cpu-d"),
    ))
    multi, single = split_classes(m.entries, m)
    assert [(e.tag_suffix, e.ptag) for e in multi] == [
        ("-cpu-a", "amd64"), ("-cpu-a", "arm64"), ("-cpu-d", "amd64"), ("-cpu-d", "arm64")]
    assert [(e.tag_suffix, e.ptag) for e in single] == [("-cuda-b", "amd64"), ("-l4t-c", "arm64")]


def test_class_comes_from_the_whole_matrix_not_the_selection() -> None:
    m = parse_matrix(matrix_text(pair("-cpu-a"), entry_yaml("-cuda-b")))
    multi, single = split_classes([m.entries[0]], m)  # one leg of a pair selected alone
    assert [e.ptag for e in multi] == ["amd64"] and single == []


# --- sharding ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n, shards", [(0, 4), (1, 4), (3, 4), (315, 4), (199, 4), (1000, 4), (7, 1)])
def test_shards_are_contiguous_and_balanced(n: int, shards: int) -> None:
    legs = make_entries(n)
    parts = shard(legs, shards)
    assert len(parts) == shards
    assert [e for p in parts for e in p] == legs  # contiguous, file order, nothing lost
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("n", [255, 256])
def test_one_shard_up_to_the_limit_is_accepted(n: int) -> None:
    assert [len(p) for p in shard(make_entries(n), 1)] == [n]


def test_one_shard_over_the_limit_is_refused_with_the_count_needed() -> None:
    with pytest.raises(UserError) as exc:
        shard(make_entries(257), 1)
    assert "257 legs" in str(exc.value) and "2 shards are needed" in str(exc.value)
    assert "--shards 2" in str(exc.value)


def test_four_shards_at_and_around_the_limit() -> None:
    assert [len(p) for p in shard(make_entries(4 * 256), 4)] == [256] * 4
    assert max(len(p) for p in shard(make_entries(4 * 256 - 1), 4)) == 256
    with pytest.raises(UserError, match=r"5 shards are needed"):
        shard(make_entries(4 * 256 + 1), 4)


def test_multi_arch_class_over_the_limit_is_refused() -> None:
    ok = as_matrix(make_entries(128, "-m", legs=2))  # 256 legs
    assert len(plan(ok, select_all(ok, "all")).multi) == GITHUB_MATRIX_LIMIT
    big = as_matrix(make_entries(129, "-m", legs=2))  # 258 legs
    with pytest.raises(UserError, match=r"multi-arch class has 258 legs.*need 2 matrices"):
        plan(big, select_all(big, "all"))


def test_zero_shards_is_refused() -> None:
    with pytest.raises(UserError, match="at least 1 shard"):
        shard([], 0)


# --- merge matrices and elements ---------------------------------------------------------------

def test_merge_matrix_one_entry_per_suffix_with_tag_latest_and_exact_pattern() -> None:
    m = parse_matrix(matrix_text(pair("-cpu-vllm", tag_latest="false"), pair("-cpu-vllm-omni"),
                                 entry_yaml("-cuda-x", tag_latest="true")))
    p = plan(m, select_all(m, "all"), shards=2)
    assert p.multi_merge == (
        {"tag-suffix": "-cpu-vllm", "tag-latest": "false", "artifact-pattern": "digests-cpu-vllm--*",
         "platforms": "linux/amd64,linux/arm64", "legs": "2"},
        {"tag-suffix": "-cpu-vllm-omni", "tag-latest": "auto", "artifact-pattern": "digests-cpu-vllm-omni--*",
         "platforms": "linux/amd64,linux/arm64", "legs": "2"},
    )
    assert p.shard_merges == (
        ({"tag-suffix": "-cuda-x", "tag-latest": "true", "artifact-pattern": "digests-cuda-x--*",
          "platforms": "linux/amd64", "legs": "1"},), ())
    out = outputs(p)
    assert out["has-multi-arch"] is True and out["has-single-arch-1"] is True and out["has-single-arch-2"] is False
    assert out["single-arch-2-matrix"] == {"include": []}


def test_tag_latest_disagreement_is_an_error() -> None:
    m = parse_matrix(matrix_text(entry_yaml("-cpu-a", "linux/amd64", "amd64", tag_latest="auto"),
                                 entry_yaml("-cpu-a", "linux/arm64", "arm64", tag_latest="false")))
    with pytest.raises(MatrixError, match=r"-cpu-a.*disagree on tag-latest.*'auto'.*'false'"):
        merge_elements(m.entries)
    with pytest.raises(MatrixError):
        plan(m, select_all(m, "all"))


def test_build_element_carries_every_field_and_the_artifact_name() -> None:
    m = parse_matrix(matrix_text(entry_yaml("-cpu-a", "linux/arm64", "arm64")))
    el = build_element(m.entries[0])
    assert tuple(el) == element_fields(Family.BACKENDS)
    assert el["platform-tag"] == "arm64" and el["artifact-name"] == "digests-cpu-a--arm64"
    assert all(el[k] == v for k, v in m.entries[0].raw)
    assert el["builder-base-image"] == ""  # absent optional field: present, empty


def test_check_leg_fields() -> None:
    e = parse_matrix(matrix_text(entry_yaml("-cpu-a"))).entries[0]
    check_leg_fields(e, {**build_element(e), "amdgpu-targets": None})
    with pytest.raises(UserError, match=r"base-image: workflow passed 'ubuntu:22.04', matrix says 'ubuntu:24.04'"):
        check_leg_fields(e, {"base-image": "ubuntu:22.04"})


# --- the real task on LocalAI's matrices -------------------------------------------------------

def run_task(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "matrix.github", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})


def parse_outputs(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for line in text.splitlines():
        name, value = line.split("=", 1)
        out[name] = json.loads(value) if (value[:1] and value[:1] in "{[") or value in ("true", "false") else value
    return out


def task_outputs(matrix: Path, tmp_path: Path, *extra: str) -> dict[str, object]:
    target = tmp_path / "github_output"
    proc = run_task("--matrix", str(matrix), "--github-output", str(target), *extra)
    assert proc.returncode == 0, proc.stderr
    return parse_outputs(target.read_text())


@pytest.mark.parametrize("path, legs, suffixes", [(M2608, 457, 386), (M9730, 271, 235)])
def test_localai_matrix_union_is_every_leg_and_merges_cover_every_suffix(
        tmp_path: Path, path: Path, legs: int, suffixes: int) -> None:
    m = load_matrix(path)
    assert len(m) == legs and len(m.suffixes()) == suffixes
    out = task_outputs(path, tmp_path)
    classes = ["multi-arch"] + [f"single-arch-{i}" for i in range(1, 5)]
    built = [(el["tag-suffix"], el["platform-tag"])
             for c in classes for el in out[f"{c}-matrix"]["include"]]  # type: ignore[index]
    assert len(built) == len(set(built)) == legs
    assert set(built) == {(e.tag_suffix, e.ptag) for e in m}
    merged = [el["tag-suffix"] for c in classes for el in out[f"{c}-merge-matrix"]["include"]]  # type: ignore[index]
    assert len(merged) == len(set(merged)) == suffixes and set(merged) == set(m.suffixes())
    for c in classes:
        assert len(out[f"{c}-matrix"]["include"]) <= GITHUB_MATRIX_LIMIT  # type: ignore[index]
        assert out[f"has-{c}"] is bool(out[f"{c}-matrix"]["include"])  # type: ignore[index]
    # each class's merges name exactly the suffixes it builds
    for c in classes:
        assert ({el["tag-suffix"] for el in out[f"{c}-matrix"]["include"]}  # type: ignore[index]
                == {el["tag-suffix"] for el in out[f"{c}-merge-matrix"]["include"]})  # type: ignore[index]
    assert out["legs"] == str(legs) and out["suffixes"] == str(suffixes) and out["shards"] == "4"


def test_localai_2026_08_class_sizes(tmp_path: Path) -> None:
    out = task_outputs(M2608, tmp_path)
    sizes = [len(out[f"{c}-matrix"]["include"])  # type: ignore[index]
             for c in ["multi-arch"] + [f"single-arch-{i}" for i in range(1, 5)]]
    assert sizes == [142, 79, 79, 79, 78]
    for el in out["multi-arch-matrix"]["include"]:  # type: ignore[index]
        assert el["artifact-name"] == artifact_name(Family.BACKENDS, el["tag-suffix"], el["platform-tag"])


def test_localai_download_patterns_never_over_match() -> None:
    m = load_matrix(M2608)
    names = {artifact_name(Family.BACKENDS, e.tag_suffix, e.ptag): e.tag_suffix for e in m}
    for el in merge_elements(m.entries):
        assert el["artifact-pattern"] == artifact_pattern(Family.BACKENDS, el["tag-suffix"])
        hits = {names[n] for n in names if fnmatch.fnmatchcase(n, el["artifact-pattern"])}
        assert hits == {el["tag-suffix"]}, el
    # the glob LocalAI used before (digests<suffix>-*) does over-match on the same data
    assert any(len({s for n, s in names.items() if fnmatch.fnmatchcase(n, f"digests{x}-*")}) > 1
               for x in m.suffixes())


def test_task_refuses_too_few_shards_with_exit_2(tmp_path: Path) -> None:
    proc = run_task("--matrix", str(M2608), "--shards", "1", "--github-output", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "315 legs" in proc.stderr and "2 shards are needed" in proc.stderr


def test_task_tag_latest_disagreement_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "matrix.yml"
    bad.write_text(matrix_text(entry_yaml("-cpu-a", "linux/amd64", "amd64", tag_latest="auto"),
                               entry_yaml("-cpu-a", "linux/arm64", "arm64", tag_latest="true")))
    proc = run_task("--matrix", str(bad), "--github-output", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert "disagree on tag-latest" in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing written on a refusal


def test_task_prints_outputs_without_github_output(tmp_path: Path) -> None:
    m = tmp_path / "matrix.yml"
    m.write_text(matrix_text(pair("-cpu-a"), entry_yaml("-cuda-b")))
    proc = run_task("--matrix", str(m), "--force-all", "--shards", "2")
    assert proc.returncode == 0, proc.stderr
    out = parse_outputs(proc.stdout)
    assert out["has-multi-arch"] is True and out["has-single-arch-2"] is False
    assert "--force-all" in proc.stderr and "3 legs" in proc.stderr


# --- speed: the libyaml fast path of localai_ci.matrix.model gives the same legs ----------------------------

@pytest.mark.parametrize("path", [M2608, M9730])
def test_libyaml_path_loads_the_same_legs_as_the_python_path(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import localai_ci.matrix.model

    text = path.read_text()
    done, _ = localai_ci.matrix.model._compose_libyaml(text)
    assert done  # the fast path is taken on LocalAI's matrices
    fast = parse_matrix(text, "m")
    monkeypatch.setattr(localai_ci.matrix.model, "_compose_libyaml", lambda text: (False, None))
    slow = parse_matrix(text, "m")
    assert fast == slow
    assert [(e.line, e.end_line, e.raw) for e in fast] == [(e.line, e.end_line, e.raw) for e in slow]


def test_anchors_still_take_the_checking_path() -> None:
    text = matrix_text(entry_yaml("-cpu-a")).replace("base-image: 'ubuntu:24.04'", "base-image: &b 'ubuntu:24.04'")
    with pytest.raises(MatrixError, match="anchors"):
        parse_matrix(text)


def test_multi_platform_entries_are_refused_with_the_fix() -> None:
    from localai_ci.changes.select import select_all
    from localai_ci.errors import UserError
    from localai_ci.github.jobs import plan
    from localai_ci.matrix.model import parse_matrix

    m = parse_matrix(matrix_text(entry_yaml("-cpu-a"), entry_yaml("-cpu-qemu", "linux/amd64,linux/arm64")), "m.yml")
    with pytest.raises(UserError, match=r"1 multi-platform entries \(-cpu-qemu \(m.yml line \d+\)\).*matrix.split"):
        plan(m, select_all(m, "all"))


def test_darwin_matrix_and_per_backend_outputs_of_a_full_selection() -> None:
    m = load_matrix(M2608)
    out = outputs(plan(m, select_all(m, "all")))
    assert len(out["darwin-matrix"]["include"]) == 62 and out["has-darwin"] is True  # type: ignore[index]
    assert out["darwin-matrix"]["include"][0] == {  # type: ignore[index]
        "backend": "diffusers", "tag-suffix": "-metal-darwin-arm64-diffusers", "build-type": "mps"}
    assert out["run-all"] is True and out["vllm"] is True and out["mlx"] is True  # mlx: a Darwin-only backend


def test_too_many_darwin_entries_are_refused() -> None:
    darwin = "".join(f"  - backend: 'b{i}'\n    tag-suffix: '-metal-b{i}'\n" for i in range(GITHUB_MATRIX_LIMIT + 1))
    m = parse_matrix(matrix_text(entry_yaml("-cpu-a")) + "includeDarwin:\n" + darwin, "m.yml")
    with pytest.raises(UserError, match="257 includeDarwin entries are selected, over GitHub's limit of 256"):
        plan(m, select_all(m, "all"))
