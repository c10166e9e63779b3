"""Summary of a matrix: what ``invoke matrix.report`` shows (pure; rendering is plain text or rich)."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from ..oci.platforms import Arch, RunnerPolicy
from ..output.escape import terminal_text
from .model import Matrix


@dataclass(frozen=True)
class MatrixSummary:
    source: str
    entries: int
    legs_per_arch: dict[str, int]  # single-platform legs by platform tag
    suffixes: int
    pairs: int  # suffixes with both an amd64 and an arm64 leg
    single_arch: int  # suffixes built for exactly one architecture
    multi_platform: int  # entries building several platforms in one job
    runners: dict[str, int]  # runs-on label -> entries
    retired_runners: dict[str, int]  # the subset of ``runners`` that is retired
    darwin: int  # includeDarwin entries (kept, not built here)

    def rows(self) -> list[tuple[str, str]]:
        def fmt(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"

        return [
            ("entries (include:)", str(self.entries)),
            ("legs per arch", fmt(self.legs_per_arch)),
            ("tag-suffixes", str(self.suffixes)),
            ("amd64/arm64 pairs", str(self.pairs)),
            ("single-arch suffixes", str(self.single_arch)),
            ("multi-platform entries", str(self.multi_platform)),
            ("runners", fmt(self.runners)),
            ("on retired runners", fmt(self.retired_runners)),
            ("darwin entries (kept, not built)", str(self.darwin)),
        ]

    def render_text(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join([f"matrix {self.source}"] + [f"  {k:<{width}}  {v}" for k, v in rows])

    def render_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def summarize(matrix: Matrix, policy: RunnerPolicy | None = None) -> MatrixSummary:
    """Count what a matrix builds: legs, suffixes, pairs, runners."""
    policy = policy or RunnerPolicy()
    archs: dict[str, set[Arch]] = {}
    for e in matrix:
        archs.setdefault(e.tag_suffix, set()).update(p.arch for p in e.platforms)
    per_arch = Counter(e.ptag for e in matrix if not e.multi_platform)
    runners = Counter(e.runs_on for e in matrix)
    return MatrixSummary(
        source=matrix.path,
        entries=len(matrix),
        legs_per_arch=dict(per_arch.most_common()),
        suffixes=len(archs),
        pairs=sum(1 for a in archs.values() if {Arch.AMD64, Arch.ARM64} <= a),
        single_arch=sum(1 for a in archs.values() if len(a) == 1),
        multi_platform=sum(e.multi_platform for e in matrix),
        runners=dict(runners.most_common()),
        retired_runners={r: n for r, n in runners.most_common() if policy.is_retired(r)},
        darwin=len(matrix.darwin),
    )


def rich_table(summary: MatrixSummary) -> Any:
    """The summary as a rich table for a terminal (its cells through ``terminal_text``)."""
    table = Table(title=terminal_text(f"matrix {summary.source}"), show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for k, v in summary.rows():
        table.add_row(terminal_text(k), terminal_text(v))
    return table
