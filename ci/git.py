"""Git adapter: read-only queries of a checkout, argument lists only (never a shell)."""
from __future__ import annotations

import subprocess
from pathlib import Path


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
