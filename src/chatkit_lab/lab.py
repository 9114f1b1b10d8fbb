"""ChatLab: the one object a notebook user touches."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from agents import Agent, Tool

from . import logs, tracing
from ._loop import LoopThread
from .auth.jwt import Authenticator, JWKSVerifier, LocalIssuer
from .auth.secrets import Secrets, install_log_filter
from .context import LabContext, build_context
from .errors import ChatLabError
from .models import Backend, resolve_backend
from .server import LabServer
from .store.database import Database
from .store.duckdb import DuckDBStore
from .transport.requests import handle_request, parse_sse

if TYPE_CHECKING:
    from .replay import Replay, ThreadDiff

DEFAULT_INSTRUCTIONS = "You are a helpful assistant inside a Jupyter notebook. Answer concisely in Markdown."

log = logging.getLogger("chatkit_lab")
_LABS: weakref.WeakSet[ChatLab] = weakref.WeakSet()


@atexit.register
def _close_labs() -> None:
    for lab in list(_LABS):
        lab.close()


@dataclass
class Turn:
    """What one ``lab.send`` produced: the thread, the reply text and every stream event."""

    thread_id: str
    text: str
    events: list[dict[str, Any]] = field(repr=False)
    error: str | None = None

    @property
    def item_ids(self) -> list[str]:
        return [e["item"]["id"] for e in self.events if e["type"] == "thread.item.done"]

    @classmethod
    def of(cls, thread_id: str | None, events: list[dict[str, Any]]) -> Turn:
        """The turn a list of stream events describes."""
        for event in events:
            if event["type"] == "thread.created":
                thread_id = event["thread"]["id"]
        replies = [
            "".join(part["text"] for part in e["item"]["content"])
            for e in events
            if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
        ]
        error = next((e.get("message", e["code"]) for e in events if e["type"] == "error"), None)
        return cls(thread_id=thread_id or "", text="\n\n".join(replies), events=events, error=error)


class ChatLab:
    """An in-kernel ChatKit server on a DuckDB file, with its own event loop thread.

    ``model``: None for the offline mirror model (or OpenAI when OPENAI_API_KEY is set), a model
    name, or any Agents SDK ``Model``. ``base_url``: an OpenAI-compatible server. ``agent``: your
    own ``Agent`` instead of one built from ``instructions`` and ``tools``.

    ``instructions`` may use ``{user.name}``, ``{page.title}`` or any context key;
    ``context_strategy`` says how the context reaches the model (see ``chatkit_lab.context``).
    ``verifier``: require a Bearer JWT on every widget and HTTP request (``lab.login`` sets one up
    locally). ``mcp_servers``: Agents SDK MCP servers, connected now and closed with the lab.
    ``warm``: rehearse one offline turn in the background so the first reply comes fast.
    """

    def __init__(
        self,
        db: str | Path = "chats.duckdb",
        *,
        instructions: str = DEFAULT_INSTRUCTIONS,
        tools: Sequence[Tool] = (),
        model: Any = None,
        base_url: str | None = None,
        api_key: str | None = None,
        agent: Agent | None = None,
        user_id: str = "local",
        history_limit: int = 50,
        name: str = "Assistant",
        trace_to_openai: bool = False,
        context_strategy: str = "instructions",
        verifier: JWKSVerifier | None = None,
        mcp_servers: Sequence[Any] = (),
        warm: bool = True,
    ) -> None:
        self.auth = Authenticator(verifier, user_id)
        self.issuer: LocalIssuer | None = None
        self._token: str | None = None  # the widgets' Bearer token; never in a trait or the notebook
        self.secrets = Secrets()
        if api_key:
            self.secrets.watch(api_key, "api_key")
        install_log_filter()
        self.context = LabContext(context_strategy)
        self.backend: Backend = resolve_backend(model, base_url=base_url, api_key=api_key)
        self.agent = agent or Agent(
            name=name, instructions=instructions, tools=list(tools), model=self.backend.model, mcp_servers=list(mcp_servers)
        )
        self.db = Database(db)
        self.store = DuckDBStore(self.db, redact=self.secrets.redact)
        self._loop = LoopThread()
        self._key = f"lab_{uuid.uuid4().hex[:8]}"
        forward = None
        if trace_to_openai:
            from agents.tracing.processors import default_processor

            forward = default_processor()
        self.tracer = tracing.DuckDBTraceProcessor(self.db, self._loop.loop, forward=forward, redact=self.secrets.redact)
        tracing.register(self._key, self.tracer)
        self.server = LabServer(
            self.store, self.agent, backend=self.backend, history_limit=history_limit,
            trace_metadata={"lab": self._key}, turn_log=self.tracer.record_turn,
            context=self.context, secrets=self.secrets, input_log=self.tracer.record_input,
        )
        self._mcp = _MCPConnections(self.agent.mcp_servers, self._loop)
        self._http: Any = None
        self._widgets: weakref.WeakSet[Any] = weakref.WeakSet()
        self._closed = False
        _LABS.add(self)
        try:
            self._loop.call(self._open())
            self._mcp.connect()
        except BaseException:
            self.close()
            raise
        self.warmed = self._loop.submit(self._rehearse()) if warm else None

    async def _open(self) -> None:
        async with self.db.acursor():
            pass  # opens the file and applies migrations now, not on the first message

    async def _rehearse(self) -> None:
        """One offline turn on a throwaway in-memory store, in the background: the first real
        turn then does not pay for the SDK's lazy imports and first-use setup (about 250 ms)."""
        from agents import RunConfig

        from .context import RequestContext
        from .models import MirrorModel
        from .store.memory import MemoryStore

        try:
            rehearsal = LabServer(MemoryStore(), Agent(name="warm-up", model=MirrorModel()), run_config=RunConfig(tracing_disabled=True))
            body = json.dumps({"type": "threads.create", "params": {"input": {"content": [{"type": "input_text", "text": "warm up"}], "attachments": [], "inference_options": {}}}})
            reply = await handle_request(rehearsal, body, RequestContext(user_id="warm-up"))
            async for _ in reply.stream or ():
                pass
            await self.store.load_threads(1, None, "desc", RequestContext(user_id="warm-up"))
        except Exception:
            log.debug("warm-up turn failed", exc_info=True)  # only an optimisation

    @property
    def user_id(self) -> str:
        """Who ``lab.send`` and the data frames act as (and the widgets, unless auth is on)."""
        return self.auth.user_id

    @user_id.setter
    def user_id(self, value: str) -> None:
        self.auth.user_id = value

    def __repr__(self) -> str:
        return f"ChatLab(db={self.db.path!r}, user_id={self.user_id!r}, backend={self.backend.description!r})"

    # -- conversation --------------------------------------------------------------------
    async def request(self, body: dict[str, Any] | str, *, user_id: str | None = None, headers: dict[str, str] | None = None) -> Any:
        """Send one raw ChatKit request; returns the JSON reply or the list of stream events.

        With ``headers``, the request is authenticated exactly as a widget's or an HTTP client's
        would be (``{"Authorization": "Bearer ..."}``); a bad token raises ``AuthError``.
        """
        return await self._loop.run(self._request(body, user_id or self.user_id, headers=headers))

    def request_sync(self, body: dict[str, Any] | str, *, user_id: str | None = None, headers: dict[str, str] | None = None) -> Any:
        return self._loop.call(self._request(body, user_id or self.user_id, headers=headers))

    async def _request(
        self, body: dict[str, Any] | str, user_id: str, on_events: Any = None, headers: dict[str, str] | None = None,
        server: LabServer | None = None,
    ) -> Any:
        raw = body if isinstance(body, str) else json.dumps(body)
        claims: dict[str, Any] = {}
        if headers is not None:
            identity = await self.auth.identify(headers)
            user_id, claims = identity.user_id, identity.claims
        reply = await handle_request(server or self.server, raw, build_context(raw, user_id=user_id, claims=claims, headers=headers))
        if reply.status != 200:
            raise ChatLabError(json.loads(reply.body)["error"]["message"])
        if reply.stream is None:
            return json.loads(reply.body)
        events: list[dict[str, Any]] = []
        async for chunk in reply.stream:
            batch = parse_sse(chunk)
            events += batch
            if on_events is not None:
                on_events(batch)
        return events

    async def send(self, text: str, thread_id: str | None = None, *, user_id: str | None = None) -> Turn:
        """Send a user message (a new thread unless ``thread_id``) and wait for the reply."""
        return await self._loop.run(self._send(text, thread_id, user_id or self.user_id))

    def send_sync(self, text: str, thread_id: str | None = None, *, user_id: str | None = None) -> Turn:
        return self._loop.call(self._send(text, thread_id, user_id or self.user_id))

    async def _send(self, text: str, thread_id: str | None, user_id: str) -> Turn:
        message = {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}
        if thread_id:
            body = {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message}}
        else:
            body = {"type": "threads.create", "params": {"input": message}}
        shown = thread_id

        def show(batch: list[dict[str, Any]]) -> None:  # open chats follow the turn live
            nonlocal shown
            shown = next((e["thread"]["id"] for e in batch if e["type"] == "thread.created"), shown)
            for widget in list(self._widgets):
                widget.show_events(shown, batch)

        return Turn.of(thread_id, await self._request(body, user_id, show if self._widgets else None))

    def on_action(self, action_type: str) -> Any:
        """Register a widget action handler: ``@lab.on_action("approve")`` over an async generator
        ``(thread, action, sender, context)`` yielding ChatKit events."""

        def register(handler: Any) -> Any:
            self.server.actions[action_type] = handler
            return handler

        return register

    # -- auth ------------------------------------------------------------------------------
    def login(self, user_id: str | None = None, *, token: str | None = None, ttl: float = 3600, **claims: Any) -> None:
        """Act as ``user_id`` with a real token: a local RSA issuer signs a JWT, every request
        from the widgets carries it as ``Authorization: Bearer`` and is verified, and the open
        chats switch to that user's threads. ``claims`` (``name``, ``email``...) reach the context.
        ``token``: use a token from your own identity provider instead (checked by ``verifier``).
        """
        if token is not None:
            identity = self.auth.verifier.verify(f"Bearer {token}") if self.auth.verifier else None
            if identity is None:
                raise ChatLabError("lab.login(token=...) needs a lab created with verifier=JWKSVerifier(...).")
            user_id = identity.user_id
        elif user_id is None:
            raise ChatLabError("Say who logs in: lab.login('alice'), or lab.login(token=...).")
        else:
            if self.auth.verifier is None:
                self.issuer = LocalIssuer()
                self.auth.verifier = self.issuer.verifier()
            elif self.issuer is None:
                raise ChatLabError("This lab verifies tokens from your identity provider: use lab.login(token=...) with one of its tokens.")
            token = self.issuer.issue(user_id, ttl=ttl, **claims)
        self._token = token
        self.user_id = user_id
        self._announce_token()

    def logout(self) -> None:
        """Forget the widgets' token: their requests are refused until the next ``login``."""
        self._token = None
        self._announce_token()

    def _announce_token(self) -> None:
        for widget in list(self._widgets):
            widget.send_token(self._token)

    # -- the chat widget -----------------------------------------------------------------
    def chat(self, **kwargs: Any) -> Any:
        """A chat widget on this lab (see ``ChatWidget``): ``ui``, ``thread_id``, ``options``,
        ``client_tools``, ``chatkit_url``, ``domain_key``."""
        from .widget import ChatWidget

        return ChatWidget(self, **kwargs)

    # -- data ----------------------------------------------------------------------------
    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None, *, polars: bool = False) -> Any:
        """Run SQL on the lab's DuckDB file (its own cursor; safe while a reply streams). A pandas
        DataFrame, or a polars one with ``polars=True``."""
        self._flush()
        if polars:
            try:
                import polars as _  # noqa: F401
            except ModuleNotFoundError:
                raise ChatLabError("polars=True needs polars: pip install 'chatkit-lab[polars]'.") from None
        with self.db.cursor() as cur:
            if polars:
                return cur.sql(query, params=params).pl()
            return cur.execute(query, params).df()

    def _flush(self) -> None:
        if not self._loop.on_loop() and self._loop.running:
            self._loop.call(self.tracer.aflush())  # turns, spans and model inputs are written behind the stream

    def _user(self, all_users: bool) -> str | None:
        return None if all_users else self.user_id

    def threads_df(self, *, all_users: bool = False, polars: bool = False) -> Any:
        """One row per thread, with its item count and where it came from (replay, fork, merge)."""
        return self.sql(*logs.threads_sql(self._user(all_users)), polars=polars)

    def items_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        where, params = logs.scope(self._user(all_users), thread_id)
        return self.sql(
            f"""SELECT id AS item_id, thread_id, user_id, created_at, type, role, text, data
                FROM items WHERE {where} ORDER BY thread_id, created_at, seq""",
            params, polars=polars,
        )

    def turns_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """One row per turn: what was said, the reply, latency, tokens, tools, model, user and the
        thread's lineage (``parent_thread_id``, ``lineage``: replay or fork; ``origin``: merged from)."""
        return self.sql(*logs.turns_sql(self._user(all_users), thread_id), polars=polars)

    def spans_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """The Agents SDK spans of the turns: agent, generation, function, handoff, guardrail..."""
        where, params = logs.scope(None, thread_id, "s.")
        if not all_users:
            where += " AND s.trace_id IN (SELECT trace_id FROM traces WHERE user_id = $user)"
            params["user"] = self.user_id
        return self.sql(f"SELECT s.* FROM spans s WHERE {where} ORDER BY s.started_at", params, polars=polars)

    def feedback_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """Thumbs up and down, with the rated reply's text."""
        where, params = logs.scope(self._user(all_users), thread_id, "f.")
        return self.sql(
            f"""SELECT f.thread_id, f.item_id, f.user_id, f.kind, f.created_at, i.text
                FROM feedback f LEFT JOIN items i ON i.thread_id = f.thread_id AND i.id = f.item_id
                WHERE {where} ORDER BY f.created_at""",
            params, polars=polars,
        )

    def model_inputs_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """The context inspector's table: what every model call received (secrets redacted)."""
        where, params = logs.scope(self._user(all_users), thread_id)
        return self.sql(f"SELECT * FROM model_inputs WHERE {where} ORDER BY created_at, call_index", params, polars=polars)

    def inspect(self, turn: Turn | str | None = None) -> Any:
        """What the model received in a turn: a ``Turn`` from ``send``, a turn_id, a thread_id
        (its newest turn) or None (the newest turn of all). Shows as a table in a notebook."""
        from .inspector import Inspection

        self._flush()
        return Inspection.load(self.db, turn)

    def plot(self, kind: str, thread_id: str | None = None, *, all_users: bool = False) -> Any:
        """A chart of the logs, shown inline: ``"latency"`` or ``"tokens"`` per turn, ``"tools"``
        (calls per tool) or ``"feedback"`` (per thread). Returns a matplotlib Figure."""
        turns = self.turns_df(thread_id, all_users=all_users)
        return logs.plot(kind, turns, self.feedback_df(thread_id, all_users=all_users) if kind == "feedback" else None)

    def export(self, path: str | Path, table: str | None = None, *, all_users: bool = False) -> dict[str, int]:
        """Write the logs to ``path``; the format follows the extension. ``.jsonl``: every table,
        one row per line tagged with its table (``lab.import_jsonl`` loads it back exactly);
        ``.parquet`` or ``.csv``: one table, ``items`` unless ``table`` names another. Streams
        through DuckDB, so any size fits. Returns the rows written per table."""
        self._flush()
        with self.db.cursor() as cur:
            return logs.export(cur, path, table=table, user_id=self._user(all_users))

    def import_jsonl(self, path: str | Path) -> dict[str, int]:
        """Load a JSONL export (``lab.export("x.jsonl")``) into this lab's file, all or nothing.
        Rows already here are kept; returns the rows added per table."""
        self._flush()
        with self.db.cursor() as cur:
            return logs.import_jsonl(cur, path)

    # -- replay, fork, diff ---------------------------------------------------------------
    def replay(
        self, thread_id: str, *, instructions: str | None = None, model: Any = None, tools: Sequence[Tool] | None = None,
        context: dict[str, Any] | None = None, user_id: str | None = None, strategy: str | None = None,
        agent: Agent | None = None,
    ) -> Replay:
        """Re-run a thread's user messages under changed settings into a new thread, which
        records what it was replayed from and with which overrides. Returns a ``Replay``: run it
        cell by cell with ``await r.step()``, or ``await r.run()``; compare with ``r.diff()``.

        Each turn gets the context its original turn had, updated with ``context``; ``user_id``
        replays as another user (the new thread is theirs); ``strategy`` changes the injection.
        """
        from .replay import start_replay

        self._flush()  # the original turns' recorded context is read from model_inputs
        return self._loop.call(start_replay(
            self, thread_id, instructions=instructions, model=model, tools=tools, context=context,
            user_id=user_id, strategy=strategy, agent=agent,
        ))

    async def replay_many(self, thread_ids: Sequence[str], *, concurrency: int = 4, progress: bool = True, **overrides: Any) -> list[Replay]:
        """Replay many threads with the same overrides, ``concurrency`` at a time, with one
        progress bar; returns the ``Replay`` of each, in order."""
        from .replay import _awaiting

        replays, job = self._replay_batch(thread_ids, concurrency, overrides)
        await _awaiting(*job, progress)
        return replays

    def replay_many_sync(self, thread_ids: Sequence[str], *, concurrency: int = 4, progress: bool = True, **overrides: Any) -> list[Replay]:
        from .replay import _waiting

        replays, job = self._replay_batch(thread_ids, concurrency, overrides)
        _waiting(*job, progress)
        return replays

    def _replay_batch(self, thread_ids: Sequence[str], concurrency: int, overrides: dict[str, Any]) -> tuple[list[Replay], tuple[Any, ...]]:
        from .replay import _Job, replay_many

        replays = [self.replay(t, **overrides) for t in thread_ids]
        running = _Job(self._loop, replay_many(replays, concurrency))
        return replays, (running, lambda: sum(len(r.steps) for r in replays), sum(r.total for r in replays), "replay")

    def fork(self, thread_id: str, at_item: str | None = None) -> str:
        """Copy a thread up to and including the item ``at_item`` (all of it by default) into a
        new thread, recording its lineage; returns the new thread's id, to continue with
        ``lab.send(..., thread_id=...)`` or open with ``lab.chat(thread_id=...)``."""
        from .replay import fork

        return self._loop.call(fork(self, thread_id, at_item))

    def diff(self, thread_a: str, thread_b: str) -> ThreadDiff:
        """Compare two threads turn by turn: reply text (with an inline word diff), tools,
        handoffs, guardrail verdicts, latency and tokens. ``.df`` is the DataFrame; a notebook
        shows it as a readable table."""
        from .replay import ThreadDiff

        self._flush()
        with self.db.cursor() as cur:
            return ThreadDiff.load(cur, thread_a, thread_b)

    # -- HTTP ----------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 8000) -> str:
        """Serve this lab over HTTP (POST /chatkit, GET /health) from its own loop; returns the URL.
        Requests are authenticated like the widget's: with ``verifier`` or after ``login``, a
        valid Bearer token is required."""
        from .transport.http import create_app

        return self._serve_app(create_app(self.server, auth=self.auth, backend=self.backend.description), host, port)

    def _serve_app(self, app: Any, host: str, port: int) -> str:
        import uvicorn

        if self._http is not None:
            raise ChatLabError("This lab is already serving; call lab.stop_serving() first.")
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        task = self._loop.submit(server.serve())
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

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving, finish writing traces, stop the loop and close the database."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop_serving()
        except Exception:
            pass
        self._mcp.close()
        if self._loop.running:
            try:
                self._loop.call(self.tracer.aflush(), timeout=5)
            except Exception:
                pass
        self._loop.stop()
        if self.issuer is not None:
            self.issuer.stop_serving()
        tracing.unregister(self._key)
        self.db.close()

    def __enter__(self) -> ChatLab:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _MCPConnections:
    """Keeps the agent's MCP servers connected on the lab's loop.

    anyio requires a connection to be closed by the task that opened it, so one task per server
    connects, waits for the lab to close, and cleans up.
    """

    def __init__(self, servers: Sequence[Any], loop: LoopThread) -> None:
        self.servers, self.loop = list(servers), loop
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def connect(self, timeout: float = 30) -> None:
        if self.servers:
            self.loop.call(self._start(timeout))

    async def _start(self, timeout: float) -> None:
        self._stop = asyncio.Event()
        for server in self.servers:
            ready = asyncio.Event()
            task = asyncio.create_task(self._hold(server, ready))
            self._tasks.append(task)
            await asyncio.wait_for(ready.wait(), timeout)
            if task.done():
                task.result()  # the connection failed: raise its sentence

    async def _hold(self, server: Any, ready: asyncio.Event) -> None:
        try:
            await server.connect()
        except Exception as exc:
            ready.set()
            raise ChatLabError(f"Could not connect to the MCP server {server.name!r}: {type(exc).__name__}: {exc}") from None
        ready.set()
        try:
            await self._stop.wait()  # type: ignore[union-attr]
        finally:
            await server.cleanup()

    def close(self) -> None:
        if self._stop is not None and self.loop.running:
            try:
                self.loop.call(self._close(), timeout=15)
            except Exception:  # closing the lab must not fail on a stuck MCP server
                log.warning("an MCP connection did not close cleanly", exc_info=True)
        self._stop = None

    async def _close(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
