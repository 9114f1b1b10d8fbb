"""Samples from what the store recorded: a thread's last turn as graders see it, with no model call.

``recorded_sample(cur, thread_id)`` reads the turn row, its reply, its spans, workflow node rows
and guardrail verdicts, so stored runs and recorded threads can be graded (and graded again with
new graders) without running anything.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..errors import ChatLabError
from ..store import queries


def recorded_sample(cur: Any, thread_id: str, user_id: str | None = None) -> dict[str, Any]:
    """The sample of ``thread_id``'s last turn (only ``user_id``'s thread when given): ``output_text``,
    ``output_json`` (when the reply is JSON), ``output_tools`` (OpenAI's ``tool_calls`` shape),
    ``trajectory`` (see ``evals.trajectory``), ``nodes`` (a workflow turn's node outputs by node id:
    ``{{ sample.nodes.classify.output_parsed.classification }}``), ``latency_ms``, tokens, ``model``, ``turn_id``, ``trace_id``."""
    sql, params = queries.turns(user_id, thread_id)
    found = cur.execute(f"SELECT * FROM ({sql}) ORDER BY exchange DESC NULLS LAST, started_at DESC LIMIT 1", params)
    values = found.fetchone()
    if values is None:
        raise ChatLabError(f"Thread {thread_id!r} has no recorded turn to grade.")
    row = dict(zip([column[0] for column in found.description], values, strict=True))
    steps, nodes = _trajectory(cur, row["turn_id"], row["trace_id"])
    text = row["reply_text"] or ""
    sample: dict[str, Any] = {
        "output_text": text, "input": row["user_text"], "thread_id": thread_id, "turn_id": row["turn_id"], "trace_id": row["trace_id"],
        "latency_ms": row["latency_ms"], "input_tokens": _int(row["input_tokens"]), "output_tokens": _int(row["output_tokens"]),
        "model": row["model"], "status": row["status"], "error": row["error"], "trajectory": steps, "nodes": nodes,
        "output_tools": [{"id": f"call_{n}", "type": "function", "function": {"name": s["name"], "arguments": s["raw_arguments"]}}
                         for n, s in enumerate(s for s in steps if s["type"] == "tool")],
    }
    try:
        sample["output_json"] = json.loads(text)
    except ValueError:
        pass
    return sample


def _trajectory(cur: Any, turn_id: str | None, trace_id: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    timed: list[tuple[datetime, int, dict[str, Any]]] = []
    outputs: dict[str, Any] = {}
    if trace_id:
        spans = cur.execute("SELECT span_type, name, started_at, duration_ms, data FROM spans WHERE trace_id = ? ORDER BY started_at, span_id", [trace_id]).fetchall()
        for n, (kind, name, started, duration, data) in enumerate(spans):
            step = _span_step(kind, name, json.loads(data) if data else {}, duration)
            if step is not None:
                timed.append((started or datetime.min, n, step))
    if turn_id:
        for node_id, node_type, name, started, duration, status, edge, output in cur.execute(
            "SELECT node_id, node_type, name, started_at, duration_ms, status, edge, output FROM workflow_nodes WHERE turn_id = ? ORDER BY node_index", [turn_id]
        ).fetchall():
            outputs[node_id] = json.loads(output) if output else None  # a node run twice (a loop) shows its last output
            timed.append((started, len(timed), {"type": "node", "id": node_id, "name": name, "node_type": node_type, "status": status,
                                                "edge": edge, "duration_ms": duration}))
        for stage, check, triggered, failed, confidence, created in cur.execute(
            "SELECT stage, check_name, triggered, execution_failed, confidence, created_at FROM guardrail_results WHERE turn_id = ? ORDER BY created_at, check_index",
            [turn_id],
        ).fetchall():
            timed.append((created, len(timed), {"type": "guardrail", "name": check, "stage": stage, "triggered": triggered,
                                                "execution_failed": failed, "confidence": confidence}))
    return [step for _, _, step in sorted(timed, key=lambda t: (t[0], t[1]))], outputs


def _span_step(kind: str, name: str | None, data: dict[str, Any], duration: float | None) -> dict[str, Any] | None:
    if kind == "function":
        raw = data.get("input") or "{}"
        try:
            arguments = json.loads(raw)
        except ValueError:
            arguments = raw
        return {"type": "tool", "name": name, "arguments": arguments, "raw_arguments": raw, "output": data.get("output"), "duration_ms": duration}
    if kind == "handoff":
        return {"type": "handoff", "name": data.get("to_agent"), "from": data.get("from_agent"), "duration_ms": duration}
    if kind in ("agent", "generation", "mcp_tools"):
        return {"type": kind, "name": name, "duration_ms": duration}
    return None  # the SDK's bookkeeping spans (turn, task) are not steps


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
