"""Running a workflow (a validated ``graph.Workflow``; typed ``Any`` here, as the graph module
imports this one): node by node, each a span, as a stream of steps a chat or a cell consumes.

``Execution.steps()`` yields ``NodeStarted``, ``AgentStreaming`` (an agent node's streamed run,
which the consumer reads: the chat shows it, ``Workflow.run`` just drains it), ``NodeFinished``
and, at a ``user_approval`` node, ``ApprovalNeeded`` (the run pauses; ``Paused`` holds what a
resume needs, as JSON). The same steps drive the chat, ``wf.run`` and the evals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from agents import (
    Agent,
    FileSearchTool,
    HostedMCPTool,
    ModelSettings,
    RunConfig,
    Runner,
    RunResultStreaming,
    Tool,
    Usage,
    WebSearchTool,
)
from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import ModelBehaviorError
from agents.strict_schema import ensure_strict_json_schema
from agents.tracing import Span, Trace, custom_span, gen_trace_id, trace
from agents.tracing.scope import Scope

from ..errors import ChatLabError, StreamSentenceError
from ..failures import approvals_needed, describe_failure
from ..guardrails.engine import Guardrails
from ..guardrails.judge import ModelJudge
from ..models import Backend
from ..store.items import utc_now
from .expressions import Compiled, ExpressionError, as_text

TRACE_SOURCE = "agent-builder"  # Agent Builder's ``__trace_source__``: tools that read its traces find ours
OUTPUT_LIMIT = 500
AGENTS_KEPT = 256  # agents a chat workflow keeps built (instructions templated per turn would grow it)


class NodeFailed(StreamSentenceError):
    """A node could not run; the message says why (the run stops there, and the chat shows it)."""

    retryable = True


@dataclass
class NodeRun:
    """One node's run: its output (JSON), the edge it left by, how long it took."""

    node_id: str
    node_type: str
    name: str
    index: int  # its place in the run (a node in a loop runs more than once)
    started_at: datetime = field(default_factory=utc_now)
    status: str = "running"  # completed | failed | paused | cancelled
    output: Any = None
    edge: str | None = None
    error: str | None = None
    duration_ms: float | None = None
    span_id: str | None = None
    model: str | None = None  # an agent node's model name, as the node names it

    def summary(self, limit: int = 160) -> str:
        """A line for the chat's task list."""
        if self.error:
            return self.error
        text = output_text(self.output)
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class NodeStarted:
    run: NodeRun


@dataclass
class AgentStreaming:
    """An agent node's run, streaming; ``shown``: its reply belongs in the chat."""

    run: NodeRun
    node: Any
    result: RunResultStreaming
    shown: bool


@dataclass
class NodeFinished:
    run: NodeRun


@dataclass
class ApprovalNeeded:
    run: NodeRun
    message: str
    paused: Paused


Step = NodeStarted | AgentStreaming | NodeFinished | ApprovalNeeded


@dataclass
class Paused:
    """What resuming a run at an approval needs (stored as JSON in ``workflow_runs``)."""

    node_id: str
    input_as_text: str
    state: dict[str, Any]
    outputs: dict[str, Any]
    last_output: Any
    loops: dict[str, int]
    added_history: list[Any]
    index: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> Paused:
        return cls(**json.loads(text))


@dataclass
class WorkflowResult:
    """What a run did: ``status`` (completed, failed, paused), the ``output`` and its text, the
    final ``state`` and every node run in order (``result["classify"]`` is a node's last run).
    Paused at an approval, ``await result.resume("approve")`` (or "reject") goes on."""

    workflow: str
    version: int | None
    status: str
    output: Any
    output_text: str
    state: dict[str, Any]
    nodes: list[NodeRun]
    error: str | None = None
    trace_id: str | None = None
    approval: str | None = None  # the question of the approval it paused at
    resume_with: Callable[[str], Any] | None = field(default=None, repr=False)

    def __getitem__(self, node_id: str) -> NodeRun:
        for run in reversed(self.nodes):
            if run.node_id == node_id:
                return run
        raise KeyError(f"node {node_id!r} did not run (the path was {' → '.join(self.path)})")

    @property
    def path(self) -> list[str]:
        """The node ids in the order they ran."""
        return [run.node_id for run in self.nodes]

    async def resume(self, decision: str) -> WorkflowResult:
        if self.resume_with is None:
            raise ChatLabError(f"This run is {self.status}, not paused at an approval: there is nothing to resume.")
        result: WorkflowResult = await self.resume_with(decision)
        return result

    def df(self) -> Any:
        """One row per node run."""
        import pandas as pd

        return pd.DataFrame([{**asdict(run), "output": json.dumps(run.output, ensure_ascii=False, default=str)} for run in self.nodes])

    def _repr_html_(self) -> str:
        html: str = self.df()._repr_html_()
        return html


@dataclass
class Services:
    """What nodes use from a lab: models, tools, judges, documents and MCP servers."""

    model_for: Callable[[str | None], Any]  # a node's model name -> the Model (or name) to run
    tools: dict[str, Tool] = field(default_factory=dict)
    guardrails_for: Callable[[dict[str, Any]], Any] | None = None  # config -> Guardrails
    documents: Any = None  # .search(query, k) -> hits
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    max_turns: int = 10
    hosted_tools: bool = False  # the provider runs OpenAI's hosted tools (the Responses API)
    backend: Any = None  # the lab's Backend, for failure sentences that name the provider


def schema_problem(schema: dict[str, Any]) -> str | None:
    """What makes ``schema`` no valid JSON Schema, or None."""
    import jsonschema  # here, not at import: with rfc3987-syntax installed (JupyterLab brings it) importing it takes ~1.5 s

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        return f"{exc.message} (at {'/'.join(map(str, exc.absolute_path)) or 'the top'})"
    return None


class JsonSchemaOutput(AgentOutputSchemaBase):
    """An agent's structured output from a JSON Schema (as Agent Builder stores it)."""

    def __init__(self, schema: dict[str, Any], name: str = "output") -> None:
        import jsonschema  # as in schema_problem

        self.schema, self._name = schema, name
        # Built once: jsonschema.validate() checks the schema itself on every call (a few ms).
        self._validator = jsonschema.validators.validator_for(schema)(schema)
        try:
            self._strict: dict[str, Any] | None = ensure_strict_json_schema(json.loads(json.dumps(schema)))
        except Exception:
            self._strict = None

    def is_plain_text(self) -> bool:
        return False

    def name(self) -> str:
        return self._name

    def json_schema(self) -> dict[str, Any]:
        return self._strict or self.schema

    def is_strict_json_schema(self) -> bool:
        return self._strict is not None

    def validate_json(self, json_str: str) -> Any:
        try:
            value = json.loads(json_str)
        except ValueError as exc:
            raise ModelBehaviorError(f"the output is not JSON: {exc}") from None
        from jsonschema.exceptions import best_match  # imported already: __init__ built the validator

        error = best_match(self._validator.iter_errors(value))
        if error is not None:
            raise ModelBehaviorError(f"the output does not match the node's schema: {error.message}")
        return value


def output_text(output: Any) -> str:
    """The text of a node's output: ``output_text``, ``safe_text``, or the value as JSON."""
    if isinstance(output, dict):
        for key in ("output_text", "safe_text", "input_as_text"):
            if isinstance(output.get(key), str):
                return str(output[key])
    return "" if output is None else as_text(output)


class Execution:
    """One run of a workflow. ``history``: the conversation as agent input items (the chat's),
    ``input_text``: the user's message; ``metadata``: trace metadata (thread, user, lab)."""

    def __init__(
        self, workflow: Any, services: Services, *, input_text: str, history: list[Any] | None = None,
        compiled: Compiled | None = None, version: int | None = None, trace_id: str | None = None, group_id: str | None = None,
        metadata: dict[str, Any] | None = None, run_config: RunConfig | None = None, context: Any = None,
        hooks: Any = None, paused: Paused | None = None, tracing_disabled: bool = False, agents: dict[tuple[str, str], Agent] | None = None,
    ) -> None:
        self.workflow, self.services, self.version = workflow, services, version
        self.compiled = compiled or workflow.compiled()
        self.agents = agents if agents is not None else {}  # (node id, instructions) -> its Agent: runs of one graph and services share it
        self.input_text = paused.input_as_text if paused else input_text
        self.history = list(history if history is not None else [{"role": "user", "content": input_text}])
        self.state: dict[str, Any] = paused.state if paused else workflow.state_defaults()
        self.outputs: dict[str, Any] = paused.outputs if paused else {}
        self.last_output: Any = paused.last_output if paused else None
        self.loops: dict[str, int] = paused.loops if paused else {}
        self.added_history: list[Any] = paused.added_history if paused else []
        self.runs: list[NodeRun] = []
        self.status = "running"
        self.output: Any = None
        self.error: str | None = None
        self.usage: list[Any] = []  # each agent node's usage
        self._index = paused.index if paused else 0
        self._resume_at = paused.node_id if paused else None
        self.run_config, self.context, self.hooks = run_config or RunConfig(), context, hooks
        self.trace_metadata = {
            **workflow.metadata, "workflow_id": workflow.metadata.get("workflow_id") or workflow.name,
            "workflow_version": "draft" if version is None else str(version), "__trace_source__": workflow.metadata.get("__trace_source__", TRACE_SOURCE),
            **(metadata or {}),
        }
        self._trace: Trace = trace(workflow.name, trace_id=trace_id or gen_trace_id(), group_id=group_id, metadata=self.trace_metadata,
                                   disabled=tracing_disabled)
        self.trace_id = self._trace.trace_id

    def total_usage(self) -> Usage:
        total = Usage()
        for usage in self.usage:
            total.add(usage)
        return total

    def result(self) -> WorkflowResult:
        return WorkflowResult(
            workflow=self.workflow.name, version=self.version, status=self.status, output=self.output, output_text=output_text(self.output),
            state=self.state, nodes=list(self.runs), error=self.error, trace_id=self.trace_id,
        )

    # -- the run -----------------------------------------------------------------------------
    async def steps(self, decision: str | None = None) -> AsyncGenerator[Step, None]:
        """Run from the start (or, resumed, from the approval with ``decision`` "approve" or
        "reject") to an end, a failure, or the next approval."""
        self._trace.start(mark_as_current=False)
        try:
            node_id: str | None
            if self._resume_at is not None:
                if decision not in ("approve", "reject"):
                    raise ChatLabError(f"A paused run resumes with 'approve' or 'reject', not {decision!r}.")
                run = self._new_run(self.workflow.node(self._resume_at))
                run.status, run.edge, run.output, run.duration_ms = "completed", decision, {"decision": decision}, 0.0
                self._finish_span(run, None)
                self.outputs[run.node_id] = run.output
                yield NodeFinished(run)
                node_id = self.workflow.next_id(self._resume_at, decision)
            else:
                node_id = self.workflow.start_node().id
            while node_id is not None:
                node = self.workflow.node(node_id)
                run = self._new_run(node)
                span = custom_span(node.name, data={}, parent=self._trace)
                span.start(mark_as_current=False)
                run.span_id = span.span_id
                t0 = time.perf_counter()
                try:
                    yield NodeStarted(run)
                    t0 = time.perf_counter()  # after the consumer has shown the start
                    if node.type == "agent":
                        async for step in self._agent(node, run, span):
                            yield step
                    elif node.type == "user_approval":
                        message = self.compiled.templates[node.id, "message"].render(self._scope())
                        run.status, run.output, run.duration_ms = "paused", {"message": message}, (time.perf_counter() - t0) * 1000
                        self._finish_span(run, span)
                        self.status = "paused"
                    else:
                        await self._node(node, run)
                except NodeFailed as exc:
                    self._failed(run, span, str(exc), t0)
                    yield NodeFinished(run)
                    return
                except ExpressionError as exc:
                    self._failed(run, span, f"Node {node.name!r}: {exc}", t0)
                    yield NodeFinished(run)
                    return
                except (GeneratorExit, asyncio.CancelledError):
                    run.status, run.duration_ms, self.status = "cancelled", (time.perf_counter() - t0) * 1000, "cancelled"
                    self._finish_span(run, span)
                    raise
                except Exception as exc:
                    message, _ = describe_failure(exc, self.services.backend)
                    self._failed(run, span, f"Node {node.name!r} failed: {message}", t0)
                    yield NodeFinished(run)
                    return
                if self.status == "paused":  # outside the try: whoever reads the steps may stop here
                    yield ApprovalNeeded(run, run.output["message"], self._paused(node.id))
                    return
                run.status = "completed"
                run.duration_ms = (time.perf_counter() - t0) * 1000
                self._finish_span(run, span)
                self.outputs[node.id] = run.output
                self.last_output = run.output
                yield NodeFinished(run)
                node_id = self.workflow.next_id(node.id, run.edge)
            self.status = "completed"
            self.output = self.last_output
        finally:
            if self.status == "running":
                self.status = "cancelled"
            self._trace.finish(reset_current=False)

    def _new_run(self, node: Any) -> NodeRun:
        run = NodeRun(node.id, node.type, node.name, self._index)
        self._index += 1
        self.runs.append(run)
        return run

    def _failed(self, run: NodeRun, span: Span[Any], message: str, t0: float) -> None:
        run.status, run.error, run.duration_ms = "failed", message, (time.perf_counter() - t0) * 1000
        self.status, self.error = "failed", message
        self._finish_span(run, span)

    def _finish_span(self, run: NodeRun, span: Span[Any] | None) -> None:
        if span is None:
            return
        span.span_data.data = {
            "node_id": run.node_id, "node_type": run.node_type, "status": run.status, "edge": run.edge, "error": run.error,
            "output": _clipped(run.output), "model": run.model,
            **{k: self.trace_metadata[k] for k in ("workflow_id", "workflow_version", "__trace_source__")},
        }
        if run.error:
            span.set_error({"message": run.error, "data": None})
        span.finish(reset_current=False)

    def _paused(self, node_id: str) -> Paused:
        return Paused(node_id, self.input_text, self.state, self.outputs, self.last_output, self.loops, self.added_history, self._index)

    def _scope(self) -> dict[str, Any]:
        return {"input": self.last_output, "state": self.state, "workflow": {"input_as_text": self.input_text}, "nodes": self.outputs}

    def _expression(self, node_id: str, what: str) -> Any:
        return self.compiled.expressions[node_id, what].evaluate(self._scope())

    # -- the nodes ---------------------------------------------------------------------------
    async def _node(self, node: Any, run: NodeRun) -> None:
        match node.type:
            case "start":
                run.output = {"input_as_text": self.input_text, "output_text": self.input_text}
            case "end":
                template = self.compiled.templates.get((node.id, "output"))
                run.output = {"output_text": template.render(self._scope())} if template else self.last_output
            case "note":
                run.output = self.last_output
            case "if_else":
                run.output = self.last_output
                run.edge = next((label for label in node.branches if self.compiled.expressions[node.id, f"branch {label!r}"].condition(self._scope())), "else")
            case "while":
                run.output = self.last_output
                count = self.loops.get(node.id, 0)
                holds = self.compiled.expressions[node.id, "condition"].condition(self._scope())
                if holds and count < node.max_iterations:
                    self.loops[node.id], run.edge = count + 1, "body"
                else:
                    # At the guard the loop ends as if the condition were false, and says so.
                    run.output = {"iterations": count, "stopped_at_max_iterations": holds}
                    self.loops[node.id], run.edge = 0, "done"
            case "set_state":
                declared = {v.name: v for v in self.workflow.state}
                for variable in node.assignments:
                    value, kind = self._expression(node.id, f"assignment to {variable!r}"), declared[variable]
                    if not kind.holds(value):
                        raise NodeFailed(f"Node {node.name!r}: state.{variable} is a {kind.type}, but `{node.assignments[variable]}` gave "
                                         f"{as_text(value)[:200]}; convert it (string(x), int(x), double(x)) or change the variable's type.")
                    self.state[variable] = kind.held(value)
                run.output = self.last_output
            case "transform":
                if node.expression is not None:
                    run.output = self._expression(node.id, "expression")
                else:
                    run.output = {key: self._expression(node.id, f"expression {key!r}") for key in node.expressions_}
            case "guardrails":
                await self._guardrails(node, run)
            case "file_search":
                await self._file_search(node, run)
            case "mcp":
                await self._mcp(node, run)
            case other:  # pragma: no cover - the graph refuses unknown types
                raise NodeFailed(f"Node {node.name!r}: no runner for node type {other!r}.")

    async def _agent(self, node: Any, run: NodeRun, span: Span[Any]) -> AsyncIterator[Step]:
        run.model = node.model
        instructions = self.compiled.templates[node.id, "instructions"].render(self._scope())
        agent = self.agents.get((node.id, instructions))
        if agent is None:  # building one checks its settings and output schema: a millisecond
            if len(self.agents) >= AGENTS_KEPT:
                self.agents.clear()
            agent = self.agents[node.id, instructions] = Agent(
                name=node.name, instructions=instructions or None, model=self.services.model_for(node.model), model_settings=_model_settings(node),
                tools=self._tools(node), output_type=JsonSchemaOutput(node.output_schema, f"{node.id}_output") if node.output_schema else None,
            )
        given: list[Any] = [*self.history, *self.added_history] if node.include_history else [{"role": "user", "content": self.input_text}]
        if (node.id, "message") in self.compiled.templates:
            given.append({"role": "user", "content": self.compiled.templates[node.id, "message"].render(self._scope())})
        result: Any
        if not node.shown():
            # Nothing of it streams to the chat: one awaited run, without the streaming machinery.
            with _current(self._trace, span):  # the agent's spans are the node span's children
                result = await Runner.run(agent, given, context=self.context, max_turns=self.services.max_turns, run_config=self.run_config)
            self.usage.append(result.context_wrapper.usage)
        else:
            with _current(self._trace, span):
                result = Runner.run_streamed(agent, given, context=self.context, hooks=self.hooks, max_turns=self.services.max_turns,
                                             run_config=self.run_config)
            try:
                yield AgentStreaming(run, node, result, True)
                async for _ in result.stream_events():  # what the consumer left unread
                    pass
            finally:
                if not result.is_complete:
                    result.cancel()
                self.usage.append(result.context_wrapper.usage)
        if result.interruptions:
            raise NodeFailed(approvals_needed(result.interruptions))
        final = result.final_output
        if node.output_schema is not None:
            run.output = {"output_text": json.dumps(final, ensure_ascii=False), "output_parsed": final}
        else:
            run.output = {"output_text": final if isinstance(final, str) else as_text(final)}
        self.added_history += [item.to_input_item() for item in result.new_items]

    def _tools(self, node: Any) -> list[Tool]:
        tools: list[Tool] = []
        for spec in node.tools:
            name = spec if isinstance(spec, str) else spec.get("name") if spec.get("type") == "function" else None
            if name is not None or isinstance(spec, str):
                if name not in self.services.tools:
                    known = ", ".join(sorted(self.services.tools)) or "none"
                    raise NodeFailed(f"Node {node.name!r} uses the tool {name!r}, which this lab does not have (its tools: {known}); "
                                     "pass it with ChatLab(tools=[...]) or wf.run(..., tools=[...]).")
                tools.append(self.services.tools[name])
                continue
            tools.append(self._hosted_tool(node, spec))  # a dict: only a name is a str
        return tools

    def _hosted_tool(self, node: Any, spec: dict[str, Any]) -> Tool:
        kind = spec.get("type")
        if kind == "file_search" and self.services.documents is not None:
            return self.services.documents.as_tool(max_results=int(spec.get("max_num_results") or 5))
        if not self.services.hosted_tools:
            what = {"file_search": "OpenAI vector stores (add local documents with lab.documents.add(...) to search those instead)",
                    "web_search": "OpenAI's web search", "mcp": "a hosted MCP server"}.get(str(kind), f"the hosted tool {kind!r}")
            raise NodeFailed(f"Node {node.name!r} needs {what}, which runs only on OpenAI's Responses API; this lab's model cannot run it.")
        if kind == "file_search":
            return FileSearchTool(vector_store_ids=list(spec.get("vector_store_ids") or []), max_num_results=spec.get("max_num_results"))
        if kind == "web_search":
            return WebSearchTool()
        if kind == "mcp":
            config = {k: v for k, v in spec.items() if k in ("type", "server_label", "server_url", "allowed_tools", "require_approval", "headers")}
            return HostedMCPTool(tool_config=config)  # type: ignore[arg-type]
        raise NodeFailed(f"Node {node.name!r}: unknown tool type {kind!r}; use a function tool's name, file_search, web_search or mcp.")

    def _text_in(self, node: Any, what: str) -> str:
        if (node.id, what) in self.compiled.expressions:
            return as_text(self._expression(node.id, what))
        return output_text(self.last_output) or self.input_text

    async def _guardrails(self, node: Any, run: NodeRun) -> None:
        if self.services.guardrails_for is None:
            raise NodeFailed(f"Node {node.name!r}: this run has no guardrails engine.")
        guardrails = self.services.guardrails_for(node.config)
        text = self._text_in(node, "text")
        checked, results = text, list[Any]()
        history = [m for m in self.history if isinstance(m, dict) and isinstance(m.get("content"), str)]
        for stage in ("pre_flight", "input", "output"):
            if guardrails.has(stage):
                report = await guardrails.run(stage, checked, history=history, tool_outputs=self._sources())
                checked, results = report.checked_text, [*results, *report.results]
        tripped = [r for r in results if r.tripwire_triggered]
        run.edge = "fail" if tripped else "pass"
        verdicts = [{"guardrail_name": r.name, "flagged": r.tripwire_triggered, "confidence": r.confidence, "execution_failed": r.execution_failed,
                     "info": r.stored_info()} for r in results]
        if tripped:
            run.output = {"failed": True, "failures": [v for v in verdicts if v["flagged"]], "output_text": f"Stopped by {', '.join(r.name for r in tripped)}."}
        else:
            run.output = {"safe_text": checked, "output_text": checked, "checks": verdicts}
            if checked != text and text == self.input_text:
                self._scrub(text, checked)

    def _sources(self) -> list[str]:
        """What the run retrieved so far (file search hits): the reference of Hallucination Detection."""
        return [hit["text"] for run in self.runs if run.node_type == "file_search" and isinstance(run.output, dict)
                for hit in run.output.get("results", [])]

    def _scrub(self, text: str, masked: str) -> None:
        """After masking the user's message, agents get the masked one (as the exports' scrubbing does)."""
        self.input_text = masked
        for i in range(len(self.history) - 1, -1, -1):
            item = self.history[i]
            if isinstance(item, dict) and item.get("role") == "user":
                self.history[i] = {**item, "content": masked}
                break

    async def _file_search(self, node: Any, run: NodeRun) -> None:
        documents = self.services.documents
        if documents is None:
            raise NodeFailed(f"Node {node.name!r} searches the lab's documents, and there are none: add some with lab.documents.add([paths]).")
        query = self._text_in(node, "query") if node.query is not None else self.input_text
        hits = await documents.asearch(query, k=node.max_results)
        run.output = {"query": query, "results": [h.as_dict() for h in hits], "output_text": "\n\n".join(h.text for h in hits)}

    async def _mcp(self, node: Any, run: NodeRun) -> None:
        server = self.services.mcp_servers.get(node.server)
        if server is None:
            known = ", ".join(sorted(self.services.mcp_servers)) or "none"
            raise NodeFailed(f"Node {node.name!r} calls the MCP server {node.server!r}, which this lab is not connected to (its servers: {known}); "
                             "pass it with ChatLab(mcp_servers=[...]).")
        arguments = {key: self._expression(node.id, f"argument {key!r}") for key in node.arguments}
        try:
            result = await server.call_tool(node.tool, arguments)
        except Exception as exc:
            raise NodeFailed(f"Node {node.name!r}: the MCP tool {node.tool!r} on {node.server!r} failed: {type(exc).__name__}: {exc}") from None
        texts = [getattr(part, "text", "") for part in getattr(result, "content", []) or []]
        if getattr(result, "isError", False):
            raise NodeFailed(f"Node {node.name!r}: the MCP tool {node.tool!r} answered with an error: {' '.join(texts)[:300]}")
        run.output = {"output_text": "\n".join(t for t in texts if t), "result": getattr(result, "structuredContent", None)}


def _model_settings(node: Any) -> ModelSettings:
    return ModelSettings(**node.model_settings)  # checked when the graph loaded


@contextlib.contextmanager
def _current(trace: Trace, span: Span[Any]) -> Iterator[None]:
    # Set only while the run is created: its task copies the context, and a contextvar set in a
    # generator would leak into whatever resumes it.
    trace_token, span_token = Scope.set_current_trace(trace), Scope.set_current_span(span)
    try:
        yield
    finally:
        Scope.reset_current_span(span_token)
        Scope.reset_current_trace(trace_token)


def _clipped(output: Any) -> Any:
    text = json.dumps(output, ensure_ascii=False, default=str)
    return output if len(text) <= 4 * OUTPUT_LIMIT else text[: 4 * OUTPUT_LIMIT] + "…"


def services_for(
    backend: Backend, *, tools: Sequence[Any] = (), mcp_servers: Sequence[Any] = (), max_turns: int = 10, documents: Any = None,
    judge: Any = None,
) -> Services:
    """The services of a lab with ``backend``: node models resolve like ``ChatLab(model=)``, and
    guardrails nodes judge with the lab's model when it is a real provider."""
    judge = judge or (ModelJudge(backend.model) if backend.kind != "offline" else None)
    engines: dict[str, Guardrails] = {}
    models: dict[str | None, Any] = {}

    def guardrails_for(config: dict[str, Any]) -> Guardrails:
        key = json.dumps(config, sort_keys=True)
        if key not in engines:
            engines[key] = Guardrails(config, judge=judge)
        return engines[key]

    def model_for(name: str | None) -> Any:
        if name not in models:
            models[name] = backend.model_named(name)
        return models[name]

    return Services(
        model_for=model_for, tools={t.name: t for t in tools if hasattr(t, "name")}, guardrails_for=guardrails_for, documents=documents,
        mcp_servers={s.name: s for s in mcp_servers}, max_turns=max_turns, hosted_tools=backend.kind == "openai", backend=backend,
    )


async def run_workflow(
    workflow: Any, text: str, services: Services, *, approvals: Mapping[str, str] | None = None, metadata: dict[str, Any] | None = None,
    tracing_disabled: bool = False, version: int | None = None, paused: Paused | None = None, decision: str | None = None,
    history: list[Any] | None = None,
) -> WorkflowResult:
    """Run ``workflow`` on ``text`` outside a chat, to the end or to an approval not answered in
    ``approvals`` (``{node_id: "approve" | "reject"}``)."""
    compiled = workflow.compiled()
    history = history if history is not None else [{"role": "user", "content": text}]
    earlier: list[NodeRun] = []  # the runs before an approval answered here
    while True:
        execution = Execution(workflow, services, input_text=text, history=history, compiled=compiled, version=version, metadata=metadata,
                              paused=paused, tracing_disabled=tracing_disabled)
        needed: ApprovalNeeded | None = None
        async for step in execution.steps(decision):
            if isinstance(step, ApprovalNeeded):
                needed = step
        result = execution.result()
        result.nodes[:0] = earlier
        if needed is None:
            return result
        answer = (approvals or {}).get(needed.run.node_id)
        if answer is None:
            result.approval = needed.message
            snapshot = needed.paused

            async def resume(choice: str, snapshot: Paused = snapshot) -> WorkflowResult:
                return await run_workflow(workflow, text, services, approvals=approvals, metadata=metadata, tracing_disabled=tracing_disabled,
                                          version=version, paused=snapshot, decision=choice, history=history)

            result.resume_with = resume
            return result
        paused, decision, earlier = needed.paused, answer, result.nodes
