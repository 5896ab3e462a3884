"""Backbone features computed once to disk and reused by every head, sweep and rerun."""

from transfer.features.cache import CacheStats, FeatureCache
from transfer.features.config import FeatureConfig
from transfer.features.extract import extract_views

__all__ = ["CacheStats", "FeatureCache", "FeatureConfig", "extract_views"]
