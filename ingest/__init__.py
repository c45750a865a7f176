"""The ingest pipeline: read, validate, map and post uploaded files, and report on them."""
