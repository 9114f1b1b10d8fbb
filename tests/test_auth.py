"""JWT auth on a real HTTP server, with the JWKS served from another real HTTP server on 127.0.0.1.

Every attack is refused with a 401 (or, for another user's ids, a 404) and reads or writes nothing.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from chatkit_lab import ChatLabError
from chatkit_lab.auth import AuthError, JWKSVerifier, LocalIssuer

from .conftest import exit_code, free_port

MESSAGE = {"content": [{"type": "input_text", "text": "hello"}], "attachments": [], "inference_options": {}}
CREATE = {"type": "threads.create", "params": {"input": MESSAGE}}
LIST = {"type": "threads.list", "params": {}}


def b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def secured(make_lab, issuer):
    verifier = JWKSVerifier(issuer.url, issuer=issuer.issuer, audience=issuer.audience, refetch_after=0)
    lab = make_lab(verifier=verifier)
    url = lab.serve(port=0)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield lab, client


def call(client, body, token=None, header=None):
    headers = {"Authorization": header if header is not None else f"Bearer {token}"} if (token or header is not None) else {}
    return client.post("/chatkit", content=json.dumps(body), headers={"Content-Type": "application/json", **headers})


def everything(lab):
    return {t: lab.sql(f"SELECT * FROM {t} ORDER BY ALL").to_json(date_format="iso") for t in ("threads", "items", "attachments", "feedback", "turns")}


def forged_tokens(issuer):
    """name -> (Authorization header value, the sentence the server must answer with)."""
    good = issuer.issue("alice")
    head, payload, sig = good.split(".")
    kid = issuer.keys[0].kid
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    public_pem = issuer.keys[0].as_pem(private=False)
    hs_head = b64({"alg": "HS256", "kid": kid, "typ": "JWT"})
    hs_sig = b64(hmac.new(public_pem, f"{hs_head}.{payload}".encode(), hashlib.sha256).digest())
    stranger = LocalIssuer(issuer=issuer.issuer, audience=issuer.audience)
    now = int(time.time())
    return {
        "alg none": (f"Bearer {b64({'alg': 'none', 'kid': kid})}.{payload}.", "algorithm is not allowed"),
        "HS256 with the public key": (f"Bearer {hs_head}.{payload}.{hs_sig}", "algorithm is not allowed"),
        "expired": (f"Bearer {issuer.issue('alice', ttl=-120)}", "expired"),
        "not yet valid": (f"Bearer {issuer.issue('alice', nbf=now + 3600)}", "not valid yet"),
        "wrong issuer": (f"Bearer {issuer.issue('alice', iss='https://evil.example')}", "wrong iss"),
        "wrong audience": (f"Bearer {issuer.issue('alice', aud='another-app')}", "wrong aud"),
        "unknown kid": (f"Bearer {stranger.issue('alice')}", "unknown key"),
        "tampered payload": (f"Bearer {head}.{b64({**claims, 'sub': 'bob'})}.{sig}", "signature does not match"),
        "missing header": (None, "Missing Authorization header"),
        "empty bearer": ("Bearer", "Malformed Authorization header"),
        "basic scheme": ("Basic YWxpY2U6c2VjcmV0", "Malformed Authorization header"),
        "not a jwt": ("Bearer not-a-jwt", "Malformed Authorization header"),
        "garbage jwt": ("Bearer aaa.bbb.ccc", "could not be read"),
    }


def test_a_valid_token_is_served_as_its_subject(secured, issuer):
    lab, client = secured
    token = issuer.issue("alice", name="Alice")
    created = call(client, CREATE, token)
    assert created.status_code == 200 and "assistant_message" in created.text
    assert lab.sql("SELECT DISTINCT user_id FROM threads").user_id.tolist() == ["alice"]
    assert lab.inspect().context["user"] == {"name": "Alice", "id": "alice"}


def test_every_forged_or_broken_token_is_refused_with_nothing_read_or_written(secured, issuer):
    lab, client = secured
    call(client, CREATE, issuer.issue("bob"))  # something there to read
    before = everything(lab)
    for name, (header, sentence) in forged_tokens(issuer).items():
        for body in (CREATE, LIST):
            auth = {"Authorization": header} if header is not None else {}
            response = client.post("/chatkit", content=json.dumps(body), headers={"Content-Type": "application/json", **auth})
            assert response.status_code == 401, name
            assert response.headers["www-authenticate"].startswith("Bearer"), name
            error = response.json()["error"]
            assert error["code"] == "unauthorized" and sentence in error["message"], (name, error)
            assert "eyJ" not in error["message"]  # the token is never echoed
    assert everything(lab) == before


def test_alice_cannot_touch_bobs_threads_with_any_request_type(secured, issuer):
    lab, client = secured
    bob, alice = issuer.issue("bob"), issuer.issue("alice")
    events = [json.loads(line[6:]) for line in call(client, CREATE, bob).text.split("\n") if line.startswith("data: ")]
    thread_id = events[0]["thread"]["id"]
    item_ids = [e["item"]["id"] for e in events if e["type"] == "thread.item.done"]
    attachment = call(client, {"type": "attachments.create", "params": {"name": "b.txt", "size": 3, "mime_type": "text/plain"}}, bob).json()
    before = everything(lab)
    action = {"type": "approve", "payload": {}}
    attempts = [
        {"type": "threads.get_by_id", "params": {"thread_id": thread_id}},
        {"type": "items.list", "params": {"thread_id": thread_id}},
        {"type": "threads.update", "params": {"thread_id": thread_id, "title": "mine now"}},
        {"type": "threads.delete", "params": {"thread_id": thread_id}},
        {"type": "items.feedback", "params": {"thread_id": thread_id, "item_ids": item_ids, "kind": "negative"}},
        {"type": "attachments.delete", "params": {"attachment_id": attachment["id"]}},
        {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": MESSAGE}},
        {"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": {}}},
        {"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": item_ids[0]}},
        {"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": item_ids[-1], "action": action}},
        {"type": "threads.sync_custom_action", "params": {"thread_id": thread_id, "item_id": item_ids[-1], "action": action}},
        {"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": item_ids[-1], "input": {}}},
    ]
    for body in attempts:
        response = call(client, body, alice)
        if response.headers["content-type"].startswith("text/event-stream"):
            last = json.loads(response.text.strip().split("\n")[-1][6:])
            assert last["type"] == "error" and response.text.count("data: ") == 1, body["type"]
        elif body["type"] == "attachments.delete":  # idempotent: a foreign id deletes nothing
            assert (response.status_code, response.text) == (200, "{}")
        elif body["type"] == "items.list":  # as for a missing thread: an empty page reveals nothing
            assert (response.status_code, response.json()) == (200, {"data": [], "has_more": False})
        else:
            assert response.status_code in (404, 501), (body["type"], response.status_code, response.text)
        assert "hello" not in response.text, body["type"]  # none of bob's content leaks
    upload = client.put(f"/chatkit/attachments/{attachment['id']}/upload", content=b"xyz", headers={"Authorization": f"Bearer {alice}"})
    assert upload.status_code == 404
    assert call(client, LIST, alice).json()["data"] == []
    assert everything(lab) == before
    assert [t["id"] for t in call(client, LIST, bob).json()["data"]] == [thread_id]


def test_key_rotation_is_picked_up_and_a_down_key_server_keeps_cached_keys_working(secured, issuer):
    lab, client = secured
    old = issuer.issue("alice")
    assert call(client, LIST, old).status_code == 200
    issuer.rotate()  # a new kid: the verifier has never seen it
    new = issuer.issue("alice")
    assert call(client, LIST, new).status_code == 200
    assert call(client, LIST, old).status_code == 200  # the old key is still published
    issuer.rotate(keep_old=False)
    issuer.stop_serving()  # the key server goes down
    assert call(client, LIST, new).status_code == 200  # cached
    newest = issuer.issue("alice")
    refused = call(client, LIST, newest)
    assert refused.status_code == 401
    assert "could not be fetched" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("given", "sentence"), [
    (None, "JWKSVerifier takes the key set's URL (https://...) or the key set as a dict, not NoneType."),  # was a TypeError
    ('{"keys": []}', "JWKSVerifier takes the key set's URL (https://...) or the key set as a dict, not '{\"keys\": []}'."),  # was fetched as a URL
    ({}, "The key set is not a JWKS with usable keys (KeyError: 'keys')"),  # was a KeyError
    ({"keys": [{"kty": "XX"}]}, "The key set is not a JWKS with usable keys (MissingKeyError"),
])
def test_a_key_set_that_cannot_verify_anything_is_refused_when_it_is_given(given, sentence):
    with pytest.raises(ChatLabError, match=re.escape(sentence)):
        JWKSVerifier(given)


def test_login_keeps_the_issuers_claims_and_mcp_server_wants_a_url(make_lab):
    from chatkit_lab.auth import mcp_server

    lab = make_lab(warm=False)
    with pytest.raises(ChatLabError, match="The claim 'sub' is the issuer's to set"):  # a token for bob, while the lab said alice
        lab.login("alice", sub="bob")
    lab.login("alice", name="Alice")
    claims = lab.auth.verifier.verify(f"Bearer {lab.token}").claims
    assert claims["sub"] == "alice" and claims["name"] == "Alice"
    with pytest.raises(ChatLabError, match="mcp_server takes the server's http\\(s\\) URL"):
        mcp_server(None, credential="crm_token")


def test_jwks_verifier_rejects_symmetric_keys_even_when_the_jwks_offers_one():
    # A JWKS that (wrongly) publishes an "oct" key must not turn HS256 into a way in.
    secret = b"0123456789abcdef0123456789abcdef"
    doc = {"keys": [{"kty": "oct", "k": b64(secret), "kid": "hmac", "alg": "HS256"}]}
    head, payload = b64({"alg": "HS256", "kid": "hmac"}), b64({"sub": "alice", "exp": int(time.time()) + 60})
    sig = b64(hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest())
    with pytest.raises(AuthError, match="not allowed"):
        JWKSVerifier(doc).verify(f"Bearer {head}.{payload}.{sig}")


def test_lab_login_makes_python_requests_verify_like_the_widget(make_lab):
    lab = make_lab()
    lab.login("alice", name="Alice")
    assert lab.user_id == "alice" and "eyJ" not in repr(lab)
    token = lab.issuer.issue("alice")
    assert lab.request_sync(LIST, headers={"Authorization": f"Bearer {token}"}) == {"data": [], "has_more": False}
    with pytest.raises(ChatLabError, match="expired"):
        lab.request_sync(LIST, headers={"Authorization": f"Bearer {lab.issuer.issue('alice', ttl=-120)}"})
    with pytest.raises(AuthError, match="Missing"):
        lab.request_sync(LIST, headers={})


def test_a_user_id_that_is_not_a_name_is_refused_where_it_is_given(make_lab):
    # lab.user_id = "" (or 5, or None) was taken, and every later send failed with "The request
    # context has no user_id; pass a chatkit_lab.RequestContext" and a traceback under the cell.
    lab = make_lab(warm=False)
    thread = lab.send_sync("mine").thread_id
    for given in ("", "  ", 5, None, " alice", "a" * 257):
        with pytest.raises(ChatLabError, match="A user id "):
            lab.user_id = given
        if given is not None:  # login(None) asks who logs in
            with pytest.raises(ChatLabError, match="A user id "):
                lab.login(given)
    for call in (lambda: lab.send_sync("x", user_id=""), lambda: lab.request_sync(LIST, user_id=7), lambda: lab.replay(thread, user_id=""),
                 lambda: lab.decide_sync(thread, user_id="")):
        with pytest.raises(ChatLabError, match="A user id is a non-empty string"):
            call()
    assert lab.user_id == "local" and lab.send_sync("still works", thread).error is None
    assert lab.replay_many_sync(thread, progress=False)[0].source == thread  # one id, not its characters


def test_the_cli_with_jwks_url_refuses_requests_without_a_token(tmp_path, issuer):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", str(tmp_path / "cli.duckdb"), "--port", str(port),
         "--jwks-url", issuer.url, "--issuer", issuer.issuer, "--audience", issuer.audience],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert "/chatkit" in proc.stdout.readline()
        proc.stdout.readline()
        assert issuer.url in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/chatkit"
        refused = httpx.post(url, json=LIST, timeout=30)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        allowed = httpx.post(url, json=LIST, headers={"Authorization": f"Bearer {issuer.issue('carol')}"}, timeout=30)
        assert allowed.status_code == 200 and allowed.json()["data"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0


def test_the_cli_says_issuer_needs_a_jwks_url(tmp_path):
    done = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", str(tmp_path / "x.duckdb"), "--issuer", "me"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--jwks-url" in done.stderr
    # uvicorn served --port 99999 on 99999 % 65536, a port nobody asked for
    done = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", str(tmp_path / "x.duckdb"), "--port", "99999"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--port: 99999 is not a port: give 1 to 65535, or 0 for any free one" in done.stderr


def test_the_proxy_command_prints_the_port_it_got_and_refuses_an_upstream_that_is_no_url():
    """With --port 0 it printed http://127.0.0.1:0 and a serve command whose --jwks-url could not work."""
    bad = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "proxy", "--upstream", "localhost:8000"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--upstream 'localhost:8000' is not a URL" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "chatkit_lab.cli", "proxy", "--upstream", "http://127.0.0.1:9/chatkit", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        proc.stdout.readline()
        jwks = proc.stdout.readline().split("--jwks-url ")[1].split()[0]
        assert not jwks.startswith("http://127.0.0.1:0/")
        keys = httpx.get(jwks, timeout=30).json()["keys"]  # the printed command works as printed
        assert keys and keys[0]["kty"] == "RSA"
    finally:
        proc.send_signal(signal.SIGTERM)
        exit_code(proc)


def test_serve_warns_at_start_when_its_jwks_serves_no_keys(tmp_path):
    """It started as if all were well, and refused every request."""
    jwks = f"http://127.0.0.1:{free_port()}/jwks.json"
    proc = subprocess.Popen([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", str(tmp_path / "x.duckdb"), "--port", "0", "--jwks-url", jwks],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[3].startswith(f"warning: {jwks} gave no key set (ConnectError); every request is refused until it serves keys")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0


def test_login_with_a_token_from_the_labs_own_identity_provider(make_lab, issuer):
    lab = make_lab(verifier=JWKSVerifier(issuer.url, issuer=issuer.issuer, audience=issuer.audience))
    with pytest.raises(ChatLabError, match="login\\(token=...\\)"):
        lab.login("alice")  # this lab trusts the provider's keys, not a local issuer
    lab.login(token=issuer.issue("dora"))
    assert lab.user_id == "dora"
    with pytest.raises(AuthError, match="expired"):
        lab.login(token=issuer.issue("dora", ttl=-120))
