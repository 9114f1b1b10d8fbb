"""The lab's workflow in its chat: which graph (and version) answers, and what each turn logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatkit.agents import AgentContext
from chatkit.types import ThreadItemReplacedEvent, ThreadStreamEvent, WidgetItem

from ..approvals import decided_item
from ..guardrails.engine import Guardrails
from ..run_stream import Held
from ..store.database import Database
from ..store.rows import NodeRow
from . import versions
from .chat import chat_events
from .graph import Workflow
from .run import ApprovalNeeded, Execution, Paused, Services
from .versions import PausedRun, Resolved


class ChatWorkflow:
    """Runs ``resolved`` for every turn of a lab's chat with ``services``; paused runs and the
    graphs that ran are stored in ``db``; ``row_log`` receives the node rows of each turn."""

    def __init__(
        self, resolved: Resolved, services: Services, db: Database, row_log: Callable[[list[Any]], None] | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.resolved, self.services, self.db, self.row_log, self.redact = resolved, services, db, row_log, redact
        self.compiled = resolved.workflow.compiled()
        self.agents: dict[tuple[str, str], Any] = {}  # its agent nodes' Agents, built once (see Execution)

    @property
    def name(self) -> str:
        return self.resolved.workflow.name

    def execution(
        self, *, input_text: str, history: list[Any], run_config: Any, context: Any, hooks: Any, paused: Paused | None = None,
        resolved: Resolved | None = None,
    ) -> Execution:
        resolved = resolved or self.resolved
        return Execution(
            resolved.workflow, self.services, input_text=input_text, history=history, version=resolved.version,
            compiled=self.compiled if resolved is self.resolved else None, trace_id=run_config.trace_id, group_id=run_config.group_id,
            metadata=run_config.trace_metadata, run_config=run_config, context=context, hooks=hooks, paused=paused,
            tracing_disabled=run_config.tracing_disabled, agents=self.agents if resolved is self.resolved else None,
        )

    async def events(
        self, execution: Execution, agent_ctx: AgentContext[Any], new_id: Callable[[str], str], *, turn_id: str, user_id: str,
        decision: str | None = None, held: Held | None = None,
    ) -> AsyncIterator[ThreadStreamEvent]:
        thread_id = agent_ctx.thread.id
        # The graph is in workflow_definitions already (stored when the lab took it, or loaded from
        # there to resume), so a paused run and the thread can name it by hash.
        digest = self._digest(execution)
        ran = {"name": execution.workflow.name, "version": execution.version, "hash": digest}
        if agent_ctx.thread.metadata.get("workflow") != ran:  # saved with the thread only when it changes
            agent_ctx.thread.metadata["workflow"] = ran

        async def pause(needed: ApprovalNeeded) -> str:
            async with self.db.transaction() as cur:
                return versions.save_paused(cur, thread_id=thread_id, user_id=user_id, turn_id=turn_id, workflow_hash=digest,
                                            version=execution.version, node_id=needed.run.node_id, paused=self.redact(needed.paused.to_json()))

        async for event in chat_events(execution, agent_ctx, new_id, decision=decision, on_pause=pause, held=held):
            yield event

    def _digest(self, execution: Execution) -> str:
        return self.resolved.workflow_hash if execution.workflow is self.resolved.workflow else str(execution.workflow.content_hash())

    async def take(self, run_id: str, user_id: str, thread_id: str, decision: str) -> tuple[PausedRun, Resolved] | None:
        """The paused run a click decides (once), with the graph it ran; None if there is none."""
        async with self.db.transaction() as cur:
            paused = versions.take_paused(cur, run_id, user_id, thread_id, decision)
            if paused is None:
                return None
            workflow = versions.load(cur, paused.workflow_hash)
        return paused, Resolved(workflow, paused.version, paused.workflow_hash)

    def decided(self, widget: WidgetItem | None, decision: str, who: str) -> list[ThreadStreamEvent]:
        return [] if widget is None else [ThreadItemReplacedEvent(item=decided_item(widget, decision, who))]

    def log(self, execution: Execution, *, turn_id: str, thread_id: str, user_id: str, digest: str | None = None) -> None:
        if self.row_log is None or not execution.runs:
            return
        wf = execution.workflow
        digest = digest or self._digest(execution)
        self.row_log([
            NodeRow(turn_id=turn_id, node_index=r.index, thread_id=thread_id, user_id=user_id, workflow_name=wf.name,
                    workflow_version=execution.version, workflow_hash=digest, node_id=r.node_id, node_type=r.node_type, name=r.name,
                    started_at=r.started_at, duration_ms=r.duration_ms, status=r.status, edge=r.edge,
                    output=json.dumps(r.output, ensure_ascii=False, default=str), error=r.error, model=r.model, span_id=r.span_id)
            for r in execution.runs
        ])



def redactors(workflow: Workflow) -> list[Callable[[str], str]]:
    """The PII masking of the workflow's guardrails nodes, for everything the lab writes."""
    found = []
    for node in workflow.nodes:
        if node.type == "guardrails" and (mask := Guardrails(node.config).redactor()) is not None:
            found.append(mask)
    return found
