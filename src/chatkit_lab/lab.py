"""ChatLab: the one object a notebook user touches, a facade over the lab's runtime."""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents import Agent, Tool

from . import approvals, logs, replay
from ._runtime import Runtime
from .auth.jwt import Authenticator, JWKSVerifier, LocalIssuer, checked_user_id
from .auth.mcp import MCPConnections
from .auth.secrets import MIN_LENGTH, Secrets, install_log_redaction
from .context import ContextInjection
from .doctor import Report, diagnose
from .documents import Documents, openai_embedder
from .errors import ChatLabError, ConfigurationError
from .evals.compare import RunComparison
from .evals.optimize import Optimization
from .evals.report import EvalRun
from .evaluation import Evaluations
from .guardrails import Guardrails
from .models import Backend, openai_client, resolve_backend
from .server import LabServer, agent_tools
from .store import queries
from .store.postgres_database import PostgresDatabase
from .transport.limits import Limits
from .turn import Turn
from .workflows import Workflow, versions
from .workflows.chat import APPROVE, REJECT
from .workflows.diff import WorkflowDiff
from .workflows.run import Services, services_for
from .workflows.turns import ChatWorkflow, redactors
from .workflows.versions import Resolved

if TYPE_CHECKING:
    from .inspector import Inspection
    from .replay import Batch, Replay, ThreadDiff
    from .widget import ChatWidget

DEFAULT_INSTRUCTIONS = "You are a helpful assistant inside a Jupyter notebook. Answer concisely in Markdown."

log = logging.getLogger("chatkit_lab")
_LABS: weakref.WeakSet[ChatLab] = weakref.WeakSet()


@atexit.register
def _close_labs() -> None:
    for lab in list(_LABS):
        lab.close()


class ChatLab:
    """An in-kernel ChatKit server on a DuckDB file, or a PostgreSQL database shared by many
    kernels and servers (``db="postgresql://user@host/db"``), with its own event loop thread.

    ``model``: None for the offline mirror model (or OpenAI when OPENAI_API_KEY is set), a model
    name, or any Agents SDK ``Model``. ``base_url``: an OpenAI-compatible server. ``agent``: your
    own ``Agent`` instead of one built from ``instructions`` and ``tools``.

    ``instructions`` may use ``{user.name}``, ``{page.title}`` or any context key;
    ``context_strategy`` says how the context reaches the model (see ``chatkit_lab.context``).
    ``verifier``: require a Bearer JWT on every widget and HTTP request (``lab.login`` sets one up
    locally). ``mcp_servers``: Agents SDK MCP servers, connected now and closed with the lab.
    ``warm``: rehearse one offline turn in the background so the first reply comes fast.
    ``limits``: what one request may carry (message length, attachments, page size, body size).
    ``guardrails``: an openai-guardrails config (dict, JSON, path) or a ``guardrails.Guardrails``,
    run on every message and reply (``lab.guardrails_df()`` shows each verdict).
    ``workflow``: a ``workflows.Workflow`` (or a published ``"name@3"``, or a JSON file) that
    answers every turn instead of the agent, node by node (``lab.nodes_df()`` shows each node run).
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
        limits: Limits | None = None,
        guardrails: Any = None,
        workflow: Any = None,
    ) -> None:
        _check_settings(instructions, history_limit, mcp_servers, limits)
        tools = agent_tools(tools)
        secrets = Secrets()
        if api_key and len(api_key.strip()) >= MIN_LENGTH:  # a shorter one is no real key: the provider says so
            secrets.watch(api_key, "api_key")
        install_log_redaction()
        injection = ContextInjection(context_strategy)
        self.backend: Backend = resolve_backend(model, base_url=base_url, api_key=api_key)
        agent = agent or Agent(
            name=name, instructions=instructions, tools=list(tools), model=self.backend.model, mcp_servers=list(mcp_servers)
        )
        forward = None
        if trace_to_openai:
            from agents.tracing.processors import default_processor

            forward = default_processor()
        self.guardrails = guardrails if guardrails is None or isinstance(guardrails, Guardrails) else Guardrails(guardrails)
        self.runtime = Runtime(db, secrets=secrets, auth=Authenticator(verifier, user_id), trace_forward=forward, limits=limits,
                               mask=self.guardrails.redactor() if self.guardrails else None)
        self.issuer: LocalIssuer | None = None
        tracer = self.runtime.tracer
        self.runtime.attach(LabServer(
            self.runtime.store, agent, backend=self.backend, history_limit=history_limit,
            trace_metadata={"lab": self.runtime.key}, turn_log=tracer.record_turn, injection=injection,
            secrets=secrets, input_log=tracer.record_input, guardrails=self.guardrails, row_log=tracer.record_rows,
            approvals=approvals.ToolApprovals(self.runtime.db, self.runtime.redact),
        ))
        self._mcp = MCPConnections(agent.mcp_servers, self.runtime.loop)
        self.documents = Documents(self.db, self.runtime.call, user_id=lambda: self.user_id,
                                   embedder=openai_embedder(lambda: self.backend.client or openai_client()) if self.backend.kind == "openai" else None)
        self._closed = False
        _LABS.add(self)
        try:
            self.runtime.open()
            if isinstance(self.db, PostgresDatabase):
                self._join_workshop()
            self._mcp.connect()
            if workflow is not None:
                self.use_workflow(workflow)
        except BaseException:
            self.close()
            raise
        self.warmed = self.runtime.loop.submit(self.runtime.rehearse()) if warm else None

    def _join_workshop(self) -> None:
        """On a workshop database a student's role is their user id (the database keeps them to
        its rows); a teacher may act as anyone."""
        role, kind = self.db.membership()
        if kind is None:
            return
        if self.user_id == "local":
            self.user_id = role
        elif kind == "student" and self.user_id != role:
            raise ConfigurationError(f"This database's role {role!r} is a workshop student: it reads and writes only {role!r}'s rows, "
                                     f"so the lab cannot act as {self.user_id!r}. Leave user_id out, or pass user_id={role!r}.")

    # -- what the lab is made of -----------------------------------------------------------
    @property
    def server(self) -> LabServer:
        return self.runtime.server

    @property
    def agent(self) -> Agent:
        agent = self.server.agent
        if not isinstance(agent, Agent):
            raise ChatLabError("This lab's agent is built per thread; there is no single agent.")
        return agent

    @property
    def db(self) -> Any:
        return self.runtime.db

    @property
    def store(self) -> Any:
        return self.runtime.store

    @property
    def secrets(self) -> Secrets:
        return self.runtime.secrets

    @property
    def auth(self) -> Authenticator:
        return self.runtime.auth

    @property
    def context(self) -> ContextInjection:
        """The lab's context: ``update(...)`` values, ``provide(fn)`` providers, ``strategy``."""
        injection = self.server.injection
        assert injection is not None  # a lab's server always has one
        return injection

    @property
    def user_id(self) -> str:
        """Who ``lab.send`` and the data frames act as (and the widgets, unless auth is on)."""
        return self.auth.user_id

    @user_id.setter
    def user_id(self, value: str) -> None:
        self.auth.user_id = value

    def __repr__(self) -> str:
        return f"ChatLab(db={self.db.path!r}, user_id={self.user_id!r}, backend={self.backend.description!r})"

    def doctor(self, *, timeout: float = 3.0) -> Report:
        """Whether this lab can run here, one line a check: Python and packages, its database, its
        model provider (reachable?), the ChatKit CDN (else the built-in renderer draws the chat),
        Chromium and PostgreSQL for the test suite. Shows as a table in a notebook."""
        verifier = self.auth.verifier
        return diagnose(self.db.path, self.backend, jwks_url=getattr(verifier, "url", None), timeout=timeout, database_in_use=True)

    def health(self) -> dict[str, Any]:
        """Whether the lab works: ``status`` ("ok", "degraded" when log rows could not be
        written, "closed"), the database, the model backend and the last log-write failure."""
        return {**self.runtime.health(), "backend": self.backend.description}

    # -- conversation --------------------------------------------------------------------
    async def request(self, body: dict[str, Any] | str, *, user_id: str | None = None, headers: dict[str, str] | None = None) -> Any:
        """Send one raw ChatKit request; returns the JSON reply or the list of stream events.

        With ``headers``, the request is authenticated exactly as a widget's or an HTTP client's
        would be (``{"Authorization": "Bearer ..."}``); a bad token raises ``AuthError``.
        """
        return await self.runtime.run(self.runtime.request(body, self._acting(user_id), headers=headers))

    def request_sync(self, body: dict[str, Any] | str, *, user_id: str | None = None, headers: dict[str, str] | None = None) -> Any:
        return self.runtime.call(self.runtime.request(body, self._acting(user_id), headers=headers))

    async def send(self, text: str, thread_id: str | None = None, *, user_id: str | None = None, new_thread: bool = False) -> Turn:
        """Send a user message and wait for the reply. It goes to ``thread_id``; without one, to
        the thread the chat shows (so it appears there, live), or to a new thread when no chat
        is open, the chat shows "New chat", or ``new_thread=True``."""
        return await self.runtime.run(self.runtime.send(text, thread_id, self._acting(user_id), new_thread=new_thread))

    def send_sync(self, text: str, thread_id: str | None = None, *, user_id: str | None = None, new_thread: bool = False) -> Turn:
        return self.runtime.call(self.runtime.send(text, thread_id, self._acting(user_id), new_thread=new_thread))

    def _acting(self, user_id: str | None) -> str:
        return self.user_id if user_id is None else checked_user_id(user_id)

    def on_action(self, action_type: str) -> Any:
        """Register a widget action handler: ``@lab.on_action("approve")`` over an async generator
        ``(thread, action, sender, context)`` yielding ChatKit events."""

        def register(handler: Any) -> Any:
            self.server.actions[action_type] = handler
            return handler

        return register

    # -- workflows -------------------------------------------------------------------------
    def use_workflow(self, workflow: Any) -> Resolved | None:
        """Answer every turn with ``workflow`` from now on: a ``Workflow`` (a draft), a published
        ``"name"`` (its default version) or ``"name@3"``, a JSON file's path, or None for the agent
        again. Each thread records the workflow and version its turns ran with."""
        server = self.server
        if workflow is None:
            server.workflow = None
            self.runtime.set_masks([m for m in [self.guardrails.redactor() if self.guardrails else None] if m])
            return None
        server.workflow = self._chat_workflow(workflow)
        self.runtime.set_masks([m for m in [self.guardrails.redactor() if self.guardrails else None] if m] + redactors(server.workflow.resolved.workflow))
        return server.workflow.resolved

    def _chat_workflow(self, workflow: Any) -> ChatWorkflow:
        resolved = self.runtime.call(self._resolve(workflow))
        return ChatWorkflow(resolved, self.workflow_services(), self.db, self.runtime.tracer.record_rows, self.runtime.redact)

    async def _resolve(self, workflow: Any) -> Resolved:
        workflow = _loaded(workflow)
        async with self.db.transaction() as cur:
            if isinstance(workflow, Workflow):
                return Resolved(workflow, None, versions.remember(cur, workflow))
            if isinstance(workflow, str):
                return versions.resolve(cur, workflow)
        raise ChatLabError(f"workflow= takes a Workflow, a published 'name' or 'name@3', or a .json path, not {type(workflow).__name__}.")

    @property
    def workflow(self) -> Resolved | None:
        """The workflow that answers (``.workflow``, ``.version``, ``.label``), or None."""
        return self.server.workflow.resolved if self.server.workflow else None

    def publish(self, workflow: Workflow | str | Path, note: str | None = None) -> int:
        """Store ``workflow`` (a ``Workflow`` or a .json path) as a new immutable, numbered version
        and make it the default for its name (publishing an unchanged graph returns the version it
        already is)."""
        workflow = _loaded(workflow)
        if not isinstance(workflow, Workflow):
            given = repr(workflow) if isinstance(workflow, str) else type(workflow).__name__
            raise ChatLabError(f"lab.publish takes a Workflow or a .json path, not {given}.")
        return self.runtime.call(self._in_transaction(versions.publish, workflow, note))

    def rollback(self, name: str, version: int) -> None:
        """Make an earlier version of ``name`` the default again (``"name"`` resolves to it)."""
        self.runtime.call(self._in_transaction(versions.rollback, name, version))

    async def _in_transaction(self, fn: Any, *args: Any) -> Any:
        async with self.db.transaction() as cur:
            return fn(cur, *args)

    async def decide(self, thread_id: str, decision: str = "approve", *, user_id: str | None = None) -> Turn:
        """Answer the approval a workflow or an agent's tool call is waiting for in ``thread_id``, as
        a click on its Approve (``"approve"``) or Reject (``"reject"``) button would; the run goes on
        and its reply is returned."""
        return await self.runtime.run(self._decide(thread_id, decision, self._acting(user_id)))

    def decide_sync(self, thread_id: str, decision: str = "approve", *, user_id: str | None = None) -> Turn:
        return self.runtime.call(self._decide(thread_id, decision, self._acting(user_id)))

    async def _decide(self, thread_id: str, decision: str, user_id: str) -> Turn:
        if decision not in ("approve", "reject"):
            raise ChatLabError(f"An approval is answered with 'approve' or 'reject', not {decision!r}.")
        async with self.db.acursor() as cur:
            found = cur.execute(versions.PENDING_SQL, [thread_id, user_id]).fetchone()
            tools = None if found else cur.execute(approvals.PENDING_SQL, [thread_id, user_id]).fetchone()
        if found is not None:
            run_id, item_id = found
            action = {"type": APPROVE if decision == "approve" else REJECT, "payload": {"run_id": run_id}}
        elif tools is not None:
            approval_id, item_id = tools
            action = {"type": approvals.APPROVE if decision == "approve" else approvals.REJECT, "payload": {"approval_id": approval_id}}
        else:
            raise ChatLabError(f"Nothing in thread {thread_id!r} is waiting for {user_id!r} to approve it (a workflow or a tool call).")
        body = {"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": item_id, "action": action}}
        return Turn.of(thread_id, await self.runtime.request(body, user_id))

    def workflow_diff(self, before: Any, after: Any) -> WorkflowDiff:
        """What changed from ``before`` to ``after`` (each a ``Workflow``, ``"name@1"`` or a path): nodes
        added, removed and changed (instructions, conditions, models…) and edges added and removed."""
        a, b = (self.runtime.call(self._resolve(w)) for w in (before, after))
        return a.workflow.diff(b.workflow, before=a.label, after=b.label)

    def workflow_versions_df(self, name: str | None = None) -> Any:
        """Every published version: name, version, whether it is the default, hash, note, date."""
        return self.sql(versions.VERSIONS_SQL, [name, name])

    def nodes_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """One row per node run of the workflow turns: thread, turn, node id, type and name, start,
        duration, status, the edge it left by, its output (JSON) and the workflow version."""
        return self._frame(queries.nodes(self._user(all_users), thread_id), polars)

    def workflow_services(self) -> Services:
        """What workflow nodes use from this lab: its model (or provider), tools, MCP servers and documents."""
        agent = self.server.agent if isinstance(self.server.agent, Agent) else None
        return services_for(self.backend, tools=agent.tools if agent else (), mcp_servers=agent.mcp_servers if agent else (),
                            max_turns=self.server.max_turns, documents=self.documents)

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
            user_id = checked_user_id(user_id)
            reserved = sorted(set(claims) & {"iss", "aud", "sub", "iat", "nbf", "exp"})
            if reserved:  # sub="bob" signed a token for bob while the lab said alice
                raise ChatLabError(f"The claim {reserved[0]!r} is the issuer's to set (from the user id and ttl=); give others, such as name or email.")
            if self.auth.verifier is None:
                self.issuer = LocalIssuer()
                self.auth.verifier = self.issuer.verifier()
            elif self.issuer is None:
                raise ChatLabError("This lab verifies tokens from your identity provider: use lab.login(token=...) with one of its tokens.")
            token = self.issuer.issue(user_id, ttl=ttl, **claims)
        self.user_id = user_id
        self.runtime.announce_token(token)

    def logout(self) -> None:
        """Forget the widgets' token: their requests are refused until the next ``login``."""
        self.runtime.announce_token(None)

    @property
    def token(self) -> str | None:
        """The Bearer token the chats send after ``login`` (None before, or after ``logout``)."""
        return self.runtime.token

    # -- the chat widget -----------------------------------------------------------------
    def chat(self, **kwargs: Any) -> ChatWidget:
        """A chat widget on this lab (see ``ChatWidget``): ``ui``, ``thread_id``, ``options``,
        ``client_tools``, ``chatkit_url``, ``domain_key``."""
        from .widget import ChatWidget

        return ChatWidget(self.runtime, **kwargs)

    # -- data ----------------------------------------------------------------------------
    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None, *, polars: bool = False) -> Any:
        """Run SQL on the lab's database (its own cursor; safe while a reply streams): DuckDB's SQL
        on a file, PostgreSQL's on a URL (``?`` placeholders on both). A pandas DataFrame, or a
        polars one with ``polars=True``."""
        self.runtime.flush()
        if polars:
            try:
                import polars as _  # noqa: F401
            except ModuleNotFoundError:
                raise ChatLabError("polars=True needs polars: pip install 'chatkit-lab[polars]'.") from None
        with self.db.cursor() as cur:
            if polars:
                return cur.sql(query, params=params).pl()
            return cur.execute(query, params).df()

    def _frame(self, query: queries.Query, polars: bool) -> Any:
        return self.sql(*query, polars=polars)

    def _user(self, all_users: bool) -> str | None:
        return None if all_users else self.user_id

    def threads_df(self, *, all_users: bool = False, polars: bool = False) -> Any:
        """One row per thread, with its item count and where it came from (replay, fork, merge)."""
        return self._frame(queries.threads(self._user(all_users)), polars)

    def items_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        return self._frame(queries.items(self._user(all_users), thread_id), polars)

    def turns_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """One row per turn: what was said, the reply, latency, tokens, tools, model, user and the
        thread's lineage (``parent_thread_id``, ``lineage``: replay or fork; ``origin``: merged from)."""
        return self._frame(queries.turns(self._user(all_users), thread_id), polars)

    def spans_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """The Agents SDK spans of the turns: agent, generation, function, handoff, guardrail..."""
        return self._frame(queries.spans(self._user(all_users), thread_id, self.db.dialect), polars)

    def feedback_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """Thumbs up and down, with the rated reply's text."""
        return self._frame(queries.feedback(self._user(all_users), thread_id), polars)

    def model_inputs_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """The context inspector's table: what every model call received (secrets redacted)."""
        return self._frame(queries.model_inputs(self._user(all_users), thread_id, self.db.dialect), polars)

    def guardrails_df(self, thread_id: str | None = None, *, all_users: bool = False, polars: bool = False) -> Any:
        """One row per guardrail verdict: the turn, stage, check, whether it tripped, its
        confidence, ``info`` (what matched, as counts for PII and secrets) and duration."""
        return self._frame(queries.guardrails(self._user(all_users), thread_id), polars)

    def inspect(self, turn: Turn | str | None = None) -> Inspection:
        """What the model received in a turn: a ``Turn`` from ``send``, a turn_id, a thread_id
        (its newest turn) or None (the newest turn of all). Shows as a table in a notebook."""
        from .inspector import Inspection

        self.runtime.flush()
        return Inspection.load(self.db, turn)

    def plot(self, kind: str, thread_id: str | None = None, *, all_users: bool = False) -> Any:
        """A chart of the logs, shown inline: ``"latency"`` or ``"tokens"`` per turn, ``"tools"``
        (calls per tool) or ``"feedback"`` (per thread). Returns a matplotlib Figure."""
        turns = self.turns_df(thread_id, all_users=all_users)
        if kind != "feedback":
            return logs.plot(kind, turns, None)
        titles = self.threads_df(all_users=all_users).set_index("thread_id").title.to_dict()
        return logs.plot(kind, turns, self.feedback_df(thread_id, all_users=all_users), titles)

    def export(self, path: str | Path, table: str | None = None, *, frame: str | None = None, all_users: bool = False) -> dict[str, int]:
        """Write the logs to ``path``; the format follows the extension. ``.jsonl``: every table,
        one row per line tagged with its table, JSON columns as JSON (``lab.import_jsonl`` loads
        it back exactly); ``.parquet`` or ``.csv``: one table, ``items`` unless ``table`` names
        another. ``frame``: what a frame shows instead of a raw table (``"turns"`` writes
        ``turns_df()``: the text, the reply, the exchange, the lineage), in any of the formats.
        Streams through DuckDB (from PostgreSQL, staged batch by batch in a temporary DuckDB file),
        so any size fits. Returns the rows written per table or frame."""
        self.runtime.flush()
        user = self._user(all_users)
        if frame is not None and table is not None:
            raise ChatLabError("Export a table or a frame, not both: lab.export(path, 'turns') or lab.export(path, frame='turns').")
        if isinstance(self.db, PostgresDatabase):  # staged in a temporary DuckDB file, batch by batch, then the same export
            return logs.export_postgres(self.db, path, table=table, frame=frame, user_id=user)
        with self.db.cursor(invalidate=False) as cur:
            if frame is None:
                return logs.export(cur, path, table=table, user_id=user)
            return logs.export_query(cur, path, f"{frame}_df", *queries.frame(frame, user))

    def import_jsonl(self, path: str | Path) -> dict[str, int]:
        """Load a JSONL export (``lab.export("x.jsonl")``) into this lab's file, all or nothing.
        Rows already here are kept; returns the rows added per table."""
        self.runtime.flush()
        if isinstance(self.db, PostgresDatabase):
            return logs.import_postgres(self.db, path)
        with self.db.cursor() as cur:
            return logs.import_jsonl(cur, path)

    # -- evals -----------------------------------------------------------------------------
    def _evals(self) -> Evaluations:
        return Evaluations(self.runtime, self.backend, self._chat_workflow, lambda: self.user_id)

    async def evaluate(self, dataset: Any, *, graders: Sequence[Any], target: Any = None, name: str | None = None, concurrency: int = 16,
                       judge: Any = None, prices: Any = None, progress: bool = True) -> EvalRun:
        """Run ``dataset`` through ``target`` and grade every answer with ``graders`` (OpenAI's grader
        JSON: a list, one grader, ``{"testing_criteria": [...]}`` or a file's path); returns the
        stored ``EvalRun`` (``.summary`` in OpenAI's shape, ``.df()``, an HTML report in a notebook). ``target``: the lab as it is (None); an ``Agent``; a workflow
        (``Workflow``, ``"name@2"``, a path); overrides of the lab's agent, as ``lab.replay`` takes them
        (``{"instructions", "model", "tools", "context"}``); or
        ``"recorded"`` (items from ``evals.from_threads``, graded as recorded). Items with a
        ``conversation`` start from it. ``judge``: the model of model graders (the lab's by default);
        ``prices``: per-model $ per million tokens (``evals.DEFAULT_PRICES``). Interrupted, the
        finished items are kept: ``lab.resume_eval(run_id)`` goes on."""
        evals = self._evals()
        planned = evals.plan(dataset, graders, target, name, concurrency, prices=prices)
        return await evals.finish(planned, judge=judge, prices=prices, concurrency=concurrency, progress=progress)

    def evaluate_sync(self, dataset: Any, *, graders: Sequence[Any], target: Any = None, name: str | None = None, concurrency: int = 16,
                      judge: Any = None, prices: Any = None, progress: bool = True) -> EvalRun:
        evals = self._evals()
        planned = evals.plan(dataset, graders, target, name, concurrency, prices=prices)
        return evals.finish_sync(planned, judge=judge, prices=prices, concurrency=concurrency, progress=progress)

    async def resume_eval(self, run_id: str, *, target: Any = None, judge: Any = None, prices: Any = None, concurrency: int = 16,
                          progress: bool = True) -> EvalRun:
        """Go on with an interrupted run: items it finished are kept, the rest are answered and graded."""
        evals = self._evals()
        return await evals.finish(evals.resumed(run_id, target), judge=judge, prices=prices, concurrency=concurrency, progress=progress)

    def resume_eval_sync(self, run_id: str, *, target: Any = None, judge: Any = None, prices: Any = None, concurrency: int = 16,
                         progress: bool = True) -> EvalRun:
        evals = self._evals()
        return evals.finish_sync(evals.resumed(run_id, target), judge=judge, prices=prices, concurrency=concurrency, progress=progress)

    def rescore_sync(self, run_id: str, graders: Sequence[Any], *, name: str | None = None, judge: Any = None, prices: Any = None,
                     progress: bool = True) -> EvalRun:
        """Grade a stored run's answers again with ``graders``, as a new run, without calling the target."""
        evals = self._evals()
        return evals.finish_sync(evals.rescored(run_id, graders, name), judge=judge, prices=prices, progress=progress)

    def eval_run(self, run_id: str) -> EvalRun:
        """A stored run, as ``evaluate`` returned it."""
        return self._evals().run(run_id)

    def eval_runs_df(self, *, all_users: bool = False) -> Any:
        """Every eval run: name, kind, status, pass counts, dataset, target, parent run, dates."""
        return self._frame(queries.eval_runs(self._user(all_users)), False)

    def compare_runs(self, a: EvalRun | str, b: EvalRun | str) -> RunComparison:
        """Two runs item by item: ``regressions``, ``fixes``, score deltas, pass rate per grader,
        ``plot()``. An A/B test is two runs of one dataset and this comparison."""
        return self._evals().compare(a, b)

    def optimize_sync(self, run_id: str, *, node: str | None = None, rounds: int = 1, judge: Any = None, prices: Any = None,
                      concurrency: int = 16, progress: bool = True) -> Optimization:
        """Prompt optimisation from a run's failures: the judge model proposes revised instructions
        (of the agent, or of a workflow's agent ``node``), the dataset runs again with them, and the
        revision is kept only if the graders improve; ``rounds`` build on the best so far. Every
        round is stored (``eval_rounds``); returns the rounds, the best run and its instructions."""
        return self._evals().optimize_sync(run_id, node=node, rounds=rounds, judge=judge, prices=prices, concurrency=concurrency, progress=progress)

    # -- replay, fork, diff ---------------------------------------------------------------
    def replay(
        self, thread_id: str, *, instructions: str | None = None, model: Any = None, tools: Sequence[Tool] | None = None,
        context: dict[str, Any] | None = None, user_id: str | None = None, strategy: str | None = None,
        agent: Agent | None = None, workflow: Any = None,
    ) -> Replay:
        """Re-run a thread's user messages under changed settings into a new thread, which
        records what it was replayed from and with which overrides. Returns a ``Replay``: run it
        cell by cell with ``await r.step()``, or ``await r.run()``; compare with ``r.diff()``.

        Each turn gets the context its original turn had, updated with ``context``; ``user_id``
        replays as another user (the new thread is theirs); ``strategy`` changes the injection.
        ``workflow``: another workflow or version (``"support@2"``) to answer the turns; by default
        the lab's own workflow answers, when it has one.
        """
        chosen = self._chat_workflow(workflow) if workflow is not None else None
        return replay.start(
            self.runtime, [thread_id], instructions=instructions, model=model, tools=tools, context=context,
            user_id=user_id, strategy=strategy, agent=agent, workflow=chosen,
        )[0]

    async def replay_many(self, thread_ids: Sequence[str], *, concurrency: int = 4, progress: bool = True, **overrides: Any) -> list[Replay]:
        """Replay many threads with the same overrides, ``concurrency`` at a time, with one
        progress bar; returns the ``Replay`` of each, in order. The new threads are written to
        the database as their replays finish (a few at a time, and all when the batch stops)."""
        return await self._batch(thread_ids, concurrency, overrides).run(progress=progress)

    def replay_many_sync(self, thread_ids: Sequence[str], *, concurrency: int = 4, progress: bool = True, **overrides: Any) -> list[Replay]:
        return self._batch(thread_ids, concurrency, overrides).run_sync(progress=progress)

    def _batch(self, thread_ids: Sequence[str], concurrency: int, overrides: dict[str, Any]) -> Batch:
        if overrides.get("workflow") is not None:
            overrides = {**overrides, "workflow": self._chat_workflow(overrides["workflow"])}
        ids = [thread_ids] if isinstance(thread_ids, str) else list(thread_ids)  # one id: not its characters
        return replay.batch(self.runtime, ids, concurrency, **overrides)

    def fork(self, thread_id: str, at_item: str | None = None) -> str:
        """Copy a thread up to and including the item ``at_item`` (all of it by default) into a
        new thread, recording its lineage; returns the new thread's id, to continue with
        ``lab.send(..., thread_id=...)`` or open with ``lab.chat(thread_id=...)``."""
        return self.runtime.call(replay.fork(self.runtime, thread_id, at_item))

    def diff(self, thread_a: str, thread_b: str) -> ThreadDiff:
        """Compare two threads turn by turn: reply text (with an inline word diff), tools,
        handoffs, guardrail verdicts, latency and tokens. ``.df`` is the DataFrame; a notebook
        shows it as a readable table."""
        return replay.ThreadDiff.load(self.runtime, thread_a, thread_b)

    # -- HTTP ----------------------------------------------------------------------------
    def serve(
        self, host: str = "127.0.0.1", port: int = 8000, *, allowed_hosts: Sequence[str] | None = None,
        allowed_origins: Sequence[str] = (), sock: Any = None,
    ) -> str:
        """Serve this lab over HTTP (POST /chatkit, GET /health) from its own loop; returns the URL.
        Requests are authenticated like the widget's: with ``verifier`` or after ``login``, a
        valid Bearer token is required. ``allowed_hosts``: the Host names it answers to (loopback
        and ``host`` by default); ``allowed_origins``: other sites whose pages may call it.
        ``sock``: a listening socket to accept on instead of binding ``host:port`` (how the
        workers of ``chatkit-lab serve --workers N`` share one port)."""
        from .transport.http import LOOPBACK, create_app
        from .transport.shared_window import SharedWindow

        # One name given as a string is that name, not its letters (every request got a 421).
        allowed_origins = [allowed_origins] if isinstance(allowed_origins, str) else allowed_origins
        hosts = [allowed_hosts] if isinstance(allowed_hosts, str) else allowed_hosts if allowed_hosts is not None else [*LOOPBACK, host]
        shared = SharedWindow(self.db) if isinstance(self.db, PostgresDatabase) else None  # every process on the database counts together
        app = create_app(self.server, auth=self.auth, backend=self.backend.description, limits=self.runtime.limits,
                         allowed_hosts=hosts, allowed_origins=allowed_origins, shared_window=shared)
        return self.runtime.serve_app(app, host, port, sock)

    def stop_serving(self) -> None:
        self.runtime.stop_serving()

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving, finish writing traces, stop the loop and close the database."""
        if self._closed:
            return
        self._closed = True
        try:
            self.runtime.stop_serving()
        except Exception:
            log.warning("the HTTP server did not stop cleanly", exc_info=True)
        self._mcp.close()
        self.runtime.close()
        if self.issuer is not None:
            self.issuer.stop_serving()

    def __enter__(self) -> ChatLab:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_settings(instructions: Any, history_limit: Any, mcp_servers: Any, limits: Any) -> None:
    """What the SDK would refuse with a TypeError, or a turn fail on much later, as a sentence now."""
    from agents.mcp import MCPServer

    if instructions is not None and not isinstance(instructions, str) and not callable(instructions):
        raise ChatLabError(f"instructions= is a string (or a function of the context), not {type(instructions).__name__}.")
    if not isinstance(history_limit, int) or isinstance(history_limit, bool) or history_limit < 1:
        raise ChatLabError(f"history_limit= is how many stored items a turn sends the model, a whole number from 1; not {history_limit!r}.")
    for i, server in enumerate(mcp_servers):
        if not isinstance(server, MCPServer):
            raise ChatLabError(f"mcp_servers[{i}] is a {type(server).__name__}, not an MCP server (agents.mcp.MCPServerStdio, MCPServerStreamableHttp, ...).")
    if limits is not None and not isinstance(limits, Limits):
        raise ChatLabError(f"limits= is a chatkit_lab.Limits(...), not {type(limits).__name__}.")


def _loaded(workflow: Any) -> Any:
    """A workflow given as a .json path, loaded; anything else as it is."""
    if isinstance(workflow, Path) or (isinstance(workflow, str) and workflow.endswith(".json")):
        return Workflow.load(workflow)
    return workflow
