"""Benchmark (not a test): ``invoke pipeline`` first run vs second run, side by side, on every engine.

On each engine of ``--engines`` (default: ``$CI_TEST_ENGINES``, else ``$DOCKER_HOST``), a fresh
copy of the project's ``backends/`` (a new git repository, empty state, empty blob cache) runs
``invoke pipeline`` three times as a subprocess, exactly as a user would:

1. first run: every leg built and published, every suffix merged and inspected (the engine's
   build cache may be warm from earlier runs: the copy is fresh, the engine is not);
2. second run: nothing changed, every leg up to date (record + HEAD), merges unchanged;
3. ``--force`` run: every leg rebuilt and republished (engine build cache warm, blobs present).

Prints the wall times per engine and the ratio first/second (target: the second run a fraction
of the first).

    python bench/bench_pipeline.py [--engines HOST1,HOST2] [--keep-dir]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    ENGINES_HELP,
    ROOT,
    EngineInfo,
    default_engines,
    engine_info,
    fresh_clone,
    leg_env,
    parse_engines,
    print_table,
    scratch_dir,
)

RUNS = (("first (fresh clone)", ()), ("second (unchanged)", ()), ("--force", ("--force",)))


def run(root: Path, env: dict[str, str], *extra: str) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "invoke", "pipeline", "--root", str(root), *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"invoke pipeline {' '.join(extra)} failed ({done.returncode}) on "
                 f"{env.get('DOCKER_HOST', 'the default engine')}:\n{done.stdout}\n{done.stderr}")
    summary = next((line for line in done.stdout.splitlines() if re.match(r"^\d+ leg\(s\):", line)), "?")
    return seconds, summary


def bench_engine(info: EngineInfo, tmp: Path) -> list[tuple[float, str]]:
    work = tmp / info.store
    root = fresh_clone(work)
    env = leg_env(info.host, CI_BLOB_CACHE=str(work / "blobs"))  # a newcomer's empty blob cache
    print(f"== {info.label} ...", file=sys.stderr, flush=True)
    return [run(root, env, *extra) for _, extra in RUNS]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default=default_engines(os.environ), help=ENGINES_HELP)
    ap.add_argument("--keep-dir", action="store_true", help="keep the temporary copies (state, registries)")
    args = ap.parse_args()
    results: list[tuple[EngineInfo, list[tuple[float, str]]]] = []
    with scratch_dir("bench-pipeline-", keep=args.keep_dir) as tmp:
        for host in parse_engines(args.engines):
            info = engine_info(host)
            times = bench_engine(info, tmp)
            results.append((info, times))
            first, second = times[0][0], times[1][0]
            print(f"\n{info.label}")
            print_table(("run", "wall time", "summary"),
                        [(name, f"{sec:.2f}s", summary) for (name, _), (sec, summary) in zip(RUNS, times)],
                        right=(1,))
            print(f"second run took {second / first:.0%} of the first ({first / second:.1f}x faster)")
    if len(results) > 1:
        print("\nsummary")
        print_table(("image store", "first", "second", "--force", "second / first"),
                    [(i.store, *(f"{s:.2f}s" for s, _ in t), f"{t[1][0] / t[0][0]:.0%}") for i, t in results],
                    right=(1, 2, 3, 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
