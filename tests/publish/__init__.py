"""Tests of ci/publish/."""
