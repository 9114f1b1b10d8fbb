"""Load over HTTP: 50 conversations x 10 turns, against one `serve` process and against four
sharing one DuckDB file; every user message and reply is stored exactly once, no client sees an
error. Bounded and loopback only."""

import concurrent.futures
import json
import signal
import subprocess
import sys

import duckdb
import httpx
import pytest

from .conftest import free_port

CONVERSATIONS, TURNS = 50, 10


def said(text):
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}


def converse(ports, n):
    thread_id, errors = None, []
    with httpx.Client(timeout=120) as client:
        for k in range(TURNS):
            port = ports[(n + k) % len(ports)]  # turns of one conversation go to different processes
            params = {"input": said(f"conversation {n} turn {k}")}
            body = {"type": "threads.create", "params": params} if thread_id is None else {"type": "threads.add_user_message", "params": {"thread_id": thread_id, **params}}
            response = client.post(f"http://127.0.0.1:{port}/chatkit", content=json.dumps(body), headers={"Content-Type": "application/json"})
            for line in response.text.splitlines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    thread_id = event["thread"]["id"] if event["type"] == "thread.created" else thread_id
                    if event["type"] == "error":
                        errors.append(event.get("message") or event.get("code"))
            if response.status_code != 200:
                errors.append(response.text)
    return thread_id, errors


@pytest.mark.parametrize("processes", [1, 4])
def test_fifty_conversations_of_ten_turns_lose_nothing(tmp_path, processes):
    db = tmp_path / "load.duckdb"
    ports = [free_port() for _ in range(processes)]
    servers = [subprocess.Popen([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", str(db), "--port", str(p)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in ports]
    try:
        for server in servers:
            line = server.stdout.readline()
            assert "serving" in line, server.stderr.read()
        with concurrent.futures.ThreadPoolExecutor(CONVERSATIONS) as pool:
            results = list(pool.map(lambda n: converse(ports, n), range(CONVERSATIONS)))
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(60)
    assert [e for _, errors in results for e in errors] == []
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("""SELECT thread_id, count(*) FILTER (WHERE type = 'user_message'), count(*) FILTER (WHERE type = 'assistant_message'),
                                     count(DISTINCT text) FILTER (WHERE type = 'user_message') FROM items GROUP BY thread_id""").fetchall()
        turns = con.execute("SELECT count(*) FROM turns WHERE status = 'completed'").fetchone()[0]
    assert sorted(r[0] for r in rows) == sorted(t for t, _ in results)
    assert all(r[1:] == (TURNS, TURNS, TURNS) for r in rows), [r for r in rows if r[1:] != (TURNS, TURNS, TURNS)][:3]
    assert turns == CONVERSATIONS * TURNS  # every turn logged, once
