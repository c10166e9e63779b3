"""What the benchmarks share (not a benchmark): the engines to run on, tables, medians.

Every benchmark takes ``--engines HOST1,HOST2`` (``DOCKER_HOST`` values); the default is
``$CI_TEST_ENGINES`` when set (``.ci/run`` sets it to the classic and the containerd image
store), else ``$DOCKER_HOST``, else the engine's default socket. Each engine is measured on its
own, both sides of a comparison on the same engine, in the same run.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localai_ci.oci.localregistry import LocalRegistry, start_registry  # noqa: E402

ENGINES_HELP = ("comma-separated DOCKER_HOST values to run on, one after the other (default: $CI_TEST_ENGINES, "
                "else $DOCKER_HOST, else the default socket)")


def default_engines(env: Mapping[str, str]) -> str:
    return env.get("CI_TEST_ENGINES") or env.get("DOCKER_HOST") or ""


def parse_engines(text: str) -> list[str]:
    """``HOST1,HOST2`` -> the hosts ('' alone: the default socket)."""
    hosts = list(dict.fromkeys(h.strip() for h in text.split(",") if h.strip()))
    return hosts or [""]


def engine_env(host: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for one engine: ``DOCKER_HOST=host`` (unset for the default socket)."""
    env = dict(os.environ if base is None else base)
    env.pop("DOCKER_HOST", None)
    if host:
        env["DOCKER_HOST"] = host
    return env


@dataclass(frozen=True)
class EngineInfo:
    host: str
    store: str  # classic | containerd
    version: str
    arch: str

    @property
    def label(self) -> str:
        return f"{self.store} image store ({self.host or 'default socket'}, Docker {self.version})"


def engine_info(host: str) -> EngineInfo:
    from localai_ci.docker.engine import connect

    eng = connect(engine_env(host))
    try:
        f = eng.facts()
    finally:
        eng.client.close()
    return EngineInfo(host, f.image_store, f.version, f.arch)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def note(*parts: str) -> str:
    """The non-empty parts joined with '; '."""
    return "; ".join(p for p in parts if p)


def spread(values: Sequence[float]) -> str:
    """``min-max`` of a few timings, for the note column."""
    return f"{min(values):.2f}-{max(values):.2f} s" if len(values) > 1 else ""


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
    """A plain text table; columns in ``right`` are right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = [f"{c:>{w}}" if i in right else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()
    print(line(header))
    for r in rows:
        print(line(r))


def fresh_clone(dest: Path) -> Path:
    """A new git repository at ``dest/clone`` holding a copy of the project's ``backends/`` (one commit)."""
    import shutil
    import subprocess

    root = dest / "clone"
    shutil.copytree(ROOT / "backends", root / "backends")
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
           "-c", "commit.gpgsign=false"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(git + args, check=True, capture_output=True)
    return root


# variables a benchmark's subprocesses must not inherit: they would redirect where legs are published,
# or write to a real GitHub run
UNSET_FOR_LEGS = ("CI_BACKEND_IMAGES", "CI_SERVER_IMAGES", "CI_CACHE_IMAGE", "CI_PR_IMAGE", "CI_ANCHOR_REGISTRIES",
                  "GITHUB_ACTIONS", "GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY",
                  "GITHUB_REF", "GITHUB_SHA", "GITHUB_RUN_ID")


def leg_env(host: str, **extra: str) -> dict[str, str]:
    """:func:`engine_env` without :data:`UNSET_FOR_LEGS`, plus ``extra``."""
    env = {k: v for k, v in engine_env(host).items() if k not in UNSET_FOR_LEGS}
    env.update(extra)
    return env


@contextlib.contextmanager
def scratch_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temporary directory for one benchmark run, removed afterwards (``keep``: kept and named)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def registry_pair(root: Path) -> Iterator[list[LocalRegistry]]:
    """Two loopback registries (``quay``, ``hub``) under ``root``, as the family configs name
    them; stopped afterwards."""
    regs = [start_registry(root / name) for name in ("quay", "hub")]
    try:
        yield regs
    finally:
        for r in regs:
            r.stop()
