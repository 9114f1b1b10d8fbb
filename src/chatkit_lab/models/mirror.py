"""MirrorModel: the deterministic offline model used when no provider is configured.

Its reply is a pure function of what it receives, streamed in small deltas:

* the last input is a tool result  -> ``Tool `name` returned: <output>``
* ``call <tool> [JSON or text]`` or ``/<tool> [JSON or text]`` for one of the agent's tools or
  handoffs -> a function call (arguments: the JSON, or the text put in the first string field)
* ``/words N`` -> N numbered words (a long reply, for streaming and Stop); ``/words N slow``
  streams them at reading pace (``SLOW_DELAY`` between deltas), slow enough to try Stop
* a ``get_context`` tool (the "tool" context strategy) -> it is called first, once per message
* an agent with a structured ``output_type`` -> JSON shaped by the schema; an enum field takes the
  value that appears in the user's text (so a classifier is deterministic)
* anything else -> a report of what the model received: instructions, history, injected
  context, tools, and what you said.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from agents import ModelResponse, ModelTracing, Usage
from agents.models.interface import Model
from agents.tracing import generation_span
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

_COMMAND = re.compile(r"^\s*(?:call\s+|/)([A-Za-z_][\w-]*)\s*(.*)$", re.DOTALL)
_WORDS = re.compile(r"^\s*/words\s+(\d+)(\s+slow)?\s*$")
SLOW_DELAY = 0.08  # seconds between deltas of "/words N slow"
HIDDEN_CONTEXT = "<HiddenContext>"
CONTEXT_TOOL = "get_context"
_BLOCK = re.compile(r"\s*<context>.*?</context>", re.DOTALL)
_KEY = re.compile(r"^([A-Za-z_]\w*): ", re.MULTILINE)


class MirrorModel(Model):
    """A deterministic offline ``Model``: same input, same reply, every run.

    ``chunk_size`` is the number of characters per streamed delta; ``delay`` the seconds to
    wait between deltas (so a notebook shows the text arriving).
    """

    def __init__(self, name: str = "mirror", *, chunk_size: int = 8, delay: float = 0.0) -> None:
        self.name = name
        self.chunk_size = max(1, chunk_size)
        self.delay = delay
        self._ids = 0

    def __repr__(self) -> str:
        return f"MirrorModel(name={self.name!r}, chunk_size={self.chunk_size}, delay={self.delay})"

    # -- the reply, as a pure function of the call -----------------------------------------
    def reply(self, instructions: str | None, input: Any, tools: list[Any], output_schema: Any, handoffs: list[Any]) -> dict[str, Any]:
        """What the model answers: ``{"text": ...}`` or ``{"call": name, "arguments": json}``."""
        items = _normalise(input)
        last = items[-1] if items else {}
        callables = {t.name: getattr(t, "params_json_schema", {}) for t in tools if hasattr(t, "name")}
        callables.update({h.tool_name: h.input_json_schema for h in handoffs})
        if last.get("type") == "function_call_output":
            name = next(
                (i.get("name") for i in items if i.get("type") == "function_call" and i.get("call_id") == last.get("call_id")),
                "tool",
            )
            # Only this agent's own tools: after a handoff the new agent answers the user.
            if name != CONTEXT_TOOL and name in {t.name for t in tools if hasattr(t, "name")}:
                return {"text": f"Tool `{name}` returned: {_output_text(last.get('output'))}"}
        said = _text(_last_user(items))
        if CONTEXT_TOOL in callables and not _COMMAND.match(said) and not _called_since_user(items, CONTEXT_TOOL):
            return {"call": CONTEXT_TOOL, "arguments": "{}"}
        if (m := _COMMAND.match(said)) and m.group(1) in callables:
            return {"call": m.group(1), "arguments": _arguments(m.group(2), callables[m.group(1)])}
        if m := _WORDS.match(said):
            return {"text": " ".join(f"w{i}" for i in range(1, int(m.group(1)) + 1)), **({"delay": SLOW_DELAY} if m.group(2) else {})}
        if output_schema is not None and not output_schema.is_plain_text():
            schema = output_schema.json_schema()
            return {"text": json.dumps(_from_schema(schema, schema, said))}
        return {"text": self._report(instructions, items, tools, handoffs, said)}

    def _report(self, instructions: str | None, items: list[dict[str, Any]], tools: list[Any], handoffs: list[Any], said: str) -> str:
        current = _last_user(items)
        found, context_items = _context_found(instructions, items)
        skip = {id(current), *map(id, context_items)}
        earlier = [i for i in items if id(i) not in skip]
        roles = Counter(i.get("role") or i.get("type") for i in earlier)
        names = [t.name for t in tools if hasattr(t, "name")] + [h.tool_name for h in handoffs]
        return "\n".join(
            [
                f"**[{self.name}]** offline model. I received:",
                f"- instructions: {_quote(_BLOCK.sub('', instructions or ''))}",
                f"- history: {len(earlier)} earlier items ({', '.join(f'{k} {v}' for k, v in sorted(roles.items())) or 'none'})",
                f"- context: {'; '.join(found) or 'none'}",
                f"- tools: {', '.join(names) or 'none'}",
                f"- you said: {_quote(said)}",
            ]
        )

    # -- Model interface -------------------------------------------------------------------
    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, *, previous_response_id=None, conversation_id=None, prompt=None) -> ModelResponse:
        answer = self.reply(system_instructions, input, tools, output_schema, handoffs)
        item = self._item(answer, done=True)
        usage = self._usage(system_instructions, input, answer)
        with generation_span(model=self.name, disabled=tracing.is_disabled()) as span:
            self._trace(span, tracing, input, item, usage)
        return ModelResponse(output=[item], usage=usage, response_id=None)

    async def stream_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, *, previous_response_id=None, conversation_id=None, prompt=None) -> AsyncIterator[Any]:
        # The span is started without becoming "current": a contextvar set here would be
        # reset across yields in another context.
        span = generation_span(model=self.name, disabled=tracing.is_disabled())
        span.start(mark_as_current=False)
        try:
            answer = self.reply(system_instructions, input, tools, output_schema, handoffs)
            item = self._item(answer, done=True)
            usage = self._usage(system_instructions, input, answer)
            async for event in self._events(item, usage, answer.get("delay", self.delay)):
                yield event
            self._trace(span, tracing, input, item, usage)
        finally:
            span.finish(reset_current=False)

    async def _events(self, item: Any, usage: Usage, delay: float) -> AsyncIterator[Any]:
        seq = iter(range(1_000_000))
        response = Response(
            id=f"resp_{self.name}_{self._ids}", created_at=0, model=self.name, object="response", output=[],
            tool_choice="auto", tools=[], parallel_tool_calls=False, status="in_progress",
        )
        yield ResponseCreatedEvent(type="response.created", response=response, sequence_number=next(seq))
        common = {"item_id": item.id, "output_index": 0}
        if isinstance(item, ResponseFunctionToolCall):
            started = item.model_copy(update={"arguments": "", "status": "in_progress"})
            yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=started, output_index=0, sequence_number=next(seq))
            yield ResponseFunctionCallArgumentsDeltaEvent(type="response.function_call_arguments.delta", delta=item.arguments, sequence_number=next(seq), **common)
            yield ResponseFunctionCallArgumentsDoneEvent.model_validate(
                {"type": "response.function_call_arguments.done", "arguments": item.arguments, "name": item.name, "sequence_number": next(seq), **common}
            )
        else:
            text = item.content[0].text
            started = item.model_copy(update={"content": [], "status": "in_progress"})
            yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=started, output_index=0, sequence_number=next(seq))
            part = {"content_index": 0, **common}
            yield ResponseContentPartAddedEvent(type="response.content_part.added", part=ResponseOutputText(type="output_text", text="", annotations=[]), sequence_number=next(seq), **part)
            for start in range(0, len(text), self.chunk_size):
                if delay:
                    await asyncio.sleep(delay)
                yield ResponseTextDeltaEvent(type="response.output_text.delta", delta=text[start : start + self.chunk_size], logprobs=[], sequence_number=next(seq), **part)
            yield ResponseTextDoneEvent(type="response.output_text.done", text=text, logprobs=[], sequence_number=next(seq), **part)
            yield ResponseContentPartDoneEvent(type="response.content_part.done", part=item.content[0], sequence_number=next(seq), **part)
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item, output_index=0, sequence_number=next(seq))
        done = response.model_copy(update={"status": "completed", "output": [item], "usage": _response_usage(usage)})
        yield ResponseCompletedEvent(type="response.completed", response=done, sequence_number=next(seq))

    def _item(self, answer: dict[str, Any], *, done: bool) -> Any:
        self._ids += 1
        if "call" in answer:
            return ResponseFunctionToolCall(
                type="function_call", id=f"fc_{self.name}_{self._ids}", call_id=f"call_{self.name}_{self._ids}",
                name=answer["call"], arguments=answer["arguments"], status="completed",
            )
        return ResponseOutputMessage(
            type="message", id=f"msg_{self.name}_{self._ids}", role="assistant", status="completed",
            content=[ResponseOutputText(type="output_text", text=answer["text"], annotations=[])],
        )

    @staticmethod
    def _usage(instructions: str | None, input: Any, answer: dict[str, Any]) -> Usage:
        words_in = len((instructions or "").split()) + sum(len(_text(i).split()) for i in _normalise(input))
        words_out = len((answer.get("text") or answer.get("arguments") or "").split())
        return Usage(requests=1, input_tokens=words_in, output_tokens=words_out, total_tokens=words_in + words_out)

    def _trace(self, span: Any, tracing: ModelTracing, input: Any, item: Any, usage: Usage) -> None:
        span.span_data.usage = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        if tracing.include_data():
            span.span_data.input = _normalise(input)
            span.span_data.output = [item.model_dump()]


def _response_usage(usage: Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, total_tokens=usage.total_tokens,
        input_tokens_details=InputTokensDetails.model_validate({"cached_tokens": 0, "cache_write_tokens": 0}),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
    )


def _keys(text: str) -> str:
    keys = _KEY.findall(text)
    return f" ({', '.join(dict.fromkeys(keys))})" if keys else ""


def _context_found(instructions: str | None, items: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Where context reached the model (with its keys), and the input items that carried it."""
    found: list[str] = []
    carriers: list[dict[str, Any]] = []
    if instructions and (m := _BLOCK.search(instructions)):
        found.append("in the instructions" + _keys(m.group(0)))
    calls = {i.get("call_id") for i in items if i.get("type") == "function_call" and i.get("name") == CONTEXT_TOOL}
    for item in items:
        text = _text(item) or (_output_text(item.get("output")) if item.get("type") == "function_call_output" else "")
        if HIDDEN_CONTEXT in text:
            found.append("a hidden context item" + _keys(text))
        elif item.get("role") in ("developer", "system") and text.startswith("App context:"):
            found.append("an app-context item" + _keys(text))
        elif item.get("call_id") in calls and item.get("type") == "function_call_output":
            found.append(f"the {CONTEXT_TOOL} tool" + _keys(text))
        elif item.get("call_id") not in calls:
            continue
        carriers.append(item)
    return found, carriers


def _called_since_user(items: list[dict[str, Any]], name: str) -> bool:
    for item in reversed(items):
        if item.get("type") == "function_call" and item.get("name") == name:
            return True
        if item.get("role") == "user" and HIDDEN_CONTEXT not in _text(item):
            return False
    return False


def _normalise(input: Any) -> list[dict[str, Any]]:
    if isinstance(input, str):
        return [{"type": "message", "role": "user", "content": input}]
    return [i if isinstance(i, dict) else i.model_dump(exclude_unset=True) for i in input]


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _last_user(items: list[dict[str, Any]]) -> dict[str, Any]:
    for item in reversed(items):
        if item.get("role") == "user" and HIDDEN_CONTEXT not in _text(item):
            return item
    return {}


def _output_text(output: Any) -> str:
    if isinstance(output, list):
        return "".join(p.get("text", "") for p in output if isinstance(p, dict))
    return str(output)


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)


def _arguments(rest: str, schema: dict[str, Any]) -> str:
    rest = rest.strip()
    try:
        parsed = json.loads(rest)
        if isinstance(parsed, dict):
            return json.dumps(parsed)
    except ValueError:
        pass
    return json.dumps(_from_schema(schema, schema, rest, free_text=rest))


def _from_schema(schema: dict[str, Any], root: dict[str, Any], said: str, free_text: str | None = None) -> Any:
    """A deterministic value for a JSON schema; free text fills the first string field."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _from_schema(target, root, said, free_text)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return next((v for v in schema["enum"] if str(v).lower() in said.lower()), schema["enum"][0])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _from_schema(options[0], root, said, free_text)
    kind = schema.get("type")
    if kind == "object":
        result, text = {}, free_text
        for name, prop in schema.get("properties", {}).items():
            result[name] = _from_schema(prop, root, said, text)
            if text is not None and isinstance(result[name], str) and result[name] == text:
                text = None  # only the first string field takes the free text
        return result
    if kind == "string":
        return free_text if free_text is not None else f"mirror: {said}"[:200]
    if kind == "integer":
        return len(said.split())
    if kind == "number":
        return float(len(said.split()))
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return None
