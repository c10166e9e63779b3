"""Benchmark (not a test): merge N suffixes x 2 legs into 2 loopback registries, two ways, in one run.

- native: ``ci.merge.merge_all`` (preflight of every child in every registry, compose once, PUT
  by digest + tags in both registries, read-back verification), ``--jobs`` suffixes at a time;
- imagetools: LocalAI's way, sequential ``docker buildx imagetools create -t ... REPO@leg1 REPO@leg2``,
  one call per registry per suffix, nothing checked before or after.

Each engine gets its own repositories holding the same children, so both do the full work.
Prints both wall times and the ratio (target: native >= 5x faster).

    python bench/bench_merge.py [--suffixes 40] [--jobs 8]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ci import imagetools  # noqa: E402
from ci.artifacts import read_digests_dir, write_digest_file  # noqa: E402
from ci.families import family_config  # noqa: E402
from ci.localregistry import start_registry  # noqa: E402
from ci.matrix import load_matrix  # noqa: E402
from ci.merge import Engine, FamilySetup, MergeOptions, Outcome, TagSource, merge_all  # noqa: E402
from ci.naming import Family  # noqa: E402
from ci.reference import parse_image_name  # noqa: E402
from ci.tags import Latest, TagInput, compute_tags  # noqa: E402
from oci_images import push_image, write_matrix  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
REF = "refs/tags/v9.9.9"
PTAGS = ("amd64", "arm64")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suffixes", type=int, default=40, help="suffixes to merge (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=8, help="native: suffixes merged at once (default %(default)s)")
    args = ap.parse_args()
    if shutil.which("docker") is None:
        print("docker CLI with buildx is needed for the imagetools side", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    regs = [start_registry(tmp / name) for name in ("quay", "hub")]
    try:
        suffixes = [f"-cpu-bench{i:02d}" for i in range(args.suffixes)]
        matrix = write_matrix(tmp / "matrix.yml", [(s, p) for s in suffixes for p in PTAGS])
        repos = {eng: [f"{r.host}/bench/{eng}" for r in regs] for eng in ("native", "imagetools")}
        digests = tmp / "digests"
        t0 = time.monotonic()
        for s in suffixes:
            for p in PTAGS:
                d = push_image(repos["native"] + repos["imagetools"], f"linux/{p}", f"{s}-{p}")
                write_digest_file(digests, Family.BACKENDS, s, p, d.digest)
        print(f"setup: {len(suffixes)} suffixes x {len(PTAGS)} legs pushed to 2 registries x 2 repositories "
              f"in {time.monotonic() - t0:.1f}s")

        # native
        setup = FamilySetup(family_config(Family.BACKENDS, images=",".join(repos["native"])), load_matrix(matrix))
        opts = MergeOptions(engine=Engine.NATIVE, tag_source=TagSource("push", REF, SHA), jobs=args.jobs)
        t0 = time.monotonic()
        report = merge_all(digests, {Family.BACKENDS: setup}, opts)
        native = time.monotonic() - t0
        bad = [r for r in report.results if r.outcome is not Outcome.MERGED]
        if bad:
            print(f"native: {len(bad)} suffix(es) not merged: {bad[0].reason}", file=sys.stderr)
            return 1

        # imagetools, sequential, as LocalAI's merge jobs (one call per registry per suffix)
        arts = read_digests_dir(digests)
        images = [parse_image_name(r) for r in repos["imagetools"]]
        t0 = time.monotonic()
        calls = 0
        for s in suffixes:
            tags = compute_tags(TagInput("push", REF, SHA, s, Latest.AUTO))
            children = sorted(a.digest for a in arts if a.key.suffix == s)
            for img in images:
                imagetools.create(img, tags, children)
                calls += 1
        peer = time.monotonic() - t0

        n = len(suffixes)
        print(f"native     (--jobs {args.jobs}, preflight+push+verify): {native:7.2f}s  ({native / n * 1000:.0f} ms/suffix)")
        print(f"imagetools (sequential, {calls} calls):           {peer:7.2f}s  ({peer / n * 1000:.0f} ms/suffix)")
        ratio = peer / native if native else float("inf")
        print(f"ratio: native is {ratio:.1f}x faster (target >= 5x): {'OK' if ratio >= 5 else 'BELOW TARGET'}")
        return 0
    finally:
        for r in regs:
            r.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
