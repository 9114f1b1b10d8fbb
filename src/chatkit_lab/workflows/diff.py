"""What changed between two versions of a workflow: nodes added, removed and changed (field by
field: instructions, conditions, models, …) and edges added or removed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkflowDiff:
    """``rows``: one per change, ``{"what": "node" | "edge" | "workflow", "id", "change", "field", "before", "after"}``."""

    before: str
    after: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def of(self, change: str) -> list[str]:
        """The ids of the nodes ``"added"``, ``"removed"`` or ``"changed"``."""
        return list(dict.fromkeys(r["id"] for r in self.rows if r["what"] == "node" and r["change"] == change))

    @property
    def added(self) -> list[str]:
        return self.of("added")

    @property
    def removed(self) -> list[str]:
        return self.of("removed")

    @property
    def changed(self) -> list[str]:
        return self.of("changed")

    @property
    def df(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["what", "id", "change", "field", "before", "after"])

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __str__(self) -> str:
        if not self.rows:
            return f"{self.before} and {self.after} are the same graph."
        lines = [f"{self.before} → {self.after}: {len(self.added)} nodes added, {len(self.removed)} removed, {len(self.changed)} changed"]
        for r in self.rows:
            detail = f" {r['field']}: {_short(r['before'])} → {_short(r['after'])}" if r["change"] == "changed" else ""
            lines.append(f"  {r['change']:>7} {r['what']} {r['id']}{detail}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        html: str = self.df.to_html(index=False)
        return f"<p>{self.before} → {self.after}</p>{html}"


def diff(a: Any, b: Any, before: str, after: str) -> WorkflowDiff:
    result = WorkflowDiff(before, after)
    mine = {n.id: n.model_dump(mode="json", by_alias=True) for n in a.nodes}
    theirs = {n.id: n.model_dump(mode="json", by_alias=True) for n in b.nodes}
    for node_id, node in theirs.items():
        if node_id not in mine:
            result.rows.append({"what": "node", "id": node_id, "change": "added", "field": None, "before": None, "after": node["type"]})
    for node_id, node in mine.items():
        if node_id not in theirs:
            result.rows.append({"what": "node", "id": node_id, "change": "removed", "field": None, "before": node["type"], "after": None})
            continue
        other = theirs[node_id]
        for key in dict.fromkeys([*node, *other]):
            if node.get(key) != other.get(key):
                result.rows.append({"what": "node", "id": node_id, "change": "changed", "field": key, "before": node.get(key), "after": other.get(key)})
    edges_a = {(e.source, e.target, e.label) for e in a.edges}
    edges_b = {(e.source, e.target, e.label) for e in b.edges}
    for source, target, label in sorted(edges_b - edges_a, key=str):
        result.rows.append({"what": "edge", "id": f"{source} → {target}", "change": "added", "field": "label", "before": None, "after": label})
    for source, target, label in sorted(edges_a - edges_b, key=str):
        result.rows.append({"what": "edge", "id": f"{source} → {target}", "change": "removed", "field": "label", "before": label, "after": None})
    for key in ("name", "description", "state", "start", "metadata"):
        x, y = getattr(a, key), getattr(b, key)
        dumped = [[v.model_dump() for v in x], [v.model_dump() for v in y]] if key == "state" else [x, y]
        if dumped[0] != dumped[1]:
            result.rows.append({"what": "workflow", "id": a.name, "change": "changed", "field": key, "before": dumped[0], "after": dumped[1]})
    return result


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
