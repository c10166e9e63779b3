"""Disk headroom of a build (filesystem adapter): free space before, and the peak used while it runs.

Hosted runners have little disk (LocalAI relocates Docker's data root to ``/mnt`` and watches
``df -h /mnt`` by hand); a CUDA or ROCm leg that fills it fails late and obscurely. The build task
checks the free space of the filesystem that holds the engine's data root before building, and
:class:`DiskWatch` samples, during the whole leg (build, export, publish, blob cache), every
filesystem the leg writes to -- the engine's data root, where the OCI layout is exported, the blob
cache -- each counted once however many of them share it, so the summary can say how much the leg
used at its peak: the most the sum of their free space fell below its value at the start.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import OperationError, UserError

GiB = 1 << 30
ENV_MIN_FREE = "CI_MIN_FREE_DISK_GIB"
SAMPLE_SECONDS = 0.5


def parse_min_free(value: str | None, env: Mapping[str, str]) -> float:
    """``--min-free-disk`` (GiB), else ``$CI_MIN_FREE_DISK_GIB``, else 0 (no check); UserError when not a number >= 0."""
    text = (value if value is not None else env.get(ENV_MIN_FREE, "")).strip()
    if not text:
        return 0.0
    try:
        gib = float(text)
    except ValueError:
        gib = -1.0
    if not gib >= 0 or gib == float("inf"):
        raise UserError(f"--min-free-disk / {ENV_MIN_FREE} {text!r}: expected a number of GiB such as 20 (0: no check)")
    return gib


def disk_path(root_dir: str, fallback: str = ".") -> Path:
    """The path whose filesystem the build fills: the engine's data root when it is on this machine, else ``fallback``."""
    p = Path(root_dir) if root_dir else None
    return p if p is not None and p.exists() else Path(fallback)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_free(path: Path, min_gib: float, what: str) -> int:
    """The free bytes at ``path``; OperationError when fewer than ``min_gib`` GiB."""
    try:
        free = free_bytes(path)
    except OSError as exc:
        raise OperationError(f"{what}: cannot read the free space of {path}: {exc.strerror or exc}") from exc
    if min_gib and free < min_gib * GiB:
        raise OperationError(
            f"{what}: only {free / GiB:.1f} GiB free on the filesystem of {path}, the leg asks for at least "
            f"{min_gib:g} GiB (--min-free-disk / {ENV_MIN_FREE}); free space first (docker system prune -af, docker "
            "builder prune -af) or move Docker's data root to a larger disk (on hosted runners: /mnt)")
    return free


@dataclass(frozen=True)
class DiskUse:
    path: str  # the watched paths (one per filesystem), comma-separated
    free_before: int  # summed over the watched filesystems
    peak_used: int  # the most the free space fell below its value at the start

    def describe(self) -> str:
        return (f"disk: {self.free_before / GiB:.1f} GiB free on {self.path} before the leg, "
                f"peak use during it {self.peak_used / GiB:.2f} GiB")


class DiskWatch:
    """Samples the free space of the filesystems of ``paths`` every ``interval`` seconds while in the
    ``with`` block, and whenever :meth:`sample` is called (at the end of a phase: the export done)."""

    def __init__(self, path: Path | Sequence[Path], interval: float = SAMPLE_SECONDS) -> None:
        paths = [path] if isinstance(path, Path) else list(path)
        self.paths: list[Path] = []
        devices: set[int] = set()
        for p in paths:
            probe = _existing(p)
            try:
                dev = os.stat(probe).st_dev
            except OSError:
                continue
            if dev not in devices:
                devices.add(dev)
                self.paths.append(probe)
        self.interval = interval
        self.start = self.lowest = self._free()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-watch", daemon=True)

    @property
    def path(self) -> Path:
        """The first watched path (the engine's data root)."""
        return self.paths[0] if self.paths else Path(".")

    def _free(self) -> int:
        total = 0
        for p in self.paths:
            try:
                total += free_bytes(p)
            except OSError:
                pass
        return total

    def sample(self) -> None:
        free = self._free()
        with self._lock:
            self.lowest = min(self.lowest, free)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def result(self) -> DiskUse:
        return DiskUse(", ".join(str(p) for p in self.paths), self.start, max(0, self.start - self.lowest))


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent (a directory the leg will create)."""
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p
