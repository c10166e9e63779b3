"""Catalog audit (``nox -s inspect -- --audit``): a real pipeline run into the test registries, then the audit,
then three real faults, each caught by name (issue 15)."""
from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from localai_ci.verify.audit import audit_tags
from localai_ci.cli import main
from localai_ci.oci.manifest import Descriptor, compose_index, parse_manifest
from localai_ci.matrix.model import load_matrix
from localai_ci.oci.reference import parse_image_name
from localai_ci.oci.client import RegistryClient
from tests.support.paths import REPO as ROOT

MATRIX = ROOT / "backends" / "matrix.yml"
SUFFIXES = ("-cpu-hello", "-cpu-echo", "-cpu-hello-extra")
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_audited_tags_are_the_merges_tags_and_latest_where_the_legs_give_it() -> None:
    m = load_matrix(MATRIX)
    assert audit_tags(m, "-cpu-hello", ref="refs/heads/master") == ("master-cpu-hello", "latest-cpu-hello")
    assert audit_tags(m, "-cpu-hello", ref="refs/tags/v1.2.3") == ("v1.2.3-cpu-hello", "latest-cpu-hello")
    images = load_matrix(ROOT / "backends" / "images.yml", m.family.SERVER)
    assert audit_tags(images, "", ref="refs/heads/master") == ("master", "latest")  # the core image


def _audit(env: dict[str, str], *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["inspect", "--audit", "--matrix", str(MATRIX), *args], env=env)
    return code, out.getvalue()


@pytest.mark.registry
@pytest.mark.slow
@pytest.mark.usefixtures("busybox")  # builds RUN steps on an offline base
def test_pipeline_then_audit_then_three_faults_each_caught(engine: Any, registries: Any, unique: str,
                                                           tmp_path: Path) -> None:
    from localai_ci.pipeline.run import PipelineOptions, run_pipeline

    quay, hub = registries
    images = f"{quay.host}/{unique}/backends,{hub.host}/{unique}/backends"
    server = f"{quay.host}/{unique}/server,{hub.host}/{unique}/server"
    env = {**os.environ, "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_SHA": SHA, "CI_BLOB_CACHE": str(tmp_path / "blobs"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    report = run_pipeline(PipelineOptions(root=str(ROOT), images=images, server_images=server, only=SUFFIXES, push=True,
                                          state_dir=str(tmp_path / "state")), env=env, out=io.StringIO(),
                          err=io.StringIO())
    assert report.exit_code == 0, report.failures
    audit_env = {**env, "CI_BACKEND_IMAGES": images}
    only = ",".join(SUFFIXES)
    code, text = _audit(audit_env, "--ref", "refs/tags/v1.2.3", "--only", only)
    assert code == 0, text
    assert [line.split() for line in text.splitlines()[:3]] == [[s, "ok"] for s in SUFFIXES]
    assert "audit: 3/3 suffix(es) ok" in text and "| `-cpu-hello` |" in (tmp_path / "summary.md").read_text()

    def client(reg: Any) -> RegistryClient:
        return RegistryClient(parse_image_name(f"{reg.host}/{unique}/backends"), plain_http=True)

    # 1. -cpu-echo's list deleted from one registry: its tags are missing there
    with client(quay) as c:
        echo = c.head_manifest("latest-cpu-echo")
        assert echo is not None
        c.delete_manifest(echo[0])
    # 2. -cpu-hello's latest replaced with a single-platform image (its amd64 child) in both registries
    for reg in (quay, hub):
        with client(reg) as c:
            body, media, _ = c.get_manifest("latest-cpu-hello")  # type: ignore[misc]
            child = parse_manifest(body, media).children[0]
            child_body, child_media, _ = c.get_manifest(child.digest)  # type: ignore[misc]
            c.put_manifest("latest-cpu-hello", child_body, child_media)
    # 3. -cpu-hello-extra's list made to differ in one registry (same children, one annotation more)
    with client(hub) as c:
        body, media, _ = c.get_manifest("latest-cpu-hello-extra")  # type: ignore[misc]
        kids = parse_manifest(body, media).children
        other = compose_index([Descriptor(k.media_type, k.digest, k.size, k.platform, (("audit.test", "differs"),))
                               for k in kids])
        c.put_manifest("latest-cpu-hello-extra", other.body, other.media_type)
        c.put_manifest("v1.2.3-cpu-hello-extra", other.body, other.media_type)

    code, text = _audit(audit_env, "--ref", "refs/tags/v1.2.3", "--only", only)
    verdicts = dict(line.split(None, 1) for line in text.splitlines()[:3])
    assert code == 1, text
    assert verdicts["-cpu-echo"].startswith(f"missing in {quay.host} (v1.2.3-cpu-echo)"), text
    assert verdicts["-cpu-hello"] == "not a list", text
    assert verdicts["-cpu-hello-extra"] == "digests differ", text
    assert "audit: 0/3 suffix(es) ok" in text
    code, js = _audit(audit_env, "--ref", "refs/tags/v1.2.3", "--only", only, "--format", "json")
    data = json.loads(js)
    assert not data["ok"] and {s["suffix"]: s["result"] for s in data["suffixes"]}["-cpu-hello-extra"] == "digests differ"

    # consumer references resolved live: the deleted one is reported with its file and line
    gallery = tmp_path / "gallery.yaml"
    gallery.write_text(f"- uri: {quay.host}/{unique}/backends:latest-cpu-echo\n"
                       f"  mirrors: [{hub.host}/{unique}/backends:latest-cpu-echo]\n")
    code, text = _audit(audit_env, "--ref", "refs/tags/v1.2.3", "--only", "-cpu-echo", "--references", str(gallery))
    assert code == 1 and f"{gallery}:1: reference {quay.host}/{unique}/backends:latest-cpu-echo: " in text, text
    assert f"{gallery}:2:" not in text  # the other registry still has it


def test_audit_bad_input_exits_2(tmp_path: Path) -> None:
    code, _ = _audit({}, "--only", "-cpu-nope")
    assert code == 2
    assert main(["inspect", "--audit", "quay.io/x/y:z"], env={}) == 2  # REF... belongs to plain inspect
    assert main(["inspect", "--only", "-cpu-hello", "quay.io/x/y:z"], env={}) == 2  # --only belongs to --audit
