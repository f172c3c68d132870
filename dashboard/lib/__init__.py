"""Data access for the dashboard: per-process store handles and per-run indexes."""
