"""Tests of ci/output/."""
