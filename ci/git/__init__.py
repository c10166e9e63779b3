"""git, read-only (adapter): the checkout's ref, source labels, diffs, and the trees of revisions."""
