"""localai_ci.output.actions_log and the build log in GitHub Actions: every step's output in a group, a
failing step's whole output, and no line of build output ever executed as a workflow command.

``runner_commands`` reads a log the way the Actions runner does (actions/runner,
``ActionCommandManager`` and ``ActionCommand.TryParseV2``/``TryParse``): a line ends at ``\\r``,
``\\n`` or ``\\r\\n``; ``::cmd props::data`` is a command when the line starts with ``::`` after
its leading whitespace is trimmed; ``##[cmd props]data`` is one anywhere in a line;
``::stop-commands::TOKEN`` stops all of it until a line ``::TOKEN::``.
"""
from __future__ import annotations

import io
import re

import pytest

from localai_ci.docker.builder import BuildEvent, SolveStatusReader
from localai_ci.output.actions_log import ZWSP, escape_data, group_block, inert, raw_block
from localai_ci.output.progress import Progress

REGISTERED = {"add-mask", "add-matcher", "remove-matcher", "debug", "notice", "warning", "error", "group",
              "endgroup", "echo", "stop-commands", "save-state", "set-output", "set-env", "add-path"}


def runner_commands(log: str) -> list[tuple[str, str]]:
    """The workflow commands the runner would execute in ``log``: ``(command, data)`` in order."""
    done: list[tuple[str, str]] = []
    stopped = ""
    for line in re.split(r"\r\n|\r|\n", log):
        if stopped:
            if line == f"::{stopped}::":
                stopped = ""
                done.append(("resume", stopped))
            continue
        found = _v2(line) or _v1(line)
        if found is None:
            continue
        done.append(found)
        if found[0] == "stop-commands":
            stopped = found[1]
    return done


def _v2(line: str) -> tuple[str, str] | None:
    text = line.lstrip()
    if not text.startswith("::"):
        return None
    end = text.find("::", 2)
    if end < 0:
        return None
    name = text[2:end].split(" ", 1)[0]
    return (name, text[end + 2:]) if name in REGISTERED else None


def _v1(line: str) -> tuple[str, str] | None:
    start = line.find("##[")
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    name = line[start + 3:end].split(" ", 1)[0]
    return (name, line[end + 1:]) if name in REGISTERED else None


HOSTILE = ["::error::pwned", "   ::add-mask::hide-everything", "text ##[set-output name=x;]y", "99%\r::warning::bar",
           "::stop-commands::guessed-token", "::endgroup::", "##[group]fake", "plain line 100% done"]


def test_the_runner_emulation_sees_commands() -> None:
    """The emulation itself: each hostile line but the last is a command when printed as it is (and the
    guessed stop-commands would hide every line after it)."""
    assert [len(runner_commands(line)) for line in HOSTILE] == [1] * (len(HOSTILE) - 1) + [0]
    assert runner_commands("\n".join(HOSTILE))[-1] == ("stop-commands", "guessed-token")


@pytest.mark.parametrize("line", HOSTILE)
def test_inert_lines_are_no_commands_and_stay_readable(line: str) -> None:
    out = inert(line)
    assert runner_commands(out) == []
    assert out.replace(ZWSP, "") == line.split("\r")[-1]  # what a terminal shows, nothing else changed


def test_raw_block_keeps_lines_as_they_are_and_executes_none() -> None:
    block = raw_block(HOSTILE, "t0k3n")
    assert block[1:-1] == HOSTILE
    assert runner_commands("\n".join(block)) == [("stop-commands", "t0k3n"), ("resume", "")]
    name = "RUN echo ::error::x ##[error]y\n100%"
    title = group_block(name, ["a"], "t0k3n")[0]
    assert title == "::group::" + escape_data(inert(name)) and runner_commands(title)[0][0] == "group"
    assert "\n" not in title and "%0A" not in title and "100%25" in title  # one line, inert, then escaped


def _hostile_build(sink) -> None:  # type: ignore[no-untyped-def]
    step = "[builder 2/3] RUN echo ::error::from-the-name ##[error]x"
    sink(BuildEvent("running", step))
    for line in HOSTILE:
        sink(BuildEvent("log", step, line))
    sink(BuildEvent("done", step, seconds=1.5))
    sink(BuildEvent("warning", text="::error::a warning BuildKit quotes from the Dockerfile"))
    failing = "[builder 3/3] RUN make"
    sink(BuildEvent("running", failing))
    for i in range(1, 301):
        sink(BuildEvent("log", failing, f"cc1: line {i}"))
    sink(BuildEvent("log", failing, "::error::the real cause, as a command"))
    sink(BuildEvent("failed", failing, text="exit code: 2", seconds=3.0))


def test_in_actions_every_step_is_a_group_and_no_build_line_is_a_command() -> None:
    out = io.StringIO()
    with Progress(1, out, actions=True) as progress:
        _hostile_build(progress.build_event("-cpu-x [amd64]"))
    log = out.getvalue()
    cmds = runner_commands(log)
    names = [c for c, _ in cmds]
    assert set(names) == {"group", "endgroup", "stop-commands", "resume"}, cmds  # only ours
    assert names.count("group") == 1 and names.count("stop-commands") == 2 and names.count("resume") == 2
    lines = log.splitlines()
    for line in HOSTILE:  # each line of the step's output appears as it was written
        assert line in lines or line.split("\r")[-1] in log
    assert all(f"cc1: line {i}" in lines for i in range(1, 301))  # the failing step's whole output, not a tail
    assert "::error::the real cause, as a command" in lines


def test_locally_the_failing_steps_whole_output_is_printed() -> None:
    out = io.StringIO()
    with Progress(1, out, tty=False) as progress:
        _hostile_build(progress.build_event("-cpu-x [amd64]"))
    log = out.getvalue()
    assert "::group::" not in log and "stop-commands" not in log.replace("::stop-commands::guessed", "")
    assert "the whole output of [builder 3/3] RUN make (301 lines):" in log
    assert all(f"  | cc1: line {i}" in log.splitlines() for i in range(1, 301))
    assert "  | ::error::pwned" not in log  # a step that succeeded keeps its output to itself locally


def test_the_error_message_tail_is_inert() -> None:
    """The message the wrappers print (the failing step's last lines) reaches the log as it is."""
    import base64
    import json

    reader = SolveStatusReader(lambda e: None)
    data = base64.b64encode("".join(f"{line}\n" for line in HOSTILE).encode()).decode()
    t = "2026-12-07T10:00:00.000000000Z"
    reader.feed(json.dumps({"vertexes": [{"digest": "sha256:a", "name": "[b 1/1] RUN x\n::error::in-the-name",
                                          "started": t}]}))
    reader.feed(json.dumps({"logs": [{"vertex": "sha256:a", "stream": 1, "data": data}]}))
    reader.feed(json.dumps({"vertexes": [{"digest": "sha256:a", "name": "[b 1/1] RUN x\n::error::in-the-name",
                                          "started": t, "completed": t, "error": "exit code: 1\n::error::e"}]}))
    reader.close()
    text = reader.failure()
    assert runner_commands("error: " + text) == []
    assert "the real" not in text and "plain line 100% done" in text
