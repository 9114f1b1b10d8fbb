"""LabServer: a ChatKitServer that answers each turn with an Agents SDK run."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from agents import Agent, RunConfig, RunHooks, Runner
from agents.run_config import CallModelData, ModelInputData
from agents.tracing import gen_trace_id
from chatkit.agents import AgentContext, ThreadItemConverter, stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError, Store
from chatkit.types import (
    AssistantMessageContentPartTextDelta,
    CustomTask,
    FeedbackKind,
    HiddenContextItem,
    Page,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ChatKitReq,
    ThreadStreamEvent,
    UserMessageItem,
    is_streaming_req,
)
from pydantic import BaseModel, TypeAdapter

from .auth.mcp import current_secrets
from .auth.secrets import Secrets
from .context import LabContext, RequestContext, context_tool, inject
from .failures import describe_failure
from .models import Backend
from .store.duckdb import user_of
from .store.items import item_text

log = logging.getLogger("chatkit_lab")

AgentFactory = Callable[[ThreadMetadata, Any], Agent]
# (thread, action, sender widget item or None, context) -> stream events
ActionHandler = Callable[[ThreadMetadata, Any, Any, Any], AsyncIterator[ThreadStreamEvent]]
TITLE_LENGTH = 60
request_adapter: TypeAdapter[Any] = TypeAdapter(ChatKitReq)


def title_from(text: str) -> str:
    """A thread title from the first message: its first line, cut at a word."""
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else "New chat"
    if len(line) <= TITLE_LENGTH:
        return line
    return line[:TITLE_LENGTH].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


class PortableConverter(ThreadItemConverter):
    """History that every provider accepts, attachments and tags included.

    ChatKit replays assistant turns as ``output_text`` parts, which Chat Completions providers
    reject on turn 2; a plain string works everywhere.
    """

    def __init__(self, store: Store[Any], context: Any) -> None:
        self.store, self.context = store, context

    async def assistant_message_to_input(self, item: Any) -> Any:
        return {"role": "assistant", "content": "".join(part.text for part in item.content)}

    async def tag_to_message_content(self, tag: Any) -> Any:
        return {"type": "input_text", "text": f"<tag name={tag.text!r}>{json.dumps(tag.data, default=str)}</tag>"}

    async def attachment_to_message_content(self, attachment: Any) -> Any:
        load = getattr(self.store, "load_attachment_bytes", None)
        try:
            data = await load(attachment.id, self.context) if load else None
        except NotFoundError:
            data = None
        if data is None:
            return {"type": "input_text", "text": f"[attachment {attachment.name!r} ({attachment.mime_type}) was not uploaded]"}
        if attachment.mime_type.startswith("image/"):
            url = f"data:{attachment.mime_type};base64,{base64.b64encode(data).decode()}"
            return {"type": "input_image", "image_url": url, "detail": "auto"}
        if attachment.mime_type.startswith("text/") or attachment.mime_type in ("application/json", "application/csv"):
            text = data.decode("utf-8", errors="replace")[:20_000]
            return {"type": "input_text", "text": f"<file name={attachment.name!r}>\n{text}\n</file>"}
        return {"type": "input_text", "text": f"[attachment {attachment.name!r}: {attachment.mime_type}, {len(data)} bytes]"}


class _ToolProgress(RunHooks[Any]):
    """Shows server-side tool calls and handoffs as workflow tasks (ChatKit does not)."""

    def __init__(self) -> None:
        self.task_of_call: dict[str, int] = {}
        self.tools: list[str] = []

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        ctx: AgentContext[Any] = context.context
        self.tools.append(tool.name)
        args = getattr(context, "tool_arguments", None)
        await ctx.add_workflow_task(
            CustomTask(title=f"Calling `{tool.name}`", content=_clip(args), status_indicator="loading")
        )
        if ctx.workflow_item is not None:
            self.task_of_call[getattr(context, "tool_call_id", tool.name)] = len(ctx.workflow_item.workflow.tasks) - 1

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
        ctx: AgentContext[Any] = context.context
        index = self.task_of_call.pop(getattr(context, "tool_call_id", tool.name), None)
        if index is None or ctx.workflow_item is None:
            return
        task = CustomTask(title=f"Called `{tool.name}`", content=_clip(result), status_indicator="complete")
        await ctx.update_workflow_task(task, index)

    async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
        await context.context.add_workflow_task(
            CustomTask(title=f"Handed off from {from_agent.name} to {to_agent.name}", status_indicator="complete")
        )


def _clip(value: Any, limit: int = 500) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _own_ids(events: AsyncIterator[ThreadStreamEvent], new_id: Callable[[], str]) -> AsyncIterator[ThreadStreamEvent]:
    """Give every assistant message an id of its own.

    Chat Completions and LiteLLM models report ``__fake_id__`` for every message, scripted models
    a fixed id; ChatKit uses that id as the item id, so replies would overwrite each other.
    """
    ids: dict[str, str] = {}
    async for event in events:
        match event:
            case ThreadItemAddedEvent() if event.item.type == "assistant_message":
                ids[event.item.id] = event.item.id = new_id()
            case ThreadItemDoneEvent() if event.item.type == "assistant_message":
                event.item.id = ids.get(event.item.id) or new_id()
            case ThreadItemUpdatedEvent() | ThreadItemRemovedEvent() if event.item_id in ids:
                event.item_id = ids[event.item_id]
        yield event


class _PlainAnnotations:
    """The run result as ``stream_agent_response`` reads it, with citation annotations as dicts.

    openai 3.x emits annotation objects of classes ChatKit's annotation union does not accept,
    so a reply with a citation (web or file search) would fail the whole turn.
    """

    def __init__(self, result: Any) -> None:
        self._result = result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)

    async def stream_events(self) -> AsyncIterator[Any]:
        async for event in self._result.stream_events():
            data = getattr(event, "data", None)
            if getattr(data, "type", None) == "response.output_text.annotation.added" and isinstance(data.annotation, BaseModel):
                data.annotation = data.annotation.model_dump()
            yield event


class LabServer(ChatKitServer[Any]):
    """Runs ``agent`` (or ``agent(thread, context)``) for each turn and logs the turn.

    ``history_limit`` caps how many stored items are converted into model input.
    ``trace_metadata`` is added to every run's trace (the lab routes traces by it).
    """

    def __init__(
        self,
        store: Store[Any],
        agent: Agent | AgentFactory,
        *,
        backend: Backend | None = None,
        history_limit: int = 50,
        run_config: RunConfig | None = None,
        trace_metadata: dict[str, Any] | None = None,
        max_turns: int = 10,
        turn_log: Callable[[list[Any]], None] | None = None,
        actions: dict[str, ActionHandler] | None = None,
        context: LabContext | None = None,
        secrets: Secrets | None = None,
        input_log: Callable[[list[Any]], None] | None = None,
    ) -> None:
        super().__init__(store, attachment_store=store if hasattr(store, "create_attachment") else None)
        self.agent = agent
        self.backend = backend
        self.history_limit = history_limit
        self.run_config = run_config
        self.trace_metadata = trace_metadata or {}
        self.max_turns = max_turns
        self.turn_log = turn_log  # receives one `turns` row per turn (the lab writes it behind)
        self.actions = dict(actions or {})  # widget action type -> handler
        self.context = context  # the lab's context values, providers and injection strategy
        self.secrets = secrets  # handed to tools as context.secrets; never shown to the model
        self.input_log = input_log  # receives one `model_inputs` row per model call

    async def process(self, request: str | bytes | BaseModel, context: Any) -> StreamingResult | NonStreamingResult:  # type: ignore[override]
        # ChatKit builds a pydantic TypeAdapter on every request (about 60% of a turn with the
        # offline model); parse with one built once, or take a request already parsed.
        parsed = request if isinstance(request, BaseModel) else request_adapter.validate_json(request)
        if is_streaming_req(parsed):
            return StreamingResult(self._process_streaming(parsed, context))
        return NonStreamingResult(await self._process_non_streaming(parsed, context))

    async def action(self, thread: ThreadMetadata, action: Any, sender: Any, context: Any) -> AsyncIterator[ThreadStreamEvent]:  # type: ignore[override]
        """A widget button (``threads.custom_action``): its registered handler answers; without
        one, the click becomes hidden context and the agent answers it."""
        handler = self.actions.get(action.type)
        if handler is not None:
            async for event in handler(thread, action, sender, context):
                yield event
            return
        where = f" on widget {sender.id}" if sender is not None else ""
        note = HiddenContextItem(
            id=self.store.generate_item_id("message", thread, context), thread_id=thread.id, created_at=datetime.now(),
            content=f"The user clicked the action {action.type!r}{where} with payload {json.dumps(action.payload, default=str)}.",
        )
        yield ThreadItemDoneEvent(item=note)  # stored for the model, never shown
        async for event in self.respond(thread, None, context):
            yield event

    def agent_for(self, thread: ThreadMetadata, context: Any) -> Agent:
        return self.agent if isinstance(self.agent, Agent) else self.agent(thread, context)

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: Any
    ) -> AsyncIterator[ThreadStreamEvent]:
        if thread.status.type != "active":
            reason = getattr(thread.status, "reason", None)
            raise CustomStreamError(f"This thread is {thread.status.type}{': ' + reason if reason else ''}.", allow_retry=False)
        if thread.title is None and input_user_message is not None:
            thread.title = title_from(item_text(input_user_message) or "")

        agent = self.agent_for(thread, context)
        turn = _TurnRecord(thread.id, user_of(context), input_user_message, agent.name, self._model_name(agent))
        hooks = _ToolProgress()
        result = None
        try:
            strategy, snapshot = await self._context_of(context)
            if strategy == "tool":
                agent = agent.clone(tools=[*agent.tools, context_tool(snapshot)])
            if isinstance(context, RequestContext):
                current_secrets.set(context.secrets)  # for MCP servers authenticating per request
            page = await self.store.load_thread_items(thread.id, None, self.history_limit, "desc", context)
            agent_ctx = AgentContext(thread=thread, store=_TurnStore(self.store, thread.id, page), request_context=context)
            agent_input = await PortableConverter(self.store, context).to_agent_input(list(reversed(page.data)))
            result = Runner.run_streamed(
                agent, agent_input, context=agent_ctx, hooks=hooks, max_turns=self.max_turns,
                run_config=self._run_config(thread, context, turn, strategy, snapshot),
            )
            events = stream_agent_response(agent_ctx, _PlainAnnotations(result))
            async for event in _own_ids(events, lambda: self.store.generate_item_id("message", thread, context)):
                if turn.first_token_ms is None and isinstance(event, ThreadItemUpdatedEvent) and isinstance(event.update, AssistantMessageContentPartTextDelta):
                    turn.first_token_ms = turn.elapsed_ms()
                yield event
            turn.status = "completed"
        except (asyncio.CancelledError, GeneratorExit):
            turn.status = "cancelled"
            raise
        except CustomStreamError as exc:
            turn.status, turn.error = "error", exc.message
            raise
        except Exception as exc:
            message, retry = describe_failure(exc, self.backend)
            log.exception("turn failed in thread %s: %s", thread.id, message)
            turn.status, turn.error = "error", message
            raise CustomStreamError(message, allow_retry=retry) from exc
        finally:
            if result is not None:
                if not result.is_complete:
                    result.cancel()
                turn.usage = result.context_wrapper.usage
            turn.tools = hooks.tools
            if self.turn_log is not None:
                self.turn_log(turn.row())

    def _model_name(self, agent: Agent) -> str | None:
        model = agent.model or (self.backend.model if self.backend else None)
        if model is None or isinstance(model, str):
            return model
        return getattr(model, "model", None) or getattr(model, "name", None) or type(model).__name__

    async def _context_of(self, context: Any) -> tuple[str, dict[str, Any]]:
        """This turn's strategy and context; fills ``context.secrets`` for the user's tools."""
        if not isinstance(context, RequestContext):
            return "none", {}
        if self.secrets is not None:
            context.secrets = self.secrets.for_user(context.user_id)
        if self.context is None:
            return "none", {"user": context.user, "page": context.page}
        return self.context.strategy, await self.context.snapshot(context)

    def _input_filter(self, turn: _TurnRecord, strategy: str, snapshot: dict[str, Any], inner: Any) -> Any:
        """Injects the context into every model call of the turn and records what the model got."""
        calls = iter(range(1_000_000))

        async def apply(data: CallModelData[Any]) -> ModelInputData:
            model_data = data.model_data
            if inner is not None:
                model_data = inner(data)
                model_data = await model_data if asyncio.iscoroutine(model_data) else model_data
            instructions, items = model_data.instructions, list(model_data.input)
            if snapshot:
                instructions, items = inject(strategy, instructions, items, snapshot)
            if self.input_log is not None:
                self.input_log(turn.input_row(next(calls), data.agent, strategy, instructions, items, snapshot))
            return ModelInputData(input=items, instructions=instructions)

        return apply

    def _run_config(self, thread: ThreadMetadata, context: Any, turn: _TurnRecord, strategy: str, snapshot: dict[str, Any]) -> RunConfig:
        config = self.run_config or RunConfig()
        settings = self.backend.settings if self.backend else None
        metadata = {**self.trace_metadata, **(config.trace_metadata or {}), "thread_id": thread.id, "user_id": user_of(context)}
        return dataclasses.replace(
            config,
            model_settings=config.model_settings or settings,
            trace_id=turn.trace_id,
            group_id=thread.id,
            call_model_input_filter=self._input_filter(turn, strategy, snapshot, config.call_model_input_filter),
            trace_metadata=metadata,
            workflow_name=config.workflow_name if config.workflow_name != "Agent workflow" else "chatkit-lab turn",
        )

    async def add_feedback(self, thread_id: str, item_ids: list[str], feedback: FeedbackKind, context: Any) -> None:
        save = getattr(self.store, "save_feedback", None)
        if save is not None:
            await save(thread_id, item_ids, feedback, context)


class _TurnStore:
    """The store as one agent run sees it.

    ChatKit's ``stream_agent_response`` starts by re-reading the thread's newest two items, which
    ``respond`` has just loaded; that one read is served from memory. Everything else goes to the
    real store.
    """

    def __init__(self, store: Store[Any], thread_id: str, newest_first: Page[Any]) -> None:
        self._store, self._thread_id, self._page = store, thread_id, newest_first

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def load_thread_items(self, thread_id: str, after: str | None, limit: int, order: str, context: Any) -> Page[Any]:
        page, self._page = self._page, None
        if page is not None and thread_id == self._thread_id and after is None and order == "desc" and (limit <= len(page.data) or not page.has_more):
            data = page.data[:limit]
            return Page(data=data, has_more=page.has_more or len(page.data) > limit, after=data[-1].id if data else None)
        return await self._store.load_thread_items(thread_id, after, limit, order, context)


class _TurnRecord:
    """One row of the ``turns`` table, filled in as the turn runs."""

    def __init__(self, thread_id: str, user_id: str, message: UserMessageItem | None, agent: str, model: str | None) -> None:
        self.turn_id = f"turn_{uuid.uuid4().hex[:12]}"
        self.trace_id = gen_trace_id()
        self.thread_id, self.user_id, self.agent, self.model = thread_id, user_id, agent, model
        self.user_item_id = message.id if message else None
        self.started_at, self._t0 = datetime.now(), time.perf_counter()
        self.first_token_ms: float | None = None
        self.status, self.error = "running", None
        self.tools: list[str] = []
        self.usage: Any = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000

    def input_row(self, call: int, agent: Agent, strategy: str, instructions: str | None, items: list[Any], context: dict[str, Any]) -> list[Any]:
        tools = [t.name for t in agent.tools if hasattr(t, "name")]
        tools += [f"mcp:{s.name}" for s in agent.mcp_servers] + [getattr(h, "tool_name", None) or getattr(h, "name", "?") for h in agent.handoffs]
        return [
            self.turn_id, call, self.thread_id, self.user_id, datetime.now(), agent.name, strategy, instructions,
            _INLINE_DATA.sub(_shorten, json.dumps(items, default=_plain, ensure_ascii=False)), tools, json.dumps(context, default=str, ensure_ascii=False),
        ]

    def row(self) -> list[Any]:
        return [
            self.turn_id, self.thread_id, self.user_id, self.user_item_id, self.started_at, datetime.now(),
            self.elapsed_ms(), self.first_token_ms, self.status, self.error, self.agent, self.model,
            getattr(self.usage, "input_tokens", None), getattr(self.usage, "output_tokens", None),
            self.tools, self.trace_id,
        ]


_INLINE_DATA = re.compile(r"data:([\w/+.-]+);base64,[A-Za-z0-9+/=]{200,}")


def _shorten(match: re.Match[str]) -> str:
    # The inspector needs what the model was shown, not the bytes of every image.
    return f"data:{match.group(1)};base64,…({len(match.group(0))} chars)"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return str(value)


__all__ = ["LabServer", "PortableConverter", "RequestContext", "title_from"]
