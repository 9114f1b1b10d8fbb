"""`chatkit-lab doctor` and `lab.doctor()`: whether this machine can run the lab, one line a check.

Each check says what it found and, when something is wrong, what to do. Only the checks the main
job needs (Python, the packages, the database, a configured model provider, a configured JWKS)
decide the exit code; the ChatKit CDN (the official web component; without it the built-in
renderer draws the chat), Chromium and PostgreSQL (for the test suite) are reported only.
"""

from __future__ import annotations

import glob
import html
import importlib.metadata
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx

from .models import Backend
from .store.database import unusable
from .store.schema import MIGRATIONS

PACKAGES = ("chatkit-lab", "openai-chatkit", "openai-agents", "duckdb", "anywidget", "jupyterlab")
NEEDED = {"chatkit-lab", "openai-chatkit", "openai-agents", "duckdb", "anywidget"}
_PID = re.compile(r"PID (\d+)")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def __str__(self) -> str:
        line = f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}" + (f" — {self.fix}" if self.fix and not self.ok else "")
        return line + (" (optional)" if not self.ok and not self.required else "")


@dataclass
class Report:
    """The checks in order; ``ok`` when every check the main job needs passed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def __str__(self) -> str:
        verdict = "the lab can run here" if self.ok else "the lab cannot run here until the ✗ lines marked needed are fixed"
        return "\n".join([*map(str, self.checks), verdict])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{'✓' if c.ok else '✗'}</td><td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td>"
            f"<td>{html.escape(c.fix if not c.ok else '')}</td><td>{'needed' if c.required else 'optional'}</td></tr>" for c in self.checks)
        return f"<table><tr><th></th><th>check</th><th>found</th><th>to do</th><th></th></tr>{rows}</table><p>{html.escape(str(self).splitlines()[-1])}</p>"


def diagnose(db: str | Path | None, backend: Backend, *, jwks_url: str | None = None, cdn_url: str | None = None, timeout: float = 3.0,
             database_in_use: bool = False) -> Report:
    """Every check, for the database ``db`` and the model ``backend``. ``database_in_use``: the
    caller holds the file (a lab's own doctor), so a lock is no finding. ``cdn_url``: where the
    official ChatKit component is served from (the widget's default)."""
    if cdn_url is None:
        try:
            from .widget import CHATKIT_CDN as cdn_url
        except ImportError:  # anywidget missing: its package line says so
            pass
    checks = [_python(), *_packages()]
    if db is not None:
        checks.append(_postgres(str(db), timeout) if str(db).startswith(("postgresql://", "postgres://")) else _database(Path(db), database_in_use))
    checks.append(_backend(backend, timeout))
    if jwks_url:
        checks.append(jwks_check(jwks_url, timeout))
    if cdn_url is not None:
        checks.append(_cdn(cdn_url, timeout))
    checks += [_program("Chromium (browser tests)", shutil.which("chromium"), "apt-get install chromium"),
               _program("PostgreSQL (test suite)", next(iter(glob.glob("/usr/lib/postgresql/*/bin/initdb")), None) or shutil.which("initdb"),
                        "apt-get install postgresql")]
    return Report(checks)


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("Python", sys.version_info >= (3, 11), f"{version} at {sys.executable}", "use Python 3.11 or newer")


def _packages() -> list[Check]:
    checks = []
    for name in PACKAGES:
        try:
            checks.append(Check(name, True, importlib.metadata.version(name), required=name in NEEDED))
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(name, False, "not installed", f"pip install {name}" if name != "chatkit-lab" else "pip install -e .",
                                required=name in NEEDED))
    return checks


def _database(path: Path, in_use: bool) -> Check:
    name = "database"
    if str(path) == ":memory:":
        return Check(name, True, "in memory: nothing is kept when the lab closes")
    if not path.exists():
        folder = path.absolute().parent
        while not folder.exists():  # the lab makes the missing folders
            folder = folder.parent
        if folder.is_dir() and os.access(folder, os.W_OK):
            return Check(name, True, f"{path} does not exist yet: it is created on first use")
        return Check(name, False, f"{path} cannot be created: {folder} is not a folder this user can write", "choose a db= path in a folder you can write")
    if not os.access(path, os.W_OK):
        return Check(name, False, f"{path} is read-only for this user", "fix its permissions, or copy it and open the copy")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if in_use:
            return Check(name, True, f"{path}, open in this lab")
        text = str(exc)
        if "lock" in text.lower():
            pid = _PID.search(text)
            who = f"process {pid.group(1)}" + _command(pid.group(1)) if pid else "another process"
            return Check(name, False, f"{path} is locked by {who}", "close the lab or kernel holding it (lab.close()), or use another file")
        # Read-only, DuckDB refuses a CSV or JSON file it would open as a view in memory.
        return Check(name, False, str(unusable(str(path), None if "in-memory" in text else exc)).rstrip("."),
                     "or upgrade duckdb, if a newer one wrote it" if "version" in text.lower() else "")
    try:
        found = {n for (n,) in con.execute("SELECT name FROM _migrations").fetchall()}
    except duckdb.Error:
        found = set()
    finally:
        con.close()
    pending = [fn.__name__ for fn in MIGRATIONS if fn.__name__ not in found]
    if pending:
        return Check(name, True, f"{path}: {len(MIGRATIONS) - len(pending)} of {len(MIGRATIONS)} migrations; {', '.join(pending)} are applied on first open")
    return Check(name, True, f"{path}: writable, migrated ({len(MIGRATIONS)} of {len(MIGRATIONS)})")


def _postgres(dsn: str, timeout: float) -> Check:
    from .store.postgres_database import problem, where_of
    from .store.postgres_schema import MIGRATIONS as PG_MIGRATIONS

    try:
        import psycopg
    except ImportError:
        return Check("database", False, "a PostgreSQL URL, and psycopg is not installed", "pip install 'chatkit-lab[postgres]'")
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout)), autocommit=True) as con:
            try:
                found = {n for (n,) in con.execute("SELECT name FROM _migrations").fetchall()}
            except psycopg.errors.UndefinedTable:
                found = set()
    except (psycopg.Error, OSError) as exc:
        return Check("database", False, *problem(dsn, exc))
    where = where_of(dsn).removeprefix("postgresql://")
    pending = [name for name, _ in PG_MIGRATIONS if name not in found]
    done = len(PG_MIGRATIONS) - len(pending)
    return Check("database", True, f"PostgreSQL at {where}: reachable, {done} of {len(PG_MIGRATIONS)} migrations"
                 + (f"; {', '.join(pending)} are applied on first use" if pending else ""))


def _command(pid: str) -> str:
    try:
        return " (" + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:80] + ")"
    except OSError:
        return ""


def _backend(backend: Backend, timeout: float) -> Check:
    name = "model"
    if backend.kind in ("offline", "custom"):
        return Check(name, True, backend.description)
    url = (backend.base_url or "https://api.openai.com/v1").rstrip("/") + "/models"
    key = os.environ.get("OPENAI_API_KEY") if backend.kind == "openai" else getattr(backend.client, "api_key", None)
    try:
        reply = httpx.get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=timeout)
    except httpx.HTTPError as exc:
        return Check(name, False, f"{backend.description}: {url} is unreachable ({type(exc).__name__})",
                     "check the URL and the network, or run offline (no OPENAI_API_KEY, no base_url)")
    if reply.status_code in (401, 403):
        return Check(name, False, f"{backend.description}: the provider refused the API key ({reply.status_code})", "set a valid OPENAI_API_KEY")
    return Check(name, True, f"{backend.description}: reachable ({reply.status_code} from {url})")


def jwks_check(url: str, timeout: float) -> Check:
    """Whether ``url`` serves a key set (``doctor``, and ``serve`` as it starts)."""
    try:
        keys = httpx.get(url, timeout=timeout).json().get("keys")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return Check("JWKS", False, f"{url} gave no key set ({type(exc).__name__})", "check --jwks-url: it serves {\"keys\": [...]}")
    if not isinstance(keys, list) or not keys:
        return Check("JWKS", False, f"{url} has no keys", "publish the signing keys at that URL")
    return Check("JWKS", True, f"{url}: {len(keys)} key{'s' if len(keys) != 1 else ''}")


def _cdn(url: str, timeout: float) -> Check:
    try:
        status: Any = httpx.head(url, timeout=timeout, follow_redirects=True).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    if status == 200:
        return Check("ChatKit CDN", True, f"{url} is reachable: ui='chatkit' can load the official component", required=False)
    return Check("ChatKit CDN", False, f"{url} is not reachable ({status}): the chat uses the built-in renderer", "nothing, unless you want ui='chatkit'",
                 required=False)


def _program(name: str, where: str | None, install: str) -> Check:
    return Check(name, where is not None, where or "not found", install, required=False)
