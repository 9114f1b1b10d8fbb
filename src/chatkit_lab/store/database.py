"""One DuckDB file, shared by the threads of this process and, by taking turns, other processes.

DuckDB lets only one process open a file for writing. So a ``Database`` holds its connection
only while it is used and closes it after ``release_after`` idle seconds; a process that finds
the file locked waits and retries (up to ``lock_timeout``) instead of failing. A waiting process
touches ``<file>.wait``; a holder that sees a fresh touch lets go at its next release point and
stays away briefly, so a busy process cannot starve another, and waiters get the file in the
order they came (``queue.WaitQueue``). Each thread gets its own cursor,
because a DuckDB connection must not be used by two threads at once.

On the lab's loop every coroutine shares that thread's cursor, so ``acursor`` lets one task at a
time use it (re-entrantly): a coroutine's ``transaction()`` cannot take in another's writes.
``generation`` changes whenever the file may have been written by someone else (a new
connection, or a synchronous cursor that may have written): caches of the store are kept per
generation.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import duckdb

from ..errors import DatabaseBusyError, StreamSentenceError
from .queue import WaitQueue
from .schema import migrate
from .transaction import in_transaction

log = logging.getLogger(__name__)

_LOCK_HELD = re.compile(r"lock", re.IGNORECASE)
WAITER_FRESH = 0.5  # seconds a waiter's touch counts as "someone is waiting"
YIELD_FOR = 0.2  # longer than the waiters' longest backoff, so one of them gets the file
MIN_LEASE = 0.2  # seconds a process keeps the file once it has it: opening it costs tens of ms
# New files get 64 KiB blocks instead of DuckDB's 256 KiB. A lab has two dozen tables and each
# keeps partly filled blocks, so a small lab's file was mostly empty space (100 messages of 10 KB:
# 5.5 MB with 256 KiB blocks, 2.5 MB with 64 KiB; turns, scans and exports as fast: make bench).
# A file keeps the block size it was made with.
BLOCK_SIZE = 65536


_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # A kernel or script exiting leaves the file closed cleanly, not mid-lease.
    for db in list(_OPEN):
        db.close()


def connect(path: str, **kwargs: object) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect`` with this package's settings for a file it creates (``BLOCK_SIZE``)."""
    return duckdb.connect(path, config={"default_block_size": str(BLOCK_SIZE)}, **kwargs)  # type: ignore[arg-type]


def file_in_the_way(path: Path) -> Path | None:
    """A file where ``path`` needs a folder (``mkdir`` says only "File exists")."""
    return next((p for p in path.parents if p.is_file()), None)


def unusable(path: str, exc: duckdb.Error | OSError | None = None) -> StreamSentenceError:
    """Why ``path`` cannot be a lab's database: DuckDB's or the system's reason, or (``exc`` None) that
    DuckDB opened an existing CSV, JSON or Parquet file as a view in memory, where every write is lost at close."""
    if Path(path).is_dir():
        return StreamSentenceError(f"{path} is a directory: give a database file in it, such as {Path(path) / 'chatkit.duckdb'}.")
    if isinstance(exc, OSError) or (exc is not None and "Permission denied" in str(exc)):
        file = file_in_the_way(Path(path))
        reason = f"{file} is a file, not a folder" if file else exc.strerror if isinstance(exc, OSError) else "Permission denied"
        if Path(path).exists():
            return StreamSentenceError(f"Cannot open {path}: {reason}. Make it writable for this user, or choose another path.")
        return StreamSentenceError(f"Cannot make {path}: {reason}. Choose a path in a folder you can write.")
    if exc is None:
        return StreamSentenceError(f"{path} is a data file, not a DuckDB database: DuckDB opens it as a view in memory, so what a lab "
                                   "wrote there would be lost at close. Give a .duckdb file (a new path starts one); a JSONL export "
                                   "loads with lab.import_jsonl(path) or chatkit-lab import.")
    reason = str(exc).splitlines()[0].removeprefix("IO Error: ").rstrip("!.")
    return StreamSentenceError(f"Cannot open {path} as a DuckDB database: {reason}. Give a .duckdb file a lab wrote, or a new path to start one.")


def is_lock_conflict(exc: Exception) -> bool:
    # DuckDB reports a file held by another process only as an IOException saying so.
    return isinstance(exc, duckdb.IOException) and bool(_LOCK_HELD.search(str(exc)))


# The databases this task holds the loop's cursor of, and those it has a transaction open on.
_HELD: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("chatkit_lab_db_held", default=frozenset())
_IN_TRANSACTION: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("chatkit_lab_db_transaction", default=frozenset())


class Database:
    """A DuckDB file opened on demand. Use ``with db.cursor() as cur`` (or ``async with
    db.acursor()`` on an event loop, which waits for a lock without blocking the loop)."""

    dialect = "duckdb"

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        release_after: float = 0.5,
        lock_timeout: float = 30.0,
    ) -> None:
        self.in_memory = str(path) == ":memory:"
        # "~/chats.duckdb": DuckDB expands it, and the folder made for it was a "~" in the cwd.
        self.path = str(path) if self.in_memory else str(Path(path).expanduser())
        self.release_after = release_after
        self.lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._cursors: dict[int, duckdb.DuckDBPyConnection] = {}
        self._users = 0
        self._last_used = 0.0
        self._timer: threading.Timer | None = None
        self._migrated = False
        self._closed = False
        self._yield_until = 0.0
        self._lease_started = 0.0
        self._wait_file = self.path + ".wait"
        self._queue = WaitQueue(self.path)
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        self.generation = 0
        if not self.in_memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise unusable(self.path, exc) from None
        _OPEN.add(self)

    # -- acquiring -------------------------------------------------------------------------
    def _try_acquire(self, *, wait: bool = True) -> duckdb.DuckDBPyConnection | None:
        """A cursor for this thread, or None when another process holds the file or an earlier
        waiter is due to have it (``wait``: this call retries, so it queues for the file)."""
        with self._lock:
            if self._closed:
                raise DatabaseBusyError(f"The database {self.path} is closed; create a new lab.")
            if self._con is None:
                if not self.in_memory and (time.monotonic() < self._yield_until or self._queue.ahead()):
                    if wait:
                        self._signal_waiting()
                    return None
                try:
                    con = connect(self.path)
                except duckdb.Error as exc:
                    if is_lock_conflict(exc):
                        if wait:
                            self._signal_waiting()
                        return None
                    raise unusable(self.path, exc) from None
                self._queue.leave()
                if not self._migrated:
                    if not self.in_memory and con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone() == (None,):
                        con.close()
                        raise unusable(self.path)
                    migrate(con)
                    self._migrated = True
                self._con = con
                self._lease_started = time.monotonic()
                self.generation += 1
            tid = threading.get_ident()
            cur = self._cursors.get(tid)
            if cur is None:
                cur = self._cursors[tid] = self._con.cursor()
            self._users += 1
            return cur

    def _give_up(self, waited: float) -> DatabaseBusyError:
        """Stop waiting (the ticket goes back) and say why, for the caller to raise."""
        self._queue.leave()
        return DatabaseBusyError(
            f"The database file {self.path} stayed locked by another process for {waited:.0f} s. "
            "Close the other lab or kernel using it (lab.close()), or use another db= file."
        )

    @contextmanager
    def cursor(self, *, invalidate: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """This thread's cursor, waiting (blocking) while another process holds the file.
        ``invalidate``: what is done with it may write threads or items (a user's SQL, an
        import), so the store's caches start afresh."""
        start, delay = time.monotonic(), 0.005
        while (cur := self._try_acquire()) is None:
            if time.monotonic() - start > self.lock_timeout:
                raise self._give_up(time.monotonic() - start)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            yield cur
        finally:
            if invalidate:
                self.generation += 1
            self._release()

    @contextmanager
    def cursor_now(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """This thread's cursor if the file can be had without waiting, else None (another
        process holds it): for checks that may be skipped rather than block the loop."""
        cur = self._try_acquire(wait=False)
        try:
            yield cur
        finally:
            if cur is not None:
                self._release()

    def _gate(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Lock()
        return gate

    @asynccontextmanager
    async def acursor(self) -> AsyncIterator[duckdb.DuckDBPyConnection]:
        """The loop thread's cursor, for one task at a time (re-entrant within a task); waits
        without blocking the loop while another process holds the file."""
        if id(self) in _HELD.get():  # this task holds it already (a store call inside a transaction)
            cur = self._try_acquire()
            if cur is None:  # the connection is open while it is held, so this cannot wait
                raise self._give_up(0)
            try:
                yield cur
            finally:
                self._release()
            return
        async with self._gate():
            token = _HELD.set(_HELD.get() | {id(self)})
            try:
                start, delay = time.monotonic(), 0.005
                while (cur := self._try_acquire()) is None:
                    if time.monotonic() - start > self.lock_timeout:
                        raise self._give_up(time.monotonic() - start)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.1)
                try:
                    yield cur
                finally:
                    self._release()
            finally:
                _HELD.reset(token)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[duckdb.DuckDBPyConnection]:
        """``BEGIN`` … ``COMMIT`` on the loop's cursor, ``ROLLBACK`` on any error or cancel. Store
        calls (and transactions) made inside join it; other coroutines wait until it ends."""
        async with self.acursor() as cur:
            if id(self) in _IN_TRANSACTION.get():
                yield cur  # joins the enclosing transaction
                return
            token = _IN_TRANSACTION.set(_IN_TRANSACTION.get() | {id(self)})
            try:
                with in_transaction(cur):
                    yield cur
            except BaseException:
                self.generation += 1  # what the store cached inside it was rolled back
                raise
            finally:
                _IN_TRANSACTION.reset(token)

    # -- releasing -------------------------------------------------------------------------
    def _signal_waiting(self) -> None:
        self._queue.join()
        try:
            Path(self._wait_file).touch()
        except OSError:
            pass

    def _someone_waits(self) -> bool:
        try:
            return time.time() - os.stat(self._wait_file).st_mtime < WAITER_FRESH
        except OSError:
            return False

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            self._last_used = time.monotonic()
            if self.in_memory or self._closed or self._users:
                return
            if self._someone_waits():
                young = MIN_LEASE - (time.monotonic() - self._lease_started)
                if young <= 0:
                    self._yield()
                elif self._timer is None:
                    self._schedule(young)  # a lease runs a few statements before it is handed over
            elif self._timer is None:
                self._schedule(self.release_after)

    def _yield(self) -> None:
        self._disconnect()
        self._yield_until = time.monotonic() + YIELD_FOR

    def _schedule(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._release_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _release_if_idle(self) -> None:
        with self._lock:
            self._timer = None
            if self._con is None or self._closed:
                return
            now = time.monotonic()
            if self._users:
                self._schedule(0.01 if self._someone_waits() else self.release_after)
            elif self._someone_waits() and now - self._lease_started >= MIN_LEASE:
                self._yield()
            elif now - self._last_used >= self.release_after:
                self._disconnect()
            else:
                self._schedule(max(min(self.release_after - (now - self._last_used), MIN_LEASE), 0.01))

    def _disconnect(self) -> None:
        for cur in self._cursors.values():
            cur.close()
        self._cursors.clear()
        if self._con is not None:
            self._con.close()
            self._con = None

    def in_transaction(self) -> bool:
        """Whether the calling task is inside this database's ``transaction()``."""
        return id(self) in _IN_TRANSACTION.get()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called: the file cannot be used again through this object."""
        return self._closed

    @property
    def is_open(self) -> bool:
        """Whether this process holds the file right now (other processes must wait)."""
        return self._con is not None

    def close(self) -> None:
        """Close the file for good (waits for nothing: callers finish their work first)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._disconnect()
            self._queue.leave()
            self._closed = True
