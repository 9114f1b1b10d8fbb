"""The one transaction block: ``BEGIN`` … ``COMMIT``, or ``ROLLBACK`` on any error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def in_transaction(cur: Any) -> Iterator[Any]:
    """``BEGIN`` … ``COMMIT`` on ``cur``, ``ROLLBACK`` on any error: the one transaction block,
    for synchronous cursors (scripts, the CLI, migrations) and ``Database.transaction``."""
    cur.execute("BEGIN TRANSACTION")
    try:
        yield cur
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")
