"""``python -m ci <command> ...``: the same front-end as the nox sessions (see :mod:`ci.cli`)."""
from __future__ import annotations

import sys

from ci.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
