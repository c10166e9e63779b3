"""Unit tests for the pipeline plan, the incrementality record and the progress output (no engine)."""
from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from localai_ci.errors import UserError
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.build.feasibility import Feasibility
from localai_ci.oci.localregistry import previous_host
from localai_ci.pipeline.run import (LegOutcome, PipelineOptions, PipelinePlan, SuffixStep, _rows, configured_images,
                         embedded_images, parse_only, run_pipeline, select_legs)
from localai_ci.oci.platforms import Arch, parse_platform
from localai_ci.output.progress import Progress, Row, format_table
from localai_ci.pipeline.state import (BuildInputs, State, hash_context, inputs_digest, load_state, save_state, state_from_json,
                      state_to_json)
from localai_ci.matrix.tags import TagSource
from tests.support.paths import REPO

SHA = "0123456789abcdef0123456789abcdef01234567"
AMD64, ARM64 = parse_platform("linux/amd64"), parse_platform("linux/arm64")


# ---- selection ------------------------------------------------------------------------------------
def _matrices() -> list:
    from localai_ci.matrix.model import load_matrix

    return [load_matrix(REPO / "backends/matrix.yml", Family.BACKENDS),
            load_matrix(REPO / "backends/images.yml", Family.SERVER)]


def test_no_only_selects_every_leg_of_both_matrices() -> None:
    legs = select_legs(_matrices(), ())
    assert {e.family for e in legs} == {Family.BACKENDS, Family.SERVER}
    assert len(legs) == sum(len(m) for m in _matrices())


def test_only_is_exact_and_core_names_the_server_image() -> None:
    legs = select_legs(_matrices(), parse_only("-cpu-hello, -core"))
    assert sorted((e.family.value, e.tag_suffix, e.ptag) for e in legs) == [
        ("backends", "-cpu-hello", "amd64"), ("backends", "-cpu-hello", "arm64"),
        ("server", "", "amd64"), ("server", "", "arm64")]  # -cpu-hello-extra is not a match


def test_only_unknown_suffix_suggests() -> None:
    with pytest.raises(UserError, match=r"'-cpu-helo' \(did you mean '-cpu-hello'\?\)"):
        select_legs(_matrices(), ("-cpu-helo",))


def test_registries_configured_for_one_family_only_is_an_error() -> None:
    opts = PipelineOptions(images="127.0.0.1:5000/a,127.0.0.1:5001/b")
    with pytest.raises(UserError, match="--server-images"):
        configured_images(opts, {}, [Family.BACKENDS, Family.SERVER])
    assert configured_images(opts, {}, [Family.BACKENDS]) == {Family.BACKENDS: "127.0.0.1:5000/a,127.0.0.1:5001/b"}
    assert configured_images(PipelineOptions(), {}, list(Family)) is None


def test_embedded_images_mirror_localai_repositories() -> None:
    imgs = embedded_images(["127.0.0.1:1", "127.0.0.1:2"])
    assert imgs[Family.BACKENDS] == "127.0.0.1:1/localai/local-ai-backends,127.0.0.1:2/localai/localai-backends"
    assert imgs[Family.SERVER] == "127.0.0.1:1/localai/local-ai,127.0.0.1:2/localai/localai"


def test_previous_host_reads_the_registry_state(tmp_path: Path) -> None:
    assert previous_host(tmp_path) is None
    (tmp_path / "localregistry.json").write_text(json.dumps({"host": "127.0.0.1:40123", "pid": 1}))
    assert previous_host(tmp_path) == "127.0.0.1:40123"
    (tmp_path / "localregistry.json").write_text("{not json")
    assert previous_host(tmp_path) is None


# ---- incrementality record ------------------------------------------------------------------------
def _inputs(**kw: object) -> BuildInputs:
    base = dict(family="backends", suffix="-cpu-x", ptag="amd64", platform="linux/amd64", dockerfile="Dockerfile",
                context_hash="c" * 64, build_args=(("BACKEND", "x"),), base_image="ci-offline/u:1",
                base_id="sha256:" + "b" * 64, images=("127.0.0.1:1/a", "127.0.0.1:2/b"))
    base.update(kw)
    return BuildInputs(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("change", [
    {"context_hash": "d" * 64}, {"build_args": (("BACKEND", "y"),)}, {"platform": "linux/arm64"},
    {"base_id": "sha256:" + "e" * 64}, {"images": ("127.0.0.1:3/a", "127.0.0.1:2/b")}, {"dockerfile": "Other"},
])
def test_every_input_changes_the_key(change: dict) -> None:
    assert inputs_digest(_inputs(**change)) != inputs_digest(_inputs())


def test_key_ignores_order_of_args_and_images() -> None:
    a = _inputs(build_args=(("A", "1"), ("B", "2")), images=("x/a", "y/b"))
    b = _inputs(build_args=(("B", "2"), ("A", "1")), images=("y/b", "x/a"))
    assert inputs_digest(a) == inputs_digest(b)


def test_unknown_base_is_never_up_to_date() -> None:
    st = State()
    st.remember(_inputs(base_id=None), "sha256:" + "1" * 64)
    assert st.lookup(_inputs(base_id=None)) is None and not st.legs


def test_record_round_trip_and_lookup(tmp_path: Path) -> None:
    st = State()
    st.remember(_inputs(), "sha256:" + "1" * 64)
    path = tmp_path / "sub" / "state.json"
    save_state(path, st)
    back = load_state(path)
    rec = back.lookup(_inputs())
    assert rec is not None and rec.digest == "sha256:" + "1" * 64
    assert back.lookup(_inputs(context_hash="f" * 64)) is None
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary file left behind


def test_corrupt_state_is_empty_with_a_note(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.write_text('{"version": 1, "legs": {"x": {"key": "nothex", "images": []}}}')
    st = load_state(p)
    assert not st.legs and "rebuilt" in st.notes[0]
    assert state_from_json("[]").notes and load_state(tmp_path / "missing.json").legs == {}
    assert json.loads(state_to_json(State()))["version"] == 1


def test_context_hash_follows_content_and_dockerignore(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY src /src\n")
    (ctx / "src" / "a.txt").write_text("one")
    (ctx / "notes.md").write_text("docs")
    (ctx / ".dockerignore").write_text("# ignored\nnotes.md\n")
    h1 = hash_context(ctx, "Dockerfile")
    (ctx / "notes.md").write_text("docs changed")  # excluded from the engine's context
    assert hash_context(ctx, "Dockerfile") == h1
    (ctx / "src" / "a.txt").write_text("two")
    h2 = hash_context(ctx, "Dockerfile")
    assert h2 != h1
    (ctx / "src" / "a.txt").chmod(0o755)
    assert hash_context(ctx, "Dockerfile") != h2



def test_context_hash_follows_buildkit_dockerignore_exceptions_and_skips_the_state_dir(tmp_path: Path) -> None:
    """BuildKit's .dockerignore semantics (localai_ci.dockerfile.ignore): a `!` exception re-includes a file under an
    excluded directory, `**/` patterns exclude at any depth; the pipeline's own state directory inside
    the context (LocalAI builds with context '.') never changes the key."""
    from localai_ci.pipeline.state import context_files

    ctx = tmp_path / "ctx"
    (ctx / "docs" / "keep").mkdir(parents=True)
    (ctx / "a" / "venv").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "docs" / "page.md").write_text("x")
    (ctx / "docs" / "keep" / "licence.txt").write_text("MIT")
    (ctx / "a" / "venv" / "lib.py").write_text("1")
    (ctx / "a" / "main.py").write_text("2")
    (ctx / ".dockerignore").write_text("docs\n!docs/keep/licence.txt\n**/venv\n")
    state = ctx / ".localai-ci"
    state.mkdir()
    (state / "state.json").write_text("{}")
    paths = [f for f, _, _ in context_files(ctx, skip=state)]
    assert "docs/keep/licence.txt" in paths and "a/main.py" in paths and "Dockerfile" in paths
    assert not any(p.startswith(("docs/page", "a/venv", ".localai-ci")) for p in paths), paths
    key = hash_context(ctx, "Dockerfile", context_files(ctx, skip=state))
    (state / "state.json").write_text('{"changed": 1}')
    (ctx / "a" / "venv" / "lib.py").write_text("changed")
    assert hash_context(ctx, "Dockerfile", context_files(ctx, skip=state)) == key
    (ctx / "docs" / "keep" / "licence.txt").write_text("Apache-2.0")
    assert hash_context(ctx, "Dockerfile", context_files(ctx, skip=state)) != key


# ---- dry run (no engine, no registry) ---------------------------------------------------------------
def _copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "backends", root / "backends")
    return root


def _dry_env(tmp_path: Path, busybox: str) -> dict[str, str]:
    """No engine; offline bases get a shell from the directory ``busybox`` (the ``busybox`` fixture's)."""
    return {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "GITHUB_REF": "refs/heads/master",
            "GITHUB_SHA": SHA, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
            "CI_BUSYBOX_DIR": busybox}


def test_dry_run_prints_the_whole_plan_and_touches_nothing(tmp_path: Path, busybox: dict[str, str]) -> None:
    root = _copy_repo(tmp_path)
    out = io.StringIO()
    report = run_pipeline(PipelineOptions(root=str(root), dry_run=True),
                          env=_dry_env(tmp_path, busybox["CI_BUSYBOX_DIR"]), out=out,
                          err=io.StringIO())
    text = out.getvalue()
    assert report.dry_run and report.exit_code == 0
    assert "== leg 1/11: -cpu-hello [amd64]: native" in text
    # arm64 legs build on this amd64 machine without QEMU: RUN steps on the build platform, COPY to arm64
    assert "== leg 2/11: -cpu-hello [arm64]: cross-build: RUN steps on the build platform" in text
    assert "BACKEND=hello" in text and "BUILD_TYPE=vulkan" in text  # build args of both families
    assert "BUILDER_TARGET=builder-prebuilt" in text and "BUILDER_TARGET=builder-fromsource" in text
    assert "DEPS_REFRESH=20" in text and "APT_MIRROR=" in text  # the workflow's extra build args
    assert "digests-cpu-hello--arm64" in text and "digests-localai-core--amd64" in text  # artifacts
    assert "/localai/local-ai-backends:master-cpu-hello" in text  # merge targets with tags
    assert "tags:      master, sha-0123456" in text  # the server core image: no suffix
    assert "== merge server -gpu-vulkan" in text and "expect linux/amd64,linux/arm64" in text
    assert "nothing was started" in text
    assert not (root / ".localai-ci").exists()  # no registry storage, no state, no digests


def test_dry_run_reports_a_leg_this_engine_cannot_build(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    # an offline base without a shell (no busybox anywhere): legs whose Dockerfile RUNs on it cannot build
    empty = tmp_path / "no-busybox"
    empty.mkdir()
    out = io.StringIO()
    run_pipeline(PipelineOptions(root=str(root), dry_run=True, only=("-cpu-hello", "-cpu-echo")),
                 env=_dry_env(tmp_path, busybox=str(empty)), out=out, err=io.StringIO())
    text = out.getvalue()
    assert "== leg 1/3: -cpu-hello [amd64]: needs a shell in ci-offline/ubuntu:24.04 (amd64)" in text
    assert "has RUN steps on the offline base ci-offline/ubuntu:24.04, which has no shell for amd64" in text
    assert "skipped: amd64 needs a shell in ci-offline/ubuntu:24.04 (amd64)" in text
    assert "== merge -cpu-echo" in text and "-cpu-hello-extra" not in text



def test_dry_run_reads_each_matrix_once_and_runs_without_a_server_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         busybox: dict[str, str]) -> None:
    """A LocalAI-shaped repository has backends/matrix.yml and no server matrix: the pipeline runs the
    backends with a note, and reads the matrix once however many legs it plans (it was once per leg)."""
    import localai_ci.matrix.model

    root = _copy_repo(tmp_path)
    (root / "backends" / "images.yml").unlink()
    reads: list[str] = []
    real = localai_ci.matrix.model.load_matrix

    def counting(path, family=None):  # type: ignore[no-untyped-def]
        reads.append(str(path))
        return real(path, family) if family is not None else real(path)

    for module in [m for name, m in sys.modules.items() if name.startswith("localai_ci.")]:
        if getattr(module, "load_matrix", None) is real:  # where it is imported (at the top of modules)
            monkeypatch.setattr(module, "load_matrix", counting)
    out, err = io.StringIO(), io.StringIO()
    report = run_pipeline(PipelineOptions(root=str(root), dry_run=True),
                          env=_dry_env(tmp_path, busybox["CI_BUSYBOX_DIR"]), out=out, err=err)
    assert report.exit_code == 0
    assert "no backends/images.yml under" in err.getvalue() and "--images-matrix" in err.getvalue()
    assert "== leg 1/8: -cpu-hello [amd64]" in out.getvalue() and "localai-core" not in out.getvalue()
    assert reads == [str(root / "backends" / "matrix.yml")]


def test_a_missing_matrix_given_on_the_command_line_stays_an_error(tmp_path: Path, busybox: dict[str, str]) -> None:
    root = _copy_repo(tmp_path)
    with pytest.raises(UserError, match="nope.yml"):
        run_pipeline(PipelineOptions(root=str(root), dry_run=True, images_matrix=str(root / "nope.yml")),
                     env=_dry_env(tmp_path, busybox["CI_BUSYBOX_DIR"]), out=io.StringIO(), err=io.StringIO())
    (root / "backends" / "matrix.yml").unlink()
    (root / "backends" / "images.yml").unlink()
    with pytest.raises(UserError, match="no matrix to run"):
        run_pipeline(PipelineOptions(root=str(root), dry_run=True), env=_dry_env(tmp_path, busybox["CI_BUSYBOX_DIR"]),
                     out=io.StringIO(),
                     err=io.StringIO())


def test_dry_run_bad_jobs_is_a_user_error(tmp_path: Path, busybox: dict[str, str]) -> None:
    with pytest.raises(UserError, match="--jobs"):
        run_pipeline(PipelineOptions(root=str(_copy_repo(tmp_path)), dry_run=True, jobs=0),
                     env=_dry_env(tmp_path, busybox["CI_BUSYBOX_DIR"]), out=io.StringIO(), err=io.StringIO())


# ---- table and progress -----------------------------------------------------------------------------
def _plan_with(suffixes: tuple[SuffixStep, ...]) -> PipelinePlan:
    return PipelinePlan((), suffixes, {}, "configured", "d", TagSource("push", "", SHA), "s")


class _Leg:
    def __init__(self, ptag: str, runs: bool = True) -> None:
        self.plan = type("P", (), {"ptag": ptag})()
        self.feasibility = Feasibility(runs, "native" if runs else f"needs a native {ptag} runner")


def test_rows_list_failed_legs_and_skip_blocked_suffixes() -> None:
    ok = SuffixStep(Family.BACKENDS, "-a", (_Leg("amd64"),), ("r/x",), ("t-a",), (AMD64,))  # type: ignore[arg-type]
    bad = SuffixStep(Family.BACKENDS, "-b", (_Leg("amd64"), _Leg("arm64")), ("r/x",), ("t-b",), (AMD64, ARM64))  # type: ignore[arg-type]
    blocked = SuffixStep(Family.SERVER, "", (_Leg("amd64"), _Leg("arm64", runs=False)), ("r/y",), ("t",), (AMD64, ARM64))  # type: ignore[arg-type]
    outcomes = {
        LegKey(Family.BACKENDS, "-a", "amd64"): LegOutcome(LegKey(Family.BACKENDS, "-a", "amd64"), "up to date", "sha256:1"),
        LegKey(Family.BACKENDS, "-b", "amd64"): LegOutcome(LegKey(Family.BACKENDS, "-b", "amd64"), "built", "sha256:2"),
        LegKey(Family.BACKENDS, "-b", "arm64"): LegOutcome(LegKey(Family.BACKENDS, "-b", "arm64"), "failed",
                                                     reason="build failed: boom"),
        LegKey(Family.SERVER, "", "amd64"): LegOutcome(LegKey(Family.SERVER, "", "amd64"), "built", "sha256:3"),
        LegKey(Family.SERVER, "", "arm64"): LegOutcome(LegKey(Family.SERVER, "", "arm64"), "skipped"),
    }
    from localai_ci.merge.model import Outcome, SuffixResult

    merged = {(Family.BACKENDS, "-a"): SuffixResult(Family.BACKENDS, "-a", Outcome.MERGED, digest="sha256:L",
                                                    tags=("t-a",), changed=False)}
    rows, failures = _rows(_plan_with((ok, bad, blocked)), outcomes, merged, {(Family.BACKENDS, "-a"): []})
    assert [r.result for r in rows] == ["up to date", "failed: leg arm64", "skipped: arm64 needs a native arm64 runner"]
    assert rows[0].digest == "sha256:L" and rows[1].failed and not rows[2].failed
    assert failures == ["-b [arm64]: build failed: boom"]


def test_rows_inspect_failure_fails_the_suffix() -> None:
    from localai_ci.merge.model import Outcome, SuffixResult

    s = SuffixStep(Family.BACKENDS, "-a", (_Leg("amd64"),), ("r/x",), ("t-a",), (AMD64,))  # type: ignore[arg-type]
    outcomes = {LegKey(Family.BACKENDS, "-a", "amd64"): LegOutcome(LegKey(Family.BACKENDS, "-a", "amd64"), "built", "d")}
    merged = {(Family.BACKENDS, "-a"): SuffixResult(Family.BACKENDS, "-a", Outcome.MERGED, digest="sha256:L",
                                                    tags=("t-a",), changed=True)}
    rows, failures = _rows(_plan_with((s,)), outcomes, merged, {(Family.BACKENDS, "-a"): ["platforms: missing"]})
    assert rows[0].result == "failed: inspect" and failures == ["-a: inspect: platforms: missing"]


def test_plain_progress_lines_count_legs() -> None:
    out = io.StringIO()
    ticks = iter([0.0, 1.5, 2.0, 3.25])
    with Progress(2, out, tty=False, clock=lambda: next(ticks)) as p:
        p.step("-a [amd64]", "building")
        p.leg_done("-a [amd64]", "up to date")
    assert out.getvalue().splitlines() == ["[   1.5s 0/2] -a [amd64]: building", "[   2.0s 1/2] -a [amd64]: up to date"]


def test_format_table_aligns_columns() -> None:
    text = format_table([Row("-a", "amd64(built)", "sha256:1", "t-a", "merged (verified)")])
    head, line = text.splitlines()
    assert head.split() == ["suffix", "legs", "list", "digest", "tags", "result"]
    assert line.index("sha256:1") == head.index("list digest")


@pytest.mark.parametrize("argv, message", [
    (["pipeline", "--jobs", "x", "--dry-run"], "--jobs 'x' is not a whole number"),
    (["pipeline", "--jobs", "0", "--dry-run"], "--jobs 0 must be at least 1"),
    (["matrix.github", "--shards", "many"], "--shards 'many' is not a whole number"),
])
def test_integer_options_are_exit_2_not_a_traceback(argv: list[str], message: str) -> None:
    import subprocess
    import sys

    root = REPO
    done = subprocess.run([sys.executable, "-m", "invoke", "-r", str(root), *argv], capture_output=True, text=True,
                          cwd=root, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def _dry_keys(root: Path, tmp_path: Path, busybox: dict[str, str]) -> dict[str, str]:
    """Each leg's up-to-date key, as the dry run prints it (title -> key)."""
    out = io.StringIO()
    run_pipeline(PipelineOptions(root=str(root), dry_run=True, images="127.0.0.1:5001/b/x",  # fixed: part of the key
                                 server_images="127.0.0.1:5001/s/x"),
                 env=_dry_env(tmp_path, busybox["CI_BUSYBOX_DIR"]), out=out, err=io.StringIO())
    keys, title = {}, ""
    for line in out.getvalue().splitlines():
        if line.startswith("== leg "):
            title = line.split(": ", 2)[1]
        elif line.startswith("incremental: key "):
            keys[title] = line.split()[2].rstrip(";")
    return keys


def test_up_to_date_key_covers_what_the_leg_reads_as_change_detection_derives_it(tmp_path: Path,
                                                                                 busybox: dict[str, str]) -> None:
    """One answer to "what are this leg's inputs?" (localai_ci.changes.inputs, matrix.github's): a file in the build
    context that no leg reads (a matrix comment, another backend's sources) rebuilds nothing; a file
    a leg reads rebuilds that leg only; the Dockerfile and its bind-mounted scripts count."""
    root = _copy_repo(tmp_path)
    before = _dry_keys(root, tmp_path, busybox)
    assert len(before) == 11 and len(set(before.values())) == 11
    with (root / "backends" / "matrix.yml").open("a") as f:
        f.write("# a comment: no leg reads the matrix file\n")
    (root / "backends" / "NOTES.md").write_text("not read by any Dockerfile\n")
    assert _dry_keys(root, tmp_path, busybox) == before
    (root / "backends" / "src" / "echo" / "run.sh").write_text("#!/bin/sh\necho changed\n")
    after = _dry_keys(root, tmp_path, busybox)
    changed = sorted(t for t in before if before[t] != after[t])
    assert changed == sorted(t for t in before if t.startswith("-cpu-echo ")) and changed
    with (root / "backends" / ".docker" / "apt-mirror.sh").open("a") as f:  # bind-mounted in most stages
        f.write("# changed\n")
    last = _dry_keys(root, tmp_path, busybox)
    # every leg but those whose BUILDER_TARGET (builder-prebuilt) skips the stage that mounts it
    assert sorted(t for t in after if last[t] == after[t]) == ["-cpu-tiny-cpp [amd64]", "-cpu-tiny-cpp [arm64]"]
