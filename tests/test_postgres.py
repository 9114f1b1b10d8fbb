"""PostgresStore against a real PostgreSQL server: bad URLs are sentences, a restart loses nothing,
two processes' stores share one database with per-user isolation. (The Store contract itself runs
over PostgresStore in test_store.py and test_chatkit_contract.py.)"""

import pytest
from chatkit.types import ThreadMetadata

from chatkit_lab.errors import DatabaseUnavailableError
from chatkit_lab.store import PostgresStore

from .conftest import ALICE, BOB, T0, assistant_message, free_port, run, user_message


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


def test_a_reply_saved_while_the_server_is_down_is_kept_and_written_when_it_is_back(postgres_cluster, postgres_dsn, caplog):
    import logging
    import time

    store = PostgresStore(postgres_dsn, connect_timeout=1)
    try:
        run(store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE))
        run(store.add_thread_item("thr_1", user_message("u1", "thr_1", "before"), ALICE))
        postgres_cluster.halt()
        try:
            run(store.add_thread_item("thr_1", assistant_message("a1", "thr_1", "a reply the user saw"), ALICE))  # no error
            assert store.kept == 1
            with pytest.raises(DatabaseUnavailableError):  # a user message is the model's input: its turn fails instead
                run(store.add_thread_item("thr_1", user_message("u2", "thr_1", "during"), ALICE))
        finally:
            postgres_cluster.resume()
        deadline = time.monotonic() + 30
        while store.kept and time.monotonic() < deadline:  # the store's retry writes it
            time.sleep(0.1)
        assert store.kept == 0
        texts = [i.content[0].text for i in run(store.load_thread_items("thr_1", None, 10, "asc", ALICE)).data]
        assert texts == ["before", "a reply the user saw"]
        postgres_cluster.halt()
        try:
            run(store.add_thread_item("thr_1", assistant_message("a2", "thr_1", "kept at close"), ALICE))
            caplog.set_level(logging.ERROR, logger="chatkit_lab")
            store.close()
            assert any("1 items (replies users saw) could not be saved" in r.getMessage() for r in caplog.records)
        finally:
            postgres_cluster.resume()
    finally:
        store.close()


def test_a_lab_on_postgresql_finishes_a_reply_through_an_outage_and_stores_it_when_the_server_is_back(postgres_cluster, postgres_dsn):
    import time

    from chatkit_lab import ChatLab, MirrorModel, RequestContext

    lab = ChatLab(postgres_dsn, model=MirrorModel(delay=0.01), warm=False)
    first = lab.send_sync("hello")
    reply = lab.runtime.loop.submit(lab.runtime.send("/words 150", first.thread_id, lab.user_id))  # 1.5 s of deltas
    time.sleep(0.5)
    postgres_cluster.halt()
    try:
        turn = reply.result(timeout=60)
        assert turn.error is None and len(turn.text.split()) >= 150 and lab.store.kept == 1
    finally:
        postgres_cluster.resume()
    deadline = time.monotonic() + 30
    while lab.store.kept and time.monotonic() < deadline:
        time.sleep(0.1)
    lab.close()
    store = PostgresStore(postgres_dsn)
    try:
        items = run(store.load_thread_items(first.thread_id, None, 10, "asc", RequestContext(lab.user_id))).data
    finally:
        store.close()
    assert [i.type for i in items] == ["user_message", "assistant_message"] * 2 and items[-1].id == turn.item_ids[-1]


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


# -- a whole lab on PostgreSQL ------------------------------------------------------------------
def test_the_postgresql_schema_has_the_duckdb_files_tables_and_columns_in_order(postgres_dsn):
    import duckdb
    import psycopg

    from chatkit_lab.store.postgres_database import PostgresDatabase
    from chatkit_lab.store.postgres_schema import ONLY_HERE
    from chatkit_lab.store.schema import migrate

    con = duckdb.connect()
    migrate(con)
    want = con.execute("SELECT table_name, list(column_name ORDER BY column_index) FROM duckdb_columns() "
                       "WHERE NOT internal AND schema_name = 'main' AND table_name <> '_migrations' GROUP BY 1 ORDER BY 1").fetchall()
    db = PostgresDatabase(postgres_dsn)
    with db.cursor():
        pass  # migrates
    db.close()
    with psycopg.connect(postgres_dsn) as pg:
        got = pg.execute("SELECT table_name::text, array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
                         "WHERE table_schema = 'public' AND table_name <> '_migrations' AND NOT table_name = ANY(%s) GROUP BY 1 ORDER BY 1",
                         [list(ONLY_HERE)]).fetchall()
    assert [(t, list(c)) for t, c in got] == [(t, list(c)) for t, c in want]


def test_a_shown_url_has_no_user_password_or_options():
    from chatkit_lab.store.postgres_database import where_of

    assert where_of("postgresql://ada:p@ss@db.example:5432/class?sslmode=require&password=x") == "postgresql://db.example:5432/class"
    assert where_of("postgres://db/lab?password=secret") == "postgresql://db/lab"
    assert where_of("/tmp/chats.duckdb") == "/tmp/chats.duckdb"


def test_duckdb_placeholders_become_psycopgs_outside_quotes_and_comments():
    from chatkit_lab.store.postgres_database import to_psycopg

    assert to_psycopg("SELECT ? , $user", [1]) == "SELECT %s , %(user)s"
    assert to_psycopg("SELECT '?', 'it''s $x', \"a?\" -- ? here\n, 5 % 2, ?", [1]) == "SELECT '?', 'it''s $x', \"a?\" -- ? here\n, 5 %% 2, %s"
    assert to_psycopg("SELECT 5 % 2", None) == "SELECT 5 % 2"  # without parameters psycopg reads no placeholders
    assert to_psycopg("SELECT $1::int, x::text", [1]) == "SELECT $1::int, x::text"


def _conversation(lab):
    first = lab.send_sync("hello there")
    lab.send_sync('call add {"a": 2, "b": 3}', thread_id=first.thread_id)
    lab.send_sync("thanks", thread_id=first.thread_id)
    lab.send_sync("another thread")
    return first.thread_id


def lineage_of(lab, thread_id):
    return lab.sql("SELECT parent_thread_id, kind FROM lineage WHERE thread_id = ?", [thread_id]).values.tolist()


def test_a_lab_on_postgresql_keeps_the_logs_frames_replay_fork_and_diff_of_a_lab_on_duckdb(tmp_path, postgres_dsn):
    import json

    from chatkit_lab import ChatLab

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    from agents import function_tool

    labs = {"duckdb": ChatLab(tmp_path / "lab.duckdb", warm=False, tools=[function_tool(add)]),
            "postgres": ChatLab(postgres_dsn, warm=False, tools=[function_tool(add)])}
    try:
        seen = {}
        for kind, lab in labs.items():
            thread = _conversation(lab)
            turns = lab.turns_df(thread)
            fork = lab.fork(thread)
            replay = lab.replay(thread, instructions="Be brief.").run_sync(progress=False)
            diff = lab.diff(thread, replay.thread_id)
            batch = lab.replay_many_sync([thread, fork], concurrency=2, progress=False, instructions="Be brief.")
            seen[kind] = {
                "threads": sorted(lab.threads_df()["items"].tolist()),
                "lineage": sorted(str(x) for x in lab.threads_df().lineage.tolist()),
                "turns": turns[["exchange", "user_text", "reply_text", "status", "tokens", "tools"]].map(
                    lambda v: list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v).values.tolist(),
                "spans": sorted(lab.spans_df(thread).span_type.tolist()),
                "inputs": [json.loads(x) for x in lab.model_inputs_df(thread).input],
                "fork_items": lab.items_df(fork).type.tolist(),
                "batch": [(lab.items_df(r.thread_id).type.tolist(), lineage_of(lab, r.thread_id) == [[r.source, "replay"]]) for r in batch],
                "diff": diff.df.drop(columns=[c for c in diff.df.columns if c.startswith("latency")]).map(str).values.tolist(),
                "inspected": lab.inspect(thread).tools,
                "sql": lab.sql("SELECT count(*) AS n FROM turns WHERE thread_id = ?", [thread]).n[0],
                "health": lab.health()["database"],
            }
        duck, pg = seen["duckdb"], seen["postgres"]
        assert pg["health"].startswith("postgresql://127.0.0.1:") and "@" not in pg["health"]
        assert duck.pop("health") and pg.pop("health")
        assert pg == duck
        assert pg["turns"][1][5] == ["add"] and pg["sql"] == 3 and pg["lineage"].count("fork") == 1
        assert [(len(types), linked) for types, linked in pg["batch"]] == [(len(pg["fork_items"]), True)] * 2
        assert any(m["role"] == "user" for m in pg["inputs"][0] if isinstance(m, dict) and "role" in m)
    finally:
        for lab in labs.values():
            lab.close()


def test_log_rows_wait_out_a_postgresql_restart_and_are_written_after_it(postgres_cluster, postgres_dsn):
    from chatkit_lab import ChatLab

    lab = ChatLab(postgres_dsn, warm=False)
    try:
        thread = lab.send_sync("before").thread_id
        postgres_cluster.restart()
        try:
            lab.send_sync("during", thread_id=thread)  # the pools' connections broke: this turn may fail with a sentence
        except Exception as exc:
            assert "PostgreSQL at 127.0.0.1" in str(exc) and "Traceback" not in str(exc)
        after = lab.send_sync("after", thread_id=thread)
        assert after.error is None and after.text
        texts = lab.turns_df(thread).user_text.tolist()
        assert texts[0] == "before" and texts[-1] == "after"
        assert lab.health()["status"] in ("ok", "degraded")
    finally:
        lab.close()


def test_exports_from_postgresql_are_streamed_per_user_with_the_duckdb_files_columns(tmp_path, postgres_dsn):
    import pyarrow.parquet as pq

    from chatkit_lab import ChatLab
    from chatkit_lab.store.staging import staged

    labs = {"duckdb": ChatLab(tmp_path / "lab.duckdb", warm=False), "postgres": ChatLab(postgres_dsn, warm=False)}
    try:
        written = {}
        for kind, lab in labs.items():
            _conversation(lab)
            lab.user_id = "bob"
            lab.send_sync("bob's own")
            lab.user_id = "local"
            out = tmp_path / kind
            written[kind] = {
                "items": lab.export(out / "items.parquet"), "turns": lab.export(out / "turns.parquet", frame="turns"),
                "all": lab.export(out / "all.jsonl", all_users=True), "spans": lab.export(out / "spans.csv", "spans"),
            }
            written[kind]["schema"] = [pq.read_schema(out / "items.parquet").types, pq.read_schema(out / "turns.parquet").names]
        assert written["postgres"] == written["duckdb"]
        assert written["postgres"]["items"] == {"items": 8} and written["postgres"]["all"]["items"] == 10
        jsonl = (tmp_path / "postgres" / "all.jsonl").read_text().splitlines()
        assert sum('"_table":"threads"' in line for line in jsonl) == 3
        with staged(labs["postgres"].db, ["items", "input_items"], "local", batch=3) as cur:  # many small batches
            assert cur.execute("SELECT count(*), count(DISTINCT user_id) FROM items").fetchone() == (8, 1)
            assert cur.execute("SELECT count(*) FROM input_items").fetchone()[0] > 0
        with pytest.raises(Exception, match="There is no table 'nope'"):
            labs["postgres"].export(tmp_path / "x.parquet", "nope")
    finally:
        for lab in labs.values():
            lab.close()


def test_a_published_workflow_and_documents_work_on_postgresql_across_kernels(postgres_dsn):
    from chatkit_lab import ChatLab
    from chatkit_lab.workflows import AgentNode, EndNode, StartNode, Workflow, chain

    lab = ChatLab(postgres_dsn, warm=False)
    try:
        flow = Workflow(name="greeter", nodes=[StartNode("start"), AgentNode("hi", instructions="Greet."), EndNode("end")],
                        edges=chain("start", "hi", "end"))
        changed = Workflow(name="greeter", nodes=[StartNode("start"), AgentNode("hi", instructions="Greet warmly."), EndNode("end")],
                           edges=chain("start", "hi", "end"))
        assert lab.publish(flow) == 1 and lab.publish(flow) == 1 and lab.publish(changed, "warmer") == 2
        lab.use_workflow("greeter@1")
        turn = lab.send_sync("hello")
        assert turn.error is None
        assert lab.nodes_df(turn.thread_id).node_type.tolist() == ["start", "agent", "end"]
        assert lab.workflow_versions_df().version.tolist() == [1, 2]
        lab.documents.add_text("refunds.md", "Refunds take five working days after the return arrives.")
        other = ChatLab(postgres_dsn, warm=False)  # another kernel of the class
        try:
            assert [h.filename for h in other.documents.search("how long do refunds take")] == ["refunds.md"]
            other.documents.add_text("shipping.md", "Shipping is free above fifty euros.")
        finally:
            other.close()
        assert lab.documents.search("is shipping free")[0].filename == "shipping.md"  # indexed again: the table changed
        assert lab.documents.df().chunks.tolist() == [1, 1]
    finally:
        lab.close()


def test_evals_on_postgresql_store_run_grade_rescore_and_compare_as_on_duckdb(tmp_path, postgres_dsn):
    from chatkit_lab import ChatLab

    data = [{"input": f"question {n}", "answer": f"question {n}" if n % 2 else "nope"} for n in range(12)]
    exact = {"type": "string_check", "name": "echo", "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}", "operation": "ilike"}
    quick = {"type": "python", "name": "short", "source": "def grade(sample, item):\n    return 1.0 if len(sample['output_text']) < 400 else 0.0"}
    labs = {"duckdb": ChatLab(tmp_path / "lab.duckdb", warm=False), "postgres": ChatLab(postgres_dsn, warm=False)}
    try:
        seen = {}
        for kind, lab in labs.items():
            run = lab.evaluate_sync(data, graders=[exact], name="echo", progress=False)
            again = lab.rescore_sync(run.id, [exact, quick], progress=False)
            comparison = lab.compare_runs(run, again)
            seen[kind] = {
                "counts": run.summary["result_counts"], "criteria": again.summary["per_testing_criteria_results"],
                "usage": [u["invocation_count"] for u in run.summary["per_model_usage"]],
                "items": run.df()[["item_index", "status", "passed"]].values.tolist(),
                "runs": lab.eval_runs_df()[["kind", "status", "items", "answered", "passed"]].values.tolist(),
                "changes": sorted(comparison.df.change.astype(str).tolist()) if hasattr(comparison, "df") else None,
                "resumed": lab.resume_eval_sync(run.id, progress=False).summary["result_counts"],
            }
        assert seen["postgres"] == seen["duckdb"]
        assert seen["postgres"]["counts"] == {"total": 12, "passed": 6, "failed": 6, "errored": 0}
        assert seen["postgres"]["usage"] == [12]
    finally:
        for lab in labs.values():
            lab.close()


# -- a workshop: a role per student, row-level security ------------------------------------------
def test_a_workshop_database_keeps_each_student_to_their_rows_and_lets_teachers_read_across(tmp_path, postgres_dsn):
    import json
    import uuid

    import psycopg

    from chatkit_lab import ChatLab
    from chatkit_lab.errors import ConfigurationError, ForbiddenError
    from chatkit_lab.store.workshop import setup
    from chatkit_lab.workflows import AgentNode, EndNode, StartNode, Workflow, chain

    tag = uuid.uuid4().hex[:6]
    ada, bo, tess = f"ada_{tag}", f"bo_{tag}", f"tess_{tag}"
    members = {m.name: m for m in setup(postgres_dsn, students=[ada, bo], teachers=[tess])}
    assert [m.teacher for m in members.values()] == [False, False, True] and all(m.url.startswith(f"postgresql://{m.name}:") for m in members.values())
    labs = {name: ChatLab(m.url, warm=False) for name, m in members.items()}
    try:
        assert {name: lab.user_id for name, lab in labs.items()} == {ada: ada, bo: bo, tess: tess}  # the role is the user
        data = [{"input": "same question", "answer": "same question"}]
        grader = {"type": "string_check", "name": "echo", "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}", "operation": "ilike"}
        for name in (ada, bo):
            labs[name].send_sync(f"{name}'s question")
            assert labs[name].evaluate_sync(data, graders=[grader], progress=False).summary["result_counts"]["total"] == 1  # one dataset, two runs
        bob = labs[bo]
        assert set(bob.threads_df(all_users=True).user_id) == {bo}
        assert set(bob.sql("SELECT DISTINCT user_id FROM items").user_id) == {bo}  # the database filters, not the lab
        assert set(bob.sql("SELECT DISTINCT t.user_id FROM spans s JOIN traces t USING (trace_id)").user_id) == {bo}
        assert len(bob.eval_runs_df(all_users=True)) == 1
        with psycopg.connect(members[bo].url) as raw:  # any client connecting as the role
            assert {u for (u,) in raw.execute("SELECT DISTINCT user_id FROM turns")} == {bo}
            assert not any(ada in json.dumps(row) for row in raw.execute("SELECT item::text FROM input_items").fetchall())
        teacher = labs[tess]
        assert set(teacher.threads_df(all_users=True).user_id) == {ada, bo}
        assert teacher.export(tmp_path / "class.jsonl", all_users=True)["threads"] == 4  # two chats, two eval threads
        assert bob.export(tmp_path / "bob.jsonl", all_users=True)["threads"] == 2
        flow = Workflow(name=f"class_{tag}", nodes=[StartNode("start"), AgentNode("hi", instructions="Greet."), EndNode("end")],
                        edges=chain("start", "hi", "end"))
        with pytest.raises(ForbiddenError, match="for teachers"):
            bob.publish(flow)
        assert teacher.publish(flow) == 1
        bob.use_workflow(flow.name)
        assert bob.send_sync("hello").error is None and bob.nodes_df().node_type.tolist() == ["start", "agent", "end"]
        with pytest.raises(ConfigurationError, match="workshop student"):
            ChatLab(members[ada].url, user_id=bo, warm=False)
    finally:
        for lab in labs.values():
            lab.close()


def test_a_student_whose_database_lacks_a_migration_is_told_who_can_apply_it(postgres_dsn):
    """A student's role may not alter the tables: after an upgrade it was told to check the server is running."""
    import uuid

    import psycopg

    from chatkit_lab import ChatLab
    from chatkit_lab.store.workshop import setup

    (cy,) = setup(postgres_dsn, students=[f"cy_{uuid.uuid4().hex[:6]}"])
    with psycopg.connect(postgres_dsn, autocommit=True) as owner:  # as a database set up by the release before
        owner.execute("ALTER TABLE tool_approvals DROP COLUMN redacted")
        owner.execute("DELETE FROM _migrations WHERE name = 'm005_tool_approvals_redacted'")
    try:
        with pytest.raises(DatabaseUnavailableError, match="must be owner of table tool_approvals. The database needs an upgrade only its owner "
                                                           "can apply: run chatkit-lab workshop again"):
            ChatLab(cy.url, warm=False).send_sync("hi")
    finally:
        ChatLab(postgres_dsn, warm=False).close()  # the owner's lab applies it
    with ChatLab(cy.url, warm=False) as lab:
        assert lab.send_sync("hi").error is None


def test_the_workshop_command_writes_each_persons_url_to_a_private_file_and_prints_no_password(tmp_path, postgres_dsn):
    import csv
    import os
    import subprocess
    import sys
    import uuid

    tag = uuid.uuid4().hex[:6]
    out = tmp_path / "class.csv"
    done = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "workshop", "--db", postgres_dsn, "--students", f"ann_{tag},ben_{tag}",
                           "--teachers", f"tom_{tag}", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["name"], r["role"]) for r in rows] == [(f"ann_{tag}", "student"), (f"ben_{tag}", "student"), (f"tom_{tag}", "teacher")]
    assert os.stat(out).st_mode & 0o777 == 0o600
    passwords = [r["url"].split(":")[2].split("@")[0] for r in rows]
    assert all(len(p) >= 20 and p not in done.stdout + done.stderr for p in passwords)
    bad = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "workshop", "--db", postgres_dsn, "--students", "robert'); DROP TABLE items;--"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "cannot be a role name" in bad.stderr and "Traceback" not in bad.stderr
    file = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "workshop", "--db", str(tmp_path / "class.duckdb"), "--students", "ann"],
                          capture_output=True, text=True, timeout=120)  # was: 'PostgreSQL at .../class.duckdb cannot be used: missing "="'
    assert file.returncode == 2 and "A workshop is one PostgreSQL database for the class" in file.stderr


def test_jsonl_imports_and_file_merges_into_postgresql_add_each_row_once(tmp_path, postgres_dsn):
    import subprocess
    import sys

    from chatkit_lab import ChatLab

    for name in ("ada", "bo"):
        with ChatLab(tmp_path / f"{name}.duckdb", user_id=name, warm=False) as lab:
            lab.send_sync(f"{name}'s first")
            lab.send_sync(f"{name}'s second")
            if name == "ada":
                lab.export(tmp_path / "ada.jsonl")
    shared = ChatLab(postgres_dsn, warm=False)
    try:
        added = shared.import_jsonl(tmp_path / "ada.jsonl")
        assert added["threads"] == 2 and added["items"] == 4 and added["turns"] == 2
        assert all(n == 0 for n in shared.import_jsonl(tmp_path / "ada.jsonl").values())  # twice adds nothing
        merged = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "merge", postgres_dsn, str(tmp_path / "ada.duckdb"), str(tmp_path / "bo.duckdb")],
                                capture_output=True, text=True, timeout=120)
        assert merged.returncode == 0, merged.stderr
        assert "ada: 2 origins\n" in merged.stdout and "bo: 2 threads, 4 items, 2 turns" in merged.stdout and "@" not in merged.stdout
        threads = shared.threads_df(all_users=True)
        assert sorted(threads.user_id) == ["ada", "ada", "bo", "bo"] and sorted(threads.origin) == ["ada", "ada", "bo", "bo"]
        turns = shared.turns_df(all_users=True)
        assert sorted(turns.user_text) == ["ada's first", "ada's second", "bo's first", "bo's second"]
        out = tmp_path / "class.parquet"
        exported = subprocess.run([sys.executable, "-m", "chatkit_lab.cli", "export", "--db", postgres_dsn, str(out), "--user-id", "bo"],
                                  capture_output=True, text=True, timeout=120)
        assert exported.returncode == 0 and "4 items" in exported.stdout
        import pyarrow.parquet as pq

        assert sorted(pq.read_table(out).column("user_id").to_pylist()) == ["bo"] * 4
    finally:
        shared.close()
