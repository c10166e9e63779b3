"""Tests of ci/dockerfile/."""
