"""The stores as a plain ChatKit ``Store``: chatkit's own ``ChatKitServer`` (not LabServer) over
each store, for every request type, with the reference stores' behaviour."""

import base64
from datetime import datetime
from typing import get_args

import pytest
from chatkit.server import ChatKitServer
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ChatKitReq,
    ClientToolCallItem,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    SyncCustomActionResponse,
    ThreadItemDoneEvent,
    WidgetItem,
)
from chatkit.widgets import Button, Card

from .conftest import ALICE, BOB, STORES, make_store, run, serve_once, user_message


class ScriptedServer(ChatKitServer):
    """Answers without an agent: "ask" asks a structured question, "tool" calls a client tool,
    "widget" shows a button; anything else gets an echo."""

    async def respond(self, thread, input_user_message, context):
        said = "".join(p.text for p in input_user_message.content) if input_user_message else "(continued)"
        new_id = lambda: self.store.generate_item_id("message", thread, context)  # noqa: E731
        if said == "ask":
            yield ThreadItemDoneEvent(item=StructuredInputItem(
                id=new_id(), thread_id=thread.id, created_at=datetime.now(),
                inputs=[StructuredInputMultipleChoice(id="q1", question="Which?", options=[StructuredInputMultipleChoiceOption(value="a"), StructuredInputMultipleChoiceOption(value="b")])],
            ))
        elif said == "tool":
            yield ThreadItemDoneEvent(item=ClientToolCallItem(id=new_id(), thread_id=thread.id, created_at=datetime.now(), call_id="c1", name="pick", arguments={}))
        elif said == "widget":
            yield ThreadItemDoneEvent(item=WidgetItem(id=new_id(), thread_id=thread.id, created_at=datetime.now(), widget=Card(children=[Button(label="Go")])))
        else:
            yield ThreadItemDoneEvent(item=AssistantMessageItem(
                id=new_id(), thread_id=thread.id, created_at=datetime.now(), content=[AssistantMessageContent(text=f"echo: {said}", annotations=[])]
            ))

    async def action(self, thread, action, sender, context):
        yield ThreadItemDoneEvent(item=AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context), thread_id=thread.id, created_at=datetime.now(),
            content=[AssistantMessageContent(text=f"clicked {action.type}", annotations=[])],
        ))

    async def sync_action(self, thread, action, sender, context):
        return SyncCustomActionResponse(updated_item=sender)


@pytest.fixture(params=STORES)
def server(request, db_path):
    store = make_store(request.param, db_path, request)
    attachments = store if request.param != "memory" else None
    yield ScriptedServer(store, attachment_store=attachments)
    if request.param != "memory":
        store.close()


def said(text):
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}


def done_items(events):
    return [e["item"] for e in events if e["type"] == "thread.item.done"]


def test_every_request_type_through_chatkits_own_server(server):
    types = set()

    def ask(body, context=ALICE):
        types.add(body["type"])
        return serve_once(server, body, context)

    _, events = ask({"type": "threads.create", "params": {"input": said("hello")}})
    thread_id = next(e["thread"]["id"] for e in events if e["type"] == "thread.created")
    assert done_items(events)[-1]["content"][0]["text"] == "echo: hello"

    _, events = ask({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": said("tool")}})
    assert done_items(events)[-1]["type"] == "client_tool_call"
    _, events = ask({"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": {"picked": 1}}})
    assert done_items(events)[-1]["content"][0]["text"] == "echo: (continued)"

    _, events = ask({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": said("ask")}})
    question = done_items(events)[-1]
    assert question["type"] == "structured_input" and question["status"] == "pending"
    _, events = ask({"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": question["id"], "input": {"answers": {"q1": {"values": ["b"]}}}}})
    assert any(e["type"] == "thread.item.replaced" for e in events)

    _, events = ask({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": said("widget")}})
    widget = done_items(events)[-1]
    _, events = ask({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": widget["id"], "action": {"type": "go", "payload": {}}}})
    assert done_items(events)[-1]["content"][0]["text"] == "clicked go"
    status, synced = ask({"type": "threads.sync_custom_action", "params": {"thread_id": thread_id, "item_id": widget["id"], "action": {"type": "go", "payload": {}}}})
    assert status == 200 and synced["updated_item"]["id"] == widget["id"]

    status, thread = ask({"type": "threads.get_by_id", "params": {"thread_id": thread_id}})
    assert status == 200 and thread["id"] == thread_id
    first_user = next(i for i in thread["items"]["data"] if i["type"] == "user_message")
    _, events = ask({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": first_user["id"]}})
    assert done_items(events)[-1]["content"][0]["text"] == "echo: hello"

    status, page = ask({"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}})
    assert status == 200 and [i["type"] for i in page["data"]] == ["user_message", "assistant_message"]
    reply = page["data"][1]["id"]
    assert ask({"type": "items.feedback", "params": {"thread_id": thread_id, "item_ids": [reply], "kind": "positive"}})[0] == 200
    assert ask({"type": "threads.update", "params": {"thread_id": thread_id, "title": "Renamed"}})[0] == 200
    status, threads = ask({"type": "threads.list", "params": {}})
    assert [t["title"] for t in threads["data"]] == ["Renamed"]
    audio = base64.b64encode(b"...").decode()
    assert ask({"type": "input.transcribe", "params": {"audio_base64": audio, "mime_type": "audio/webm"}})[0] == 501

    status, created = ask({"type": "attachments.create", "params": {"name": "a.txt", "size": 3, "mime_type": "text/plain"}})
    if server.attachment_store is None:
        assert status == 501 and "not supported" in created["error"]["message"]
    else:
        assert status == 200 and created["name"] == "a.txt"
    attachment_id = created.get("id", "atc_none")
    expected = 200 if server.attachment_store is not None else 501
    assert ask({"type": "attachments.delete", "params": {"attachment_id": attachment_id}})[0] == expected
    assert ask({"type": "threads.delete", "params": {"thread_id": thread_id}})[0] == 200
    assert ask({"type": "threads.get_by_id", "params": {"thread_id": thread_id}})[0] == 404

    every_type = {t.model_fields["type"].default for t in get_args(get_args(ChatKitReq)[0])}
    assert types == every_type, every_type - types


def test_an_answered_structured_input_is_stored_answered(server):
    _, events = serve_once(server, {"type": "threads.create", "params": {"input": said("ask")}})
    thread_id = next(e["thread"]["id"] for e in events if e["type"] == "thread.created")
    question = done_items(events)[-1]
    serve_once(server, {"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": question["id"], "input": {"answers": {"q1": {"values": ["b"]}}}}})
    stored = run(server.store.load_item(thread_id, question["id"], ALICE))
    assert stored.status == "answered" and stored.inputs[0].answer.values == ["b"]
    # answered once: a second answer is refused as a bad request, not a server failure
    status, body = serve_once(server, {"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": question["id"], "input": {"answers": {}}}})
    assert (status == 200 and body[-1]["type"] == "error") or status == 400


def test_the_last_page_has_no_cursor(server):
    store = server.store
    run(store.save_thread(__import__("chatkit.types", fromlist=["ThreadMetadata"]).ThreadMetadata(id="thr_p", created_at=datetime(2026, 1, 1)), ALICE))
    for n in range(3):
        run(store.add_thread_item("thr_p", user_message(f"u{n}", "thr_p", at=datetime(2026, 1, 1, 0, n)), ALICE))
    first = run(store.load_thread_items("thr_p", None, 2, "asc", ALICE))
    assert first.has_more and first.after == "u1"
    last = run(store.load_thread_items("thr_p", first.after, 2, "asc", ALICE))
    assert not last.has_more and last.after is None and [i.id for i in last.data] == ["u2"]
    everything = run(store.load_thread_items("thr_p", None, 10, "desc", ALICE))
    assert not everything.has_more and everything.after is None
    threads = run(store.load_threads(10, None, "desc", ALICE))
    assert not threads.has_more and threads.after is None


def test_another_users_thread_is_an_empty_page_not_an_error(server):
    store = server.store
    from chatkit.store import NotFoundError
    from chatkit.types import ThreadMetadata

    run(store.save_thread(ThreadMetadata(id="thr_a", created_at=datetime(2026, 1, 1)), ALICE))
    run(store.add_thread_item("thr_a", user_message("u1", "thr_a"), ALICE))
    for thread_id in ("thr_a", "thr_missing"):  # bob cannot tell a foreign thread from a missing one
        page = run(store.load_thread_items(thread_id, None, 10, "asc", BOB))
        assert page.data == [] and not page.has_more and page.after is None
    with pytest.raises(NotFoundError):
        run(store.load_thread("thr_a", BOB))
    with pytest.raises(NotFoundError):
        run(store.load_item("thr_a", "u1", BOB))
