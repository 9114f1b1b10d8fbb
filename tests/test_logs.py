"""Conversations as data: frames, exports, a JSONL round trip, merging students' files, plots."""

import json
import subprocess
import sys
import time

import duckdb
import pandas as pd
import polars as pl
import pytest

from chatkit_lab import ChatLab, ChatLabError
from chatkit_lab.logs import TABLES, merge

from .test_replay import lookup, record

CLI = [sys.executable, "-m", "chatkit_lab.cli"]


def cli(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def tables_of(path):
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t}").df() for t in TABLES}


def same_rows(a, b):
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        return all(
            con.execute(f"SELECT count(*) FROM (FROM a.{t} EXCEPT ALL FROM b.{t}) UNION ALL SELECT count(*) FROM (FROM b.{t} EXCEPT ALL FROM a.{t})").fetchall() == [(0,), (0,)]
            for t in TABLES
        )


@pytest.fixture
def recorded(make_lab):
    lab = make_lab(tools=[lookup])
    first = record(lab, "/lookup acme", "thanks")
    record(lab, "second thread")
    record(lab, "someone else's", user_id="bob")
    items = lab.items_df(first)
    reply = items[items.type == "assistant_message"].item_id.iloc[0]
    lab.request_sync({"type": "items.feedback", "params": {"thread_id": first, "item_ids": [reply], "kind": "positive"}})
    lab.replay(first, instructions="Be brief.").run_sync(progress=False)
    return lab, first


def test_turns_df_has_one_row_per_turn_with_text_reply_tokens_tools_and_lineage(recorded):
    lab, first = recorded
    turns = lab.turns_df()
    assert turns.user_text.tolist() == ["/lookup acme", "thanks", "second thread", "/lookup acme", "thanks"]
    assert turns.reply_text[0] == "Tool `lookup` returned: acme is a gold customer."
    assert [list(t) for t in turns.tools] == [["lookup"], [], [], ["lookup"], []]
    assert (turns.tokens == turns.input_tokens + turns.output_tokens).all() and (turns.latency_ms > 0).all()
    assert turns.lineage.fillna("-").tolist() == ["-", "-", "-", "replay", "replay"]
    assert turns.parent_thread_id.tolist()[3:] == [first, first] and set(turns.model) == {"mirror"}
    assert "someone else's" in lab.turns_df(all_users=True).user_text.tolist()
    assert len(lab.turns_df(first)) == 2

    frame = lab.turns_df(polars=True)
    assert isinstance(frame, pl.DataFrame) and frame.columns == turns.columns.tolist() and frame.height == 5
    spans = lab.spans_df(first)
    assert {"agent", "generation", "function"} <= set(spans.span_type) and set(spans.thread_id) == {first}
    assert len(lab.spans_df(all_users=True)) > len(lab.spans_df())
    feedback = lab.feedback_df()
    assert feedback[["thread_id", "kind", "text"]].values.tolist() == [[first, "positive", "Tool `lookup` returned: acme is a gold customer."]]
    threads = lab.threads_df()
    assert threads.columns.tolist() == ["thread_id", "user_id", "title", "status", "created_at", "updated_at", "items", "parent_thread_id", "lineage", "overrides", "origin"]


def test_exports_by_extension_stream_only_the_users_rows(recorded, tmp_path):
    lab, first = recorded
    counts = lab.export(tmp_path / "items.parquet")
    assert counts == {"items": 12}
    items = pd.read_parquet(tmp_path / "items.parquet")
    assert len(items) == 12 and set(items.user_id) == {"local"} and "someone else's" not in items.text.tolist()
    assert lab.export(tmp_path / "turns.csv", "turns") == {"turns": 5}
    assert len(pd.read_csv(tmp_path / "turns.csv")) == 5
    everyone = lab.export(tmp_path / "all.jsonl", all_users=True)
    assert set(everyone) == set(TABLES) and everyone["threads"] == 4 and everyone["feedback"] == 1 and everyone["lineage"] == 1
    lines = [json.loads(line) for line in open(tmp_path / "all.jsonl")]
    assert len(lines) == sum(everyone.values()) and {line["_table"] for line in lines} == {t for t, n in everyone.items() if n}
    assert lab.export(tmp_path / "mine.jsonl")["threads"] == 3
    assert not list(tmp_path.glob(".export-*"))  # no temporary files left behind

    with pytest.raises(ChatLabError, match=r"Cannot tell the format of '.*out\.xlsx': name it \.parquet, \.csv or \.jsonl\."):
        lab.export(tmp_path / "out.xlsx")
    with pytest.raises(ChatLabError, match="There is no table 'messages' to export; choose one of threads, items"):
        lab.export(tmp_path / "x.csv", "messages")
    (tmp_path / "notes").write_text("a file")
    for table, frame in ((None, None), ("turns", None), (None, "turns")):  # was a bare FileExistsError
        with pytest.raises(ChatLabError, match=r"Cannot write .*notes/x\.csv: .*notes is a file, not a folder\."):
            lab.export(tmp_path / "notes" / "x.csv", table, frame=frame)


def test_a_jsonl_export_imports_back_exactly_and_only_once(recorded, tmp_path):
    lab, _ = recorded
    lab.export(tmp_path / "a.jsonl", all_users=True)
    lab.close()
    copy = ChatLab(tmp_path / "copy.duckdb", warm=False)
    added = copy.import_jsonl(tmp_path / "a.jsonl")
    assert added["threads"] == 4 and added["items"] == 14 and added["feedback"] == 1
    assert copy.import_jsonl(tmp_path / "a.jsonl") == {t: 0 for t in added}  # nothing twice
    copy.export(tmp_path / "b.jsonl", all_users=True)
    copy.close()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert same_rows(lab.db.path, tmp_path / "copy.duckdb")
    reopened = ChatLab(tmp_path / "copy.duckdb", warm=False)
    assert "you said" in reopened.send_sync("still works", reopened.threads_df().thread_id[0]).text
    reopened.close()


def test_a_bad_import_is_a_sentence_and_changes_nothing(make_lab, tmp_path):
    lab = make_lab()
    record(lab, "keep me")
    lab.export(tmp_path / "good.jsonl")
    good = (tmp_path / "good.jsonl").read_text().splitlines()
    (tmp_path / "broken.jsonl").write_text(good[0].replace('"thr_', '"thr_other_') + "\n" + '{"_table":"items","id":"x","thread_id":"t","created_at":"not a time"}\n')
    before = lab.threads_df(all_users=True)
    with pytest.raises(ChatLabError, match="^Nothing was imported from broken.jsonl: "):
        lab.import_jsonl(tmp_path / "broken.jsonl")
    assert len(lab.threads_df(all_users=True)) == len(before)
    (tmp_path / "other.jsonl").write_text('{"_table":"users","name":"x"}\n')
    with pytest.raises(ChatLabError, match=r"other.jsonl is not a chatkit-lab JSONL export: it has rows for unknown tables \(users\)\."):
        lab.import_jsonl(tmp_path / "other.jsonl")
    (tmp_path / "text.jsonl").write_text("hello\n")
    with pytest.raises(ChatLabError, match="text.jsonl is not a chatkit-lab JSONL export: "):
        lab.import_jsonl(tmp_path / "text.jsonl")
    with pytest.raises(ChatLabError, match="There is no file '.*missing.jsonl' to import."):
        lab.import_jsonl(tmp_path / "missing.jsonl")


def students(tmp_path, *names):
    paths = []
    for name in names:
        lab = ChatLab(tmp_path / f"{name}.duckdb", warm=False)
        record(lab, f"{name}'s question", f"{name}'s follow-up")
        lab.close()
        paths.append(tmp_path / f"{name}.duckdb")
    return paths


def test_merge_combines_students_files_with_their_origin_and_is_idempotent(tmp_path):
    ada, bo, cy = students(tmp_path, "ada", "bo", "cy")
    before = ada.read_bytes()
    run = cli("merge", tmp_path / "class.duckdb", ada, bo)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "ada: 1 origins, 1 threads, 4 items, 2 turns, 2 traces, 8 spans, 2 model_inputs, 3 input_items"
    assert ada.read_bytes() == before  # sources are only read
    again = merge(tmp_path / "class.duckdb", [ada, cy], names=["ada", "cy"])
    assert sum(again["ada"].values()) == 0 and again["cy"]["threads"] == 1

    lab = ChatLab(tmp_path / "class.duckdb", warm=False)
    threads = lab.threads_df(all_users=True).sort_values("origin")
    assert threads.origin.tolist() == ["ada", "bo", "cy"] and threads.title.tolist() == ["ada's question", "bo's question", "cy's question"]
    turns = lab.turns_df(all_users=True)
    assert turns.groupby("origin").size().to_dict() == {"ada": 2, "bo": 2, "cy": 2}
    assert (turns.reply_text.str.contains("you said")).all()
    lab.close()

    # A merged file merges again with its students' names kept (one path: one source, not its characters).
    assert merge(tmp_path / "school.duckdb", str(tmp_path / "class.duckdb"))["class"]["threads"] == 3
    with pytest.raises(ChatLabError, match="Give at least one source database file"):  # made an empty target
        merge(tmp_path / "empty.duckdb", [])
    assert not (tmp_path / "empty.duckdb").exists()
    with duckdb.connect(str(tmp_path / "school.duckdb"), read_only=True) as con:
        assert sorted(o for (o,) in con.execute("SELECT origin FROM origins").fetchall()) == ["ada", "bo", "cy"]


def test_a_path_under_the_home_folder_is_read_and_written_there(tmp_path, monkeypatch):
    # DuckDB expanded "~" itself, but the folder made for the file (and an export's) was a "~" in the cwd.
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir(), cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    with ChatLab("~/labs/chats.duckdb", warm=False) as lab:
        lab.send_sync("hello")
        assert lab.export("~/items.parquet")["items"] == 2 and lab.export("~/all.jsonl")["threads"] == 1
    assert merge("~/class.duckdb", ["~/labs/chats.duckdb"])["chats"]["threads"] == 1
    with ChatLab("~/copy.duckdb", warm=False) as copy:
        assert copy.import_jsonl("~/all.jsonl")["items"] == 2
    assert sorted(p.name for p in home.iterdir()) == ["all.jsonl", "class.duckdb", "copy.duckdb", "items.parquet", "labs"]
    assert list(cwd.iterdir()) == []
    # Every other path a user gives: "There is no dataset file '~/data.jsonl'" and the like.
    from chatkit_lab.evals import load_dataset
    from chatkit_lab.guardrails import load_config
    from chatkit_lab.workflows import Workflow, templates

    (home / "data.jsonl").write_text('{"input": "hi"}\n')
    (home / "guardrails.json").write_text(json.dumps({"guardrails": [{"name": "Contains PII", "config": {}}]}))
    (home / "docs").mkdir()
    (home / "docs" / "a.md").write_text("Refunds take five days.")
    assert len(load_dataset("~/data.jsonl")) == 1 and load_config("~/guardrails.json").stage("input") is not None
    templates.customer_support().save("~/wf.json")
    assert Workflow.load("~/wf.json").name == "customer-support"
    with ChatLab("~/copy.duckdb", warm=False) as lab:
        assert lab.documents.add("~/docs").filename.tolist() == ["a.md"]
    assert list(cwd.iterdir()) == []


def test_merge_upgrades_an_older_file_in_a_copy_and_refuses_what_it_cannot_read(tmp_path):
    from chatkit_lab.store.schema import MIGRATIONS

    (old,) = students(tmp_path, "old")
    with duckdb.connect(str(old)) as con:  # as an earlier chatkit-lab left it
        con.execute("DROP TABLE lineage; DROP TABLE origins; DELETE FROM _migrations WHERE name = 'm005_lineage_origins'")
    assert merge(tmp_path / "out.duckdb", [old])["old"]["threads"] == 1
    with duckdb.connect(str(old), read_only=True) as con:
        assert len(con.execute("SELECT * FROM _migrations").fetchall()) == len(MIGRATIONS) - 1  # untouched

    duckdb.connect(str(tmp_path / "plain.duckdb")).close()
    (tmp_path / "notes.txt").write_text("not a database")
    (tmp_path / "chats.jsonl").write_text('{"_table": "threads"}\n')
    for source, sentence in [
        (tmp_path / "plain.duckdb", "is not a chatkit-lab database (it has no _migrations table)."),
        (tmp_path / "notes.txt", "is not a valid DuckDB database file"),
        (tmp_path / "chats.jsonl", "is a data file, not a DuckDB database: DuckDB opens it as a view in memory"),  # was "Catalog Error: ..."
        (tmp_path / "missing.duckdb", "There is no database file"),
    ]:
        run = cli("merge", tmp_path / "out.duckdb", source)
        assert run.returncode == 1 and sentence in run.stderr and "Traceback" not in run.stderr

    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; con = duckdb.connect({str(old)!r}); print('open', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        run = cli("merge", tmp_path / "out.duckdb", old)
        assert run.returncode == 1 and "is open for writing in another process (a running lab?); close it and merge again." in run.stderr
    finally:
        holder.kill()


def test_cli_export_and_import(recorded, tmp_path):
    lab, _ = recorded
    lab.close()
    run = cli("export", "--db", lab.db.path, tmp_path / "items.parquet")
    assert run.returncode == 0 and run.stdout.strip() == f"wrote {tmp_path / 'items.parquet'}: 14 items"
    assert len(pd.read_parquet(tmp_path / "items.parquet")) == 14
    run = cli("export", "--db", lab.db.path, "--user-id", "bob", "--table", "turns", tmp_path / "bob.csv")
    assert run.returncode == 0 and pd.read_csv(tmp_path / "bob.csv").user_id.tolist() == ["bob"]
    assert cli("export", "--db", lab.db.path, tmp_path / "all.jsonl").returncode == 0
    run = cli("import", "--db", tmp_path / "restored.duckdb", tmp_path / "all.jsonl")
    assert run.returncode == 0 and run.stdout.startswith(f"imported {tmp_path / 'all.jsonl'} into {tmp_path / 'restored.duckdb'}: 4 threads, 14 items")
    assert same_rows(lab.db.path, tmp_path / "restored.duckdb")
    run = cli("export", "--db", tmp_path / "nope.duckdb", tmp_path / "x.csv")
    assert (run.returncode, run.stderr.strip()) == (1, f"error: There is no database file '{tmp_path / 'nope.duckdb'}'.")


def test_export_waits_for_a_lab_in_another_process_to_let_go(recorded, tmp_path):
    lab, _ = recorded
    path = lab.db.path
    lab.close()
    writer = subprocess.Popen([sys.executable, "-c", (
        "from chatkit_lab import ChatLab; import time\n"
        f"lab = ChatLab({path!r}, warm=False)\n"
        "for i in range(20): lab.send_sync(f'busy {i}'); time.sleep(0.05)\n"
        "lab.close(); print('done', flush=True)"
    )], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the other lab is mid-conversation
    run = cli("export", "--db", path, tmp_path / "live.parquet")
    assert writer.wait(60) == 0 and run.returncode == 0, run.stderr
    assert len(pd.read_parquet(tmp_path / "live.parquet")) >= 14


def test_plots_show_latency_tokens_tools_and_feedback(recorded):
    lab, _ = recorded
    figures = {kind: lab.plot(kind) for kind in ("latency", "tokens", "tools", "feedback")}
    titles = {kind: fig.axes[0].get_title() for kind, fig in figures.items()}
    assert titles == {"latency": "Latency per turn", "tokens": "Tokens per turn (input, then output lighter)", "tools": "Tool usage", "feedback": "Feedback per thread"}
    bars = figures["latency"].axes[0].patches
    assert len(bars) == 5  # one bar per turn, coloured by where its thread came from
    assert {tuple(b.get_facecolor()) for b in bars[:3]} != {tuple(b.get_facecolor()) for b in bars[3:]}  # 3 original, 2 replayed
    assert [t.get_text() for t in figures["latency"].axes[0].get_legend().get_texts()] == ["original", "replay", "first token"]
    assert [t.get_text() for t in figures["tools"].axes[0].get_yticklabels()] == ["lookup"]
    assert [t.get_text() for t in figures["feedback"].axes[0].get_xticklabels()] == ["/lookup acme"]  # by title, not id
    for fig, axis in ((figures["feedback"], "yaxis"), (figures["tools"], "xaxis"), (figures["latency"], "xaxis")):
        ticks = getattr(fig.axes[0], axis).get_majorticklocs()
        assert all(float(t).is_integer() for t in ticks)  # counts and turn numbers are whole
    assert hasattr(figures["latency"], "savefig")
    empty = ChatLab(":memory:", warm=False)
    assert empty.plot("latency").axes[0].get_title() == "Latency per turn (no turns yet)"
    empty.close()
    with pytest.raises(ChatLabError, match="Unknown plot 'pie'; choose one of latency, tokens, tools, feedback."):
        lab.plot("pie")


def test_frames_export_as_they_show_and_jsonl_keeps_json_as_json(recorded, tmp_path):
    lab, first = recorded
    counts = lab.export(tmp_path / "turns.parquet", frame="turns")
    shown = lab.turns_df()
    written = pd.read_parquet(tmp_path / "turns.parquet")
    assert counts == {"turns_df": len(shown)} and list(written.columns) == list(shown.columns)
    assert {"user_text", "reply_text", "exchange", "lineage"} <= set(written.columns)
    assert written.user_text.tolist() == shown.user_text.tolist()
    lab.export(tmp_path / "threads.csv", frame="threads")
    assert pd.read_csv(tmp_path / "threads.csv").title.tolist() == lab.threads_df().title.tolist()
    with pytest.raises(ChatLabError, match="There is no frame 'turnz' to export; choose one of threads, items, turns"):
        lab.export(tmp_path / "x.csv", frame="turnz")
    with pytest.raises(ChatLabError, match="a table or a frame, not both"):
        lab.export(tmp_path / "x.csv", "turns", frame="turns")

    lab.export(tmp_path / "all.jsonl")
    rows = [json.loads(line) for line in open(tmp_path / "all.jsonl")]
    item = next(r for r in rows if r["_table"] == "items")
    assert isinstance(item["data"], dict) and item["data"]["id"] == item["item_id"]  # an object, not a string of JSON


def test_an_older_jsonl_export_with_json_as_strings_and_id_keys_still_imports(recorded, tmp_path):
    lab, _ = recorded
    lab.export(tmp_path / "new.jsonl")
    json_columns = {t: {c for (c,) in lab.sql(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{t}' AND data_type = 'JSON'").values} for t in TABLES}
    old_keys = {"threads": "thread_id", "items": "item_id", "attachments": "attachment_id"}  # named "id" before m009
    with open(tmp_path / "old.jsonl", "w") as out:  # what exports before these changes wrote
        for line in open(tmp_path / "new.jsonl"):
            row = json.loads(line)
            old = {("id" if k == old_keys.get(row["_table"]) else k): v for k, v in row.items()}
            out.write(json.dumps({k: json.dumps(v, separators=(",", ":"), ensure_ascii=False) if k in json_columns[row["_table"]] and v is not None else v for k, v in old.items()}) + "\n")
    assert '"id": "thr_' in (tmp_path / "old.jsonl").read_text()
    lab.close()
    with ChatLab(tmp_path / "copy.duckdb", warm=False) as copy:
        copy.import_jsonl(tmp_path / "old.jsonl")
        copy.export(tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "new.jsonl").read_text()
