"""Change detection on real git repositories: derived inputs, the peer's 41 scenarios, our own, the task.

The fixture (``tests/support/localai_tree.py``) is a small LocalAI-shaped repository; every scenario
is a real commit on a branch from its base and goes through ``select_from_git`` (or, where the
peer hands its filter no previous revision, a changed-file list without a base).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.growth import assert_linear
from tests.support.change_scenarios import (
    DARWIN_BACKENDS, OURS, PEER, PEER_FUNCTION_TESTS, Scenario, expand, peer_view_backends, view_of, view_universe,
)
from localai_ci.changes.select import is_null_base, leg_key, select_legs
from localai_ci.errors import UserError
from localai_ci.github.jobs import backend_flags
from localai_ci.github.changed_jobs import plan_from_files, select_from_git
from localai_ci.changes.inputs import Deriver
from localai_ci.matrix.model import load_matrix
from localai_ci.git.worktree import checkout_tree
from tests.support.localai_tree import GIT_ENV, MATRIX_PATH, Repo, git, write
from tests.support.localai_ref import M2608
from tests.support.paths import REPO



@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return Repo(tmp_path_factory.mktemp("localai") / "repo")


def run(repo: Repo, s: Scenario):  # type: ignore[no-untyped-def]
    base = repo.change(s.base_edits) if s.base_edits else repo.base
    if s.listed:
        repo.change({}, start=base)
        m = load_matrix(repo.path / MATRIX_PATH)
        return m, select_legs(m, s.listed, matrix_path=MATRIX_PATH, tree=checkout_tree(repo.path),
                              strict_proto=s.strict_proto)
    assert s.edits is not None
    repo.change(s.edits, start=base)
    m = load_matrix(repo.path / MATRIX_PATH)
    return m, select_from_git(m, base, matrix_file=repo.path / MATRIX_PATH, strict_proto=s.strict_proto)


def assert_whole_suffixes(m, sel) -> None:  # type: ignore[no-untyped-def]
    chosen = {leg_key(e) for e in sel.entries}
    for e in m:
        if e.tag_suffix in {x.tag_suffix for x in sel.entries}:
            assert leg_key(e) in chosen, f"{leg_key(e)}: a sibling leg is selected, so must it be"


def true_backends(m, sel) -> frozenset[str]:  # type: ignore[no-untyped-def]
    return frozenset(name for name, on in backend_flags(m, sel, 4) if on)


# --- LocalAI's own filter suite, scenario by scenario ------------------------------------------

@pytest.mark.parametrize("s", PEER, ids=[s.name for s in PEER])
def test_peer_scenario(fx: Repo, s: Scenario) -> None:
    m, sel = run(fx, s)
    view = view_of(s)
    linux = peer_view_backends(frozenset(e.tag_suffix for e in sel.entries), view)
    darwin = frozenset(d["backend"] for d in sel.darwin)
    assert linux == expand(s.linux, view_universe(view)), sel.details
    assert darwin == expand(s.darwin, DARWIN_BACKENDS), sel.details
    if s.backends is not None:
        assert true_backends(m, sel) == s.backends
    assert bool(s.note) == s.differs, "every difference from the peer needs a note, and only differences"
    assert_whole_suffixes(m, sel)


def test_the_peer_suite_is_covered_and_agreement_is_counted() -> None:
    """41 peer tests: 40 selections here, 1 a function pinned below; 38 agree, 3 differ on purpose."""
    assert len(PEER) + len(PEER_FUNCTION_TESTS) == 41
    assert len({s.name for s in PEER}) == len(PEER)
    differing = [s.name for s in PEER if s.differs]
    assert len(differing) == 3, differing


def test_peer_audio_cpp_darwin_resolves_to_its_cpp_sources(fx: Repo) -> None:
    fx.change({})
    li = Deriver(checkout_tree(fx.path)).darwin(
        {"backend": "audio-cpp", "lang": "go", "tag-suffix": "-metal-darwin-arm64-audio-cpp"})
    assert "backend/cpp/audio-cpp" in li.dirs and not li.unknown
    assert not any(p.startswith("backend/go/audio-cpp") for p in li.dirs)


# --- this project's own scenarios ---------------------------------------------------------------

@pytest.mark.parametrize("s", OURS, ids=[s.name for s in OURS])
def test_scenario(fx: Repo, s: Scenario) -> None:
    m, sel = run(fx, s)
    assert frozenset(e.tag_suffix for e in sel.entries) == s.suffixes, sel.details
    assert frozenset(d["backend"] for d in sel.darwin) == expand(s.darwin, DARWIN_BACKENDS), sel.details
    assert_whole_suffixes(m, sel)
    if s.reason:
        assert any(s.reason in why for whys in sel.details.values() for why in whys), sel.details


def test_additive_proto_edit_says_why_nothing_is_rebuilt(fx: Repo) -> None:
    add = next(s for s in PEER if s.name == "an added proto field rebuilds nothing")
    _, sel = run(fx, add)
    assert sel.entries == () and sel.darwin == ()
    assert any("backend/backend.proto: additive only (adds cache_prompt)" in n for n in sel.notes)


def test_reasons_name_the_changed_file_and_the_chain(fx: Repo) -> None:
    fx.change({"pkg/audio/convert.go": fx.text("pkg/audio/convert.go") + "// y\n"})
    m = load_matrix(fx.path / MATRIX_PATH)
    sel = select_from_git(m, fx.base, matrix_file=fx.path / MATRIX_PATH)
    why = sel.reasons[("-cpu-whisper", "amd64")]
    line = fx.text("backend/Dockerfile.golang").splitlines().index("COPY backend/go/${BACKEND}/ /LocalAI/backend/go/${BACKEND}/") + 1
    assert why.startswith("pkg/audio/convert.go changed: pkg/audio <- ")
    assert "backend/go/whisper/main.go imports github.com/mudler/LocalAI/pkg/audio" in why
    assert why.endswith(f"backend/Dockerfile.golang line {line}: COPY backend/go/whisper/")
    assert sel.reasons[("-cpu-whisper", "arm64")] == why


# --- the whole-selection cases -------------------------------------------------------------------

@pytest.mark.parametrize("ref, null", [(None, True), ("", True), ("0" * 40, True), ("  ", True),
                                       ("abc123", False), ("origin/main", False)])
def test_null_base(ref: str | None, null: bool) -> None:
    assert is_null_base(ref) is null


def test_first_push_and_an_unknown_base_select_everything(fx: Repo) -> None:
    fx.change({})
    m = load_matrix(fx.path / MATRIX_PATH)
    sel = select_from_git(m, "0" * 40, matrix_file=fx.path / MATRIX_PATH)
    assert sel.everything and "no base revision" in sel.reason and len(sel.entries) == len(m)
    assert len(sel.darwin) == len(m.darwin)
    sel = select_from_git(m, "deadbeef" * 5, matrix_file=fx.path / MATRIX_PATH)
    assert sel.everything and "git diff" in sel.reason


def test_option_like_base_is_refused(fx: Repo) -> None:
    m = load_matrix(fx.path / MATRIX_PATH)
    with pytest.raises(UserError, match="not a git revision"):
        select_from_git(m, "--output=/tmp/x", matrix_file=fx.path / MATRIX_PATH)


def test_unparseable_base_matrix_selects_everything(fx: Repo) -> None:
    good = fx.text(MATRIX_PATH)
    broken = fx.change({MATRIX_PATH: "include: [oops\n"})
    fx.change({MATRIX_PATH: good}, start=broken)
    m = load_matrix(fx.path / MATRIX_PATH)
    sel = select_from_git(m, broken, matrix_file=fx.path / MATRIX_PATH)
    assert sel.everything and "unparseable at base" in sel.reason


def test_changes_on_the_base_branch_after_the_fork_do_not_count(fx: Repo) -> None:
    """``--base`` of a pull request is the target branch's tip; both the diff and the base revision
    the matrix is compared with are the merge base's, so the target branch's own later edit of
    another entry is not charged to the pull request."""
    vllm = "base-image: 'nvidia/cuda:13.0.0-devel-ubuntu24.04'\n    skip-drivers: 'false'\n    backend: 'vllm'"
    kokoros = "base-image: 'ubuntu:24.04'\n    skip-drivers: 'false'\n    backend: 'kokoros'"
    fork = fx.change(lambda r: {MATRIX_PATH: r.text(MATRIX_PATH).replace(vllm, vllm.replace("13.0.0", "13.1.0"))})
    moved = fx.change(lambda r: {MATRIX_PATH: r.text(MATRIX_PATH).replace(kokoros, kokoros.replace("24.04", "22.04")),
                                 "backend/go/ced/main.go": r.text("backend/go/ced/main.go") + "// master\n"},
                      start=fx.base)
    git(fx.path, "checkout", "-q", fork)
    m = load_matrix(fx.path / MATRIX_PATH)
    sel = select_from_git(m, moved, matrix_file=fx.path / MATRIX_PATH)
    assert {e.backend for e in sel.entries} == {"vllm"}


def test_rename_out_of_a_backend_dir_counts_both_paths(fx: Repo) -> None:
    fx.change({})
    git(fx.path, "mv", "backend/python/vllm/backend.py", "moved.py")
    git(fx.path, "commit", "-q", "-m", "move")
    m = load_matrix(fx.path / MATRIX_PATH)
    assert {e.backend for e in select_from_git(m, fx.base, matrix_file=fx.path / MATRIX_PATH).entries} == {"vllm"}


# --- through the verb and the task --------------------------------------------------------------

def run_task(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "matrix.github", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**GIT_ENV, "HOME": "/tmp"})


def outputs_of(path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for line in path.read_text().splitlines():
        name, value = line.split("=", 1)
        out[name] = json.loads(value) if (value and value[0] in "{[") or value in ("true", "false") else value
    return out


def test_task_writes_the_darwin_matrix_and_per_backend_outputs(fx: Repo, tmp_path: Path) -> None:
    fx.change({"scripts/build/golang-darwin.sh": fx.text("scripts/build/golang-darwin.sh") + "# x\n",
               "backend/python/vllm/backend.py": "y = 2\n"})
    target = tmp_path / "out"
    proc = run_task("--matrix", str(fx.path / MATRIX_PATH), "--base", fx.base, "--github-output", str(target))
    assert proc.returncode == 0, proc.stderr
    out = outputs_of(target)
    assert out["darwin-matrix"] == {"include": [{"backend": "whisper", "lang": "go",
                                                 "tag-suffix": "-metal-darwin-arm64-whisper", "build-type": "metal"}]}
    assert out["has-darwin"] is True and out["run-all"] is False
    assert out["vllm"] is True and out["whisper"] is True and out["ced"] is False and out["mlx"] is False
    assert [el["tag-suffix"] for el in out["single-arch-1-matrix"]["include"]  # type: ignore[index]
            + out["single-arch-2-matrix"]["include"]] == ["-nvidia-cuda-13-vllm", "-gpu-rocm-hipblas-python-vllm"]  # type: ignore[index]
    assert "1 includeDarwin entries" in proc.stderr


def test_task_explain_prints_the_chain_and_the_inputs(fx: Repo) -> None:
    fx.change({"pkg/audio/convert.go": fx.text("pkg/audio/convert.go") + "// z\n"})
    proc = run_task("--matrix", str(fx.path / MATRIX_PATH), "--base", fx.base, "--explain=-cpu-whisper,-ced")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "multi-arch-matrix=" not in text  # the explanation alone on stdout
    assert "-cpu-whisper (amd64) [" in text and "]: selected" in text
    assert "because pkg/audio/convert.go changed: pkg/audio <- backend/go/whisper/main.go imports " \
           "github.com/mudler/LocalAI/pkg/audio" in text
    assert "-ced (amd64) [" in text and "]: not selected" in text
    assert "    backend/backend.proto (Makefile target protogen-go names backend/backend.proto <- make protogen-go" in text
    assert "    pkg/grpc (Go package: backend/go/ced/main.go imports github.com/mudler/LocalAI/pkg/grpc" in text


def test_task_explain_of_an_unknown_suffix_exits_2_with_a_hint(fx: Repo) -> None:
    proc = run_task("--matrix", str(fx.path / MATRIX_PATH), "--base", fx.base, "--explain=-cpu-whispr")
    assert proc.returncode == 2
    assert "--explain '-cpu-whispr': no leg of" in proc.stderr and "did you mean '-cpu-whisper'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_backend_name_that_cannot_be_an_output_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "m.yml"
    bad.write_text("include: []\nincludeDarwin:\n  - backend: 'has space'\n    tag-suffix: '-x'\n")
    proc = run_task("--matrix", str(bad), "--force-all", "--github-output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "backend 'has space' cannot be a step output name" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_changed_files_through_the_verb_and_root(fx: Repo, tmp_path: Path) -> None:
    fx.change({})
    listing = tmp_path / "changed.txt"
    listing.write_text("backend/rust/kokoros/src/main.rs\n\nREADME.md\n")
    p, _ = plan_from_files(fx.path / MATRIX_PATH, changed_files=str(listing))
    assert [e.tag_suffix for e in p.selection.entries] == ["-kokoros"]
    p, _ = plan_from_files(fx.path / MATRIX_PATH, force_all=True)
    assert p.selection.everything and "--force-all" in p.selection.reason and len(p.darwin) == 5
    with pytest.raises(UserError, match="either --changed-files FILE or --base REF"):
        plan_from_files(fx.path / MATRIX_PATH, changed_files=str(listing), base=fx.base)
    with pytest.raises(UserError, match="no such file"):
        plan_from_files(fx.path / MATRIX_PATH, changed_files=str(tmp_path / "missing.txt"))
    with pytest.raises(UserError, match="--root .*: no such directory"):
        plan_from_files(fx.path / MATRIX_PATH, changed_files=str(listing), root=tmp_path / "nope")


def test_task_with_an_empty_base_builds_everything(fx: Repo, tmp_path: Path) -> None:
    fx.change({})
    proc = run_task("--matrix", str(fx.path / MATRIX_PATH), "--base", "", "--github-output", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    out = outputs_of(tmp_path / "o")
    assert out["run-all"] is True and out["legs"] == str(len(load_matrix(fx.path / MATRIX_PATH)))


def test_task_bad_base_outside_git_exits_2(tmp_path: Path) -> None:
    m = tmp_path / "matrix.yml"
    shutil.copy(REPO / "backends" / "matrix.yml", m)
    proc = run_task("--matrix", str(m), "--base", "HEAD~1", "--github-output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "not in one" in proc.stderr


# --- this project's own example backends ---------------------------------------------------------

@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's backends/ (its matrices, Dockerfiles, scripts) as a git repository."""
    r = tmp_path_factory.mktemp("own") / "repo"
    shutil.copytree(REPO / "backends", r / "backends")
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "base")
    return r


@pytest.mark.parametrize("path, suffixes", [
    ("backends/src/tiny-cpp/main.c", {"-cpu-tiny-cpp", "-vulkan-tiny-cpp"}),
    ("backends/.docker/build-target.sh", {"-cpu-tiny-cpp", "-vulkan-tiny-cpp"}),  # run by the bind-mounted compile.sh
    ("backends/src/hello/run.sh", {"-cpu-hello"}),
    ("backends/src/localai/README.md", set()),  # not in backends/matrix.yml
    # -cpu-tiny-cpp sets builder-base-image: BUILDER_TARGET picks builder-prebuilt, which mounts no apt-mirror.sh
    ("backends/.docker/apt-mirror.sh", {"-cpu-hello", "-cpu-echo", "-cpu-hello-extra", "-vulkan-tiny-cpp"}),
])
def test_this_projects_example_backends(own: Path, path: str, suffixes: set[str]) -> None:
    base = git(own, "rev-parse", "HEAD")
    git(own, "checkout", "-q", "-B", "t", base)
    write(own, {path: (own / path).read_text() + "\n"})
    git(own, "commit", "-q", "-am", "edit")
    m = load_matrix(own / "backends" / "matrix.yml")
    sel = select_from_git(m, base, matrix_file=own / "backends" / "matrix.yml")
    assert {e.tag_suffix for e in sel.entries} == suffixes, sel.details


# --- the real LocalAI matrix on a LocalAI-sized tree ------------------------------------------
# Twice: with LocalAI-shaped Dockerfiles written by the tests, and with LocalAI's real ones when a
# LocalAI tree is named (CI_TEST_LOCALAI_TREE; skipped otherwise).

@pytest.fixture(scope="module", params=["shaped", "real"])
def scale(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.localai_scale import build_tree

    tree = request.getfixturevalue("localai_tree") if request.param == "real" else None
    return build_tree(tmp_path_factory.mktemp("scale") / "tree", M2608, localai=tree)


def test_every_real_leg_derives_from_the_dockerfiles(scale: Path) -> None:
    m = load_matrix(M2608)
    deriver = Deriver(checkout_tree(scale))
    for e in m:
        li = deriver.leg(e)
        assert not li.unknown, (e.tag_suffix, li.unknown)
        assert "backend/backend.proto" in li.files or li.match("backend/backend.proto"), leg_key(e)
    assert all(not deriver.darwin(d).unknown for d in m.darwin)


def test_the_pipeline_key_reads_exactly_the_derived_inputs(scale: Path) -> None:
    """``invoke pipeline`` hashes ``read_paths`` (found by prefix); it must keep exactly the paths
    ``reads`` says a leg reads (tested one by one), for LocalAI's real legs: dirs, Go packages,
    Makefiles of make runs, files; tests never."""
    m = load_matrix(M2608)
    tree = checkout_tree(scale)
    deriver = Deriver(tree)
    paths = sorted(tree.under("") + ["backend", "backend/go"])  # directories appear in a build context too
    seen: set[tuple[object, ...]] = set()
    for e in m:
        li = deriver.leg(e)
        if li.identity() in seen:
            continue
        seen.add(li.identity())
        fast = li.read_paths(paths)
        assert fast == [p for p in paths if li.reads(p)], e.label()
        assert fast and all(not p.endswith("_test.go") for p in fast)
    assert len(seen) > 20  # many distinct derivations were compared


def test_read_paths_keeps_what_each_kind_of_input_covers() -> None:
    """Each kind of input by itself: a directory (all below it, itself too), a Go package (only the
    files directly in it), a file, a make run's Makefile; never a _test.go; all when unknown."""
    from localai_ci.changes.inputs import LegInputs, MakeInput, Via

    why = Via("test")
    li = LegInputs(label="leg", files={"a/f.txt": why, "a/f_test.go": why}, dirs={"d": why},
                   packages={"pkg/p": why}, make_targets=[MakeInput("m/Makefile", ("build",), why)])
    paths = sorted(["a/f.txt", "a/f_test.go", "a/g.txt", "d", "d/x", "d/sub/y", "d/z_test.go", "d-other/x",
                    "pkg/p/p.go", "pkg/p/p_test.go", "pkg/p/sub/q.go", "pkg/pp/r.go", "m/Makefile", "m/other.mk"])
    kept = ["a/f.txt", "d", "d/sub/y", "d/x", "m/Makefile", "pkg/p/p.go"]
    assert li.read_paths(paths) == kept == [p for p in paths if li.reads(p)]
    li.unknown = "the Dockerfile does not parse"
    assert li.read_paths(paths) == paths


def test_real_matrix_selections(scale: Path) -> None:
    m = load_matrix(M2608)
    tree = checkout_tree(scale)
    deriver = Deriver(tree)

    def pick(*files: str) -> set[str]:
        sel = select_legs(m, files, matrix_path=".github/backend-matrix.yml", tree=tree, deriver=deriver)
        return {e.tag_suffix for e in sel.entries}

    python = {e.tag_suffix for e in m if e.dockerfile.endswith("python")}
    go = {e.tag_suffix for e in m if e.dockerfile.endswith("golang")}
    assert pick("backend/backend.proto") == {e.tag_suffix for e in m}
    assert pick("backend/Dockerfile.python") >= python and not pick("backend/Dockerfile.python") & go
    assert pick("go.mod") == go
    assert pick("pkg/audio/convert.go") < go and pick("pkg/audio/convert.go")
    assert pick("backend/python/vllm/backend.py") == {e.tag_suffix for e in m if e.backend == "vllm"}
    assert pick(*[f"docs/{i}.md" for i in range(2000)]) == set()



# ---- no input makes change detection hang ----------------------------------------------------------
@pytest.mark.parametrize("name", ["/x", "//x", "/", "../x", "a/../../x", "backend/../../etc/passwd"])
def test_a_changed_file_outside_the_repository_is_bad_input_not_a_hang(name: str, tmp_path: Path) -> None:
    """One absolute path in --changed-files used to loop for ever (normalize_path('/x') was '//x', and the
    parent walk never left '//'), memory growing: now exit 2 naming the file and line, in bounded time."""
    changed = tmp_path / "changed.txt"
    changed.write_text(f"backend/go/whisper/main.go\n{name}\n")
    root = REPO
    done = subprocess.run([sys.executable, "-m", "localai_ci", "matrix.github", "--matrix", "backends/matrix.yml",
                           "--changed-files", str(changed)], cwd=root, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--changed-files {changed} line 2: {name!r} is not a repository-relative path" in done.stderr, done.stderr


def test_the_parent_walk_ends_for_any_text() -> None:
    from localai_ci.changes.tree import parent_dirs

    code = ("from localai_ci.changes.tree import parent_dirs\n"
            "print([parent_dirs(p) for p in ('//x', '/', '//', '///a//b', '/a/b', 'a//b')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert parent_dirs("a/b/c.txt") == ["a/b", "a"] and parent_dirs("x") == []
    assert parent_dirs("/a/b") == ["/a"]


GO_CHAIN = """
import io, sys, tempfile
from pathlib import Path
sys.path.insert(0, TESTS)
from tests.support.localai_tree import MATRIX_PATH, Repo, _pkg
from localai_ci.github.changed_jobs import write_github_matrices
root = Path(tempfile.mkdtemp()) / "repo"
extra = {"pkg/audio/convert.go": _pkg("pkg/audio", ("pkg/chain/c0",))}
for i in range(n):
    extra[f"pkg/chain/c{i}/c.go"] = _pkg(f"pkg/chain/c{i}", (f"pkg/chain/c{i + 1}",) if i + 1 < n else ())
Repo(root, extra)
(root / "changed.txt").write_text(f"pkg/chain/c{n - 1}/c.go\\n")
def run():
    out = io.StringIO()
    write_github_matrices(matrix=str(root / MATRIX_PATH), family="backends", changed_files=str(root / "changed.txt"),
                          base=None, force_all=False, shards=4, github_output=str(root / "outputs.txt"), env={},
                          out=out, err=io.StringIO(), explain_suffixes=EXPLAIN, root=str(root))
    assert "pkg/chain/c%d/c.go changed" % (n - 1) in out.getvalue() or not EXPLAIN
"""


@pytest.mark.parametrize("explain", [(), ("-cpu-whisper",)], ids=["plan", "explain"])
def test_a_long_go_import_chain_is_derived_in_linear_time(explain: tuple[str, ...]) -> None:
    """A Go import chain of 10,000 packages took 61 s and 2.5 GiB (12.4 GiB with --explain): each package's
    reason held its whole chain as text. Now each is one step on its importer's, and a reason shows at most
    16 steps: 500 and 5,000 packages, ten times the chain in about ten times the time."""
    setup = GO_CHAIN.replace("TESTS", repr(str(REPO))).replace("EXPLAIN", repr(explain))
    assert_linear(setup, "run()", 500, timeout=300, repeat=2)


def _go_chain_peak_mib(n: int, explain: tuple[str, ...]) -> float:
    """What deriving a Go chain of ``n`` packages adds to the peak RSS, in a fresh interpreter (MiB)."""
    setup = GO_CHAIN.replace("TESTS", repr(str(REPO))).replace("EXPLAIN", repr(explain))
    code = (f"import resource\nn = {n}\n" + setup + "\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "run()\nprint((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a Go chain of {n} packages was not derived within 300s") from None
    assert done.returncode == 0, done.stderr[-3000:]
    return float(done.stdout.split()[-1])


@pytest.mark.parametrize("explain", [(), ("-cpu-whisper",)], ids=["plan", "explain"])
def test_a_long_go_import_chain_is_derived_in_linear_memory(explain: tuple[str, ...]) -> None:
    """10,000 packages took 2.5 GiB (12.4 GiB with --explain): every reason held its whole chain. Ten times
    the chain (500 and 5,000 packages) may add about ten times the memory, not a hundred times (what the
    chain's square did); below 8 MiB is taken as 8 MiB (the allocator's noise)."""
    small, large = _go_chain_peak_mib(500, explain), _go_chain_peak_mib(5000, explain)
    assert large <= 30 * max(small, 8.0), (
        f"ten times the chain added {large:.0f} MiB against {small:.0f} MiB; linear would be about ten times")
