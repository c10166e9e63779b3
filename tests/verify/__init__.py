"""Tests of ci/verify/."""
