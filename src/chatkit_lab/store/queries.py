"""The SQL behind the frames, replay and diff: the one module that knows user scoping.

Each function returns ``(sql, params)`` for one user's rows (``user_id``), or everyone's when
``user_id`` is None, optionally of one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ChatLabError

Query = tuple[str, dict[str, Any]]


def scope(user_id: str | None, thread_id: str | list[str] | None = None, alias: str = "") -> Query:
    """A WHERE condition (and its parameters) for one user's rows, and one thread's (or a list's)."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {}
    if user_id is not None:
        where.append(f"{alias}user_id = $user")
        params["user"] = user_id
    if isinstance(thread_id, list):
        where.append(f"{alias}thread_id IN (SELECT unnest($thread::VARCHAR[]))")
        params["thread"] = thread_id
    elif thread_id is not None:
        where.append(f"{alias}thread_id = $thread")
        params["thread"] = thread_id
    return " AND ".join(where), params


def user_scope(table: str, dialect: str = "duckdb") -> str:
    """The WHERE condition keeping one user's (``$user``) rows of ``table``."""
    if table == "input_items" and dialect == "postgres":
        return ("hash IN (SELECT unnest(input_hashes) FROM model_inputs WHERE user_id = $user) OR hash IN "
                "(SELECT jsonb_array_elements_text(data::jsonb -> 'input_hashes') FROM spans "
                "WHERE trace_id IN (SELECT trace_id FROM traces WHERE user_id = $user))")
    if table == "spans":
        return "trace_id IN (SELECT trace_id FROM traces WHERE user_id = $user)"
    if table in ("lineage", "origins"):
        return "thread_id IN (SELECT thread_id FROM threads WHERE user_id = $user)"
    if table == "input_items":  # shared by content: the items this user's calls and spans name
        return ("hash IN (SELECT unnest(input_hashes) FROM model_inputs WHERE user_id = $user) OR hash IN "
                "(SELECT unnest(json_extract_string(data, '$.input_hashes[*]')) FROM spans "
                "WHERE trace_id IN (SELECT trace_id FROM traces WHERE user_id = $user))")
    if table == "workflow_definitions":  # the graphs this user's turns ran
        return ("workflow_hash IN (SELECT workflow_hash FROM workflow_nodes WHERE user_id = $user "
                "UNION SELECT workflow_hash FROM workflow_runs WHERE user_id = $user) OR workflow_hash IN (SELECT workflow_hash FROM workflow_versions)")
    if table in ("workflow_versions", "workflow_defaults"):  # the lab's published workflows: no one's data
        return "true"
    if table in ("eval_items", "eval_results"):
        return "run_id IN (SELECT run_id FROM eval_runs WHERE user_id = $user)"
    if table in ("eval_datasets", "eval_dataset_items"):  # the datasets this user's runs used
        return "dataset_hash IN (SELECT dataset_hash FROM eval_runs WHERE user_id = $user)"
    return "user_id = $user"


def exchanges_sql(where: str) -> str:
    """One row per user message of the matching items: the message and the assistant's reply
    (every assistant message until the next user message), numbered per thread from 1."""
    return f"""
        WITH ordered AS (
            SELECT thread_id, item_id, type, text, created_at, seq,
                   sum(CASE WHEN type = 'user_message' THEN 1 ELSE 0 END)
                       OVER (PARTITION BY thread_id ORDER BY created_at, seq)::INTEGER AS exchange
            FROM items WHERE ({where}) AND type IN ('user_message', 'assistant_message')
        )
        SELECT thread_id, exchange,
               max(item_id) FILTER (WHERE type = 'user_message') AS user_item_id,
               max(text) FILTER (WHERE type = 'user_message') AS user_text,
               string_agg(text, chr(10) || chr(10) ORDER BY created_at, seq)
                   FILTER (WHERE type = 'assistant_message') AS reply_text
        FROM ordered WHERE exchange > 0 GROUP BY thread_id, exchange"""


# -- frames ---------------------------------------------------------------------------------
def threads(user_id: str | None) -> Query:
    where, params = scope(user_id, alias="t.")
    return f"""
        SELECT t.thread_id, t.user_id, t.title, t.status, t.created_at, t.updated_at,
               (SELECT count(*) FROM items i WHERE i.thread_id = t.thread_id) AS items,
               l.parent_thread_id, l.kind AS lineage, l.overrides, o.origin
        FROM threads t
        LEFT JOIN lineage l USING (thread_id)
        LEFT JOIN origins o USING (thread_id)
        WHERE {where} ORDER BY t.created_at DESC, t.seq DESC""", params


def items(user_id: str | None, thread_id: str | None) -> Query:
    where, params = scope(user_id, thread_id)
    return f"""SELECT item_id, thread_id, user_id, created_at, type, role, text, data
               FROM items WHERE {where} ORDER BY thread_id, created_at, seq""", params


def turns(user_id: str | None, thread_id: str | list[str] | None) -> Query:
    """``turns`` with what was said, the reply, total tokens, and where the thread came from.

    An exchange whose turn row was never written (the process died in the moment between the
    reply and its log write) is a row too, with ``status`` "not logged" and what the items hold;
    exchanges a fork copied from its parent are not turns of the fork.
    """
    where, params = scope(user_id, thread_id, "t.")
    unlogged_where = scope(user_id, thread_id, "i.")[0]
    return f"""
        WITH ex AS ({exchanges_sql(scope(user_id, thread_id)[0])}),
        logged AS (
            SELECT t.turn_id, t.thread_id, t.user_id, ex.exchange, ex.user_text, ex.reply_text,
                   t.started_at, t.latency_ms, t.first_token_ms, t.input_tokens, t.output_tokens,
                   t.tools, t.agent, t.model, t.status, t.error, t.trace_id
            FROM turns t LEFT JOIN ex ON ex.thread_id = t.thread_id AND ex.user_item_id = t.user_item_id
            WHERE {where}
        ),
        unlogged AS (
            SELECT NULL::VARCHAR AS turn_id, ex.thread_id, i.user_id, ex.exchange, ex.user_text, ex.reply_text,
                   i.created_at AS started_at, NULL::FLOAT8 AS latency_ms, NULL::FLOAT8 AS first_token_ms, NULL::BIGINT AS input_tokens,
                   NULL::BIGINT AS output_tokens, NULL::VARCHAR[] AS tools, NULL::VARCHAR AS agent, NULL::VARCHAR AS model,
                   'not logged' AS status, 'The process ended before this turn was logged; its messages are in items.' AS error,
                   NULL::VARCHAR AS trace_id
            FROM ex JOIN items i ON i.thread_id = ex.thread_id AND i.item_id = ex.user_item_id
            WHERE {unlogged_where}
              AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.thread_id = ex.thread_id AND t.user_item_id = ex.user_item_id)
              AND NOT EXISTS (SELECT 1 FROM lineage l JOIN items p ON p.thread_id = l.parent_thread_id AND p.item_id = ex.user_item_id
                              WHERE l.thread_id = ex.thread_id AND l.kind IN ('fork', 'edit'))
        )
        SELECT r.turn_id, r.thread_id, r.user_id, r.exchange, r.user_text, r.reply_text, r.started_at,
               r.latency_ms, r.first_token_ms, r.input_tokens, r.output_tokens,
               r.input_tokens + r.output_tokens AS tokens, r.tools, r.agent, r.model, r.status, r.error,
               l.parent_thread_id, l.kind AS lineage, o.origin, r.trace_id
        FROM (SELECT * FROM logged UNION ALL SELECT * FROM unlogged) r
        LEFT JOIN lineage l ON l.thread_id = r.thread_id
        LEFT JOIN origins o ON o.thread_id = r.thread_id
        ORDER BY r.started_at""", params


def spans(user_id: str | None, thread_id: str | None, dialect: str = "duckdb") -> Query:
    where, params = scope(None, thread_id, "s.")
    if user_id is not None:
        where += " AND s.trace_id IN (SELECT trace_id FROM traces WHERE user_id = $user)"
        params["user"] = user_id
    return f"""SELECT s.span_id, s.trace_id, s.parent_id, s.thread_id, s.span_type, s.name, s.started_at, s.ended_at, s.duration_ms,
                      s.input_tokens, s.output_tokens, s.error, {expanded_span_data('s', dialect)} AS data
               FROM spans s WHERE {where} ORDER BY s.started_at""", params


def feedback(user_id: str | None, thread_id: str | None) -> Query:
    where, params = scope(user_id, thread_id, "f.")
    return f"""SELECT f.thread_id, f.item_id, f.user_id, f.kind, f.comment, f.created_at, i.text
               FROM feedback f LEFT JOIN items i USING (thread_id, item_id)
               WHERE {where} ORDER BY f.created_at""", params


def guardrails(user_id: str | None, thread_id: str | None) -> Query:
    where, params = scope(user_id, thread_id, "g.")
    return f"""SELECT g.thread_id, g.turn_id, g.user_id, g.stage, g.check_name, g.triggered, g.execution_failed, g.confidence,
                      g.info, g.duration_ms, g.created_at, t.status AS turn_status
               FROM guardrail_results g LEFT JOIN turns t USING (turn_id)
               WHERE {where} ORDER BY g.created_at, g.turn_id, {STAGE_ORDER}, g.check_index""", params


def nodes(user_id: str | None, thread_id: str | None) -> Query:
    where, params = scope(user_id, thread_id, "n.")
    return f"""SELECT n.thread_id, n.turn_id, n.node_index, n.node_id, n.node_type, n.name, n.started_at, n.duration_ms, n.status, n.edge,
                      n.output, n.error, n.model, n.workflow_name, n.workflow_version, n.workflow_hash, n.span_id, n.user_id
               FROM workflow_nodes n WHERE {where} ORDER BY n.started_at, n.turn_id, n.node_index""", params


def eval_runs(user_id: str | None) -> Query:
    where, params = scope(user_id, None, "r.")
    return f"""SELECT r.run_id, r.name, r.kind, r.status, coalesce(n.items, 0) AS items, coalesce(n.answered, 0) AS answered,
                      (SELECT count(*) FROM (SELECT item_index FROM eval_results x WHERE x.run_id = r.run_id GROUP BY item_index
                                             HAVING bool_and(passed)) p) AS passed,
                      n.cost_usd, r.dataset_hash, r.target, r.parent_run_id, r.user_id, r.created_at, r.finished_at
               FROM eval_runs r LEFT JOIN (
                   SELECT run_id, count(DISTINCT item_index) AS items, count(DISTINCT item_index) FILTER (WHERE status = 'done') AS answered,
                          sum(cost_usd) AS cost_usd
                   FROM eval_items GROUP BY run_id) n USING (run_id)
               WHERE {where} ORDER BY r.created_at""", params


STAGE_ORDER = "CASE g.stage WHEN 'pre_flight' THEN 0 WHEN 'input' THEN 1 ELSE 2 END"


def expanded_input(alias: str, dialect: str = "duckdb") -> str:
    """A model call's input as the JSON array the model received: since m006 the items are kept
    once, in ``input_items``, and each call names them by hash (``input_hashes``)."""
    if dialect == "postgres":
        return f"""coalesce({alias}.input, (
            SELECT coalesce('[' || string_agg(i.item::VARCHAR, ',' ORDER BY h.n) || ']', '[]')
            FROM unnest({alias}.input_hashes) WITH ORDINALITY AS h(hash, n) JOIN input_items i ON i.hash = h.hash)::JSON)"""
    return f"""coalesce({alias}.input, (
        SELECT coalesce('[' || string_agg(i.item::VARCHAR, ',' ORDER BY h.n) || ']', '[]')
        FROM (SELECT unnest({alias}.input_hashes) AS hash, unnest(range(len({alias}.input_hashes))) AS n) h
        JOIN input_items i ON i.hash = h.hash)::JSON)"""


def expanded_span_data(alias: str, dialect: str = "duckdb") -> str:
    """A span's data with its ``input`` back in place of ``input_hashes`` (generation spans)."""
    if dialect == "postgres":
        data = f"{alias}.data::jsonb"
        return f"""CASE WHEN {data} -> 'input_hashes' IS NOT NULL THEN (jsonb_build_object('input', (
            SELECT coalesce(jsonb_agg(i.item::jsonb ORDER BY h.n), '[]'::jsonb)
            FROM jsonb_array_elements_text({data} -> 'input_hashes') WITH ORDINALITY AS h(hash, n) JOIN input_items i ON i.hash = h.hash))
            || ({data} - 'input_hashes'))::json ELSE {alias}.data END"""
    hashes = f"json_extract_string({alias}.data, '$.input_hashes[*]')"
    return f"""CASE WHEN json_exists({alias}.data, '$.input_hashes') THEN json_merge_patch(
        json_object('input', (SELECT coalesce('[' || string_agg(i.item::VARCHAR, ',' ORDER BY h.n) || ']', '[]')
                              FROM (SELECT unnest({hashes}) AS hash, unnest(range(len({hashes}))) AS n) h
                              JOIN input_items i ON i.hash = h.hash)::JSON),
        json_merge_patch({alias}.data, '{{"input_hashes": null}}')) ELSE {alias}.data END"""


def model_inputs(user_id: str | None, thread_id: str | None, dialect: str = "duckdb") -> Query:
    where, params = scope(user_id, thread_id, "m.")
    return f"""SELECT m.turn_id, m.call_index, m.thread_id, m.user_id, m.created_at, m.agent, m.strategy, m.instructions, m.tools,
                      m.context, {expanded_input("m", dialect)} AS input
               FROM model_inputs m WHERE {where} ORDER BY m.created_at, m.call_index""", params


# -- one thread, for replay, fork and diff ----------------------------------------------------
def thread_owner(cur: Any, thread_id: str, user_id: str | None = None) -> tuple[str, str | None]:
    """The thread's owner and title; ``user_id``: only that user's thread (others' look missing)."""
    return thread_owners(cur, [thread_id], user_id)[thread_id]


def thread_owners(cur: Any, thread_ids: Sequence[str], user_id: str | None = None) -> dict[str, tuple[str, str | None]]:
    """Each thread's owner and title, read in one go; the first that is missing (or, with
    ``user_id``, another user's) is an error."""
    found = {t: (user, title) for t, user, title in cur.execute(
        "SELECT thread_id, user_id, title FROM threads WHERE thread_id IN (SELECT unnest(?::VARCHAR[]))", [list(thread_ids)]).fetchall()
        if user_id is None or user == user_id}
    for thread_id in thread_ids:
        if thread_id not in found:
            raise ChatLabError(f"There is no thread {thread_id!r} in this lab's database; lab.threads_df() lists them.")
    return found


def _last_turn(where: str) -> str:
    return f"""tu AS (SELECT DISTINCT ON (user_item_id) user_item_id, turn_id FROM turns
                WHERE {where} AND user_item_id IS NOT NULL ORDER BY user_item_id, started_at DESC)"""


_LAST_TURN = _last_turn("thread_id = $thread")
_ANY_THREAD = "thread_id IN (SELECT unnest($threads::VARCHAR[]))"

# Each user message of the threads with the original reply and the context its turn's model saw.
REPLAY_PLANS = f"""
    WITH ex AS ({exchanges_sql(_ANY_THREAD)}), {_last_turn(_ANY_THREAD)}
    SELECT ex.thread_id, ex.exchange, i.data, ex.reply_text, m.context, m.strategy
    FROM ex JOIN items i ON i.thread_id = ex.thread_id AND i.item_id = ex.user_item_id
    LEFT JOIN tu ON tu.user_item_id = ex.user_item_id
    LEFT JOIN model_inputs m ON m.turn_id = tu.turn_id AND m.call_index = 0
    ORDER BY ex.thread_id, ex.exchange"""

# The answered approval cards of the threads, each with the exchange it was asked in: what a replay clicks.
REPLAY_DECISIONS = f"""
    SELECT thread_id, exchange, data FROM (
        SELECT thread_id, type, data, created_at, seq,
               sum(CASE WHEN type = 'user_message' THEN 1 ELSE 0 END) OVER (PARTITION BY thread_id ORDER BY created_at, seq)::INTEGER AS exchange
        FROM items WHERE {_ANY_THREAD} AND type IN ('user_message', 'widget')) cards
    WHERE type = 'widget' AND exchange > 0 AND data::VARCHAR LIKE '%approval_decision%'
    ORDER BY thread_id, created_at, seq"""

_NONE = "CASE WHEN t.trace_id IS NOT NULL THEN ARRAY[]::VARCHAR[] END"  # no turn recorded: NULL, not "none"
# One row per exchange of a thread: what a diff compares.
EXCHANGE_FACTS = f"""
    WITH ex AS ({exchanges_sql("thread_id = $thread")}), {_LAST_TURN}
    SELECT ex.exchange, ex.user_text, ex.reply_text AS reply, t.tools,
           coalesce((SELECT array_agg(s.name ORDER BY s.started_at) FROM spans s
                      WHERE s.trace_id = t.trace_id AND s.span_type = 'handoff'), {_NONE}) AS handoffs,
           coalesce((SELECT array_agg(s.name || CASE WHEN s.data->>'triggered' = 'true' THEN ': triggered' ELSE ': passed' END
                                 ORDER BY s.started_at) FROM spans s
                      WHERE s.trace_id = t.trace_id AND s.span_type = 'guardrail'), {_NONE}) AS guardrails,
           t.latency_ms, t.input_tokens + t.output_tokens AS tokens, t.status, t.error
    FROM ex LEFT JOIN tu ON tu.user_item_id = ex.user_item_id LEFT JOIN turns t ON t.turn_id = tu.turn_id
    ORDER BY ex.exchange"""


def frame(name: str, user_id: str | None, dialect: str = "duckdb") -> Query:
    """The query behind ``lab.<name>_df()``, for every thread: what ``lab.export(frame=name)`` writes."""
    frames = {
        "threads": lambda: threads(user_id), "items": lambda: items(user_id, None), "turns": lambda: turns(user_id, None),
        "spans": lambda: spans(user_id, None, dialect), "feedback": lambda: feedback(user_id, None),
        "model_inputs": lambda: model_inputs(user_id, None, dialect),
        "guardrails": lambda: guardrails(user_id, None), "nodes": lambda: nodes(user_id, None),
    }
    if name not in frames:
        raise ChatLabError(f"There is no frame {name!r} to export; choose one of {', '.join(frames)}.")
    return frames[name]()
