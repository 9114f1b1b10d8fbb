"""The httpOnly cookie proxy in front of a lab that verifies tokens against the proxy's JWKS:
a real browser signs in and chats while page script cannot see the token."""

import json
import threading
import time

import httpx
import pytest
import uvicorn

from chatkit_lab import MirrorModel
from chatkit_lab.auth import JWKSVerifier, LocalIssuer
from chatkit_lab.auth.proxy import COOKIE, create_proxy_app

from ..conftest import free_port

CREATE = {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "/words 300"}], "attachments": [], "inference_options": {}}}}


def start(app, port):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the proxy did not start"
        time.sleep(0.01)
    return server


@pytest.fixture
def proxied(make_lab):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    issuer = LocalIssuer(issuer="chatkit-lab-proxy")
    verifier = JWKSVerifier(f"{base}/.well-known/jwks.json", issuer="chatkit-lab-proxy", audience="chatkit-lab")
    lab = make_lab(model=MirrorModel(delay=0.002), verifier=verifier)
    server = start(create_proxy_app(lab.serve(port=0) + "/chatkit", issuer=issuer), port)
    yield lab, base
    server.should_exit = True


def test_a_browser_signs_in_and_chats_while_script_cannot_read_the_token(page, proxied):
    lab, base = proxied
    page.goto(base)
    page.get_by_label("User").fill("alice")
    page.get_by_role("button", name="Sign in").click()
    page.locator("[data-testid='chat'] .ckl-input").wait_for()
    assert page.locator("#user").inner_text() == "alice"
    box = page.locator(".ckl-input")
    box.fill("hello through the proxy")
    box.press("Enter")
    page.wait_for_function("() => document.querySelector('.ckl-assistant')?.textContent.includes('you said: \"hello through the proxy\"')")
    assert page.evaluate("document.cookie") == ""  # httpOnly: invisible to script
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Lax", False)  # Secure only over https
    assert cookie["value"] not in page.content()
    assert lab.threads_df(all_users=True).user_id.tolist() == ["alice"]
    seen = lab.inspect()
    assert seen.context["user"] == {"name": "alice", "id": "alice"} and seen.context["page"]["url"] == base + "/"
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("User").wait_for()
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert page.errors == []


def test_no_cookie_cross_site_posts_and_a_down_upstream_get_sentences_and_streams_are_unbuffered(proxied):
    lab, base = proxied
    with httpx.Client(base_url=base, timeout=30) as client:
        refused = client.post("/api/chatkit", json=CREATE)
        assert refused.status_code == 401 and "Not signed in" in refused.json()["error"]["message"]
        assert client.post("/login", data={"user": "eve"}, headers={"Origin": "https://evil.example"}).status_code == 403
        assert client.post("/login", data={"user": ""}).status_code == 400
        assert client.post("/login", content="{oops", headers={"content-type": "application/json"}).status_code == 400
        signed_in = client.post("/login", data={"user": "bob"})
        assert signed_in.status_code == 303 and COOKIE in client.cookies
        assert "httponly" in signed_in.headers["set-cookie"].lower() and "samesite=lax" in signed_in.headers["set-cookie"].lower()
        cross = client.post("/api/chatkit", json=CREATE, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403 and lab.threads_df(all_users=True).empty  # nothing written
        chunks = 0
        with client.stream("POST", "/api/chatkit", json=CREATE, headers={"Origin": base}) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            body = b""
            for chunk in streamed.iter_raw():
                chunks += 1
                body += chunk
        assert chunks > 3  # forwarded as it arrives, not buffered into one piece
        assert "w300" in body.decode() and lab.threads_df(all_users=True).user_id.tolist() == ["bob"]
        client.cookies.set(COOKIE, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.")  # a forged cookie is refused upstream
        forged = client.post("/api/chatkit", json={"type": "threads.list", "params": {}})
        assert forged.status_code == 401 and json.loads(forged.text)["error"]["code"] == "unauthorized"
        lab.stop_serving()
        down = client.post("/api/chatkit", json={"type": "threads.list", "params": {}})
        assert down.status_code == 502 and "could not be reached" in down.json()["error"]["message"]
