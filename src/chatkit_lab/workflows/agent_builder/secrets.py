"""Credentials an export embeds in a tool (an MCP ``server_url`` with ``?api_key=…``, a header):
removed before the graph exists, so they never reach DuckDB, a log or the screen."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import ir

REDACTED = "REDACTED"
_SECRET_NAME = re.compile(r"(key|token|secret|password|passwd|auth|credential|signature|sig)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|pk_|ghp_|gho_|xox[abp]-|AKIA|Bearer\s)|^[A-Za-z0-9_\-]{32,}$")


def clean_url(url: str) -> tuple[str, list[str]]:
    """The URL without credentials, and what was removed (the names, never the values)."""
    parts = urlsplit(url)
    removed: list[str] = []
    netloc = parts.netloc
    if "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
        removed.append("user:password")
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_NAME.search(name) or _SECRET_VALUE.search(value):
            query.append((name, REDACTED))
            removed.append(f"query parameter {name!r}")
        else:
            query.append((name, value))
    path = parts.path
    for segment in path.split("/"):
        if _SECRET_VALUE.search(segment):
            path = path.replace(segment, REDACTED)
            removed.append("a path segment")
    return urlunsplit((parts.scheme, netloc, path, urlencode(query, safe=REDACTED), parts.fragment)), removed


def clean_tool(spec: dict[str, Any], line: int, export: ir.Export) -> dict[str, Any]:
    """``spec`` with embedded credentials replaced by REDACTED, each removal a "secret" finding."""
    spec = dict(spec)
    label = spec.get("server_label") or spec.get("serverLabel") or spec.get("type")
    for key in ("server_url", "serverUrl"):
        if isinstance(spec.get(key), str):
            spec[key], removed = clean_url(spec[key])
            for what in removed:
                export.note("secret", line, f"The MCP server {label!r} had a credential in its URL ({what}); it was removed. "
                                            "Give the credential to the lab's MCP support instead (it is injected server-side).")
    for key in ("headers", "authorization"):
        value = spec.get(key)
        if isinstance(value, dict):
            spec[key] = {name: REDACTED for name in value}
            export.note("secret", line, f"The MCP server {label!r} had {key} ({', '.join(sorted(value))}); their values were removed.")
        elif isinstance(value, str) and value:
            spec[key] = REDACTED
            export.note("secret", line, f"The MCP server {label!r} had an {key} value; it was removed.")
    return spec
