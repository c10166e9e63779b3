"""Change detection: backend -> paths mapping, shared inputs, matrix diff against a real git base."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ci.changes import (
    SHARED_INPUTS, backend_paths, entry_inputs, is_null_base, normalize_path, select_from_git, select_legs,
)
from ci.errors import UserError
from ci.gha_matrix import plan_from_files
from ci.matrix import load_matrix, parse_matrix

REPO = Path(__file__).resolve().parents[1]
M2608 = REPO.parent / "shared" / "localai" / "backend-matrix.2026-08.yml"


def entry_yaml(suffix: str, platform: str = "linux/amd64", ptag: str | None = None,
               backend: str = "foo", dockerfile: str = "./backend/Dockerfile.python") -> str:
    lines = [
        "  - build-type: ''", "    cuda-major-version: ''", "    cuda-minor-version: ''",
        f"    platforms: '{platform}'", "    tag-latest: 'auto'", f"    tag-suffix: '{suffix}'",
        "    runs-on: 'ubuntu-latest'", "    base-image: 'ubuntu:24.04'", "    skip-drivers: 'false'",
        f"    backend: '{backend}'", f"    dockerfile: '{dockerfile}'", "    context: './'",
        "    ubuntu-version: '2404'",
    ] + ([f"    platform-tag: '{ptag}'"] if ptag else [])
    return "\n".join(lines) + "\n"


def pair(suffix: str, **kw: str) -> str:
    return entry_yaml(suffix, "linux/amd64", "amd64", **kw) + entry_yaml(suffix, "linux/arm64", "arm64", **kw)


def matrix_text(*entries: str) -> str:
    return "include:\n" + "".join(entries)


KOKOROS = entry_yaml("-cpu-kokoros", backend="kokoros", dockerfile="./backend/Dockerfile.rust")
ENTRIES = [
    pair("-cpu-vllm", backend="vllm"),
    entry_yaml("-cuda-vllm", backend="vllm"),
    pair("-cpu-whisper", backend="whisper", dockerfile="./backend/Dockerfile.golang"),
    entry_yaml("-cpu-llama-cpp", backend="llama-cpp", dockerfile="./backend/Dockerfile.llama-cpp"),
    entry_yaml("-cpu-turboquant", backend="turboquant", dockerfile="./backend/Dockerfile.turboquant"),
    KOKOROS,
]
MATRIX = matrix_text(*ENTRIES)


def run_task(*args: str) -> subprocess.CompletedProcess[str]:
    """``invoke matrix.github`` from the project root, with a clean environment."""
    return subprocess.run([sys.executable, "-m", "invoke", "matrix.github", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**GIT_ENV, "HOME": "/tmp"})


def task_outputs(matrix: Path, tmp_path: Path, *extra: str) -> dict[str, object]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = tmp_path / "github_output"
    proc = run_task("--matrix", str(matrix), "--github-output", str(target), *extra)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = {}
    for line in target.read_text().splitlines():
        name, value = line.split("=", 1)
        out[name] = json.loads(value) if value[:1] in "{[" or value in ("true", "false") else value
    return out


def keys(sel) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(e.tag_suffix, e.ptag) for e in sel.entries]


def select(*files: str):  # type: ignore[no-untyped-def]
    return select_legs(parse_matrix(MATRIX), files, matrix_path="backends/matrix.yml")


# --- backend -> paths --------------------------------------------------------------------------

@pytest.mark.parametrize("backend, dockerfile, expected", [
    ("vllm", "./backend/Dockerfile.python", ("backend/python/vllm/", "backends/src/vllm/")),
    ("whisper", "./backend/Dockerfile.golang", ("backend/go/whisper/", "backends/src/whisper/")),
    ("kokoros", "./backend/Dockerfile.rust", ("backend/rust/kokoros/", "backends/src/kokoros/")),
    ("llama-cpp", "./backend/Dockerfile.llama-cpp", ("backend/cpp/llama-cpp/", "backends/src/llama-cpp/")),
    ("ik-llama-cpp", "backend/Dockerfile.ik-llama-cpp", ("backend/cpp/ik-llama-cpp/", "backends/src/ik-llama-cpp/")),
    ("turboquant", "./backend/Dockerfile.turboquant",
     ("backend/cpp/turboquant/", "backend/cpp/llama-cpp/", "backends/src/turboquant/")),
    ("echo", "backends/src/echo/Dockerfile", ("backends/src/echo/",)),
])
def test_backend_paths(backend: str, dockerfile: str, expected: tuple[str, ...]) -> None:
    e = parse_matrix(matrix_text(entry_yaml("-x", backend=backend, dockerfile=dockerfile))).entries[0]
    assert backend_paths(e) == expected
    assert entry_inputs(e)[0] == normalize_path(dockerfile)


def test_context_other_than_root_is_an_input() -> None:
    text = matrix_text(entry_yaml("-x", backend="echo")).replace("context: './'", "context: 'backends/src/echo'")
    e = parse_matrix(text).entries[0]
    assert backend_paths(e)[-1] == "backends/src/echo/"
    assert normalize_path("./backend//Dockerfile.python") == "backend/Dockerfile.python"


def test_every_localai_leg_maps_to_a_language_directory() -> None:
    for e in load_matrix(M2608):
        first = backend_paths(e)[0]
        assert first.startswith(("backend/python/", "backend/go/", "backend/rust/", "backend/cpp/")), (e.backend, first)


# --- selection from a changed-file list --------------------------------------------------------

def test_dockerfile_change_selects_its_legs_only() -> None:
    assert keys(select("backend/Dockerfile.golang")) == [("-cpu-whisper", "amd64"), ("-cpu-whisper", "arm64")]
    assert keys(select("./backend/Dockerfile.rust")) == [("-cpu-kokoros", "amd64")]


def test_backend_dir_change_selects_every_leg_of_that_backend() -> None:
    sel = select("backend/python/vllm/requirements.txt")
    assert keys(sel) == [("-cpu-vllm", "amd64"), ("-cpu-vllm", "arm64"), ("-cuda-vllm", "amd64")]
    assert not sel.everything and "3 of 8 legs" in sel.reason
    assert keys(select("backends/src/kokoros/main.rs")) == [("-cpu-kokoros", "amd64")]


def test_llama_cpp_change_also_rebuilds_its_forks() -> None:
    assert keys(select("backend/cpp/llama-cpp/grpc-server.cpp")) == [
        ("-cpu-llama-cpp", "amd64"), ("-cpu-turboquant", "amd64")]
    assert keys(select("backend/cpp/turboquant/Makefile")) == [("-cpu-turboquant", "amd64")]


@pytest.mark.parametrize("path", ["README.md", "docs/CHANGES.md", "backend/python/vllm-omni/x.py",
                                  "backend/python/vllmx", ".github/workflows/backend_merge.yml", "Makefile.bak"])
def test_unrelated_file_selects_nothing(path: str) -> None:
    sel = select(path)
    assert sel.entries == () and not sel.everything


def test_shared_inputs() -> None:
    assert select("backend/backend.proto").everything
    assert select("Makefile").everything
    assert select("ci/build.py").everything
    assert keys(select("backend/python/common/libbackend.sh")) == [
        ("-cpu-vllm", "amd64"), ("-cpu-vllm", "arm64"), ("-cuda-vllm", "amd64")]
    assert keys(select("pkg/grpc/server.go")) == [("-cpu-whisper", "amd64"), ("-cpu-whisper", "arm64")]
    # every rule is named in the documentation of the mapping
    doc = (REPO / "docs" / "CHANGES.md").read_text()
    for rule in SHARED_INPUTS:
        assert f"`{rule.path}`" in doc or f"`{rule.path.rsplit('/', 1)[-1]}`" in doc, rule.path


def test_matrix_change_without_a_base_selects_everything() -> None:
    sel = select("backends/matrix.yml")
    assert sel.everything and "cannot be diffed" in sel.reason


def test_selection_reason_is_recorded_per_leg() -> None:
    sel = select("backend/Dockerfile.rust")
    assert sel.reasons[("-cpu-kokoros", "amd64")] == "backend/Dockerfile.rust changed (Dockerfile)"


@pytest.mark.parametrize("ref, null", [(None, True), ("", True), ("0" * 40, True), ("  ", True),
                                       ("abc123", False), ("origin/main", False)])
def test_null_base(ref: str | None, null: bool) -> None:
    assert is_null_base(ref) is null


# --- against a real git repository ------------------------------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    base = commit(r, {"backends/matrix.yml": MATRIX, "README.md": "hi\n",
                      "backend/python/vllm/backend.py": "x = 1\n"}, "base")
    return r, base


def test_git_matrix_field_edit_selects_that_suffix(repo: tuple[Path, str]) -> None:
    r, base = repo
    edited = MATRIX.replace("    base-image: 'ubuntu:24.04'\n    skip-drivers: 'false'\n    backend: 'kokoros'",
                            "    base-image: 'ubuntu:22.04'\n    skip-drivers: 'false'\n    backend: 'kokoros'")
    assert edited != MATRIX
    commit(r, {"backends/matrix.yml": edited}, "edit kokoros base image")
    m = load_matrix(r / "backends/matrix.yml")
    sel = select_from_git(m, base, matrix_file=r / "backends/matrix.yml")
    assert keys(sel) == [("-cpu-kokoros", "amd64")]
    assert sel.reasons[("-cpu-kokoros", "amd64")] == "matrix field(s) changed: base-image"


def test_git_one_leg_of_a_pair_edited_selects_both_legs(repo: tuple[Path, str]) -> None:
    r, base = repo
    lines = MATRIX.splitlines(keepends=True)
    # the arm64 leg of -cpu-whisper: its 'ubuntu-version' line
    idx = [i for i, l in enumerate(lines) if "tag-suffix: '-cpu-whisper'" in l][1]
    uv = next(i for i in range(idx, len(lines)) if "ubuntu-version" in lines[i])
    lines[uv] = "    ubuntu-version: '2204'\n"
    commit(r, {"backends/matrix.yml": "".join(lines)}, "edit")
    sel = select_from_git(load_matrix(r / "backends/matrix.yml"), base, matrix_file=r / "backends/matrix.yml")
    assert keys(sel) == [("-cpu-whisper", "amd64"), ("-cpu-whisper", "arm64")]
    assert sel.reasons[("-cpu-whisper", "amd64")] == "sibling leg of -cpu-whisper changed"


def test_git_reordered_matrix_and_new_entry(repo: tuple[Path, str]) -> None:
    r, base = repo
    reordered = matrix_text(KOKOROS, *ENTRIES[:-1], entry_yaml("-cpu-new", backend="new"))
    commit(r, {"backends/matrix.yml": reordered}, "move kokoros first, add -cpu-new")
    sel = select_from_git(load_matrix(r / "backends/matrix.yml"), base, matrix_file=r / "backends/matrix.yml")
    assert keys(sel) == [("-cpu-new", "amd64")]
    assert sel.reasons[("-cpu-new", "amd64")] == "new matrix entry"


def test_git_backend_dir_and_unrelated_file(repo: tuple[Path, str]) -> None:
    r, base = repo
    commit(r, {"README.md": "changed\n"}, "docs")
    m = load_matrix(r / "backends/matrix.yml")
    assert keys(select_from_git(m, base, matrix_file=r / "backends/matrix.yml")) == []
    commit(r, {"backend/python/vllm/backend.py": "x = 2\n"}, "code")
    assert [s for s, _ in keys(select_from_git(m, base, matrix_file=r / "backends/matrix.yml"))] == [
        "-cpu-vllm", "-cpu-vllm", "-cuda-vllm"]


def test_git_rename_out_of_a_backend_dir_counts_both_paths(repo: tuple[Path, str]) -> None:
    r, base = repo
    git(r, "mv", "backend/python/vllm/backend.py", "moved.py")
    git(r, "commit", "-q", "-m", "move")
    sel = select_from_git(load_matrix(r / "backends/matrix.yml"), base, matrix_file=r / "backends/matrix.yml")
    assert {s for s, _ in keys(sel)} == {"-cpu-vllm", "-cuda-vllm"}


def test_git_unparseable_base_matrix_selects_everything(tmp_path: Path) -> None:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    base = commit(r, {"backends/matrix.yml": "include: [oops\n"}, "broken")
    commit(r, {"backends/matrix.yml": MATRIX}, "fixed")
    sel = select_from_git(load_matrix(r / "backends/matrix.yml"), base, matrix_file=r / "backends/matrix.yml")
    assert sel.everything and "unparseable at base" in sel.reason


def test_git_matrix_missing_at_base_selects_everything(tmp_path: Path) -> None:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    base = commit(r, {"README.md": "x\n"}, "first")
    commit(r, {"backends/matrix.yml": MATRIX}, "add matrix")
    sel = select_from_git(load_matrix(r / "backends/matrix.yml"), base, matrix_file=r / "backends/matrix.yml")
    assert sel.everything and "git show" in sel.reason


def test_git_first_push_and_unknown_base_select_everything(repo: tuple[Path, str]) -> None:
    r, _ = repo
    m = load_matrix(r / "backends/matrix.yml")
    sel = select_from_git(m, "0" * 40, matrix_file=r / "backends/matrix.yml")
    assert sel.everything and "no base revision" in sel.reason and len(sel.entries) == len(m)
    sel = select_from_git(m, "deadbeef" * 5, matrix_file=r / "backends/matrix.yml")
    assert sel.everything and "git diff" in sel.reason


def test_git_option_like_base_is_refused(repo: tuple[Path, str]) -> None:
    r, _ = repo
    with pytest.raises(UserError, match="not a git revision"):
        select_from_git(load_matrix(r / "backends/matrix.yml"), "--output=/tmp/x", matrix_file=r / "backends/matrix.yml")


def test_force_all_and_changed_files_through_the_verb(repo: tuple[Path, str], tmp_path: Path) -> None:
    r, base = repo
    mf = r / "backends/matrix.yml"
    p, _ = plan_from_files(mf, force_all=True, base=base)
    assert p.selection.everything and p.legs == 8 and "--force-all" in p.selection.reason
    listing = tmp_path / "changed.txt"
    listing.write_text("backend/Dockerfile.rust\n\nREADME.md\n")
    p, _ = plan_from_files(mf, changed_files=str(listing), root=r)
    assert p.legs == 1 and p.shards[0][0].tag_suffix == "-cpu-kokoros"
    with pytest.raises(UserError, match="either --changed-files FILE or --base REF"):
        plan_from_files(mf, changed_files=str(listing), base=base)
    with pytest.raises(UserError, match="no such file"):
        plan_from_files(mf, changed_files=str(tmp_path / "missing.txt"))


def test_task_with_base_on_a_real_repo(repo: tuple[Path, str], tmp_path: Path) -> None:
    r, base = repo
    commit(r, {"backend/Dockerfile.golang": "FROM scratch\n"}, "go dockerfile")
    out = task_outputs(r / "backends/matrix.yml", tmp_path, "--base", base)
    assert [el["tag-suffix"] for el in out["multi-arch-matrix"]["include"]] == ["-cpu-whisper"] * 2  # type: ignore[index]
    assert out["has-single-arch"] is False and out["legs"] == "2"
    assert [el["tag-suffix"] for el in out["multi-arch-merge-matrix"]["include"]] == ["-cpu-whisper"]  # type: ignore[index]
    # an empty --base (tags, schedules) builds everything
    out = task_outputs(r / "backends/matrix.yml", tmp_path / "x", "--base", "")
    assert out["legs"] == "8"


def test_task_bad_base_outside_git_exits_2(tmp_path: Path) -> None:
    m = tmp_path / "matrix.yml"
    m.write_text(MATRIX)
    proc = run_task("--matrix", str(m), "--base", "HEAD~1", "--github-output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "not in one" in proc.stderr


def test_localai_selection_is_fast_and_exact() -> None:
    m = load_matrix(M2608)
    sel = select_legs(m, ["backend/python/vllm/install.sh"] + [f"docs/{i}.md" for i in range(2000)],
                      matrix_path=".github/backend-matrix.yml")
    assert {e.backend for e in sel.entries} == {"vllm"}
    assert {e.tag_suffix for e in sel.entries} == {e.tag_suffix for e in m if e.backend == "vllm"}
