"""MCP tool credentials injected on the server: the model never sees them.

``mcp_server(url, credential="crm_token")`` connects an Agents SDK MCP server whose every HTTP
request carries ``Authorization: Bearer <token>``, where the token is the secret named
``credential`` of the user whose turn is running (``lab.secrets.set(...)``). The lab's server
puts that user's secrets in ``current_secrets`` at the start of each turn; the SDK's run task
and the MCP transport (mcp 2.x makes requests in the caller's context) inherit it, so
concurrent turns of different users send their own tokens on one shared connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Mapping, Sequence
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

import httpx2

from .._loop import LoopThread
from ..errors import ChatLabError

log = logging.getLogger("chatkit_lab")

current_secrets: ContextVar[Mapping[str, str]] = ContextVar("chatkit_lab_secrets", default=MappingProxyType({}))


class SecretAuth(httpx2.Auth):
    """Sets ``Authorization: Bearer`` from the running turn's secret ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        token = current_secrets.get().get(self.name)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


def mcp_server(url: str, *, credential: str | None = None, name: str | None = None, timeout: float = 10.0, **kwargs: Any) -> Any:
    """An ``MCPServerStreamableHttp`` for ``url`` (tools listed once), authenticated per turn with
    the secret named ``credential``. Pass it to ``ChatLab(mcp_servers=[...])``."""
    from agents.mcp import MCPServerStreamableHttp, MCPServerStreamableHttpParams

    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ChatLabError(f"mcp_server takes the server's http(s) URL, such as http://127.0.0.1:8000/mcp, not {url!r}.")
    params = MCPServerStreamableHttpParams(url=url, timeout=timeout)
    if credential:
        params["auth"] = SecretAuth(credential)
    return MCPServerStreamableHttp(params, name=name or url, cache_tools_list=True, client_session_timeout_seconds=timeout, **kwargs)


class MCPConnections:
    """Keeps the agent's MCP servers connected on the lab's loop.

    anyio requires a connection to be closed by the task that opened it, so one task per server
    connects, waits for the lab to close, and cleans up.
    """

    def __init__(self, servers: Sequence[Any], loop: LoopThread) -> None:
        self.servers, self.loop = list(servers), loop
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def connect(self, timeout: float = 30) -> None:
        if self.servers:
            self.loop.call(self._start(timeout))

    async def _start(self, timeout: float) -> None:  # noqa: ASYNC109 (one deadline per server, not for the whole call)
        self._stop = asyncio.Event()
        for server in self.servers:
            ready = asyncio.Event()
            task = asyncio.create_task(self._hold(server, ready, self._stop))
            self._tasks.append(task)
            await asyncio.wait_for(ready.wait(), timeout)
            if task.done():
                task.result()  # the connection failed: raise its sentence

    async def _hold(self, server: Any, ready: asyncio.Event, stop: asyncio.Event) -> None:
        try:
            await server.connect()
        except Exception as exc:
            ready.set()
            raise ChatLabError(f"Could not connect to the MCP server {server.name!r}: {type(exc).__name__}: {exc}") from None
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.cleanup()

    def close(self) -> None:
        if self._stop is not None and self.loop.running:
            try:
                self.loop.call(self._close(), timeout=15)
            except Exception:  # closing the lab must not fail on a stuck MCP server
                log.warning("an MCP connection did not close cleanly", exc_info=True)
        self._stop = None

    async def _close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
