"""The `chatkit-lab` command."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _serve(args: argparse.Namespace) -> int:
    from ._heap import settle
    from .doctor import jwks_check
    from .lab import ChatLab
    from .store.postgres_database import is_postgres_url, where_of

    if args.workers < 1:
        print("--workers must be 1 or more.", file=sys.stderr)
        return 2
    if args.workers > 1:
        if not is_postgres_url(args.db):
            print(f"--workers {args.workers} needs a PostgreSQL database: a DuckDB file is written by one process at a time, "
                  "so more workers would only wait for each other. Use --db postgresql://user@host/db, or one worker.", file=sys.stderr)
            return 2
        return _supervise(args)
    verifier = None
    if args.jwks_url:
        from .auth import JWKSVerifier

        verifier = JWKSVerifier(args.jwks_url, issuer=args.issuer, audience=args.audience)
    elif args.issuer or args.audience:
        print("--issuer and --audience need --jwks-url (where the signing keys are published).", file=sys.stderr)
        return 2
    from .transport.limits import Limits, MiB

    limits = Limits(max_body_bytes=int(args.max_body_mb * MiB), max_message_chars=args.max_message_chars,
                    max_attachments=args.max_attachments, max_attachment_bytes=int(args.max_attachment_mb * MiB), max_page=args.max_page,
                    rate=args.rate_limit)
    lab = ChatLab(args.db, model=args.model, base_url=args.base_url, user_id=args.user_id, verifier=verifier, limits=limits,
                  **({"instructions": args.instructions} if args.instructions else {}))
    hosts = ["127.0.0.1", "localhost", "::1", *(args.allowed_host or [])]
    if args.host not in ("0.0.0.0", "::"):
        hosts.append(args.host)
    sock = socket.socket(fileno=args.listen_fd) if args.listen_fd is not None else None
    url = lab.serve(args.host, args.port, allowed_hosts=hosts, allowed_origins=args.allowed_origin or (), sock=sock)
    if lab.warmed is not None:
        concurrent.futures.wait([lab.warmed], timeout=60)  # the warm-up turn's lazily built objects are start-up's too
    settle()  # full collections scanned its ~290,000 start-up objects: ~170 ms stalls every few hundred turns
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # before the banner: whoever reads it may stop this at once
    print(f"chatkit-lab serving {where_of(args.db)} at {url}/chatkit (health: {url}/health)", flush=True)
    print(f"model: {lab.backend.description}", flush=True)
    print(f"auth: Bearer JWT from {args.jwks_url}" if verifier else f"auth: none, every request acts as {args.user_id!r}", flush=True)
    if verifier is not None and not (keys := jwks_check(args.jwks_url, timeout=3.0)).ok:  # it may come up later: warn, do not stop
        print(f"warning: {keys.detail}; every request is refused until it serves keys ({keys.fix})", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):  # not one endless wait: a signal the kernel hands another thread does not wake this one
            pass
    except KeyboardInterrupt:
        pass
    lab.close()
    return 0


QUICK_EXIT_S = 10  # a worker that exits sooner after its start is restarted after a wait: 1 s, 2 s, 4 s, ... MAX_RESTART_WAIT_S
MAX_RESTART_WAIT_S = 30


def _supervise(args: argparse.Namespace) -> int:
    """``serve --workers N``: bind the port once, start N worker processes that accept on it (the
    kernel shares the connections out), replace a worker that dies (after a growing wait if it
    keeps dying at start), stop them all on SIGTERM."""
    from ._runtime import listening
    from .store.postgres_database import where_of

    listener = listening(args.host, args.port, backlog=2048)
    listener.set_inheritable(True)
    worker = [sys.executable, "-m", "chatkit_lab.cli", *args.argv, "--workers", "1", "--listen-fd", str(listener.fileno())]

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(worker, stdout=subprocess.PIPE, text=True, pass_fds=[listener.fileno()])

    def ready(child: subprocess.Popen[str]) -> list[str]:
        assert child.stdout is not None
        return [child.stdout.readline() for _ in range(3)]  # serving, model, auth: it accepts now

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    workers = [start() for _ in range(args.workers)]  # started together: each takes seconds to import
    started = [time.monotonic()] * len(workers)
    try:
        for child in workers:
            said = ready(child)
            if not said[0].startswith("chatkit-lab serving"):
                if stop.is_set():
                    return 0
                print(f"a worker could not start (exit code {child.wait()}); see its error above.", file=sys.stderr)
                return 1
        url = f"http://{args.host}:{listener.getsockname()[1]}"
        print(f"chatkit-lab serving {where_of(args.db)} at {url}/chatkit with {args.workers} workers "
              f"(pids {', '.join(str(w.pid) for w in workers)}; health: {url}/health)", flush=True)
        print(said[1].rstrip(), said[2].rstrip(), sep="\n", flush=True)
        quick_exits, due = [0] * len(workers), [0.0] * len(workers)
        while not stop.wait(0.5):
            now = time.monotonic()
            for i, child in enumerate(workers):
                if child.poll() is None or stop.is_set():
                    continue
                if not due[i]:  # just found exited: a worker that keeps dying at start (its database down) waits longer each time
                    ran = now - started[i]
                    quick_exits[i] = quick_exits[i] + 1 if ran < QUICK_EXIT_S else 0
                    wait = min(2 ** (quick_exits[i] - 1), MAX_RESTART_WAIT_S) if quick_exits[i] else 0
                    due[i] = now + wait
                    print(f"worker {child.pid} exited (code {child.returncode}); starting another"
                          + (f" in {wait} s (it ran {ran:.1f} s)" if wait else ""), file=sys.stderr, flush=True)
                if now >= due[i]:
                    workers[i], started[i], due[i] = start(), now, 0.0
    except KeyboardInterrupt:
        pass
    finally:
        for child in workers:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in workers:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        listener.close()
    return 0


def _proxy(args: argparse.Namespace) -> int:
    import uvicorn

    from ._runtime import listening
    from .auth.jwt import LocalIssuer
    from .auth.proxy import create_proxy_app

    if not args.upstream.startswith(("http://", "https://")):
        print(f"--upstream {args.upstream!r} is not a URL: give the chat server's, such as http://127.0.0.1:8000/chatkit.", file=sys.stderr)
        return 2
    issuer = LocalIssuer(issuer=args.issuer, audience=args.audience)
    app = create_proxy_app(args.upstream, issuer=issuer)
    sock = listening(args.host, args.port)  # bound first: with --port 0 the URLs below name the port it got
    base = f"http://{args.host}:{sock.getsockname()[1]}"
    print(f"chatkit-lab proxy at {base} -> {args.upstream}", flush=True)
    print(f"run the chat server with: chatkit-lab serve --jwks-url {base}/.well-known/jwks.json --issuer {args.issuer} --audience {args.audience}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def _export(args: argparse.Namespace) -> int:
    from . import logs

    if _postgres(args.db):
        with _shared(args.db) as db:
            counts = logs.export_postgres(db, args.out, table=args.table, user_id=args.user_id)
    else:
        with _database(args.db) as cur:
            counts = logs.export(cur, args.out, table=args.table, user_id=args.user_id)
    print(f"wrote {args.out}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return 0


def _import(args: argparse.Namespace) -> int:
    from . import logs

    if _postgres(args.db):
        with _shared(args.db) as db:
            counts = logs.import_postgres(db, args.file)
    else:
        with _database(args.db, create=True) as cur:
            counts = logs.import_jsonl(cur, args.file)
    print(f"imported {args.file} into {_shown(args.db)}: " + (", ".join(f"{n} {t}" for t, n in counts.items() if n) or "nothing new"))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from . import logs

    if _postgres(args.out):
        with _shared(args.out) as db:
            summary = logs.merge_postgres(db, args.sources, names=args.name)
    else:
        summary = logs.merge(args.out, args.sources, names=args.name)
    for origin, counts in summary.items():
        print(f"{origin}: " + (", ".join(f"{n} {t}" for t, n in counts.items() if n) or "nothing new"))
    print(f"merged {len(summary)} file{'' if len(summary) == 1 else 's'} into {_shown(args.out)}")
    return 0


def _port(text: str) -> int:
    # uvicorn takes 99999 as 99999 % 65536 and serves on a port nobody asked for
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port: give 1 to 65535, or 0 for any free one")
    return int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (write 0.9 for 90%)")
    return value


def _eval(args: argparse.Namespace) -> int:
    import json

    from .evals.graders import load_graders_file
    from .lab import ChatLab

    graders = load_graders_file(args.graders)
    with ChatLab(args.db, model=args.model, base_url=args.base_url, user_id=args.user_id, warm=False,
                 **({"instructions": args.instructions} if args.instructions else {})) as lab:
        run = lab.evaluate_sync(args.dataset, graders=graders, target=args.workflow, concurrency=args.concurrency,
                                judge=args.judge, progress=sys.stderr.isatty())
    summary = run.summary
    counts = summary["result_counts"]
    if args.json:
        print(json.dumps({**summary, "pass_rate": run.pass_rate}, indent=2))
    else:
        print(f"{summary['name']} ({summary['id']}, stored in {args.db})")
        print(f"  {counts['passed']}/{counts['total']} passed ({run.pass_rate:.1%}), {counts['failed']} failed, {counts['errored']} errored")
        for c in summary["per_testing_criteria_results"]:
            print(f"  {c['testing_criteria']}: {c['passed']} passed, {c['failed']} failed, {c['errored']} errored")
        for error, n in _errors(run).items():  # the counts alone do not say what to fix
            print(f"  {n} × {error}")
    if counts["total"] and counts["errored"] == counts["total"]:
        print("every item errored, so the run measured nothing", file=sys.stderr)
        return 1
    if args.min_pass_rate is not None and run.pass_rate < args.min_pass_rate:
        print(f"pass rate {run.pass_rate:.1%} is below --min-pass-rate {args.min_pass_rate:.1%}", file=sys.stderr)
        return 1
    return 0


def _errors(run: Any, most: int = 3) -> dict[str, int]:
    """The commonest error sentences of a run: its items' (no answer), then its graders' own."""
    graders = [e for e in run.results.error.dropna() if not e.startswith("the item has no answer to grade")]
    return dict(Counter([*run.items.error.dropna(), *graders]).most_common(most))


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose
    from .models import resolve_backend

    report = diagnose(args.db, resolve_backend(args.model, base_url=args.base_url), jwks_url=args.jwks_url, timeout=args.timeout)
    print(report)
    return 0 if report.ok else 1


def _workshop(args: argparse.Namespace) -> int:
    import csv
    import os

    from .store.postgres_database import is_postgres_url
    from .store.workshop import setup

    if not is_postgres_url(args.db):
        print(f"A workshop is one PostgreSQL database for the class, not {args.db!r}: give --db postgresql://owner@host/class.", file=sys.stderr)
        return 2
    names = [n.strip() for n in (args.students or "").split(",") if n.strip()]
    teachers = [n.strip() for n in (args.teachers or "").split(",") if n.strip()]
    members = setup(args.db, names, teachers)
    out = Path(args.out)
    with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", newline="") as f:  # it holds passwords
        writer = csv.writer(f)
        writer.writerow(["name", "role", "url"])
        writer.writerows([m.name, "teacher" if m.teacher else "student", m.url] for m in members)
    print(f"row-level security on every table; {len(names)} students and {len(teachers)} teachers have new passwords in {out} "
          "(mode 600): give each kernel its url as CHATKIT_LAB_DB")
    return 0


def _postgres(db: str) -> bool:
    from .store.postgres_database import is_postgres_url

    return is_postgres_url(db)


def _shown(db: str) -> str:
    from .store.postgres_database import where_of

    return where_of(db)


@contextlib.contextmanager
def _shared(url: str) -> Iterator[Any]:
    from .store.postgres_database import PostgresDatabase

    db = PostgresDatabase(url)
    try:
        yield db
    finally:
        db.close()


@contextlib.contextmanager
def _database(path: str, create: bool = False) -> Iterator[Any]:
    from .errors import ChatLabError
    from .store.database import Database

    if not create and not Path(path).is_file():
        raise ChatLabError(f"There is no database file {path!r}.")
    db = Database(path)
    try:
        with db.cursor() as cur:
            yield cur
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    from .transport.limits import Limits, MiB

    parser = argparse.ArgumentParser(prog="chatkit-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a lab over HTTP: POST /chatkit, GET /health")
    serve.add_argument("--db", default="chats.duckdb", help="DuckDB file or postgresql:// URL (default: chats.duckdb)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes sharing the port; more than 1 needs PostgreSQL (default: 1)")
    serve.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker of --workers: accept on this socket
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--model", default=None, help="model name (default: offline mirror, or OpenAI with OPENAI_API_KEY)")
    serve.add_argument("--base-url", default=None, help="an OpenAI-compatible server, e.g. http://localhost:11434/v1")
    serve.add_argument("--user-id", default="local", help="the user every request acts as (without --jwks-url)")
    serve.add_argument("--jwks-url", default=None, help="require a Bearer JWT signed by a key from this JWKS URL")
    serve.add_argument("--issuer", default=None, help="the token's required iss claim")
    serve.add_argument("--audience", default=None, help="the token's required aud claim")
    serve.add_argument("--instructions", default=None)
    serve.add_argument("--allowed-host", action="append", help="a Host name this server answers to besides loopback (repeat; '*' for any)")
    serve.add_argument("--allowed-origin", action="append", help="another site whose pages may call this server, e.g. https://app.example (repeat)")
    defaults = Limits()
    serve.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / MiB, help="largest request body (default: %(default)s)")
    serve.add_argument("--max-message-chars", type=int, default=defaults.max_message_chars, help="longest user message (default: %(default)s)")
    serve.add_argument("--max-attachments", type=int, default=defaults.max_attachments, help="attachments per message (default: %(default)s)")
    serve.add_argument("--max-attachment-mb", type=float, default=defaults.max_attachment_bytes / MiB, help="largest uploaded file (default: %(default)s)")
    serve.add_argument("--max-page", type=int, default=defaults.max_page, help="largest page `limit` (default: %(default)s)")
    serve.add_argument("--rate-limit", default=None, help="requests per user, e.g. 60/minute or 5/second;100/hour (default: none)")
    serve.set_defaults(run=_serve)
    proxy = sub.add_parser("proxy", help="a web page with the chat; the token lives in an httpOnly cookie")
    proxy.add_argument("--upstream", required=True, help="the ChatKit endpoint, e.g. http://127.0.0.1:8000/chatkit")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=_port, default=8080)
    proxy.add_argument("--issuer", default="chatkit-lab-proxy", help="the iss claim of the tokens it issues")
    proxy.add_argument("--audience", default="chatkit-lab", help="the aud claim of the tokens it issues")
    proxy.set_defaults(run=_proxy)
    export = sub.add_parser("export", help="write a database's logs to Parquet, CSV or JSONL (by the extension)")
    export.add_argument("--db", default="chats.duckdb", help="DuckDB file or postgresql:// URL (default: chats.duckdb)")
    export.add_argument("out", help="out.jsonl (every table), or out.parquet / out.csv (one table)")
    export.add_argument("--table", default=None, help="the table to write (Parquet and CSV default: items)")
    export.add_argument("--user-id", default=None, help="only this user's rows (default: everyone's)")
    export.set_defaults(run=_export)
    load = sub.add_parser("import", help="load a JSONL export into a database (created if missing)")
    load.add_argument("--db", default="chats.duckdb", help="DuckDB file (created if missing) or postgresql:// URL (default: chats.duckdb)")
    load.add_argument("file", help="a .jsonl file written by export")
    load.set_defaults(run=_import)
    merge = sub.add_parser("merge", help="combine several database files into one, recording each thread's origin")
    merge.add_argument("out", help="the merged DuckDB file (created if missing), or a postgresql:// URL")
    merge.add_argument("sources", nargs="+", help="the database files to merge (only read)")
    merge.add_argument("--name", action="append", help="origin name per source, in order (default: file names)")
    merge.set_defaults(run=_merge)
    evaluate = sub.add_parser("eval", help="run a dataset through the lab or a workflow version, grade it, store the run (for CI)")
    evaluate.add_argument("dataset", help="a .jsonl, .json, .csv or .parquet dataset (one item per row, each with an input)")
    evaluate.add_argument("--db", default="chats.duckdb", help="DuckDB file the run is stored in (default: chats.duckdb)")
    evaluate.add_argument("--graders", required=True, help="OpenAI grader JSON: a list, {\"testing_criteria\": [...]}, one grader, or JSONL")
    evaluate.add_argument("--workflow", default=None, help="answer with this workflow: NAME@VERSION (published in --db), NAME, or a .json file")
    evaluate.add_argument("--min-pass-rate", type=_fraction, default=None, help="exit 1 when fewer items pass every grader (0 to 1)")
    evaluate.add_argument("--concurrency", type=int, default=16, help="items answered at once (default: %(default)s)")
    evaluate.add_argument("--model", default=None, help="model name (default: offline mirror, or OpenAI with OPENAI_API_KEY)")
    evaluate.add_argument("--base-url", default=None, help="an OpenAI-compatible server, e.g. http://localhost:11434/v1")
    evaluate.add_argument("--judge", default=None, help="the model of score_model and label_model graders (default: --model)")
    evaluate.add_argument("--instructions", default=None, help="the agent's instructions (without --workflow)")
    evaluate.add_argument("--user-id", default="local", help="whose run it is (default: %(default)s)")
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")
    evaluate.set_defaults(run=_eval)
    workshop = sub.add_parser("workshop", help="a class on one PostgreSQL database: a role per student, each kept to their rows")
    workshop.add_argument("--db", required=True, help="postgresql:// URL of a role that owns the tables (or may create them)")
    workshop.add_argument("--students", default="", help="comma-separated user names (JupyterHub's), e.g. ada,bo")
    workshop.add_argument("--teachers", default="", help="comma-separated user names who read across the class")
    workshop.add_argument("--out", default="class.csv", help="where each person's URL is written, mode 600 (default: %(default)s)")
    workshop.set_defaults(run=_workshop)
    doctor = sub.add_parser("doctor", help="check this machine can run the lab: packages, database, model, CDN, test tools")
    doctor.add_argument("--db", default="chats.duckdb", help="DuckDB file (default: chats.duckdb)")
    doctor.add_argument("--model", default=None, help="model name (default: offline mirror, or OpenAI with OPENAI_API_KEY)")
    doctor.add_argument("--base-url", default=None, help="an OpenAI-compatible server, e.g. http://localhost:11434/v1")
    doctor.add_argument("--jwks-url", default=None, help="check the JWKS the server would verify tokens with")
    doctor.add_argument("--timeout", type=float, default=3.0, help="seconds each network check may take (default: %(default)s)")
    doctor.set_defaults(run=_doctor)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .errors import ChatLabError

    try:
        return args.run(args)
    except ChatLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
