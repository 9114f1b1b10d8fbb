"""What one request may carry, checked the same way for every transport.

The transports count the body bytes they actually read (``max_body_bytes``, chunked uploads
included); ``check`` looks at a parsed request: page sizes, message length, attachments per
message and their declared size. Every refusal is a sentence with a 400 or 413, and nothing is
written for a refused request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatkit.types import (
    AttachmentsCreateReq,
    ItemsListReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsListReq,
)

from ..errors import ChatLabError, InvalidRequestError

MiB = 2**20


class TooLargeError(ChatLabError):
    """The request is larger than this server accepts."""

    status = 413
    code = "too_large"


@dataclass(frozen=True)
class Limits:
    """``ChatLab(limits=Limits(...))`` or ``chatkit-lab serve --max-...``."""

    max_body_bytes: int = 25 * MiB  # a request body, or one uploaded file
    max_message_chars: int = 100_000  # the text of one user message
    max_attachments: int = 10  # per message (each is sent to the model again every turn)
    max_attachment_bytes: int = 20 * MiB
    max_page: int = 200  # threads.list and items.list `limit`
    rate: str | None = None  # requests per user over HTTP, in the `limits` library's notation: "60/minute", "5/second;100/hour"

    def __post_init__(self) -> None:
        if self.rate is not None:
            self.rates()  # a clear error now, not at the first request

    def rates(self) -> list[Any]:
        """``rate`` parsed (each item a ``limits`` rate); empty without one."""
        if self.rate is None:
            return []
        from limits import parse_many

        try:
            return list(parse_many(self.rate))
        except ValueError:
            raise InvalidRequestError(f"A rate limit is written like '60/minute' or '5/second;100/hour', not {self.rate!r}.") from None

    def body_too_large(self) -> TooLargeError:
        return TooLargeError(f"The request body is larger than {self.max_body_bytes / MiB:g} MiB, this server's limit.")

    def file_too_large(self, size: int) -> TooLargeError:
        return TooLargeError(f"The attachment is {size:,} bytes; this server accepts files up to {self.max_attachment_bytes / MiB:g} MiB.")

    def check(self, request: Any) -> None:
        """Refuse what ``request`` asks beyond these limits, with a sentence."""
        match request:
            case ThreadsListReq() | ItemsListReq():
                limit = request.params.limit
                if limit is not None and not 1 <= limit <= self.max_page:
                    raise InvalidRequestError(f"limit must be between 1 and {self.max_page} (got {limit}); page on with `after`.")
            case AttachmentsCreateReq():
                size = request.params.size
                if size < 0:
                    raise InvalidRequestError(f"An attachment's size cannot be negative (got {size}).")
                if size > self.max_attachment_bytes:
                    raise self.file_too_large(size)
            case ThreadsCreateReq() | ThreadsAddUserMessageReq():
                message = request.params.input
                chars = sum(len(getattr(part, "text", "") or "") for part in message.content)
                if chars > self.max_message_chars:
                    raise TooLargeError(f"The message is {chars:,} characters long; this server accepts up to {self.max_message_chars:,}.")
                if len(message.attachments) > self.max_attachments:
                    raise TooLargeError(f"The message carries {len(message.attachments)} attachments; this server accepts up to {self.max_attachments}.")
