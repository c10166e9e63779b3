"""Verbs: inspect published lists; audit the catalog against the matrix."""
