"""Publishing a leg another tool built (``invoke build-backend --from-oci PATH``), against real registries.

LocalAI's Darwin backends are built on macOS runners by ``local-ai util create-oci-image``, which
writes a docker-archive (go-containerregistry's ``tarball.Write``, platform ``darwin/arm64``); the
test writes one the same way (``tests/support/oci_archives.py``), publishes it through the invoke task the
Darwin workflow job calls, merges it and inspects the list, as for any leg. No engine is involved.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localai_ci.cli import main
from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family
from localai_ci.oci.reference import parse_image_name
from localai_ci.oci.client import RegistryClient
from tests.support.oci_archives import tar_dir, write_darwin_archive, write_oci_layout
from tests.support.oci_images import matrix_text
from tests.support.paths import REPO as ROOT

pytestmark = pytest.mark.registry

SUFFIX = "-metal-darwin-arm64-llama-cpp"
SHA = "0123456789abcdef0123456789abcdef01234567"
DARWIN = f"""includeDarwin:
  - backend: "llama-cpp"
    tag-suffix: "{SUFFIX}"
    build-type: "metal"
    lang: "go"
"""


def _matrix(tmp: Path) -> Path:
    """A matrix with one Linux leg and LocalAI's includeDarwin entry shape."""
    path = tmp / "matrix.yml"
    path.write_text(matrix_text([("-cpu-hello", "amd64")]) + DARWIN)
    return path


def _env(tmp: Path) -> dict[str, str]:
    drop = ("CI_BACKEND_IMAGES", "CI_SERVER_IMAGES", "GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(CI_BLOB_CACHE=str(tmp / "blobs"), GITHUB_EVENT_NAME="push", GITHUB_REF="refs/heads/master",
               GITHUB_SHA=SHA)
    return env


def _publish(tmp: Path, images: str, archive: Path, suffix: str = SUFFIX) -> subprocess.CompletedProcess[str]:
    """The command the Darwin workflow job runs after downloading the macOS job's archive."""
    return subprocess.run([sys.executable, "-m", "invoke", "build-backend", f"--tag-suffix={suffix}",
                           "--from-oci", str(archive), "--push", "--matrix", str(_matrix(tmp)), "--images", images,
                           "--digests-dir", str(tmp / "digests"), "--root", str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env=_env(tmp), check=False)


def _manifest_and_config(image: str, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with RegistryClient(parse_image_name(image), plain_http=True) as c:
        got = c.get_manifest(ref)
        assert got is not None, f"{image}@{ref} is missing"
        manifest = json.loads(got[0])
        return manifest, json.loads(c.get_blob(manifest["config"]["digest"]))


def test_the_darwin_leg_is_a_leg_of_the_matrix(tmp_path: Path) -> None:
    m = load_matrix(_matrix(tmp_path), Family.BACKENDS)
    (leg,) = m.legs_of(SUFFIX)
    assert (str(leg.platform), leg.ptag, leg.backend, leg.tag_latest) == ("darwin/arm64", "arm64", "llama-cpp", "auto")
    assert leg.key.artifact == "digests-metal-darwin-arm64-llama-cpp--arm64" and leg.line == 17
    assert [e.tag_suffix for e in m] == ["-cpu-hello"]  # not a leg to build here


def test_a_darwin_archive_is_published_by_digest_merged_and_inspected(
        registries: Any, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = [f"{r.host}/{unique}/backends" for r in registries]
    (tmp_path / "backend-images").mkdir()
    archive = write_darwin_archive(tmp_path / "backend-images" / "llama-cpp.tar", layers=2)
    done = _publish(tmp_path, ",".join(images), archive.path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    digest = next(line.split()[1] for line in out.splitlines() if line.startswith("digest: "))
    hex_ = digest.split(":")[1]
    assert (tmp_path / "digests" / f"digests{SUFFIX}--arm64" / hex_).is_file()  # the digest artifact
    assert f"publishing docker-archive {archive.path} (darwin/arm64, 2 layer(s)" in out
    for image in images:  # the same manifest, by digest, in every registry; the archive's layers as they were
        manifest, config = _manifest_and_config(image, digest)
        assert [x["digest"] for x in manifest["layers"]] == list(archive.layer_digests)
        assert manifest["config"]["digest"] == archive.config_digest
        assert (config["os"], config["architecture"]) == ("darwin", "arm64")
        with RegistryClient(parse_image_name(image), plain_http=True) as c:
            assert c.list_tags() == []  # by digest only
    again = _publish(tmp_path, ",".join(images), archive.path)  # a re-run: the same digest, nothing sent
    assert again.returncode == 0 and f"digest: {digest}" in again.stdout, again.stdout + again.stderr
    assert "0 uploaded (0 bytes)" in again.stdout

    merge = ["merge", f"--tag-suffix={SUFFIX}", "--digests-dir", str(tmp_path / "digests"), "--matrix",
             str(_matrix(tmp_path)), "--images", ",".join(images), "--ref", "refs/heads/master", "--sha", SHA,
             "--event", "push"]
    assert main(merge, env=_env(tmp_path)) == 0, capsys.readouterr()
    merged = capsys.readouterr().out
    assert "platforms: darwin/arm64" in merged, merged
    tag = f"master{SUFFIX}"
    inspect = ["inspect", "--images", ",".join(images), "--tag", tag, "--expect-platforms", "darwin/arm64"]
    code = main(inspect, env=_env(tmp_path))
    shown = capsys.readouterr()
    assert code == 0, shown.out + shown.err
    for image in images:
        with RegistryClient(parse_image_name(image), plain_http=True) as c:
            got = c.get_manifest(tag)
            assert got is not None
            children = json.loads(got[0])["manifests"]
            assert [(k["digest"], k["platform"]) for k in children] == [
                (digest, {"architecture": "arm64", "os": "darwin"})]


def test_an_oci_layout_archive_keeps_its_own_manifest(registries: Any, unique: str, tmp_path: Path) -> None:
    """An OCI image layout (.tar: BuildKit's type=oci output, skopeo's oci-archive) is published with the
    manifest exactly as written: the digest is the layout's."""
    images = [f"{r.host}/{unique}/backends" for r in registries]
    layout = write_oci_layout(tmp_path / "layout", platform="darwin/arm64", attestation=True)
    done = _publish(tmp_path, ",".join(images), tar_dir(layout.path, tmp_path / "layout.tar"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"digest: {layout.manifest_digest}" in done.stdout
    for image in images:
        manifest, config = _manifest_and_config(image, layout.manifest_digest)
        assert [x["digest"] for x in manifest["layers"]] == list(layout.layer_digests)
        assert config["os"] == "darwin"


@pytest.mark.parametrize("case", ["wrong platform", "linux leg", "not an archive"])
def test_an_archive_that_is_not_the_leg_is_refused_and_nothing_is_published(
        registries: Any, unique: str, tmp_path: Path, case: str) -> None:
    images = [f"{r.host}/{unique}/backends" for r in registries]
    suffix = SUFFIX
    if case == "wrong platform":  # a linux/amd64 image named as the darwin/arm64 leg
        path = write_darwin_archive(tmp_path / "x.tar", platform="linux/amd64").path
        expect = "is linux/amd64, but the leg's platform is darwin/arm64"
    elif case == "linux leg":
        path = write_darwin_archive(tmp_path / "x.tar").path
        suffix = "-cpu-hello"
        expect = "is darwin/arm64, but the leg's platform is linux/amd64"
    else:
        path = tmp_path / "x.tar"
        path.write_text("not a tar")
        expect = "neither an OCI image layout directory nor a tar archive"
    done = _publish(tmp_path, ",".join(images), path, suffix)
    assert done.returncode == 1, done.stdout + done.stderr
    assert expect in done.stderr, done.stderr
    assert not (tmp_path / "digests").exists()
    for image in images:
        with RegistryClient(parse_image_name(image), plain_http=True) as c:
            assert c.list_tags() == []


def test_a_darwin_suffix_is_never_built_here(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "invoke", "build-backend", f"--tag-suffix={SUFFIX}",
                           "--matrix", str(_matrix(tmp_path)), "--dry-run", "--images", "127.0.0.1:5999/x/y"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2
    assert "is an includeDarwin entry" in done.stderr and "--from-oci PATH" in done.stderr, done.stderr
