"""Replay, fork and diff: a recorded conversation re-run, branched and compared.

A replay sends a thread's user messages again, one turn at a time, through the same protocol
path as the widget, into a new thread, under changed settings. By default each turn gets the
context its original turn had (recorded in ``model_inputs``), so only what you override changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import html
import json
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agents import Agent, Tool
from chatkit.types import ThreadMetadata, UserMessageItem

from ._loop import LoopThread
from .context import LabContext, RequestContext
from .errors import ChatLabError
from .lab import Turn
from .logs import exchanges_sql
from .models import resolve_backend
from .server import LabServer
from .store.items import item_adapter, item_text

if TYPE_CHECKING:
    import pandas as pd

    from .lab import ChatLab


# -- reading a thread -----------------------------------------------------------------------
def _thread_row(cur: Any, thread_id: str, user_id: str | None = None) -> tuple[str, str | None]:
    """The thread's owner and title; ``user_id``: only that user's thread (others' look missing)."""
    row = cur.execute("SELECT user_id, title FROM threads WHERE id = ?", [thread_id]).fetchone()
    if row is None or (user_id is not None and row[0] != user_id):
        raise ChatLabError(f"There is no thread {thread_id!r} in this lab's database; lab.threads_df() lists them.")
    return row


_PLAN = f"""
    WITH ex AS ({exchanges_sql("thread_id = $thread")}),
    tu AS (SELECT user_item_id, arg_max(turn_id, started_at) AS turn_id FROM turns
           WHERE thread_id = $thread AND user_item_id IS NOT NULL GROUP BY user_item_id)
    SELECT ex.exchange, i.data, ex.reply_text, m.context, m.strategy
    FROM ex JOIN items i ON i.thread_id = ex.thread_id AND i.id = ex.user_item_id
    LEFT JOIN tu ON tu.user_item_id = ex.user_item_id
    LEFT JOIN model_inputs m ON m.turn_id = tu.turn_id AND m.call_index = 0
    ORDER BY ex.exchange"""

_NONE = "CASE WHEN t.trace_id IS NOT NULL THEN []::VARCHAR[] END"  # no turn recorded: NULL, not "none"
_COMPARE = f"""
    WITH ex AS ({exchanges_sql("thread_id = $thread")}),
    tu AS (SELECT user_item_id, arg_max(turn_id, started_at) AS turn_id FROM turns
           WHERE thread_id = $thread AND user_item_id IS NOT NULL GROUP BY user_item_id)
    SELECT ex.exchange, ex.user_text, ex.reply_text AS reply, t.tools,
           coalesce((SELECT list(s.name ORDER BY s.started_at) FROM spans s
                      WHERE s.trace_id = t.trace_id AND s.span_type = 'handoff'), {_NONE}) AS handoffs,
           coalesce((SELECT list(s.name || CASE WHEN s.data->>'$.triggered' = 'true' THEN ': triggered' ELSE ': passed' END
                                 ORDER BY s.started_at) FROM spans s
                      WHERE s.trace_id = t.trace_id AND s.span_type = 'guardrail'), {_NONE}) AS guardrails,
           t.latency_ms, t.input_tokens + t.output_tokens AS tokens, t.status, t.error
    FROM ex LEFT JOIN tu ON tu.user_item_id = ex.user_item_id LEFT JOIN turns t ON t.turn_id = tu.turn_id
    ORDER BY ex.exchange"""


def _copy_attachments(cur: Any, store: Any, ids: Sequence[str], owner: str, thread_id: str) -> dict[str, str]:
    """Give ``thread_id`` its own copies of these attachments (ChatKit moves an attachment to the
    thread of the message that carries it, so sharing one would tie two threads together)."""
    mapping: dict[str, str] = {}
    for old in dict.fromkeys(ids):
        row = cur.execute("SELECT mime_type, thread_id FROM attachments WHERE id = ?", [old]).fetchone()
        if row is None:
            continue
        new = mapping[old] = store.generate_attachment_id(row[0], RequestContext(user_id=owner))
        cur.execute(
            """INSERT INTO attachments SELECT $new, $owner, $thread, name, mime_type, size, bytes, now()::TIMESTAMP,
                      replace(replace(data::VARCHAR, $old, $new), '"thread_id":"' || $from || '"', '"thread_id":"' || $thread || '"')
               FROM attachments WHERE id = $old""",
            {"new": new, "owner": owner, "thread": thread_id, "old": old, "from": row[1] or ""},
        )
    return mapping


async def _new_thread(store: Any, owner: str, title: str) -> str:
    context = RequestContext(user_id=owner)
    thread_id = store.generate_thread_id(context)
    await store.save_thread(ThreadMetadata(id=thread_id, title=title, created_at=datetime.now()), context)
    return thread_id


# -- fork -----------------------------------------------------------------------------------
async def fork(lab: ChatLab, thread_id: str, at_item: str | None, user_id: str | None = None) -> str:
    """Copy ``thread_id`` up to and including ``at_item`` (all of it when None) into a new
    thread of the same owner; returns the new thread's id. ``user_id``: only that user's thread."""
    async with lab.db.acursor() as cur:
        owner, title = _thread_row(cur, thread_id, user_id)
        if at_item and cur.execute("SELECT 1 FROM items WHERE thread_id = ? AND id = ?", [thread_id, at_item]).fetchone() is None:
            raise ChatLabError(f"There is no item {at_item!r} in thread {thread_id!r}; lab.items_df({thread_id!r}) lists them.")
        upto = "AND (created_at, seq) <= (SELECT (created_at, seq) FROM items WHERE thread_id = $old AND id = $at)" if at_item else ""
        cur.execute("BEGIN TRANSACTION")
        try:
            new = await _new_thread(lab.store, owner, f"{title or 'Untitled'} (fork)")  # same cursor, same transaction
            cur.execute(
                f"""INSERT INTO items (id, thread_id, user_id, seq, created_at, updated_at, type, role, text, data)
                   SELECT id, $new, user_id, seq, created_at, now()::TIMESTAMP, type, role, text,
                          replace(data::VARCHAR, '"thread_id":"' || $old || '"', '"thread_id":"' || $new || '"')
                   FROM items WHERE thread_id = $old {upto}""",
                {"new": new, "old": thread_id, **({"at": at_item} if at_item else {})},
            )
            attached = [a for (a,) in cur.execute(
                "SELECT DISTINCT unnest(json_extract_string(data, '$.attachments[*].id')) FROM items WHERE thread_id = ?", [new]
            ).fetchall() if a]
            for old, copy in _copy_attachments(cur, lab.store, attached, owner, new).items():
                cur.execute("UPDATE items SET data = replace(data::VARCHAR, ?, ?) WHERE thread_id = ?", [old, copy, new])
            cur.execute("INSERT INTO lineage VALUES (?, ?, 'fork', ?, NULL, now()::TIMESTAMP)", [new, thread_id, at_item])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    return new


# -- replay ---------------------------------------------------------------------------------
@dataclass
class _Planned:
    exchange: int
    message: UserMessageItem
    original: str | None
    context: dict[str, Any] | None  # what the original turn's model saw, when it was recorded
    strategy: str | None


@dataclass(repr=False)
class ReplayStep:
    """One replayed turn: what the user said, the original reply and the new one."""

    exchange: int
    user_text: str
    original: str | None
    reply: str
    error: str | None
    latency_ms: float

    @property
    def changed(self) -> bool:
        return (self.original or "") != self.reply

    def __repr__(self) -> str:
        return f"#{self.exchange} you: {self.user_text}\n--- original\n{self.original or ''}\n+++ replay\n{self.reply or self.error or ''}"

    def _repr_html_(self) -> str:
        return _table([self])


class Replay:
    """A thread re-run under changed settings into a new thread (``thread_id``), cell by cell:
    ``await r.step()`` runs the next turn, ``await r.run()`` the rest; ``r.diff()`` compares."""

    def __init__(self, lab: ChatLab, source: str, thread_id: str, user_id: str, server: LabServer,
                 plan: list[_Planned], attachments: dict[str, str], context: dict[str, Any] | None, strategy: str | None,
                 user_override: bool) -> None:
        self.lab, self.source, self.thread_id, self.user_id, self.server = lab, source, thread_id, user_id, server
        self._plan, self._attachments = plan, attachments
        self._context, self._strategy, self._user_override = context, strategy, user_override
        self.steps: list[ReplayStep] = []

    def __repr__(self) -> str:
        return f"Replay({self.source!r} -> {self.thread_id!r}, {len(self.steps)} of {len(self._plan)} turns)"

    @property
    def done(self) -> bool:
        return len(self.steps) >= len(self._plan)

    @property
    def total(self) -> int:
        return len(self._plan)

    async def step(self) -> ReplayStep:
        """Run the next turn; shows the original and the new reply side by side."""
        return await self.lab._loop.run(self._step())

    def step_sync(self) -> ReplayStep:
        return self.lab._loop.call(self._step())

    async def run(self, *, progress: bool = True) -> Replay:
        """Run every remaining turn, with a progress bar."""
        await _awaiting(_Job(self.lab._loop, self._run()), lambda: len(self.steps), self.total, f"replay {self.source}", progress, start=len(self.steps))
        return self

    def run_sync(self, *, progress: bool = True) -> Replay:
        _waiting(_Job(self.lab._loop, self._run()), lambda: len(self.steps), self.total, f"replay {self.source}", progress, start=len(self.steps))
        return self

    def diff(self) -> ThreadDiff:
        """The original thread against this replay, turn by turn."""
        return self.lab.diff(self.source, self.thread_id)

    def _repr_html_(self) -> str:
        head = f"<p>Replay of <code>{html.escape(self.source)}</code> into <code>{html.escape(self.thread_id)}</code>: {len(self.steps)} of {self.total} turns.</p>"
        return head + (_table(self.steps) if self.steps else "")

    async def _run(self) -> None:
        while not self.done:
            await self._step()

    async def _step(self) -> ReplayStep:
        if self.done:
            raise ChatLabError(f"This replay has run all {self.total} turns; r.diff() compares it with the original.")
        planned = self._plan[len(self.steps)]
        message = planned.message
        metadata = self._use_context(planned)
        body = {
            "type": "threads.add_user_message",
            "metadata": metadata,
            "params": {"thread_id": self.thread_id, "input": {
                "content": [part.model_dump(mode="json") for part in message.content],
                "attachments": [self._attachments.get(a.id, a.id) for a in message.attachments],
                "quoted_text": message.quoted_text,
                "inference_options": message.inference_options.model_dump(mode="json", exclude_none=True),
            }},
        }
        started = time.perf_counter()
        try:
            turn = Turn.of(self.thread_id, await self.lab._request(body, self.user_id, server=self.server))
        except asyncio.CancelledError:  # an interrupted cell: this turn counts as done, so a rerun goes on
            self.steps.append(ReplayStep(planned.exchange, item_text(message) or "", planned.original, "", "cancelled", (time.perf_counter() - started) * 1000))
            raise
        step = ReplayStep(planned.exchange, item_text(message) or "", planned.original, turn.text, turn.error, (time.perf_counter() - started) * 1000)
        self.steps.append(step)
        return step

    def _use_context(self, planned: _Planned) -> dict[str, Any]:
        """Point the replay server at this turn's context; returns the request metadata."""
        lab_context = self.lab.context
        context = LabContext(self._strategy or planned.strategy or lab_context.strategy)
        metadata: dict[str, Any] = {}
        if planned.context is not None:
            recorded = dict(planned.context)
            user, page = recorded.pop("user", None) or {}, recorded.pop("page", None) or {}
            context.values = {**recorded, **(self._context or {})}
            metadata["pageContext"] = page
            if not self._user_override:
                metadata["userInfo"] = {k: v for k, v in user.items() if k != "id"}
        else:  # nothing recorded (an imported or forked message): the lab's context now
            context.values = {**lab_context.values, **(self._context or {})}
            context.providers = list(lab_context.providers)
        self.server.context = context
        return metadata


async def start_replay(
    lab: ChatLab, source: str, *, instructions: str | None = None, model: Any = None, tools: Sequence[Tool] | None = None,
    context: dict[str, Any] | None = None, user_id: str | None = None, strategy: str | None = None, agent: Agent | None = None,
) -> Replay:
    if strategy is not None:
        LabContext(strategy)  # a clear error for an unknown strategy, before anything is written
    backend = resolve_backend(model) if model is not None else lab.backend
    base = agent or lab.agent
    changes: dict[str, Any] = {}
    if instructions is not None:
        changes["instructions"] = instructions
    if tools is not None:
        changes["tools"] = list(tools)
    if model is not None:
        changes["model"] = backend.model
    replay_agent = base.clone(**changes) if changes else base
    overrides = {
        "instructions": instructions, "model": backend.description if model is not None else None,
        "tools": [getattr(t, "name", str(t)) for t in tools] if tools is not None else None,
        "context": context, "user_id": user_id, "strategy": strategy, "agent": agent.name if agent else None,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    async with lab.db.acursor() as cur:
        owner, title = _thread_row(cur, source)
        rows = cur.execute(_PLAN, {"thread": source}).fetchall()
        plan = [
            _Planned(n, item_adapter.validate_json(data), reply, json.loads(ctx) if ctx else None, strat)
            for n, data, reply, ctx, strat in rows
        ]
        if not plan:
            raise ChatLabError(f"Thread {source!r} has no user messages to replay.")
        new_owner = user_id or owner
        cur.execute("BEGIN TRANSACTION")
        try:
            thread_id = await _new_thread(lab.store, new_owner, f"{title or 'Untitled'} (replay)")
            attachments = _copy_attachments(cur, lab.store, [a.id for p in plan for a in p.message.attachments], new_owner, thread_id)
            cur.execute(
                "INSERT INTO lineage VALUES (?, ?, 'replay', NULL, ?, now()::TIMESTAMP)",
                [thread_id, source, lab.secrets.redact(json.dumps(overrides, default=str, ensure_ascii=False))],
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    server = LabServer(
        lab.store, replay_agent, backend=backend, history_limit=lab.server.history_limit,
        trace_metadata={**lab.server.trace_metadata, "replay_of": source}, turn_log=lab.tracer.record_turn,
        actions=lab.server.actions, secrets=lab.secrets, input_log=lab.tracer.record_input,
    )
    return Replay(lab, source, thread_id, new_owner, server, plan, attachments, context, strategy, user_id is not None)


async def replay_many(replays: Sequence[Replay], concurrency: int) -> None:
    """Run replays on the lab's loop, at most ``concurrency`` at a time."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(replay: Replay) -> None:
        async with gate:
            await replay._run()

    await asyncio.gather(*(one(r) for r in replays))


# -- progress, polled from the caller's thread (a notebook's progress bar lives there) -------
def _bar(total: int, desc: str, enabled: bool, start: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="turn", initial=start)


class _Job:
    """A coroutine on the lab's loop that the caller can interrupt and wait for: an interrupted
    cell cancels the running turn and returns once the replay has noted it."""

    def __init__(self, loop: LoopThread, coro: Coroutine[Any, Any, Any]) -> None:
        self.loop, self._task = loop, None
        self.future = loop.submit(self._run(coro))

    async def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        self._task = asyncio.current_task()
        return await coro

    async def _stop(self) -> None:  # on the lab's loop, after _run has started (call order)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        self.future.cancel()


async def _awaiting(job: _Job, done: Callable[[], int], total: int, desc: str, progress: bool, start: int = 0) -> Any:
    bar = _bar(total, desc, progress, start)
    try:
        while not job.future.done():
            await asyncio.sleep(0.1)
            if bar is not None:
                bar.update(done() - bar.n)
        return job.future.result()
    except asyncio.CancelledError:
        await job.loop.run(job._stop())
        raise
    finally:
        if bar is not None:
            bar.update(done() - bar.n)
            bar.close()


def _waiting(job: _Job, done: Callable[[], int], total: int, desc: str, progress: bool, start: int = 0) -> Any:
    bar = _bar(total, desc, progress, start)
    try:
        while True:
            try:
                return job.future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                if bar is not None:
                    bar.update(done() - bar.n)
    except KeyboardInterrupt:
        job.loop.call(job._stop())
        raise
    finally:
        if bar is not None:
            bar.update(done() - bar.n)
            bar.close()


# -- diff -----------------------------------------------------------------------------------
_COLUMNS = ("user_text", "reply", "tools", "handoffs", "guardrails", "latency_ms", "tokens", "status", "error")


class ThreadDiff:
    """Two threads compared turn by turn (the Nth user message of each): ``df`` is a DataFrame,
    and a notebook shows the replies with an inline word diff."""

    def __init__(self, a: str, b: str, df: pd.DataFrame) -> None:
        self.a, self.b, self.df = a, b, df

    def __repr__(self) -> str:
        changed = int((~self.df["same_reply"]).sum()) if len(self.df) else 0
        return f"ThreadDiff({self.a!r} vs {self.b!r}: {len(self.df)} turns, {changed} replies differ)"

    @classmethod
    def load(cls, cur: Any, a: str, b: str) -> ThreadDiff:
        import pandas as pd

        frames = []
        for side, thread_id in (("a", a), ("b", b)):
            _thread_row(cur, thread_id)
            frame = cur.execute(_COMPARE, {"thread": thread_id}).df()
            frames.append(frame.rename(columns={c: f"{c}_{side}" for c in _COLUMNS}))
        df = pd.merge(frames[0], frames[1], on="exchange", how="outer").sort_values("exchange", ignore_index=True)
        replies = zip(df["reply_a"].fillna(""), df["reply_b"].fillna(""))
        df["same_reply"] = [x == y for x, y in zip(df["reply_a"], df["reply_b"])]
        df["similarity"] = [round(difflib.SequenceMatcher(None, x.split(), y.split(), autojunk=False).ratio(), 3) for x, y in replies]
        order = ["exchange", "user_text_a", "user_text_b", "reply_a", "reply_b", "same_reply", "similarity"]
        return cls(a, b, df[order + [c for c in df.columns if c not in order]])

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = []
        for r in self.df.itertuples():
            facts = []
            for name in ("tools", "handoffs", "guardrails", "latency_ms", "tokens"):
                x, y = _shown(getattr(r, f"{name}_a")), _shown(getattr(r, f"{name}_b"))
                if x or y:
                    mark = "" if x == y else " ckl-diff-changed"
                    facts.append(f'<span class="ckl-diff-fact{mark}">{name}: {esc(x or "–")} → {esc(y or "–")}</span>')
            said = r.user_text_a if isinstance(r.user_text_a, str) else r.user_text_b
            if isinstance(r.user_text_b, str) and r.user_text_b != said:
                said = f"{said} → {r.user_text_b}"
            rows.append(
                f"<tr><td>{r.exchange}</td><td>{esc(str(said or ''))}</td>"
                f'<td style="white-space:pre-wrap">{word_diff_html(_reply(r, "a"), _reply(r, "b"))}</td>'
                f"<td>{'<br>'.join(facts)}</td></tr>"
            )
        head = f"<p><code>{esc(self.a)}</code> → <code>{esc(self.b)}</code>: {len(self.df)} turns, {int((~self.df['same_reply']).sum()) if len(self.df) else 0} replies differ.</p>"
        return head + _STYLE + '<table class="ckl-diff"><thead><tr><th>#</th><th>user</th><th>reply (<del>removed</del> <ins>added</ins>)</th><th>what changed</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"


def _reply(row: Any, side: str) -> str:
    reply, error = getattr(row, f"reply_{side}"), getattr(row, f"error_{side}")
    if isinstance(reply, str):
        return reply
    return f"[error: {error}]" if isinstance(error, str) else ""


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.0f}"
    if hasattr(value, "__len__") and not isinstance(value, str):
        return ", ".join(map(str, value))
    return str(value)


_TOKEN = re.compile(r"\s+|[^\s]+")


def word_diff_html(a: str, b: str) -> str:
    """``b`` against ``a`` word by word: removed words in ``<del>``, added in ``<ins>``; escaped."""
    x, y = _TOKEN.findall(a or ""), _TOKEN.findall(b or "")
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, x, y, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape("".join(x[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(''.join(x[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(''.join(y[j1:j2]))}</ins>")
    return "".join(out)


_STYLE = """<style>
.ckl-diff td{vertical-align:top;text-align:left}.ckl-diff del{background:#fdd;color:#900}
.ckl-diff ins{background:#dfd;color:#060;text-decoration:none}.ckl-diff-changed{font-weight:bold}
</style>"""


def _table(steps: Sequence[ReplayStep]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{s.exchange}</td><td>{esc(s.user_text)}</td>"
        f'<td style="white-space:pre-wrap">{esc(s.original or "")}</td>'
        f'<td style="white-space:pre-wrap">{word_diff_html(s.original or "", s.reply) if s.reply else esc("[error: " + (s.error or "") + "]")}</td>'
        f"<td>{s.latency_ms:.0f} ms</td></tr>"
        for s in steps
    )
    return _STYLE + '<table class="ckl-diff"><thead><tr><th>#</th><th>user</th><th>original</th><th>replay (<del>removed</del> <ins>added</ins>)</th><th></th></tr></thead><tbody>' + rows + "</tbody></table>"
