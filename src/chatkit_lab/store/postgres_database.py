"""One PostgreSQL database as the lab's log database, with the same surface as ``Database``.

The lab's code talks to its database through ``cursor()`` (a thread), ``acursor()`` and
``transaction()`` (its loop), and cursors with DuckDB's ``execute(sql, params).fetchall()/.df()``.
``PostgresDatabase`` gives the same on a psycopg connection pool, so the log writers, the frames
and ``lab.sql`` need no second copy: a ``?`` or ``$name`` in the SQL becomes psycopg's ``%s`` or
``%(name)s``, and JSON comes back as text, as DuckDB returns it. Connections are checked out per
use; within one task ``acursor`` is re-entrant (a query inside a ``transaction()`` joins it), and
two tasks never share a connection, so one coroutine's transaction cannot take in another's writes.
``PostgresStore`` has a pool of its own, so its writes are not part of such a transaction (a fork
writes its thread and items, then its lineage row).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from ..errors import DatabaseUnavailableError, ForbiddenError, NotSupportedError
from .postgres_schema import migrate_sync
from .transaction import in_transaction

# The connection this task holds, per database (pairs: a ContextVar default must not be mutable).
_HELD: contextvars.ContextVar[tuple[tuple[int, PgCursor], ...]] = contextvars.ContextVar("chatkit_lab_pg_held", default=())
_IN_TRANSACTION: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("chatkit_lab_pg_transaction", default=frozenset())


STUDENTS, TEACHERS = "chatkit_lab_students", "chatkit_lab_teachers"  # a workshop's groups (store/workshop.py)


def is_postgres_url(db: object) -> bool:
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def where_of(dsn: str) -> str:
    """The URL without its user, password and options (``?password=`` too): what may be shown and
    logged. A file's path is shown as it is."""
    if not is_postgres_url(dsn):
        return dsn
    rest = dsn.split("://", 1)[-1].split("?", 1)[0]
    return "postgresql://" + rest.rsplit("@", 1)[-1]


def to_psycopg(sql: str, params: Any) -> str:
    """DuckDB's placeholders (``?``, ``$name``) as psycopg's, and a literal ``%`` doubled; quoted
    strings, quoted names and comments are left as they are."""
    if params is None:
        return sql
    out, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = i + 1
            while end < n and not (sql[end] == c and (end + 1 >= n or sql[end + 1] != c)):
                end += 2 if sql[end] == c else 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "?":
            out.append("%s")
            i += 1
        elif c == "$" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            end = i + 1
            while end < n and (sql[end].isalnum() or sql[end] == "_"):
                end += 1
            out.append(f"%({sql[i + 1 : end]})s")
            i = end
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class PgCursor:
    """DuckDB's cursor calls the lab makes, on one psycopg connection."""

    def __init__(self, con: Any, dsn: str) -> None:
        self._con, self._dsn = con, dsn
        self._cur: Any = None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> PgCursor:
        import psycopg

        try:
            self._cur = self._con.execute(to_psycopg(sql, params), params)
        except psycopg.OperationalError as exc:  # the server went away: the pool replaces the connection
            raise unavailable(self._dsn, exc) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise refused(exc) from None
        return self

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> PgCursor:
        """DuckDB's relation call, as far as the lab uses it: run now, then ``.pl()`` or ``.df()``."""
        return self.execute(query, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """One statement for many rows (pipelined); returns the rows it affected."""
        import psycopg

        try:
            with self._con.cursor() as cur:
                cur.executemany(to_psycopg(sql, rows[0] if rows else []), rows)
                return int(cur.rowcount)
        except psycopg.OperationalError as exc:
            raise unavailable(self._dsn, exc) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise refused(exc) from None

    def batches(self, sql: str, params: Any, size: int) -> Iterator[Any]:
        """The rows of ``sql`` as DataFrames of up to ``size`` rows, from a server-side cursor:
        memory holds one batch, however many rows there are."""
        import pandas as pd

        with self._con.transaction(), self._con.cursor(name="chatkit_lab_batches") as cur:
            cur.execute(to_psycopg(sql, params), params)
            while rows := cur.fetchmany(size):
                yield pd.DataFrame(rows, columns=[d.name for d in cur.description])

    @property
    def description(self) -> Any:
        return self._cur.description if self._cur is not None else None

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount) if self._cur is not None else -1

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    def df(self) -> Any:
        import pandas as pd

        names = [d.name for d in self._cur.description or ()]
        return pd.DataFrame(self._cur.fetchall(), columns=names)

    def pl(self) -> Any:
        import polars as pl

        return pl.from_pandas(self.df())

    def register(self, name: str, frame: Any) -> None:
        raise NotSupportedError("Registering a DataFrame as a table is DuckDB's; it is not available on PostgreSQL.")


def problem(dsn: str, exc: Exception) -> tuple[str, str]:
    """What is wrong with a database that cannot be used, and what to do (never with the password)."""
    # libpq's message: 'connection to server at "h", port 5432 failed: <reason>', then a hint line.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = next((line for line in reversed(lines) if not line.startswith("Is the server")), type(exc).__name__)
    text = text.rpartition(" failed: ")[2].removeprefix("FATAL:").strip().rstrip(".?")
    where = where_of(dsn).removeprefix("postgresql://")
    lowered = text.lower()
    if "does not exist" in lowered and "database" in lowered:
        todo = "create it (createdb) or name another database in the URL"
    elif "password" in lowered or "authentication" in lowered or "role" in lowered:
        todo = "check the user and password in the URL"
    elif "must be owner" in lowered:  # a migration this role may not apply: a workshop student's, after an upgrade
        todo = "the database needs an upgrade only its owner can apply: run chatkit-lab workshop again, or open a lab as the owner once"
    elif "permission denied" in lowered:
        todo = "grant this role the rights to create and use tables in the database"
    elif any(word in lowered for word in ("invalid", "missing", "uri", "unexpected")):
        todo = "write it as postgresql://user:password@host:5432/database"
    else:
        todo = "check the server is running and the host and port in the URL are right"
    return f"PostgreSQL at {where} cannot be used: {text}", todo


def unavailable(dsn: str, exc: Exception) -> DatabaseUnavailableError:
    """One sentence for a database that cannot be used: what is wrong and what to do."""
    what, todo = problem(dsn, exc)
    return DatabaseUnavailableError(f"{what}. {todo[0].upper() + todo[1:]}.")


def refused(exc: Exception) -> ForbiddenError:
    """A change this role may not make, as a sentence (row-level security of a workshop database)."""
    text = str(exc).strip().splitlines()[0]
    return ForbiddenError(f"The database refused it: {text}. In a workshop database a student's role writes only their own rows; "
                          "publishing workflows and adding course documents are for teachers.")


def _text_json(con: Any) -> None:
    from psycopg.types.string import TextLoader

    for name in ("json", "jsonb"):
        con.adapters.register_loader(name, TextLoader)


class PostgresDatabase:
    """A PostgreSQL database opened on first use: ``with db.cursor() as cur`` (a thread), or
    ``async with db.acursor()`` / ``db.transaction()`` on the lab's loop."""

    dialect = "postgres"
    in_memory = False

    def __init__(self, dsn: str, *, max_size: int = 8, connect_timeout: float = 10.0) -> None:
        self.dsn, self.max_size, self.connect_timeout = dsn, max_size, connect_timeout
        self.path = where_of(dsn)
        self.generation = 0  # nothing caches by it: other processes write here at any time
        self._pool: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def _ready(self) -> Any:
        with self._lock:
            if self._closed:
                raise DatabaseUnavailableError(f"The database {self.path} is closed; create a new lab.")
            if self._pool is None:
                import psycopg
                from psycopg_pool import ConnectionPool, PoolTimeout

                try:  # one direct connection first: its error says what is wrong, a pool's timeout would not
                    with psycopg.connect(self.dsn, connect_timeout=max(1, round(self.connect_timeout)), autocommit=True) as first:
                        migrate_sync(first)
                except (psycopg.Error, OSError) as exc:
                    raise unavailable(self.dsn, exc) from None
                pool = ConnectionPool(self.dsn, min_size=1, max_size=self.max_size, open=False, kwargs={"autocommit": True},
                                      configure=_text_json, timeout=self.connect_timeout)
                try:
                    pool.open(wait=True, timeout=self.connect_timeout)
                except (psycopg.Error, PoolTimeout) as exc:
                    pool.close()
                    raise unavailable(self.dsn, exc) from None
                self._pool = pool
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[PgCursor]:
        from psycopg_pool import PoolTimeout

        pool = self._ready()
        try:
            con = pool.getconn()
        except PoolTimeout as exc:
            raise unavailable(self.dsn, exc) from None
        try:
            yield PgCursor(con, self.dsn)
        finally:
            pool.putconn(con)  # the pool checks it: a broken or mid-transaction connection is replaced

    @contextmanager
    def cursor(self, *, invalidate: bool = True) -> Iterator[PgCursor]:
        with self._connection() as cur:
            yield cur

    @contextmanager
    def cursor_now(self) -> Iterator[PgCursor]:
        with self._connection() as cur:
            yield cur

    @asynccontextmanager
    async def acursor(self) -> AsyncIterator[PgCursor]:
        held = _HELD.get()
        mine = next((cur for key, cur in held if key == id(self)), None)
        if mine is not None:  # this task holds one already (a query inside a transaction)
            yield mine
            return
        with self._connection() as cur:
            token = _HELD.set((*held, (id(self), cur)))
            try:
                yield cur
            finally:
                _HELD.reset(token)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgCursor]:
        """``BEGIN`` … ``COMMIT`` on this task's connection, ``ROLLBACK`` on any error or cancel."""
        async with self.acursor() as cur:
            if id(self) in _IN_TRANSACTION.get():
                yield cur
                return
            token = _IN_TRANSACTION.set(_IN_TRANSACTION.get() | {id(self)})
            try:
                with in_transaction(cur):
                    yield cur
            finally:
                _IN_TRANSACTION.reset(token)

    def membership(self) -> tuple[str, str | None]:
        """This URL's role, and ``"student"`` or ``"teacher"`` when it is one of a workshop
        (``chatkit-lab workshop``: a member of its students' or teachers' group)."""
        with self.cursor() as cur:
            role = cur.execute("SELECT current_user::text").fetchone()[0]
            groups = {g for (g,) in cur.execute("SELECT rolname::text FROM pg_roles WHERE rolname IN (?, ?) AND pg_has_role(current_user, oid, 'MEMBER')",
                                                [STUDENTS, TEACHERS]).fetchall()}
        return role, "teacher" if TEACHERS in groups else ("student" if STUDENTS in groups else None)

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pool is not None:
                self._pool.close()
                self._pool = None
