"""LabServer behaviour through ChatLab: the same request path every client uses."""

import asyncio
import json
import logging
import threading

import pytest
from agents import Agent, function_tool, handoff
from agents.testing import ModelStep, ScriptedModel, assistant_message
from chatkit.types import LockedStatus

from chatkit_lab import ChatLabError, MirrorModel, RequestContext
from chatkit_lab.context import build_context
from chatkit_lab.transport.requests import handle_request, parse_sse

from .conftest import free_port, run

LOCAL = RequestContext("local")


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is 21C and sunny in {city}."


def stored(lab, thread_id):
    return run(lab.store.load_thread_items(thread_id, None, 100, "asc", LOCAL)).data


def test_each_assistant_message_gets_its_own_id_even_when_the_model_repeats_one(make_lab):
    model = ScriptedModel([
        [assistant_message("first", item_id="__fake_id__")],
        [assistant_message("second", item_id="__fake_id__")],
        [assistant_message("third", item_id="scripted-message")],
    ])
    lab = make_lab(model=model)
    turn = lab.send_sync("one")
    lab.send_sync("two", turn.thread_id)
    lab.send_sync("three", turn.thread_id)
    replies = [i for i in stored(lab, turn.thread_id) if i.type == "assistant_message"]
    assert [r.content[0].text for r in replies] == ["first", "second", "third"]
    assert len({r.id for r in replies}) == 3
    assert not any(r.id in ("__fake_id__", "scripted-message") for r in replies)


def test_history_reaches_the_model_on_later_turns_and_is_capped(make_lab):
    lab = make_lab()
    t = lab.send_sync("first")
    assert "history: 0 earlier items" in t.text
    t2 = lab.send_sync("second", t.thread_id)
    assert "history: 2 earlier items (assistant 1, user 1)" in t2.text
    capped = make_lab(db=":memory:", history_limit=3)
    c = capped.send_sync("a")
    for text in ("b", "c"):
        c = capped.send_sync(text, c.thread_id)
    assert "history: 2 earlier items" in c.text


def test_missing_credentials_become_a_readable_error_in_the_chat(make_lab, caplog):
    lab = make_lab(model="gpt-4.1-mini")
    with caplog.at_level(logging.ERROR, logger="chatkit_lab"):
        turn = lab.send_sync("hello")
    assert turn.error.startswith("No API key is set, so gpt-4.1-mini could not be called.")
    assert "OPENAI_API_KEY" in turn.error and "offline mirror model" in turn.error
    error = [e for e in turn.events if e["type"] == "error"][0]
    assert error == {"type": "error", "code": "custom", "message": turn.error, "allow_retry": False}
    assert any(r.exc_info for r in caplog.records), "the traceback goes to the log"
    row = lab.sql("SELECT status, error FROM turns").iloc[0]
    assert (row.status, row.error) == ("error", turn.error)


def test_an_unreachable_provider_becomes_a_readable_error(make_lab):
    url = f"http://127.0.0.1:{free_port()}/v1"
    lab = make_lab(base_url=url, model="llama3.2")
    turn = lab.send_sync("hello")
    assert turn.error.startswith(f"Could not reach the model provider at {url}")
    assert "Check that the server is running" in turn.error
    assert [e for e in turn.events if e["type"] == "error"][0]["allow_retry"] is True


def test_a_cancelled_stream_keeps_the_partial_answer(make_lab):
    lab = make_lab(model=MirrorModel(delay=0.005))
    first = lab.send_sync("hello")
    got_text = threading.Event()

    async def stream_then_cancel():
        body = '{"type":"threads.add_user_message","params":{"thread_id":"%s","input":{"content":[{"type":"input_text","text":"/words 3000"}],"attachments":[],"inference_options":{}}}}' % first.thread_id
        reply = await handle_request(lab.server, body, build_context(body, user_id="local"))
        deltas = 0

        async def consume():
            nonlocal deltas
            async for chunk in reply.stream:
                for e in parse_sse(chunk):
                    if e["type"] == "thread.item.updated" and e["update"]["type"].endswith("text_delta"):
                        deltas += 1
                        if deltas == 20:
                            got_text.set()

        task = asyncio.create_task(consume())
        while deltas < 20:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return deltas

    deltas = lab.runtime.loop.call(stream_then_cancel(), timeout=30)
    items = stored(lab, first.thread_id)
    partial = items[3]
    assert partial.type == "assistant_message"
    text = partial.content[0].text
    assert text.startswith("w1 w2 w3") and 0 < len(text) < len(" ".join(f"w{i}" for i in range(1, 3001)))
    assert items[4].type == "sdk_hidden_context"
    assert lab.sql("SELECT status FROM turns ORDER BY started_at").status.tolist() == ["completed", "cancelled"]
    assert deltas >= 20


def test_threads_get_a_title_from_the_first_message(make_lab):
    lab = make_lab()
    turn = lab.send_sync("Explain   the difference between a list and a tuple in Python, with examples please")
    updated = [e for e in turn.events if e["type"] == "thread.updated"]
    assert updated[-1]["thread"]["title"] == "Explain the difference between a list and a tuple in…"
    lab.send_sync("and sets?", turn.thread_id)
    assert lab.threads_df().title.tolist() == ["Explain the difference between a list and a tuple in…"]


def test_server_tool_calls_and_handoffs_show_as_workflow_tasks(make_lab):
    billing = Agent(name="Billing", instructions="Bills.", model=MirrorModel())
    triage = Agent(name="Triage", instructions="Route.", tools=[get_weather], handoffs=[handoff(billing)], model=MirrorModel())
    lab = make_lab(agent=triage)
    turn = lab.send_sync("call get_weather Oslo")
    added = [e for e in turn.events if e["type"] == "thread.item.added" and e["item"]["type"] == "workflow"]
    assert added[0]["item"]["workflow"]["tasks"][0]["title"] == "Calling `get_weather`"
    done = [e for e in turn.events if e["type"] == "thread.item.done" and e["item"]["type"] == "workflow"][0]
    task = done["item"]["workflow"]["tasks"][0]
    assert (task["title"], task["status_indicator"]) == ("Called `get_weather`", "complete")
    assert "21C and sunny in Oslo" in task["content"]
    assert turn.text == "Tool `get_weather` returned: It is 21C and sunny in Oslo."
    routed = lab.send_sync("call transfer_to_billing", turn.thread_id)
    titles = [t["title"] for e in routed.events if e["type"] == "thread.item.done" and e["item"]["type"] == "workflow" for t in e["item"]["workflow"]["tasks"]]
    assert "Handed off from Triage to Billing" in titles
    assert 'instructions: "Bills."' in routed.text
    assert lab.sql("SELECT tools FROM turns ORDER BY started_at").tools.tolist()[0] == ["get_weather"]


def test_the_offline_model_gives_the_same_transcript_every_run(make_lab, tmp_path):
    transcripts = []
    for n in range(2):
        lab = make_lab(db=tmp_path / f"run{n}.duckdb", tools=[get_weather])
        t = lab.send_sync("hello")
        texts = [t.text]
        for message in ("call get_weather Paris", "what do you see now?"):
            texts.append(lab.send_sync(message, t.thread_id).text)
        transcripts.append(texts)
    assert transcripts[0] == transcripts[1]
    assert "history: 5 earlier items" in transcripts[0][2]


def test_the_offline_model_streams_in_many_small_deltas(make_lab):
    turn = make_lab().send_sync("stream please")
    deltas = [e for e in turn.events if e["type"] == "thread.item.updated" and e["update"]["type"].endswith("text_delta")]
    assert len(deltas) > 20 and "".join(d["update"]["delta"] for d in deltas) == turn.text


def test_locked_threads_refuse_new_turns(make_lab):
    lab = make_lab()
    turn = lab.send_sync("hello")
    thread = run(lab.store.load_thread(turn.thread_id, LOCAL))
    thread.status = LockedStatus(reason="graded")
    run(lab.store.save_thread(thread, LOCAL))
    refused = lab.send_sync("more", turn.thread_id)
    assert refused.error == "This thread is locked: graded."


def test_feedback_is_stored_and_queryable(make_lab):
    lab = make_lab()
    turn = lab.send_sync("hello")
    reply_id = turn.item_ids[-1]
    assert lab.request_sync({"type": "items.feedback", "params": {"thread_id": turn.thread_id, "item_ids": [reply_id], "kind": "positive"}}) == {}
    rows = lab.sql("SELECT item_id, kind, user_id FROM feedback")
    assert rows.values.tolist() == [[reply_id, "positive", "local"]]


def test_a_tool_error_inside_the_stream_ends_with_an_error_event(make_lab):
    lab = make_lab(model=ScriptedModel([ModelStep.raise_error(RuntimeError("boom"))]))
    turn = lab.send_sync("hello")
    types = [e["type"] for e in turn.events]
    assert "error" in types and not any(t.startswith("thread.item") for t in types[types.index("error"):])
    assert turn.error.startswith("The agent failed with RuntimeError: boom.")


def test_a_run_that_stops_at_a_tool_has_the_tools_result_as_its_reply(make_lab):
    agent = Agent(name="Weather", instructions="x", tools=[get_weather], tool_use_behavior="stop_on_first_tool", model=MirrorModel())
    lab = make_lab(agent=agent, warm=False)
    turn = lab.send_sync('call get_weather {"city": "Paris"}')
    assert turn.error is None and turn.text == "It is 21C and sunny in Paris."  # it was "": the chat showed the tool step and no answer
    assert [(i.type, getattr(i, "content", None) and i.content[0].text) for i in stored(lab, turn.thread_id)][1:] == [
        ("workflow", None), ("assistant_message", "It is 21C and sunny in Paris.")]
    assert "history: 3 earlier items" in lab.send_sync("and now?", turn.thread_id).text


def test_a_client_tools_call_ends_the_turn_waiting_for_the_browser_with_no_reply(make_lab):
    from agents import RunContextWrapper, StopAtTools
    from chatkit.agents import ClientToolCall

    @function_tool
    async def get_selection(ctx: RunContextWrapper, cell: int) -> str:
        """Ask the browser for the selection."""
        ctx.context.client_tool_call = ClientToolCall(name="get_selection", arguments={"cell": cell})
        return "asked the browser"

    agent = Agent(name="A", tools=[get_selection], tool_use_behavior=StopAtTools(stop_at_tool_names=["get_selection"]), model=MirrorModel())
    lab = make_lab(agent=agent, warm=False)
    turn = lab.send_sync('call get_selection {"cell": 3}')
    assert turn.text == "" and [i.type for i in stored(lab, turn.thread_id)][-1] == "client_tool_call"  # the browser answers next
    body = {"type": "threads.add_client_tool_output", "params": {"thread_id": turn.thread_id, "result": {"selection": "cell 3"}}}
    lab.request_sync(body)
    assert [i.status for i in stored(lab, turn.thread_id) if i.type == "client_tool_call"] == ["completed"]


def _delete_file(deleted):
    @function_tool(needs_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return f"deleted {path}"

    return delete_file


def _click(lab, turn, label, user_id=None):
    card = [e["item"] for e in turn.events if e["type"] == "thread.item.done" and e["item"]["type"] == "widget"][-1]
    button = next(b for b in card["widget"]["children"][-1]["children"] if b["label"] == label)
    body = {"type": "threads.custom_action", "params": {"thread_id": turn.thread_id, "item_id": card["id"], "action": button["onClickAction"]}}
    return lab.request_sync(body, user_id=user_id)


def test_a_tool_that_needs_approval_waits_for_a_click_and_survives_a_restart(lab_db):
    """The Agents SDK stops a run at a ``needs_approval`` tool; the turn used to end with an empty reply and no word."""
    from chatkit_lab import ChatLab

    deleted = []
    lab = ChatLab(lab_db, tools=[_delete_file(deleted)], warm=False)
    turn = lab.send_sync('call delete_file {"path": "notes.txt"}')
    card = [e["item"] for e in turn.events if e["type"] == "thread.item.done"][-1]["widget"]
    assert [c.get("value") for c in card["children"][:2]] == ["Assistant asks to call a tool", 'delete_file({"path": "notes.txt"})']
    assert deleted == [] and turn.error is None and lab.turns_df().status.tolist() == ["paused"]
    assert _click(lab, turn, "Approve", user_id="mallory")[-1]["type"] == "error"  # another user's thread is not found
    lab.close()
    lab = ChatLab(lab_db, tools=[_delete_file(deleted)], warm=False)  # a kernel restart
    try:
        events = _click(lab, turn, "Approve")
        replaced = [e["item"]["widget"] for e in events if e["type"] == "thread.item.replaced"][0]
        assert replaced["children"][-1]["value"] == f"Approved by {lab.user_id}" and "approval_buttons" not in json.dumps(replaced)
        assert deleted == ["notes.txt"] and [e["item"]["content"][0]["text"] for e in events if e["type"] == "thread.item.done"
                                              and e["item"]["type"] == "assistant_message"] == ["Tool `delete_file` returned: deleted notes.txt"]
        again = _click(lab, turn, "Approve")
        assert [e["type"] for e in again] == ["stream_options", "notice"] and "answered already" in again[-1]["message"] and deleted == ["notes.txt"]
        assert lab.sql("SELECT status, decision FROM tool_approvals").values.tolist() == [["decided", "approve"]]
        assert lab.turns_df().status.tolist() == ["paused", "completed"]
        with pytest.raises(ChatLabError, match="Nothing in thread .* is waiting"):
            lab.decide_sync(turn.thread_id)
    finally:
        lab.close()


def test_an_approval_waits_while_the_lab_lacks_the_tool_it_calls(db_path):
    from chatkit_lab import ChatLab

    deleted = []
    lab = ChatLab(db_path, tools=[_delete_file(deleted)], warm=False)
    turn = lab.send_sync('call delete_file {"path": "notes.txt"}')
    lab.close()
    lab = ChatLab(db_path, warm=False)  # restarted without the tool
    try:
        notice = _click(lab, turn, "Approve")[-1]
        assert notice["type"] == "notice" and notice["message"].startswith("This approval calls delete_file, which the agent no longer has")
        assert lab.sql("SELECT status FROM tool_approvals").status.tolist() == ["paused"]
    finally:
        lab.close()
    lab = ChatLab(db_path, tools=[_delete_file(deleted)], warm=False)  # the tool is back
    try:
        assert lab.decide_sync(turn.thread_id).text == "Tool `delete_file` returned: deleted notes.txt" and deleted == ["notes.txt"]
    finally:
        lab.close()


def test_an_approved_call_gets_the_arguments_the_model_wrote_though_the_file_keeps_them_masked(db_path):
    """The waiting run was resumed from its stored, masked state: an approved send_email went to "<EMAIL_ADDRESS>"."""
    from agents.testing import function_call

    from chatkit_lab import ChatLab

    sent = []

    @function_tool
    def lookup_email(customer: str) -> str:
        """A customer's e-mail address."""
        return "ada@example.com"

    @function_tool(needs_approval=True)
    def send_email(to: str) -> str:
        """Send an e-mail."""
        sent.append(to)
        return f"sent to {to}"

    def asks(n):  # the model looks the address up, then asks to write to it
        return [[function_call("lookup_email", {"customer": "Ada"}, call_id=f"look{n}")], [function_call("send_email", {"to": "ada@example.com"}, call_id=f"send{n}")]]

    pii = {"version": 1, "input": {"version": 1, "guardrails": [{"name": "Contains PII", "config": {"entities": ["EMAIL_ADDRESS"]}}]}}
    lab = ChatLab(db_path, model=ScriptedModel([*asks(1), [assistant_message("sent")], *asks(2)]), tools=[lookup_email, send_email], guardrails=pii, warm=False)
    turn = lab.send_sync("write to Ada")
    stored_state = lab.sql("SELECT paused::VARCHAR AS paused, redacted FROM tool_approvals").iloc[0]
    assert "ada@example.com" not in stored_state.paused and "<EMAIL_ADDRESS>" in stored_state.paused and stored_state.redacted
    assert lab.decide_sync(turn.thread_id).text == "sent" and sent == ["ada@example.com"]
    lab.send_sync("and again", turn.thread_id)
    lab.close()
    lab = ChatLab(db_path, tools=[lookup_email, send_email], guardrails=pii, warm=False)
    try:  # restarted: only the masked state is left, which the Agents SDK refuses to go on with (its call's arguments changed)
        events = lab.decide_sync(turn.thread_id).events
        assert [e["message"] for e in events if e["type"] == "notice"] == [
            "This run held a secret or masked PII, which the lab never writes to its file, and only the process that asked holds it whole "
            "(this one restarted, or is another worker), so it cannot go on: send your message again."]
        assert [e["item"]["widget"]["children"][-1]["value"] for e in events if e["type"] == "thread.item.replaced"] == ["Could not go on in this process"]
        assert lab.sql("SELECT status FROM tool_approvals ORDER BY created_at").status.tolist() == ["decided", "expired"] and sent == ["ada@example.com"]
    finally:
        lab.close()


def test_a_card_deleted_by_a_retry_is_no_longer_what_decide_answers(make_lab):
    """decide took the newest waiting run whether or not its card was still in the thread: after a retry
    and one answer, the next decide picked the deleted card's run and failed with "Item ... not found"."""
    deleted = []
    lab = make_lab(tools=[_delete_file(deleted)], warm=False)
    turn = lab.send_sync('call delete_file {"path": "a.txt"}')
    message = next(e["item"]["id"] for e in turn.events if e["type"] == "thread.item.done" and e["item"]["type"] == "user_message")
    lab.request_sync({"type": "threads.retry_after_item", "params": {"thread_id": turn.thread_id, "item_id": message}})
    assert lab.decide_sync(turn.thread_id).text == "Tool `delete_file` returned: deleted a.txt" and deleted == ["a.txt"]
    with pytest.raises(ChatLabError, match="Nothing in thread .* is waiting for 'local' to approve it"):
        lab.decide_sync(turn.thread_id)


def test_a_forks_copy_of_a_waiting_card_says_the_run_stayed_in_the_original(make_lab):
    deleted = []
    lab = make_lab(tools=[_delete_file(deleted)], warm=False)
    turn = lab.send_sync('call delete_file {"path": "a.txt"}')
    fork = lab.fork(turn.thread_id)
    card = [e["item"] for e in turn.events if e["type"] == "thread.item.done" and e["item"]["type"] == "widget"][-1]
    approve = card["widget"]["children"][-1]["children"][0]["onClickAction"]
    events = lab.request_sync({"type": "threads.custom_action", "params": {"thread_id": fork, "item_id": card["id"], "action": approve}})
    assert "was asked in another thread (a fork copies the card, not the run)" in events[-1]["message"] and deleted == []
    assert lab.decide_sync(turn.thread_id).text == "Tool `delete_file` returned: deleted a.txt"  # the original still answers


def test_a_waiting_approval_travels_in_an_export_and_a_merge(tmp_path):
    """``tool_approvals`` was left out of the exported tables: an imported or merged file lost the waiting run."""
    from chatkit_lab import ChatLab
    from chatkit_lab.logs import merge

    deleted = []
    lab = ChatLab(tmp_path / "ada.duckdb", tools=[_delete_file(deleted)], warm=False)
    turn = lab.send_sync('call delete_file {"path": "notes.txt"}')
    try:
        assert lab.export(tmp_path / "ada.jsonl")["tool_approvals"] == 1
    finally:
        lab.close()
    merged = merge(tmp_path / "class.duckdb", [tmp_path / "ada.duckdb"])
    assert merged["ada"]["tool_approvals"] == 1
    copy = ChatLab(tmp_path / "copy.duckdb", tools=[_delete_file(deleted)], warm=False)
    try:
        assert copy.import_jsonl(tmp_path / "ada.jsonl")["tool_approvals"] == 1
        assert copy.decide_sync(turn.thread_id).text == "Tool `delete_file` returned: deleted notes.txt" and deleted == ["notes.txt"]
    finally:
        copy.close()


def test_a_rejected_tool_call_is_not_made_and_the_agent_is_told(make_lab):
    from chatkit_lab.workflows import templates

    deleted = []
    lab = make_lab(tools=[_delete_file(deleted)], warm=False)
    thread = lab.send_sync('call delete_file {"path": "notes.txt"}').thread_id
    with pytest.raises(ChatLabError, match="'approve' or 'reject', not 'maybe'"):
        lab.decide_sync(thread, "maybe")
    lab.use_workflow(templates.customer_service())  # the waiting run is the agent's, whatever answers new messages now
    assert lab.decide_sync(thread, "reject").text == "Tool `delete_file` returned: Tool execution was not approved."
    assert deleted == []
    with pytest.raises(ChatLabError, match="Nothing in thread .* is waiting for 'local' to approve it"):
        lab.decide_sync(thread)


def test_a_workflow_node_or_a_server_without_approvals_says_which_call_it_did_not_make(make_lab):
    from chatkit_lab import LabServer
    from chatkit_lab.store.memory import MemoryStore
    from chatkit_lab.workflows import AgentNode, EndNode, StartNode, Workflow, chain

    deleted = []
    tool = _delete_file(deleted)
    workflow = Workflow(name="w", nodes=[StartNode("start"), AgentNode("files", tools=["delete_file"]), EndNode("end")], edges=chain("start", "files", "end"))
    lab = make_lab(tools=[tool], workflow=workflow, warm=False)
    turn = lab.send_sync('call delete_file {"path": "notes.txt"}')
    assert turn.error.startswith('The agent stopped to ask approval for `delete_file({"path": "notes.txt"})`, and the call was not made')
    assert "without needs_approval" in turn.error and "user_approval" in turn.error
    assert lab.sql("SELECT status, error FROM turns").values.tolist() == [["error", turn.error]]
    tasks = [i for i in stored(lab, turn.thread_id) if i.type == "workflow"]  # the run ended inside the task list ChatKit stores itself
    assert len(tasks) == 1 and [t.title for t in tasks[0].workflow.tasks] == ["files · agent failed"]
    server = LabServer(MemoryStore(), Agent(name="a", tools=[tool], model=MirrorModel()))  # no place to keep a waiting run
    body = {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": 'call delete_file {"path": "x"}'}],
                                                           "attachments": [], "inference_options": {}}}}

    async def events_of():
        text = json.dumps(body)
        reply = await handle_request(server, text, build_context(text, user_id="local"))
        return [e async for chunk in reply.stream for e in parse_sse(chunk)]

    events = run(events_of())
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["message"].startswith("The agent stopped to ask approval for `delete_file(")
    assert deleted == []


@pytest.mark.parametrize("in_a_workflow", [False, True])
def test_a_reply_with_citations_keeps_them_as_chatkit_annotations(make_lab, in_a_workflow):
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText
    from openai.types.responses.response_output_text import AnnotationURLCitation

    from chatkit_lab.workflows import AgentNode, EndNode, StartNode, Workflow, chain

    workflow = Workflow(name="cite", nodes=[StartNode("start"), AgentNode("a"), EndNode("end")], edges=chain("start", "a", "end")) if in_a_workflow else None

    text = ResponseOutputText(type="output_text", text="See the docs.", annotations=[
        AnnotationURLCitation(type="url_citation", url="https://docs.example.org/a", title="Doc A", start_index=4, end_index=12)])
    message = ResponseOutputMessage(type="message", id="m1", role="assistant", status="completed", content=[text])
    turn = make_lab(model=ScriptedModel([[message]]), workflow=workflow).send_sync("cite something")
    assert turn.error is None and turn.text == "See the docs."
    reply = [e for e in turn.events if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"][0]
    source = reply["item"]["content"][0]["annotations"][0]["source"]
    assert (source["type"], source["url"], source["title"]) == ("url", "https://docs.example.org/a", "Doc A")
