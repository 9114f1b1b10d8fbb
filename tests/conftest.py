import asyncio
import concurrent.futures
import socket
import subprocess
from datetime import datetime, timedelta

import pytest
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    InferenceOptions,
    UserMessageItem,
    UserMessageTextContent,
)

from chatkit_lab import ChatLab, RequestContext

ALICE = RequestContext(user_id="alice")
BOB = RequestContext(user_id="bob")
T0 = datetime(2026, 1, 1, 12, 0, 0)


def run(coro):
    """Run a coroutine to completion on a fresh loop in its own thread (safe even when the calling
    thread already runs a loop, as Playwright's sync API does)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def serve_once(server, body, context=ALICE):
    """One request through ``handle_request``: (status, JSON body) or (status, stream events)."""
    import json

    from chatkit_lab.transport.requests import handle_request, parse_sse

    async def go():
        reply = await handle_request(server, json.dumps(body), context)
        if reply.stream is None:
            return reply.status, json.loads(reply.body)
        return reply.status, [e for chunk in [c async for c in reply.stream] for e in parse_sse(chunk)]

    return run(go())


def user_message(item_id: str, thread_id: str, text: str = "hi", at: datetime = T0) -> UserMessageItem:
    return UserMessageItem(
        id=item_id, thread_id=thread_id, created_at=at, content=[UserMessageTextContent(text=text)],
        attachments=[], inference_options=InferenceOptions(),
    )


def assistant_message(item_id: str, thread_id: str, text: str = "hello", at: datetime = T0) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id, thread_id=thread_id, created_at=at, content=[AssistantMessageContent(text=text, annotations=[])]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_code(proc: subprocess.Popen, timeout: float = 20) -> int | None:
    """``proc``'s exit code, or None if it has not exited within ``timeout`` s: then it is killed,
    so a failing test leaves no server running."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "lab.duckdb"


@pytest.fixture
def make_lab(db_path):
    labs = []

    def make(**kwargs):
        kwargs.setdefault("db", db_path)
        lab = ChatLab(**kwargs)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture
def issuer():
    """A local token issuer serving its JWKS on 127.0.0.1 (``issuer.url``)."""
    from chatkit_lab.auth.jwt import LocalIssuer

    issuer = LocalIssuer()
    issuer.url = issuer.serve()
    yield issuer
    issuer.stop_serving()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL server for the session (tests/helpers/postgres.py). Without one the
    tests that need it are skipped loudly, except under CI=true, where that is a failure."""
    import os

    from .helpers.postgres import Cluster, missing

    problem = missing()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"POSTGRESQL TESTS CANNOT RUN under CI: {problem}")
        pytest.skip(f"!!! POSTGRESQL TESTS SKIPPED: {problem} !!!")
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_dsn(postgres_cluster):
    """A fresh database on the session's server."""
    return postgres_cluster.new_database()


def make_store(kind: str, db_path, request):
    """A store of ``kind`` (duckdb, memory, postgres) for the parametrised contract tests."""
    from chatkit_lab.store import DuckDBStore, MemoryStore, PostgresStore

    if kind == "duckdb":
        return DuckDBStore(db_path)
    if kind == "postgres":
        return PostgresStore(request.getfixturevalue("postgres_dsn"))
    return MemoryStore()


STORES = ["duckdb", "memory", "postgres"]


@pytest.fixture(params=["duckdb", "postgres"])
def lab_db(request, db_path):
    """What a lab is opened on, for the tests a hostile or heavy user runs against both: a DuckDB
    file, or a PostgreSQL database of the suite's cluster."""
    return db_path if request.param == "duckdb" else request.getfixturevalue("postgres_dsn")


@pytest.fixture
def offline(monkeypatch):
    """No provider configured, whatever the developer's shell has."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _offline_by_default(offline):
    pass


__all__ = ["ALICE", "BOB", "STORES", "T0", "assistant_message", "free_port", "make_store", "run", "serve_once", "timedelta", "user_message"]


def found_in_database(path, needle: str) -> list[str]:
    """Tables of the DuckDB file at ``path`` (or the PostgreSQL database at that URL) with
    ``needle`` anywhere in a row, plus "file bytes" when it appears in the raw file (DuckDB may
    compress strings, so both are searched)."""
    import duckdb

    if isinstance(path, str) and path.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(path) as pg:
            tables = [t for (t,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
            return [t for t in tables if pg.execute(f"SELECT count(*) FROM {t} x WHERE x::text LIKE %s", [f"%{needle}%"]).fetchone()[0]]

    hits = ["file bytes"] if needle.encode() in path.read_bytes() else []
    with duckdb.connect(str(path), read_only=True) as con:
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            if con.execute(f"SELECT count(*) FROM {table} t WHERE t::VARCHAR LIKE ?", [f"%{needle}%"]).fetchone()[0]:
                hits.append(table)
    return hits
