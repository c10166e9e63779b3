"""invoke tasks: thin wrappers that parse arguments, call one verb in ``ci/``, print, exit.

`invoke --list` shows every task; `invoke --help <task>` explains every option.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from invoke import Collection, Exit, task

from ci.errors import CiError

T = TypeVar("T")


def run_verb(fn: Callable[..., T], *args: object, debug: bool = False, **kwargs: object) -> T:
    """Call a verb; turn the project's errors into invoke's Exit with the error's exit status."""
    try:
        return fn(*args, **kwargs)
    except CiError as exc:
        if debug or os.environ.get("CI_DEBUG"):
            import traceback
            traceback.print_exc()
        raise Exit(f"error: {exc}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("interrupted", code=130) from None


def exit_with(code: int) -> None:
    if code:
        raise Exit(code=code)


# ---- matrix tooling (issue 2) -------------------------------------------------------------
# (section: matrix)


# ---- build and publish one leg (issue 3) ----------------------------------------------------
# (section: build)


# ---- GitHub Actions matrices (issue 5) -------------------------------------------------------
# (section: github)


# ---- whole pipeline (issue 6) ----------------------------------------------------------------
# (section: pipeline)


ns = Collection()
matrix_ns = Collection("matrix")
# (section: collections)
for _name, _obj in list(globals().items()):
    if _name.startswith("matrix_") and hasattr(_obj, "body") and _name != "matrix_ns":
        matrix_ns.add_task(_obj, name=_name[len("matrix_"):].replace("_", "-"))
    elif hasattr(_obj, "body") and getattr(_obj, "__module__", None) == __name__ and not _name.startswith("_"):
        ns.add_task(_obj)
ns.add_collection(matrix_ns)
ns.configure({"run": {"echo": False}})
_ = sys  # keep the import for tasks that print to stderr
