"""Backbone features computed once and reused by every head."""

from transfer.features.extract import extract_features

__all__ = ["extract_features"]
