"""A long conversation costs storage in proportion to what was said, not to its square."""

import json
import random

from .conftest import found_in_database


def test_each_model_input_item_is_stored_once_and_read_back_exactly(make_lab, db_path):
    lab = make_lab()
    thread_id = None
    for k in range(6):
        thread_id = lab.send_sync(f"message number {k} " + "x" * 500, thread_id).thread_id
    inputs = lab.model_inputs_df(thread_id)
    assert len(inputs) == 6
    histories = [json.loads(text) for text in inputs.input]
    assert [len(h) for h in histories] == [1, 3, 5, 7, 9, 11]  # the model saw the whole history each time
    assert histories[5][:9] == histories[4]  # and the same items again
    with lab.db.cursor() as cur:
        raw = cur.execute("SELECT count(*) FILTER (WHERE input IS NOT NULL), sum(len(input_hashes)) FROM model_inputs").fetchone()
        distinct_items = cur.execute("SELECT count(*) FROM input_items").fetchone()[0]
        generation = cur.execute("SELECT data FROM spans WHERE span_type = 'generation' ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    assert raw == (0, 36)  # 36 items sent, none written whole
    assert distinct_items == 11  # each stored once: 6 messages and 5 replies
    assert "input" not in json.loads(generation) and len(json.loads(generation)["input_hashes"]) == 11
    span = lab.spans_df(thread_id).query("span_type == 'generation'").iloc[-1]
    assert json.loads(span.data)["input"] == json.loads(inputs.input.iloc[-1])  # the frame shows it whole
    seen = lab.inspect(thread_id)
    assert seen.input == histories[-1] and "message number 5" in seen.text()
    lab.close()
    assert found_in_database(db_path, "message number 5")  # the text is there, once per item


def test_an_export_and_import_round_trip_keeps_the_inputs(make_lab, tmp_path):
    lab = make_lab()
    turn = lab.send_sync("remember this input")
    lab.export(tmp_path / "all.jsonl")
    other = make_lab(db=tmp_path / "copy.duckdb")
    other.import_jsonl(tmp_path / "all.jsonl")
    assert other.model_inputs_df(turn.thread_id, all_users=True).input.tolist() == lab.model_inputs_df(turn.thread_id).input.tolist()
    mine = lab.export(tmp_path / "mine.jsonl")
    assert mine["input_items"] == 1  # a user's export carries the items their calls name


def test_a_small_lab_file_is_mostly_its_text_not_empty_blocks(make_lab, db_path):
    # 24 tables each keep partly filled blocks: with DuckDB's 256 KiB blocks this file was 5.5x its text.
    lab = make_lab()
    thread_id = None
    rng = random.Random(3)
    words = [f"w{n}" for n in range(5000)]
    for _ in range(100):  # as make bench: 100 messages of 10 KB
        text = " ".join(rng.choice(words) for _ in range(1700))[:10_000]
        thread_id = lab.send_sync(text, thread_id).thread_id
    held = int(lab.sql("SELECT sum(strlen(text)) AS n FROM items").n[0])
    with lab.db.cursor() as cur:
        cur.execute("CHECKPOINT")
        block_size = cur.execute("SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()").fetchone()[0]
    lab.close()
    assert block_size == 65536
    assert db_path.stat().st_size <= 3 * held, (db_path.stat().st_size, held)


def test_a_file_made_with_the_old_block_size_still_opens(make_lab, db_path):
    import duckdb

    duckdb.connect(str(db_path)).close()  # 256 KiB blocks, as files made before this release
    lab = make_lab()
    assert lab.send_sync("still here").text
    with lab.db.cursor() as cur:
        assert cur.execute("SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()").fetchone()[0] == 262144


def test_a_path_that_is_not_a_lab_database_is_refused_with_a_sentence_and_left_as_it_was(tmp_path):
    """DuckDB opens an existing JSONL, CSV or Parquet file as a view in memory: a lab on an export
    seemed to work and lost every message at close. A directory or a broken file was a bare IOException."""
    import hashlib

    import pytest

    from chatkit_lab import ChatLab
    from chatkit_lab.errors import ChatLabError

    export = tmp_path / "chats.jsonl"
    export.write_text('{"_table": "threads", "thread_id": "thr_1"}\n')
    broken = tmp_path / "old.duckdb"
    broken.write_bytes(b"not a database")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (export, broken)}
    for path, words in ((export, "is a data file, not a DuckDB database"), (broken, "is not a valid DuckDB database file"),
                        (tmp_path, "is a directory: give a database file in it"),
                        (export / "x.duckdb", r"Cannot make .*chats.jsonl/x.duckdb: .*chats.jsonl is a file, not a folder\.")):
        with pytest.raises(ChatLabError, match=words):
            ChatLab(path, warm=False)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (export, broken)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chats.jsonl", "old.duckdb"]
