"""What caller workflows hand the reusable build workflow: build inputs outside the repository's files (pure).

LocalAI's ``backend.yml`` calls ``backend_build.yml`` once per matrix leg and passes, next to
the leg's own fields, defaults of its own: ``amdgpu-targets: ${{ matrix.amdgpu-targets ||
'gfx908,...' }}`` is the GPU target list every ROCm leg without its own value builds with.
Editing that default changes those images although no file they copy changed, and it is
the only part of the caller that does: the trigger, concurrency or the matrix job do not.

:func:`build_calls` reads, from a workflow's text, the jobs that ``uses:`` the build
workflow and their ``with:`` values; a value of the form ``${{ matrix.KEY || 'DEFAULT' }}``
(or ``fromJSON(...)['KEY'] || 'DEFAULT'``) is a *default* for the matrix field ``KEY``.
:func:`compare_calls` says what changed between two revisions: which defaults (the legs
whose entry leaves that field empty get the new value), and whether anything else passed to
the build changed (then every leg may build differently). The YAML is composed with the
matrix loader's safe composer (no aliases, bounded depth); unreadable text is "changed".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import MatrixError
from ..matrix.model import compose_yaml
from ..matrix.workflownames import yaml_plain

MAX_WORKFLOW_BYTES = 1024 * 1024
_DEFAULT = re.compile(
    r"""^\$\{\{\s*(?:matrix\.([A-Za-z0-9_-]+)|matrix\[['"]([A-Za-z0-9_-]+)['"]\]|"""
    r"""fromJSON\([^)]*\)\[['"]([A-Za-z0-9_-]+)['"]\])\s*\|\|\s*(?:'([^']*)'|"([^"]*)")\s*\}\}$""")


@dataclass(frozen=True)
class BuildCall:
    job: str
    inputs: tuple[tuple[str, str], ...]  # with: key -> value as written (not defaults)
    defaults: tuple[tuple[str, str], ...]  # matrix field -> default value


def build_calls(text: str | None, build_workflow: str) -> tuple[BuildCall, ...] | None:
    """The jobs of a workflow that call ``build_workflow`` (``.github/workflows/backend_build.yml``);
    None when the text is missing or not a readable workflow."""
    if text is None or len(text) > MAX_WORKFLOW_BYTES:
        return None
    try:
        doc = yaml_plain(compose_yaml(text, "workflow"))
    except MatrixError:
        return None
    if not isinstance(doc, dict):
        return None
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict):
        return ()
    target = build_workflow.removeprefix("./")
    out: list[BuildCall] = []
    for name, job in jobs.items():
        if not isinstance(job, dict) or str(job.get("uses", "")).removeprefix("./") != target:
            continue
        with_ = job.get("with") if isinstance(job.get("with"), dict) else {}
        inputs: list[tuple[str, str]] = []
        defaults: list[tuple[str, str]] = []
        for key, value in sorted((with_ or {}).items()):  # type: ignore[union-attr]
            text_value = " ".join(str(value).split())
            m = _DEFAULT.match(text_value)
            if m:
                field = m.group(1) or m.group(2) or m.group(3)
                defaults.append((field, m.group(4) if m.group(4) is not None else m.group(5)))
            else:
                inputs.append((key, text_value))
        out.append(BuildCall(str(name), tuple(inputs), tuple(defaults)))
    return tuple(out)


@dataclass(frozen=True)
class CallChange:
    defaults: tuple[tuple[str, str | None, str | None], ...] = ()  # (field, before, after)
    other: tuple[str, ...] = ()  # descriptions of other changes passed to the build
    unreadable: str = ""  # a revision could not be read: treat as changing everything

    @property
    def changed(self) -> bool:
        return bool(self.defaults or self.other or self.unreadable)


def head_defaults(calls: tuple[BuildCall, ...] | None) -> dict[str, str]:
    """field -> default over every call (the first call that sets one wins)."""
    out: dict[str, str] = {}
    for call in calls or ():
        for field, value in call.defaults:
            out.setdefault(field, value)
    return out


def compare_calls(before: tuple[BuildCall, ...] | None, after: tuple[BuildCall, ...] | None) -> CallChange:
    if before is None or after is None:
        return CallChange(unreadable="the workflow cannot be read at " + ("the base" if before is None else "HEAD"))
    old = {c.job: c for c in before}
    new = {c.job: c for c in after}
    other: list[str] = []
    for job in sorted(old.keys() | new.keys()):
        if job not in old:
            other.append(f"job {job} now calls the build")
        elif job not in new:
            continue  # a caller that no longer builds changes no image
        elif old[job].inputs != new[job].inputs:
            keys = sorted({k for k, _ in old[job].inputs} ^ {k for k, _ in new[job].inputs}
                          | {k for (k, v) in new[job].inputs if (k, v) not in old[job].inputs})
            other.append(f"job {job} passes different {', '.join(keys)}")
    d_old, d_new = head_defaults(before), head_defaults(after)
    defaults = tuple((f, d_old.get(f), d_new.get(f)) for f in sorted(d_old.keys() | d_new.keys())
                     if d_old.get(f) != d_new.get(f))
    return CallChange(defaults=defaults, other=tuple(other))
