""".dockerignore as BuildKit applies it (ci/dockerfile/ignore.py)."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.growth import assert_linear
from localai_ci.dockerfile.ignore import Ignore, parse_dockerignore

PATTERNS = """# LocalAI's, abridged
.github
/models
backend/go/*/build
**/venv
backend/python/**/source
Dockerfile*
!Dockerfile.keep
tests
.
"""


@pytest.mark.parametrize("path, excluded", [
    (".github/workflows/backend.yml", True),
    ("models/x.bin", True),
    ("backend/go/whisper/build/lib.so", True),
    ("backend/go/whisper/main.go", False),
    ("backend/python/vllm/venv/lib/site.py", True),  # a parent directory matches **/venv
    ("venv/x", True),
    ("backend/python/vllm/a/b/source/x.c", True),
    ("Dockerfile", True), ("Dockerfile.keep", False), ("backend/Dockerfile.golang", False),
    ("tests/e2e/x_test.go", True), ("core/tests.go", False),
])
def test_buildkit_semantics(path: str, excluded: bool) -> None:
    assert Ignore(parse_dockerignore(PATTERNS)).excludes(path) is excluded


def test_the_docker_sdks_single_path_check_misses_nested_directories() -> None:
    """Why ci/dockerignore.py exists: docker-py's matcher checks a parent only at the pattern's depth."""
    from docker.utils.build import PatternMatcher  # type: ignore[import-untyped]

    assert PatternMatcher(["**/venv"]).matches("backend/python/vllm/venv/lib/site.py") is False
    assert Ignore(parse_dockerignore("**/venv\n")).excludes("backend/python/vllm/venv/lib/site.py")


# ---- linear time, the same answers as patternmatcher's regular expressions ----------------------------
def _reference(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher's regular expression for a cleaned pattern (its ``compile``: ``*`` -> ``[^/]*``,
    ``?`` -> ``[^/]``, ``**`` -> ``(.*/)?`` or a trailing ``.*``, ``\\x`` -> ``\\x``, only ``.+()|{}$``
    escaped, ``[``/``]`` kept), matched by Python's backtracking ``re`` (fine for the tiny inputs here),
    anchored as Go anchors it."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in ".+()|{}$":
            out.append("\\" + ch)
        elif ch == "\\":
            if i < len(pattern):
                out.append(re.escape(pattern[i]))
                i += 1
        else:
            out.append(ch)
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error:
        return re.compile(re.escape(pattern) + r"\Z")


def _reference_hit(pattern: str, path: str) -> bool:
    rx = _reference(pattern)
    parts = path.split("/")
    return any(rx.match("/".join(parts[:k])) for k in range(1, len(parts) + 1))


_PIECES = st.sampled_from(["a", "b", "/", "*", "**", "**/", "?", "[ab]", "[^a]", "\\*", ".", "\n"])


@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, min_size=1, max_size=8), st.lists(st.sampled_from(["a", "b", "ab", "ba", "*", ".", "a\nb"]),
                                                           min_size=1, max_size=6))
@example(["**", "a"], ["ba"])  # a middle ** that consumed characters must end on a '/'
@example(["**", "?", "**"], ["a\nb"])
def test_both_matchers_agree_with_patternmatchers_expressions(pieces: list[str], segments: list[str]) -> None:
    from localai_ci.dockerfile.ignore import compile_glob, state_set
    from localai_ci.changes.tree import clean_path

    pattern = clean_path("".join(pieces))
    if not pattern:
        return
    path = "/".join(segments)
    glob = compile_glob(pattern)
    expected = _reference_hit(pattern, path)
    assert glob.matches_or_parent(path) is expected, (pattern, path)
    assert state_set(glob.tokens).matches_or_parent(path) is expected, (pattern, path)


def test_a_pattern_of_many_double_stars_is_linear_in_the_path() -> None:
    """Fourteen ``**/`` against a path 21 directories deep took 113 s per match (BuildKit: 0.3 s for a whole
    context); ten times the depth must take about ten times as long, not exponentially more."""
    setup = ("from localai_ci.dockerfile.ignore import Ignore, parse_dockerignore\n"
             "ig = Ignore(parse_dockerignore('**/' * 14 + 'x/y\\n' + '**/a/**/b/**/c/**/d\\n'))\n"
             "path = 'a/' * (2 * n) + 'b'")
    assert_linear(setup, "[ig.excludes(path) for _ in range(200)]", 21, timeout=120)


def test_a_pattern_of_many_stars_is_linear_in_the_segment() -> None:
    setup = ("from localai_ci.dockerfile.ignore import Ignore, parse_dockerignore\n"
             "ig = Ignore(parse_dockerignore('*a*a*a*a*a*a*a*a*a*b\\n'))\n"
             "path = 'a' * (10 * n)")
    assert_linear(setup, "[ig.excludes(path) for _ in range(100)]", 20, timeout=120)
