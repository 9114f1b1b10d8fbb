"""chatkit-lab benchmarks: `make bench` (or `python benchmarks/run.py [--quick] [--out FILE]`).

Every figure is printed with the comparison it names; ratios come from one run on one machine.
The full run rewrites benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
from agents import Agent, RunConfig

from chatkit_lab import ChatLab, DuckDBStore, LabServer, MirrorModel, RequestContext
from chatkit_lab._loop import LoopThread
from chatkit_lab.context import build_context
from chatkit_lab.store import MemoryStore, PostgresStore
from chatkit_lab.store.items import item_adapter
from chatkit_lab.transport.requests import handle_request

HERE = Path(__file__).parent
CTX = RequestContext("bench")


# The columns the benchmarks fill the tables with, through DataFrames.
THREAD_COLUMNS = ["thread_id", "user_id", "title", "status", "created_at", "updated_at", "metadata", "data"]
ITEM_COLUMNS = ["item_id", "thread_id", "user_id", "created_at", "updated_at", "type", "role", "text", "data"]

def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def message(text: str, thread_id: str | None) -> str:
    content = {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}
    if thread_id is None:
        return json.dumps({"type": "threads.create", "params": {"input": content}})
    return json.dumps({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": content}})


async def timed_turns(server: LabServer, turns: int, per_thread: int = 5) -> list[float]:
    """Milliseconds from request to last event, for `turns` turns in threads of `per_thread`."""
    times, thread_id = [], None
    for n in range(turns):
        if n % per_thread == 0:
            thread_id = None
        body = message(f"turn {n}: how is it going?", thread_id)
        t0 = time.perf_counter()
        reply = await handle_request(server, body, build_context(body, user_id=CTX.user_id))
        async for chunk in reply.stream:
            if thread_id is None and b'"thread.created"' in chunk:
                thread_id = json.loads(chunk[6:])["thread"]["id"]
        times.append((time.perf_counter() - t0) * 1000)
    return times


def postgres_cluster() -> Any:
    """The suite's throwaway PostgreSQL server (tests/helpers/postgres.py), or None without one."""
    sys.path.insert(0, str(HERE.parent))
    from tests.helpers.postgres import Cluster, missing

    return None if missing() else Cluster()


def pool_warmup(cluster: Any, agent: Agent, run_config: RunConfig, loop: LoopThread, runs: int = 5) -> dict[str, float]:
    """The first turn on a new PostgresStore, its pool warmed by ``open()`` or not (median of ``runs``)."""
    def first(warm: bool) -> float:
        store = PostgresStore(cluster.new_database())
        if warm:
            loop.call(store.open())
        ms = loop.call(timed_turns(LabServer(store, agent, run_config=run_config), 1))[0]
        store.close()
        return ms

    return {"pg_first_cold": statistics.median(first(False) for _ in range(runs)), "pg_first_warm": statistics.median(first(True) for _ in range(runs))}


def bench_turns(turns: int, tmp: Path) -> dict[str, float]:
    agent = Agent(name="Assistant", instructions="Be brief.", model=MirrorModel())
    untraced = RunConfig(tracing_disabled=True)
    loop = LoopThread("bench")
    results = {}
    with ChatLab(tmp / "lab.duckdb", instructions="Be brief.", user_id=CTX.user_id) as lab:
        try:
            stores = {"memory": MemoryStore(), "duckdb": DuckDBStore(tmp / "turns.duckdb")}
            cluster = postgres_cluster()
            if cluster is not None:
                stores["postgres"] = PostgresStore(cluster.new_database())
            paths = {name: (loop, LabServer(store, agent, run_config=untraced)) for name, store in stores.items()}
            paths["lab"] = (lab.runtime.loop, lab.server)
            for on, server in paths.values():
                on.call(timed_turns(server, 10))  # warm imports, code paths and pools
            # Interleave them in blocks so machine noise hits all alike. The lab's log rows are written
            # behind the stream: its block pays for its own, and they are flushed before the next path runs.
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(4):
                for name, (on, server) in paths.items():
                    times[name] += on.call(timed_turns(server, turns // 4))
                lab.runtime.flush()
            for name, store in stores.items():
                if name != "memory":
                    store.close()
            if cluster is not None:
                results.update(pool_warmup(cluster, agent, untraced, loop, 5 if turns >= 100 else 1))
                cluster.stop()
        finally:
            loop.stop()
        for name, values in times.items():
            results[f"{name}_p50"], results[f"{name}_p95"] = pct(values, 0.5), pct(values, 0.95)

        url = lab.serve(port=0)
        http_times, thread_id = [], None
        with httpx.Client(base_url=url, timeout=30) as client:
            for n in range(turns + 10):
                if n % 5 == 0:
                    thread_id = None
                t0 = time.perf_counter()
                with client.stream("POST", "/chatkit", content=message(f"turn {n}: how is it going?", thread_id)) as r:
                    for line in r.iter_lines():
                        if thread_id is None and '"thread.created"' in line:
                            thread_id = json.loads(line[6:])["thread"]["id"]
                if n >= 10:
                    http_times.append((time.perf_counter() - t0) * 1000)
        results["http_p50"], results["http_p95"] = pct(http_times, 0.5), pct(http_times, 0.95)
    return results


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def bench_workers(cluster: Any, conversations: int, turns: int, delay: float) -> dict[int, dict[str, float]]:
    """`serve --workers N` on one PostgreSQL, N = 1 and 2: ``conversations`` at once over HTTP, each
    of ``turns`` turns, against an OpenAI-compatible server whose every call waits ``delay`` s."""
    import concurrent.futures
    import signal
    import socket

    from tests.helpers.fake_openai import FakeOpenAI

    fake = FakeOpenAI(delay=delay)
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench-local-fake-provider-key"}

    def converse(port: int, n: int) -> list[float]:
        import http.client

        # The stdlib client, not httpx: the load generator shares the machine's two cores with the
        # workers, so it should spend as little of them as it can.
        thread_id, took = None, []
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for k in range(turns):
                said = {"content": [{"type": "input_text", "text": f"conversation {n} turn {k}"}], "attachments": [], "inference_options": {}}
                body = ({"type": "threads.create", "params": {"input": said}} if thread_id is None else
                        {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": said}})
                start = time.perf_counter()
                client.request("POST", "/chatkit", body=json.dumps(body), headers={"Content-Type": "application/json"})
                text = client.getresponse().read().decode()
                took.append((time.perf_counter() - start) * 1000)
                if thread_id is None:
                    created = text.index('"thread.created"')
                    thread_id = json.loads(text[text.rindex("data: ", 0, created) + 6 : text.index("\n", created)])["thread"]["id"]
        finally:
            client.close()
        return took

    found: dict[int, dict[str, float]] = {}
    try:
        for workers in (1, 2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = subprocess.Popen([sys.executable, "-m", "chatkit_lab.cli", "serve", "--db", cluster.new_database(), "--port", str(port),
                                       "--workers", str(workers), "--base-url", fake.url, "--model", "bench"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            try:
                assert server.stdout is not None
                line = server.stdout.readline()
                assert "serving" in line, line
                pids = [int(p) for p in line.split("(pids ")[1].split(";")[0].split(", ")] if "(pids " in line else [server.pid]
                with concurrent.futures.ThreadPoolExecutor(conversations) as pool:
                    list(pool.map(converse, [port] * conversations, range(-conversations, 0)))  # warm every worker's imports and pools
                    served, here, start = cpu_s(pids), os.times(), time.perf_counter()
                    latencies = [t for took in pool.map(converse, [port] * conversations, range(conversations)) for t in took]
                    wall = time.perf_counter() - start
                    served, done = cpu_s(pids) - served, os.times()
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(60)
            n = conversations * turns
            found[workers] = {"turns_s": n / wall, "p50": pct(latencies, 0.5), "p95": pct(latencies, 0.95), "server_cpu_ms": served / n * 1000,
                              "client_cpu_ms": (done.user + done.system - here.user - here.system) / n * 1000}
    finally:
        fake.close()
    return found


def populate(store_db: Path, threads: int, items: int) -> None:
    """Bulk-load the DuckDB file through SQL (row-at-a-time inserts would take minutes)."""
    from chatkit.types import AssistantMessageContent, AssistantMessageItem

    store = DuckDBStore(store_db)
    asyncio.run(store.load_threads(1, None, "desc", CTX))  # create the schema
    store.close()
    base = datetime(2026, 1, 1)
    thread_rows, item_rows = [], []
    for t in range(threads):
        tid = f"thr_{t:05d}"
        created = base + timedelta(minutes=t)
        meta = json.dumps({"id": tid, "created_at": created.isoformat(), "title": f"t{t}", "status": {"type": "active"}, "metadata": {}})
        thread_rows.append((tid, CTX.user_id, f"t{t}", "active", created, created, "{}", meta))
        for i in range(items):
            item = AssistantMessageItem(id=f"msg_{t:05d}_{i:03d}", thread_id=tid, created_at=created + timedelta(seconds=i),
                                        content=[AssistantMessageContent(text=f"reply {i} in thread {t}", annotations=[])])
            item_rows.append((item.id, tid, CTX.user_id, item.created_at, item.created_at, item.type, "assistant",
                              item.content[0].text, item_adapter.dump_json(item).decode()))
    import pandas as pd

    # DuckDB reads these DataFrames by their variable names in the INSERTs below.
    threads_df = pd.DataFrame(thread_rows, columns=THREAD_COLUMNS)  # noqa: F841
    items_df = pd.DataFrame(item_rows, columns=ITEM_COLUMNS)  # noqa: F841
    con = duckdb.connect(str(store_db))
    con.execute("INSERT INTO threads BY NAME SELECT * FROM threads_df")
    con.execute("INSERT INTO items BY NAME SELECT * FROM items_df")
    con.close()


async def store_ops(store, threads: int, items: int, reps: int) -> dict[str, float]:
    from chatkit.types import AssistantMessageContent, AssistantMessageItem

    rng = random.Random(7)
    out: dict[str, list[float]] = {"list_threads": [], "load_items": [], "insert": []}
    first = await store.load_threads(20, None, "desc", CTX)
    for r in range(reps):
        t0 = time.perf_counter()
        page = await store.load_threads(20, first.data[rng.randrange(20)].id if r % 2 else None, "desc", CTX)
        out["list_threads"].append((time.perf_counter() - t0) * 1000)
        tid = f"thr_{rng.randrange(threads):05d}"
        t0 = time.perf_counter()
        await store.load_thread_items(tid, None, 20, "desc", CTX)
        out["load_items"].append((time.perf_counter() - t0) * 1000)
        item = AssistantMessageItem(id=f"new_{r}", thread_id=tid, created_at=datetime(2027, 1, 1),
                                    content=[AssistantMessageContent(text="new", annotations=[])])
        t0 = time.perf_counter()
        await store.add_thread_item(tid, item, CTX)
        out["insert"].append((time.perf_counter() - t0) * 1000)
        assert page.data
    return {k: statistics.median(v) for k, v in out.items()}


def bench_store(threads: int, items: int, reps: int, tmp: Path) -> dict[str, dict[str, float]]:
    from chatkit.types import AssistantMessageContent, AssistantMessageItem, ThreadMetadata

    path = tmp / "scale.duckdb"
    populate(path, threads, items)
    duck = DuckDBStore(path)
    memory = MemoryStore()

    async def fill_memory():
        base = datetime(2026, 1, 1)
        for t in range(threads):
            tid = f"thr_{t:05d}"
            await memory.save_thread(ThreadMetadata(id=tid, created_at=base + timedelta(minutes=t), title=f"t{t}"), CTX)
            for i in range(items):
                await memory.add_thread_item(tid, AssistantMessageItem(
                    id=f"msg_{t:05d}_{i:03d}", thread_id=tid, created_at=base + timedelta(minutes=t, seconds=i),
                    content=[AssistantMessageContent(text=f"reply {i} in thread {t}", annotations=[])]), CTX)

    asyncio.run(fill_memory())
    results = {"duckdb": asyncio.run(store_ops(duck, threads, items, reps)), "memory": asyncio.run(store_ops(memory, threads, items, reps))}
    duck.close()
    return results


COLD = """
import time, sys
mode = sys.argv[2]
t0 = time.perf_counter()
from chatkit_lab import ChatLab
t1 = time.perf_counter()
lab = ChatLab(sys.argv[1], warm=mode != "cold")
t2 = time.perf_counter()
if mode == "warmed":
    lab.warmed.result()  # a user reading the cell output before typing
t3 = time.perf_counter()
lab.send_sync("hello")
t4 = time.perf_counter()
lab.send_sync("hello again")
t5 = time.perf_counter()
lab.close()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
"""
COLD_MODES = {"cold": "ChatLab(warm=False)", "warmed": "ChatLab(), warm-up finished", "at_once": "ChatLab(), sent at once"}


def bench_cold(runs: int, tmp: Path) -> dict[str, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    keys = ["import_ms", "chatlab_ms", "warmup_wait_ms", "first_reply_ms", "second_reply_ms"]
    results = {}
    for mode in COLD_MODES:
        samples = []
        for n in range(runs):
            out = subprocess.run([sys.executable, "-c", COLD, str(tmp / f"cold-{mode}{n}.duckdb"), mode], capture_output=True, text=True, env=env, check=True)
            samples.append([float(x) * 1000 for x in out.stdout.split()])
        results[mode] = {k: statistics.median(s[i] for s in samples) for i, k in enumerate(keys)}
    return results


def replay_source(path: Path, threads: int, turns: int) -> None:
    """Threads of recorded user messages (and replies), bulk-loaded through SQL."""
    from chatkit.types import InferenceOptions, UserMessageItem, UserMessageTextContent

    lab = ChatLab(path, warm=False, user_id=CTX.user_id)
    lab.close()
    base, rows, thread_rows = datetime(2026, 1, 1), [], []
    for t in range(threads):
        tid = f"thr_{t:05d}"
        meta = json.dumps({"id": tid, "created_at": (base + timedelta(minutes=t)).isoformat(), "title": f"t{t}", "status": {"type": "active"}, "metadata": {}})
        thread_rows.append((tid, CTX.user_id, f"t{t}", "active", base, base, "{}", meta))
        for n in range(turns):
            at = base + timedelta(minutes=t, seconds=n)
            item = UserMessageItem(id=f"msg_{t:05d}_{n}", thread_id=tid, created_at=at, inference_options=InferenceOptions(),
                                   content=[UserMessageTextContent(text=f"question {n} of thread {t}")])
            rows.append((item.id, tid, CTX.user_id, at, at, "user_message", "user", item.content[0].text, item_adapter.dump_json(item).decode()))
    import pandas as pd

    threads_df = pd.DataFrame(thread_rows, columns=THREAD_COLUMNS)  # noqa: F841
    items_df = pd.DataFrame(rows, columns=ITEM_COLUMNS)  # noqa: F841
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO threads BY NAME SELECT * FROM threads_df")
        con.execute("INSERT INTO items BY NAME SELECT * FROM items_df")


def bench_replay(threads: int, turns: int, tmp: Path) -> dict[str, float]:
    path = tmp / "replay.duckdb"
    replay_source(path, threads, turns)
    lab = ChatLab(path, warm=False, user_id=CTX.user_id)
    sources = lab.threads_df().thread_id.tolist()
    lab.replay_many_sync(sources[:2], concurrency=1, progress=False)  # warm up
    results = {}
    for concurrency in (1, 8):
        t0 = time.perf_counter()
        replays = lab.replay_many_sync(sources, concurrency=concurrency, progress=False)
        elapsed = time.perf_counter() - t0
        assert sum(len(r.steps) for r in replays) == threads * turns and not any(s.error for r in replays for s in r.steps)
        results[f"c{concurrency}"] = threads * turns / elapsed
    lab.close()
    return results


EXPORT = """
import sys, time
def rss_mb(field="VmRSS"):  # VmHWM: the peak (ru_maxrss would count the parent's, kept across exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) / 1024
mode, db, out = sys.argv[1:4]
if mode == "lab":
    from chatkit_lab import ChatLab
    lab = ChatLab(db, warm=False, user_id="bench")
    lab.sql("SELECT 1")  # the file is open
    before = rss_mb()
    t0 = time.perf_counter()
    lab.export(out)
else:
    import duckdb
    con = duckdb.connect(db)
    before = rss_mb()
    t0 = time.perf_counter()
    con.execute(f"COPY items TO '{out}' (FORMAT parquet)")
elapsed = time.perf_counter() - t0
print(elapsed, before, rss_mb("VmHWM"))
"""


def bench_starvation(items: int, tmp: Path) -> dict[str, float]:
    """One user retries after the oldest message of a long thread (the heaviest request) while
    another lists a page of theirs, again and again: the second user's latency meanwhile."""
    from chatkit.types import (
        AssistantMessageContent,
        AssistantMessageItem,
        InferenceOptions,
        UserMessageItem,
        UserMessageTextContent,
    )

    path = tmp / "starve.duckdb"
    ChatLab(path, warm=False).close()
    base = datetime(2026, 1, 1)
    first = UserMessageItem(id="msg_first", thread_id="thr_long", created_at=base, inference_options=InferenceOptions(),
                            content=[UserMessageTextContent(text="the oldest message")])
    rows = [(first.id, "thr_long", "heavy", base, base, "user_message", "user", "the oldest message", item_adapter.dump_json(first).decode())]
    for i in range(1, items):
        at = base + timedelta(seconds=i)
        item = AssistantMessageItem(id=f"msg_{i:06d}", thread_id="thr_long", created_at=at, content=[AssistantMessageContent(text=f"reply {i}", annotations=[])])
        rows.append((item.id, "thr_long", "heavy", at, at, "assistant_message", "assistant", f"reply {i}", item_adapter.dump_json(item).decode()))
    import pandas as pd

    meta = json.dumps({"id": "thr_long", "created_at": base.isoformat(), "title": "long", "status": {"type": "active"}, "metadata": {}})
    threads_df = pd.DataFrame([("thr_long", "heavy", "long", "active", base, base, "{}", meta)], columns=THREAD_COLUMNS)  # noqa: F841
    items_df = pd.DataFrame(rows, columns=ITEM_COLUMNS)  # noqa: F841
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO threads BY NAME SELECT * FROM threads_df")
        con.execute("INSERT INTO items BY NAME SELECT * FROM items_df")
    lab = ChatLab(path, warm=False)
    light = lab.send_sync("a short thread", user_id="light").thread_id
    listing = {"type": "items.list", "params": {"thread_id": light, "limit": 20}}
    retry = {"type": "threads.retry_after_item", "params": {"thread_id": "thr_long", "item_id": "msg_first"}}

    # The second user is a client on another thread (as an HTTP client would be): each wait is
    # from sending to the answer, so time the loop spends blocked counts.
    def meanwhile(heavy: Any) -> tuple[float, list[float]]:
        t0, waits = time.perf_counter(), []
        while not heavy.done():
            t = time.perf_counter()
            lab.runtime.call(lab.runtime.request(listing, "light"))
            waits.append((time.perf_counter() - t) * 1000)
            time.sleep(0.01)
        return (time.perf_counter() - t0) * 1000, waits

    with ThreadPoolExecutor(1) as pool:  # lab.fork waits for its result: it runs on a thread while this one measures
        fork_ms, fork_waits = meanwhile(pool.submit(lab.fork, "thr_long"))
    heavy = lab.runtime.loop.submit(lab.runtime.request(retry, "heavy"))
    heavy_ms, waits = meanwhile(heavy)
    events = heavy.result()
    assert not any(e["type"] == "error" for e in events), events[-1]
    left = len(lab.items_df("thr_long", all_users=True))
    lab.close()
    assert left == 2, left
    return {"heavy_ms": heavy_ms, "p50": pct(waits, 0.5), "p95": pct(waits, 0.95), "max": max(waits), "requests": len(waits),
            "fork_ms": fork_ms, "fork_max": max(fork_waits)}


def bench_storage(turns: int, size: int, tmp: Path) -> dict[str, float]:
    """One thread of `turns` user messages of `size` characters: the file against its text."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "storage.duckdb"
    rng = random.Random(3)
    words = [f"w{n}" for n in range(5000)]
    with ChatLab(path, warm=False, user_id=CTX.user_id) as lab:
        thread_id = None
        for _ in range(turns):
            text = " ".join(rng.choice(words) for _ in range(size // 6))[:size]
            thread_id = lab.send_sync(text, thread_id).thread_id
        held = lab.sql("SELECT sum(strlen(text)) AS n FROM items").n[0]
        with lab.db.cursor() as cur:
            cur.execute("CHECKPOINT")
    return {"file_mb": path.stat().st_size / 2**20, "text_mb": held / 2**20}


def bench_export(items: int, tmp: Path) -> dict[str, dict[str, float]]:
    path = tmp / "export.duckdb"
    ChatLab(path, warm=False).close()
    item = '{"type":"assistant_message","id":"msg_x","thread_id":"thr_x","created_at":"2026-01-01T00:00:00","content":[{"type":"output_text","text":"a reply of some length, as an assistant writes it","annotations":[]}]}'
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"""INSERT INTO items (item_id, thread_id, user_id, seq, created_at, updated_at, type, role, text, data)
                SELECT 'msg_' || i, 'thr_' || (i // 100), 'bench', i, TIMESTAMP '2026-01-01' + to_microseconds(i),
                       TIMESTAMP '2026-01-01' + to_microseconds(i), 'assistant_message', 'assistant',
                       'a reply of some length, as an assistant writes it, number ' || i, replace(?, 'msg_x', 'msg_' || i)
                FROM range({items}) t(i)""",
            [item],
        )
    results = {}
    for mode in ("copy", "lab", "copy", "lab")[: 4 if items >= 100_000 else 2]:  # each twice, interleaved; the second run counts (--quick: once)
        out = subprocess.run([sys.executable, "-c", EXPORT, mode, str(path), str(tmp / f"{mode}.parquet")], capture_output=True, text=True, check=True)
        elapsed, before, peak = map(float, out.stdout.split())
        results[mode] = {"s": elapsed, "before_mb": before, "peak_mb": peak, "size_mb": (tmp / f"{mode}.parquet").stat().st_size / 2**20}
    return results


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), 0)
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}, DuckDB {duckdb.__version__}"


PROSE = ("The quarterly numbers look steady and the team shipped the new onboarding flow on 12 March; "
         "next week we review the roadmap (see https://intranet.example.com/roadmap) with design. ")
DENSE = "Hi, I'm ada@example.com, call +1 415 555 0132, card 4111 1111 1111 1111, docs at https://example.com/q3. "
DETERMINISTIC = {"version": 1, "input": {"version": 1, "guardrails": [
    {"name": "Contains PII", "config": {}}, {"name": "URL Filter", "config": {"url_allow_list": ["example.com"], "allow_subdomains": True}},
    {"name": "Keyword Filter", "config": {"keywords": ["confidential", "internal only"]}}, {"name": "Competitors", "config": {"keywords": ["Acme"]}},
    {"name": "Secret Keys", "config": {}}]}}


def bench_guardrails(turns: int, runs: int, tmp: Path) -> dict[str, Any]:
    from chatkit_lab.guardrails import DEFAULT_CONFIG, Guardrails, dataset_path, evaluate_guardrails

    out: dict[str, Any] = {}
    checks = Guardrails(DETERMINISTIC)
    for name, unit in (("prose", PROSE), ("dense", DENSE)):
        text = (unit * (10_240 // len(unit) + 1))[:10_240]

        async def timed(text: str = text) -> list[float]:
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                await checks.run("input", text)
                times.append((time.perf_counter() - t0) * 1000)
            return times

        out[f"{name}_ms"] = pct(asyncio.run(timed()), 0.5)
        report = asyncio.run(checks.run("input", text))
        out[f"{name}_checks"] = {r.name: r.duration_ms for r in report.results}
        out[f"{name}_hits"] = sum(len(v) for v in report.results[0].info["detected_entities"].values())

    pii = evaluate_guardrails(dataset_path("pii"), {"version": 1, "input": {"version": 1, "guardrails": [{"name": "Contains PII", "config": {"block": True}}]}})
    out["pii"], out["pii_samples"] = pii.entities, len(pii.results)
    demo = [json.loads(line) for line in (HERE / "data" / "openai-guardrails-demo.jsonl").read_text().splitlines() if line.strip()]
    benign = [json.loads(line) for line in dataset_path("prompts").read_text().splitlines()]
    jailbreak = evaluate_guardrails(demo + benign, {"version": 1, "input": {"version": 1, "guardrails": [{"name": "Jailbreak", "config": {}}]}})
    out["jailbreak"] = jailbreak.metrics.iloc[0].to_dict()
    negatives = jailbreak.results[~jailbreak.results.expected.astype(bool)]
    out["jailbreak_fpr_at_default"] = float(negatives.triggered.mean())
    out["jailbreak_counts"] = (int(jailbreak.results.expected.sum()), len(negatives))

    # The default pipeline on a single-agent turn, offline model: the two labs take turns, a
    # thread of five messages each, so machine noise falls on both alike.
    plain, guarded = ChatLab(tmp / "plain.duckdb", warm=False), ChatLab(tmp / "guarded.duckdb", warm=False, guardrails=DEFAULT_CONFIG)
    times: dict[str, list[float]] = {"plain": [], "guarded": []}
    try:
        for n in range(turns // 5 + 4):
            for key, lab in (("plain", plain), ("guarded", guarded)) if n % 2 else (("guarded", guarded), ("plain", plain)):
                thread = None
                for i in range(5):
                    t0 = time.perf_counter()
                    thread = lab.send_sync(f"turn {i}: how is it going? mail me at ada{n}@example.com", thread).thread_id
                    if n >= 4:  # the first threads warm both up
                        times[key].append((time.perf_counter() - t0) * 1000)
    finally:
        plain.close()
        guarded.close()
    out["plain_p50"], out["guarded_p50"] = pct(times["plain"], 0.5), pct(times["guarded"], 0.5)
    return out


def big_export(agents: int) -> str:
    """A Python export in Agent Builder's idiom: a classifier routing to ``agents`` specialists."""
    labels = [f"topic_{i}" for i in range(agents)]
    head = ["from agents import Agent, ModelSettings, TResponseInputItem, Runner, RunConfig, trace", "from pydantic import BaseModel", "",
            "class ClassifierSchema(BaseModel):", "  classification: str", "", "",
            'classifier = Agent(name="Classifier", instructions="Pick a topic.", model="gpt-4.1-mini", output_type=ClassifierSchema,',
            "  model_settings=ModelSettings(temperature=0, store=True))", ""]
    for label in labels:
        head += [f"{label}_agent = Agent(", f'  name="{label} agent",', f'  instructions="You answer questions about {label}.",',
                 '  model="gpt-4.1",', "  model_settings=ModelSettings(", "    store=True", "  )", ")", ""]
    body = ["class WorkflowInput(BaseModel):", "  input_as_text: str", "", "", "async def run_workflow(workflow_input: WorkflowInput):",
            '  with trace("Big router"):', "    state = {}", "    workflow = workflow_input.model_dump()",
            '    conversation_history: list[TResponseInputItem] = [{"role": "user", "content": [{"type": "input_text", "text": workflow["input_as_text"]}]}]',
            "    classifier_result_temp = await Runner.run(classifier, input=[*conversation_history], run_config=RunConfig(trace_metadata={",
            '      "__trace_source__": "agent-builder", "workflow_id": "wf_big"}))',
            "    conversation_history.extend([item.to_input_item() for item in classifier_result_temp.new_items])",
            '    classifier_result = {"output_text": classifier_result_temp.final_output.model_dump_json(), "output_parsed": classifier_result_temp.final_output.model_dump()}']
    for i, label in enumerate(labels):
        body += [f'    {"if" if i == 0 else "elif"} classifier_result["output_parsed"]["classification"] == "{label}":',
                 f"      {label}_agent_result_temp = await Runner.run(", f"        {label}_agent,", "        input=[", "          *conversation_history", "        ],",
                 "        run_config=RunConfig(trace_metadata={", '          "__trace_source__": "agent-builder",', '          "workflow_id": "wf_big"', "        })",
                 "      )", f"      conversation_history.extend([item.to_input_item() for item in {label}_agent_result_temp.new_items])",
                 f'      {label}_agent_result = {{"output_text": {label}_agent_result_temp.final_output_as(str)}}', f"      return {label}_agent_result"]
    return "\n".join(head + body) + "\n"


EVALS = """
import asyncio, sys, time
from chatkit_lab import ChatLab, MirrorModel

class Waiting(MirrorModel):  # a provider that takes 100 ms to answer
    async def stream_response(self, *args, **kwargs):
        await asyncio.sleep(0.1)
        async for event in super().stream_response(*args, **kwargs):
            yield event

def rss_mb(field="VmRSS"):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) / 1024

mode, db, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lab = ChatLab(db, warm=False, user_id="bench", model=Waiting("waiting") if mode == "waiting" else None)
items = [{"input": f"question {i}", "target": f"question {i}"} for i in range(n)]
graders = [{"type": "string_check", "name": "includes", "input": "{{ sample.output_text }}", "reference": "{{ item.target }}", "operation": "ilike"},
           {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "{{ item.target }}", "operation": "eq"}]
lab.sql("SELECT 1")
before = rss_mb()
started = time.perf_counter()
run = lab.evaluate_sync(items, graders=graders, concurrency=concurrency, progress=False)
elapsed = time.perf_counter() - started
assert run.summary["result_counts"]["total"] == n and run.summary["result_counts"]["errored"] == 0, run.summary
duckdb_mb = lab.sql("SELECT sum(memory_usage_bytes) / 2**20 FROM duckdb_memory()").iloc[0, 0]  # its indexes and cached blocks
print(elapsed, before, rss_mb("VmHWM"), duckdb_mb)
"""

INSPECT = """
import sys, tempfile, time
from inspect_ai import Task, eval
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ModelOutput, ModelUsage
from inspect_ai.scorer import exact, includes
from inspect_ai.solver import generate


def echo(input, tools, tool_choice, config):  # like the offline mirror: a reply that quotes the message (tiktoken cannot download offline)
    said = input[-1].text
    output = ModelOutput.from_content(model="mockllm", content=f"You said: {said}")
    output.usage = ModelUsage(input_tokens=len(said.split()), output_tokens=len(said.split()) + 2, total_tokens=2 * len(said.split()) + 2)
    return output


n, concurrency = int(sys.argv[1]), int(sys.argv[2])
task = Task(dataset=MemoryDataset([Sample(input=f"question {i}", target=f"question {i}") for i in range(n)]),
            solver=generate(), scorer=[includes(), exact()])
started = time.perf_counter()
log, = eval(task, model="mockllm/model", model_args={"custom_outputs": echo}, log_dir=tempfile.mkdtemp(), display="none",
            max_samples=concurrency, max_connections=concurrency)
elapsed = time.perf_counter() - started
assert log.status == "success" and len(log.samples) == n, (log.status, log.error)
print(elapsed)
"""


def bench_evals(items: int, larger: int | None, concurrency: int, tmp: Path, peers: Path | None) -> dict[str, Any]:
    """Eval runs in fresh processes: the offline model against Inspect AI's mock model with the
    matching scorers, and a model that waits 100 ms at ``concurrency`` (memory at two sizes)."""
    def ours(mode: str, n: int) -> tuple[float, float, float, float]:
        out = subprocess.run([sys.executable, "-c", EVALS, mode, str(tmp / f"evals-{mode}-{n}.duckdb"), str(n), str(concurrency)],
                             capture_output=True, text=True, check=True)
        elapsed, before, peak, duckdb_mb = map(float, out.stdout.split())
        return elapsed, before, peak, duckdb_mb

    offline = ours("offline", items)
    results: dict[str, Any] = {"offline_per_s": items / offline[0]}
    if peers is not None:
        out = subprocess.run([str(peers / "bin" / "python"), "-c", INSPECT, str(items), str(concurrency)], capture_output=True, text=True, check=True)
        results["inspect_per_s"] = items / float(out.stdout.split()[0])
    waited = ours("waiting", items)
    results.update(waiting_per_s=items / waited[0], ideal_per_s=concurrency / 0.1, added_mb=waited[2] - waited[1], duckdb_mb=waited[3])
    if larger:  # the same run at another size: does memory grow with the items?
        waited_larger = ours("waiting", larger)
        results.update(added_mb_larger=waited_larger[2] - waited_larger[1], duckdb_mb_larger=waited_larger[3])
    return results


def bench_workflows(turns: int, runs: int, tmp: Path) -> dict[str, Any]:
    from chatkit_lab.workflows import (
        AgentNode,
        Edge,
        EndNode,
        GuardrailsNode,
        IfElseNode,
        StartNode,
        Workflow,
        chain,
        templates,
    )

    out: dict[str, Any] = {}
    schema = templates.classifier_schema("billing", "general")
    five = Workflow(name="five", nodes=[
        StartNode("start"), GuardrailsNode("pii", config={"guardrails": [{"name": "Contains PII", "config": {}}]}),
        AgentNode("classify", instructions="Classify.", output_schema=schema),
        IfElseNode("route", branches={"billing": 'input.output_parsed.classification == "billing"'}),
        AgentNode("answer", instructions="Answer."), EndNode("end"),
    ], edges=[*chain("start", "pii"), Edge("pii", "classify", "pass"), *chain("classify", "route"), Edge("route", "answer", "billing"),
              Edge("route", "answer", "else"), *chain("answer", "end")])
    lab = ChatLab(tmp / "workflow.duckdb", warm=False)
    times: dict[str, list[float]] = {"agent": [], "workflow": []}
    try:
        for n in range(turns // 5 + 4):  # the two take turns, a thread of five each, so noise falls on both
            for key in ("agent", "workflow") if n % 2 else ("workflow", "agent"):
                lab.use_workflow(five if key == "workflow" else None)
                thread = None
                for i in range(5):
                    t0 = time.perf_counter()
                    thread = lab.send_sync(f"turn {i}: a billing question about invoice {n}", thread).thread_id
                    if n >= 4:
                        times[key].append((time.perf_counter() - t0) * 1000)
        out["nodes_per_turn"] = float(lab.sql("SELECT count(*) / count(DISTINCT turn_id) AS n FROM workflow_nodes").n[0])
    finally:
        lab.close()
    out["agent_p50"], out["workflow_p50"] = pct(times["agent"], 0.5), pct(times["workflow"], 0.5)
    source = big_export(21)
    out["lines"] = source.count("\n")
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter()
        imported, _ = Workflow.from_agent_builder(source)
        timings.append((time.perf_counter() - t0) * 1000)
    out["import_ms"], out["import_nodes"] = pct(timings, 0.5), len(imported.nodes)
    ts = (Path(__file__).parent.parent / "tests" / "fixtures" / "agent_builder" / "support.ts").read_text()
    out["ts_lines"] = ts.count("\n")
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter()
        Workflow.from_agent_builder(ts)
        timings.append((time.perf_counter() - t0) * 1000)
    out["ts_import_ms"] = pct(timings, 0.5)
    t0 = time.perf_counter()
    code = imported.to_python()
    out["to_python_ms"], out["to_python_lines"] = (time.perf_counter() - t0) * 1000, code.count("\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--peers", default=None, help="a virtualenv with the peers compared against (Inspect AI); `make bench` makes .venv-bench")
    parser.add_argument("--out", default=None, help="where to write the results (default: benchmarks/RESULTS.md for a full run)")
    args = parser.parse_args()
    turns, threads, items, reps, runs = (20, 20, 10, 10, 1) if args.quick else (200, 1000, 100, 200, 3)
    replayed, exported = ((4, 2), 10_000) if args.quick else ((200, 5), 1_000_000)
    lines = ["# Benchmark results\n", f"Machine: {machine()}  ", f"Date: {datetime.now():%Y-%m-%d %H:%M}; `make bench`{' --quick' if args.quick else ''}.\n"]

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = bench_turns(turns, tmp)
        say(f"## Turn overhead, offline model, request to last event ({turns} turns, threads of 5)\n")
        say("| path | p50 ms | p95 ms |\n|---|---|---|")
        for key, label in [("memory", "LabServer + in-memory store"), ("duckdb", "LabServer + DuckDBStore"),
                           ("lab", "ChatLab (DuckDB + turn log + traces), in-process"), ("http", "the same ChatLab over HTTP on 127.0.0.1")]:
            say(f"| {label} | {t[key + '_p50']:.2f} | {t[key + '_p95']:.2f} |")
        say(f"\n- DuckDBStore / in-memory store, p50: **{t['duckdb_p50'] / t['memory_p50']:.2f}x** (goal <= 2x); p95: {t['duckdb_p95'] / t['memory_p95']:.2f}x")
        say(f"- full ChatLab / in-memory store, p50: **{t['lab_p50'] / t['memory_p50']:.2f}x** (goal <= 2.5x)")
        say(f"- HTTP / in-process (same lab), p50: **{t['http_p50'] / t['lab_p50']:.2f}x**")
        if "postgres_p50" in t:
            say(f"- LabServer + PostgresStore (a local server, one pool): p50 {t['postgres_p50']:.2f} ms, p95 {t['postgres_p95']:.2f} ms: "
                f"**{t['postgres_p50'] / t['duckdb_p50']:.2f}x** DuckDBStore, {t['postgres_p50'] / t['memory_p50']:.2f}x the in-memory store")
            say(f"- PostgresStore's first turn with the pool warmed at start (`await store.open()`): {t['pg_first_warm']:.1f} ms, "
                f"**{t['pg_first_warm'] / t['postgres_p50']:.2f}x** a warm turn (goal <= 1.5x); opened by that first turn: {t['pg_first_cold']:.1f} ms\n")
        else:
            say("- PostgresStore: not run (no PostgreSQL server here; `make test` installs Debian's)\n")

        cluster = postgres_cluster()
        if cluster is not None:
            conversations, per = (10, 2) if args.quick else (50, 6)
            try:
                w = bench_workers(cluster, conversations, per, 0.1)
            finally:
                cluster.stop()
            say(f"## Two workers on one PostgreSQL: {conversations} conversations at once x {per} turns, a provider that waits 100 ms per call\n")
            say("| `serve --workers` | turns/s | p50 ms | p95 ms | server CPU ms per turn | clients' and provider's CPU ms per turn |\n|---|---|---|---|---|---|")
            for n in (1, 2):
                say(f"| {n} | {w[n]['turns_s']:.1f} | {w[n]['p50']:.0f} | {w[n]['p95']:.0f} | {w[n]['server_cpu_ms']:.1f} | {w[n]['client_cpu_ms']:.1f} |")
            say(f"\n- 2 workers / 1: **{w[2]['turns_s'] / w[1]['turns_s']:.2f}x** the throughput (goal >= 1.7x). On this 2-core machine the "
                "clients, the fake provider and PostgreSQL run on the same two cores as the workers, so one worker already has the "
                "other core to itself for them; the CPU columns say where each turn's time goes\n")
        else:
            say("## Two workers on one PostgreSQL\n\nNot run: no PostgreSQL server here (`make test` installs Debian's).\n")

        s = bench_store(threads, items, reps, tmp)
        say(f"## Store at scale: {threads:,} threads x {items} items, median of {reps}\n")
        say("| operation | DuckDBStore ms | in-memory ms | ratio |\n|---|---|---|---|")
        for op, label in [("list_threads", "list a page of 20 threads"), ("load_items", "load a page of 20 items"), ("insert", "insert one item")]:
            say(f"| {label} | {s['duckdb'][op]:.3f} | {s['memory'][op]:.3f} | {s['duckdb'][op] / s['memory'][op]:.1f}x |")

        c = bench_cold(runs, tmp)
        say(f"\n## Cold start in a fresh process (median of {runs})\n")
        say("| start | import ms | ChatLab() ms | warm-up ms | first reply ms | second reply ms |\n|---|---|---|---|---|---|")
        for mode, label in COLD_MODES.items():
            r = c[mode]
            say(f"| {label} | {r['import_ms']:.0f} | {r['chatlab_ms']:.0f} | {r['warmup_wait_ms']:.0f} | {r['first_reply_ms']:.0f} | {r['second_reply_ms']:.0f} |")
        cold, warmed = c["cold"], c["warmed"]
        say(f"\n- first reply after the warm-up / without it: **{warmed['first_reply_ms']:.0f} vs {cold['first_reply_ms']:.0f} ms "
            f"({cold['first_reply_ms'] / warmed['first_reply_ms']:.1f}x faster)**; sent at once: {c['at_once']['first_reply_ms']:.0f} ms")
        say(f"- import + ChatLab() + first reply, without warm-up: **{cold['import_ms'] + cold['chatlab_ms'] + cold['first_reply_ms']:.0f} ms** "
            "(the import is the Agents SDK and openai types)\n")

        r = bench_replay(*replayed, tmp)
        say(f"## Replay: {replayed[0]} threads x {replayed[1]} turns, offline model\n")
        say(f"- replay, one thread at a time: **{r['c1']:.1f} turns/s**; 8 at a time: **{r['c8']:.1f} turns/s** (goal >= 150) "
            f"(8 at a time / one at a time: {r['c8'] / r['c1']:.2f}x; the offline model is CPU-bound on one loop, "
            "so concurrency pays off with a real provider's network waits)\n")

        starved = 2_000 if args.quick else 100_000
        v = bench_starvation(starved, tmp)
        say(f"## One user's heaviest request, another user's latency ({starved:,}-item thread)\n")
        say(f"- threads.retry_after_item on the oldest message (deletes {starved - 1:,} items, then a new reply): **{v['heavy_ms']:.0f} ms**")
        say(f"- meanwhile another user's items.list, {v['requests']} requests: p50 {v['p50']:.1f} ms, **p95 {v['p95']:.1f} ms** (goal <= 100 ms), max {v['max']:.1f} ms")
        say(f"- lab.fork of that thread (one transaction; items copied in one statement): **{v['fork_ms']:.0f} ms**, "
            f"another user's longest wait meanwhile {v['fork_max']:.0f} ms\n")

        turns_stored = 10 if args.quick else 100
        half, full = bench_storage(turns_stored // 2, 10_000, tmp / "half"), bench_storage(turns_stored, 10_000, tmp / "full")
        say(f"## Storage: one thread of {turns_stored} messages of 10 KB\n")
        say(f"- the file: **{full['file_mb']:.1f} MB** for {full['text_mb']:.1f} MB of text in its items "
            f"(**{full['file_mb'] / full['text_mb']:.1f}x**; goal <= 3x); after {turns_stored // 2} messages {half['file_mb']:.1f} MB: "
            f"twice the messages, **{full['file_mb'] / half['file_mb']:.2f}x** the file. Each input item is stored once; "
            "what still grows with the history is the list of hashes naming a call's items (32 bytes per item per call)\n")

        e = bench_export(exported, tmp)
        lab_e, copy_e = e["lab"], e["copy"]
        say(f"## Export of {exported:,} items to Parquet\n")
        say("| export | seconds | RSS before MB | peak RSS MB | file MB |\n|---|---|---|---|---|")
        say(f"| lab.export('items.parquet') | {lab_e['s']:.2f} | {lab_e['before_mb']:.0f} | {lab_e['peak_mb']:.0f} | {lab_e['size_mb']:.1f} |")
        say(f"| DuckDB `COPY items TO ... (FORMAT parquet)` | {copy_e['s']:.2f} | {copy_e['before_mb']:.0f} | {copy_e['peak_mb']:.0f} | {copy_e['size_mb']:.1f} |")
        say(f"\n- lab.export / DuckDB's COPY of the same table: **{lab_e['s'] / copy_e['s']:.2f}x** (goal <= 1.5x)")
        say(f"- memory the export added to the process: lab {lab_e['peak_mb'] - lab_e['before_mb']:.0f} MB, "
            f"plain DuckDB {copy_e['peak_mb'] - copy_e['before_mb']:.0f} MB (the rows never pass through Python)\n")

        g = bench_guardrails(turns, 20 if args.quick else 200, tmp)
        say("## Guardrails\n")
        say(f"- all five deterministic checks (PII, URL Filter, Keyword Filter, Competitors, Secret Keys) over 10 KB: prose with a date and a link "
            f"per sentence **{g['prose_ms']:.2f} ms**, text dense with PII ({g['dense_hits']} hits) **{g['dense_ms']:.2f} ms** (goal <= 2 ms)")
        say("  - per check, prose: " + ", ".join(f"{k} {v:.2f} ms" for k, v in g["prose_checks"].items()))
        say("  - per check, dense: " + ", ".join(f"{k} {v:.2f} ms" for k, v in g["dense_checks"].items()))
        say(f"- the default pipeline (`guardrails.DEFAULT_CONFIG`) on a single-agent offline turn, p50: {g['guarded_p50']:.2f} vs {g['plain_p50']:.2f} ms "
            f"without: **{g['guarded_p50'] / g['plain_p50']:.2f}x** (goal <= 1.10x)")
        j, (positives, negatives) = g["jailbreak"], g["jailbreak_counts"]
        say(f"- offline Jailbreak detector, {positives} attacks (openai-guardrails' demo set) against {negatives} benign prompts (its benign lines and "
            f"chatkit-lab's `prompts` set): ROC AUC **{j['roc_auc']:.3f}**, recall at <= 1% false positives **{j['recall_at_fpr_1pct']:.2f}**; "
            f"at the default threshold 0.7: recall {j['recall']:.2f}, false-positive rate {g['jailbreak_fpr_at_default']:.3f} (goal: recall at 1% FPR, reported)")
        say(f"- Contains PII on the shipped `pii` set ({g['pii_samples']} sentences, generated with Faker, 400 hard negatives), per entity (goal >= 0.98 each):\n")
        say("| entity | precision | recall | TP | FP | FN |\n|---|---|---|---|---|---|")
        for row in g["pii"].itertuples():
            say(f"| {row.entity} | {row.precision:.3f} | {row.recall:.3f} | {row.tp} | {row.fp} | {row.fn} |")
        say("")

        w = bench_workflows(turns, 5 if args.quick else 30, tmp)
        say("## Workflows\n")
        say(f"- a 5-node workflow turn (guardrail → classifier → if/else → agent → end; {w['nodes_per_turn']:.0f} node runs a turn, two of them "
            f"model calls) against the same lab's single-agent turn, offline model, p50: {w['workflow_p50']:.2f} vs {w['agent_p50']:.2f} ms: "
            f"**{w['workflow_p50'] / w['agent_p50']:.2f}x** (goal <= 1.5x)")
        say(f"- import of a {w['lines']}-line Python export ({w['import_nodes']} nodes; `ast`, never run): **{w['import_ms']:.1f} ms** (goal <= 100 ms); "
            f"the {w['ts_lines']}-line TypeScript fixture (tree-sitter): {w['ts_import_ms']:.1f} ms; `to_python()` of the imported graph "
            f"({w['to_python_lines']} lines, read back to check it): {w['to_python_ms']:.0f} ms\n")

        n_eval, n_larger = (20, None) if args.quick else (1000, 2000)
        peers = Path(args.peers) if args.peers and not args.quick else None
        ev = bench_evals(n_eval, n_larger, 32, tmp, peers)
        say(f"## Evals: {n_eval:,} items × 2 graders, concurrency 32\n")
        peer = (f"Inspect AI {ev['inspect_per_s']:.1f} items/s with its mock model and the matching scorers (includes, exact): "
                f"**{ev['offline_per_s'] / ev['inspect_per_s']:.2f}x** (goal >= 1.0x)") if "inspect_per_s" in ev else \
            "Inspect AI not run (`make bench` installs it in .venv-bench; --quick skips it)"
        say(f"- bookkeeping, offline model: **{ev['offline_per_s']:.1f} items/s** (each item a real turn: a thread, its items, the turn and trace rows, "
            f"then graded from the store); {peer}")
        say(f"- a model that waits 100 ms per call: **{ev['waiting_per_s']:.1f} items/s** against the ideal {ev['ideal_per_s']:.0f}: "
            f"**{ev['waiting_per_s'] / ev['ideal_per_s']:.2f}x** (goal >= 0.9x)")
        if n_larger:
            say(f"- memory the run added: **{ev['added_mb']:.0f} MB for {n_eval:,} items, {ev['added_mb_larger']:.0f} MB for {n_larger:,}** "
                f"({ev['added_mb_larger'] / ev['added_mb']:.2f}x for twice the items; goal: flat in the item count); of it DuckDB's own "
                f"memory (the indexes and cached blocks of the file, which grows with every item written) {ev['duckdb_mb']:.0f} and "
                f"{ev['duckdb_mb_larger']:.0f} MB\n")
        else:
            say(f"- memory the run added: {ev['added_mb']:.0f} MB for {n_eval:,} items\n")

    if args.quick:
        say("\n## Browser\n\nNot run with --quick.")
    else:
        import browser

        say("")
        for line in browser.run():
            say(line)

    out = args.out or (None if args.quick else str(HERE / "RESULTS.md"))
    if out:
        Path(out).write_text("\n".join(lines) + "\n")
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
