"""The schema, as ordered, named migrations. Never edit one that has shipped: add a new one.

Applied names are recorded in ``_migrations``; ``migrate`` applies the missing ones in order,
each in its own transaction. The tables are documented in docs/schema.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import duckdb

from .transaction import in_transaction

Migration = Callable[[duckdb.DuckDBPyConnection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_threads_items_attachments(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SEQUENCE row_seq")
    con.execute(
        """
        CREATE TABLE threads (
            id VARCHAR PRIMARY KEY,
            user_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL DEFAULT nextval('row_seq'),
            title VARCHAR,
            status VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            metadata JSON,
            data JSON NOT NULL
        )"""
    )
    con.execute(
        """
        CREATE TABLE items (
            id VARCHAR NOT NULL,
            thread_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL DEFAULT nextval('row_seq'),
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            type VARCHAR NOT NULL,
            role VARCHAR,
            text VARCHAR,
            data JSON NOT NULL,
            PRIMARY KEY (thread_id, id)
        )"""
    )
    con.execute(
        """
        CREATE TABLE attachments (
            id VARCHAR PRIMARY KEY,
            user_id VARCHAR NOT NULL,
            thread_id VARCHAR,
            name VARCHAR NOT NULL,
            mime_type VARCHAR NOT NULL,
            size BIGINT,
            bytes BLOB,
            created_at TIMESTAMP NOT NULL,
            data JSON NOT NULL
        )"""
    )


@migration
def m002_turns_feedback(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE turns (
            turn_id VARCHAR PRIMARY KEY,
            thread_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            user_item_id VARCHAR,
            started_at TIMESTAMP NOT NULL,
            ended_at TIMESTAMP,
            latency_ms DOUBLE,
            first_token_ms DOUBLE,
            status VARCHAR NOT NULL,
            error VARCHAR,
            agent VARCHAR,
            model VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            tools VARCHAR[],
            trace_id VARCHAR
        )"""
    )
    con.execute(
        """
        CREATE TABLE feedback (
            thread_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (thread_id, item_id, user_id)
        )"""
    )


@migration
def m003_traces_spans(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE traces (
            trace_id VARCHAR PRIMARY KEY,
            thread_id VARCHAR,
            user_id VARCHAR,
            workflow_name VARCHAR,
            group_id VARCHAR,
            metadata JSON,
            started_at TIMESTAMP,
            ended_at TIMESTAMP
        )"""
    )
    con.execute(
        """
        CREATE TABLE spans (
            span_id VARCHAR PRIMARY KEY,
            trace_id VARCHAR NOT NULL,
            parent_id VARCHAR,
            thread_id VARCHAR,
            span_type VARCHAR NOT NULL,
            name VARCHAR,
            started_at TIMESTAMP,
            ended_at TIMESTAMP,
            duration_ms DOUBLE,
            input_tokens BIGINT,
            output_tokens BIGINT,
            error JSON,
            data JSON
        )"""
    )


@migration
def m004_model_inputs(con: duckdb.DuckDBPyConnection) -> None:
    # The context inspector: exactly what each model call of a turn received, secrets redacted.
    con.execute(
        """
        CREATE TABLE model_inputs (
            turn_id VARCHAR NOT NULL,
            call_index INTEGER NOT NULL,
            thread_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            agent VARCHAR,
            strategy VARCHAR,
            instructions VARCHAR,
            input JSON,
            tools VARCHAR[],
            context JSON,
            PRIMARY KEY (turn_id, call_index)
        )"""
    )


@migration
def m005_lineage_origins(con: duckdb.DuckDBPyConnection) -> None:
    # Where a thread came from: replayed or forked from another thread (lineage), or merged in
    # from another database file (origins).
    con.execute(
        """
        CREATE TABLE lineage (
            thread_id VARCHAR PRIMARY KEY,
            parent_thread_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            at_item_id VARCHAR,
            overrides JSON,
            created_at TIMESTAMP NOT NULL
        )"""
    )
    con.execute(
        """
        CREATE TABLE origins (
            thread_id VARCHAR PRIMARY KEY,
            origin VARCHAR NOT NULL,
            source_path VARCHAR,
            merged_at TIMESTAMP NOT NULL
        )"""
    )


@migration
def m006_input_items(con: duckdb.DuckDBPyConnection) -> None:
    # What a model call received, kept once: every turn sends the history again, so storing each
    # call's input whole (and again in its generation span) grew with the square of a thread.
    # A call (and a span) now names its input items by content hash.
    con.execute("CREATE TABLE input_items (hash VARCHAR PRIMARY KEY, item JSON NOT NULL)")
    con.execute("ALTER TABLE model_inputs ADD COLUMN input_hashes VARCHAR[]")


@migration
def m007_feedback_comments(con: duckdb.DuckDBPyConnection) -> None:
    # A rating may carry a sentence of why (the chat asks for one, optionally).
    con.execute("ALTER TABLE feedback ADD COLUMN comment VARCHAR")


# Every time column of the log tables (``_migrations.applied_at`` is DuckDB's own, already UTC).
TIME_COLUMNS = {
    "threads": ("created_at", "updated_at"), "items": ("created_at", "updated_at"), "attachments": ("created_at",),
    "turns": ("started_at", "ended_at"), "feedback": ("created_at",), "traces": ("started_at", "ended_at"),
    "spans": ("started_at", "ended_at"), "model_inputs": ("created_at",), "lineage": ("created_at",), "origins": ("merged_at",),
}


@migration
def m008_utc_times(con: duckdb.DuckDBPyConnection) -> None:
    # Times were naive local time, so class files merged from laptops in different time zones
    # could not be ordered. From here on they are naive UTC; the rows already written are
    # shifted by this machine's offset from UTC now (a file from another zone, or rows written
    # on the other side of a daylight-saving change, stay off by that difference).
    offset = datetime.now().astimezone().utcoffset() or timedelta(0)
    seconds = int(offset.total_seconds())
    if not seconds:
        return
    for table, columns in TIME_COLUMNS.items():
        sets = ", ".join(f"{c} = {c} - to_seconds({seconds})" for c in columns)
        con.execute(f"UPDATE {table} SET {sets}")


# Old name → new name of the key columns m009 renames (a JSONL export from before it says ``id``).
RENAMED_IDS = {"threads": ("id", "thread_id"), "items": ("id", "item_id"), "attachments": ("id", "attachment_id")}


@migration
def m009_named_ids(con: duckdb.DuckDBPyConnection) -> None:
    # ``id`` meant a different thing in each table, and ``items.id`` is not unique (a fork copies
    # its parent's items with their ids): named keys make the safe join the obvious one,
    # ``feedback JOIN items USING (thread_id, item_id)``, and match the frames' column names.
    for table, (old, new) in RENAMED_IDS.items():
        con.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")



@migration
def m010_guardrail_results(con: duckdb.DuckDBPyConnection) -> None:
    # Every verdict of every guardrail check of a turn (chatkit_lab.guardrails).
    con.execute(
        """
        CREATE TABLE guardrail_results (
            turn_id VARCHAR NOT NULL,
            thread_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            stage VARCHAR NOT NULL,
            check_index INTEGER NOT NULL,
            check_name VARCHAR NOT NULL,
            triggered BOOLEAN NOT NULL,
            execution_failed BOOLEAN NOT NULL,
            confidence DOUBLE,
            info JSON,
            duration_ms DOUBLE,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (turn_id, stage, check_index)
        )"""
    )

@migration
def m011_workflows(con: duckdb.DuckDBPyConnection) -> None:
    # Workflow graphs by content hash (every graph that ran or was published), numbered published
    # versions and each name's default, one row per node run, and runs paused at an approval.
    con.execute(
        """
        CREATE TABLE workflow_definitions (
            workflow_hash VARCHAR PRIMARY KEY,
            workflow_name VARCHAR NOT NULL,
            definition JSON NOT NULL,
            created_at TIMESTAMP NOT NULL
        )"""
    )
    con.execute(
        """
        CREATE TABLE workflow_versions (
            workflow_name VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            workflow_hash VARCHAR NOT NULL,
            note VARCHAR,
            published_at TIMESTAMP NOT NULL,
            PRIMARY KEY (workflow_name, version)
        )"""
    )
    con.execute("CREATE TABLE workflow_defaults (workflow_name VARCHAR PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute(
        """
        CREATE TABLE workflow_nodes (
            turn_id VARCHAR NOT NULL,
            node_index INTEGER NOT NULL,
            thread_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            workflow_name VARCHAR NOT NULL,
            workflow_version INTEGER,
            workflow_hash VARCHAR NOT NULL,
            node_id VARCHAR NOT NULL,
            node_type VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            started_at TIMESTAMP NOT NULL,
            duration_ms DOUBLE,
            status VARCHAR NOT NULL,
            edge VARCHAR,
            output JSON,
            error VARCHAR,
            model VARCHAR,
            span_id VARCHAR,
            PRIMARY KEY (turn_id, node_index)
        )"""
    )
    con.execute(
        """
        CREATE TABLE workflow_runs (
            run_id VARCHAR PRIMARY KEY,
            thread_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            turn_id VARCHAR NOT NULL,
            workflow_hash VARCHAR NOT NULL,
            workflow_version INTEGER,
            node_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            paused JSON NOT NULL,
            decision VARCHAR,
            created_at TIMESTAMP NOT NULL,
            decided_at TIMESTAMP
        )"""
    )


@migration
def m012_documents(con: duckdb.DuckDBPyConnection) -> None:
    # The lab's documents for file search (chatkit_lab.documents): files and their chunks, with an
    # embedding when the lab's provider gives them.
    con.execute(
        """
        CREATE TABLE documents (
            document_id VARCHAR PRIMARY KEY,
            filename VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            content_hash VARCHAR NOT NULL,
            chars INTEGER NOT NULL,
            added_by VARCHAR NOT NULL,
            added_at TIMESTAMP NOT NULL
        )"""
    )
    con.execute(
        """
        CREATE TABLE document_chunks (
            document_id VARCHAR NOT NULL,
            chunk_index INTEGER NOT NULL,
            text VARCHAR NOT NULL,
            embedding FLOAT[],
            PRIMARY KEY (document_id, chunk_index)
        )"""
    )


@migration
def m013_evals(con: duckdb.DuckDBPyConnection) -> None:
    # Eval datasets (named by a content hash, so a run names exactly the data it used), runs, each
    # item's answer (linked to the thread and trace it produced) and each grader's result.
    con.execute("CREATE TABLE eval_datasets (dataset_hash VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, source VARCHAR, n_items INTEGER NOT NULL, created_at TIMESTAMP NOT NULL)")
    con.execute("CREATE TABLE eval_dataset_items (dataset_hash VARCHAR NOT NULL, item_index INTEGER NOT NULL, item JSON NOT NULL, PRIMARY KEY (dataset_hash, item_index))")
    con.execute(
        """
        CREATE TABLE eval_runs (
            run_id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            dataset_hash VARCHAR NOT NULL,
            target JSON NOT NULL,
            graders JSON NOT NULL,
            status VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            concurrency INTEGER NOT NULL,
            parent_run_id VARCHAR,
            created_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP
        )"""
    )
    con.execute(
        """
        CREATE TABLE eval_items (
            run_id VARCHAR NOT NULL,
            item_index INTEGER NOT NULL,
            item_hash VARCHAR NOT NULL,
            thread_id VARCHAR,
            turn_id VARCHAR,
            trace_id VARCHAR,
            status VARCHAR NOT NULL,
            output_text VARCHAR,
            latency_ms DOUBLE,
            model VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cost_usd DOUBLE,
            error VARCHAR,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (run_id, item_index)
        )"""
    )
    con.execute(
        """
        CREATE TABLE eval_results (
            run_id VARCHAR NOT NULL,
            item_index INTEGER NOT NULL,
            grader_name VARCHAR NOT NULL,
            grader_type VARCHAR NOT NULL,
            score DOUBLE NOT NULL,
            passed BOOLEAN NOT NULL,
            error VARCHAR,
            info JSON,
            PRIMARY KEY (run_id, item_index, grader_name)
        )"""
    )


@migration
def m014_eval_rounds(con: duckdb.DuckDBPyConnection) -> None:
    # Prompt optimisation: each round's proposed instructions, the run that tried them and whether
    # the graders improved on the round's base run (only then is the revision kept and built on).
    con.execute(
        """
        CREATE TABLE eval_rounds (
            optimization_id VARCHAR NOT NULL,
            round INTEGER NOT NULL,
            base_run_id VARCHAR NOT NULL,
            run_id VARCHAR PRIMARY KEY,
            node_id VARCHAR,
            instructions_before VARCHAR NOT NULL,
            instructions_after VARCHAR NOT NULL,
            pass_rate_before DOUBLE NOT NULL,
            pass_rate_after DOUBLE NOT NULL,
            score_before DOUBLE NOT NULL,
            score_after DOUBLE NOT NULL,
            kept BOOLEAN NOT NULL,
            user_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        )"""
    )


@migration
def m015_tool_approvals(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE tool_approvals (
            approval_id VARCHAR PRIMARY KEY,
            thread_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            turn_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            agent VARCHAR NOT NULL,
            calls JSON NOT NULL,
            status VARCHAR NOT NULL,
            paused JSON NOT NULL,
            decision VARCHAR,
            created_at TIMESTAMP NOT NULL,
            decided_at TIMESTAMP
        )"""
    )


@migration
def m016_tool_approvals_redacted(con: duckdb.DuckDBPyConnection) -> None:
    # Whether a waiting run's stored state lost a secret or masked PII to redaction: its calls
    # are then approved only by the process that holds the state whole.
    con.execute("ALTER TABLE tool_approvals ADD COLUMN redacted BOOLEAN DEFAULT false")


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply the migrations this file lacks, in order; return their names."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS _migrations "
        "(name VARCHAR PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    done = {name for (name,) in con.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with in_transaction(con):
            fn(con)
            con.execute("INSERT INTO _migrations (name) VALUES (?)", [fn.__name__])
        applied.append(fn.__name__)
    return applied
