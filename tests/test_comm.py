"""The widget tunnel's kernel side, driven exactly as a frontend would drive it."""

import json
import threading
import time

from chatkit_lab import MirrorModel
from chatkit_lab.transport.comm import CommTunnel


class Frontend:
    """Records frames (from whatever thread sends them) and sends requests like the widget's JS."""

    def __init__(self, lab, **kwargs):
        self.frames, self._lock = [], threading.Lock()
        self.tunnel = CommTunnel(lab.server, lab.runtime.loop.loop, self._receive, auth=lab.auth, **kwargs)
        self.sender_threads = set()
        self._n = 0

    def _receive(self, frame):
        with self._lock:
            self.frames.append(frame)
            self.sender_threads.add(threading.current_thread().name)

    def request(self, body, headers=None) -> str:
        self._n += 1
        rid = f"r{self._n}"
        body = body if isinstance(body, str) else json.dumps(body)
        assert self.tunnel.on_message({"kind": "request", "id": rid, "body": body, "headers": headers or {}})
        return rid

    def cancel(self, rid):
        self.tunnel.on_message({"kind": "cancel", "id": rid})

    def of(self, rid):
        with self._lock:
            return [f for f in self.frames if f["id"] == rid]

    def wait_end(self, rid, timeout=30):
        deadline = time.monotonic() + timeout
        while not any(f["kind"] in ("end", "error") for f in self.of(rid)):
            assert time.monotonic() < deadline, self.of(rid)
            time.sleep(0.005)
        return self.of(rid)

    def body(self, rid):
        return "".join(f["data"] for f in self.of(rid) if f["kind"] == "chunk")

    def events(self, rid):
        return [json.loads(line[6:]) for line in self.body(rid).split("\n") if line.startswith("data: ")]


def create(text):
    return {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}}}


def test_a_streamed_turn_arrives_as_ordered_frames_from_the_loop_thread(make_lab):
    front = Frontend(make_lab())
    rid = front.request(create("hello"))
    frames = front.wait_end(rid)
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert frames[0]["kind"] == "ack" and frames[-1] == {"id": rid, "seq": len(frames) - 1, "kind": "end"}
    assert frames[1] == {"id": rid, "seq": 1, "kind": "head", "status": 200, "content_type": "text/event-stream"}
    events = front.events(rid)
    assert events[0]["type"] == "thread.created"
    assert any(e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message" for e in events)
    assert front.sender_threads == {"chatkit-lab"}


def test_json_requests_and_errors_look_like_http(make_lab):
    front = Frontend(make_lab())
    listed = front.request({"type": "threads.list", "params": {}})
    missing = front.request({"type": "threads.get_by_id", "params": {"thread_id": "thr_nope"}})
    broken = front.request("{oops")
    for rid, status in ((listed, 200), (missing, 404), (broken, 400)):
        frames = front.wait_end(rid)
        assert frames[1]["status"] == status and frames[1]["content_type"] == "application/json"
    assert json.loads(front.body(listed)) == {"data": [], "has_more": False}
    assert json.loads(front.body(missing))["error"]["message"] == "Thread thr_nope not found"
    assert json.loads(front.body(broken))["error"]["message"].startswith("The request body is not valid JSON")


def test_the_handler_only_hands_over_and_returns_at_once(make_lab):
    front = Frontend(make_lab(model=MirrorModel(delay=0.01)))
    started = time.perf_counter()
    rid = front.request(create("/words 200"))
    assert time.perf_counter() - started < 0.05  # the comm handler never waits for the agent
    front.wait_end(rid)
    assert front.events(rid)[-1]["type"] in ("thread.item.done", "thread.updated")


def test_thousands_of_deltas_a_second_are_batched_without_losing_text(make_lab):
    front = Frontend(make_lab(model=MirrorModel(chunk_size=1)))
    rid = front.request(create("/words 1500"))
    frames = front.wait_end(rid, timeout=60)
    deltas = [e for e in front.events(rid) if e["type"] == "thread.item.updated" and e["update"]["type"].endswith("text_delta")]
    expected = " ".join(f"w{i}" for i in range(1, 1501))
    assert len(deltas) == len(expected)  # one character per delta
    assert "".join(d["update"]["delta"] for d in deltas) == expected
    chunks = [f for f in frames if f["kind"] == "chunk"]
    assert len(chunks) < len(deltas) / 20, "deltas are sent in batches, not one frame each"


def test_a_paused_stream_still_flushes_within_the_batch_window(make_lab):
    front = Frontend(make_lab(model=MirrorModel(delay=0.3, chunk_size=200)), batch_ms=20)
    rid = front.request(create("/words 5"))
    deadline = time.monotonic() + 10
    while not any(f["kind"] == "chunk" and "thread.created" in f["data"] for f in front.of(rid)):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # thread.created arrived while the model was still waiting to send its first delta.
    assert not any(f["kind"] == "end" for f in front.of(rid))
    front.wait_end(rid)


def test_cancel_keeps_the_partial_answer(make_lab):
    lab = make_lab(model=MirrorModel(delay=0.005))
    front = Frontend(lab, batch_ms=5)
    rid = front.request(create("/words 3000"))
    deadline = time.monotonic() + 20
    while "text_delta" not in front.body(rid):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    front.cancel(rid)
    frames = front.wait_end(rid)
    assert frames[-1]["kind"] == "end" and frames[-1]["cancelled"] is True
    thread_id = front.events(rid)[0]["thread"]["id"]
    items = lab.items_df(thread_id)
    assert items.type.tolist() == ["user_message", "assistant_message", "sdk_hidden_context"]
    assert items.text[1].startswith("w1 w2") and not items.text[1].endswith("w3000")


def test_several_requests_at_once_keep_their_frames_apart(make_lab):
    front = Frontend(make_lab())
    rids = [front.request(create(f"hello {n}")) for n in range(4)]
    for n, rid in enumerate(rids):
        front.wait_end(rid)
        assert [f["seq"] for f in front.of(rid)] == list(range(len(front.of(rid))))
        user = [e for e in front.events(rid) if e["type"] == "thread.item.done" and e["item"]["type"] == "user_message"]
        assert user[0]["item"]["content"][0]["text"] == f"hello {n}"


def test_other_messages_are_left_alone_and_bad_ones_do_not_crash(make_lab):
    front = Frontend(make_lab())
    assert front.tunnel.on_message({"kind": "anywidget-command", "id": "x"}) is False
    assert front.tunnel.on_message("not a dict") is False
    assert front.tunnel.on_message({"kind": "request", "body": "{}"}) is True  # no id: logged, dropped
    assert front.tunnel.on_message({"kind": "request", "id": "b", "body": 42})
    frames = front.wait_end("b")
    assert frames[1]["status"] == 400 and "JSON string" in front.body("b")


def test_a_failing_send_does_not_break_the_loop(make_lab):
    lab = make_lab()
    calls = []

    def flaky(frame):
        calls.append(frame)
        raise RuntimeError("comm closed")

    tunnel = CommTunnel(lab.server, lab.runtime.loop.loop, flaky)
    tunnel.on_message({"kind": "request", "id": "z", "body": json.dumps(create("hi"))})
    deadline = time.monotonic() + 10
    while not any(f["kind"] == "end" for f in calls):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert lab.send_sync("the lab still works").error is None


def test_after_login_the_tunnel_verifies_the_bearer_token_and_acts_as_its_subject(make_lab):
    lab = make_lab()
    front = Frontend(lab)
    lab.login("alice")
    refused = front.wait_end(front.request(create("no token")))
    assert refused[1]["status"] == 401
    assert "Missing Authorization header" in json.loads(front.body(refused[0]["id"]))["error"]["message"]
    expired = front.request(create("old"), {"authorization": f"Bearer {lab.issuer.issue('alice', ttl=-120)}"})
    front.wait_end(expired)
    assert "expired" in front.body(expired)
    ok = front.request(create("hi"), {"Authorization": f"Bearer {lab.token}"})
    front.wait_end(ok)
    assert front.events(ok)[0]["type"] == "thread.created"
    assert lab.sql("SELECT user_id FROM threads").user_id.tolist() == ["alice"]  # nothing written by the refused ones
