"""BuildKit's progress stream decoded: ``docker buildx build --progress=rawjson`` prints BuildKit's
solve status (vertices, their logs, warnings) as JSON objects; :class:`SolveStatusReader` turns it into
the builder seam's events (:class:`BuildEvent`: a step running, done, cached or failed, its log lines,
notes, warnings) and step records (:class:`StepRecord`), and on failure the failing step's last lines.
"""
from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..output.escape import inert

STEP_LOG_LINES = 20  # lines of the failing step shown on failure


STDERR_LINES = 8  # and its last stderr lines, when they are not among those (the streams interleave)


MAX_PENDING_TEXT = 8 << 20  # a rawjson object larger than this is not one: treat the text as plain output


@dataclass(frozen=True)
class BuildEvent:
    """Progress: ``kind`` is ``running``, ``done``, ``cached``, ``failed``, ``log``, ``note`` or ``warning``."""

    kind: str
    step: str = ""
    text: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class StepRecord:
    name: str
    cached: bool
    seconds: float
    error: str = ""


EventSink = Callable[[BuildEvent], None]


def _ts(text: object) -> float | None:
    """RFC 3339 with nanoseconds -> epoch seconds."""
    if not isinstance(text, str) or not text:
        return None
    t = text.rstrip("Z")
    if "." in t:
        head, frac = t.split(".", 1)
        t = f"{head}.{frac[:6]}"
    try:
        return datetime.fromisoformat(t + "+00:00").timestamp()
    except ValueError:
        return None


@dataclass
class _Vertex:
    name: str
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str = ""
    announced: bool = False
    finished: bool = False
    log: deque[str] = field(default_factory=lambda: deque(maxlen=STEP_LOG_LINES))
    errlog: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_LINES))  # stream 2 only
    partial: dict[int, str] = field(default_factory=dict)  # per stream: stdout and stderr arrive interleaved


def _shown(name: str) -> bool:
    return bool(name) and not name.startswith("[internal]")


class SolveStatusReader:
    """Decodes the stream of JSON objects ``--progress=rawjson`` writes to stderr, one after the other.

    Calls ``on_event`` for steps starting, finishing (cached or not, with their duration) and
    failing, and for each log line of a step; keeps the last lines of every step for the failure
    message. Text that is not JSON (buildx's closing ``ERROR: ...`` lines) is kept as ``trailer``.
    """

    def __init__(self, on_event: EventSink) -> None:
        self.on_event = on_event
        self.vertexes: dict[str, _Vertex] = {}
        self.trailer: deque[str] = deque(maxlen=STEP_LOG_LINES)
        self._text = ""
        self._decoder = json.JSONDecoder()

    def feed(self, text: str) -> None:
        self._text += text
        while True:
            t = self._text.lstrip()
            if not t:
                self._text = ""
                return
            if t[0] == "{":
                try:
                    obj, end = self._decoder.raw_decode(t)
                except json.JSONDecodeError:
                    if len(t) <= MAX_PENDING_TEXT:
                        self._text = t
                        return  # an object still arriving
                    obj, end = None, len(t.split("\n", 1)[0]) + 1
                    self.trailer.append(t[:end].rstrip()[:500])
                if isinstance(obj, dict):
                    self._status(obj)
                self._text = t[end:]
                continue
            line, nl, rest = t.partition("\n")
            if not nl:
                self._text = t
                return
            self.trailer.append(line.rstrip()[:500])
            self._text = rest

    def close(self) -> None:
        if self._text.strip():
            self.trailer.extend(ln[:500] for ln in self._text.strip().splitlines()[-STEP_LOG_LINES:])
        self._text = ""
        for v in self.vertexes.values():
            for stream, rest in sorted(v.partial.items()):
                if rest:
                    self._line(v, rest, stream)
            v.partial.clear()

    def _status(self, obj: dict[str, Any]) -> None:
        for raw in obj.get("vertexes") or []:
            if isinstance(raw, dict):
                self._vertex(raw)
        for raw in obj.get("logs") or []:
            if isinstance(raw, dict):
                v = self.vertexes.get(str(raw.get("vertex", "")))
                if v is None:
                    continue
                try:
                    data = base64.b64decode(str(raw.get("data", "")), validate=False).decode("utf-8", "replace")
                except ValueError:
                    continue
                stream = 2 if raw.get("stream") == 2 else 1
                *lines, v.partial[stream] = (v.partial.get(stream, "") + data).split("\n")
                for ln in lines:
                    self._line(v, ln.rstrip("\r"), stream)
        for raw in obj.get("warnings") or []:
            if isinstance(raw, dict):
                try:
                    msg = base64.b64decode(str(raw.get("short", ""))).decode("utf-8", "replace")
                except ValueError:
                    msg = ""
                if msg:
                    self.on_event(BuildEvent("warning", text=msg.strip()))

    def _line(self, v: _Vertex, text: str, stream: int = 1) -> None:
        v.log.append(text)
        if stream == 2:
            v.errlog.append(text)
        self.on_event(BuildEvent("log", step=v.name, text=text))

    def _vertex(self, raw: dict[str, object]) -> None:
        digest = str(raw.get("digest", ""))
        v = self.vertexes.setdefault(digest, _Vertex(name=str(raw.get("name", ""))))
        v.name = str(raw.get("name", "") or v.name)
        v.cached = v.cached or bool(raw.get("cached"))
        started, completed = _ts(raw.get("started")), _ts(raw.get("completed"))
        v.started = started if started is not None else v.started
        v.completed = completed if completed is not None else v.completed
        if raw.get("error"):
            v.error = str(raw["error"])
        if v.started is not None and not v.announced and v.completed is None and not v.cached:
            v.announced = True
            if _shown(v.name):
                self.on_event(BuildEvent("running", step=v.name))
        if (v.completed is not None or v.cached) and not v.finished:
            v.finished = True
            for stream, rest in sorted(v.partial.items()):  # a last line without its newline is complete now
                if rest:
                    self._line(v, rest.rstrip("\r"), stream)
            v.partial.clear()
            seconds = max(0.0, (v.completed or 0.0) - (v.started or v.completed or 0.0))
            if v.error and v.name.startswith("importing cache"):
                self.on_event(BuildEvent("note", step=v.name, text=f"no registry cache to import ({v.error}); "
                                                                    "building without it"))
            elif v.error:
                self.on_event(BuildEvent("failed", step=v.name, text=v.error, seconds=seconds))
            elif _shown(v.name):
                self.on_event(BuildEvent("cached" if v.cached else "done", step=v.name, seconds=seconds))

    def steps(self) -> tuple[StepRecord, ...]:
        return tuple(StepRecord(v.name, v.cached, max(0.0, (v.completed or 0.0) - (v.started or v.completed or 0.0)),
                                v.error) for v in self.vertexes.values() if v.finished and _shown(v.name))

    def failure(self) -> str:
        """What failed: the failing step, its error and its last log lines; else buildx's own error lines.
        Every line :func:`ci.output.escape.inert` (the message reaches CI logs as it is)."""
        return "\n".join(inert(line) for line in self._failure().split("\n"))

    def _failure(self) -> str:
        errors_of = [v for v in self.vertexes.values() if v.error and not v.name.startswith("importing cache")]
        failed = [v for v in errors_of if _shown(v.name)] or errors_of
        errors = [ln for ln in self.trailer if ln.startswith("ERROR")]
        if failed:
            v = failed[-1]
            out = f"step {v.name} failed: {v.error}"
            if v.log:
                out += f"\n--- last {len(v.log)} lines of that step ---\n" + "\n".join(v.log)
            shown = set(v.log)
            missed = [ln for ln in v.errlog if ln not in shown]
            if missed:
                out += f"\n--- its last {len(missed)} lines on stderr ---\n" + "\n".join(missed)
            return out
        text = "\n".join(errors or self.trailer) or "docker buildx build failed without saying why"
        unfinished = [v for v in self.vertexes.values() if v.started is not None and not v.finished and _shown(v.name)]
        if unfinished:
            v = unfinished[-1]
            text += f"\nwhile step {v.name} was running"
            if v.log:
                text += f"; its last {len(v.log)} lines:\n" + "\n".join(v.log)
        return text

    def cache_export_failed(self) -> str:
        """The error of a failed cache export (``ignore-error=true`` keeps the build green)."""
        for v in self.vertexes.values():
            if v.error and v.name.startswith("exporting cache"):
                return f"{v.name}: {v.error}"
        return ""


def _hint(text: str) -> str:
    """Advice for failures whose cause is known."""
    low = text.lower()
    if any(s in low for s in ("error reading from server", "unavailable:", "cannot connect to the docker daemon",
                              "connection reset by peer", "broken pipe")):
        return ("\nLost the connection to the Docker engine (DOCKER_HOST): is dockerd still running? restart it and "
                "retry the build")
    if "exec format error" in low:
        return ("\nA RUN step ran for another architecture without emulation: run the leg on a native runner, "
                "or register QEMU in binfmt_misc (apt-get install qemu-user-static, see .ci/run)")
    if "network bridge not found" in low:
        return "\nThe engine has no bridge network: build with the host network (this tool does when it sees none)"
    if "401 unauthorized" in low or "authorization failed" in low or "pull access denied" in low or "403 forbidden" in low:
        return ("\nThe registry refused the credentials for a base image or the cache: BuildKit logs in with the "
                "Docker config of this process (docker login HOST, or DOCKER_CONFIG)")
    if "failed to resolve source metadata" in low or ("not found" in low and "manifest" in low):
        return ("\nA base image could not be resolved: check its name, that the engine can reach its registry, and the "
                "credentials in the Docker config (docker login)")
    return ""
