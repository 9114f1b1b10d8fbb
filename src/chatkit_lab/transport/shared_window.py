"""A moving rate window kept in PostgreSQL, shared by every worker of ``serve --workers N``.

A worker's own memory would let a user who spreads requests over N connections have N times the
rate. Here each hit is a row of ``rate_hits``; a user's hits are counted under an advisory lock on
their key, so two workers cannot both let the last allowed request through, and the key's rows
older than the window are pruned as it is counted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..store.postgres_database import PostgresDatabase
from ..store.transaction import in_transaction


class SharedWindow:
    """``hit(rate, key)`` and ``reset_in(rate, key)``, like ``limits``' moving window, in the database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def hit(self, rate: Any, key: str) -> float | None:
        """Count a hit of ``key`` under ``rate``: None when allowed, else seconds until it would be."""
        name, window = rate.key_for(key), float(rate.get_expiry())
        with self.db.cursor() as cur, in_transaction(cur):
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [name])
            cur.execute("DELETE FROM rate_hits WHERE key = ? AND at <= clock_timestamp() - ?::interval", [name, timedelta(seconds=window)])
            count, first = cur.execute("SELECT count(*), min(at) FROM rate_hits WHERE key = ?", [name]).fetchone()
            if count >= rate.amount:
                waited = cur.execute("SELECT extract(epoch FROM clock_timestamp() - ?::timestamptz)", [first]).fetchone()[0]
                return max(0.0, window - float(waited))
            cur.execute("INSERT INTO rate_hits (key, at) VALUES (?, clock_timestamp())", [name])
        return None
