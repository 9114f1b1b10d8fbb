"""One request path for every transport: validate, process, map errors to HTTP terms.

Whatever carries the request (HTTP, the widget's comm tunnel, ``lab.send``), the reply is a
``Reply``: a JSON body with a status, or an SSE byte stream. No traceback ever leaves here.
Invalid requests and failing JSON requests get ``{"error": {"code", "message"}}`` with
400/404/500; a streaming request always gets a stream, and an exception before or during it
(an unknown thread, no pending tool call) becomes a final ``error`` event, never a truncated
stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import AttachmentsCreateReq, AttachmentsDeleteReq
from pydantic import ValidationError

from ..errors import ChatLabError
from ..server import LabServer, request_adapter
from .lab_requests import is_lab_request, lab_request_adapter, process_lab_request
from .limits import Limits

DEFAULT_LIMITS = Limits()

log = logging.getLogger("chatkit_lab")

SSE = "text/event-stream"
JSON = "application/json"


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_reply(status: int, code: str, message: str) -> Reply:
    return Reply(status, JSON, error_body(code, message))


def error_event(message: str, allow_retry: bool = False) -> bytes:
    event = {"type": "error", "code": "custom", "message": message, "allow_retry": allow_retry}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def describe_invalid(body: bytes | str, exc: ValidationError) -> str:
    """A sentence naming what is wrong with a request body."""
    errors = exc.errors(include_url=False)
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    kind = first.get("type")
    if kind == "json_invalid":
        return f"The request body is not valid JSON ({first.get('ctx', {}).get('error', first.get('msg'))})."
    if kind in ("model_type", "model_attributes_type", "dict_type") and not first.get("loc"):
        return "The request body must be a JSON object like {\"type\": ..., \"params\": {...}}."
    if kind == "union_tag_not_found":
        return "The request has no \"type\" field; expected one of the ChatKit request types."
    if kind == "union_tag_invalid":
        ctx = first.get("ctx", {})
        return f"Unknown request type {ctx.get('tag')!r}. Expected one of: {ctx.get('expected_tags')}."
    try:
        op = json.loads(body).get("type")
    except (ValueError, AttributeError, RecursionError):
        op = None
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or '(body)'}: {e['msg']}" for e in errors[:5]
    )
    return f"Invalid params for {op}: {problems}."


def _raised_by_chatkit(exc: BaseException) -> bool:
    """ChatKit's server signals a request that does not fit the thread (a retry after an item
    that is no user message, an answered structured input) with ValueError; only those are 400s."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "chatkit.server"


def classify(exc: BaseException) -> tuple[int, str, str, bool]:
    """(HTTP status, error code, sentence, whether a retry can help) for an exception, by type.
    Every 500 is logged with its traceback; the client gets a sentence without one."""
    status, code, message, retry = _described(exc)
    if status >= 500 and status != 501:
        log.error("request failed: %s", message, exc_info=exc)
    return status, code, message, retry


def _described(exc: BaseException) -> tuple[int, str, str, bool]:
    match exc:
        case ChatLabError():
            status, code, message, retry = exc.status, exc.code, str(exc), exc.retryable
        case NotFoundError():
            status, code, message, retry = 404, "not_found", str(exc) or "Not found.", False
        case NotImplementedError():
            message = str(exc).split(". See")[0] or "This request type is not supported by this server."
            status, code, retry = 501, "not_supported", False
        case ValueError() if _raised_by_chatkit(exc):
            status, code, message, retry = 400, "invalid_request", str(exc), False
        case _:
            status, code, retry = 500, "internal_error", True
            message = f"The server failed with {type(exc).__name__}; the traceback is in the server log."
    return status, code, message, retry


def _unless_expected(record: logging.LogRecord) -> bool:
    """ChatKit logs every exception of a stream with its traceback, an unknown thread too; in a
    notebook Python prints that under the cell. The client gets the sentence (``classify``), and
    failures of the server (500) keep their traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    return exc is None or _described(exc)[0] >= 500


logging.getLogger("chatkit").addFilter(_unless_expected)


async def handle_request(server: ChatKitServer[Any], body: bytes | str, context: Any, limits: Limits | None = None) -> Reply:
    """Run one ChatKit request through ``server`` and return what a client should receive;
    ``limits`` (the defaults unless given) refuse what a request may not carry. chatkit-lab's
    own ``lab.*`` requests (``lab_requests``) take the same path on a LabServer."""
    if isinstance(server, LabServer) and is_lab_request(body):
        return await _handle_lab_request(server, body, context)
    try:
        parsed = request_adapter.validate_json(body)
    except ValidationError as exc:
        return error_reply(400, "invalid_request", describe_invalid(body, exc))
    try:
        (limits or DEFAULT_LIMITS).check(parsed)
    except ChatLabError as exc:
        return error_reply(*classify(exc)[:3])
    if isinstance(parsed, (AttachmentsCreateReq, AttachmentsDeleteReq)) and server.attachment_store is None:
        return error_reply(501, "not_supported", "Attachments are not supported by this server.")
    try:
        if isinstance(server, LabServer):
            result = await server.process(parsed, context)  # parsed once, here
        else:
            result = await server.process(body, context)
    except Exception as exc:
        return error_reply(*classify(exc)[:3])
    if not isinstance(result, StreamingResult):
        return Reply(200, JSON, result.json)
    return Reply(200, SSE, stream=_guarded(aiter(result)))


async def _handle_lab_request(server: LabServer, body: bytes | str, context: Any) -> Reply:
    try:
        parsed = lab_request_adapter.validate_json(body)
    except ValidationError as exc:
        return error_reply(400, "invalid_request", describe_invalid(body, exc))
    try:
        return Reply(200, JSON, await process_lab_request(server.store, parsed, context))
    except Exception as exc:
        return error_reply(*classify(exc)[:3])


async def _guarded(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield chunk
    except Exception as exc:
        _, _, message, retry = classify(exc)
        yield error_event(message, retry)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def parse_sse(chunk: bytes) -> list[dict[str, Any]]:
    """The events in one or more ``data: ...\\n\\n`` frames."""
    return [json.loads(line[6:]) for line in chunk.decode().split("\n") if line.startswith("data: ")]
