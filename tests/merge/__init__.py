"""Tests of ci/merge/."""
