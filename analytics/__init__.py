"""Analytics: the catch-up reader, the DuckDB model, rollups, hygiene rules and reports."""
