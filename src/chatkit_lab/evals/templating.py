"""OpenAI grader templates: ``{{ item.field }}`` and ``{{ sample.output_text }}``.

The only namespaces are ``item`` (the dataset row) and ``sample`` (what the model produced);
spaces inside the braces are allowed, paths use dots and list indexes
(``{{sample.output_tools[0].function.name}}``). An unknown namespace, or a path the data does not
have, is a ``TemplateError`` naming it (the item is then errored, not failed).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ChatLabError

NAMESPACES = ("item", "sample")
_PART = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_STEP = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]|\[\"([^\"]*)\"\]|\['([^']*)'\]")


class TemplateError(ChatLabError):
    """A template that reads a namespace or a path the data does not have."""


def lookup(path: str, values: dict[str, Any]) -> Any:
    """The value at ``namespace.path`` (``item.answer``, ``sample.output_tools[0].function.name``)."""
    steps = _steps(path)
    value: Any = values
    for i, step in enumerate(steps):
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            where = "".join(f"[{s}]" if isinstance(s, int) else (f".{s}" if j else s) for j, s in enumerate(steps[: i + 1]))
            raise TemplateError(f"{{{{ {path} }}}}: {where} is not in the data.") from None
    return value


def fields_read(template: str) -> set[tuple[str, str | int | None]]:
    """(namespace, first field) of each ``{{ path }}`` in ``template``; a part that is not a path,
    or reads another namespace, is a ``TemplateError`` (found when a grader loads, not per item)."""
    read = set()
    for m in _PART.finditer(template):
        steps = _steps(m.group(1))
        read.add((str(steps[0]), steps[1] if len(steps) > 1 else None))
    return read


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    at = 0
    while at < len(path):
        m = _STEP.match(path, at)
        if m is None or m.end() == at:
            raise TemplateError(f"{{{{ {path} }}}} is not a path: write item.field, sample.output_text or item.list[0].field.")
        name, index, dq, sq = m.groups()
        steps.append(int(index) if index is not None else (name if name is not None else dq if dq is not None else sq))
        at = m.end()
    if not steps or steps[0] not in NAMESPACES:
        raise TemplateError(f"{{{{ {path} }}}} reads the namespace {steps[0] if steps else path!r}; the namespaces are item and sample.")
    return steps


def render(template: str, values: dict[str, Any]) -> str:
    """``template`` with each ``{{ path }}`` replaced (strings as they are, other values as JSON)."""

    def part(m: re.Match[str]) -> str:
        value = lookup(m.group(1), values)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _PART.sub(part, template)


def value_of(template: str, values: dict[str, Any]) -> Any:
    """A template that is exactly one ``{{ path }}`` gives the value itself (a number stays a number)."""
    m = _PART.fullmatch(template.strip())
    return lookup(m.group(1), values) if m else render(template, values)
