"""Tests of ci/docker/."""
