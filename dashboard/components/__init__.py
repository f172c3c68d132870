"""Reusable pieces of layout: navbar, links, alerts, word search."""
