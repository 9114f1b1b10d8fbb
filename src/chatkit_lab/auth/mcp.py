"""MCP tool credentials injected on the server: the model never sees them.

``mcp_server(url, credential="crm_token")`` connects an Agents SDK MCP server whose every HTTP
request carries ``Authorization: Bearer <token>``, where the token is the secret named
``credential`` of the user whose turn is running (``lab.secrets.set(...)``). The lab's server
puts that user's secrets in ``current_secrets`` at the start of each turn; the SDK's run task
and the MCP transport (mcp 2.x makes requests in the caller's context) inherit it, so
concurrent turns of different users send their own tokens on one shared connection.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

import httpx2

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
    from agents.mcp import MCPServerStreamableHttp

    params: dict[str, Any] = {"url": url, "timeout": timeout}
    if credential:
        params["auth"] = SecretAuth(credential)
    return MCPServerStreamableHttp(params, name=name or url, cache_tools_list=True, client_session_timeout_seconds=timeout, **kwargs)

