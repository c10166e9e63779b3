"""A merge's results as users read them: one line per suffix (``format_result``) and the job summary's
Markdown (``summary_markdown``).
"""
from __future__ import annotations

from ..oci.reference import DOCKER_HUB
from ..output.markdown import Cell, code, md_cell, md_table
from .model import MergeReport, Outcome, SuffixResult


def summary_markdown(report: MergeReport, pull_counted: frozenset[str] = frozenset({DOCKER_HUB})) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: merged tags and digests per registry, skipped with why, and the
    requests sent (manifest GETs per registry: Docker Hub counts each against the pull limit)."""
    rows: list[list[Cell]] = []
    for r in report.results:
        if r.outcome is Outcome.MERGED:
            for img in r.images:
                rows.append([r.label, "merged" + (" (dry run)" if r.dry_run else ""), str(img), code(*r.tags),
                             code(r.digest)])
        else:
            rows.append([r.label, r.outcome.value, "", "", r.reason])
    line = report.requests_line(pull_counted)
    return ("### Merged manifest lists\n\n" + md_table(["suffix", "result", "registry", "tags", "list digest / reason"], rows)
            + (f"\n{md_cell(line)}\n" if line else ""))


def format_result(r: SuffixResult) -> str:
    """Human lines for one suffix."""
    if r.outcome is not Outcome.MERGED:
        return f"{r.outcome.value}: {r.label}: {r.reason}"
    lines = []
    if r.dry_run:
        lines += [f"dry run: {r.label}: nothing written", "list:", r.list_json.rstrip(), "tags: " + ", ".join(r.tags),
                  "targets:"] + [f"  {img}:{t}" for img in r.images for t in r.tags]
        lines += ["commands:"] + ["  " + " ".join(c) for c in r.commands] if r.commands else []
        lines.append(f"list digest: {r.digest}")
        return "\n".join(lines)
    state = "merged" if r.changed else "unchanged (already published)"
    lines.append(f"{state}: {r.label} -> {r.digest}")
    lines.append(f"  platforms: {', '.join(r.platforms)}")
    lines += [f"  {img}:{t}" for img in r.images for t in r.tags]
    if r.retries:
        lines.append(f"  {r.retries} registry request(s) retried after transient failures")
    if r.signed:
        lines.append("  signed (cosign, recursive, by digest)")
    lines += [f"  child restored from its keepalive anchor: {d}" for d in r.restored]
    lines += [f"  keepalive tag deleted: {d}" for d in r.keepalive_deleted]
    lines += [f"  warning: keepalive tag not deleted: {p}" for p in r.keepalive_problems]
    return "\n".join(lines)
