"""The verb behind ``invoke matrix.github``: reads the matrix, git and the changed files, writes
the step outputs and the job summary.

The planning itself is pure and lives below: the job matrices in :mod:`ci.gha_matrix`, the
change detection in :mod:`ci.changes`. This module is where the files, the git checkout
(:mod:`ci.git`, :mod:`ci.worktree`) and the GitHub Actions environment (:mod:`ci.github`) meet them.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from ..changes.gomod import ModuleGraphs, Unavailable
from ..changes.gotool import GoToolchain
from ..changes.select import Base, Selection, is_null_base, select_all, select_legs
from ..errors import UserError
from ..git.repo import Git, Runner
from ..git.worktree import checkout_tree
from ..matrix.model import Matrix, load_matrix
from ..matrix.naming import Family
from ..output.console import say
from ..output.escape import terminal_text
from ..settings import load_settings
from .actions import write_outputs, write_summary
from .jobs import DEFAULT_SHARDS, JobPlan, describe, explain, outputs, plan, summary


def read_changed_files(path: str | Path) -> list[str]:
    """A newline-separated list of repository-relative paths (blank lines ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"--changed-files {path}: no such file; write one path per line "
                        "(e.g. `git diff --name-only BASE...HEAD > changed.txt`)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--changed-files {path}: cannot read it: {exc}") from exc
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        name = line.strip()
        if not name:
            continue
        if name.startswith("/") or ".." in name.replace("\\", "/").split("/"):
            raise UserError(f"--changed-files {path} line {number}: {name[:200]!r} is not a repository-relative "
                            "path; list paths as `git diff --name-only BASE...HEAD` prints them (a/b.go, no leading "
                            "'/' and no '..')")
        out.append(name)
    return out


# --- git-backed selection -----------------------------------------------------------------------

def git_base(git: Git, base: str) -> Base:
    """The base revision ``BASE...HEAD`` diffs from: the merge base of BASE and HEAD."""
    rev = git.merge_base(base) or base

    def read(path: str) -> str | None:
        data = git.show(rev, path)
        if isinstance(data, str):
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return Base(name=rev[:12], reader=read, problem=f"cannot read the base revision {rev[:12]}")


def go_toolchain(env: Mapping[str, str] | None) -> ModuleGraphs | Unavailable | None:
    """The Go toolchain ``env`` names (``CI_GO``, else ``go`` on its PATH) for the go.mod/go.sum rule,
    or why there is none; None without an environment (the rule without the toolchain)."""
    if env is None:
        return None
    return GoToolchain.from_env(env)


def select_from_git(matrix: Matrix, base: str | None, *, matrix_file: Path, strict_proto: bool = False,
                    run: Runner | None = None, go: ModuleGraphs | Unavailable | None = None) -> Selection:
    """Select legs from ``git diff BASE...HEAD``; everything for a missing base or a failed diff
    (``go``: the Go toolchain for the go.mod/go.sum rule, :func:`go_toolchain`)."""
    if is_null_base(base):
        return select_all(matrix, "no base revision (first push, tag, schedule or manual run): building everything")
    assert base is not None
    git = Git.discover(matrix_file.resolve(), run) if run is not None else Git.discover(matrix_file.resolve())
    rel = git.relpath(matrix_file)
    files = git.changed_files(base)
    if isinstance(files, str):
        return select_all(matrix, f"git diff {base}...HEAD failed ({files}): building everything")
    return select_legs(matrix, files, matrix_path=rel, tree=checkout_tree(git.root, git), base=git_base(git, base),
                       strict_proto=strict_proto, go=go)


# --- the verb -----------------------------------------------------------------------------------

def repo_root(matrix_path: str | Path, root: str | Path | None) -> Path:
    """``--root``, else the git checkout holding the matrix, else the current directory."""
    if root is not None:
        return Path(root)
    git = Git.find(Path(matrix_path).resolve())
    return git.root if git is not None else Path(".")


def plan_from_files(matrix_path: str | Path, *, family: Family = Family.BACKENDS,
                    changed_files: str | None = None, base: str | None = None, force_all: bool = False,
                    shards: int = DEFAULT_SHARDS, root: str | Path | None = None,
                    strict_proto: bool = False, env: Mapping[str, str] | None = None) -> tuple[JobPlan, float]:
    """Load, select, plan. Returns the plan and seconds taken.

    ``changed_files`` names a file with one repository-relative path per line (relative to
    ``root``: the repository the matrix's dockerfile and context paths are relative to; by
    default the git checkout holding the matrix); ``base`` runs ``git diff --name-only
    BASE...HEAD``; neither builds everything. ``env``: the environment whose Go toolchain (and
    module proxy settings) the go.mod/go.sum rule asks; None: the rule without the toolchain.
    """
    started = time.perf_counter()
    if changed_files is not None and base is not None:
        raise UserError("pass either --changed-files FILE or --base REF, not both")
    matrix = load_matrix(matrix_path, family)
    if force_all:
        sel = select_all(matrix, "--force-all: building everything")
    elif changed_files is not None:
        repo = repo_root(matrix_path, root)
        if not repo.is_dir():
            raise UserError(f"--root {repo}: no such directory; pass the repository the matrix's paths are relative to")
        mpath = Path(matrix_path)
        try:
            rel = mpath.resolve().relative_to(repo.resolve()).as_posix()
        except ValueError:
            rel = mpath.as_posix()
        sel = select_legs(matrix, read_changed_files(changed_files), matrix_path=rel, tree=checkout_tree(repo),
                          strict_proto=strict_proto, go=go_toolchain(env))
    elif base is not None:
        sel = select_from_git(matrix, base, matrix_file=Path(matrix_path), strict_proto=strict_proto,
                              go=go_toolchain(env))
    else:
        sel = select_all(matrix, "no --changed-files or --base: building everything")
    result = plan(matrix, sel, shards)
    return result, time.perf_counter() - started


def write_github_matrices(*, matrix: str | None, family: str, changed_files: str | None, base: str | None,
                          force_all: bool, shards: int, github_output: str | None, env: Mapping[str, str],
                          out: TextIO, err: TextIO, explain_suffixes: Sequence[str] = (), root: str | None = None,
                          strict_proto: bool = False) -> JobPlan:
    """``invoke matrix.github``: plan, then write the step outputs (``--github-output``,
    ``$GITHUB_OUTPUT``, else ``out``), the job summary, and a one-line description on ``err``.

    With ``explain_suffixes`` the explanation goes to ``out`` and the outputs only to a file
    (``--github-output`` or ``$GITHUB_OUTPUT``), never mixed into it.
    """
    try:
        fam = Family(family)
    except ValueError as exc:
        raise UserError(f"--family {family!r}: use backends or server") from exc
    path = matrix or str(load_settings(".").matrix_path(fam))
    result, seconds = plan_from_files(path, family=fam, changed_files=changed_files, base=base,
                                      force_all=force_all, shards=shards, root=root, strict_proto=strict_proto,
                                      env=env)
    text_of_explain = ""
    if explain_suffixes:
        loaded = load_matrix(path, fam)
        text_of_explain = explain(result, loaded, explain_suffixes,
                                  tree=lambda: checkout_tree(repo_root(loaded.path, root)))
    # file names and module paths come from the repository: everything below goes through say()
    if explain_suffixes and not (github_output or env.get("GITHUB_OUTPUT")):
        say(text_of_explain, out, end="")
    else:
        text = write_outputs(outputs(result), env, github_output)
        if text is not None:
            say(text, out, end="")
        if text_of_explain:
            say(text_of_explain, out, end="")
    write_summary(summary(result, seconds), env)
    for note in result.selection.notes:
        say(f"note: {terminal_text(note, newlines=False)}", err)
    say(describe(result, seconds), err)
    return result
