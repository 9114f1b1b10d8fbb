"""From what an export says (``ir.Export``) to a workflow's JSON form and an import report.

The graph is built as plain JSON (``Workflow.from_agent_builder`` validates it), so this package
does not import the graph module that calls it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import ChatLabError
from ...models import SETTINGS
from . import ir

Exit = tuple[str, str | None]  # (node id, edge label): where the next node attaches


@dataclass
class ImportReport:
    """What the import did: each finding with its line in the export."""

    workflow: str
    language: str
    findings: list[ir.Finding] = field(default_factory=list)

    def of(self, kind: str) -> list[ir.Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def bugs(self) -> list[ir.Finding]:
        """Known Agent Builder export bugs found (fixed in the graph and in ``to_python``)."""
        return self.of("bug")

    def df(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"kind": f.kind, "line": f.line, "message": f.message} for f in self.findings])

    def __str__(self) -> str:
        lines = [f"Imported {self.workflow!r} from {self.language}: {len(self.of('mapped'))} mapped, "
                 f"{len(self.of('note'))} kept as notes, {len(self.bugs)} export bugs, {len(self.of('secret'))} secrets removed"]
        lines += [f"  line {f.line:>4} [{f.kind}] {f.message}" for f in self.findings if f.kind != "mapped"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        html: str = self.df()._repr_html_()
        return html


def build(export: ir.Export) -> tuple[dict[str, Any], ImportReport]:
    """The workflow's JSON form, and the report."""
    data = _Builder(export).workflow()
    return data, ImportReport(data["name"], export.language, export.findings)


def _node(type_: str, node_id: str, name: str | None = None, **fields: Any) -> dict[str, Any]:
    """A node's JSON; without a name (exports keep only agents' names) it is named by its id."""
    return {"id": node_id, "type": type_, **({"name": name} if name else {}), **{k: v for k, v in fields.items() if v is not None}}


def _edge(source: str, target: str, label: str | None) -> dict[str, Any]:
    return {"source": source, "target": target, "label": label}


class _Builder:
    def __init__(self, export: ir.Export) -> None:
        self.export = export
        self.nodes: list[dict[str, Any]] = [_node("start", "start")]
        self.edges: list[dict[str, Any]] = []
        self.node_of: dict[str, str] = {}  # result variable -> node id
        self.aliases: dict[str, ir.Expr] = {}
        self.tripwires: dict[str, str] = {}  # local name -> guardrails node whose tripwire it is
        self.asks_approval: set[str] = set()  # MCP tools whose require_approval is reported
        self.last: str | None = "start"  # the node whose output is ``input`` at this point
        self.implicit_ends: set[str] = set()  # branches to_python ended with ``return last`` (no end node)

    # -- the graph ---------------------------------------------------------------------------
    def workflow(self) -> dict[str, Any]:
        exits = self.block(self.export.body, [("start", None)])
        for node_id, label in exits:
            if node_id == "start" or node_id in self.implicit_ends:
                continue
            node = self.named(node_id)
            if node["type"] == "if_else" and label == "else":
                self.export.note("bug", 0, f"When no branch of {node_id!r} matches, the export returns None; the graph ends with the last output, "
                                           "and to_python() returns it.")
            else:
                self.export.note("bug", 0, f"The branch ending at {node.get('name', node_id)!r} computes a result but never returns it (the export "
                                           "returns None there); the graph ends with that node's output, and to_python() returns it.")
        metadata = {"__trace_source__": "agent-builder"}
        if self.export.workflow_id:
            metadata["workflow_id"] = self.export.workflow_id
        state = [{"name": key, "type": _state_type(value), "default": value} for key, value in self.export.state.items()]
        data = {"name": self.export.name, "nodes": self.nodes, "edges": self.edges, "state": state, "metadata": metadata}
        return _apply_module_marker(data, self.export.meta)

    def named(self, node_id: str) -> dict[str, Any]:
        return next(n for n in self.nodes if n["id"] == node_id)

    def add(self, node: dict[str, Any], exits: list[Exit], meta: dict[str, Any] | None = None) -> str:
        fields = {k: v for k, v in (meta or {}).items() if k not in ("ref", "implicit_end", "labels", "keys")}
        node = {**node, **fields, "id": self.unique(str(fields.get("id") or node["id"]))}
        self.nodes.append(node)
        for source, label in exits:
            self.edges.append(_edge(source, node["id"], label))
        return str(node["id"])

    def unique(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "node"
        base = base if re.match(r"[A-Za-z_]", base) else f"n_{base}"
        taken = {n["id"] for n in self.nodes}
        if base not in taken:
            return base
        n = 1
        while f"{base}{n}" in taken:
            n += 1
        return f"{base}{n}"

    def block(self, statements: list[ir.Stmt], exits: list[Exit]) -> list[Exit]:
        i = 0
        while i < len(statements):
            stmt = statements[i]
            i += 1
            if ref := stmt.meta.get("ref"):
                # to_python repeats the code after a join; the graph has that node once.
                self.edges += [_edge(source, ref, label) for source, label in exits]
                return []
            if isinstance(stmt, ir.SetState) and len(keys := stmt.meta.get("keys") or []) > 1:
                group = [stmt, *[s for s in statements[i : i + len(keys) - 1] if isinstance(s, ir.SetState)]]
                i += len(group) - 1
                exits = self.set_state(group, exits)
                continue
            if not isinstance(stmt, ir.RunGuardrails):
                exits = self.statement(stmt, exits)
                continue
            node_id = self.guardrails(stmt, exits)
            while i < len(statements) and isinstance(statements[i], ir.Alias):  # guardrails_hastripwire = …
                self.statement(statements[i], [])
                i += 1
            branch = statements[i] if i < len(statements) else None
            if not isinstance(branch, ir.If) or not self._on_tripwire(branch):
                exits = [(node_id, "pass")]
                continue
            # ``if guardrails_hastripwire: <fail> else: <pass>``; what follows the if is the pass path too.
            condition, first = branch.cases[0]
            negated = isinstance(condition, ir.Op) and condition.op == "!"
            fail_body, pass_body = (branch.orelse or [], first) if negated else (first, branch.orelse or [])
            failed = self.block(fail_body, [(node_id, "fail")])
            self.last = node_id
            return [*failed, *self.block([*pass_body, *statements[i + 1 :]], [(node_id, "pass")])]
        return exits

    def statement(self, stmt: ir.Stmt, exits: list[Exit]) -> list[Exit]:
        match stmt:
            case ir.RunAgent():
                return self.agent(stmt, exits)
            case ir.RunGuardrails():
                return [(self.guardrails(stmt, exits), "pass")]
            case ir.Alias(name=name, value=value):
                self.aliases[name] = value
                guarded = self.tripwires_of_results()
                if isinstance(value, ir.Ref) and value.root in guarded and value.keys in (["has_tripwire"], ["hasTripwire"]):
                    self.tripwires[name] = self.node_of[value.root]
                elif outputs := [r for r in map(self.resolved, _refs(value)) if isinstance(r, ir.Ref) and r.root in guarded and r.keys and str(r.keys[-1]) in OUTPUTS]:
                    # ``guardrails_output = (tripwire and result["fail_output"]) or result["pass_output"]``: the node's output
                    self.node_of[name] = self.node_of[outputs[0].root]
                return exits
            case ir.SetState():
                return self.set_state([stmt], exits)
            case ir.If():
                return self.branches(stmt, exits)
            case ir.While():
                node_id = self.add(_node("while", "loop", condition=self.cel(stmt.condition), max_iterations=100), exits, stmt.meta)
                self.mapped(stmt.line, f"while … → while {node_id!r} (max_iterations 100: the export has no cap)")
                before = self.last
                self.last = node_id
                body = self.block(stmt.body, [(node_id, "body")])
                if body == [(node_id, "body")]:
                    raise ChatLabError(f"The while loop on line {stmt.line} has an empty body.")
                for source, label in body:
                    self.edges.append(_edge(source, node_id, label))
                self.last = before
                return [(node_id, "done")]
            case ir.Approval():
                message = self.template(stmt.message)
                node_id = self.add(_node("user_approval", "approval", message=message), exits, stmt.meta)
                self.mapped(stmt.line, f"approval_request(…) → user_approval {node_id!r}")
                if self.export.approval_always_approves:
                    self.export.note("bug", stmt.line, "The export's approval_request() stub always approves (TODO: Implement); "
                                                       f"{node_id!r} asks the user in the chat, and to_python() writes a real approval.")
                self.last = node_id
                return [*self.block(stmt.approve, [(node_id, "approve")]), *self.block(stmt.reject, [(node_id, "reject")])]
            case ir.FileSearch():
                node = _node("file_search", _base(stmt.result), query=self.cel(stmt.query), max_results=stmt.max_results,
                             vector_store_ids=stmt.vector_store_ids)
                node_id = self.add(node, exits, stmt.meta)
                self.node_of[stmt.result] = node_id
                self.last = node_id
                self.mapped(stmt.line, f"vector store search → file_search {node_id!r} (runs on the lab's documents)")
                return [(node_id, None)]
            case ir.Transform():
                value = stmt.value
                if isinstance(value, ir.Op) and value.op == "map":
                    pairs = zip(value.args[::2], value.args[1::2], strict=True)
                    node = _node("transform", _base(stmt.result), expressions={_const(k): self.cel(v) for k, v in pairs})
                else:
                    node = _node("transform", _base(stmt.result), expression=self.cel(value))
                node_id = self.add(node, exits, stmt.meta)
                self.node_of[stmt.result] = node_id
                self.last = node_id
                self.mapped(stmt.line, f"{stmt.result} = {{…}} → transform {node_id!r}")
                return [(node_id, None)]
            case ir.Return():
                if stmt.meta.get("implicit_end"):
                    self.implicit_ends.update(source for source, _ in exits)
                    return exits
                return self.end(stmt, exits)
            case ir.CallMCP():
                node = _node("mcp", _base(stmt.result), server=stmt.server, tool=stmt.tool,
                             arguments={k: self.cel(v) for k, v in stmt.arguments.items()})
                node_id = self.add(node, exits, stmt.meta)
                self.node_of[stmt.result] = node_id
                self.last = node_id
                self.mapped(stmt.line, f"call_mcp_tool → mcp {node_id!r}")
                return [(node_id, None)]
            case ir.Raw():
                node_id = self.add(_node("note", "code", text=stmt.code), [])
                self.export.note("note", stmt.line, f"Kept as note {node_id!r} (not run): {_short(stmt.code)}")
                return exits
        raise AssertionError(stmt)  # pragma: no cover

    def resolved(self, expr: ir.Expr) -> ir.Expr:
        """``expr`` with local names replaced by what they were assigned."""
        while isinstance(expr, ir.Ref) and expr.root in self.aliases and isinstance(self.aliases[expr.root], ir.Ref):
            alias = self.aliases[expr.root]
            assert isinstance(alias, ir.Ref)
            expr = ir.Ref(alias.root, [*alias.keys, *expr.keys])
        return expr

    def tripwires_of_results(self) -> set[str]:
        return {var for var, node_id in self.node_of.items() if self.named(node_id)["type"] == "guardrails"}

    def set_state(self, group: list[ir.SetState], exits: list[Exit]) -> list[Exit]:
        first = group[0]
        node = _node("set_state", f"set_{first.key}", assignments={s.key: self.cel(s.value) for s in group})
        node_id = self.add(node, exits, first.meta)
        self.mapped(first.line, f"state[{first.key!r}] = … → set_state {node_id!r}")
        return [(node_id, None)]

    def mapped(self, line: int, message: str) -> None:
        self.export.note("mapped", line, message)

    # -- nodes -------------------------------------------------------------------------------
    def agent(self, stmt: ir.RunAgent, exits: list[Exit]) -> list[Exit]:
        spec = self.export.agents.get(stmt.agent)
        if spec is None:
            raise ChatLabError(f"The export runs {stmt.agent!r} (line {stmt.line}), which is not an Agent(...) it defines.")
        schema = self.export.schemas.get(spec.output_type) if spec.output_type else None
        if spec.output_type and schema is None:
            self.export.note("note", spec.line, f"{spec.name}: output_type {spec.output_type} is not a schema class the import could read; the agent outputs text.")
        for key in sorted(set(spec.model_settings) - set(SETTINGS)):  # the graph refuses a setting the SDK would drop
            self.export.note("note", spec.line, f"{spec.name}: model setting {key!r} is not one the Agents SDK has; it was left out.")
        node = _node(
            "agent", _base(stmt.result), spec.name, instructions=self.template(spec.instructions), model=spec.model,
            model_settings={k: v for k, v in spec.model_settings.items() if k in SETTINGS}, tools=[self.tool(spec, t) for t in spec.tools], output_schema=schema,
            message=self.template(stmt.message) if stmt.message is not None else None, include_history=stmt.history,
        )
        node_id = self.add(node, exits, stmt.meta)
        self.node_of[stmt.result] = node_id
        self.last = node_id
        self.mapped(stmt.line, f"Runner.run({stmt.agent}) → agent {node_id!r}")
        return [(node_id, None)]

    def tool(self, spec: ir.AgentSpec, variable: str) -> str | dict[str, Any]:
        tool = self.export.tools.get(variable)
        if tool is None:
            self.export.note("note", spec.line, f"{spec.name}: tool {variable!r} is not defined in the export; kept as a function tool name.")
            return variable
        if tool.get("type") == "function":
            return str(tool["name"])
        approval = tool.get("require_approval")
        if tool.get("type") == "mcp" and approval not in (None, "never") and not tool.get("answers_approval") and variable not in self.asks_approval:
            self.asks_approval.add(variable)
            self.export.note("bug", spec.line, f"The MCP server {tool.get('server_label')!r} has require_approval {json.dumps(approval)}, which the "
                                               "export never answers: its run stops at the first call. Here the node fails, saying which call "
                                               'waits; "never" lets the agent call it.')
        return {k: v for k, v in tool.items() if k not in ("variable", "answers_approval")}

    def guardrails(self, stmt: ir.RunGuardrails, exits: list[Exit]) -> str:
        config = self.export.guardrail_configs.get(stmt.config)
        if config is None:
            raise ChatLabError(f"The export runs guardrails with {stmt.config!r} (line {stmt.line}), which is not a config it defines.")
        text = None if isinstance(stmt.text, ir.Previous) else self.cel(stmt.text)
        node = _node("guardrails", _base(stmt.result), config=config,
                     text=None if text == "workflow.input_as_text" and self.last == "start" else text)
        node_id = self.add(node, exits, stmt.meta)
        self.node_of[stmt.result] = node_id
        self.last = node_id
        self.mapped(stmt.line, f"guardrails over {stmt.config} → guardrails {node_id!r}")
        return node_id

    def _on_tripwire(self, branch: ir.If) -> bool:
        if len(branch.cases) != 1:
            return False
        condition = branch.cases[0][0]
        if isinstance(condition, ir.Op) and condition.op == "!":
            condition = condition.args[0]
        if not isinstance(condition, ir.Ref):
            return False
        return condition.root in self.tripwires or (condition.root in self.tripwires_of_results() and condition.keys in (["has_tripwire"], ["hasTripwire"]))

    def branches(self, stmt: ir.If, exits: list[Exit]) -> list[Exit]:
        labels: dict[str, str] = {}
        given = stmt.meta.get("labels") or []
        for i, (condition, _) in enumerate(stmt.cases):
            labels[given[i] if i < len(given) else self.label(condition, labels)] = self.cel(condition)
        node_id = self.add(_node("if_else", "if_else", branches=labels), exits, stmt.meta)
        self.mapped(stmt.line, f"if/elif/else → if_else {node_id!r} ({len(labels)} branches{' + else' if stmt.orelse else ''})")
        out: list[Exit] = []
        before = self.last
        for label, (_, body) in zip(labels, stmt.cases, strict=True):
            self.last = before
            out += self.block(body, [(node_id, label)])
        self.last = before
        out += self.block(stmt.orelse, [(node_id, "else")]) if stmt.orelse is not None else [(node_id, "else")]
        return out

    def label(self, condition: ir.Expr, taken: dict[str, str]) -> str:
        """A branch label: the value a condition compares with (``"billing"``), else case N."""
        found = None
        if isinstance(condition, ir.Op) and condition.op == "==" and isinstance(condition.args[1], ir.Const):
            found = re.sub(r"\W+", "_", str(condition.args[1].value)).strip("_").lower() or None
        label = found if found and found != "else" and found not in taken else f"case_{len(taken) + 1}"
        return label

    def end(self, stmt: ir.Return, exits: list[Exit]) -> list[Exit]:
        value = self.resolved(stmt.value) if isinstance(stmt.value, ir.Ref) else stmt.value  # x_result = {"output_text": x_result_temp…}
        result = value.root if isinstance(value, ir.Ref) and not value.keys and value.root in self.node_of else None
        if value is None or isinstance(value, ir.Previous) or (result is not None and self.node_of[result] == self.last):
            node_id = self.add(_node("end", "end"), exits, stmt.meta)
        elif result is not None:  # an earlier node's result: its text (a template of the whole output would be its JSON)
            node_id = self.add(_node("end", "end", output="{{" + self.ref(ir.Ref(result, ["output_text"])) + "}}"), exits, stmt.meta)
        elif isinstance(value, ir.Op) and value.op == "map" and len(value.args) == 2 and value.args[0] == ir.Const("output_text"):
            node_id = self.add(_node("end", "end", output=self.template(value.args[1])), exits, stmt.meta)
        elif isinstance(value, ir.Op) and value.op == "map" and not _spreads(value):
            transform = self.add(_node("transform", "end_output",
                                       expressions={_const(k): self.cel(v) for k, v in zip(value.args[::2], value.args[1::2], strict=True)}), exits)
            node_id = self.add(_node("end", "end"), [(transform, None)], stmt.meta)
        else:
            node_id = self.add(_node("end", "end", output=self.template(value)), exits, stmt.meta)
        self.mapped(stmt.line, f"return → end {node_id!r}")
        return []

    # -- expressions -------------------------------------------------------------------------
    def cel(self, expr: ir.Expr, *, numbers_as_doubles: bool = False) -> str:
        """``expr`` in CEL, reading results as ``input`` (the node just before) or ``nodes.<id>``."""
        match expr:
            case ir.Const(value=value):
                if isinstance(value, bool):
                    return "true" if value else "false"
                if value is None:
                    return "null"
                if isinstance(value, int | float) and numbers_as_doubles:
                    return repr(float(value))
                return json.dumps(value, ensure_ascii=False)
            case ir.Ref():
                return self.ref(expr)
            case ir.Op(op="!", args=[inner]):
                return f"!({self.cel(inner)})"
            case ir.Op(op="?:", args=[test, yes, no]):
                return f"({self.cel(test)} ? {self.cel(yes)} : {self.cel(no)})"
            case ir.Op(op=("size" | "string" | "int" | "double") as fn, args=[inner]):
                return f"{fn}({self.cel(inner)})"
            case ir.Op(op="list", args=items):
                return "[" + ", ".join(self.cel(i) for i in items) + "]"
            case ir.Op(op="map", args=items):
                return "{" + ", ".join(f"{self.cel(k)}: {self.cel(v)}" for k, v in zip(items[::2], items[1::2], strict=True)) + "}"
            case ir.Op(op=op, args=[left, right]) if op in ("&&", "||"):
                return f"{self.cel(left)} {op} {self.cel(right)}"
            case ir.Op(op=op, args=[left, right]):
                doubles = _reads_state(left) or _reads_state(right)
                return f"{self.cel(left, numbers_as_doubles=doubles)} {op} {self.cel(right, numbers_as_doubles=doubles)}"
            case ir.Format(parts=parts):
                return " + ".join(json.dumps(p) if isinstance(p, str) else f"string({self.cel(p)})" for p in parts) or '""'
            case ir.Cel(source=source):
                return source
            case ir.Previous():
                return "input"
            case ir.Template(source=source):
                return json.dumps(source)
            case ir.Unknown(code=code):
                raise ChatLabError(f"The export has an expression the import cannot translate to CEL: {_short(code)}")
        raise ChatLabError(f"The export has an expression the import cannot translate to CEL: {expr!r}")  # pragma: no cover

    def ref(self, ref: ir.Ref) -> str:
        root, keys = ref.root, list(ref.keys)
        if root in self.aliases and not isinstance(self.aliases[root], ir.Unknown):
            alias = self.aliases[root]
            if isinstance(alias, ir.Ref):
                return self.ref(ir.Ref(alias.root, [*alias.keys, *keys]))
            return self.cel(alias)
        if root in ("state", "workflow"):
            base = root
        elif root in self.node_of:
            node_id = self.node_of[root]
            base = "input" if node_id == self.last else f"nodes.{node_id}"
            if self._is_guardrails(node_id):
                if keys and keys[0] in OUTPUTS:
                    keys = keys[1:]  # result["fail_output"]: the node's output is its pass or fail output
                keys = ["output_text" if k in ("safe_text", "safeText") else k for k in keys]
        else:
            raise ChatLabError(f"The export reads {root!r}, which the import cannot place (not state, the workflow input or a node's result).")
        path = base
        for key in keys:
            path += f".{key}" if isinstance(key, str) and re.fullmatch(r"[A-Za-z_]\w*", key) else f"[{json.dumps(key)}]"
        return path

    def _is_guardrails(self, node_id: str) -> bool:
        return bool(self.named(node_id)["type"] == "guardrails")

    def template(self, value: ir.Expr | str | None) -> str:
        """A text template: ``{{ CEL }}`` for each expression of an f-string."""
        if isinstance(value, ir.Ref):
            value = self.resolved(value)
            if isinstance(value, ir.Ref) and not value.keys and isinstance(self.aliases.get(value.root), ir.Template | ir.Format | ir.Const):
                value = self.aliases[value.root]
        match value:
            case None:
                return ""
            case str():
                return value
            case ir.Template(source=source):
                return source
            case ir.Const(value=str() as text):
                return text
            case ir.Format(parts=parts):
                return "".join(p.replace("{{", "{ {") if isinstance(p, str) else "{{" + self.cel(p) + "}}" for p in parts)
        return "{{" + self.cel(value) + "}}"


OUTPUTS = ("fail_output", "pass_output", "failOutput", "passOutput")


def _apply_module_marker(data: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """What to_python's module marker keeps: workflow fields, node fields, notes, the order of nodes and edges."""
    data = {**data, **meta.get("workflow", {})}
    nodes = {n["id"]: {**n, **meta.get("nodes", {}).get(n["id"], {})} for n in data["nodes"]}
    for note in meta.get("notes", []):
        nodes[note["id"]] = note
    order = meta.get("order") or list(nodes)
    data["nodes"] = [nodes[i] for i in order if i in nodes] + [n for i, n in nodes.items() if i not in order]
    if "edges" in meta:
        data["edges"] = meta["edges"]
    return data


def _refs(expr: ir.Expr) -> list[ir.Expr]:
    if isinstance(expr, ir.Op):
        return [r for a in expr.args for r in _refs(a)]
    return [expr]


def _base(result: str) -> str:
    for suffix in ("_result_temp", "_result", "ResultTemp", "Result"):
        if result.endswith(suffix) and len(result) > len(suffix):
            result = result[: -len(suffix)]
            break
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", result).lower()


def _state_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return "string"


def _reads_state(expr: ir.Expr) -> bool:
    return isinstance(expr, ir.Ref) and expr.root == "state"


def _const(expr: ir.Expr) -> str:
    return str(expr.value) if isinstance(expr, ir.Const) else str(expr)


def _spreads(value: ir.Op) -> bool:
    return any(isinstance(k, ir.Unknown) for k in value.args[::2])


def _short(code: str, limit: int = 80) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[: limit - 1] + "…"
