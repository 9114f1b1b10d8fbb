"""The shape of the code: no import circle, one transaction block that isolates coroutines,
named log rows pinned to their tables, visible log failures, errors mapped by type, threads
copied through the store as typed items."""

import ast
import asyncio
import logging
from pathlib import Path

import duckdb
import pytest
from chatkit.server import ChatKitServer
from chatkit.types import ThreadMetadata

from chatkit_lab import DuckDBStore, RequestContext
from chatkit_lab.errors import DatabaseBusyError
from chatkit_lab.store.database import Database
from chatkit_lab.store.rows import ROW_CLASSES, columns

from .conftest import ALICE, T0, run, serve_once, user_message

SRC = Path(__file__).parent.parent / "src" / "chatkit_lab"


def _imports(path: Path) -> set[str]:
    """Every chatkit_lab module ``path`` imports, at module level or inside a function."""
    module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("chatkit_lab"):
                for alias in node.names:  # `from . import logs` names a module
                    sub = f"{target}.{alias.name}"
                    found.add(sub if (SRC.parent / Path(*sub.split("."))).with_suffix(".py").exists() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("chatkit_lab")}
    return found - {module}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = _imports(path)
    return graph


def test_no_module_imports_itself_back_even_inside_a_function():
    graph = _graph()

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for m in graph if (c := cycle_from(m))]
    assert cycles == []
    importers_of_lab = {m for m, deps in graph.items() if "chatkit_lab.lab" in deps}
    assert importers_of_lab == {"chatkit_lab", "chatkit_lab.cli"}


def test_no_object_reaches_into_another_objects_private_attributes():
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                if not (isinstance(base, ast.Name) and base.id in ("self", "cls")) and node.attr not in ("_repr_html_", "_repr_png_"):
                    offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_the_transaction_block_is_written_once():
    places = [p.name for p in SRC.rglob("*.py") if "BEGIN TRANSACTION" in p.read_text()]
    assert places == ["transaction.py"]


def test_a_coroutine_cannot_write_inside_another_coroutines_transaction(db_path):
    db = Database(db_path)

    async def scenario():
        async with db.acursor() as cur:
            cur.execute("CREATE TABLE a (x INTEGER)")
            cur.execute("CREATE TABLE b (x INTEGER)")
        inside = asyncio.Event()

        async def failing_transaction():
            async with db.transaction() as cur:
                cur.execute("INSERT INTO a VALUES (1)")
                inside.set()
                await asyncio.sleep(0.05)  # another coroutine runs meanwhile
                raise RuntimeError("rolled back")

        async def other_writer():
            await inside.wait()
            async with db.acursor() as cur:  # waits for the transaction to end, then writes on its own
                cur.execute("INSERT INTO b VALUES (2)")

        results = await asyncio.gather(failing_transaction(), other_writer(), return_exceptions=True)
        assert isinstance(results[0], RuntimeError) and results[1] is None
        async with db.acursor() as cur:
            return cur.execute("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)").fetchone()

    try:
        assert run(scenario()) == (0, 1)  # a's row rolled back; b's write was not taken down with it
    finally:
        db.close()


def test_store_calls_inside_a_transaction_join_it_and_roll_back_with_it(db_path):
    store = DuckDBStore(db_path)

    async def scenario():
        with pytest.raises(RuntimeError):
            async with store.db.transaction():
                await store.save_thread(ThreadMetadata(id="thr_t", created_at=T0), ALICE)
                await store.add_thread_item("thr_t", user_message("u1", "thr_t"), ALICE)
                raise RuntimeError("undo")
        from chatkit.store import NotFoundError

        with pytest.raises(NotFoundError):  # not even the store's own memory of it survives
            await store.load_thread("thr_t", ALICE)
        return (await store.load_thread_items("thr_t", None, 10, "asc", ALICE)).data

    try:
        assert run(scenario()) == []
    finally:
        store.close()


def test_row_classes_match_the_schema(db_path):
    db = Database(db_path)
    try:
        with db.cursor() as cur:
            for row_class in ROW_CLASSES:
                names = [n for (n,) in cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [row_class.TABLE]
                ).fetchall()]
                assert columns(row_class) == names, row_class.TABLE
    finally:
        db.close()


def test_a_migration_that_adds_a_column_does_not_break_the_log_writes(make_lab):
    lab = make_lab()
    with lab.db.cursor() as cur:  # what the next migration might do
        for table in ("turns", "spans", "traces", "model_inputs"):
            cur.execute(f"ALTER TABLE {table} ADD COLUMN later_column VARCHAR")
    turn = lab.send_sync("hello")
    assert len(lab.turns_df(turn.thread_id)) == 1 and len(lab.model_inputs_df(turn.thread_id)) == 1
    assert lab.health()["status"] == "ok"


def test_a_failed_log_write_is_visible_in_health_the_chat_and_the_log(make_lab, caplog):
    lab = make_lab()
    chat = lab.chat()
    with lab.db.cursor() as cur:
        cur.execute("DROP TABLE model_inputs")  # every turn's log write now fails
    caplog.set_level(logging.ERROR, logger="chatkit_lab")
    turn = lab.send_sync("hello")
    assert turn.error is None and turn.text  # the chat itself keeps working
    lab.runtime.flush()
    health = lab.health()
    assert health["status"] == "degraded" and health["log_write_failures"] == 1
    assert "could not be written" in health["last_log_error"] and "model_inputs" in health["last_log_error"]
    assert chat.warning == health["last_log_error"]
    assert any("could not be written" in r.getMessage() for r in caplog.records)


# -- errors by type ---------------------------------------------------------------------------
class _Broken(DuckDBStore):
    def __init__(self, path, failure):
        super().__init__(path)
        self.failure = failure

    async def load_threads(self, limit, after, order, context):
        raise self.failure


class _Echo(ChatKitServer):
    async def respond(self, thread, item, context):
        if False:
            yield


def test_an_unexpected_value_error_is_a_logged_500_not_a_silent_400(db_path, caplog):
    caplog.set_level(logging.ERROR, logger="chatkit_lab")
    store = _Broken(db_path, ValueError("a bug, not a bad request"))
    status, body = serve_once(_Echo(store), {"type": "threads.list", "params": {}})
    store.close()
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "a bug" not in body["error"]["message"]  # the details stay in the log
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


def test_a_stream_for_an_unknown_thread_is_a_sentence_and_logs_no_traceback(make_lab, caplog):
    """ChatKit logs every exception of a stream with its traceback: a notebook printed one under
    the cell for a message to a deleted thread, though the chat had the sentence."""
    lab = make_lab(warm=False)
    caplog.set_level(logging.DEBUG)
    assert lab.send_sync("hello", "thr_gone").error == "Thread thr_gone not found"
    assert not [r for r in caplog.records if r.exc_info]
    class BrokenSave(DuckDBStore):
        async def save_thread(self, thread, context):
            raise RuntimeError("a bug in the store")

    serve_once(_Echo(BrokenSave(":memory:")), {"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "hi"}],
                                                                              "attachments": [], "inference_options": {}}}})
    assert any(r.exc_info and r.name == "chatkit" for r in caplog.records)  # a failure of the server keeps ChatKit's traceback


def test_chatkits_own_bad_request_is_a_400_whatever_its_wording(db_path, caplog):
    store = DuckDBStore(db_path)
    server = _Echo(store)
    run(store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE))
    from chatkit_lab.store.items import item_adapter

    reply = item_adapter.validate_python({"type": "assistant_message", "id": "a1", "thread_id": "thr_1", "created_at": T0, "content": []})
    run(store.add_thread_item("thr_1", reply, ALICE))
    status, body = serve_once(server, {"type": "threads.sync_custom_action", "params": {"thread_id": "thr_1", "item_id": "a1", "action": {"type": "x", "payload": {}}}})
    store.close()
    assert (status, body["error"]["code"]) == (400, "invalid_request")


def test_a_busy_database_is_a_retryable_503(db_path):
    store = _Broken(db_path, DatabaseBusyError("The database file is locked by another process; try again."))
    status, body = serve_once(_Echo(store), {"type": "threads.list", "params": {}})
    store.close()
    assert (status, body["error"]["code"]) == (503, "database_busy")


# -- copies through the store ----------------------------------------------------------------
def test_a_fork_copies_typed_items_and_never_rewrites_what_the_user_wrote(make_lab):
    lab = make_lab()
    created = lab.request_sync({"type": "attachments.create", "params": {"name": "n.txt", "size": 4, "mime_type": "text/plain"}})
    lab.runtime.call(lab.store.write_attachment_bytes(created["id"], b"note", RequestContext(user_id="local")))
    first = lab.send_sync("start")
    said = f'my file is {created["id"]} and "thread_id":"{first.thread_id}" stays as typed'
    body = {"type": "threads.add_user_message", "params": {"thread_id": first.thread_id, "input": {
        "content": [{"type": "input_text", "text": said}], "attachments": [created["id"]], "inference_options": {}}}}
    lab.request_sync(body)
    fork = lab.fork(first.thread_id)
    items = lab.request_sync({"type": "items.list", "params": {"thread_id": fork, "order": "asc"}})["data"]
    message = next(i for i in items if i["type"] == "user_message" and i["attachments"])
    assert message["content"][0]["text"] == said  # neither id inside the text was touched
    assert message["thread_id"] == fork and all(i["thread_id"] == fork for i in items)
    copy = message["attachments"][0]
    assert copy["id"] != created["id"] and copy["thread_id"] == fork
    assert lab.runtime.call(lab.store.load_attachment_bytes(copy["id"], RequestContext(user_id="local"))) == b"note"
    with lab.db.cursor() as cur:
        assert cur.execute("SELECT text FROM items WHERE thread_id = ? AND type = 'user_message' ORDER BY created_at", [fork]).fetchall()[-1][0] == said


def test_the_database_file_keeps_working_for_plain_duckdb_clients(make_lab, db_path):
    lab = make_lab()
    lab.send_sync("hi")
    lab.close()
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM turns").fetchone()[0] == 1
