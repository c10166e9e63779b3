"""Per-arch fan-out / fan-in pipelines for multi-arch container images.

Layers (imports only point down):
1. pure core: errors, platforms, reference, naming, families, matrix, lint, split,
   tags, manifest, verification -- no Docker SDK, no network, no env reads;
2. adapters: engine (Docker SDK), registry (OCI distribution), github (Actions env),
   artifacts (digest files on disk);
3. verbs: build, publish, merge, inspect, pipeline;
4. wrappers: tasks.py (invoke) and noxfile.py (nox) only parse arguments.
"""
