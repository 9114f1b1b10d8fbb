"""ChatWidget: a ChatKit chat in a notebook cell, tunnelled to the lab's in-kernel server."""

from __future__ import annotations

import asyncio
import inspect
import logging
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..errors import ChatLabError
from ..replay import fork
from ..transport.comm import CommTunnel

if TYPE_CHECKING:
    from .._runtime import Runtime

log = logging.getLogger("chatkit_lab")
STATIC = pathlib.Path(__file__).parent / "static"
CHATKIT_CDN = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"


class ChatWidget(anywidget.AnyWidget):
    """The chat UI: the official ``<openai-chatkit>`` component when it loads (``ui="chatkit"``),
    the built-in renderer otherwise (``ui="builtin"``); ``ui="auto"`` tries the first and falls
    back at once, saying why in ``status``.

    ``options`` go to the component (``title``, ``greeting``, ``placeholder``, and for the
    official one any ChatKit option such as ``theme``, ``startScreen``, ``composer``).
    ``client_tools`` maps tool names to Python callables answering ``client_tool_call`` items;
    ``client_effects`` maps effect names to Python callables ``(data)`` called for each
    ``client_effect`` event of this chat's replies (JavaScript handlers go in
    ``globalThis.chatkitLab.effects``, and the chat element fires a ``chatkit.effect`` event).
    Each request carries the page context (``share_page``: the notebook's path, title and first
    headings; ``share_active_cell``: the active cell's source, off by default) and, after
    ``lab.login``, the Bearer token, which is sent as a message and never stored in a trait.
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    ui = traitlets.Enum(("auto", "chatkit", "builtin"), default_value="auto").tag(sync=True)
    status = traitlets.Unicode("loading").tag(sync=True)
    thread_id = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    chatkit_url = traitlets.Unicode(CHATKIT_CDN).tag(sync=True)
    domain_key = traitlets.Unicode("domain_pk_localhost_dev").tag(sync=True)
    load_timeout = traitlets.Float(5.0).tag(sync=True)  # seconds to wait for the official component
    ack_timeout = traitlets.Float(30.0).tag(sync=True)  # seconds without an ack: "kernel restarted"
    options = traitlets.Dict().tag(sync=True)
    python_client_tools = traitlets.List(traitlets.Unicode()).tag(sync=True)
    python_client_effects = traitlets.List(traitlets.Unicode()).tag(sync=True)
    share_page = traitlets.Bool(True).tag(sync=True)  # notebook path, title and headings -> page context
    share_active_cell = traitlets.Bool(False).tag(sync=True)  # the active cell's source too
    warning = traitlets.Unicode("").tag(sync=True)  # shown above the chat: the lab's logs are failing, say

    def __init__(
        self,
        runtime: Runtime,
        *,
        client_tools: dict[str, Callable[..., Any]] | None = None,
        client_effects: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        """``runtime``: the lab's (``lab.chat()`` passes it); a ``ChatLab`` is accepted too."""
        unknown = sorted(set(kwargs) - set(type(self).class_trait_names()))
        if unknown:  # a typo (thread=) was dropped silently
            raise ChatLabError(f"The chat takes no {unknown[0]!r}; it takes ui, thread_id, options, client_tools, client_effects, "
                               "chatkit_url, domain_key, share_page, share_active_cell (and ipywidgets' layout).")
        for what, handlers in (("client_tools", client_tools), ("client_effects", client_effects)):
            if handlers is not None and (not isinstance(handlers, dict) or not all(isinstance(k, str) and callable(v) for k, v in handlers.items())):
                raise ChatLabError(f"{what}= maps a name to a Python function, such as {{\"get_selection\": get_selection}}.")
        super().__init__(**kwargs)
        self._runtime: Runtime = getattr(runtime, "runtime", runtime)
        self._client_tools = dict(client_tools or {})
        self._client_effects = dict(client_effects or {})
        self.python_client_tools = sorted(self._client_tools)
        self.python_client_effects = sorted(self._client_effects)
        self.observe(lambda change: self._runtime.view_switched(change["new"]), names=["thread_id"])
        self._runtime.view_switched(self.thread_id)  # the newest chat is the one in view
        self._tunnel = CommTunnel(self._runtime.server, self._runtime.loop.loop, self.send, auth=self._runtime.auth, limits=self._runtime.limits)
        self.on_msg(self._on_custom)
        self._runtime.add_view(self)

    def _on_custom(self, _widget: Any, content: Any, buffers: Any) -> None:
        # Runs on the kernel's main thread or a subshell thread: only hand over, never wait.
        try:
            if self._tunnel.on_message(content, buffers):
                return
            if isinstance(content, dict) and content.get("kind") == "hello":  # a view rendered: it needs the token
                self.send({"kind": "welcome", "model_id": self.model_id})
                self.send_token(self._runtime.token)
            elif isinstance(content, dict) and content.get("kind") == "client_tool":
                asyncio.run_coroutine_threadsafe(self._client_tool(content), self._runtime.loop.loop)
            elif isinstance(content, dict) and content.get("kind") == "client_effect":
                asyncio.run_coroutine_threadsafe(self._client_effect(content), self._runtime.loop.loop)
            elif isinstance(content, dict) and content.get("kind") == "fork":
                asyncio.run_coroutine_threadsafe(self._fork(content), self._runtime.loop.loop)
        except Exception:
            log.exception("widget message could not be handled")

    async def _client_tool(self, msg: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"kind": "client_tool_result", "id": msg.get("id")}
        handler = self._client_tools.get(msg.get("name", ""))
        try:
            if handler is None:
                raise LookupError(f"No Python client tool named {msg.get('name')!r}.")
            args = msg.get("arguments") or {}
            result = handler(**args) if inspect.iscoroutinefunction(handler) else await asyncio.to_thread(handler, **args)
            reply["result"] = await result if inspect.isawaitable(result) else result
        except Exception as exc:
            log.exception("client tool %s failed", msg.get("name"))
            reply["error"] = f"{type(exc).__name__}: {exc}"
        self.send(reply)

    async def _client_effect(self, msg: dict[str, Any]) -> None:
        handler = self._client_effects.get(msg.get("name", ""))
        if handler is None:
            return
        data = msg.get("data") or {}
        try:
            await handler(data) if inspect.iscoroutinefunction(handler) else await asyncio.to_thread(handler, data)
        except Exception as exc:  # the chat says so; the kernel and the reply go on
            log.warning("client effect %s failed: %s", msg.get("name"), exc, exc_info=True)
            self.show_warning(f"The client effect handler {msg.get('name')!r} failed: {type(exc).__name__}: {exc}")

    async def _fork(self, msg: dict[str, Any]) -> None:
        """Fork from a reply (or edit a message and send it again): copy the open thread up to an
        item, as the view's user; the view opens the copy."""
        try:
            token = msg.get("token")
            identity = await self._runtime.auth.identify({"authorization": f"Bearer {token}"} if token else {})
            before = msg.get("before") is True  # "edit and send again": the copy stops before the message
            thread_id = await fork(self._runtime, str(msg.get("thread_id")), str(msg.get("item_id")), identity.user_id, before=before)
            self.send({"kind": "forked", "thread_id": thread_id, "request": msg.get("request")})
        except Exception as exc:  # a sentence in the chat, never a traceback
            log.info("fork refused: %s", exc)
            self.send({"kind": "forked", "error": f"Could not fork this thread: {exc}", "request": msg.get("request")})

    def send_token(self, token: str | None) -> None:
        """Hand the views the Bearer token (a message, never a trait: traits are saved in the notebook)."""
        try:
            self.send({"kind": "auth", "token": token})
        except Exception:
            log.debug("widget is closed", exc_info=True)

    def show_events(self, thread_id: str | None, events: list[dict[str, Any]]) -> None:
        """Show events of a turn made elsewhere (``lab.send``) in this chat, live."""
        try:
            self.send({"kind": "thread_events", "thread_id": thread_id, "events": events})
        except Exception:
            log.debug("widget is closed", exc_info=True)

    def show_warning(self, message: str) -> None:
        """Show a warning above the chat (from any thread: traitlets sync it to the views)."""
        self.warning = message
