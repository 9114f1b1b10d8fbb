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
from chatkit.types import ThreadItem, ThreadMetadata, UserMessageItem

from . import approvals
from ._heap import frozen_heap
from ._loop import LoopThread
from ._runtime import Runtime
from .auth.jwt import checked_user_id
from .context import ContextInjection, RequestContext
from .errors import ChatLabError
from .models import resolve_backend
from .server import LabServer, agent_tools
from .store.items import item_adapter, item_text, utc_now
from .store.memory import MemoryStore
from .store.queries import EXCHANGE_FACTS, REPLAY_DECISIONS, REPLAY_PLANS, thread_owner, thread_owners
from .store.rows import stored_json
from .turn import Turn
from .workflows.turns import ChatWorkflow

if TYPE_CHECKING:
    import pandas as pd


async def _new_thread(store: Any, owner: str, title: str) -> str:
    context = RequestContext(user_id=owner)
    thread_id = store.generate_thread_id(context)
    await store.save_thread(ThreadMetadata(id=thread_id, title=title, created_at=datetime.now()), context)
    return thread_id


# -- fork -----------------------------------------------------------------------------------
async def fork(runtime: Runtime, thread_id: str, at_item: str | None, user_id: str | None = None, *, before: bool = False) -> str:
    """Copy ``thread_id`` up to and including ``at_item`` (all of it when None) into a new
    thread of the same owner; returns the new thread's id. ``user_id``: only that user's thread.
    ``before``: copy only what precedes ``at_item`` (a user message being edited and sent again:
    lineage ``edit``, ``at_item_id`` the edited message)."""
    async with runtime.db.transaction() as cur:
        owner, title = thread_owner(cur, thread_id, user_id)
        if at_item and cur.execute("SELECT 1 FROM items WHERE thread_id = ? AND item_id = ?", [thread_id, at_item]).fetchone() is None:
            raise ChatLabError(f"There is no item {at_item!r} in thread {thread_id!r}; lab.items_df({thread_id!r}) lists them.")
        kind = "edit" if before else "fork"
        new = await _new_thread(runtime.store, owner, f"{title or 'Untitled'} ({'edited' if before else 'fork'})")
        await runtime.store.copy_items(thread_id, new, RequestContext(user_id=owner), up_to=at_item, before=before)
        cur.execute("INSERT INTO lineage (thread_id, parent_thread_id, kind, at_item_id, created_at) VALUES (?, ?, ?, ?, ?)", [new, thread_id, kind, at_item, utc_now()])
    return new


# -- replay ---------------------------------------------------------------------------------
@dataclass
class _Planned:
    exchange: int
    message: UserMessageItem
    original: str | None
    context: dict[str, Any] | None  # what the original turn's model saw, when it was recorded
    strategy: str | None
    decisions: list[str]  # how the original answered the approval cards of this exchange, in order


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

    def __init__(self, runtime: Runtime, source: str, thread_id: str, user_id: str, server_on: Callable[[Any], LabServer],
                 plan: list[_Planned], attachments: dict[str, str], context: dict[str, Any] | None, strategy: str | None,
                 user_override: bool, staged: Staged | None = None) -> None:
        self.runtime, self.source, self.thread_id, self.user_id = runtime, source, thread_id, user_id
        self._plan, self._attachments = plan, attachments
        self._context, self._strategy, self._user_override = context, strategy, user_override
        self._server_on, self.staged = server_on, staged
        self.server = server_on(staged.store if staged is not None else runtime.store)
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
        return await self.runtime.run(self._step())

    def step_sync(self) -> ReplayStep:
        return self.runtime.call(self._step())

    async def run(self, *, progress: bool = True) -> Replay:
        """Run every remaining turn, with a progress bar."""
        await awaiting(Job(self.runtime.loop, self.run_remaining()), lambda: len(self.steps), self.total, f"replay {self.source}", progress, start=len(self.steps))
        return self

    def run_sync(self, *, progress: bool = True) -> Replay:
        waiting(Job(self.runtime.loop, self.run_remaining()), lambda: len(self.steps), self.total, f"replay {self.source}", progress, start=len(self.steps))
        return self

    def diff(self) -> ThreadDiff:
        """The original thread against this replay, turn by turn."""
        return ThreadDiff.load(self.runtime, self.source, self.thread_id)

    def _repr_html_(self) -> str:
        head = f"<p>Replay of <code>{html.escape(self.source)}</code> into <code>{html.escape(self.thread_id)}</code>: {len(self.steps)} of {self.total} turns.</p>"
        return head + (_table(self.steps) if self.steps else "")

    async def run_remaining(self) -> None:
        """Every remaining turn, on the lab's loop (``run`` adds the progress bar)."""
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
            events, _ = await approvals.answered(await self.runtime.request(body, self.user_id, server=self.server), self.thread_id,
                                                 iter(planned.decisions), lambda click: self.runtime.request(click, self.user_id, server=self.server))
            turn = Turn.of(self.thread_id, events)
        except asyncio.CancelledError:  # an interrupted cell: this turn counts as done, so a rerun goes on
            self.steps.append(ReplayStep(planned.exchange, item_text(message) or "", planned.original, "", "cancelled", (time.perf_counter() - started) * 1000))
            raise
        step = ReplayStep(planned.exchange, item_text(message) or "", planned.original, turn.text, turn.error, (time.perf_counter() - started) * 1000)
        self.steps.append(step)
        return step

    def staged_thread(self) -> tuple[tuple[str, ThreadMetadata, list[ThreadItem]], list[Any]] | None:
        """This replay's thread (owner, metadata, items) and lineage row while its batch holds
        them in memory; None once they are written (or if they never were in memory)."""
        if self.staged is None:
            return None
        return self.staged.store.thread(self.thread_id), self.staged.lineage[self.thread_id]

    def unstage(self) -> None:
        """Its thread is written: the batch's memory lets it go, and it runs on the lab's store."""
        staged, self.staged = self.staged, None
        if staged is not None:
            staged.store.take_thread(self.thread_id)
            del staged.lineage[self.thread_id]
            self.server = self._server_on(self.runtime.store)

    def _use_context(self, planned: _Planned) -> dict[str, Any]:
        """Point the replay server at this turn's context; returns the request metadata."""
        lab_context = self.runtime.server.injection or ContextInjection()
        context = ContextInjection(self._strategy or planned.strategy or lab_context.strategy)
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
        self.server.injection = context
        return metadata


@dataclass
class Staged:
    """Threads of a batch of replays kept in memory (``store``), each written with its lineage
    row when its replay is done: a few statements per batch instead of several per turn."""

    store: MemoryStore
    lineage: dict[str, list[Any]]  # new thread -> its lineage row, written with the thread


def start(runtime: Runtime, sources: Sequence[str], *, staged: Staged | None = None, **overrides: Any) -> list[Replay]:
    """A ``Replay`` of each thread in ``sources`` into a new thread, under these overrides (see
    ``lab.replay``), read in one go. ``staged``: where a batch keeps its new threads until each
    replay is done (a replay of messages with attachments is never staged: its copies are in the file)."""
    runtime.flush()  # the original turns' recorded context is read from model_inputs
    return runtime.call(_start(runtime, sources, staged=staged, **overrides))


async def _start(
    runtime: Runtime, sources: Sequence[str], *, instructions: str | None = None, model: Any = None, tools: Sequence[Tool] | None = None,
    context: dict[str, Any] | None = None, user_id: str | None = None, strategy: str | None = None, agent: Agent | None = None,
    workflow: ChatWorkflow | None = None, staged: Staged | None = None,
) -> list[Replay]:
    if strategy is not None:
        ContextInjection(strategy)  # a clear error for an unknown strategy, before anything is written
    if user_id is not None:
        checked_user_id(user_id)
    lab_server = runtime.server
    base = agent or lab_server.agent
    if not isinstance(base, Agent):
        raise ChatLabError("This lab builds its agent per thread; pass agent= to replay with one.")
    replay_agent, backend = overridden_agent(base, lab_server.backend, instructions=instructions, model=model, tools=tools)
    overrides = {
        "instructions": instructions, "model": backend.description if model is not None and backend else None,
        "tools": [getattr(t, "name", str(t)) for t in tools] if tools is not None else None,
        "context": context, "user_id": user_id, "strategy": strategy, "agent": agent.name if agent else None,
        "workflow": workflow.resolved.label if workflow is not None else None,
    }
    described = runtime.secrets.redact(stored_json({k: v for k, v in overrides.items() if v is not None}))
    answering = workflow or lab_server.workflow
    replays = []
    async with runtime.db.transaction() as cur:
        owners = thread_owners(cur, sources)
        decided: dict[tuple[str, int], list[str]] = {}
        for source, n, data in cur.execute(REPLAY_DECISIONS, {"threads": list(sources)}).fetchall():
            if decision := approvals.decision_of(json.loads(data).get("widget") or {}):
                decided.setdefault((source, n), []).append(decision)
        plans: dict[str, list[_Planned]] = {}
        for source, n, data, reply, ctx, strat in cur.execute(REPLAY_PLANS, {"threads": list(sources)}).fetchall():
            plans.setdefault(source, []).append(_Planned(n, item_adapter.validate_json(data), reply, json.loads(ctx) if ctx else None, strat,
                                                         decided.get((source, n), [])))
        for source in sources:
            (owner, title), plan = owners[source], plans.get(source)
            if not plan:
                raise ChatLabError(f"Thread {source!r} has no user messages to replay.")
            new_owner, new_title = user_id or owner, f"{title or 'Untitled'} (replay)"
            attachments: dict[str, str] = {}
            kept = staged if staged is not None and not any(p.message.attachments for p in plan) else None
            if kept is not None:
                thread_id = await _new_thread(kept.store, new_owner, new_title)
                kept.lineage[thread_id] = [thread_id, source, described, utc_now()]
            else:
                thread_id = await _new_thread(runtime.store, new_owner, new_title)
                attachments = await runtime.store.copy_attachments(
                    [a.id for p in plan for a in p.message.attachments], thread_id, RequestContext(user_id=owner), RequestContext(user_id=new_owner)
                )
                cur.execute(LINEAGE_INSERT, [thread_id, source, described, utc_now()])

            def server_on(store: Any, source: str = source) -> LabServer:
                return derived_server(runtime, replay_agent, backend, answering, {"replay_of": source}, store=store)

            replays.append(Replay(runtime, source, thread_id, new_owner, server_on, plan, attachments, context, strategy, user_id is not None, kept))
    return replays


LINEAGE_INSERT = "INSERT INTO lineage (thread_id, parent_thread_id, kind, overrides, created_at) VALUES (?, ?, 'replay', ?, ?)"


def overridden_agent(base: Agent, backend: Any, *, instructions: str | None = None, model: Any = None,
                     tools: Sequence[Tool] | None = None) -> tuple[Agent, Any]:
    """``base`` with what is given changed, and the backend it then runs on (``model`` resolved)."""
    if instructions is not None and not isinstance(instructions, str):
        raise ChatLabError(f"instructions= is a string, not {type(instructions).__name__}.")
    if model is not None:
        backend = resolve_backend(model)
    changes = {"instructions": instructions, "tools": agent_tools(tools) if tools is not None else None, "model": backend.model if model is not None else None}
    changes = {k: v for k, v in changes.items() if v is not None}
    return (base.clone(**changes) if changes else base), backend


def derived_server(runtime: Runtime, agent: Agent, backend: Any, workflow: ChatWorkflow | None, metadata: dict[str, Any], *,
                   store: Any = None, as_the_lab: bool = False) -> LabServer:
    """A server like the lab's, on its logs and ``store`` (the lab's by default), answering with
    ``workflow`` when given, else ``agent`` on ``backend``; its traces carry ``metadata`` besides the
    lab's. ``as_the_lab``: with the lab's guardrails and context injection too. Its replies reach
    ChatKit with their deltas merged: nobody watches a replay's or an eval item's stream."""
    lab_server = runtime.server
    return LabServer(
        store if store is not None else runtime.store, agent, backend=backend, history_limit=lab_server.history_limit,
        trace_metadata={**lab_server.trace_metadata, **metadata}, turn_log=runtime.tracer.record_turn,
        actions=lab_server.actions, secrets=runtime.secrets, input_log=runtime.tracer.record_input,
        row_log=runtime.tracer.record_rows, workflow=workflow,
        guardrails=lab_server.guardrails if as_the_lab else None, injection=lab_server.injection if as_the_lab else None,
        merge_deltas=True, approvals=lab_server.approvals,
    )


def batch(runtime: Runtime, sources: Sequence[str], concurrency: int, **overrides: Any) -> Batch:
    """Replays of ``sources`` run together, their new threads kept in memory until each is done."""
    return Batch(runtime, start(runtime, sources, staged=Staged(MemoryStore(), {}), **overrides), concurrency)


class Batch:
    """Many replays run on the lab's loop, at most ``concurrency`` at a time, behind one progress
    bar. Staged replays' threads are written as they finish, ``WRITE_EVERY`` together or every
    half second, and all of them when the batch stops, however it stops."""

    WRITE_EVERY = 64

    def __init__(self, runtime: Runtime, replays: list[Replay], concurrency: int) -> None:
        self.runtime, self.replays, self.concurrency = runtime, replays, max(1, concurrency)

    async def _run_all(self) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        done: list[Replay] = []
        written = [time.monotonic()]

        async def one(replay: Replay) -> None:
            async with gate:
                await replay.run_remaining()
            done.append(replay)
            if len(done) >= self.WRITE_EVERY or time.monotonic() - written[0] > 0.5:
                finished, done[:] = list(done), []
                written[0] = time.monotonic()
                await self._write(finished)

        running = [asyncio.ensure_future(one(r)) for r in self.replays]
        try:
            await asyncio.gather(*running)
        finally:  # an interrupted replay keeps what its thread holds, as a chat would; a rerun goes on from there
            for task in running:  # a failed write stops the others too, before their threads are taken
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await self._write(self.replays)

    async def _write(self, replays: Sequence[Replay]) -> None:
        """The staged threads of ``replays`` with their lineage (one transaction on DuckDB); they
        leave memory only once written, so a write that fails loses nothing and the next tries again."""
        held = [(r, staged) for r in replays if (staged := r.staged_thread()) is not None]
        if not held:
            return
        async with self.runtime.db.transaction() as cur:
            await self.runtime.store.add_threads([thread for _, (thread, _) in held])
            cur.executemany(LINEAGE_INSERT, [row for _, (_, row) in held])
        for r, _ in held:
            r.unstage()

    def _progress(self) -> tuple[Callable[[], int], int]:
        return (lambda: sum(len(r.steps) for r in self.replays)), sum(r.total for r in self.replays)

    async def run(self, *, progress: bool = True) -> list[Replay]:
        await awaiting(Job(self.runtime.loop, self._run_all()), *self._progress(), "replay", progress)
        return self.replays

    def run_sync(self, *, progress: bool = True) -> list[Replay]:
        waiting(Job(self.runtime.loop, self._run_all()), *self._progress(), "replay", progress)
        return self.replays


# -- progress, polled from the caller's thread (a notebook's progress bar lives there) -------
def _bar(total: int, desc: str, enabled: bool, start: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="turn", initial=start)


class Job:
    """A coroutine on the lab's loop that the caller can interrupt and wait for: an interrupted
    cell cancels the running turn and returns once the replay has noted it. It runs with the heap
    that was there before it frozen (``frozen_heap``: full collections skip the SDK's objects)."""

    def __init__(self, loop: LoopThread, coro: Coroutine[Any, Any, Any]) -> None:
        self.loop = loop
        self._task: asyncio.Task[Any] | None = None
        self.future = loop.submit(self._run(coro))

    async def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        self._task = asyncio.current_task()
        with frozen_heap():
            return await coro

    async def stop(self) -> None:  # on the lab's loop, after _run has started (call order)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        self.future.cancel()


async def awaiting(job: Job, done: Callable[[], int], total: int, desc: str, progress: bool, start: int = 0) -> Any:
    bar = _bar(total, desc, progress, start)
    try:
        while not job.future.done():
            await asyncio.sleep(0.1)
            if bar is not None:
                bar.update(done() - bar.n)
        return job.future.result()
    except asyncio.CancelledError:
        await job.loop.run(job.stop())
        raise
    finally:
        if bar is not None:
            bar.update(done() - bar.n)
            bar.close()


def waiting(job: Job, done: Callable[[], int], total: int, desc: str, progress: bool, start: int = 0) -> Any:
    bar = _bar(total, desc, progress, start)
    try:
        while True:
            try:
                return job.future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                if bar is not None:
                    bar.update(done() - bar.n)
    except KeyboardInterrupt:
        job.loop.call(job.stop())
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
    def load(cls, runtime: Runtime, a: str, b: str) -> ThreadDiff:
        import pandas as pd

        runtime.flush()
        frames = []
        with runtime.db.cursor(invalidate=False) as cur:
            for side, thread_id in (("a", a), ("b", b)):
                thread_owner(cur, thread_id)
                frame = cur.execute(EXCHANGE_FACTS, {"thread": thread_id}).df()
                frames.append(frame.rename(columns={c: f"{c}_{side}" for c in _COLUMNS}))
        df = pd.merge(frames[0], frames[1], on="exchange", how="outer").sort_values("exchange", ignore_index=True)
        replies = list(zip(df["reply_a"].fillna(""), df["reply_b"].fillna(""), strict=True))
        # Two turns without a reply (paused at an approval, failed) reply alike; a missing exchange does not.
        both = df["user_text_a"].notna() & df["user_text_b"].notna()
        df["same_reply"] = [bool(there and x == y) for there, (x, y) in zip(both, replies, strict=True)]
        df["similarity"] = [round(difflib.SequenceMatcher(None, x.split(), y.split(), autojunk=False).ratio(), 3) for x, y in replies]
        order = ["exchange", "user_text_a", "user_text_b", "reply_a", "reply_b", "same_reply", "similarity"]
        return cls(a, b, df[order + [c for c in df.columns if c not in order]])

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = []
        for r in self.df.itertuples():
            facts = []  # only what changed
            for name in ("tools", "handoffs", "guardrails", "latency_ms", "tokens"):
                x, y = _shown(getattr(r, f"{name}_a")), _shown(getattr(r, f"{name}_b"))
                if x != y:
                    facts.append(f'<span class="ckl-diff-fact">{name}: {esc(x or "–")} → {esc(y or "–")}</span>')
            said = r.user_text_a if isinstance(r.user_text_a, str) else r.user_text_b
            if isinstance(r.user_text_b, str) and r.user_text_b != said:
                said = f"{said} → {r.user_text_b}"
            a, b = _reply(r, "a"), _reply(r, "b")
            reply = '<span class="ckl-same">the same reply</span>' if a == b else word_diff_html(a, b, markdown=True)
            rows.append(
                f"<tr><td>{r.exchange}</td><td>{esc(str(said or ''))}</td><td>{reply}</td>"
                f"<td>{'<br>'.join(facts) or '–'}</td></tr>"
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


CONTEXT_WORDS = 12  # unchanged words kept either side of a change; longer runs fold into a hunk gap


def word_diff_html(a: str, b: str, *, markdown: bool = False) -> str:
    """``b`` against ``a`` word by word: removed words in ``<del>``, added in ``<ins>``; the text
    escaped. Long unchanged runs fold to ``… N words the same …``, so the changes read as hunks.
    ``markdown``: rendered as markdown (the marks kept; model text never becomes HTML)."""
    x, y = _TOKEN.findall(a or ""), _TOKEN.findall(b or "")
    ops = difflib.SequenceMatcher(None, x, y, autojunk=False).get_opcodes()
    out = []
    for n, (op, i1, i2, j1, j2) in enumerate(ops):
        if op == "equal":
            out.append(_folded(x[i1:i2], first=n == 0, last=n == len(ops) - 1))
            continue
        if i2 > i1:
            out.append(f"<del>{_escape(''.join(x[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{_escape(''.join(y[j1:j2]))}</ins>")
    marked = "".join(out)
    if not markdown:
        return f'<div style="white-space:pre-wrap">{marked}</div>'
    return f'<div class="ckl-diff-md">{_MARKDOWN.render(marked)}</div>'


def _folded(tokens: list[str], *, first: bool, last: bool) -> str:
    words = [i for i, t in enumerate(tokens) if not t.isspace()]
    keep = CONTEXT_WORDS
    if len(words) <= (keep if first or last else 2 * keep) + 4:
        return _escape("".join(tokens))
    head = [] if first else tokens[: words[keep - 1] + 1]
    tail = [] if last else tokens[words[-keep]:]
    hidden = len(words) - (0 if first else keep) - (0 if last else keep)
    gap = f' <span class="ckl-same">… {hidden} words the same …</span> '
    return _escape("".join(head)) + gap + _escape("".join(tail))


def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # (text only, never in an attribute)


def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # The text is escaped before the marks go in; "html" lets only our <ins>/<del> through.
    return MarkdownIt("commonmark", {"html": True}).enable("table")


_MARKDOWN = _markdown()

_STYLE = """<style>
table.ckl-diff td, table.ckl-diff th{vertical-align:top;text-align:left !important}
.ckl-diff del{background:#fdd;color:#900}.ckl-diff ins{background:#dfd;color:#060;text-decoration:none}
.ckl-diff .ckl-same{color:#777;font-style:italic}.ckl-diff-md > :first-child{margin-top:0}.ckl-diff-md > :last-child{margin-bottom:0}
</style>"""


def _table(steps: Sequence[ReplayStep]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{s.exchange}</td><td>{esc(s.user_text)}</td>"
        f'<td style="white-space:pre-wrap">{esc(s.original or "")}</td>'
        f'<td>{word_diff_html(s.original or "", s.reply) if s.reply else esc("[error: " + (s.error or "") + "]")}</td>'
        f"<td>{s.latency_ms:.0f} ms</td></tr>"
        for s in steps
    )
    return _STYLE + '<table class="ckl-diff"><thead><tr><th>#</th><th>user</th><th>original</th><th>replay (<del>removed</del> <ins>added</ins>)</th><th></th></tr></thead><tbody>' + rows + "</tbody></table>"
