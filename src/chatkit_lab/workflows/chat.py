"""A workflow run as a chat turn: node tasks (Agent Builder's preview), the reply, approvals.

Each node shows as a task of a ChatKit ``workflow`` item while it runs (name, status, short
output, duration). A shown agent's reply streams as an assistant message after them, and the
nodes after it open a new task list. At a ``user_approval`` node the run pauses: the paused run is
stored (``workflow_runs``) and the chat shows Approve / Reject; a click resumes it, in this kernel
or after a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, cast

from chatkit.agents import AgentContext, stream_agent_response
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    CustomTask,
    FileSource,
    FileTask,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    WidgetItem,
    Workflow,
    WorkflowItem,
    WorkflowTaskAdded,
    WorkflowTaskUpdated,
)

from ..approvals import approval_card
from ..run_stream import Held, RunStream
from .run import AgentStreaming, ApprovalNeeded, Execution, NodeFinished, NodeRun, NodeStarted, output_text

APPROVE, REJECT = "workflow.approve", "workflow.reject"
QUIET = ("start", "note", "end")  # node types that run without a task (an end with text shows it as the reply)
INSTANT = ("if_else", "while", "set_state", "transform")  # CEL only: their task appears once, finished


class NodeTasks:
    """The node tasks of one turn, as ChatKit workflow items (one per run of nodes between replies)."""

    def __init__(self, thread_id: str, new_id: Callable[[], str]) -> None:
        self.thread_id, self.new_id = thread_id, new_id
        self.item: WorkflowItem | None = None
        self.stored = False  # the open item is in the store already: closing it replaces it
        self._task: dict[int, tuple[WorkflowItem, int]] = {}  # run index -> (its item, task index)

    def started(self, run: NodeRun, task: CustomTask | FileTask | None = None) -> list[ThreadStreamEvent]:
        task = task or CustomTask(title=_title(run), content=None, status_indicator="loading")
        if self.item is None:
            self.item = WorkflowItem(id=self.new_id(), thread_id=self.thread_id, created_at=datetime.now(),
                                     workflow=Workflow(type="custom", tasks=[task], expanded=True))
            self._task[run.index] = (self.item, 0)
            return [ThreadItemAddedEvent(item=self.item)]
        self.item.workflow.tasks.append(task)
        index = len(self.item.workflow.tasks) - 1
        self._task[run.index] = (self.item, index)
        return [ThreadItemUpdatedEvent(item_id=self.item.id, update=WorkflowTaskAdded(task_index=index, task=task))]

    def finished(self, run: NodeRun) -> list[ThreadStreamEvent]:
        where = self._task.get(run.index)
        if where is None and run.node_type in INSTANT:
            return self.started(run, _finished_task(run))
        if where is None:
            return []
        item, index = where
        task = _finished_task(run)
        item.workflow.tasks[index] = task
        if item is not self.item:
            return []  # its list closed when the reply began; that item was stored with the task final
        return [ThreadItemUpdatedEvent(item_id=item.id, update=WorkflowTaskUpdated(task_index=index, task=task))]

    def replying(self, run: NodeRun) -> None:
        """The agent of ``run`` starts its reply: its task reads so in the list the reply closes."""
        if (where := self._task.get(run.index)) is not None:
            item, index = where
            item.workflow.tasks[index] = CustomTask(title=_title(run), content="Replying in the chat", status_indicator="complete")

    def after_reply(self, open_item: WorkflowItem | None) -> None:
        """A shown agent's run has ended. A reply closed the list; a run that ended inside it (its
        last step a tool call) left it open, and ChatKit has stored it as it was."""
        self.item, self.stored = open_item, open_item is not None

    def close(self) -> list[ThreadStreamEvent]:
        if self.item is None:
            return []
        item, self.item = self.item, None
        item.workflow.expanded = False
        if self.stored:
            self.stored = False
            return [ThreadItemReplacedEvent(item=item)]
        return [ThreadItemDoneEvent(item=item)]


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _title(run: NodeRun) -> str:
    return f"{run.name} · {run.node_type}"


def _finished_task(run: NodeRun) -> CustomTask | FileTask:
    took = f" ({run.duration_ms:.0f} ms)" if run.duration_ms is not None else ""
    if run.status == "failed":
        return CustomTask(title=f"{_title(run)} failed", content=run.error, status_indicator="complete")
    if run.node_type == "file_search" and isinstance(run.output, dict):
        # The hits as the chat's sources: file name, and the excerpt as the description.
        sources = [FileSource(title=f"{hit['filename']} §{hit['chunk_index'] + 1}", filename=hit["filename"], description=_clip(hit["text"]))
                   for hit in run.output.get("results", [])]
        return FileTask(title=f"{_title(run)}{took}: {len(sources)} sources", sources=sources, status_indicator="complete")
    edge = f"→ {run.edge}: " if run.edge else ""
    return CustomTask(title=_title(run) + took, content=(edge + run.summary()) or None, status_indicator="complete")


async def chat_events(
    execution: Execution, agent_ctx: AgentContext[Any], new_id: Callable[[str], str], *, decision: str | None = None,
    on_pause: Callable[[ApprovalNeeded], Any] | None = None, held: Held | None = None,
) -> AsyncIterator[ThreadStreamEvent]:
    """The events of ``execution`` as one chat turn. ``new_id(kind)``: an item id ("workflow",
    "message"); ``on_pause``: stores a paused run and returns its id (awaited); ``held``: given,
    the shown agent's deltas are merged (see ``run_stream.RunStream``)."""
    thread_id = agent_ctx.thread.id
    tasks = NodeTasks(thread_id, lambda: new_id("workflow"))
    replied = False
    steps = execution.steps(decision)
    try:
        async for step in steps:
            match step:
                case NodeStarted(run=run) if run.node_type not in (*QUIET, *INSTANT):
                    for event in tasks.started(run):
                        yield event
                case AgentStreaming(run=run, result=result, shown=True):
                    tasks.replying(run)
                    agent_ctx.workflow_item = tasks.item  # the reply closes this list; tool calls join it
                    async for event in stream_agent_response(agent_ctx, cast(Any, RunStream(result, held=held))):
                        if isinstance(event, ThreadItemDoneEvent) and event.item.type == "assistant_message":
                            replied = True
                        yield event
                    tasks.after_reply(agent_ctx.workflow_item)
                case NodeFinished(run=run):
                    for event in tasks.finished(run):
                        yield event
                case ApprovalNeeded(message=message) as needed:
                    for event in tasks.close():
                        yield event
                    run_id = await on_pause(needed) if on_pause is not None else None
                    yield ThreadItemDoneEvent(item=approval_item(new_id("message"), thread_id, message, run_id, needed.run.name))
        for event in tasks.close():
            yield event
        if execution.status == "completed":
            final = execution.runs[-1] if execution.runs else None
            text = _end_text(execution, final, replied)
            if text:
                yield ThreadItemDoneEvent(item=AssistantMessageItem(
                    id=new_id("message"), thread_id=thread_id, created_at=datetime.now(), content=[AssistantMessageContent(text=text)]))
    finally:
        agent_ctx.workflow_item = None
        await steps.aclose()  # on Stop: the running node is marked cancelled before the turn is logged


def _end_text(execution: Execution, final: NodeRun | None, replied: bool) -> str | None:
    """What the chat shows at the end: an end node's template, or, when no agent replied in the
    chat, the workflow's output text (a guardrail's fail message, a transform's result)."""
    if final is not None and final.node_type == "end" and execution.workflow.node(final.node_id).output is not None:
        return output_text(final.output)
    if not replied:
        return output_text(execution.output) or None
    return None


def approval_item(item_id: str, thread_id: str, message: str, run_id: str | None, node_name: str) -> WidgetItem:
    """The Approve / Reject card of a paused run (its buttons carry the run's id)."""
    return approval_card(item_id, thread_id, node_name, [message], (APPROVE, REJECT), {"run_id": run_id}, f"{node_name}: {message}")


def decision_of(action_type: str) -> str:
    return "approve" if action_type == APPROVE else "reject"


def payload_run_id(payload: Any) -> str | None:
    value = payload.get("run_id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


__all__ = ["APPROVE", "REJECT", "NodeTasks", "approval_item", "chat_events"]
