"""Agents SDK traces and spans, written to the lab's DuckDB file (and nowhere else by default).

The SDK's processor list is process-wide, so one ``_Router`` is installed once and sends each
trace to the lab that started it (``trace_metadata["lab"]``). Runs started outside a lab go to
the newest lab. Rows (and the lab's ``turns`` rows) are buffered and written behind the stream,
in one transaction with one multi-row INSERT per table, by a worker thread: tracing never
blocks or breaks a run. Readers call ``aflush()`` first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agents.tracing import Span, Trace, TracingProcessor, set_trace_processors

from .errors import DatabaseBusyError, DatabaseUnavailableError
from .store.database import Database
from .store.items import utc_now
from .store.postgres_database import PostgresDatabase
from .store.rows import (
    InputItemRow,
    LogRow,
    ModelInputRow,
    SpanRow,
    TraceRow,
    TurnRow,
    insert,
    stored_json,
)
from .store.transaction import in_transaction

log = logging.getLogger(__name__)
# Seconds rows wait before they are written: busy turns share one write instead of queueing
# behind each other's (a write holds the file for a few ms).
FLUSH_DELAY = 0.1
HASHES_REMEMBERED = 100_000


def _utc(ts: str | None) -> datetime | None:
    # Spans carry aware UTC ISO strings; the tables keep naive UTC.
    if not ts:
        return None
    parsed = datetime.fromisoformat(ts)
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _span_name(data: dict[str, Any]) -> str | None:
    if data.get("type") == "handoff":
        return f"{data.get('from_agent')} -> {data.get('to_agent')}"
    if data.get("type") == "generation":
        return data.get("model")
    return data.get("name") or data.get("response_id")


class DuckDBTraceProcessor(TracingProcessor):
    """Buffers one lab's traces, spans, turns and model inputs and writes them as named rows.

    A turn's rows are written together when the turn ends, in one transaction, by a worker
    thread (DuckDB releases the GIL), so the loop goes on streaming meanwhile. A failed write is
    counted and reported (``failures``, ``last_failure``, ``on_failure``), never silent.
    """

    def __init__(
        self, db: Database | PostgresDatabase, loop: asyncio.AbstractEventLoop | None = None, forward: TracingProcessor | None = None,
        redact: Callable[[str], str] | None = None, on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.loop = loop
        self.forward = forward  # the OpenAI exporter, only when the user opts in
        self.redact = redact  # applied to every text value of every row before it is written
        self.on_failure = on_failure
        self.failures = 0
        self.last_failure: str | None = None
        self._lock = threading.Lock()
        self._open: dict[str, TraceRow] = {}  # traces not ended yet
        self._rows: list[LogRow] = []
        self._writing: set[asyncio.Future[None]] = set()
        self._hashed: set[str] = set()  # input items already queued or written
        self._flush_at: asyncio.TimerHandle | None = None

    def on_trace_start(self, trace: Trace) -> None:
        info = trace.export() or {}
        metadata = info.get("metadata") or {}
        row = TraceRow(
            trace_id=trace.trace_id, thread_id=metadata.get("thread_id") or info.get("group_id"),
            user_id=metadata.get("user_id"), workflow_name=info.get("workflow_name"), group_id=info.get("group_id"),
            metadata=stored_json(metadata), started_at=utc_now(),
        )
        with self._lock:
            self._open[trace.trace_id] = row
        if self.forward:
            self.forward.on_trace_start(trace)

    def on_trace_end(self, trace: Trace) -> None:
        with self._lock:
            row = self._open.pop(trace.trace_id, None)
            if row is not None:
                row.ended_at = utc_now()
                self._rows.append(row)
        if self.forward:
            self.forward.on_trace_end(trace)
        self._flush_soon()

    def on_span_start(self, span: Span[Any]) -> None:
        if self.forward:
            self.forward.on_span_start(span)

    def on_span_end(self, span: Span[Any]) -> None:
        try:
            data = span.span_data.export()
            if isinstance(data.get("input"), list):  # a generation span carries the whole history
                data["input_hashes"] = self._by_hash([stored_json(i) for i in data.pop("input")])
            started, ended = _utc(span.started_at), _utc(span.ended_at)
            usage = data.get("usage") or {}
            with self._lock:
                thread_id = self._open[span.trace_id].thread_id if span.trace_id in self._open else None
                self._rows.append(SpanRow(
                    span_id=span.span_id, trace_id=span.trace_id, parent_id=span.parent_id, thread_id=thread_id,
                    span_type=data.get("type"), name=_span_name(data), started_at=started, ended_at=ended,
                    duration_ms=(ended - started).total_seconds() * 1000 if started and ended else None,
                    input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
                    error=stored_json(span.error) if span.error else None, data=stored_json(data),
                ))
        except Exception:  # tracing must never break a run
            log.exception("could not record span %s", getattr(span, "span_id", "?"))
        if self.forward:
            self.forward.on_span_end(span)

    def record_turn(self, row: TurnRow) -> None:
        """Queue one ``turns`` row (LabServer's turn log); written with the turn's other rows."""
        with self._lock:
            self._rows.append(row)
        self._flush_soon()

    def record_rows(self, rows: list[LogRow]) -> None:
        """Queue a turn's other rows (guardrail verdicts, workflow node runs); written with its turn row."""
        with self._lock:
            self._rows.extend(rows)

    def record_input(self, row: ModelInputRow, items: list[str]) -> None:
        """Queue one ``model_inputs`` row (what one model call received; ``items`` as JSON)."""
        row.input_hashes = self._by_hash(items)
        with self._lock:
            self._rows.append(row)

    def _by_hash(self, items: list[str]) -> list[str]:
        """Queue each item once, by the hash of its redacted text; return the hashes in order."""
        hashes = []
        for given in items:
            text = self.redact(given) if self.redact is not None else given
            key = hashlib.sha256(text.encode()).hexdigest()[:32]
            hashes.append(key)
            with self._lock:
                if key not in self._hashed:
                    self._hashed.add(key)
                    self._rows.append(InputItemRow(hash=key, item=text))
                if len(self._hashed) > HASHES_REMEMBERED:
                    self._hashed.clear()  # forgetting costs only an INSERT OR IGNORE that finds the row
        return hashes

    def _take(self) -> list[LogRow]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def _write(self, rows: list[LogRow]) -> None:
        with self.db.cursor(invalidate=False) as cur, in_transaction(cur):
            insert(cur, rows, redact=self.redact)

    def _failed(self, rows: list[LogRow], exc: Exception) -> None:
        counts = Counter(type(r).TABLE for r in rows)
        if isinstance(exc, DatabaseBusyError | DatabaseUnavailableError):  # transient: keep the rows for the next flush
            with self._lock:
                self._rows[:0] = rows
            message = f"Logs are waiting for the database ({exc})."
        else:
            with self._lock:
                self._hashed.clear()  # the items may not be there: queue them again when next sent
            message = f"{sum(counts.values())} log rows ({', '.join(f'{n} {t}' for t, n in sorted(counts.items()))}) could not be written: {type(exc).__name__}: {exc}"
        self.failures += 1
        self.last_failure = message
        log.error("%s", message, exc_info=exc)
        if self.on_failure is not None:
            try:
                self.on_failure(message)
            except Exception:
                log.debug("could not report a log failure", exc_info=True)

    async def aflush(self) -> None:
        """Write what is queued (off the loop) and wait for every write under way."""
        rows = self._take()
        if rows:
            write = asyncio.ensure_future(self._write_off_loop(rows))
            self._writing.add(write)
            write.add_done_callback(self._writing.discard)
        if self._writing:
            await asyncio.gather(*(asyncio.shield(w) for w in list(self._writing)))

    async def _write_off_loop(self, rows: list[LogRow]) -> None:
        try:
            await asyncio.to_thread(self._write, rows)
        except Exception as exc:
            self._failed(rows, exc)

    def force_flush(self) -> None:
        rows = self._take()
        if rows:
            try:
                self._write(rows)
            except Exception as exc:
                self._failed(rows, exc)
        if self.forward:
            self.forward.force_flush()

    def _flush_soon(self) -> None:
        loop = self.loop
        if loop is None or not loop.is_running():
            self.force_flush()
            return
        loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:  # on the loop
        if self._flush_at is None:
            self._flush_at = self.loop.call_later(FLUSH_DELAY, self._start_flush)  # type: ignore[union-attr]

    def _start_flush(self) -> None:
        self._flush_at = None
        self.loop.create_task(self.aflush())  # type: ignore[union-attr]

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
