"""Turn: what one ``lab.send`` (or one replayed message) produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Turn:
    """The thread, the reply text and every stream event of one turn."""

    thread_id: str
    text: str
    events: list[dict[str, Any]] = field(repr=False)
    error: str | None = None

    @property
    def item_ids(self) -> list[str]:
        return [e["item"]["id"] for e in self.events if e["type"] == "thread.item.done"]

    @classmethod
    def of(cls, thread_id: str | None, events: list[dict[str, Any]]) -> Turn:
        """The turn a list of stream events describes."""
        for event in events:
            if event["type"] == "thread.created":
                thread_id = event["thread"]["id"]
        replies = [
            "".join(part["text"] for part in e["item"]["content"])
            for e in events
            if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
        ]
        error = next((e.get("message", e["code"]) for e in events if e["type"] == "error"), None)
        return cls(thread_id=thread_id or "", text="\n\n".join(replies), events=events, error=error)
