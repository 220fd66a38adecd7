"""The Streamlit dashboard: reads only the published DuckDB snapshot."""
