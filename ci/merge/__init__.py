"""Verb: merge the per-arch digests of a suffix into a manifest list in every registry."""
