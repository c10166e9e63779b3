"""Dockerfiles as BuildKit reads them: parsing, ARG expansion, stage resolution, engine features, ``.dockerignore`` (pure core)."""
