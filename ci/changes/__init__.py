"""Change detection: what each leg reads (Dockerfile stages, scripts, Makefile targets, the Go import graph) and which legs a change selects (pure core; the tree and the base revision injected)."""
