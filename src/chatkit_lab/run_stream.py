"""An Agents SDK streamed run as ChatKit's ``stream_agent_response`` reads it: a proxy of the run
result that changes only what ``stream_events()`` yields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

TEXT_DELTA = "response.output_text.delta"


class Held:
    """The deltas a merged stream holds back: the run of one message part it is merging, which
    ChatKit has not seen. A stopped turn adds them to the partial reply ChatKit keeps."""

    __slots__ = ("content_index", "texts")

    def __init__(self) -> None:
        self.content_index = 0
        self.texts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.texts)


class RunStream:
    """``result`` (a ``RunResultStreaming``) with citation annotations as dicts and, given
    ``held``, each message part's text deltas after its first merged into one.

    openai 3.x emits annotation objects of classes ChatKit's annotation union does not accept,
    so a reply with a citation (web or file search) would fail the whole turn. Merging is for
    turns nobody watches (evals, replays): ChatKit makes every delta a task, a thread update and
    an SSE frame, a fifth to a quarter of such a turn's CPU with the offline model's 8-character
    chunks. The first delta passes at once, so the turn's ``first_token_ms`` stays true; the rest
    wait in ``held`` for the part's next other event.
    """

    def __init__(self, result: Any, *, held: Held | None = None) -> None:
        self._result, self._held = result, held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)

    async def stream_events(self) -> AsyncIterator[Any]:
        events = self._plain(self._result.stream_events())
        async for event in merged_deltas(events, self._held) if self._held is not None else events:
            yield event

    @staticmethod
    async def _plain(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for event in events:
            data: Any = getattr(event, "data", None)
            if getattr(data, "type", None) == "response.output_text.annotation.added" and isinstance(data.annotation, BaseModel):
                data.annotation = data.annotation.model_dump()
            yield event


async def merged_deltas(events: AsyncIterator[Any], held: Held | None = None) -> AsyncIterator[Any]:
    """``events`` with each run of text deltas of one message part, after the part's first delta,
    as one event (its text and logprobs joined; the rest of it is the run's first event's).
    ``held``: where the run being merged waits."""
    held = held if held is not None else Held()
    started: set[tuple[Any, ...]] = set()
    first: Any = None  # the first event of the run being merged
    logprobs: list[Any] = []
    async for event in events:
        data: Any = getattr(event, "data", None)
        if getattr(data, "type", None) == TEXT_DELTA:
            part = (data.item_id, data.output_index, data.content_index)
            if first is not None and part == (first.data.item_id, first.data.output_index, first.data.content_index):
                held.texts.append(data.delta)
                logprobs += data.logprobs or []
                continue
            if first is not None:
                yield _joined(first, held, logprobs)
                first = None
            if part not in started:
                started.add(part)
                yield event
                continue
            first, logprobs = event, list(data.logprobs or [])
            held.content_index, held.texts = data.content_index, [data.delta]
            continue
        if first is not None:
            yield _joined(first, held, logprobs)
            first = None
        yield event
    if first is not None:
        yield _joined(first, held, logprobs)


def _joined(event: Any, held: Held, logprobs: list[Any]) -> Any:
    if len(held.texts) > 1:
        event.data = event.data.model_copy(update={"delta": held.text, "logprobs": logprobs})
    held.texts = []
    return event
