"""What a heavy or hostile client tries against a real server on 127.0.0.1: oversized and
chunked bodies, deep JSON, absurd limits, foreign hosts and origins, id collisions."""

import json
import socket
from datetime import datetime

import httpx
import pytest
from chatkit.types import ThreadMetadata

from chatkit_lab.errors import ChatLabError, ConflictError
from chatkit_lab.transport.limits import Limits

from .conftest import ALICE, BOB, STORES, found_in_database, make_store, run, user_message

JSON = {"Content-Type": "application/json"}


def said(text, attachments=()):
    return {"content": [{"type": "input_text", "text": text}], "attachments": list(attachments), "inference_options": {}}


def create(text="hello", attachments=()):
    return {"type": "threads.create", "params": {"input": said(text, attachments)}}


@pytest.fixture
def served(make_lab, lab_db):
    lab = make_lab(db=lab_db, limits=Limits(max_body_bytes=64 * 1024, max_message_chars=2_000, max_attachments=2, max_attachment_bytes=32 * 1024, max_page=50))
    url = lab.serve(port=0)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield lab, client


def rows(lab):
    with lab.db.cursor() as cur:
        return {t: cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("threads", "items", "attachments")}


def test_a_chunked_body_is_counted_as_it_is_read(served):
    lab, client = served
    before = rows(lab)

    def chunks():  # no Content-Length: the old check never saw the size
        yield b'{"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}], "attachments": [], "inference_options": {}}}}'

    response = client.post("/chatkit", content=chunks(), headers=JSON)
    assert response.status_code == 413 and "larger than 0.0625 MiB" in response.json()["error"]["message"]
    attachment = client.post("/chatkit", content=json.dumps({"type": "attachments.create", "params": {"name": "a.bin", "size": 10, "mime_type": "application/octet-stream"}}), headers=JSON).json()
    upload = client.put(f"/chatkit/attachments/{attachment['id']}/upload", content=(b"y" * 1024 for _ in range(100)))
    assert upload.status_code == 413 and "uploaded file" in upload.json()["error"]["message"]
    assert rows(lab) == {**before, "attachments": before["attachments"] + 1}  # the declared attachment only, no bytes
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"type": "threads.list", "params": {"limit": -5}}, 400, "limit must be between 1 and 50"),
    ({"type": "threads.list", "params": {"limit": -1}}, 400, "limit must be between 1 and 50"),
    ({"type": "items.list", "params": {"thread_id": "thr_x", "limit": 2**63}}, 400, "limit must be between 1 and 50"),
    ({"type": "items.list", "params": {"thread_id": "thr_x", "limit": 100000}}, 400, "page on with `after`"),
    ({"type": "attachments.create", "params": {"name": "a", "size": 10**30, "mime_type": "text/plain"}}, 413, "accepts files up to"),
    ({"type": "attachments.create", "params": {"name": "a", "size": -1, "mime_type": "text/plain"}}, 400, "cannot be negative"),
    (create("x" * 2_001), 413, "accepts up to 2,000"),
    (create("hi", ["atc_1", "atc_2", "atc_3"]), 413, "carries 3 attachments"),
])
def test_absurd_values_are_400s_or_413s_with_a_sentence_and_the_connection_stays_usable(served, body, status, words):
    lab, client = served
    before = rows(lab)
    response = client.post("/chatkit", content=json.dumps(body), headers=JSON)
    assert response.status_code == status and words in response.json()["error"]["message"]
    assert rows(lab) == before
    assert client.post("/chatkit", content=json.dumps({"type": "threads.list", "params": {}}), headers=JSON).status_code == 200


@pytest.mark.parametrize(("depth", "status"), [(100, 200), (975, 400), (5000, 400)])
def test_deeply_nested_json_is_a_400_on_a_connection_that_stays_open(served, depth, status):
    lab, client = served
    body = '{"type": "threads.list", "params": {}, "metadata": {"x": ' + "[" * depth + "]" * depth + "}}"
    response = client.post("/chatkit", content=body, headers=JSON)
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"]["code"] == "invalid_request"
    assert "Traceback" not in response.text
    assert client.get("/health").json()["status"] == "ok"  # same client, same keep-alive connection


def test_a_refused_create_writes_nothing(served):
    lab, client = served
    bobs = run(lab.store.create_attachment(__import__("chatkit.types", fromlist=["AttachmentCreateParams"]).AttachmentCreateParams(name="b.txt", size=1, mime_type="text/plain"), BOB))
    before = rows(lab)
    for attachments in (["atc_missing"], [bobs.id]):
        response = client.post("/chatkit", content=json.dumps(create("hi", attachments)), headers=JSON)
        last = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")][-1]
        assert last["type"] == "error" and "not found" in last["message"]
    assert rows(lab) == before  # no empty, untitled thread left behind


def test_a_foreign_host_header_is_refused_before_anything_is_read(served):
    lab, client = served
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
        response = client.post("/chatkit", content=json.dumps(create()), headers={**JSON, "Host": host})
        assert response.status_code == 421 and "--allowed-host" in response.json()["error"]["message"]
        assert client.get("/health", headers={"Host": host}).status_code == 421  # DNS rebinding reads nothing
    assert rows(lab)["threads"] == 0
    assert client.get("/health", headers={"Host": "localhost:1234"}).status_code == 200


def test_cross_site_posts_and_non_json_bodies_are_refused(served):
    lab, client = served
    simple_form = client.post("/chatkit", content=json.dumps(create()), headers={"Content-Type": "text/plain", "Origin": "https://evil.example"})
    assert simple_form.status_code == 403 and "evil.example" in simple_form.json()["error"]["message"]
    fetch_metadata = client.post("/chatkit", content=json.dumps(create()), headers={**JSON, "Sec-Fetch-Site": "cross-site"})
    assert fetch_metadata.status_code == 403
    plain = client.post("/chatkit", content=json.dumps(create()), headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]["message"]
    form = client.post("/chatkit", content="type=threads.create", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    same_site = client.post("/chatkit", content=json.dumps(create()), headers={**JSON, "Origin": str(client.base_url).rstrip("/")})
    assert same_site.status_code == 200
    own_page = client.post("/chatkit", content=json.dumps(create()), headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": str(client.base_url).rstrip("/")})
    assert own_page.status_code == 200  # fetch() from the server's own page sends text/plain unless told
    assert rows(lab)["threads"] == 2


def test_allowed_hosts_and_origins_are_configurable(make_lab):
    lab = make_lab()
    url = lab.serve(port=0, allowed_hosts="chat.internal", allowed_origins="https://app.internal")  # one name: not its letters
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").status_code == 421  # only what was configured
        ok = client.post("/chatkit", content=json.dumps({"type": "threads.list", "params": {}}),
                         headers={**JSON, "Host": "chat.internal", "Origin": "https://app.internal"})
        assert ok.status_code == 200


def test_the_body_limit_holds_on_a_raw_socket_without_content_length(served):
    lab, client = served
    host, port = client.base_url.host, client.base_url.port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /chatkit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 8192
        for _ in range(20):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


# -- ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", STORES)
def test_a_new_item_that_meets_an_existing_id_is_refused_never_overwritten(kind, db_path, request):
    store = make_store(kind, db_path, request)
    run(store.save_thread(ThreadMetadata(id="thr_1", created_at=datetime(2026, 1, 1)), ALICE))
    run(store.add_thread_item("thr_1", user_message("msg_same", "thr_1", "first"), ALICE))
    with pytest.raises(ConflictError, match="nothing was overwritten"):
        run(store.add_thread_item("thr_1", user_message("msg_same", "thr_1", "second"), ALICE))
    page = run(store.load_thread_items("thr_1", None, 10, "asc", ALICE))
    assert [i.content[0].text for i in page.data] == ["first"]
    if kind != "memory":
        store.close()


def test_generated_ids_carry_128_random_bits_and_skip_a_thread_id_another_user_has(make_lab, monkeypatch):
    lab = make_lab()
    bobs = lab.send_sync("bob's", user_id="bob").thread_id
    ids = {lab.store.generate_item_id("message", None, ALICE) for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == len("msg_") + 32 for i in ids)
    from chatkit_lab.store import duckdb as store_module

    fresh, real = iter([bobs, "thr_" + "a" * 32]), store_module.new_id
    monkeypatch.setattr(store_module, "new_id", lambda kind: next(fresh) if kind == "thread" else real(kind))
    turn = lab.send_sync("alice's", user_id="alice")
    assert turn.error is None and turn.thread_id == "thr_" + "a" * 32  # the taken id was skipped
    assert lab.request_sync({"type": "threads.get_by_id", "params": {"thread_id": bobs}}, user_id="bob")["title"] == "bob's"


def test_a_stream_shows_the_sentence_of_an_error_raised_inside_chatkits_event_loop(make_lab, monkeypatch):
    lab = make_lab()
    from chatkit_lab.errors import DatabaseBusyError

    real = lab.store.add_thread_item

    async def busy(thread_id, item, context):
        if item.type == "assistant_message":
            raise DatabaseBusyError("The database file stayed locked by another process for 30 s; press Retry.")
        return await real(thread_id, item, context)

    monkeypatch.setattr(lab.store, "add_thread_item", busy)
    turn = lab.send_sync("hello")
    error = next(e for e in turn.events if e["type"] == "error")
    assert error["message"].startswith("The database file stayed locked") and error["allow_retry"] is True


def test_nothing_of_a_refused_request_reaches_the_file(served, lab_db):
    lab, client = served
    client.post("/chatkit", content=json.dumps(create("SECRET-REFUSED " + "x" * 3000)), headers=JSON)
    lab.close()
    assert found_in_database(lab_db, "SECRET-REFUSED") == []


def test_the_lab_loop_answers_a_bad_frame_from_the_tunnel_with_a_sentence(make_lab):
    lab = make_lab(limits=Limits(max_body_bytes=1024))
    frames = []
    from chatkit_lab.transport.comm import CommTunnel

    tunnel = CommTunnel(lab.server, lab.runtime.loop.loop, frames.append, auth=lab.auth, limits=lab.runtime.limits)
    tunnel.on_message({"kind": "request", "id": "r1", "body": json.dumps(create("x" * 5000)), "headers": {}})
    import time

    deadline = time.monotonic() + 10
    while not any(f.get("kind") == "end" for f in frames) and time.monotonic() < deadline:
        time.sleep(0.01)
    head = next(f for f in frames if f["kind"] == "head")
    assert head["status"] == 413
    assert "larger than" in next(f for f in frames if f["kind"] == "chunk")["data"]


def test_retry_after_the_oldest_message_of_a_long_thread_deletes_the_rest_in_one_statement(make_lab):
    lab = make_lab()
    first = lab.send_sync("the first question")
    for k in range(3):
        lab.send_sync(f"follow-up {k}", first.thread_id)
    items = lab.items_df(first.thread_id)
    user_item = items[items.type == "user_message"].item_id.iloc[0]
    statements = []
    real_delete = lab.store.delete_thread_item

    async def counted(*args, **kwargs):
        statements.append(args)
        return await real_delete(*args, **kwargs)

    lab.store.delete_thread_item = counted  # ChatKit's own path would call this once per newer item
    events = lab.request_sync({"type": "threads.retry_after_item", "params": {"thread_id": first.thread_id, "item_id": user_item}})
    assert statements == [] and not any(e["type"] == "error" for e in events)
    after = lab.items_df(first.thread_id)
    assert after.type.tolist() == ["user_message", "assistant_message"] and after.item_id.iloc[0] == user_item
    assert "the first question" in after.text.iloc[1]
    refused = lab.request_sync({"type": "threads.retry_after_item", "params": {"thread_id": first.thread_id, "item_id": after.item_id.iloc[1]}})
    assert refused[-1]["type"] == "error" and "is not a user message" in refused[-1]["message"]


def test_a_file_that_is_not_utf8_is_a_sentence_wherever_a_file_is_read(tmp_path):
    from chatkit_lab.evals.graders import load_graders_file
    from chatkit_lab.guardrails import load_config
    from chatkit_lab.workflows import Workflow

    latin = tmp_path / "latin.json"
    latin.write_bytes('{"name": "café"}'.encode("latin-1"))  # each was a bare UnicodeDecodeError
    for load, what in ((load_graders_file, "the graders file"), (load_config, "the guardrails config"), (Workflow.load, "the workflow file"),
                       (Workflow.from_agent_builder, "the export")):
        with pytest.raises(ChatLabError, match=f"Cannot read {what} .*'utf-8' codec can't decode"):
            load(latin)
