"""Text from outside made inert for every sink (ci/output/escape.py, ci/output/console.py).

Pure tests of each sink function, a static check that nothing under ``ci/`` prints but through the
console sink, and end-to-end runs of the commands users run against a registry front that answers
with hostile error texts and reason phrases (``hostile.HostileServer`` in front of a real
``docker-registry``), a passing publish whose ``retry:`` notes carry them, and change detection over
a committed file whose name holds a newline and a workflow command.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localai_ci.errors import OperationError, failure
from localai_ci.output.escape import (WorkflowCommand, markdown_code, markdown_text, terminal_text,
                                      workflow_command)
from localai_ci.output.escape import ZWSP, group_block, inert, raw_block
from localai_ci.output.markdown import code, md_table
from localai_ci.redaction import register_secret
from tests.support.actions_runner import HOSTILE as RUNNER_HOSTILE
from tests.support.actions_runner import runner_commands
from tests.support.paths import REPO

ROOT = REPO
SHA = "89abcdef0123456789abcdef0123456789abcdef"

# what a hostile registry (or a committed file name, a BuildKit log line) may say
HOSTILE = ("denied\n::error title=pwned::owned by the registry\n  ::add-mask::sha256\n::stop-commands::tok\n"
           "::set-output name=digest::evil\n\x1b]0;window title\x07\x1b[2J\x1b]8;;https://evil.example\x07link"
           "\x1b]8;;\x07 <img src=x onerror=alert(1)> <a href=https://evil.example>x</a>\r| injected | row |\n"
           "\u3000::warning::wide space ##[error]legacy ##[add-mask]x \u2028::notice::ls\x85::debug::nel")
REASON = "Denied \x1b[31m ##[error]reason <img src=r> ::error::r"
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def assert_inert(text: str) -> None:
    """No control character (tabs and newlines aside) and no line the Actions runner would execute:
    ``::`` after leading whitespace (its TrimStart), or ``##[`` anywhere (its legacy syntax)."""
    bad = _UNSAFE.search(text)
    assert bad is None, f"control character {bad.group(0)!r} in:\n{text[-3000:]}"
    for line in text.split("\n"):
        assert not line.lstrip().startswith("::"), f"a workflow command: {line!r}"
        assert "##[" not in line, f"a legacy workflow command: {line!r}"


def assert_markdown_inert(md: str) -> None:
    """No raw HTML, no carriage return, and every table row has exactly its header's cells."""
    assert "\r" not in md and not _UNSAFE.search(md), md
    outside_code = re.sub(r"(`+)(.+?)(?<!`)\1(?!`)", "", md)  # a code span shows '<' literally
    assert not re.search(r"(?<!\\)<", outside_code), f"raw HTML in the summary:\n{md}"
    width = None
    for line in md.split("\n"):
        if line.startswith("|"):
            cells = len(re.findall(r"(?<!\\)\|", line))
            width = width or cells
            assert cells == width, f"a row with another shape: {line!r}"
        elif width is not None and line.strip():
            width = None  # the table ended


# ---- the sink functions (pure) ---------------------------------------------------------------------
def test_workflow_command_escapes_as_github_documents() -> None:
    assert workflow_command("warning", "50% done\r\nnext", file="a,b:c.yml", line=3, title=None) == \
        "::warning file=a%2Cb%3Ac.yml,line=3::50%25 done%0D%0Anext"
    assert workflow_command("notice", "plain") == "::notice::plain"
    # a value that looks like another command stays data
    assert workflow_command("error", "x\n::set-output name=a::b") == "::error::x%0A::set-output name=a::b"
    assert isinstance(workflow_command("warning", "x"), WorkflowCommand)


def test_workflow_command_refuses_what_it_does_not_write() -> None:
    with pytest.raises(ValueError):
        workflow_command("set-output", "x")
    with pytest.raises(ValueError):
        workflow_command("add-mask", "x")
    with pytest.raises(ValueError):
        workflow_command("warning", "x", **{"bad key": 1})


def test_terminal_text_shows_control_characters() -> None:
    assert terminal_text("pkg/\x1b[31mred\x1b[0m\rover\tok\nnext") == "pkg/\\x1b[31mred\\x1b[0m\\rover\tok\nnext"
    assert terminal_text("a\nb", newlines=False) == "a b"
    assert terminal_text("title\x1b]0;x\x07 nel\x85 ls\u2028") == "title\\x1b]0;x\\x07 nel\\u0085 ls\\u2028"


def test_terminal_text_makes_no_line_a_workflow_command() -> None:
    shown = terminal_text(HOSTILE)
    assert_inert(shown)
    assert "\\u003a:error title=pwned::owned by the registry" in shown  # shown, as data
    assert "  \\u003a:add-mask::sha256" in shown and "\\u0023#[error]legacy" in shown
    assert terminal_text("a ::error:: inside a line is no command") == "a ::error:: inside a line is no command"
    assert_inert(terminal_text(HOSTILE, newlines=False))


def test_json_through_the_terminal_sink_stays_json_with_the_same_values() -> None:
    doc = {"error": HOSTILE, "reason": REASON, "list": ["::error::x", "##[add-mask]y", "\\##[z"]}
    for text in (json.dumps(doc, indent=2), json.dumps(doc), json.dumps(doc, indent=2, ensure_ascii=False)):
        shown = terminal_text(text)
        assert_inert(shown)
        assert json.loads(shown) == doc


def test_every_sink_redacts_first() -> None:
    register_secret("s3cr3t-escape-test")
    said = "token s3cr3t-escape-test\n::error::x"
    assert "s3cr3t" not in terminal_text(said) + markdown_text(said) + markdown_code(said)
    assert "s3cr3t" not in workflow_command("warning", said, title=said)
    message, _ = failure(OperationError(said))
    assert "s3cr3t" not in message and "***" in message


def test_markdown_text_is_one_literal_line() -> None:
    assert markdown_text("a|b <script> `x` [l](u) *b* &amp; ~s~\nc") == \
        "a\\|b \\<script\\> \\`x\\` \\[l\\](u) \\*b\\* \\&amp; \\~s\\~ c"


def test_markdown_code_is_one_code_span_whatever_it_holds() -> None:
    assert markdown_code("sha256:ab") == "`sha256:ab`"
    assert markdown_code("a`b") == "``a`b``"
    assert markdown_code("`x") == "`` `x ``"
    assert markdown_code("a|b\nc") == "`a\\|b c`"


def test_md_table_keeps_its_shape_and_shows_cells_literally() -> None:
    md = md_table(["suffix", "tags", "reason"], [[HOSTILE, code(HOSTILE, "`tag|x`"), REASON], ["-x", code("t"), "ok"]])
    assert_markdown_inert(md)
    assert len([line for line in md.split("\n") if line.startswith("|")]) == 4  # header, rule, two rows
    assert "\\<img src=x onerror=alert(1)\\>" in md


def test_failure_messages_are_inert() -> None:
    """invoke's error path (``run_verb`` -> ``failure`` -> ``Exit``) prints what failure() returns."""
    message, code_ = failure(OperationError(f"publishing x: HTTP 403 {REASON} (DENIED: {HOSTILE})"))
    assert code_ == 1
    assert_inert(message)
    assert "owned by the registry" in message


def _prints(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "print":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} print(...)")
        elif isinstance(f, ast.Attribute) and f.attr in ("write", "writelines", "print"):
            owner = ast.unparse(f.value)
            if owner in ("sys.stdout", "sys.stderr", "out", "err", "stdout", "stderr", "self.out", "stream") or \
                    owner.endswith("console") or "Console(" in owner:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner}.{f.attr}(...)")
    return found


def test_nothing_under_ci_prints_but_through_the_console_sink() -> None:
    """Every line to stdout/stderr goes through ci/output/console.py (say, say_command, say_rich) or,
    for the live bar, through terminal_text in ci/output/progress.py."""
    allowed = {"ci/output/console.py", "ci/oci/blobcache.py"}  # the blob cache's `out` is a file of blob bytes
    found = [p for path in sorted((ROOT / "ci").rglob("*.py")) if str(path.relative_to(ROOT)) not in allowed
             for p in _prints(path)]
    rich_bar = [p for p in found if p.startswith("ci/output/progress.py") and "self._rich.console.print" in p]
    assert [p for p in found if p not in rich_bar] == []
    text = (ROOT / "ci/output/progress.py").read_text()
    assert text.count("self._rich.console.print(") == text.count("self._rich.console.print(terminal_text(")
    assert _prints(ROOT / "ci/output/console.py")  # the check sees prints where they are


# ---- end to end: a hostile registry's texts --------------------------------------------------------
def _cli(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from localai_ci.cli import main

    code_ = main(argv, env=env)
    out, err = capsys.readouterr()
    return code_, out, err


@pytest.mark.registry
def test_a_hostile_registrys_texts_are_inert_in_every_output(registries: Any, unique: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A registry answering every manifest request with an error whose message and reason phrase hold
    workflow commands, terminal escapes, HTML and a table-row break: inspect (text and --format json),
    merge of one suffix (the error path) and merge --all (per-suffix reasons), with their job summaries."""
    from tests.support.hostile import HostileServer, Reply, Request
    from localai_ci.github.artifacts import write_digest_file
    from localai_ci.matrix.naming import Family, LegKey
    from tests.support.oci_images import push_image, write_matrix

    honest = registries[0].host
    body = json.dumps({"errors": [{"code": "DENIED", "message": HOSTILE}]}).encode()

    def rule(req: Request) -> Reply | None:
        if "/manifests/" in req.path:
            return Reply(403, [("Content-Type", "application/json")], body, reason=REASON)
        return None

    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    with HostileServer("127.0.0.2", rule, upstream=honest) as front:
        image = f"{front.host}/{unique}/backends"
        outs: list[str] = []
        for fmt in ("text", "json"):
            code_, out, err = _cli(["inspect", f"{image}:master-cpu-h", "--format", fmt], env, capsys)
            assert code_ == 1, out + err
            outs += [out, err]
            if fmt == "json":
                said = json.loads(out)["lists"][0]["error"]  # still JSON, the values as the registry sent them
                assert "owned by the registry" in said
        d = push_image([f"{honest}/{unique}/backends"], "linux/amd64", unique)
        write_digest_file(tmp_path / "digests", LegKey(Family.BACKENDS, "-cpu-h", "amd64"), d.digest)
        write_matrix(tmp_path / "matrix.yml", [("-cpu-h", "amd64")])
        merge = ["merge", "--digests-dir", str(tmp_path / "digests"), "--matrix", str(tmp_path / "matrix.yml"),
                 "--images", f"{honest}/{unique}/backends,{image}", "--ref", "refs/heads/master", "--sha", SHA,
                 "--event", "push"]
        for what in ("--tag-suffix=-cpu-h", "--all"):
            code_, out, err = _cli([*merge, what], env, capsys)
            assert code_ == 1, out + err
            outs += [out, err]
    shown = "\n".join(outs)
    assert_inert(shown)
    assert "owned by the registry" in shown and "\\x1b]0;window title" in shown, shown[-3000:]
    assert "Denied \\x1b[31m \\u0023#[error]reason" in shown, shown[-3000:]  # the reason phrase too
    md = summary.read_text()
    assert_markdown_inert(md)
    assert "owned by the registry" in md and "\\<img src=x" in md, md


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.slow
@pytest.mark.usefixtures("busybox")
def test_retry_notes_of_a_passing_publish_are_inert(engine: Any, registries: Any, unique: str,
                                                    tmp_path: Path) -> None:
    """A registry that fails its first manifest and blob checks with a 503 whose texts are hostile, then
    behaves: build-backend --push passes (exit 0) and its ``retry:`` notes show the texts as data."""
    from tests.support.hostile import HostileServer, Reply, Request
    from tests.support.oci_images import matrix_text

    body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": HOSTILE}]}).encode()
    failed: set[str] = set()

    def rule(req: Request) -> Reply | None:
        kind = "manifest" if "/manifests/" in req.path else "blob" if "/blobs/" in req.path else ""
        if kind and kind not in failed:
            failed.add(kind)
            return Reply(503, [("Content-Type", "application/json")], body, reason=REASON)
        return None

    matrix = tmp_path / "matrix.yml"
    matrix.write_text(matrix_text([("-cpu-esc", "amd64")]).replace("ci-offline/ubuntu:24.04", f"ci-offline/{unique}:24.04"))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_DEBUG"))}
    env.update({"HOME": str(home), "DOCKER_CONFIG": str(tmp_path / "empty-config"), "GITHUB_ACTIONS": "true",
                "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/master", "GITHUB_SHA": SHA,
                "CI_BLOB_CACHE": str(tmp_path / "cache"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    with HostileServer("127.0.0.2", rule, upstream=registries[0].host) as front:
        image = f"{front.host}/{unique}/backends"
        env["CI_CACHE_IMAGE"] = f"{front.host}/{unique}/cache"
        done = subprocess.run([sys.executable, "-m", "localai_ci", "build-backend", "--tag-suffix=-cpu-esc",
                               "--platform-tag", "amd64", "--matrix", str(matrix), "--root", str(ROOT), "--images", image,
                               "--digests-dir", str(tmp_path / "digests"), "--push"],
                              capture_output=True, text=True, env=env, timeout=600, cwd=home, stdin=subprocess.DEVNULL)
    shown = done.stdout + done.stderr
    assert done.returncode == 0, shown[-3000:]
    assert failed == {"manifest", "blob"}
    assert "retry: " in done.stdout and "owned by the registry" in done.stdout, done.stdout[-3000:]
    assert_inert(shown)
    assert_markdown_inert((tmp_path / "summary.md").read_text())


def test_file_names_in_change_detection_notes_are_inert(tmp_path: Path) -> None:
    """A committed .proto file whose name holds a newline, a workflow command and terminal escapes, edited
    additively: matrix.github's note names it, and its stderr, outputs and summary stay inert."""
    from tests.support.localai_tree import Repo, git

    repo = Repo(tmp_path / "repo")
    evil = "backend/evil\n::error::pwned by a file name\x1b]0;t\x07 ##[add-mask]x.proto"
    (repo.path / "backend").mkdir(exist_ok=True)
    (repo.path / evil).write_text('syntax = "proto3";\nmessage A { string a = 1; }\n')
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "evil name")
    base = git(repo.path, "rev-parse", "HEAD")
    (repo.path / evil).write_text('syntax = "proto3";\nmessage A { string a = 1; string b = 2; }\n')
    git(repo.path, "commit", "-q", "-am", "additive")
    summary = tmp_path / "summary.md"
    done = subprocess.run([sys.executable, "-m", "localai_ci", "matrix.github", "--matrix",
                           ".github/backend-matrix.yml", "--base", base, "--explain=-llama-cpp"],
                          capture_output=True, text=True, cwd=repo.path, timeout=300, stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                               "GITHUB_STEP_SUMMARY": str(summary)})
    shown = done.stdout + done.stderr
    assert done.returncode == 0, shown[-3000:]
    assert "pwned by a file name" in done.stderr, done.stderr  # the note names the file
    assert_inert(shown)
    assert_markdown_inert(summary.read_text())


# ---- text from outside in an Actions log: raw blocks and inert lines (tests/support/actions_runner.py reads them) ----
def test_the_runner_emulation_sees_commands() -> None:
    """The emulation itself: each hostile line but the last is a command when printed as it is (and the
    guessed stop-commands would hide every line after it)."""
    assert [len(runner_commands(line)) for line in RUNNER_HOSTILE] == [1] * (len(RUNNER_HOSTILE) - 1) + [0]
    assert runner_commands("\n".join(RUNNER_HOSTILE))[-1] == ("stop-commands", "guessed-token")


@pytest.mark.parametrize("line", RUNNER_HOSTILE)
def test_inert_lines_are_no_commands_and_stay_readable(line: str) -> None:
    out = inert(line)
    assert runner_commands(out) == []
    assert out.replace(ZWSP, "") == line.split("\r")[-1]  # what a terminal shows, nothing else changed


def test_raw_block_keeps_lines_as_they_are_and_executes_none() -> None:
    block = raw_block(RUNNER_HOSTILE, "t0k3n")
    assert block[1:-1] == RUNNER_HOSTILE
    assert runner_commands("\n".join(block)) == [("stop-commands", "t0k3n"), ("resume", "")]
    name = "RUN echo ::error::x ##[error]y\n100%"
    title = group_block(name, ["a"], "t0k3n")[0]
    assert title == "::group::" + inert(name).replace("%", "%25") and runner_commands(title)[0][0] == "group"
    assert "\n" not in title and "%0A" not in title and "100%25" in title  # one line, inert, then escaped
