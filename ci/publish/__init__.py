"""Verb: publish a built leg by digest to every registry."""
