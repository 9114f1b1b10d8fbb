"""Replay, fork and diff on a real DuckDB file, through the same protocol path as the widget."""

import asyncio
import json
import time

import pytest
from agents import Agent, function_tool, handoff

from chatkit_lab import ChatLabError, MirrorModel, RequestContext

from .helpers.failing import fail_once
from .test_tracing import not_empty
from .test_widget import custom, frontend_sends, recording, wait_for  # noqa: F401 (recording: a fixture)


@function_tool
def lookup(name: str) -> str:
    """Look a customer up."""
    return f"{name} is a gold customer."


def record(lab, *texts, user_id=None):
    turn = lab.send_sync(texts[0], user_id=user_id)
    for text in texts[1:]:
        lab.send_sync(text, turn.thread_id, user_id=user_id)
    return turn.thread_id


def lineage(lab, thread_id):
    row = lab.sql("SELECT parent_thread_id, kind, at_item_id, overrides FROM lineage WHERE thread_id = ?", [thread_id])
    return row.iloc[0].to_dict() if len(row) else None


def test_replay_runs_turn_by_turn_into_a_new_ordinary_thread_with_its_lineage(make_lab):
    lab = make_lab()
    source = record(lab, "first question", "second question", "third question")
    originals = lab.turns_df(source).reply_text.tolist()

    r = lab.replay(source, instructions="You are a pirate.")
    assert (r.total, r.steps, r.done) == (3, [], False)
    assert lineage(lab, r.thread_id) == {"parent_thread_id": source, "kind": "replay", "at_item_id": None,
                                         "overrides": json.dumps({"instructions": "You are a pirate."}, separators=(",", ":"))}
    step = r.step_sync()
    assert (step.exchange, step.user_text, step.original) == (1, "first question", originals[0])
    assert '- instructions: "You are a pirate."' in step.reply and step.changed and step.error is None
    html = step._repr_html_()
    assert "<del>" in html and "<ins>" in html and "pirate" in html

    asyncio.run(r.run(progress=False))
    assert r.done and [s.exchange for s in r.steps] == [1, 2, 3]
    assert "- history: 4 earlier items" in r.steps[2].reply  # the replay builds its own history
    with pytest.raises(ChatLabError, match="has run all 3 turns"):
        r.step_sync()

    # An ordinary thread: listed, protocol-readable, in every frame, with its lineage.
    thread = lab.request_sync({"type": "threads.get_by_id", "params": {"thread_id": r.thread_id}})
    assert thread["title"] == "first question (replay)"
    assert [i["type"] for i in thread["items"]["data"]] == ["user_message", "assistant_message"] * 3
    turns = lab.turns_df(r.thread_id)
    assert turns.user_text.tolist() == ["first question", "second question", "third question"]
    assert set(turns.lineage) == {"replay"} and set(turns.parent_thread_id) == {source}
    assert turns.reply_text.tolist() == [s.reply for s in r.steps]
    threads = lab.threads_df().set_index("thread_id")
    assert threads.loc[r.thread_id, "lineage"] == "replay" and threads.loc[r.thread_id, "items"] == 6
    assert lab.turns_df(source).reply_text.tolist() == originals  # the original is untouched


def test_replay_gives_each_turn_its_recorded_context_unless_overridden(make_lab):
    lab = make_lab()
    lab.context.update(project="Apollo")
    body = {"type": "threads.create", "metadata": {"pageContext": {"title": "Churn study"}, "userInfo": {"name": "Ada"}},
            "params": {"input": {"content": [{"type": "input_text", "text": "what project?"}], "attachments": [], "inference_options": {}}}}
    events = lab.request_sync(body)
    source = next(e["thread"]["id"] for e in events if e["type"] == "thread.created")
    lab.context.update(project="Zeus")  # the lab has moved on; the replay still sees what the turn saw

    def seen(replay):
        replay.run_sync(progress=False)
        row = lab.model_inputs_df(replay.thread_id).iloc[0]
        return json.loads(row.context), row.strategy

    context, strategy = seen(lab.replay(source))
    assert (context["project"], context["page"], context["user"]["name"], strategy) == ("Apollo", {"title": "Churn study"}, "Ada", "instructions")
    context, strategy = seen(lab.replay(source, context={"project": "Hermes"}, strategy="hidden"))
    assert (context["project"], context["page"]["title"], strategy) == ("Hermes", "Churn study", "hidden")
    with pytest.raises(ChatLabError, match="Unknown context strategy 'loud'"):
        lab.replay(source, strategy="loud")
    assert len(lab.threads_df()) == 3  # the refused replay created nothing


def test_replay_as_another_user_with_another_model_and_tools(make_lab):
    lab = make_lab()
    source = record(lab, "/lookup acme")
    r = lab.replay(source, user_id="bob", model=MirrorModel("rival"), tools=[lookup])
    r.run_sync(progress=False)
    assert r.steps[0].reply == "Tool `lookup` returned: acme is a gold customer."
    assert lab.turns_df(source).reply_text[0].startswith("**[mirror]**")  # no tools in the original
    row = lab.turns_df(r.thread_id, all_users=True).iloc[0]
    assert (row.user_id, row.model, list(row.tools)) == ("bob", "rival", ["lookup"])
    assert r.thread_id not in lab.threads_df().thread_id.tolist()  # bob's thread, not the lab user's
    assert json.loads(lineage(lab, r.thread_id)["overrides"]) == {"model": "MirrorModel(name='rival', chunk_size=8, delay=0.0)", "tools": ["lookup"], "user_id": "bob"}
    assert json.loads(lab.model_inputs_df(r.thread_id, all_users=True).context[0])["user"] == {"id": "bob"}


def test_replay_and_fork_copy_attachments_so_deleting_the_original_loses_nothing(make_lab):
    lab = make_lab()
    attachment = lab.request_sync({"type": "attachments.create", "params": {"name": "notes.txt", "size": 11, "mime_type": "text/plain"}})
    lab.runtime.loop.call(lab.store.write_attachment_bytes(attachment["id"], b"pinned note", RequestContext(user_id="local")))
    body = {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "read it"}], "attachments": [attachment["id"]], "inference_options": {}}}}
    source = next(e["thread"]["id"] for e in lab.request_sync(body) if e["type"] == "thread.created")
    r = lab.replay(source)
    r.run_sync(progress=False)
    fork = lab.fork(source)
    lab.request_sync({"type": "threads.delete", "params": {"thread_id": source}})
    for thread_id in (r.thread_id, fork):
        kept = lab.sql("SELECT attachment_id, bytes FROM attachments WHERE thread_id = ?", [thread_id])
        assert len(kept) == 1 and bytes(kept.bytes[0]) == b"pinned note" and kept.attachment_id[0] != attachment["id"]
        item = lab.request_sync({"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}})["data"][0]
        assert item["attachments"][0]["id"] == kept.attachment_id[0] and item["thread_id"] == thread_id
    assert "pinned note" in lab.model_inputs_df(r.thread_id).input[0]  # the replayed turn read the file
    lab.send_sync("and the fork?", fork)
    assert "pinned note" in lab.model_inputs_df(fork).input.iloc[-1]


def test_batch_replay_keeps_to_its_concurrency_limit(make_lab):
    class Counting(MirrorModel):
        active = peak = 0

        async def stream_response(self, *args, **kwargs):
            Counting.active += 1
            Counting.peak = max(Counting.peak, Counting.active)
            try:
                async for event in super().stream_response(*args, **kwargs):
                    yield event
            finally:
                Counting.active -= 1

    lab = make_lab()
    sources = [record(lab, f"thread {n} turn 1", f"thread {n} turn 2") for n in range(5)]
    replays = asyncio.run(lab.replay_many(sources, concurrency=2, progress=False, model=Counting("counted", delay=0.01)))
    assert [r.source for r in replays] == sources and all(r.done for r in replays)
    assert Counting.peak == 2
    turns = lab.turns_df()
    assert (turns.model == "counted").sum() == 10 and (turns.lineage == "replay").sum() == 10
    assert lab.replay_many_sync(sources[:1], concurrency=1, progress=False)[0].done


def test_a_batch_writes_its_threads_whole_in_order_and_everything_it_holds_when_interrupted(make_lab):
    from chatkit_lab import replay

    lab = make_lab()
    short = record(lab, "/words 3", "/words 2")
    slow = record(lab, "/words 300", "/words 5")
    attachment = lab.request_sync({"type": "attachments.create", "params": {"name": "notes.txt", "size": 11, "mime_type": "text/plain"}})
    lab.runtime.loop.call(lab.store.write_attachment_bytes(attachment["id"], b"pinned note", RequestContext(user_id="local")))
    body = {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "read it"}], "attachments": [attachment["id"]], "inference_options": {}}}}
    attached = next(e["thread"]["id"] for e in lab.request_sync(body) if e["type"] == "thread.created")
    threads_before = len(lab.threads_df())

    batch = replay.batch(lab.runtime, [short, slow, attached], 3, model=MirrorModel("slow", chunk_size=4, delay=0.01))
    assert len(lab.threads_df()) == threads_before + 1  # only the replay with attachments is in the file before it runs (its copies are)

    async def interrupt():
        task = asyncio.create_task(batch.run(progress=False))
        await asyncio.sleep(0.5)  # the short ones are done; the slow one is inside its long first turn
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt())
    short_r, slow_r, attached_r = batch.replays
    assert short_r.done and attached_r.done and [s.error for s in slow_r.steps] == ["cancelled"]
    for r in batch.replays:  # every new thread is in the file with its lineage, whatever its replay reached
        assert lineage(lab, r.thread_id)["kind"] == "replay" and lab.threads_df().set_index("thread_id").title[r.thread_id].endswith("(replay)")
    items = lab.items_df(short_r.thread_id)
    assert items.text.tolist() == ["/words 3", "w1 w2 w3", "/words 2", "w1 w2"] and items.created_at.is_monotonic_increasing
    assert lab.items_df(slow_r.thread_id).query("type == 'user_message'").text.tolist() == ["/words 300"]
    # the stopped reply keeps all it streamed, not only the deltas that reached ChatKit (merged: its first)
    partial = lab.items_df(slow_r.thread_id).query("type == 'assistant_message'").text.tolist()
    assert len(partial) == 1 and " ".join(f"w{n}" for n in range(1, 301)).startswith(partial[0]) and len(partial[0]) > 40, partial
    assert "pinned note" in lab.model_inputs_df(attached_r.thread_id).input[0]
    batch.run_sync(progress=False)  # goes on in the file, without repeating a turn
    assert [s.exchange for s in slow_r.steps] == [1, 2] and slow_r.steps[1].reply == "w1 w2 w3 w4 w5"
    assert lab.items_df(slow_r.thread_id).query("type == 'user_message'").text.tolist() == ["/words 300", "/words 5"]
    assert lab.turns_df(slow_r.thread_id).status.tolist() == ["cancelled", "completed"]


def test_fork_copies_a_thread_up_to_an_item_and_the_new_thread_goes_its_own_way(make_lab):
    lab = make_lab()
    source = record(lab, "one", "two", "three")
    items = lab.items_df(source)
    fork = lab.fork(source, at_item=items.item_id[1])  # after the first reply
    copied = lab.items_df(fork)
    assert copied.item_id.tolist() == items.item_id[:2].tolist() and copied.text.tolist() == items.text[:2].tolist()
    assert lineage(lab, fork) == {"parent_thread_id": source, "kind": "fork", "at_item_id": items.item_id[1], "overrides": None}
    assert "- history: 2 earlier items" in lab.send_sync("a new direction", fork).text
    assert len(lab.items_df(source)) == 6 and len(lab.items_df(fork)) == 4
    thread = lab.request_sync({"type": "threads.get_by_id", "params": {"thread_id": fork}})
    assert thread["title"] == "one (fork)" and {i["thread_id"] for i in thread["items"]["data"]} == {fork}
    assert len(lab.items_df(lab.fork(source))) == 6  # no item: the whole thread

    with pytest.raises(ChatLabError, match="There is no thread 'thr_nope'"):
        lab.fork("thr_nope")
    with pytest.raises(ChatLabError, match=f"There is no item 'msg_nope' in thread '{source}'"):
        lab.fork(source, at_item="msg_nope")


@pytest.mark.usefixtures("recording")
def test_fork_from_the_widget_opens_the_new_thread_and_refuses_another_users_thread(make_lab):
    lab = make_lab()
    bobs = record(lab, "bob's secret plan", user_id="bob")
    lab.login("alice")
    chat = lab.chat()
    mine = record(lab, "alice asks", "alice asks again")
    first_reply = lab.items_df(mine).item_id[1]

    def forked():
        return [c for c, _ in custom(chat) if c["kind"] == "forked"]

    frontend_sends(chat, {"kind": "fork", "thread_id": mine, "item_id": first_reply, "token": lab.token})
    (reply,) = wait_for(forked)
    assert lineage(lab, reply["thread_id"])["parent_thread_id"] == mine and len(lab.items_df(reply["thread_id"])) == 2
    for message in ({"thread_id": bobs, "item_id": "x", "token": lab.token}, {"thread_id": mine, "item_id": first_reply}):
        frontend_sends(chat, {"kind": "fork", **message})
    refusals = wait_for(lambda: len(forked()) == 3 and forked()[1:])
    assert refusals[0]["error"] == f"Could not fork this thread: There is no thread '{bobs}' in this lab's database; lab.threads_df() lists them."
    assert refusals[1]["error"].startswith("Could not fork this thread: Missing Authorization header")
    assert len(lab.threads_df(all_users=True)) == 3


def test_diff_compares_replies_tools_handoffs_guardrails_latency_and_tokens(make_lab):
    lab = make_lab()
    source = record(lab, "/lookup acme", "/transfer_to_billing", "<b>bold</b> question")
    billing = Agent(name="Billing", model=MirrorModel())
    routed = Agent(name="Assistant", tools=[lookup], handoffs=[handoff(billing)], input_guardrails=[not_empty], model=MirrorModel())
    r = lab.replay(source, agent=routed)
    r.run_sync(progress=False)
    d = lab.diff(source, r.thread_id)
    df = d.df
    assert df.exchange.tolist() == [1, 2, 3] and not df.same_reply.any()
    assert [list(t) for t in df.tools_b[:1]] == [["lookup"]] and len(df.tools_a[0]) == 0
    assert list(df.handoffs_b[1]) == ["Assistant -> Billing"] and list(df.handoffs_a[1]) == []
    assert list(df.guardrails_b[0]) == ["not_empty: passed"] and list(df.guardrails_a[0]) == []
    assert (df.latency_ms_a > 0).all() and (df.latency_ms_b > 0).all() and (df.tokens_a > 0).all()
    assert df.similarity.between(0, 1).all()
    html = d._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html  # text is escaped
    assert "handoffs: – → Assistant -&gt; Billing" in html and "<ins>" in html
    assert repr(d) == f"ThreadDiff({source!r} vs {r.thread_id!r}: 3 turns, 3 replies differ)"
    assert r.diff().df.reply_b.tolist() == df.reply_b.tolist()

    shorter = lab.fork(source, at_item=lab.items_df(source).item_id[1])
    uneven = lab.diff(source, shorter).df
    assert uneven.same_reply.tolist() == [True, False, False] and uneven.reply_b.isna().tolist() == [False, True, True]
    lab.diff(source, shorter)._repr_html_()
    with pytest.raises(ChatLabError, match="There is no thread 'thr_nope'"):
        lab.diff(source, "thr_nope")


def test_an_interrupted_replay_stops_and_a_rerun_goes_on_without_repeating_a_turn(make_lab):
    lab = make_lab()
    source = record(lab, "/words 300", "/words 5", "/words 5")
    r = lab.replay(source, model=MirrorModel("slow", chunk_size=4, delay=0.01))

    async def interrupt():
        task = asyncio.create_task(r.run(progress=False))
        await asyncio.sleep(0.5)  # inside the long first turn
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt())
    assert [(s.exchange, s.error) for s in r.steps] == [(1, "cancelled")] and not r.done
    r.run_sync(progress=False)
    assert [s.exchange for s in r.steps] == [1, 2, 3] and r.steps[2].reply == "w1 w2 w3 w4 w5"
    users = lab.items_df(r.thread_id).query("type == 'user_message'").text.tolist()
    assert users == ["/words 300", "/words 5", "/words 5"]
    assert lab.turns_df(r.thread_id).status.tolist() == ["cancelled", "completed", "completed"]


def test_a_secret_in_the_overrides_is_written_nowhere(make_lab, db_path):
    from .conftest import found_in_database

    lab = make_lab()
    lab.secrets.set("crm_token", "crm-abc-123456")
    source = record(lab, "hello")
    r = lab.replay(source, context={"token": "crm-abc-123456"}, instructions="Use crm-abc-123456 with care.")
    r.run_sync(progress=False)
    assert "crm-abc-123456" in r.steps[0].reply  # the model saw it; nothing written keeps it
    assert json.loads(lineage(lab, r.thread_id)["overrides"]) == {"instructions": "Use [REDACTED:crm_token] with care.", "context": {"token": "[REDACTED:crm_token]"}}
    lab.export(db_path.parent / "all.jsonl")
    lab.close()
    assert found_in_database(db_path, "crm-abc-123456") == [] and "crm-abc-123456" not in (db_path.parent / "all.jsonl").read_text()


def test_the_diff_view_folds_unchanged_text_renders_markdown_and_lists_only_what_changed(make_lab):
    from chatkit_lab.replay import word_diff_html

    same = " ".join(f"w{n}" for n in range(60))
    folded = word_diff_html(f"{same} old end", f"{same} new end")
    assert "<del>old</del>" in folded and "<ins>new</ins>" in folded
    assert "48 words the same" in folded and "w0 " not in folded and "w59" in folded  # a hunk, with its context
    rendered = word_diff_html("The **plan** is <b>fine</b>", "The **plan** is <b>great</b>", markdown=True)
    assert "<strong>plan</strong>" in rendered  # markdown rendered
    assert "&lt;b&gt;" in rendered and "<b>" not in rendered  # model HTML stays text

    lab = make_lab()
    source = record(lab, "first question", "second question")
    replay = lab.replay(source, instructions="Be terse.")
    replay.run_sync(progress=False)
    view = replay.diff()._repr_html_()
    assert "text-align:left !important" in view
    assert '<span class="ckl-diff-fact">tokens: ' in view  # the replies' tokens differ
    assert '<span class="ckl-diff-fact">tools:' not in view  # no tools either side: not listed


def test_a_batch_whose_write_fails_stops_every_replay_and_still_writes_what_it_holds(make_lab, monkeypatch):
    from chatkit_lab import replay

    lab = make_lab()
    sources = [record(lab, "/words 3"), record(lab, "/words 200", "/words 2")]
    batch = replay.batch(lab.runtime, sources, 2, model=MirrorModel("slow", chunk_size=4, delay=0.01))
    batch.WRITE_EVERY = 1  # the first finished replay is written at once
    calls = fail_once(monkeypatch, lab.runtime.store, "add_threads")
    with pytest.raises(ChatLabError, match="disk is full"):
        batch.run_sync(progress=False)
    slow = batch.replays[1]
    steps = len(slow.steps)
    assert steps == 1 and slow.steps[0].error == "cancelled"  # stopped inside its long first turn, not left running
    time.sleep(0.3)
    assert len(slow.steps) == steps and [len(threads) for threads in calls] == [1, 2]
    for r in batch.replays:  # the second write took both threads, whole
        assert lineage(lab, r.thread_id)["kind"] == "replay"
    assert lab.items_df(batch.replays[0].thread_id).text.tolist() == ["/words 3", "w1 w2 w3"]


def text_deltas(events):
    return [e["update"]["delta"] for e in events if e["type"] == "thread.item.updated" and e["update"]["type"] == "assistant_message.content_part.text_delta"]


@pytest.mark.parametrize("workflow", [False, True])
def test_a_replay_or_eval_turn_reaches_chatkit_with_its_deltas_merged_and_a_chat_turn_streams_them(make_lab, workflow):
    from chatkit_lab.replay import derived_server
    from chatkit_lab.turn import Turn
    from chatkit_lab.workflows import templates

    lab = make_lab(model=MirrorModel(chunk_size=4), workflow=templates.customer_support() if workflow else None)
    body = {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "hello"}], "attachments": [],
                                                           "inference_options": {}}}}
    chat = Turn.of(None, lab.runtime.call(lab.runtime.request(body, lab.user_id)))
    server = derived_server(lab.runtime, lab.server.agent, lab.server.backend, lab.server.workflow, {})  # what lab.replay and lab.evaluate answer with
    batch = Turn.of(None, lab.runtime.call(lab.runtime.request(body, lab.user_id, server=server)))
    assert batch.text == chat.text and len(chat.text) > 100
    streamed, merged = text_deltas(chat.events), text_deltas(batch.events)
    assert len(streamed) == -(-len(chat.text) // 4)  # one a chunk
    assert merged == [streamed[0], "".join(streamed[1:])]  # the first at once (first_token_ms stays true), the rest as one
    turn = lab.turns_df(batch.thread_id).iloc[0]
    assert 0 < turn.first_token_ms <= turn.latency_ms


def test_merged_deltas_join_runs_of_one_part_only_with_their_logprobs():
    from agents.stream_events import RawResponsesStreamEvent
    from openai.types.responses import ResponseTextDeltaEvent, ResponseTextDoneEvent

    from chatkit_lab.run_stream import merged_deltas

    def delta(text, item="m1", part=0, logprob=None):
        return RawResponsesStreamEvent(data=ResponseTextDeltaEvent(
            type="response.output_text.delta", delta=text, item_id=item, output_index=0, content_index=part, sequence_number=0,
            logprobs=[{"token": text, "logprob": logprob, "top_logprobs": []}] if logprob is not None else []))

    done = RawResponsesStreamEvent(data=ResponseTextDoneEvent(type="response.output_text.done", text="abcdxy", item_id="m1", output_index=0,
                                                              content_index=0, sequence_number=9, logprobs=[]))
    events = [delta("a"), delta("b", logprob=-0.5), delta("c", logprob=-0.25), delta("x", part=1), delta("d"), delta("y", part=1), done]

    async def merged():
        async def source():
            for event in events:
                yield event
        return [e.data for e in [e async for e in merged_deltas(source())]]

    out = asyncio.run(merged())
    assert [(d.type.rsplit(".", 1)[1], getattr(d, "content_index", None), getattr(d, "delta", None)) for d in out] == [
        ("delta", 0, "a"), ("delta", 0, "bc"), ("delta", 1, "x"), ("delta", 0, "d"), ("delta", 1, "y"), ("done", 0, None)]
    assert [p.logprob for p in out[1].logprobs] == [-0.5, -0.25]


def test_a_replay_answers_approvals_as_the_original_did_and_leaves_unanswered_ones_waiting(make_lab):
    """A replay left every approval waiting, so a thread whose user had approved replayed with no
    reply, and the diff counted two replyless turns as different."""
    from chatkit_lab.workflows import templates

    deleted = []

    @function_tool(needs_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return f"deleted {path}"

    lab = make_lab(warm=False, workflow=templates.customer_service(), tools=[delete_file])
    thread = lab.send_sync("I want to return_item my shoes").thread_id
    lab.decide_sync(thread, "reject")
    lab.send_sync("and my hat? return_item", thread)  # left waiting
    replay = lab.replay(thread).run_sync(progress=False)
    assert [s.reply for s in replay.steps] == ["The return was not approved. Anything else I can do?", ""]
    assert lab.sql("SELECT status, coalesce(decision, '-') FROM workflow_runs WHERE thread_id = ? ORDER BY created_at", [replay.thread_id]).values.tolist() == [
        ["decided", "reject"], ["paused", "-"]]
    assert not (~replay.diff().df.same_reply).any()

    lab.use_workflow(None)
    files = lab.send_sync('call delete_file {"path": "a.txt"}').thread_id
    lab.decide_sync(files, "approve")
    again = lab.replay(files).run_sync(progress=False)  # an agent's tool approval, approved as the original was
    assert again.steps[0].reply == "Tool `delete_file` returned: deleted a.txt" and deleted == ["a.txt", "a.txt"]
