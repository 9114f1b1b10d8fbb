"""The workflow graph: typed nodes (Agent Builder's set), edges, state, checked when it loads.

A workflow is data. It loads from JSON and saves back to the same bytes; everything that can be
wrong with it (a dangling edge, an unreachable node, a loop not made by a ``while``, a CEL syntax
error, an unknown variable) is a ``ChatLabError`` when it loads, naming the node to change.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from agents import ModelSettings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ChatLabError
from ..guardrails.config import load_config
from ..guardrails.engine import run_sync
from ..models import SETTINGS, resolve_backend
from .agent_builder import ImportReport, read_export, write_python
from .diff import WorkflowDiff, diff
from .expressions import Compiled, Names, compile_expression, compile_template
from .run import WorkflowResult, run_workflow, schema_problem, services_for
from .view import GraphView, draw

NODE_TYPES = ("start", "agent", "guardrails", "if_else", "while", "user_approval", "set_state", "transform", "file_search", "mcp", "note", "end")
STATE_TYPES: dict[str, type | tuple[type, ...]] = {"string": str, "number": (int, float), "boolean": bool, "object": dict, "list": list}


class WorkflowError(ChatLabError):
    """A workflow that cannot load: the message names the node and what to change."""


class _Model(BaseModel):
    """Strict, and refusing with a ``WorkflowError`` sentence, not a pydantic traceback."""

    model_config = ConfigDict(extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            what = f"{type(self).__name__}({data['id']!r})" if isinstance(data.get("id"), str) else type(self).__name__
            raise WorkflowError(f"{what}: {_first_error(exc)}") from None


class StateVariable(_Model):
    """A workflow variable, read as ``state.<name>`` (Agent Builder's types)."""

    name: str = Field(pattern=r"^[A-Za-z_]\w{0,63}$", kw_only=False)
    type: Literal["string", "number", "boolean", "object", "list"] = Field("string", kw_only=False)
    default: Any = Field(None, kw_only=False)

    def __init__(self, name: str | None = None, type: str | None = None, default: Any = None, **data: Any) -> None:
        given = {"name": name, "type": type, "default": default}
        super().__init__(**{k: v for k, v in given.items() if v is not None}, **data)

    @model_validator(mode="after")
    def _default_has_type(self) -> StateVariable:
        if not self.holds(self.default):
            raise WorkflowError(f"state variable {self.name!r} is a {self.type}, but its default is {json.dumps(self.default)}")
        return self

    def holds(self, value: Any) -> bool:
        """Whether ``value`` has this variable's type (null fits every type, as in Agent Builder)."""
        return value is None or (isinstance(value, STATE_TYPES[self.type]) and not (self.type == "number" and isinstance(value, bool)))

    def held(self, value: Any) -> Any:
        """``value`` as the state keeps it: a number as a double (CEL does not mix int and double)."""
        return float(value) if self.type == "number" and value is not None else value


class Edge(_Model):
    """From one node to the next; ``label`` picks the branch of an if/else (its branch name or
    ``else``), while (``body``/``done``), guardrails (``pass``/``fail``) or approval (``approve``/``reject``)."""

    source: str = Field(kw_only=False)
    target: str = Field(kw_only=False)
    label: str | None = Field(None, kw_only=False)

    def __init__(self, source: str | None = None, target: str | None = None, label: str | None = None, **data: Any) -> None:
        given = {"source": source, "target": target, "label": label}
        super().__init__(**{k: v for k, v in given.items() if v is not None}, **data)


def chain(*node_ids: str) -> list[Edge]:
    """Edges ``a → b → c`` (unlabelled): ``edges=[*chain("start", "reply", "end")]``."""
    return [Edge(a, b) for a, b in itertools.pairwise(node_ids)]


class Node(_Model):
    """What every node has: ``id`` (a name for edges and ``nodes.<id>``), ``type`` and ``name``."""

    id: str = Field(pattern=r"^[A-Za-z_]\w{0,63}$", kw_only=False)  # positional, and a CEL name: nodes.<id>
    type: str
    name: str = ""
    # The edge labels this node type leaves by (None: one unlabelled edge).
    EXITS: ClassVar[tuple[str | None, ...]] = (None,)

    def __init__(self, id: str | None = None, **data: Any) -> None:
        super().__init__(**({"id": id} if id is not None else {}), **data)

    @model_validator(mode="after")
    def _named(self) -> Node:
        if not self.name:
            self.name = self.id
        return self

    def exits(self) -> tuple[str | None, ...]:
        return self.EXITS

    def expressions(self) -> Iterator[tuple[str, str]]:
        """(what, CEL source) for every expression the node holds."""
        return iter(())

    def templates(self) -> Iterator[tuple[str, str]]:
        """(what, text) for every ``{{ }}`` template the node holds."""
        return iter(())


class StartNode(Node):
    """Where a run begins: the user's message becomes ``workflow.input_as_text``."""

    type: Literal["start"] = "start"


class AgentNode(Node):
    """An Agents SDK agent. ``instructions`` may use ``{{state.x}}`` and ``{{input.output_text}}``;
    ``model`` is a model name (resolved like ``ChatLab(model=)``; offline, the lab's model runs it);
    ``output_schema`` is a JSON Schema object, and the agent's output is then ``output_parsed``.
    ``message``: a user message (a template) sent after the history, as exports write
    ``Original question: {workflow['input_as_text']}``.
    ``tools``: names of the lab's function tools, or hosted tool specs (``{"type": "file_search",
    ...}``, ``{"type": "mcp", ...}``, ``{"type": "web_search"}``). ``show_in_chat``: whether its
    reply streams to the chat (default: text agents do, structured ones show as a task)."""

    type: Literal["agent"] = "agent"
    instructions: str = ""
    model: str | None = None
    model_settings: dict[str, Any] = Field(default_factory=dict)
    tools: list[str | dict[str, Any]] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    message: str | None = None
    include_history: bool = True
    show_in_chat: bool | None = None

    def templates(self) -> Iterator[tuple[str, str]]:
        yield "instructions", self.instructions
        if self.message is not None:
            yield "message", self.message

    def shown(self) -> bool:
        return self.show_in_chat if self.show_in_chat is not None else self.output_schema is None

    @model_validator(mode="after")
    def _schema_is_a_json_schema_object(self) -> AgentNode:
        if self.output_schema is None:
            return self
        if self.output_schema.get("type") != "object":
            raise WorkflowError(f'agent {self.id!r}: output_schema must be a JSON Schema object ({{"type": "object", "properties": {{...}}}})')
        if (problem := schema_problem(self.output_schema)) is not None:
            raise WorkflowError(f"agent {self.id!r}: output_schema is not a valid JSON Schema: {problem}. Fix it and define the workflow again.")
        return self

    @model_validator(mode="after")
    def _settings_are_the_sdks(self) -> AgentNode:
        # The SDK drops a key it does not know ("temprature" ran without a temperature) and checks
        # the values only when the node runs.
        unknown = sorted(set(self.model_settings) - set(SETTINGS))
        if unknown:
            raise WorkflowError(f"agent {self.id!r}: model_settings has no {unknown[0]!r}; the Agents SDK's settings are {', '.join(SETTINGS)}.")
        try:
            ModelSettings(**self.model_settings)
        except ValidationError as exc:
            raise WorkflowError(f"agent {self.id!r}: model_settings: {_first_error(exc)}") from None
        return self


class GuardrailsNode(Node):
    """Runs an openai-guardrails config (either JSON form) on ``text`` (a CEL expression; default:
    the previous node's text). Leaves by ``pass`` (output ``{"safe_text"}``, masked) or ``fail``
    (``{"failed": true, "failures": [...]}``, as Agent Builder's exports build it)."""

    type: Literal["guardrails"] = "guardrails"
    config: dict[str, Any]
    text: str | None = None
    EXITS: ClassVar[tuple[str | None, ...]] = ("pass", "fail")

    def expressions(self) -> Iterator[tuple[str, str]]:
        if self.text is not None:
            yield "text", self.text

    @model_validator(mode="after")
    def _config_loads(self) -> GuardrailsNode:
        try:
            load_config(self.config)
        except ChatLabError as exc:
            raise WorkflowError(f"Guardrails node {self.id!r}: {exc}") from None
        return self


class IfElseNode(Node):
    """Ordered branches, ``{label: CEL condition}``; the first true one is taken, else ``else``."""

    type: Literal["if_else"] = "if_else"
    branches: dict[str, str]

    def exits(self) -> tuple[str | None, ...]:
        return (*self.branches, "else")

    def expressions(self) -> Iterator[tuple[str, str]]:
        for label, condition in self.branches.items():
            yield f"branch {label!r}", condition

    @model_validator(mode="after")
    def _has_branches(self) -> IfElseNode:
        if not self.branches:
            raise WorkflowError(f'if_else {self.id!r} has no branches: give {{"label": "CEL condition"}}')
        if "else" in self.branches:
            raise WorkflowError(f"if_else {self.id!r}: 'else' is the name of the fallback edge, not a branch")
        return self


class WhileNode(Node):
    """Runs the ``body`` edge's nodes while ``condition`` holds (at most ``max_iterations`` times),
    then leaves by ``done``. The body's last node leads back to this node."""

    type: Literal["while"] = "while"
    condition: str
    max_iterations: int = Field(default=10, ge=1, le=10_000)
    EXITS: ClassVar[tuple[str | None, ...]] = ("body", "done")

    def expressions(self) -> Iterator[tuple[str, str]]:
        yield "condition", self.condition


class UserApprovalNode(Node):
    """Pauses the run and asks the user to approve or reject ``message`` (a template)."""

    type: Literal["user_approval"] = "user_approval"
    message: str = "Approve this step?"
    EXITS: ClassVar[tuple[str | None, ...]] = ("approve", "reject")

    def templates(self) -> Iterator[tuple[str, str]]:
        yield "message", self.message


class SetStateNode(Node):
    """Assigns state: ``{variable: CEL expression}``, in order."""

    type: Literal["set_state"] = "set_state"
    assignments: dict[str, str]

    def expressions(self) -> Iterator[tuple[str, str]]:
        for name, expression in self.assignments.items():
            yield f"assignment to {name!r}", expression


class TransformNode(Node):
    """Reshapes data: ``expressions`` builds an object key by key, ``expression`` gives the whole
    output (Agent Builder's Expressions and Object modes)."""

    type: Literal["transform"] = "transform"
    expressions_: dict[str, str] | None = Field(default=None, alias="expressions")
    expression: str | None = None
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    def expressions(self) -> Iterator[tuple[str, str]]:
        if self.expression is not None:
            yield "expression", self.expression
        for key, source in (self.expressions_ or {}).items():
            yield f"expression {key!r}", source

    @model_validator(mode="after")
    def _one_mode(self) -> TransformNode:
        if (self.expression is None) == (self.expressions_ is None):
            raise WorkflowError(f"transform {self.id!r}: give either expression (one CEL value) or expressions ({{key: CEL}}), not both or neither")
        return self


class FileSearchNode(Node):
    """Retrieval over the lab's documents: the ``max_results`` best chunks for ``query`` (CEL;
    default the user's message). Hits show as sources in the chat."""

    type: Literal["file_search"] = "file_search"
    query: str | None = None
    max_results: int = Field(default=5, ge=1, le=100)
    vector_store_ids: list[str] = Field(default_factory=list)

    def expressions(self) -> Iterator[tuple[str, str]]:
        if self.query is not None:
            yield "query", self.query


class MCPNode(Node):
    """One tool call on one of the lab's MCP servers (``server``: its name); ``arguments`` are
    CEL expressions per argument. Credentials are injected server-side, never seen here."""

    type: Literal["mcp"] = "mcp"
    server: str
    tool: str
    arguments: dict[str, str] = Field(default_factory=dict)

    def expressions(self) -> Iterator[tuple[str, str]]:
        for key, source in self.arguments.items():
            yield f"argument {key!r}", source


class NoteNode(Node):
    """Documentation on the canvas; never runs and has no edges."""

    type: Literal["note"] = "note"
    text: str = ""
    EXITS: ClassVar[tuple[str | None, ...]] = ()


class EndNode(Node):
    """Finishes the run. ``output``: a template over state (``"Done: {{state.summary}}"``), shown
    in the chat; without one, the previous node's output is the workflow's."""

    type: Literal["end"] = "end"
    output: str | None = None
    EXITS: ClassVar[tuple[str | None, ...]] = ()

    def templates(self) -> Iterator[tuple[str, str]]:
        if self.output is not None:
            yield "output", self.output


AnyNode = Annotated[
    StartNode | AgentNode | GuardrailsNode | IfElseNode | WhileNode | UserApprovalNode | SetStateNode | TransformNode
    | FileSearchNode | MCPNode | NoteNode | EndNode,
    Field(discriminator="type"),
]


class Workflow(_Model):
    """A graph of nodes and edges, with state variables and a start node.

        >>> wf = Workflow(name="echo", nodes=[StartNode("start"), AgentNode("reply"), EndNode("end")],
        ...               edges=chain("start", "reply", "end"))

    ``metadata`` keeps what an import found (Agent Builder's ``workflow_id``); ``start`` is the
    start node's id (the only ``start`` node when not given).
    """

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    nodes: list[AnyNode]
    edges: list[Edge] = Field(default_factory=list)
    state: list[StateVariable] = Field(default_factory=list)
    start: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Workflow:
        try:
            _validate(self)
        except WorkflowError as exc:
            raise WorkflowError(f"Workflow {self.name!r}: {exc}") from None
        return self

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Workflow:
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise WorkflowError(f"Not a valid workflow: {_first_error(exc)}") from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Workflow:
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise WorkflowError(f"Not a valid workflow: {_first_error(exc)}") from None

    def checked(self) -> Workflow:
        """Validated again (after changes made with ``model_copy``, which does not validate)."""
        return type(self).model_validate(self.model_dump(by_alias=True))

    # -- reading ---------------------------------------------------------------------------
    def node(self, node_id: str) -> Any:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise ChatLabError(f"Workflow {self.name!r} has no node {node_id!r}; its nodes are {', '.join(n.id for n in self.nodes)}.")

    def start_node(self) -> StartNode:
        node: StartNode = self.node(self.start) if self.start else next(n for n in self.nodes if n.type == "start")
        return node

    def next_id(self, node_id: str, label: str | None = None) -> str | None:
        """The node after ``node_id`` by the edge ``label`` (None: that edge does not exist)."""
        return next((e.target for e in self.edges if e.source == node_id and e.label == label), None)

    def state_defaults(self) -> dict[str, Any]:
        """The state a run starts with; numbers are doubles, as in Agent Builder (CEL: ``state.n + 1.0``)."""
        return {v.name: v.held(json.loads(json.dumps(v.default))) for v in self.state}

    def compiled(self) -> Compiled:
        """Every expression and template compiled once (a run reuses it)."""
        return _compile(self)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON: the same graph, the same hash."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    # -- running ---------------------------------------------------------------------------
    async def run(
        self, text: str, *, lab: Any = None, model: Any = None, tools: Sequence[Any] = (), approvals: Mapping[str, str] | None = None,
    ) -> WorkflowResult:
        """Run the workflow on ``text`` from a cell, without the chat, and return every node's run.

        With ``lab``, nodes run on its model, tools, MCP servers and documents, and the trace goes
        to its database; without, on ``model`` (the offline model by default) and ``tools``.
        ``approvals`` answers approval nodes (``{"approve_refund": "approve"}``); an unanswered
        one pauses the run (``await result.resume("approve")``).
        """
        if not isinstance(text, str):
            raise WorkflowError(f"wf.run takes the user's message as text, not {type(text).__name__}.")
        if lab is not None:
            services, metadata = lab.workflow_services(), {"lab": lab.runtime.key}
            return await lab.runtime.run(run_workflow(self, text, services, approvals=approvals, metadata=metadata))
        services = services_for(resolve_backend(model), tools=tools)
        return await run_workflow(self, text, services, approvals=approvals, tracing_disabled=True)

    def run_sync(self, text: str, **kwargs: Any) -> WorkflowResult:
        """``run`` for code that is not async."""
        result: WorkflowResult = run_sync(self.run(text, **kwargs))
        return result

    def diff(self, other: Workflow, *, before: str = "before", after: str = "after") -> WorkflowDiff:
        """Nodes added, removed and changed (field by field), and edges added and removed, from this graph to ``other``."""
        return diff(self, other, before, after)

    # -- the graph view --------------------------------------------------------------------
    def show(self, run: Any = None, *, lab: Any = None) -> GraphView:
        """The graph as SVG (a notebook cell shows it), with the path of ``run`` highlighted: a
        ``WorkflowResult``, a list of node ids, or (with ``lab``) a ``Turn`` or a turn_id."""
        return draw(self, _path_of(run, lab))

    def _repr_html_(self) -> str:
        return draw(self)._repr_html_()

    # -- Agent Builder ---------------------------------------------------------------------
    @classmethod
    def from_agent_builder(cls, source: str | Path) -> Imported:
        """Import a file Agent Builder's "Code → Agents SDK" produced (Python or TypeScript; a path
        or its text), by parsing it, never running it: ``wf, report = Workflow.from_agent_builder(path)``.
        The report says what mapped to what, what was kept as a note, which known export bugs were
        found and which embedded credentials were removed."""
        data, report = read_export(source)
        try:
            workflow = cls.model_validate(data)
        except WorkflowError as exc:
            raise WorkflowError(f"The export was read, but its graph does not hold together: {exc}") from None
        return Imported(workflow, report)

    def to_python(self) -> str:
        """Runnable Agents SDK code in the idiom of Agent Builder's exports, with their known bugs
        fixed (see ``agent_builder.codegen``); ``Workflow.from_agent_builder`` of it is this graph."""
        draft, _ = read_export(write_python(self))
        module = _differences(self, draft)
        code = write_python(self, module)
        again, _ = read_export(code)
        if type(self).model_validate(again) != self:  # pragma: no cover - a bug of the writer, said plainly
            raise WorkflowError(f"to_python could not write {self.name!r} so that it reads back the same; please report this workflow.")
        return code

    # -- files -----------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        try:
            path.write_text(self.to_json(), encoding="utf-8")
        except OSError as exc:
            raise WorkflowError(f"Cannot write the workflow file {str(path)!r}: {exc.strerror or exc}.") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> Workflow:
        """A workflow from a JSON file; what is wrong with it is one ``ChatLabError``."""
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChatLabError(f"Cannot read the workflow file {str(path)!r}: {getattr(exc, 'strerror', None) or exc}.") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str | bytes | dict[str, Any], *, source: str = "the workflow") -> Workflow:
        try:
            return cls.model_validate(text) if isinstance(text, dict) else cls.model_validate_json(text)
        except WorkflowError as exc:
            raise WorkflowError(f"{source}: {exc}") from None


class Imported(NamedTuple):
    """What ``Workflow.from_agent_builder`` returns: the graph and the import report."""

    workflow: Workflow
    report: ImportReport


def _path_of(run: Any, lab: Any) -> list[str]:
    if run is None:
        return []
    if isinstance(run, WorkflowResult):
        return run.path
    if isinstance(run, list | tuple):
        return [str(node_id) for node_id in run]
    if lab is None:
        raise ChatLabError("To show the path of a chat turn, pass the lab too: wf.show(turn, lab=lab).")
    thread_id = getattr(run, "thread_id", None)
    nodes = lab.nodes_df(thread_id) if thread_id else lab.nodes_df()
    turn_id = run if isinstance(run, str) else (nodes.turn_id.iloc[-1] if len(nodes) else None)
    path = nodes[nodes.turn_id == turn_id].sort_values("node_index").node_id.tolist()
    if not path:
        raise ChatLabError(f"No workflow nodes ran in {'turn ' + run if isinstance(run, str) else 'that turn'}.")
    return list(path)


def _differences(wf: Workflow, data: dict[str, Any]) -> dict[str, Any]:
    """What the code alone would read back wrong (for to_python's module marker)."""
    mine = wf.model_dump(mode="json", by_alias=True)
    try:
        theirs = Workflow.model_validate(data).model_dump(mode="json", by_alias=True)
    except WorkflowError:
        theirs = {**data, "description": data.get("description", ""), "start": data.get("start")}
    read = {n["id"]: n for n in theirs["nodes"]}
    module: dict[str, Any] = {}
    nodes = {n["id"]: {k: v for k, v in n.items() if read[n["id"]].get(k) != v} for n in mine["nodes"] if n["id"] in read}
    if any(nodes.values()):
        module["nodes"] = {i: fields for i, fields in nodes.items() if fields}
    if notes := [n for n in mine["nodes"] if n["id"] not in read]:
        module["notes"] = notes
    if [n["id"] for n in mine["nodes"]] != [n["id"] for n in theirs["nodes"]]:
        module["order"] = [n["id"] for n in mine["nodes"]]
    if mine["edges"] != theirs["edges"]:
        module["edges"] = mine["edges"]
    if fields := {k: mine[k] for k in ("name", "description", "state", "start", "metadata") if mine[k] != theirs.get(k)}:
        module["workflow"] = fields
    return module


def _names(wf: Workflow) -> Names:
    return Names(state=[v.name for v in wf.state], nodes=[n.id for n in wf.nodes])


def _compile(wf: Workflow) -> Compiled:
    names, compiled = _names(wf), Compiled()
    for node in wf.nodes:
        where = f"Node {node.id!r} ({node.type})"
        for what, source in node.expressions():
            compiled.expressions[node.id, what] = compile_expression(source, names, f"{where}, {what}")
        for what, text in node.templates():
            compiled.templates[node.id, what] = compile_template(text, names, f"{where}, {what}")
    return compiled


def _validate(wf: Workflow) -> None:
    ids = [n.id for n in wf.nodes]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise WorkflowError(f"node ids must be unique; {', '.join(duplicates)} appear more than once")
    by_id = {n.id: n for n in wf.nodes}
    names = [v.name for v in wf.state]
    if len(set(names)) != len(names):
        raise WorkflowError("state variable names must be unique")
    starts = [n.id for n in wf.nodes if n.type == "start"]
    if wf.start is None and len(starts) != 1:
        raise WorkflowError(f"a workflow needs exactly one start node (found {len(starts)}), or say which with start=")
    start = wf.start or starts[0]
    if start not in by_id or by_id[start].type != "start":
        raise WorkflowError(f"start {start!r} is not a start node")
    seen: set[tuple[str, str | None]] = set()
    for edge in wf.edges:
        for end in (edge.source, edge.target):
            if end not in by_id:
                raise WorkflowError(f"edge {edge.source} → {edge.target} names node {end!r}, which does not exist")
        node = by_id[edge.source]
        if edge.label not in node.exits():
            allowed = ", ".join("no label" if e is None else repr(e) for e in node.exits()) or "none (it has no edges)"
            raise WorkflowError(f"node {node.id!r} ({node.type}) cannot leave by {edge.label!r}; its edges are: {allowed}")
        if by_id[edge.target].type in ("start", "note"):
            raise WorkflowError(f"edge {edge.source} → {edge.target}: nothing leads into a {by_id[edge.target].type} node")
        if (edge.source, edge.label) in seen:
            raise WorkflowError(f"node {edge.source!r} has two edges {'labelled ' + repr(edge.label) if edge.label else 'out'}; keep one")
        seen.add((edge.source, edge.label))
    for node in wf.nodes:
        if node.type == "while" and (node.id, "body") not in seen:
            raise WorkflowError(f"while {node.id!r} has no body edge (label 'body')")
    for node in wf.nodes:
        if node.type == "set_state":
            for variable in node.assignments:
                if variable not in names:
                    raise WorkflowError(f"set_state {node.id!r} assigns {variable!r}, which is not a declared state variable ({', '.join(names) or 'none'})")
    reachable = _reachable(wf, start)
    for node in wf.nodes:
        if node.type != "note" and node.id not in reachable:
            raise WorkflowError(f"node {node.id!r} ({node.type}) cannot be reached from {start!r}; connect it or delete it")
    _no_loops_but_while(wf, by_id)
    try:
        _compile(wf)
    except WorkflowError:
        raise
    except ChatLabError as exc:
        raise WorkflowError(str(exc)) from None


def _reachable(wf: Workflow, start: str) -> set[str]:
    found, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for edge in wf.edges:
            if edge.source == here and edge.target not in found:
                found.add(edge.target)
                todo.append(edge.target)
    return found


def _no_loops_but_while(wf: Workflow, by_id: dict[str, Any]) -> None:
    """A cycle must pass through a while node's body edge; any other cycle would run forever."""
    after: dict[str, list[str]] = {}
    for edge in wf.edges:
        if not (by_id[edge.source].type == "while" and edge.label == "body"):
            after.setdefault(edge.source, []).append(edge.target)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node_id: str) -> None:
        state[node_id] = 1
        path.append(node_id)
        for target in after.get(node_id, []):
            if state.get(target) == 1:
                loop = [*path[path.index(target):], target]
                raise WorkflowError(f"the loop {' → '.join(loop)} is not made by a while node; route it through a while node's body edge")
            if target not in state:
                visit(target)
        path.pop()
        state[node_id] = 2

    for node in wf.nodes:
        if node.id not in state:
            visit(node.id)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"] if not str(p).startswith(("function-after", "tagged-union")))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "union_tag_invalid":
        message = f"unknown node type {error['input'].get('type')!r}; the types are {', '.join(NODE_TYPES)}" if isinstance(error.get("input"), dict) else message
    elif error["type"] == "union_tag_not_found":
        message = f"a node without a type; give one of {', '.join(NODE_TYPES)}"
    return f"{where}: {message}" if where and error["type"] not in ("value_error",) else message
