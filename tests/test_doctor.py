"""`chatkit-lab doctor` and `lab.doctor()`: each check against the real thing (files, processes, servers on 127.0.0.1)."""

import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

from chatkit_lab.auth.jwt import LocalIssuer
from chatkit_lab.cli import main
from chatkit_lab.doctor import diagnose
from chatkit_lab.models import resolve_backend
from chatkit_lab.store.schema import MIGRATIONS

OFFLINE = resolve_backend("offline")


@pytest.fixture
def http():
    """A server on 127.0.0.1 answering every path with the status its name starts with (``/401/v1/models``)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status = int(self.path.split("/")[1])
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(b'{"data": []}' if status == 200 else b"{}")

        do_GET = do_HEAD = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def line(report, name):
    return next(str(c) for c in report.checks if c.name == name)


def test_a_fresh_machine_passes_and_says_what_it_found(make_lab, db_path, http, capsys):
    make_lab(warm=False).close()
    report = diagnose(db_path, OFFLINE, cdn_url=f"{http}/200/chatkit.js")
    assert report.ok and line(report, "database") == f"✓ database: {db_path}: writable, migrated ({len(MIGRATIONS)} of {len(MIGRATIONS)})"
    assert line(report, "ChatKit CDN").startswith("✓") and line(report, "Python").startswith("✓ Python: 3.")
    offline_cdn = diagnose(db_path.parent / "new" / "x.duckdb", OFFLINE, cdn_url=f"http://127.0.0.1:{closed_port()}/chatkit.js", timeout=1)
    assert offline_cdn.ok  # the built-in renderer draws the chat: not needed
    assert line(offline_cdn, "ChatKit CDN").endswith("the chat uses the built-in renderer — nothing, unless you want ui='chatkit' (optional)")
    assert "does not exist yet: it is created on first use" in line(offline_cdn, "database")
    assert main(["doctor", "--db", str(db_path), "--timeout", "1"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("the lab can run here")


def test_a_configured_provider_must_answer_and_accept_its_key(http, db_path):
    port = closed_port()
    unreachable = diagnose(None, resolve_backend("m", base_url=f"http://127.0.0.1:{port}/v1"), timeout=1)
    assert not unreachable.ok and f"http://127.0.0.1:{port}/v1/models is unreachable (ConnectError)" in line(unreachable, "model")
    refused = diagnose(None, resolve_backend("m", base_url=f"{http}/401/v1", api_key="sk-test-not-a-real-key-1234567890"), cdn_url=f"{http}/200/x")
    assert not refused.ok and "the provider refused the API key (401) — set a valid OPENAI_API_KEY" in line(refused, "model")
    answered = diagnose(None, resolve_backend("m", base_url=f"{http}/200/v1"), cdn_url=f"{http}/200/x")
    assert answered.ok and "reachable (200 from" in line(answered, "model")
    assert main(["doctor", "--db", str(db_path), "--base-url", f"http://127.0.0.1:{port}/v1", "--timeout", "1"]) == 1


def test_a_file_held_by_another_process_names_the_process(db_path):
    duckdb.connect(str(db_path)).close()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; con = duckdb.connect({str(db_path)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        report = diagnose(db_path, OFFLINE, cdn_url="http://127.0.0.1:9/x", timeout=0.5)
        assert not report.ok
        assert f"is locked by process {holder.pid} ({sys.executable} -c import duckdb" in line(report, "database")
        assert line(report, "database").endswith("close the lab or kernel holding it (lab.close()), or use another file")
    finally:
        holder.kill()
        holder.wait()


def test_an_older_file_lists_the_migrations_it_will_get(db_path):
    with duckdb.connect(str(db_path)) as con:
        con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
        con.execute("INSERT INTO _migrations VALUES (?, now())", [MIGRATIONS[0].__name__])
    report = diagnose(db_path, OFFLINE, cdn_url="http://127.0.0.1:9/x", timeout=0.5)
    assert report.ok and f"1 of {len(MIGRATIONS)} migrations; {MIGRATIONS[1].__name__}," in line(report, "database")
    with open(db_path, "wb") as f:
        f.write(b"not a database")
    broken = diagnose(db_path, OFFLINE, cdn_url="http://127.0.0.1:9/x", timeout=0.5)
    assert not broken.ok and "is not a valid DuckDB database file" in line(broken, "database")
    exported = db_path.with_suffix(".jsonl")  # an export: DuckDB would open it as a view in memory
    exported.write_text('{"_table": "threads"}\n')
    export = diagnose(exported, OFFLINE, cdn_url="http://127.0.0.1:9/x", timeout=0.5)
    assert not export.ok and "is a data file, not a DuckDB database" in line(export, "database")


def test_a_jwks_url_must_serve_keys_and_a_lab_has_its_own_doctor(make_lab, http):
    issuer = LocalIssuer()
    try:
        url = issuer.serve()
        assert line(diagnose(None, OFFLINE, jwks_url=url, cdn_url=f"{http}/200/x"), "JWKS") == f"✓ JWKS: {url}: 1 key"
    finally:
        issuer.stop_serving()
    empty = diagnose(None, OFFLINE, jwks_url=f"{http}/200/jwks.json", cdn_url=f"{http}/200/x")
    assert not empty.ok and line(empty, "JWKS").startswith(f"✗ JWKS: {http}/200/jwks.json has no keys")
    lab = make_lab(warm=False)
    lab.send_sync("hello")
    report = lab.doctor(timeout=0.5)
    assert report.ok
    assert "<table>" in report._repr_html_() and line(report, "model").startswith("✓ model: offline mirror model")


def test_a_postgresql_url_is_checked_for_reach_and_migrations(postgres_cluster, postgres_dsn):
    from chatkit_lab.store import PostgresStore
    from chatkit_lab.store.postgres_schema import MIGRATIONS as PG_MIGRATIONS

    from .conftest import run

    fresh = diagnose(postgres_dsn, OFFLINE, cdn_url="http://127.0.0.1:9/x", timeout=1)
    names = ", ".join(name for name, _ in PG_MIGRATIONS)
    assert fresh.ok and f"reachable, 0 of {len(PG_MIGRATIONS)} migrations; {names} are applied on first use" in line(fresh, "database")
    assert names.startswith("m001_threads_items_attachments_feedback, m002_log_tables, m003_rate_hits")
    store = PostgresStore(postgres_dsn)
    run(store.open())
    store.close()
    assert f"reachable, {len(PG_MIGRATIONS)} of {len(PG_MIGRATIONS)} migrations" in line(diagnose(postgres_dsn, OFFLINE, cdn_url="http://127.0.0.1:9/x", timeout=1), "database")
    gone = diagnose(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/nowhere", OFFLINE, cdn_url="http://127.0.0.1:9/x", timeout=1)
    assert not gone.ok and line(gone, "database").endswith('does not exist — create it (createdb) or name another database in the URL')
