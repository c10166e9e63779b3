"""What Python 3.10 lacks and the package uses (pure core): ``enum.StrEnum`` (3.11).

One definition for the whole package, so every supported Python (3.10 to 3.13) runs the same code.
"""
from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - exercised by the 3.10 run of the tests
    from enum import Enum

    class StrEnum(str, Enum):
        """``enum.StrEnum`` of Python 3.11: members are strings, ``str(member)`` is the value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str.__format__(str(self.value), spec)

__all__ = ["StrEnum"]
