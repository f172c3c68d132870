"""Lexiscope's dashboard: a multi-page Dash app over the store (never imports torch)."""
