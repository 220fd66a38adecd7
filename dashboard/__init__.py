"""The Streamlit dashboard: reads the analytics model read-only (analytics.snapshot)."""
