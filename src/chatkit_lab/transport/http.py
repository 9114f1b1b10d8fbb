"""The HTTP endpoint: POST /chatkit (JSON or SSE, as the official web component expects),
GET /health, and the upload target of two-phase attachments.

Before anything is read: the ``Host`` header must be one of ``allowed_hosts`` (loopback by
default, so a DNS-rebinding page cannot reach the server), a browser request from another site
is refused (``Origin`` / ``Sec-Fetch-Site``, unless listed in ``allowed_origins``), and
``/chatkit`` takes ``application/json`` (a cross-site ``text/plain`` form post needs no CORS
preflight; another type is taken only from the server's own origin). Bodies are counted as they are read, whatever ``Content-Length`` says.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from chatkit.server import ChatKitServer
from chatkit.store import NotFoundError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._version import __version__
from ..auth.jwt import Authenticator, Identity
from ..context import RequestContext, build_context
from ..errors import AuthError, DatabaseUnavailableError
from .limits import Limits, MiB
from .requests import error_body, handle_request
from .shared_window import SharedWindow

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _error(status: int, code: str, message: str) -> Response:
    return Response(error_body(code, message), status_code=status, media_type="application/json")


class Throttle:
    """Per-user rate limits (a moving window in this process's memory, or ``shared`` by every
    process on one PostgreSQL database): over one, a 429 with ``Retry-After`` and a sentence;
    nothing of the request is read or written."""

    def __init__(self, rates: list[Any], shared: SharedWindow | None = None) -> None:
        from limits import storage, strategies

        self.rates, self.shared = rates, shared
        self.window = strategies.MovingWindowRateLimiter(storage.MemoryStorage()) if rates and shared is None else None

    def _wait(self, rate: Any, user_id: str) -> float | None:
        """None when the hit is allowed, else the seconds until it would be."""
        if self.shared is not None:
            return self.shared.hit(rate, user_id)
        assert self.window is not None
        if self.window.hit(rate, user_id):
            return None
        return self.window.get_window_stats(rate, user_id).reset_time - time.time()

    def refusal(self, user_id: str) -> Response | None:
        for rate in self.rates:
            try:
                wait = self._wait(rate, user_id)
            except DatabaseUnavailableError as exc:  # the shared window's database: say so, as any request would
                return _error(exc.status, exc.code, str(exc))
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                response = _error(429, "rate_limited", f"Too many requests: this server takes {rate} from each user. Try again in {seconds} s.")
                response.headers["Retry-After"] = str(seconds)
                return response
        return None

    def described(self) -> str | None:
        shared = " (shared by every server on the database)" if self.shared is not None else ""
        return "; ".join(f"{rate} per user{shared}" for rate in self.rates) or None


def unauthorized(exc: AuthError) -> Response:
    response = _error(401, "unauthorized", str(exc))
    response.headers["WWW-Authenticate"] = 'Bearer realm="chatkit-lab"'
    return response


def _hostname(host_header: str) -> str:
    return (urlsplit(f"//{host_header}").hostname or "").lower()


async def read_limited(request: Request, most: int) -> bytes | None:
    """The body, or None when it is larger than ``most`` bytes: counted as it is read (a chunked
    body has no Content-Length), and never held beyond the limit."""
    if int(request.headers.get("content-length") or 0) > most:
        return None
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > most:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return b""  # the client is gone: nothing will read the answer
    return b"".join(chunks)


def create_app(
    server: ChatKitServer[Any], *, auth: Authenticator | None = None, user_id: str = "local", backend: str = "",
    limits: Limits | None = None, allowed_hosts: Sequence[str] = LOOPBACK, allowed_origins: Sequence[str] = (),
    shared_window: SharedWindow | None = None,
) -> Starlette:
    """A Starlette app serving ``server``. With ``auth`` requiring tokens, a request without a
    valid ``Authorization: Bearer`` JWT gets a 401 and nothing is read or written; otherwise
    every request acts as ``user_id``. ``allowed_hosts``: the names this server answers to
    (``"*"`` for any); ``allowed_origins``: other sites whose pages may call it. ``shared_window``:
    rate limits counted in PostgreSQL, across every process serving it."""
    auth = auth or Authenticator(user_id=user_id)
    limits = limits or Limits()
    throttle = Throttle(limits.rates(), shared_window)
    hosts = {h.lower().strip("[]") for h in allowed_hosts}
    origins = {o.rstrip("/").lower() for o in allowed_origins}

    def refused(request: Request, *, json_only: bool = False) -> Response | None:
        host = request.headers.get("host", "")
        if "*" not in hosts and _hostname(host) not in hosts:
            return _error(421, "host_not_allowed", f"This server does not answer to the host {host!r}. "
                          "Start it with --allowed-host for that name (loopback names are allowed by default).")
        origin = request.headers.get("origin")
        same_site = origin is not None and urlsplit(origin).netloc.lower() == host.lower()
        if origin is not None and origin.lower() != "null" and not same_site and origin.rstrip("/").lower() not in origins:
            return _error(403, "cross_site", f"Requests from pages on {origin} are not allowed; start the server with --allowed-origin {origin} to allow them.")
        if origin is None and request.headers.get("sec-fetch-site") == "cross-site":
            return _error(403, "cross_site", "Cross-site requests are not allowed.")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if json_only and kind not in ("", "application/json") and not same_site:
            # A cross-site form or text/plain post needs no CORS preflight: only a JSON body (or a
            # client that names no type, which no browser form does) is taken unless same-origin.
            return _error(415, "unsupported_media_type", "POST /chatkit takes a JSON body: send Content-Type: application/json.")
        return None

    async def identify(request: Request) -> Identity | Response:
        try:
            return await auth.identify(request.headers)
        except AuthError as exc:
            return unauthorized(exc)

    async def read_body(request: Request, most: int, what: str) -> bytes | Response:
        body = await read_limited(request, most)
        if body is None:
            return _error(413, "too_large", f"The {what} is larger than {most / MiB:g} MiB, this server's limit.")
        return body

    async def chatkit(request: Request) -> Response:
        if (refusal := refused(request, json_only=True)) is not None:
            return refusal
        identity = await identify(request)
        if isinstance(identity, Response):
            return identity
        if (refusal := throttle.refusal(identity.user_id)) is not None:
            return refusal
        body = await read_body(request, limits.max_body_bytes, "request body")
        if isinstance(body, Response):
            return body
        context = build_context(
            body, user_id=identity.user_id, claims=identity.claims, headers=request.headers, cookies=request.cookies
        )
        reply = await handle_request(server, body, context, limits)
        if reply.stream is None:
            return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
        # No buffering anywhere between the agent and the client.
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(reply.stream, media_type=reply.content_type, headers=headers)

    async def upload(request: Request) -> Response:
        store = server.store
        if not hasattr(store, "write_attachment_bytes"):
            return _error(501, "not_supported", "This server's store does not keep attachment bytes.")
        if (refusal := refused(request)) is not None:
            return refusal
        identity = await identify(request)
        if isinstance(identity, Response):
            return identity
        if (refusal := throttle.refusal(identity.user_id)) is not None:
            return refusal
        body = await read_body(request, limits.max_attachment_bytes, "uploaded file")
        if isinstance(body, Response):
            return body
        try:
            attachment = await store.write_attachment_bytes(
                request.path_params["attachment_id"], body, RequestContext(user_id=identity.user_id)
            )
        except NotFoundError as exc:
            return _error(404, "not_found", str(exc))
        return Response(attachment.model_dump_json(exclude_none=True, context={"exclude_metadata": True}), media_type="application/json")

    async def health(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        return JSONResponse({"status": "ok", "version": __version__, "backend": backend, "rate_limit": throttle.described(),
                             "gc_frozen_objects": gc.get_freeze_count()})

    return Starlette(
        routes=[
            Route("/chatkit", chatkit, methods=["POST"]),
            Route("/chatkit/attachments/{attachment_id}/upload", upload, methods=["PUT", "POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
