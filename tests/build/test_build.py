"""Unit tests of leg resolution and planning (no engine, no registry), and the task's exit codes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localai_ci.build.leg import LABEL_CREATED, LABEL_SOURCE, BuildRequest, checked_pr_tag, plan_leg, run_leg
from localai_ci.errors import UserError
from localai_ci.settings import family_config
from localai_ci.git.repo import SourceInfo, _strip_userinfo, source_info
from localai_ci.github.actions import Event
from localai_ci.matrix.model import load_matrix, parse_matrix, resolve_leg
from localai_ci.matrix.naming import Family
from localai_ci.oci.reference import parse_image_name
from tests.support.paths import REPO as ROOT

BACKENDS = ROOT / "backends" / "matrix.yml"
IMAGES = ROOT / "backends" / "images.yml"
SRC = SourceInfo(url="https://github.com/o/r", revision="abc123", created="2024-01-02T03:04:05Z")
PUSH = Event(name="push", run_id="77")
PR = Event(name="pull_request", pr_number="12", run_id="77")


@pytest.fixture
def backends():  # type: ignore[no-untyped-def]
    return load_matrix(BACKENDS, Family.BACKENDS)


@pytest.fixture
def images():  # type: ignore[no-untyped-def]
    return load_matrix(IMAGES, Family.SERVER)


def cfg(family: Family = Family.BACKENDS):  # type: ignore[no-untyped-def]
    return family_config(family, images="127.0.0.1:5000/a/img,127.0.0.1:5001/b/img", env={})


def test_resolve_exact_leg(backends) -> None:  # type: ignore[no-untyped-def]
    e = resolve_leg(backends, "-cpu-hello", "arm64")
    assert (e.tag_suffix, e.ptag, str(e.platform)) == ("-cpu-hello", "arm64", "linux/arm64")


def test_resolve_several_legs_lists_candidates(backends) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError) as err:
        resolve_leg(backends, "-cpu-hello", None)
    assert "2 legs match" in str(err.value) and "amd64" in str(err.value) and "arm64" in str(err.value)
    assert err.value.exit_code == 2


def test_resolve_unknown_suffix_suggests(backends) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match=r"did you mean '-cpu-hello'"):
        resolve_leg(backends, "-cpu-helo", "amd64")


def test_resolve_unknown_ptag_lists_legs(backends) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match=r"platform-tag 'amd46'.*did you mean 'amd64'"):
        resolve_leg(backends, "-cpu-hello", "amd46")


def test_resolve_by_backend(backends) -> None:  # type: ignore[no-untyped-def]
    assert resolve_leg(backends, None, None, "echo").tag_suffix == "-cpu-echo"
    assert resolve_leg(backends, None, "arm64", "hello").ptag == "arm64"
    with pytest.raises(UserError, match="2 legs match"):
        resolve_leg(backends, None, None, "hello")
    with pytest.raises(UserError, match=r"backend 'helo'.*did you mean 'hello'"):
        resolve_leg(backends, None, None, "helo")


def test_resolve_needs_a_selector(backends) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="give --tag-suffix"):
        resolve_leg(backends, None, "amd64")


def test_resolve_server_core(images) -> None:  # type: ignore[no-untyped-def]
    assert resolve_leg(images, "", "arm64").tag_suffix == ""
    assert resolve_leg(images, "-core", "amd64").tag_suffix == ""
    assert resolve_leg(images, "-gpu-vulkan", "amd64").build_type == "vulkan"


def test_plan_push_leg(backends) -> None:  # type: ignore[no-untyped-def]
    plan = plan_leg(resolve_leg(backends, "-cpu-hello", "arm64"), cfg(), root=ROOT, source=SRC, event=PUSH,
                    digests_dir="/tmp/d")
    args = dict(plan.build_args)
    assert args["BACKEND"] == "hello" and args["BASE_IMAGE"] == "ci-offline/ubuntu:24.04"
    assert set(args) >= {"BUILD_TYPE", "SKIP_DRIVERS", "CUDA_MAJOR_VERSION", "CUDA_MINOR_VERSION", "UBUNTU_VERSION"}
    assert str(plan.platform) == "linux/arm64"
    assert plan.artifact == "digests-cpu-hello--arm64" and plan.digests_dir == "/tmp/d"
    assert [str(i) for i in plan.images] == ["127.0.0.1:5000/a/img", "127.0.0.1:5001/b/img"]
    assert plan.cache_ref == "127.0.0.1:5000/ci-cache:cache-cpu-hello-arm64"
    assert plan.context == str(ROOT / "backends") and plan.dockerfile == "Dockerfile.backend"
    labels = dict(plan.labels)
    assert labels[LABEL_SOURCE] == SRC.url and labels[LABEL_CREATED] == SRC.created
    assert plan.publishes and plan.tags == ()
    text = plan.describe()
    for part in ("BACKEND=hello", "linux/arm64", "digests-cpu-hello--arm64", "cache-cpu-hello-arm64"):
        assert part in text


def test_plan_is_frozen_and_deterministic(backends) -> None:  # type: ignore[no-untyped-def]
    e = resolve_leg(backends, "-cpu-echo", "amd64")
    a = plan_leg(e, cfg(), root=ROOT, source=SRC, event=PUSH)
    assert a == plan_leg(e, cfg(), root=ROOT, source=SRC, event=PUSH)
    with pytest.raises(AttributeError):
        a.suffix = "x"  # type: ignore[misc]


def test_plan_anchor_tag(backends) -> None:  # type: ignore[no-untyped-def]
    plan = plan_leg(resolve_leg(backends, "-cpu-hello", "amd64"), cfg(), root=ROOT, source=SRC, event=PUSH,
                    anchor=True, run_id="991")
    assert plan.anchor == "keepalive-991-cpu-hello-amd64" and plan.tags == ()
    # the anchor goes to the cache repository (LocalAI's ci-cache), never to a target users browse
    assert [str(i) for i in plan.anchored_images] == ["127.0.0.1:5000/ci-cache"]
    assert plan.anchor_registries == ("127.0.0.1:5000",)  # the target registry it protects
    assert all(plan.target_tags(i) == () for i in plan.images)
    from localai_ci.build.leg import publish_targets
    assert [(str(t.image), t.tags) for t in publish_targets(plan)] == [
        ("127.0.0.1:5000/a/img", ()), ("127.0.0.1:5001/b/img", ()),
        ("127.0.0.1:5000/ci-cache", ("keepalive-991-cpu-hello-amd64",))]
    assert any(n.startswith("--anchor: no anchor repository in 127.0.0.1:5001") for n in plan.notes), plan.notes
    with pytest.raises(UserError, match="--run-id"):
        plan_leg(resolve_leg(backends, "-cpu-hello", "amd64"), cfg(), root=ROOT, source=SRC,
                 event=Event(name="push"), anchor=True)


def test_plan_pull_request(images) -> None:  # type: ignore[no-untyped-def]
    e = resolve_leg(images, "", "amd64")
    build_only = plan_leg(e, cfg(Family.SERVER), root=ROOT, source=SRC, event=PR)
    assert build_only.images == () and build_only.digests_dir is None and not build_only.publishes
    pushed = plan_leg(e, cfg(Family.SERVER), root=ROOT, source=SRC, event=PR, pr_push=True)
    assert [str(i) for i in pushed.images] == ["127.0.0.1:5000/ci-tests"]
    assert pushed.tags == ("pr-12-localai-core-amd64",) and pushed.digests_dir is None
    assert checked_pr_tag("7", "", Family.BACKENDS, "-cpu-x", "arm64") == "pr-7-cpu-x-arm64"


def test_plan_server_artifact_names(images) -> None:  # type: ignore[no-untyped-def]
    core = plan_leg(resolve_leg(images, "", "arm64"), cfg(Family.SERVER), root=ROOT, source=SRC, event=PUSH)
    vk = plan_leg(resolve_leg(images, "-gpu-vulkan", "amd64"), cfg(Family.SERVER), root=ROOT, source=SRC,
                  event=PUSH)
    assert core.artifact == "digests-localai-core--arm64"
    assert vk.artifact == "digests-localai-gpu-vulkan--amd64"
    assert dict(core.build_args)["MAKEFLAGS"] == "--jobs=2 --output-sync=target"


def test_plan_rejects_multi_platform_entry() -> None:
    text = BACKENDS.read_text().replace("platforms: 'linux/amd64'\n    tag-latest: 'auto'\n    tag-suffix: '-cpu-echo'",
                                        "platforms: 'linux/amd64,linux/arm64'\n    tag-latest: 'auto'\n"
                                        "    tag-suffix: '-cpu-echo'")
    m = parse_matrix(text, "m.yml", Family.BACKENDS)
    with pytest.raises(UserError, match="split the entry"):
        plan_leg(resolve_leg(m, "-cpu-echo", None), cfg(), root=ROOT, source=SRC, event=PUSH)


def test_mount_sources_exclude_targets(backends) -> None:  # type: ignore[no-untyped-def]
    c = cfg()
    plan = plan_leg(resolve_leg(backends, "-cpu-echo", "amd64"), c, root=ROOT, source=SRC, event=PUSH,
                    mount_from=(c.images[0], parse_image_name("127.0.0.1:5000/other")))
    assert [str(m) for m in plan.mount_from] == ["127.0.0.1:5000/other"]


def test_source_info_reproducible_created() -> None:
    info = source_info(ROOT, {"SOURCE_DATE_EPOCH": "86400", "GITHUB_SERVER_URL": "https://github.com",
                              "GITHUB_REPOSITORY": "mudler/LocalAI", "GITHUB_SHA": "deadbeef"})
    assert info == SourceInfo("https://github.com/mudler/LocalAI", "deadbeef", "1970-01-02T00:00:00Z")


def test_remote_url_secrets_stripped() -> None:
    assert _strip_userinfo("https://x-access-token:s3cret@github.com/o/r.git") == "https://github.com/o/r.git"
    assert _strip_userinfo("git@github.com:o/r.git") == ""


class _NoEngine:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"dry-run touched the engine ({name})")


def test_dry_run_touches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digests = tmp_path / "digests"
    req = BuildRequest(family=Family.BACKENDS, tag_suffix="-cpu-hello", platform_tag="amd64",
                       images="127.0.0.1:5999/x/y", digests_dir=str(digests), root=str(ROOT), dry_run=True,
                       cache_dir=str(tmp_path / "cache"))
    res = run_leg(req, env={"HOME": str(tmp_path)}, engine=_NoEngine())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "digests-cpu-hello--amd64" in out and "BACKEND=hello" in out and "linux/amd64" in out
    assert res.digest == "" and not digests.exists() and not (tmp_path / "cache").exists()


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_task_exit_codes() -> None:
    ok = _invoke("build-backend", "--tag-suffix", "-cpu-hello", "--platform-tag", "arm64", "--dry-run",
                 "--images", "127.0.0.1:5999/x/y")
    assert ok.returncode == 0, ok.stderr
    assert "digests-cpu-hello--arm64" in ok.stdout
    bad = _invoke("build-backend", "--tag-suffix", "-cpu-hello", "--dry-run")
    assert bad.returncode == 2 and "add --platform-tag" in bad.stderr
    core = _invoke("build-image", "--tag-suffix", "", "--platform-tag", "amd64", "--dry-run")
    assert core.returncode == 0 and "digests-localai-core--amd64" in core.stdout, core.stderr


# ---- explicit credentials go to one registry only ------------------------------------------------
def _prepare_creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: str, **kw: object):  # type: ignore[no-untyped-def]
    """prepare() with the credential lookups recorded (no Docker config is read)."""
    import localai_ci.oci.keychain
    from localai_ci.build.leg import prepare

    asked: dict[str, tuple[object, object]] = {}

    def fake(registry: str, *, username: str | None = None, password: str | None = None, **_: object) -> object:
        asked[registry] = (username, password)
        return (username, "***") if username else None
    monkeypatch.setattr(localai_ci.oci.keychain, "credentials_for", fake)
    req = BuildRequest(family=Family.BACKENDS, tag_suffix="-cpu-hello", platform_tag="amd64", images=images,
                       root=str(ROOT), dry_run=True, **kw)  # type: ignore[arg-type]
    prepare(req, {"HOME": str(tmp_path)})
    return asked


def test_explicit_password_goes_only_to_the_login_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    two = "quay.io/org/img,localai/img"
    asked = _prepare_creds(tmp_path, monkeypatch, two, username="robot", password="pw", login_registry="quay.io")
    assert asked["quay.io"] == ("robot", "pw")
    assert asked["docker.io"] == (None, None)  # Docker Hub: Docker config / helpers, never the Quay password
    hub = _prepare_creds(tmp_path, monkeypatch, two, username="u", password="pw", login_registry="index.docker.io")
    assert hub["docker.io"] == ("u", "pw") and hub["quay.io"] == (None, None)
    one = _prepare_creds(tmp_path, monkeypatch, "quay.io/org/img", username="u", password="pw")
    assert one == {"quay.io": ("u", "pw")}  # a single registry is implied


@pytest.mark.parametrize("kw, message", [
    ({"username": "u", "password": "pw"}, r"publishes to 2 registries \(quay\.io, docker\.io\).*--login-registry"),
    ({"username": "u", "password": "pw", "login_registry": "ghcr.io"}, r"'ghcr\.io'.*publishes to quay\.io, docker\.io"),
    ({"login_registry": "quay.io"}, r"give them too"),
])
def test_login_registry_refusals(kw: dict[str, object], message: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match=message) as err:
        _prepare_creds(tmp_path, monkeypatch, "quay.io/org/img,localai/img", **kw)
    assert err.value.exit_code == 2 and "pw" not in str(err.value)


def test_task_refuses_a_password_for_several_registries() -> None:
    done = subprocess.run([sys.executable, "-m", "invoke", "build-backend", "--tag-suffix=-cpu-hello",
                           "--platform-tag", "amd64", "--dry-run", "--images", "quay.io/o/i,localai/i",
                           "--username", "u", "--password-stdin"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, input="Secret-pw-77\n", check=False)
    assert done.returncode == 2 and "--login-registry" in done.stderr and "Traceback" not in done.stderr
    assert "Secret-pw-77" not in done.stdout + done.stderr


# ---- run ids, PR numbers and PR tags are bad input, never a traceback -------------------------------
def test_pr_tag_fragments_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"GITHUB_REF"):
        checked_pr_tag("1;x", "", Family.BACKENDS, "-cpu-x", "amd64")
    with pytest.raises(UserError, match=r"--run-id / GITHUB_RUN_ID: run id 'a;b'"):
        checked_pr_tag("", "a;b", Family.BACKENDS, "-cpu-x", "amd64")
    assert checked_pr_tag("", "99", Family.BACKENDS, "-cpu-x", "amd64") == "pr-run99-cpu-x-amd64"


@pytest.mark.parametrize("args, env, message", [
    (("--event", "pull_request", "--run-id", "a;b", "--username", "u", "--password-stdin"), {},
     r"--run-id: run id 'a;b'"),
    (("--run-id", "a;b"), {}, r"--run-id: run id 'a;b'"),  # validated without --anchor too
    (("--event", "pull_request", "--username", "u", "--password-stdin"),
     {"GITHUB_REF": "refs/pull/1;x/merge"}, r"GITHUB_REF 'refs/pull/1;x/merge'.*not a number"),
    (("--anchor",), {"GITHUB_RUN_ID": "1 2"}, r"GITHUB_RUN_ID: run id '1 2'"),
])
def test_bad_run_id_and_pr_ref_exit_2(args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    import os
    import re

    done = subprocess.run([sys.executable, "-m", "invoke", "build-backend", "--tag-suffix=-cpu-hello",
                           "--platform-tag", "amd64", "--dry-run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, input="pw\n", check=False, env={**os.environ, **env})
    assert done.returncode == 2, done.stderr
    assert re.search(message, done.stderr) and "Traceback" not in done.stderr, done.stderr


def test_publish_targets_use_the_planned_family_config(backends) -> None:  # type: ignore[no-untyped-def]
    from localai_ci.build.leg import publish_targets

    c = family_config(Family.BACKENDS, images="reg.example:5000/a/img,quay.io/b/img",
                      env={"CI_INSECURE_REGISTRIES": "reg.example:5000"})
    plan = plan_leg(resolve_leg(backends, "-cpu-echo", "amd64"), c, root=ROOT, source=SRC, event=PUSH)
    assert plan.config is c
    targets = publish_targets(plan)  # nothing resolved a second time
    assert [(str(t.image), t.plain_http) for t in targets] == [("reg.example:5000/a/img", True), ("quay.io/b/img", False)]
    # a redirect target is judged by the family's policy, the registry itself by its target
    assert targets[1].transport("reg.example:5000") and not targets[1].transport("quay.io")


def test_anchor_skips_docker_hub_by_default(backends, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from localai_ci.build.leg import anchor_registries, prepare

    e = resolve_leg(backends, "-cpu-hello", "arm64")
    c = family_config(Family.BACKENDS, images="quay.io/org/img,localai/img,ghcr.io/org/img", env={})
    plan = plan_leg(e, c, root=ROOT, source=SRC, event=PUSH, anchor=True, run_id="5")
    assert plan.anchor_registries == ("quay.io",)  # the cache repository's registry; Docker Hub keeps untagged
    assert [str(i) for i in plan.anchored_images] == ["quay.io/go-skynet/ci-cache"]
    assert all(plan.target_tags(i) == () for i in c.images)  # no target gets a tag
    assert "anchor:     keepalive-5-cpu-hello-arm64 in quay.io/go-skynet/ci-cache (the cache repository" in plan.describe()
    assert any("no anchor repository in ghcr.io" in n for n in plan.notes), plan.notes
    # CI_ANCHOR_REGISTRIES overrides the default (Docker Hub aliases fold to docker.io)
    only = anchor_registries({"CI_ANCHOR_REGISTRIES": " index.docker.io , ghcr.io"})
    assert only == frozenset({"docker.io", "ghcr.io"})
    over = plan_leg(e, c, root=ROOT, source=SRC, event=PUSH, anchor=True, run_id="5", anchor_in=only)
    assert over.anchor_registries == () and over.anchored_images == ()  # no cache repository in either
    assert any("no anchor repository in docker.io, ghcr.io" in n for n in over.notes), over.notes
    assert anchor_registries({}) is None and anchor_registries({"CI_ANCHOR_REGISTRIES": " "}) is None
    with pytest.raises(UserError, match="CI_ANCHOR_REGISTRIES: 'bad host'"):
        anchor_registries({"CI_ANCHOR_REGISTRIES": "bad host"})
    hub = plan_leg(e, family_config(Family.BACKENDS, images="localai/img", env={}), root=ROOT, source=SRC,
                   event=PUSH, anchor=True, run_id="5")
    assert hub.anchor_registries == () and any("no keepalive anchor for docker.io" in n for n in hub.notes)
    req = BuildRequest(family=Family.BACKENDS, tag_suffix="-cpu-hello", platform_tag="arm64", anchor=True,
                       run_id="5", images="quay.io/org/img,localai/img", root=str(ROOT), dry_run=True)
    planned, _ = prepare(req, {"HOME": str(tmp_path), "CI_ANCHOR_REGISTRIES": "docker.io",
                               "CI_CACHE_IMAGE": "localai/ci-cache"})
    assert planned.anchor_registries == ("docker.io",)  # the environment reached the plan
    assert [str(i) for i in planned.anchored_images] == ["localai/ci-cache"]


# ---- the build args LocalAI's workflow adds ----------------------------------------------------------
def test_builder_target_follows_builder_base_image(backends) -> None:  # type: ignore[no-untyped-def]
    prebuilt = resolve_leg(backends, "-cpu-tiny-cpp", "amd64")
    fromsource = resolve_leg(backends, "-vulkan-tiny-cpp", "amd64")
    assert prebuilt.build_args()["BUILDER_TARGET"] == "builder-prebuilt"
    assert prebuilt.build_args()["BUILDER_BASE_IMAGE"] == "ci-offline/builder-base:24.04"
    assert fromsource.build_args()["BUILDER_TARGET"] == "builder-fromsource"
    assert "BUILDER_BASE_IMAGE" not in fromsource.build_args()  # an empty one would break FROM ${BUILDER_BASE_IMAGE}


def test_server_image_gets_no_builder_target(images) -> None:  # type: ignore[no-untyped-def]
    assert "BUILDER_TARGET" not in resolve_leg(images, "", "amd64").build_args()


@pytest.mark.parametrize("day, key", [("2026-12-01", "2026-W49"), ("2026-12-31", "2026-W53"),
                                      ("2027-01-01", "2026-W53"), ("2027-01-04", "2027-W01")])
def test_deps_refresh_is_the_iso_week(day: str, key: str) -> None:
    from datetime import datetime, timezone

    from localai_ci.matrix.buildargs import deps_refresh_key
    assert deps_refresh_key(datetime.fromisoformat(day).replace(tzinfo=timezone.utc)) == key


def test_workflow_build_args_option_then_environment_then_default() -> None:
    from datetime import datetime, timezone

    from localai_ci.matrix.buildargs import workflow_build_args
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert workflow_build_args(apt_mirror=None, apt_ports_mirror=None, deps_refresh=None, env={}, now=now) == \
        {"APT_MIRROR": "", "APT_PORTS_MIRROR": "", "DEPS_REFRESH": "2026-W49"}
    env = {"APT_MIRROR": "http://azure.archive.ubuntu.com", "APT_PORTS_MIRROR": "http://azure.ports.ubuntu.com",
           "DEPS_REFRESH": "pinned-1"}
    assert workflow_build_args(apt_mirror=None, apt_ports_mirror=None, deps_refresh=None, env=env, now=now) == \
        {"APT_MIRROR": env["APT_MIRROR"], "APT_PORTS_MIRROR": env["APT_PORTS_MIRROR"], "DEPS_REFRESH": "pinned-1"}
    got = workflow_build_args(apt_mirror="https://mirrors.edge.kernel.org", apt_ports_mirror="", deps_refresh="w",
                              env=env, now=now)
    assert got == {"APT_MIRROR": "https://mirrors.edge.kernel.org", "APT_PORTS_MIRROR": "", "DEPS_REFRESH": "w"}


@pytest.mark.parametrize("kw, message", [
    ({"apt_mirror": "ftp://mirror"}, "--apt-mirror / APT_MIRROR 'ftp://mirror': expected an http(s) URL"),
    ({"apt_ports_mirror": "http://user:pw@mirror"}, "credentials, which would be stored in the image history"),
    ({"deps_refresh": "2026 W49; rm -rf /"}, "--deps-refresh / DEPS_REFRESH"),
])
def test_workflow_build_args_refuse_bad_values(kw: dict[str, str], message: str) -> None:
    from datetime import datetime, timezone

    from localai_ci.matrix.buildargs import workflow_build_args
    args = {"apt_mirror": None, "apt_ports_mirror": None, "deps_refresh": None, **kw}
    with pytest.raises(UserError) as err:
        workflow_build_args(**args, env={}, now=datetime(2026, 12, 1, tzinfo=timezone.utc))  # type: ignore[arg-type]
    assert message in str(err.value) and "pw" not in str(err.value)


def test_dry_run_shows_the_workflow_build_args(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req = BuildRequest(push=True, family=Family.BACKENDS, tag_suffix="-cpu-hello", platform_tag="arm64", matrix=str(BACKENDS),
                       root=str(ROOT), dry_run=True, apt_mirror="http://mirror.example", deps_refresh="2026-W01")
    run_leg(req, env={"HOME": str(tmp_path)})
    out = capsys.readouterr().out
    for line in ("  APT_MIRROR=http://mirror.example", "  APT_PORTS_MIRROR=", "  DEPS_REFRESH=2026-W01",
                 "  BUILDER_TARGET=builder-fromsource"):
        assert line in out.splitlines()


@pytest.mark.registry
@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_build_backend_builds_with_buildkit_and_shows_its_steps(engine, registries, unique: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``invoke build-backend`` end to end on the engine under test: the example leg's BuildKit build
    gets the workflow's build args, shows each step (plain lines: not a terminal), and publishes."""
    import io
    import os

    from tests.support.builder_helpers import read_file, read_published_file
    from localai_ci.docker.builder import BuildxBuilder
    from localai_ci.docker.engine import Engine

    quay, hub = registries
    images = f"{quay.host}/{unique}/backends,{hub.host}/{unique}/backends"
    env = {**os.environ, "CI_BLOB_CACHE": str(tmp_path / "blobs"), "GITHUB_SHA": "0" * 40,
           "GITHUB_REF": "refs/heads/master"}
    req = BuildRequest(push=True, family=Family.BACKENDS, tag_suffix="-cpu-hello", platform_tag="arm64", matrix=str(BACKENDS),
                       root=str(ROOT), images=images, digests_dir=str(tmp_path / "digests"), event="push",
                       apt_mirror="http://mirror.example", local_tag=f"localai-ci-test/{unique}:hello-arm64")
    out, err = io.StringIO(), io.StringIO()
    res = run_leg(req, env=env, out=out, err=err, engine=Engine(engine))
    import re

    steps = err.getvalue()  # one line per step: running / done (with its duration) / cached (warm engine)
    assert re.search(r"(running  |cached   )\[builder \d/\d\] RUN <<EOT sh", steps), steps
    assert re.search(r"(done     \[stage-\d 1/1\] COPY --from=builder /out/ /backend/ \(\d+\.\ds\)|"
                     r"cached   \[stage-\d 1/1\] COPY --from=builder)", steps), steps
    assert res.digest and (tmp_path / "digests" / "digests-cpu-hello--arm64" / res.digest.split(":")[1]).exists()
    build_env = read_published_file(f"{quay.host}/{unique}/backends", res.digest, "/backend/build.env")
    assert "APT_MIRROR=http://mirror.example" in build_env.splitlines()
    assert "TARGETPLATFORM=linux/arm64" in build_env.splitlines()
    assert "buildx builder" in out.getvalue() and f"digest: {res.digest}" in out.getvalue()
    assert res.disk is not None and f"{res.disk.describe()}" in out.getvalue()  # free before, peak use during
    # the hand-off: an OCI layout where the builder can export one (nothing enters the engine, the layout
    # is gone after publishing), else --load and the engine's image
    eng = Engine(engine)
    if BuildxBuilder(eng, env).caps().oci_export:
        assert "into OCI layout " in out.getvalue() and not eng.has_image(req.local_tag or "")
        layout = out.getvalue().split("into OCI layout ", 1)[1].split(":", 1)[0]
        assert not Path(layout).exists()
        assert res.digest == res.image_id  # BuildKit's own manifest, published as it is
    else:
        assert f"into the engine as {req.local_tag}" in out.getvalue() and eng.has_image(req.local_tag or "")
        assert read_file(engine, req.local_tag or "", "/backend/build.env") == build_env


@pytest.mark.registry
def test_build_refuses_a_disk_too_full_before_building(engine, registries, unique: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``--min-free-disk`` above what the engine's data root has: exit 1 before any build, nothing published."""
    import os

    from localai_ci.docker.engine import Engine
    from localai_ci.errors import OperationError

    req = BuildRequest(family=Family.BACKENDS, tag_suffix="-cpu-echo", platform_tag="amd64", matrix=str(BACKENDS),
                       root=str(ROOT), images=f"{registries[0].host}/{unique}/backends",
                       digests_dir=str(tmp_path / "digests"), event="push", min_free_disk="1000000",
                       local_tag=f"localai-ci-test/{unique}:disk")
    with pytest.raises(OperationError, match=r"only [\d.]+ GiB free on the filesystem of .* at least 1e\+06 GiB") as err:
        run_leg(req, env={**os.environ, "CI_BLOB_CACHE": str(tmp_path / "blobs")}, engine=Engine(engine))
    assert err.value.exit_code == 1 and not (tmp_path / "digests").exists()
    assert not any(req.local_tag in t for i in engine.images.list() for t in i.tags)  # nothing was built


# ---- the build never leaves the repository -----------------------------------------------------------
@pytest.mark.parametrize("how", ["context", "dockerfile", "dir-on-the-way"])
def test_a_symlink_out_of_the_repository_is_refused_before_buildkit_starts(how: str, tmp_path: Path) -> None:
    """A committed symlink passes the matrix's ``..``/absolute-path check; after resolving, the context and
    the Dockerfile must lie inside the repository root, else exit 2 naming the entry and the field. The
    engine socket does not exist: the refusal comes before anything talks to an engine or BuildKit."""
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    (repo / "backends").mkdir(parents=True)
    outside.mkdir()
    (outside / "Dockerfile.backend").write_text("FROM scratch\nCOPY secret.txt /\n")
    (outside / "secret.txt").write_text("not the repository's\n")
    (repo / "backends" / "Dockerfile.backend").write_text("FROM scratch\n")
    field = "context" if how == "context" else "dockerfile"
    if how == "context":  # backends/ itself is a link to a directory elsewhere
        (repo / "backends" / "Dockerfile.backend").unlink()
        (repo / "backends").rmdir()
        (repo / "backends").symlink_to(outside, target_is_directory=True)
    elif how == "dockerfile":  # the Dockerfile is a link to a file elsewhere
        (repo / "backends" / "Dockerfile.backend").unlink()
        (repo / "backends" / "Dockerfile.backend").symlink_to(outside / "Dockerfile.backend")
    else:  # the Dockerfile is reached through a directory link inside the context
        (repo / "backends" / "df").symlink_to(outside, target_is_directory=True)
    from tests.support.oci_images import matrix_text

    text = matrix_text([("-cpu-out", "amd64")])
    if how == "dir-on-the-way":
        text = text.replace('dockerfile: "./backends/Dockerfile.backend"', 'dockerfile: "./backends/df/Dockerfile.backend"')
    (repo / "matrix.yml").write_text(text)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    for args in (["build-backend", "--tag-suffix=-cpu-out", "--platform-tag", "amd64", "--matrix", "matrix.yml",
                  "--images", "127.0.0.1:5999/x/y", "--push"],
                 ["build-backend", "--tag-suffix=-cpu-out", "--platform-tag", "amd64", "--matrix", "matrix.yml",
                  "--dry-run"],
                 ["pipeline", "--dry-run", "--matrix", "matrix.yml"]):
        done = subprocess.run([sys.executable, "-m", "localai_ci", *args], cwd=repo, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL, env=env)
        assert done.returncode == 2, (args, done.stdout + done.stderr)
        assert f"matrix.yml line 2: {field} " in done.stderr and "outside the repository root" in done.stderr \
            and f"point {field} at a path inside it" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "secret" not in done.stdout + done.stderr


def test_a_failed_republish_leaves_no_digest_file_of_the_older_image(tmp_path: Path) -> None:
    """A leg republished with --push removes its previous digest file before anything else: when the
    build or the publish then fails (here: no engine at all), the merge finds no digest of the older
    image to tag as this run's."""
    from localai_ci.github.artifacts import read_digests_dir, write_digest_file
    from localai_ci.matrix.naming import Family, LegKey

    digests = tmp_path / "digests"
    old = "sha256:" + "7" * 64
    write_digest_file(digests, LegKey(Family.BACKENDS, "-cpu-hello", "amd64"), old)
    write_digest_file(digests, LegKey(Family.BACKENDS, "-cpu-hello", "arm64"), "sha256:" + "8" * 64)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
           "GITHUB_REF": "refs/heads/master", "GITHUB_SHA": "89abcdef" * 5, "GITHUB_EVENT_NAME": "push"}
    done = subprocess.run([sys.executable, "-m", "localai_ci", "build-backend", "--tag-suffix=-cpu-hello",
                           "--platform-tag", "amd64", "--images", "127.0.0.1:1/x/y", "--digests-dir", str(digests),
                           "--push"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"removed the previous digest file of -cpu-hello [amd64] ({old})" in done.stdout, done.stdout
    assert [a.key.ptag for a in read_digests_dir(digests)] == ["arm64"]  # the other leg is left alone
