"""``calculate_output`` of a ``multi`` grader, evaluated safely: Python's parser, then a walk that
allows only numbers, the graders' names, ``+ - * / ^`` (``^`` is a power, as OpenAI defines it)
and ``min max abs floor ceil exp sqrt log``. Nothing is ``eval``-ed."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Collection
from typing import Any

from ..errors import ChatLabError

FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil, "exp": math.exp, "sqrt": math.sqrt, "log": math.log,
}
_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


class FormulaError(ChatLabError):
    """A ``calculate_output`` that uses something it may not, or cannot be computed."""


def parse(formula: str, names: Collection[str]) -> ast.expr:
    """The formula's tree, checked: every name is a grader's, every call an allowed function."""
    try:
        # ``^`` is a power, binding tighter than * and / as in mathematics (Python's ^ is xor, binding loosest).
        tree = ast.parse(formula.replace("^", "**"), mode="eval").body
    except SyntaxError:
        raise FormulaError(f"calculate_output {formula!r} is not a formula; write e.g. (name + email) / 2 with + - * / ^.") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names and node.id not in FUNCTIONS:
            raise FormulaError(f"calculate_output reads {node.id!r}, which is not one of its graders ({', '.join(sorted(names))}).")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords):
            raise FormulaError(f"calculate_output may call only {', '.join(FUNCTIONS)}.")
        if not isinstance(node, ast.Expression | ast.BinOp | ast.UnaryOp | ast.Call | ast.Name | ast.Constant | ast.Load | ast.operator | ast.unaryop):
            raise FormulaError(f"calculate_output may use numbers, grader names, + - * / ^ and {', '.join(FUNCTIONS)}; not {type(node).__name__}.")
        if isinstance(node, ast.BinOp) and type(node.op) not in _OPS:
            raise FormulaError("calculate_output may use + - * / and ^ (a power).")
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.USub | ast.UAdd):
            raise FormulaError("calculate_output may negate a value, nothing else.")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(node.value, int | float)):
            raise FormulaError("calculate_output may hold numbers only.")
    return tree


def evaluate(tree: ast.expr, values: dict[str, float]) -> float:
    def walk(node: ast.expr) -> float:
        match node:
            case ast.Constant(value=int() | float() as value):
                return float(value)
            case ast.Name(id=name):
                return values[name]
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -walk(operand)
            case ast.UnaryOp(operand=operand):
                return walk(operand)
            case ast.BinOp(left=left, op=op, right=right):
                return _OPS[type(op)](walk(left), walk(right))
            case ast.Call(func=ast.Name(id=fn), args=args):
                return float(FUNCTIONS[fn](*(walk(a) for a in args)))
        raise FormulaError(f"calculate_output cannot use {ast.dump(node)}")  # pragma: no cover - parse() refused it

    try:
        result: Any = walk(tree)
        return float(result)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError) as exc:
        raise FormulaError(f"calculate_output could not be computed: {exc}") from None
