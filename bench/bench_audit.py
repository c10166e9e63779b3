"""Benchmark (not a test): the catalog audit of N suffixes x 2 registries, ours vs ``docker buildx imagetools``.

Setup (untimed): N suffixes x 2 legs (amd64, arm64) pushed to two loopback registries and merged
(``localai_ci.merge.run.merge_all``) under a release's tags (``v9.9.9<suffix>``, ``latest<suffix>``).

- ours: ``localai_ci.verify.audit.audit`` (what ``nox -s inspect -- --audit --ref refs/tags/v9.9.9`` runs): for every
  suffix, both tags in both registries: resolves, is a list, the matrix's platforms, no attestation,
  the same digest everywhere, every child resolves with a matching config; ``--jobs`` at a time;
- imagetools: the same checks with ``docker buildx imagetools inspect --format '{{json .}}' REF``, one
  call per tag per registry (the list and every child's config in one call), the list digest and
  platforms compared here; sequential, as a shell loop would run them. ``--peer-sample K`` runs the
  peer on K suffixes only and scales its time (the full peer run takes minutes at 386 suffixes).

Prints both times, the ratio, and per-suffix costs.

    python bench/bench_audit.py [--suffixes 386] [--jobs 8] [--peer-sample 0]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import registry_pair, scratch_dir  # noqa: E402

from localai_ci.github.artifacts import write_digest_file  # noqa: E402
from localai_ci.matrix.model import load_matrix  # noqa: E402
from localai_ci.matrix.naming import Family, LegKey  # noqa: E402
from localai_ci.matrix.tags import TagSource  # noqa: E402
from localai_ci.merge.model import MergeOptions, Method, Outcome  # noqa: E402
from localai_ci.merge.run import FamilySetup, merge_all  # noqa: E402
from localai_ci.oci.client import RegistryClient  # noqa: E402
from localai_ci.settings import family_config  # noqa: E402
from localai_ci.verify.audit import audit, audit_tags  # noqa: E402
from tests.support.oci_images import push_image, write_matrix  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
REF = "refs/tags/v9.9.9"
PTAGS = ("amd64", "arm64")


def peer_check(ref: str, expected: set[str]) -> tuple[str, bool]:
    """One ``imagetools inspect`` of a list: (its digest, platforms and child configs as expected)."""
    done = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--format", "{{json .}}", ref],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        return "", False
    doc = json.loads(done.stdout)
    manifest = doc.get("manifest") or {}
    raw = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", ref], capture_output=True,
                         timeout=60, stdin=subprocess.DEVNULL, check=False).stdout if not manifest.get("digest") else b""
    digest = manifest.get("digest") or ("sha256:" + hashlib.sha256(raw).hexdigest())
    plats = {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in manifest.get("manifests", [])}
    images = doc.get("image") or {}
    configs_ok = all(f"{c.get('os')}/{c.get('architecture')}" == p for p, c in images.items()) if images else False
    return digest, plats == expected and configs_ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suffixes", type=int, default=386, help="suffixes (default %(default)s, LocalAI 2026-08)")
    ap.add_argument("--jobs", type=int, default=8, help="ours: suffixes audited at once (default %(default)s)")
    ap.add_argument("--peer-sample", type=int, default=0,
                    help="run imagetools on this many suffixes only and scale (default 0: all)")
    args = ap.parse_args()
    if shutil.which("docker") is None:
        print("the docker CLI with buildx is needed for the imagetools side", file=sys.stderr)
        return 2
    with scratch_dir("bench-audit-") as tmp, registry_pair(tmp) as regs:
        suffixes = [f"-cpu-audit{i:03d}" for i in range(args.suffixes)]
        matrix_path = write_matrix(tmp / "matrix.yml", [(s, p) for s in suffixes for p in PTAGS])
        repos = [f"{r.host}/bench/audit" for r in regs]
        digests = tmp / "digests"
        t0 = time.monotonic()
        for s in suffixes:
            for p in PTAGS:
                d = push_image(repos, f"linux/{p}", f"{s}-{p}")
                write_digest_file(digests, LegKey(Family.BACKENDS, s, p), d.digest)
        config = family_config(Family.BACKENDS, images=",".join(repos))
        matrix = load_matrix(matrix_path)
        report = merge_all(digests, {Family.BACKENDS: FamilySetup(config, matrix)},
                           MergeOptions(method=Method.NATIVE, tag_source=TagSource("push", REF, SHA), jobs=8))
        if any(r.outcome is not Outcome.MERGED for r in report.results):
            print("setup: a merge failed", file=sys.stderr)
            return 1
        print(f"setup: {len(suffixes)} suffixes x {len(PTAGS)} legs pushed and merged into 2 registries in "
              f"{time.monotonic() - t0:.1f}s")

        def client_for(img):  # type: ignore[no-untyped-def]
            return RegistryClient(img, plain_http=True)

        t0 = time.monotonic()
        ours = audit({Family.BACKENDS: matrix}, {Family.BACKENDS: config}, client_for, ref=REF, jobs=args.jobs)
        ours_s = time.monotonic() - t0
        assert ours.exit_code == 0, [s.verdict() for s in ours.failed][:3]

        sample = suffixes[:args.peer_sample] if args.peer_sample else suffixes
        expected = {f"linux/{p}" for p in PTAGS}
        t0 = time.monotonic()
        calls = 0
        for s in sample:
            for tag in audit_tags(matrix, s, ref=REF):
                found = []
                for repo in repos:
                    digest, ok = peer_check(f"{repo}:{tag}", expected)
                    calls += 1
                    assert ok, f"{repo}:{tag}"
                    found.append(digest)
                assert len(set(found)) == 1
        peer_s = (time.monotonic() - t0) * len(suffixes) / len(sample)
        n = len(suffixes)
        note = f" (measured on {len(sample)}, scaled)" if len(sample) != n else ""
        print(f"ours       (--jobs {args.jobs}, every check): {ours_s:7.2f}s  ({ours_s / n * 1000:.1f} ms/suffix)")
        print(f"imagetools (sequential, {calls} calls{note}): {peer_s:7.2f}s  ({peer_s / n * 1000:.1f} ms/suffix)")
        print(f"ratio: ours is {peer_s / ours_s:.1f}x faster")
        return 0


if __name__ == "__main__":
    sys.exit(main())
