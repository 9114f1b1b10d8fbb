"""What the store has read or written while this process holds the DuckDB file.

While a process holds the file no other process can write it, so the rows it has seen stay true
until the lease ends (``Database.generation`` changes then, and when a synchronous cursor that may
have written is used). Within a lease, the store answers ``load_thread`` and the newest page of a
thread's items from here, and knows which threads a user owns, which saves three of a turn's
five statements. Rows are kept as the JSON text the database holds, so every read parses afresh
and no caller can change a cached row. Only the ``THREADS_KEPT`` threads used last are kept: a
server's memory does not grow with the threads it has served (a lease can last for days).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

TAIL = 200  # the newest items kept per thread
THREADS_KEPT = 256  # threads kept, the ones used last (a forgotten one costs a statement or two)


@dataclass
class _Tail:
    """A thread's newest items, newest first: (id, created_at, data). ``complete``: all of them."""

    rows: list[tuple[str, datetime, str]] = field(default_factory=list)
    complete: bool = False


class LeaseCache:
    def __init__(self) -> None:
        self.generation = -1
        self._threads: dict[str, tuple[str, str]] = {}  # thread id -> (user id, data)
        self._tails: dict[str, _Tail] = {}

    def fresh(self, generation: int) -> LeaseCache:
        """This cache, emptied when the lease it describes has ended."""
        if generation != self.generation:
            self.generation = generation
            self._threads.clear()
            self._tails.clear()
        return self

    # -- threads -------------------------------------------------------------------------------
    def thread(self, thread_id: str, user_id: str) -> str | None:
        entry = self._threads.pop(thread_id, None)
        if entry is None:
            return None
        self._threads[thread_id] = entry  # used last now (a dict keeps insertion order)
        return entry[1] if entry[0] == user_id else None

    def owned(self, thread_id: str, user_id: str) -> bool:
        return self.thread(thread_id, user_id) is not None

    def put_thread(self, thread_id: str, user_id: str, data: str) -> None:
        self._threads.pop(thread_id, None)
        self._threads[thread_id] = (user_id, data)
        while len(self._threads) > THREADS_KEPT:
            self.drop_thread(next(iter(self._threads)))

    def drop_thread(self, thread_id: str) -> None:
        self._threads.pop(thread_id, None)
        self._tails.pop(thread_id, None)

    # -- items ---------------------------------------------------------------------------------
    def forget_items(self, thread_id: str) -> None:
        self._tails.pop(thread_id, None)

    def newest(self, thread_id: str, limit: int) -> tuple[list[tuple[str, str]], bool] | None:
        """The newest ``limit`` items (id, data) and whether there are more, when known."""
        tail = self._tails.get(thread_id)
        if tail is None or (len(tail.rows) <= limit and not tail.complete):
            return None
        return [(i, d) for i, _, d in tail.rows[:limit]], len(tail.rows) > limit

    def put_newest(self, thread_id: str, rows: list[tuple[str, datetime, str]], complete: bool) -> None:
        if thread_id in self._threads:  # a thread forgotten is not read from here: neither are its items
            self._tails[thread_id] = _Tail(rows[:TAIL], complete and len(rows) <= TAIL)

    def added(self, thread_id: str, item_id: str, created_at: datetime, data: str) -> None:
        """A new item (the highest seq): the newest one unless it claims an earlier time."""
        tail = self._tails.get(thread_id)
        if tail is None:
            return
        if tail.rows and created_at < tail.rows[0][1]:
            del self._tails[thread_id]  # it sorts somewhere inside: read the page again
            return
        tail.rows.insert(0, (item_id, created_at, data))
        if len(tail.rows) > TAIL:
            tail.rows.pop()
            tail.complete = False

    def replaced(self, thread_id: str, item_id: str, data: str) -> None:
        tail = self._tails.get(thread_id)
        if tail is not None:
            tail.rows = [(i, t, data if i == item_id else d) for i, t, d in tail.rows]

    def removed(self, thread_id: str, item_id: str) -> None:
        tail = self._tails.get(thread_id)
        if tail is not None:
            tail.rows = [row for row in tail.rows if row[0] != item_id]
