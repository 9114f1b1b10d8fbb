"""Requests of chatkit-lab's own, beside ChatKit's: ``{"type": "lab.…", "params": {…}}`` on
the same endpoint, for what the protocol has no request for. The built-in renderer sends them;
the official component never does.

* ``lab.feedback.list`` ``{thread_id}`` -> ``{"data": [{"item_id", "kind", "comment"}]}``: the
  user's ratings in a thread, so a reloaded thread shows them again.
* ``lab.feedback.set`` ``{thread_id, item_id, kind: "positive" | "negative" | null, comment?}``
  -> ``{}``: rate, re-rate with a comment, or (``kind: null``) take a rating back.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MAX_COMMENT_CHARS = 2000


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedbackListParams(_Params):
    thread_id: str = Field(max_length=200)


class FeedbackSetParams(_Params):
    thread_id: str = Field(max_length=200)
    item_id: str = Field(max_length=200)
    kind: Literal["positive", "negative"] | None
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)


class FeedbackListReq(BaseModel):
    type: Literal["lab.feedback.list"]
    params: FeedbackListParams


class FeedbackSetReq(BaseModel):
    type: Literal["lab.feedback.set"]
    params: FeedbackSetParams


LabReq = Annotated[FeedbackListReq | FeedbackSetReq, Field(discriminator="type")]
lab_request_adapter: TypeAdapter[LabReq] = TypeAdapter(LabReq)


def is_lab_request(body: bytes | str) -> bool:
    """Whether a body names one of these requests (a cheap look before ChatKit's parse)."""
    head = body[:200] if isinstance(body, str) else body[:200].decode(errors="replace")
    return '"lab.' in head and _type_of(body).startswith("lab.")


def _type_of(body: bytes | str) -> str:
    try:
        value = json.loads(body).get("type")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return value if isinstance(value, str) else ""


async def process_lab_request(store: Any, request: LabReq, context: Any) -> bytes:
    """Run one request against the lab's store (per-user: another user's thread is a 404)."""
    match request:
        case FeedbackListReq(params=p):
            return json.dumps({"data": await store.feedback_of(p.thread_id, context)}).encode()
        case FeedbackSetReq(params=p):
            await store.save_feedback(p.thread_id, [p.item_id], p.kind, context, comment=p.comment)
            return b"{}"
