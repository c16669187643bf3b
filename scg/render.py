"""Drawing a stochastic computation graph: SVG (for notebooks), DOT text, and matplotlib figures (PNG, PDF).

The notation follows Schulman (2016), §5.2.2 and Figure 11: stochastic nodes
are circles, deterministic nodes squares, inputs plain symbols. Costs get a
double border, simulated nodes (unknown density) a dashed circle, expectation
nodes (``E_a[f]``, RPG relaxed dynamics) a dashed square. Each stochastic node
is labelled with its estimator, and the caption lists the score-function terms
of the surrogate (Corollary 1, with the baselines of Theorem 2):
``∇log p(w | DEPS_w) × (Q̂_w − b_w)`` for every score node ``w``.

A node declared with the default estimator is labelled with what the compiler
will give it (:func:`scg.estimators.resolve_default`: pathwise where the
distribution is reparameterisable, else score). Given example inputs, that is
what the compiler resolves for them; without, the graph is traced once with
scalar stand-ins for the inputs (only the distributions' classes matter, not
their shapes), and where the node functions need real inputs (a parameter
pytree, an array of some shape) the label says ``default``. A
:class:`scg.Temporal` is drawn as its step graph in a frame that names the
horizon and the discount, with its carry edges. No Graphviz binary is needed:
the layout is computed in :mod:`scg._draw`.

Example:
    >>> import scg
    >>> from scg import dist, render
    >>> g = scg.Graph(); t = g.input("theta")
    >>> x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), t)
    >>> _ = g.cost("f", lambda x: x ** 2, x)
    >>> render.score_terms(g, {"theta": 0.0})
    {'x': ('f',)}
    >>> '>score</text>' in render.to_svg(g)  # Bernoulli: no reparameterisation, so the default is score
    True
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from scg import _draw
from scg._program.analysis import Analysis, analyse
from scg.compiler import CompiledGraph, compile
from scg.errors import GraphError
from scg.graph import Graph
from scg.temporal import Temporal


def _subject(graph, compiled: CompiledGraph | None) -> tuple[Graph, _draw.Frame | None]:
    """The graph to draw and, for a Temporal (given, or the one ``compiled`` was built from), its frame."""
    if isinstance(graph, Temporal):
        return graph.step, _draw.frame_of(graph)
    if not isinstance(graph, Graph):
        raise GraphError(f"render: expected a scg.Graph or scg.Temporal, got {type(graph).__name__}")
    temporal = None if compiled is None else compiled.temporal
    return graph, None if temporal is None else _draw.frame_of(temporal)


def _stand_ins(a: Analysis) -> dict:
    """A float32 scalar shape for every input: enough to learn which distribution each node returns."""
    return {name: jax.ShapeDtypeStruct((), jnp.float32) for name in a.inputs}


def _analysis(graph, compiled: CompiledGraph | None = None, inputs: dict | None = None) -> Analysis | None:
    """The analysis with the default estimators resolved: for ``inputs`` if given, else for scalar stand-ins
    where the graph traces with them; as declared where it does not; ``None`` for an unfinished graph."""
    if compiled is None:
        try:
            compiled = compile(graph)
        except GraphError:  # an unfinished graph (no cost yet, unknown parent, ...) is still drawable
            return None
    if inputs is not None:
        return compiled._plan(inputs).analysis
    try:
        return compiled._plan(_stand_ins(compiled.analysis)).analysis
    except Exception:  # noqa: BLE001 - the node functions ran on stand-ins; whatever they raise means "needs inputs"
        return compiled.analysis


def score_terms(compiled: CompiledGraph | Graph | Temporal, inputs: dict | None = None) -> dict[str, tuple[str, ...]]:
    """Which costs multiply each score term: ``{w: costs in Q̂_w}`` (Schulman 2016, Eq. 38 / Corollary 1).

    Args:
        compiled: a :class:`scg.CompiledGraph` (or a :class:`scg.Graph` or :class:`scg.Temporal`).
        inputs: example inputs; they resolve default estimators (pathwise if
            reparameterisable, else score). Without them, estimators count as declared.

    Returns:
        For every stochastic node ``w`` whose estimator has a score-function
        term, the cost nodes ``c`` with ``w ≺ c``, in topological order.
    """
    if isinstance(compiled, (Graph, Temporal)):
        compiled = compile(compiled)
    a = compiled.analysis if inputs is None else compiled._plan(inputs).analysis
    return {w: a.downstream_costs[w] for w in a.score_nodes()}


def _drawn(graph: Graph, a: Analysis | None) -> list[_draw.Drawn]:
    return _draw.describe(graph.nodes, None if a is None else a.estimators)


def layout(graph: Graph) -> dict[str, tuple[float, float]]:
    """Node centres ``{name: (x, y)}``: column = longest path from a root, rows by barycenter sweeps.

    Parents that are named but not (yet) declared get a placeholder position.
    """
    return _draw.layout(_draw.describe(graph.nodes))


def _picture(graph, compiled, inputs) -> tuple[str, list[_draw.Drawn], list[str], _draw.Frame | None]:
    """``(title, nodes, caption, frame)``: what :mod:`scg._draw` lays out, with the estimators resolved."""
    step, frame = _subject(graph, compiled)
    a = _analysis(graph, compiled, inputs)
    return step.name, _drawn(step, a), [] if a is None else _draw.caption(a), frame


def to_svg(graph: Graph | Temporal, *, compiled: CompiledGraph | None = None, inputs: dict | None = None) -> str:
    """An SVG picture of ``graph`` (Schulman 2016, Figure 11 notation), as a string.

    Args:
        graph: the graph to draw, or a :class:`scg.Temporal` (its step in a frame with the carry edges).
        compiled: its :class:`scg.CompiledGraph`, optional (of a Temporal: its step is framed too).
        inputs: example inputs: the default estimators are resolved for them (see the module docs).

    Each node is a ``<g class="node KIND" id="node-NAME">`` holding one shape
    (``circle`` or ``rect`` of class ``shape``; costs add a ``rect`` of class
    ``cost-marker``), its label, and for stochastic nodes an estimator label.
    """
    return _draw.svg(*_picture(graph, compiled, inputs))


def to_dot(graph: Graph | Temporal, *, compiled: CompiledGraph | None = None, inputs: dict | None = None) -> str:
    """The graph in Graphviz DOT (``dot -Tsvg`` renders it; Graphviz is not needed to produce it)."""
    title, nodes, _, frame = _picture(graph, compiled, inputs)
    return _draw.dot(title, nodes, frame)


_INK = {"edge": "#333333", "baseline-edge": "#888888", "carry-edge": "#1f5fa8", "carry-label": "#1f5fa8",
        "frame-title": "#2d4a66", "est score": "#b35900", "est pathwise": "#1a7a1a"}  # the SVG's style sheet


def _shape_style(s: _draw.Shape, kinds: dict) -> dict:
    face = {"frame": "#f6f8fb", "cost-marker": "none"}.get(s.cls, "#fdecea" if kinds.get(s.node) == "cost" else "white")
    return dict(facecolor=face, edgecolor="#7a8a9a" if s.cls == "frame" else "#222222",
                linewidth=1.5 if s.cls == "shape" else 1.2, linestyle=(0, (5, 3)) if s.dashed else "-")


def _text_colour(t: _draw.Text, kinds: dict) -> str:
    if kinds.get(t.node) == "missing":
        return "#bb0000"
    return _INK.get(t.cls, "#555555" if t.cls.startswith("est") else "black")


def to_figure(graph: Graph | Temporal, *, compiled: CompiledGraph | None = None, inputs: dict | None = None):
    """The picture of :func:`to_svg` as a matplotlib ``Figure`` (one point per SVG pixel), e.g. for a paper's PDF.

    The same scene is painted: shapes as patches, edges as ``FancyArrowPatch`` along the routed curves (the
    arrowheads follow the curves' last tangent), texts as ``Text`` artists in the SVG's colours.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, works headless
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path

    sc = _draw.scene(*_picture(graph, compiled, inputs))
    fig = Figure(figsize=(sc.width / 72, sc.height / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, sc.width)
    ax.set_ylim(sc.height, 0)
    ax.set_axis_off()
    for s in sc.shapes:
        style = _shape_style(s, sc.kinds)
        if s.form == "circle":
            ax.add_patch(Circle((s.cx, s.cy), s.hw, **style))
        else:
            rounding = 6 if s.cls == "frame" else 7 if s.cls == "cost-marker" else 3
            ax.add_patch(FancyBboxPatch((s.cx - s.hw, s.cy - s.hh), 2 * s.hw, 2 * s.hh,
                                        boxstyle=f"round,pad=0,rounding_size={rounding}", **style))
    code = {"M": Path.MOVETO, "L": Path.LINETO, "Q": Path.CURVE3, "C": Path.CURVE4}  # SVG's path commands
    for e in sc.edges:
        verts = [c[i:i + 2] for c in e.path for i in range(1, len(c), 2)]
        codes = [code[c[0]] for c in e.path for _ in range(1, len(c), 2)]
        ax.add_patch(FancyArrowPatch(path=Path(verts, codes), arrowstyle="-|>,head_length=7,head_width=3" if e.arrow
                                     else "-", color=_INK[e.cls], linewidth=1.3, shrinkA=0, shrinkB=0,
                                     linestyle=(0, (3, 3)) if e.cls == "baseline-edge" else "-"))
    for t in sc.texts:  # 0.9: matplotlib's serif (DejaVu) is wider than the browsers' that the layout assumes
        ax.text(t.x, t.y, t.text, ha={"middle": "center", "start": "left"}[t.anchor], va="baseline",
                fontsize=0.9 * t.size, family="serif", style="italic" if t.italic else "normal",
                color=_text_colour(t, sc.kinds), gid=t.cls)
    return fig


def save(graph: Graph | Temporal, path, *, compiled: CompiledGraph | None = None, inputs: dict | None = None,
         dpi: int = 200):
    """Write :func:`to_figure` to ``path``, in the format of its suffix (``.png``, ``.pdf``, ``.svg``); ``path``."""
    to_figure(graph, compiled=compiled, inputs=inputs).savefig(path, dpi=dpi)
    return path
