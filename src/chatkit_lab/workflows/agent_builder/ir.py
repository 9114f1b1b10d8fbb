"""What an Agent Builder export says, read from its code in either language.

The Python and TypeScript readers parse an export (never run it) into these plain records; one
builder (``build.py``) turns them into a graph. Expressions are kept as small trees so the
builder can write them as CEL once it knows which node each result variable belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# -- expressions ---------------------------------------------------------------------------------
@dataclass
class Ref:
    """A value read through variables and keys: ``workflow["input_as_text"]``, ``state.x``,
    ``classify_result["output_parsed"]["classification"]``."""

    root: str
    keys: list[str | int] = field(default_factory=list)


@dataclass
class Const:
    value: Any


@dataclass
class Op:
    """An operator: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``&&``, ``||``, ``!``, ``in``,
    ``+``, ``-``, ``*``, ``/``, ``?:``; or a call: ``size``, ``string``, ``int``, ``double``, ``list``, ``map``."""

    op: str
    args: list[Expr]


@dataclass
class Format:
    """An f-string or template literal: text and expressions."""

    parts: list[str | Expr]


@dataclass
class Unknown:
    """Code the readers do not translate (kept verbatim in the report and a note)."""

    code: str


@dataclass
class Cel:
    """``cel.evaluate("…", scope)``: a CEL expression as ``to_python`` writes it, taken as it is."""

    source: str


@dataclass
class Template:
    """``render("… {{ CEL }} …", scope)``: a template as ``to_python`` writes it."""

    source: str


@dataclass
class Previous:
    """``text_of(last)``: the previous node's text (a guardrails node's default input)."""


Expr = Ref | Const | Op | Format | Unknown | Cel | Template | Previous

GUARDRAIL_HELPERS = (("hastripwire", "has_tripwire"), ("checkedtext", "safe_text"), ("safetext", "safe_text"), ("failoutput", "fail_output"))


def guardrail_helper(function: str) -> str | None:
    """The part of a guardrails result that an export's helper reads, in every generation and
    both languages: ``guardrails_has_tripwire(r)`` / ``guardrailsHasTripwire(r)`` its tripwire,
    ``get_guardrail_checked_text(r, text)`` / ``getGuardrailSafeText(r, text)`` its safe text,
    ``build_guardrail_fail_output(r)`` / ``buildGuardrailFailOutput(r)`` its fail output."""
    name = function.replace("_", "").lower()
    if "guardrail" in name:
        for suffix, key in GUARDRAIL_HELPERS:
            if name.endswith(suffix):
                return key
    return None


# -- statements of run_workflow ------------------------------------------------------------------
@dataclass
class RunAgent:
    agent: str  # the Agent variable
    result: str  # the result variable (``x_result``)
    message: Expr | None = None  # a user message added after the history
    history: bool = True
    context: dict[str, Expr] = field(default_factory=dict)  # context=Ctx(field=expr): what instructions functions read
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class RunGuardrails:
    config: str  # the config variable
    text: Expr
    result: str
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class Alias:
    """``x = <expr>``: a local name the later code reads (a guardrail's tripwire, a result)."""

    name: str
    value: Expr
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class If:
    cases: list[tuple[Expr, list[Stmt]]]
    orelse: list[Stmt] | None
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class While:
    condition: Expr
    body: list[Stmt]
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class SetState:
    key: str
    value: Expr
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class Approval:
    message: Expr
    approve: list[Stmt]
    reject: list[Stmt]
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class FileSearch:
    result: str
    vector_store_ids: list[str]
    query: Expr
    max_results: int = 5
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class Transform:
    result: str
    value: Expr
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class Return:
    value: Expr | None
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class Raw:
    """A statement with no node: kept as a note holding the code."""

    code: str
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # a to_python marker: what the code cannot say


@dataclass
class CallMCP:
    """``x_result = await call_mcp_tool(server=…, tool=…, arguments={…})`` (an mcp node, as to_python writes it)."""

    result: str
    server: str
    tool: str
    arguments: dict[str, Expr]
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


Stmt = RunAgent | RunGuardrails | Alias | If | While | SetState | Approval | FileSearch | Transform | Return | Raw | CallMCP


# -- the module ----------------------------------------------------------------------------------
@dataclass
class AgentSpec:
    variable: str
    name: str
    instructions: str | Format | Template = ""
    model: str | None = None
    model_settings: dict[str, Any] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)
    output_type: str | None = None
    line: int = 0


@dataclass
class Finding:
    """One line of the import report: what mapped to what, what was kept as a note, what is wrong."""

    kind: str  # "mapped" | "note" | "bug" | "secret"
    line: int
    message: str


@dataclass
class Export:
    language: str  # "python" | "typescript"
    name: str = "Imported workflow"
    workflow_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)  # variable -> hosted tool spec or {"type": "function", ...}
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # class or const name -> JSON Schema
    guardrail_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    body: list[Stmt] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    approval_always_approves: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # the module marker of to_python: order, notes, names

    def note(self, kind: str, line: int, message: str) -> None:
        self.findings.append(Finding(kind, line, message))
