"""The twilio client smsledger uses, shared by ingest (sending, Verify) and analytics (Lookup).

A layer of its own below both: they may not import each other (the import-linter contracts in
pyproject.toml)."""
