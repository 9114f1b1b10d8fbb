"""PostgresStore: ChatKit's Store and AttachmentStore on PostgreSQL, scoped per user.

The same relational tables and contract as ``DuckDBStore`` (threads, items, attachments,
feedback; keyset pages in ``(created_at, seq)`` order; another user's ids behave exactly like
missing ones), for many processes on one database. psycopg 3's async pool lives on a loop thread
of the store's own, so the store can be awaited from any event loop; the pool opens (and the
migrations run) on first use, or at ``await store.open()`` to warm it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from chatkit.store import AttachmentStore, NotFoundError, Store
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    Page,
    ThreadItem,
    ThreadMetadata,
)
from pydantic import TypeAdapter

from .._loop import LoopThread
from ..errors import ConflictError, DatabaseUnavailableError
from .duckdb import user_of
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
from .postgres_database import refused, unavailable, where_of
from .postgres_schema import migrate
from .rows import stored_json

T = TypeVar("T")
log = logging.getLogger(__name__)
_attachment_adapter: TypeAdapter[Any] = TypeAdapter(Attachment)
NOW = "(now() AT TIME ZONE 'UTC')"

def _chunks(rows: Sequence[T], size: int = 200) -> list[Sequence[T]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _order(order: str) -> str:
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    return order.upper()


class PostgresStore(Store[Any], AttachmentStore[Any]):
    """Threads, items and attachments in relational tables of one PostgreSQL database.

    ``PostgresStore("postgresql://user@host/db")`` connects nothing yet; the pool (``max_size``
    connections) opens on first use. Every method is scoped to ``context.user_id``."""

    def __init__(self, dsn: str, *, upload_url: str = "http://localhost/chatkit/attachments/{id}/upload",
                 redact: Callable[[str], str] | None = None, max_size: int = 10, connect_timeout: float = 10.0) -> None:
        self.dsn, self.upload_url, self.max_size, self.connect_timeout = dsn, upload_url, max_size, connect_timeout
        self._redact = redact  # applied to titles, text and item JSON before they are written
        self._loop: LoopThread | None = None
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._kept: list[tuple[ThreadItem, dict[str, Any], bool]] = []  # replies users saw while the server was away
        self._keeping: asyncio.Lock | None = None
        self._retrying: asyncio.Task[None] | None = None

    def redact(self, text: str | None) -> str | None:
        return self._redact(text) if self._redact is not None and text else text

    # -- the pool, on the store's own loop ------------------------------------------------
    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = LoopThread("chatkit-lab-postgres")
        return await self._loop.run(coro)

    async def open(self) -> None:
        """Open the pool and migrate now (a warm pool answers the first request as fast as the next)."""
        await self._on_loop(self._ready())

    async def _ready(self) -> Any:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                import psycopg
                from psycopg_pool import AsyncConnectionPool, PoolTimeout

                try:  # one direct connection first: its error says what is wrong, a pool's timeout would not
                    first = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=max(1, round(self.connect_timeout)), autocommit=True)
                    await first.close()
                except (psycopg.Error, OSError) as exc:
                    raise unavailable(self.dsn, exc) from None
                pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=self.max_size, open=False, kwargs={"autocommit": True},
                                           timeout=self.connect_timeout)
                try:
                    await pool.open(wait=True, timeout=self.connect_timeout)
                    await migrate(pool)
                except (psycopg.Error, PoolTimeout) as exc:
                    await pool.close()  # nothing left connected behind the sentence
                    raise unavailable(self.dsn, exc) from None
                self._pool = pool
        return self._pool

    async def _fetch(self, sql: str, params: Any = None, *, one: bool = False) -> Any:
        return await self._on_loop(self._query(sql, params, one))

    async def _query(self, sql: str, params: Any, one: bool) -> Any:
        if self._kept:
            await self._write_kept()
        return await self._execute(sql, params, one)

    async def _execute(self, sql: str, params: Any, one: bool) -> Any:
        import psycopg

        pool = await self._ready()
        try:
            async with pool.connection() as con:
                cur = await con.execute(sql, params)
                if cur.description is None:
                    return cur.rowcount
                return await (cur.fetchone() if one else cur.fetchall())
        except (psycopg.OperationalError, OSError) as exc:  # the server went away: the pool reconnects for the next request
            raise unavailable(self.dsn, exc) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise refused(exc) from None

    async def _script(self, steps: list[tuple[str, Any]]) -> list[Any]:
        """Statements in one transaction; each one's rows (or row count)."""

        async def run(con: Any) -> list[Any]:
            results = []
            for sql, params in steps:
                cur = await con.execute(sql, params)
                results.append(await cur.fetchall() if cur.description is not None else cur.rowcount)
            return results

        return await self._on_loop(self._transaction(run))

    async def _transaction(self, body: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """``body(connection)`` in one transaction, on the store's loop."""
        import psycopg

        pool = await self._ready()
        if self._kept:
            await self._write_kept()
        try:
            async with pool.connection() as con, con.transaction():
                return await body(con)
        except (psycopg.OperationalError, OSError) as exc:
            raise unavailable(self.dsn, exc) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise refused(exc) from None

    # -- replies kept while the server was away ---------------------------------------------
    @property
    def kept(self) -> int:
        """How many items (replies users saw) wait in memory for the server to come back."""
        return len(self._kept)

    async def _write_kept(self) -> None:
        """Write the kept items, in order, before anything else this store does (on its loop):
        what it reads next includes every reply it has shown. Raises while the server is away."""
        if self._keeping is None:
            self._keeping = asyncio.Lock()
        async with self._keeping:
            while self._kept:
                item, row, replace = self._kept[0]
                if await self._insert_item(row, replace) is None:
                    log.error("Kept item %s could not be written: thread %s is gone, or has an item with that id.", item.id, row["thread"])
                self._kept.pop(0)

    async def write_kept(self) -> int:
        """One more try to write the kept items; how many are left."""
        try:
            await self._on_loop(self._write_kept())
        except DatabaseUnavailableError:
            pass
        return len(self._kept)

    async def _retry_kept(self) -> None:
        while self._kept and self._pool is not None:
            try:
                await self._write_kept()
            except DatabaseUnavailableError:
                await asyncio.sleep(0.5)

    async def _keep(self, item: ThreadItem, row: dict[str, Any], replace: bool) -> None:
        self._kept.append((item, row, replace))
        log.warning("PostgreSQL is unavailable; item %s of thread %s is kept and written once it is back.", item.id, row["thread"])
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._retry_kept())

    def close(self) -> None:
        if self._kept:
            log.error("%d items (replies users saw) could not be saved: PostgreSQL at %s stayed unavailable.", len(self._kept), where_of(self.dsn))
        if self._loop is None:
            return
        if self._pool is not None:
            self._loop.call(self._pool.close())
            self._pool = None
        self._loop.stop()
        self._loop = None

    # -- ids -------------------------------------------------------------------------------
    def generate_thread_id(self, context: Any) -> str:
        return new_id("thread")  # 128 random bits: a collision is not a practical concern

    def generate_item_id(self, item_type: Any, thread: Any, context: Any) -> str:
        return new_id(item_type)

    def generate_attachment_id(self, mime_type: str, context: Any) -> str:
        return new_id("attachment")

    # -- threads -------------------------------------------------------------------------
    async def load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        row = await self._fetch("SELECT data::text FROM threads WHERE thread_id = %s AND user_id = %s", [thread_id, user_of(context)], one=True)
        if row is None:
            raise NotFoundError(f"Thread {thread_id} not found")
        return ThreadMetadata.model_validate_json(row[0])

    async def save_thread(self, thread: ThreadMetadata, context: Any) -> None:
        meta = ThreadMetadata.model_validate(thread.model_dump(exclude={"items"}))  # a Thread (with items) arrives here too
        row = await self._fetch(
            f"""INSERT INTO threads (thread_id, user_id, title, status, created_at, updated_at, metadata, data)
                VALUES (%(id)s, %(user)s, %(title)s, %(status)s, %(created)s, {NOW}, %(metadata)s::json, %(data)s::json)
                ON CONFLICT (thread_id) DO UPDATE SET title = excluded.title, status = excluded.status, updated_at = excluded.updated_at,
                    metadata = excluded.metadata, data = excluded.data
                WHERE threads.user_id = excluded.user_id RETURNING thread_id""",
            {"id": meta.id, "user": user_of(context), "title": self.redact(meta.title), "status": meta.status.type,
             "created": naive(meta.created_at), "metadata": self.redact(stored_json(meta.metadata)), "data": self.redact(meta.model_dump_json())},
            one=True,
        )
        if row is None:
            raise NotFoundError(f"Thread {meta.id} not found")  # another user's id

    async def load_threads(self, limit: int, after: str | None, order: str, context: Any) -> Page[ThreadMetadata]:
        direction, op = _order(order), ">" if order == "asc" else "<"
        params: dict[str, Any] = {"user": user_of(context), "limit": limit + 1, "after": after}
        cursor = "thread_id = %(after)s AND user_id = %(user)s"
        where = f"user_id = %(user)s AND (created_at, seq) {op} (SELECT created_at, seq FROM threads WHERE {cursor})" if after else "user_id = %(user)s"
        rows = await self._fetch(f"SELECT thread_id, data::text FROM threads WHERE {where} ORDER BY created_at {direction}, seq {direction} "
                                 "LIMIT %(limit)s", params)
        if not rows and after and not await self._fetch(f"SELECT 1 FROM threads WHERE {cursor}", params, one=True):
            raise NotFoundError(f"Thread {after} not found")
        return page_of(rows[:limit], len(rows) > limit, ThreadMetadata.model_validate_json)

    async def delete_thread(self, thread_id: str, context: Any) -> None:
        params = [thread_id, user_of(context)]
        gone, *_ = await self._script([("DELETE FROM threads WHERE thread_id = %s AND user_id = %s RETURNING thread_id", params),
                                       *[(f"DELETE FROM {t} WHERE thread_id = %s AND user_id = %s", params) for t in ("items", "attachments", "feedback")]])
        if not gone:
            raise NotFoundError(f"Thread {thread_id} not found")  # and nothing of another user's was deleted: the owner matched no row

    # -- items ---------------------------------------------------------------------------
    async def load_thread_items(self, thread_id: str, after: str | None, limit: int, order: str, context: Any) -> Page[ThreadItem]:
        direction, op = _order(order), ">" if order == "asc" else "<"
        params: dict[str, Any] = {"thread": thread_id, "user": user_of(context), "limit": limit + 1, "after": after}
        where = "thread_id = %(thread)s AND user_id = %(user)s"
        cursor = where + " AND item_id = %(after)s"
        if after:
            where += f" AND (created_at, seq) {op} (SELECT created_at, seq FROM items WHERE {cursor})"
        rows = await self._fetch(f"SELECT item_id, data::text FROM items WHERE {where} ORDER BY created_at {direction}, seq {direction} "
                                 "LIMIT %(limit)s", params)
        # As ChatKit's reference stores do: a thread the user cannot see is an empty page; an unknown cursor is an error.
        if not rows and after and not await self._fetch(f"SELECT 1 FROM items WHERE {cursor}", params, one=True):
            raise NotFoundError(f"Item {after} not found in thread {thread_id}")
        return page_of(rows[:limit], len(rows) > limit, item_adapter.validate_json)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        """A new item: an id that the thread has already is refused, never overwritten."""
        await self._write_item(thread_id, item, context, replace=False)

    async def save_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        """An upsert (ChatKit replaces answered and updated items) that keeps a re-saved item at its position."""
        await self._write_item(thread_id, item, context, replace=True)

    async def _write_item(self, thread_id: str, item: ThreadItem, context: Any, *, replace: bool) -> None:
        row = self._item_row(thread_id, user_of(context), item)
        written = await self._on_loop(self._write_or_keep(item, row, replace))
        if written is not None:
            return
        if not await self._fetch("SELECT 1 FROM threads WHERE thread_id = %s AND user_id = %s", [thread_id, row["user"]], one=True):
            raise NotFoundError(f"Thread {thread_id} not found")
        raise ConflictError(f"A new item came with the id {item.id}, which thread {thread_id} already has; nothing was overwritten. "
                            "Send the message again.")

    async def _write_or_keep(self, item: ThreadItem, row: dict[str, Any], replace: bool) -> Any:
        try:
            if self._kept:
                await self._write_kept()
            return await self._insert_item(row, replace)
        except DatabaseUnavailableError:
            # The user has seen this reply stream: keep it and write it once the server is back,
            # rather than lose it. A user message is the model's input, so its turn fails instead.
            if item.type == "user_message" or self._pool is None:
                raise
            await self._keep(item, row, replace)
            return True

    async def _insert_item(self, row: dict[str, Any], replace: bool) -> Any:
        """The item's row, unless the thread is not the user's or (new items) has that id: None then."""
        conflict = ("DO UPDATE SET updated_at = excluded.updated_at, type = excluded.type, role = excluded.role, text = excluded.text, "
                    "data = excluded.data WHERE items.user_id = excluded.user_id") if replace else "DO NOTHING"
        return await self._execute(
            f"""INSERT INTO items (item_id, thread_id, user_id, created_at, updated_at, type, role, text, data)
                SELECT %(id)s, thread_id, user_id, %(created)s::timestamp, {NOW}, %(type)s, %(role)s, %(text)s, %(data)s::json
                FROM threads WHERE thread_id = %(thread)s AND user_id = %(user)s
                ON CONFLICT (thread_id, item_id) {conflict} RETURNING item_id""", row, True)

    def _item_row(self, thread_id: str, user_id: str, item: ThreadItem) -> dict[str, Any]:
        return {"id": item.id, "thread": thread_id, "user": user_id, "created": naive(item.created_at), "type": item.type,
                "role": item_role(item), "text": self.redact(item_text(item)), "data": self.redact(item_adapter.dump_json(item).decode())}

    async def load_item(self, thread_id: str, item_id: str, context: Any) -> ThreadItem:
        row = await self._fetch("SELECT data::text FROM items WHERE thread_id = %s AND item_id = %s AND user_id = %s",
                                [thread_id, item_id, user_of(context)], one=True)
        if row is None:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")
        return item_adapter.validate_json(row[0])

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Any) -> None:
        # Deleting an item that was never saved (a removed pending item) is not an error; another user's thread is.
        user = user_of(context)
        if not await self._fetch("SELECT 1 FROM threads WHERE thread_id = %s AND user_id = %s", [thread_id, user], one=True):
            raise NotFoundError(f"Thread {thread_id} not found")
        await self._fetch("DELETE FROM items WHERE thread_id = %s AND item_id = %s AND user_id = %s", [thread_id, item_id, user])

    async def delete_items_after(self, thread_id: str, item_id: str, context: Any) -> int:
        """Delete the user's items that come after ``item_id`` in its thread, in one statement; returns how many."""
        params = {"thread": thread_id, "item": item_id, "user": user_of(context)}
        count: int = await self._fetch(
            "DELETE FROM items WHERE thread_id = %(thread)s AND user_id = %(user)s AND (created_at, seq) > "
            "(SELECT created_at, seq FROM items WHERE thread_id = %(thread)s AND item_id = %(item)s AND user_id = %(user)s)", params)
        return count

    async def save_feedback(self, thread_id: str, item_ids: list[str], kind: str | None, context: Any, *, comment: str | None = None) -> None:
        """Thumbs up/down on items of the user's own thread, with an optional comment; ``kind=None`` takes it back."""
        await self.load_thread(thread_id, context)  # 404 for another user's thread
        user = user_of(context)
        steps: list[tuple[str, Any]]
        if kind is None:
            steps = [("DELETE FROM feedback WHERE thread_id = %s AND item_id = %s AND user_id = %s", [thread_id, i, user]) for i in item_ids]
        else:
            steps = [(f"""INSERT INTO feedback (thread_id, item_id, user_id, kind, created_at, comment)
                         SELECT thread_id, item_id, user_id, %s, {NOW}, %s FROM items WHERE thread_id = %s AND item_id = %s AND user_id = %s
                         ON CONFLICT (thread_id, item_id, user_id) DO UPDATE SET kind = excluded.kind, created_at = excluded.created_at,
                             comment = excluded.comment""", [kind, self.redact(comment) if comment else None, thread_id, i, user]) for i in item_ids]
        await self._script(steps)

    async def feedback_of(self, thread_id: str, context: Any) -> list[dict[str, Any]]:
        """The user's ratings in their thread: ``item_id``, ``kind``, ``comment``."""
        await self.load_thread(thread_id, context)
        rows = await self._fetch("SELECT item_id, kind, comment FROM feedback WHERE thread_id = %s AND user_id = %s ORDER BY created_at",
                                 [thread_id, user_of(context)])
        return [{"item_id": item_id, "kind": kind, "comment": comment} for item_id, kind, comment in rows]

    # -- copies, for fork and replay ---------------------------------------------------------
    async def copy_items(self, source_id: str, target_id: str, context: Any, *, up_to: str | None = None, before: bool = False) -> int:
        """Copy the items of the user's thread ``source_id`` (up to and including ``up_to``;
        ``before``: only those preceding it) into their thread ``target_id``, in order, each with
        its own copies of the attachments it carries. Returns the items copied."""
        user = user_of(context)
        params: dict[str, Any] = {"thread": source_id, "user": user, "at": up_to}
        upto = ""
        if up_to is not None:
            upto = (f" AND (created_at, seq) {'<' if before else '<='} (SELECT created_at, seq FROM items "
                    "WHERE thread_id = %(thread)s AND item_id = %(at)s AND user_id = %(user)s)")
        rows = await self._fetch(f"SELECT data::text FROM items WHERE thread_id = %(thread)s AND user_id = %(user)s{upto} ORDER BY created_at, seq", params)
        items = [item_adapter.validate_json(data) for (data,) in rows]
        renamed = await self.copy_attachments(carried_attachments(items), target_id, context, context)
        copies = item_copies(items, target_id, renamed)
        await self._script([(self._insert_items(len(part)), [v for item in part for v in self._item_row(target_id, user, item).values()])
                            for part in _chunks(copies)])
        return len(copies)

    @staticmethod
    def _insert_items(n: int) -> str:
        marks = ", ".join([f"(%s, %s, %s, %s::timestamp, {NOW}, %s, %s, %s, %s::json)"] * n)
        return f"INSERT INTO items (item_id, thread_id, user_id, created_at, updated_at, type, role, text, data) VALUES {marks}"

    async def add_threads(self, threads: Sequence[tuple[str, ThreadMetadata, Sequence[ThreadItem]]]) -> None:
        """New threads (owner, metadata, items in order) in one transaction, a few statements in all.

        A thread that is there already is left as it is, items and all: the store's own
        transaction commits before the caller's rows (lineage, eval items) are written, so a try
        whose rows then failed is repeated with the same threads."""
        if not threads:
            return
        rows = [[meta.id, user, self.redact(meta.title), meta.status.type, naive(meta.created_at), self.redact(stored_json(meta.metadata)),
                 self.redact(ThreadMetadata.model_validate(meta.model_dump(exclude={"items"})).model_dump_json())] for user, meta, _ in threads]
        marks = f"(%s, %s, %s, %s, %s, {NOW}, %s::json, %s::json)"

        async def write(con: Any) -> None:
            new: set[str] = set()
            for part in _chunks(rows):
                cur = await con.execute("INSERT INTO threads (thread_id, user_id, title, status, created_at, updated_at, metadata, data) VALUES "
                                        + ", ".join([marks] * len(part)) + " ON CONFLICT (thread_id) DO NOTHING RETURNING thread_id",
                                        [v for row in part for v in row])
                new.update(thread_id for (thread_id,) in await cur.fetchall())
            items = [self._item_row(meta.id, user, item) for user, meta, entries in threads if meta.id in new for item in entries]
            for chunk in _chunks(items):
                await con.execute(self._insert_items(len(chunk)), [v for row in chunk for v in row.values()])

        await self._on_loop(self._transaction(write))

    async def copy_attachments(self, attachment_ids: Sequence[str], thread_id: str, source: Any, target: Any) -> dict[str, str]:
        """Copies (bytes included) of ``source``'s attachments for ``target``'s thread
        ``thread_id``, with new ids; returns old id → new id (two threads must not share one)."""
        renamed: dict[str, str] = {}
        for old, copy in await attachment_copies(self, attachment_ids, thread_id, source, target):
            new = renamed[old] = copy.id
            await self._fetch(
                f"""INSERT INTO attachments (attachment_id, user_id, thread_id, name, mime_type, size, bytes, created_at, data)
                    SELECT %(new)s, %(owner)s, %(thread)s, name, mime_type, size, bytes, {NOW}, %(data)s::json
                    FROM attachments WHERE attachment_id = %(old)s AND user_id = %(source)s""",
                {"new": new, "owner": user_of(target), "thread": thread_id, "old": old, "source": user_of(source),
                 "data": self.redact(_attachment_adapter.dump_json(copy).decode())})
        return renamed

    # -- attachments ---------------------------------------------------------------------
    async def create_attachment(self, input: AttachmentCreateParams, context: Any) -> Attachment:
        attachment = new_attachment(self.generate_attachment_id(input.mime_type, context), input, self.upload_url)
        await self._write_attachment(attachment, context, size=input.size)
        return attachment

    async def save_attachment(self, attachment: Attachment, context: Any) -> None:
        await self._write_attachment(attachment, context)

    async def _write_attachment(self, attachment: Attachment, context: Any, size: int | None = None) -> None:
        row = await self._fetch(
            f"""INSERT INTO attachments (attachment_id, user_id, thread_id, name, mime_type, size, created_at, data)
                VALUES (%(id)s, %(user)s, %(thread)s, %(name)s, %(mime)s, %(size)s, {NOW}, %(data)s::json)
                ON CONFLICT (attachment_id) DO UPDATE SET thread_id = excluded.thread_id, name = excluded.name, mime_type = excluded.mime_type,
                    size = coalesce(excluded.size, attachments.size), data = excluded.data
                WHERE attachments.user_id = excluded.user_id RETURNING attachment_id""",
            {"id": attachment.id, "user": user_of(context), "thread": attachment.thread_id, "name": self.redact(attachment.name),
             "mime": attachment.mime_type, "size": size, "data": self.redact(_attachment_adapter.dump_json(attachment).decode())},
            one=True,
        )
        if row is None:
            raise NotFoundError(f"Attachment {attachment.id} not found")

    async def load_attachment(self, attachment_id: str, context: Any) -> Attachment:
        row = await self._fetch("SELECT data::text FROM attachments WHERE attachment_id = %s AND user_id = %s", [attachment_id, user_of(context)], one=True)
        if row is None:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        return _attachment_adapter.validate_json(row[0])

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        # ChatKit calls this on both the AttachmentStore and the Store: the second is a no-op.
        await self._fetch("DELETE FROM attachments WHERE attachment_id = %s AND user_id = %s", [attachment_id, user_of(context)])

    async def write_attachment_bytes(self, attachment_id: str, data: bytes, context: Any) -> Attachment:
        """Store an uploaded file's bytes (the second phase of a two-phase upload)."""
        row = await self._fetch("UPDATE attachments SET bytes = %s, size = %s WHERE attachment_id = %s AND user_id = %s RETURNING data::text",
                                [data, len(data), attachment_id, user_of(context)], one=True)
        if row is None:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        attachment = _attachment_adapter.validate_json(row[0])
        attachment.upload_descriptor = None
        await self.save_attachment(attachment, context)
        return attachment

    async def load_attachment_bytes(self, attachment_id: str, context: Any) -> bytes:
        row = await self._fetch("SELECT bytes FROM attachments WHERE attachment_id = %s AND user_id = %s", [attachment_id, user_of(context)], one=True)
        if row is None or row[0] is None:
            raise NotFoundError(f"Attachment {attachment_id} has no uploaded bytes")
        return bytes(row[0])
