"""PostgreSQL rows staged in a temporary DuckDB file, batch by batch, so DuckDB's exports (Parquet,
CSV, JSONL, frames) run on them unchanged: memory holds one batch, the disk holds the copy. And
back: rows staged by DuckDB's import and merge pushed into PostgreSQL (``push``).

The staged tables have the DuckDB file's schema exactly (the same migrations), so a Parquet file
exported from PostgreSQL has the columns and types of one exported from a DuckDB file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from .database import connect
from .postgres_database import PostgresDatabase
from .queries import user_scope
from .schema import migrate
from .transaction import in_transaction

BATCH = 10_000  # rows fetched at a time


@contextmanager
def scratch() -> Iterator[Path]:
    """The path of a DuckDB file in a temporary directory, gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="chatkit-lab-stage-") as tmp:
        yield Path(tmp) / "stage.duckdb"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
                                      "ORDER BY column_index", [table]).fetchall()]


@contextmanager
def staged(db: PostgresDatabase, tables: Sequence[str], user_id: str | None, *, batch: int = BATCH) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection holding ``tables`` of ``db`` (only ``user_id``'s rows unless None)."""
    with scratch() as path:
        con = connect(str(path))
        try:
            migrate(con)
            with db.cursor(invalidate=False) as pg, in_transaction(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"):
                for table in tables:  # one snapshot for every table: no item without its thread, whoever writes meanwhile
                    where = user_scope(table, "postgres") if user_id is not None else "true"
                    params = {"user": user_id} if "$user" in where else None
                    names = ", ".join(f'"{c}"' for c in _columns(con, table))
                    for rows in pg.batches(f"SELECT {names} FROM {table} WHERE {where}", params, batch):
                        con.register("staged_batch", rows)
                        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM staged_batch")
                        con.unregister("staged_batch")
            yield con
        finally:
            con.close()


def push(con: duckdb.DuckDBPyConnection, db: PostgresDatabase, tables: Mapping[str, str], *, batch: int = BATCH) -> dict[str, int]:
    """Every row of ``tables`` (name: its ORDER BY) staged in ``con`` into ``db``, in one
    transaction; a row whose key is there already is kept as it is. Threads and items get new
    ``seq`` numbers there, in their staged order. Returns the rows added per table."""
    counts: dict[str, int] = {}
    with db.cursor() as pg, in_transaction(pg):
        for table, order in tables.items():
            names = [c for c in _columns(con, table) if c != "seq"]
            listed = ", ".join(f'"{c}"' for c in names)
            insert = f"INSERT INTO {table} ({listed}) VALUES ({', '.join(['?'] * len(names))}) ON CONFLICT DO NOTHING"
            rows = con.execute(f"SELECT {listed} FROM {table} ORDER BY {order}")
            counts[table] = 0
            while part := rows.fetchmany(batch):
                counts[table] += pg.executemany(insert, part)
    return counts
