"""CEL, Agent Builder's expression language, for conditions, state and templates.

Expressions are compiled when a workflow loads, by a real CEL library (never ``eval``), and
checked against the names a workflow has: ``input`` (the previous node's output), ``state.<name>``
(declared variables), ``workflow.input_as_text`` and ``nodes.<node_id>`` (any earlier node's
output). CEL is not Python: no truthiness, ``5 / 2 == 2``, a missing key is an error (``has()``
tests for one), and ``int`` and ``double`` do not mix (``1 + 2.5`` is an error).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..errors import ChatLabError

ROOTS = ("input", "state", "workflow", "nodes")
WORKFLOW_FIELDS = ("input_as_text",)
# Strings are taken out before member names are read, so "state.x" inside quotes is text.
_STRING = re.compile(r'[rRbB]?("""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')')
_MEMBER = re.compile(r"(?<![\w.])(state|workflow|nodes)\s*\.\s*([A-Za-z_]\w*)")
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class ExpressionError(ChatLabError):
    """An expression that cannot run on this turn's values (a missing key, mixed types)."""


@dataclass(frozen=True)
class Names:
    """What an expression may read: the declared state variables and the node ids."""

    state: Collection[str] = ()
    nodes: Collection[str] = ()


@dataclass
class Expression:
    """One compiled CEL expression; ``roots``: the variables it reads (``input``, ``state``, ...)."""

    source: str
    program: Any = field(repr=False)
    roots: frozenset[str] = frozenset(ROOTS)

    def evaluate(self, scope: dict[str, Any]) -> Any:
        # Only what it reads: the library converts every value it is given, and ``nodes`` holds
        # every earlier node's output (5 outputs of 10 KB: 630 us an evaluation, against 3 us).
        try:
            return self.program.execute({k: v for k, v in scope.items() if k in self.roots})
        except KeyError as exc:
            raise ExpressionError(f"`{self.source}` reads {exc.args[0]!r}, which is not there on this turn (test with has(...) first).") from None
        except (TypeError, ValueError, RuntimeError, ArithmeticError) as exc:  # ArithmeticError: 1 / 0, int overflow
            raise ExpressionError(f"`{self.source}` failed: {_first_line(exc)}") from None

    def condition(self, scope: dict[str, Any]) -> bool:
        value = self.evaluate(scope)
        if not isinstance(value, bool):
            raise ExpressionError(f"`{self.source}` must be true or false, but gave {json.dumps(value, default=str)} (CEL has no truthiness: compare, e.g. `x != \"\"`).")
        return value


def compile_expression(source: str, names: Names, where: str) -> Expression:
    """Compile ``source``; a syntax error or an unknown name is a ``ChatLabError`` naming ``where``."""
    if not isinstance(source, str) or not source.strip():
        raise ChatLabError(f"{where}: the expression is empty; write a CEL expression such as `state.count < 3`.")
    import cel  # here: the package imports its command line (rich, prompt_toolkit: 0.1 s), which a chat without a workflow never needs

    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        raise ChatLabError(f"{where}: `{source}` is not valid CEL: {_syntax(exc)}") from None
    variables = frozenset(program.variables())
    text = _STRING.sub('""', source)
    bound = set(_BOUND.findall(text))
    for name in sorted(variables - bound):
        if name not in ROOTS:
            raise ChatLabError(f"{where}: `{source}` reads `{name}`, which is not a variable here; "
                               f"use input, state.<name>, workflow.input_as_text or nodes.<node_id>.")
    for root, member in _MEMBER.findall(text):
        known: Collection[str] = {"state": names.state, "workflow": WORKFLOW_FIELDS, "nodes": names.nodes}[root]
        if member not in known:
            choices = ", ".join(sorted(known)) or "none declared"
            raise ChatLabError(f"{where}: `{source}` reads `{root}.{member}`, which does not exist (known: {choices}).")
    return Expression(source, program, variables & frozenset(ROOTS))


@dataclass
class Template:
    """Text with ``{{ expression }}`` parts, each a CEL expression (``{{state.topic}}``)."""

    source: str
    parts: list[Expression]

    def render(self, scope: dict[str, Any]) -> str:
        values = iter(self.parts)
        return _TEMPLATE.sub(lambda _: as_text(next(values).evaluate(scope)), self.source)


class Compiled:
    """A workflow's expressions and templates, compiled: keyed by (node id, what)."""

    def __init__(self) -> None:
        self.expressions: dict[tuple[str, str], Expression] = {}
        self.templates: dict[tuple[str, str], Template] = {}


def compile_template(source: str, names: Names, where: str) -> Template:
    return Template(source, [compile_expression(m.group(1).strip(), names, where) for m in _TEMPLATE.finditer(source)])


def as_text(value: Any) -> str:
    """A value as a template shows it: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _first_line(exc: BaseException) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    # The library's overload message goes on for four sentences; the first says it.
    return line.split(". CEL does not coerce")[0] + (" (CEL does not mix int and double: write 1.0, or convert with int(x) or double(x))"
                                                    if "No such overload" in line or "Unsupported operation" in line else "")


_POSITION = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*?)(?: expecting .*)?$")


def _syntax(exc: BaseException) -> str:
    # "Failed to parse …: ERROR: <input>:1:11: Syntax error: mismatched input '<EOF>' expecting {…}"
    # and a caret line: keep the error and where it is.
    first = _first_line(exc)
    if m := _POSITION.search(first):
        return f"{m.group(3)} at column {m.group(2)}" + (f" of line {m.group(1)}" if m.group(1) != "1" else "")
    return first
