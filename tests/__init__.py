"""The test suite, a package: its modules import as ``tests.<package>.test_<module>`` (pytest's
default ``prepend`` import mode then puts the repository root on ``sys.path``, never ``tests/`` or
one of its folders, so a folder named like a distribution -- ``docker``, ``git``, ``dockerfile`` --
never stands in for it). Helpers are in :mod:`tests.support`."""
