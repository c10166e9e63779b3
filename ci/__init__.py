"""Per-arch fan-out / fan-in pipelines for multi-arch container images.

Layers (imports only point down; docs/ARCHITECTURE.md names every module):
1. pure core: errors, platforms, reference, naming, families, matrix, dockerfile, manifest,
   lint, split, references, tags, report, state, gha_matrix, changes, inputs, tree, pathrefs, makefile,
   gograph, dockerignore, proto, workflowcalls -- no Docker SDK, no network, no env reads;
2. adapters: engine (Docker SDK), builder (docker buildx: the build seam), registry (OCI
   distribution), blobcache, github (Actions env), artifacts (digest files), git, worktree, textfile,
   disk, imagetools, localregistry, baseimage, progress;
3. verbs: feasibility, build, publish, merge, inspection, audit, sign, pipeline;
4. wrappers: tasks.py (invoke), noxfile.py (nox) and ci/cli.py only parse arguments.
"""
