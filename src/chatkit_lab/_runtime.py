"""The runtime: what the lab, replay and the chat widget share.

One object owns the lab's loop thread, its database, store, tracer and secrets, the server that
answers requests, and the open chat views; "send one protocol request through this server" lives
here too. ``ChatLab`` is a facade over it; replay and the widget take it instead of the lab, so
nothing but ``__init__`` and the CLI imports ``lab.py``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

from chatkit.store import NotFoundError

from . import tracing
from ._loop import LoopThread
from .auth.jwt import Authenticator
from .auth.secrets import Secrets
from .context import RequestContext, build_context
from .errors import ChatLabError, error_for
from .server import LabServer
from .store.database import Database
from .store.duckdb import DuckDBStore
from .store.postgres import PostgresStore
from .store.postgres_database import PostgresDatabase, is_postgres_url
from .transport.limits import Limits
from .transport.requests import handle_request, parse_sse
from .turn import Turn

log = logging.getLogger("chatkit_lab")
T = TypeVar("T")
Events = list[dict[str, Any]]


KEEP_ALIVE_S = 65
MEMO_LONGEST, MEMO_ENTRIES = 4096, 4096  # redacted text remembered: up to 4096 texts of up to 4096 characters


class View(Protocol):
    """An open chat (the widget): shown turns made elsewhere, told the token and warnings."""

    def show_events(self, thread_id: str | None, events: Events) -> None: ...
    def send_token(self, token: str | None) -> None: ...
    def show_warning(self, message: str) -> None: ...


class Runtime:
    """The loop thread, database, store, tracer, secrets, server and open views of one lab."""

    def __init__(
        self, db: str | Path, *, secrets: Secrets, auth: Authenticator, trace_forward: Any = None, limits: Limits | None = None,
        mask: Callable[[str], str] | None = None,
    ) -> None:
        self.secrets, self.auth = secrets, auth
        self.limits = limits or Limits()
        self.masks: list[Callable[[str], str]] = [mask] if mask is not None else []
        self._masks_version = 0
        self._memo: tuple[tuple[int, int], dict[str, str]] = ((-1, -1), {})
        self.db: Database | PostgresDatabase
        self.store: DuckDBStore | PostgresStore
        if is_postgres_url(db):  # a shared deployment: the store and the logs in one PostgreSQL database
            self.db, self.store = PostgresDatabase(str(db)), PostgresStore(str(db), redact=self.redact)
        else:
            self.db = Database(db)
            self.store = DuckDBStore(self.db, redact=self.redact)
        self.loop = LoopThread()
        self.key = f"lab_{uuid.uuid4().hex[:8]}"  # routes this lab's traces to its tracer
        self.tracer = tracing.DuckDBTraceProcessor(
            self.db, self.loop.loop, forward=trace_forward, redact=self.redact, on_failure=self._log_write_failed
        )
        tracing.register(self.key, self.tracer)
        self._server: LabServer | None = None
        self.views: weakref.WeakSet[Any] = weakref.WeakSet()
        self.shown_thread_id: str | None = None  # the thread the last switched chat shows
        self.token: str | None = None  # the views' Bearer token; never in a trait or the notebook
        self._http: tuple[Any, Any] | None = None
        self.closed = False

    def redact(self, text: str) -> str:
        """Everything written passes here: secrets out, and with ``masks`` (the PII masking of
        the lab's guardrails and its workflow's guardrails nodes) the masked entities too, so a
        reply or tool output cannot write them either. Text up to ``MEMO_LONGEST`` characters is
        remembered: a thread's history passes here on every model call."""
        if len(text) > MEMO_LONGEST:
            return self._redacted(text)
        version = (self.secrets.version, self._masks_version)  # read first: the memo never outlives what it was made with
        made_with, memo = self._memo
        if made_with != version:
            memo = {}
            self._memo = (version, memo)
        done = memo.get(text)
        if done is None:
            done = self._redacted(text)
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[text] = done
        return done

    def _redacted(self, text: str) -> str:
        text = self.secrets.redact(text)
        for mask in self.masks:
            text = mask(text)
        return text

    def set_masks(self, masks: list[Callable[[str], str]]) -> None:
        """The PII masks everything written passes through from now on."""
        self.masks = masks
        self._masks_version += 1  # after the masks, as Secrets.version

    @property
    def server(self) -> LabServer:
        if self._server is None:
            raise ChatLabError("This runtime has no server yet; ChatLab attaches one.")
        return self._server

    def attach(self, server: LabServer) -> None:
        self._server = server

    def open(self) -> None:
        """Open the file and apply migrations now, not on the first message."""
        self.call(self._open())

    async def _open(self) -> None:
        async with self.db.acursor():
            pass
        if isinstance(self.store, PostgresStore):
            await self.store.open()  # a warm pool: the first request costs what the next one does

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the lab's loop from any other loop (a notebook cell's)."""
        return await self.loop.run(coro)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the lab's loop and wait (the ``_sync`` methods)."""
        return self.loop.call(coro, timeout)

    # -- one protocol request ------------------------------------------------------------------
    async def request(
        self, body: dict[str, Any] | str, user_id: str, *, on_events: Callable[[Events], None] | None = None,
        headers: dict[str, str] | None = None, server: LabServer | None = None,
    ) -> Any:
        """One ChatKit request through ``server`` (the lab's by default), on the lab's loop: the
        JSON reply, or the list of stream events. With ``headers`` it is authenticated exactly
        like a widget's or HTTP client's request."""
        raw = body if isinstance(body, str) else json.dumps(body)
        claims: dict[str, Any] = {}
        if headers is not None:
            identity = await self.auth.identify(headers)
            user_id, claims = identity.user_id, identity.claims
        context = build_context(raw, user_id=user_id, claims=claims, headers=headers)
        reply = await handle_request(server or self.server, raw, context, self.limits)
        if reply.status != 200:
            error = json.loads(reply.body)["error"]
            raise error_for(error["code"], error["message"])
        if reply.stream is None:
            return json.loads(reply.body)
        events: Events = []
        async for chunk in reply.stream:
            batch = parse_sse(chunk)
            events += batch
            if on_events is not None:
                on_events(batch)
        return events

    async def send(self, text: str, thread_id: str | None, user_id: str, *, new_thread: bool = False) -> Turn:
        """A user message and its reply; open chats show it live. Without ``thread_id`` it goes
        to the thread an open chat shows (the one last switched to), else to a new thread."""
        if thread_id is None and not new_thread and self.views and self.shown_thread_id:
            thread_id = await self._owned(self.shown_thread_id, user_id)
        message = {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}
        if thread_id:
            body = {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message}}
        else:
            body = {"type": "threads.create", "params": {"input": message}}
        shown = thread_id

        def show(batch: Events) -> None:
            nonlocal shown
            shown = next((e["thread"]["id"] for e in batch if e["type"] == "thread.created"), shown)
            for view in list(self.views):
                view.show_events(shown, batch)

        return Turn.of(thread_id, await self.request(body, user_id, on_events=show if self.views else None))

    async def _owned(self, thread_id: str, user_id: str) -> str | None:
        """``thread_id`` if ``user_id`` may write to it (a chat may show another user's thread)."""
        try:
            await self.store.load_thread(thread_id, RequestContext(user_id=user_id))
        except NotFoundError:
            return None
        return thread_id

    # -- HTTP ------------------------------------------------------------------------------
    def serve_app(self, app: Any, host: str, port: int, sock: Any = None) -> str:
        """Serve an ASGI ``app`` from the lab's loop (uvicorn); returns its URL. ``sock``: a
        listening socket to accept on instead of binding ``host:port`` (workers share one)."""
        import uvicorn

        if self._http is not None:
            raise ChatLabError("This lab is already serving; call lab.stop_serving() first.")
        if sock is None:  # bound here: uvicorn would serve port % 65536, and exits the process when the port is taken
            sock = listening(host, port)
        # Keep idle connections longer than uvicorn's 5 s: a client that comes back to a
        # connection the server is closing just then gets "connection reset" on its POST
        # (seen in a CI run: 4 serve processes sharing a file, 500 turns), and a chat client
        # often comes back within a minute. 65 s outlasts common proxies' 60 s idle timeout.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", timeout_keep_alive=KEEP_ALIVE_S)
        server = uvicorn.Server(config)
        task = self.loop.submit(server.serve(sockets=[sock] if sock is not None else None))
        while not server.started:
            if task.done():
                task.result()  # raises the bind error, for instance
                raise ChatLabError(f"The HTTP server on {host}:{port} stopped at once.")
            time.sleep(0.01)
        self._http = (server, task)
        url = f"http://{host}:{server.servers[0].sockets[0].getsockname()[1]}"
        self.store.upload_url = url + "/chatkit/attachments/{id}/upload"
        return url

    def stop_serving(self) -> None:
        if self._http is not None:
            server, task = self._http
            server.should_exit = True
            try:
                task.result(10)
            finally:
                self._http = None

    # -- views -------------------------------------------------------------------------------
    def add_view(self, view: View) -> None:
        self.views.add(view)

    def view_switched(self, thread_id: str | None) -> None:
        """A chat now shows ``thread_id`` (None: a new chat): ``send`` without a thread goes there."""
        self.shown_thread_id = thread_id

    def announce_token(self, token: str | None) -> None:
        self.token = token
        for view in list(self.views):
            view.send_token(token)

    def _log_write_failed(self, message: str) -> None:
        for view in list(self.views):
            view.show_warning(message)

    # -- logs ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write what waits in memory before a read: the rows queued behind the stream (turns,
        spans, model inputs) and the store's waiting items (a task list held for its reply)."""
        if not self.loop.on_loop() and self.loop.running:
            self.loop.call(self._flush())

    async def _flush(self) -> None:
        if self.store.kept:
            await self.store.write_kept()
        await self.tracer.aflush()

    def health(self) -> dict[str, Any]:
        """Whether the lab works and its logs are being written."""
        failures = self.tracer.failures
        return {
            "status": "closed" if self.closed else ("degraded" if failures else "ok"),
            "database": self.db.path,
            "log_write_failures": failures,
            "last_log_error": self.tracer.last_failure,
        }

    # -- warm-up and shutdown ------------------------------------------------------------------
    async def rehearse(self) -> None:
        """One offline turn on a throwaway in-memory store, in the background: the first real
        turn then does not pay for the SDK's lazy imports and first-use setup (about 250 ms)."""
        from agents import Agent, RunConfig

        from .models import MirrorModel
        from .store.memory import MemoryStore

        try:
            rehearsal = LabServer(MemoryStore(), Agent(name="warm-up", model=MirrorModel()), run_config=RunConfig(tracing_disabled=True))
            body = json.dumps({"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "warm up"}], "attachments": [], "inference_options": {}}}})
            reply = await handle_request(rehearsal, body, RequestContext(user_id="warm-up"))
            if reply.stream is not None:
                async for _ in reply.stream:
                    pass
            await self.store.load_threads(1, None, "desc", RequestContext(user_id="warm-up"))
        except Exception:
            log.debug("warm-up turn failed", exc_info=True)  # only an optimisation

    def close(self) -> None:
        """Finish writing the logs, stop the loop and close the database."""
        if self.closed:
            return
        self.closed = True
        if self.loop.running:
            try:
                self.loop.call(self.tracer.aflush(), timeout=5)
            except Exception:
                log.warning("the last logs could not be written", exc_info=True)
            if self.store.kept:  # replies users saw, waiting for a locked file or a server that went away
                wait = self.store.db.lock_timeout if isinstance(self.store, DuckDBStore) else self.store.connect_timeout
                try:
                    self.loop.call(self.store.write_kept(), timeout=wait + 5)
                except Exception:
                    log.debug("the kept items could not be written", exc_info=True)
        self.loop.stop()
        tracing.unregister(self.key)
        self.db.close()
        self.store.close()  # after the database (a DuckDBStore's is the same one): says what it still kept


def listening(host: str, port: int, backlog: int | None = None) -> socket.socket:
    """A socket listening on ``host:port``, or a sentence saying why there is none."""
    if not 0 <= port <= 65535:
        raise ChatLabError(f"{port} is not a port: give 1 to 65535, or 0 for any free one.")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # create_server's own text repeats the address
        raise ChatLabError(f"Cannot listen on {host}:{port}: {reason}; choose another port (0 takes any free one), "
                           "or stop what is using it.") from None
