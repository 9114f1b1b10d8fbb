"""The widget tunnel, kernel side: ChatKit requests over a widget's comm instead of a port.

The browser sends ``{"kind": "request", "id", "body", "headers"}`` and ``{"kind": "cancel",
"id"}``; a file upload (the second phase of ChatKit's two-phase attachments) is a request with
``upload`` (the upload URL) and the file's bytes as the message's one binary buffer. Comm
handlers may run on the kernel's main thread or on a subshell thread, so ``on_message`` only
hands the message to the lab's loop. There each request runs as its own
task and answers with JSON frames ``{"id", "seq", "kind"}``, all sent from the loop's thread so
their order holds:

* ``ack``: accepted (the browser shows "queued: kernel busy" until it arrives)
* ``head``: ``status`` and ``content_type``, as an HTTP response would carry
* ``chunk``: ``data``, the body text; SSE frames are batched (``batch_ms``, ``batch_bytes``) so
  thousands of deltas a second neither flood the comm nor lose text
* ``end``: the body is complete (``cancelled: true`` after a cancel)
* ``error``: the request could not be served at all (``status``, ``message``)

A closed lab's requests get their answer at once, from the comm's thread: a 503 whose sentence
says to run the cell that creates the lab again (its loop is gone, so nothing else would answer).

A cancel cancels the request's task, which is ChatKit's path for keeping a partial answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from chatkit.server import ChatKitServer
from chatkit.store import NotFoundError

from ..auth.jwt import Authenticator
from ..context import RequestContext, build_context
from ..errors import LAB_CLOSED, AuthError, LabClosedError
from .limits import Limits
from .requests import error_body, handle_request

log = logging.getLogger("chatkit_lab")

Frame = dict[str, Any]
UPLOAD_PATH = re.compile(r"/chatkit/attachments/([^/?#]+)/upload(?:[?#].*)?$")


class CommTunnel:
    """Serves one widget's requests on ``loop`` through ``server``; ``send`` delivers a frame."""

    def __init__(
        self,
        server: ChatKitServer[Any],
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Frame], None],
        *,
        auth: Authenticator | None = None,
        limits: Limits | None = None,
        batch_ms: float = 16.0,
        batch_bytes: int = 64 * 1024,
    ) -> None:
        self.server, self.loop, self.send = server, loop, send
        self.auth = auth or Authenticator()
        self.limits = limits or Limits()
        self.batch_s, self.batch_bytes = batch_ms / 1000, batch_bytes
        self._tasks: dict[str, asyncio.Task[None]] = {}  # touched only on the loop's thread

    # -- any thread --------------------------------------------------------------------------
    def on_message(self, content: Any, buffers: list[Any] | None = None) -> bool:
        """Hand a tunnel message to the loop; False when it is not one (other custom messages)."""
        if not isinstance(content, dict) or content.get("kind") not in ("request", "cancel"):
            return False
        request_id = content.get("id")
        if not isinstance(request_id, str) or not request_id:
            log.warning("tunnel message without an id: %r", content.get("kind"))
            return True
        if not self.loop.is_running():
            if content["kind"] == "request":
                frames = _Frames(self.send, request_id)
                frames.emit("ack")
                frames.refuse(LabClosedError.status, LabClosedError.code, LAB_CLOSED)
            return True
        if content["kind"] == "request":
            headers: dict[str, str] = content["headers"] if isinstance(content.get("headers"), dict) else {}
            if isinstance(content.get("upload"), str):
                data = bytes(buffers[0]) if buffers else b""
                self.loop.call_soon_threadsafe(self._start, request_id, None, headers, (content["upload"], data))
            else:
                self.loop.call_soon_threadsafe(self._start, request_id, content.get("body"), headers)
        else:
            self.loop.call_soon_threadsafe(self._cancel, request_id)
        return True

    # -- the loop's thread -------------------------------------------------------------------
    def _start(self, request_id: str, body: Any, headers: dict[str, str], upload: tuple[str, bytes] | None = None) -> None:
        if request_id in self._tasks:
            return  # a re-sent request (the browser retried an unacknowledged send)
        task = self.loop.create_task(self._serve(request_id, body, headers, upload))
        self._tasks[request_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(request_id, None))

    def _cancel(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()

    async def _serve(self, request_id: str, body: Any, headers: dict[str, str], upload: tuple[str, bytes] | None) -> None:
        frames = _Frames(self.send, request_id)
        frames.emit("ack")
        try:
            try:
                identity = await self.auth.identify(headers)
            except AuthError as exc:
                return frames.refuse(401, "unauthorized", str(exc))
            if upload is not None:
                return await self._upload(frames, *upload, identity.user_id)
            if not isinstance(body, str):
                return frames.refuse(400, "invalid_request", "The request body must be a JSON string.")
            # (a character is at most 4 bytes: short bodies need no encoding to be measured)
            if len(body) > self.limits.max_body_bytes // 4 and len(body.encode()) > self.limits.max_body_bytes:
                return frames.refuse(413, "too_large", str(self.limits.body_too_large()))
            context = build_context(body, user_id=identity.user_id, claims=identity.claims, headers=headers)
            reply = await handle_request(self.server, body, context, self.limits)
            frames.emit("head", status=reply.status, content_type=reply.content_type)
            if reply.stream is None:
                frames.emit("chunk", data=reply.body.decode())
            else:
                await self._stream(frames, reply.stream)
            frames.emit("end")
        except asyncio.CancelledError:
            frames.emit("end", cancelled=True)
            raise
        except Exception as exc:  # handle_request maps errors; this is the transport itself failing
            log.exception("tunnel request %s failed", request_id)
            frames.emit("error", status=500, message=f"The kernel could not serve the request ({type(exc).__name__}).")

    async def _upload(self, frames: _Frames, url: str, data: bytes, user_id: str) -> None:
        match = UPLOAD_PATH.search(url)
        write = getattr(self.server.attachment_store, "write_attachment_bytes", None)
        if match is None or write is None:
            return frames.refuse(404, "not_found", "Uploads go to /chatkit/attachments/{id}/upload on a server that keeps attachment bytes.")
        if len(data) > self.limits.max_attachment_bytes:
            return frames.refuse(413, "too_large", str(self.limits.file_too_large(len(data))))
        try:
            attachment = await write(match.group(1), data, RequestContext(user_id=user_id))
        except NotFoundError as exc:
            return frames.refuse(404, "not_found", str(exc))
        frames.emit("head", status=200, content_type="application/json")
        frames.emit("chunk", data=attachment.model_dump_json(exclude_none=True, context={"exclude_metadata": True}))
        frames.emit("end")

    async def _stream(self, frames: _Frames, stream: Any) -> None:
        pending: list[bytes] = []
        size = 0
        flush_at: float | None = None
        timer: asyncio.TimerHandle | None = None

        def flush() -> None:
            nonlocal size, flush_at, timer
            if timer is not None:
                timer.cancel()
                timer = None
            if pending:
                frames.emit("chunk", data=b"".join(pending).decode())
                pending.clear()
            size, flush_at = 0, None

        try:
            async for chunk in stream:
                pending.append(chunk)
                size += len(chunk)
                if size >= self.batch_bytes or self.batch_s <= 0:
                    flush()
                elif flush_at is None:
                    # The first chunk of a batch leaves within batch_ms, even if the stream pauses.
                    flush_at = self.loop.time() + self.batch_s
                    timer = self.loop.call_at(flush_at, flush)
        finally:
            flush()


class _Frames:
    """Numbered frames of one request."""

    def __init__(self, send: Callable[[Frame], None], request_id: str) -> None:
        self.send, self.request_id, self.seq = send, request_id, 0

    def emit(self, kind: str, **fields: Any) -> None:
        try:
            self.send({"id": self.request_id, "seq": self.seq, "kind": kind, **fields})
        except Exception:  # a closed comm (kernel shutting down, widget gone) must not crash the loop
            log.warning("could not send %s frame for request %s", kind, self.request_id, exc_info=True)
        self.seq += 1

    def refuse(self, status: int, code: str, message: str) -> None:
        self.emit("head", status=status, content_type="application/json")
        self.emit("chunk", data=error_body(code, message).decode())
        self.emit("end")
