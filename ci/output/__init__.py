"""What users see: live progress, tables and Markdown for job summaries."""
