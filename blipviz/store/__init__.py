"""Stores that plug into a net's input stream (get / put): the on-disk feature cache."""

from __future__ import annotations

from . import cache
from .cache import FeatureCache, feature_cache

__all__ = ["FeatureCache", "cache", "feature_cache"]
