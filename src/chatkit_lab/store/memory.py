"""MemoryStore: the same contract as DuckDBStore in plain dicts (for tests and comparisons)."""

from __future__ import annotations

import itertools
from typing import Any, TypeVar

from chatkit.store import NotFoundError, Store
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata
from pydantic import BaseModel

from ..errors import ConflictError
from .duckdb import user_of
from .items import new_id

M = TypeVar("M", bound=BaseModel)


class MemoryStore(Store[Any]):
    def __init__(self) -> None:
        self._seq = itertools.count()
        self._threads: dict[str, tuple[str, int, ThreadMetadata]] = {}  # id -> (user, seq, thread)
        # thread -> item id -> (created_at, seq, item); the first write fixes the position
        self._items: dict[str, dict[str, tuple[Any, int, ThreadItem]]] = {}
        self._attachments: dict[str, tuple[str, Attachment]] = {}
        self.feedback: dict[tuple[str, str, str], tuple[str, str | None]] = {}  # (thread, item, user) -> (kind, comment)

    def generate_thread_id(self, context: Any) -> str:
        return new_id("thread")

    def generate_item_id(self, item_type: Any, thread: Any, context: Any) -> str:
        return new_id(item_type)

    def generate_attachment_id(self, mime_type: str, context: Any) -> str:
        return new_id("attachment")

    def _thread(self, thread_id: str, context: Any) -> tuple[str, int, ThreadMetadata]:
        entry = self._threads.get(thread_id)
        if entry is None or entry[0] != user_of(context):
            raise NotFoundError(f"Thread {thread_id} not found")
        return entry

    async def load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        return _copy(self._thread(thread_id, context)[2])

    async def save_thread(self, thread: ThreadMetadata, context: Any) -> None:
        meta = ThreadMetadata.model_validate(thread.model_dump(exclude={"items"}))
        if meta.id in self._threads:
            _, seq, _ = self._thread(meta.id, context)
        else:
            seq = next(self._seq)
            self._items[meta.id] = {}
        self._threads[meta.id] = (user_of(context), seq, meta)

    async def load_threads(self, limit: int, after: str | None, order: str, context: Any) -> Page[ThreadMetadata]:
        rows = [(t.created_at, seq, t) for user, seq, t in self._threads.values() if user == user_of(context)]
        return _paginate(rows, after, limit, order, f"Thread {after} not found")

    async def delete_thread(self, thread_id: str, context: Any) -> None:
        self._thread(thread_id, context)
        del self._threads[thread_id]
        self._items.pop(thread_id, None)
        for key in [k for k, (_, a) in self._attachments.items() if a.thread_id == thread_id]:
            del self._attachments[key]

    def thread_ids(self) -> list[str]:
        return list(self._threads)

    def thread(self, thread_id: str) -> tuple[str, ThreadMetadata, list[ThreadItem]]:
        """A thread's owner, metadata and items in order (to be written elsewhere)."""
        user, _, meta = self._threads[thread_id]
        return user, meta, [item for _, _, item in sorted(self._items[thread_id].values(), key=lambda entry: entry[:2])]

    def take_thread(self, thread_id: str) -> tuple[str, ThreadMetadata, list[ThreadItem]]:
        """Remove a thread and return its owner, metadata and items in order."""
        found = self.thread(thread_id)
        del self._threads[thread_id], self._items[thread_id]
        return found

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Page[ThreadItem]:
        entry = self._threads.get(thread_id)
        visible = entry is not None and entry[0] == user_of(context)
        rows = list(self._items[thread_id].values()) if visible else []
        return _paginate(rows, after, limit, order, f"Item {after} not found in thread {thread_id}")

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        self._thread(thread_id, context)
        if item.id in self._items[thread_id]:
            raise ConflictError(f"A new item came with the id {item.id}, which thread {thread_id} already has; nothing was overwritten.")
        await self.save_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        self._thread(thread_id, context)
        items = self._items[thread_id]
        created, seq, _ = items.get(item.id) or (item.created_at, next(self._seq), None)
        items[item.id] = (created, seq, _copy(item))

    async def load_item(self, thread_id: str, item_id: str, context: Any) -> ThreadItem:
        self._thread(thread_id, context)
        entry = self._items[thread_id].get(item_id)
        if entry is None:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")
        return _copy(entry[2])

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Any) -> None:
        self._thread(thread_id, context)
        self._items[thread_id].pop(item_id, None)

    async def delete_items_after(self, thread_id: str, item_id: str, context: Any) -> int:
        self._thread(thread_id, context)
        items = self._items[thread_id]
        if item_id not in items:
            return 0
        mark = items[item_id][:2]
        newer = [i for i, (created, seq, _) in items.items() if (created, seq) > mark]
        for i in newer:
            del items[i]
        return len(newer)

    async def save_feedback(self, thread_id: str, item_ids: list[str], kind: str | None, context: Any, *, comment: str | None = None) -> None:
        self._thread(thread_id, context)
        for item_id in item_ids:
            key = (thread_id, item_id, user_of(context))
            if kind is None:
                self.feedback.pop(key, None)
            elif item_id in self._items[thread_id]:
                self.feedback[key] = (kind, comment)

    async def feedback_of(self, thread_id: str, context: Any) -> list[dict[str, Any]]:
        self._thread(thread_id, context)
        user = user_of(context)
        return [{"item_id": i, "kind": k, "comment": c} for (t, i, u), (k, c) in self.feedback.items() if t == thread_id and u == user]

    async def save_attachment(self, attachment: Attachment, context: Any) -> None:
        owner = self._attachments.get(attachment.id, (user_of(context),))[0]
        if owner != user_of(context):
            raise NotFoundError(f"Attachment {attachment.id} not found")
        self._attachments[attachment.id] = (owner, _copy(attachment))

    async def load_attachment(self, attachment_id: str, context: Any) -> Attachment:
        entry = self._attachments.get(attachment_id)
        if entry is None or entry[0] != user_of(context):
            raise NotFoundError(f"Attachment {attachment_id} not found")
        return _copy(entry[1])

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        entry = self._attachments.get(attachment_id)
        if entry is not None and entry[0] == user_of(context):
            del self._attachments[attachment_id]


def _copy(model: M) -> M:
    """A copy that shares nothing with what is stored, through JSON as a database would keep it
    (a quarter of the time of ``model_copy(deep=True)``)."""
    return type(model).model_validate_json(model.model_dump_json())


def _paginate(rows: list[Any], after: str | None, limit: int, order: str, missing: str) -> Page[Any]:
    rows.sort(key=lambda r: (r[0], r[1]), reverse=order == "desc")
    start = 0
    if after:
        ids = [r[2].id for r in rows]
        if after not in ids:
            raise NotFoundError(missing)
        start = ids.index(after) + 1
    chunk = [_copy(r[2]) for r in rows[start : start + limit]]
    has_more = start + limit < len(rows)
    return Page(data=chunk, has_more=has_more, after=chunk[-1].id if chunk and has_more else None)
