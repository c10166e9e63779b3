"""localai_ci.output.progress: the build log -- in GitHub Actions every step's output in a group, a failing step's
whole output everywhere, and no line of build output ever executed as a workflow command (the log read as the
runner reads it: tests/support/actions_runner.py)."""
from __future__ import annotations

import io

from localai_ci.docker.buildprogress import BuildEvent, SolveStatusReader
from localai_ci.output.escape import terminal_text
from tests.support.actions_runner import HOSTILE, runner_commands
from localai_ci.output.progress import Progress


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
    for line in HOSTILE:  # each line of the step's output appears, shown as terminal_text shows it (a second
        # guard inside the raw block: a leading '::' as '\u003a:', control characters escaped)
        assert terminal_text(line) in lines
    assert all(f"cc1: line {i}" in lines for i in range(1, 301))  # the failing step's whole output, not a tail
    assert terminal_text("::error::the real cause, as a command") in lines


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
