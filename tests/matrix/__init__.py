"""Tests of ci/matrix/."""
