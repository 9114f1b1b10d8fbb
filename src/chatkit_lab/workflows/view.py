"""A workflow drawn as SVG in a notebook cell: layered top to bottom, nodes coloured by type,
branch labels on the edges, and optionally the path one run took. Pure Python, no Graphviz.

The layout is the usual layered one: a layer per longest path from the start (a while's body
edges count forward, the edge back into the while is drawn as a loop), then a few barycentre
sweeps to untangle each layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 168, 46, 36, 58, 24
COLORS = {  # fill, stroke: one hue per kind of node
    "start": ("#e8f5e9", "#43a047"), "end": ("#e8f5e9", "#43a047"), "agent": ("#e3f2fd", "#1e88e5"),
    "guardrails": ("#fff3e0", "#fb8c00"), "if_else": ("#f3e5f5", "#8e24aa"), "while": ("#f3e5f5", "#8e24aa"),
    "user_approval": ("#fce4ec", "#d81b60"), "set_state": ("#eceff1", "#546e7a"), "transform": ("#eceff1", "#546e7a"),
    "file_search": ("#e0f7fa", "#00838f"), "mcp": ("#e0f7fa", "#00838f"), "note": ("#fffde7", "#c0a000"),
}
TYPE_LABEL = {"if_else": "if / else", "user_approval": "approval", "set_state": "set state", "file_search": "file search"}
PATH = "#e53935"


@dataclass
class GraphView:
    """The drawing (``.svg``); a notebook shows it. ``path``: the node ids of a run, highlighted."""

    svg: str
    path: list[str]

    def _repr_html_(self) -> str:
        return f'<div class="ckl-workflow-graph" style="overflow:auto;max-width:100%">{self.svg}</div>'


def draw(wf: Any, path: Sequence[str] = ()) -> GraphView:
    nodes = [n for n in wf.nodes if n.type != "note"]
    notes = [n for n in wf.nodes if n.type == "note"]
    by_id = {n.id: n for n in wf.nodes}
    back = {(e.source, e.target) for e in wf.edges if by_id[e.target].type == "while" and _reaches(wf, e.target, e.source, via_body=True)}
    layer = _layers(wf, [n.id for n in nodes], back)
    rows: dict[int, list[str]] = {}
    for node_id in [n.id for n in nodes]:
        rows.setdefault(layer[node_id], []).append(node_id)
    # An edge across several layers goes through a slot in each (a "dummy"), so it never crosses a box.
    chains: list[tuple[Any, list[str]]] = []
    links: list[tuple[str, str]] = []
    for k, edge in enumerate(wf.edges):
        if edge.source not in layer or edge.target not in layer:
            continue
        low, high = sorted((layer[edge.source], layer[edge.target]))
        between = [f"~{k}~{depth}" for depth in range(low + 1, high)]
        for depth, dummy in zip(range(low + 1, high), between, strict=True):
            rows.setdefault(depth, []).append(dummy)
        upward = layer[edge.source] > layer[edge.target]
        chain = [edge.source, *(reversed(between) if upward else between), edge.target]
        chains.append((edge, chain))
        ordered = list(reversed(chain)) if upward else chain  # top to bottom, for the ordering sweeps
        links += list(itertools.pairwise(ordered))
    _untangle(rows, links)
    slot = {i: (NODE_W if not i.startswith("~") else 18) for ids in rows.values() for i in ids}
    row_widths = {d: sum(slot[i] for i in ids) + GAP_X * (len(ids) - 1) for d, ids in rows.items()}
    content_width = max(row_widths.values(), default=NODE_W) + 2 * MARGIN + GAP_X
    width = content_width + (NODE_W + GAP_X if notes else 0)
    height = (max(rows, default=0) + 1) * (NODE_H + GAP_Y) - GAP_Y + 2 * MARGIN
    position: dict[str, tuple[float, float]] = {}  # top-left of a box; for a dummy, its centre's x
    for depth, ids in rows.items():
        x = (content_width - row_widths[depth]) / 2
        for node_id in ids:
            position[node_id] = (x, MARGIN + depth * (NODE_H + GAP_Y))
            x += slot[node_id] + GAP_X
    taken = set(itertools.pairwise(path))
    on_path = set(path)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
             f'font-family="system-ui, sans-serif" role="img" aria-label="{escape(wf.name)}">',
             f"<title>{escape(wf.name)}</title>",
             '<defs><marker id="ckl-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
             '<path d="M0,0L10,5L0,10z" fill="#78909c"/></marker>'
             f'<marker id="ckl-arrow-path" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
             f'<path d="M0,0L10,5L0,10z" fill="{PATH}"/></marker></defs>']
    labels = []
    for edge, chain in chains:
        hot = (edge.source, edge.target) in taken
        d, (lx, ly) = _route([_anchor(position, slot, c) for c in chain])
        stroke, stroke_width = (PATH, 2.6) if hot else ("#90a4ae", 1.4)
        parts.append(f'<path class="ckl-edge{" ckl-taken" if hot else ""}" data-source="{escape(edge.source)}" data-target="{escape(edge.target)}" '
                     f'd="{d}" fill="none" stroke="{stroke}" stroke-width="{stroke_width}" marker-end="url(#{"ckl-arrow-path" if hot else "ckl-arrow"})"/>')
        if edge.label:
            text = escape(edge.label if len(edge.label) <= 18 else edge.label[:17] + "…")
            w = 7 * len(edge.label[:18]) + 10
            labels.append(f'<g class="ckl-edge-label"><rect x="{lx - w / 2:.1f}" y="{ly - 9:.1f}" width="{w}" height="17" rx="8" fill="white" '
                          f'stroke="{PATH if hot else "#cfd8dc"}"/><text x="{lx:.1f}" y="{ly + 4:.1f}" font-size="11" text-anchor="middle" '
                          f'fill="{PATH if hot else "#455a64"}">{text}</text></g>')
    parts += labels
    for node in nodes:
        x, y = position[node.id]
        parts.append(_box(node, x, y, node.id in on_path, bool(path)))
    for i, note in enumerate(notes):
        x, y = content_width, MARGIN + i * (NODE_H + GAP_Y / 2)
        parts.append(_box(note, x, y, False, False, dashed=True))
    parts.append("</svg>")
    return GraphView("".join(parts), list(path))


def _anchor(position: dict[str, tuple[float, float]], slot: Mapping[str, float], node_id: str) -> tuple[float, float]:
    """Where an edge's chain passes ``node_id``: a box's bottom (leaving) or top (arriving); a dummy's centre."""
    x, y = position[node_id]
    cx = x + slot[node_id] / 2
    return (cx, y + NODE_H / 2) if node_id.startswith("~") else (cx, y)


def _route(points: list[tuple[float, float]]) -> tuple[str, tuple[float, float]]:
    """A smooth path through ``points`` (box tops given), leaving and entering boxes vertically."""
    (x0, y0), (xn, yn) = points[0], points[-1]
    down = yn >= y0
    start = (x0, y0 + NODE_H) if down else (x0 + 18, y0)
    end = (xn, yn - 2) if down else (xn + 18, yn + NODE_H + 2)
    pts = [start, *points[1:-1], end]
    d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
    for (ax, ay), (bx, by) in itertools.pairwise(pts):
        mid = (ay + by) / 2
        d += f" C{ax:.1f},{mid:.1f} {bx:.1f},{mid:.1f} {bx:.1f},{by:.1f}"
    (ax, ay), (bx, by) = pts[0], pts[1]
    return d, ((ax + bx) / 2, (ay + by) / 2)


def _box(node: Any, x: float, y: float, hot: bool, dim_others: bool, dashed: bool = False) -> str:
    fill, stroke = COLORS.get(node.type, ("#ffffff", "#90a4ae"))
    name = node.name if len(node.name) <= 22 else node.name[:21] + "…"
    kind = TYPE_LABEL.get(node.type, node.type)
    opacity = "1" if hot or not dim_others else "0.45"
    rx = 22 if node.type in ("start", "end") else 8
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    shape = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="{rx}" fill="{fill}" stroke="{PATH if hot else stroke}" '
             f'stroke-width="{2.6 if hot else 1.4}"{dash}/>')
    return (f'<g class="ckl-node{" ckl-on-path" if hot else ""}" data-node="{escape(node.id)}" data-type="{node.type}" opacity="{opacity}">'
            f"<title>{escape(node.name)} ({node.type})</title>{shape}"
            f'<text x="{x + NODE_W / 2:.1f}" y="{y + 20:.1f}" font-size="13" font-weight="600" text-anchor="middle" fill="#263238">{escape(name)}</text>'
            f'<text x="{x + NODE_W / 2:.1f}" y="{y + 36:.1f}" font-size="10.5" text-anchor="middle" fill="#607d8b">{escape(kind)}</text></g>')


def _reaches(wf: Any, start: str, goal: str, *, via_body: bool) -> bool:
    """Whether ``goal`` is reached from ``start`` by its body edge (so an edge goal → start closes a loop)."""
    first = [e.target for e in wf.edges if e.source == start and (e.label == "body" or not via_body)]
    seen, todo = set(first), list(first)
    while todo:
        here = todo.pop()
        if here == goal:
            return True
        for edge in wf.edges:
            if edge.source == here and edge.target not in seen and edge.target != start:
                seen.add(edge.target)
                todo.append(edge.target)
    return False


def _layers(wf: Any, ids: Iterable[str], back: set[tuple[str, str]]) -> dict[str, int]:
    """Longest path from the start over the forward edges."""
    forward = [(e.source, e.target) for e in wf.edges if (e.source, e.target) not in back]
    layer = {wf.start_node().id: 0}
    for _ in range(len(wf.nodes)):
        changed = False
        for source, target in forward:
            if source in layer and layer.get(target, -1) < layer[source] + 1:
                layer[target] = layer[source] + 1
                changed = True
        if not changed:
            break
    return {i: layer.get(i, 0) for i in ids}


def _untangle(rows: dict[int, list[str]], links: list[tuple[str, str]], sweeps: int = 6) -> None:
    """Order each layer by the mean position of its neighbours above (then below), a few times."""
    above: dict[str, list[str]] = {}
    below: dict[str, list[str]] = {}
    for top, bottom in links:
        above.setdefault(bottom, []).append(top)
        below.setdefault(top, []).append(bottom)
    depths = sorted(rows)
    for sweep in range(sweeps):
        downward = sweep % 2 == 0
        for depth in depths[1:] if downward else list(reversed(depths[:-1])):
            near = rows.get(depth - 1 if downward else depth + 1, [])
            index = {node_id: i for i, node_id in enumerate(near)}
            neighbours = above if downward else below
            keys = {}
            for here, node_id in enumerate(rows[depth]):
                found = [index[p] for p in neighbours.get(node_id, []) if p in index]
                keys[node_id] = sum(found) / len(found) if found else float(here)
            rows[depth].sort(key=keys.__getitem__)
