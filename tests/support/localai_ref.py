"""LocalAI reference data for the tests (not a test module).

Two kinds, kept apart on purpose:

* **LocalAI's matrices**: data the tests carry, under ``tests/resources/localai/`` (origin,
  commit, date and licence in its README). Always there: :data:`M2608`, :data:`M9730`.
* **LocalAI's real tree** (its Dockerfiles, ``.dockerignore``, build scripts): never in this
  repository and never read unless a user names it, with ``CI_TEST_LOCALAI_TREE=PATH``. The path
  is a LocalAI checkout (``backend/Dockerfile.python``, ``Dockerfile``, ``.docker/...``) or the
  flat reference layout (``dockerfiles/backend_Dockerfile.python``: the repository path with
  ``/`` spelled ``_``). Tests reach it through the ``localai_tree`` fixture, which skips with a
  one-line reason when no tree is named.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support import paths

RESOURCES = paths.RESOURCES / "localai"
#: LocalAI's matrix at commit 82c191af (2026-08-22): 457 Linux legs, 62 Darwin entries
M2608 = RESOURCES / "backend-matrix.2026-08.yml"
#: LocalAI's matrix right after PR #9730 (2026-05-09): 271 legs
M9730 = RESOURCES / "backend-matrix.pr9730.yml"
MATRICES = (M2608, M9730)

ENV_TREE = "CI_TEST_LOCALAI_TREE"
SKIP_REASON = (f"compares with LocalAI's real tree: set {ENV_TREE}=PATH to a LocalAI checkout "
               "(.ci/run names the reference tree beside the checkout when there is one)")


#: where the flat reference layout keeps files that are not Dockerfiles or .docker scripts
_FLAT = {"scripts/lib/backend-filter.mjs": "peer/backend-filter.mjs", "scripts/changed-backends.js": "peer/changed-backends.js",
         ".github/backend-matrix.yml": "backend-matrix.2026-08.yml"}
#: LocalAI's backend workflows at M2608's commit (82c191af), carried beside the matrices
WORKFLOWS_2608 = RESOURCES / "workflows.2026-08"


@dataclass(frozen=True)
class LocalAITree:
    """A named LocalAI tree: files by their path in LocalAI's repository, in either layout."""

    root: Path

    def path(self, rel: str) -> Path:
        """The file LocalAI keeps at ``rel`` (``backend/Dockerfile.python``, ``.dockerignore``)."""
        for candidate in (self.root / rel, self.root / "dockerfiles" / rel.replace("/", "_"), self.root / _FLAT.get(rel, rel)):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{self.root} ({ENV_TREE}) has no {rel}: is it a LocalAI checkout?")

    def text(self, rel: str) -> str:
        return self.path(rel).read_text()

    def dockerfiles(self) -> dict[str, Path]:
        """Every Dockerfile of the tree by its repository path (``Dockerfile``, ``backend/Dockerfile.x``)."""
        found: dict[str, Path] = {}
        flat = self.root / "dockerfiles"
        if flat.is_dir():
            for p in sorted(flat.glob("*Dockerfile*")):
                found[p.name.replace("_", "/", 1) if p.name.startswith("backend_") else p.name] = p
        for pattern in ("Dockerfile", "backend/Dockerfile.*"):
            for p in sorted(self.root.glob(pattern)):
                found.setdefault(p.relative_to(self.root).as_posix(), p)
        return found


def named_tree(env: Mapping[str, str] | None = None) -> LocalAITree | None:
    """The tree ``CI_TEST_LOCALAI_TREE`` names, or None; ValueError when it names no directory."""
    value = (os.environ if env is None else env).get(ENV_TREE, "").strip()
    if not value:
        return None
    root = Path(value).resolve()
    if not root.is_dir():
        raise ValueError(f"{ENV_TREE}={value!r} is not a directory; name a LocalAI checkout or unset it")
    return LocalAITree(root)
