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

MIN_LENGTH = 8  # shorter values would redact ordinary words
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
        if key := os.environ.get("OPENAI_API_KEY"):
            self.watch(key, "OPENAI_API_KEY")
        _ALL.add(self)

    def __repr__(self) -> str:  # names only, never values
        return f"Secrets({sorted({name for _, name in self._values})})"

    def set(self, name: str, value: str, *, user_id: str | None = None) -> None:
        """Give tools ``value`` as ``context.secrets[name]`` (for ``user_id`` only, if given)."""
        self._values[(user_id, name)] = value
        self.watch(value, name)

    def watch(self, value: str, name: str = "secret") -> None:
        """Redact ``value`` everywhere without handing it to tools (an API key, a token)."""
        if not isinstance(value, str) or len(value) < MIN_LENGTH:
            return
        self._names[value] = name
        escaped = json.dumps(value)[1:-1]  # the form it takes inside stored JSON
        if escaped != value:
            self._names[escaped] = name
        ordered = sorted(self._names, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered)))

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


_ALL: weakref.WeakSet[Secrets] = weakref.WeakSet()


def redact(text: str) -> str:
    """Redact with the patterns and every lab's secrets (for logs, which no lab owns)."""
    for secrets in list(_ALL):
        text = secrets.redact(text)
    if not _ALL:
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message (and traceback) with secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it; keep the raw message redacted
            message = str(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_filter(names: tuple[str, ...] = ("chatkit_lab", "chatkit_lab.tracing", "openai.agents", "uvicorn.error", "mcp")) -> None:
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())

