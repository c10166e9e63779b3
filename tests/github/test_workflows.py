"""The GitHub workflows: schema-valid, injection-safe, and every matrix field reaches the task."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localai_ci.github.jobs import DEFAULT_SHARDS, element_fields, outputs, plan
from localai_ci.changes.select import select_all
from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family, artifact_name
from tests.support.localai_ref import M2608
from tests.support.paths import REPO

WORKFLOWS = REPO / ".github" / "workflows"
EXPECTED = ["audit.yml", "backend.yml", "backend_build.yml", "backend_build_darwin.yml", "backend_merge.yml", "backend_pr.yml",
            "image.yml", "image_build.yml", "image_merge.yml"]
CLASSES = ["multi-arch"] + [f"single-arch-{i}" for i in range(1, DEFAULT_SHARDS + 1)]
BUILDS = {"backend_build.yml": (Family.BACKENDS, "invoke build-backend"),
          "image_build.yml": (Family.SERVER, "invoke build-image")}


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def triggers(wf: dict[str, Any]) -> Any:
    return wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True


def all_workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


def test_the_workflows_exist() -> None:
    assert [p.name for p in all_workflows()] == EXPECTED


# --- schema ------------------------------------------------------------------------------------

def check_jsonschema() -> list[str]:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    assert Path(exe).exists(), "check-jsonschema is not installed: pip install -e '.[dev]'"
    return [exe, "--builtin-schema", "vendor.github-workflows"]


@pytest.mark.parametrize("name", EXPECTED)
def test_workflow_validates_against_the_github_schema(name: str) -> None:
    proc = subprocess.run([*check_jsonschema(), str(WORKFLOWS / name)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n        uses: a/b@v1\n"
                   "    strategy:\n      fail-fast: maybe\n")
    proc = subprocess.run([*check_jsonschema(), str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0


# --- script injection --------------------------------------------------------------------------

def run_values(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``run:`` value anywhere in a parsed workflow, with where it is."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "run" and isinstance(v, str):
                yield f"{path}.run", v
            else:
                yield from run_values(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from run_values(v, f"{path}[{i}]")


def injections(wf: dict[str, Any]) -> list[str]:
    return [where for where, text in run_values(wf) if "${{" in text]


@pytest.mark.parametrize("name", EXPECTED)
def test_no_expression_inside_run(name: str) -> None:
    wf = load(name)
    assert list(run_values(wf)), f"{name} runs nothing"
    assert injections(wf) == []


def test_injection_check_catches_an_interpolated_run() -> None:
    wf = {"jobs": {"b": {"steps": [{"run": "echo ok"}, {"run": "invoke x --s ${{ matrix.tag-suffix }}"}]}}}
    assert injections(wf) == [".jobs.b.steps[1].run"]


# --- pass-through: every element field reaches the build task -----------------------------------

_LEG_REF = re.compile(r"^\$\{\{ fromJSON\(inputs\.leg\)\['([a-z0-9-]+)'\] \}\}$")


def dropped_fields(wf: dict[str, Any], task: str, fields: tuple[str, ...]) -> list[str]:
    """Problems with passing ``fields`` of the leg to ``task`` in every step that runs it."""
    problems: list[str] = []
    (job,) = wf["jobs"].values()
    steps = [s for s in job["steps"] if task in s.get("run", "")]
    if not steps:
        return [f"no step runs {task}"]
    for step in steps:
        env = {**job.get("env", {}), **step.get("env", {})}
        field_of_var = {var: m.group(1) for var, val in env.items() if (m := _LEG_REF.match(str(val)))}
        tokens = shlex.split(step["run"])
        passed = {tokens[i][2:]: tokens[i + 1] for i in range(len(tokens) - 1) if tokens[i].startswith("--")}
        for f in fields:
            vars_ = [v for v, fld in field_of_var.items() if fld == f]
            if not vars_:
                problems.append(f"{step['name']}: no env var maps field {f!r}")
            elif passed.get(f) != f"${vars_[0]}":
                problems.append(f"{step['name']}: --{f} is not passed ${vars_[0]} (got {passed.get(f)!r})")
    return problems


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_every_leg_field_reaches_the_build_task(name: str) -> None:
    family, task = BUILDS[name]
    assert dropped_fields(load(name), task, element_fields(family)) == []


def test_the_element_fields_are_the_fields_real_legs_have() -> None:
    m = load_matrix(M2608)
    out = outputs(plan(m, select_all(m, "all")))
    keys = {k for c in CLASSES for el in out[f"{c}-matrix"]["include"] for k in el}  # type: ignore[index]
    assert keys == set(element_fields(Family.BACKENDS))


def test_pass_through_check_catches_a_dropped_field() -> None:
    wf = load("backend_build.yml")
    step = next(s for s in wf["jobs"]["build"]["steps"] if s.get("id") == "build")
    step["run"] = step["run"].replace('--builder-base-image "$BUILDER_BASE_IMAGE"', "")
    del wf["jobs"]["build"]["env"]["AMDGPU_TARGETS"]
    problems = dropped_fields(wf, "invoke build-backend", element_fields(Family.BACKENDS))
    assert any("builder-base-image" in p for p in problems)
    assert any("'amdgpu-targets'" in p for p in problems)


def test_build_job_runs_on_the_legs_runner_and_uploads_its_artifact() -> None:
    for name in BUILDS:
        job = load(name)["jobs"]["build"]
        assert job["runs-on"] == "${{ fromJSON(inputs.leg)['runs-on'] }}"
        upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
        assert upload["with"]["name"] == "${{ fromJSON(inputs.leg)['artifact-name'] }}"
        assert upload["with"]["path"].endswith("/digests/${{ fromJSON(inputs.leg)['artifact-name'] }}")
        assert upload["if"] == "inputs.publish"
        logins = [s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/login-action@")]
        assert {s["with"].get("registry", "docker.io") for s in logins} == {"quay.io", "docker.io"}
        assert all(s["with"]["password"].startswith("${{ secrets.") for s in logins)
        runs = [s["run"] for s in job["steps"] if "invoke build-" in s.get("run", "")]
        assert any("--digests-dir" in r and "--anchor" in r for r in runs)
        assert any("--event pull_request" in r and "--digests-dir" not in r for r in runs)


# --- merge workflows ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, family", [("backend_merge.yml", "backends"), ("image_merge.yml", "server")])
def test_merge_downloads_the_class_and_merges_exactly_its_suffixes(name: str, family: str) -> None:
    wf = load(name)
    inputs = triggers(wf)["workflow_call"]["inputs"]
    assert set(inputs) == {"class", "suffixes", "pattern"}
    job = wf["jobs"]["merge"]
    dl = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact@"))
    assert dl["with"]["pattern"] == "${{ inputs.pattern }}" and dl["with"]["merge-multiple"] is False
    merge = next(s for s in job["steps"] if "nox -s merge" in s.get("run", ""))
    tokens = shlex.split(merge["run"])
    assert tokens[:5] == ["nox", "-s", "merge", "--", "--all"]
    assert tokens[tokens.index("--family") + 1] == family
    assert tokens[tokens.index("--suffixes") + 1] == "$SUFFIXES" and job["env"]["SUFFIXES"] == "${{ inputs.suffixes }}"
    assert "--anchor" in tokens and tokens[tokens.index("--report") + 1] == "$MERGED"
    inspect = next(s for s in job["steps"] if "nox -s inspect" in s.get("run", ""))
    assert inspect["if"] == "${{ !cancelled() }}"  # the merged suffixes are verified even when one failed
    itok = shlex.split(inspect["run"])
    assert itok[itok.index("--merged") + 1] == "$MERGED" and itok[itok.index("--family") + 1] == family
    assert inspect["env"]["MERGED"] == merge["env"]["MERGED"]


# --- callers -----------------------------------------------------------------------------------

def generate_step(wf: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in wf["jobs"]["generate-matrix"]["steps"] if "invoke matrix.github" in s.get("run", ""))


@pytest.mark.parametrize("name", ["backend.yml", "backend_pr.yml"])
def test_caller_jobs_use_the_outputs_the_task_writes(name: str) -> None:
    wf = load(name)
    tokens = shlex.split(generate_step(wf)["run"])
    shards = int(tokens[tokens.index("--shards") + 1])
    assert shards == DEFAULT_SHARDS and tokens[tokens.index("--github-output") + 1] == "$GITHUB_OUTPUT"
    m = load_matrix(M2608)
    written = set(outputs(plan(m, select_all(m, "all"), shards)))
    declared = wf["jobs"]["generate-matrix"]["outputs"]
    for out, expr in declared.items():
        assert out in written and expr == f"${{{{ steps.matrix.outputs.{out} }}}}"
    for c in CLASSES:
        job = wf["jobs"][f"build-{c}"]
        assert job["needs"] == "generate-matrix"
        assert job["if"] == f"needs.generate-matrix.outputs.has-{c} == 'true'"
        assert job["strategy"]["fail-fast"] is False and job["strategy"]["max-parallel"] > 0
        assert job["strategy"]["matrix"] == f"${{{{ fromJSON(needs.generate-matrix.outputs.{c}-matrix) }}}}"
        assert job["uses"] == "./.github/workflows/backend_build.yml"
        assert job["with"]["leg"] == "${{ toJSON(matrix) }}"
        assert job["with"]["publish"] is (name == "backend.yml")
        for ref in re.findall(r"outputs\.([a-z0-9-]+)", job["if"] + job["strategy"]["matrix"]):
            assert ref in declared
    assert sorted(j for j in wf["jobs"] if j.startswith("build-single-arch-")) == [
        f"build-single-arch-{i}" for i in range(1, shards + 1)]


def test_push_workflow_merges_each_class_in_one_job_after_its_own_builds_only() -> None:
    wf = load("backend.yml")
    on = triggers(wf)
    assert on["push"]["branches"] == ["master", "main"] and on["push"]["tags"] == ["v*"]
    assert on["schedule"] and "workflow_dispatch" in on
    declared = wf["jobs"]["generate-matrix"]["outputs"]
    for c in [*CLASSES, "darwin"]:  # the includeDarwin legs are one more class (backend_build_darwin.yml)
        job = wf["jobs"][f"merge-{c}"]
        assert job["needs"] == ["generate-matrix", f"build-{c}"]  # never another class's builds
        assert job["if"].startswith("${{ !cancelled() && ") and f"has-{c} == 'true'" in job["if"]
        assert "strategy" not in job  # one job for the class, not one per suffix
        assert job["uses"] == "./.github/workflows/backend_merge.yml"
        assert job["with"] == {"class": c, "suffixes": f"${{{{ needs.generate-matrix.outputs.{c}-merge-suffixes }}}}",
                               "pattern": f"${{{{ needs.generate-matrix.outputs.{c}-merge-pattern }}}}"}
        assert {f"{c}-merge-suffixes", f"{c}-merge-pattern"} <= set(declared)
    audit = wf["jobs"]["audit"]
    assert audit["uses"] == "./.github/workflows/audit.yml" and "github.ref_type == 'tag'" in audit["if"]
    assert audit["needs"] == [f"merge-{c}" for c in [*CLASSES, "darwin"]]


def _brace_alternatives(pattern: str) -> list[str]:
    """minimatch's expansion of the one brace group a class pattern may have."""
    m = re.fullmatch(r"(.*?)\{([^{}]*)\}(.*)", pattern)
    return [m.group(1) + alt + m.group(3) for alt in m.group(2).split(",")] if m else [pattern]


def test_every_suffix_of_the_2026_08_matrix_is_merged_by_exactly_one_job() -> None:
    """The release: 457 legs, 386 suffixes. The workflow's merge jobs and matrix.github's outputs say which
    job merges what: every suffix exactly once, each class pattern downloads exactly its suffixes'
    artifacts, and there is one merge job per class."""
    import fnmatch

    m = load_matrix(M2608)
    outs = outputs(plan(m, select_all(m, "all"), DEFAULT_SHARDS))
    wf = load("backend.yml")
    merge_jobs = [j for j, job in wf["jobs"].items() if job.get("uses") == "./.github/workflows/backend_merge.yml"]
    darwin = {d["tag-suffix"]: artifact_name(Family.BACKENDS, d["tag-suffix"], "arm64") for d in m.darwin}
    artifacts = [artifact_name(e.family, e.tag_suffix, e.ptag) for e in m] + list(darwin.values())
    merged: list[str] = []
    for j in merge_jobs:
        c = wf["jobs"][j]["with"]["class"]
        suffixes = outs[f"{c}-merge-suffixes"]
        assert isinstance(suffixes, list)
        merged += suffixes
        if suffixes:
            alts = _brace_alternatives(str(outs[f"{c}-merge-pattern"]))
            got = {a for a in artifacts if any(fnmatch.fnmatchcase(a, p) for p in alts)}
            want = {artifact_name(e.family, e.tag_suffix, e.ptag) for e in m if e.tag_suffix in suffixes}
            want |= {a for sfx, a in darwin.items() if sfx in suffixes}
            assert got == want, c
    assert sorted(merged) == sorted([*m.suffixes(), *darwin]) and len(merged) == len(set(merged)) == 386 + 62
    assert len(merge_jobs) == 2 + DEFAULT_SHARDS  # from 448 jobs to 6 (image.yml adds the server's)


def test_image_workflow_fans_out_and_merges_the_server_image() -> None:
    wf = load("image.yml")
    tokens = shlex.split(generate_step(wf)["run"])
    assert tokens[tokens.index("--family") + 1] == "server"
    shards = int(tokens[tokens.index("--shards") + 1])
    m = load_matrix(REPO / "backends" / "images.yml", Family.SERVER)
    written = set(outputs(plan(m, select_all(m, "all"), shards)))
    declared = wf["jobs"]["generate-matrix"]["outputs"]
    assert declared and set(declared) <= written
    classes = ["multi-arch"] + [f"single-arch-{i}" for i in range(1, shards + 1)]
    for c in classes:
        build, merge = wf["jobs"][f"build-{c}"], wf["jobs"][f"merge-{c}"]
        assert build["uses"] == "./.github/workflows/image_build.yml" and build["with"]["publish"] is True
        assert build["strategy"]["matrix"] == f"${{{{ fromJSON(needs.generate-matrix.outputs.{c}-matrix) }}}}"
        assert merge["uses"] == "./.github/workflows/image_merge.yml" and "strategy" not in merge
        assert merge["needs"] == ["generate-matrix", f"build-{c}"]
        assert merge["if"].startswith("${{ !cancelled() && ")
        for ref in re.findall(r"outputs\.([a-z0-9-]+)", build["if"] + build["strategy"]["matrix"] + merge["if"]
                              + merge["with"]["suffixes"] + merge["with"]["pattern"]):
            assert ref in declared


def test_pull_request_workflow_builds_without_publishing() -> None:
    wf = load("backend_pr.yml")
    assert list(triggers(wf)) == ["pull_request"]
    assert not [j for j in wf["jobs"] if j.startswith("merge")]
    env = generate_step(wf)["env"]
    assert env["BASE_REF"] == "${{ github.event.pull_request.base.sha }}"
    assert wf["permissions"] == {"contents": "read"}


def test_generate_matrix_has_full_history_for_git_diff() -> None:
    for name in ("backend.yml", "backend_pr.yml"):
        checkout = load(name)["jobs"]["generate-matrix"]["steps"][0]
        assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0


def test_zizmor_finds_nothing_of_medium_or_high_severity() -> None:
    """Pinned actions on current majors, no inherited secrets, least-privilege permissions, no persisted
    credentials: zizmor (offline) reports no medium or high finding."""
    exe = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    assert Path(exe).exists(), "zizmor is not installed: pip install -e '.[dev]'"
    done = subprocess.run([exe, "--offline", "--min-severity", "medium", "--format", "json", str(REPO / ".github")],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    findings = json.loads(done.stdout or "[]")
    assert findings == [], "\n".join(f"{f['ident']} ({f['determinations']['severity']}): "
                                     f"{f['locations'][0]['symbolic']['key']}" for f in findings)


def test_every_action_is_pinned_to_a_commit_of_its_current_release() -> None:
    pins = {}
    for line in (REPO / "tests" / "resources" / "actions.md").read_text().splitlines():
        m = re.match(r"^\| ([\w-]+/[\w-]+) \| (v[\d.]+) \| ([0-9a-f]{40}) \|$", line)
        if m:
            pins[m.group(1)] = (m.group(3), m.group(2))
    for path in all_workflows():
        for line in path.read_text().splitlines():
            m = re.match(r"^(?:- )?uses: ([\w-]+/[\w-]+)@(\S+)(?: # (\S+))?$", line.strip())
            if m:
                assert pins.get(m.group(1)) == (m.group(2), m.group(3)), f"{path.name}: {line.strip()}"


def test_the_audit_workflow_runs_the_audit_read_only() -> None:
    """Weekly and on demand, no secrets, read-only permissions, the audit of the branch tags by default."""
    wf = yaml.safe_load((WORKFLOWS / "audit.yml").read_text())
    triggers = wf.get(True) or wf.get("on")  # PyYAML reads the key `on` as True
    assert set(triggers) == {"schedule", "workflow_dispatch", "workflow_call"}
    job = wf["jobs"]["audit"]
    assert job["permissions"] == {"contents": "read"} and "secrets" not in triggers["workflow_call"]
    run = next(s["run"] for s in job["steps"] if "run" in s and "nox -s inspect" in s["run"])
    assert "--audit" in run and '--ref "$AUDIT_REF"' in run and "--references" in run


# --- what LocalAI's workflows do, kept (issue 21) -----------------------------------------------

DOCKER_STEP = re.compile(r"^docker/(setup-buildx|setup-qemu|login|build-push)-action@")


@pytest.mark.parametrize("name", ["backend_build.yml", "image_build.yml"])
def test_build_jobs_check_out_submodules_and_make_room_before_any_docker_step(name: str) -> None:
    steps = load(name)["jobs"]["build"]["steps"]
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["submodules"] is True  # LocalAI's kokoros backend is a submodule
    uses = [str(s.get("uses", "")) for s in steps]
    disk = uses.index("./.github/actions/build-disk")
    first_docker = min(i for i, u in enumerate(uses) if DOCKER_STEP.match(u))
    runs = [i for i, s in enumerate(steps) if "invoke build-" in s.get("run", "")]
    assert disk < first_docker and disk < min(runs)


def test_the_build_disk_action_moves_docker_to_mnt_on_hosted_x64_only() -> None:
    action = yaml.safe_load((REPO / ".github" / "actions" / "build-disk" / "action.yml").read_text())
    steps = action["runs"]["steps"]
    assert action["runs"]["using"] == "composite" and len(steps) == 2
    for step in steps:
        assert "runner.environment == 'github-hosted'" in step["if"] and "runner.arch == 'X64'" in step["if"]
    move = steps[1]["run"]
    assert '"data-root" = "/mnt/docker-data"' in move and "TMPDIR=/mnt/docker-tmp" in move
    assert move.index("systemctl stop docker") < move.index("systemctl start docker")
    proc = subprocess.run([*check_jsonschema()[:1], "--builtin-schema", "vendor.github-actions",
                           str(REPO / ".github" / "actions" / "build-disk" / "action.yml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name, task", [("backend_build.yml", "invoke build-backend"),
                                        ("image_build.yml", "invoke build-image")])
def test_only_the_publishing_build_pushes(name: str, task: str) -> None:
    """Nothing leaves a runner without --push: the push-event step passes it, the pull-request step does not."""
    steps = load(name)["jobs"]["build"]["steps"]
    builds = [s for s in steps if task in s.get("run", "")]
    publish = [s for s in builds if s.get("if") == "inputs.publish"]
    assert len(publish) == 1 and "--push" in shlex.split(publish[0]["run"])
    assert all("--push" not in shlex.split(s["run"]) for s in builds if s not in publish)


@pytest.mark.parametrize("name, caller", [("backend_merge.yml", "backend.yml"), ("image_merge.yml", "image.yml")])
def test_merges_sign_keyless_with_referrers_and_delete_anchors_through_quays_api(name: str, caller: str) -> None:
    job = load(name)["jobs"]["merge"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    installer = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("sigstore/cosign-installer@"))
    assert installer["with"]["cosign-release"] == "v2.4.1"  # the release LocalAI signs with
    merge = next(s for s in job["steps"] if "nox -s merge" in s.get("run", ""))
    tokens = shlex.split(merge["run"])
    assert "--sign" in tokens and "--key" not in tokens  # keyless
    assert tokens[tokens.index("--registry-referrers-mode") + 1] == "oci-1-1"
    assert merge["env"]["COSIGN_EXPERIMENTAL"] == "1" and merge["env"]["QUAY_TOKEN"] == "${{ secrets.QUAY_TOKEN }}"
    assert "--anchor" in tokens
    # a reusable workflow gets no more permission than its caller grants
    for jname, cjob in load(caller)["jobs"].items():
        if cjob.get("uses") == f"./.github/workflows/{name}":
            assert cjob["permissions"]["id-token"] == "write", jname
            assert cjob["secrets"]["QUAY_TOKEN"] == "${{ secrets.QUAY_TOKEN }}", jname


# GitHub's concurrency rule (docs: "Using concurrency"): in one group at most one run is running and
# one pending; a newly queued run cancels the pending one, running ones are kept
# (cancel-in-progress: false). Each push run builds what changed since that push's `before`.
def simulate(pushes: list[str], group_of: Any) -> list[str]:
    """The commits whose push runs GitHub runs to the end, for pushes queued while earlier runs still
    run (the worst case: every push arrives while the previous one is running)."""
    running: dict[str, str] = {}
    pending: dict[str, str] = {}
    finished: list[str] = []
    for sha in pushes:
        g = group_of(sha)
        if g not in running:
            running[g] = sha
        else:
            pending[g] = sha  # replaces (cancels) the pending one of this group, if any
    while running:
        g, sha = next(iter(running.items()))
        finished.append(sha)
        del running[g]
        if g in pending:
            running[g] = pending.pop(g)
    return finished


@pytest.mark.parametrize("name", ["backend.yml", "image.yml"])
def test_no_push_is_cancelled_so_every_change_is_built(name: str) -> None:
    """A runs, B queues, C queues and cancels B: with a group per branch B's changes are never built
    (C diffs against B); with LocalAI's group per commit every push's run runs."""
    group = load(name)["concurrency"]["group"]
    assert "github.sha" in group and "github.ref" not in group
    assert load(name)["concurrency"]["cancel-in-progress"] is False
    pushes = ["A", "B", "C"]
    per_commit = simulate(pushes, lambda sha: group.replace("${{ github.sha }}", sha))
    assert sorted(per_commit) == pushes
    per_branch = simulate(pushes, lambda sha: "backend-refs/heads/master")
    assert "B" not in per_branch  # the failure mode the per-commit group avoids


def test_every_job_ends_within_its_timeout() -> None:
    """No input makes a workflow hang for the platform's six hours: every job on a runner has
    ``timeout-minutes``, and a job that calls a reusable workflow (which cannot have one) calls one whose
    jobs all do."""
    problems = []
    for path in all_workflows():
        for name, job in (load(path.name).get("jobs") or {}).items():
            if "uses" in job:
                called = str(job["uses"])
                if called.startswith("./.github/workflows/"):
                    jobs = load(Path(called).name).get("jobs") or {}
                    problems += [f"{path.name}: {name} calls {called}, whose job {j} has no timeout-minutes"
                                 for j, inner in jobs.items() if "uses" not in inner and not inner.get("timeout-minutes")]
                continue
            if not isinstance(job.get("timeout-minutes"), int) or job["timeout-minutes"] <= 0:
                problems.append(f"{path.name}: job {name} has no timeout-minutes")
    assert problems == []


def test_darwin_legs_build_on_macos_and_publish_their_archive_like_any_leg() -> None:
    """LocalAI's Darwin entries: built on a macOS runner by the repository's own make targets into
    backend-images/<backend>.tar, then published by digest with --from-oci (pushed, anchored, its digest
    artifact uploaded under the name the task printed) for the darwin class's merge."""
    wf = load("backend_build_darwin.yml")
    build, publish = wf["jobs"]["build"], wf["jobs"]["publish"]
    assert build["runs-on"] == "${{ fromJSON(inputs.entry)['runs-on'] || 'macos-latest' }}"
    checkout = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["submodules"] is True
    make = next(s for s in build["steps"] if s.get("name") == "Build the image archive")["run"]
    assert 'make "build-darwin-$BACKEND_LANG-backend"' in make and 'make "backends/$BACKEND-darwin"' in make
    upload = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "backend-images/${{ fromJSON(inputs.entry)['backend'] }}.tar"
    assert publish["needs"] == "build" and publish["if"] == "inputs.publish"
    step = next(s for s in publish["steps"] if "invoke build-backend" in s.get("run", ""))
    tokens = shlex.split(step["run"])
    assert tokens[tokens.index("--from-oci") + 1] == "$ARCHIVE" and "--push" in tokens and "--anchor" in tokens
    digests = next(s for s in publish["steps"] if s.get("name") == "Upload digest artifact")
    assert digests["with"]["name"] == "${{ steps.publish.outputs.artifact-name }}" and step["id"] == "publish"
    caller = load("backend.yml")["jobs"]["build-darwin"]
    assert caller["strategy"]["matrix"] == "${{ fromJSON(needs.generate-matrix.outputs.darwin-matrix) }}"
    assert caller["with"] == {"entry": "${{ toJSON(matrix) }}", "publish": True}
