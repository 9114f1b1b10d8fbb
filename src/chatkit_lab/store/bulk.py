"""Many rows in few statements, on DuckDB or PostgreSQL.

On DuckDB a DataFrame is read in place (registered, one ``INSERT ... SELECT``), because each
DuckDB statement costs a millisecond or more; on PostgreSQL the rows go as one pipelined
``executemany`` or one ``VALUES`` list, the cheap ways there.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .postgres_database import PgCursor

if TYPE_CHECKING:
    import pandas as pd


def records(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The rows as plain Python values, with None for every kind of missing (NaN, NA, NaT)."""
    import pandas as pd  # here, so that importing chatkit_lab does not import pandas (0.3 s)

    def missing(value: Any) -> bool:
        return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))

    return [tuple(None if missing(v) else v for v in row) for row in frame.astype(object).itertuples(index=False, name=None)]


def insert_frame(cur: Any, table: str, frame: pd.DataFrame) -> None:
    """``frame``'s rows into ``table``, by column name."""
    if frame.empty:
        return
    names = ", ".join(frame.columns)
    if isinstance(cur, PgCursor):
        cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['?'] * len(frame.columns))})", records(frame))
        return
    cur.register("bulk_rows", frame)
    try:
        cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM bulk_rows")
    finally:
        cur.unregister("bulk_rows")


def update_from_frame(cur: Any, table: str, frame: pd.DataFrame, assignments: str, where: str, params: list[Any]) -> None:
    """``UPDATE table t SET assignments FROM <frame> f WHERE where``: ``assignments`` and
    ``where`` name the frame's columns as ``f.<column>``, cast where a column may be all NULL
    (``f.tokens::BIGINT``), since PostgreSQL types a VALUES list by what it holds."""
    if frame.empty:
        return
    names = ", ".join(frame.columns)
    if isinstance(cur, PgCursor):
        rows = records(frame)
        marks = ", ".join(["(" + ", ".join(["?"] * len(frame.columns)) + ")"] * len(rows))
        cur.execute(f"UPDATE {table} t SET {assignments} FROM (VALUES {marks}) AS f({names}) WHERE {where}",
                    [v for row in rows for v in row] + params)
        return
    cur.register("bulk_rows", frame)
    try:
        cur.execute(f"UPDATE {table} t SET {assignments} FROM bulk_rows f WHERE {where}", params)
    finally:
        cur.unregister("bulk_rows")
