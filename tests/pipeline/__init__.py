"""Tests of ci/pipeline/."""
