"""Verb: the whole fan-out/fan-in locally, make-style (``invoke pipeline``)."""
