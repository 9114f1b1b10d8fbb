"""Subprocess side of the multi-process tests (run as `python worker.py MODE ...`)."""

import asyncio
import json
import sys
import time
from datetime import datetime

from chatkit.store import NotFoundError
from chatkit.types import ThreadMetadata

from chatkit_lab import ChatLab, DuckDBStore, MirrorModel, RequestContext
from chatkit_lab.store.database import Database

SHARED = RequestContext(user_id="shared")


async def ping_pong(path: str, me: str, other: str, first: bool, rounds: int) -> None:
    """Write my k-th thread only after seeing the other process's previous one."""
    store = DuckDBStore(Database(path, release_after=0.02))

    async def wait_for(thread_id: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                await store.load_thread(thread_id, SHARED)
                return
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{me} never saw {thread_id}") from None
                await asyncio.sleep(0.01)

    for k in range(rounds):
        if not first or k > 0:
            await wait_for(f"{other}_{k if not first else k - 1}")
        await store.save_thread(ThreadMetadata(id=f"{me}_{k}", created_at=datetime.now()), SHARED)
        page = await store.load_threads(100, None, "asc", SHARED)
        print(json.dumps({"round": k, "seen": len(page.data)}), flush=True)
    await wait_for(f"{other}_{rounds - 1}")
    store.close()
    print("OK", flush=True)


def lab_turns(path: str, name: str, turns: int) -> None:
    with ChatLab(path, user_id=name) as lab:
        thread_id = None
        for k in range(turns):
            turn = lab.send_sync(f"{name} message {k}", thread_id)
            assert turn.error is None, turn.error
            thread_id = turn.thread_id
    print("OK", flush=True)


def crash(path: str) -> None:
    lab = ChatLab(path, model=MirrorModel(delay=0.01))
    done = lab.send_sync("finished before the kill")
    print(json.dumps({"thread_id": done.thread_id, "items": done.item_ids}), flush=True)
    lab.runtime.loop.submit(lab.runtime.send("/words 5000", done.thread_id, lab.user_id))  # ~50 s of deltas
    time.sleep(0.5)
    print("STREAMING", flush=True)
    time.sleep(120)


def killed_after_reply(path: str, turns: int) -> None:
    """Chat, then wait to be killed before the last turn's log rows are written."""
    import chatkit_lab.tracing

    chatkit_lab.tracing.FLUSH_DELAY = 60  # the log write would come long after the kill
    lab = ChatLab(path, warm=False)
    thread_id = None
    for k in range(turns):
        thread_id = lab.send_sync(f"message {k}", thread_id).thread_id
    print("REPLIED", flush=True)
    time.sleep(120)


def queued(path: str, name: str) -> None:
    """On each "go" line, wait for the file, write my name, let go; then say "done"."""
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        db = Database(path)
        with db.cursor() as cur:
            cur.execute("INSERT INTO arrivals VALUES (?)", [name])
        db.close()
        print("done", flush=True)


def holder(path: str) -> None:
    """Hold the file (a plain DuckDB client, deaf to waiters) on "hold", close it on "release"."""
    import duckdb

    con = None
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "hold":
            deadline = time.monotonic() + 20
            while con is None:  # the other process may still be letting go
                try:
                    con = duckdb.connect(path)
                except duckdb.IOException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            print("held", flush=True)
        elif line.strip() == "release" and con is not None:
            con.close()
            con = None
            print("released", flush=True)
        else:
            break


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "pingpong":
        asyncio.run(ping_pong(args[0], args[1], args[2], args[3] == "first", int(args[4])))
    elif mode == "lab":
        lab_turns(args[0], args[1], int(args[2]))
    elif mode == "crash":
        crash(args[0])
    elif mode == "killed_after_reply":
        killed_after_reply(args[0], int(args[1]))
    elif mode == "queued":
        queued(args[0], args[1])
    elif mode == "holder":
        holder(args[0])
