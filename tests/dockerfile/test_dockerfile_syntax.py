"""ci.dockerfile_syntax against BuildKit's Go parser (pure; no engine).

The oracle is the PyPI ``dockerfile`` package: BuildKit v0.12.5's own parser through cgo, with
wheels for x86_64 Linux only (the dev extra installs it there). So that the comparison runs on
every machine:

* ``tests/support/dockerfile_syntax_corpus.py`` holds the corpus: one construct or one error per case,
  and the one canonical form of a result (``outcome``);
* ``tests/resources/dockerfile_syntax_golden.json`` holds the oracle's outcome for every corpus
  case and every ``backends/Dockerfile.*``, with the digest of the text it was made from;
* where the oracle imports, each comparison ALSO runs live against it, and checks that the
  golden entry is what the oracle says today (the golden file is current).

After changing the corpus or a ``backends/Dockerfile.*``, regenerate the golden file on a machine
with the oracle (x86_64 Linux)::

    python tests/resources/make_dockerfile_syntax_golden.py

LocalAI's real Dockerfiles are compared when a tree is named (``CI_TEST_LOCALAI_TREE``; the
``localai_tree`` fixture). The property test needs the oracle live; it is this module's only skip.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localai_ci.dockerfile.syntax import Command, Heredoc, ParseError, parse_string
from tests.support.dockerfile_syntax_corpus import CORPUS, GOLDEN, REPO, REPO_DOCKERFILES, outcome, stored, text_digest

try:
    import dockerfile as oracle
except ImportError:  # no wheel for this platform: the golden file stands in
    oracle = None

REGENERATE = "regenerate it with: python tests/resources/make_dockerfile_syntax_golden.py (needs the oracle: x86_64 Linux)"
GOLDEN_DATA = json.loads(GOLDEN.read_text(encoding="utf-8"))


def check_against_buildkit(label: str, text: str, entry: dict[str, object] | None) -> None:
    """The port's outcome equals the golden one (made by the oracle from this very text) and,
    where the oracle imports, the oracle's own outcome today."""
    assert entry is not None, f"{label} has no entry in {GOLDEN.name}; {REGENERATE}"
    assert entry["sha256"] == text_digest(text), f"{label} changed since {GOLDEN.name} was made; {REGENERATE}"
    mine = outcome(parse_string, text)
    if oracle is not None:
        live = outcome(oracle.parse_string, text)
        assert stored(live) == entry["result"], f"{GOLDEN.name} is stale for {label}; {REGENERATE}"
        assert mine == live
    assert stored(mine) == entry["result"]


# --------------------------------------------------------------------------- the corpus, the repository


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_case_parses_as_buildkit_does(name: str) -> None:
    check_against_buildkit(name, CORPUS[name], GOLDEN_DATA["cases"].get(name))


@pytest.mark.parametrize("rel", REPO_DOCKERFILES)
def test_repository_dockerfile_parses_as_buildkit_does(rel: str) -> None:
    check_against_buildkit(rel, (REPO / rel).read_text(encoding="utf-8"), GOLDEN_DATA["files"].get(rel))


def test_golden_file_holds_exactly_the_corpus_and_the_repository_dockerfiles() -> None:
    assert REPO_DOCKERFILES, "no backends/Dockerfile.* found"
    assert sorted(GOLDEN_DATA["cases"]) == sorted(CORPUS), REGENERATE
    assert sorted(GOLDEN_DATA["files"]) == list(REPO_DOCKERFILES), REGENERATE


# --------------------------------------------------------------------------- what Go does not say: the line


@pytest.mark.parametrize(("text", "message", "line"), [
    (CORPUS["directive-duplicate-syntax"], "only one syntax parser directive can be used", 2),
    (CORPUS["directive-invalid-escape"], "invalid escape token 'x' does not match ` or \\", 1),
    (CORPUS["env-missing-value"], "ENV must have two arguments", 5),
    (CORPUS["label-missing-value"], "LABEL must have two arguments", 2),
    (CORPUS["env-no-equals"], "Syntax error - can't find = in \"c\". Must be of the form: name=value", 2),
    (CORPUS["json-non-string"], "when using JSON array syntax, arrays must be comprised of strings only", 2),
    (CORPUS["onbuild-chain-error"], "ENV must have two arguments", 2),
    (CORPUS["heredoc-unterminated"], "unterminated heredoc", 2),
    (CORPUS["heredoc-second-unterminated"], "unterminated heredoc", 2),
    (CORPUS["heredoc-word-lexing-error"], "failed to process \"${X:-a\": syntax error: missing '}'", 2),
    (CORPUS["line-limit-exceeded"], "dockerfile line greater than max allowed size of 65535", 2),
    (CORPUS["line-limit-exceeded-in-heredoc"], "unterminated heredoc", 2),
    (CORPUS["line-limit-exceeded-in-continuation"], "ENV must have two arguments", 2),
    ("FROM a\n\n# c\nENV \\\n  # inside\n  A\n", "ENV must have two arguments", 4),  # where it starts
    ("FROM a\nRUN x\n" + "é" * 40000 + "\nRUN y\n", "dockerfile line greater than max allowed size of 65535", 3),
    (CORPUS["empty"], "file with no instructions", 1),
    (CORPUS["only-comments"], "file with no instructions", 2),
    ("FROM a\n\udcff\n", "invalid UTF-8: the text holds a lone surrogate U+DCFF", 2),
])
def test_errors_carry_the_line(text: str, message: str, line: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_string(text)
    assert (str(info.value), info.value.line) == (message, line)


# --------------------------------------------------------------------------- the API


def test_the_api_is_the_packages() -> None:
    assert Command._fields == ("cmd", "sub_cmd", "json", "original", "start_line", "end_line", "flags", "value",
                               "heredocs")
    assert Heredoc._fields == ("name", "file_descriptor", "content")
    if oracle is not None:
        assert (oracle.Command._fields, oracle.Heredoc._fields) == (Command._fields, Heredoc._fields)
    (run,) = parse_string("RUN <<EOF\nhi\nEOF\n")
    assert run == ("RUN", None, False, "RUN <<EOF\nhi\nEOF\n", 1, 3, (), ("<<EOF",), (("EOF", 0, "hi\n"),))
    assert run.heredocs[0].content == "hi\n"
    with pytest.raises(AttributeError):
        run.cmd = "COPY"  # type: ignore[misc]
    error = ParseError("unterminated heredoc", 7)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.line) == ("unterminated heredoc", 7)


def test_nul_is_kept_where_the_package_cuts_its_c_strings() -> None:
    """BuildKit keeps a NUL; the package's C strings end there (the corpus comparison allows for it)."""
    (_, cmd) = parse_string('FROM a\nCMD ["a\\u0000b"]\n')
    assert cmd.value == ("a\x00b",)
    (frm,) = parse_string("FROM a\x00b\n")
    assert frm.value == ("a\x00b",)


def test_stray_bytes_of_a_split_character_are_surrogate_escapes() -> None:
    """Go reads HEALTHCHECK's type byte by byte: 'à' (C3 A0) ends at A0, which IsSpace takes for NBSP."""
    (_, health) = parse_string("FROM a\nHEALTHCHECK Xà foo\n")
    assert health.value == ("X\udcc3", "foo")
    assert health.value[0].encode("utf-8", "surrogateescape") == b"X\xc3"
    (_, copy) = parse_string("FROM a\nCOPY --from=é x y\n")
    assert copy.flags == ("--from=Ã©",)  # one character per byte, as Go's rune(line[pos])


# --------------------------------------------------------------------------- LocalAI's real Dockerfiles

def test_localai_dockerfiles_parse_as_buildkit_does(localai_tree) -> None:  # type: ignore[no-untyped-def]
    files = localai_tree.dockerfiles()
    assert files, f"no Dockerfile in {localai_tree.root}"
    differ = []
    for rel, path in sorted(files.items()):
        text = path.read_text(encoding="utf-8")
        mine = outcome(parse_string, text)
        assert "commands" in mine, f"{rel}: {mine}"
        assert_consistent(parse_string(text))
        if oracle is not None and mine != outcome(oracle.parse_string, text):
            differ.append(rel)
    assert not differ, f"parsed differently from BuildKit: {', '.join(differ)}"


# --------------------------------------------------------------------------- generated Dockerfiles

KEYWORDS = ("FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
            "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "FOO")
ATOMS = (
    "a", "b", "x=1", "k=v", "=", "'", '"', "\\", "`", "$", "${", "}", "{", ":", "-", "+", "?", "$x", "${x}",
    "${x:-y}", "${x:-a b}", "${x:-'q'}", "[", "]", ",", '"s"', "'q'", '"a b"', "<<", "<<EOF", "<<-EOF", '<<"EOF"',
    "<<'EOF'", "3<<EOF", "<<E", "<<E\\ F", "--", "--mount=type=cache,target=/x", "--from=build", "--chmod=755",
    "--platform=$BUILDPLATFORM", "--link", '--x="a b"', "--y='q'", "--z=\\ ", "#", "# c", "&&", "é", "à",
    "\u00a0", "\u0085", "\u2003", "\u3000", "İ", "Σ", "\t", " ", "  ", "\r", "1e400", "1", "true", "null",
    '["a"]', '["a", "b"]', '[ "x" ]', '["a", 1]', '["\\u00e9"]', '["\\ud800"]', '["\\u0000"]', "[]", "{}",
    '["a",', '["a"] tail', "[[]]", '[{"k": [1, 2.5e3, false]}]', "CMD", "RUN", "NONE", "\ufeff", "\u212a",
)
_atom = st.sampled_from(ATOMS) | st.text(alphabet="ab=$'\"\\`{}:-<[]#, \tSé\u00a0", max_size=6)
_args = st.lists(st.tuples(_atom, st.sampled_from([" ", " ", "\t", "", "\u00a0"])), max_size=6).map(
    lambda parts: "".join(a + s for a, s in parts))


@st.composite
def _instruction(draw: st.DrawFn) -> list[str]:
    keyword = draw(st.sampled_from(KEYWORDS))
    keyword = draw(st.sampled_from([keyword, keyword.lower(), keyword.capitalize()]))
    head = draw(st.sampled_from(["", "", " ", "\t"])) + keyword
    if keyword.upper() == "ONBUILD" and draw(st.booleans()):
        head += " " + draw(st.sampled_from(KEYWORDS))
    lines = [head + draw(st.sampled_from([" ", "\t", "  "])) + draw(_args)]
    for _ in range(draw(st.integers(0, 2))):  # continuations, comments and blank lines inside
        lines[-1] += draw(st.sampled_from(["\\", " \\", "\\ ", "\\\t", "`", " `", "\\\\"]))
        lines.append(draw(st.sampled_from(["", "  ", "# comment", "   # c", ""])))
        lines.append(draw(st.sampled_from(["", " ", "\t"])) + draw(_args))
    for _ in range(draw(st.integers(0, 2))):  # here-document bodies and terminators
        lines.append(draw(st.sampled_from(["body", "\tbody", "EOF ", "E", "x", "$HOME"])))
        lines.append(draw(st.sampled_from(["EOF", "\tEOF", "E", "EOF\r", "a b", "\t\tE", "E F"])))
    return lines


@st.composite
def dockerfiles(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.sampled_from([
            "# syntax=docker/dockerfile:1", "# escape=`", "#escape=\\", "# check=skip=all", "# escape=x",
            "#syntax = a b ", "# ESCAPE = `", "#!/bin/sh", "", "# note", "  # escape=`"])))
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", " ", "\t", "# c", "\r", " # x \\"])))
        else:
            lines.extend(draw(_instruction()))
    newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    return draw(st.sampled_from(["", "\ufeff"])) + text


def assert_consistent(commands: tuple[Command, ...]) -> None:
    """Line numbers rise and never overlap; the fields have their types."""
    previous_end = 0
    for cmd in commands:
        assert previous_end < cmd.start_line <= cmd.end_line
        previous_end = cmd.end_line
        assert all(isinstance(v, str) for v in cmd.flags + cmd.value)
        assert all(isinstance(h, Heredoc) for h in cmd.heredocs)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(dockerfiles())
def test_generated_dockerfiles_parse_consistently(text: str) -> None:
    """Anywhere, oracle or not: a result or a ParseError with a line in the file, nothing else."""
    try:
        commands = parse_string(text)
    except ParseError as exc:
        assert 1 <= exc.line <= max(1, text.count("\n") + 1)
        return
    assert_consistent(commands)


@pytest.mark.skipif(oracle is None, reason="needs the dockerfile package (BuildKit's Go parser; x86_64 Linux wheels)")
@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(dockerfiles())
def test_generated_dockerfiles_parse_as_buildkit_does(text: str) -> None:
    assert outcome(parse_string, text) == outcome(oracle.parse_string, text)


# --------------------------------------------------------------------------- linear time, no recursion

_TIMING = textwrap.dedent('''
    import json, sys, time
    from localai_ci.dockerfile.syntax import ParseError, parse_string

    BLOCK = (
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS build{i}\\n"
        "ARG TARGETARCH VERSION=1.{i}\\n"
        "ENV GOFLAGS=-mod=mod CGO_ENABLED=0 PATH=/usr/local/go/bin:$PATH\\n"
        "LABEL org.opencontainers.image.title=\\"x {i}\\" a=b\\n"
        "RUN --mount=type=cache,target=/root/.cache/go-build \\\\\\n"
        "    apt-get update && \\\\\\n"
        "    # a comment inside\\n"
        "\\n"
        "    apt-get install -y --no-install-recommends curl && \\\\\\n"
        "    rm -rf /var/lib/apt/lists/*\\n"
        "COPY --from=build{i} --chmod=755 /src/bin /usr/local/bin/\\n"
        "RUN <<EOF bash -ex\\necho {i}\\n  make build\\nEOF\\n"
        "COPY <<-'A' /a <<B /b\\n\\tcontent {i}\\n\\tA\\nb\\nB\\n"
        "HEALTHCHECK --interval=30s CMD [\\"curl\\", \\"-f\\", \\"http://localhost/\\"]\\n"
        "CMD [\\"/usr/local/bin/app\\", \\"--port\\", \\"8080\\"]\\n"
        "ONBUILD RUN echo onbuild\\n"
    )  # 14 instructions

    def shape(name, n):
        if name == "instructions":
            return "".join(BLOCK.format(i=i) for i in range(n // 14))
        if name == "continuation":
            return "FROM a\\nRUN x \\\\\\n" + "  && step --flag value \\\\\\n" * n + "  && done\\n"
        if name == "heredoc":
            return "FROM a\\nRUN <<EOF\\n" + "echo a line of the here-document\\n" * n + "EOF\\n"
        if name == "onbuild":
            return "FROM a\\n" + "ONBUILD \\\\\\n" * n + "RUN x\\n"
        if name == "substitution":
            return "FROM a\\nRUN <<" + "${a:-\\\\\\n" * n + "x" + "}" * n + "\\nEOF\\n"
        if name == "words":
            return "FROM a\\nENV \\\\\\n" + "  KEY=\\"a value\\" \\\\\\n" * n + "  LAST=1\\n"
        if name == "flags":
            return "FROM a\\nCOPY \\\\\\n" + "  --chmod='7 5' \\\\\\n" * n + "  a b\\n"
        if name == "json":
            return "FROM a\\nCMD [\\"a\\", \\\\\\n" + "  \\"an argument\\", \\\\\\n" * n + "  \\"z\\"]\\n"
        raise ValueError(name)

    def seconds(text):
        best = None
        for _ in range(3):
            start = time.process_time()
            try:
                parse_string(text)
            except ParseError:
                pass
            spent = time.process_time() - start
            best = spent if best is None else min(best, spent)
        return best

    out = {}
    for name, n in json.loads(sys.argv[1]).items():
        small, large = shape(name, n // 8), shape(name, n)
        out[name] = [len(large), seconds(small), seconds(large)]
    print(json.dumps(out))
''')


#: shape -> instructions or lines at full size: a 4 MiB file of 88k instructions, then single
#: instructions of 20k to 400k lines (ONBUILD chains and ${...} nesting that deep)
_SIZES = {"instructions": 88_000, "continuation": 200_000, "heredoc": 400_000, "onbuild": 100_000,
          "substitution": 20_000, "words": 100_000, "flags": 60_000, "json": 150_000}


def test_parse_time_is_linear_and_nothing_recurses() -> None:
    """Each shape at 1/8 and full size: 8x the input must not take 64x the time (quadratic), nor
    hit Python's recursion limit (1000). CPU time, the best of three; the subprocess timeout
    bounds a regression that would otherwise run for hours."""
    done = subprocess.run([sys.executable, "-c", _TIMING, json.dumps(_SIZES)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    timings = json.loads(done.stdout)
    assert timings["instructions"][0] > 4 * 1024 * 1024
    slow = {name: round(large / max(small, 1e-3), 1) for name, (_, small, large) in timings.items()
            if large > 24 * max(small, 1e-3)}
    assert not slow, f"8x the input took more than 24x the time: {slow} (seconds: {timings})"
