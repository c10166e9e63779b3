"""Tests of ci/oci/."""
