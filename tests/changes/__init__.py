"""Tests of ci/changes/."""
