"""Real processes: two sharing one DuckDB file, and one killed with SIGKILL mid-reply."""

import json
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from chatkit_lab import DuckDBStore, RequestContext

from .conftest import run

WORKER = str(Path(__file__).parent / "helpers" / "worker.py")


def start(*args):
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_take_turns_writing_and_reading_one_file(db_path):
    rounds = 5
    a = start("pingpong", db_path, "a", "b", "first", rounds)
    b = start("pingpong", db_path, "b", "a", "second", rounds)
    out_a, err_a = a.communicate(timeout=120)
    out_b, err_b = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    assert "lock" not in (err_a + err_b).lower()
    seen_a = [json.loads(line)["seen"] for line in out_a.splitlines() if line.startswith("{")]
    seen_b = [json.loads(line)["seen"] for line in out_b.splitlines() if line.startswith("{")]
    # Each write waited for the other's previous one, so every listing saw all of those
    # (and at most the one the other process made since).
    assert all(2 * k + 1 <= s <= 2 * k + 2 for k, s in enumerate(seen_a))
    assert all(2 * k + 2 <= s <= 2 * k + 3 for k, s in enumerate(seen_b))
    assert len(seen_a) == len(seen_b) == rounds
    store = DuckDBStore(db_path)
    assert len(run(store.load_threads(100, None, "asc", RequestContext("shared"))).data) == 2 * rounds
    store.close()


def test_two_labs_in_two_processes_both_keep_chatting(db_path):
    workers = [start("lab", db_path, name, 4) for name in ("ann", "ben")]
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0 and out.strip().endswith("OK"), err
    store = DuckDBStore(db_path)
    for name in ("ann", "ben"):
        threads = run(store.load_threads(10, None, "asc", RequestContext(name))).data
        assert len(threads) == 1
        items = run(store.load_thread_items(threads[0].id, None, 50, "asc", RequestContext(name))).data
        assert [i.type for i in items] == ["user_message", "assistant_message"] * 4
    store.close()


def test_processes_waiting_for_the_file_get_it_in_the_order_they_came(db_path):
    import time

    import duckdb

    with duckdb.connect(str(db_path)) as con:
        con.execute("CREATE TABLE arrivals (name VARCHAR)")
    names = ["ann", "ben", "cat"]
    procs = {n: subprocess.Popen([sys.executable, WORKER, "queued", str(db_path), n], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for n in names}
    procs["holder"] = subprocess.Popen([sys.executable, WORKER, "holder", str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def say(name, line, expect):
        procs[name].stdin.write(line + "\n")
        procs[name].stdin.flush()
        if expect:
            assert procs[name].stdout.readline().strip() == expect

    try:
        for p in procs.values():
            assert p.stdout.readline().strip() == "ready"
        orders = [names, names[::-1], [names[1], names[2], names[0]]]
        for order in orders:
            say("holder", "hold", "held")
            for name in order:  # each starts waiting 0.3 s after the one before
                say(name, "go", None)
                time.sleep(0.3)
            say("holder", "release", "released")
            for name in order:
                assert procs[name].stdout.readline().strip() == "done"
    finally:
        for p in procs.values():
            p.stdin.close()
            p.wait(timeout=30)
    with duckdb.connect(str(db_path)) as con:
        arrived = [n for (n,) in con.execute("SELECT name FROM arrivals").fetchall()]
    assert arrived == [n for order in orders for n in order]  # first come, first served, every round
    assert not Path(str(db_path) + ".queue").exists()  # the last waiter took the tickets away


def test_a_reply_the_user_saw_is_kept_while_the_file_stays_locked_and_written_once_it_is_free(db_path):
    import time

    from chatkit_lab import ChatLab, MirrorModel

    lab = ChatLab(db_path, model=MirrorModel(delay=0.01), warm=False)
    first = lab.send_sync("hello")
    lab.db.lock_timeout = 1.0  # the reply's save gives up waiting long before the other process lets go
    holder = subprocess.Popen([sys.executable, WORKER, "holder", str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        reply = lab.runtime.loop.submit(lab.runtime.send("/words 200", first.thread_id, lab.user_id))  # 2 s of deltas
        time.sleep(0.3)
        while lab.db.is_open:  # the lab lets go while the reply streams (0.5 s idle)
            time.sleep(0.05)
        holder.stdin.write("hold\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "held"
        turn = reply.result(timeout=60)
        assert turn.error is None and len(turn.text.split()) >= 200  # the user saw the whole reply, and no error
        assert lab.store.kept == 1  # not yet in the file
        time.sleep(1.0)
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        deadline = time.monotonic() + 20
        while lab.store.kept and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lab.store.kept == 0
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        lab.close()
    store = DuckDBStore(db_path)
    items = run(store.load_thread_items(first.thread_id, None, 50, "asc", RequestContext("local"))).data
    store.close()
    assert [i.type for i in items] == ["user_message", "assistant_message"] * 2
    assert items[-1].id == turn.item_ids[-1]


def test_sigkill_mid_reply_leaves_a_file_with_every_finished_item(db_path):
    proc = start("crash", db_path)
    first = json.loads(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "STREAMING"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    store = DuckDBStore(db_path)
    ctx = RequestContext("local")
    items = run(store.load_thread_items(first["thread_id"], None, 50, "asc", ctx)).data
    store.close()
    ids = [i.id for i in items]
    assert ids[: len(first["items"])] == first["items"]
    # The second user message was done (stored) before the stream began; the reply was not.
    assert [i.type for i in items] == ["user_message", "assistant_message", "user_message"]
    assert items[2].content[0].text == "/words 5000"


def test_a_turn_whose_log_row_died_with_the_process_is_still_a_row_of_turns_df(db_path, make_lab):
    proc = start("killed_after_reply", db_path, 3)
    assert proc.stdout.readline().strip() == "REPLIED", proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    turns = make_lab(warm=False).turns_df()
    assert turns.user_text.tolist() == ["message 0", "message 1", "message 2"]  # no exchange goes missing
    assert set(turns.status) == {"not logged"} and turns.reply_text.str.contains("message").all()
    assert turns.error.str.contains("before this turn was logged").all()


def test_a_file_locked_too_long_by_another_process_gives_a_sentence_not_a_duckdb_error(db_path):
    import pytest

    from chatkit_lab import ChatLab, ChatLabError
    from chatkit_lab.store.database import Database

    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(db_path)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ChatLabError) as busy, Database(db_path, lock_timeout=0.5).cursor():
            pass
        assert str(busy.value).startswith(f"The database file {db_path} stayed locked by another process")
        assert "lab.close()" in str(busy.value)
    finally:
        holder.kill()
        holder.wait()
    with ChatLab(db_path) as lab:  # once the other process is gone, the file works
        assert lab.send_sync("hello").error is None


HOLDER = """
import sys, time, duckdb
con = None
for line in sys.stdin:
    word, *rest = line.split()
    if word == "hold":
        while con is None:
            try:
                con = duckdb.connect(sys.argv[1])
            except duckdb.IOException:
                time.sleep(0.02)
    elif word == "delete":
        con.execute("DELETE FROM items WHERE thread_id = ?", rest)
        con.execute("DELETE FROM threads WHERE thread_id = ?", rest)
    elif word == "release":
        con.close()
        con = None
    print("ok", flush=True)
"""


def test_kept_items_never_block_the_store_and_a_closed_database_keeps_nothing(db_path, caplog):
    import logging
    import time

    import pytest
    from chatkit.types import ThreadMetadata

    from chatkit_lab.errors import DatabaseBusyError
    from chatkit_lab.store.database import Database

    from .conftest import assistant_message, user_message

    ctx = RequestContext("local")
    db = Database(db_path, lock_timeout=0.3, release_after=0.05)
    store = DuckDBStore(db)
    for thread in ("thr_kept", "thr_gone"):
        run(store.save_thread(ThreadMetadata(id=thread, created_at=datetime(2026, 1, 1)), ctx))
        run(store.add_thread_item(thread, user_message(f"msg_{thread}", thread, "hello"), ctx))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def say(line):
        holder.stdin.write(line + "\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "ok"

    try:
        while db.is_open:
            time.sleep(0.02)
        say("hold")
        for thread in ("thr_kept", "thr_gone"):
            run(store.add_thread_item(thread, assistant_message(f"reply_{thread}", thread, "a reply the user saw"), ctx))
        assert store.kept == 2
        with pytest.raises(DatabaseBusyError):  # a user message is the model's input: not kept
            run(store.add_thread_item("thr_kept", user_message("msg_2", "thr_kept", "more"), ctx))
        say("delete thr_gone")  # another process deletes a thread while its reply waits
        say("release")
        caplog.set_level(logging.ERROR, logger="chatkit_lab")
        items = run(store.load_thread_items("thr_kept", None, 10, "asc", ctx)).data
        assert [i.id for i in items] == ["msg_thr_kept", "reply_thr_kept"] and store.kept == 0
        assert any("reply_thr_gone" in r.getMessage() and "thread thr_gone is gone" in r.getMessage() for r in caplog.records)
        while db.is_open:
            time.sleep(0.02)
        say("hold")
        run(store.add_thread_item("thr_kept", assistant_message("reply_unsaved", "thr_kept", "kept at close"), ctx))
        store.close()  # the file is still held: closing says what it could not save
        assert any("1 items (replies users saw) could not be saved" in r.getMessage() for r in caplog.records)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    started = time.monotonic()
    with pytest.raises(DatabaseBusyError, match="closed"):
        run(store.add_thread_item("thr_kept", assistant_message("reply_late", "thr_kept", "after close"), ctx))
    assert store.kept == 1 and time.monotonic() - started < 1  # nothing more kept once closed
