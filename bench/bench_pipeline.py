"""Benchmark (not a test): ``invoke pipeline`` first run vs second run, side by side.

A fresh copy of the project's ``backends/`` (a new git checkout, empty state, empty blob
cache) runs ``invoke pipeline`` three times as a subprocess, exactly as a user would:

1. first run: every leg built and published, every suffix merged and inspected;
2. second run: nothing changed, every leg up to date (record + HEAD), merges unchanged;
3. ``--force`` run: every leg rebuilt and republished (engine build cache warm, blobs present).

Prints the wall times and the ratio first/second (target: the second run a fraction of the first).

    python bench/bench_pipeline.py [--keep-dir]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fresh_clone(dest: Path) -> Path:
    root = dest / "clone"
    shutil.copytree(ROOT / "backends", root / "backends")
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(git + args, check=True, capture_output=True)
    return root


def run(root: Path, env: dict[str, str], *extra: str) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "invoke", "pipeline", "--root", str(root), *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"invoke pipeline {' '.join(extra)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    summary = next((line for line in done.stdout.splitlines() if re.match(r"^\d+ leg\(s\):", line)), "?")
    return seconds, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-dir", action="store_true", help="keep the temporary clone (state, registries)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        root = fresh_clone(tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("CI_BACKEND_IMAGES", "CI_SERVER_IMAGES")}
        env["CI_BLOB_CACHE"] = str(tmp / "blobs")  # a newcomer's empty blob cache
        first = run(root, env)
        second = run(root, env)
        forced = run(root, env, "--force")
        print(f"{'run':<22}{'wall time':>10}  summary")
        for name, (sec, summary) in (("first (fresh clone)", first), ("second (unchanged)", second),
                                     ("--force", forced)):
            print(f"{name:<22}{sec:>9.2f}s  {summary}")
        print(f"second run took {second[0] / first[0]:.0%} of the first ({first[0] / second[0]:.1f}x faster)")
    finally:
        if args.keep_dir:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
