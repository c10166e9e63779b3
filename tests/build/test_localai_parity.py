"""Every leg of LocalAI's matrix plans the build LocalAI's own workflows run (issue 21).

LocalAI's ``backend.yml`` hands each matrix element to ``backend_build.yml`` (``with:`` expressions
such as ``${{ matrix.amdgpu-targets || '<list>' }}``), whose build step passes ``build-args`` made of
more expressions, the Dockerfile, the context and the platform, on the runner ``runs-on`` names.
Here those expressions are read from a named LocalAI checkout's own workflow files and evaluated
for every leg, then compared with what ``localai_ci.build.leg.plan_leg`` plans: the build args as the
Dockerfile sees them (each ARG it declares: passed, with its value, or not), the Dockerfile, the
context, the platform and the runner. It needs LocalAI's tree with its workflows
(``CI_TEST_LOCALAI_TREE``); without one it skips.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from localai_ci.build.leg import plan_leg
from localai_ci.dockerfile.model import Dockerfile, load_dockerfile
from localai_ci.git.repo import SourceInfo
from localai_ci.github.actions import Event
from localai_ci.matrix.buildargs import deps_refresh_key
from localai_ci.matrix.model import Entry, load_matrix
from localai_ci.matrix.naming import Family
from localai_ci.settings import family_config
from tests.support.localai_ref import M2608, WORKFLOWS_2608, LocalAITree

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)
_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(r"\s*(\|\||&&|!=|==|'(?:[^']|'')*'|[A-Za-z_][\w.\-\[\]']*)")


class Expr:
    """The subset of GitHub's expression language these workflows use: property references, string
    literals, ``==``, ``!=``, ``&&``, ``||`` with JavaScript-like truthiness ('' is false)."""

    def __init__(self, text: str, context: dict[str, Any]) -> None:
        self.tokens = [m.group(1) for m in _TOKEN.finditer(text)]
        assert "".join(self.tokens).replace(" ", "") == text.replace(" ", "").replace("\n", ""), text
        self.i = 0
        self.context = context

    def value(self) -> Any:
        v = self._or()
        assert self.i == len(self.tokens), self.tokens
        return v

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == "||":
            self.i += 1
            right = self._and()
            left = left or right
        return left

    def _and(self) -> Any:
        left = self._cmp()
        while self._peek() == "&&":
            self.i += 1
            right = self._cmp()
            left = left and right
        return left

    def _cmp(self) -> Any:
        left = self._primary()
        while self._peek() in ("==", "!="):
            op = self.tokens[self.i]
            self.i += 1
            right = self._primary()
            left = (left == right) if op == "==" else (left != right)
        return left

    def _primary(self) -> Any:
        tok = self.tokens[self.i]
        self.i += 1
        if tok.startswith("'"):
            return tok[1:-1].replace("''", "'")
        node: Any = self.context
        for part in tok.split("."):
            node = node.get(part, "") if isinstance(node, dict) else ""
        return node


def evaluate(template: str, context: dict[str, Any]) -> str:
    """A workflow string with its ``${{ }}`` expressions evaluated."""
    return _EXPR.sub(lambda m: str(Expr(m.group(1), context).value()), template)


def declared_args(df: Dockerfile) -> set[str]:
    names = {name for name, _ in df.global_args}
    for st in df.stages:
        for ins in st.instructions:
            if ins.keyword == "ARG":
                names |= {a.split("=", 1)[0] for a in ins.args}
    return names


def localai_build(tree: LocalAITree, entry: Entry) -> dict[str, Any]:
    """What LocalAI's backend.yml + backend_build.yml run for one leg (its push-event build step)."""
    caller = yaml.safe_load(workflow_text(tree, "backend.yml"))
    job = next(j for j in caller["jobs"].values() if str(j.get("uses", "")).endswith("backend_build.yml"))
    matrix = {k: v for k, v in entry.raw}
    inputs = {k: evaluate(str(v), {"matrix": matrix}) for k, v in job["with"].items()}
    called = yaml.safe_load(workflow_text(tree, "backend_build.yml"))
    steps = [s for j in called["jobs"].values() for s in j.get("steps", [])]
    build = next(s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action")
                 and "pull_request" in str(s.get("if", "")) and "!=" in str(s.get("if", "")))
    context = {"inputs": inputs, "steps": {
        "apt_mirror": {"outputs": {"effective-mirror": "", "effective-ports-mirror": ""}},  # no mirror configured
        "deps_refresh": {"outputs": {"key": deps_refresh_key(NOW)}},
    }}
    args = {}
    for line in build["with"]["build-args"].splitlines():
        if line.strip():
            name, _, template = line.strip().partition("=")
            args[name] = evaluate(template, context)
    return {"args": args, "file": evaluate(build["with"]["file"], context),
            "context": evaluate(build["with"]["context"], context), "platforms": inputs["platforms"],
            "runs-on": inputs["runs-on"]}


def workflow_text(tree: LocalAITree, name: str) -> str:
    """LocalAI's workflow ``name`` from the tree; for a tree without workflows whose matrix is M2608's,
    the copy of that commit's workflow this repository carries (tests/resources/localai)."""
    try:
        return tree.text(f".github/workflows/{name}")
    except FileNotFoundError:
        if tree.path(".github/backend-matrix.yml").read_bytes() != M2608.read_bytes():
            raise
        return (WORKFLOWS_2608 / name).read_text()


@pytest.fixture(scope="module")
def workflows(localai_tree: LocalAITree, tmp_path_factory: pytest.TempPathFactory) -> LocalAITree:
    """The named tree, checkout-shaped: the flat reference layout's matrix, Dockerfiles and workflows
    are copied to their repository paths in a scratch tree (plan_leg reads ``root / dockerfile``)."""
    try:
        workflow_text(localai_tree, "backend.yml")
    except FileNotFoundError:
        pytest.skip(f"{localai_tree.root} has neither .github/workflows/backend.yml nor the matrix of "
                    "tests/resources/localai/workflows.2026-08: name a LocalAI checkout (CI_TEST_LOCALAI_TREE)")
    if (localai_tree.root / ".github" / "backend-matrix.yml").is_file():
        return localai_tree
    root = tmp_path_factory.mktemp("localai-checkout")
    files = {rel: p.read_bytes() for rel, p in localai_tree.dockerfiles().items()}
    files[".github/backend-matrix.yml"] = localai_tree.path(".github/backend-matrix.yml").read_bytes()
    for name in ("backend.yml", "backend_build.yml"):
        files[f".github/workflows/{name}"] = workflow_text(localai_tree, name).encode()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return LocalAITree(root)


def test_every_leg_plans_the_build_localais_workflows_run(workflows: LocalAITree) -> None:
    tree = workflows
    matrix = load_matrix(tree.path(".github/backend-matrix.yml"))
    config = family_config(Family.BACKENDS, env={})
    extra = {"APT_MIRROR": "", "APT_PORTS_MIRROR": "", "DEPS_REFRESH": deps_refresh_key(NOW)}
    dockerfiles: dict[str, Dockerfile] = {}
    differ = []
    for e in matrix:
        theirs = localai_build(tree, e)
        plan = plan_leg(e, config, root=tree.root, source=SourceInfo(), event=Event(name="push"), extra_args=extra)
        df = dockerfiles.setdefault(e.dockerfile, load_dockerfile(tree.root / e.dockerfile))
        seen = declared_args(df)
        ours = {k: v for k, v in plan.build_args if k in seen}
        mine = {k: v for k, v in theirs["args"].items() if k in seen}
        problems = [f"{k}: ours {ours.get(k, '(not passed)')!r}, LocalAI's {mine.get(k, '(not passed)')!r}"
                    for k in sorted(set(ours) | set(mine)) if ours.get(k) != mine.get(k)]
        if Path(plan.context) != (tree.root / theirs["context"]).resolve():
            problems.append(f"context: ours {plan.context}, LocalAI's {theirs['context']}")
        if (Path(plan.context) / plan.dockerfile).resolve() != (tree.root / theirs["file"]).resolve():
            problems.append(f"Dockerfile: ours {plan.dockerfile}, LocalAI's {theirs['file']}")
        if str(plan.platform) != theirs["platforms"] or plan.runs_on != theirs["runs-on"]:
            problems.append(f"platform/runner: ours {plan.platform} on {plan.runs_on}, LocalAI's "
                            f"{theirs['platforms']} on {theirs['runs-on']}")
        if problems:
            differ.append(f"{e.label()}: " + "; ".join(problems))
    assert not differ, f"{len(differ)} of {len(matrix)} legs differ:\n" + "\n".join(differ[:20])
    assert len(matrix) >= 400
