"""Text from outside made safe for the terminal, a job summary and a workflow command (ci/output/escape.py)."""
from __future__ import annotations

import pytest

from localai_ci.output.escape import markdown_text, terminal_text, workflow_command
from localai_ci.output.escape import ZWSP, group_block, inert, raw_block
from tests.support.actions_runner import HOSTILE, runner_commands


def test_workflow_command_escapes_as_github_documents() -> None:
    assert workflow_command("warning", "50% done\r\nnext", file="a,b:c.yml", line=3, title=None) == \
        "::warning file=a%2Cb%3Ac.yml,line=3::50%25 done%0D%0Anext"
    assert workflow_command("notice", "plain") == "::notice::plain"
    # a value that looks like another command stays data
    assert workflow_command("error", "x\n::set-output name=a::b") == "::error::x%0A::set-output name=a::b"


def test_workflow_command_refuses_what_it_does_not_write() -> None:
    with pytest.raises(ValueError):
        workflow_command("set-output", "x")
    with pytest.raises(ValueError):
        workflow_command("warning", "x", **{"bad key": 1})


def test_terminal_text_shows_control_characters() -> None:
    assert terminal_text("pkg/\x1b[31mred\x1b[0m\rover\tok\nnext") == "pkg/\\x1b[31mred\\x1b[0m\\rover\tok\nnext"
    assert terminal_text("a\nb", newlines=False) == "a b"


def test_markdown_text_is_one_literal_line() -> None:
    assert markdown_text("a|b <script> `x` [l](u) *b*\nc") == "a\\|b \\<script\\> \\`x\\` \\[l\\](u) \\*b\\* c"


# ---- text from outside in an Actions log: raw blocks and inert lines (tests/support/actions_runner.py reads them) ----
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
    assert title == "::group::" + inert(name).replace("%", "%25") and runner_commands(title)[0][0] == "group"
    assert "\n" not in title and "%0A" not in title and "100%25" in title  # one line, inert, then escaped
