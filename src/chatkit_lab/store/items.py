"""How a ChatKit item is kept: one pydantic round trip, plus the plain text and role for SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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
