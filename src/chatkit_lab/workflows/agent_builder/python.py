"""Reads a Python export of Agent Builder's "Code → Agents SDK" with ``ast`` (never runs it)."""

from __future__ import annotations

import ast
import io
import json
import tokenize
from typing import Any

from ...errors import ChatLabError
from . import ir
from .secrets import clean_tool

TOOL_CLASSES = {"FileSearchTool": "file_search", "WebSearchTool": "web_search", "HostedMCPTool": "mcp", "CodeInterpreterTool": "code_interpreter",
                "ImageGenerationTool": "image_generation"}
CALLS = {"len": "size", "str": "string", "int": "int", "float": "double"}
OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in",
       ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.And: "&&", ast.Or: "||"}
SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"},
           "dict": {"type": "object"}, "Any": {}}


MARK, MODULE_MARK = "# chatkit-lab: ", "# chatkit-lab workflow: "


def read(source: str) -> ir.Export:
    try:
        module = ast.parse(source)
    except SyntaxError as exc:
        raise ChatLabError(f"This is not Python the import can read: {exc.msg} on line {exc.lineno}.") from None
    return _Reader(source).module(module)


def markers(source: str) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """The ``# chatkit-lab:`` comments ``to_python`` writes: by line, and the module's."""
    found: dict[int, dict[str, Any]] = {}
    module: dict[str, Any] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT and token.string.startswith((MARK, MODULE_MARK)):
                mark = MARK if token.string.startswith(MARK) else MODULE_MARK
                try:
                    value = json.loads(token.string[len(mark):])
                except ValueError:
                    continue
                if mark == MODULE_MARK:
                    module = value
                else:
                    found[token.start[0]] = value
    except (tokenize.TokenError, SyntaxError):
        pass
    return found, module


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.export = ir.Export("python")
        self.instructions: dict[str, ir.Expr] = {}  # instruction functions over state
        self.marks, self.export.meta = markers(source)

    def code(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ast.unparse(node)

    # -- module level ------------------------------------------------------------------------
    def module(self, module: ast.Module) -> ir.Export:
        entry = None
        for stmt in module.body:
            if isinstance(stmt, ast.AsyncFunctionDef | ast.FunctionDef) and stmt.name == "run_workflow":
                entry = stmt
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.function(stmt)
            elif isinstance(stmt, ast.ClassDef):
                self.schema_class(stmt)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                self.module_assign(stmt)
        if entry is None:
            raise ChatLabError("This file has no run_workflow(...) function: it is not an Agent Builder export (Code → Agents SDK).")
        body = entry.body
        if len(body) == 1 and isinstance(body[0], ast.With | ast.AsyncWith):
            self.trace_name(body[0])
            body = body[0].body
        self.export.body = self.block(body)
        return self.export

    def trace_name(self, stmt: ast.With | ast.AsyncWith) -> None:
        call = stmt.items[0].context_expr
        if isinstance(call, ast.Call) and _name(call.func) == "trace" and call.args and isinstance(call.args[0], ast.Constant):
            self.export.name = str(call.args[0].value)

    def function(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        decorators = {_name(d) for d in fn.decorator_list}
        if "function_tool" in decorators:
            self.export.tools[fn.name] = {"type": "function", "name": fn.name}
            self.export.note("note", fn.lineno, f"Function tool {fn.name!r} is a stub in the export: pass its implementation with tools=[...].")
        elif fn.name == "approval_request":
            returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
            if returns and all(isinstance(r.value, ast.Constant) and r.value.value is True for r in returns):
                self.export.approval_always_approves = True
        elif len(fn.args.args) == 2 and fn.args.args[0].arg in ("run_context", "ctx"):
            returned = next((n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None), None)
            aliases = {t.id: self.expr(a.value) for a in fn.body if isinstance(a, ast.Assign)
                       for t in a.targets if isinstance(t, ast.Name)}
            if returned is not None:
                value = self.expr(returned)
                if isinstance(value, ir.Template):
                    self.instructions[fn.name] = value
                    return
                parts = value.parts if isinstance(value, ir.Format) else [value]
                self.instructions[fn.name] = ir.Format([_state_of(p, aliases) for p in parts])

    def schema_class(self, cls: ast.ClassDef) -> None:
        if not any(_name(b) == "BaseModel" for b in cls.bases) or cls.name == "WorkflowInput" or cls.name.endswith("Context"):
            return
        properties: dict[str, Any] = {}
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                properties[stmt.target.id] = self.annotation(stmt.annotation, cls.name, stmt.target.id, stmt.lineno)
        self.export.schemas[cls.name] = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}

    def annotation(self, node: ast.expr, cls: str, name: str, line: int) -> dict[str, Any]:
        if isinstance(node, ast.Name):
            if node.id == "integer":
                self.export.note("bug", line, f"{cls}.{name} is typed `integer`, which is not a Python type (the export raises NameError); read as an integer.")
                return {"type": "integer"}
            if node.id in self.export.schemas:
                return dict(self.export.schemas[node.id])
            return dict(SCALARS.get(node.id, {}))
        if isinstance(node, ast.Subscript) and _name(node.value) in ("list", "List"):
            return {"type": "array", "items": self.annotation(node.slice, cls, name, line)}
        if isinstance(node, ast.Subscript) and _name(node.value) == "Literal":
            values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return {"type": "string", "enum": [v.value for v in values if isinstance(v, ast.Constant)]}
        if isinstance(node, ast.Subscript) and _name(node.value) == "Optional":
            return {"anyOf": [self.annotation(node.slice, cls, name, line), {"type": "null"}]}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            sides = [self.annotation(s, cls, name, line) for s in (node.left, node.right)]
            return {"anyOf": [s if s else {"type": "null"} for s in sides]}
        if isinstance(node, ast.Constant) and node.value is None:
            return {}
        return {}

    def module_assign(self, stmt: ast.Assign | ast.AnnAssign) -> None:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
        if not isinstance(target, ast.Name) or stmt.value is None:
            return
        name, value = target.id, stmt.value
        keys = {k.value for k in value.keys if isinstance(k, ast.Constant)} if isinstance(value, ast.Dict) else set()
        if "__trace_source__" in keys:  # TRACE_METADATA = {...}
            self.export.workflow_id = (_literal(value) or {}).get("workflow_id") or self.export.workflow_id
            return
        if isinstance(value, ast.Dict) and ("guardrails" in keys or ("version" in keys and keys & {"pre_flight", "input", "output"})):
            try:
                self.export.guardrail_configs[name] = ast.literal_eval(value)
            except ValueError:
                self.export.note("note", stmt.lineno, f"The guardrails config {name!r} is not a plain literal; it was not imported.")
            return
        if not isinstance(value, ast.Call):
            return
        kind = _name(value.func)
        if kind == "Agent":
            self.agent(name, value)
        elif kind in TOOL_CLASSES:
            spec: dict[str, Any] = {"type": TOOL_CLASSES[kind]}
            for kw in value.keywords:
                literal = _literal(kw.value)
                if kw.arg == "tool_config" and isinstance(literal, dict):
                    spec.update({k: v for k, v in literal.items() if k != "type"})
                elif kw.arg == "on_approval_request":
                    spec["answers_approval"] = True  # as to_python writes it: not part of the graph
                elif kw.arg is not None and literal is not None:
                    spec[kw.arg] = literal
            self.export.tools[name] = clean_tool(spec, stmt.lineno, self.export)

    def agent(self, variable: str, call: ast.Call) -> None:
        spec = ir.AgentSpec(variable, variable, line=call.lineno)
        for kw in call.keywords:
            match kw.arg:
                case "name":
                    spec.name = str(_literal(kw.value) or variable)
                case "instructions":
                    if isinstance(kw.value, ast.Name) and kw.value.id in self.instructions:
                        found = self.instructions[kw.value.id]
                        spec.instructions = found if isinstance(found, ir.Format | ir.Template) else ir.Format([found])
                    elif isinstance(kw.value, ast.Constant):
                        spec.instructions = str(kw.value.value)
                    else:
                        self.export.note("note", kw.value.lineno, f"{variable}: instructions {self.code(kw.value)!r} are not a string or an instructions function; left empty.")
                case "model":
                    model = _literal(kw.value)
                    spec.model = model if isinstance(model, str) else None
                case "model_settings":
                    spec.model_settings = self.settings(kw.value)
                case "tools":
                    spec.tools = [_name(t) for t in kw.value.elts] if isinstance(kw.value, ast.List) else []
                case "output_type":
                    spec.output_type = _name(kw.value)
        self.export.agents[variable] = spec

    def settings(self, node: ast.expr) -> dict[str, Any]:
        if not isinstance(node, ast.Call):
            return {}
        found: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                continue
            value = self.settings(kw.value) if isinstance(kw.value, ast.Call) else _literal(kw.value)
            if value is not None:
                found[kw.arg] = value
        return found

    # -- run_workflow ------------------------------------------------------------------------
    def block(self, body: list[ast.stmt]) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        for stmt in body:
            read = self.statement(stmt)
            mark = self.marks.get(stmt.lineno - 1)
            if mark and read:
                read[0].meta = {**read[0].meta, **mark}
            out += read
        return out

    def statement(self, stmt: ast.stmt) -> list[ir.Stmt]:
        line = stmt.lineno
        match stmt:
            case ast.With() | ast.AsyncWith():
                self.trace_name(stmt)
                return self.block(stmt.body)
            case ast.Assign(targets=[ast.Name(id="state")], value=ast.Dict() as value) | ast.AnnAssign(target=ast.Name(id="state"), value=ast.Dict() as value):
                self.export.state.update(_literal(value) or {})
                return []
            case ast.Assign(targets=[ast.Name(id="workflow" | "conversation_history" | "nodes" | "last")]) | ast.AnnAssign(
                    target=ast.Name(id="workflow" | "conversation_history")):
                return []
            case ast.Assign(targets=targets) if any(_name(t) in ("last", "nodes") or (isinstance(t, ast.Subscript) and _name(t.value) == "nodes")
                                                    for t in targets):
                return []  # nodes["x"] = last = x_result: to_python's bookkeeping
            case ast.Assign(targets=[ast.Name(id=name)]) if name.endswith("_iterations"):
                return []
            case ast.AugAssign(target=ast.Name(id=name)) if name.endswith("_iterations"):
                return []
            case ast.Assign(targets=[ast.Subscript(value=ast.Name(id=name))]) if name.endswith("_result"):
                return []  # x_result["output_text"] = …: part of the node above
            case ast.Expr(value=ast.Call(func=ast.Attribute(value=ast.Name(id="conversation_history")))):
                return []  # history.extend(...): the graph's agents share the history anyway
            case ast.Assign(targets=[ast.Subscript(value=ast.Name(id="state"), slice=ast.Constant(value=str() as key))], value=value):
                return [ir.SetState(key, self.expr(value), line)]
            case ast.Assign(targets=[ast.Name(id=name)], value=value) | ast.AnnAssign(target=ast.Name(id=name), value=value) if value is not None:
                return [self.assignment(name, value, line)]
            case ast.If():
                return [self.branch(stmt)]
            case ast.While():
                test, meta = stmt.test, {}
                if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) and len(test.values) == 2 and _name(_left(test.values[1])).endswith("_iterations"):
                    limit = test.values[1]
                    meta = {"max_iterations": _literal(limit.comparators[0])} if isinstance(limit, ast.Compare) else {}
                    test = test.values[0]
                return [ir.While(self.expr(test), self.block(stmt.body), line, meta=meta)]
            case ast.Return(value=value):
                return [ir.Return(self.expr(value) if value is not None else None, line)]
        return [ir.Raw(self.code(stmt), line)]

    def assignment(self, name: str, value: ast.expr, line: int) -> ir.Stmt:
        call = value.value if isinstance(value, ast.Await) else value
        if isinstance(call, ast.Call) and _name(call.func) == "call_mcp_tool":
            options = {kw.arg: kw.value for kw in call.keywords if kw.arg}
            arguments = options.get("arguments")
            pairs = dict(zip(arguments.keys, arguments.values, strict=True)) if isinstance(arguments, ast.Dict) else {}
            server, tool = (_literal(options[k]) if k in options else "" for k in ("server", "tool"))
            return ir.CallMCP(name, str(server or ""), str(tool or ""),
                              {str(_literal(k)): self.expr(v) for k, v in pairs.items() if k is not None}, line)
        if isinstance(call, ast.Call) and _is_cel(call) and name.endswith("_result"):
            return ir.Transform(name, self.expr(call), line)
        if isinstance(call, ast.Call) and _name(call.func) == "run" and isinstance(call.func, ast.Attribute) and _name(call.func.value) == "Runner":
            return self.run_agent(name, call, line)
        if isinstance(call, ast.Call) and "guardrail" in _name(call.func):
            configs = [n.id for n in ast.walk(call) if isinstance(n, ast.Name) and n.id in self.export.guardrail_configs]
            if configs:
                texts = [a for a in call.args if not (isinstance(a, ast.Name) and a.id in ("ctx", "context", *configs, "conversation_history", "workflow"))
                         and not (isinstance(a, ast.Constant))]
                return ir.RunGuardrails(configs[0], self.expr(texts[0]) if texts else ir.Ref("workflow", ["input_as_text"]), name, line)
        searches = [n for n in ast.walk(value) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "search"
                    and _name(n.func.value) == "vector_stores"]
        if searches:
            search = {kw.arg: kw.value for kw in searches[0].keywords if kw.arg}
            ids = _literal(search["vector_store_id"]) if "vector_store_id" in search else None
            limit = _literal(search["max_num_results"]) if "max_num_results" in search else 5
            query = self.expr(search["query"]) if "query" in search else ir.Ref("workflow", ["input_as_text"])
            return ir.FileSearch(name, [ids] if isinstance(ids, str) else list(ids or []), query, int(limit or 5), line)
        if isinstance(value, ast.Dict) and any(isinstance(n, ast.Attribute) and n.attr in ("final_output", "final_output_as") for n in ast.walk(value)):
            temp = next(_name(n.value) for n in ast.walk(value) if isinstance(n, ast.Attribute) and n.attr in ("final_output", "final_output_as"))
            if any(isinstance(n, ast.Attribute) and n.attr == "json" for n in ast.walk(value)):
                self.export.note("bug", line, f"{name} uses .json(), the pydantic v1 API (deprecated; to_python() writes model_dump_json()).")
            return ir.Alias(name, ir.Ref(temp), line)
        if isinstance(value, ast.Dict) and name.endswith(("_result", "_output")) and not name.startswith("guardrails") and not any(
                isinstance(v, ast.Subscript) and _name(v.value).endswith("_result") for v in value.values):
            for v in value.values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.startswith(("input.", "state.", "workflow.")):
                    self.export.note("bug", line, f"{name}: the transform's value {v.value!r} is an expression written as a string (Object mode); read as the expression.")
            return ir.Transform(name, self.expr(value, strings_as_cel=True), line)
        return ir.Alias(name, self.expr(value), line)

    def run_agent(self, result: str, call: ast.Call, line: int) -> ir.RunAgent:
        agent = _name(call.args[0]) if call.args else ""
        for node in ast.walk(call):
            if isinstance(node, ast.Dict):
                found = dict(zip([_literal(k) if k else None for k in node.keys], node.values, strict=True))
                if isinstance(workflow_id := found.get("workflow_id"), ast.Constant):
                    self.export.workflow_id = str(workflow_id.value)
        given = next((kw.value for kw in call.keywords if kw.arg == "input"), call.args[1] if len(call.args) > 1 else None)
        history, message = False, None
        if isinstance(given, ast.List):
            for item in given.elts:
                if isinstance(item, ast.Starred):
                    history = True
                elif isinstance(item, ast.Dict):
                    message = self.message_text(item)
        elif isinstance(given, ast.Name):
            history = True
        return ir.RunAgent(agent, result, message, history, line=line)

    def message_text(self, item: ast.Dict) -> ir.Expr | None:
        for key, value in zip(item.keys, item.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "content":
                if isinstance(value, ast.List) and value.elts and isinstance(value.elts[0], ast.Dict):
                    part = value.elts[0]
                    for k, v in zip(part.keys, part.values, strict=True):
                        if isinstance(k, ast.Constant) and k.value == "text":
                            return self.expr(v)
                return self.expr(value)
        return None

    def branch(self, stmt: ast.If) -> ir.Stmt:
        test = stmt.test
        if isinstance(test, ast.Call) and _name(test.func) == "approval_request":
            message = self.expr(test.args[0]) if test.args else ir.Const("Approve?")
            return ir.Approval(message, self.block(stmt.body), self.block(stmt.orelse), stmt.lineno)
        cases: list[tuple[ir.Expr, list[ir.Stmt]]] = [(self.expr(test), self.block(stmt.body))]
        orelse: list[ast.stmt] | None = stmt.orelse or None
        while orelse and len(orelse) == 1 and isinstance(orelse[0], ast.If) and not _is_approval(orelse[0]):
            cases.append((self.expr(orelse[0].test), self.block(orelse[0].body)))
            orelse = orelse[0].orelse or None
        return ir.If(cases, self.block(orelse) if orelse is not None else None, stmt.lineno)

    # -- expressions -------------------------------------------------------------------------
    def expr(self, node: ast.expr, strings_as_cel: bool = False) -> ir.Expr:
        match node:
            case ast.Constant(value=str() as text) if strings_as_cel and text.startswith(("input.", "state.", "workflow.")):
                return ir.Ref(text.split(".")[0], list(text.split(".")[1:]))
            case ast.Constant(value=value):
                return ir.Const(value)
            case ast.Name(id="last"):
                return ir.Previous()
            case ast.Name(id=name):
                return ir.Ref("workflow" if name == "workflow_input" else name)
            case ast.Subscript() | ast.Attribute():
                return self.path(node)
            case ast.Compare(left=left, ops=ops, comparators=rights):
                parts: list[ir.Expr] = []
                current = self.expr(left)
                for op, right in zip(ops, rights, strict=True):
                    if isinstance(op, ast.NotIn):
                        parts.append(ir.Op("!", [ir.Op("in", [current, self.expr(right)])]))
                    elif type(op) in OPS:
                        parts.append(ir.Op(OPS[type(op)], [current, self.expr(right)]))
                    else:
                        return ir.Unknown(self.code(node))
                    current = self.expr(right)
                return _chain(parts, "&&")
            case ast.BoolOp(op=op, values=values):
                return _chain([self.expr(v) for v in values], OPS[type(op)])
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                return ir.Op("!", [self.expr(operand)])
            case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as number)):
                return ir.Const(-number)
            case ast.BinOp(op=op, left=left, right=right) if type(op) in OPS:
                return ir.Op(OPS[type(op)], [self.expr(left), self.expr(right)])
            case ast.IfExp(test=test, body=body, orelse=orelse):
                return ir.Op("?:", [self.expr(test), self.expr(body), self.expr(orelse)])
            case ast.JoinedStr(values=values):
                return ir.Format([str(v.value) if isinstance(v, ast.Constant) else self.expr(v.value) for v in values
                                  if isinstance(v, ast.Constant | ast.FormattedValue)])
            case ast.List(elts=items) | ast.Tuple(elts=items):
                return ir.Op("list", [self.expr(i, strings_as_cel) for i in items])
            case ast.Dict(keys=keys, values=values) if all(k is not None for k in keys):
                return ir.Op("map", [e for k, v in zip(keys, values, strict=True) for e in (self.expr(k), self.expr(v, strings_as_cel))])  # type: ignore[arg-type]
            case ast.Call(func=ast.Name(id=fn), args=[arg]) if fn in CALLS:
                return ir.Op(CALLS[fn], [self.expr(arg)])
            case ast.Call(args=[ast.Constant(value=str() as source), *_]) if _is_cel(node):
                return ir.Cel(source)
            case ast.Call(func=ast.Name(id="render"), args=[ast.Constant(value=str() as template), *_]):
                return ir.Template(template)
            case ast.Call(func=ast.Name(id="text_of")):
                return ir.Previous()
            case ast.Call(func=ast.Name(id=fn), args=[results, *_]) if (key := ir.guardrail_helper(fn)) and (root := _first_name(results)):
                return ir.Ref(root, [key])  # guardrails_has_tripwire(guardrails_result), build_guardrail_fail_output(r or [])
        return ir.Unknown(self.code(node))

    def path(self, node: ast.expr) -> ir.Expr:
        keys: list[str | int] = []
        while isinstance(node, ast.Subscript | ast.Attribute):
            if isinstance(node, ast.Attribute):
                keys.append(node.attr)
            elif isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str | int):
                keys.append(node.slice.value)
            else:
                return ir.Unknown(self.code(node))
            node = node.value
        if not isinstance(node, ast.Name):
            return ir.Unknown(self.code(node))
        root = "workflow" if node.id == "workflow_input" else node.id
        return ir.Ref(root, list(reversed(keys)))


def _state_of(part: str | ir.Expr, aliases: dict[str, ir.Expr]) -> str | ir.Expr:
    """In an instructions function, ``state_topic = run_context.context.state_topic`` is state.topic."""
    if isinstance(part, ir.Ref) and not part.keys and part.root in aliases:
        part = aliases[part.root]
    if isinstance(part, ir.Ref) and part.keys and part.keys[-1] and str(part.keys[-1]).startswith("state_"):
        return ir.Ref("state", [str(part.keys[-1])[len("state_"):]])
    return part


def _is_cel(node: ast.Call) -> bool:
    return (isinstance(node.func, ast.Attribute) and node.func.attr == "evaluate" and _name(node.func.value) == "cel"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _left(node: ast.expr) -> ast.expr:
    return node.left if isinstance(node, ast.Compare) else node


def _chain(parts: list[ir.Expr], op: str) -> ir.Expr:
    result = parts[0]
    for part in parts[1:]:
        result = ir.Op(op, [result, part])
    return result


def _is_approval(stmt: ast.If) -> bool:
    return isinstance(stmt.test, ast.Call) and _name(stmt.test.func) == "approval_request"


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def _first_name(node: ast.expr) -> str:
    """``results`` of ``results`` or ``results or []``."""
    if isinstance(node, ast.BoolOp):
        node = node.values[0]
    return node.id if isinstance(node, ast.Name) else ""


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None
