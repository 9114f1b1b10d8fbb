"""The context inspector: what the model received in one turn, from the ``model_inputs`` table."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from .errors import ChatLabError
from .store.database import Database
from .store.postgres_database import PostgresDatabase
from .store.queries import expanded_input


@dataclass
class ModelCall:
    call_index: int
    agent: str
    strategy: str
    instructions: str | None
    input: list[dict[str, Any]]
    tools: list[str]
    context: dict[str, Any]


@dataclass
class Inspection:
    """Every model call of one turn, with exactly the instructions, input items and tools sent."""

    turn_id: str
    thread_id: str
    calls: list[ModelCall]

    @property
    def instructions(self) -> str | None:
        return self.calls[0].instructions if self.calls else None

    @property
    def input(self) -> list[dict[str, Any]]:
        return self.calls[0].input if self.calls else []

    @property
    def tools(self) -> list[str]:
        return self.calls[0].tools if self.calls else []

    @property
    def context(self) -> dict[str, Any]:
        return self.calls[0].context if self.calls else {}

    def text(self) -> str:
        """Everything the model saw in this turn, as one string (to search it)."""
        return "\n".join(f"{c.instructions}\n{json.dumps(c.input, ensure_ascii=False)}" for c in self.calls)

    @classmethod
    def load(cls, db: Database | PostgresDatabase, turn: Any) -> Inspection:
        with db.cursor() as cur:
            turn_id = _turn_id(cur, turn)
            rows = cur.execute(
                f"""SELECT thread_id, call_index, agent, strategy, instructions, {expanded_input("m", db.dialect)}, tools, context
                   FROM model_inputs m WHERE turn_id = ? ORDER BY call_index""",
                [turn_id],
            ).fetchall()
        if not rows:
            raise ChatLabError(f"Turn {turn_id} made no model call: it failed before reaching the model, or nothing on its path calls one "
                               "(a workflow's fixed reply, say).")
        calls = [ModelCall(r[1], r[2], r[3], r[4], json.loads(r[5]), list(r[6] or []), json.loads(r[7] or "{}")) for r in rows]
        return cls(turn_id=turn_id, thread_id=rows[0][0], calls=calls)

    def __repr__(self) -> str:
        return f"Inspection(turn_id={self.turn_id!r}, calls={len(self.calls)}, strategy={self.calls[0].strategy!r}, tools={self.tools})"

    def _repr_html_(self) -> str:
        out = [f"<div class='ckl-inspect'><b>Turn</b> <code>{self.turn_id}</code> in <code>{self.thread_id}</code>"]
        for call in self.calls:
            out.append(
                f"<h4>Model call {call.call_index} — agent {_e(call.agent)}, strategy <code>{_e(call.strategy)}</code></h4>"
                f"<p><b>tools:</b> {_e(', '.join(call.tools) or 'none')}</p>"
                f"<details open><summary><b>instructions</b></summary><pre>{_e(call.instructions or '')}</pre></details>"
                "<table><thead><tr><th>#</th><th>role / type</th><th>content</th></tr></thead><tbody>"
            )
            for n, item in enumerate(call.input):
                kind = item.get("role") or item.get("type", "?")
                out.append(f"<tr><td>{n}</td><td>{_e(kind)}</td><td><pre>{_e(_item_text(item))}</pre></td></tr>")
            out.append("</tbody></table>")
        return "".join(out) + "</div>"


def _turn_id(cur: Any, turn: Any) -> str:
    if turn is None:
        row = cur.execute("SELECT turn_id FROM model_inputs ORDER BY created_at DESC LIMIT 1").fetchone()
    elif isinstance(turn, str) and turn.startswith("turn_"):
        return turn
    elif isinstance(turn, str):  # a thread id: its newest turn that called the model (an approval's click may call none)
        row = (cur.execute("SELECT turn_id FROM model_inputs WHERE thread_id = ? ORDER BY created_at DESC LIMIT 1", [turn]).fetchone()
               or cur.execute("SELECT turn_id FROM turns WHERE thread_id = ? ORDER BY started_at DESC LIMIT 1", [turn]).fetchone())
    else:  # a Turn from lab.send: found by its user message
        ids = getattr(turn, "item_ids", [])
        row = cur.execute(
            "SELECT turn_id FROM turns WHERE list_contains(?, user_item_id) OR (user_item_id IS NULL AND thread_id = ?) ORDER BY started_at DESC LIMIT 1",
            [ids, getattr(turn, "thread_id", "")],
        ).fetchone()
    if row is None:
        raise ChatLabError("No turn has called the model yet: send a message first." if turn is None else f"No turn found for {turn!r}.")
    return str(row[0])


def _item_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") or p.get("image_url", "") for p in content if isinstance(p, dict))
    if item.get("type") == "function_call":
        return f"{item.get('name')}({item.get('arguments')})"
    if item.get("type") == "function_call_output":
        return str(item.get("output"))
    return json.dumps(item, ensure_ascii=False)


def _e(text: str) -> str:
    return html.escape(str(text))
