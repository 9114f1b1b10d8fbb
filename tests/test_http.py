"""The HTTP endpoint on a real uvicorn server on 127.0.0.1."""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from agents.testing import ModelStep, ScriptedModel

from chatkit_lab.errors import ChatLabError

from .conftest import exit_code, free_port

MESSAGE = {"content": [{"type": "input_text", "text": "hello"}], "attachments": [], "inference_options": {}}


@pytest.fixture
def served(make_lab):
    lab = make_lab()
    url = lab.serve(port=0)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield lab, client


def post(client, body):
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/chatkit", content=content, headers={"Content-Type": "application/json"})


def events(response):
    return [json.loads(line[6:]) for line in response.text.split("\n") if line.startswith("data: ")]


def test_health_reports_status_and_model(served):
    _, client = served
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["backend"].startswith("offline mirror model")
    assert health["gc_frozen_objects"] == 0  # a notebook's lab leaves its heap to the collector


def test_a_port_out_of_range_or_taken_is_a_sentence_and_the_lab_can_still_serve(make_lab):
    import socket

    from chatkit_lab import ChatLabError

    lab = make_lab(warm=False)
    with pytest.raises(ChatLabError, match="70000 is not a port: give 1 to 65535, or 0 for any free one."):
        lab.serve(port=70000)  # uvicorn served 70000 % 65536
    with socket.create_server(("127.0.0.1", 0)) as taken:  # uvicorn raised SystemExit(1), which ends a script or a `serve` process
        port = taken.getsockname()[1]
        with pytest.raises(ChatLabError, match=f"Cannot listen on 127.0.0.1:{port}: Address already in use; choose another port"):
            lab.serve(port=port)
    url = lab.serve(port=0)
    assert httpx.get(url + "/health", timeout=30).json()["status"] == "ok"


def test_streaming_requests_get_sse_and_others_json(served):
    _, client = served
    created = post(client, {"type": "threads.create", "params": {"input": MESSAGE}})
    assert created.status_code == 200 and created.headers["content-type"].startswith("text/event-stream")
    evs = events(created)
    assert evs[0]["type"] == "thread.created" and evs[-1]["type"] in ("thread.item.done", "thread.updated")
    assert any(e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message" for e in evs)
    thread_id = evs[0]["thread"]["id"]
    listed = post(client, {"type": "threads.list", "params": {}})
    assert listed.headers["content-type"] == "application/json"
    assert [t["id"] for t in listed.json()["data"]] == [thread_id]
    got = post(client, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}).json()
    assert [i["type"] for i in got["items"]["data"]] == ["user_message", "assistant_message"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ("{not json", 400, "The request body is not valid JSON"),
        ("[1, 2]", 400, "The request body must be a JSON object"),
        ({"params": {}}, 400, 'The request has no "type" field'),
        ({"type": "threads.explode", "params": {}}, 400, "Unknown request type 'threads.explode'. Expected one of:"),
        ({"type": "threads.list"}, 400, "Invalid params for threads.list: params: Field required"),
        ({"type": "threads.add_user_message", "params": {"input": MESSAGE}}, 400, "Invalid params for threads.add_user_message: params.thread_id: Field required"),
        ({"type": "threads.list", "params": {"limit": "many"}}, 400, "Invalid params for threads.list: params.limit:"),
        ({"type": "threads.get_by_id", "params": {"thread_id": "thr_nope"}}, 404, "Thread thr_nope not found"),
        ({"type": "items.list", "params": {"thread_id": "thr_nope", "after": "itm_nope"}}, 404, "Item itm_nope not found in thread thr_nope"),
        ({"type": "threads.delete", "params": {"thread_id": "thr_nope"}}, 404, "Thread thr_nope not found"),
    ],
)
def test_bad_requests_get_a_clear_json_error(served, body, status, message):
    _, client = served
    response = post(client, body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["message"].startswith(message), error
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "params, message",
    [
        # ChatKit raises these before the first event: they must not truncate a 200 stream.
        ({"thread_id": "thr_nope", "input": MESSAGE}, "Thread thr_nope not found"),
        ({"thread_id": "{thread}", "result": {}}, "Last thread item in {thread} was not a ClientToolCallItem"),
    ],
)
def test_an_error_before_the_stream_starts_becomes_an_error_event(served, params, message):
    lab, client = served
    thread_id = lab.send_sync("hi").thread_id
    params = {k: v.replace("{thread}", thread_id) if isinstance(v, str) else v for k, v in params.items()}
    kind = "threads.add_client_tool_output" if "result" in params else "threads.add_user_message"
    response = post(client, {"type": kind, "params": params})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert events(response) == [{"type": "error", "code": "custom", "message": message.replace("{thread}", thread_id), "allow_retry": False}]


def test_a_failure_inside_the_stream_ends_with_an_error_event(make_lab):
    lab = make_lab(model=ScriptedModel([ModelStep.raise_error(RuntimeError("provider exploded"))]))
    with httpx.Client(base_url=lab.serve(port=0)) as client:
        response = post(client, {"type": "threads.create", "params": {"input": MESSAGE}})
    assert response.status_code == 200
    errors = [e for e in events(response) if e["type"] == "error"]
    assert errors and errors[0]["message"].startswith("The agent failed with RuntimeError: provider exploded.")
    assert "Traceback" not in response.text


def test_two_phase_attachment_upload(served):
    lab, client = served
    attachment = post(client, {"type": "attachments.create", "params": {"name": "notes.txt", "size": 5, "mime_type": "text/plain"}}).json()
    upload = attachment["upload_descriptor"]
    assert upload["url"].startswith(str(client.base_url))
    done = client.request(upload["method"], upload["url"], content=b"hello")
    assert done.status_code == 200 and "upload_descriptor" not in done.json()
    message = dict(MESSAGE, attachments=[attachment["id"]])
    evs = events(post(client, {"type": "threads.create", "params": {"input": message}}))
    user = [e for e in evs if e["type"] == "thread.item.done" and e["item"]["type"] == "user_message"][0]
    assert user["item"]["attachments"][0]["id"] == attachment["id"]
    assert client.put("/chatkit/attachments/atc_nope/upload", content=b"x").status_code == 404


def test_the_cli_serves_until_terminated(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", str(tmp_path / "cli.duckdb"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/chatkit" in banner
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ok"
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        reply = httpx.post(f"http://127.0.0.1:{port}/chatkit", json={"type": "threads.create", "params": {"input": MESSAGE}}, timeout=30)
        assert "assistant_message" in reply.text
        # Once started (warm-up turn included), its heap is frozen out of garbage collection for good.
        while httpx.get(f"http://127.0.0.1:{port}/health").json()["gc_frozen_objects"] < 100_000:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        # The kernel hands a process's signal to any of its threads; Python runs the handler on the main
        # one only, so the signal goes to another, the case that left the server waiting for ever.
        threads = sorted(int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid)
        assert ctypes.CDLL(None).tgkill(proc.pid, threads[-1], signal.SIGTERM) == 0
        assert exit_code(proc) == 0


def test_a_user_over_the_rate_limit_gets_a_429_with_retry_after_and_others_are_not_slowed(make_lab, lab_db):
    from chatkit_lab.transport.limits import Limits

    lab = make_lab(db=lab_db, warm=False, limits=Limits(rate="3/minute"))
    lab.login("ann")
    ann, bob = lab.token, lab.issuer.issue("bob")
    body = {"type": "threads.list", "params": {"limit": 5}}
    with httpx.Client(base_url=lab.serve(port=0)) as client:
        answers = [client.post("/chatkit", json=body, headers={"Authorization": f"Bearer {ann}"}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        refused = answers[-1]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["error"]["message"].startswith("Too many requests: this server takes 3 per 1 minute from each user. Try again in ")
        assert client.post("/chatkit", json=body, headers={"Authorization": f"Bearer {bob}"}).status_code == 200  # per user
        shared = " (shared by every server on the database)" if isinstance(lab_db, str) else ""  # PostgreSQL counts for every worker
        assert client.get("/health").json()["rate_limit"] == "3 per 1 minute per user" + shared
    with pytest.raises(ChatLabError, match="A rate limit is written like '60/minute'"):
        Limits(rate="sixty a minute")
