"""The PostgreSQL schema: ordered, named migrations, the same tables and columns as the DuckDB file's.

Applied once each (recorded in ``_migrations``) under an advisory lock, so that many workers
starting at once migrate one at a time. The columns keep DuckDB's order, so a statement that
inserts by position (``INSERT INTO t VALUES (...)``) means the same on both; a test compares the
two schemas column by column, so a DuckDB migration without its PostgreSQL twin fails the suite.
"""

from __future__ import annotations

from typing import Any

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_threads_items_attachments_feedback", """
        CREATE SEQUENCE row_seq;
        CREATE TABLE threads (
            thread_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, seq BIGINT NOT NULL DEFAULT nextval('row_seq'), title TEXT,
            status TEXT NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, metadata JSON, data JSON NOT NULL);
        CREATE INDEX threads_by_user ON threads (user_id, created_at, seq);
        CREATE TABLE items (
            item_id TEXT NOT NULL, thread_id TEXT NOT NULL, user_id TEXT NOT NULL, seq BIGINT NOT NULL DEFAULT nextval('row_seq'),
            created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, type TEXT NOT NULL, role TEXT, text TEXT, data JSON NOT NULL,
            PRIMARY KEY (thread_id, item_id));
        CREATE INDEX items_in_order ON items (thread_id, created_at, seq);
        CREATE TABLE attachments (
            attachment_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, thread_id TEXT, name TEXT NOT NULL, mime_type TEXT NOT NULL,
            size BIGINT, bytes BYTEA, created_at TIMESTAMP NOT NULL, data JSON NOT NULL);
        CREATE TABLE feedback (
            thread_id TEXT NOT NULL, item_id TEXT NOT NULL, user_id TEXT NOT NULL, kind TEXT NOT NULL, created_at TIMESTAMP NOT NULL,
            comment TEXT, PRIMARY KEY (thread_id, item_id, user_id));
    """),
    ("m002_log_tables", """
        CREATE TABLE turns (
            turn_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, user_id TEXT NOT NULL, user_item_id TEXT, started_at TIMESTAMP NOT NULL,
            ended_at TIMESTAMP, latency_ms DOUBLE PRECISION, first_token_ms DOUBLE PRECISION, status TEXT NOT NULL, error TEXT,
            agent TEXT, model TEXT, input_tokens BIGINT, output_tokens BIGINT, tools TEXT[], trace_id TEXT);
        CREATE INDEX turns_by_thread ON turns (thread_id, started_at);
        CREATE INDEX turns_by_user ON turns (user_id, started_at);
        CREATE TABLE traces (
            trace_id TEXT PRIMARY KEY, thread_id TEXT, user_id TEXT, workflow_name TEXT, group_id TEXT, metadata JSON,
            started_at TIMESTAMP, ended_at TIMESTAMP);
        CREATE INDEX traces_by_user ON traces (user_id);
        CREATE TABLE spans (
            span_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, parent_id TEXT, thread_id TEXT, span_type TEXT NOT NULL, name TEXT,
            started_at TIMESTAMP, ended_at TIMESTAMP, duration_ms DOUBLE PRECISION, input_tokens BIGINT, output_tokens BIGINT,
            error JSON, data JSON);
        CREATE INDEX spans_by_trace ON spans (trace_id, started_at);
        CREATE INDEX spans_by_thread ON spans (thread_id);
        CREATE TABLE model_inputs (
            turn_id TEXT, call_index INTEGER, thread_id TEXT NOT NULL, user_id TEXT NOT NULL, created_at TIMESTAMP NOT NULL,
            agent TEXT, strategy TEXT, instructions TEXT, input JSON, tools TEXT[], context JSON, input_hashes TEXT[],
            PRIMARY KEY (turn_id, call_index));
        CREATE INDEX model_inputs_by_thread ON model_inputs (thread_id, created_at);
        CREATE TABLE input_items (hash TEXT PRIMARY KEY, item JSON NOT NULL);
        CREATE TABLE lineage (
            thread_id TEXT PRIMARY KEY, parent_thread_id TEXT NOT NULL, kind TEXT NOT NULL, at_item_id TEXT, overrides JSON,
            created_at TIMESTAMP NOT NULL);
        CREATE TABLE origins (thread_id TEXT PRIMARY KEY, origin TEXT NOT NULL, source_path TEXT, merged_at TIMESTAMP NOT NULL);
        CREATE TABLE guardrail_results (
            turn_id TEXT, thread_id TEXT NOT NULL, user_id TEXT NOT NULL, stage TEXT, check_index INTEGER, check_name TEXT NOT NULL,
            triggered BOOLEAN NOT NULL, execution_failed BOOLEAN NOT NULL, confidence DOUBLE PRECISION, info JSON,
            duration_ms DOUBLE PRECISION, created_at TIMESTAMP NOT NULL, PRIMARY KEY (turn_id, stage, check_index));
        CREATE INDEX guardrail_results_by_thread ON guardrail_results (thread_id, created_at);
        CREATE TABLE workflow_definitions (
            workflow_hash TEXT PRIMARY KEY, workflow_name TEXT NOT NULL, definition JSON NOT NULL, created_at TIMESTAMP NOT NULL);
        CREATE TABLE workflow_versions (
            workflow_name TEXT, version INTEGER, workflow_hash TEXT NOT NULL, note TEXT, published_at TIMESTAMP NOT NULL,
            PRIMARY KEY (workflow_name, version));
        CREATE TABLE workflow_defaults (workflow_name TEXT PRIMARY KEY, version INTEGER NOT NULL);
        CREATE TABLE workflow_nodes (
            turn_id TEXT, node_index INTEGER, thread_id TEXT NOT NULL, user_id TEXT NOT NULL, workflow_name TEXT NOT NULL,
            workflow_version INTEGER, workflow_hash TEXT NOT NULL, node_id TEXT NOT NULL, node_type TEXT NOT NULL, name TEXT NOT NULL,
            started_at TIMESTAMP NOT NULL, duration_ms DOUBLE PRECISION, status TEXT NOT NULL, edge TEXT, output JSON, error TEXT,
            model TEXT, span_id TEXT, PRIMARY KEY (turn_id, node_index));
        CREATE INDEX workflow_nodes_by_thread ON workflow_nodes (thread_id, started_at);
        CREATE TABLE workflow_runs (
            run_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, user_id TEXT NOT NULL, turn_id TEXT NOT NULL, workflow_hash TEXT NOT NULL,
            workflow_version INTEGER, node_id TEXT NOT NULL, status TEXT NOT NULL, paused JSON NOT NULL, decision TEXT,
            created_at TIMESTAMP NOT NULL, decided_at TIMESTAMP);
        CREATE TABLE documents (
            document_id TEXT PRIMARY KEY, filename TEXT NOT NULL, path TEXT NOT NULL, content_hash TEXT NOT NULL, chars INTEGER NOT NULL,
            added_by TEXT NOT NULL, added_at TIMESTAMP NOT NULL);
        CREATE TABLE document_chunks (
            document_id TEXT, chunk_index INTEGER, text TEXT NOT NULL, embedding REAL[], PRIMARY KEY (document_id, chunk_index));
        CREATE TABLE eval_datasets (
            dataset_hash TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT, n_items INTEGER NOT NULL, created_at TIMESTAMP NOT NULL);
        CREATE TABLE eval_dataset_items (dataset_hash TEXT, item_index INTEGER, item JSON NOT NULL, PRIMARY KEY (dataset_hash, item_index));
        CREATE TABLE eval_runs (
            run_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, dataset_hash TEXT NOT NULL, target JSON NOT NULL,
            graders JSON NOT NULL, status TEXT NOT NULL, user_id TEXT NOT NULL, concurrency INTEGER NOT NULL, parent_run_id TEXT,
            created_at TIMESTAMP NOT NULL, finished_at TIMESTAMP);
        CREATE TABLE eval_items (
            run_id TEXT, item_index INTEGER, item_hash TEXT NOT NULL, thread_id TEXT, turn_id TEXT, trace_id TEXT, status TEXT NOT NULL,
            output_text TEXT, latency_ms DOUBLE PRECISION, model TEXT, input_tokens BIGINT, output_tokens BIGINT, cost_usd DOUBLE PRECISION,
            error TEXT, created_at TIMESTAMP NOT NULL, PRIMARY KEY (run_id, item_index));
        CREATE TABLE eval_results (
            run_id TEXT, item_index INTEGER, grader_name TEXT, grader_type TEXT NOT NULL, score DOUBLE PRECISION NOT NULL,
            passed BOOLEAN NOT NULL, error TEXT, info JSON, PRIMARY KEY (run_id, item_index, grader_name));
        CREATE TABLE eval_rounds (
            optimization_id TEXT NOT NULL, round INTEGER NOT NULL, base_run_id TEXT NOT NULL, run_id TEXT PRIMARY KEY, node_id TEXT,
            instructions_before TEXT NOT NULL, instructions_after TEXT NOT NULL, pass_rate_before DOUBLE PRECISION NOT NULL,
            pass_rate_after DOUBLE PRECISION NOT NULL, score_before DOUBLE PRECISION NOT NULL, score_after DOUBLE PRECISION NOT NULL,
            kept BOOLEAN NOT NULL, user_id TEXT NOT NULL, created_at TIMESTAMP NOT NULL);
    """),
    # PostgreSQL's own (a DuckDB file is served by one process): the rate window every worker counts in.
    ("m003_rate_hits", """
        CREATE TABLE rate_hits (key TEXT NOT NULL, at TIMESTAMPTZ NOT NULL);
        CREATE INDEX rate_hits_by_key ON rate_hits (key, at);
    """),
    ("m004_tool_approvals", """
        CREATE TABLE tool_approvals (
            approval_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, user_id TEXT NOT NULL, turn_id TEXT NOT NULL, item_id TEXT NOT NULL,
            agent TEXT NOT NULL, calls JSON NOT NULL, status TEXT NOT NULL, paused JSON NOT NULL, decision TEXT, created_at TIMESTAMP NOT NULL,
            decided_at TIMESTAMP);
    """),
    ("m005_tool_approvals_redacted", "ALTER TABLE tool_approvals ADD COLUMN redacted BOOLEAN DEFAULT false;"),
]
ONLY_HERE = ("rate_hits",)  # tables a DuckDB file does not have
LOCK = 7_215_401  # pg_advisory_xact_lock key: "chatkit-lab migrates"
HOT_TABLES = ("threads", "items", "attachments", "feedback", "turns", "spans", "traces", "model_inputs", "input_items")
_BOOKKEEPING = "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))"


def migrate_sync(con: Any) -> list[str]:
    """Apply the missing migrations on a psycopg connection; then touch the hot tables, so the
    first request does not pay for loading their catalog entries. Returns the names applied."""
    applied = []
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
        if con.execute("SELECT to_regclass('_migrations')").fetchone()[0] is None:  # a workshop student's role may not create it
            con.execute(_BOOKKEEPING)
        done = {name for (name,) in con.execute("SELECT name FROM _migrations").fetchall()}
        for name, sql in MIGRATIONS:
            if name not in done:
                con.execute(sql)
                con.execute("INSERT INTO _migrations (name) VALUES (%s)", [name])
                applied.append(name)
        for table in HOT_TABLES:
            con.execute(f"SELECT 1 FROM {table} LIMIT 0")
    return applied


async def migrate(pool: Any) -> list[str]:
    """``migrate_sync`` for a psycopg async pool."""
    applied = []
    async with pool.connection() as con, con.transaction():
        await con.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
        if (await (await con.execute("SELECT to_regclass('_migrations')")).fetchone())[0] is None:
            await con.execute(_BOOKKEEPING)
        done = {name for (name,) in await (await con.execute("SELECT name FROM _migrations")).fetchall()}
        for name, sql in MIGRATIONS:
            if name not in done:
                await con.execute(sql)
                await con.execute("INSERT INTO _migrations (name) VALUES (%s)", [name])
                applied.append(name)
        for table in HOT_TABLES:
            await con.execute(f"SELECT 1 FROM {table} LIMIT 0")
    return applied
