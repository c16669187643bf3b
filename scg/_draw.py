"""Layout, SVG and DOT text of a graph from plain node descriptions (internal).

The drawing that every layer can use: :meth:`scg.Graph._repr_svg_` draws the
nodes as declared, :meth:`scg.CompiledGraph._repr_svg_` adds the score terms of
its analysis, and :mod:`scg.render` (the public module) the estimators resolved
for given inputs. This module imports nothing of ``scg``: it reads the few
attributes it needs (a node's ``name``, ``kind``, ``parents``, ``estimator``,
``baseline``; an analysis' relations) and lays out :class:`Drawn` records.

No Graphviz binary is needed: columns by topological depth, rows ordered by a
few barycenter sweeps, edges routed around the other nodes.
"""
from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence
from xml.sax.saxutils import escape

import numpy as np

from scg._order import kahn

_GREEK = {n: chr(c) for n, c in [
    ("alpha", 0x3B1), ("beta", 0x3B2), ("gamma", 0x3B3), ("delta", 0x3B4), ("epsilon", 0x3B5), ("eta", 0x3B7),
    ("theta", 0x3B8), ("lambda", 0x3BB), ("mu", 0x3BC), ("sigma", 0x3C3), ("tau", 0x3C4), ("phi", 0x3C6),
    ("psi", 0x3C8), ("omega", 0x3C9),
]}
_COL, _ROW, _MARGIN = 110.0, 80.0, 40.0
_SAMPLES = 25  # points per edge when routing
_NOTED = ("stochastic", "simulate", "expectation")  # kinds with a note under the shape


class Drawn(NamedTuple):
    """One node as drawn."""

    name: str
    kind: str  # a node kind (scg.graph), or "missing" for a parent named but not declared
    parents: tuple[str, ...]
    note: str | None = None  # the label under a stochastic, simulated or expectation node
    baseline: str | None = None  # a baseline node, linked by a dashed edge


def pretty(name: str) -> str:
    """``theta`` -> ``θ``: Greek names as letters."""
    return _GREEK.get(name, name)


def describe(nodes: Iterable, estimators: dict | None = None) -> list[Drawn]:
    """:class:`Drawn` records of graph nodes, each noted with its estimator: from ``estimators``
    (``{name: estimator}``, e.g. an analysis' resolved ones) where given, else as declared."""
    return [Drawn(n.name, n.kind, tuple(n.parents), _note(n, estimators or {}),
                  n.baseline if isinstance(n.baseline, str) else None) for n in nodes]


def _estimator_label(node, estimators: dict) -> str:
    est = estimators.get(node.name, node.estimator)
    if est is None:
        return "auto" if node.kind == "stochastic" else "relaxed"
    return est if isinstance(est, str) else getattr(est, "name", type(est).__name__)


def _note(node, estimators: dict) -> str | None:
    """The small label under a stochastic/simulated/expectation node: estimator and baseline."""
    if node.kind not in _NOTED:
        return None
    if node.kind == "simulate":
        return "simulate"
    est = _estimator_label(node, estimators)
    est = f"E[·], {est}" if node.kind == "expectation" else est
    b = node.baseline
    return est if b is None else f"{est}, b={pretty(b) if isinstance(b, str) else type(b).__name__}"


def caption(a) -> list[str]:
    """The score terms of the surrogate (Corollary 1, with Theorem 2's baselines), one line per score node
    ``w``: ``∇ log p(w | DEPS_w) × (Q̂_w − b_w)``, read from an analysis (``scg._program.analysis.Analysis``)."""
    lines = []
    for w in a.score_nodes():
        deps = ", ".join(pretty(d) for d in a.order if d in a.deps[w])
        q = " + ".join(pretty(c) for c in a.downstream_costs[w]) or "0"
        b = a.nodes[w].baseline
        if b is not None:
            q += " − " + (pretty(b) if isinstance(b, str) else f"b[{b!r}]")
        given = f" | {deps}" if deps else ""
        lines.append(f"∇ log p({pretty(w)}{given}) × ({q})")
    auto = [pretty(w) for w, e in a.estimators.items() if getattr(e, "name", None) == "auto"]
    if auto:  # the default is resolved per input shape: scg.render.to_svg(graph, compiled=, inputs=) shows it
        lines.append(f"({', '.join(auto)}: 'auto', pathwise if reparameterisable else score; resolved by inputs)")
    return lines


# -- layout -----------------------------------------------------------------------------
def _order(nodes: dict) -> list[str]:
    """A topological order (Kahn's algorithm, ties in declaration order); declaration order if the
    graph has a cycle or names a parent not declared yet."""
    if any(p not in nodes or p == v for v, n in nodes.items() for p in n.parents):
        return list(nodes)
    order = kahn({v: n.parents for v, n in nodes.items()})
    return order if len(order) == len(nodes) else list(nodes)


def layout(nodes: Iterable[Drawn]) -> dict[str, tuple[float, float]]:
    """Node centres ``{name: (x, y)}``: column = longest path from a root, rows by barycenter sweeps.

    Parents that are named but not (yet) declared get a placeholder position.
    """
    nodes = {n.name: n for n in nodes}
    order = _order(nodes)
    for n in nodes.values():
        for p in n.parents:
            if p not in nodes and p not in order:
                order.insert(0, p)
    depth: dict[str, int] = {}
    for v in order:
        parents = nodes[v].parents if v in nodes else ()
        depth[v] = 1 + max((depth[p] for p in parents if p in depth), default=-1)
    layers: dict[int, list[str]] = {}
    for v in order:
        layers.setdefault(depth[v], []).append(v)
    parents = {v: [p for p in (nodes[v].parents if v in nodes else ()) if p in depth] for v in order}
    children = {v: [c for c in order if v in parents[c]] for v in order}

    def rows() -> dict[str, float]:
        return {v: i - (len(layer) - 1) / 2 for layer in layers.values() for i, v in enumerate(layer)}

    for sweep in range(4):  # alternate down (by parents) and up (by children) sweeps
        pos, nbrs = rows(), parents if sweep % 2 == 0 else children
        keys = sorted(layers) if sweep % 2 == 0 else sorted(layers, reverse=True)
        for d in keys:
            bary = {v: (sum(pos[u] for u in nbrs[v]) / len(nbrs[v]) if nbrs[v] else pos[v]) for v in layers[d]}
            layers[d] = sorted(layers[d], key=lambda v: (bary[v], pos[v]))
            pos = rows()
    pos = rows()
    return {v: (depth[v] * _COL, pos[v] * _ROW) for v in order}




# -- SVG ------------------------------------------------------------------------------------
def _half_extent(kind: str, label: str) -> tuple[float, float]:
    """Half width and height of a node's shape (circles: radius, radius)."""
    w = 7.5 * len(label) + 12
    if kind in ("stochastic", "simulate"):
        r = max(22.0, w / 2)
        return r, r
    if kind in ("input", "missing"):
        return w / 2, 11.0
    return max(22.0, w / 2), 22.0


def _boundary(kind, half, centre, toward) -> tuple[float, float]:
    """Where the ray from ``centre`` toward ``toward`` leaves the node's shape."""
    (cx, cy), (dx, dy) = centre, (toward[0] - centre[0], toward[1] - centre[1])
    norm = math.hypot(dx, dy) or 1.0
    if kind in ("stochastic", "simulate"):
        t = half[0] / norm
    else:
        t = min(half[0] / abs(dx) if dx else math.inf, half[1] / abs(dy) if dy else math.inf)
    pad = 3.0 if kind == "cost" else 0.0
    t += pad / norm
    return cx + dx * t, cy + dy * t


def _bezier(a, c, b, t):
    """The quadratic Bézier curve through ``a`` and ``b`` with control point ``c``, at ``t`` (arrays broadcast)."""
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b


def _crossings(pts: np.ndarray, routed: list) -> int:
    """How many ``routed`` edges (arrays of points) the polyline ``pts`` crosses or touches (within 8 px)."""
    if not routed:
        return 0
    other = np.stack(routed)  # [E, P, 2]
    p, q = pts[2:-3, None, None], pts[3:-2, None, None]  # candidate segments [S, 1, 1, 2]
    r, s = other[None, :, :-1], other[None, :, 1:]  # routed segments [1, E, P-1, 2]
    orient = lambda a, b, c: (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
    cross = (orient(p, q, r) * orient(p, q, s) < 0) & (orient(r, s, p) * orient(r, s, q) < 0)
    gaps = np.linalg.norm(pts[3:-3, None, None] - other[None, :, 3:-3], axis=-1)  # [S', E, P']
    return int(np.sum(cross.any(axis=(0, 2)) | (gaps < 8).any(axis=(0, 2))))


def _route(src, dst, centres, boxes, routed) -> tuple[float, float]:
    """The control point of a quadratic edge from ``src`` to ``dst``: it avoids other nodes' boxes first, then
    crossing or touching the ``routed`` edges, bending as little as it can."""
    p0, p1 = np.asarray(centres[src]), np.asarray(centres[dst])
    mid = (p0 + p1) / 2
    names = [v for v in centres if v not in (src, dst)]
    c = np.array([centres[v] for v in names]).reshape(-1, 2)
    h = np.array([boxes[v] for v in names]).reshape(-1, 2) + 6
    best = None
    for k in (0, -1, 1, -2, 2, -3, 3, -4, 4):  # in order of preference
        ctrl = mid + np.array([0.0, k * 0.7 * _ROW])
        pts = _bezier(p0, ctrl, p1, np.linspace(0, 1, _SAMPLES)[:, None])
        inside = np.all(np.abs(pts[2:-2, None] - c[None]) < h[None], axis=-1)  # [P, N]
        cost = (int(inside.any(axis=0).sum()), _crossings(pts, routed))
        if best is None or cost < best[0]:
            best = (cost, (float(ctrl[0]), float(ctrl[1])))
        if cost == (0, 0):
            break
    return best[1]


def _edge_path(src, dst, centres, halves, kinds, routed, boxes) -> tuple[str, list]:
    """SVG path data of an edge, clipped to both nodes' shapes, and points on it (appended to ``routed``).

    ``boxes`` are the half extents to keep clear (shapes with their labels)."""
    p0, p1 = centres[src], centres[dst]
    ctrl = _route(src, dst, centres, boxes, routed)
    routed.append(_bezier(np.asarray(p0), np.asarray(ctrl), np.asarray(p1), np.linspace(0, 1, _SAMPLES)[:, None]))
    straight = abs(ctrl[1] - (p0[1] + p1[1]) / 2) < 1e-6
    a = _boundary(kinds[src], halves[src], p0, p1 if straight else ctrl)
    b = _boundary(kinds[dst], halves[dst], p1, p0 if straight else ctrl)
    if straight:
        return f"M{a[0]:.1f},{a[1]:.1f} L{b[0]:.1f},{b[1]:.1f}", [a, b]
    top = _bezier(np.asarray(a), np.asarray(ctrl), np.asarray(b), 0.5)
    return f"M{a[0]:.1f},{a[1]:.1f} Q{ctrl[0]:.1f},{ctrl[1]:.1f} {b[0]:.1f},{b[1]:.1f}", [tuple(top)]


def _shape(kind: str, cx: float, cy: float, hw: float, hh: float) -> list[str]:
    rect = lambda cls, dx, extra="": (
        f'<rect class="{cls}" x="{cx - hw - dx:.1f}" y="{cy - hh - dx:.1f}" width="{2 * (hw + dx):.1f}" '
        f'height="{2 * (hh + dx):.1f}" rx="{3 + dx:.0f}"{extra}/>'
    )
    if kind in ("stochastic", "simulate"):
        dash = ' stroke-dasharray="5,3"' if kind == "simulate" else ""
        return [f'<circle class="shape" cx="{cx:.1f}" cy="{cy:.1f}" r="{hw:.1f}"{dash}/>']
    if kind == "deterministic":
        return [rect("shape", 0)]
    if kind == "expectation":
        return [rect("shape", 0, ' stroke-dasharray="5,3"')]
    if kind == "cost":  # double border, as a marker that this node is summed into the objective
        return [rect("cost-marker", 4, ' fill="none"'), rect("shape", 0)]
    return []


def svg(title: str, nodes: Sequence[Drawn], caption: Sequence[str] = ()) -> str:
    """An SVG picture (Schulman 2016, Figure 11 notation) of the described nodes, as a string.

    Each node is a ``<g class="node KIND" id="node-NAME">`` holding one shape
    (``circle`` or ``rect`` of class ``shape``; costs add a ``rect`` of class
    ``cost-marker``), its label, and for stochastic nodes its note (estimator label);
    ``caption`` lines are listed below as the score terms of the surrogate.
    """
    caption = list(caption)
    nodes = {n.name: n for n in nodes}
    centres = layout(nodes.values())
    kinds = {v: nodes[v].kind if v in nodes else "missing" for v in centres}
    labels = {v: pretty(v) + ("?" if kinds[v] == "missing" else "") for v in centres}
    halves = {v: _half_extent(kinds[v], labels[v]) for v in centres}

    edges = [("edge", p, v) for v, n in nodes.items() for p in dict.fromkeys(n.parents) if p in centres]
    edges += [("baseline-edge", n.baseline, v) for v, n in nodes.items()  # a baseline parent is named in the label
              if n.baseline in centres and n.baseline not in n.parents]
    drawn, xs, ys, routed = [], [], [], []
    boxes = {v: (hw, hh + 18 * (kinds[v] in _NOTED)) for v, (hw, hh) in halves.items()}
    for cls, p, v in sorted(edges, key=lambda e: abs(centres[e[2]][0] - centres[e[1]][0])):  # short edges first
        d, pts = _edge_path(p, v, centres, halves, kinds, routed, boxes)
        arrow = ' marker-end="url(#arrow)"' if cls == "edge" else ""
        drawn.append(f'<path class="{cls}" data-src="{escape(p)}" data-dst="{escape(v)}" d="{d}"{arrow}/>')
        xs += [x for x, _ in pts]
        ys += [y for _, y in pts]
    for v, (cx, cy) in centres.items():
        kind, (hw, hh) = kinds[v], halves[v]
        drawn.append(f'<g class="node {kind}" id="node-{escape(v)}"><title>{escape(v)} ({kind})</title>')
        drawn += _shape(kind, cx, cy, hw, hh)
        size = ' font-size="17"' if kind == "input" else ""
        drawn.append(f'<text x="{cx:.1f}" y="{cy + 5:.1f}" text-anchor="middle" font-style="italic"{size}>{escape(labels[v])}</text>')
        below = hh + 8
        if kind in _NOTED:
            est = nodes[v].note or ""
            drawn.append(f'<text class="est {escape(est.split(",")[0])}" x="{cx:.1f}" y="{cy + hh + 14:.1f}" '
                         f'text-anchor="middle">{escape(est)}</text>')
            hw, below = max(hw, 3.2 * len(est)), hh + 20
        drawn.append("</g>")
        xs += [cx - hw - 8, cx + hw + 8]
        ys += [cy - hh - 8, cy + below]
    x0, y0 = min(xs, default=0.0), min(ys, default=0.0)
    body_w, body_h = max(xs, default=0.0) - x0, max(ys, default=0.0) - y0
    width = max(body_w, 7.5 * max((len(c) for c in caption), default=0)) + 2 * _MARGIN
    height = body_h + 2 * _MARGIN + (20 * len(caption) + 10 if caption else 0)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="serif" font-size="15">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>',
        "<style>.shape{fill:#fff;stroke:#222;stroke-width:1.5}.cost .shape{fill:#fdecea}"
        ".cost-marker{stroke:#222;stroke-width:1.2}.missing text{fill:#b00}"
        ".edge{fill:none;stroke:#333;stroke-width:1.3}.baseline-edge{fill:none;stroke:#888;stroke-dasharray:3,3}"
        ".est{font-size:11px;fill:#555;font-style:normal}.est.score{fill:#b35900}.est.pathwise{fill:#1a7a1a}</style>",
        f'<g class="graph" transform="translate({_MARGIN - x0:.1f},{_MARGIN - y0:.1f})">',
        *drawn,
        "</g>",
    ]
    if caption:
        y = body_h + _MARGIN + 20
        out.append(f'<g class="caption" font-size="13"><text x="{_MARGIN / 2:.0f}" y="{y:.0f}">'
                   "Score terms of the surrogate (Corollary 1):</text>")
        for i, line in enumerate(caption):
            out.append(f'<text class="score-term" x="{_MARGIN:.0f}" y="{y + 20 * (i + 1):.0f}">{escape(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


# -- DOT -------------------------------------------------------------------------------------
_DOT_SHAPES = {
    "input": 'shape=plaintext',
    "deterministic": 'shape=box',
    "cost": 'shape=box, peripheries=2, style=filled, fillcolor="#fdecea"',
    "expectation": 'shape=box, style=dashed',
    "stochastic": 'shape=circle',
    "simulate": 'shape=circle, style=dashed',
}


def dot(title: str, nodes: Sequence[Drawn]) -> str:
    """The described nodes in Graphviz DOT (``dot -Tsvg`` renders it; Graphviz is not needed to produce it)."""
    q = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines = [f"digraph {q(title)} {{", "  rankdir=LR;", '  node [fontname="serif"];']
    for n in nodes:
        parts = [pretty(n.name)] + ([n.note] if n.note is not None else [])
        label = "\\n".join(q(p)[1:-1] for p in parts)  # "\n" is DOT's line break inside a label
        lines.append(f'  {q(n.name)} [label="{label}", {_DOT_SHAPES.get(n.kind, "shape=box")}];')
    for n in nodes:
        for p in dict.fromkeys(n.parents):
            lines.append(f"  {q(p)} -> {q(n.name)};")
        if n.baseline is not None and n.baseline not in n.parents:
            lines.append(f"  {q(n.baseline)} -> {q(n.name)} [style=dashed, arrowhead=none, label=baseline];")
    lines.append("}")
    return "\n".join(lines)
