"""The per-request context every store call and agent run sees."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestContext:
    """Who is asking, plus the request's metadata.

    The store scopes every read and write to ``user_id``; tools reach this object as
    ``ctx.context.request_context``.
    """

    user_id: str = "local"
    metadata: dict[str, Any] = field(default_factory=dict)


def build_context(body: bytes | str, *, user_id: str) -> RequestContext:
    """The context for one request, from the identity and the body's top-level ``metadata``.

    Shared by every transport, so the widget, HTTP and ``lab.send`` see the same thing.
    """
    try:
        parsed = json.loads(body)
        metadata = parsed.get("metadata") if isinstance(parsed, dict) else None
    except ValueError:
        metadata = None  # the request itself is rejected later, with a clear message
    return RequestContext(user_id=user_id, metadata=metadata if isinstance(metadata, dict) else {})
