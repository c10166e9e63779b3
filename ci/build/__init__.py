"""Verb: plan and build one leg (and whether this builder can)."""
