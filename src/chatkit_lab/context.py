"""What a turn knows about who asks and where: the request context, the lab's context values and
providers, and the strategies that put that context in front of the model.

Strategies (``lab.context.strategy``), all carrying the same ``<context>`` block:

* ``"instructions"``: appended to the system prompt (simple; changes the prompt every turn)
* ``"hidden"``: a ChatKit hidden context item, placed just before the user's message
* ``"input"``: an app-context ``developer`` message before the user's message (the prompt stays
  the same, so provider prompt caching keeps working)
* ``"tool"``: a ``get_context`` tool the model calls when it wants the context
* ``"none"``: nothing but the ``{user.name}``-style placeholders, which every strategy fills
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .auth.secrets import redact
from .errors import ChatLabError

log = logging.getLogger("chatkit_lab")

STRATEGIES = ("instructions", "hidden", "input", "tool", "none")
CREDENTIAL_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\|([^{}|]*))?\}")


@dataclass
class RequestContext:
    """Who is asking, from where, and with what; built once per request.

    The store scopes every read and write to ``user_id``; tools reach this object as
    ``ctx.context.request_context``. ``secrets`` (for server-side credentials) is never recorded.
    """

    user_id: str = "local"
    metadata: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)  # the verified token's claims
    user: dict[str, Any] = field(default_factory=dict)  # userInfo, overridden by the claims
    page: dict[str, Any] = field(default_factory=dict)  # pageContext from the widget or page
    headers: dict[str, str] = field(default_factory=dict)  # without credential headers
    cookies: dict[str, str] = field(default_factory=dict, repr=False)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    guardrails: list[Any] = field(default_factory=list, repr=False)  # this request's input verdicts (guardrails.Report)


def build_context(
    body: bytes | str,
    *,
    user_id: str,
    claims: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
) -> RequestContext:
    """The context for one request: the identity, the body's top-level ``metadata`` (where the
    widget puts ``userInfo`` and ``pageContext``) and, over HTTP, headers and cookies.

    Shared by every transport, so the widget, HTTP and ``lab.send`` see the same thing.
    """
    try:
        parsed = json.loads(body)
        metadata = parsed.get("metadata") if isinstance(parsed, dict) else None
    except (ValueError, RecursionError):
        metadata = None  # the request itself is rejected later, with a clear message
    metadata = metadata if isinstance(metadata, dict) else {}
    claims = dict(claims or {})
    user_info: dict[str, Any] = metadata["userInfo"] if isinstance(metadata.get("userInfo"), dict) else {}
    page: dict[str, Any] = metadata["pageContext"] if isinstance(metadata.get("pageContext"), dict) else {}
    verified: dict[str, Any] = {k: claims[k] for k in ("name", "email", "roles", "scope") if k in claims}
    return RequestContext(
        user_id=user_id,
        metadata=metadata,
        claims=claims,
        user={**user_info, **verified, "id": user_id},
        page=dict(page),
        headers={k.lower(): v for k, v in (headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS},
        cookies=dict(cookies or {}),
    )


Provider = Callable[..., Mapping[str, Any]]


class ContextInjection:
    """The lab's own context (``lab.context``): fixed values (``update``), providers evaluated at
    every turn, and the strategy that puts them in front of the model. Not to be confused with
    the ``RequestContext`` of one request.

    A provider is a callable returning a dict, with no argument or the ``RequestContext``:
    ``lab.context.provide(lambda: {"df": df.describe().to_string()})`` lets the chat see live
    kernel state. A failing provider puts a sentence in the context instead of failing the turn.
    """

    def __init__(self, strategy: str = "instructions") -> None:
        self.values: dict[str, Any] = {}
        self.providers: list[Provider] = []
        self.strategy = strategy

    @property
    def strategy(self) -> str:
        return self._strategy

    @strategy.setter
    def strategy(self, value: str) -> None:
        if value not in STRATEGIES:
            raise ChatLabError(f"Unknown context strategy {value!r}; choose one of {', '.join(STRATEGIES)}.")
        self._strategy = value

    def __repr__(self) -> str:
        return f"ContextInjection(strategy={self.strategy!r}, values={sorted(self.values)}, providers={len(self.providers)})"

    def update(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self.values.update(values or {}, **more)

    def provide(self, provider: Provider) -> Provider:
        """Add a provider (usable as a decorator); returns it."""
        self.providers.append(provider)
        return provider

    def clear(self) -> None:
        self.values.clear()
        self.providers.clear()

    async def snapshot(self, request: RequestContext) -> dict[str, Any]:
        """The context of one turn: user, page, fixed values, then every provider's values."""
        result: dict[str, Any] = {"user": request.user, "page": request.page, **self.values}
        if self.providers:
            result.update(await asyncio.to_thread(self._provided, request))
        return result

    def _provided(self, request: RequestContext) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for provider in self.providers:
            name = getattr(provider, "__name__", "provider")
            try:
                wants_request = bool(inspect.signature(provider).parameters)
                provided = provider(request) if wants_request else provider()
                values.update(provided or {})
            except Exception as exc:
                log.warning("context provider %s failed: %s: %s", name, type(exc).__name__, exc)
                log.debug("context provider %s traceback", name, exc_info=True)
                # The model reads it: a provider's error that quotes a key (an API client's, say) must not hand it over.
                values[f"{name}_error"] = redact(f"The context provider {name} failed: {type(exc).__name__}: {exc}")
        return values


def render(template: str, context: Mapping[str, Any]) -> str:
    """Fill ``{user.name}``-style placeholders from ``context``; an unknown or empty one becomes
    its default, ``{user.name|the user}``, or nothing. Other braces (JSON examples in a prompt)
    are left alone."""

    def value(match: re.Match[str]) -> str:
        default = match.group(2) or ""
        found: Any = context
        for part in match.group(1).split("."):
            if not isinstance(found, Mapping) or part not in found:
                return default
            found = found[part]
        if found is None or found == "":
            return default
        return found if isinstance(found, str) else json.dumps(found, default=str, ensure_ascii=False)

    return _PLACEHOLDER.sub(value, template)


def context_block(context: Mapping[str, Any]) -> str:
    """The context as the model reads it: one ``key: value`` per line, text blocks indented.
    Empty values are left out, and so is a user known only by id: no context, no block."""
    lines = ["<context>"]
    for key, v in context.items():
        if v in (None, "", {}, []) or (key == "user" and isinstance(v, Mapping) and set(v) <= {"id"}):
            continue
        if isinstance(v, str) and "\n" in v:
            lines += [f"{key}: |", *("  " + line for line in v.splitlines())]
        else:
            lines.append(f"{key}: {v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)}")
    return "\n".join([*lines, "</context>"]) if len(lines) > 1 else ""


def hidden_context_message(block: str) -> dict[str, Any]:
    # The text ChatKit's converter makes of a HiddenContextItem.
    text = f"Hidden context for the agent (not shown to the user):\n<HiddenContext>\n{block}\n</HiddenContext>"
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def app_context_message(block: str) -> dict[str, Any]:
    return {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": f"App context:\n{block}"}]}


def inject(strategy: str, instructions: str | None, items: list[Any], context: Mapping[str, Any]) -> tuple[str | None, list[Any]]:
    """The instructions and input items the model receives under ``strategy``."""
    if instructions:
        instructions = render(instructions, context)
    block = context_block(context)
    if not block:
        return instructions, items
    if strategy == "instructions":
        return f"{instructions or ''}\n\n{block}".strip(), items
    if strategy in ("hidden", "input"):
        message = hidden_context_message(block) if strategy == "hidden" else app_context_message(block)
        at = _last_user_index(items)
        return instructions, [*items[:at], message, *items[at:]]
    return instructions, items


def _last_user_index(items: list[Any]) -> int:
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        role = item.get("role") if isinstance(item, dict) else getattr(item, "role", None)
        if role == "user":
            return index
    return len(items)


def context_tool(context: Mapping[str, Any]) -> Any:
    """The ``get_context`` tool of the ``"tool"`` strategy, answering with this turn's context."""
    from agents import function_tool

    @function_tool(name_override="get_context")
    def get_context() -> str:
        """The user's identity, the page they are on and the app's live state."""
        return context_block(context)

    return get_context
