"""Load over HTTP: 50 conversations x 10 turns, against one `serve` process and against four
sharing one DuckDB file, and against `serve --workers 2` on PostgreSQL with a user per token; every
user message and reply is stored exactly once, no client sees an error, each user sees only their
threads. Bounded and loopback only."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from .conftest import free_port

CONVERSATIONS, TURNS = 50, 10


def said(text):
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}


def converse(ports, n, headers=None):
    thread_id, errors = None, []
    with httpx.Client(timeout=120, headers=headers or {}) as client:
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


def test_fifty_conversations_on_two_workers_sharing_postgresql_lose_nothing_and_stay_per_user(postgres_dsn, issuer):
    import psycopg

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", postgres_dsn, "--port", str(port), "--workers", "2",
                               "--jwks-url", issuer.url, "--issuer", issuer.issuer, "--audience", issuer.audience],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tokens = {n: {"Authorization": f"Bearer {issuer.issue(f'student{n % 10}')}"} for n in range(CONVERSATIONS)}
    try:
        line = server.stdout.readline()
        assert "with 2 workers" in line, server.stderr.read()
        with concurrent.futures.ThreadPoolExecutor(CONVERSATIONS) as pool:
            results = list(pool.map(lambda n: converse([port], n, tokens[n]), range(CONVERSATIONS)))
        listed = {}
        for n in range(10):
            reply = httpx.post(f"http://127.0.0.1:{port}/chatkit", json={"type": "threads.list", "params": {"limit": 100}}, headers=tokens[n], timeout=30)
            listed[f"student{n}"] = sorted(t["id"] for t in reply.json()["data"])
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    assert [e for _, errors in results for e in errors] == []
    with psycopg.connect(postgres_dsn) as con:
        rows = con.execute("""SELECT thread_id, count(*) FILTER (WHERE type = 'user_message'), count(*) FILTER (WHERE type = 'assistant_message'),
                                     count(DISTINCT text) FILTER (WHERE type = 'user_message') FROM items GROUP BY thread_id""").fetchall()
        turns = con.execute("SELECT count(*) FROM turns WHERE status = 'completed'").fetchone()[0]
        owners = dict(con.execute("SELECT thread_id, user_id FROM threads").fetchall())
        workers = con.execute("SELECT count(DISTINCT trace_id) FROM traces").fetchone()[0]
    assert sorted(r[0] for r in rows) == sorted(t for t, _ in results)
    assert all(r[1:] == (TURNS, TURNS, TURNS) for r in rows), [r for r in rows if r[1:] != (TURNS, TURNS, TURNS)][:3]
    assert turns == CONVERSATIONS * TURNS and workers == CONVERSATIONS * TURNS
    for n, (thread_id, _) in enumerate(results):
        assert owners[thread_id] == f"student{n % 10}"
    assert listed == {user: sorted(t for t, u in owners.items() if u == user) for user in listed}
    assert all(len(threads) == CONVERSATIONS // 10 for threads in listed.values())


def children(pid):
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_a_worker_killed_with_sigkill_is_replaced_and_the_port_keeps_answering(postgres_dsn):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", postgres_dsn, "--port", str(port), "--workers", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert "with 2 workers" in line, server.stderr.read()
        pids = [int(p) for p in line.split("(pids ")[1].split(";")[0].split(", ")]
        os.kill(pids[0], signal.SIGKILL)  # seconds after its start: the next waits, longer each time it dies so soon
        assert "exited (code -9); starting another in 1 s" in server.stderr.readline()
        deadline = time.monotonic() + 30
        while not (replacement := children(server.pid) - set(pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(replacement.pop(), signal.SIGKILL)
        assert "exited (code -9); starting another in 2 s" in server.stderr.readline()
        thread_id, errors = converse([port], 0)
        assert errors == [] and thread_id
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0


def test_more_than_one_worker_on_a_duckdb_file_is_refused_with_a_sentence_naming_postgresql(tmp_path):
    done = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", str(tmp_path / "one.duckdb"), "--workers", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "needs a PostgreSQL database" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "one.duckdb").exists()


def test_two_workers_count_one_rate_limit_for_a_user_however_their_connections_are_spread(postgres_dsn, issuer):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", postgres_dsn, "--port", str(port), "--workers", "2",
                               "--jwks-url", issuer.url, "--issuer", issuer.issuer, "--audience", issuer.audience, "--rate-limit", "3/minute"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ann, bob = ({"Authorization": f"Bearer {issuer.issue(name)}"} for name in ("ann", "bob"))
    body = {"type": "threads.list", "params": {"limit": 5}}
    try:
        assert "with 2 workers" in server.stdout.readline(), server.stderr.read()
        url = f"http://127.0.0.1:{port}/chatkit"
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # a new connection each: the kernel spreads them over both workers
            statuses = list(pool.map(lambda _: httpx.post(url, json=body, headers=ann, timeout=30).status_code, range(8)))
        assert sorted(statuses) == [200] * 3 + [429] * 5  # each worker counting alone would let up to 6 through
        assert httpx.post(url, json=body, headers=bob, timeout=30).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["rate_limit"] == "3 per 1 minute per user (shared by every server on the database)"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
