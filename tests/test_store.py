"""The ChatKit Store contract, for DuckDBStore, PostgresStore and the in-memory store alike."""

from datetime import timedelta

import duckdb
import pytest
from chatkit.store import NotFoundError
from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    ClientToolCallItem,
    CustomTask,
    EndOfTurnItem,
    FileAttachment,
    HiddenContextItem,
    LockedStatus,
    Page,
    SDKHiddenContextItem,
    TaskItem,
    Thread,
    ThreadMetadata,
    URLSource,
    UserMessageTagContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from chatkit.widgets import Card, Text

from chatkit_lab.store import DuckDBStore

from .conftest import ALICE, BOB, STORES, T0, assistant_message, make_store, run, user_message


@pytest.fixture(params=STORES)
def store(request, db_path):
    s = make_store(request.param, db_path, request)
    yield s
    if request.param != "memory":
        s.close()


def thread(thread_id="thr_1", at=T0, title=None):
    return ThreadMetadata(id=thread_id, created_at=at, title=title)


def every_item_type(tid):
    annotation = Annotation(source=URLSource(title="Docs", url="https://example.com"), index=3)
    return [
        user_message("u1", tid, "hi @sales").model_copy(
            update={"content": [user_message("u1", tid).content[0], UserMessageTagContent(id="t", text="sales", data={"k": 1})], "quoted_text": "x = 1"}
        ),
        AssistantMessageItem(id="a1", thread_id=tid, created_at=T0, content=[AssistantMessageContent(text="See docs", annotations=[annotation])]),
        WorkflowItem(id="w1", thread_id=tid, created_at=T0, workflow=Workflow(type="custom", tasks=[CustomTask(title="Load", content="ok", status_indicator="complete")], expanded=False)),
        TaskItem(id="k1", thread_id=tid, created_at=T0, task=CustomTask(title="Step")),
        WidgetItem(id="g1", thread_id=tid, created_at=T0, widget=Card(children=[Text(value="hello")]), copy_text="hello"),
        ClientToolCallItem(id="c1", thread_id=tid, created_at=T0, call_id="call_1", name="pick", arguments={"a": 1}, status="pending"),
        HiddenContextItem(id="h1", thread_id=tid, created_at=T0, content="secret context"),
        SDKHiddenContextItem(id="s1", thread_id=tid, created_at=T0, content="cancelled"),
        EndOfTurnItem(id="e1", thread_id=tid, created_at=T0),
    ]


def test_every_item_type_round_trips_exactly(store):
    run(store.save_thread(thread(), ALICE))
    items = every_item_type("thr_1")
    for i, item in enumerate(items):
        item.created_at = T0 + timedelta(seconds=i)
        run(store.add_thread_item("thr_1", item, ALICE))
    for item in items:
        assert run(store.load_item("thr_1", item.id, ALICE)) == item
    page = run(store.load_thread_items("thr_1", None, 50, "asc", ALICE))
    assert page.data == items and not page.has_more


def test_save_is_an_upsert_that_keeps_the_original_position_and_add_never_overwrites(store):
    from chatkit_lab.errors import ConflictError

    run(store.save_thread(thread(), ALICE))
    for i in range(3):
        run(store.add_thread_item("thr_1", user_message(f"m{i}", "thr_1", at=T0 + timedelta(seconds=i)), ALICE))
    later = assistant_message("m1", "thr_1", "rewritten", at=T0 + timedelta(hours=1))
    with pytest.raises(ConflictError):
        run(store.add_thread_item("thr_1", later, ALICE))
    run(store.save_item("thr_1", later, ALICE))
    run(store.save_item("thr_1", later.model_copy(update={"content": [AssistantMessageContent(text="again", annotations=[])]}), ALICE))
    page = run(store.load_thread_items("thr_1", None, 10, "asc", ALICE))
    assert [i.id for i in page.data] == ["m0", "m1", "m2"]
    assert page.data[1].content[0].text == "again"


def test_save_thread_accepts_a_full_thread_and_keeps_only_metadata(store):
    full = Thread(id="thr_1", created_at=T0, title="T", items=Page(data=[user_message("u", "thr_1")]), status=LockedStatus(reason="done"))
    run(store.save_thread(full, ALICE))
    loaded = run(store.load_thread("thr_1", ALICE))
    assert type(loaded) is ThreadMetadata
    assert (loaded.title, loaded.status.type, loaded.status.reason) == ("T", "locked", "done")
    assert run(store.load_thread_items("thr_1", None, 10, "asc", ALICE)).data == []
    run(store.save_thread(loaded.model_copy(update={"title": "renamed"}), ALICE))
    assert run(store.load_thread("thr_1", ALICE)).title == "renamed"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.load_thread("nope", ALICE),
        lambda s: s.load_item("thr_1", "nope", ALICE),
        lambda s: s.load_item("nope", "u1", ALICE),
        lambda s: s.load_attachment("nope", ALICE),
        lambda s: s.load_thread_items("thr_1", "nope", 10, "asc", ALICE),
        lambda s: s.load_threads(10, "nope", "desc", ALICE),
        lambda s: s.delete_thread("nope", ALICE),
        lambda s: s.add_thread_item("nope", user_message("x", "nope"), ALICE),
    ],
)
def test_missing_ids_raise_not_found(store, call):
    run(store.save_thread(thread(), ALICE))
    run(store.add_thread_item("thr_1", user_message("u1", "thr_1"), ALICE))
    with pytest.raises(NotFoundError):
        run(call(store))


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
def test_items_are_keyset_paginated_with_exact_has_more(store, order, limit):
    run(store.save_thread(thread(), ALICE))
    # Ties in created_at: the insertion sequence breaks them.
    times = [0, 1, 1, 1, 2, 3, 3]
    for i, t in enumerate(times):
        run(store.add_thread_item("thr_1", user_message(f"m{i}", "thr_1", at=T0 + timedelta(seconds=t)), ALICE))
    expected = [f"m{i}" for i in range(7)][:: 1 if order == "asc" else -1]
    seen, after, pages = [], None, 0
    while True:
        page = run(store.load_thread_items("thr_1", after, limit, order, ALICE))
        pages += 1
        seen += [i.id for i in page.data]
        assert len(page.data) <= limit
        assert page.has_more == (len(seen) < 7)
        if not page.has_more:
            break
        after = page.after
    assert seen == expected
    assert pages == -(-7 // limit)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_threads_are_keyset_paginated(store, order):
    for i, t in enumerate([5, 1, 1, 3]):
        run(store.save_thread(thread(f"thr_{i}", at=T0 + timedelta(seconds=t)), ALICE))
    run(store.save_thread(thread("thr_bob", at=T0), BOB))
    expected = ["thr_1", "thr_2", "thr_3", "thr_0"][:: 1 if order == "asc" else -1]
    first = run(store.load_threads(3, None, order, ALICE))
    assert [t.id for t in first.data] == expected[:3] and first.has_more
    rest = run(store.load_threads(3, first.after, order, ALICE))
    assert [t.id for t in rest.data] == expected[3:] and not rest.has_more


def test_deleting_a_thread_deletes_its_items_and_attachments(store):
    run(store.save_thread(thread(), ALICE))
    run(store.add_thread_item("thr_1", user_message("u1", "thr_1"), ALICE))
    run(store.save_attachment(FileAttachment(id="atc_1", name="a.txt", mime_type="text/plain", thread_id="thr_1"), ALICE))
    run(store.delete_thread("thr_1", ALICE))
    with pytest.raises(NotFoundError):
        run(store.load_thread("thr_1", ALICE))
    assert run(store.load_thread_items("thr_1", None, 10, "asc", ALICE)).data == []
    with pytest.raises(NotFoundError):
        run(store.load_attachment("atc_1", ALICE))
    if isinstance(store, DuckDBStore):
        with store.db.cursor() as cur:
            assert cur.execute("SELECT count(*) FROM items").fetchone()[0] == 0
            assert cur.execute("SELECT count(*) FROM attachments").fetchone()[0] == 0


def test_deleting_a_never_saved_item_is_not_an_error(store):
    run(store.save_thread(thread(), ALICE))
    run(store.delete_thread_item("thr_1", "pending_only", ALICE))


ISOLATION_ATTEMPTS = {
    "load_thread": lambda s: s.load_thread("thr_a", BOB),
    "load_items_after": lambda s: s.load_thread_items("thr_a", "u1", 10, "asc", BOB),
    "load_item": lambda s: s.load_item("thr_a", "u1", BOB),
    "add_item": lambda s: s.add_thread_item("thr_a", user_message("evil", "thr_a"), BOB),
    "save_item": lambda s: s.save_item("thr_a", assistant_message("u1", "thr_a", "overwritten"), BOB),
    "save_thread": lambda s: s.save_thread(thread("thr_a", title="hijacked"), BOB),
    "delete_thread": lambda s: s.delete_thread("thr_a", BOB),
    "delete_item": lambda s: s.delete_thread_item("thr_a", "u1", BOB),
    "load_attachment": lambda s: s.load_attachment("atc_a", BOB),
    "save_attachment": lambda s: s.save_attachment(FileAttachment(id="atc_a", name="evil", mime_type="text/plain"), BOB),
}


@pytest.mark.parametrize("attempt", ISOLATION_ATTEMPTS, ids=list(ISOLATION_ATTEMPTS))
def test_another_users_ids_behave_exactly_like_missing_ones(store, attempt):
    run(store.save_thread(thread("thr_a", title="alice's"), ALICE))
    run(store.add_thread_item("thr_a", user_message("u1", "thr_a", "private"), ALICE))
    run(store.save_attachment(FileAttachment(id="atc_a", name="a.txt", mime_type="text/plain"), ALICE))
    with pytest.raises(NotFoundError) as foreign:
        run(ISOLATION_ATTEMPTS[attempt](store))
    # The message names the id the same way it does for an id nobody has.
    assert "thr_a" in str(foreign.value) or "atc_a" in str(foreign.value) or "u1" in str(foreign.value)
    assert run(store.load_thread("thr_a", ALICE)).title == "alice's"
    assert [i.id for i in run(store.load_thread_items("thr_a", None, 10, "asc", ALICE)).data] == ["u1"]
    assert run(store.load_item("thr_a", "u1", ALICE)).content[0].text == "private"
    assert run(store.load_attachment("atc_a", ALICE)).name == "a.txt"
    assert run(store.load_threads(10, None, "desc", BOB)).data == []


def test_deleting_another_users_attachment_does_nothing(store):
    run(store.save_attachment(FileAttachment(id="atc_a", name="a.txt", mime_type="text/plain"), ALICE))
    run(store.delete_attachment("atc_a", BOB))
    assert run(store.load_attachment("atc_a", ALICE)).name == "a.txt"


def test_duckdb_rows_are_relational_and_queryable(db_path):
    store = DuckDBStore(db_path)
    run(store.save_thread(thread(title="Q"), ALICE))
    for item in every_item_type("thr_1")[:3]:
        run(store.add_thread_item("thr_1", item, ALICE))
    store.close()  # the file as another program reads it, with the task list the store held for a reply
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute("SELECT item_id, user_id, type, role, text FROM items ORDER BY seq").fetchall()
        title, status = con.execute("SELECT title, status FROM threads").fetchone()
        json_text = con.execute("SELECT data->>'$.content[0].text' FROM items WHERE item_id = 'a1'").fetchone()[0]
    assert rows == [
        ("u1", "alice", "user_message", "user", "hi@sales"),
        ("a1", "alice", "assistant_message", "assistant", "See docs"),
        ("w1", "alice", "workflow", None, "Load ok"),
    ]
    assert (title, status, json_text) == ("Q", "active", "See docs")


def test_a_task_list_is_written_with_the_reply_after_it_and_never_waits_long(db_path):
    import asyncio
    import time

    from chatkit_lab.errors import ConflictError
    from chatkit_lab.store.duckdb import HOLD_SECONDS

    store = DuckDBStore(db_path)

    def in_file(thread_id):
        with store.db.cursor() as cur:  # the file itself, not through the store
            return [i for (i,) in cur.execute("SELECT item_id FROM items WHERE thread_id = ? ORDER BY seq", [thread_id]).fetchall()]

    def task_list(item_id, tid):
        return next(i for i in every_item_type(tid) if i.type == "workflow").model_copy(update={"id": item_id})

    async def scenario():
        for tid in ("thr_1", "thr_2", "thr_3"):
            await store.save_thread(thread(tid), ALICE)
            await store.add_thread_item(tid, user_message(f"u_{tid}", tid, "hi"), ALICE)
        # A turn's task list, then its reply: both in the file, in order, once the reply is.
        await store.add_thread_item("thr_1", task_list("w1", "thr_1"), ALICE)
        assert in_file("thr_1") == ["u_thr_1"] and store.kept == 1
        await store.add_thread_item("thr_1", assistant_message("a1", "thr_1", "done"), ALICE)
        assert in_file("thr_1") == ["u_thr_1", "w1", "a1"] and store.kept == 0
        # Any other call of the store writes it first: what it reads includes it.
        await store.add_thread_item("thr_2", task_list("w2", "thr_2"), ALICE)
        page = await store.load_thread_items("thr_2", None, 10, "asc", ALICE)
        assert [i.id for i in page.data] == ["u_thr_2", "w2"] and in_file("thr_2") == ["u_thr_2", "w2"]
        # A reply with an id the thread has: refused as always, and the task list is still written.
        await store.add_thread_item("thr_2", task_list("w3", "thr_2"), ALICE)
        with pytest.raises(ConflictError):
            await store.add_thread_item("thr_2", assistant_message("u_thr_2", "thr_2", "clash"), ALICE)
        assert in_file("thr_2") == ["u_thr_2", "w2", "w3"] and store.kept == 0
        # Another user's thread: refused at once, never held.
        with pytest.raises(NotFoundError):
            await store.add_thread_item("thr_3", task_list("w4", "thr_3"), BOB)
        # Nothing after it: written within HOLD_SECONDS all the same.
        await store.add_thread_item("thr_3", task_list("w5", "thr_3"), ALICE)
        started = time.monotonic()
        while in_file("thr_3") != ["u_thr_3", "w5"]:
            assert time.monotonic() - started < HOLD_SECONDS + 2, "the held task list was never written"
            await asyncio.sleep(0.05)
        await store.add_thread_item("thr_3", task_list("w6", "thr_3"), ALICE)

    run(scenario())
    store.close()  # the last one, held when the loop ended, is written at close
    store = DuckDBStore(db_path)
    assert in_file("thr_3") == ["u_thr_3", "w5", "w6"]
    store.close()


def test_the_store_remembers_only_the_threads_used_last_and_still_answers_the_others(db_path):
    from chatkit_lab.store.cache import THREADS_KEPT, LeaseCache

    cache = LeaseCache().fresh(1)
    for n in range(THREADS_KEPT + 10):
        cache.put_thread(f"thr_{n}", "alice", "{}")
        cache.put_newest(f"thr_{n}", [(f"i_{n}", T0, "{}")], complete=True)
        if n == THREADS_KEPT - 1:
            assert cache.owned("thr_0", "alice")  # used again: kept over the ones after it
    assert cache.owned("thr_0", "alice") and cache.newest("thr_0", 10) is not None
    assert not cache.owned("thr_1", "alice") and cache.newest("thr_1", 10) is None  # forgotten, tail and all
    assert cache.owned(f"thr_{THREADS_KEPT + 9}", "alice")
    # Through the store: a forgotten thread is read from the file and written as before.
    store = DuckDBStore(db_path)
    for n in range(THREADS_KEPT + 2):
        run(store.save_thread(thread(f"thr_{n}"), ALICE))
        run(store.add_thread_item(f"thr_{n}", user_message(f"u_{n}", f"thr_{n}", "hi"), ALICE))
    run(store.add_thread_item("thr_0", assistant_message("a_0", "thr_0", "hello again"), ALICE))
    assert [i.id for i in run(store.load_thread_items("thr_0", None, 10, "asc", ALICE)).data] == ["u_0", "a_0"]
    with pytest.raises(NotFoundError):
        run(store.add_thread_item("thr_0", assistant_message("a_1", "thr_0", "not yours"), BOB))
    store.close()


def test_migrations_are_recorded_in_order_and_applied_once(db_path):
    from chatkit_lab.store.schema import MIGRATIONS

    for _ in range(2):
        store = DuckDBStore(db_path)
        run(store.save_thread(thread(), ALICE))
        with store.db.cursor() as cur:
            names = [n for (n,) in cur.execute("SELECT name FROM _migrations ORDER BY applied_at, name").fetchall()]
        store.close()
    assert names == [m.__name__ for m in MIGRATIONS]
    assert names == sorted(names)


def test_attachment_bytes_are_stored_per_user(db_path):
    from chatkit.types import AttachmentCreateParams

    store = DuckDBStore(db_path)
    att = run(store.create_attachment(AttachmentCreateParams(name="a.csv", size=3, mime_type="text/csv"), ALICE))
    assert str(att.upload_descriptor.url).endswith(f"/{att.id}/upload")
    with pytest.raises(NotFoundError):
        run(store.write_attachment_bytes(att.id, b"evil", BOB))
    done = run(store.write_attachment_bytes(att.id, b"a,b", ALICE))
    assert done.upload_descriptor is None
    assert run(store.load_attachment_bytes(att.id, ALICE)) == b"a,b"
    store.close()


def test_an_older_file_gets_named_keys_and_keeps_its_rows_and_keys(db_path):
    import duckdb

    from chatkit_lab.store.schema import MIGRATIONS, migrate

    con = duckdb.connect(str(db_path))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for fn in MIGRATIONS[:8]:  # the file as m008 left it: keys named "id"
        fn(con)
        con.execute("INSERT INTO _migrations (name) VALUES (?)", [fn.__name__])
    for thread in ("thr_a", "thr_fork"):  # a fork copies its parent's item ids
        data = ThreadMetadata(id=thread, created_at=T0).model_dump_json()
        con.execute("INSERT INTO threads (id, user_id, status, created_at, updated_at, data) VALUES (?, 'alice', 'active', now(), now(), ?)", [thread, data])
        con.execute("INSERT INTO items (id, thread_id, user_id, created_at, updated_at, type, data) VALUES ('msg_1', ?, 'alice', now(), now(), 'user_message', '{}')", [thread])
    con.execute("INSERT INTO feedback (thread_id, item_id, user_id, kind, created_at) VALUES ('thr_a', 'msg_1', 'alice', 'positive', now())")
    assert migrate(con)[0] == "m009_named_ids"
    assert con.execute("SELECT count(*) FROM feedback JOIN items USING (thread_id, item_id)").fetchone()[0] == 1  # one rating, once
    assert [r[0] for r in con.execute("SELECT thread_id FROM threads ORDER BY thread_id").fetchall()] == ["thr_a", "thr_fork"]
    with pytest.raises(duckdb.ConstraintException):  # the key is still (thread_id, item_id)
        con.execute("INSERT INTO items (item_id, thread_id, user_id, created_at, updated_at, type, data) VALUES ('msg_1', 'thr_a', 'alice', now(), now(), 'user_message', '{}')")
    names = {t: [c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [t]).fetchall()][0]
             for t in ("threads", "items", "attachments")}
    con.close()
    assert names == {"threads": "thread_id", "items": "item_id", "attachments": "attachment_id"}
    store = DuckDBStore(db_path)  # and the store reads the migrated file
    assert [t.id for t in run(store.load_threads(10, None, "asc", ALICE)).data] == ["thr_a", "thr_fork"]
    store.close()
