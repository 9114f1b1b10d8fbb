"""Agents SDK traces and spans, written to the lab's DuckDB file (and nowhere else by default).

The SDK's processor list is process-wide, so one ``_Router`` is installed once and sends each
trace to the lab that started it (``trace_metadata["lab"]``). Runs started outside a lab go to
the newest lab. Rows (and the lab's ``turns`` rows) are buffered and written behind the stream,
on the lab's own loop, in one transaction with one multi-row INSERT per table: tracing never
blocks or breaks a run. Readers call ``aflush()`` first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import datetime
from collections.abc import Callable
from typing import Any

from agents.tracing import Span, Trace, TracingProcessor, set_trace_processors

from .store.database import Database

log = logging.getLogger(__name__)


def _local(ts: str | None) -> datetime | None:
    # Spans carry aware UTC ISO strings; items use naive local time, so convert to match.
    if not ts:
        return None
    parsed = datetime.fromisoformat(ts)
    return parsed.astimezone().replace(tzinfo=None) if parsed.tzinfo else parsed


def _span_name(data: dict[str, Any]) -> str | None:
    if data.get("type") == "handoff":
        return f"{data.get('from_agent')} -> {data.get('to_agent')}"
    if data.get("type") == "generation":
        return data.get("model")
    return data.get("name") or data.get("response_id")


class DuckDBTraceProcessor(TracingProcessor):
    """Buffers one lab's traces and spans and writes them to ``traces`` / ``spans``."""

    def __init__(
        self, db: Database, loop: asyncio.AbstractEventLoop | None = None, forward: TracingProcessor | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.db = db
        self.loop = loop
        self.forward = forward  # the OpenAI exporter, only when the user opts in
        self.redact = redact  # applied to every text value of every row before it is written
        self._lock = threading.Lock()
        self._traces: list[list[Any]] = []
        self._spans: list[list[Any]] = []
        self._turns: list[list[Any]] = []
        self._inputs: list[list[Any]] = []
        self._thread_of: dict[str, str | None] = {}
        self._flush_pending = False

    def on_trace_start(self, trace: Trace) -> None:
        info = trace.export() or {}
        metadata = info.get("metadata") or {}
        thread_id = metadata.get("thread_id") or info.get("group_id")
        with self._lock:
            self._thread_of[trace.trace_id] = thread_id
            self._traces.append([
                trace.trace_id, thread_id, metadata.get("user_id"), info.get("workflow_name"),
                info.get("group_id"), json.dumps(metadata, default=str), datetime.now(), None,
            ])
        if self.forward:
            self.forward.on_trace_start(trace)

    def on_trace_end(self, trace: Trace) -> None:
        with self._lock:
            for row in self._traces:
                if row[0] == trace.trace_id:
                    row[7] = datetime.now()
        if self.forward:
            self.forward.on_trace_end(trace)
        self._flush_soon()

    def on_span_start(self, span: Span[Any]) -> None:
        if self.forward:
            self.forward.on_span_start(span)

    def on_span_end(self, span: Span[Any]) -> None:
        try:
            data = span.span_data.export()
            started, ended = _local(span.started_at), _local(span.ended_at)
            usage = data.get("usage") or {}
            with self._lock:
                self._spans.append([
                    span.span_id, span.trace_id, span.parent_id, self._thread_of.get(span.trace_id),
                    data.get("type"), _span_name(data), started, ended,
                    (ended - started).total_seconds() * 1000 if started and ended else None,
                    usage.get("input_tokens"), usage.get("output_tokens"),
                    json.dumps(span.error, default=str) if span.error else None,
                    json.dumps(data, default=str),
                ])
        except Exception:  # tracing must never break a run
            log.exception("could not record span %s", getattr(span, "span_id", "?"))
        if self.forward:
            self.forward.on_span_end(span)

    def record_turn(self, row: list[Any]) -> None:
        """Queue one ``turns`` row (LabServer's turn log)."""
        with self._lock:
            self._turns.append(row)
        self._flush_soon()

    def record_input(self, row: list[Any]) -> None:
        """Queue one ``model_inputs`` row (what one model call received)."""
        with self._lock:
            self._inputs.append(row)
        self._flush_soon()

    def _take(self) -> dict[str, list[list[Any]]]:
        with self._lock:
            done = [t for t in self._traces if t[7] is not None]
            self._traces = [t for t in self._traces if t[7] is None]
            for t in done:
                self._thread_of.pop(t[0], None)
            rows = {"traces": done, "spans": self._spans, "turns": self._turns, "model_inputs": self._inputs}
            self._spans, self._turns, self._inputs = [], [], []
            self._flush_pending = False
        return rows

    def _write(self, cur: Any, rows: dict[str, list[list[Any]]]) -> None:
        cur.execute("BEGIN TRANSACTION")
        try:
            for table, batch in rows.items():
                if self.redact is not None:
                    batch = [[self.redact(v) if isinstance(v, str) else v for v in row] for row in batch]
                for start in range(0, len(batch), 200):
                    chunk = batch[start : start + 200]
                    marks = ", ".join(["(" + ", ".join(["?"] * len(chunk[0])) + ")"] * len(chunk))
                    cur.execute(f"INSERT INTO {table} VALUES {marks}", [v for row in chunk for v in row])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    async def aflush(self) -> None:
        rows = self._take()
        if not any(rows.values()):
            return
        try:
            async with self.db.acursor() as cur:
                self._write(cur, rows)
        except Exception:
            log.exception("could not write logs: %s", {k: len(v) for k, v in rows.items()})

    def force_flush(self) -> None:
        rows = self._take()
        if any(rows.values()):
            with self.db.cursor() as cur:
                self._write(cur, rows)
        if self.forward:
            self.forward.force_flush()

    def _flush_soon(self) -> None:
        with self._lock:
            if self._flush_pending:
                return
            self._flush_pending = True
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self.aflush()))  # type: ignore[union-attr]
        else:
            try:
                self.force_flush()
            except Exception:
                log.exception("could not write logs")

    def shutdown(self) -> None:
        if self.forward:
            self.forward.shutdown()


class _Router(TracingProcessor):
    """The one processor the SDK knows: hands each trace to the lab that started it."""

    def __init__(self) -> None:
        self.labs: dict[str, DuckDBTraceProcessor] = {}
        self._by_trace: dict[str, DuckDBTraceProcessor] = {}

    def _for_trace(self, trace: Trace) -> DuckDBTraceProcessor | None:
        lab = ((trace.export() or {}).get("metadata") or {}).get("lab")
        found = self.labs.get(lab) if lab else None
        if found is None and self.labs:
            found = list(self.labs.values())[-1]
        return found

    def on_trace_start(self, trace: Trace) -> None:
        if target := self._for_trace(trace):
            self._by_trace[trace.trace_id] = target
            target.on_trace_start(trace)

    def on_trace_end(self, trace: Trace) -> None:
        if target := self._by_trace.pop(trace.trace_id, None):
            target.on_trace_end(trace)

    def on_span_start(self, span: Span[Any]) -> None:
        if target := self._by_trace.get(span.trace_id):
            target.on_span_start(span)

    def on_span_end(self, span: Span[Any]) -> None:
        if target := self._by_trace.get(span.trace_id):
            target.on_span_end(span)

    def shutdown(self) -> None:
        for lab in list(self.labs.values()):
            lab.shutdown()

    def force_flush(self) -> None:
        for lab in list(self.labs.values()):
            lab.force_flush()


_router: _Router | None = None


def register(key: str, processor: DuckDBTraceProcessor) -> None:
    """Route traces tagged ``lab=key`` to ``processor``; replaces the SDK's OpenAI exporter."""
    global _router
    if _router is None:
        _router = _Router()
        set_trace_processors([_router])
    _router.labs[key] = processor


def unregister(key: str) -> None:
    if _router is not None:
        _router.labs.pop(key, None)
