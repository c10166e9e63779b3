"""GitHub Actions environment adapter: event, run id, step outputs and job summaries.

Functions take ``env`` as a mapping; only the wrappers pass ``os.environ``.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import OperationError, UserError
from ..git.repo import checkout_ref
from ..matrix.tags import TagSource
from ..redaction import redact

EVENTS_THAT_PUBLISH = ("push", "workflow_dispatch", "schedule", "release", "merge_group")
PR_EVENTS = ("pull_request", "pull_request_target")
KNOWN_EVENTS = EVENTS_THAT_PUBLISH + PR_EVENTS


@dataclass(frozen=True)
class Event:
    name: str
    ref: str = ""  # refs/heads/main, refs/tags/v1.2.3, refs/pull/12/merge
    sha: str = ""
    run_id: str = ""
    pr_number: str = ""

    @property
    def publishes(self) -> bool:
        return self.name not in PR_EVENTS


def resolve_event(flag: str | None, env: Mapping[str, str]) -> Event:
    """The event from ``--event`` or ``GITHUB_EVENT_NAME`` (default ``push`` for local runs)."""
    name = flag or env.get("GITHUB_EVENT_NAME") or "push"
    if name not in KNOWN_EVENTS:
        raise UserError(f"unknown event {name!r}; use one of: {', '.join(KNOWN_EVENTS)}")
    ref = env.get("GITHUB_REF", "")
    pr = ""
    if ref.startswith("refs/pull/"):
        pr = ref.split("/")[2]
        if not pr.isdigit():
            raise UserError(f"GITHUB_REF {ref!r}: the pull request number {pr!r} is not a number; "
                            "expected refs/pull/<number>/merge")
    return Event(name=name, ref=ref, sha=env.get("GITHUB_SHA", ""), run_id=env.get("GITHUB_RUN_ID", ""),
                 pr_number=pr)


def tag_source(env: Mapping[str, str], *, event: str | None = None, ref: str | None = None, sha: str | None = None,
               root: str | Path = ".", local_ref: str = "") -> tuple[TagSource, str]:
    """What a run's tags are computed from, and a note when it is not what CI would pass: ``--event``/
    ``--ref``/``--sha``, else ``GITHUB_EVENT_NAME``/``GITHUB_REF``/``GITHUB_SHA``, else the checkout's
    branch and HEAD (as CI would see this checkout), else ``local_ref`` (a directory that is no git
    checkout). One resolution for ``nox -s merge`` and ``invoke pipeline``."""
    ev = resolve_event(event, env)
    r = ref if ref is not None else ev.ref
    s = sha if sha is not None else ev.sha
    note = ""
    if not r and not s:
        r, s = checkout_ref(root)
        if r or s:
            note = (f"no GITHUB_REF/GITHUB_SHA or --ref/--sha: tags from this checkout "
                    f"(ref {r or '(detached)'}, sha {s[:7] or '(none)'})")
        elif local_ref:
            r = local_ref
            note = f"no GITHUB_REF/GITHUB_SHA and {root} is not a git checkout: tags from ref {local_ref}"
    return TagSource(ev.name, r, s), note


def in_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def _append(path: str, text: str, what: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise OperationError(f"writing {what} to {path}: {exc.strerror or exc}") from exc


def format_outputs(outputs: Mapping[str, object]) -> str:
    """``name=value`` lines; non-string values as compact JSON; multi-line values as heredocs."""
    lines: list[str] = []
    for name, value in outputs.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if "\n" in text:
            delim = f"ghadelim_{uuid.uuid4().hex}"
            lines.append(f"{name}<<{delim}\n{text}\n{delim}")
        else:
            lines.append(f"{name}={text}")
    return "\n".join(lines) + ("\n" if lines else "")


def write_outputs(outputs: Mapping[str, object], env: Mapping[str, str], path: str | None = None) -> str | None:
    """Append outputs to ``path`` or ``$GITHUB_OUTPUT``; return the text when there is nowhere to write."""
    target = path or env.get("GITHUB_OUTPUT")
    text = format_outputs(outputs)
    if not target:
        return text
    _append(target, text, "step outputs")
    return None


def write_summary(markdown: str, env: Mapping[str, str]) -> bool:
    """Append Markdown to ``$GITHUB_STEP_SUMMARY`` when set, redacted; True when written."""
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    markdown = redact(markdown)
    _append(target, markdown if markdown.endswith("\n") else markdown + "\n", "job summary")
    return True
