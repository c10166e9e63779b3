"""Tests of ci/github/."""
