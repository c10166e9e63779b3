"""GitHub Actions: the environment (event, outputs, summaries), job matrices, digest artifacts."""
