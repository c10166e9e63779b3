"""Benchmark (not a test): how long the command-line front ends take to start (issue 23).

Each run is a fresh process, as a user starts it, measured from spawn to exit; the median of
``--repeat`` runs (after one warm-up run each, so the bytecode cache is written) is printed in ms:

* ``python -c pass``: the interpreter alone, the floor;
* ``invoke --list`` on an empty tasks file: invoke's own start-up, the floor of any invoke collection;
* ``invoke --list`` on this repository's ``tasks.py``: what a user typing ``invoke --list`` waits for;
  the target is under 150 ms;
* ``localai-ci --help`` (``python -m localai_ci --help``): the console script's start-up.

``ci/tasks.py`` keeps heavy imports (the settings file, the matrix model and lint, the Docker SDK,
the registry client) inside the task bodies, so listing the tasks loads none of them.

    python bench/bench_startup.py [--repeat 21]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 150.0


def _invoke() -> list[str]:
    """invoke's own entry point, run by this interpreter (the one the project is installed in)."""
    return [sys.executable, "-c", "import sys; from invoke.main import program; sys.exit(program.run())"]


def time_command(argv: list[str], cwd: Path, repeat: int) -> float:
    """Median wall time of ``argv`` in ms, over ``repeat`` runs after one warm-up run."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs per command (the median is printed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as empty:
        Path(empty, "tasks.py").write_text("from invoke import task\n\n\n@task\ndef noop(c):\n    pass\n")
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"], ROOT),
            ("invoke --list (empty tasks file)", [*_invoke(), "--list"], Path(empty)),
            ("invoke --list (this repository)", [*_invoke(), "--list"], ROOT),
            ("localai-ci --help", [sys.executable, "-m", "localai_ci", "--help"], ROOT),
        ]
        results = [(name, time_command(cmd, cwd, args.repeat)) for name, cmd, cwd in rows]
    width = max(len(name) for name, _ in results)
    for name, ms in results:
        print(f"{name:<{width}}  {ms:7.1f} ms")
    ours = dict(results)["invoke --list (this repository)"]
    verdict = "ok" if ours < TARGET_MS else "over"
    print(f"target: invoke --list under {TARGET_MS:.0f} ms: {ours:.1f} ms ({verdict}; median of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
