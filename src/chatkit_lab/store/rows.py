"""Typed rows of the log tables, written by column name.

A row class names its table and its columns; ``insert`` writes a batch by column name (a DuckDB
appender, or PostgreSQL's multi-row INSERTs), so a migration that adds a column (with a
default) never breaks a log write, and a test pins each class to the table it fills.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from .postgres_database import PgCursor


def stored_json(value: Any, *, default: Callable[[Any], Any] = str) -> str:
    """JSON as the log tables keep it: compact, non-ASCII as is. (A JSONL export writes JSON
    columns compactly too, so what is imported is the same text.)"""
    return json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))


@dataclass
class TurnRow:
    """One turn of a thread: ``turns``."""

    TABLE: ClassVar[str] = "turns"
    turn_id: str
    thread_id: str
    user_id: str
    user_item_id: str | None
    started_at: datetime
    ended_at: datetime | None = None
    latency_ms: float | None = None
    first_token_ms: float | None = None
    status: str = "running"
    error: str | None = None
    agent: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tools: list[str] = field(default_factory=list)
    trace_id: str | None = None


@dataclass
class TraceRow:
    """One Agents SDK trace (one agent run): ``traces``."""

    TABLE: ClassVar[str] = "traces"
    trace_id: str
    thread_id: str | None
    user_id: str | None
    workflow_name: str | None
    group_id: str | None
    metadata: str | None  # JSON text
    started_at: datetime | None
    ended_at: datetime | None = None


@dataclass
class SpanRow:
    """One span of a trace (agent, generation, function, handoff, guardrail...): ``spans``."""

    TABLE: ClassVar[str] = "spans"
    span_id: str
    trace_id: str
    parent_id: str | None
    thread_id: str | None
    span_type: str | None
    name: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    error: str | None  # JSON text
    data: str | None  # JSON text


@dataclass
class ModelInputRow:
    """What one model call of a turn received: ``model_inputs``."""

    TABLE: ClassVar[str] = "model_inputs"
    turn_id: str
    call_index: int
    thread_id: str
    user_id: str
    created_at: datetime
    agent: str | None
    strategy: str | None
    instructions: str | None
    input: str | None  # JSON text; NULL since m006: the items are in input_items, by input_hashes
    tools: list[str]
    context: str  # JSON text
    input_hashes: list[str] | None = None


@dataclass
class InputItemRow:
    """One model input item, stored once however many calls sent it: ``input_items``."""

    TABLE: ClassVar[str] = "input_items"
    hash: str
    item: str  # JSON text


@dataclass
class GuardrailRow:
    """One check's verdict in one stage of a turn: ``guardrail_results``."""

    TABLE: ClassVar[str] = "guardrail_results"
    turn_id: str
    thread_id: str
    user_id: str
    stage: str
    check_index: int
    check_name: str
    triggered: bool
    execution_failed: bool
    confidence: float | None
    info: str  # JSON text, without what the text said (see CheckResult.stored_info)
    duration_ms: float
    created_at: datetime


@dataclass
class NodeRow:
    """One node run of a workflow turn: ``workflow_nodes``."""

    TABLE: ClassVar[str] = "workflow_nodes"
    turn_id: str
    node_index: int
    thread_id: str
    user_id: str
    workflow_name: str
    workflow_version: int | None
    workflow_hash: str
    node_id: str
    node_type: str
    name: str
    started_at: datetime
    duration_ms: float | None
    status: str
    edge: str | None
    output: str | None  # JSON text
    error: str | None
    model: str | None
    span_id: str | None


LogRow = TurnRow | TraceRow | SpanRow | ModelInputRow | InputItemRow | GuardrailRow | NodeRow
ROW_CLASSES: tuple[type[Any], ...] = (TraceRow, SpanRow, TurnRow, ModelInputRow, InputItemRow, GuardrailRow, NodeRow)
_IGNORE_EXISTING = {InputItemRow: "hash"}  # content-addressed, by this key: a row already there is the same row


def columns(row_class: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(row_class)]


def _clean(value: Any, redact: Callable[[str], str] | None) -> Any:
    if redact is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact(v) if isinstance(v, str) else v for v in value]
    return value


def insert(cur: Any, rows: Sequence[Any], *, redact: Callable[[str], str] | None = None, chunk: int = 200) -> None:
    """Write ``rows`` (of one or more row classes) by column name: into DuckDB through an
    appender, one statement a table (a multi-row VALUES costs DuckDB tens of microseconds a
    value to bind); into PostgreSQL as INSERTs of ``chunk`` rows."""
    by_class: dict[type[Any], list[Any]] = {}
    for row in rows:
        by_class.setdefault(type(row), []).append(row)
    for row_class, batch in by_class.items():
        names = columns(row_class)
        values = [[_clean(getattr(row, name), redact) for name in names] for row in batch]
        key = _IGNORE_EXISTING.get(row_class)
        if isinstance(cur, PgCursor):
            marks = "(" + ", ".join(["?"] * len(names)) + ")"
            head = f"INSERT INTO {row_class.TABLE} ({', '.join(names)}) VALUES "
            tail = " ON CONFLICT DO NOTHING" if key else ""
            for start in range(0, len(values), chunk):
                part = values[start : start + chunk]
                cur.execute(head + ", ".join([marks] * len(part)) + tail, [v for row in part for v in row])
            continue
        if key is not None:  # DuckDB's ON CONFLICT costs more than asking which keys are there
            values = _not_stored(cur, row_class.TABLE, key, names.index(key), values)
        if values:
            appender = cur.appender(row_class.TABLE, columns=names)
            appender.append_rows(values)
            appender.flush()


def _not_stored(cur: Any, table: str, key: str, at: int, values: list[list[Any]]) -> list[list[Any]]:
    """The rows whose ``key`` is neither stored nor taken by an earlier row of ``values``."""
    stored = {k for (k,) in cur.execute(f"SELECT {key} FROM {table} WHERE {key} IN (SELECT unnest(?::VARCHAR[]))",
                                        [[row[at] for row in values]]).fetchall()}
    fresh: dict[Any, list[Any]] = {}
    for row in values:
        if row[at] not in stored:
            fresh.setdefault(row[at], row)
    return list(fresh.values())
