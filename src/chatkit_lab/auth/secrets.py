"""Named secrets: handed to tools through the request context, redacted wherever text is written.

Every row the lab writes (items, threads, turns, traces, spans, model inputs) and every log
record passes through ``redact``. A known value becomes ``[REDACTED:<name>]``, so a leak stays
visible (the inspector shows *where* a token went) while the token itself never reaches the
database, the logs or an export. Patterns catch credentials nobody registered: JWTs, OpenAI-style
API keys, ``Bearer`` header values.
"""

from __future__ import annotations

import json
import logging
import os
import re
import weakref
from typing import Any

from ..errors import ChatLabError
from .jwt import checked_user_id

MIN_LENGTH = 4  # shorter values cannot be told from ordinary text: set() refuses them
WORD_LENGTH = 8  # values shorter than this are redacted only as whole words
ESCAPE_DEPTH = 4  # JSON inside JSON inside JSON...: tool arguments hold a value escaped twice
PATTERNS = [
    (re.compile(r"eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]*"), "[REDACTED:jwt]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "[REDACTED:api_key]"),
    (re.compile(r"(?i)\b(bearer\s+)(?!\[REDACTED)[A-Za-z0-9._~+/-]{8,}=*"), r"\1[REDACTED:bearer]"),
]


class Secrets:
    """Secrets by name, for everyone or for one ``user_id``; ``redact`` removes them from text."""

    def __init__(self) -> None:
        self._values: dict[tuple[str | None, str], str] = {}
        self._pattern: re.Pattern[str] | None = None
        self._names: dict[str, str] = {}
        self.version = 0  # counts the values watched; a memo of redacted text is good for one version
        key = os.environ.get("OPENAI_API_KEY", "")
        if len(key.strip()) >= MIN_LENGTH:  # a shorter one is no real key, and no reason to fail
            self.watch(key, "OPENAI_API_KEY")
        _ALL.add(self)

    def __repr__(self) -> str:  # names only, never values
        return f"Secrets({sorted({name for _, name in self._values})})"

    def set(self, name: str, value: str, *, user_id: str | None = None) -> None:
        """Give tools ``value`` as ``context.secrets[name]`` (for ``user_id`` only, if given)."""
        if not isinstance(name, str) or not name.strip():
            raise ChatLabError(f"A secret's name is what tools read it by (context.secrets['crm_token']): a non-empty string, not {name!r}.")
        if user_id is not None:
            checked_user_id(user_id)  # another value would match no request: the tool would find no secret
        self.watch(value, name)  # first: a value it refuses must not reach the tools unredacted
        self._values[(user_id, name)] = value

    def watch(self, value: str, name: str = "secret") -> None:
        """Redact ``value`` everywhere without handing it to tools (an API key, a token): as
        written, and in every form JSON gives it, escaped up to four levels deep."""
        if not isinstance(value, str):
            raise ChatLabError(f"The secret {name!r} is {type(value).__name__}, not a string; give the credential as text.")
        if len(value.strip()) < MIN_LENGTH:
            raise ChatLabError(
                f"The secret {name!r} is shorter than {MIN_LENGTH} characters, so it could not be told apart from "
                "ordinary text and redacted; use the real credential."
            )
        for form in _escaped_forms(value):
            self._names[form] = name
        parts = []
        for form in sorted(self._names, key=len, reverse=True):
            word = len(form) < WORD_LENGTH  # a short value only as a whole word, not inside others
            parts.append(rf"(?<![\w]){re.escape(form)}(?![\w])" if word else re.escape(form))
        self._pattern = re.compile("|".join(parts))
        self.version += 1  # after the pattern: whoever reads this version redacts with it

    def for_user(self, user_id: str) -> dict[str, str]:
        shared = {name: v for (who, name), v in self._values.items() if who is None}
        return shared | {name: v for (who, name), v in self._values.items() if who == user_id}

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: f"[REDACTED:{self._names[m.group(0)]}]", text)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def _escaped_forms(value: str) -> set[str]:
    """``value`` and what JSON makes of it when it is escaped once, twice..., with non-ASCII
    characters kept or written as ``\\uXXXX`` (Python's json and pydantic differ)."""
    forms, layer = {value}, {value}
    for _ in range(ESCAPE_DEPTH):
        layer = {json.dumps(v, ensure_ascii=ascii_only)[1:-1] for v in layer for ascii_only in (True, False)}
        forms |= layer
    return forms


_ALL: weakref.WeakSet[Secrets] = weakref.WeakSet()


def redact(text: str) -> str:
    """Redact with the patterns and every lab's secrets (for logs, which no lab owns)."""
    for secrets in list(_ALL):
        text = secrets.redact(text)
    if not _ALL:
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
    return text


def _redacted_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message and traceback redacted, and its arguments merged in."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: logging reports it; keep the raw message redacted
        message = str(record.msg)
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    record.msg, record.args = redact(message), None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


_installed = False


def install_log_redaction() -> None:
    """Redact every log record this process makes, whatever its logger or handler (chatkit's,
    uvicorn's, a user's own): records are rewritten as they are created."""
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redacted_record(make(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True
