"""Samples from what the store recorded: a thread's last turn as graders see it, with no model call.

``recorded_sample(cur, thread_id)`` (``recorded_samples`` for many) reads the turn row, its reply, its spans, workflow node rows
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
    found = recorded_samples(cur, [thread_id], user_id)
    if thread_id not in found:
        raise ChatLabError(f"Thread {thread_id!r} has no recorded turn to grade.")
    return found[thread_id]


def recorded_samples(cur: Any, thread_ids: list[str], user_id: str | None = None) -> dict[str, dict[str, Any]]:
    """``recorded_sample`` of many threads in four queries (a run grades a thousand at once); a
    thread with no recorded turn (or not ``user_id``'s) is left out."""
    sql, params = queries.turns(user_id, thread_ids)
    found = cur.execute(f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY thread_id ORDER BY exchange DESC NULLS LAST, started_at DESC) "
                        f"AS newest FROM ({sql}) t) n WHERE newest = 1", params)
    names = [column[0] for column in found.description]
    rows = [dict(zip(names, values, strict=True)) for values in found.fetchall()]
    for row in rows:
        del row["newest"]
    # A click on an approval card goes on with the run in a turn of its own, with no exchange:
    # those after the newest exchange are the rest of its answer (its tools, nodes, tokens).
    clicked = cur.execute(f"SELECT * FROM ({sql}) t WHERE exchange IS NULL ORDER BY started_at", params)
    names = [column[0] for column in clicked.description]
    newest = {row["thread_id"]: row["started_at"] for row in rows}
    clicks: dict[str, list[dict[str, Any]]] = {}
    for values in clicked.fetchall():
        click = dict(zip(names, values, strict=True))
        if click["thread_id"] in newest and click["started_at"] > newest[click["thread_id"]]:
            clicks.setdefault(click["thread_id"], []).append(click)
    steps = _trajectories(cur, rows, clicks)
    return {row["thread_id"]: _sample(_went_on(row, clicks.get(row["thread_id"], [])), *steps[row["thread_id"]]) for row in rows}


def _went_on(row: dict[str, Any], clicks: list[dict[str, Any]]) -> dict[str, Any]:
    """An exchange's turn row with the turns its approvals' clicks ran added: their latency and
    tokens, and the last one's status and error."""
    if not clicks:
        return row
    turns = [row, *clicks]
    total = {key: sum(t[key] for t in turns if t[key] is not None) for key in ("latency_ms", "input_tokens", "output_tokens")}
    return {**row, **total, "status": clicks[-1]["status"], "error": clicks[-1]["error"]}


def _sample(row: dict[str, Any], steps: list[dict[str, Any]], nodes: dict[str, Any]) -> dict[str, Any]:
    text = row["reply_text"] or ""
    sample: dict[str, Any] = {
        "output_text": text, "input": row["user_text"], "thread_id": row["thread_id"], "turn_id": row["turn_id"], "trace_id": row["trace_id"],
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


Steps = tuple[list[dict[str, Any]], dict[str, Any]]


def _trajectories(cur: Any, rows: list[dict[str, Any]], clicks: dict[str, list[dict[str, Any]]]) -> dict[str, Steps]:
    """Each turn row's steps in start order (spans by trace, node rows and verdicts by turn), with
    those of its ``clicks``' turns, and its node outputs (a node's last), by thread."""
    every = [*rows, *(c for followed in clicks.values() for c in followed)]
    turn_ids = [r["turn_id"] for r in every if r["turn_id"]]
    trace_ids = [r["trace_id"] for r in every if r["trace_id"]]
    # (start, step) lists in query order: spans, then node rows, then verdicts; the stable sort by
    # start below keeps that order between steps that started at the same time.
    timed: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for trace_id, kind, name, started, duration, data in cur.execute(
        "SELECT trace_id, span_type, name, started_at, duration_ms, data FROM spans WHERE trace_id IN (SELECT unnest($ids::VARCHAR[])) "
        "ORDER BY trace_id, started_at, span_id", {"ids": trace_ids}).fetchall():
        step = _span_step(kind, name, json.loads(data) if data else {}, duration)
        if step is not None:
            timed.setdefault(trace_id, []).append((started or datetime.min, step))
    by_turn: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
    for turn_id, node_id, node_type, name, started, duration, status, edge, output in cur.execute(
        "SELECT turn_id, node_id, node_type, name, started_at, duration_ms, status, edge, output FROM workflow_nodes "
        "WHERE turn_id IN (SELECT unnest($ids::VARCHAR[])) ORDER BY turn_id, node_index", {"ids": turn_ids}).fetchall():
        outputs.setdefault(turn_id, {})[node_id] = json.loads(output) if output else None  # a node run twice (a loop) shows its last output
        by_turn.setdefault(turn_id, []).append((started, {"type": "node", "id": node_id, "name": name, "node_type": node_type,
                                                          "status": status, "edge": edge, "duration_ms": duration}))
    for turn_id, stage, check, triggered, failed, confidence, created in cur.execute(
        "SELECT turn_id, stage, check_name, triggered, execution_failed, confidence, created_at FROM guardrail_results "
        "WHERE turn_id IN (SELECT unnest($ids::VARCHAR[])) ORDER BY turn_id, created_at, check_index", {"ids": turn_ids}).fetchall():
        by_turn.setdefault(turn_id, []).append((created, {"type": "guardrail", "name": check, "stage": stage, "triggered": triggered,
                                                          "execution_failed": failed, "confidence": confidence}))
    result: dict[str, Steps] = {}
    for row in rows:
        turns = [row, *clicks.get(row["thread_id"], [])]
        steps = [step for t in turns for step in timed.get(t["trace_id"], []) + by_turn.get(t["turn_id"], [])]
        nodes = {node: output for t in turns for node, output in outputs.get(t["turn_id"], {}).items()}
        result[row["thread_id"]] = ([step for _, step in sorted(steps, key=lambda t: t[0])], nodes)
    return result


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
