"""Per-arch fan-out / fan-in pipelines for multi-arch container images.

Four layers -- pure core, adapters, verbs, wrappers -- whose imports only point down.
docs/ARCHITECTURE.md is the one home of the module list: which layer each module is in and
what it owns (tests/test_architecture.py checks it against the code).
"""
