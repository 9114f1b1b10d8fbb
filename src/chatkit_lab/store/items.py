"""How a ChatKit item is kept: one pydantic round trip, plus the plain text and role for SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from chatkit.types import ThreadItem
from pydantic import TypeAdapter

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
