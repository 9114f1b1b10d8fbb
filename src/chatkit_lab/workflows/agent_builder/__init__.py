"""Agent Builder's "Code → Agents SDK" exports: read (Python with ``ast``, TypeScript with
tree-sitter; never executed) into a graph with an import report, and written back as Python."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import ChatLabError
from . import python, typescript
from .build import ImportReport, build
from .codegen import write_python

__all__ = ["ImportReport", "read_export", "write_python"]

_TYPESCRIPT = re.compile(r"^\s*(import\s*\{|export\s+(const|async|function)|const\s+\w+\s*=)", re.MULTILINE)


def read_export(source: str | Path) -> tuple[dict[str, Any], ImportReport]:
    """The workflow JSON and import report of an export given as a path or as its text."""
    text, language = _source(source)
    export = python.read(text) if language == "python" else typescript.read(text)
    return build(export)


def _source(source: str | Path) -> tuple[str, str]:
    path = Path(source).expanduser() if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and len(source) < 4096) else None
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChatLabError(f"Cannot read the export {str(path)!r}: {getattr(exc, 'strerror', None) or exc}.") from None
        if path.suffix in (".ts", ".mts", ".js", ".mjs", ".tsx"):
            return text, "typescript"
        if path.suffix == ".py":
            return text, "python"
    else:
        text = str(source)
    return text, "typescript" if _TYPESCRIPT.search(text) and "def run_workflow" not in text else "python"
