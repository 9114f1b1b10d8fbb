"""How a ChatKit item is kept: one pydantic round trip, plus the plain text and role for SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from chatkit.store import NotFoundError
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
    Page,
    ThreadItem,
)
from pydantic import AnyUrl, TypeAdapter

item_adapter: TypeAdapter[Any] = TypeAdapter(ThreadItem)

_ID_PREFIXES = {
    "thread": "thr", "message": "msg", "tool_call": "tc", "workflow": "wf", "task": "tsk",
    "attachment": "atc", "sdk_hidden_context": "shcx",
}


def new_id(kind: str) -> str:
    """An id with 128 random bits (ChatKit's default has 32: one collision in about 100,000)."""
    return f"{_ID_PREFIXES.get(kind, kind)}_{uuid.uuid4().hex}"


_ROLES = {"user_message": "user", "assistant_message": "assistant", "client_tool_call": "tool"}


def item_role(item: Any) -> str | None:
    return _ROLES.get(item.type)


def item_text(item: Any) -> str | None:
    """The item's plain text: what a person would read, for `WHERE text ILIKE ...`."""
    match item.type:
        case "user_message":
            parts = [p.text if p.type == "input_text" else f"@{p.text}" for p in item.content]
            return "".join(parts)
        case "assistant_message":
            return "".join(part.text for part in item.content)
        case "hidden_context_item" | "sdk_hidden_context":
            return item.content if isinstance(item.content, str) else None
        case "widget":
            return item.copy_text
        case "client_tool_call":
            return f"{item.name}({item.arguments})"
        case "workflow":
            return "\n".join(_task_text(t) for t in item.workflow.tasks) or None
        case "task":
            return _task_text(item.task)
    return None


def _task_text(task: Any) -> str:
    return " ".join(str(x) for x in (getattr(task, "title", None), getattr(task, "content", None)) if x)


def naive(ts: datetime) -> datetime:
    """A time as the tables keep it: naive UTC (files from laptops in different time zones then
    merge in order). ChatKit's own times are naive local ones; aware ones are converted too."""
    return ts.astimezone(UTC).replace(tzinfo=None)


def utc_now() -> datetime:
    """Now, as the tables keep times (naive UTC). In SQL: ``make_timestamp(epoch_us(now()))``
    (``now()::TIMESTAMP`` would be local time, and DuckDB's ICU extension, which could set the
    session's zone, cannot be installed offline)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_attachment(attachment_id: str, input: AttachmentCreateParams, upload_url: str) -> Attachment:
    """A just-created attachment with its two-phase upload target (an image also previews from it)."""
    upload = AttachmentUploadDescriptor(url=AnyUrl(upload_url.format(id=attachment_id)), method="PUT", headers={})
    if input.mime_type.startswith("image/"):
        return ImageAttachment(id=attachment_id, name=input.name, mime_type=input.mime_type, upload_descriptor=upload, preview_url=upload.url)
    return FileAttachment(id=attachment_id, name=input.name, mime_type=input.mime_type, upload_descriptor=upload)


def page_of(rows: list[tuple[str, str]], has_more: bool, parse: Any) -> Page[Any]:
    """A ChatKit page of (id, JSON) rows: ``after`` is the last id, only when there is more."""
    return Page(data=[parse(data) for _, data in rows], has_more=has_more, after=rows[-1][0] if rows and has_more else None)


# -- copies, for fork and replay ---------------------------------------------------------------
def carried_attachments(items: Sequence[ThreadItem]) -> list[str]:
    """The ids of the attachments ``items`` carry, in order."""
    return [a.id for item in items for a in getattr(item, "attachments", None) or []]


def item_copies(items: Sequence[ThreadItem], thread_id: str, renamed: dict[str, str]) -> list[ThreadItem]:
    """``items`` as items of ``thread_id``, each naming its thread's copies of its attachments."""
    copies = []
    for item in items:
        update: dict[str, Any] = {"thread_id": thread_id}
        carried: list[Attachment] = getattr(item, "attachments", None) or []
        if carried:
            update["attachments"] = [a.model_copy(update={"id": renamed.get(a.id, a.id), "thread_id": thread_id}) for a in carried]
        copies.append(item.model_copy(update=update))
    return copies


async def attachment_copies(store: Any, attachment_ids: Sequence[str], thread_id: str, source: Any, target: Any) -> list[tuple[str, Attachment]]:
    """(old id, its copy) for each of ``source``'s attachments that ``store`` has: copies with new
    ids, in ``target``'s thread ``thread_id`` (ChatKit moves an attachment to the thread of the
    message carrying it, so two threads must not share one). What the store writes is its own."""
    copies = []
    for old in dict.fromkeys(attachment_ids):
        try:
            attachment = await store.load_attachment(old, source)
        except NotFoundError:
            continue  # never uploaded, or deleted: the copy keeps the reference as it was
        copies.append((old, attachment_copy(attachment, store.generate_attachment_id(attachment.mime_type, target), thread_id)))
    return copies


def attachment_copy(attachment: Attachment, new_id: str, thread_id: str) -> Attachment:
    """``attachment`` under ``new_id`` in ``thread_id``; an image's preview URL follows the id."""
    copy = attachment.model_copy(update={"id": new_id, "thread_id": thread_id})
    if isinstance(copy, ImageAttachment) and attachment.id in str(copy.preview_url):
        copy.preview_url = AnyUrl(str(copy.preview_url).replace(attachment.id, new_id))
    return copy
