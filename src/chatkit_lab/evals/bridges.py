"""Datasets out to other tools: Inspect AI samples, promptfoo tests, OpenAI fine-tuning chat JSONL.

(OpenAI evals' JSONL data sources come in through ``load_dataset``.) Each writer returns how many
rows it wrote and what it left out, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ChatLabError
from .datasets import Dataset, load_dataset
from .graders import load_grader

TARGET_FIELDS = ("target", "ideal", "expected", "answer", "expected_response_contains", "recorded_reply")
_ITEM_VARIABLE = re.compile(r"\{\{\s*item\.([A-Za-z_]\w*)\s*\}\}")
_OUTPUT_TEXT = re.compile(r"^\{\{\s*sample\.output_text\s*\}\}$")


def _messages(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [*item.get("conversation", []), {"role": "user", "content": item["input"]}]


def _target_field(dataset: Dataset, field: str | None) -> str | None:
    if field is not None:
        return field
    return next((name for name in TARGET_FIELDS if any(name in item for item in dataset.items)), None)


def _write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    with Path(path).expanduser().open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def to_inspect(dataset: Any, path: str | Path, *, target: str | None = None) -> dict[str, Any]:
    """Inspect AI samples as JSONL (``inspect_ai.dataset.json_dataset(path)`` reads them): ``input``
    (the message, or the chat messages of a multi-turn item), ``target`` (``target``, or the first of
    ``TARGET_FIELDS`` the items have), ``id`` and the other fields as ``metadata``."""
    data = load_dataset(dataset)
    field = _target_field(data, target)
    rows = []
    for n, item in enumerate(data.items):
        row: dict[str, Any] = {"id": item.get("id", n), "input": _messages(item) if item.get("conversation") else item["input"]}
        if field is not None and field in item:
            row["target"] = item[field] if isinstance(item[field], str | list) else json.dumps(item[field])
        row["metadata"] = {k: v for k, v in item.items() if k not in ("id", "input", "conversation", field)}
        rows.append(row)
    _write_jsonl(path, rows)
    return {"written": len(rows), "target": field}


_ASSERTIONS = {"eq": "equals", "ne": "not-equals", "like": "contains", "ilike": "icontains"}


def promptfoo_assertion(grader: Any) -> dict[str, Any] | None:
    """The promptfoo assertion that grades as ``grader`` does, or None when there is none that
    means the same (a model grader, a similarity metric, ``python``, ``multi``)."""
    config = load_grader(grader)
    kind = config.type
    if kind == "string_check":
        if not _OUTPUT_TEXT.match(config.input) or "sample." in config.reference:
            return None  # promptfoo asserts on the output itself, against a value from the test's vars
        return {"type": _ASSERTIONS[config.operation], "value": _ITEM_VARIABLE.sub(r"{{\1}}", config.reference), "metric": config.name}
    if kind in ("latency", "cost"):
        return {"type": kind, "threshold": config.max, "metric": config.name}
    if kind.startswith(("trajectory:", "not-trajectory:")):
        return {"type": kind, "value": config.value, "metric": config.name}
    return None


def to_promptfoo(dataset: Any, path: str | Path, graders: Sequence[Any] = ()) -> dict[str, Any]:
    """promptfoo tests as JSON (``tests: file://path``): each item's fields as ``vars`` and the
    graders as assertions where promptfoo has one with the same meaning; the others are listed
    in ``"unmapped"``, not approximated."""
    data = load_dataset(dataset)
    asserts, unmapped = [], []
    for grader in graders:
        assertion = promptfoo_assertion(grader)
        if assertion is None:
            unmapped.append(load_grader(grader).name)
        else:
            asserts.append(assertion)
    tests = [{"description": str(item.get("id", n)), "vars": {k: v for k, v in item.items() if k != "conversation"},
              **({"assert": asserts} if asserts else {})} for n, item in enumerate(data.items)]
    Path(path).expanduser().write_text(json.dumps(tests, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return {"written": len(tests), "assertions": len(asserts), "unmapped": unmapped}


def to_finetuning(dataset: Any, path: str | Path, *, reply: str | None = None, instructions: str | None = None) -> dict[str, Any]:
    """OpenAI fine-tuning chat JSONL: ``{"messages": [system?, conversation…, user, assistant]}`` per
    item, the assistant's reply from the field ``reply`` (by default the first of ``TARGET_FIELDS``);
    items without one are skipped and counted."""
    data = load_dataset(dataset)
    field = _target_field(data, reply)
    if field is None:
        raise ChatLabError(f"No item has a reply to train on: pass reply= the field that holds it (tried {', '.join(TARGET_FIELDS)}).")
    rows, skipped = [], 0
    for item in data.items:
        answer = item.get(field)
        if not isinstance(answer, str) or not answer.strip():
            skipped += 1
            continue
        system = [{"role": "system", "content": instructions}] if instructions else []
        rows.append({"messages": [*system, *_messages(item), {"role": "assistant", "content": answer}]})
    _write_jsonl(path, rows)
    return {"written": len(rows), "skipped": skipped, "reply": field}
