"""Stores implementing ChatKit's Store (and AttachmentStore) contract."""

from .duckdb import DuckDBStore
from .memory import MemoryStore

__all__ = ["DuckDBStore", "MemoryStore"]
