"""The one transaction block: ``BEGIN`` … ``COMMIT``, or ``ROLLBACK`` on any error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


@contextmanager
def in_transaction(cur: Any, begin: str = "BEGIN TRANSACTION") -> Iterator[Any]:
    """``BEGIN`` … ``COMMIT`` on ``cur``, ``ROLLBACK`` on any error: the one transaction block,
    for synchronous cursors (scripts, the CLI, migrations) and ``Database.transaction``.
    ``begin``: another start (PostgreSQL's ``BEGIN ISOLATION LEVEL ...``)."""
    cur.execute(begin)
    try:
        yield cur
    except BaseException:
        try:
            cur.execute("ROLLBACK")
        except Exception:  # a connection that broke took its transaction with it: the first error says why
            log.debug("ROLLBACK failed", exc_info=True)
        raise
    cur.execute("COMMIT")
