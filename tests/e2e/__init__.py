"""Whole-tool tests that cross the packages: the pipeline end to end, adoption through the wheel, faults, concurrency, security, the example matrices."""
