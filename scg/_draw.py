"""Layout, scene, SVG and DOT text of a graph from plain node descriptions (internal).

The drawing that every layer can use: :meth:`scg.Graph._repr_svg_` draws the
nodes as declared, :meth:`scg.CompiledGraph._repr_svg_` adds the score terms of
its analysis, and :mod:`scg.render` (the public module) the estimators resolved
from the distributions, and a matplotlib figure of the same :class:`Scene`. This
module imports nothing of ``scg``: it reads the few attributes it needs (a node's
``name``, ``kind``, ``parents``, ``estimator``, ``baseline``; an analysis'
relations; a Temporal's ``carry``, ``horizon``, ``discount``) and lays out
:class:`Drawn` records.

No Graphviz binary is needed: columns by topological depth, rows ordered by a
few barycenter sweeps, edges routed around the other nodes and the estimator
labels (a label goes above its node where the edges would cross it below). A
Temporal's step is drawn inside a frame that names the horizon and the
discount; its carry edges (``s′`` at step t feeds ``s`` at t+1) leave the frame
on the right and enter it again on the left; the inputs that are not carried
(parameters, shared by every step) stand outside it, as in plate notation.
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
_SAMPLES = 25  # points per edge when checking it against the edges routed before
_FINE = 97  # points per edge when checking it against nodes and labels
_NOTED = ("stochastic", "simulate", "expectation")  # kinds with a note (estimator label) beside the shape
_LANE, _PAD, _CORNER = 14.0, 16.0, 8.0  # carry lanes' spacing, a frame's padding, the lanes' corner radius


class Drawn(NamedTuple):
    """One node as drawn."""

    name: str
    kind: str  # a node kind (scg.graph), or "missing" for a parent named but not declared
    parents: tuple[str, ...]
    note: str | None = None  # the label beside a stochastic, simulated or expectation node
    baseline: str | None = None  # a baseline node, linked by a dashed edge


class Frame(NamedTuple):
    """A Temporal's repetition drawn around its step: ``carry`` ``((input, node), ...)`` (``node`` at step t
    feeds ``input`` at step t+1), the horizon ``T`` and the discount ``γ``."""

    carry: tuple[tuple[str, str], ...]
    horizon: int
    discount: float


def frame_of(temporal) -> Frame:
    """The :class:`Frame` of a :class:`scg.Temporal` (its ``carry``, ``horizon`` and ``discount``)."""
    return Frame(tuple(temporal.carry.items()), int(temporal.horizon), float(temporal.discount))


def pretty(name: str) -> str:
    """``theta`` -> ``θ``: Greek names as letters."""
    return _GREEK.get(name, name)


def describe(nodes: Iterable, estimators: dict | None = None) -> list[Drawn]:
    """:class:`Drawn` records of graph nodes, each noted with its estimator: from ``estimators``
    (``{name: estimator}``, e.g. an analysis' resolved ones) where given, else as declared."""
    return [Drawn(n.name, n.kind, tuple(n.parents), _note(n, estimators or {}),
                  n.baseline if isinstance(n.baseline, str) else None) for n in nodes]


def _estimator_label(node, estimators: dict) -> str:
    """The estimator's name; ``"default"`` for the unresolved default (``scg.estimators.DEFAULT``, named
    ``"auto"``), which becomes pathwise or score once the distribution is known."""
    est = estimators.get(node.name, node.estimator)
    if est is None:
        return "default" if node.kind == "stochastic" else "relaxed"
    name = est if isinstance(est, str) else getattr(est, "name", type(est).__name__)
    return "default" if name == "auto" else name


def _note(node, estimators: dict) -> str | None:
    """The small label beside a stochastic/simulated/expectation node: estimator and baseline."""
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
    unresolved = [pretty(w) for w, e in a.estimators.items() if getattr(e, "name", None) == "auto"]
    if unresolved:  # scg.render.to_svg(graph, compiled=, inputs=) resolves them
        lines.append(f"({', '.join(unresolved)}: default, i.e. pathwise if reparameterisable, else score)")
    return lines


# -- layout -----------------------------------------------------------------------------
def _order(nodes: dict) -> list[str]:
    """A topological order (Kahn's algorithm, ties in declaration order); declaration order if the
    graph has a cycle or names a parent not declared yet."""
    if any(p not in nodes or p == v for v, n in nodes.items() for p in n.parents):
        return list(nodes)
    order = kahn({v: n.parents for v, n in nodes.items()})
    return order if len(order) == len(nodes) else list(nodes)


def layout(nodes: Iterable[Drawn], outside: Iterable[str] = ()) -> dict[str, tuple[float, float]]:
    """Node centres ``{name: (x, y)}``: column = longest path from a root, rows by barycenter sweeps.

    Parents that are named but not (yet) declared get a placeholder position. The ``outside`` nodes (a
    Temporal's inputs that are not carried) take a column of their own left of the roots.
    """
    nodes, outside = {n.name: n for n in nodes}, set(outside)
    order = _order(nodes)
    for n in nodes.values():
        for p in n.parents:
            if p not in nodes and p not in order:
                order.insert(0, p)
    depth: dict[str, int] = {}
    for v in order:
        parents = nodes[v].parents if v in nodes else ()
        depth[v] = -1 if v in outside else 1 + max((depth[p] for p in parents if p in depth), default=-1)
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


# -- geometry ---------------------------------------------------------------------------------
def _half_extent(kind: str, label: str) -> tuple[float, float]:
    """Half width and height of a node's shape (circles: radius, radius)."""
    w = 7.5 * len(label) + 12
    if kind in ("stochastic", "simulate"):
        r = max(22.0, w / 2)
        return r, r
    if kind in ("input", "missing"):
        return w / 2, 11.0
    return max(22.0, w / 2), 22.0


def _note_box(centre, half, note: str, above: bool):
    """Centre and half extent of a note's box, below its node's shape (or above it)."""
    dy = half[1] + 10.5
    return (centre[0], centre[1] - dy if above else centre[1] + dy), (3.2 * len(note) + 2, 7.5)


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


def _curve(points, n: int) -> np.ndarray:
    """``n`` points along the Bézier curve of control ``points`` (its ends the first and last; 3 points: quadratic,
    4: cubic), in Bernstein form: ``B(t) = Σ_i C(m, i) t^i (1 - t)^(m - i) P_i`` with ``m = len(points) - 1``."""
    pts = np.asarray(points, float)
    m, t = len(pts) - 1, np.linspace(0, 1, n)[:, None]
    return sum(math.comb(m, i) * t**i * (1 - t) ** (m - i) * pts[i] for i in range(m + 1))


def _hits(pts: np.ndarray, boxes: list) -> int:
    """How many ``boxes`` (``(centre, half)``) any of the points ``pts [P, 2]`` falls inside."""
    if not boxes or not len(pts):
        return 0
    c = np.array([b[0] for b in boxes], float)
    h = np.array([b[1] for b in boxes], float)
    return int(np.all(np.abs(pts[:, None] - c[None]) < h[None], axis=-1).any(axis=0).sum())


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


# A quadratic edge's control point, in order of preference: (bend across the line in rows, where along it).
_BENDS = [(0.0, 0.5)] + [(k * 0.35 * sign, t) for k in range(1, 9) for sign in (-1, 1) for t in (0.5, 0.3, 0.7)]
# A cubic edge's two (at a third and two thirds of the way), where no quadratic one keeps clear: S-bends too.
_BENDS2 = [(b1 * 0.35, b2 * 0.35) for b1 in range(-8, 9) for b2 in range(-8, 9) if b1 != b2]
_BENDS2.sort(key=lambda b: abs(b[0]) + abs(b[1]))


def _route(p0, p1, boxes: list, routed: list) -> tuple[tuple[float, float], ...]:
    """The control points of an edge from ``p0`` to ``p1``: one (a quadratic) bent across the line (by up to
    2.8 rows, its apex midway or nearer an end) as little as it can while avoiding ``boxes`` (other nodes, every
    label) first, then the ``routed`` edges; two (a cubic, which can bend both ways) where no quadratic keeps
    clear of the boxes."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    normal = np.array([-d[1], d[0]]) / (math.hypot(*d) or 1.0)
    candidates = [(p0 + t * d + bend * _ROW * normal,) for bend, t in _BENDS]
    candidates += [(p0 + d / 3 + b1 * _ROW * normal, p0 + 2 * d / 3 + b2 * _ROW * normal) for b1, b2 in _BENDS2]
    best = None
    for i, ctrl in enumerate(candidates):
        if i == len(_BENDS) and best[0][0] == 0:  # a quadratic keeps clear: no cubic
            break
        points = (p0, *ctrl, p1)
        cost = (_hits(_curve(points, _FINE)[4:-4], boxes), _crossings(_curve(points, _SAMPLES), routed))
        if best is None or cost < best[0]:
            best = (cost, tuple((float(c[0]), float(c[1])) for c in ctrl))
        if cost == (0, 0):
            break
    return best[1]


def _bend(ctrl: tuple, end) -> tuple:
    """The path command of a curve through control points ``ctrl`` (one: ``Q``, two: ``C``) to ``end``."""
    return ("QC"[len(ctrl) - 1], *(x for c in ctrl for x in c), *end)


def _sample(path: Sequence[tuple]) -> np.ndarray:
    """Points along path commands ``("M", x, y)``, ``("L", x, y)``, ``("Q", cx, cy, x, y)``, ``("C", ...)``."""
    pts, here = [], None
    for cmd, *xy in path:
        if cmd in ("Q", "C"):
            pts += list(_curve((here, *np.reshape(xy, (-1, 2))), 17)[1:])
        elif cmd == "L":
            pts += list(np.linspace(here, xy, 17)[1:])
        else:
            pts.append(np.asarray(xy, float))
        here = np.asarray(xy[-2:], float)
    return np.array(pts).reshape(-1, 2)


# -- scene ------------------------------------------------------------------------------------
class Shape(NamedTuple):
    """A node's shape (or a frame): a ``circle`` of radius ``hw`` or a ``rect`` of half extents ``hw, hh``."""

    node: str | None
    form: str  # "circle" or "rect"
    cls: str  # "shape", "cost-marker" or "frame"
    cx: float
    cy: float
    hw: float
    hh: float
    dashed: bool = False


class Text(NamedTuple):
    """A text anchored at ``(x, y)`` on its baseline (``anchor``: ``"middle"`` or ``"start"``)."""

    x: float
    y: float
    text: str
    cls: str  # "label", "est <estimator>", "frame-title", "carry-label", "caption-head" or "score-term"
    node: str | None = None
    size: float = 15.0
    anchor: str = "middle"
    italic: bool = False


class Edge(NamedTuple):
    """An edge as path commands ``("M", x, y)``, ``("L", x, y)``, ``("Q", cx, cy, x, y)``, ``("C", c1x, c1y, c2x,
    c2y, x, y)`` (SVG's)."""

    cls: str  # "edge", "baseline-edge" or "carry-edge"
    src: str
    dst: str
    path: tuple
    arrow: bool


class Scene(NamedTuple):
    """Everything drawn, in final coordinates (pixels, y down): what :func:`svg` and ``scg.render`` paint."""

    title: str
    width: float
    height: float
    kinds: dict  # node -> kind, in drawing order
    shapes: list
    texts: list
    edges: list


def _node_shapes(v: str, kind: str, cx: float, cy: float, hw: float, hh: float) -> list[Shape]:
    if kind in ("stochastic", "simulate"):
        return [Shape(v, "circle", "shape", cx, cy, hw, hw, dashed=kind == "simulate")]
    if kind in ("deterministic", "expectation"):
        return [Shape(v, "rect", "shape", cx, cy, hw, hh, dashed=kind == "expectation")]
    if kind == "cost":  # double border, as a marker that this node is summed into the objective
        return [Shape(v, "rect", "cost-marker", cx, cy, hw + 4, hh + 4), Shape(v, "rect", "shape", cx, cy, hw, hh)]
    return []


def _edge(cls, src, dst, centres, halves, kinds, boxes, routed) -> Edge:
    """A routed edge clipped to both nodes' shapes (its curve appended to ``routed``); the arrowhead, at the
    end, lies along the curve's last tangent, which points at the destination's centre."""
    p0, p1 = centres[src], centres[dst]
    ctrl = _route(p0, p1, boxes, routed)
    routed.append(_curve((p0, *ctrl, p1), _SAMPLES))
    straight = len(ctrl) == 1 and math.dist(ctrl[0], ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)) < 1e-6
    a = _boundary(kinds[src], halves[src], p0, p1 if straight else ctrl[0])
    b = _boundary(kinds[dst], halves[dst], p1, p0 if straight else ctrl[-1])
    if straight:
        return Edge(cls, src, dst, (("M", *a), ("L", *b)), cls == "edge")
    return Edge(cls, src, dst, (("M", *a), _bend(ctrl, b)), cls == "edge")


def _overlaps(box, others) -> int:
    """How many of the boxes ``others`` (``(centre, half)``) overlap ``box``."""
    (cx, cy), (hw, hh) = box
    return sum(abs(cx - ox) < hw + ow and abs(cy - oy) < hh + oh for (ox, oy), (ow, oh) in others)


def _side_cost(v, note, up, centres, halves, placed, lines) -> tuple[int, int]:
    """(boxes overlapped: other shapes and notes placed, lines crossed) of ``v``'s note on one side."""
    box = _note_box(centres[v], halves[v], note, up)
    shapes = [(centres[u], halves[u]) for u in centres if u != v]
    notes = [_note_box(centres[u], halves[u], n, a) for u, (n, a) in placed.items() if u != v]
    return _overlaps(box, shapes + notes), sum(_hits(p, [box]) for p in lines)


def _place_notes(notes, centres, halves, segments) -> dict[str, bool]:
    """``{node: above}``: a note goes below its node unless it would overlap another node or a note placed
    before it there, or the straight lines of the node's edges cross it below and not above (a baseline or a
    parent drawn under the node)."""
    placed: dict[str, tuple[str, bool]] = {}
    for v, note in notes.items():
        lines = [np.linspace(centres[v], centres[u], _FINE)[4:-4] for u in segments.get(v, ())]
        cost = [_side_cost(v, note, up, centres, halves, placed, lines) for up in (False, True)]
        placed[v] = (note, cost[1] < cost[0])
    return {v: up for v, (_, up) in placed.items()}


def _flip_crossed_notes(notes, above, centres, halves, edges):
    """Move a note to the other side of its node where it then overlaps less, or as little and fewer routed
    edges cross it there."""
    pts = [_sample(e.path) for e in edges]
    for v, note in notes.items():
        placed = {u: (notes[u], above[u]) for u in notes}
        cost = [_side_cost(v, note, up, centres, halves, placed, pts) for up in (False, True)]
        if cost[not above[v]] < cost[above[v]]:
            above[v] = not above[v]


def _frame_box(inside, centres, halves, note_boxes, edges, frame: Frame):
    """``(x0, y0, x1, y1)`` around the ``inside`` nodes, their notes and the edges within, with room for the title."""
    xs, ys = [], []
    for v in inside:
        (cx, cy), (hw, hh) = centres[v], halves[v]
        xs += [cx - hw - 4, cx + hw + 4]
        ys += [cy - hh - 4, cy + hh + 4]
    for (cx, cy), (hw, hh) in note_boxes:
        xs += [cx - hw, cx + hw]
        ys += [cy - hh, cy + hh]
    x0 = min(xs) - _PAD
    for e in edges:
        p = _sample(e.path)
        p = p[p[:, 0] >= x0]
        xs += list(p[:, 0])
        ys += list(p[:, 1])
    x1 = max(max(xs) + _PAD, x0 + 6.5 * len(_frame_title(frame)) + 2 * _PAD)
    return x0, min(ys) - _PAD - 18, x1, max(ys) + _PAD


def _frame_title(frame: Frame) -> str:
    return f"T = {frame.horizon} steps, γ = {frame.discount:g}"


def _carry_edges(frame: Frame, box, centres, halves, kinds, boxes, routed):
    """The carry edges as lanes around the frame ``box``: from ``node`` right (or straight down, where the way
    right is blocked), down, left under the frame, up, and right into ``input``; the lowest node takes the
    innermost lane (so the lanes cross less). With a label on each lane."""
    x0, _, x1, y1 = box
    edges, texts, r = [], [], _CORNER
    pairs = sorted((p for p in frame.carry if p[0] in centres and p[1] in centres), key=lambda p: -centres[p[1]][1])
    for i, (inp, node) in enumerate(pairs):
        (sx, sy), (ex, ey) = centres[node], centres[inp]
        xr, xl, yb = x1 + _LANE * (i + 1), x0 - _LANE * (i + 1), y1 + 16.0 * (i + 1)
        others = [b[:2] for b in boxes if b[2] != node]
        right = _boundary(kinds[node], halves[node], (sx, sy), (sx + 1.0, sy))
        down = _boundary(kinds[node], halves[node], (sx, sy), (sx, sy + 1.0))
        cost = lambda a, b: (_hits(np.linspace(a, b, _FINE)[2:], others),  # noqa: E731
                             _crossings(np.linspace(a, b, _SAMPLES), routed))
        if cost(down, (sx, yb)) < cost(right, (xr, sy)):  # straight down to the lane
            out, corner_x = (("M", *down), ("L", sx, yb - r), ("Q", sx, yb, sx - r, yb)), sx
        else:  # right to the lane, bent around what is in the way
            ctrl = _route(right, (xr - r, sy), others, routed)
            out = (("M", *right), _bend(ctrl, (xr - r, sy)), ("Q", xr, sy, xr, sy + r), ("L", xr, yb - r),
                   ("Q", xr, yb, xr - r, yb))
            corner_x = xr
        end = _boundary(kinds[inp], halves[inp], (ex, ey), (ex - 1.0, ey))
        back = (("L", xl + r, yb), ("Q", xl, yb, xl, yb - r), ("L", xl, ey + r), ("Q", xl, ey, xl + r, ey), ("L", *end))
        edges.append(Edge("carry-edge", node, inp, out + back, True))
        routed.append(_curve(((corner_x, yb), (xl, yb)), _SAMPLES))
        texts.append(Text((corner_x + xl) / 2, yb - 4, f"{pretty(node)} → {pretty(inp)}", "carry-label", size=10))
    return edges, texts


def scene(title: str, nodes: Sequence[Drawn], caption: Sequence[str] = (), frame: Frame | None = None) -> Scene:
    """Lay out and route the described nodes (Schulman 2016, Figure 11 notation); with ``frame``, a Temporal's
    step inside a frame with its carry edges, horizon and discount."""
    caption = list(caption)
    nodes = {n.name: n for n in nodes}
    carried = {inp for inp, _ in frame.carry} if frame else set()
    outside = [v for v, n in nodes.items() if frame and n.kind == "input" and v not in carried]
    centres = layout(nodes.values(), outside)
    if frame:  # the shared inputs make room for the carry lanes left of the frame
        centres.update({v: (centres[v][0] - _LANE * len(frame.carry), centres[v][1]) for v in outside})
    kinds = {v: nodes[v].kind if v in nodes else "missing" for v in centres}
    labels = {v: pretty(v) + ("?" if kinds[v] == "missing" else "") for v in centres}
    halves = {v: _half_extent(kinds[v], labels[v]) for v in centres}
    notes = {v: nodes[v].note or "" for v in centres if kinds[v] in _NOTED}

    pairs = [("edge", p, v) for v, n in nodes.items() for p in dict.fromkeys(n.parents) if p in centres]
    pairs += [("baseline-edge", n.baseline, v) for v, n in nodes.items()  # a baseline parent is named in the label
              if n.baseline in centres and n.baseline not in n.parents]
    segments: dict[str, list] = {}
    for _, p, v in pairs:
        segments.setdefault(p, []).append(v)
        segments.setdefault(v, []).append(p)
    above = _place_notes(notes, centres, halves, segments)
    note_box = lambda v: _note_box(centres[v], halves[v], notes[v], above[v])  # noqa: E731
    boxes = [(centres[v], (hw + 6, hh + 6), v, "shape") for v, (hw, hh) in halves.items()]
    boxes += [(*note_box(v), v, "note") for v in notes]
    edges, routed = [], []
    for cls, p, v in sorted(pairs, key=lambda e: abs(centres[e[2]][0] - centres[e[1]][0])):  # short edges first
        clear = [b[:2] for b in boxes if b[3] == "note" or b[2] not in (p, v)]
        edges.append(_edge(cls, p, v, centres, halves, kinds, clear, routed))
    _flip_crossed_notes(notes, above, centres, halves, edges)
    boxes = [b for b in boxes if b[3] == "shape"] + [(*note_box(v), v, "note") for v in notes]  # where they ended

    shapes, texts = [], []
    for v, (cx, cy) in centres.items():
        shapes += _node_shapes(v, kinds[v], cx, cy, *halves[v])
        texts.append(Text(cx, cy + 5, labels[v], "label", v, 17.0 if kinds[v] == "input" else 15.0, italic=True))
        if v in notes:
            (nx, ny), _ = note_box(v)
            texts.append(Text(nx, ny + 3.5, notes[v], f"est {notes[v].split(',')[0]}", v, 11.0))
    if frame:
        inside = [v for v in centres if v not in outside]
        box = _frame_box(inside, centres, halves, [note_box(v) for v in notes], edges, frame)
        carry, carry_texts = _carry_edges(frame, box, centres, halves, kinds, boxes, routed)
        x0, y0, x1, y1 = box
        shapes.insert(0, Shape(None, "rect", "frame", (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2))
        texts += [Text(x0 + 8, y0 + 15, _frame_title(frame), "frame-title", size=12.0, anchor="start"), *carry_texts]
        edges += carry
    return _placed(title, kinds, shapes, texts, edges, caption)


def _text_extent(t: Text) -> tuple[float, float, float, float]:
    w = 0.5 * t.size * len(t.text)
    x0 = t.x - w / 2 if t.anchor == "middle" else t.x
    return x0, t.y - t.size, x0 + w, t.y + 0.3 * t.size


def _placed(title, kinds, shapes, texts, edges, caption) -> Scene:
    """The scene moved so that its bounding box starts at the margin, with the caption below it."""
    xs, ys = [], []
    for s in shapes:
        pad = 8.0 if s.cls != "frame" else 0.0
        xs += [s.cx - s.hw - pad, s.cx + s.hw + pad]
        ys += [s.cy - s.hh - pad, s.cy + s.hh + pad]
    for t in texts:
        x0, y0, x1, y1 = _text_extent(t)
        xs += [x0, x1]
        ys += [y0, y1]
    for e in edges:
        p = _sample(e.path)
        xs += list(p[:, 0])
        ys += list(p[:, 1])
    x0, y0 = min(xs, default=0.0), min(ys, default=0.0)
    dx, dy = _MARGIN - x0, _MARGIN - y0
    body_w, body_h = max(xs, default=0.0) - x0, max(ys, default=0.0) - y0
    move = lambda cmd: (cmd[0], *[c + (dx if i % 2 == 0 else dy) for i, c in enumerate(cmd[1:])])  # noqa: E731
    shapes = [s._replace(cx=s.cx + dx, cy=s.cy + dy) for s in shapes]
    texts = [t._replace(x=t.x + dx, y=t.y + dy) for t in texts]
    edges = [e._replace(path=tuple(move(c) for c in e.path)) for e in edges]
    if caption:
        y = body_h + _MARGIN + 20
        texts.append(Text(_MARGIN / 2, y, "Score terms of the surrogate (Corollary 1):", "caption-head", size=13.0,
                          anchor="start"))
        texts += [Text(_MARGIN, y + 20 * (i + 1), line, "score-term", size=13.0, anchor="start")
                  for i, line in enumerate(caption)]
    width = max(body_w, 7.5 * max((len(c) for c in caption), default=0)) + 2 * _MARGIN
    height = body_h + 2 * _MARGIN + (20 * len(caption) + 10 if caption else 0)
    return Scene(title, width, height, kinds, shapes, texts, edges)


# -- SVG ------------------------------------------------------------------------------------
_STYLE = (
    "<style>.shape{fill:#fff;stroke:#222;stroke-width:1.5}.cost .shape{fill:#fdecea}"
    ".cost-marker{fill:none;stroke:#222;stroke-width:1.2}.missing text{fill:#b00}"
    ".frame{fill:#f6f8fb;stroke:#7a8a9a;stroke-width:1.2}.frame-title{fill:#2d4a66}"
    ".edge{fill:none;stroke:#333;stroke-width:1.3}.baseline-edge{fill:none;stroke:#888;stroke-dasharray:3,3}"
    ".carry-edge{fill:none;stroke:#1f5fa8;stroke-width:1.3}.carry-label{fill:#1f5fa8}"
    ".est{fill:#555}.est.score{fill:#b35900}.est.pathwise{fill:#1a7a1a}</style>"
)


def _svg_shape(s: Shape) -> str:
    dash = ' stroke-dasharray="5,3"' if s.dashed else ""
    if s.form == "circle":
        return f'<circle class="{s.cls}" cx="{s.cx:.1f}" cy="{s.cy:.1f}" r="{s.hw:.1f}"{dash}/>'
    rx = 6 if s.cls == "frame" else 7 if s.cls == "cost-marker" else 3
    return (f'<rect class="{s.cls}" x="{s.cx - s.hw:.1f}" y="{s.cy - s.hh:.1f}" width="{2 * s.hw:.1f}" '
            f'height="{2 * s.hh:.1f}" rx="{rx}"{dash}/>')


def _svg_text(t: Text) -> str:
    style = ' font-style="italic"' if t.italic else ""
    return (f'<text class="{escape(t.cls)}" x="{t.x:.1f}" y="{t.y:.1f}" text-anchor="{t.anchor}" '
            f'font-size="{t.size:g}"{style}>{escape(t.text)}</text>')


def _svg_path(cmds) -> str:
    return " ".join(f"{c[0]}" + " ".join(f"{c[i]:.1f},{c[i + 1]:.1f}" for i in range(1, len(c), 2)) for c in cmds)


def svg(title: str, nodes: Sequence[Drawn], caption: Sequence[str] = (), frame: Frame | None = None) -> str:
    """An SVG picture (Schulman 2016, Figure 11 notation) of the described nodes, as a string.

    Each node is a ``<g class="node KIND" id="node-NAME">`` holding one shape
    (``circle`` or ``rect`` of class ``shape``; costs add a ``rect`` of class
    ``cost-marker``), its label, and for stochastic nodes its note (a ``text`` of
    class ``est NAME``); ``caption`` lines are listed below as the score terms of
    the surrogate. With ``frame`` (a Temporal), a ``rect`` of class ``frame`` and
    its title, and ``path`` elements of class ``carry-edge``.
    """
    sc = scene(title, nodes, caption, frame)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{sc.width:.0f}" height="{sc.height:.0f}" '
        f'viewBox="0 0 {sc.width:.0f} {sc.height:.0f}" font-family="serif" font-size="15">',
        f"<title>{escape(title)}</title>",
        "<defs>" + "".join(
            f'<marker id="{m}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
            for m, c in (("arrow", "#333"), ("carry-arrow", "#1f5fa8"))) + "</defs>",
        _STYLE,
        '<g class="graph">',
    ]
    out += [_svg_shape(s) for s in sc.shapes if s.node is None]
    out += [_svg_text(t) for t in sc.texts if t.node is None and t.cls not in ("caption-head", "score-term")]
    for e in sc.edges:
        arrow = f' marker-end="url(#{"carry-arrow" if e.cls == "carry-edge" else "arrow"})"' if e.arrow else ""
        out.append(f'<path class="{e.cls}" data-src="{escape(e.src)}" data-dst="{escape(e.dst)}" '
                   f'd="{_svg_path(e.path)}"{arrow}/>')
    for v, kind in sc.kinds.items():
        out.append(f'<g class="node {kind}" id="node-{escape(v)}"><title>{escape(v)} ({kind})</title>')
        out += [_svg_shape(s) for s in sc.shapes if s.node == v]
        out += [_svg_text(t) for t in sc.texts if t.node == v]
        out.append("</g>")
    out.append("</g>")
    lines = [t for t in sc.texts if t.cls in ("caption-head", "score-term")]
    if lines:
        out += ['<g class="caption">', *map(_svg_text, lines), "</g>"]
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


def dot(title: str, nodes: Sequence[Drawn], frame: Frame | None = None) -> str:
    """The described nodes in Graphviz DOT (``dot -Tsvg`` renders it; Graphviz is not needed to produce it).

    With ``frame`` (a Temporal), the step's nodes but the shared inputs sit in a cluster labelled with the
    horizon and the discount, and each carry is a blue edge ``node -> input`` labelled ``t+1``.
    """
    q = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    carried = {inp for inp, _ in frame.carry} if frame else set()
    shared, step = [], []
    for n in nodes:
        parts = [pretty(n.name)] + ([n.note] if n.note is not None else [])
        label = "\\n".join(q(p)[1:-1] for p in parts)  # "\n" is DOT's line break inside a label
        line = f'{q(n.name)} [label="{label}", {_DOT_SHAPES.get(n.kind, "shape=box")}];'
        (shared if frame and n.kind == "input" and n.name not in carried else step).append(line)
    lines = [f"digraph {q(title)} {{", "  rankdir=LR;", '  node [fontname="serif"];', *("  " + s for s in shared)]
    if frame:
        lines += ["  subgraph cluster_step {", f"    label={q(_frame_title(frame))};", '    style="rounded";',
                  *("    " + s for s in step), "  }"]
    else:
        lines += ["  " + s for s in step]
    for n in nodes:
        for p in dict.fromkeys(n.parents):
            lines.append(f"  {q(p)} -> {q(n.name)};")
        if n.baseline is not None and n.baseline not in n.parents:
            lines.append(f"  {q(n.baseline)} -> {q(n.name)} [style=dashed, arrowhead=none, label=baseline];")
    for inp, node in frame.carry if frame else ():
        lines.append(f'  {q(node)} -> {q(inp)} [color="#1f5fa8", label="t+1", constraint=false];')
    lines.append("}")
    return "\n".join(lines)
