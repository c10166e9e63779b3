"""The repository's paths, for tests at any depth of ``tests/`` (one place, not ``parents[N]`` per file)."""
from __future__ import annotations

from pathlib import Path

#: the repository's root (``tests/support/paths.py`` -> ``tests/support`` -> ``tests`` -> root)
REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
#: data the tests carry (LocalAI's matrices, bad inputs, golden files): stays at ``tests/resources/``
RESOURCES = TESTS / "resources"
SUPPORT = TESTS / "support"
