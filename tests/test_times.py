"""Times in the tables are UTC, whatever the machine's time zone: files from laptops in
different zones merge in order. Each check runs in a subprocess with its own TZ."""

import json
import os
import subprocess
import sys
import textwrap


def run_in_zone(zone: str, code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")} | {"TZ": zone}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_time_column_is_utc_in_a_far_time_zone(tmp_path):
    seen = run_in_zone("Asia/Tokyo", f"""
        import json, time
        from datetime import UTC, datetime
        from chatkit_lab import ChatLab
        lab = ChatLab({str(tmp_path / "tokyo.duckdb")!r}, model="offline")
        turn = lab.send_sync("hello from Tokyo")
        reply = lab.items_df(turn.thread_id).query("type == 'assistant_message'").item_id.iloc[0]
        lab.request_sync({{"type": "items.feedback", "params": {{"thread_id": turn.thread_id, "item_ids": [reply], "kind": "positive"}}}})
        lab.fork(turn.thread_id)
        lab.runtime.flush()
        now = datetime.now(UTC).replace(tzinfo=None)
        skew = {{}}
        for table, column in [("threads", "created_at"), ("threads", "updated_at"), ("items", "created_at"), ("items", "updated_at"),
                              ("turns", "started_at"), ("turns", "ended_at"), ("spans", "started_at"), ("traces", "started_at"),
                              ("model_inputs", "created_at"), ("feedback", "created_at"), ("lineage", "created_at")]:
            latest = lab.sql(f"SELECT max({{column}}) AS t FROM {{table}}").t[0].to_pydatetime()
            skew[f"{{table}}.{{column}}"] = round(abs((now - latest).total_seconds()) / 3600, 2)
        print(time.strftime("%z"))
        print(json.dumps(skew))
    """)
    assert seen and all(hours < 0.1 for hours in seen.values()), seen  # not 9 hours ahead


def test_an_older_file_written_in_local_time_is_moved_to_utc(tmp_path):
    path = tmp_path / "old.duckdb"
    seen = run_in_zone("Asia/Tokyo", f"""
        import json
        import duckdb
        from chatkit_lab.store.schema import MIGRATIONS
        from chatkit_lab.store.database import Database
        con = duckdb.connect({str(path)!r})
        con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
        for fn in MIGRATIONS[:7]:  # the file as m007 left it
            fn(con)
            con.execute("INSERT INTO _migrations (name) VALUES (?)", [fn.__name__])
        con.execute("INSERT INTO turns (turn_id, thread_id, user_id, started_at, ended_at, status) VALUES ('t1', 'th', 'u', TIMESTAMP '2026-01-01 09:00:00', NULL, 'completed')")
        con.close()
        db = Database({str(path)!r})
        with db.cursor() as cur:
            print(json.dumps({{"started_at": str(cur.execute("SELECT started_at FROM turns").fetchone()[0]),
                               "migrations": [n for (n,) in cur.execute("SELECT name FROM _migrations ORDER BY name").fetchall()][7]}}))
        db.close()
    """)
    assert seen == {"started_at": "2026-01-01 00:00:00", "migrations": "m008_utc_times"}
