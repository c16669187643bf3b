"""Drawing a stochastic computation graph: SVG (for notebooks) and DOT text.

The notation follows Schulman (2016), §5.2.2 and Figure 11: stochastic nodes
are circles, deterministic nodes squares, inputs plain symbols. Costs get a
double border, simulated nodes (unknown density) a dashed circle, expectation
nodes (``E_a[f]``, RPG relaxed dynamics) a dashed square. Each stochastic node
is labelled with its estimator, and the caption lists the score-function terms
of the surrogate (Corollary 1, with the baselines of Theorem 2):
``∇log p(w | DEPS_w) × (Q̂_w − b_w)`` for every score node ``w``.

With a compiled graph and example inputs, the labels and the caption show the
estimators the compiler resolved for those inputs (pathwise where the
distribution is reparameterisable, else score). No Graphviz binary is needed:
the layout is computed in :mod:`scg._draw`.

Example:
    >>> import scg
    >>> from scg import dist, render
    >>> g = scg.Graph(); t = g.input("theta")
    >>> x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), t, estimator="score")
    >>> _ = g.cost("f", lambda x: x ** 2, x)
    >>> render.score_terms(g)
    {'x': ('f',)}
    >>> render.to_svg(g).startswith("<svg")
    True
"""
from __future__ import annotations

from scg import _draw
from scg._program.analysis import Analysis, analyse
from scg.compiler import CompiledGraph, compile
from scg.errors import GraphError
from scg.graph import Graph


def _analysis(graph: Graph, compiled: CompiledGraph | None = None, inputs: dict | None = None) -> Analysis | None:
    """The analysis with resolved estimators if ``compiled`` and ``inputs`` are given, else as declared."""
    if compiled is not None and inputs is not None:
        return compiled._plan(inputs).analysis
    if compiled is not None:
        return compiled.analysis
    try:
        return analyse(graph)
    except GraphError:  # an unfinished graph (no cost yet, unknown parent, ...) is still drawable
        return None


def score_terms(compiled: CompiledGraph | Graph, inputs: dict | None = None) -> dict[str, tuple[str, ...]]:
    """Which costs multiply each score term: ``{w: costs in Q̂_w}`` (Schulman 2016, Eq. 38 / Corollary 1).

    Args:
        compiled: a :class:`scg.CompiledGraph` (or a :class:`scg.Graph`).
        inputs: example inputs; they resolve default estimators (pathwise if
            reparameterisable, else score). Without them, estimators count as declared.

    Returns:
        For every stochastic node ``w`` whose estimator has a score-function
        term, the cost nodes ``c`` with ``w ≺ c``, in topological order.
    """
    if isinstance(compiled, Graph):
        a = analyse(compiled) if inputs is None else _analysis(compiled, compile(compiled), inputs)
    else:
        a = _analysis(compiled.graph, compiled, inputs)
    return {w: a.downstream_costs[w] for w in a.score_nodes()}


def _drawn(graph: Graph, a: Analysis | None) -> list[_draw.Drawn]:
    return _draw.describe(graph.nodes, None if a is None else a.estimators)


def layout(graph: Graph) -> dict[str, tuple[float, float]]:
    """Node centres ``{name: (x, y)}``: column = longest path from a root, rows by barycenter sweeps.

    Parents that are named but not (yet) declared get a placeholder position.
    """
    return _draw.layout(_draw.describe(graph.nodes))


def to_svg(graph: Graph, *, compiled: CompiledGraph | None = None, inputs: dict | None = None) -> str:
    """An SVG picture of ``graph`` (Schulman 2016, Figure 11 notation), as a string.

    Args:
        graph: the graph to draw.
        compiled: its :class:`scg.CompiledGraph`, optional.
        inputs: example inputs; with ``compiled`` they resolve default ("auto")
            estimators, so the labels and caption show what the compiler uses.

    Each node is a ``<g class="node KIND" id="node-NAME">`` holding one shape
    (``circle`` or ``rect`` of class ``shape``; costs add a ``rect`` of class
    ``cost-marker``), its label, and for stochastic nodes an estimator label.
    """
    a = _analysis(graph, compiled, inputs)
    return _draw.svg(graph.name, _drawn(graph, a), [] if a is None else _draw.caption(a))


def to_dot(graph: Graph, *, compiled: CompiledGraph | None = None, inputs: dict | None = None) -> str:
    """The graph in Graphviz DOT (``dot -Tsvg`` renders it; Graphviz is not needed to produce it)."""
    return _draw.dot(graph.name, _drawn(graph, _analysis(graph, compiled, inputs)))
