"""Tool calls waiting for a person: an agent's run that stopped to ask approval, in the chat.

The Agents SDK stops a run at a tool given with ``needs_approval`` (or a hosted MCP server's
``require_approval``) and returns the calls it wants to make. The chat shows them on a card with
Approve and Reject; the run's state (the SDK's ``RunState``) waits in ``tool_approvals`` until a
click, in this kernel or after a restart, takes it (once: one UPDATE that only a waiting row
matches) and the run goes on with the calls approved or rejected. A workflow's approval node asks
with the same card. An eval item's ``approval``, or a replay following its original, clicks it
(``answered``).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatkit.types import WidgetItem

from .store.items import utc_now

APPROVE, REJECT = "tool.approve", "tool.reject"

# The newest call of a thread waiting for this user, and the card that asks (still there: a
# retry deletes the cards after the message it retries, and their runs with them, in effect).
PENDING_SQL = """
    SELECT a.approval_id, a.item_id FROM tool_approvals a
    JOIN items i ON i.thread_id = a.thread_id AND i.item_id = a.item_id
    WHERE a.thread_id = ? AND a.user_id = ? AND a.status = 'paused'
    ORDER BY a.created_at DESC LIMIT 1"""


@dataclass(frozen=True)
class Call:
    """One call the run waits to make: the tool, its arguments (JSON text, as the model wrote them),
    and its kind (``function_call``; ``mcp_approval_request`` for a hosted MCP server's tool)."""

    tool: str
    arguments: str
    kind: str = "function_call"

    def __str__(self) -> str:
        arguments = self.arguments if len(self.arguments) <= 200 else self.arguments[:199] + "…"
        return f"{self.tool}({arguments})"


def calls_of(interruptions: Sequence[Any]) -> list[Call]:
    """The calls of a run's interruptions (``ToolApprovalItem``s)."""
    calls = []
    for item in interruptions:
        raw = getattr(item, "raw_item", None)
        arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
        kind = raw.get("type") if isinstance(raw, dict) else getattr(raw, "type", None)
        calls.append(Call(str(getattr(item, "tool_name", None) or "a tool"), str(arguments or ""), str(kind or "function_call")))
    return calls


def missing_tools(agent: Any, calls: list[Call]) -> list[str]:
    """The function tools ``calls`` name that ``agent`` no longer has (a lab restarted without
    them), when that can be told: an agent with MCP servers gets its tools from them at run time."""
    if getattr(agent, "mcp_servers", None):
        return []
    names = {getattr(tool, "name", None) for tool in getattr(agent, "tools", [])}
    return sorted({call.tool for call in calls if call.kind == "function_call" and call.tool not in names})


@dataclass(frozen=True)
class Waiting:
    """A waiting run's calls, and whether approving them can run them as the model wrote them:
    not when its stored state lost a secret or masked PII and this process does not hold it whole."""

    calls: list[Call]
    whole: bool


class ToolApprovals:
    """The waiting runs of one database (DuckDB or PostgreSQL); ``redact`` is the lab's, so a
    waiting run's state holds no secret or masked PII, like every other row. A state redaction
    changed is also kept whole in memory, so an approved call gets the arguments the model wrote,
    not ``[REDACTED:...]``; after a restart such a run cannot go on (``expire``)."""

    KEPT = 256  # whole states held at most (the oldest go first)

    def __init__(self, db: Any, redact: Callable[[str], str]) -> None:
        self.db, self.redact = db, redact
        self._whole: OrderedDict[str, str] = OrderedDict()

    async def save(self, *, thread_id: str, user_id: str, turn_id: str, item_id: str, agent: str, calls: list[Call], state: str) -> str:
        approval_id = f"approval_{uuid.uuid4().hex}"
        stored = self.redact(state)
        async with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO tool_approvals (approval_id, thread_id, user_id, turn_id, item_id, agent, calls, status, paused, created_at, redacted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'paused', ?, ?, ?)",
                [approval_id, thread_id, user_id, turn_id, item_id, agent,
                 self.redact(json.dumps([{"tool": c.tool, "arguments": c.arguments, "kind": c.kind} for c in calls], ensure_ascii=False)),
                 stored, utc_now(), stored != state],
            )
        if stored != state:
            self._whole[approval_id] = state
            while len(self._whole) > self.KEPT:
                self._whole.popitem(last=False)
        return approval_id

    async def waiting(self, approval_id: str, user_id: str, thread_id: str) -> Waiting | None:
        """This user's waiting run, or None (unknown, another user's, or decided)."""
        async with self.db.acursor() as cur:
            row = cur.execute("SELECT calls::VARCHAR, redacted FROM tool_approvals "
                              "WHERE approval_id = ? AND user_id = ? AND thread_id = ? AND status = 'paused'",
                              [approval_id, user_id, thread_id]).fetchone()
        if row is None:
            return None
        return Waiting([Call(**call) for call in json.loads(row[0])], not row[1] or approval_id in self._whole)

    async def take(self, approval_id: str, user_id: str, thread_id: str, decision: str) -> str | None:
        """The waiting run's state (whole, when this process holds it), marked decided; None when it
        is not this user's waiting run (unknown, another user's, or decided already: a second click
        resumes nothing)."""
        async with self.db.transaction() as cur:
            row = cur.execute(
                "UPDATE tool_approvals SET status = 'decided', decision = ?, decided_at = ? "
                "WHERE approval_id = ? AND user_id = ? AND thread_id = ? AND status = 'paused' RETURNING paused::VARCHAR",
                [decision, utc_now(), approval_id, user_id, thread_id],
            ).fetchone()
        whole = self._whole.pop(approval_id, None)
        return (whole or row[0]) if row else None

    async def expire(self, approval_id: str, user_id: str, thread_id: str) -> bool:
        """Close a waiting run that cannot go on (``Waiting.whole`` false); whether it was waiting."""
        async with self.db.transaction() as cur:
            return cur.execute(
                "UPDATE tool_approvals SET status = 'expired', decided_at = ? "
                "WHERE approval_id = ? AND user_id = ? AND thread_id = ? AND status = 'paused' RETURNING approval_id",
                [utc_now(), approval_id, user_id, thread_id],
            ).fetchone() is not None


def approval_card(item_id: str, thread_id: str, title: str, lines: list[str], actions: tuple[str, str], payload: dict[str, Any],
                  copy_text: str) -> WidgetItem:
    """An Approve / Reject card (a workflow's approval node, an agent's tool calls): ``title``, a
    line of text each, and the buttons, whose actions (``actions``: approve, reject) carry ``payload``."""
    texts = [{"type": "Text", "id": "approval_message" if i == 0 else f"approval_message_{i}", "value": line} for i, line in enumerate(lines)]
    card = {
        "type": "Card", "id": "approval", "children": [
            {"type": "Title", "id": "approval_title", "value": title},
            *texts,
            {"type": "Row", "id": "approval_buttons", "children": [
                {"type": "Button", "id": "approve", "label": "Approve", "style": "primary", "onClickAction": {"type": actions[0], "payload": payload}},
                {"type": "Button", "id": "reject", "label": "Reject", "style": "secondary", "onClickAction": {"type": actions[1], "payload": payload}},
            ]},
        ],
    }
    return WidgetItem.model_validate({"id": item_id, "thread_id": thread_id, "created_at": datetime.now(), "widget": card, "copy_text": copy_text})


def decided_item(item: WidgetItem, decision: str, who: str) -> WidgetItem:
    """An approval card once answered: what it asked and who decided, without buttons."""
    return closed_item(item, f"{'Approved' if decision == 'approve' else 'Rejected'} by {who}")


def closed_item(item: WidgetItem, outcome: str) -> WidgetItem:
    """An approval card without its buttons, saying ``outcome``."""
    widget = item.widget.model_dump(exclude_none=True)
    children = [c for c in widget.get("children", []) if c.get("id") != "approval_buttons"]
    children.append({"type": "Text", "id": "approval_decision", "value": outcome})
    return WidgetItem.model_validate({**item.model_dump(exclude={"widget"}), "widget": {**widget, "children": children}})


def tool_card(item_id: str, thread_id: str, approval_id: str, agent: str, calls: list[Call]) -> WidgetItem:
    """The card that asks about an agent's tool calls: each call, and Approve / Reject for all of them."""
    title = f"{agent} asks to call {'a tool' if len(calls) == 1 else f'{len(calls)} tools'}"
    return approval_card(item_id, thread_id, title, [str(call) for call in calls], (APPROVE, REJECT), {"approval_id": approval_id},
                         f"{title}: " + ", ".join(map(str, calls)))


def asked(events: Sequence[dict[str, Any]]) -> tuple[str, str, dict[str, Any]] | None:
    """The Approve / Reject card a turn's stream events leave waiting (a workflow's or a tool
    call's): its item id, its title, and the action each answer (``approve``, ``reject``) sends."""
    for event in reversed(events):
        item = event.get("item") or {}
        widget = item.get("widget") or {}
        if event.get("type") == "thread.item.done" and item.get("type") == "widget" and widget.get("id") == "approval":
            children = widget.get("children", [])
            buttons: list[dict[str, Any]] = next((c["children"] for c in children if c.get("id") == "approval_buttons"), [])
            title = next((c.get("value", "") for c in children if c.get("id") == "approval_title"), "")
            if buttons:  # not one answered already
                return item["id"], title, {b["id"]: b["onClickAction"] for b in buttons}
    return None


async def answered(events: list[dict[str, Any]], thread_id: str, decisions: Iterator[str],
                   send: Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]) -> tuple[list[dict[str, Any]], str | None]:
    """A turn's ``events`` and those of the clicks that answer each card it leaves waiting, one of
    ``decisions`` each in order (``send`` makes the request); and the title of the card left
    waiting when the decisions ran out (None: nothing waits)."""
    step = events
    while (card := asked(step)) is not None:
        card_id, title, actions = card
        if (decision := next(decisions, None)) is None:
            return events, title
        step = await send({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": card_id, "action": actions[decision]}})
        events = [*events, *step]
    return events, None


def decision_of(widget: dict[str, Any]) -> str | None:
    """What an answered card (``decided_item``) was answered with: approve, reject, or None."""
    said = next((c.get("value", "") for c in widget.get("children", []) if c.get("id") == "approval_decision"), "")
    return "approve" if said.startswith("Approved by") else "reject" if said.startswith("Rejected by") else None


def payload_approval_id(payload: Any) -> str | None:
    value = payload.get("approval_id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None
