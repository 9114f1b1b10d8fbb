"""Trace graders: what a turn did, not only what it said, in promptfoo's ``trajectory:*`` shapes.

A sample's ``trajectory`` is its turn's steps in start order (``evals.samples`` reads them from
the stored spans, workflow node rows and guardrail verdicts), each a dict with ``type`` and
``name``: ``tool`` (with ``arguments`` and ``output``), ``handoff`` (``name`` the agent handed to),
``agent``, ``generation``, ``node`` (a workflow node: ``id``, ``node_type``, ``status``, ``edge``)
and ``guardrail`` (``stage``, ``triggered``). A ``not-`` prefix inverts any of them, as in promptfoo.

- ``trajectory:tool-used``: ``value`` a name, a list of names (every one called) or
  ``{"name": glob, "min": 1, "max": n}`` (the call count within bounds).
- ``trajectory:tool-sequence``: ``value`` a list of names, or ``{"steps": [...], "mode": "in_order" | "exact"}``;
  ``in_order`` allows other calls between them, ``exact`` is the whole sequence.
- ``trajectory:tool-args-match``: ``{"name", "args", "mode": "partial" | "exact"}``; ``partial``: the
  given keys match recursively (lists item by item, of equal length); passes when any call matches.
- ``trajectory:step-count``: ``{"type"?, "pattern"?: glob on the name, "min"?, "max"?}``.
- ``trajectory:handoff`` (chatkit-lab): ``value`` the agent handed to.
- ``trajectory:branch`` (chatkit-lab): ``value`` a workflow node's id or name that ran, or
  ``{"node", "edge"}``: it ran and left by that edge (an if/else branch).
- ``trajectory:guardrail`` (chatkit-lab): ``{"check"?, "stage"?, "triggered": true}``: a verdict so.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KINDS = ("tool-used", "tool-sequence", "tool-args-match", "step-count", "handoff", "branch", "guardrail")
TrajectoryType = Literal[
    "trajectory:tool-used", "trajectory:tool-sequence", "trajectory:tool-args-match", "trajectory:step-count",
    "trajectory:handoff", "trajectory:branch", "trajectory:guardrail",
    "not-trajectory:tool-used", "not-trajectory:tool-sequence", "not-trajectory:tool-args-match", "not-trajectory:step-count",
    "not-trajectory:handoff", "not-trajectory:branch", "not-trajectory:guardrail",
]


class Trajectory(BaseModel):
    """One trajectory assertion; ``name`` defaults to its type."""

    model_config = ConfigDict(extra="forbid")
    type: TrajectoryType
    name: str = ""
    value: Any = Field(default=None)

    @model_validator(mode="after")
    def _checked(self) -> Trajectory:
        self.name = self.name or self.type
        value, kind = self.value, self.kind
        if kind in ("tool-used", "handoff", "branch") and not value:
            raise ValueError(f"{self.type} needs a value: the name to look for")
        if kind == "tool-used" and isinstance(value, dict) and not isinstance(value.get("name"), str):
            raise ValueError('the object form of trajectory:tool-used is {"name": ..., "min"?: 1, "max"?: n}')
        if kind == "tool-sequence":
            steps = value.get("steps") if isinstance(value, dict) else value
            mode = value.get("mode", "in_order") if isinstance(value, dict) else "in_order"
            if not isinstance(steps, list) or not steps or mode not in ("in_order", "exact"):
                raise ValueError('trajectory:tool-sequence takes a list of tool names or {"steps": [...], "mode": "in_order" | "exact"}')
        if kind == "tool-args-match" and not (isinstance(value, dict) and isinstance(value.get("name"), str) and isinstance(value.get("args"), dict)
                                              and value.get("mode", "partial") in ("partial", "exact")):
            raise ValueError('trajectory:tool-args-match takes {"name": tool, "args": {...}, "mode"?: "partial" | "exact"}')
        if kind in ("step-count", "guardrail") and value is not None and not isinstance(value, dict):
            raise ValueError(f"{self.type} takes an object (see chatkit_lab.evals.trajectory)")
        return self

    @property
    def kind(self) -> str:
        return self.type.removeprefix("not-").removeprefix("trajectory:")

    @property
    def negated(self) -> bool:
        return self.type.startswith("not-")


def grade_trajectory(config: Trajectory, sample: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Whether the sample's trajectory satisfies ``config`` (inverted by ``not-``), and what was seen."""
    steps: list[dict[str, Any]] = list(sample.get("trajectory") or [])
    tools = [s for s in steps if s.get("type") == "tool"]
    names = [str(s.get("name")) for s in tools]
    value, kind = config.value, config.kind
    info: dict[str, Any] = {"tools": names}
    if kind == "tool-used":
        if isinstance(value, dict):
            count = sum(fnmatch.fnmatchcase(n, value["name"]) for n in names)
            ok = int(value.get("min", 1)) <= count and (value.get("max") is None or count <= int(value["max"]))
            info["count"] = count
        else:
            wanted = [value] if isinstance(value, str) else list(value)
            ok = all(any(fnmatch.fnmatchcase(n, str(w)) for n in names) for w in wanted)
    elif kind == "tool-sequence":
        sequence = list(value["steps"] if isinstance(value, dict) else value)
        ok = names == sequence if isinstance(value, dict) and value.get("mode") == "exact" else _in_order(names, sequence)
    elif kind == "tool-args-match":
        exact = value.get("mode") == "exact"
        ok = any(_args_match(s.get("arguments"), value["args"], exact) for s in tools if s.get("name") == value["name"])
    elif kind == "step-count":
        spec = value or {}
        count = sum(1 for s in steps if (spec.get("type") is None or s.get("type") == spec["type"])
                    and (spec.get("pattern") is None or fnmatch.fnmatchcase(str(s.get("name")), spec["pattern"])))
        ok = (spec.get("min") is None or count >= spec["min"]) and (spec.get("max") is None or count <= spec["max"])
        info["count"] = count
    elif kind == "handoff":
        handoffs = [str(s.get("name")) for s in steps if s.get("type") == "handoff"]
        ok, info = value in handoffs, {"handoffs": handoffs}
    elif kind == "branch":
        nodes = [s for s in steps if s.get("type") == "node"]
        node, edge = (value.get("node"), value.get("edge")) if isinstance(value, dict) else (value, None)
        ok = any(node in (s.get("id"), s.get("name")) and (edge is None or s.get("edge") == edge) for s in nodes)
        info = {"nodes": [[s.get("id"), s.get("edge")] for s in nodes]}
    else:  # guardrail
        spec = value or {}
        verdicts = [s for s in steps if s.get("type") == "guardrail"]
        ok = any((spec.get("check") is None or s.get("name") == spec["check"]) and (spec.get("stage") is None or s.get("stage") == spec["stage"])
                 and bool(s.get("triggered")) == bool(spec.get("triggered", True)) for s in verdicts)
        info = {"guardrails": [[s.get("stage"), s.get("name"), bool(s.get("triggered"))] for s in verdicts]}
    return ok != config.negated, info


def _in_order(seen: list[str], wanted: list[Any]) -> bool:
    calls = iter(seen)
    return all(any(name == step for name in calls) for step in wanted)


def _args_match(given: Any, expected: Any, exact: bool) -> bool:
    if exact:
        return bool(given == expected)
    if isinstance(expected, dict):
        return isinstance(given, dict) and all(k in given and _args_match(given[k], v, False) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(given, list) and len(given) == len(expected) and all(_args_match(g, e, False) for g, e in zip(given, expected, strict=True))
    return bool(given == expected)
