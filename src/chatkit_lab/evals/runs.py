"""Eval runs: a dataset through a target, graded, stored.

Phase 1 answers each pending item as a real protocol turn (a new thread per item) through the
target's server, ``concurrency`` at a time, writing finished items (``eval_items``) and their
threads in batches, and whatever is finished when the run stops (so an interrupted run resumes
where it stopped). Phase 2 flushes the trace rows once, reads the items' samples from the store
(``recorded_samples``) and writes every grader's result to ``eval_results``, a chunk at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    InferenceOptions,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
)

from .. import approvals
from ..context import RequestContext
from ..errors import ChatLabError
from ..store.bulk import insert_frame, update_from_frame
from ..store.items import utc_now
from ..store.memory import MemoryStore
from ..turn import Turn
from .datasets import Dataset, content_hash
from .graders import Graded, agrade, cost_of, load_grader
from .samples import recorded_samples

log = logging.getLogger("chatkit_lab")
BATCH = 64  # answered items written together
GRADE_CHUNK = 256  # items graded together
ANSWER_COLUMNS = ["item_index", "item_hash", "thread_id", "status", "output_text", "latency_ms", "error"]
FACTS = ("turn_id", "trace_id", "model", "input_tokens", "output_tokens", "latency_ms")  # what grading adds to an item's row
ITEM_COLUMNS = ("item_index, item_hash, thread_id, turn_id, trace_id, status, output_text, latency_ms, model, input_tokens, output_tokens, "
                "cost_usd, error, created_at")  # eval_items' columns but run_id


@dataclass
class Target:
    """What answers each item: ``server`` (a LabServer for the lab, an agent or a workflow), or
    None for recorded threads (items with ``thread_id``), graded as they are. ``staged``: the
    in-memory store the server's threads live in until a batch of them is written to the file."""

    description: dict[str, Any]
    server: Any | None
    staged: MemoryStore | None = None


def store_dataset(cur: Any, dataset: Dataset, redact: Callable[[str], str] = str) -> None:
    """The dataset under its content hash, its items through ``redact`` (the lab's secrets and PII
    masks: what the lab would not store from a chat, it does not store from a dataset either)."""
    # ON CONFLICT, not a look first: in a workshop database another student's copy is there but not visible.
    if cur.execute("INSERT INTO eval_datasets VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING dataset_hash",
                   [dataset.hash, dataset.name, dataset.source, len(dataset), utc_now()]).fetchone() is None:
        return
    import pandas as pd

    insert_frame(cur, "eval_dataset_items", pd.DataFrame({
        "dataset_hash": dataset.hash, "item_index": range(len(dataset)),
        "item": [redact(json.dumps(item, sort_keys=True, default=str)) for item in dataset.items]}))


def new_run(cur: Any, dataset: Dataset, target: Target, graders: Sequence[Any], *, name: str | None, user_id: str, concurrency: int,
            kind: str = "evaluate", parent: str | None = None, redact: Callable[[str], str] = str) -> str:
    configs = [load_grader(g) for g in graders]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ChatLabError(f"Two graders share a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); each result is stored by its grader's name.")
    if target.description.get("kind") == "recorded" and not all(item.get("thread_id") for item in dataset.items):
        raise ChatLabError('target="recorded" grades recorded threads: each item needs a "thread_id" (evals.from_threads makes them).')
    for n, item in enumerate(dataset.items):
        if target.server is not None and item.get("conversation") is not None:
            conversation_of(item, n)  # a clear error before anything is stored
        if target.server is not None:
            decisions_of(item, n)
    run_id = f"evalrun_{uuid.uuid4().hex[:12]}"
    cur.execute("INSERT INTO eval_runs VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, NULL)", [
        run_id, name or f"{dataset.name} × {target.description.get('label', 'lab')}", kind, dataset.hash, json.dumps(target.description),
        json.dumps([c.model_dump(mode="json", exclude_none=True) for c in configs]), user_id, concurrency, parent, utc_now()])
    store_dataset(cur, dataset, redact)  # after the run that names it: a workshop student may only see datasets of their runs
    return run_id


async def answer_all(runtime: Any, run_id: str, dataset: Dataset, target: Target, user_id: str, concurrency: int, done: list[int]) -> None:
    """Phase 1: every item without an ``eval_items`` row, ``concurrency`` at a time. Finished items
    and their threads are written in batches (every ``BATCH`` items or half a second, and when the
    run stops, however it stops): a few statements per batch instead of several per item, each of
    which costs DuckDB a millisecond or more."""
    async with runtime.db.acursor() as cur:
        finished = {n for (n,) in cur.execute("SELECT item_index FROM eval_items WHERE run_id = ?", [run_id]).fetchall()}
    done[0] = len(finished)
    todo = ((n, item) for n, item in enumerate(dataset.items) if n not in finished)  # shared by the workers: memory does not grow with the items
    answered: list[dict[str, Any]] = []
    written = [time.monotonic()]
    writing = asyncio.Lock()  # one write at a time: each takes what the one before left

    async def write(everything: bool = False) -> None:
        async with writing:
            rows, staged = list(answered), target.staged if target.staged is not None else MemoryStore()
            written[0] = time.monotonic()
            held = set(staged.thread_ids())
            ids = list(held) if everything else [r["thread_id"] for r in rows if r["thread_id"] in held]
            async with runtime.db.transaction() as cur:  # the threads first, so every stored item's thread exists
                await runtime.store.add_threads([staged.thread(t) for t in ids])
                if rows:
                    import pandas as pd

                    frame = pd.DataFrame(rows, columns=ANSWER_COLUMNS).astype({"latency_ms": "Float64"})
                    frame.insert(0, "run_id", run_id)
                    frame["created_at"] = utc_now()
                    insert_frame(cur, "eval_items", frame)
            # Out of memory only once written: a write that fails loses nothing, and the next tries again.
            del answered[: len(rows)]
            for thread_id in ids:
                staged.take_thread(thread_id)

    async def worker() -> None:
        for index, item in todo:
            row = await _answer(runtime, target, user_id, item)
            row.update({k: runtime.redact(row[k]) for k in ("output_text", "error") if row[k]})
            answered.append({"item_index": index, "item_hash": content_hash([item]), **row})
            done[0] += 1
            if len(answered) >= BATCH or time.monotonic() - written[0] > 0.5:
                await write()

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    try:
        await asyncio.gather(*workers)
    except BaseException:  # Ctrl-C, or a write that failed: keep what is finished, so the run resumes
        for task in workers:  # the others stop too, before what they hold is written
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        try:
            await write(everything=True)  # an item stopped mid-turn keeps what its thread holds, as a chat would
            async with runtime.db.acursor() as cur:
                cur.execute("UPDATE eval_runs SET status = 'interrupted' WHERE run_id = ?", [run_id])
        except Exception:
            log.warning("eval run %s: the finished items could not be written as it stopped", run_id, exc_info=True)
        raise
    await write(everything=True)  # with the threads of items that failed before they had an id


async def _answer(runtime: Any, target: Target, user_id: str, item: dict[str, Any]) -> dict[str, Any]:
    if target.server is None:  # a recorded thread, graded as it is
        return {"thread_id": item["thread_id"], "status": "done", "output_text": item.get("recorded_reply"), "latency_ms": None, "error": None}
    message = {"content": [{"type": "input_text", "text": item["input"]}], "attachments": [], "inference_options": {}}
    started = time.perf_counter()
    try:
        thread_id: str | None = None
        if item.get("conversation"):  # a multi-turn item: its history first, then the input as the next message
            thread_id = await seeded_thread(target.server.store, user_id, conversation_of(item))
            body = {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message}}
        else:
            body = {"type": "threads.create", "params": {"input": message}}
        events = await runtime.request(body, user_id, server=target.server)
        thread_id = Turn.of(thread_id, events).thread_id
        # A run waiting for a click: the item's decisions answer it.
        events, waiting = await approvals.answered(events, thread_id, iter(decisions_of(item)),
                                                   lambda click: runtime.request(click, user_id, server=target.server))
        turn = Turn.of(thread_id, events)
    except Exception as exc:  # one item's failure is that item's error, not the run's
        return {"thread_id": None, "status": "error", "output_text": None, "latency_ms": None, "error": str(exc)}
    error = turn.error or (f"The run stopped at an approval ({waiting}), which an eval cannot click: give the item "
                           '"approval": "approve" or "reject" (a list answers several in order).' if waiting is not None else None)
    return {"thread_id": turn.thread_id, "status": "error" if error else "done", "output_text": turn.text,
            "latency_ms": (time.perf_counter() - started) * 1000, "error": error}


MAX_APPROVALS = 100  # one decision answers every approval of a turn, up to this many (a loop that keeps asking)


def decisions_of(item: dict[str, Any], index: int | None = None) -> list[str]:
    """An item's answers to the approvals its run asks, in order: its ``"approval"``, one decision
    for all of them or a list, one each."""
    given = item.get("approval")
    decisions = [] if given is None else [given] * MAX_APPROVALS if isinstance(given, str) else given
    if not isinstance(decisions, list) or not all(d in ("approve", "reject") for d in decisions):
        where = f"Item {index}" if index is not None else "An item"
        raise ChatLabError(f'{where}\'s "approval" is "approve", "reject" or a list of them, not {given!r}.')
    return decisions


def conversation_of(item: dict[str, Any], index: int | None = None) -> list[tuple[str, str]]:
    """An item's ``conversation`` as (role, text) pairs; roles are user and assistant."""
    where = f"Item {index}" if index is not None else "An item"
    turns = item.get("conversation")
    if not isinstance(turns, list) or not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
                                              for m in turns):
        raise ChatLabError(f'{where}\'s "conversation" is a list of {{"role": "user" or "assistant", "content": "text"}}.')
    return [(m["role"], m["content"]) for m in turns]


async def seeded_thread(store: Any, user_id: str, conversation: list[tuple[str, str]]) -> str:
    """A new thread of ``user_id`` holding ``conversation`` as its earlier messages (no model call)."""
    context = RequestContext(user_id=user_id)
    thread = ThreadMetadata(id=store.generate_thread_id(context), title="eval item", created_at=datetime.now())
    await store.save_thread(thread, context)
    for role, text in conversation:
        item_id = store.generate_item_id("message", thread, context)
        item: Any = (UserMessageItem(id=item_id, thread_id=thread.id, created_at=datetime.now(), content=[UserMessageTextContent(text=text)],
                                     inference_options=InferenceOptions())
                     if role == "user" else
                     AssistantMessageItem(id=item_id, thread_id=thread.id, created_at=datetime.now(), content=[AssistantMessageContent(text=text)]))
        await store.add_thread_item(thread.id, item, context)
    return thread.id


async def grade_all(runtime: Any, run_id: str, dataset: Dataset, graders: Sequence[Any], user_id: str, *, judge: Any = None,
                    prices: dict[str, tuple[float, float]] | None = None, concurrency: int = 16) -> None:
    """Phase 2: grade every answered item that has no results yet, from the store, ``GRADE_CHUNK``
    items at a time (so memory stays flat however many there are; an interrupted grading resumes)."""
    await runtime.tracer.aflush()
    async with runtime.db.acursor() as cur:
        pending = cur.execute("SELECT item_index, thread_id, status, error FROM eval_items i WHERE run_id = ? AND NOT EXISTS "
                              "(SELECT 1 FROM eval_results r WHERE r.run_id = i.run_id AND r.item_index = i.item_index) ORDER BY item_index",
                              [run_id]).fetchall()
    configs = [load_grader(g) for g in graders]
    for start in range(0, len(pending), GRADE_CHUNK):
        await _grade_chunk(runtime, run_id, dataset, configs, user_id, pending[start : start + GRADE_CHUNK], judge, prices, concurrency)
    async with runtime.db.acursor() as cur:
        cur.execute("UPDATE eval_runs SET status = 'completed', finished_at = ? WHERE run_id = ?", [utc_now(), run_id])


async def _grade_chunk(runtime: Any, run_id: str, dataset: Dataset, configs: list[Any], user_id: str, pending: list[Any], judge: Any,
                       prices: dict[str, tuple[float, float]] | None, concurrency: int) -> None:
    async with runtime.db.acursor() as cur:
        found = recorded_samples(cur, [thread for _, thread, status, _ in pending if thread and status == "done"], user_id)
    samples: dict[int, dict[str, Any] | None] = {}
    errors = {n: error for n, _, _, error in pending}
    for n, thread, status, _ in pending:
        samples[n] = found.get(thread) if status == "done" else None
        if status == "done" and samples[n] is None:  # e.g. a recorded thread that is not this user's
            errors[n] = f"Thread {thread!r} has no recorded turn to grade."
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(index: int) -> list[Graded]:
        sample = samples[index]
        if sample is None:
            return [Graded(c.name, c.type, 0.0, False, f"the item has no answer to grade: {errors[index]}") for c in configs]
        async with gate:
            return [await agrade(c, sample, dataset.items[index], judge=judge, prices=prices) for c in configs]

    results = await asyncio.gather(*(one(n) for n, *_ in pending))
    import pandas as pd

    facts = pd.DataFrame([_facts(index, samples[index], prices) for index, *_ in pending], columns=["item_index", *FACTS, "cost_usd"])
    graded_rows = pd.DataFrame([(run_id, index, g.name, g.type, g.score, g.passed, g.error, json.dumps(g.info, default=str) if g.info else None)
                                for (index, *_), graded in zip(pending, results, strict=True) for g in graded],
                               columns=["run_id", "item_index", "grader_name", "grader_type", "score", "passed", "error", "info"])
    async with runtime.db.transaction() as cur:  # one statement per table, not one per item (each costs DuckDB a millisecond or more)
        update_from_frame(
            cur, "eval_items", facts.astype({"input_tokens": "Int64", "output_tokens": "Int64", "latency_ms": "Float64", "cost_usd": "Float64"}),
            "turn_id = f.turn_id::VARCHAR, trace_id = f.trace_id::VARCHAR, model = f.model::VARCHAR, input_tokens = f.input_tokens::BIGINT, "
            "output_tokens = f.output_tokens::BIGINT, cost_usd = f.cost_usd::FLOAT8, latency_ms = coalesce(f.latency_ms::FLOAT8, t.latency_ms)",
            "t.run_id = ? AND t.item_index = f.item_index::INTEGER", [run_id])
        insert_frame(cur, "eval_results", graded_rows)


def _facts(index: int, sample: dict[str, Any] | None, prices: dict[str, tuple[float, float]] | None) -> dict[str, Any]:
    if sample is None:
        return {"item_index": index}
    return {"item_index": index, **{k: sample.get(k) for k in FACTS}, "cost_usd": cost_of(sample, prices)}


SUMMARY_SQL = """
    WITH per_item AS (
        SELECT item_index, bool_and(passed) AS passed, bool_or(error IS NOT NULL) AS errored FROM eval_results WHERE run_id = ? GROUP BY item_index)
    SELECT count(*), count(*) FILTER (WHERE passed AND NOT errored), count(*) FILTER (WHERE NOT passed AND NOT errored), count(*) FILTER (WHERE errored)
    FROM per_item"""


def summary(cur: Any, run_id: str) -> dict[str, Any]:
    """The run in OpenAI's shape: ``result_counts``, ``per_testing_criteria_results`` and
    ``per_model_usage`` (items answered per model and their tokens); ``cost_usd`` (None when no
    item's model has a price)."""
    row = cur.execute("SELECT name, status, dataset_hash FROM eval_runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise ChatLabError(f"There is no eval run {run_id!r}.")
    total, passed, failed, errored = cur.execute(SUMMARY_SQL, [run_id]).fetchone()
    criteria = cur.execute("SELECT grader_name, count(*) FILTER (WHERE passed), count(*) FILTER (WHERE NOT passed AND error IS NULL), "
                           "count(*) FILTER (WHERE error IS NOT NULL) FROM eval_results WHERE run_id = ? GROUP BY grader_name ORDER BY grader_name",
                           [run_id]).fetchall()
    usage = cur.execute("SELECT model, count(*), sum(input_tokens), sum(output_tokens) FROM eval_items WHERE run_id = ? AND model IS NOT NULL "
                        "GROUP BY model ORDER BY model", [run_id]).fetchall()
    cost = cur.execute("SELECT sum(cost_usd) FROM eval_items WHERE run_id = ?", [run_id]).fetchone()[0]
    return {"id": run_id, "name": row[0], "status": row[1], "dataset_hash": row[2],
            "result_counts": {"total": total, "passed": passed, "failed": failed, "errored": errored},
            "per_testing_criteria_results": [{"testing_criteria": n, "passed": p, "failed": f, "errored": e} for n, p, f, e in criteria],
            "per_model_usage": [{"model_name": m, "invocation_count": k, "prompt_tokens": int(i or 0), "completion_tokens": int(o or 0),
                                 "total_tokens": int((i or 0) + (o or 0)), "cached_tokens": 0} for m, k, i, o in usage],
            "cost_usd": cost}


def stored_run(cur: Any, run_id: str, user_id: str) -> tuple[Dataset, list[Any], dict[str, Any]]:
    """A stored run's dataset, graders and target description (for resume and rescore)."""
    row = cur.execute("SELECT dataset_hash, graders, target FROM eval_runs WHERE run_id = ? AND user_id = ?", [run_id, user_id]).fetchone()
    if row is None:
        raise ChatLabError(f"There is no eval run {run_id!r} of {user_id!r}.")
    items = [json.loads(item) for (item,) in cur.execute("SELECT item FROM eval_dataset_items WHERE dataset_hash = ? ORDER BY item_index", [row[0]]).fetchall()]
    name = cur.execute("SELECT name FROM eval_datasets WHERE dataset_hash = ?", [row[0]]).fetchone()[0]
    return Dataset(items, name, "stored"), json.loads(row[1]), json.loads(row[2])


def copy_answers(cur: Any, source: str, run_id: str) -> None:
    """A rescore's items: the source run's answers (same threads), to be graded again."""
    cur.execute(f"INSERT INTO eval_items (run_id, {ITEM_COLUMNS}) SELECT ?, {ITEM_COLUMNS} FROM eval_items WHERE run_id = ?", [run_id, source])
