"""LabServer: a ChatKitServer that answers each turn with an Agents SDK run."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol, cast, get_args, runtime_checkable

from agents import Agent, RunConfig, RunContextWrapper, RunHooks, Runner, RunResultStreaming, RunState, Tool
from agents.exceptions import InputGuardrailTripwireTriggered, OutputGuardrailTripwireTriggered
from agents.run_config import CallModelData, ModelInputData
from agents.tracing import gen_trace_id
from chatkit.agents import AgentContext, ThreadItemConverter, stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import AttachmentStore, NotFoundError, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ChatKitReq,
    CustomTask,
    FeedbackKind,
    HiddenContextItem,
    NoticeEvent,
    StreamingReq,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    UserMessageItem,
    WidgetItem,
    is_streaming_req,
)
from pydantic import BaseModel, TypeAdapter

from . import approvals as tool_approvals
from .auth.mcp import current_secrets
from .auth.secrets import Secrets
from .auth.secrets import redact as redact_secrets
from .context import ContextInjection, RequestContext, context_tool, inject
from .errors import ChatLabError, InvalidRequestError
from .failures import approvals_needed, describe_failure
from .guardrails import turn as guarded
from .guardrails.engine import Guardrails
from .guardrails.judge import ModelJudge
from .models import Backend, openai_client
from .run_stream import Held, RunStream
from .store.duckdb import user_of
from .store.items import item_text, utc_now
from .store.rows import ModelInputRow, TurnRow, stored_json
from .workflows import chat as wf_chat
from .workflows import run as wf_run
from .workflows.run import Paused
from .workflows.turns import ChatWorkflow
from .workflows.versions import PausedRun, Resolved

log = logging.getLogger("chatkit_lab")

AgentFactory = Callable[[ThreadMetadata, Any], Agent]
# (thread, action, sender widget item or None, context) -> stream events
ActionHandler = Callable[[ThreadMetadata, Any, Any, Any], AsyncIterator[ThreadStreamEvent]]
TITLE_LENGTH = 60
# A click that finds no waiting run: answered, asked in another thread (a fork copies the card, not the run), or another user's.
ANSWERED = "This approval was answered already, was asked in another thread (a fork copies the card, not the run), or is not yours to answer."
request_adapter: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)
TOOL_TYPES = tuple(getattr(kind, "__origin__", kind) for kind in get_args(Tool))  # the classes of the SDK's Tool union


def agent_tools(tools: Any) -> list[Any]:
    """``tools=`` checked: Agents SDK tools, in a list. A plain function, or one name, ran
    silently offline and failed only on a real provider."""
    if isinstance(tools, str) or not hasattr(tools, "__iter__"):
        raise ChatLabError(f"tools= is a list of Agents SDK tools, not {type(tools).__name__}.")
    given = list(tools)
    for i, tool in enumerate(given):
        if not isinstance(tool, TOOL_TYPES):
            hint = f": decorate {getattr(tool, '__name__', 'it')} with @function_tool (from agents)" if callable(tool) else ""
            raise ChatLabError(f"tools[{i}] is a {type(tool).__name__}, not an Agents SDK tool{hint}.")
    return given


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


async def _final_output_replies(
    events: AsyncIterator[ThreadStreamEvent], result: RunResultStreaming, reply: Callable[[str], AssistantMessageItem],
) -> AsyncIterator[ThreadStreamEvent]:
    """A run that ends on a tool (``tool_use_behavior="stop_on_first_tool"``, ``StopAtTools``) has
    that tool's result as its final output and no message: the result is the reply, as the run
    returns it (ChatKit shows only the tool step, and the turn would end without an answer). A
    client tool's call ends the run that way too, and waits for the browser's answer: no reply."""
    replied = False
    async for event in events:
        replied = replied or (isinstance(event, ThreadItemDoneEvent) and event.item.type in ("assistant_message", "client_tool_call"))
        yield event
    final = result.final_output
    if not replied and result.is_complete and not result.interruptions and final is not None and final != "":
        text = final if isinstance(final, str) else final.model_dump_json() if isinstance(final, BaseModel) else json.dumps(final, ensure_ascii=False, default=str)
        yield ThreadItemDoneEvent(item=reply(text))


def _no_context(context: Any) -> dict[str, Any]:
    """A waiting run's state keeps no run context (ChatKit's: the thread, the store): the turn that
    resumes it gives its own."""
    return {}


async def _decided(agent: Agent, agent_ctx: AgentContext[Any], state: str, decision: str) -> RunState[Any]:
    """A run that waited for tool approvals, with every call it waits for approved or rejected."""
    run_state: RunState[Any] = await RunState.from_string(agent, state, context_override=RunContextWrapper(agent_ctx))
    for call in run_state.get_interruptions():
        if decision == "approve":
            run_state.approve(call)
        else:
            run_state.reject(call)
    return run_state


@runtime_checkable
class ItemsAfterStore(Protocol):
    """A store that deletes the items after one in a single operation (both of chatkit-lab's)."""

    async def delete_items_after(self, thread_id: str, item_id: str, context: Any) -> int: ...


class LabServer(ChatKitServer[RequestContext]):
    """Runs ``agent`` (or ``agent(thread, context)``) for each turn and logs the turn.

    ``history_limit`` caps how many stored items are converted into model input.
    ``trace_metadata`` is added to every run's trace (the lab routes traces by it).
    ``injection``: the lab's context values, providers and strategy (``lab.context``); every
    method's ``context`` is the ``RequestContext`` of one request. ``guardrails``: checks on every
    user message (before it is stored) and reply (see ``chatkit_lab.guardrails``); their verdicts
    go to ``row_log``. ``workflow``: a graph that answers every turn instead of ``agent``, node by
    node (see ``chatkit_lab.workflows``); its node runs go to ``row_log`` too. ``merge_deltas``:
    for turns nobody watches (evals, replays), each message part's text deltas after its first
    reach ChatKit as one (see ``run_stream.RunStream``).
    """

    def __init__(
        self,
        store: Store[RequestContext],
        agent: Agent | AgentFactory,
        *,
        backend: Backend | None = None,
        history_limit: int = 50,
        run_config: RunConfig | None = None,
        trace_metadata: dict[str, Any] | None = None,
        max_turns: int = 10,
        turn_log: Callable[[TurnRow], None] | None = None,
        actions: dict[str, ActionHandler] | None = None,
        injection: ContextInjection | None = None,
        secrets: Secrets | None = None,
        input_log: Callable[[ModelInputRow, list[str]], None] | None = None,
        guardrails: Guardrails | None = None,
        row_log: Callable[[list[Any]], None] | None = None,
        workflow: ChatWorkflow | None = None,
        merge_deltas: bool = False,
        approvals: tool_approvals.ToolApprovals | None = None,
    ) -> None:
        super().__init__(store, attachment_store=store if isinstance(store, AttachmentStore) else None)
        self.agent = agent
        self.backend = backend
        self.history_limit = history_limit
        self.run_config = run_config
        self.trace_metadata = trace_metadata or {}
        self.max_turns = max_turns
        self.turn_log = turn_log  # receives one `turns` row per turn (the lab writes it behind)
        self.actions = dict(actions or {})  # widget action type -> handler
        self.injection = injection
        self.secrets = secrets  # handed to tools as context.secrets; never shown to the model
        self.input_log = input_log  # receives one `model_inputs` row per model call, and its items as JSON
        self.row_log = row_log  # receives a turn's guardrail verdicts and workflow node runs
        self.workflow = workflow  # when set, every turn runs this graph instead of ``agent``
        self.merge_deltas = merge_deltas
        self.approvals = approvals  # where a run waiting for a tool approval is kept; without it, that run ends the turn with an error
        self._unsent: dict[str, tuple[int, str]] = {}  # a stopped merged turn's text ChatKit has not seen, by thread
        # The model checks' judge is the guardrails' own, else the lab's model when it is a real
        # provider; Moderation uses OpenAI's endpoint when the provider is OpenAI.
        real = backend is not None and backend.kind != "offline"
        self.guardrails = guardrails.using(
            judge=ModelJudge(backend.model) if real and backend else None,
            moderation=openai_client() if real and backend and backend.kind == "openai" and _uses_moderation(guardrails) else None,
        ) if guardrails else None

    async def process(self, request: str | bytes | BaseModel, context: RequestContext) -> StreamingResult | NonStreamingResult:  # type: ignore[override]
        # ChatKit builds a pydantic TypeAdapter on every request (about 60% of a turn with the
        # offline model); parse with one built once, or take a request already parsed.
        parsed: ChatKitReq = request_adapter.validate_python(request) if isinstance(request, BaseModel) else request_adapter.validate_json(request)
        if is_streaming_req(parsed):
            return StreamingResult(self._checked_stream(parsed, context))
        return NonStreamingResult(await self._process_non_streaming(parsed, context))

    async def _checked_stream(self, request: StreamingReq, context: RequestContext) -> AsyncGenerator[bytes, None]:
        """ChatKit's stream, after the checks that must come before anything is written."""
        if isinstance(request, ThreadsCreateReq | ThreadsAddUserMessageReq):
            for attachment_id in request.params.input.attachments:
                # A missing or another user's attachment is refused before a thread is created.
                await self.store.load_attachment(attachment_id, context)
            if self.guardrails is not None:
                # Before ChatKit stores the message: masked text is all the store ever sees.
                history = await self._history(request, context)
                context.guardrails = await guarded.check_message(self.guardrails, request.params.input.content, history)
        if isinstance(request, ThreadsRetryAfterItemReq) and isinstance(self.store, ItemsAfterStore):
            events = self._retry_after(request.params.thread_id, request.params.item_id, context)
            async for event in events:
                yield b"data: " + self._serialize(event) + b"\n\n"
            return
        async for chunk in self._process_streaming(request, context):
            yield chunk

    async def _history(self, request: StreamingReq, context: RequestContext) -> list[dict[str, str]]:
        """The thread's recent messages, for conversation-aware checks (none for a new thread, or
        when no check of the message's stages reads them)."""
        if not isinstance(request, ThreadsAddUserMessageReq) or self.guardrails is None or not self.guardrails.reads_history():
            return []
        # The same page the turn reads next, so the store's cache answers one of the two.
        page = await self.store.load_thread_items(request.params.thread_id, None, self.history_limit, "desc", context)
        return guarded.history_of(list(reversed(page.data)))

    async def _retry_after(self, thread_id: str, item_id: str, context: RequestContext) -> AsyncIterator[ThreadStreamEvent]:
        """``threads.retry_after_item`` in one statement: ChatKit deletes the newer items one by
        one, which takes minutes on a long thread and holds the loop meanwhile."""
        thread = await self.store.load_thread(thread_id, context)
        item = await self.store.load_item(thread_id, item_id, context)
        if not isinstance(item, UserMessageItem):
            raise InvalidRequestError(f"Item {item_id} is not a user message")
        await cast(ItemsAfterStore, self.store).delete_items_after(thread_id, item_id, context)
        async for event in self._process_events(thread, context, lambda: self.respond(thread, item, context)):
            yield event

    async def action(self, thread: ThreadMetadata, action: Any, sender: Any, context: RequestContext) -> AsyncIterator[ThreadStreamEvent]:
        """A widget button (``threads.custom_action``): its registered handler answers; without
        one, the click becomes hidden context and the agent answers it. A workflow approval's
        Approve / Reject resumes its paused run."""
        if action.type in (wf_chat.APPROVE, wf_chat.REJECT):
            if self.workflow is None:
                yield NoticeEvent(level="warning", message="This lab runs no workflow now, so the approval cannot resume; "
                                                           "lab.use_workflow(...) brings it back, and the click works again.")
                return
            async for event in self._decide(thread, action, sender, context):
                yield event
            return
        if action.type in (tool_approvals.APPROVE, tool_approvals.REJECT):
            async for event in self._decide_tools(thread, action, sender, context):
                yield event
            return
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

    async def _decide(self, thread: ThreadMetadata, action: Any, sender: Any, context: RequestContext) -> AsyncIterator[ThreadStreamEvent]:
        """Approve or Reject: the paused run is taken once (a second click finds nothing) and resumed."""
        assert self.workflow is not None
        decision = wf_chat.decision_of(action.type)
        run_id = wf_chat.payload_run_id(action.payload)
        taken = await self.workflow.take(run_id, user_of(context), thread.id, decision) if run_id else None
        if taken is None:
            yield NoticeEvent(level="info", message=ANSWERED)
            return
        for event in self.workflow.decided(sender if isinstance(sender, WidgetItem) else None, decision, context.user.get("name") or user_of(context)):
            yield event
        async for event in self._turn(thread, None, context, resume=(*taken, decision)):
            yield event

    async def _decide_tools(self, thread: ThreadMetadata, action: Any, sender: Any, context: RequestContext) -> AsyncIterator[ThreadStreamEvent]:
        """Approve or Reject on a tool approval card: the waiting run is taken once and goes on."""
        decision = "approve" if action.type == tool_approvals.APPROVE else "reject"
        approvals, approval_id, user = self.approvals, tool_approvals.payload_approval_id(action.payload), user_of(context)
        waiting = await approvals.waiting(approval_id, user, thread.id) if approvals and approval_id else None
        if approvals is None or approval_id is None or waiting is None:
            yield NoticeEvent(level="info", message=ANSWERED)
            return
        if missing := tool_approvals.missing_tools(self.agent_for(thread, context), waiting.calls):
            yield NoticeEvent(level="warning", message=f"This approval calls {', '.join(missing)}, which the agent no longer has; give it back "
                                                       "(ChatLab(tools=[...])) and click again: the approval waits.")
            return
        if not waiting.whole:
            # Its stored state lost what redaction took (the SDK refuses a call whose arguments changed), and the whole one went with the restart.
            if await approvals.expire(approval_id, user, thread.id) and isinstance(sender, WidgetItem):
                yield ThreadItemReplacedEvent(item=tool_approvals.closed_item(sender, "Could not go on in this process"))
            yield NoticeEvent(level="warning", message="This run held a secret or masked PII, which the lab never writes to its file, and only the "
                                                       "process that asked holds it whole (this one restarted, or is another worker), so it cannot "
                                                       "go on: send your message again.")
            return
        state = await approvals.take(approval_id, user, thread.id, decision)
        if state is None:  # another click took it meanwhile
            yield NoticeEvent(level="info", message=ANSWERED)
            return
        if isinstance(sender, WidgetItem):
            yield ThreadItemReplacedEvent(item=tool_approvals.decided_item(sender, decision, context.user.get("name") or user))
        async for event in self._turn(thread, None, context, tools_decided=(state, decision)):
            yield event

    async def handle_stream_cancelled(self, thread: ThreadMetadata, pending_items: list[Any], context: RequestContext) -> None:
        # A stopped turn nobody watched keeps all the model wrote, not only what reached ChatKit.
        index, text = self._unsent.pop(thread.id, (0, ""))
        replies = [item for item in pending_items if isinstance(item, AssistantMessageItem)]
        if text and replies and index < len(replies[-1].content):
            replies[-1].content[index].text += text
        await super().handle_stream_cancelled(thread, pending_items, context)

    def agent_for(self, thread: ThreadMetadata, context: RequestContext) -> Agent:
        return self.agent if isinstance(self.agent, Agent) else self.agent(thread, context)

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: RequestContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        async for event in self._turn(thread, input_user_message, context):
            yield event

    async def _turn(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: RequestContext,
        resume: tuple[PausedRun, Resolved, str] | None = None, tools_decided: tuple[str, str] | None = None,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """One turn: the agent's run, or the workflow's (from its start, or ``resume``d at an approval);
        ``tools_decided``: an agent's run that waited for tool approvals goes on (its state, the decision)."""
        if thread.status.type != "active":
            reason = getattr(thread.status, "reason", None)
            raise CustomStreamError(f"This thread is {thread.status.type}{': ' + reason if reason else ''}.", allow_retry=False)
        if thread.title is None and input_user_message is not None:
            thread.title = title_from(item_text(input_user_message) or "")

        agent = self.agent_for(thread, context)
        turn = _TurnRecord(thread.id, user_of(context), input_user_message, agent.name, self._model_name(agent))
        row = turn.row
        hooks = _ToolProgress()
        result = None
        execution = None
        checked = context.guardrails if input_user_message is not None else []
        if input_user_message is not None and not checked and self.guardrails is not None:
            # A stored message answered again (retry, regenerate) is checked again: stored masked,
            # it may still be what a check stops.
            checked = await guarded.check_message(self.guardrails, input_user_message.content, [])
        guard = None
        held = Held() if self.merge_deltas else None
        if self.guardrails is not None and self.guardrails.has("output"):
            guard = guarded.OutputGuard(self.guardrails, [], lambda: guarded.tool_outputs(result))
        try:
            for notice in (guarded.masked_notice(checked), guarded.failure_notice(checked, self.guardrails.fail_closed) if self.guardrails else None):
                if notice is not None:
                    yield notice
            strategy, snapshot = await self._context_of(context)
            if strategy == "tool":
                agent = agent.clone(tools=[*agent.tools, context_tool(snapshot)])
            current_secrets.set(context.secrets)  # for MCP servers authenticating per request
            page = await self.store.load_thread_items(thread.id, None, self.history_limit, "desc", context)
            if page.has_more and not thread.metadata.get("history_capped"):
                thread.metadata["history_capped"] = True  # said once per thread (saved with it)
                yield NoticeEvent(level="info", title="History capped", message=(
                    f"This thread is longer than the {self.history_limit} items the model is sent: from now on it sees the most recent "
                    f"{self.history_limit} (`ChatLab(history_limit=...)` changes that)."))
            agent_ctx = AgentContext(thread=thread, store=self.store, request_context=context)
            agent_input = await PortableConverter(self.store, context).to_agent_input(list(reversed(page.data)))
            run_config = self._run_config(thread, context, turn, strategy, snapshot)
            if self.workflow is not None and tools_decided is None:  # a run waiting for tool approvals is the agent's
                # The lab's input checks stop the turn before the graph, as they stop an agent.
                if tripped := [r for report in checked for r in report.tripped]:
                    row.status, row.error = "blocked", f"input: {guarded.summary(tripped)}"
                    template = self.guardrails.block_message if self.guardrails else guarded.BLOCK_MESSAGE
                    for event in guarded.stopped(template, "Stopped before the workflow", tripped, self.store.generate_item_id("message", thread, context), thread.id):
                        yield event
                    return
                paused, resolved, decision = (Paused.from_json(resume[0].paused), resume[1], resume[2]) if resume else (None, None, None)
                execution = self.workflow.execution(
                    input_text=(item_text(input_user_message) or "") if input_user_message else "", history=agent_input,
                    run_config=run_config, context=agent_ctx, hooks=hooks, paused=paused, resolved=resolved,
                )
                row.agent, row.model = execution.workflow.name, None
                events = self.workflow.events(execution, agent_ctx, lambda kind: self.store.generate_item_id(cast(Any, kind), thread, context),
                                              turn_id=row.turn_id, user_id=row.user_id, decision=decision, held=held)
            else:
                if checked:
                    run_config.input_guardrails = [*(run_config.input_guardrails or []), *guarded.sdk_input_guardrails(checked)]
                if guard is not None:
                    run_config.output_guardrails = [*(run_config.output_guardrails or []), *guard.sdk_guardrails()]
                given: list[Any] | RunState[Any] = agent_input
                if tools_decided is not None:
                    given = await _decided(agent, agent_ctx, *tools_decided)
                result = Runner.run_streamed(agent, given, context=agent_ctx, hooks=hooks, max_turns=self.max_turns, run_config=run_config)
                # A proxy of the run result: stream_agent_response reads its events and attributes only.
                events = stream_agent_response(agent_ctx, cast(RunResultStreaming, RunStream(result, held=held)))
                events = _final_output_replies(events, result, lambda text: AssistantMessageItem(
                    id=self.store.generate_item_id("message", thread, context), thread_id=thread.id, created_at=datetime.now(),
                    content=[AssistantMessageContent(text=text)]))
            if guard is not None:
                guard.history[:] = guarded.history_of(list(reversed(page.data)))
            events = _own_ids(events, lambda: self.store.generate_item_id("message", thread, context))
            async for event in (guard.filter(events) if guard is not None else events):
                if isinstance(event, ThreadItemUpdatedEvent) and isinstance(event.update, AssistantMessageContentPartTextDelta):
                    if row.first_token_ms is None:
                        row.first_token_ms = turn.elapsed_ms()
                    turn.partial_chars += len(event.update.delta)
                elif isinstance(event, ThreadItemDoneEvent) and event.item.type == "assistant_message":
                    turn.partial_chars = 0
                yield event
            if execution is not None and execution.status == "failed":
                raise wf_run.NodeFailed(execution.error or "The workflow failed.")
            if result is not None and result.interruptions:
                if self.approvals is None:
                    raise CustomStreamError(approvals_needed(result.interruptions), allow_retry=False)
                calls = tool_approvals.calls_of(result.interruptions)
                item_id = self.store.generate_item_id("message", thread, context)
                approval_id = await self.approvals.save(
                    thread_id=thread.id, user_id=row.user_id, turn_id=row.turn_id, item_id=item_id, agent=agent.name, calls=calls,
                    state=result.to_state().to_string(context_serializer=_no_context),
                )
                yield ThreadItemDoneEvent(item=tool_approvals.tool_card(item_id, thread.id, approval_id, agent.name, calls))
                row.status = "paused"
                return
            row.status = execution.status if execution is not None else "completed"
        except InputGuardrailTripwireTriggered as exc:
            # The model was never called: the verdicts (or the agent's own guardrail) stopped the run before its first call.
            tripped = [r for report in checked for r in report.tripped] or [guarded.agent_guardrail(exc, "input")]
            row.status, row.error = "blocked", f"input: {guarded.summary(tripped)}"
            template = self.guardrails.block_message if self.guardrails else guarded.BLOCK_MESSAGE
            for event in guarded.stopped(template, "Stopped before the model", tripped, self.store.generate_item_id("message", thread, context), thread.id):
                yield event
        except OutputGuardrailTripwireTriggered as exc:
            # ChatKit has removed the reply's items; the message that says why takes their place.
            tripped = (guard.tripped if guard else []) or [guarded.agent_guardrail(exc, "output")]
            row.status, row.error = "blocked", f"output: {guarded.summary(tripped)}"
            template = self.guardrails.output_message if self.guardrails else guarded.OUTPUT_MESSAGE
            for event in guarded.stopped(template, None, tripped, self.store.generate_item_id("message", thread, context), thread.id):
                yield event
        except (asyncio.CancelledError, GeneratorExit) as stop:
            row.status = "cancelled"
            if held is not None and isinstance(stop, asyncio.CancelledError):
                # What ChatKit has not seen of a turn nobody watched: its cancel handler adds it to the partial reply.
                unsent = guard.unreleased(held.text) if guard is not None else held.text
                if unsent:
                    self._unsent[thread.id] = (held.content_index, unsent)
                    turn.partial_chars += len(unsent)
            raise
        except CustomStreamError as exc:
            exc.message = redact_secrets(exc.message)  # the chat shows it: an operator's secret in a tool's error is not the user's to see
            row.status, row.error = "error", exc.message
            raise
        except Exception as exc:
            message, retry = describe_failure(exc, self.backend)
            log.exception("turn failed in thread %s: %s", thread.id, message)
            row.status, row.error = "error", redact_secrets(message)
            raise CustomStreamError(row.error, allow_retry=retry) from exc
        finally:
            usage = None
            if result is not None:
                if not result.is_complete:
                    result.cancel()
                usage = result.context_wrapper.usage
            if execution is not None:
                usage = execution.total_usage()
                if self.workflow is not None:
                    self.workflow.log(execution, turn_id=row.turn_id, thread_id=row.thread_id, user_id=row.user_id)
            if self.row_log is not None and (checked or (guard and guard.reports)):
                self.row_log(guarded.rows([*checked, *(guard.reports if guard else [])], row.turn_id, row.thread_id, row.user_id))
            if self.turn_log is not None:
                self.turn_log(turn.finish(usage, hooks.tools))

    def _model_name(self, agent: Agent) -> str | None:
        model = agent.model or (self.backend.model if self.backend else None)
        if model is None or isinstance(model, str):
            return model
        return getattr(model, "model", None) or getattr(model, "name", None) or type(model).__name__

    async def _context_of(self, context: RequestContext) -> tuple[str, dict[str, Any]]:
        """This turn's strategy and context; fills ``context.secrets`` for the user's tools."""
        if self.secrets is not None:
            context.secrets = self.secrets.for_user(context.user_id)
        if self.injection is None:
            return "none", {"user": context.user, "page": context.page}
        return self.injection.strategy, await self.injection.snapshot(context)

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
                self.input_log(*turn.input_row(next(calls), data.agent, strategy, instructions, items, snapshot))
            return ModelInputData(input=items, instructions=instructions)

        return apply

    def _run_config(self, thread: ThreadMetadata, context: RequestContext, turn: _TurnRecord, strategy: str, snapshot: dict[str, Any]) -> RunConfig:
        config = self.run_config or RunConfig()
        settings = self.backend.settings if self.backend else None
        metadata = {**self.trace_metadata, **(config.trace_metadata or {}), "thread_id": thread.id, "user_id": user_of(context)}
        # A shallow copy, not dataclasses.replace: RunConfig re-validates itself on every
        # construction with get_type_hints (about 1 ms a turn), and this one is valid already.
        run = copy.copy(config)
        run.model_settings = config.model_settings or settings
        run.trace_id, run.group_id, run.trace_metadata = turn.row.trace_id, thread.id, metadata
        run.call_model_input_filter = self._input_filter(turn, strategy, snapshot, config.call_model_input_filter)
        if config.workflow_name == "Agent workflow":
            run.workflow_name = "chatkit-lab turn"
        return run

    async def add_feedback(self, thread_id: str, item_ids: list[str], feedback: FeedbackKind, context: RequestContext) -> None:
        save = getattr(self.store, "save_feedback", None)
        if save is not None:
            await save(thread_id, item_ids, feedback, context)


CHARS_PER_TOKEN = 4


class _TurnRecord:
    """One row of the ``turns`` table, filled in as the turn runs."""

    def __init__(self, thread_id: str, user_id: str, message: UserMessageItem | None, agent: str, model: str | None) -> None:
        self.row = TurnRow(
            turn_id=f"turn_{uuid.uuid4().hex[:12]}", thread_id=thread_id, user_id=user_id,
            user_item_id=message.id if message else None, started_at=utc_now(), agent=agent, model=model,
            trace_id=gen_trace_id(),
        )
        self._t0 = time.perf_counter()
        self.partial_chars = 0  # text streamed of the reply being written (not yet done)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000

    def input_row(
        self, call: int, agent: Agent, strategy: str, instructions: str | None, items: list[Any], context: dict[str, Any]
    ) -> tuple[ModelInputRow, list[str]]:
        tools = [t.name for t in agent.tools if hasattr(t, "name")]
        tools += [f"mcp:{s.name}" for s in agent.mcp_servers] + [getattr(h, "tool_name", None) or getattr(h, "name", "?") for h in agent.handoffs]
        row = ModelInputRow(
            turn_id=self.row.turn_id, call_index=call, thread_id=self.row.thread_id, user_id=self.row.user_id,
            created_at=utc_now(), agent=agent.name, strategy=strategy, instructions=instructions,
            input=None, tools=tools, context=stored_json(context),
        )
        return row, [_INLINE_DATA.sub(_shorten, stored_json(item, default=_plain)) for item in items]

    def finish(self, usage: Any, tools: list[str]) -> TurnRow:
        row = self.row
        row.ended_at, row.latency_ms, row.tools = utc_now(), self.elapsed_ms(), tools
        row.input_tokens, row.output_tokens = getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)
        if row.status == "cancelled" and self.partial_chars:
            # A stopped stream reports no usage for the reply it cut short: count what was
            # streamed of it, at OpenAI's rule of thumb of four characters a token.
            row.output_tokens = (row.output_tokens or 0) + -(-self.partial_chars // CHARS_PER_TOKEN)
        return row


def _uses_moderation(guardrails: Guardrails) -> bool:
    return any(c.name == "Moderation" for c in guardrails.pipeline.checks())


_INLINE_DATA = re.compile(r"data:([\w/+.-]+);base64,[A-Za-z0-9+/=]{200,}")


def _shorten(match: re.Match[str]) -> str:
    # The inspector needs what the model was shown, not the bytes of every image.
    return f"data:{match.group(1)};base64,…({len(match.group(0))} chars)"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return str(value)


__all__ = ["LabServer", "PortableConverter", "RequestContext", "title_from"]
