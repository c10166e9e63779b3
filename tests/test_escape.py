"""Text from outside made safe for the terminal, a job summary and a workflow command (ci/output/escape.py)."""
from __future__ import annotations

import pytest

from localai_ci.output.escape import markdown_text, terminal_text, workflow_command


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
