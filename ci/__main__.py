"""``python -m localai_ci <command> ...``: the same front-end as the nox sessions (see :mod:`localai_ci.cli`)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
