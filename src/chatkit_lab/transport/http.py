"""The HTTP endpoint: POST /chatkit (JSON or SSE, as the official web component expects),
GET /health, and the upload target of two-phase attachments."""

from __future__ import annotations

from typing import Any

from chatkit.server import ChatKitServer
from chatkit.store import NotFoundError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._version import __version__
from ..auth.jwt import Authenticator, Identity
from ..context import RequestContext, build_context
from ..errors import AuthError
from .requests import error_body, handle_request

MAX_BODY = 25 * 1024 * 1024


def _error(status: int, code: str, message: str) -> Response:
    return Response(error_body(code, message), status_code=status, media_type="application/json")


def unauthorized(exc: AuthError) -> Response:
    response = _error(401, "unauthorized", str(exc))
    response.headers["WWW-Authenticate"] = 'Bearer realm="chatkit-lab"'
    return response


def create_app(server: ChatKitServer[Any], *, auth: Authenticator | None = None, user_id: str = "local", backend: str = "") -> Starlette:
    """A Starlette app serving ``server``. With ``auth`` requiring tokens, a request without a
    valid ``Authorization: Bearer`` JWT gets a 401 and nothing is read or written; otherwise
    every request acts as ``user_id``."""
    auth = auth or Authenticator(user_id=user_id)

    async def identify(request: Request) -> Identity | Response:
        try:
            return await auth.identify(request.headers)
        except AuthError as exc:
            return unauthorized(exc)

    async def read_body(request: Request) -> bytes | Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _error(413, "too_large", f"The request body is larger than {MAX_BODY // 2**20} MiB.")
        return await request.body()

    async def chatkit(request: Request) -> Response:
        identity = await identify(request)
        if isinstance(identity, Response):
            return identity
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        context = build_context(
            body, user_id=identity.user_id, claims=identity.claims, headers=request.headers, cookies=request.cookies
        )
        reply = await handle_request(server, body, context)
        if reply.stream is None:
            return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
        # No buffering anywhere between the agent and the client.
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(reply.stream, media_type=reply.content_type, headers=headers)

    async def upload(request: Request) -> Response:
        store = server.store
        if not hasattr(store, "write_attachment_bytes"):
            return _error(501, "not_supported", "This server's store does not keep attachment bytes.")
        identity = await identify(request)
        if isinstance(identity, Response):
            return identity
        body = await read_body(request)
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
        return JSONResponse({"status": "ok", "version": __version__, "backend": backend})

    return Starlette(
        routes=[
            Route("/chatkit", chatkit, methods=["POST"]),
            Route("/chatkit/attachments/{attachment_id}/upload", upload, methods=["PUT", "POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
