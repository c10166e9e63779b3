"""Git adapter: read-only queries of a checkout, argument lists only (never a shell): the
checkout's ref (tags), where a build comes from (labels), change detection's diffs and reads."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import UserError


def git_output(root: str | Path, *args: str, timeout: float = 20) -> str:
    """``git -C root ARGS`` stdout stripped; "" when git is missing, fails or times out."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def checkout_ref(root: str | Path) -> tuple[str, str]:
    """(ref, sha) of a checkout as CI would see them: ``refs/heads/<branch>`` and HEAD's sha;
    empty strings when ``root`` is not a git checkout (or HEAD is detached: no ref)."""
    return git_output(root, "symbolic-ref", "-q", "HEAD"), git_output(root, "rev-parse", "HEAD")


# --- where a build comes from (its OCI labels) ------------------------------------------------
@dataclass(frozen=True)
class SourceInfo:
    """Where the build comes from, for the OCI labels."""

    url: str = ""
    revision: str = ""
    created: str = ""  # RFC 3339, UTC


def _strip_userinfo(url: str) -> str:
    """Never leak a token embedded in a remote URL (https://user:token@host/...)."""
    try:
        p = urlsplit(url)
    except ValueError:
        return ""
    if p.scheme in ("http", "https", "ssh") and "@" in p.netloc:
        return urlunsplit((p.scheme, p.netloc.rsplit("@", 1)[1], p.path, p.query, p.fragment))
    return url if p.scheme else ""


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_info(root: Path, env: Mapping[str, str], now: Callable[[], float] = time.time) -> SourceInfo:
    """Labels' source: GitHub env, else git. ``created`` from SOURCE_DATE_EPOCH, else the HEAD commit
    time (so rebuilding an unchanged commit gives the same config), else now."""
    url = ""
    if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY"):
        url = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}"
    else:
        url = _strip_userinfo(git_output(root, "remote", "get-url", "origin"))
    revision = env.get("GITHUB_SHA") or git_output(root, "rev-parse", "HEAD")
    epoch_text = env.get("SOURCE_DATE_EPOCH") or git_output(root, "log", "-1", "--format=%ct")
    try:
        created = _rfc3339(int(epoch_text))
    except ValueError:
        created = _rfc3339(int(now()))
    return SourceInfo(url=url, revision=revision, created=created)


# --- change detection's queries ---------------------------------------------------------------

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(list(args), capture_output=True, check=False, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(args), 127, b"", str(exc).encode())


def check_ref(ref: str) -> str:
    """Refuse a revision that git could read as an option or a path."""
    if ref.startswith("-") or any(c.isspace() or ord(c) < 32 for c in ref) or ":" in ref:
        raise UserError(f"--base {ref!r} is not a git revision; pass a commit SHA or a ref name such as origin/main")
    return ref


def _error(proc: subprocess.CompletedProcess[bytes], what: str) -> str:
    return proc.stderr.decode("utf-8", "replace").strip() or f"{what} exited {proc.returncode}"


@dataclass(frozen=True)
class Git:
    """``git`` in one repository."""

    root: Path
    run: Runner = _run

    @classmethod
    def discover(cls, start: Path, run: Runner = _run) -> Git:
        """The repository containing ``start``; UserError when it is not in one."""
        where = start if start.is_dir() else start.parent
        proc = run(["git", "-C", str(where), "rev-parse", "--show-toplevel"])
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip()
            raise UserError(f"--base needs a git checkout, but {where} is not in one ({msg}); "
                            "use --changed-files FILE instead")
        return cls(Path(proc.stdout.decode().strip()), run)

    @classmethod
    def find(cls, start: Path, run: Runner = _run) -> Git | None:
        """The repository containing ``start``, or None."""
        try:
            return cls.discover(start, run)
        except UserError:
            return None

    def changed_files(self, base: str) -> list[str] | str:
        """``git diff --name-only BASE...HEAD`` (renames as delete + add); an error text on failure."""
        proc = self.run(["git", "-C", str(self.root), "diff", "--name-only", "--no-renames", "-z",
                         f"{check_ref(base)}...HEAD", "--"])
        if proc.returncode != 0:
            return _error(proc, "git diff")
        return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]

    def merge_base(self, base: str) -> str | None:
        """The commit ``BASE...HEAD`` diffs from (what the changed files changed since)."""
        proc = self.run(["git", "-C", str(self.root), "merge-base", check_ref(base), "HEAD"])
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def show(self, rev: str, path: str) -> bytes | str:
        """File contents at ``rev``; an error text when git cannot show it."""
        proc = self.run(["git", "-C", str(self.root), "show", f"{check_ref(rev)}:{path}"])
        if proc.returncode != 0:
            return _error(proc, "git show")
        return proc.stdout

    def tracked_files(self) -> list[str] | None:
        """Paths git tracks in the checkout (``git ls-files``); None when git cannot list them."""
        proc = self.run(["git", "-C", str(self.root), "ls-files", "-z", "--cached"])
        if proc.returncode != 0:
            return None
        return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]

    def relpath(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError as exc:
            raise UserError(f"{path} is outside the git repository {self.root}; pass a matrix inside it") from exc
