"""An Agents SDK streamed run as ChatKit's ``stream_agent_response`` reads it: a proxy of the run
result that changes only what ``stream_events()`` yields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

TEXT_DELTA = "response.output_text.delta"


class RunStream:
    """``result`` (a ``RunResultStreaming``) with citation annotations as dicts and, with
    ``merge_deltas``, each message part's text deltas after its first merged into one.

    openai 3.x emits annotation objects of classes ChatKit's annotation union does not accept,
    so a reply with a citation (web or file search) would fail the whole turn. Merging is for
    turns nobody watches (evals, replays): ChatKit makes every delta a task, a thread update and
    an SSE frame, a fifth to a quarter of such a turn's CPU with the offline model's 8-character
    chunks. The first delta passes at once, so the
    turn's ``first_token_ms`` stays true; the rest wait for the part's next other event.
    """

    def __init__(self, result: Any, *, merge_deltas: bool = False) -> None:
        self._result, self._merge = result, merge_deltas

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)

    async def stream_events(self) -> AsyncIterator[Any]:
        events = self._plain(self._result.stream_events())
        async for event in merged_deltas(events) if self._merge else events:
            yield event

    @staticmethod
    async def _plain(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for event in events:
            data: Any = getattr(event, "data", None)
            if getattr(data, "type", None) == "response.output_text.annotation.added" and isinstance(data.annotation, BaseModel):
                data.annotation = data.annotation.model_dump()
            yield event


async def merged_deltas(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``events`` with each run of text deltas of one message part, after the part's first delta,
    as one event (its text and logprobs joined; the rest of it is the run's first event's)."""
    started: set[tuple[Any, ...]] = set()
    held: Any = None  # the first event of the run being merged
    texts: list[str] = []
    logprobs: list[Any] = []
    async for event in events:
        data: Any = getattr(event, "data", None)
        if getattr(data, "type", None) == TEXT_DELTA:
            part = (data.item_id, data.output_index, data.content_index)
            if held is not None and part == (held.data.item_id, held.data.output_index, held.data.content_index):
                texts.append(data.delta)
                logprobs += data.logprobs or []
                continue
            if held is not None:
                yield _joined(held, texts, logprobs)
                held = None
            if part not in started:
                started.add(part)
                yield event
                continue
            held, texts, logprobs = event, [data.delta], list(data.logprobs or [])
            continue
        if held is not None:
            yield _joined(held, texts, logprobs)
            held = None
        yield event
    if held is not None:
        yield _joined(held, texts, logprobs)


def _joined(event: Any, texts: list[str], logprobs: list[Any]) -> Any:
    if len(texts) > 1:
        event.data = event.data.model_copy(update={"delta": "".join(texts), "logprobs": logprobs})
    return event
