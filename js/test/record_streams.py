"""Record real ChatKit event streams from a lab, for the reducer's unit tests (node --test).

    .venv/bin/python js/test/record_streams.py

Each file in streams/ is {"requests": [...], "events": [[...], ...]}: what one or more requests
to a real LabServer streamed back, in order. Re-record when the server's events change.
"""

import json
import pathlib
import tempfile
from datetime import datetime

from agents import Agent, function_tool
from chatkit.types import (
    ClientEffectEvent,
    NoticeEvent,
    ProgressUpdateEvent,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    WidgetComponentUpdated,
    WidgetItem,
    WidgetStreamingTextValueDelta,
)
from chatkit.widgets import Button, Card, Text, Title

from chatkit_lab import ChatLab, MirrorModel

OUT = pathlib.Path(__file__).parent / "streams"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is 21C and sunny in {city}."


def message(text: str) -> dict:
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        lab = ChatLab(f"{tmp}/record.duckdb", agent=Agent(name="Assistant", tools=[get_weather], model=MirrorModel()))

        @lab.on_action("show.parts")
        async def parts(thread, action, sender, context):
            now = datetime.now()
            yield ProgressUpdateEvent(text="Looking things up…")
            yield ClientEffectEvent(name="highlight", data={"cell": 3})
            yield NoticeEvent(level="info", title="Note", message="Prices are **estimates**.")
            card = Card(id="card", children=[Title(id="title", value="Order 42"), Text(id="status", value="Pack", streaming=True), Button(id="go", label="Ship")])
            widget = WidgetItem(id="w_parts", thread_id=thread.id, created_at=now, widget=card)
            yield ThreadItemAddedEvent(item=widget)
            yield ThreadItemUpdatedEvent(item_id=widget.id, update=WidgetStreamingTextValueDelta(component_id="status", delta="ed", done=True))
            yield ThreadItemUpdatedEvent(item_id=widget.id, update=WidgetComponentUpdated(component_id="title", component=Title(id="title", value="Order 42 (shipped)")))
            yield ThreadItemDoneEvent(item=widget.model_copy(update={"widget": card.model_copy(update={"children": [Title(id="title", value="Order 42 (shipped)"), Text(id="status", value="Packed"), Button(id="go", label="Ship")]})}))
            yield ThreadItemDoneEvent(item=StructuredInputItem(id="si_parts", thread_id=thread.id, created_at=now, inputs=[
                StructuredInputMultipleChoice(id="size", question="Which size?", options=[StructuredInputMultipleChoiceOption(value=v) for v in ("S", "M", "L")]),
                StructuredInputFreeform(id="note", question="Anything else?", description="Optional"),
            ]))

        def record(name: str, *bodies: dict) -> list[list[dict]]:
            events = [lab.request_sync(body) for body in bodies]
            (OUT / f"{name}.json").write_text(json.dumps({"requests": list(bodies), "events": events}, indent=1) + "\n")
            return events

        first = record("reply", {"type": "threads.create", "params": {"input": message("hello there")}})
        thread_id = first[0][0]["thread"]["id"]
        record("tool", {"type": "threads.create", "params": {"input": message("call get_weather Oslo")}})
        parts_thread = lab.send_sync("show me the parts", new_thread=True).thread_id
        answer = {"status": "answered", "answers": {"size": {"values": ["M"]}, "note": {"values": ["gift wrap"]}}}
        record("parts", {"type": "threads.custom_action", "params": {"thread_id": parts_thread, "action": {"type": "show.parts"}}},
               {"type": "threads.add_structured_input", "params": {"thread_id": parts_thread, "item_id": "si_parts", "input": answer}})
        retry_of = next(e["item"]["id"] for e in first[0] if e["type"] == "thread.item.done" and e["item"]["type"] == "user_message")
        record("retry", {"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": retry_of}})
        lab.close()


if __name__ == "__main__":
    main()
