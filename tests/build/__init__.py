"""Tests of ci/build/."""
