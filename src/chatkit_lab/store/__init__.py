"""Stores implementing ChatKit's Store (and AttachmentStore) contract."""

from .duckdb import DuckDBStore
from .memory import MemoryStore
from .postgres import PostgresStore

__all__ = ["DuckDBStore", "MemoryStore", "PostgresStore"]
