"""The httpOnly cookie proxy: the seeds' Next.js pattern, in Python (Starlette).

The browser never holds the token where script can read it. ``/login`` issues a JWT (from the
proxy's own ``LocalIssuer``, whose keys it publishes at ``/.well-known/jwks.json``) and sets it
as an httpOnly, SameSite=Lax cookie (Secure over https). ``/api/chatkit`` reads the cookie on the
server, forwards the body to the ChatKit endpoint with ``Authorization: Bearer`` and streams the
answer back unbuffered. Posts from another origin are refused. ``/`` is a page with the built-in
chat renderer.

The demo login trusts the name typed in: put your identity provider's check there.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import AuthError
from ..transport.http import read_limited
from .jwt import LocalIssuer

COOKIE = "chatkit_token"
STATIC = Path(__file__).parent.parent / "widget" / "static"  # the widget's bundle, without importing anywidget


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def same_origin(request: Request) -> bool:
    """A post from this site: its Origin (or, without one, Sec-Fetch-Site) says so."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == f"{request.url.scheme}://{request.url.netloc}"
    return request.headers.get("sec-fetch-site") in (None, "same-origin", "none")


def create_proxy_app(
    upstream: str, *, issuer: LocalIssuer | None = None, ttl: int = 8 * 3600, secure: bool | None = None, max_body: int = 25 * 2**20,
) -> Starlette:
    """A proxy for the ChatKit endpoint at ``upstream`` (e.g. ``http://127.0.0.1:8000/chatkit``).
    ``secure``: the cookie's Secure flag; by default, set when the request came over https."""
    issuer = issuer or LocalIssuer()
    verifier = issuer.verifier()
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))

    def who(request: Request) -> str | None:
        token = request.cookies.get(COOKIE)
        try:
            return verifier.verify(f"Bearer {token}").user_id if token else None
        except AuthError:
            return None

    async def page(request: Request) -> Response:
        user = who(request)
        if user is None:
            return HTMLResponse(LOGIN_PAGE)
        return HTMLResponse(CHAT_PAGE.replace("{user}", html.escape(user)))

    async def login(request: Request) -> Response:
        if not same_origin(request):
            return _error(403, "cross_site", "Sign-in from another site was refused.")
        body = await read_limited(request, 64 * 1024)
        if body is None:
            return _error(413, "too_large", "A sign-in form is small; this one is over 64 KiB.")
        raw = body.decode("utf-8", "replace")
        try:
            form = json.loads(raw) if request.headers.get("content-type", "").startswith("application/json") else {
                k: v[0] for k, v in parse_qs(raw).items()
            }
        except ValueError:
            form = None
        user = str(form.get("user", "")).strip() if isinstance(form, dict) else ""
        if not user or len(user) > 64:
            return _error(400, "bad_request", "Sign in with a user name of 1 to 64 characters.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE, issuer.issue(user, ttl=ttl, name=user), max_age=ttl, httponly=True, samesite="lax",
            secure=request.url.scheme == "https" if secure is None else secure, path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return _error(403, "cross_site", "Sign-out from another site was refused.")
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def chatkit(request: Request) -> Response:
        if not same_origin(request):
            return _error(403, "cross_site", "Requests from another site are refused.")
        token = request.cookies.get(COOKIE)
        if not token:
            return _error(401, "unauthorized", "Not signed in: sign in first (POST /login).")
        body = await read_limited(request, max_body)
        if body is None:
            return _error(413, "too_large", f"The request body is larger than {max_body / 2**20:g} MiB, this proxy's limit.")
        forwarded = client.build_request(
            "POST", upstream, content=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
        try:
            answer = await client.send(forwarded, stream=True)
        except httpx.HTTPError as exc:
            return _error(502, "upstream_unreachable", f"The chat server at {upstream} could not be reached ({type(exc).__name__}).")
        return StreamingResponse(
            answer.aiter_raw(), status_code=answer.status_code, media_type=answer.headers.get("content-type"),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, background=BackgroundTask(answer.aclose),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def jwks(request: Request) -> Response:
        return JSONResponse(issuer.jwks)

    def static(name: str, media_type: str) -> Route:
        return Route(f"/static/{name}", lambda request: FileResponse(STATIC / name, media_type=media_type))

    return Starlette(
        routes=[
            Route("/", page),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/api/chatkit", chatkit, methods=["POST"]),
            Route("/.well-known/jwks.json", jwks),
            static("widget.js", "text/javascript"),
            static("widget.css", "text/css"),
        ],
        lifespan=lifespan,
    )


_HEAD = '<!doctype html><html><head><meta charset="utf-8"><title>chatkit-lab</title><link rel="stylesheet" href="/static/widget.css"></head>'
LOGIN_PAGE = _HEAD + """<body><main style="max-width:24rem;margin:4rem auto;font-family:system-ui">
<h1>chatkit-lab</h1><form method="post" action="/login">
<label>User <input name="user" autocomplete="username" required maxlength="64"></label>
<button type="submit">Sign in</button></form></main></body></html>"""
CHAT_PAGE = _HEAD + """<body style="font-family:system-ui;margin:0">
<header style="display:flex;gap:1rem;align-items:center;padding:.5rem 1rem">
<span>Signed in as <b id="user">{user}</b></span>
<form method="post" action="/logout"><button type="submit">Sign out</button></form></header>
<div id="chat" data-testid="chat" style="height:calc(100vh - 4rem)"></div>
<script type="module">
import { mountStandalone } from "/static/widget.js";
mountStandalone(document.getElementById("chat"), { url: "/api/chatkit", options: { title: "chatkit-lab" } });
</script></body></html>"""

