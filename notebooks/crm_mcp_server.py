"""A tiny CRM as a real MCP server (streamable HTTP) whose tool needs a token.

Run: python crm_mcp_server.py PORT (0: any free port). It prints "ready <url>" once it listens. The token is accepted
as an Authorization header (the server-side pattern) or as a `token` argument (the seed's
"credentials in the system prompt" pattern, shown in 03_auth_patterns.ipynb to explain why it leaks).
"""

import logging
import os
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

TOKEN = os.environ.get("CRM_TOKEN", "crm-demo-7f3a9c21e5")
ORDERS = {"acme": ["#1001 anvils", "#1002 rockets"], "globex": ["#2001 hammocks"]}

server = MCPServer("crm")


@server.tool()
async def lookup_orders(customer: str, ctx: Context, token: str = "") -> str:
    """Open orders of a customer."""
    header = (ctx.headers or {}).get("authorization", "")
    if token != TOKEN and header != f"Bearer {TOKEN}":
        return "unauthorized: this CRM needs a valid token"
    orders = ORDERS.get(customer.lower(), [])
    return f"{customer}: {len(orders)} open orders ({', '.join(orders) or 'none'})"


if __name__ == "__main__":
    logging.getLogger("mcp").setLevel(logging.WARNING)  # no session chatter on stderr
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    config = uvicorn.Config(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
    web = uvicorn.Server(config)
    original = web.startup

    async def startup(sockets=None):
        await original(sockets)
        bound = web.servers[0].sockets[0].getsockname()[1]  # port 0: the one the OS chose
        print(f"ready http://127.0.0.1:{bound}/mcp", flush=True)

    web.startup = startup
    web.run()
