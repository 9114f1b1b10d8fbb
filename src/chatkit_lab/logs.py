"""Conversations as data: the analysis queries, export and import, merging files, plots.

Exports are DuckDB ``COPY`` statements: rows stream from the database file to the output file and
never pass through Python, so exporting millions of items costs what DuckDB's own COPY costs.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .errors import ChatLabError
from .store import queries
from .store.database import Database, connect, file_in_the_way, is_lock_conflict, unusable
from .store.items import utc_now
from .store.postgres_database import PostgresDatabase
from .store.queries import user_scope
from .store.schema import MIGRATIONS, RENAMED_IDS, migrate
from .store.staging import push, scratch, staged
from .store.transaction import in_transaction

TABLES = ("threads", "items", "attachments", "turns", "feedback", "traces", "spans", "model_inputs", "input_items", "lineage", "origins",
          "guardrail_results", "workflow_definitions", "workflow_versions", "workflow_defaults", "workflow_nodes", "workflow_runs",
          "tool_approvals", "eval_datasets", "eval_dataset_items", "eval_runs", "eval_items", "eval_results", "eval_rounds")
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json"}
TAG = "_table"  # the JSONL field naming each row's table
# JSONL rows come in key order, so exporting an import gives the same file byte for byte.
ORDER = {
    "threads": "created_at, seq, thread_id", "items": "thread_id, created_at, seq, item_id", "attachments": "created_at, attachment_id",
    "turns": "started_at, turn_id", "feedback": "created_at, thread_id, item_id, user_id", "traces": "started_at, trace_id",
    "spans": "started_at, span_id", "model_inputs": "turn_id, call_index", "input_items": "hash", "lineage": "created_at, thread_id",
    "origins": "thread_id", "guardrail_results": "created_at, turn_id, stage, check_index",
    "workflow_definitions": "created_at, workflow_hash", "workflow_versions": "workflow_name, version", "workflow_defaults": "workflow_name",
    "workflow_nodes": "started_at, turn_id, node_index", "workflow_runs": "created_at, run_id",
    "tool_approvals": "created_at, approval_id",
    "eval_datasets": "created_at, dataset_hash", "eval_dataset_items": "dataset_hash, item_index", "eval_runs": "created_at, run_id",
    "eval_items": "run_id, item_index", "eval_results": "run_id, item_index, grader_name", "eval_rounds": "optimization_id, round",
}


# -- export and import ----------------------------------------------------------------------
def format_of(path: str | Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ChatLabError(f"Cannot tell the format of {str(path)!r}: name it .parquet, .csv or .jsonl.")
    return fmt


def _columns(cur: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()


def _as_text(name: str, kind: str) -> str:
    # JSONL keeps JSON columns as JSON (objects, not strings holding JSON) and bytes as base64.
    if kind == "BLOB":
        return f'to_base64("{name}") AS "{name}"'
    return f'"{name}"'


def _from_text(name: str, kind: str) -> str:
    if kind == "BLOB":
        return f'from_base64("{name}")'
    if kind == "JSON":  # exports before 0.3 wrote JSON columns as strings holding JSON
        return f"""CASE WHEN json_type("{name}") = 'VARCHAR' THEN ("{name}" ->> '$')::JSON ELSE "{name}" END"""
    return f'"{name}"'


def _count(cur: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> int:
    """The row count a COPY or INSERT statement reports."""
    row = cur.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@contextmanager
def _writing(path: Path) -> Iterator[str]:
    """A temporary folder beside ``path`` to write into (moved into place at the end, so a failed
    export leaves no half file); a folder that cannot be written is a sentence."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
            yield tmp
    except (OSError, duckdb.IOException) as exc:
        file = file_in_the_way(path)
        reason = f"{file} is a file, not a folder" if file else exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise ChatLabError(f"Cannot write {path}: {reason}. Choose a path in a folder you can write.") from None


def export_query(cur: duckdb.DuckDBPyConnection, path: str | Path, name: str, sql: str, params: dict[str, Any]) -> dict[str, int]:
    """Write what a query returns (a frame, say) to ``path``, streamed: ``{name: rows}``."""
    path = Path(path).expanduser()
    fmt = format_of(path)
    with _writing(path) as tmp:
        part = Path(tmp) / f"{name}.{fmt}"
        count = _count(cur, f"COPY ({sql}) TO {_quote(part)} (FORMAT {fmt})", params)
        shutil.move(part, path)
    return {name: count}


def export(
    cur: duckdb.DuckDBPyConnection, path: str | Path, *, table: str | None = None, user_id: str | None = None
) -> dict[str, int]:
    """Write ``table`` (Parquet and CSV: ``items`` by default) or, to JSONL, every table; only
    ``user_id``'s rows unless it is None. Returns the rows written per table."""
    path = Path(path).expanduser()
    fmt = format_of(path)
    if table is not None and table not in TABLES:
        raise ChatLabError(f"There is no table {table!r} to export; choose one of {', '.join(TABLES)}.")
    tables = [table] if table else (list(TABLES) if fmt == "json" else ["items"])
    params = {"user": user_id} if user_id is not None else {}
    counts: dict[str, int] = {}
    with _writing(path) as tmp:
        parts = []
        for name in tables:
            select, order = "*", ""  # Parquet and CSV: the table as it is, at COPY's speed
            if fmt == "json":
                select = ", ".join([f"'{name}' AS {TAG}", *(_as_text(c, k) for c, k in _columns(cur, name))])
                order = f" ORDER BY {ORDER[name]}"
            where = user_scope(name) if user_id is not None else "true"
            part = Path(tmp) / f"{name}.{fmt}"
            counts[name] = _count(cur, f"COPY (SELECT {select} FROM {name} WHERE {where}{order}) TO {_quote(part)} (FORMAT {fmt})",
                                  params if "$user" in where else {})
            parts.append(part)
        if len(parts) == 1:
            shutil.move(parts[0], path)
        else:
            with open(path, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
    return counts


def import_jsonl(cur: duckdb.DuckDBPyConnection, path: str | Path) -> dict[str, int]:
    """Load a JSONL export into the database, in one transaction. Rows whose key is already
    there are kept as they are (importing twice adds nothing). Returns rows added per table."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ChatLabError(f"There is no file {str(path)!r} to import.")
    source = f"read_json({_quote(path)}, format = 'newline_delimited', columns = {{%s}})"
    try:
        found = {t for (t,) in cur.execute(f"SELECT DISTINCT {TAG} FROM " + source % f"'{TAG}': 'VARCHAR'").fetchall()}
    except duckdb.Error as exc:
        raise ChatLabError(f"{path.name} is not a chatkit-lab JSONL export: {str(exc).splitlines()[0]}") from None
    unknown = found - set(TABLES)
    if unknown or not found:
        what = f"rows for unknown tables ({', '.join(sorted(map(str, unknown)))})" if unknown else "no rows"
        raise ChatLabError(f"{path.name} is not a chatkit-lab JSONL export: it has {what}.")
    counts: dict[str, int] = {}
    try:
        with in_transaction(cur):
            for table in TABLES:
                if table not in found:
                    continue
                columns = _columns(cur, table)
                read = ", ".join([f"'{TAG}': 'VARCHAR'", *(f"'{c}': '{'VARCHAR' if k == 'BLOB' else k}'" for c, k in columns)])
                names = ", ".join(f'"{c}"' for c, _ in columns)
                values = ", ".join(_from_text(c, k) for c, k in columns)
                if table in RENAMED_IDS:  # an export from before m009 names the key ``id``
                    old, new = RENAMED_IDS[table]
                    read += f", '{old}': 'VARCHAR'"
                    values = ", ".join(f'coalesce("{new}", "{old}")' if c == new else _from_text(c, k) for c, k in columns)
                counts[table] = _count(cur, f"INSERT OR IGNORE INTO {table} ({names}) SELECT {values} FROM {source % read} WHERE {TAG} = '{table}'")
    except duckdb.Error as exc:
        raise ChatLabError(f"Nothing was imported from {path.name}: {str(exc).splitlines()[0]}") from None
    return counts


# -- merging database files -----------------------------------------------------------------
def merge(target: str | Path, sources: Sequence[str | Path], *, names: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Copy every row of each source database into ``target`` (created if missing), recording
    each thread's origin (the source file's name, or ``names``). Sources are only read.

    Rows already in ``target`` (the same key) are kept once, so merging a file again adds
    nothing. Returns the rows added per source and table.
    """
    sources = _sources(sources, names)
    db = Database(target)
    summary: dict[str, dict[str, int]] = {}
    try:
        for i, given in enumerate(sources):
            source = Path(given).expanduser()
            origin = names[i] if names else source.stem
            if source.resolve() == Path(target).expanduser().resolve():
                raise ChatLabError(f"{source} is the target file itself.")
            with db.cursor() as cur, _readable(source) as readable:
                summary[origin] = _merge_one(cur, readable, origin, str(source))
    finally:
        db.close()
    return summary


class _readable:
    """The source file, or a migrated temporary copy when it lacks newer migrations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if not self.path.is_file():
            raise ChatLabError(f"There is no database file {str(self.path)!r}.")
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            if is_lock_conflict(exc):
                raise ChatLabError(f"{self.path} is open for writing in another process (a running lab?); close it and merge again.") from None
            raise unusable(str(self.path), None if "in-memory" in str(exc) else exc) from None
        try:
            try:
                applied = {n for (n,) in con.execute("SELECT name FROM _migrations").fetchall()}
            except duckdb.Error:
                raise ChatLabError(f"{self.path} is not a chatkit-lab database (it has no _migrations table).") from None
        finally:
            con.close()
        ours = {m.__name__ for m in MIGRATIONS}
        if applied - ours:
            raise ChatLabError(f"{self.path} was written by a newer chatkit-lab ({', '.join(sorted(applied - ours))}); upgrade to merge it.")
        if applied == ours:
            return self.path
        self.tmp = tempfile.TemporaryDirectory(prefix="chatkit-merge-")
        copy = Path(self.tmp.name) / self.path.name
        shutil.copyfile(self.path, copy)
        with duckdb.connect(str(copy)) as con:
            migrate(con)
        return copy

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def _merge_one(cur: duckdb.DuckDBPyConnection, source: Path, origin: str, shown: str) -> dict[str, int]:
    cur.execute(f"ATTACH {_quote(source)} AS src (READ_ONLY)")
    counts: dict[str, int] = {}
    try:
        with in_transaction(cur):
            # A source that is itself a merge keeps its threads' origins.
            counts["origins"] = _count(cur, "INSERT OR IGNORE INTO origins SELECT * FROM src.origins")
            counts["origins"] += _count(cur, "INSERT OR IGNORE INTO origins SELECT thread_id, ?, ?, ? FROM src.threads", [origin, shown, utc_now()])
            for table in TABLES:
                if table == "origins":
                    continue
                names = ", ".join(f'"{c}"' for c, _ in _columns(cur, table))
                counts[table] = _count(cur, f"INSERT OR IGNORE INTO {table} ({names}) SELECT {names} FROM src.{table}")
    finally:
        cur.execute("DETACH src")
    return counts


# -- on PostgreSQL: through a staging DuckDB file ---------------------------------------------
def export_postgres(db: PostgresDatabase, path: str | Path, *, table: str | None = None, frame: str | None = None,
                    user_id: str | None = None) -> dict[str, int]:
    """``export`` (or ``export_query`` of a frame) of a PostgreSQL database: the rows are staged
    batch by batch in a temporary DuckDB file, then written by the same ``COPY``."""
    if table is not None and table not in TABLES:
        raise ChatLabError(f"There is no table {table!r} to export; choose one of {', '.join(TABLES)}.")
    one = frame is None and (table is not None or format_of(path) != "json")
    with staged(db, [table or "items"] if one else TABLES, user_id) as cur:
        if frame is None:
            return export(cur, path, table=table)
        return export_query(cur, path, f"{frame}_df", *queries.frame(frame, None))


def import_postgres(db: PostgresDatabase, path: str | Path) -> dict[str, int]:
    """``import_jsonl`` into a PostgreSQL database, all or nothing: read (and checked) by DuckDB
    into a temporary file, then added there; rows already there are kept."""
    with scratch() as staging, connect(str(staging)) as cur:
        migrate(cur)
        found = import_jsonl(cur, path)
        return push(cur, db, {t: ORDER[t] for t in TABLES if found.get(t)})


def _sources(sources: Sequence[str | Path] | str | Path, names: Sequence[str] | None) -> list[str | Path]:
    # One path is one source, not its characters ("There is no database file '/'", with the target made).
    given = [sources] if isinstance(sources, str | Path) else list(sources)
    if not given:
        raise ChatLabError("Give at least one source database file to merge.")
    if names is not None and len(names) != len(given):
        raise ChatLabError("Give one name per source file (or none: the file names are used).")
    return given


def merge_postgres(db: PostgresDatabase, sources: Sequence[str | Path], *, names: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """``merge`` into a PostgreSQL database: each source merged into a temporary DuckDB file
    (recording its threads' origin), then added there. Returns the rows added per source and table."""
    sources = _sources(sources, names)
    summary: dict[str, dict[str, int]] = {}
    for i, source in enumerate(sources):
        origin = names[i] if names else Path(source).stem
        with scratch() as staging:
            merge(staging, [source], names=[origin])
            with duckdb.connect(str(staging), read_only=True) as cur:
                summary[origin] = push(cur, db, {t: ORDER[t] for t in TABLES})
    return summary


# -- plots ----------------------------------------------------------------------------------
PLOTS = ("latency", "tokens", "tools", "feedback")


def chart() -> type:
    # A Figure (not pyplot's: no global state) that a notebook shows as a PNG without
    # %matplotlib inline.
    from matplotlib.figure import Figure

    class Chart(Figure):
        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100)
            return buffer.getvalue()

    return Chart


LINEAGE_COLOURS = {"original": "#4c78a8", "replay": "#f58518", "fork": "#54a24b", "edit": "#b279a2"}


def plot(kind: str, turns: Any, feedback: Any, titles: dict[str, str] | None = None) -> Any:
    """A matplotlib ``Figure`` of ``turns_df``/``feedback_df`` data: ``latency`` or ``tokens``
    per turn, coloured by where the thread came from (original, replay, fork, edit); ``tools``
    (calls per tool); ``feedback`` (positive and negative per thread, by title from ``titles``)."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if kind not in PLOTS:
        raise ChatLabError(f"Unknown plot {kind!r}; choose one of {', '.join(PLOTS)}.")
    fig = chart()(figsize=(7, 3), layout="constrained")
    ax = fig.subplots()
    n = list(range(1, len(turns) + 1))
    origin = turns["lineage"].fillna("original").tolist() if "lineage" in turns else ["original"] * len(turns)
    colours = [LINEAGE_COLOURS.get(o, "#9d755d") for o in origin]
    kinds = [Patch(color=LINEAGE_COLOURS.get(o, "#9d755d"), label=o) for o in dict.fromkeys(origin)]
    if kind == "latency":
        ax.bar(n, turns["latency_ms"].fillna(0), color=colours)
        dots = ax.plot(n, turns["first_token_ms"], "o", color="#333", markersize=4, label="first token")
        ax.set(xlabel="turn", ylabel="ms", title="Latency per turn")
        ax.legend(handles=[*kinds, *dots])
    elif kind == "tokens":
        inp, out = turns["input_tokens"].fillna(0), turns["output_tokens"].fillna(0)
        ax.bar(n, inp, color=colours)
        ax.bar(n, out, bottom=inp, color=colours, alpha=0.45)
        ax.set(xlabel="turn", ylabel="tokens", title="Tokens per turn (input, then output lighter)")
        ax.legend(handles=kinds)
    elif kind == "tools":
        counts = turns["tools"].explode().dropna().value_counts()
        ax.barh(list(counts.index)[::-1], list(counts.values)[::-1], color="#54a24b")
        ax.set(xlabel="calls", title="Tool usage" if len(counts) else "Tool usage (no tool calls)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        table = feedback.pivot_table(index="thread_id", columns="kind", values="item_id", aggfunc="count", fill_value=0)
        labels = [(titles or {}).get(str(t)) or str(t) for t in table.index]
        labels = [label if len(label) <= 28 else label[:27] + "…" for label in labels]
        pos = table["positive"] if "positive" in table else [0] * len(table)
        neg = table["negative"] if "negative" in table else [0] * len(table)
        ax.bar(labels, pos, color="#54a24b", label="positive")
        ax.bar(labels, [-v for v in neg], color="#e45756", label="negative")
        ax.axhline(0, color="#888", linewidth=0.8)
        ax.set(ylabel="ratings", title="Feedback per thread" if len(table) else "Feedback (none yet)")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend()
    if kind in ("latency", "tokens"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not len(turns):
            ax.set_title(ax.get_title() + " (no turns yet)")
    return fig
