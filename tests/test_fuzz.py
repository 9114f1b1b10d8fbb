"""Property-based fuzzing of POST /chatkit on a real server and of the widget tunnel's frames.

Bounded for the suite (FUZZ_EXAMPLES, default 120 per property); `make fuzz` runs thousands.
Whatever arrives: no 5xx but 501, no traceback or internal path in a response, the connection
stays usable, a refused request writes no row, and the server keeps answering; on a DuckDB file
and on PostgreSQL alike.
"""

import json
import os
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatkit_lab.transport.comm import CommTunnel

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not os.environ.get("FUZZ_RANDOM"))
TYPES = [
    "threads.create", "threads.add_user_message", "threads.add_client_tool_output", "threads.add_structured_input",
    "threads.retry_after_item", "threads.custom_action", "threads.get_by_id", "threads.list", "items.list",
    "items.feedback", "attachments.create", "attachments.delete", "threads.update", "threads.delete",
    "input.transcribe", "threads.sync_custom_action", "threads.nope", "",
]
LEAKS = ("Traceback", "site-packages", "/work/", 'File "', "chatkit_lab/")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=40), st.sampled_from(["thr_x", "msg_x", "atc_x", "", "asc", "desc", "positive", "input_text"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
message = st.fixed_dictionaries({"content": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["input_text", "input_tag", "x"]), "text": st.text(max_size=50)}), max_size=3),
                                 "attachments": st.lists(st.text(max_size=12), max_size=3), "inference_options": st.just({})})
params = st.dictionaries(
    st.sampled_from(["thread_id", "item_id", "input", "limit", "after", "order", "result", "title", "item_ids", "kind", "name", "size",
                     "mime_type", "attachment_id", "action", "audio_base64"]),
    st.one_of(values, message), max_size=6,
)
requests = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(TYPES), "params": params}, optional={"metadata": values}),
    values,
)
bodies = st.one_of(requests.map(lambda r: json.dumps(r).encode()), st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                   st.integers(1, 3000).map(lambda d: ('{"type":"threads.list","params":{},"metadata":' + "[" * d + "]" * d + "}").encode()))


def _rows(lab):
    with lab.db.cursor(invalidate=False) as cur:
        return {t: cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("threads", "items", "attachments", "feedback")}


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def server(request, tmp_path_factory):
    from chatkit_lab import ChatLab

    db = tmp_path_factory.mktemp("fuzz") / "fuzz.duckdb" if request.param == "duckdb" else request.getfixturevalue("postgres_cluster").new_database()
    lab = ChatLab(db, warm=False)
    url = lab.serve(port=0)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield lab, client
    lab.close()


@FUZZ
@given(body=bodies)
def test_post_chatkit_survives_anything(server, body):
    lab, client = server
    before = _rows(lab)
    response = client.post("/chatkit", content=body, headers={"Content-Type": "application/json"})  # a dropped connection raises here
    assert response.status_code < 500 or response.status_code == 501, response.text[:500]
    assert not any(leak in response.text for leak in LEAKS), response.text[:500]
    if response.status_code >= 400:
        assert _rows(lab) == before  # a refused request writes nothing
        assert set(response.json()["error"]) == {"code", "message"}
    elif response.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
        assert events, "a stream always says something"
        if events[-1]["type"] == "error":
            assert events[-1].get("message") or events[-1].get("code")
    assert client.get("/health").status_code == 200


@FUZZ
@given(frame=st.one_of(values, st.fixed_dictionaries({"kind": st.sampled_from(["request", "cancel", "hello", "fork", "x"]), "id": values, "body": st.one_of(values, bodies.map(lambda b: b.decode("utf-8", "replace"))), "headers": values})))
def test_the_tunnel_answers_every_frame_and_never_raises(server, frame):
    lab, _ = server
    sent = []
    tunnel = CommTunnel(lab.server, lab.runtime.loop.loop, sent.append, auth=lab.auth, limits=lab.runtime.limits)
    handled = tunnel.on_message(frame)
    is_request = isinstance(frame, dict) and frame.get("kind") == "request" and isinstance(frame.get("id"), str) and frame["id"]
    assert handled == (isinstance(frame, dict) and frame.get("kind") in ("request", "cancel"))
    if is_request:
        deadline = time.monotonic() + 20
        while not any(f.get("kind") in ("end", "error") for f in sent) and time.monotonic() < deadline:
            time.sleep(0.005)
        kinds = [f["kind"] for f in sent]
        assert kinds[0] == "ack" and kinds[-1] in ("end", "error"), kinds
        head = next((f for f in sent if f["kind"] == "head"), None)
        assert head is None or head["status"] < 500 or head["status"] == 501
        assert not any(leak in json.dumps(sent) for leak in LEAKS)
