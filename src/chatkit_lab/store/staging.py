"""PostgreSQL rows staged in a temporary DuckDB file, batch by batch, so DuckDB's exports (Parquet,
CSV, JSONL, frames) run on them unchanged: memory holds one batch, the disk holds the copy.

The staged tables have the DuckDB file's schema exactly (the same migrations), so a Parquet file
exported from PostgreSQL has the columns and types of one exported from a DuckDB file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from .postgres_database import PostgresDatabase
from .queries import user_scope
from .schema import migrate

BATCH = 10_000  # rows fetched at a time


@contextmanager
def staged(db: PostgresDatabase, tables: Sequence[str], user_id: str | None, *, batch: int = BATCH) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection holding ``tables`` of ``db`` (only ``user_id``'s rows unless None)."""
    with tempfile.TemporaryDirectory(prefix="chatkit-lab-stage-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "stage.duckdb"))
        try:
            migrate(con)
            with db.cursor(invalidate=False) as pg:
                for table in tables:
                    where = user_scope(table, "postgres") if user_id is not None else "true"
                    params = {"user": user_id} if "$user" in where else None
                    names = ", ".join(f'"{c}"' for (c,) in con.execute(
                        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' ORDER BY column_index", [table]).fetchall())
                    for rows in pg.batches(f"SELECT {names} FROM {table} WHERE {where}", params, batch):
                        con.register("staged_batch", rows)
                        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM staged_batch")
                        con.unregister("staged_batch")
            yield con
        finally:
            con.close()
