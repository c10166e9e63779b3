"""Benchmark (not a test): change detection, side by side with LocalAI's own filter.

Three runs, each printing a table:

* default: the real 2026-08 matrix (457 legs, 62 includeDarwin entries; ``tests/resources/localai/``) on a
  generated LocalAI-sized tree (``tests/support/localai_scale.py``: LocalAI's backend Dockerfiles, every
  backend directory, a Go module of ``--packages`` packages, ~``--docs`` pages, a git
  repository). For each change: ``invoke matrix.github`` end to end (a fresh process, as the
  workflow runs it: ``--base`` against a real commit, and ``--changed-files``), the selection
  alone in-process, and LocalAI's ``filterMatrix`` (``scripts/lib/backend-filter.mjs`` of the LocalAI
  tree named by ``--localai``, run by node: the process end to end, and one call alone), with what each selects;
* ``--scenarios``: every scenario of ``tests/support/change_scenarios.py`` (LocalAI's 41-test suite in
  this project's terms plus this project's own) through both, on the fixture repository,
  with the legs on which they differ;
* ``--replay REPO --commits N``: the last N first-parent commits of a LocalAI clone (a bare
  git directory will do), each diffed against its parent, both selectors on the commit's own
  tree and matrix; ``--set issue22`` replays issue 22's set instead (the 30 latest commits that
  touch code, the 8 latest go.mod/go.sum changes, the 10 latest build-script/Dockerfile changes:
  44 distinct commits at LocalAI's 82c191af). ``--go auto,off,direct`` measures the go.mod/go.sum
  rule each way: with the ``go`` on PATH and this environment's module proxy (where the module
  graph cannot be computed it falls back, and says so), without a toolchain (the fallback), and
  a lower bound that knows only each leg's direct imports. Totals: leg builds selected side by
  side with the peer, legs only one side selects, our time; every leg the peer selects and ours
  leaves out is listed with our reason.

LocalAI's filter and its real Dockerfiles come from a LocalAI tree the user names (``--localai PATH``,
default ``$CI_TEST_LOCALAI_TREE``): a LocalAI checkout, or the reference layout with the filter under
``peer/``. Nothing outside this repository is read otherwise. The peer needs no dependencies beyond node (its entry point ``changed-backends.js`` also needs
bun, js-yaml and the GitHub API, so the matrix is handed to it already parsed, as JSON: its
YAML parse is not in its times).

    python bench/bench_changes.py --localai ~/src/LocalAI [--repeat 5] [--packages 300] [--docs 1500]
    python bench/bench_changes.py --localai ~/src/LocalAI --scenarios
    python bench/bench_changes.py --localai ~/src/LocalAI --replay ~/src/LocalAI --commits 100
    python bench/bench_changes.py --localai ~/src/LocalAI --replay ~/src/LocalAI/.git --set issue22 --go auto,off,direct
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

from _common import median, print_table  # noqa: E402

from localai_ci.changes.gomod import (  # noqa: E402
    GoModError,
    ModuleFiles,
    Package,
    PackageGraph,
    parse_go_mod_file,
)
from localai_ci.changes.gotool import GoToolchain  # noqa: E402
from localai_ci.changes.inputs import Deriver  # noqa: E402
from localai_ci.changes.select import Base, Selection, leg_key, select_legs  # noqa: E402
from localai_ci.errors import MatrixError  # noqa: E402
from localai_ci.matrix.model import Matrix, parse_matrix  # noqa: E402
from tests.support.localai_ref import ENV_TREE, M2608, LocalAITree  # noqa: E402

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
    from tests.support.localai_tree import GIT_ENV

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
    from tests.support.localai_scale import build_tree, copy_matrix

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
                from localai_ci.git.repo import Git
                from localai_ci.git.worktree import checkout_tree
                from localai_ci.github.changed_jobs import git_base
                from localai_ci.matrix.model import load_matrix

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
    from localai_ci.git.worktree import checkout_tree
    from localai_ci.github.changed_jobs import select_from_git
    from localai_ci.matrix.model import load_matrix
    from tests.support.change_scenarios import OURS
    from tests.support.change_scenarios import PEER as PEER_SCENARIOS
    from tests.support.localai_tree import MATRIX_PATH, Repo

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

#: ``--set issue22``: the commit set issue 22 measured, from ``--rev`` back along the first parent
CODE_SUFFIXES = (".go", ".py", ".sh", ".c", ".cc", ".cpp", ".h", ".hpp", ".proto", ".mk", ".cmake", ".rs", ".cu")
CODE_NAMES = ("Makefile", "go.mod", "go.sum", "CMakeLists.txt")
SETS = {"issue22": (("code", 30), ("go.mod/go.sum", 8), ("build script/Dockerfile", 10))}


def _kind(path: str) -> set[str]:
    """Which of issue 22's commit kinds a changed path makes its commit."""
    name = path.rsplit("/", 1)[-1]
    out = set()
    if path.endswith(CODE_SUFFIXES) or name in CODE_NAMES or name.startswith("Dockerfile"):
        out.add("code")
    if path in ("go.mod", "go.sum"):
        out.add("go.mod/go.sum")
    if name.startswith("Dockerfile") or path.startswith((".docker/", "scripts/build/")):
        out.add("build script/Dockerfile")
    return out


def commit_set(repo: Path, rev: str, name: str, depth: int = 3000) -> list[tuple[str, tuple[str, ...]]]:
    """(commit, the kinds it was picked for) of a named set, newest first: for each kind the latest
    N first-parent commits that change such a file (a commit can be in several)."""
    wanted = dict(SETS[name])
    log = git(repo, "log", "--first-parent", "--format=@%H", "--name-only", "-n", str(depth), rev)
    commits: list[tuple[str, set[str]]] = []
    for line in log.splitlines():
        if line.startswith("@"):
            commits.append((line[1:], set()))
        elif line.strip() and commits:
            commits[-1][1].update(_kind(line.strip()))
    picked: dict[str, list[str]] = {}
    for kind, n in wanted.items():
        hits = [c for c, kinds in commits if kind in kinds][:n]
        if len(hits) < n:
            raise SystemExit(f"--set {name}: only {len(hits)} {kind} commits in the last {depth} of {rev}")
        for c in hits:
            picked.setdefault(c, []).append(kind)
    order = {c: i for i, (c, _) in enumerate(commits)}
    return sorted(((c, tuple(k)) for c, k in picked.items()), key=lambda ck: order[ck[0]])


class DirectImportsOnly:
    """A *lower bound* for the module graph, not the toolchain: the build lists are the go.mod
    requirements, and a package of another module imports nothing. A leg counts as building with
    a changed module only when its own packages import that module directly; what the toolchain
    would add through other modules' imports (gRPC importing golang.org/x/net) is missing."""

    def describe(self) -> str:
        return "direct imports only (a lower bound, no module graph)"

    def build_list(self, files: ModuleFiles) -> dict[str, str]:
        try:
            mod = parse_go_mod_file(files.go_mod)
        except GoModError:
            return {}
        return dict(mod.requires)

    def package_graph(self, files: ModuleFiles, patterns: Sequence[str], platforms: Sequence[str]) -> PackageGraph:
        mods = sorted(self.build_list(files), key=len, reverse=True)
        pkgs = {}
        for p in patterns:
            owner = next((m for m in mods if p == m or p.startswith(m + "/")), "")
            pkgs[p] = Package(path=p, module=owner, error="" if owner else "no required module provides it")
        return PackageGraph(packages=pkgs, configs=tuple(f"{pl} (direct imports)" for pl in platforms))


def go_mode(mode: str) -> tuple[str, Any]:
    """(label, what select_legs gets as ``go``) of a ``--go`` mode."""
    if mode == "off":
        return "without a toolchain", None
    if mode == "direct":
        return "direct imports only (lower bound)", DirectImportsOnly()
    if mode == "auto":
        found = GoToolchain.from_env(os.environ)
        label = f"go on PATH ({found.describe()})" if isinstance(found, GoToolchain) else f"go: {found.reason}"
        return label, found
    raise SystemExit(f"--go {mode!r}: use off, auto or direct")


def replay(args: argparse.Namespace) -> int:
    repo = Path(args.replay)
    if args.set:
        picked = commit_set(repo, args.rev, args.set)
    else:
        picked = [(c, ()) for c in git(repo, "rev-list", "--first-parent", "-n", str(args.commits), args.rev).split() if c]
    modes = [m.strip() for m in args.go.split(",") if m.strip()]
    labels = {m: go_mode(m) for m in modes}
    rows_in: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for c, kinds in picked:
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
            row: dict[str, Any] = {"commit": c, "kinds": kinds, "changed": changed, "modes": {}}
            for mode in modes:
                t = time.perf_counter()
                sel = select_legs(m, changed, matrix_path=MATRIX_FILE, tree=revs.tree, deriver=Deriver(revs.tree),
                                  base=Base(name=p[:12], reader=revs.base), go=labels[mode][1])
                seconds = time.perf_counter() - t
                linux, darwin = ours_keys(sel)
                why = {f"{e.tag_suffix} ({e.platform_tag_field})": sel.reasons.get((e.tag_suffix, e.ptag), "")
                       for e in sel.entries}
                spared = {f"{e.tag_suffix} ({e.platform_tag_field})": sel.spared.get(leg_key(e), ())
                          for e in m if leg_key(e) in sel.spared}
                row["modes"][mode] = {"linux": linux, "darwin": darwin, "seconds": seconds, "why": why,
                                      "spared": spared, "notes": [n for n in sel.notes if "go.mod" in n or "go.sum" in n]}
            cases.append(peer_case(text, changed, revs))
            rows_in.append(row)  # not the Selection: it holds every leg's inputs
        finally:
            revs.close()
    results, peer_wall = run_peer(cases, repeat=5)
    n = len(rows_in)
    print(f"{n} commits of {repo} ({args.rev}, first parent{', set ' + args.set if args.set else ''}) compared; "
          f"skipped: {', '.join(f'{v} ({k})' for k, v in skipped.items()) or 'none'}; the peer: {PEER}\n")
    if args.set:
        counts = {k: sum(1 for r in rows_in if k in r["kinds"]) for k, _ in SETS[args.set]}
        print("set: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" ({n} distinct commits)\n")
    peer_total = sum(len(res["filtered"]) + len(res["filteredDarwin"]) for res in results)
    peer_linux = sum(len(res["filtered"]) for res in results)
    per_commit: list[list[str]] = []
    totals: list[list[str]] = []
    for mode in modes:
        ours_total = only_ours = only_peer = agree = linux_total = 0
        gomod_ours = gomod_peer = 0
        missed: list[tuple[str, str, str]] = []
        for row, res in zip(rows_in, results):
            r = row["modes"][mode]
            ours_set = r["linux"] | {"darwin " + d for d in r["darwin"]}
            peer_set = set(res["filtered"]) | {"darwin " + d for d in res["filteredDarwin"]}
            ours_total += len(ours_set)
            linux_total += len(r["linux"])
            only_ours += len(ours_set - peer_set)
            only_peer += len(peer_set - ours_set)
            agree += ours_set == peer_set
            if "go.mod/go.sum" in row["kinds"]:
                gomod_ours += len(ours_set)
                gomod_peer += len(peer_set)
            plain = []
            for leg in sorted(peer_set - ours_set):
                why = "; ".join(r["spared"].get(leg, ()))
                if why:
                    missed.append((row["commit"][:9], leg, why))
                else:
                    plain.append(leg)
            if plain:
                missed.append((row["commit"][:9], f"{len(plain)} legs ({', '.join(plain[:3])}"
                               f"{', ...' if len(plain) > 3 else ''})",
                               f"none of the {len(row['changed'])} changed files is one of their inputs "
                               "(--explain lists each leg's inputs)"))
            if mode == modes[0]:
                per_commit.append([row["commit"][:9], ",".join(k.split("/")[0].split()[0] for k in row["kinds"]) or "-",
                                   ", ".join(row["changed"][:2])[:60] + (f" +{len(row['changed']) - 2}"
                                                                        if len(row["changed"]) > 2 else ""),
                                   str(len(peer_set))])
            row.setdefault("counts", []).append(f"{len(ours_set)} ({len(ours_set - peer_set)}/{len(peer_set - ours_set)})")
        secs = [row["modes"][mode]["seconds"] for row in rows_in]
        totals.append([labels[mode][0][:60], f"{ours_total} ({linux_total} Linux)", f"{peer_total} ({peer_linux} Linux)",
                       f"{ours_total / peer_total:.2f}x" if peer_total else "-", str(gomod_ours), str(gomod_peer),
                       str(only_ours), str(only_peer), str(agree), f"{median(secs):.2f}", f"{sum(secs):.1f}"])
        if missed:
            print(f"legs the peer selects and ours ({labels[mode][0]}) leaves out, with our reason:")
            for c, leg, why in missed[:args.show]:
                print(f"  {c} {leg}: {why}")
            print()
        notes = sorted({n for row in rows_in for n in row["modes"][mode]["notes"]})
        if notes and args.notes:
            print(f"go.mod/go.sum notes ({labels[mode][0]}):")
            for note in notes[:args.show]:
                print(f"  {note}")
            print()
    for line, row in zip(per_commit, rows_in):
        line.extend(row["counts"])
    print_table(["commit", "kinds", "changed", "peer"] + [f"ours: {m} (only ours/only peer)" for m in modes],
                per_commit[:args.show], right=tuple(range(3, 4 + len(modes))))
    print(f"\nthe peer (filterMatrix, node): {median([res['ms'] for res in results]):.1f} ms per commit (median of 5 "
          f"calls), {peer_wall:.1f} s for the whole node process\n")
    print_table(["ours", "leg builds", "peer", "ratio", "go.mod commits: ours", "peer", "legs only ours",
                 "only peer", "same", "s/commit", "s total"], totals, right=tuple(range(1, 11)))
    print("\nleg builds: Linux legs plus includeDarwin entries selected, summed over the commits; only ours / only "
          "peer: legs one side selects and the other does not, summed; s: our selection alone (derivation of every "
          "leg, the comparisons, the go.mod/go.sum rule with its go runs), per commit (median) and in all")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (default %(default)s)")
    ap.add_argument("--packages", type=int, default=300, help="Go packages in the generated module (default %(default)s)")
    ap.add_argument("--docs", type=int, default=1500, help="documentation pages in the generated tree (default %(default)s)")
    ap.add_argument("--scenarios", action="store_true", help="compare both on every scenario of tests/support/change_scenarios.py")
    ap.add_argument("--replay", metavar="REPO", help="compare both on the last --commits commits of a LocalAI clone")
    ap.add_argument("--commits", type=int, default=100, help="with --replay: commits to compare (default %(default)s)")
    ap.add_argument("--rev", default="HEAD", help="with --replay: the commit to start from (default %(default)s)")
    ap.add_argument("--show", type=int, default=60, help="with --replay: rows to list (default %(default)s)")
    ap.add_argument("--set", choices=sorted(SETS), help="with --replay: a named commit set instead of the last "
                    "--commits (issue22: the 30 latest commits that touch code, the 8 latest go.mod/go.sum changes, "
                    "the 10 latest build-script/Dockerfile changes)")
    ap.add_argument("--go", default="auto", help="with --replay: comma-separated modes of the go.mod/go.sum rule, each "
                    "measured: auto (the go on PATH with this environment's GOPROXY; falls back where it cannot "
                    "compute the module graph), off (no toolchain: the fallback), direct (a lower bound: the leg's own "
                    "direct imports only, no module graph) (default %(default)s)")
    ap.add_argument("--notes", action="store_true", help="with --replay: print the go.mod/go.sum notes")
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
