"""``Workflow.to_python()``: Agents SDK code in the idiom of Agent Builder's exports, with their
known bugs fixed, that ``Workflow.from_agent_builder`` reads back into the same graph.

The fixes: conditions, assignments and templates are CEL evaluated by the same library as the
graph (an export's hand-translated Python can branch differently), approvals ask instead of
always approving, schema integers are ``int``, every branch returns, ``model_dump_json`` replaces
``.json()``, the guardrail fail output names only the checks that tripped, and no check error is
swallowed. ``# chatkit-lab:`` comments keep what code cannot say (node ids, names, order), so the
round trip is exact; each holds only what reading the code alone would get wrong.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable
from typing import Any

from ...errors import ChatLabError

MARK = "# chatkit-lab: "
MODULE_MARK = "# chatkit-lab workflow: "
RESERVED = {"state", "workflow", "nodes", "last", "scope", "render", "cel", "trace", "client", "conversation_history", "run_config",
            "approval_request", "approval_message", "approve_mcp_call", "text_of", "call_mcp_tool", "run_and_apply_guardrails", "WorkflowInput", "run_workflow"}
SCOPE = "scope(last, state, workflow, nodes)"


def write_python(wf: Any, module: dict[str, Any] | None = None) -> str:
    """The code; ``module`` (what reading the code alone gets wrong) goes into the module marker."""
    return _Writer(wf, module or {}).module()


def _py(value: Any) -> str:
    """A JSON value as a Python literal."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _string(text: str) -> str:
    if "\n" in text and '"""' not in text and not text.endswith('"') and "\\" not in text:
        return f'"""{text}"""'
    return json.dumps(text, ensure_ascii=False)


class _Writer:
    def __init__(self, wf: Any, module: dict[str, Any]) -> None:
        self.wf, self.module_meta = wf, module
        self.by_id = {n.id: n for n in wf.nodes}
        self.next: dict[tuple[str, str | None], str] = {(e.source, e.label): e.target for e in wf.edges}
        self.emitted: set[str] = set()
        self.ref: str | None = None  # the join the next marker names
        self.lines: list[str] = []
        self.variables = {n.id: (n.id if n.id not in RESERVED and not keyword.iskeyword(n.id) else f"{n.id}_node") for n in wf.nodes}

    # -- the module ------------------------------------------------------------------------
    def module(self) -> str:
        wf = self.wf
        head = [
            f'"""{wf.name}: written by chatkit-lab (Workflow.to_python) in the idiom of Agent Builder\'s "Code → Agents SDK" export.',
            "",
            "Conditions, assignments and templates are CEL, evaluated by the same library as the graph. Run it with",
            "``asyncio.run(run_workflow(WorkflowInput(input_as_text=...)))``; ``# chatkit-lab:`` comments let",
            '``Workflow.from_agent_builder`` read it back into the same graph."""',
            "",
            "import json",
            "",
            "import cel",
            "from agents import Agent, ModelSettings, RunConfig, RunContextWrapper, Runner, TResponseInputItem, function_tool, trace",
            "from pydantic import BaseModel",
            "from typing import Any, Literal",
        ]
        types = {n.type for n in wf.nodes}
        tools = self.tools()
        if any(t[1].startswith(("FileSearchTool", "WebSearchTool", "HostedMCPTool", "CodeInterpreterTool")) for t in tools):
            head.append("from agents import CodeInterpreterTool, FileSearchTool, HostedMCPTool, WebSearchTool")
        if any("reasoning" in (n.model_settings or {}) for n in wf.nodes if n.type == "agent"):
            head.append("from openai.types.shared.reasoning import Reasoning")
        if "guardrails" in types or "file_search" in types:
            head += ["from openai import AsyncOpenAI", ""]
        if "guardrails" in types:
            head += ["from guardrails.runtime import instantiate_guardrails, load_config_bundle, run_guardrails"]
        head += ["", MODULE_MARK + json.dumps(self.module_meta, ensure_ascii=False) if self.module_meta else "", ""]
        lines = [line for line in head if line is not None]
        trace_metadata = {k: v for k, v in wf.metadata.items() if k in ("__trace_source__", "workflow_id")} or {"__trace_source__": "agent-builder"}
        lines += ["TRACE_METADATA = " + _py(trace_metadata), "", "", *HELPERS]
        if "guardrails" in types:
            lines += ["", "", "client = AsyncOpenAI()", *GUARDRAIL_HELPERS]
        elif "file_search" in types:
            lines += ["", "", "client = AsyncOpenAI()"]
        if "mcp" in types:
            lines += ["", "", *MCP_HELPER]
        mcp_approvals = any(_asks_approval(t) for n in wf.nodes if n.type == "agent" for t in n.tools)
        if "user_approval" in types or mcp_approvals:
            lines += ["", "", *APPROVAL_HELPER]
        if mcp_approvals:
            lines += ["", "", *MCP_APPROVAL_HELPER]
        if tools:
            lines += ["", "", "# Tool definitions"]
            for name, code in tools:
                lines += [f"{name} = {code}"] if not code.startswith("@") else code.split("\n")
        for node in wf.nodes:
            if node.type == "guardrails":
                lines += ["", f"{self.variables[node.id]}_config = {_py(node.config)}"]
        for node in wf.nodes:
            if node.type == "agent":
                lines += ["", "", *self.agent_definition(node)]
        lines += ["", "", "class WorkflowInput(BaseModel):", "    input_as_text: str", "", "", "# Main code entrypoint",
                  "async def run_workflow(workflow_input: WorkflowInput):", f"    with trace({_string(wf.name)}):",
                  f"        state = {_py(wf.state_defaults())}", "        workflow = workflow_input.model_dump()", "        nodes = {}",
                  "        last = None",
                  '        conversation_history: list[TResponseInputItem] = [{"role": "user", "content": [{"type": "input_text", "text": workflow["input_as_text"]}]}]']
        self.lines = lines
        self.emit(self.next.get((wf.start_node().id, None)), 2, None)
        return "\n".join(self.lines).rstrip() + "\n"

    def tools(self) -> list[tuple[str, str]]:
        found: dict[str, str] = {}
        for node in self.wf.nodes:
            if node.type != "agent":
                continue
            for spec in node.tools:
                name, code = self.tool_code(spec)
                found.setdefault(name, code)
        return list(found.items())

    def tool_code(self, spec: str | dict[str, Any]) -> tuple[str, str]:
        if isinstance(spec, str):
            return spec, (f"@function_tool\ndef {spec}(query: str) -> str:\n"
                          f'    """TODO: implement {spec} (the workflow names it; chatkit-lab runs the lab\'s tool of this name)."""\n'
                          f"    raise NotImplementedError({spec!r})")
        kind = spec.get("type")
        options = {k: v for k, v in spec.items() if k != "type"}
        if kind == "file_search":
            return "file_search", f"FileSearchTool({', '.join(f'{k}={_py(v)}' for k, v in options.items())})"
        if kind == "web_search":
            return "web_search", f"WebSearchTool({', '.join(f'{k}={_py(v)}' for k, v in options.items())})"
        if kind == "mcp":
            name = re.sub(r"\W", "_", str(spec.get("server_label") or "mcp"))
            asks = ", on_approval_request=approve_mcp_call" if _asks_approval(spec) else ""
            return f"mcp_{name}", f"HostedMCPTool(tool_config={_py({'type': 'mcp', **options})}{asks})"
        if kind == "code_interpreter":
            return "code_interpreter", f"CodeInterpreterTool(tool_config={_py({'type': 'code_interpreter', **options})})"
        raise ChatLabError(f"to_python cannot write the tool {spec!r}.")

    def agent_definition(self, node: Any) -> list[str]:
        var = self.variables[node.id]
        out: list[str] = []
        if node.output_schema is not None:
            out += [*self.schema_classes(_class_name(node.id), node.output_schema), ""]
        templated = "{{" in node.instructions
        if templated:
            out += [f"def {var}_instructions(run_context: RunContextWrapper[dict], _agent: Agent[dict]):",
                    f"    return render({_string(node.instructions)}, run_context.context)", ""]
        args = [f"name={_string(node.name)}", f"instructions={var}_instructions" if templated else f"instructions={_string(node.instructions)}"]
        if node.model is not None:
            args.append(f"model={_string(node.model)}")
        if node.output_schema is not None:
            args.append(f"output_type={_class_name(node.id)}")
        if node.tools:
            args.append("tools=[" + ", ".join(self.tool_code(t)[0] for t in node.tools) + "]")
        args.append(f"model_settings=ModelSettings({self.settings(node.model_settings)})")
        return [*out, f"{var} = Agent(", *[f"    {a}," for a in args], ")"]

    def settings(self, settings: dict[str, Any]) -> str:
        parts = []
        for key, value in settings.items():
            if key == "reasoning" and isinstance(value, dict):
                parts.append(f"reasoning=Reasoning({', '.join(f'{k}={_py(v)}' for k, v in value.items())})")
            else:
                parts.append(f"{key}={_py(value)}")
        return ", ".join(parts)

    def schema_classes(self, name: str, schema: dict[str, Any]) -> list[str]:
        """pydantic classes for a JSON Schema object, nested as ``<Parent>__<Field>`` (the export idiom)."""
        before: list[str] = []
        fields: list[str] = []
        for field_name, prop in (schema.get("properties") or {}).items():
            annotation = self.annotation(f"{name}__{_class_name(field_name)}", prop, before)
            fields.append(f"    {field_name}: {annotation}")
        return [*before, f"class {name}(BaseModel):", *(fields or ["    pass"])]

    def annotation(self, name: str, prop: dict[str, Any], before: list[str]) -> str:
        if "enum" in prop:
            return "Literal[" + ", ".join(_py(v) for v in prop["enum"]) + "]"
        if "anyOf" in prop:
            parts = [self.annotation(name, p, before) if p.get("type") != "null" else "None" for p in prop["anyOf"]]
            return " | ".join(parts)
        kind = prop.get("type")
        if kind == "object" and prop.get("properties"):
            before += [*self.schema_classes(name, prop), "", ""]
            return name
        if kind == "array":
            return f"list[{self.annotation(name, prop.get('items') or {}, before)}]"
        return {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict"}.get(str(kind), "Any")

    # -- run_workflow --------------------------------------------------------------------------
    def write(self, indent: int, *lines: str) -> None:
        self.lines += ["    " * indent + line if line else "" for line in lines]

    def mark(self, indent: int, meta: dict[str, Any]) -> None:
        if self.ref is not None:
            meta, self.ref = {"ref": self.ref, **meta}, None
        self.write(indent, MARK + json.dumps(meta, ensure_ascii=False))

    def meta(self, node: Any, **extra: Any) -> dict[str, Any]:
        return {"id": node.id, **extra}

    def end_here(self, indent: int) -> None:
        """A branch with no next node: the graph ends with the last output; the code says so."""
        self.mark(indent, {"implicit_end": True})
        self.write(indent, "return last")

    def emit(self, node_id: str | None, indent: int, loop: str | None) -> None:
        while True:
            if node_id is None:
                self.end_here(indent)
                return
            if node_id == loop:
                return  # the body's end: back to the while
            node = self.by_id[node_id]
            if node_id in self.emitted:
                # A join: the code repeats what follows (as exports do); the graph has it once.
                self.ref = node_id
                self.emitted.discard(node_id)
                try:
                    self.emit(node_id, indent, loop)
                finally:
                    self.emitted.add(node_id)
                return
            self.emitted.add(node_id)
            step: Callable[[Any, int, str | None], str | None] = getattr(self, f"node_{node.type}")
            following = step(node, indent, loop)
            if following == "":
                return  # the node wrote its own continuations (a branch) or ended the run
            node_id = following

    def scope_text(self, template: str) -> str:
        return f"render({_string(template)}, {SCOPE})"

    def cel(self, source: str) -> str:
        return f"cel.evaluate({_string(source)}, {SCOPE})"

    def record(self, indent: int, node: Any, value: str) -> None:
        self.write(indent, f'nodes["{node.id}"] = last = {value}')

    def node_agent(self, node: Any, indent: int, loop: str | None) -> str | None:
        var = self.variables[node.id]
        given = ["*conversation_history"] if node.include_history else ['{"role": "user", "content": [{"type": "input_text", "text": workflow["input_as_text"]}]}']
        if node.message is not None:
            given.append('{"role": "user", "content": [{"type": "input_text", "text": ' + self.scope_text(node.message) + "}]}")
        self.mark(indent, self.meta(node))
        self.write(indent, f"{var}_result_temp = await Runner.run(", f"    {var},", f"    input=[{', '.join(given)}],",
                   "    run_config=run_config(),", f"    context={SCOPE},", ")",
                   f"conversation_history.extend([item.to_input_item() for item in {var}_result_temp.new_items])")
        if node.output_schema is not None:
            self.write(indent, f'{var}_result = {{"output_text": {var}_result_temp.final_output.model_dump_json(), '
                               f'"output_parsed": {var}_result_temp.final_output.model_dump()}}')
        else:
            self.write(indent, f'{var}_result = {{"output_text": {var}_result_temp.final_output_as(str)}}')
        self.record(indent, node, f"{var}_result")
        return self.next.get((node.id, None))

    def node_guardrails(self, node: Any, indent: int, loop: str | None) -> str | None:
        var = self.variables[node.id]
        text = self.cel(node.text) if node.text is not None else "text_of(last)"
        self.mark(indent, self.meta(node))
        self.write(indent, f"{var}_result = await run_and_apply_guardrails({text}, {var}_config, conversation_history, workflow)",
                   f'{var}_hastripwire = {var}_result["has_tripwire"]')
        self.record(indent, node, f'{var}_result["fail_output"] if {var}_hastripwire else {var}_result["pass_output"]')
        failed = self.next.get((node.id, "fail"))
        if failed is not None:
            self.write(indent, f"if {var}_hastripwire:")
            self.emit(failed, indent + 1, loop)
        return self.next.get((node.id, "pass"))

    def node_if_else(self, node: Any, indent: int, loop: str | None) -> str:
        self.mark(indent, self.meta(node, labels=list(node.branches)))
        for i, (label, condition) in enumerate(node.branches.items()):
            self.write(indent, f"{'if' if i == 0 else 'elif'} {self.cel(condition)}:")
            self.emit(self.next.get((node.id, label)), indent + 1, loop)
        self.write(indent, "else:")
        self.emit(self.next.get((node.id, "else")), indent + 1, loop)
        return ""

    def node_while(self, node: Any, indent: int, loop: str | None) -> str | None:
        var = self.variables[node.id]
        self.write(indent, f"{var}_iterations = 0")
        self.mark(indent, self.meta(node))
        self.write(indent, f"while {self.cel(node.condition)} and {var}_iterations < {node.max_iterations}:", f"    {var}_iterations += 1")
        self.emit(self.next.get((node.id, "body")), indent + 1, node.id)
        return self.next.get((node.id, "done"))

    def node_user_approval(self, node: Any, indent: int, loop: str | None) -> str:
        self.write(indent, f"approval_message = {self.scope_text(node.message)}")
        self.mark(indent, self.meta(node))
        self.write(indent, "if approval_request(approval_message):")
        self.emit(self.next.get((node.id, "approve")), indent + 1, loop)
        self.write(indent, "else:")
        self.emit(self.next.get((node.id, "reject")), indent + 1, loop)
        return ""

    def node_set_state(self, node: Any, indent: int, loop: str | None) -> str | None:
        self.mark(indent, self.meta(node, keys=list(node.assignments)))
        for key, expression in node.assignments.items():
            self.write(indent, f'state["{key}"] = {self.cel(expression)}')
        return self.next.get((node.id, None))

    def node_transform(self, node: Any, indent: int, loop: str | None) -> str | None:
        var = self.variables[node.id]
        self.mark(indent, self.meta(node))
        if node.expression is not None:
            self.write(indent, f"{var}_result = {self.cel(node.expression)}")
        else:
            self.write(indent, f"{var}_result = {{" + ", ".join(f"{_py(k)}: {self.cel(v)}" for k, v in node.expressions_.items()) + "}")
        self.record(indent, node, f"{var}_result")
        return self.next.get((node.id, None))

    def node_file_search(self, node: Any, indent: int, loop: str | None) -> str | None:
        var = self.variables[node.id]
        query = self.cel(node.query) if node.query is not None else 'workflow["input_as_text"]'
        store = _string(node.vector_store_ids[0]) if node.vector_store_ids else '"vs_REPLACE_ME"'
        self.mark(indent, self.meta(node))
        self.write(indent, f"{var}_result = {{",
                   '    "results": [{"id": result.file_id, "filename": result.filename, "score": result.score, "text": "".join(c.text for c in result.content)}',
                   f"                for result in (await client.vector_stores.search(vector_store_id={store}, query={query}, max_num_results={node.max_results})).data]",
                   "}")
        self.write(indent, f'{var}_result["output_text"] = "\\n\\n".join(r["text"] for r in {var}_result["results"])')
        self.record(indent, node, f"{var}_result")
        return self.next.get((node.id, None))

    def node_mcp(self, node: Any, indent: int, loop: str | None) -> str | None:
        var = self.variables[node.id]
        arguments = "{" + ", ".join(f"{_py(k)}: {self.cel(v)}" for k, v in node.arguments.items()) + "}"
        self.mark(indent, self.meta(node))
        self.write(indent, f"{var}_result = await call_mcp_tool(server={_string(node.server)}, tool={_string(node.tool)}, arguments={arguments})")
        self.record(indent, node, f"{var}_result")
        return self.next.get((node.id, None))

    def node_end(self, node: Any, indent: int, loop: str | None) -> str:
        self.mark(indent, self.meta(node))
        self.write(indent, f'return {{"output_text": {self.scope_text(node.output)}}}' if node.output is not None else "return last")
        return ""

    def node_note(self, node: Any, indent: int, loop: str | None) -> str:  # pragma: no cover - notes have no edges
        return ""

    def node_start(self, node: Any, indent: int, loop: str | None) -> str | None:  # pragma: no cover - nothing leads into start
        return self.next.get((node.id, None))


def _class_name(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part) + ("Schema" if not text.endswith("__") else "")


HELPERS = ['def scope(last: Any, state: dict, workflow: dict, nodes: dict) -> dict:', '    """What CEL reads: the previous node\'s output, state, the workflow input, every node\'s output."""', '    return {"input": last, "state": state, "workflow": workflow, "nodes": nodes}', '', '', 'def render(template: str, values: dict) -> str:', '    """A template\'s {{ CEL }} parts, evaluated."""', '    import re', '', '    def value(match: "re.Match[str]") -> str:', '        found = cel.evaluate(match.group(1).strip(), values)', '        return found if isinstance(found, str) else json.dumps(found)', '', '    return re.sub(r"\\{\\{(.*?)\\}\\}", value, template, flags=re.DOTALL)', '', '', 'def text_of(output: Any) -> str:', '    """The text of a node\'s output (what a guardrails node checks by default)."""', '    if isinstance(output, dict):', '        for key in ("output_text", "safe_text", "input_as_text"):', '            if isinstance(output.get(key), str):', '                return output[key]', '    return "" if output is None else output if isinstance(output, str) else json.dumps(output)', '', '', 'def run_config() -> RunConfig:', '    return RunConfig(trace_metadata=TRACE_METADATA)']

GUARDRAIL_HELPERS = ['', '', 'async def run_and_apply_guardrails(input_text: str, config: dict, history: list, workflow: dict) -> dict:', '    """Run a guardrails config; a check that errors raises (it is not swallowed), and the fail', '    output names only the checks that tripped."""', '    from types import SimpleNamespace', '', '    results = await run_guardrails(SimpleNamespace(guardrail_llm=client), input_text, "text/plain",', '                                   instantiate_guardrails(load_config_bundle(config)), suppress_tripwire=True, raise_guardrail_errors=True)', '    safe_text = next((r.info["checked_text"] for r in results if isinstance(r.info, dict) and r.info.get("checked_text")), input_text)', '    tripped = [r for r in results if r.tripwire_triggered]', '    failures = [{"guardrail_name": r.info.get("guardrail_name"), "flagged": True, "confidence": r.info.get("confidence")} for r in tripped]', '    return {"results": results, "has_tripwire": bool(tripped), "safe_text": safe_text,', '            "fail_output": {"failed": True, "failures": failures, "output_text": "Stopped by " + ", ".join(str(f["guardrail_name"]) for f in failures) + "."},', '            "pass_output": {"safe_text": safe_text, "output_text": safe_text}}']

APPROVAL_HELPER = ['def approval_request(message: str) -> bool:', '    """Ask the person running this (the export\'s stub always approved)."""', '    return input(f"{message} [y/N] ").strip().lower() in ("y", "yes")']

MCP_APPROVAL_HELPER = ['def approve_mcp_call(request: Any) -> dict:',
                       '    """Ask before a hosted MCP server runs a call that needs approval (the export never answered)."""',
                       '    call = request.data',
                       '    return {"approve": approval_request(f"Let {call.server_label} run {call.name}({call.arguments})?")}']


MCP_HELPER = ['async def call_mcp_tool(server: str, tool: str, arguments: dict) -> dict:', '    """TODO: connect to your MCP server (chatkit-lab calls the lab\'s server of this name)."""', '    raise NotImplementedError(f"connect the MCP server {server!r} to call {tool!r}")']


def _asks_approval(tool: str | dict[str, Any]) -> bool:
    return isinstance(tool, dict) and tool.get("type") == "mcp" and tool.get("require_approval") not in (None, "never")
