"""PostgresStore against a real PostgreSQL server: bad URLs are sentences, a restart loses nothing,
two processes' stores share one database with per-user isolation. (The Store contract itself runs
over PostgresStore in test_store.py and test_chatkit_contract.py.)"""

import pytest
from chatkit.types import ThreadMetadata

from chatkit_lab.errors import DatabaseUnavailableError
from chatkit_lab.store import PostgresStore

from .conftest import ALICE, BOB, T0, free_port, run, user_message


def failure(dsn: str) -> str:
    store = PostgresStore(dsn, connect_timeout=3)
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            run(store.load_thread("thr_x", ALICE))
        return str(caught.value)
    finally:
        store.close()


def test_a_database_that_cannot_be_used_is_one_sentence_without_the_password(postgres_cluster):
    port = free_port()
    refused = failure(f"postgresql://ada:hunter2@127.0.0.1:{port}/lab")
    assert refused.startswith(f"PostgreSQL at 127.0.0.1:{port}/lab cannot be used: ") and "hunter2" not in refused
    assert refused.endswith("Check the server is running and the host and port in the URL are right.")
    missing_db = failure(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/nowhere")
    assert 'database "nowhere" does not exist' in missing_db and missing_db.endswith("Create it (createdb) or name another database in the URL.")
    no_role = failure(f"postgresql://nobody@127.0.0.1:{postgres_cluster.port}/postgres")
    assert 'role "nobody" does not exist' in no_role and no_role.endswith("Check the user and password in the URL.")
    assert failure("postgresql://[oops").endswith("Write it as postgresql://user:password@host:5432/database.")


def test_a_restart_mid_conversation_fails_one_call_with_a_sentence_and_loses_nothing(postgres_cluster, postgres_dsn):
    store = PostgresStore(postgres_dsn)
    try:
        run(store.open())  # warmed: the pool holds a connection the restart breaks
        run(store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE))
        run(store.add_thread_item("thr_1", user_message("u1", "thr_1", "before the restart"), ALICE))
        postgres_cluster.restart()
        try:
            run(store.add_thread_item("thr_1", user_message("u2", "thr_1", "during"), ALICE))
            outcomes = ["written"]
        except DatabaseUnavailableError as exc:
            outcomes = [str(exc)]
        assert outcomes == ["written"] or outcomes[0].startswith("PostgreSQL at 127.0.0.1:")  # a sentence, never a traceback
        run(store.add_thread_item("thr_1", user_message("u3", "thr_1", "after"), ALICE))  # the pool reconnected
        texts = [i.content[0].text for i in run(store.load_thread_items("thr_1", None, 10, "asc", ALICE)).data]
        assert texts[0] == "before the restart" and texts[-1] == "after" and len(texts) in (2, 3)
    finally:
        store.close()


def test_two_processes_stores_share_the_database_each_user_seeing_only_their_threads(postgres_dsn):
    worker_a, worker_b = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    try:
        run(worker_a.save_thread(ThreadMetadata(id="thr_ann", created_at=T0, title="Ann's"), ALICE))
        run(worker_a.add_thread_item("thr_ann", user_message("u1", "thr_ann", "hello"), ALICE))
        assert run(worker_b.load_thread("thr_ann", ALICE)).title == "Ann's"  # written by one worker, read by the other
        assert [i.id for i in run(worker_b.load_thread_items("thr_ann", None, 10, "asc", ALICE)).data] == ["u1"]
        assert run(worker_b.load_threads(10, None, "desc", BOB)).data == []
        assert run(worker_b.load_thread_items("thr_ann", None, 10, "asc", BOB)).data == []
    finally:
        worker_a.close()
        worker_b.close()


def test_the_lab_server_answers_turns_on_postgres_with_the_history_it_stored(postgres_dsn):
    from agents import Agent, RunConfig

    from chatkit_lab import LabServer, MirrorModel

    from .conftest import serve_once

    store = PostgresStore(postgres_dsn)
    server = LabServer(store, Agent(name="Assistant", instructions="Be brief.", model=MirrorModel()), run_config=RunConfig(tracing_disabled=True))

    def said(text):
        return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}

    try:
        _, events = serve_once(server, {"type": "threads.create", "params": {"input": said("hello")}})
        thread_id = next(e["thread"]["id"] for e in events if e["type"] == "thread.created")
        _, events = serve_once(server, {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": said("again")}})
        reply = [e["item"] for e in events if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"][-1]
        assert "- history: 2 earlier items (assistant 1, user 1)" in reply["content"][0]["text"]
        items = run(store.load_thread_items(thread_id, None, 10, "asc", ALICE)).data
        assert [i.type for i in items] == ["user_message", "assistant_message", "user_message", "assistant_message"]
        assert run(store.load_thread(thread_id, ALICE)).title == "hello"
    finally:
        store.close()
