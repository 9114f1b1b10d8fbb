"""Reads a TypeScript (or JavaScript) export with tree-sitter's TypeScript grammar (never runs it)."""

from __future__ import annotations

import json
import re
from typing import Any

from ...errors import ChatLabError
from . import ir
from .secrets import clean_tool

TOOL_FACTORIES = {"fileSearchTool": "file_search", "webSearchTool": "web_search", "hostedMcpTool": "mcp", "codeInterpreterTool": "code_interpreter",
                  "imageGenerationTool": "image_generation"}
OPS = {"==": "==", "===": "==", "!=": "!=", "!==": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "&&": "&&", "||": "||",
       "+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "??": "||"}
ZOD = {"string": {"type": "string"}, "number": {"type": "number"}, "boolean": {"type": "boolean"}, "integer": {"type": "integer"},
       "any": {}, "unknown": {}, "null": {"type": "null"}}
_PARSER: Any = None


def _parser() -> Any:
    global _PARSER
    if _PARSER is None:
        import tree_sitter
        import tree_sitter_typescript

        _PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_typescript.language_typescript()))
    return _PARSER


def read(source: str) -> ir.Export:
    tree = _parser().parse(source.encode())
    if tree.root_node.has_error:
        bad = next((n for n in _walk(tree.root_node) if n.type == "ERROR" or n.is_missing), tree.root_node)
        raise ChatLabError(f"This is not TypeScript the import can read: a syntax error on line {bad.start_point[0] + 1}.")
    return _Reader().module(tree.root_node)


def _walk(node: Any) -> Any:
    yield node
    for child in node.children:
        yield from _walk(child)


def _text(node: Any) -> str:
    return str(node.text.decode())


def _line(node: Any) -> int:
    return int(node.start_point[0]) + 1


def _field(node: Any, name: str) -> Any:
    return node.child_by_field_name(name)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class _Reader:
    def __init__(self) -> None:
        self.export = ir.Export("typescript")
        self.instructions: dict[str, ir.Format] = {}
        self.consts: dict[str, Any] = {}  # module-level const name -> its value node

    # -- module level ------------------------------------------------------------------------
    def module(self, root: Any) -> ir.Export:
        entry = None
        for stmt in root.named_children:
            declaration = _field(stmt, "declaration") if stmt.type == "export_statement" else stmt
            if declaration is None:
                continue
            if declaration.type in ("lexical_declaration", "variable_declaration"):
                for declarator in (c for c in declaration.named_children if c.type == "variable_declarator"):
                    name, value = _field(declarator, "name"), _field(declarator, "value")
                    if name is None or value is None or name.type != "identifier":
                        continue
                    if _text(name) in ("runWorkflow",) or (value.type == "arrow_function" and _text(name).startswith("runWorkflow")):
                        entry = value
                    else:
                        self.module_const(_text(name), value)
            elif declaration.type == "function_declaration" and _text(_field(declaration, "name")).startswith("runWorkflow"):
                entry = declaration
        if entry is None:
            raise ChatLabError("This file has no runWorkflow function: it is not an Agent Builder export (Code → Agents SDK).")
        self.export.body = self.block(self.entry_body(_field(entry, "body")))
        return self.export

    def entry_body(self, body: Any) -> list[Any]:
        """The statements of runWorkflow, inside ``return await withTrace("Name", async () => {...})``."""
        statements = list(body.named_children) if body.type == "statement_block" else []
        if len(statements) == 1 and statements[0].type == "return_statement":
            call = statements[0].named_children[0]
            call = call.named_children[0] if call.type == "await_expression" else call
            if call.type == "call_expression" and _text(_field(call, "function")) == "withTrace":
                args = _field(call, "arguments").named_children
                if args and args[0].type == "string":
                    self.export.name = _string(args[0])
                inner = _field(args[-1], "body")
                return list(inner.named_children)
        return statements

    def module_const(self, name: str, value: Any) -> None:
        self.consts[name] = value
        if value.type == "object" and "guardrails" in {_key(p) for p in value.named_children if p.type == "pair"}:
            self.export.guardrail_configs[name] = _literal(value)
        elif value.type == "new_expression" and _text(_field(value, "constructor")) == "Agent":
            self.agent(name, value)
        elif value.type == "call_expression":
            function = _text(_field(value, "function"))
            args = _field(value, "arguments").named_children
            if function in TOOL_FACTORIES:
                spec: dict[str, Any] = {"type": TOOL_FACTORIES[function]}
                if function == "fileSearchTool" and args:
                    spec["vector_store_ids"] = _literal(args[0])
                elif args and args[0].type == "object":
                    spec.update({_snake(k): v for k, v in (_literal(args[0]) or {}).items()})
                self.export.tools[name] = clean_tool(spec, _line(value), self.export)
            elif function == "tool" and args:
                options = _literal(args[0], lenient=True) or {}
                self.export.tools[name] = {"type": "function", "name": options.get("name", name)}
                self.export.note("note", _line(value), f"Function tool {options.get('name', name)!r} is a stub in the export: pass its implementation with tools=[...].")
            elif _text(_field(value, "function")).startswith("z."):
                self.export.schemas[name] = self.zod(value, name)
        elif value.type == "arrow_function":
            self.arrow(name, value)

    def arrow(self, name: str, fn: Any) -> None:
        body = _field(fn, "body")
        if name == "approvalRequest":
            returns = [n for n in _walk(body) if n.type == "return_statement"]
            if returns and all(r.named_children and r.named_children[0].type == "true" for r in returns):
                self.export.approval_always_approves = True
            return
        params = _field(fn, "parameters")
        if params is None or len(params.named_children) != 2 or body.type != "statement_block":
            return
        aliases: dict[str, ir.Expr] = {}
        returned = None
        for stmt in body.named_children:
            if stmt.type == "lexical_declaration":
                for declarator in (c for c in stmt.named_children if c.type == "variable_declarator"):
                    pattern = _field(declarator, "name")
                    if pattern.type == "object_pattern":  # const { stateTopic } = runContext.context
                        for item in pattern.named_children:
                            key = _text(item) if item.type == "shorthand_property_identifier_pattern" else _text(_field(item, "key"))
                            aliases[_text(item) if item.type == "shorthand_property_identifier_pattern" else _text(_field(item, "value"))] = ir.Ref("ctx", [key])
            elif stmt.type == "return_statement" and stmt.named_children:
                returned = stmt.named_children[0]
        if returned is not None:
            value = self.expr(returned)
            parts = value.parts if isinstance(value, ir.Format) else [value]
            self.instructions[name] = ir.Format([self.state_of(p, aliases) for p in parts])

    def state_of(self, part: str | ir.Expr, aliases: dict[str, ir.Expr]) -> str | ir.Expr:
        if isinstance(part, ir.Ref) and not part.keys and part.root in aliases:
            part = aliases[part.root]
        if isinstance(part, ir.Ref) and part.keys and str(part.keys[-1]).startswith("state") and len(str(part.keys[-1])) > 5:
            camel = str(part.keys[-1])[5:]
            key = camel[0].lower() + camel[1:]
            return ir.Ref("state", [self.state_key(key)])
        return part

    def state_key(self, camel: str) -> str:
        """``stateMaxDrafts`` reads ``state.max_drafts`` when the state has that key."""
        squashed = camel.replace("_", "").lower()
        return next((k for k in self.export.state if k.replace("_", "").lower() == squashed), _snake(camel))

    def agent(self, variable: str, call: Any) -> None:
        spec = ir.AgentSpec(variable, variable, line=_line(call))
        options = _field(call, "arguments").named_children
        for pair in (p for p in (options[0].named_children if options else []) if p.type == "pair"):
            key, value = _key(pair), _field(pair, "value")
            match key:
                case "name":
                    spec.name = _string(value) if value.type == "string" else variable
                case "instructions":
                    if value.type == "identifier" and _text(value) in self.instructions:
                        spec.instructions = self.instructions[_text(value)]
                    elif value.type in ("string", "template_string"):
                        formatted = self.expr(value)
                        spec.instructions = formatted if isinstance(formatted, ir.Format) else str(_literal(value))
                case "model":
                    spec.model = _string(value) if value.type == "string" else None
                case "modelSettings":
                    settings = {_snake(k): v for k, v in (_literal(value) or {}).items()}
                    # The JS SDK's spellings of the Python SDK's verbosity and extra_args.
                    if isinstance(settings.get("text"), dict) and set(settings["text"]) == {"verbosity"}:
                        settings["verbosity"] = settings.pop("text")["verbosity"]
                    if "provider_data" in settings:
                        settings["extra_args"] = settings.pop("provider_data")
                    spec.model_settings = settings
                case "tools":
                    spec.tools = [_text(t) for t in value.named_children if t.type == "identifier"]
                case "outputType":
                    spec.output_type = _text(value)
        self.export.agents[variable] = spec

    def zod(self, node: Any, where: str) -> dict[str, Any]:
        """A zod schema (``z.object({...})``) as JSON Schema."""
        if node.type != "call_expression":
            return {}
        function = _field(node, "function")
        args = _field(node, "arguments").named_children
        if function.type == "member_expression" and _text(_field(function, "object")).startswith("z."):  # z.number().int(), .optional()
            inner = self.zod(_field(function, "object"), where)
            method = _text(_field(function, "property"))
            if method == "int":
                return {**inner, "type": "integer"}
            if method in ("optional", "nullable"):
                return {"anyOf": [inner, {"type": "null"}]}
            return inner
        kind = _text(function).removeprefix("z.")
        if kind == "object" and args and args[0].type == "object":
            properties = {_key(p): self.zod(_field(p, "value"), f"{where}.{_key(p)}") for p in args[0].named_children if p.type == "pair"}
            return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
        if kind == "array" and args:
            return {"type": "array", "items": self.zod(args[0], where)}
        if kind == "enum" and args:
            return {"type": "string", "enum": _literal(args[0])}
        if kind == "literal" and args:
            return {"const": _literal(args[0])}
        if kind == "integer":
            self.export.note("bug", _line(node), f"{where} uses z.integer(), which zod does not have (the export throws); read as an integer.")
        if kind in ZOD:
            return dict(ZOD[kind])
        if _text(function) in self.export.schemas:
            return dict(self.export.schemas[_text(function)])
        return {}

    # -- runWorkflow -------------------------------------------------------------------------
    def block(self, statements: list[Any]) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        for stmt in statements:
            if stmt.type == "comment":
                continue
            out += self.statement(stmt)
        return out

    def body(self, node: Any) -> list[ir.Stmt]:
        if node is None:
            return []
        if node.type == "else_clause":
            node = node.named_children[0]
        return self.block(list(node.named_children)) if node.type == "statement_block" else self.statement(node)

    def statement(self, stmt: Any) -> list[ir.Stmt]:
        line = _line(stmt)
        match stmt.type:
            case "lexical_declaration" | "variable_declaration":
                out: list[ir.Stmt] = []
                for declarator in (c for c in stmt.named_children if c.type == "variable_declarator"):
                    out += self.declaration(_field(declarator, "name"), _field(declarator, "value"), line)
                return out
            case "expression_statement":
                expression = stmt.named_children[0]
                if expression.type == "assignment_expression":
                    left = _field(expression, "left")
                    if left.type == "member_expression" and _text(_field(left, "object")) == "state":
                        return [ir.SetState(_text(_field(left, "property")), self.expr(_field(expression, "right")), line)]
                if expression.type == "call_expression" and _text(_field(expression, "function")).startswith("conversationHistory."):
                    return []
                return [ir.Raw(_text(stmt), line)]
            case "if_statement":
                if self.throws_on_empty(stmt):
                    return []
                return [self.branch(stmt)]
            case "while_statement":
                return [ir.While(self.expr(_field(stmt, "condition")), self.body(_field(stmt, "body")), line)]
            case "return_statement":
                return [ir.Return(self.expr(stmt.named_children[0]) if stmt.named_children else None, line)]
        return [ir.Raw(_text(stmt), line)]

    def declaration(self, name: Any, value: Any, line: int) -> list[ir.Stmt]:
        if value is None:
            return []
        call = value.named_children[0] if value.type == "await_expression" else value
        if name.type == "object_pattern":  # const { hasTripwire: x, ... } = await runAndApplyGuardrails(...)
            guard = self.guardrails_call("guardrails_result", call, line)
            if guard is None:
                return [ir.Raw(f"const {_text(name)} = {_text(value)}", line)]
            aliases: list[ir.Stmt] = [guard]
            for item in name.named_children:
                key = _text(item) if item.type == "shorthand_property_identifier_pattern" else _text(_field(item, "key"))
                local = _text(item) if item.type == "shorthand_property_identifier_pattern" else _text(_field(item, "value"))
                aliases.append(ir.Alias(local, ir.Ref(guard.result, [key]), line))
            return aliases
        variable = _text(name)
        if variable == "state" and value.type == "object":
            self.export.state.update(_literal(value) or {})
            return []
        if variable in ("conversationHistory", "workflow"):
            return []
        if variable == "runner":
            metadata = next((p for p in _walk(value) if p.type == "pair" and _key(p) == "workflow_id"), None)
            if metadata is not None and _field(metadata, "value").type == "string":
                self.export.workflow_id = _string(_field(metadata, "value"))
            return []
        if call.type == "call_expression":
            function = _text(_field(call, "function"))
            if function.endswith(".run") and function.split(".")[0] in ("runner", "Runner"):
                return [self.run_agent(variable, call, line)]
            if (guard := self.guardrails_call(variable, call, line)) is not None:
                return [guard]
        searches = [n for n in _walk(value) if n.type == "call_expression" and _text(_field(n, "function")).endswith("vectorStores.search")]
        if searches:
            args = _field(searches[0], "arguments").named_children
            options = {_key(p): _field(p, "value") for p in (args[1].named_children if len(args) > 1 else []) if p.type == "pair"}
            ids = [_string(args[0])] if args and args[0].type == "string" else []
            limit = _literal(options["max_num_results"]) if "max_num_results" in options else 5
            query = self.expr(options["query"]) if "query" in options else ir.Ref("workflow", ["input_as_text"])
            return [ir.FileSearch(variable, ids, query, int(limit or 5), line)]
        if value.type == "object" and any(n.type == "property_identifier" and _text(n) == "finalOutput" for n in _walk(value)):
            temp = next(_text(_field(n, "object")) for n in _walk(value) if n.type == "member_expression" and _text(_field(n, "property")) == "finalOutput")
            return [ir.Alias(variable, ir.Ref(temp), line)]
        if value.type == "object" and variable.endswith(("Result", "Output")) and not variable.startswith("guardrails"):
            return [ir.Transform(variable, self.expr(value, strings_as_cel=True), line)]
        return [ir.Alias(variable, self.expr(value), line)]

    def guardrails_call(self, result: str, call: Any, line: int) -> ir.RunGuardrails | None:
        if call.type != "call_expression" or "guardrail" not in _text(_field(call, "function")).lower():
            return None
        args = _field(call, "arguments").named_children
        configs = [_text(a) for a in args if a.type == "identifier" and _text(a) in self.export.guardrail_configs]
        if not configs:
            return None
        texts = [a for a in args if _text(a) not in (*configs, "conversationHistory", "workflow", "context") and a.type not in ("true", "false")]
        return ir.RunGuardrails(configs[0], self.expr(texts[0]) if texts else ir.Ref("workflow", ["input_as_text"]), result, line)

    def run_agent(self, result: str, call: Any, line: int) -> ir.RunAgent:
        args = _field(call, "arguments").named_children
        agent = _text(args[0]) if args else ""
        history, message = False, None
        if len(args) > 1 and args[1].type == "array":
            for item in args[1].named_children:
                if item.type == "spread_element":
                    history = True
                elif item.type == "object":
                    message = self.message_text(item)
        elif len(args) > 1 and args[1].type == "identifier":
            history = True
        return ir.RunAgent(agent, result, message, history, line=line)

    def message_text(self, item: Any) -> ir.Expr | None:
        for node in _walk(item):
            if node.type == "pair" and _key(node) == "text":
                return self.expr(_field(node, "value"))
        return None

    def throws_on_empty(self, stmt: Any) -> bool:
        """``if (!xResultTemp.finalOutput) { throw new Error(...) }``: the export's own check, not a node."""
        condition = _text(_field(stmt, "condition"))
        consequence = _field(stmt, "consequence")
        throws = all(c.type == "throw_statement" for c in consequence.named_children) if consequence.type == "statement_block" else consequence.type == "throw_statement"
        if not (throws and re.fullmatch(r"\(\s*!\s*\w+\.finalOutput\s*\)", condition)):
            return False
        if not any(f.message.startswith("The export throws when an agent") for f in self.export.findings):
            self.export.note("bug", _line(stmt), "The export throws when an agent's output is empty, 0 or false (`if (!finalOutput) throw`); "
                                                 "the graph passes such outputs on.")
        return True

    def branch(self, stmt: Any) -> ir.Stmt:
        condition = _field(stmt, "condition")
        test = condition.named_children[0] if condition.type == "parenthesized_expression" else condition
        test = test.named_children[0] if test.type == "await_expression" else test
        if test.type == "call_expression" and _text(_field(test, "function")) == "approvalRequest":
            args = _field(test, "arguments").named_children
            return ir.Approval(self.expr(args[0]) if args else ir.Const("Approve?"), self.body(_field(stmt, "consequence")),
                               self.body(_field(stmt, "alternative")), _line(stmt))
        cases = [(self.expr(test), self.body(_field(stmt, "consequence")))]
        alternative = _field(stmt, "alternative")
        while alternative is not None and alternative.named_children and alternative.named_children[0].type == "if_statement":
            nested = alternative.named_children[0]
            nested_test = _field(nested, "condition")
            nested_test = nested_test.named_children[0] if nested_test.type == "parenthesized_expression" else nested_test
            if nested_test.type == "call_expression" and _text(_field(nested_test, "function")) == "approvalRequest":
                break
            cases.append((self.expr(nested_test), self.body(_field(nested, "consequence"))))
            alternative = _field(nested, "alternative")
        return ir.If(cases, self.body(alternative) if alternative is not None else None, _line(stmt))

    # -- expressions -------------------------------------------------------------------------
    def expr(self, node: Any, strings_as_cel: bool = False) -> ir.Expr:
        kind = node.type
        if kind == "parenthesized_expression":
            return self.expr(node.named_children[0], strings_as_cel)
        if kind == "string":
            text = _string(node)
            if strings_as_cel and text.startswith(("input.", "state.", "workflow.")):
                return ir.Ref(text.split(".")[0], list(text.split(".")[1:]))
            return ir.Const(text)
        if kind in ("number", "true", "false", "null"):
            return ir.Const(_literal(node))
        if kind == "identifier":
            return ir.Ref(_text(node))
        if kind in ("member_expression", "subscript_expression"):
            return self.path(node)
        if kind == "template_string":
            parts: list[str | ir.Expr] = []
            for child in node.named_children:
                if child.type == "template_substitution":
                    parts.append(self.expr(child.named_children[0]))
                elif child.type in ("string_fragment", "escape_sequence"):
                    parts.append(json.loads(f'"{_text(child)}"') if child.type == "escape_sequence" else _text(child))
            return ir.Format(parts)
        if kind == "binary_expression":
            op = _text(_field(node, "operator"))
            if op in OPS:
                return ir.Op(OPS[op], [self.expr(_field(node, "left")), self.expr(_field(node, "right"))])
        if kind == "unary_expression" and _text(_field(node, "operator")) == "!":
            return ir.Op("!", [self.expr(_field(node, "argument"))])
        if kind == "unary_expression" and _text(_field(node, "operator")) == "-" and _field(node, "argument").type == "number":
            return ir.Const(-_literal(_field(node, "argument")))
        if kind == "ternary_expression":
            return ir.Op("?:", [self.expr(_field(node, k)) for k in ("condition", "consequence", "alternative")])
        if kind == "array":
            return ir.Op("list", [self.expr(i, strings_as_cel) for i in node.named_children])
        if kind == "object" and all(p.type == "pair" for p in node.named_children):
            return ir.Op("map", [e for p in node.named_children for e in (ir.Const(_key(p)), self.expr(_field(p, "value"), strings_as_cel))])
        if kind == "call_expression" and _text(_field(node, "function")) in ("String", "Number") and _field(node, "arguments").named_children:
            fn = "string" if _text(_field(node, "function")) == "String" else "double"
            return ir.Op(fn, [self.expr(_field(node, "arguments").named_children[0])])
        if kind == "call_expression" and (key := ir.guardrail_helper(_text(_field(node, "function")))):
            args = _field(node, "arguments").named_children
            results = args[0] if args else None
            if results is not None and results.type == "binary_expression":  # guardrailsResult ?? []
                results = _field(results, "left")
            if results is not None and results.type == "identifier":
                return ir.Ref(_text(results), [key])
        if kind == "member_expression" and _text(_field(node, "property")) == "length":
            return ir.Op("size", [self.expr(_field(node, "object"))])
        return ir.Unknown(_text(node))

    def path(self, node: Any) -> ir.Expr:
        keys: list[str | int] = []
        while node.type in ("member_expression", "subscript_expression"):
            if node.type == "member_expression":
                keys.append(_text(_field(node, "property")))
            else:
                index = _field(node, "index")
                if index.type not in ("string", "number"):
                    return ir.Unknown(_text(node))
                keys.append(_literal(index))
            node = _field(node, "object")
        if node.type != "identifier":
            return ir.Unknown(_text(node))
        keys.reverse()
        if keys and keys[-1] == "length":
            return ir.Op("size", [ir.Ref(_text(node), keys[:-1])])
        return ir.Ref(_text(node), keys)


def _key(pair: Any) -> str:
    key = _field(pair, "key")
    return _string(key) if key.type == "string" else _text(key)


def _string(node: Any) -> str:
    return "".join(json.loads(f'"{_text(c)}"') if c.type == "escape_sequence" else _text(c) for c in node.named_children)


def _literal(node: Any, lenient: bool = False) -> Any:
    """A literal's value (objects, arrays, strings, numbers, booleans, null); None otherwise."""
    kind = node.type
    if kind == "string":
        return _string(node)
    if kind == "template_string" and not any(c.type == "template_substitution" for c in node.named_children):
        return "".join(_text(c) for c in node.named_children)
    if kind == "number":
        number = float(_text(node))
        return int(number) if number.is_integer() and "." not in _text(node) else number
    if kind in ("true", "false"):
        return kind == "true"
    if kind == "null":
        return None
    if kind == "array":
        return [_literal(c, lenient) for c in node.named_children]
    if kind == "object":
        found = {}
        for pair in node.named_children:
            if pair.type == "pair":
                found[_key(pair)] = _literal(_field(pair, "value"), lenient)
            elif not lenient:
                return None
        return found
    if kind == "unary_expression" and _text(_field(node, "operator")) == "-":
        value = _literal(_field(node, "argument"), lenient)
        return -value if isinstance(value, int | float) else None
    return None
