"""What the chat offers beyond ChatKit's protocol, server side: ratings that come back (with
comments, and taken back), edit-and-send-again forks, the history-cap notice, the slow mode."""

import pytest

from chatkit_lab import ChatLab, MirrorModel
from chatkit_lab.errors import ChatLabError

from .test_secrets import found_in_database


def rated(lab, thread_id, user_id=None):
    return lab.request_sync({"type": "lab.feedback.list", "params": {"thread_id": thread_id}}, user_id=user_id)["data"]


def test_ratings_come_back_with_their_comment_and_can_be_taken_back(make_lab, db_path):
    lab = make_lab()
    turn = lab.send_sync("rate me")
    reply = lab.items_df(turn.thread_id).query("type == 'assistant_message'").item_id.iloc[0]
    lab.request_sync({"type": "items.feedback", "params": {"thread_id": turn.thread_id, "item_ids": [reply], "kind": "positive"}})
    assert rated(lab, turn.thread_id) == [{"item_id": reply, "kind": "positive", "comment": None}]
    lab.secrets.set("crm", "crm-secret-5521")
    set_ = {"type": "lab.feedback.set", "params": {"thread_id": turn.thread_id, "item_id": reply, "kind": "negative", "comment": "wrong number, key crm-secret-5521"}}
    assert lab.request_sync(set_) == {}
    assert rated(lab, turn.thread_id) == [{"item_id": reply, "kind": "negative", "comment": "wrong number, key [REDACTED:crm]"}]
    assert lab.feedback_df()[["kind", "comment"]].values.tolist() == [["negative", "wrong number, key [REDACTED:crm]"]]
    undo = {"type": "lab.feedback.set", "params": {"thread_id": turn.thread_id, "item_id": reply, "kind": None}}
    lab.request_sync(undo)
    assert rated(lab, turn.thread_id) == [] and lab.feedback_df().empty
    lab.close()
    assert found_in_database(db_path, "crm-secret-5521") == []


def test_ratings_are_per_user_and_bad_params_are_sentences(make_lab):
    lab = make_lab()
    turn = lab.send_sync("mine")
    with pytest.raises(ChatLabError) as foreign:
        rated(lab, turn.thread_id, user_id="mallory")
    assert foreign.value.status == 404
    bad = {"type": "lab.feedback.set", "params": {"thread_id": turn.thread_id, "item_id": "x", "kind": "meh"}}
    with pytest.raises(ChatLabError) as wrong:
        lab.request_sync(bad)
    assert wrong.value.status == 400 and "kind" in str(wrong.value)
    with pytest.raises(ChatLabError) as unknown:
        lab.request_sync({"type": "lab.nothing", "params": {}})
    assert unknown.value.status == 400 and "lab.feedback.list" in str(unknown.value)


def test_editing_a_message_forks_what_came_before_it_with_lineage_edit(make_lab):
    from chatkit_lab.replay import fork

    lab = make_lab()
    first = lab.send_sync("plan a trip")
    second = lab.send_sync("add a museum", first.thread_id)
    items = lab.items_df(first.thread_id)
    edited = items.query("type == 'user_message'").item_id.iloc[1]
    copy = lab.runtime.call(fork(lab.runtime, first.thread_id, edited, lab.user_id, before=True))
    assert lab.items_df(copy).text.tolist() == items.text.tolist()[:2]  # up to, not including, the edited message
    threads = lab.threads_df().set_index("thread_id")
    assert threads.loc[copy, "lineage"] == "edit" and threads.loc[copy, "title"] == "plan a trip (edited)"
    again = lab.send_sync("add a beach", copy)
    assert "history: 2 earlier items" in again.text and second.thread_id == first.thread_id
    turns = lab.turns_df()
    assert "not logged" not in turns.status.tolist()  # the copied exchange is the original's, not a lost turn


def test_a_capped_history_is_said_once_per_thread(make_lab):
    lab = make_lab(history_limit=4)
    thread = lab.send_sync("one").thread_id
    notices = [[e for e in lab.send_sync(f"m{n}", thread).events if e["type"] == "notice"] for n in range(4)]
    assert [len(n) for n in notices] == [0, 1, 0, 0]
    assert notices[1][0]["title"] == "History capped" and "the most recent 4" in notices[1][0]["message"]
    assert all(e["type"] != "notice" for e in lab.send_sync("fresh", new_thread=True).events)


def test_the_slow_mode_streams_at_reading_pace():
    import time

    with ChatLab(":memory:", model=MirrorModel(chunk_size=8)) as lab:
        fast = lab.send_sync("/words 20")
        started = time.monotonic()
        slow = lab.send_sync("/words 20 slow")
        slow_s = time.monotonic() - started
    assert fast.text == slow.text == " ".join(f"w{n}" for n in range(1, 21))
    deltas = sum(1 for e in slow.events if e["type"] == "thread.item.updated" and e["update"]["type"].endswith("text_delta"))
    assert deltas >= 9 and slow_s >= deltas * 0.08  # (a lower bound: sleeps never end early)
