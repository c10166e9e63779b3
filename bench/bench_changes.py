"""Benchmark (not a test): change detection, side by side with LocalAI's own filter.

Three runs, each printing a table:

* default: the real 2026-08 matrix (457 legs, 62 includeDarwin entries; ``tests/resources/localai/``) on a
  generated LocalAI-sized tree (``tests/localai_scale.py``: LocalAI's backend Dockerfiles, every
  backend directory, a Go module of ``--packages`` packages, ~``--docs`` pages, a git
  repository). For each change: ``invoke matrix.github`` end to end (a fresh process, as the
  workflow runs it: ``--base`` against a real commit, and ``--changed-files``), the selection
  alone in-process, and LocalAI's ``filterMatrix`` (``scripts/lib/backend-filter.mjs`` of the LocalAI
  tree named by ``--localai``, run by node: the process end to end, and one call alone), with what each selects;
* ``--scenarios``: every scenario of ``tests/change_scenarios.py`` (LocalAI's 41-test suite in
  this project's terms plus this project's own) through both, on the fixture repository,
  with the legs on which they differ;
* ``--replay REPO --commits N``: the last N first-parent commits of a LocalAI clone (for
  example ``/work/.mirror/mudler+LocalAI/repo``), each diffed against its parent, both
  selectors on the commit's own tree and matrix.

LocalAI's filter and its real Dockerfiles come from a LocalAI tree the user names (``--localai PATH``,
default ``$CI_TEST_LOCALAI_TREE``): a LocalAI checkout, or the reference layout with the filter under
``peer/``. Nothing outside this repository is read otherwise. The peer needs no dependencies beyond node (its entry point ``changed-backends.js`` also needs
bun, js-yaml and the GitHub API, so the matrix is handed to it already parsed, as JSON: its
YAML parse is not in its times).

    python bench/bench_changes.py --localai ~/src/LocalAI [--repeat 5] [--packages 300] [--docs 1500]
    python bench/bench_changes.py --localai ~/src/LocalAI --scenarios
    python bench/bench_changes.py --localai ~/src/LocalAI --replay ~/src/LocalAI --commits 100
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _common import median, print_table  # noqa: E402
from localai_ci.changes.select import Base, Selection, select_legs  # noqa: E402
from localai_ci.errors import MatrixError  # noqa: E402
from localai_ci.matrix.model import Matrix, parse_matrix  # noqa: E402
from localai_ref import ENV_TREE, M2608, LocalAITree  # noqa: E402

PEER_FILE = "scripts/lib/backend-filter.mjs"  # LocalAI's filterMatrix
PEER = Path()  # set by main() from --localai
MATRIX_FILE = ".github/backend-matrix.yml"
PROTO_FILE = "backend/backend.proto"


# --- the peer -----------------------------------------------------------------------------------

def peer_case(matrix_text: str, files: Sequence[str], revs: Revisions | None = None,
              strict_proto: bool = False) -> dict[str, Any]:
    """filterMatrix's arguments, as changed-backends.js builds them (``revs``: the two commits;
    None for a changed-file list without a base, which the peer gets no previous revisions for)."""
    doc = yaml.safe_load(matrix_text)
    case: dict[str, Any] = {"includes": doc.get("include") or [], "includesDarwin": doc.get("includeDarwin") or [],
                            "changedFiles": list(files)}
    if revs is None:
        return case
    if MATRIX_FILE in files:
        old = revs.base(MATRIX_FILE)
        if old is not None:
            prev = yaml.safe_load(old) or {}
            case["previousMatrix"] = {"include": prev.get("include") or [], "includeDarwin": prev.get("includeDarwin") or []}
    if PROTO_FILE in files and not strict_proto:
        old, cur = revs.base(PROTO_FILE), revs.head(PROTO_FILE)
        if old is not None and cur is not None:
            case["protoRevisions"] = {"previous": old, "current": cur}
    return case


def run_peer(cases: Sequence[dict[str, Any]], repeat: int = 1) -> tuple[list[dict[str, Any]], float]:
    """(results, wall seconds of the node process)."""
    started = time.perf_counter()
    proc = subprocess.run(["node", str(ROOT / "bench" / "peer_filter.mjs")], input=json.dumps(
        {"peer": str(PEER), "repeat": repeat, "cases": list(cases)}), capture_output=True, text=True, check=False,
        timeout=600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"node {PEER}: {proc.stderr.strip()}")
    return json.loads(proc.stdout), wall


def ours_keys(sel: Selection) -> tuple[set[str], set[str]]:
    """The selection as the peer's keys: (tag-suffix, platform-tag as written)."""
    linux = {f"{e.tag_suffix} ({e.platform_tag_field})" for e in sel.entries}
    darwin = {f"{d.get('tag-suffix', '')} ({d.get('platform-tag', '')})" for d in sel.darwin}
    return linux, darwin


class Revisions:
    """Base and head texts of a git repository's two commits (for both selectors)."""

    def __init__(self, repo: Path, base: str, head: str) -> None:
        from localai_ci.git.worktree import revision_tree

        self.tree, self._head = revision_tree(repo, head)
        self._base_tree, self._base = revision_tree(repo, base)
        self.base_rev = base

    def base(self, path: str) -> str | None:
        return self._base_tree.text(path)

    def head(self, path: str) -> str | None:
        return self.tree.text(path)

    def close(self) -> None:
        self._head.close()
        self._base.close()


def git(repo: Path, *args: str) -> str:
    from localai_tree import GIT_ENV

    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV).stdout


# --- default: timing on a LocalAI-sized tree ----------------------------------------------------

CHANGES: tuple[tuple[str, dict[str, str]], ...] = (
    ("full selection: a breaking backend.proto edit", {PROTO_FILE: "rename"}),
    ("one Python backend's sources", {"backend/python/vllm/backend.py": "x = 2\n"}),
    ("a Go package some backends import", {"pkg/audio/audio.go": "package audio\n\n// x\n"}),
    ("documentation only", {"docs/content/page0/p1.md": "changed\n"}),
)


def timing(args: argparse.Namespace) -> int:
    from localai_scale import build_tree, copy_matrix

    tmp = Path(tempfile.mkdtemp(prefix="bench-changes-"))
    try:
        started = time.perf_counter()
        tree_dir = build_tree(tmp / "tree", M2608, localai=args.tree, packages=args.packages, docs=args.docs)
        copy_matrix(tree_dir, M2608)
        for a in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
            git(tree_dir, *a)
        base = git(tree_dir, "rev-parse", "HEAD").strip()
        files = len(git(tree_dir, "ls-files").splitlines())
        gofiles = sum(1 for f in git(tree_dir, "ls-files").splitlines() if f.endswith(".go"))
        pkgs = len({f.rsplit("/", 1)[0] for f in git(tree_dir, "ls-files").splitlines() if f.endswith(".go")})
        print(f"tree: {files} files, {gofiles} Go files in {pkgs} directories, made in {time.perf_counter() - started:.1f} s; "
              f"matrix {M2608.name}: 457 legs, 62 includeDarwin entries; {args.repeat} runs each, medians\n")
        rows = []
        for label, edits in CHANGES:
            git(tree_dir, "checkout", "-q", "-B", "b", base)
            for path, text in edits.items():
                p = tree_dir / path
                p.write_text(p.read_text().replace("int32 Tokens = 2;", "int32 MaxTokens = 2;")
                             if text == "rename" else text)
            git(tree_dir, "commit", "-q", "-am", label)
            changed = [line for line in git(tree_dir, "diff", "--name-only", f"{base}...HEAD").splitlines() if line]
            listing = tmp / "changed.txt"
            listing.write_text("\n".join(changed) + "\n")
            wall_base, wall_list, inproc = [], [], []
            sel = None
            for _ in range(args.repeat):
                for flags, bucket in ((["--base", base], wall_base), (["--changed-files", str(listing)], wall_list)):
                    t = time.perf_counter()
                    proc = subprocess.run([sys.executable, "-m", "invoke", "-r", str(ROOT), "matrix.github",
                                           "--matrix", str(tree_dir / MATRIX_FILE), *flags, "--github-output",
                                           str(tmp / "out")], capture_output=True, text=True, cwd=tree_dir,
                                          check=False)
                    bucket.append(time.perf_counter() - t)
                    if proc.returncode != 0:
                        raise SystemExit(proc.stderr)
                from localai_ci.github.changed_jobs import git_base
                from localai_ci.git.repo import Git
                from localai_ci.matrix.model import load_matrix
                from localai_ci.git.worktree import checkout_tree

                t = time.perf_counter()
                m = load_matrix(tree_dir / MATRIX_FILE)
                g = Git(tree_dir)
                sel = select_legs(m, changed, matrix_path=MATRIX_FILE, tree=checkout_tree(tree_dir, g),
                                  base=git_base(g, base))
                inproc.append(time.perf_counter() - t)
            assert sel is not None
            revs = Revisions(tree_dir, base, "HEAD")
            try:
                case = peer_case((tree_dir / MATRIX_FILE).read_text(), changed, revs)
            finally:
                revs.close()
            peer_walls, peer_ms, result = [], [], None
            for _ in range(args.repeat):
                res, wall = run_peer([case], repeat=20)
                peer_walls.append(wall)
                peer_ms.append(res[0]["ms"])
                result = res[0]
            assert result is not None
            linux, darwin = ours_keys(sel)
            rows.append([label, f"{median(wall_base):.2f}", f"{median(wall_list):.2f}", f"{median(inproc):.2f}",
                         f"{len(linux)}+{len(darwin)}", f"{median(peer_walls):.2f}", f"{median(peer_ms):.1f}",
                         f"{len(result['filtered'])}+{len(result['filteredDarwin'])}"])
        print_table(["change", "ours: --base s", "--changed-files s", "select alone s", "ours: legs+darwin",
                     "peer: node s", "filterMatrix ms", "peer: legs+darwin"], rows, right=(1, 2, 3, 5, 6))
        print("\nours: invoke matrix.github end to end (python start, load the matrix, list and read the tree, derive "
              "every leg's inputs, git diff/show, select, write the outputs); peer: node start + filterMatrix on the "
              "matrix already parsed (it derives nothing: a path table)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


# --- --scenarios --------------------------------------------------------------------------------

def scenarios(args: argparse.Namespace) -> int:
    from change_scenarios import OURS, PEER as PEER_SCENARIOS
    from localai_ci.github.changed_jobs import select_from_git
    from localai_ci.matrix.model import load_matrix
    from localai_ci.git.worktree import checkout_tree
    from localai_tree import MATRIX_PATH, Repo

    tmp = Path(tempfile.mkdtemp(prefix="bench-scenarios-"))
    try:
        repo = Repo(tmp / "repo")
        cases, ours = [], []
        for s in PEER_SCENARIOS + OURS:
            base = repo.change(s.base_edits) if s.base_edits else repo.base
            if s.listed:
                repo.change({}, start=base)
                m = load_matrix(repo.path / MATRIX_PATH)
                sel = select_legs(m, s.listed, matrix_path=MATRIX_PATH, tree=checkout_tree(repo.path),
                                  strict_proto=s.strict_proto)
                cases.append(peer_case(repo.text(MATRIX_PATH), list(s.listed)))
            else:
                assert s.edits is not None
                head = repo.change(s.edits, start=base)
                m = load_matrix(repo.path / MATRIX_PATH)
                sel = select_from_git(m, base, matrix_file=repo.path / MATRIX_PATH, strict_proto=s.strict_proto)
                changed = [f for f in git(repo.path, "diff", "--name-only", "--no-renames", f"{base}...{head}")
                           .splitlines() if f]
                revs = Revisions(repo.path, base, head)
                try:
                    case = peer_case(repo.text(MATRIX_PATH), changed, revs, strict_proto=s.strict_proto)
                finally:
                    revs.close()
                cases.append(case)
            ours.append((s, sel))
        results, _ = run_peer(cases)
        rows, agree = [], 0
        for (s, sel), res in zip(ours, results):
            linux, darwin = ours_keys(sel)
            pl, pd = set(res["filtered"]), set(res["filteredDarwin"])
            same = linux == pl and darwin == pd
            agree += same
            diff = sorted((linux ^ pl) | (darwin ^ pd))
            rows.append(["peer" if s in PEER_SCENARIOS else "ours", s.name[:70], f"{len(linux)}+{len(darwin)}",
                         f"{len(pl)}+{len(pd)}", "yes" if same else "no",
                         ("only ours: " + ", ".join(sorted((linux - pl) | (darwin - pd)))[:60] if (linux - pl) | (darwin - pd)
                          else "") + (" only peer: " + ", ".join(sorted((pl - linux) | (pd - darwin)))[:60]
                                      if (pl - linux) | (pd - darwin) else "") if diff else ""])
        print_table(["suite", "scenario", "ours", "peer", "same", "legs that differ"], rows)
        total = len(rows)
        n_peer = len(PEER_SCENARIOS)
        peer_agree = sum(1 for r in rows[:n_peer] if r[4] == "yes")
        print(f"\nsame selection on {agree} of {total} scenarios ({peer_agree} of {n_peer} of the peer's own, "
              f"{agree - peer_agree} of {total - n_peer} of this project's); legs compared over the whole fixture "
              "matrix (16 legs, 5 includeDarwin entries)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


# --- --replay ------------------------------------------------------------------------------------

def replay(args: argparse.Namespace) -> int:
    from localai_ci.changes.select import Base

    repo = Path(args.replay)
    commits = [c for c in git(repo, "rev-list", "--first-parent", "-n", str(args.commits), args.rev).split() if c]
    rows_in = []
    cases: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    t_ours: list[float] = []
    for c in commits:
        parents = git(repo, "rev-list", "--parents", "-n", "1", c).split()[1:]
        if not parents:
            continue
        p = parents[0]
        changed = [f for f in git(repo, "diff", "--name-only", "--no-renames", p, c).splitlines() if f]
        revs = Revisions(repo, p, c)
        try:
            text = revs.head(MATRIX_FILE)
            if text is None:
                skipped["no .github/backend-matrix.yml"] = skipped.get("no .github/backend-matrix.yml", 0) + 1
                continue
            try:
                m: Matrix = parse_matrix(text, f"{MATRIX_FILE}@{c[:8]}")
            except MatrixError as exc:
                key = str(exc).split(":", 2)[-1].strip()[:60]
                skipped[key] = skipped.get(key, 0) + 1
                continue
            t = time.perf_counter()
            sel = select_legs(m, changed, matrix_path=MATRIX_FILE, tree=revs.tree,
                              base=Base(name=p[:12], reader=revs.base))
            t_ours.append(time.perf_counter() - t)
            cases.append(peer_case(text, changed, revs))
            linux, darwin = ours_keys(sel)
            first = {f"{e.tag_suffix} ({e.platform_tag_field})": sel.reasons.get((e.tag_suffix, e.ptag), "")
                     for e in sel.entries}
            first.update({"darwin " + f"{d.get('tag-suffix', '')} ({d.get('platform-tag', '')})":
                          sel.darwin_reasons.get(f"{d.get('tag-suffix', '')}", "") for d in sel.darwin})
            rows_in.append((c, changed, linux, darwin, first))  # not the Selection: it holds every leg's inputs
        finally:
            revs.close()
    results, _ = run_peer(cases)
    agree = both_empty = ours_more = peer_more = other = 0
    legs_ours = legs_peer = 0
    examples: list[list[str]] = []
    for (c, changed, linux, darwin, first), res in zip(rows_in, results):
        pl, pd = set(res["filtered"]), set(res["filteredDarwin"])
        legs_ours += len(linux) + len(darwin)
        legs_peer += len(pl) + len(pd)
        ours_set, peer_set = linux | {"darwin " + d for d in darwin}, pl | {"darwin " + d for d in pd}
        if ours_set == peer_set:
            agree += 1
            both_empty += not ours_set
            continue
        if ours_set > peer_set:
            ours_more += 1
        elif ours_set < peer_set:
            peer_more += 1
        else:
            other += 1
        only_ours = sorted(ours_set - peer_set)
        only_peer = sorted(peer_set - ours_set)
        why = first.get(only_ours[0], "") if only_ours else ""
        examples.append([c[:9], ", ".join(changed[:2]) + (f" +{len(changed) - 2}" if len(changed) > 2 else ""),
                         str(len(only_ours)), str(len(only_peer)), why[:110]])
    n = len(rows_in)
    print(f"{n} commits of {repo} ({args.rev}, first parent) compared; skipped: "
          f"{', '.join(f'{v} ({k})' for k, v in skipped.items()) or 'none'}\n")
    print_table(["commit", "changed", "only ours", "only peer", "why ours selects its first extra leg"], examples[:args.show])
    print(f"\nsame selection on {agree} of {n} commits ({both_empty} of them build nothing); ours selects more on "
          f"{ours_more}, the peer more on {peer_more}, each some the other does not on {other}; legs built in all: "
          f"ours {legs_ours}, peer {legs_peer}; our selection alone: median {median(t_ours):.2f} s per commit")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (default %(default)s)")
    ap.add_argument("--packages", type=int, default=300, help="Go packages in the generated module (default %(default)s)")
    ap.add_argument("--docs", type=int, default=1500, help="documentation pages in the generated tree (default %(default)s)")
    ap.add_argument("--scenarios", action="store_true", help="compare both on every scenario of tests/change_scenarios.py")
    ap.add_argument("--replay", metavar="REPO", help="compare both on the last --commits commits of a LocalAI clone")
    ap.add_argument("--commits", type=int, default=100, help="with --replay: commits to compare (default %(default)s)")
    ap.add_argument("--rev", default="HEAD", help="with --replay: the commit to start from (default %(default)s)")
    ap.add_argument("--show", type=int, default=40, help="with --replay: differing commits to list (default %(default)s)")
    ap.add_argument("--localai", metavar="PATH", default=os.environ.get(ENV_TREE, ""),
                    help=f"a LocalAI tree: its filter ({PEER_FILE}) and real Dockerfiles (default ${ENV_TREE})")
    args = ap.parse_args()
    if shutil.which("node") is None:
        print("node is needed to run LocalAI's filter", file=sys.stderr)
        return 2
    if not args.localai:
        print(f"name a LocalAI tree with --localai PATH (or {ENV_TREE}): the peer is its {PEER_FILE}", file=sys.stderr)
        return 2
    global PEER
    args.tree = LocalAITree(Path(args.localai).resolve())
    try:
        PEER = args.tree.path(PEER_FILE)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.scenarios:
        return scenarios(args)
    if args.replay:
        return replay(args)
    return timing(args)


if __name__ == "__main__":
    sys.exit(main())
