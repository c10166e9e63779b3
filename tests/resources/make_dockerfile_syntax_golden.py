"""Regenerate ``tests/resources/dockerfile_syntax_golden.json`` from the oracle.

The oracle is the PyPI ``dockerfile`` package (BuildKit v0.12.5's Go parser through cgo; wheels
for x86_64 Linux only, installed by ``pip install -e '.[dev]'`` there). Run it from anywhere after
changing ``tests/support/dockerfile_syntax_corpus.py`` or a ``backends/Dockerfile.*``::

    python tests/resources/make_dockerfile_syntax_golden.py

It writes, for every corpus case and every repository Dockerfile, the digest of its text and the
oracle's outcome (``tests/support/dockerfile_syntax_corpus.py``: ``outcome``/``stored``), so
``tests/dockerfile/test_dockerfile_syntax.py`` compares ``localai_ci.dockerfile.syntax`` with BuildKit on machines
where the oracle does not install. No text outside this repository goes into it.
"""
from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.support

import dockerfile  # noqa: E402  (the oracle)
from tests.support.dockerfile_syntax_corpus import (  # noqa: E402
    CORPUS, GOLDEN, REPO, REPO_DOCKERFILES, outcome, stored, text_digest)


def golden() -> dict[str, object]:
    def entry(text: str) -> dict[str, object]:
        return {"sha256": text_digest(text), "result": stored(outcome(dockerfile.parse_string, text))}

    return {
        "oracle": f"dockerfile {importlib.metadata.version('dockerfile')} (moby/buildkit v0.12.5, Go)",
        "regenerate": "python tests/resources/make_dockerfile_syntax_golden.py",
        "cases": {name: entry(text) for name, text in sorted(CORPUS.items())},
        "files": {rel: entry((REPO / rel).read_text(encoding="utf-8")) for rel in REPO_DOCKERFILES},
    }


def dump(value: object, indent: str = "") -> str:
    """JSON with objects spread over lines and each command on one line (reviewable diffs), ASCII
    only (invisible characters such as a BOM or NBSP show as escapes)."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {dump(v, inner)}" for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        items = [inner + json.dumps(v) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value)


def main() -> int:
    GOLDEN.write_text(dump(golden()) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN.relative_to(REPO)}: {len(CORPUS)} cases, {len(REPO_DOCKERFILES)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
