"""Benchmark (not a test): planning LocalAI's whole matrix, side by side with ``docker buildx bake --print``.

On a generated LocalAI-sized tree (``tests/support/localai_scale.py``: the real 2026-08 matrix of 457
legs at ``backends/matrix.yml``, LocalAI's real backend Dockerfiles, a Go module, docs; no
server matrix, as in LocalAI), each run a fresh process as a user starts it:

* ours: ``invoke pipeline --dry-run``: reads the matrix, plans every leg (build args, labels,
  tags, registries), resolves each Dockerfile for feasibility, derives each leg's inputs and
  hashes the files it reads (the up-to-date key), plans every merge, prints it all;
* peer: ``docker buildx bake --print`` of a bake file with the same 457 targets (context,
  Dockerfile, build args, platform): buildx's own planning of the same builds, which parses
  the definition and prints it, without reading a Dockerfile or the build context.

The peer does less work, so the ratio is the price of what ours checks on top. Also printed:
how many times the pipeline read the matrix file in one in-process plan (issue 13: it was once
per leg). No engine is contacted (``DOCKER_HOST`` points at a socket that does not exist).

    python bench/bench_plan.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, median, note, print_table, scratch_dir, spread

from tests.support.localai_ref import M2608  # noqa: E402  (LocalAI's matrix, tests/resources/localai/)


def bake_file(tree: Path, matrix: Path) -> Path:
    """The matrix's legs as a bake definition (one target per leg, as LocalAI's workflow builds them)."""
    from localai_ci.matrix.model import load_matrix

    targets = {}
    for i, e in enumerate(load_matrix(matrix)):
        targets[f"leg{i}"] = {"context": str(tree / e.context), "dockerfile": str(tree / e.dockerfile),
                              "args": dict(e.build_args()), "platforms": [str(e.platform)],
                              "tags": [f"localai-ci/backend{e.tag_suffix}:{e.ptag}"]}
    path = tree.parent / "bake.json"
    path.write_text(json.dumps({"group": {"default": {"targets": sorted(targets)}}, "target": targets}))
    return path


def timed(argv: list[str], env: dict[str, str], what: str) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def matrix_reads(tree: Path, env: dict[str, str]) -> tuple[int, int, float]:
    """(matrix file reads, legs planned, seconds) of one in-process dry-run plan."""
    import localai_ci.matrix.model
    from localai_ci.pipeline.run import PipelineOptions, run_pipeline

    reads: list[str] = []
    real = localai_ci.matrix.model.load_matrix

    def counting(path, family=localai_ci.matrix.model.Family.BACKENDS):  # type: ignore[no-untyped-def]
        reads.append(str(path))
        return real(path, family)

    # wherever it is imported (at the top of modules), load_matrix is the counting one
    patched = [m for name, m in sys.modules.items()
               if name.startswith("localai_ci.") and getattr(m, "load_matrix", None) is real]
    for module in patched:
        module.load_matrix = counting
    try:
        out = io.StringIO()
        t0 = time.monotonic()
        run_pipeline(PipelineOptions(root=str(tree), dry_run=True), env=env, out=out, err=io.StringIO())
        seconds = time.monotonic() - t0
    finally:
        for module in patched:
            module.load_matrix = real
    return len(reads), out.getvalue().count("\n== leg "), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep-dir", action="store_true")
    args = ap.parse_args()
    from tests.support.localai_scale import build_tree, copy_matrix

    with scratch_dir("bench-plan-", args.keep_dir) as tmp:
        tree = build_tree(tmp / "tree", M2608, commit=True)
        copy_matrix(tree, M2608, "backends/matrix.yml")
        bake = bake_file(tree, M2608)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_BACKEND", "CI_SERVER", "GITHUB_"))}
        env.update(DOCKER_HOST=f"unix://{tmp}/no-engine.sock", GITHUB_REF="refs/heads/master", GITHUB_SHA="0" * 40)
        ours, peer = [], []
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            ours.append(timed([sys.executable, "-m", "invoke", "pipeline", "--root", str(tree), "--dry-run"], env,
                              "invoke pipeline --dry-run")[0])
            peer.append(timed(["docker", "buildx", "bake", "--print", "-f", str(bake)], env, "buildx bake --print")[0])
        reads, legs, inproc = matrix_reads(tree, env)
    mo, mp = median(ours), median(peer)
    print(f"\nplanning LocalAI's 2026-08 matrix ({legs} legs) on a LocalAI-sized tree, {args.repeat} runs each, medians")
    print_table(["what", "seconds", "note"], [
        ("ours: invoke pipeline --dry-run", f"{mo:.2f}", note(spread(ours), "process end to end; target < 2 s")),
        ("ours: the plan alone, in-process", f"{inproc:.2f}", f"matrix file read {reads} time(s) for {legs} legs"),
        ("peer: docker buildx bake --print", f"{mp:.2f}", note(spread(peer), "the same targets; no Dockerfile or "
                                                                  "context read")),
        ("ratio ours/peer", f"{mo / mp:.2f}x", ""),
    ], right=(1,))


if __name__ == "__main__":
    main()
