"""ChatWidget on the Python side: assets, the committed bundle, traits, and the comm path."""

import hashlib
import json
import threading
import time
from pathlib import Path

import comm
import pytest
import traitlets
from comm.base_comm import BaseComm

from chatkit_lab import ChatLabError, ChatWidget
from chatkit_lab.widget import STATIC

ROOT = Path(__file__).parent.parent


def sources_hash() -> str:
    # The same digest js/build.mjs stamps into the bundle.
    digest = hashlib.sha256()
    for path in sorted((ROOT / "js" / "src").iterdir(), key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update((ROOT / "js" / "package-lock.json").read_bytes())
    return digest.hexdigest()[:16]


def test_the_committed_bundle_is_built_from_the_current_sources():
    first_line = (STATIC / "widget.js").read_text().split("\n", 1)[0]
    assert first_line == f"/* chatkit-lab widget, built by js/build.mjs from sources {sources_hash()} */", (
        "widget.js is stale: run `make js` and commit the bundle"
    )


def test_the_bundle_is_one_module_without_relative_imports():
    text = (STATIC / "widget.js").read_text()
    assert "export{" in text.replace(" ", "") or "export default" in text
    assert 'from"./' not in text.replace(" ", "") and "import(\"./" not in text


class RecordingComm(BaseComm):
    def __init__(self, *args, **kwargs):
        self.log, self._lock = [], threading.Lock()
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        with self._lock:
            self.log.append((msg_type, data, threading.current_thread().name))


@pytest.fixture
def recording(monkeypatch):
    monkeypatch.setattr(comm, "create_comm", RecordingComm)


def frontend_sends(widget, content):
    """Deliver a message exactly as ipykernel would (Comm.handle_msg -> Widget._handle_msg)."""
    widget.comm.handle_msg({"content": {"comm_id": widget.model_id, "data": {"method": "custom", "content": content}}, "buffers": []})


def custom(widget):
    with widget.comm._lock:
        return [(d["content"], thread) for t, d, thread in widget.comm.log if t == "comm_msg" and d.get("method") == "custom"]


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return result


def test_widget_assets_traits_and_display(make_lab, recording):
    widget = make_lab().chat(ui="builtin", options={"title": "Mine"})
    assert isinstance(widget, ChatWidget)
    assert widget._esm.startswith("/* chatkit-lab widget") and ".ckl-root" in widget._css
    assert (widget.ui, widget.status, widget.thread_id, widget.domain_key) == ("builtin", "loading", None, "domain_pk_localhost_dev")
    assert "application/vnd.jupyter.widget-view+json" in widget._repr_mimebundle_()[0]
    with pytest.raises(traitlets.TraitError):
        widget.ui = "fancy"
    lab = make_lab()
    with pytest.raises(ChatLabError, match="The chat takes no 'thread'; it takes ui, thread_id"):  # a typo was dropped silently
        lab.chat(thread="thr_1")
    with pytest.raises(ChatLabError, match="client_tools= maps a name to a Python function"):  # failed only when the tool was called
        lab.chat(client_tools={"pick": "pick"})
    assert lab.chat(layout={"height": "400px"}).layout.height == "400px"  # ipywidgets' own traits still pass


def test_requests_through_the_comm_are_answered_from_the_labs_thread(make_lab, recording):
    widget = make_lab().chat()
    body = {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "via comm"}], "attachments": [], "inference_options": {}}}}
    frontend_sends(widget, {"kind": "request", "id": "q1", "body": json.dumps(body), "headers": {}})
    frames = wait_for(lambda: [f for f in custom(widget) if f[0].get("id") == "q1" and f[0]["kind"] == "end"] and [f for f in custom(widget) if f[0].get("id") == "q1"])
    assert [f[0]["kind"] for f in frames][:2] == ["ack", "head"] and {f[1] for f in frames} == {"chatkit-lab"}
    assert "you said" in "".join(f[0].get("data", "") for f in frames)


def test_lab_send_from_a_cell_shows_up_in_open_widgets(make_lab, recording):
    lab = make_lab()
    widgets = [lab.chat(), lab.chat()]
    turn = lab.send_sync("from a cell")
    for widget in widgets:
        shown = [c for c, _ in custom(widget) if c["kind"] == "thread_events"]
        events = [e for c in shown for e in c["events"]]
        assert {c["thread_id"] for c in shown} == {turn.thread_id}
        assert events == turn.events


def test_python_client_tools_answer_through_the_comm(make_lab, recording):
    async def pick(cell: int) -> dict:
        return {"picked": cell}

    widget = make_lab().chat(client_tools={"pick": pick, "boom": lambda: 1 / 0})
    assert widget.python_client_tools == ["boom", "pick"]
    frontend_sends(widget, {"kind": "client_tool", "id": "t1", "name": "pick", "arguments": {"cell": 4}})
    frontend_sends(widget, {"kind": "client_tool", "id": "t2", "name": "boom", "arguments": {}})
    frontend_sends(widget, {"kind": "client_tool", "id": "t3", "name": "nope", "arguments": {}})
    replies = wait_for(lambda: (r := {c["id"]: c for c, _ in custom(widget) if c["kind"] == "client_tool_result"}) and len(r) == 3 and r)
    assert replies["t1"]["result"] == {"picked": 4}
    assert replies["t2"]["error"] == "ZeroDivisionError: division by zero"
    assert replies["t3"]["error"] == "LookupError: No Python client tool named 'nope'."


def test_a_closed_labs_chat_is_answered_at_once_with_a_sentence(make_lab, recording):
    lab = make_lab()
    widget = lab.chat()
    lab.close()
    body = {"type": "threads.list", "params": {}}
    frontend_sends(widget, {"kind": "request", "id": "late", "body": json.dumps(body), "headers": {}})
    frames = [c for c, _ in custom(widget) if c.get("id") == "late"]  # synchronously: the loop is gone
    assert [f["kind"] for f in frames] == ["ack", "head", "chunk", "end"]
    assert frames[1]["status"] == 503
    assert json.loads(frames[2]["data"])["error"] == {"code": "lab_closed", "message": "This lab was closed (lab.close()): run the cell that creates it again."}


def test_a_cell_send_without_a_thread_goes_where_the_chat_is(make_lab, recording):
    lab = make_lab()
    widget = lab.chat()
    first = lab.send_sync("starts a thread")  # the chat shows "New chat": a new thread
    widget.thread_id = first.thread_id  # what the browser syncs once the chat follows it
    assert lab.send_sync("goes to the same thread").thread_id == first.thread_id
    assert lab.send_sync("a fresh one", new_thread=True).thread_id != first.thread_id
    assert lab.send_sync("as bob", user_id="bob").thread_id != first.thread_id  # not bob's thread: a new one
    widget.thread_id = None
    assert lab.send_sync("new chat shown").thread_id != first.thread_id
    assert lab.sql("SELECT count(*) AS n FROM items WHERE thread_id = ? AND type = 'user_message'", [first.thread_id]).n[0] == 2


def test_client_effects_reach_python_handlers_and_a_failing_one_is_a_warning(make_lab, recording):
    seen = []
    widget = make_lab().chat(client_effects={"highlight": seen.append, "boom": lambda data: 1 / 0})
    assert widget.python_client_effects == ["boom", "highlight"]
    frontend_sends(widget, {"kind": "client_effect", "name": "highlight", "data": {"cell": 3}})
    frontend_sends(widget, {"kind": "client_effect", "name": "unknown", "data": {}})
    frontend_sends(widget, {"kind": "client_effect", "name": "boom", "data": {}})
    wait_for(lambda: seen and widget.warning)
    assert seen == [{"cell": 3}]
    assert widget.warning == "The client effect handler 'boom' failed: ZeroDivisionError: division by zero"


def test_an_upload_through_the_comm_stores_the_bytes_and_a_too_large_one_is_refused(make_lab, recording):
    from chatkit_lab.transport.limits import Limits

    lab = make_lab(limits=Limits(max_attachment_bytes=5))
    widget = lab.chat()
    created = lab.request_sync({"type": "attachments.create", "params": {"name": "a.csv", "size": 5, "mime_type": "text/csv"}})
    url = created["upload_descriptor"]["url"]

    def upload(request_id, data):
        widget.comm.handle_msg({"content": {"comm_id": widget.model_id, "data": {"method": "custom", "content": {
            "kind": "request", "id": request_id, "body": None, "headers": {}, "upload": url}}}, "buffers": [memoryview(data)]})
        return wait_for(lambda: (f := [c for c, _ in custom(widget) if c.get("id") == request_id]) and f[-1]["kind"] == "end" and f)

    frames = upload("u1", b"a,b\n1")
    assert frames[1]["status"] == 200 and json.loads(frames[2]["data"])["id"] == created["id"]
    assert bytes(lab.sql("SELECT bytes FROM attachments").bytes[0]) == b"a,b\n1"
    refused = upload("u2", b"123456")  # the bytes, not the announced size, are what count
    assert refused[1]["status"] == 413 and "accepts files up to" in refused[2]["data"]
