"""How a function's time grows with its input, measured in a fresh interpreter under a timeout (test helper).

``growth(setup, call, sizes)`` runs ``setup`` (code defining what ``call`` needs, with ``n`` bound to each
size in turn) and times ``call`` (an expression) at each size, best of ``repeat``, in a subprocess that is
killed after ``timeout`` seconds: a matcher or parser that went exponential or loops for ever fails the
test in bounded time instead of hanging it. ``assert_linear`` compares the growth, never an absolute time
on a tiny input: ten times the input must not take more than ``limit`` times as long (linear: about 10;
quadratic: about 100).
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

RUNNER = """
import json, sys, time
setup, call, sizes, repeat = json.loads(sys.stdin.read())
out = []
for n in sizes:
    env = {"n": n}
    exec(setup, env)
    code = compile(call, "<call>", "eval")
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        eval(code, env)
        took = time.perf_counter() - t0
        best = took if best is None else min(best, took)
    out.append(best)
print(json.dumps(out))
"""

FLOOR = 0.002  # seconds: timings below this are noise on a shared machine


def growth(setup: str, call: str, sizes: Sequence[int], *, repeat: int = 3, timeout: float = 120) -> list[float]:
    try:
        done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([setup, call, list(sizes), repeat]),
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{call} did not finish within {timeout:.0f}s for sizes {list(sizes)}") from None
    assert done.returncode == 0, done.stderr[-3000:]
    return [float(t) for t in json.loads(done.stdout)]


def assert_linear(setup: str, call: str, small: int, *, factor: int = 10, limit: float = 30,
                  repeat: int = 3, timeout: float = 120) -> tuple[float, float]:
    """``call`` at ``small`` and at ``factor * small``: the larger may take at most ``limit`` times as long."""
    t_small, t_large = growth(setup, call, (small, small * factor), repeat=repeat, timeout=timeout)
    assert t_large <= limit * max(t_small, FLOOR), (
        f"{call}: {factor}x the input took {t_large / max(t_small, 1e-9):.0f}x as long "
        f"({t_small:.4f}s at {small}, {t_large:.4f}s at {small * factor}); linear would be about {factor}x")
    return t_small, t_large
