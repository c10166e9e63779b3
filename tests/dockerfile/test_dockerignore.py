""".dockerignore as BuildKit applies it (ci/dockerignore.py)."""
from __future__ import annotations

import pytest

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
