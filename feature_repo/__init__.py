"""Feast definitions for tickwatch's bar features and `get_store(settings)` to open the store."""
