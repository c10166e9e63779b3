"""GitHub Actions environment adapter: event, run id, step outputs and job summaries.

Functions take ``env`` as a mapping; only the wrappers pass ``os.environ``.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from ci.errors import OperationError, UserError

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


def in_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def _append(path: str, text: str, what: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise OperationError(f"writing {what} to {path}: {exc.strerror or exc}") from None


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
    """Append Markdown to ``$GITHUB_STEP_SUMMARY`` when set; True when written."""
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    _append(target, markdown if markdown.endswith("\n") else markdown + "\n", "job summary")
    return True


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"
