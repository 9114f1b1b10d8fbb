"""DuckDBStore: ChatKit's Store and AttachmentStore on one DuckDB file, scoped per user."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from chatkit.store import AttachmentStore, NotFoundError, Store
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    Page,
    ThreadItem,
    ThreadMetadata,
)
from pydantic import TypeAdapter

from ..errors import ConfigurationError, ConflictError, DatabaseBusyError
from .cache import LeaseCache
from .database import Database
from .items import (
    attachment_copies,
    carried_attachments,
    item_adapter,
    item_copies,
    item_role,
    item_text,
    naive,
    new_attachment,
    new_id,
    page_of,
)
from .rows import stored_json

log = logging.getLogger(__name__)

_attachment_adapter: TypeAdapter[Any] = TypeAdapter(Attachment)
Kept = tuple[str, ThreadItem, dict[str, Any], bool]  # an item waiting to be written: thread, item, its row, replace
DELETE_PAUSE = 0.003  # seconds between two chunks
DELETE_CHUNK = 500  # items per DELETE statement (about 45 ms with DuckDB's index)
HOLD_SECONDS = 1.0  # longest a task list waits in memory for the item after it
ITEM_VALUES = "(?, ?, ?, ?, make_timestamp(epoch_us(now())), ?, ?, ?, ?)"  # an items row in _item_row's order
THREAD_APPENDED = ["thread_id", "user_id", "title", "status", "created_at", "updated_at", "metadata", "data"]
ITEM_APPENDED = ["item_id", "thread_id", "user_id", "created_at", "updated_at", "type", "role", "text", "data"]


def user_of(context: Any) -> str:
    user_id = getattr(context, "user_id", None)
    if not isinstance(user_id, str) or not user_id:
        raise ConfigurationError(
            "The request context has no user_id; pass a chatkit_lab.RequestContext(user_id=...)."
        )
    return user_id


def _order(order: str) -> str:
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    return order.upper()


class DuckDBStore(Store[Any], AttachmentStore[Any]):
    """Threads, items and attachments in relational tables of one DuckDB file.

    Every method is scoped to ``context.user_id``: another user's ids behave exactly like
    missing ones. ``upload_url`` is the two-phase upload target (an absolute URL, formatted
    with ``id``); ``ChatLab.serve`` points it at the running server.
    """

    def __init__(
        self,
        path: str | Path | Database = ":memory:",
        *,
        upload_url: str = "http://localhost/chatkit/attachments/{id}/upload",
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.db = path if isinstance(path, Database) else Database(path)
        self.upload_url = upload_url
        self._redact = redact  # applied to titles, text and item JSON before they are written
        self._cache = LeaseCache()
        self._kept: list[Kept] = []
        self._writing_kept: asyncio.Task[None] | None = None

    def _known(self) -> LeaseCache:
        """What this process knows of the file; call it holding a cursor (which may reconnect)."""
        return self._cache.fresh(self.db.generation)

    def redact(self, text: str | None) -> str | None:
        return self._redact(text) if self._redact is not None and text else text

    def close(self) -> None:
        if self._kept and not self.db.closed:  # a task list still held, or a reply kept: one more try
            try:
                with self.db.cursor() as cur:
                    self._write_waiting(cur)
            except DatabaseBusyError:
                pass
        if self._kept:
            log.error("%d items (replies users saw) could not be saved: the database file %s stayed locked.", len(self._kept), self.db.path)
        self.db.close()

    # -- ids -------------------------------------------------------------------------------
    def generate_thread_id(self, context: Any) -> str:
        # Thread ids are global: one that another user's thread has would refuse the create. The
        # check is skipped (128 random bits suffice) rather than block the loop for a file lock.
        while True:
            candidate = new_id("thread")
            with self.db.cursor_now() as cur:  # ChatKit asks without await
                if cur is None or cur.execute("SELECT 1 FROM threads WHERE thread_id = ?", [candidate]).fetchone() is None:
                    return candidate

    def generate_item_id(self, item_type: Any, thread: Any, context: Any) -> str:
        return new_id(item_type)

    def generate_attachment_id(self, mime_type: str, context: Any) -> str:
        return new_id("attachment")

    # -- threads -------------------------------------------------------------------------
    async def load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        user = user_of(context)
        async with self._cursor() as cur:
            known = self._known()
            data = known.thread(thread_id, user)
            if data is None:
                row = cur.execute("SELECT data FROM threads WHERE thread_id = ? AND user_id = ?", [thread_id, user]).fetchone()
                if row is None:
                    raise NotFoundError(f"Thread {thread_id} not found")
                data = row[0]
                known.put_thread(thread_id, user, data)
        return ThreadMetadata.model_validate_json(data)

    async def save_thread(self, thread: ThreadMetadata, context: Any) -> None:
        # A Thread (with items) arrives here too; keep only its metadata.
        meta = ThreadMetadata.model_validate(thread.model_dump(exclude={"items"}))
        row: dict[str, Any] = {
            "id": meta.id,
            "user": user_of(context),
            "title": self.redact(meta.title),
            "status": meta.status.type,
            "created": naive(meta.created_at),
            "metadata": self.redact(stored_json(meta.metadata)),
            "data": self.redact(meta.model_dump_json()),
        }
        update = """UPDATE threads SET title = $title, status = $status, updated_at = make_timestamp(epoch_us(now())),
                           metadata = $metadata, data = $data
                    WHERE thread_id = $id AND user_id = $user RETURNING thread_id"""
        changes = {k: v for k, v in row.items() if k != "created"}
        # One statement either way (DuckDB's ON CONFLICT costs several ms): an UPDATE for a
        # thread known to exist, else an INSERT that falls back to the UPDATE on a key conflict.
        async with self._cursor() as cur:
            known = self._known()
            if known.owned(meta.id, row["user"]):
                cur.execute(update, changes)
            else:
                try:
                    cur.execute(
                        """INSERT INTO threads (thread_id, user_id, title, status, created_at, updated_at, metadata, data)
                           VALUES ($id, $user, $title, $status, $created, make_timestamp(epoch_us(now())), $metadata, $data)""",
                        row,
                    )
                except duckdb.ConstraintException:
                    if cur.execute(update, changes).fetchone() is None:
                        raise NotFoundError(f"Thread {meta.id} not found") from None  # another user's id
            known.put_thread(meta.id, row["user"], row["data"])

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: Any
    ) -> Page[ThreadMetadata]:
        direction = _order(order)
        params: dict[str, Any] = {"user": user_of(context), "limit": limit + 1}
        where = "user_id = $user"
        if after:
            params["after"] = after
            where += _keyset(direction, "threads", "thread_id = $after AND user_id = $user")
        async with self._cursor() as cur:
            rows = cur.execute(
                f"SELECT thread_id, data FROM threads WHERE {where} "
                f"ORDER BY created_at {direction}, seq {direction} LIMIT $limit",
                params,
            ).fetchall()
            if not rows and after and not _exists(cur, "threads", "thread_id = $after AND user_id = $user", params):
                raise NotFoundError(f"Thread {after} not found")
        return page_of(rows[:limit], len(rows) > limit, ThreadMetadata.model_validate_json)

    async def delete_thread(self, thread_id: str, context: Any) -> None:
        params = [thread_id, user_of(context)]
        await self.load_thread(thread_id, context)  # another user's thread: NotFoundError, nothing deleted
        # A long thread's items go in chunks first (see _delete_in_chunks); the rest in one transaction.
        await self._delete_in_chunks(thread_id, "thread_id = $thread AND user_id = $user", {"thread": thread_id, "user": params[1]})
        async with self.db.transaction() as cur:
            gone = cur.execute("DELETE FROM threads WHERE thread_id = ? AND user_id = ? RETURNING thread_id", params).fetchall()
            if gone:
                for table in ("items", "attachments", "feedback"):
                    cur.execute(f"DELETE FROM {table} WHERE thread_id = ? AND user_id = ?", params)
            self._known().drop_thread(thread_id)
        if not gone:
            raise NotFoundError(f"Thread {thread_id} not found")

    # -- items ---------------------------------------------------------------------------
    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Page[ThreadItem]:
        direction = _order(order)
        user = user_of(context)
        params: dict[str, Any] = {"thread": thread_id, "user": user, "limit": limit + 1}
        where = "thread_id = $thread AND user_id = $user"
        cursor_row = where + " AND item_id = $after"
        if after:
            params["after"] = after
            where += _keyset(direction, "items", cursor_row)
        newest = after is None and direction == "DESC"  # the history a turn reads
        async with self._cursor() as cur:
            known = self._known()
            owned = known.owned(thread_id, user)
            if newest and owned and (hit := known.newest(thread_id, limit)) is not None:
                return page_of(*hit, item_adapter.validate_json)
            rows = cur.execute(
                f"SELECT item_id, data, created_at FROM items WHERE {where} "
                f"ORDER BY created_at {direction}, seq {direction} LIMIT $limit",
                params,
            ).fetchall()
            # As ChatKit's reference stores do: a thread the user cannot see is an empty page (it
            # must not reveal whether the id exists); an unknown cursor is an error.
            if not rows and after and not _exists(cur, "items", cursor_row, params):
                raise NotFoundError(f"Item {after} not found in thread {thread_id}")
            if newest and owned:
                known.put_newest(thread_id, [(i, t, d) for i, d, t in rows], complete=len(rows) <= limit)
        return page_of([(i, d) for i, d, _ in rows[:limit]], len(rows) > limit, item_adapter.validate_json)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        """A new item: an id that the thread has already is refused, never overwritten.

        A task list (a ``workflow`` item) is held in memory and written with the item ChatKit
        stores after it, the reply, in one statement instead of two (each costs DuckDB a
        millisecond or more); any other call of this store writes it first, and it waits at most
        ``HOLD_SECONDS``."""
        await self._write_item(thread_id, item, context, replace=False)

    async def save_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        """An upsert (ChatKit replaces answered and updated items) that keeps a re-saved item
        at its original position."""
        await self._write_item(thread_id, item, context, replace=True)

    async def _write_item(self, thread_id: str, item: ThreadItem, context: Any, *, replace: bool) -> None:
        row = self._item_row(thread_id, user_of(context), item)
        if item.type == "workflow" and not replace and not self.db.closed and self._known().owned(thread_id, row["user"]):
            self._kept.append((thread_id, item, row, False))
            self._keep_trying(delay=HOLD_SECONDS)
            return
        try:
            async with self.db.acursor() as cur:
                done = self._write_waiting(cur, (thread_id, item, row, replace))
        except DatabaseBusyError:
            # The user has seen this reply stream: keep it and write it once the file is free,
            # rather than lose it. A user message is the model's input, so its turn fails instead.
            if item.type == "user_message" or self.db.closed:
                raise
            self._kept.append((thread_id, item, row, replace))
            log.warning("The database file stayed locked; item %s of thread %s is kept and written once it is free.", item.id, thread_id)
            self._keep_trying()
            return
        if done is None:
            raise NotFoundError(f"Thread {thread_id} not found")

    def _write_waiting(self, cur: duckdb.DuckDBPyConnection, mine: Kept | None = None) -> Any:
        """Write the items waiting in memory (``kept``), then ``mine``, and return what
        ``_write_row`` does for it. New items of the user's own threads go in one statement; a
        kept item that cannot be written is logged and dropped, never failing the call. (Not
        inside a transaction, whose rollback would take the kept items along.)"""
        waiting = [] if self.db.in_transaction() else self._kept
        batch = [*waiting, *([mine] if mine else [])]
        known = self._known()
        if len(batch) > 1 and all(not replace and known.owned(thread_id, row["user"]) for thread_id, _, row, replace in batch):
            try:
                cur.execute(f"INSERT INTO items (item_id, thread_id, user_id, created_at, updated_at, type, role, text, data) VALUES "
                            f"{', '.join([ITEM_VALUES] * len(batch))}", [v for _, _, row, _ in batch for v in row.values()])
            except duckdb.ConstraintException:
                pass  # an id its thread has already: one at a time, to tell which
            else:
                for thread_id, item, row, _ in batch:
                    known.added(thread_id, item.id, row["created"], row["data"])
                del waiting[:]
                return True
        while waiting:
            thread_id, item, row, replace = waiting[0]
            try:
                if self._write_row(cur, thread_id, item, row, replace=replace) is None:
                    log.error("Kept item %s could not be written: thread %s is gone.", item.id, thread_id)
            except Exception:  # never let one kept item fail every later call
                log.error("Kept item %s of thread %s could not be written.", item.id, thread_id, exc_info=True)
            waiting.pop(0)
        return self._write_row(cur, mine[0], mine[1], mine[2], replace=mine[3]) if mine else None

    def _write_row(self, cur: duckdb.DuckDBPyConnection, thread_id: str, item: ThreadItem, row: dict[str, Any], *, replace: bool) -> Any:
        """Insert the item (the common case); a key conflict means it exists. None: not the user's thread."""
        known = self._known()
        owned = known.owned(thread_id, row["user"])
        try:
            if owned:  # the thread is the user's: a plain insert
                cur.execute(
                    """INSERT INTO items (item_id, thread_id, user_id, created_at, updated_at, type, role, text, data)
                       VALUES ($id, $thread, $user, $created, make_timestamp(epoch_us(now())), $type, $role, $text, $data)""",
                    row,
                )
                done: Any = True
            else:
                done = cur.execute(
                    """INSERT INTO items (item_id, thread_id, user_id, created_at, updated_at, type, role, text, data)
                       SELECT $id, thread_id, user_id, $created, make_timestamp(epoch_us(now())), $type, $role, $text, $data
                       FROM threads WHERE thread_id = $thread AND user_id = $user RETURNING thread_id""",
                    row,
                ).fetchone()
            if done and owned:
                known.added(thread_id, item.id, row["created"], row["data"])
        except duckdb.ConstraintException:
            if not replace:
                raise ConflictError(
                    f"A new item came with the id {item.id}, which thread {thread_id} already has; nothing was overwritten. "
                    "Send the message again."
                ) from None
            done = cur.execute(
                """UPDATE items SET updated_at = make_timestamp(epoch_us(now())), type = $type, role = $role,
                          text = $text, data = $data
                   WHERE thread_id = $thread AND item_id = $id AND user_id = $user RETURNING item_id""",
                {k: v for k, v in row.items() if k != "created"},
            ).fetchone()
            if done:
                known.replaced(thread_id, item.id, row["data"])
        return done

    # -- items waiting in memory: kept while the file was locked, or a task list held --------
    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[duckdb.DuckDBPyConnection]:
        """The loop's cursor, after the items waiting in memory are written: what this process
        reads next includes every item it has shown."""
        async with self.db.acursor() as cur:
            if self._kept:
                self._write_waiting(cur)
            yield cur

    @property
    def kept(self) -> int:
        """How many items wait in memory: replies users saw while the file stayed locked, and a
        task list held for the reply after it."""
        return len(self._kept)

    def _keep_trying(self, delay: float = 0.0) -> None:
        if self._writing_kept is None or self._writing_kept.done():
            self._writing_kept = asyncio.get_running_loop().create_task(self._write_kept(delay))

    async def _write_kept(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while self._kept and not self.db.closed:
            if await self.write_kept():
                await asyncio.sleep(0.05)  # each try waited up to lock_timeout for the file

    async def write_kept(self) -> int:
        """One more try (waiting up to ``lock_timeout``) to write the waiting items; how many are left."""
        try:
            async with self._cursor():
                pass
        except DatabaseBusyError:
            pass
        return len(self._kept)

    async def load_item(self, thread_id: str, item_id: str, context: Any) -> ThreadItem:
        async with self._cursor() as cur:
            row = cur.execute(
                "SELECT data FROM items WHERE thread_id = ? AND item_id = ? AND user_id = ?",
                [thread_id, item_id, user_of(context)],
            ).fetchone()
        if row is None:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")
        return item_adapter.validate_json(row[0])

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Any) -> None:
        # Deleting an item that was never saved (a removed pending item) is not an error;
        # another user's thread is.
        params = {"thread": thread_id, "item": item_id, "user": user_of(context)}
        async with self._cursor() as cur:
            if not _exists(cur, "threads", "thread_id = $thread AND user_id = $user", params):
                raise NotFoundError(f"Thread {thread_id} not found")
            cur.execute(
                "DELETE FROM items WHERE thread_id = $thread AND item_id = $item AND user_id = $user",
                params,
            )
            self._known().removed(thread_id, item_id)

    async def delete_items_after(self, thread_id: str, item_id: str, context: Any) -> int:
        """Delete the user's items that come after ``item_id`` in its thread; returns how many."""
        params = {"thread": thread_id, "item": item_id, "user": user_of(context)}
        return await self._delete_in_chunks(
            thread_id, "thread_id = $thread AND user_id = $user AND (created_at, seq) > "
            "(SELECT (created_at, seq) FROM items WHERE thread_id = $thread AND item_id = $item AND user_id = $user)", params,
        )

    async def _delete_in_chunks(self, thread_id: str, where: str, params: dict[str, Any]) -> int:
        # DuckDB deletes rows under a primary-key index at about 50 us each: 100,000 in one
        # statement would hold the loop for seconds, so other users' requests run between chunks.
        deleted = 0
        while True:
            async with self._cursor() as cur:
                row = cur.execute(
                    f"DELETE FROM items WHERE rowid IN (SELECT rowid FROM items WHERE {where} LIMIT {DELETE_CHUNK})", params
                ).fetchone()
                self._known().forget_items(thread_id)
            count = int(row[0]) if row else 0
            deleted += count
            if count < DELETE_CHUNK:
                return deleted
            await asyncio.sleep(DELETE_PAUSE)  # long enough for a waiting request to take its turn

    async def save_feedback(self, thread_id: str, item_ids: list[str], kind: str | None, context: Any, *, comment: str | None = None) -> None:
        """Thumbs up/down on items of the user's own thread (``items.feedback``), with an
        optional comment; ``kind=None`` takes the rating back."""
        await self.load_thread(thread_id, context)  # 404 for another user's thread
        user = user_of(context)
        async with self._cursor() as cur:
            for item_id in item_ids:
                if kind is None:
                    cur.execute("DELETE FROM feedback WHERE thread_id = ? AND item_id = ? AND user_id = ?", [thread_id, item_id, user])
                    continue
                cur.execute(
                    """INSERT OR REPLACE INTO feedback (thread_id, item_id, user_id, kind, created_at, comment)
                       SELECT thread_id, item_id, user_id, ?, make_timestamp(epoch_us(now())), ? FROM items
                       WHERE thread_id = ? AND item_id = ? AND user_id = ?""",
                    [kind, self.redact(comment) if comment else None, thread_id, item_id, user],
                )

    async def feedback_of(self, thread_id: str, context: Any) -> list[dict[str, Any]]:
        """The user's ratings in their thread: ``item_id``, ``kind``, ``comment``."""
        await self.load_thread(thread_id, context)
        async with self._cursor() as cur:
            rows = cur.execute(
                "SELECT item_id, kind, comment FROM feedback WHERE thread_id = ? AND user_id = ? ORDER BY created_at",
                [thread_id, user_of(context)],
            ).fetchall()
        return [{"item_id": item_id, "kind": kind, "comment": comment} for item_id, kind, comment in rows]

    # -- copies, for fork and replay ---------------------------------------------------------
    async def copy_items(self, source_id: str, target_id: str, context: Any, *, up_to: str | None = None, before: bool = False) -> int:
        """Copy the items of the user's thread ``source_id`` (up to and including the item
        ``up_to``; ``before``: only those preceding it) into their thread ``target_id``, in order:
        each copy names its new thread and its own copies of the attachments it carries. Returns
        the items copied. Call it inside ``db.transaction()`` to make the copy one with what else
        you write."""
        params: dict[str, Any] = {"thread": source_id, "user": user_of(context)}
        upto = ""
        if up_to is not None:
            params["at"] = up_to
            upto = f" AND (created_at, seq) {'<' if before else '<='} (SELECT (created_at, seq) FROM items WHERE thread_id = $thread AND item_id = $at AND user_id = $user)"
        where = f"thread_id = $thread AND user_id = $user{upto}"
        async with self._cursor() as cur:
            carrying = [item_adapter.validate_json(data) for (data,) in cur.execute(
                f"SELECT data FROM items WHERE {where} AND coalesce(json_array_length(data->'attachments'), 0) > 0", params).fetchall()]
        renamed = await self.copy_attachments(carried_attachments(carrying), target_id, context, context)
        # A copy sets the item's thread_id as a JSON field, never by rewriting text (which would
        # change what a user wrote); only items carrying attachments pass through Python, to
        # name their new copies. One statement keeps the order and takes 0.4 s for 100,000 items.
        import pandas as pd  # here, so that importing chatkit_lab does not import pandas

        retyped = pd.DataFrame({"item_id": [i.id for i in carrying], "data": [self.redact(item_adapter.dump_json(c).decode())
                                                                            for c in item_copies(carrying, target_id, renamed)]})
        async with self._cursor() as cur:
            self._known().forget_items(target_id)
            cur.register("retyped", retyped)
            try:
                copied = cur.execute(
                    f"""INSERT INTO items (item_id, thread_id, user_id, created_at, updated_at, type, role, text, data)
                        SELECT i.item_id, $target, i.user_id, i.created_at, make_timestamp(epoch_us(now())), i.type, i.role, i.text,
                               coalesce(r.data::JSON, json_merge_patch(i.data, json_object('thread_id', $target)))
                        FROM (SELECT * FROM items WHERE {where}) i LEFT JOIN retyped r ON r.item_id = i.item_id
                        ORDER BY i.created_at, i.seq""",
                    {**params, "target": target_id},
                ).fetchone()
            finally:
                cur.unregister("retyped")
        return int(copied[0]) if copied else 0

    async def add_threads(self, threads: Sequence[tuple[str, ThreadMetadata, Sequence[ThreadItem]]]) -> None:
        """New threads (owner, metadata, items in order) written in one transaction, a few
        statements in all: how an eval run stores the threads its items ran in."""
        if not threads:
            return
        now = naive(datetime.now(UTC))
        rows = [[meta.id, user, self.redact(meta.title), meta.status.type, naive(meta.created_at), now, self.redact(stored_json(meta.metadata)),
                 self.redact(ThreadMetadata.model_validate(meta.model_dump(exclude={"items"})).model_dump_json())] for user, meta, _ in threads]
        items = [[row["id"], row["thread"], row["user"], row["created"], now, row["type"], row["role"], row["text"], row["data"]]
                 for user, meta, entries in threads for row in (self._item_row(meta.id, user, item) for item in entries)]
        async with self.db.transaction() as cur:
            # DuckDB's appender: a multi-row VALUES costs DuckDB ~45 us a value to bind (~40 ms for 200 items)
            for table, columns, values in (("threads", THREAD_APPENDED, rows), ("items", ITEM_APPENDED, items)):
                if values:
                    appender = cur.appender(table, columns=columns)
                    appender.append_rows(values)
                    appender.flush()

    def _item_row(self, thread_id: str, user_id: str, item: ThreadItem) -> dict[str, Any]:
        """An ``items`` row, redacted, in the column order of the inserts (by name or position)."""
        return {
            "id": item.id, "thread": thread_id, "user": user_id, "created": naive(item.created_at), "type": item.type,
            "role": item_role(item), "text": self.redact(item_text(item)), "data": self.redact(item_adapter.dump_json(item).decode()),
        }

    async def copy_attachments(self, attachment_ids: Sequence[str], thread_id: str, source: Any, target: Any) -> dict[str, str]:
        """Copies (bytes included) of ``source``'s attachments for ``target``'s thread
        ``thread_id``, with new ids; returns old id → new id. ChatKit moves an attachment to the
        thread of the message that carries it, so two threads must not share one."""
        renamed: dict[str, str] = {}
        for old, copy in await attachment_copies(self, attachment_ids, thread_id, source, target):
            new = renamed[old] = copy.id
            async with self._cursor() as cur:
                cur.execute(
                    """INSERT INTO attachments (attachment_id, user_id, thread_id, name, mime_type, size, bytes, created_at, data)
                       SELECT $new, $owner, $thread, name, mime_type, size, bytes, make_timestamp(epoch_us(now())), $data
                       FROM attachments WHERE attachment_id = $old AND user_id = $source""",
                    {"new": new, "owner": user_of(target), "thread": thread_id, "old": old, "source": user_of(source),
                     "data": self.redact(_attachment_adapter.dump_json(copy).decode())},
                )
        return renamed

    # -- attachments ---------------------------------------------------------------------
    async def create_attachment(self, input: AttachmentCreateParams, context: Any) -> Attachment:
        attachment = new_attachment(self.generate_attachment_id(input.mime_type, context), input, self.upload_url)
        await self._write_attachment(attachment, context, size=input.size)
        return attachment

    async def save_attachment(self, attachment: Attachment, context: Any) -> None:
        await self._write_attachment(attachment, context)

    async def _write_attachment(self, attachment: Attachment, context: Any, size: int | None = None) -> None:
        async with self._cursor() as cur:
            row = cur.execute(
                """
                INSERT INTO attachments (attachment_id, user_id, thread_id, name, mime_type, size, created_at, data)
                VALUES ($id, $user, $thread, $name, $mime, $size, make_timestamp(epoch_us(now())), $data)
                ON CONFLICT (attachment_id) DO UPDATE SET
                    thread_id = excluded.thread_id, name = excluded.name,
                    mime_type = excluded.mime_type, size = coalesce(excluded.size, attachments.size),
                    data = excluded.data
                WHERE attachments.user_id = excluded.user_id
                RETURNING attachment_id""",
                {
                    "id": attachment.id,
                    "user": user_of(context),
                    "thread": attachment.thread_id,
                    "name": self.redact(attachment.name),
                    "mime": attachment.mime_type,
                    "size": size,
                    "data": self.redact(_attachment_adapter.dump_json(attachment).decode()),
                },
            ).fetchone()
        if row is None:
            raise NotFoundError(f"Attachment {attachment.id} not found")

    async def load_attachment(self, attachment_id: str, context: Any) -> Attachment:
        async with self._cursor() as cur:
            row = cur.execute(
                "SELECT data FROM attachments WHERE attachment_id = ? AND user_id = ?",
                [attachment_id, user_of(context)],
            ).fetchone()
        if row is None:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        return _attachment_adapter.validate_json(row[0])

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        # ChatKit calls this on both the AttachmentStore and the Store: the second is a no-op.
        async with self._cursor() as cur:
            cur.execute(
                "DELETE FROM attachments WHERE attachment_id = ? AND user_id = ?", [attachment_id, user_of(context)]
            )

    async def write_attachment_bytes(self, attachment_id: str, data: bytes, context: Any) -> Attachment:
        """Store an uploaded file's bytes (the second phase of a two-phase upload)."""
        async with self._cursor() as cur:
            row = cur.execute(
                "UPDATE attachments SET bytes = ?, size = ? WHERE attachment_id = ? AND user_id = ? RETURNING data",
                [data, len(data), attachment_id, user_of(context)],
            ).fetchone()
        if row is None:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        attachment = _attachment_adapter.validate_json(row[0])
        attachment.upload_descriptor = None
        await self.save_attachment(attachment, context)
        return attachment

    async def load_attachment_bytes(self, attachment_id: str, context: Any) -> bytes:
        async with self._cursor() as cur:
            row = cur.execute(
                "SELECT bytes FROM attachments WHERE attachment_id = ? AND user_id = ?",
                [attachment_id, user_of(context)],
            ).fetchone()
        if row is None or row[0] is None:
            raise NotFoundError(f"Attachment {attachment_id} has no uploaded bytes")
        return bytes(row[0])


def _exists(cur: Any, table: str, where: str, params: dict[str, Any]) -> bool:
    names = {k: v for k, v in params.items() if f"${k}" in where}
    return cur.execute(f"SELECT 1 FROM {table} WHERE {where}", names).fetchone() is not None


def _keyset(direction: str, table: str, cursor_row: str) -> str:
    """Rows strictly after the cursor row in (created_at, seq) order."""
    op = ">" if direction == "ASC" else "<"
    return (
        f" AND (created_at, seq) {op} "
        f"(SELECT (created_at, seq) FROM {table} WHERE {cursor_row})"
    )
